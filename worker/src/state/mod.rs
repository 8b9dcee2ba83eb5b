//! [`WorkerState`]: the worker's brain, a state machine with no I/O and no clock.
//!
//! Every event is an `on_*` method: a message from the scheduler, a peer's request or answer,
//! a fetch that could not be sent, jobs the executors finished, a tick (time passes). The
//! time is passed in (`now`), never read. What must happen in answer (messages, fetches,
//! replies, jobs, peers to drop, leaving) goes into the [`Outbox`], which the loop in
//! `server.rs` takes after each event and carries out; [`WorkerState::next_deadline`] says
//! when the next tick is due. The values live in the worker's [`Store`] (memory or disk),
//! which the state owns.
//!
//! Where each rule lives:
//! - `mod.rs` (here): registration, heartbeats, the scheduler's messages, retirement, ticks
//!   and closing.
//! - `tasks.rs`: the tasks given to this worker: taking them in (which inputs are here, which
//!   are coming, which to fetch), the waits that follow, scattered values, tasks taken back or
//!   cancelled.
//! - `run.rs`: dispatching ready tasks (and the chains queued behind them) to the
//!   executors, storing results, waking what waits for them or failing it.
//! - `fetch.rs`: inputs fetched from peers (requests, holders to try next, answers, bad
//!   copies, timeouts, peers gone), replication, and serving values to peers.
//! - `report.rs`: what finished, reported to the scheduler in batches once it is durable;
//!   answers to task checks.
//! - `outbox.rs`: [`Outbox`].
//! - `tests/`: the state machine's tests, deterministic, with no sockets.

mod fetch;
mod outbox;
mod report;
mod run;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;
use zask_core::protocol::{
    ComputeBody, DataBody, FromWorker, GetDataBody, ReleaseBody, ToWorker, PROTOCOL_VERSION,
};
use zask_core::Bytes;

use crate::executor::JobResult;
use crate::store::Store;

pub use outbox::{FetchRequest, Outbox, PeerReplyOut};

use fetch::{Fetch, Fetching};
use report::Report;
use tasks::{LocalTask, Waiters};

/// How long finished tasks may wait for others before they are reported (while tasks are
/// still running on this worker; an idle worker reports at once).
const REPORT_DELAY: Duration = Duration::from_millis(1);

/// `d` after `t`, or as late as can be told (a duration of years means "never"; adding it
/// must not panic).
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(t)
}

/// Who this worker is and how it behaves: fixed for its life.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's unique id (also its routing id on the scheduler's socket).
    pub worker_id: String,
    /// Where peers fetch data from (`tcp://host:port`), the worker's name.
    pub address: String,
    /// The process id, told to the scheduler (operators find the process by it).
    pub pid: u32,
    /// Tasks run at once (executor threads).
    pub nthreads: u32,
    /// The functions this worker offers, sorted.
    pub functions: Vec<String>,
    /// How often the worker tells the scheduler it is alive (and retries registering).
    pub heartbeat_interval: Duration,
    /// How long a peer may take to answer a fetch before the next holder is tried.
    pub fetch_timeout: Duration,
    /// How long a retiring worker waits for the scheduler to move its data before leaving.
    pub retire_timeout: Duration,
}

/// The worker's state: its tasks, the inputs it fetches, what it will report, and where it
/// stands with the scheduler. See the module documentation.
pub struct WorkerState {
    pub(crate) config: WorkerConfig,
    pub(crate) store: Box<dyn Store>,
    /// The tasks given to this worker and not finished, by key.
    pub(crate) tasks: HashMap<String, LocalTask>,
    /// Input key → tasks waiting for it (it is being fetched or computed here). A task's key
    /// is shared by all its entries (a task over a million inputs has a million of them), and
    /// one waiter is kept inline (no allocation per input of a wide task).
    pub(crate) waiting: HashMap<Arc<str>, Waiters>,
    /// Tasks with all their inputs here, in the order they became ready (may hold stale
    /// entries: see `LocalTask::dispatched`).
    pub(crate) ready: VecDeque<String>,
    /// Tasks handed to the executors and not finished.
    pub(crate) running: u32,
    /// Fetch requests in flight, by request id.
    pub(crate) fetches: HashMap<u64, Fetch>,
    /// Input key being fetched → holders not tried yet, and the hash it must have.
    pub(crate) fetching: HashMap<Arc<str>, Fetching>,
    /// The serial of the next task accepted.
    pub(crate) next_serial: u64,
    /// The id of the next fetch request.
    pub(crate) next_request: u64,
    /// What finished since the last report was closed.
    pub(crate) report: Report,
    /// A closed report held back until the store has made its first `.1` writes durable
    /// (what it says is stored then survives a crash); later results go to `report`, so a
    /// busy worker's flushes never chase a growing report.
    pub(crate) awaiting: Option<(Report, u64)>,
    /// Since when the report has had something in it (reports wait a little for company
    /// while tasks are still running, so many finished tasks travel in one message).
    pub(crate) report_since: Option<Instant>,
    /// Whether the scheduler has welcomed this worker (since it last forgot it).
    pub(crate) registered: bool,
    /// When the last register/heartbeat went out.
    pub(crate) last_sent: Option<Instant>,
    /// Asked to leave gracefully (SIGTERM, or a store that failed for good).
    pub(crate) retire_requested: bool,
    /// When retiring started; the worker leaves anyway `retire_timeout` later.
    pub(crate) retiring_since: Option<Instant>,
    /// What to do, for the loop to take.
    pub(crate) outbox: Outbox,
}

impl WorkerState {
    /// A worker with nothing to do yet, keeping values in `store` (which may hold values
    /// from an earlier life: they are offered to the scheduler at registration).
    pub fn new(config: WorkerConfig, store: Box<dyn Store>) -> WorkerState {
        WorkerState {
            config,
            store,
            tasks: HashMap::default(),
            waiting: HashMap::default(),
            ready: VecDeque::new(),
            running: 0,
            fetches: HashMap::default(),
            fetching: HashMap::default(),
            next_serial: 1,
            next_request: 1,
            report: Report::default(),
            awaiting: None,
            report_since: None,
            registered: false,
            last_sent: None,
            retire_requested: false,
            retiring_since: None,
            outbox: Outbox::default(),
        }
    }

    /// What must be done now; the state starts a new outbox.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The store the worker's values live in.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The store, for a worker that restarts on it (a disk store outlives its process).
    pub fn into_store(self) -> Box<dyn Store> {
        self.store
    }

    /// Whether the scheduler has welcomed this worker.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Tasks given to this worker and not finished.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The definition of the task of `key` this worker was given and has not finished.
    pub fn task_hash(&self, key: &str) -> Option<zask_core::DefHash> {
        self.tasks.get(key).map(|t| t.hash)
    }

    /// Inputs being fetched from peers.
    pub fn fetch_count(&self) -> usize {
        self.fetching.len()
    }

    /// The process has started: register with the scheduler.
    pub fn on_start(&mut self, now: Instant) {
        self.register(now);
    }

    /// A message from the scheduler (`blobs`: the frames after its header, which scattered
    /// values refer to).
    pub fn on_scheduler_message(&mut self, msg: ToWorker, blobs: &[Bytes], now: Instant) {
        match msg {
            ToWorker::Welcome { scheduler_id, .. } => {
                if !self.registered {
                    log::info!("registered with scheduler {scheduler_id}");
                }
                self.registered = true;
            }
            ToWorker::Rejected { message } => {
                log::error!("the scheduler refused this worker: {message}");
                self.outbox.leave = true;
            }
            ToWorker::PleaseRegister => {
                if self.registered {
                    log::info!("the scheduler does not know this worker; registering again");
                }
                self.registered = false;
                self.forget_tasks();
                self.register(now);
            }
            ToWorker::Closing => {
                log::info!("the scheduler is shutting down; waiting for it to come back");
                self.registered = false;
                self.forget_tasks();
            }
            ToWorker::CheckTasks { request, keys } => self.check_tasks(request, keys, now),
            ToWorker::Compute(ComputeBody { tasks }) => self.on_compute(tasks, now, &mut |_| {}),
            ToWorker::PutData { items } => {
                let mut unpacker = zask_core::frames::Unpacker::new(blobs);
                for item in items {
                    self.put(item, &mut unpacker);
                }
            }
            ToWorker::Replicate { who_has } => self.replicate(who_has, now),
            ToWorker::Retired => {
                log::info!("retired: leaving");
                self.outbox.leave = true;
            }
            ToWorker::PeerGone { address } => self.peer_gone(address, now),
            ToWorker::Cancel { keys } => self.cancel(keys),
            ToWorker::Release(ReleaseBody { keys }) => {
                for k in keys {
                    self.remove_stored(&k);
                }
            }
            ToWorker::GetData(GetDataBody { request, keys }) => {
                let mut blobs = Vec::new();
                let (items, missing) =
                    self.lookup(keys, |v| zask_core::frames::pack(v, &mut blobs));
                let msg = FromWorker::Data(DataBody {
                    request,
                    items,
                    missing,
                });
                self.send(msg, blobs);
            }
        }
    }

    /// Executor threads finished these jobs.
    pub fn on_jobs_done(&mut self, results: Vec<JobResult>) {
        for done in results {
            self.task_finished(done);
        }
    }

    /// Asked to leave gracefully: the scheduler moves the data only this worker holds, then
    /// says `retired` (or `retire_timeout` passes).
    pub fn on_retire(&mut self) {
        self.retire_requested = true;
    }

    /// Time has passed (the loop calls this after every turn, and by
    /// [`next_deadline`](Self::next_deadline)): fetches that took too long, tasks to
    /// dispatch, reports due, heartbeats, retirement.
    pub fn on_tick(&mut self, now: Instant) {
        self.check_fetch_timeouts(now);
        // Many inputs just arrived: the scheduler learns of the copies while the tasks that
        // wanted them are gathered and run.
        if self.report.acquired.len() >= report::REPORT_BATCH {
            self.send_report(false, now);
        }
        self.run_ready();
        self.send_report(false, now);
        self.heartbeat(now);
        self.check_store();
        self.check_retirement(now);
    }

    /// When [`on_tick`](Self::on_tick) must be called next at the latest.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let heartbeat = self.config.heartbeat_interval;
        let mut at = later(now, heartbeat);
        if let Some(since) = self.report_since {
            at = at.min(later(since, REPORT_DELAY));
        }
        if self.awaiting.is_some() {
            at = at.min(later(now, REPORT_DELAY));
        }
        if let Some(last) = self.last_sent {
            at = at.min(later(last, heartbeat));
        }
        if let Some(first) = self.fetches.values().map(|f| f.deadline).min() {
            at = at.min(first);
        }
        if let Some(since) = self.retiring_since {
            at = at.min(later(since, self.config.retire_timeout));
        }
        at
    }

    /// The worker is closing: what finished is reported (even if a flush does not end: the
    /// goodbye that follows makes the scheduler forget this worker's copies anyway, and a
    /// client waiting for a value sent with the report gets it), then goodbye.
    pub fn on_close(&mut self) {
        self.flush_reports_for_close();
        let msg = FromWorker::Goodbye {
            worker_id: self.config.worker_id.clone(),
        };
        self.send(msg, Vec::new());
    }

    /// Queues a message to the scheduler.
    fn send(&mut self, msg: FromWorker, blobs: Vec<Vec<u8>>) {
        self.outbox.to_scheduler.push((msg, blobs));
    }

    fn register(&mut self, now: Instant) {
        let has = self.store.all_held();
        let msg = FromWorker::Register {
            protocol: PROTOCOL_VERSION,
            worker_id: self.config.worker_id.clone(),
            address: self.config.address.clone(),
            pid: self.config.pid,
            nthreads: self.config.nthreads,
            functions: self.config.functions.clone(),
            has,
        };
        self.send(msg, Vec::new());
        self.last_sent = Some(now);
    }

    fn heartbeat(&mut self, now: Instant) {
        let due = self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.heartbeat_interval);
        if !due {
            return;
        }
        if self.registered {
            let msg = FromWorker::Heartbeat {
                worker_id: self.config.worker_id.clone(),
            };
            self.send(msg, Vec::new());
            self.last_sent = Some(now);
        } else {
            self.register(now);
        }
    }

    /// A store that failed for good (a disk store after a write error) takes no more values:
    /// the worker retires, so the scheduler moves what it holds and sends it no more work.
    fn check_store(&mut self) {
        if let Some(why) = self.store.broken() {
            if !self.retire_requested {
                log::error!("the store failed for good ({why}); retiring this worker");
                self.retire_requested = true;
            }
        }
    }

    /// Starts retiring when asked; leaves when there is nothing to hand over (not
    /// registered) or the retirement took too long.
    fn check_retirement(&mut self, now: Instant) {
        if !self.retire_requested || self.outbox.leave {
            return;
        }
        match self.retiring_since {
            None if !self.registered => self.outbox.leave = true,
            None => {
                log::info!("retiring: handing data over to other workers");
                let msg = FromWorker::Retiring {
                    worker_id: self.config.worker_id.clone(),
                };
                self.send(msg, Vec::new());
                self.retiring_since = Some(now);
            }
            Some(since) if now.saturating_duration_since(since) > self.config.retire_timeout => {
                log::warn!(
                    "retiring took over {:?}; leaving anyway",
                    self.config.retire_timeout
                );
                self.outbox.leave = true;
            }
            Some(_) => {}
        }
    }
}
