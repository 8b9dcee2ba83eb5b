//! Bounded waits on workers: nothing waits forever on a worker that stays connected but stops
//! answering.
//!
//! - A task assigned `check_after` ago and not reported is checked: the worker is asked
//!   (`check_tasks`) whether it runs, queues or holds it. It answers `task_status` with the
//!   keys it does not know, which are assigned again (a `compute` it never took in, say);
//!   those it holds it reports again. A task is checked once per assignment: a worker that
//!   knows a task may run it as long as it takes.
//! - A worker that does not answer a check within `answer_timeout` is removed, as a silent
//!   one is: its tasks go elsewhere.
//! - A `get_data` (the scheduler collecting a result) not answered within `answer_timeout`
//!   counts as the copy being lost: it is asked of another holder, or computed again.

use super::*;

/// The state of the task checks (see the module's documentation).
#[derive(Debug, Default)]
pub(super) struct Checks {
    /// (when, assignments made by then), sampled at each tick, the oldest kept being the
    /// newest at least `check_after` old: tasks assigned up to its count are due a check.
    samples: VecDeque<(Instant, u64)>,
    /// Checks sent and not answered, by request id.
    pending: HashMap<u64, PendingCheck>,
    next_request: u64,
    /// When workers were last scanned for tasks due a check.
    last_scan: Option<Instant>,
    /// When the stalled tasks were last looked at.
    pub(super) stall_scan: Option<Instant>,
}

/// A `check_tasks` waiting for its `task_status`.
#[derive(Debug)]
struct PendingCheck {
    worker: WorkerId,
    sent: Instant,
    /// The tasks asked about, with the assignment they were asked about (an answer counts
    /// only for that one, not for a later one of the same task).
    asked: HashMap<TaskId, u64>,
}

/// How often workers are scanned for tasks due a check.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Bytes per second a worker is given at the least to send values asked of it (on top of
/// `--answer-timeout`): a gather of 1 GiB has 128 s more.
const GATHER_MIN_RATE: u64 = 8 << 20;

impl SchedulerState {
    /// Periodic: sends the checks due, and gives up on workers and holders that did not
    /// answer in time.
    pub(super) fn run_checks(&mut self, now: Instant, out: &mut Outbox) {
        let check_after = self.config.check_after;
        let samples = &mut self.checks.samples;
        samples.push_back((now, self.assignments));
        while samples
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= check_after)
        {
            samples.pop_front();
        }
        let due_upto = samples
            .front()
            .filter(|(t, _)| now.saturating_duration_since(*t) >= check_after)
            .map(|(_, count)| *count);
        self.expire_checks(now, out);
        self.expire_gathers(now, out);
        let scan_due = self
            .checks
            .last_scan
            .is_none_or(|t| now.saturating_duration_since(t) >= SCAN_EVERY);
        if let (Some(due_upto), true) = (due_upto, scan_due) {
            self.checks.last_scan = Some(now);
            self.send_checks(due_upto, now, out);
        }
    }

    /// Asks each worker about its tasks assigned up to assignment `due_upto` and not asked
    /// about yet (one check in flight per worker).
    fn send_checks(&mut self, due_upto: u64, now: Instant, out: &mut Outbox) {
        let busy: HashSet<WorkerId> = self.checks.pending.values().map(|c| c.worker).collect();
        let mut sends = Vec::new();
        for w in self.workers.values_mut() {
            if busy.contains(&w.id) || w.checked_upto >= due_upto {
                continue;
            }
            let from = w.checked_upto;
            let due: Vec<(TaskId, &TaskState)> = w
                .processing
                .iter()
                .filter_map(|tid| Some((*tid, self.tasks.get(tid)?.as_ref())))
                .filter(|(_, t)| {
                    t.status == TaskStatus::Processing(w.id)
                        && t.assigned > from
                        && t.assigned <= due_upto
                })
                .collect();
            w.checked_upto = due_upto;
            if !due.is_empty() {
                let keys: Vec<(String, DefHash)> = due
                    .iter()
                    .filter_map(|(tid, t)| {
                        Some((String::from(&*t.key), t.definition(*tid, &self.given)?))
                    })
                    .collect();
                let asked = due.iter().map(|(tid, t)| (*tid, t.assigned)).collect();
                sends.push((w.id, w.route.clone(), keys, asked));
            }
        }
        for (wid, route, keys, asked) in sends {
            let request = self.checks.next_request;
            self.checks.next_request += 1;
            log::debug!(
                "asking worker {} about {} task(s) it has not reported",
                self.worker_address(wid),
                keys.len()
            );
            self.checks.pending.insert(
                request,
                PendingCheck {
                    worker: wid,
                    sent: now,
                    asked,
                },
            );
            out.to_workers
                .push((route, ToWorker::CheckTasks { request, keys }));
        }
    }

    /// A worker answered a check: the tasks it does not know are assigned again.
    pub(super) fn on_task_status(
        &mut self,
        wid: WorkerId,
        request: u64,
        unknown: Vec<String>,
        out: &mut Outbox,
    ) {
        let asked = match self.checks.pending.get(&request) {
            Some(c) if c.worker == wid => match self.checks.pending.remove(&request) {
                Some(c) => c.asked,
                None => return,
            },
            _ => return,
        };
        for key in unknown {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                continue;
            };
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            // Still the assignment asked about (not one made since).
            if t.status != TaskStatus::Processing(wid) || asked.get(&tid) != Some(&t.assigned) {
                continue;
            }
            log::warn!(
                "worker {} does not know task {key:?} it was given; assigning it again",
                self.worker_address(wid)
            );
            self.assign_again(tid, "never reached the worker it was sent to", out);
        }
        self.schedule(out);
    }

    /// Removes the workers that did not answer a check in time.
    fn expire_checks(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.config.answer_timeout;
        let expired: Vec<(u64, WorkerId)> = self
            .checks
            .pending
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.sent) > timeout)
            .map(|(r, c)| (*r, c.worker))
            .collect();
        for (request, wid) in expired {
            self.checks.pending.remove(&request);
            if self.workers.contains_key(&wid) {
                log::warn!(
                    "worker {} did not answer a task check within {timeout:?}; removing it",
                    self.worker_address(wid)
                );
                self.remove_worker(wid, false, out);
            }
        }
    }

    /// Forgets the checks sent to a worker that is gone.
    pub(super) fn forget_checks_of(&mut self, wid: WorkerId) {
        self.checks.pending.retain(|_, c| c.worker != wid);
    }

    /// `get_data`s not answered in time (`--answer-timeout`, plus a second per
    /// `GATHER_MIN_RATE` bytes asked for, so that a large value on a slow link is not given up
    /// while it travels): the values are asked of another holder, or computed again, and that
    /// holder's copies are given up (it is told to drop them). A value only it holds that
    /// cannot be computed again (scattered data) is not given up: that request stays open (a
    /// late answer is taken) and is sent again, under the same id (the message or its answer
    /// may have been lost), waiting twice as long each time, up to eight times.
    fn expire_gathers(&mut self, now: Instant, out: &mut Outbox) {
        let answer_timeout = self.config.answer_timeout;
        let mut expired: Vec<u64> = Vec::new();
        for (id, g) in self.gathers.iter_mut() {
            let sent = match g.sent {
                Some(sent) => sent,
                None => {
                    g.nbytes = g
                        .keys
                        .iter()
                        .filter_map(|t| self.tasks.get(t))
                        .map(|t| t.nbytes)
                        .sum();
                    *g.sent.insert(now)
                }
            };
            let timeout = answer_timeout * (1 << g.attempts.min(3))
                + Duration::from_secs(g.nbytes / GATHER_MIN_RATE);
            if now.saturating_duration_since(sent) > timeout {
                expired.push(*id);
            }
        }
        let any = !expired.is_empty();
        for id in expired {
            let Some(mut g) = self.gathers.remove(&id) else {
                continue;
            };
            let mut again = Vec::new();
            let mut still = Vec::new();
            for tid in std::mem::take(&mut g.keys) {
                let Some(t) = self.tasks.get(&tid) else {
                    continue;
                };
                let only_copy = t.who_has.len() <= 1 && t.who_has.contains(&g.worker);
                if only_copy && t.lineage.is_none() {
                    still.push(tid);
                    continue;
                }
                let key = String::from(&*t.key);
                if t.who_has.contains(&g.worker) {
                    self.remove_holder(tid, g.worker);
                    self.send_release(g.worker, key, out);
                }
                if self.tasks.get(&tid).is_some_and(|t| t.who_has.is_empty()) {
                    self.recompute_lost(tid, out);
                } else {
                    again.push(tid);
                }
            }
            log::warn!(
                "worker {} did not send {} value(s) asked of it in time; {}",
                self.worker_address(g.worker),
                again.len() + still.len(),
                if still.is_empty() {
                    "taking them from elsewhere"
                } else {
                    "waiting on for those only it holds"
                }
            );
            if !still.is_empty() {
                if let Some(w) = self.workers.get(&g.worker) {
                    let keys = still
                        .iter()
                        .filter_map(|t| self.tasks.get(t).map(|t| String::from(&*t.key)))
                        .collect();
                    out.to_workers.push((
                        w.route.clone(),
                        ToWorker::GetData(GetDataBody { request: id, keys }),
                    ));
                }
                g.keys = still;
                g.sent = None;
                g.attempts += 1;
                self.gathers.insert(id, g);
            }
            if !again.is_empty() {
                self.gather(again, out);
            }
        }
        if any {
            self.schedule(out);
        }
    }
}
