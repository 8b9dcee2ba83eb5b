//! Retirement: a worker leaving gracefully (asked by a client, or by the worker itself) hands
//! its unique, still-needed data over to other workers and finishes its running tasks, then is
//! let go; at `retire_timeout` it goes whether or not everything moved.

use super::*;

/// A worker leaving gracefully.
#[derive(Debug)]
pub(super) struct Retirement {
    /// It leaves by then, whether or not everything moved.
    pub(super) deadline: Instant,
    /// The clients that asked for it (answered when it is gone).
    pub(super) asked_by: Vec<(Route, u64)>,
    /// Keys already asked to be copied elsewhere, the worker asked and when (asked again if
    /// that worker goes away, or has not reported the copy within `RECOPY_AFTER`).
    pub(super) requested: HashMap<TaskId, (WorkerId, Instant)>,
}

/// A copy asked of a worker for a retirement and not reported by then is asked again.
const RECOPY_AFTER: Duration = Duration::from_secs(12);

impl SchedulerState {
    /// A client asks to retire the worker at `address`: its unique data moves to other
    /// workers, then it is told to leave; the client is answered then.
    pub fn on_retire(
        &mut self,
        client: &[u8],
        request: u64,
        address: &str,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(wid) = self
            .workers
            .values()
            .find(|w| &*w.address == address)
            .map(|w| w.id)
        else {
            let error = ErrorInfo::new(
                ErrorKind::UnknownWorker,
                format!("no worker at {address:?}; `zask workers` lists them"),
            );
            out.to_clients
                .push((client.to_vec(), ToClient::Error { request, error }));
            return;
        };
        self.start_retirement(wid, Some((client.to_vec(), request)), now, out);
    }

    /// Worker `wid` starts retiring (asked by a client, `asked_by`, or by itself): no new
    /// tasks, and its unique data starts moving.
    pub(super) fn start_retirement(
        &mut self,
        wid: WorkerId,
        asked_by: Option<(Route, u64)>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        w.retiring = true;
        log::info!("worker {} is retiring", w.address);
        let deadline = now + self.config.retire_timeout;
        match self.retiring.get_mut(&wid) {
            Some(r) => {
                r.asked_by.extend(asked_by);
            }
            None => {
                self.retiring.insert(
                    wid,
                    Retirement {
                        deadline,
                        asked_by: asked_by.into_iter().collect(),
                        requested: HashMap::default(),
                    },
                );
            }
        }
        self.check_retirements(now, out);
    }

    /// Moves the still-needed data only retiring workers hold to other workers, and lets each
    /// retiring worker go once it runs nothing and holds nothing unique (or at its deadline).
    pub(super) fn check_retirements(&mut self, now: Instant, out: &mut Outbox) {
        if self.retiring.is_empty() {
            return;
        }
        let wids: Vec<WorkerId> = self.retiring.keys().copied().collect();
        for wid in wids {
            let Some(w) = self.workers.get(&wid) else {
                self.retiring.remove(&wid);
                continue;
            };
            let unique: Vec<TaskId> = w
                .has
                .iter()
                .copied()
                .filter(|tid| {
                    self.tasks.get(tid).is_some_and(|t| {
                        (t.waiters > 0 || t.kept)
                            && !t.who_has.iter().any(|h| {
                                *h != wid && self.workers.get(h).is_some_and(|w| !w.retiring)
                            })
                    })
                })
                .collect();
            let idle = w.processing.is_empty();
            let expired = self.retiring.get(&wid).is_some_and(|r| now >= r.deadline);
            if (idle && unique.is_empty()) || expired {
                self.finish_retirement(wid, out);
                continue;
            }
            self.replicate(wid, unique, now, out);
        }
    }

    /// Asks other (non-retiring) workers to copy `tids` from the retiring worker `wid`.
    fn replicate(&mut self, wid: WorkerId, tids: Vec<TaskId>, now: Instant, out: &mut Outbox) {
        let Some(address) = self.workers.get(&wid).map(|w| w.address.to_string()) else {
            return;
        };
        let mut by_target: HashMap<WorkerId, Vec<(String, DefHash, Vec<String>)>> =
            HashMap::default();
        let mut planned: HashMap<WorkerId, u64> = HashMap::default();
        for tid in tids {
            let asked = self
                .retiring
                .get(&wid)
                .and_then(|r| r.requested.get(&tid))
                .is_some_and(|(target, when)| {
                    now.saturating_duration_since(*when) < RECOPY_AFTER
                        && self.workers.get(target).is_some_and(|w| !w.retiring)
                });
            if asked {
                continue;
            }
            let (Some(t), Some(hash)) = (self.tasks.get(&tid), self.hash_of(tid)) else {
                continue;
            };
            let target = self
                .workers
                .values()
                .filter(|w| !w.retiring)
                .min_by_key(|w| (w.nbytes + planned.get(&w.id).copied().unwrap_or(0), w.id))
                .map(|w| w.id);
            let Some(target) = target else {
                continue; // Nowhere to go: it leaves with the worker (recomputed if needed).
            };
            *planned.entry(target).or_insert(0) += t.nbytes;
            by_target.entry(target).or_default().push((
                String::from(&*t.key),
                hash,
                vec![address.clone()],
            ));
            if let Some(r) = self.retiring.get_mut(&wid) {
                r.requested.insert(tid, (target, now));
            }
        }
        for (target, who_has) in by_target {
            if let Some(w) = self.workers.get(&target) {
                out.to_workers
                    .push((w.route.clone(), ToWorker::Replicate { who_has }));
            }
        }
    }

    /// Retiring worker `wid` may go: it is told so and removed (its askers are answered).
    fn finish_retirement(&mut self, wid: WorkerId, out: &mut Outbox) {
        let Some(r) = self.retiring.remove(&wid) else {
            return;
        };
        let Some(w) = self.workers.get(&wid) else {
            return;
        };
        log::info!("worker {} retired", w.address);
        out.to_workers.push((w.route.clone(), ToWorker::Retired));
        self.retiring.insert(wid, r); // remove_worker answers whoever asked
        self.remove_worker(wid, false, out);
    }
}
