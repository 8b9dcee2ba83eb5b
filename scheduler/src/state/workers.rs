//! Workers joining and leaving: registration (the protocol check, a reconnecting worker
//! resynced, a restarted one replacing its old self), heartbeats, and removal (its tasks go
//! back to the queue, keys only it held are computed again, and when it died, its deaths count
//! against the tasks that may have been running on it).

use super::*;

/// A registered worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) id: WorkerId,
    pub(crate) route: Route,
    pub(crate) worker_id: String,
    /// Shared: listed in `who_has` for every input a task fetches from this worker.
    pub(crate) address: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) nthreads: u32,
    pub(crate) functions: HashSet<String>,
    pub(crate) last_seen: Instant,
    /// Tasks assigned and not reported.
    pub(crate) processing: HashSet<TaskId>,
    /// Keys held.
    pub(crate) has: HashSet<TaskId>,
    /// Total size of the keys held.
    pub(crate) nbytes: u64,
    /// Leaving gracefully: no new tasks; its unique data is moving to other workers.
    pub(crate) retiring: bool,
    /// Its tasks assigned up to this assignment count were asked about already (see
    /// `checks.rs`).
    pub(crate) checked_upto: u64,
}

impl Worker {
    /// What clients are shown of this worker (`zask workers`, the dashboard: without its
    /// functions, which it does not show).
    pub(crate) fn summary(&self, now: Instant, with_functions: bool) -> WorkerSummary {
        let mut functions: Vec<String> = match with_functions {
            true => self.functions.iter().cloned().collect(),
            false => Vec::new(),
        };
        functions.sort();
        WorkerSummary {
            address: self.address.to_string(),
            worker_id: self.worker_id.clone(),
            pid: self.pid,
            nthreads: self.nthreads,
            functions,
            keys: self.has.len() as u64,
            nbytes: self.nbytes,
            processing: self.processing.len() as u64,
            last_seen_ms: now.saturating_duration_since(self.last_seen).as_millis() as u64,
        }
    }

    /// Whether this worker can run tasks whose signature lists `entry`: a function it
    /// offers, or a restriction to workers it is one of.
    pub(crate) fn offers(&self, entry: &str) -> bool {
        match functions::restricted_to(entry) {
            Some(mut addresses) => addresses.any(|a| a == &*self.address),
            None => self.functions.contains(entry),
        }
    }
}

/// Threads a worker may declare (more is taken as this many).
const MAX_THREADS: u32 = 4_096;

/// The fields of a `register` message.
struct Registration {
    protocol: u32,
    worker_id: String,
    address: String,
    pid: u32,
    nthreads: u32,
    functions: Vec<String>,
    has: Vec<KeyInfo>,
}

impl SchedulerState {
    /// Handles one message from a worker.
    pub fn on_worker_message(
        &mut self,
        route: &[u8],
        msg: FromWorker,
        now: Instant,
        out: &mut Outbox,
    ) {
        if let FromWorker::Register {
            protocol,
            worker_id,
            address,
            pid,
            nthreads,
            functions,
            has,
        } = msg
        {
            self.on_register(
                route,
                Registration {
                    protocol,
                    worker_id,
                    address,
                    pid,
                    nthreads,
                    functions,
                    has,
                },
                now,
                out,
            );
            return;
        }
        let Some(&wid) = self.worker_by_route.get(route) else {
            if !matches!(msg, FromWorker::Goodbye { .. }) {
                out.to_workers
                    .push((route.to_vec(), ToWorker::PleaseRegister));
            }
            return;
        };
        if let Some(w) = self.workers.get_mut(&wid) {
            w.last_seen = now;
        }
        match msg {
            FromWorker::Register { .. } | FromWorker::Heartbeat { .. } => {}
            FromWorker::Report(ReportBody {
                done,
                failed,
                acquired,
            }) => {
                for info in acquired {
                    self.stats.transferred(info.nbytes);
                    self.on_held(wid, info, Claim::Fetched, now, out);
                }
                for d in done {
                    self.on_task_done(wid, d, now, out);
                }
                for f in failed {
                    self.on_task_failed(wid, f, out);
                }
                self.check_retirements(now, out);
                self.schedule(out);
            }
            FromWorker::Data(DataBody {
                request,
                items,
                missing,
            }) => self.on_data(wid, request, items, missing, out),
            FromWorker::TaskStatus { request, unknown } => {
                self.on_task_status(wid, request, unknown, out)
            }
            FromWorker::Retiring { .. } => self.start_retirement(wid, None, now, out),
            FromWorker::Goodbye { .. } => {
                log::info!("worker {} said goodbye", self.worker_address(wid));
                self.remove_worker(wid, false, out);
            }
        }
    }

    /// Worker `wid`'s address, for logs (`#id` once it is gone).
    pub(super) fn worker_address(&self, wid: WorkerId) -> String {
        self.workers
            .get(&wid)
            .map(|w| w.address.to_string())
            .unwrap_or_else(|| format!("#{wid}"))
    }

    /// A worker registers on `route`: refused if it speaks another protocol, reconnected if
    /// it is a process the scheduler knows, added otherwise.
    fn on_register(&mut self, route: &[u8], reg: Registration, now: Instant, out: &mut Outbox) {
        if reg.protocol != PROTOCOL_VERSION {
            log::warn!(
                "refusing worker {}: protocol {} (scheduler speaks {PROTOCOL_VERSION})",
                reg.address,
                reg.protocol
            );
            out.to_workers.push((
                route.to_vec(),
                ToWorker::Rejected {
                    message: format!(
                        "worker speaks protocol {}, scheduler speaks {PROTOCOL_VERSION}; \
                         run the same zask version on both",
                        reg.protocol
                    ),
                },
            ));
            return;
        }
        // The same process registering again (it reconnected, or its messages went to a route
        // we had forgotten): update its route, and since messages may have been lost both ways,
        // take what it holds as the truth and send its unfinished work again.
        let existing = self
            .workers
            .values()
            .find(|w| w.worker_id == reg.worker_id)
            .map(|w| w.id);
        match existing {
            Some(wid) => self.reconnect(wid, route, reg.has, now, out),
            None => self.add_worker(route, reg, now, out),
        }
    }

    /// Worker `wid` registered again on `route`: its route is updated, and since messages may
    /// have been lost both ways, what it holds (`has`) is taken as the truth and its unfinished
    /// work is sent again.
    fn reconnect(
        &mut self,
        wid: WorkerId,
        route: &[u8],
        has: Vec<KeyInfo>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let old_route = self.workers.get(&wid).map(|w| w.route.clone());
        if let Some(old) = old_route {
            self.worker_by_route.remove(&old);
        }
        self.worker_by_route.insert(route.to_vec(), wid);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.route = route.to_vec();
            w.last_seen = now;
        }
        out.to_workers.push((
            route.to_vec(),
            ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: self.id.clone(),
            },
        ));
        // What it holds that it is not known to hold may be a copy this scheduler has told it
        // to drop since it wrote this registration (a `release` on its way): taken now, it
        // would be counted as held after the worker deleted it. Only what it is known to hold,
        // or what it was computing (its report lost), is taken; the rest it drops.
        let (known, unknown): (Vec<KeyInfo>, Vec<KeyInfo>) =
            has.into_iter().partition(|info| self.knows_held(wid, info));
        for info in unknown {
            self.send_release(wid, info.key, out);
        }
        self.resync_worker(wid, known, now, out);
        self.schedule(out);
    }

    /// Whether `wid` is known to hold `info` (of its current definition), or to have been
    /// computing it.
    fn knows_held(&self, wid: WorkerId, info: &KeyInfo) -> bool {
        let Some(&tid) = self.task_ids.get(info.key.as_str()) else {
            return false;
        };
        let Some(t) = self.tasks.get(&tid) else {
            return false;
        };
        t.definition(tid, &self.given) == Some(info.hash)
            && (t.who_has.contains(&wid) || t.status == TaskStatus::Processing(wid))
    }

    /// A new worker process registered on `route`: it is welcomed, what it holds recorded,
    /// and parked and stalled work can run. A worker known at the same address or route is
    /// an old self of it (restarted): it is removed as dead.
    fn add_worker(&mut self, route: &[u8], reg: Registration, now: Instant, out: &mut Outbox) {
        // A new process at an address we know: the old one is gone.
        let stale: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| *w.address == *reg.address || w.route == route)
            .map(|w| w.id)
            .collect();
        let address = reg.address.clone();
        let wid = self.next_worker;
        self.next_worker = wid.next();
        let mut reg = reg;
        reg.functions.sort();
        reg.functions.dedup();
        reg.nthreads = reg.nthreads.clamp(1, MAX_THREADS);
        for f in &reg.functions {
            *self.function_counts.entry(f.clone()).or_insert(0) += 1;
        }
        log::info!(
            "worker {} registered (pid {}, {} threads, {} functions, {} keys held)",
            reg.address,
            reg.pid,
            reg.nthreads,
            reg.functions.len(),
            reg.has.len()
        );
        self.workers.insert(
            wid,
            Worker {
                id: wid,
                route: route.to_vec(),
                worker_id: reg.worker_id,
                address: Arc::from(address.as_str()),
                pid: reg.pid,
                nthreads: reg.nthreads.max(1),
                functions: reg.functions.into_iter().collect(),
                last_seen: now,
                processing: HashSet::default(),
                has: HashSet::default(),
                nbytes: 0,
                retiring: false,
                checked_upto: self.assignments,
            },
        );
        self.worker_by_route.insert(route.to_vec(), wid);
        out.to_workers.push((
            route.to_vec(),
            ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: self.id.clone(),
            },
        ));
        // What it holds first, so keys it still has are not taken for lost with its old self.
        for info in reg.has {
            self.on_held(wid, info, Claim::Registered, now, out);
        }
        for old in stale {
            log::info!("worker at {address} restarted; forgetting its old self");
            self.remove_worker(old, true, out);
        }
        self.unstall();
        self.unpark(now, out);
        self.schedule(out);
    }

    /// After a known worker registered again: record what it holds, send its unfinished tasks
    /// and pending gathers again (they or their reports may have been lost), and fail the
    /// scattered values it never got.
    fn resync_worker(&mut self, wid: WorkerId, has: Vec<KeyInfo>, now: Instant, out: &mut Outbox) {
        for info in has {
            self.on_held(wid, info, Claim::Registered, now, out);
        }
        let processing: Vec<TaskId> = self
            .workers
            .get(&wid)
            .map(|w| w.processing.iter().copied().collect())
            .unwrap_or_default();
        for tid in processing {
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            if t.status != TaskStatus::Processing(wid) {
                continue;
            }
            self.assign_again(tid, "did not reach its worker (it reconnected)", out);
        }
        self.regather_from(wid, out);
    }

    /// Removes a worker (gone, dead or replaced): its running tasks go back to the queue, and
    /// keys only it held are recomputed from their lineage when still needed. When it `died`,
    /// its running tasks are suspects: one that has now seen `allowed_failures` workers die
    /// under it fails instead of killing more.
    pub(super) fn remove_worker(&mut self, wid: WorkerId, died: bool, out: &mut Outbox) {
        let Some(w) = self.workers.remove(&wid) else {
            return;
        };
        self.forget_checks_of(wid);
        if self.worker_by_route.get(&w.route) == Some(&wid) {
            self.worker_by_route.remove(&w.route);
        }
        // Whoever asked for its retirement: it is gone, retired or not.
        if let Some(r) = self.retiring.remove(&wid) {
            for (client, request) in r.asked_by {
                let address = w.address.to_string();
                out.to_clients
                    .push((client, ToClient::Retired { request, address }));
            }
        }
        // Peers fetching from it try other holders at once instead of waiting to time out.
        for other in self.workers.values() {
            out.to_workers.push((
                other.route.clone(),
                ToWorker::PeerGone {
                    address: w.address.to_string(),
                },
            ));
        }
        for f in &w.functions {
            if let Some(c) = self.function_counts.get_mut(f) {
                *c -= 1;
                if *c == 0 {
                    self.function_counts.remove(f);
                }
            }
        }
        // The tasks that may have been running when it died: those whose inputs were there,
        // oldest assignments first, as many as it has threads. Tasks queued behind them
        // never ran and are not suspects.
        let mut runnable: Vec<(u64, TaskId)> = w
            .processing
            .iter()
            .filter_map(|tid| self.tasks.get(tid).map(|t| (t, *tid)))
            .filter(|(t, _)| {
                t.deps.iter().all(|d| {
                    self.tasks
                        .get(d)
                        .is_some_and(|dt| dt.status == TaskStatus::Memory)
                })
            })
            .map(|(t, tid)| (t.assigned, tid))
            .collect();
        runnable.sort_unstable();
        let suspects: HashSet<TaskId> = runnable
            .into_iter()
            .take(w.nthreads as usize)
            .map(|(_, tid)| tid)
            .collect();
        for tid in w.processing {
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            if t.status != TaskStatus::Processing(wid) {
                continue;
            }
            if t.lineage.is_some() {
                let deaths = t.deaths + u32::from(died && suspects.contains(&tid));
                let key = t.key.clone();
                if let Some(t) = self.tasks.get_mut(&tid) {
                    t.deaths = deaths;
                }
                if deaths >= self.config.allowed_failures.max(1) {
                    let error = ErrorInfo::new(
                        ErrorKind::WorkerDied,
                        format!(
                            "task {key:?} was running on {deaths} workers that died; it may be \
                             what kills them, so it is not retried"
                        ),
                    )
                    .with_key(&key);
                    log::warn!("{}", error.message);
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        stats::set_status(&mut self.stats.counts, t, TaskStatus::Waiting);
                    }
                    self.fail_task(tid, error, out);
                } else {
                    // Back to the queue (or to waiting, if it was queued behind an input).
                    self.rewait(tid);
                }
            } else {
                // A scattered value that never got stored: only the client had it.
                let error = ErrorInfo::new(
                    ErrorKind::Lost,
                    format!(
                        "the worker receiving scattered key {:?} went away before storing it; \
                         scatter it again",
                        t.key
                    ),
                )
                .with_key(&t.key);
                self.fail_lost(tid, error, out);
            }
        }
        let mut lost = Vec::new();
        for tid in w.has {
            self.remove_holder(tid, wid);
            let gone = self
                .tasks
                .get(&tid)
                .is_some_and(|t| t.who_has.is_empty() && t.status == TaskStatus::Memory);
            if gone {
                lost.push(tid);
            }
        }
        for tid in lost {
            self.recompute_lost(tid, out);
        }
        // Gathers the worker will never answer: ask another holder.
        self.regather_from(wid, out);
        self.schedule(out);
    }

    /// The worker sending on `route` is alive (any message counts).
    pub fn on_worker_seen(&mut self, route: &[u8], now: Instant) {
        if let Some(w) = self
            .worker_by_route
            .get(route)
            .and_then(|id| self.workers.get_mut(id))
        {
            w.last_seen = now;
        }
    }

    /// Removes the workers not heard from for over `heartbeat_timeout` (as dead: see
    /// `remove_worker`).
    pub(super) fn expire_workers(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.config.heartbeat_timeout;
        let dead: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| now.saturating_duration_since(w.last_seen) > timeout)
            .map(|w| w.id)
            .collect();
        for wid in dead {
            log::warn!(
                "worker {} silent for over {:?}; removing it",
                self.worker_address(wid),
                timeout
            );
            self.remove_worker(wid, true, out);
        }
    }
}
