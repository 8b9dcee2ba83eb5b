//! The scheduler's brain, with no I/O: [`SchedulerState`].
//!
//! Events come in through `on_*` methods (a worker registered, a batch of tasks finished, a
//! client asked for keys, time passed); the messages to send go out through an [`Outbox`] that
//! the thin ZeroMQ loop in `server.rs` drains. Nothing here touches a socket or a clock, so the
//! whole policy is tested deterministically (see `tests/`).
//!
//! # Model
//! Every key the scheduler knows is a `TaskState` with an id: computed or in flight, with its
//! node (its lineage) when it came from a graph. `who_has` is per task; `Worker::has` is its
//! inverse. A task stays while something still needs it: `waiters` counts the unfinished
//! dependents that need its value plus the computations (graphs) that want it as an output.
//! When that count falls to zero the task is forgotten, and its data released from workers,
//! unless it is `kept` (`keep_results`). So intermediates go as soon as nothing needs them, a
//! failed or cancelled computation leaves nothing behind, and keys shared between computations
//! (same key, same value, as in dask) are computed once.
//!
//! # Policy
//! Ready tasks run in priority order: computations in submission order, and within one, the
//! post-order of a depth-first walk from its outputs (close to dask's `order`: finish a branch
//! before starting the next, to keep memory low). A ready task goes to a worker that has its
//! functions and a free slot (`nthreads * saturation` tasks assigned), preferring the one that
//! already holds the most bytes of its inputs, then the least loaded.
//!
//! # Where each rule lives
//! One `impl SchedulerState` per file, each file one concept:
//!
//! | file | what it decides |
//! | --- | --- |
//! | `mod.rs` | the state ([`SchedulerState`]), [`Config`], [`Outbox`], ids; tick, shutdown |
//! | `tasks.rs` | what a task is (`TaskState`, `Lineage`, `Holders`); making tasks |
//! | `release.rs` | reference counts: when a task is forgotten, its data released; extra copies |
//! | `submit.rs` | a computation's graph: validation, reuse of held keys (`key_conflict`), tasks |
//! | `assign.rs` | ready queues, priority, placement (locality, load, slots), `compute` batches |
//! | `functions.rs` | function signatures; tasks no worker can run (stalled) |
//! | `lifecycle.rs` | a task done or failed; failures spreading to dependents and computations |
//! | `recompute.rs` | lost keys computed again from lineage |
//! | `workers.rs` | workers registering, reconnecting, falling silent, leaving, dying |
//! | `held.rs` | copies workers report holding; values adopted after a restart |
//! | `retire.rs` | workers leaving gracefully, their data moved first |
//! | `clients.rs` | handshake, `get`/`gather`, parked gets, `release`, clients gone or silent, progress |
//! | `futures.rs` | futures: `submit` into the live graph, who holds which key, events, cancel |
//! | `scatter.rs` | values clients store on workers |
//! | `gather.rs` | results delivered to computations, values collected from workers |
//! | `checks.rs` | bounded waits: unreported tasks checked, unanswered requests given up |
//! | `queries.rs` | what may be read: workers, who has a key, counts, `status`, computations, held keys |
//! | `stats.rs` | counters for the dashboard and metrics; the task stream; [`stats::Observation`] |
//!
//! The tests are in `tests/`, one file per concept, with a simulated cluster in `tests/sim.rs`.

use std::collections::{BinaryHeap, VecDeque};

// Fast hashing for the scheduler's tables (keys come from the cluster's own clients).
use indexmap::map::MutableKeys;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zask_core::graph::{Graph, Node, Nodes};
use zask_core::protocol::{
    ComputeTask, DataBody, ErrorInfo, ErrorKind, FromWorker, GetDataBody, KeyData, KeyEvent,
    KeyInfo, ReportBody, TaskDone, TaskFailed, ToClient, ToWorker, WorkerSummary, PROTOCOL_VERSION,
};
use zask_core::{DefHash, Keys, Value};

mod assign;
mod checks;
mod clients;
mod functions;
mod futures;
mod gather;
mod held;
mod lifecycle;
mod queries;
mod recompute;
mod release;
mod retire;
mod scatter;
pub mod stats;
mod submit;
mod tasks;
mod workers;

#[cfg(test)]
mod tests;

use assign::{ReadyEntry, ReadyQueue};
pub use clients::GetRequest;
use clients::{GraphState, Parked};
use gather::Gather;
use held::Claim;
use retire::Retirement;
use scatter::PendingScatter;
pub(crate) use tasks::{Lineage, TaskState, TaskStatus};
pub(crate) use workers::Worker;

/// A task's id inside this scheduler (never reused). A newtype, as the other ids are, so that
/// one kind of id cannot be passed for another; hashed and compared as the `u64` it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

/// A worker's id inside this scheduler (dense, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub(crate) u64);

/// A computation's (one `get`'s) id inside this scheduler, in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphId(pub(crate) u64);

impl TaskId {
    /// The id given after this one.
    fn next(self) -> TaskId {
        TaskId(self.0 + 1)
    }
}

impl WorkerId {
    /// The id given after this one.
    fn next(self) -> WorkerId {
        WorkerId(self.0 + 1)
    }
}

impl GraphId {
    /// The id given after this one.
    fn next(self) -> GraphId {
        GraphId(self.0 + 1)
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
/// A ZeroMQ routing id: who sent a message on a ROUTER socket, and where to answer.
pub type Route = Vec<u8>;

/// A key's name, shared by the task table, the task and its lineage (one copy each).
pub(crate) type Key = Arc<str>;

/// Tunables of the scheduler's policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// A worker not heard from for this long is considered dead.
    pub heartbeat_timeout: Duration,
    /// A computation submitted while no worker is registered waits this long for one.
    pub no_workers_timeout: Duration,
    /// Tasks assigned to a worker at once, per thread (more hides latency, fewer balances
    /// better).
    pub saturation: u32,
    /// Copies of a key kept once no running task needs more (extra copies made by peers
    /// fetching inputs are released).
    pub max_copies: usize,
    /// A task that was running on this many workers when they died is failed (it may be what
    /// kills them) instead of being retried.
    pub allowed_failures: u32,
    /// A client with computations in flight that is silent this long is considered gone; its
    /// computations are cancelled. (zask's client pings every 0.5 s while it waits.)
    pub client_timeout: Duration,
    /// A retiring worker leaves by then even if its data could not all be moved.
    pub retire_timeout: Duration,
    /// Send a task to the worker computing its only missing input, to wait there (so a chain
    /// needs no scheduler round trip per step).
    pub queue_dependents: bool,
    /// Work a worker may have queued per thread, for tasks of known duration (beyond
    /// `saturation` tasks): short tasks then travel and report in batches. Zero: only
    /// `saturation` counts.
    pub queue_budget: Duration,
    /// A value a registering worker holds that the scheduler does not know (it restarted, or
    /// the worker was cut off) is adopted and kept this long for a client to resubmit or
    /// gather it; then it is released unless something uses it.
    pub adopt_grace: Duration,
    /// A task assigned this long ago and not reported is checked: the worker is asked
    /// whether it runs, queues or holds it (one it does not know is assigned again).
    pub check_after: Duration,
    /// A worker that does not answer a request of the scheduler's (a task check, a
    /// `get_data`) within this long is taken to have lost what was asked: a task check
    /// unanswered removes the worker, a `get_data` unanswered drops its copies.
    pub answer_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            heartbeat_timeout: Duration::from_secs(5),
            no_workers_timeout: Duration::from_secs(30),
            saturation: 2,
            max_copies: 1,
            allowed_failures: 3,
            client_timeout: Duration::from_secs(10),
            retire_timeout: Duration::from_secs(30),
            queue_dependents: true,
            queue_budget: Duration::from_millis(5),
            adopt_grace: Duration::from_secs(60),
            check_after: Duration::from_secs(30),
            answer_timeout: Duration::from_secs(10),
        }
    }
}

/// Messages to send, collected while handling events. The loop drains it after each batch
/// of events, so everything for one worker leaves as one `compute` and one `release`.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Per worker (route), tasks to run.
    pub compute: HashMap<Route, Vec<ComputeTask>>,
    /// Per worker (route), keys to delete.
    pub release: HashMap<Route, Vec<String>>,
    /// Per worker (route), scattered values to store.
    pub put_data: HashMap<Route, Vec<KeyData>>,
    /// Other messages to workers, in order.
    pub to_workers: Vec<(Route, ToWorker)>,
    /// Messages to clients, in order; values are inline here and packed by the loop.
    pub to_clients: Vec<(Route, ToClient)>,
    /// Per client (route), news of the keys it holds futures for (one `events` message each).
    pub events: HashMap<Route, Vec<KeyEvent>>,
    /// Per worker (route), tasks nobody wants any more, by key and definition hash (sent
    /// before `compute`; see [`Outbox::settle_cancels`]).
    pub cancel: HashMap<Route, Vec<(String, DefHash)>>,
}

impl Outbox {
    /// A cancel and a compute of the same key and definition for the same worker in one
    /// turn cancel out: both are dropped (the loop calls this before sending; a cancel goes
    /// out before the computes, so it would otherwise reach the worker before the task it
    /// cancels). What the worker may hold of that definition from before is then the task's
    /// (the same definition). A cancel of another definition is sent, then the compute.
    pub fn settle_cancels(&mut self) {
        for (route, keys) in self.cancel.iter_mut() {
            let Some(tasks) = self.compute.get_mut(route) else {
                continue;
            };
            let cancelled: HashSet<(&str, DefHash)> =
                keys.iter().map(|(k, h)| (k.as_str(), *h)).collect();
            let mut dropped: HashSet<(String, DefHash)> = HashSet::default();
            tasks.retain(|t| {
                let keep = !cancelled.contains(&(t.key.as_str(), t.hash));
                if !keep {
                    dropped.insert((t.key.clone(), t.hash));
                }
                keep
            });
            drop(cancelled);
            keys.retain(|k| !dropped.contains(k));
        }
        self.cancel.retain(|_, keys| !keys.is_empty());
        self.compute.retain(|_, tasks| !tasks.is_empty());
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.compute.is_empty()
            && self.release.is_empty()
            && self.put_data.is_empty()
            && self.to_workers.is_empty()
            && self.to_clients.is_empty()
            && self.events.is_empty()
            && self.cancel.is_empty()
    }
}

/// The scheduler's whole state and policy.
pub struct SchedulerState {
    /// Unique per scheduler start; clients and workers notice restarts by it.
    pub(crate) id: String,
    config: Config,
    workers: HashMap<WorkerId, Worker>,
    worker_by_route: HashMap<Route, WorkerId>,
    next_worker: WorkerId,
    /// Boxed: the table's slots stay small (a big graph's table has twice as many slots as
    /// tasks).
    tasks: HashMap<TaskId, Box<TaskState>>,
    task_ids: HashMap<Key, TaskId>,
    next_task: TaskId,
    graphs: HashMap<GraphId, GraphState>,
    next_graph: GraphId,
    /// Ready tasks, one priority queue per function signature, so tasks that only busy
    /// workers can run never hide tasks an idle worker could.
    ready: HashMap<u32, ReadyQueue>,
    /// The distinct sets of functions tasks call (sorted), by signature.
    signatures: Vec<Vec<String>>,
    signature_ids: HashMap<Vec<String>, u32>,
    /// The signatures of exactly one function, by its name (the fast path of `signature_of`).
    single_signatures: HashMap<String, u32>,
    parked: Vec<Parked>,
    gathers: HashMap<u64, Gather>,
    next_gather: u64,
    /// How many registered workers offer each function.
    function_counts: HashMap<String, usize>,
    /// Scatters waiting for their values to be stored, by an id of ours.
    scatters: HashMap<u64, PendingScatter>,
    /// Scattered keys not yet stored → their scatter.
    scatter_of: HashMap<TaskId, u64>,
    next_scatter: u64,
    /// When each client was last heard from.
    clients_seen: HashMap<Route, Instant>,
    /// Workers leaving gracefully.
    retiring: HashMap<WorkerId, Retirement>,
    /// Average run time (µs) of tasks per function signature, from workers' reports.
    durations: HashMap<u32, f64>,
    /// Assignments made so far (orders tasks by when they were assigned).
    assignments: u64,
    /// Tasks that lost a claim (a dependent finished, a computation ended) and may now be
    /// forgotten: checked by [`SchedulerState::on_flushed`], after the turn's messages went
    /// out, so a result never waits behind the release of the graph that produced it.
    release_checks: Vec<TaskId>,
    /// Tasks with at least one holder (kept as holders come and go: `status` is O(1)).
    held: usize,
    /// The definition hashes of tasks without lineage (scattered or adopted values; a task
    /// with lineage has its hash there).
    given: HashMap<TaskId, DefHash>,
    /// Values adopted from registering workers and not claimed yet: kept until then.
    adopted: HashMap<TaskId, Instant>,
    /// The same, in the order their grace ends (checked from the front, so the tick costs
    /// nothing for a million adopted values; entries no longer in `adopted` are skipped).
    adopted_order: VecDeque<(Instant, TaskId)>,
    /// Ready tasks no registered worker can run (the functions they call went away with
    /// their workers): they wait for one, and since when something waited for them.
    stalled: HashMap<TaskId, Option<Instant>>,
    /// How many tasks use each signature (a signature no task uses is forgotten, so the
    /// table does not grow without bound).
    signature_users: Vec<u32>,
    /// Signature ids free to be given again.
    free_signatures: Vec<u32>,
    /// The checks of unreported tasks: the assignment count reached at each tick (to tell
    /// which tasks were assigned `check_after` ago), and the checks waiting for an answer.
    checks: checks::Checks,
    /// The futures clients hold.
    futures: futures::Futures,
    /// Computations whose progress is sent to their client.
    tracked: usize,
    /// Tasks were cancelled on their workers since the last `on_flushed`: slots are free.
    slots_freed: bool,
    /// Counters for the dashboard and metrics (`stats.rs`).
    stats: stats::Stats,
}

impl SchedulerState {
    /// A scheduler with no workers and no tasks.
    pub fn new(id: String, config: Config) -> SchedulerState {
        SchedulerState {
            id,
            config,
            workers: HashMap::default(),
            worker_by_route: HashMap::default(),
            next_worker: WorkerId(1),
            tasks: HashMap::default(),
            task_ids: HashMap::default(),
            next_task: TaskId(1),
            graphs: HashMap::default(),
            next_graph: GraphId(1),
            ready: HashMap::default(),
            signatures: Vec::new(),
            signature_ids: HashMap::default(),
            single_signatures: HashMap::default(),
            parked: Vec::new(),
            gathers: HashMap::default(),
            next_gather: 1,
            function_counts: HashMap::default(),
            scatters: HashMap::default(),
            scatter_of: HashMap::default(),
            next_scatter: 1,
            clients_seen: HashMap::default(),
            retiring: HashMap::default(),
            durations: HashMap::default(),
            assignments: 0,
            release_checks: Vec::new(),
            held: 0,
            given: HashMap::default(),
            adopted: HashMap::default(),
            adopted_order: VecDeque::new(),
            stalled: HashMap::default(),
            signature_users: Vec::new(),
            free_signatures: Vec::new(),
            checks: checks::Checks::default(),
            futures: futures::Futures::default(),
            tracked: 0,
            slots_freed: false,
            stats: stats::Stats::default(),
        }
    }

    /// Periodic work: declare silent workers dead, cancel the computations of silent clients,
    /// and run out every other clock (retirements, adopted values, stalled tasks, checks,
    /// parked gets).
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        self.expire_workers(now, out);
        self.expire_clients(now, out);
        self.check_retirements(now, out);
        self.expire_adopted(now, out);
        self.check_stalled(now, out);
        self.run_checks(now, out);
        self.expire_parked(now, out);
        self.send_progress(now, out);
    }

    /// The scheduler is shutting down: tell every worker and every waiting client.
    pub fn on_close(&mut self, out: &mut Outbox) {
        self.close_futures(out);
        for w in self.workers.values() {
            out.to_workers.push((w.route.clone(), ToWorker::Closing));
        }
        for (_, g) in self.graphs.drain() {
            out.to_clients.push((
                g.client,
                ToClient::Error {
                    request: g.request,
                    error: ErrorInfo::new(
                        ErrorKind::ShuttingDown,
                        "the scheduler is shutting down",
                    ),
                },
            ));
        }
        let shutting_down =
            ErrorInfo::new(ErrorKind::ShuttingDown, "the scheduler is shutting down");
        for p in std::mem::take(&mut self.parked) {
            p.fail(&shutting_down, out);
        }
        for (_, sc) in self.scatters.drain() {
            out.to_clients.push((
                sc.client,
                ToClient::Error {
                    request: sc.request,
                    error: ErrorInfo::new(
                        ErrorKind::ShuttingDown,
                        "the scheduler is shutting down",
                    ),
                },
            ));
        }
        self.scatter_of.clear();
    }
}

/// The batch for the worker at `route` in one of the outbox's per-worker maps, made if new.
/// Looked up by slice, so the route is copied once per batch, not once per item (a big
/// computation releases or assigns 100,000 keys in one turn). Always `Some`.
fn batch_of<'a, T>(map: &'a mut HashMap<Route, Vec<T>>, route: &[u8]) -> Option<&'a mut Vec<T>> {
    if !map.contains_key(route) {
        map.insert(route.to_vec(), Vec::new());
    }
    map.get_mut(route)
}
