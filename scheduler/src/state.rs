//! The scheduler's brain, with no I/O: [`SchedulerState`].
//!
//! Events come in through `on_*` methods (a worker registered, a batch of tasks finished, a
//! client asked for keys, time passed); the messages to send go out through an [`Outbox`] that
//! the thin ZeroMQ loop in `server.rs` drains. Nothing here touches a socket or a clock, so the
//! whole policy is tested deterministically below.
//!
//! # Model
//! Every key the scheduler knows is a [`TaskState`] with an id: computed or in flight, with its
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

use std::collections::{BinaryHeap, VecDeque};

// Fast hashing for the scheduler's tables (keys come from the cluster's own clients).
use indexmap::map::MutableKeys;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zask_core::graph::{Graph, Node, Nodes};
use zask_core::protocol::{
    ComputeTask, DataBody, ErrorInfo, ErrorKind, FromWorker, GetDataBody, KeyData, KeyInfo,
    ReportBody, TaskDone, TaskFailed, ToClient, ToWorker, WorkerSummary, PROTOCOL_VERSION,
};
use zask_core::{DefHash, Keys, Value};

/// A worker's id inside this scheduler (dense, never reused).
pub type WorkerId = u64;
/// A task's id inside this scheduler (never reused).
pub type TaskId = u64;
/// A computation's (one `get`'s) id inside this scheduler.
pub type GraphId = u64;
/// A ZeroMQ routing id: who sent a message on a ROUTER socket, and where to answer.
pub type Route = Vec<u8>;
/// A key's name, shared by the task table, the task and its lineage (one copy each).
pub type Key = Arc<str>;

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
}

impl Outbox {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.compute.is_empty()
            && self.release.is_empty()
            && self.put_data.is_empty()
            && self.to_workers.is_empty()
            && self.to_clients.is_empty()
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStatus {
    /// Some dependencies are not in memory yet.
    Waiting,
    /// All dependencies are in memory; queued for a worker.
    Ready,
    /// Assigned to this worker.
    Processing(WorkerId),
    /// Held by the workers in `who_has`.
    Memory,
    /// Failed (or a dependency failed). The computations wanting it are failed at once, and
    /// it is forgotten as soon as nothing refers to it any more.
    Erred(Box<ErrorInfo>),
}

/// One key the scheduler knows.
#[derive(Debug)]
pub struct TaskState {
    pub key: Key,
    /// How it is computed, and how its inputs are (None for scattered data).
    pub lineage: Option<Arc<Lineage>>,
    pub status: TaskStatus,
    /// Distinct dependencies.
    pub deps: Vec<TaskId>,
    /// Tasks that listed this one as a dependency (may include finished or forgotten ones).
    /// Usually one or two, kept inline (no allocation per task of a wide fan-in).
    pub dependents: Dependents,
    /// Dependencies not yet in memory.
    pub waiting_on: u32,
    /// Unfinished dependents needing the value, plus computations wanting it as an output.
    pub waiters: u32,
    /// Whether this task's own claims on its dependencies were dropped already.
    pub deps_done: bool,
    /// Keep the data even when nothing waits on it (`keep_results`).
    pub kept: bool,
    /// Computations that want this key as an output.
    pub wanted_by: Vec<GraphId>,
    /// Workers holding the value.
    pub who_has: Holders,
    /// Size of the value, once known.
    pub nbytes: u64,
    /// Which set of functions the node calls (an index into the scheduler's signature
    /// table; a worker must offer all of them). Ready tasks queue per signature.
    pub signature: u32,
    /// Lower runs first: (computation sequence, position in it).
    pub priority: (u64, u64),
    /// How often a worker failed to fetch this task's inputs (bounded retries).
    pub fetch_retries: u32,
    /// How many workers died while running it (past `Config::allowed_failures`, it fails).
    pub deaths: u32,
    /// When it was last assigned (a counter), to tell running tasks from queued ones.
    pub assigned: u64,
}

/// The tasks depending on one task (see `TaskState::dependents`).
pub type Dependents = SmallVec<[TaskId; 2]>;

impl TaskState {
    /// Records that task `dependent` needs this one's value; true if it has to wait for it.
    fn claim_for(&mut self, dependent: TaskId) -> bool {
        self.waiters += 1;
        self.dependents.push(dependent);
        self.status != TaskStatus::Memory
    }

    /// Its definition hash: its lineage's, or for a value without lineage (this is task `tid`)
    /// the one it was given with, in `given`.
    fn definition(&self, tid: TaskId, given: &HashMap<TaskId, DefHash>) -> Option<DefHash> {
        match &self.lineage {
            Some(l) => Some(l.hash),
            None => given.get(&tid).copied(),
        }
    }
}

/// How a key is computed: its node, and the lineage of the inputs it was computed from.
///
/// A task keeps its lineage while it lives, so a key lost with a worker can be computed again
/// even when its inputs were released long ago: they are re-created from here, recursively.
/// Inputs without lineage (scattered data) are not listed; losing them is an error.
#[derive(Debug)]
pub struct Lineage {
    pub key: Key,
    pub node: Arc<Node>,
    pub deps: Vec<Arc<Lineage>>,
    /// The key's definition hash (its node's, combined with its inputs').
    pub hash: DefHash,
}

impl Lineage {
    /// The lineage of each input that has one, by key (a task over a million inputs is
    /// re-linked in linear time, not by a search per input).
    fn deps_by_key(&self) -> HashMap<&str, &Arc<Lineage>> {
        self.deps.iter().map(|d| (&*d.key, d)).collect()
    }
}

impl Drop for Lineage {
    /// Iterative: dropping the last task of a 100,000-link chain must not recurse 100,000
    /// times through its inputs' lineage.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.deps);
        while let Some(dep) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(dep) {
                stack.append(&mut inner.deps);
            }
        }
    }
}

/// The workers holding a key: usually one or two, kept inline (no allocation for each of a
/// million keys; a hash set would cost several times the memory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holders(SmallVec<[WorkerId; 2]>);

impl Holders {
    /// Adds `w`; false if it was there already.
    pub fn insert(&mut self, w: WorkerId) -> bool {
        if self.0.contains(&w) {
            return false;
        }
        self.0.push(w);
        true
    }
    /// Removes `w`; false if it was not there.
    pub fn remove(&mut self, w: &WorkerId) -> bool {
        match self.0.iter().position(|x| x == w) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }
    pub fn contains(&self, w: &WorkerId) -> bool {
        self.0.contains(w)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, WorkerId> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a WorkerId;
    type IntoIter = std::slice::Iter<'a, WorkerId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A registered worker.
#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    pub route: Route,
    pub worker_id: String,
    /// Shared: listed in `who_has` for every input a task fetches from this worker.
    pub address: Arc<str>,
    pub pid: u32,
    pub nthreads: u32,
    pub functions: HashSet<String>,
    pub last_seen: Instant,
    /// Tasks assigned and not reported.
    pub processing: HashSet<TaskId>,
    /// Keys held.
    pub has: HashSet<TaskId>,
    /// Total size of the keys held.
    pub nbytes: u64,
    /// Leaving gracefully: no new tasks; its unique data is moving to other workers.
    pub retiring: bool,
    /// Its tasks assigned up to this assignment count were asked about already (see
    /// `checks.rs`).
    pub checked_upto: u64,
}

/// A worker leaving gracefully.
#[derive(Debug)]
struct Retirement {
    /// It leaves by then, whether or not everything moved.
    deadline: Instant,
    /// The clients that asked for it (answered when it is gone).
    asked_by: Vec<(Route, u64)>,
    /// Keys already asked to be copied elsewhere, the worker asked and when (asked again if
    /// that worker goes away, or has not reported the copy within `RECOPY_AFTER`).
    requested: HashMap<TaskId, (WorkerId, Instant)>,
}

/// One `get` in flight.
#[derive(Debug)]
struct GraphState {
    client: Route,
    request: u64,
    outputs: Vec<TaskId>,
    values: HashMap<String, Value>,
    keep_results: bool,
}

/// A client's request to compute `keys` of `graph` (a `get`, parsed).
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The client's request id, for the reply.
    pub request: u64,
    pub graph: Graph,
    /// Each node's own hash, by index, as the decoder computed them (empty: computed at
    /// submission).
    pub hashes: Vec<DefHash>,
    pub keys: Keys,
    /// Leave the results on the workers.
    pub keep_results: bool,
}

/// A `get` waiting for the first worker to register.
#[derive(Debug)]
struct Parked {
    client: Route,
    get: GetRequest,
    deadline: Instant,
}

/// A `get_data` sent to a worker to collect outputs it holds.
#[derive(Debug)]
struct Gather {
    worker: WorkerId,
    keys: Vec<TaskId>,
    /// When it was sent, as the first tick after it saw it (unanswered after
    /// `answer_timeout`, plus time for its size, the copies count as lost).
    sent: Option<Instant>,
    /// How many times it was sent again, unanswered (for values only that worker holds).
    attempts: u32,
    /// How much its values weigh, in bytes (worked out when `sent` is).
    nbytes: u64,
}

/// The scheduler's whole state and policy.
pub struct SchedulerState {
    /// Unique per scheduler start; clients and workers notice restarts by it.
    pub id: String,
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
}

/// A client's `scatter` waiting for workers to store its values.
#[derive(Debug)]
struct PendingScatter {
    client: Route,
    request: u64,
    keys: Vec<String>,
    remaining: usize,
}

/// An entry of the ready queue (a max-heap, so the ordering is reversed).
#[derive(Debug, PartialEq, Eq)]
struct ReadyEntry {
    priority: (u64, u64),
    task: TaskId,
}

impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(other.task.cmp(&self.task))
    }
}

impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A submitted graph failed validation.
type Invalid = ErrorInfo;

/// Ready tasks by priority. Tasks ready when their computation arrives come in priority
/// order (a graph's tasks are created in it), so they go to a plain queue in O(1); tasks that
/// become ready later go to a heap. Popping takes the better of the two heads. (A million
/// tasks in a heap alone cost a cache-missing O(log n) each.)
#[derive(Debug, Default)]
struct ReadyQueue {
    run: VecDeque<ReadyEntry>,
    heap: BinaryHeap<ReadyEntry>,
}

impl ReadyQueue {
    fn push(&mut self, entry: ReadyEntry) {
        match self.run.back() {
            Some(last) if entry.priority < last.priority => self.heap.push(entry),
            _ => self.run.push_back(entry),
        }
    }

    fn peek(&self) -> Option<&ReadyEntry> {
        match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(b)) => Some(if a.priority <= b.priority { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn pop(&mut self) -> Option<ReadyEntry> {
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(b)) => a.priority <= b.priority,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_run {
            self.run.pop_front()
        } else {
            self.heap.pop()
        }
    }

    fn is_empty(&self) -> bool {
        self.run.is_empty() && self.heap.is_empty()
    }
}

/// The least a task is assumed to cost, whatever its function's own time: about a worker's
/// CPU per task for the message, the store and the report (measured at 1.5-2.5 µs), so a
/// worker thread holds up to 1,000 tiny tasks (`queue_budget` 5 ms / 2.5 µs = 2,000, capped
/// at `MAX_TASKS_PER_THREAD`): enough to stay busy while its reports travel.
const TASK_FLOOR_US: f64 = 2.5;
/// Tasks per thread a worker may hold at the most.
const MAX_TASKS_PER_THREAD: u32 = 1_000;
/// Threads a worker may declare (more is taken as this many).
const MAX_THREADS: u32 = 4_096;
/// Function signatures kept before the unused ones are forgotten.
const SIGNATURES_KEPT: usize = 1024;
/// A copy asked of a worker for a retirement and not reported by then is asked again.
const RECOPY_AFTER: Duration = Duration::from_secs(12);

impl SchedulerState {
    /// A scheduler with no workers and no tasks.
    pub fn new(id: String, config: Config) -> SchedulerState {
        SchedulerState {
            id,
            config,
            workers: HashMap::default(),
            worker_by_route: HashMap::default(),
            next_worker: 1,
            tasks: HashMap::default(),
            task_ids: HashMap::default(),
            next_task: 1,
            graphs: HashMap::default(),
            next_graph: 1,
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
        }
    }

    /// The definition hash of task `tid`.
    fn hash_of(&self, tid: TaskId) -> Option<DefHash> {
        self.tasks.get(&tid)?.definition(tid, &self.given)
    }

    // ----- queries -------------------------------------------------------------------------

    /// The registered workers, for clients and tests.
    pub fn workers(&self, now: Instant) -> Vec<WorkerSummary> {
        let mut list: Vec<WorkerSummary> = self
            .workers
            .values()
            .map(|w| {
                let mut functions: Vec<String> = w.functions.iter().cloned().collect();
                functions.sort();
                WorkerSummary {
                    address: w.address.to_string(),
                    worker_id: w.worker_id.clone(),
                    pid: w.pid,
                    nthreads: w.nthreads,
                    functions,
                    keys: w.has.len() as u64,
                    nbytes: w.nbytes,
                    processing: w.processing.len() as u64,
                    last_seen_ms: now.saturating_duration_since(w.last_seen).as_millis() as u64,
                }
            })
            .collect();
        list.sort_by(|a, b| a.address.cmp(&b.address));
        list
    }

    /// The addresses of the workers holding `key` (empty when nobody does).
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let Some(t) = self.task_ids.get(key).and_then(|id| self.tasks.get(id)) else {
            return Vec::new();
        };
        let mut holders: Vec<String> = t
            .who_has
            .iter()
            .filter_map(|w| self.workers.get(w).map(|w| w.address.to_string()))
            .collect();
        holders.sort();
        holders
    }

    /// How many tasks (in flight or held) the scheduler tracks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// How many computations are in flight.
    pub fn graph_count(&self) -> usize {
        self.graphs.len()
    }

    /// How many keys are held on workers.
    pub fn held_count(&self) -> usize {
        self.held
    }

    /// `held_count` counted the slow way, to check the counter in tests.
    #[cfg(test)]
    fn held_by_scan(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| !t.who_has.is_empty())
            .count()
    }

    // ----- workers -------------------------------------------------------------------------

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
                    self.on_held(wid, info, Claim::Fetched, now, out);
                }
                for d in done {
                    self.on_task_done(wid, d, out);
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

    fn worker_address(&self, wid: WorkerId) -> String {
        self.workers
            .get(&wid)
            .map(|w| w.address.to_string())
            .unwrap_or_else(|| format!("#{wid}"))
    }

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
        if let Some(wid) = existing {
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
            self.resync_worker(wid, reg.has, now, out);
            self.schedule(out);
            return;
        }
        // A new process at an address we know: the old one is gone.
        let stale: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| *w.address == *reg.address || w.route == route)
            .map(|w| w.id)
            .collect();
        let address = reg.address.clone();
        let wid = self.next_worker;
        self.next_worker += 1;
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

    /// A task its worker does not have (its message, or the worker's state, was lost): one
    /// with a lineage is given again; a scattered value, which only its client has, fails as
    /// `lost` (the message says it `why`).
    fn assign_again(&mut self, tid: TaskId, why: &str, out: &mut Outbox) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        if t.lineage.is_some() {
            self.rewait(tid);
            return;
        }
        let error = ErrorInfo::new(
            ErrorKind::Lost,
            format!("scattered key {:?} {why}; scatter it again", t.key),
        )
        .with_key(&t.key);
        self.fail_lost(tid, error, out);
    }

    /// Sends the gathers pending on worker `wid` again (to whichever holder is best now): it
    /// went away, or its answers may have been lost.
    fn regather_from(&mut self, wid: WorkerId, out: &mut Outbox) {
        let pending: Vec<u64> = self
            .gathers
            .iter()
            .filter(|(_, g)| g.worker == wid)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            if let Some(g) = self.gathers.remove(&id) {
                self.gather(g.keys, out);
            }
        }
    }

    /// Worker `wid` holds `info.key` (it registered with it, or fetched it from a peer): record
    /// the copy if it is the key's current definition and is wanted, otherwise ask the worker
    /// to drop it. A copy of a key still being computed (or waiting for a worker that can
    /// compute it) makes it held at once. A registered copy of a key the scheduler does not
    /// know (it restarted, or forgot the key while the worker was away) is adopted for
    /// `adopt_grace`, so a client that resubmits or gathers finds it.
    fn on_held(
        &mut self,
        wid: WorkerId,
        info: KeyInfo,
        claim: Claim,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(&tid) = self.task_ids.get(info.key.as_str()) else {
            match claim {
                Claim::Registered => self.adopt(wid, info, now),
                Claim::Fetched => self.send_release(wid, info.key, out),
            }
            return;
        };
        // One look at the task: its definition, whether the copy was asked for, its status.
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        let hash = t.definition(tid, &self.given);
        if hash != Some(info.hash) {
            log::info!(
                "worker {} holds a copy of {:?} from another definition; it drops it",
                self.worker_address(wid),
                info.key
            );
            self.send_release(wid, info.key, out);
            return;
        }
        if claim == Claim::Fetched && !self.asked_to_fetch(wid, tid, t) {
            log::warn!(
                "worker {} reported a copy of {:?} it was not asked to fetch; ignoring it",
                self.worker_address(wid),
                info.key
            );
            if !t.who_has.contains(&wid) {
                self.send_release(wid, info.key, out);
            }
            return;
        }
        let became_memory = match &t.status {
            TaskStatus::Memory => false,
            TaskStatus::Waiting | TaskStatus::Ready => true,
            // Being computed elsewhere: the copy held is the same definition's value.
            TaskStatus::Processing(_) => true,
            TaskStatus::Erred(_) => {
                self.send_release(wid, info.key, out);
                return;
            }
        };
        self.add_holder(tid, wid, info.nbytes);
        if became_memory {
            if let Some(TaskStatus::Processing(other)) = self.tasks.get(&tid).map(|t| &t.status) {
                let other = *other;
                if let Some(w) = self.workers.get_mut(&other) {
                    w.processing.remove(&tid);
                }
            }
            self.stalled.remove(&tid);
            self.task_in_memory(tid, None, out);
        }
    }

    /// Whether worker `wid` was asked to fetch `tid`: an input of a task it was given, or a
    /// copy asked of it for a retirement.
    fn asked_to_fetch(&self, wid: WorkerId, tid: TaskId, t: &TaskState) -> bool {
        t.dependents.iter().any(|d| {
            self.tasks
                .get(d)
                .is_some_and(|dt| matches!(dt.status, TaskStatus::Processing(w) if w == wid))
        }) || self.retiring.values().any(|r| {
            r.requested
                .get(&tid)
                .is_some_and(|(target, _)| *target == wid)
        })
    }

    /// Records a value without lineage (scattered, or adopted from a worker) under `key`, with
    /// the definition hash it was given: nothing to wait for, kept until released. One being
    /// stored on a worker (`Processing`) counts as the latest assignment (it is checked).
    fn insert_value(
        &mut self,
        key: Key,
        hash: DefHash,
        status: TaskStatus,
        nbytes: u64,
        signature: u32,
    ) -> TaskId {
        let tid = self.next_task;
        self.next_task += 1;
        self.use_signature(signature);
        self.task_ids.insert(key.clone(), tid);
        self.given.insert(tid, hash);
        let assigned = match status {
            TaskStatus::Processing(_) => self.assignments,
            _ => 0,
        };
        self.tasks.insert(
            tid,
            Box::new(TaskState {
                key,
                lineage: None,
                status,
                deps: Vec::new(),
                dependents: Dependents::new(),
                waiting_on: 0,
                waiters: 0,
                deps_done: true,
                kept: true,
                wanted_by: Vec::new(),
                who_has: Holders::default(),
                nbytes,
                signature,
                priority: (0, 0),
                fetch_retries: 0,
                deaths: 0,
                assigned,
            }),
        );
        tid
    }

    /// Takes in a value a registering worker holds under a key the scheduler does not know:
    /// a task without lineage, held there and kept until `adopt_grace` from `now` (or until
    /// a gather claims it).
    fn adopt(&mut self, wid: WorkerId, info: KeyInfo, now: Instant) {
        let key: Key = Arc::from(info.key.as_str());
        let signature = self.signature_of(&Node::Literal(Value::Nil));
        let tid = self.insert_value(key, info.hash, TaskStatus::Memory, info.nbytes, signature);
        let until = now + self.config.adopt_grace;
        self.adopted.insert(tid, until);
        self.adopted_order.push_back((until, tid));
        self.add_holder(tid, wid, info.nbytes);
        log::debug!(
            "adopted {:?} held by worker {}",
            info.key,
            self.worker_address(wid)
        );
    }

    /// Adopted values whose grace period ended, unclaimed: no longer kept (released unless a
    /// computation uses them).
    fn expire_adopted(&mut self, now: Instant, out: &mut Outbox) {
        let mut expired: Vec<TaskId> = Vec::new();
        while let Some(&(until, tid)) = self.adopted_order.front() {
            if now < until {
                break;
            }
            self.adopted_order.pop_front();
            if self.adopted.get(&tid) == Some(&until) {
                expired.push(tid);
            }
        }
        if !expired.is_empty() {
            log::info!(
                "releasing {} adopted value(s) nobody claimed within {:?}",
                expired.len(),
                self.config.adopt_grace
            );
        }
        for tid in expired {
            self.adopted.remove(&tid);
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.kept = false;
            }
            self.check_release(tid, out);
        }
    }

    fn add_holder(&mut self, tid: TaskId, wid: WorkerId, nbytes: u64) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        t.nbytes = nbytes;
        if t.who_has.insert(wid) {
            if t.who_has.len() == 1 {
                self.held += 1;
            }
            if let Some(w) = self.workers.get_mut(&wid) {
                w.has.insert(tid);
                w.nbytes += nbytes;
            }
        }
    }

    fn send_release(&mut self, wid: WorkerId, key: String, out: &mut Outbox) {
        if let Some(w) = self.workers.get(&wid) {
            if let Some(batch) = batch_of(&mut out.release, &w.route) {
                batch.push(key);
            }
        }
    }

    /// Worker `wid` finished task `done.key`. Taken only from the worker the task is assigned
    /// to, while it is: any other report (a task it was never given, one taken from it since,
    /// a duplicate) is logged and ignored, and the worker drops the value unless it is a
    /// known holder of it.
    fn on_task_done(&mut self, wid: WorkerId, done: TaskDone, out: &mut Outbox) {
        let Some(&tid) = self.task_ids.get(done.key.as_str()) else {
            // Nobody wants it any more (its computation was cancelled and forgotten).
            self.send_release(wid, done.key, out);
            return;
        };
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        if !matches!(t.status, TaskStatus::Processing(w) if w == wid) {
            if !t.who_has.contains(&wid) {
                log::warn!(
                    "worker {} reported task {:?}, which is not assigned to it; ignoring it",
                    self.worker_address(wid),
                    done.key
                );
                self.send_release(wid, done.key, out);
            }
            return;
        }
        let hash = t.definition(tid, &self.given);
        let signature = t.signature;
        if hash != Some(done.hash) {
            // A run of another definition of the key (one taken back from this worker, which
            // ran it all the same, and reported it before the task of the current definition
            // reached it): not this task's result. The worker has that task now (it replaces
            // the value of another definition when it takes it), so nothing is sent: a release
            // could delete the current value, sent again the task would run twice.
            log::warn!(
                "worker {} reported {:?} computed from another definition; ignoring it",
                self.worker_address(wid),
                done.key
            );
            return;
        }
        let sample = done.duration_us as f64;
        let avg = self.durations.entry(signature).or_insert(sample);
        *avg = 0.8 * *avg + 0.2 * sample;
        if let Some(worker) = self.workers.get_mut(&wid) {
            worker.processing.remove(&tid);
        }
        self.add_holder(tid, wid, done.nbytes);
        let value = done.data.map(|d| d.value);
        self.task_in_memory(tid, value, out);
    }

    /// A task's value is now held somewhere: wake its dependents, deliver it to waiting
    /// computations, and drop its own claims on its dependencies.
    fn task_in_memory(&mut self, tid: TaskId, value: Option<Value>, out: &mut Outbox) {
        let (dependents, wanted_by, key) = {
            let Some(t) = self.tasks.get_mut(&tid) else {
                return;
            };
            t.status = TaskStatus::Memory;
            // Taken for the loop below (which changes only the dependents) and put back.
            (
                std::mem::take(&mut t.dependents),
                t.wanted_by.clone(),
                t.key.clone(),
            )
        };
        for &d in &dependents {
            let woken = match self.tasks.get_mut(&d) {
                // (Ids are never reused, so every listed dependent does depend on `tid`.)
                Some(dt) if dt.status == TaskStatus::Waiting => {
                    dt.waiting_on = dt.waiting_on.saturating_sub(1);
                    dt.waiting_on == 0
                }
                _ => false,
            };
            if woken {
                self.push_ready(d);
            }
        }
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.dependents = dependents;
        }
        self.scatter_stored(tid, out);
        // Its own claims go first: delivering may complete a computation and forget the task.
        self.drop_dep_claims(tid);
        if !wanted_by.is_empty() {
            match value {
                Some(v) => self.deliver(tid, &key, v, out),
                None => self.gather(vec![tid], out),
            }
        }
        self.check_release(tid, out);
    }

    /// Worker `wid` could not finish task `failed.key`. Taken only from the worker the task
    /// is assigned to, while it is (an unsolicited failure must not fail another client's
    /// task).
    fn on_task_failed(&mut self, wid: WorkerId, failed: TaskFailed, out: &mut Outbox) {
        let Some(&tid) = self.task_ids.get(failed.key.as_str()) else {
            return;
        };
        if self.tasks.get(&tid).map(|t| &t.status) != Some(&TaskStatus::Processing(wid)) {
            log::warn!(
                "worker {} reported a failure of task {:?}, which is not assigned to it; \
                 ignoring it",
                self.worker_address(wid),
                failed.key
            );
            return;
        }
        if failed.hash.is_some() && failed.hash != self.hash_of(tid) {
            log::warn!(
                "worker {} reported a failure of another definition of {:?}; ignoring it",
                self.worker_address(wid),
                failed.key
            );
            return;
        }
        // Whatever the worker may have kept of it (a result it reported unreadably) goes.
        self.send_release(wid, failed.key.clone(), out);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.processing.remove(&tid);
        }
        if failed.kind == ErrorKind::MissingDependency && self.retry_missing(tid, &failed, out) {
            return;
        }
        let error = ErrorInfo {
            kind: failed.kind.clone(),
            message: match &failed.function {
                Some(f) => format!("task {:?} ({f}) failed: {}", failed.key, failed.message),
                None => format!("task {:?} failed: {}", failed.key, failed.message),
            },
            key: Some(failed.key.clone()),
            function: failed.function.clone(),
            dependency: None,
        };
        log::debug!("{}", error.message);
        self.fail_task(tid, error, out);
    }

    /// A worker could not fetch an input from any holder we named. Forget those copies
    /// (recomputing the input if no copy is left) and run the task again, a few times at most.
    /// With no input named (the worker found one of another definition than it was given
    /// with), the task is only given again. Returns false when the task should fail instead.
    fn retry_missing(&mut self, tid: TaskId, failed: &TaskFailed, out: &mut Outbox) -> bool {
        const MAX_FETCH_RETRIES: u32 = 3;
        let dep = match failed.missing.as_deref() {
            Some(k) => match self.task_ids.get(k) {
                Some(&dep) => Some(dep),
                None => return false,
            },
            None => None,
        };
        match self.tasks.get_mut(&tid) {
            Some(t) if t.fetch_retries < MAX_FETCH_RETRIES => t.fetch_retries += 1,
            _ => return false,
        }
        let Some(dep) = dep else {
            self.rewait(tid);
            return true;
        };
        // The worker tried every holder we named, and does not hold it itself: none of the
        // copies we know of could be had (even one we believed was on that worker).
        let holders: Vec<WorkerId> = self
            .tasks
            .get(&dep)
            .map(|t| t.who_has.iter().copied().collect())
            .unwrap_or_default();
        for h in holders {
            self.remove_holder(dep, h);
        }
        self.recompute_lost(dep, out);
        self.rewait(tid);
        true
    }

    /// Records that worker `wid` no longer holds `tid`.
    fn remove_holder(&mut self, tid: TaskId, wid: WorkerId) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if t.who_has.remove(&wid) {
            if t.who_has.is_empty() {
                self.held -= 1;
            }
            if let Some(w) = self.workers.get_mut(&wid) {
                w.has.remove(&tid);
                w.nbytes = w.nbytes.saturating_sub(t.nbytes);
            }
        }
    }

    /// Marks `tid` and everything depending on it as failed, and fails every computation that
    /// wants one of them: with `error` if it wants `tid` itself, with a `dependency_failed`
    /// naming the key it wants and `tid` as the input that failed otherwise.
    fn fail_task(&mut self, tid: TaskId, error: ErrorInfo, out: &mut Outbox) {
        let mut stack = vec![(tid, error.clone())];
        let mut failed_graphs: Vec<(GraphId, ErrorInfo)> = Vec::new();
        while let Some((id, err)) = stack.pop() {
            let Some(t) = self.tasks.get_mut(&id) else {
                continue;
            };
            if matches!(t.status, TaskStatus::Memory | TaskStatus::Erred(_)) {
                continue;
            }
            if let TaskStatus::Processing(w) = t.status {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&id);
                }
            }
            failed_graphs.extend(t.wanted_by.iter().map(|g| (*g, err.clone())));
            let dependents = t.dependents.clone();
            for &d in &dependents {
                if let Some(dt) = self.tasks.get(&d) {
                    stack.push((d, dependency_failed(&dt.key, &error)));
                }
            }
            let t = self.tasks.get_mut(&id);
            if let Some(t) = t {
                t.status = TaskStatus::Erred(Box::new(err));
            }
            self.stalled.remove(&id);
            if let Some(sid) = self.scatter_of.remove(&id) {
                if let Some(sc) = self.scatters.remove(&sid) {
                    out.to_clients.push((
                        sc.client,
                        ToClient::Error {
                            request: sc.request,
                            error: error.clone(),
                        },
                    ));
                }
            }
        }
        for (g, err) in failed_graphs {
            self.fail_graph(g, err, out);
        }
        self.drop_dep_claims(tid);
        self.check_release(tid, out);
    }

    /// Ends computation `g` with `error` and lets go of everything it wanted.
    fn fail_graph(&mut self, g: GraphId, error: ErrorInfo, out: &mut Outbox) {
        let Some(graph) = self.graphs.remove(&g) else {
            return;
        };
        out.to_clients.push((
            graph.client.clone(),
            ToClient::Error {
                request: graph.request,
                error,
            },
        ));
        self.drop_graph_claims(g, &graph.outputs, false);
    }

    fn drop_graph_claims(&mut self, g: GraphId, outputs: &[TaskId], keep: bool) {
        for &tid in outputs {
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.wanted_by.retain(|x| *x != g);
                t.waiters = t.waiters.saturating_sub(1);
                if keep && t.status == TaskStatus::Memory {
                    t.kept = true;
                    self.adopted.remove(&tid);
                }
            }
            self.release_checks.push(tid);
        }
    }

    /// Drops `tid`'s claims on its dependencies (once): it has its value, or never will.
    /// Whether they can be forgotten is checked after the flush (see `release_checks`).
    fn drop_dep_claims(&mut self, tid: TaskId) {
        let mut checks = std::mem::take(&mut self.release_checks);
        self.take_dep_claims(tid, &mut checks);
        self.release_checks = checks;
    }

    /// The loop sent the outbox: forget what lost its last claim during the turn, releasing
    /// its data from workers (the releases go out with the next flush). Until then such a
    /// task stays known, so a computation submitted meanwhile reuses its value.
    pub fn on_flushed(&mut self, out: &mut Outbox) {
        for tid in std::mem::take(&mut self.release_checks) {
            self.check_release(tid, out);
        }
    }

    /// Marks `tid`'s claims on its dependencies dropped and appends the dependencies to check
    /// to `into` (nothing if they were dropped already; no copy of a wide task's inputs).
    fn take_dep_claims(&mut self, tid: TaskId, into: &mut Vec<TaskId>) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if t.deps_done {
            return;
        }
        t.deps_done = true;
        let start = into.len();
        into.extend_from_slice(&t.deps);
        for d in &into[start..] {
            if let Some(dt) = self.tasks.get_mut(d) {
                dt.waiters = dt.waiters.saturating_sub(1);
            }
        }
    }

    /// Forgets `tid` if nothing needs it any more, releasing its data from workers, and
    /// then whatever only it needed (iteratively: a long chain does not recurse).
    fn check_release(&mut self, tid: TaskId, out: &mut Outbox) {
        // Allocated only when forgetting `tid` frees its inputs (a still-needed task, the
        // common case, costs no allocation).
        let mut stack = Vec::new();
        let mut next = Some(tid);
        while let Some(id) = next.take().or_else(|| stack.pop()) {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if t.waiters > 0 || t.kept {
                self.trim_copies(id, out);
                continue;
            }
            match &t.status {
                // It will come back; it is released when it does.
                TaskStatus::Processing(_) => continue,
                TaskStatus::Waiting | TaskStatus::Ready | TaskStatus::Erred(_) => {
                    self.take_dep_claims(id, &mut stack);
                }
                TaskStatus::Memory => {}
            }
            self.forget(id, out);
        }
    }

    /// Removes `tid` from the scheduler and its data from every holder.
    fn forget(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(t) = self.tasks.remove(&tid) else {
            return;
        };
        self.task_ids.remove(&t.key);
        self.unuse_signature(t.signature);
        if t.lineage.is_none() {
            self.given.remove(&tid);
            self.adopted.remove(&tid);
        }
        if !self.stalled.is_empty() {
            self.stalled.remove(&tid);
        }
        if !t.who_has.is_empty() {
            self.held -= 1;
        }
        for w in &t.who_has {
            if let Some(worker) = self.workers.get_mut(w) {
                worker.has.remove(&tid);
                worker.nbytes = worker.nbytes.saturating_sub(t.nbytes);
                if let Some(batch) = batch_of(&mut out.release, &worker.route) {
                    batch.push(String::from(&*t.key));
                }
            }
        }
    }

    /// Removes a worker (gone, dead or replaced): its running tasks go back to the queue, and
    /// keys only it held are recomputed from their lineage when still needed. When it `died`,
    /// its running tasks are suspects: one that has now seen `allowed_failures` workers die
    /// under it fails instead of killing more.
    fn remove_worker(&mut self, wid: WorkerId, died: bool, out: &mut Outbox) {
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
                        t.status = TaskStatus::Waiting;
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

    /// `tid`'s only copy may be gone. If it is (in memory with no holder) and something still
    /// needs it, it is computed again from its lineage, and every unfinished task that needs it
    /// waits for it again; without lineage or inputs, whoever waits gets an error.
    fn recompute_lost(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        if t.status != TaskStatus::Memory || !t.who_has.is_empty() {
            return; // Not lost, or already being recomputed.
        }
        if t.waiters == 0 && !t.kept {
            self.forget(tid, out);
            return;
        }
        let key = t.key.clone();
        if t.lineage.is_none() {
            let error = ErrorInfo::new(
                ErrorKind::Lost,
                format!(
                    "key {key:?} was lost with the worker holding it and cannot be recomputed \
                     (it was scattered data, not computed from a graph); scatter it again"
                ),
            )
            .with_key(&key);
            self.fail_lost(tid, error, out);
            return;
        }
        if t.deps_done {
            // Its inputs may have been released since: re-create those, and claim them again.
            match self.relink_inputs(tid) {
                Ok(deps) => {
                    for d in &deps {
                        if let Some(dt) = self.tasks.get_mut(d) {
                            dt.waiters += 1;
                            if !dt.dependents.contains(&tid) {
                                dt.dependents.push(tid);
                            }
                        }
                    }
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        t.deps = deps;
                        t.deps_done = false;
                    }
                }
                Err(error) => {
                    self.fail_lost(tid, error, out);
                    return;
                }
            }
        }
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.status = TaskStatus::Waiting;
        }
        self.rewait(tid);
        let dependents = self
            .tasks
            .get(&tid)
            .map(|t| t.dependents.clone())
            .unwrap_or_default();
        for d in dependents {
            // (Ids are never reused, so a listed dependent does depend on `tid`.)
            let Some(dt) = self.tasks.get_mut(&d) else {
                continue;
            };
            match dt.status {
                _ if dt.deps_done => {}
                // It counted `tid` as present; one more input to wait for (O(1), so losing
                // many inputs of a wide task stays linear).
                TaskStatus::Waiting => dt.waiting_on += 1,
                TaskStatus::Ready | TaskStatus::Processing(_) => self.rewait(d),
                TaskStatus::Memory | TaskStatus::Erred(_) => {}
            }
        }
    }

    /// The ids of `tid`'s inputs, re-creating from its lineage those the scheduler forgot.
    fn relink_inputs(&mut self, tid: TaskId) -> Result<Vec<TaskId>, ErrorInfo> {
        let Some((lineage, priority)) = self
            .tasks
            .get(&tid)
            .and_then(|t| t.lineage.clone().map(|l| (l, t.priority)))
        else {
            return Ok(Vec::new());
        };
        let mut deps = Vec::new();
        let lineage_of = lineage.deps_by_key();
        // The inputs it will be computed from must be those it was (a key released and
        // defined anew since would give it another value).
        let planned: HashMap<&str, DefHash> = lineage_of
            .iter()
            .filter(|(k, _)| !self.task_ids.contains_key(**k))
            .map(|(k, l)| (*k, l.hash))
            .collect();
        if !self.inputs_match(&lineage, &planned) {
            return Err(redefined_input(&lineage.key));
        }
        for dep_key in lineage.node.dependency_refs() {
            let id = match self.task_ids.get(dep_key) {
                Some(&id) => id,
                None => match lineage_of.get(dep_key) {
                    Some(&dep) => self.recreate(dep.clone(), priority)?,
                    None => return Err(gone_input(&lineage.key, dep_key)),
                },
            };
            deps.push(id);
        }
        Ok(deps)
    }

    /// Creates the task of `root` again from its lineage, with whatever of its inputs the
    /// scheduler no longer knows (inputs first; iterative, so long chains are fine).
    fn recreate(&mut self, root: Arc<Lineage>, priority: (u64, u64)) -> Result<TaskId, ErrorInfo> {
        let mut order: Vec<Arc<Lineage>> = Vec::new();
        let mut seen: HashSet<String> = HashSet::default();
        let mut stack = vec![(root.clone(), false)];
        while let Some((l, expanded)) = stack.pop() {
            if self.task_ids.contains_key(&l.key) {
                continue;
            }
            if expanded {
                order.push(l);
                continue;
            }
            if !seen.insert(l.key.to_string()) {
                continue;
            }
            stack.push((l.clone(), true));
            let lineage_of = l.deps_by_key();
            for dep_key in l.node.dependency_refs() {
                if self.task_ids.contains_key(dep_key) {
                    continue;
                }
                match lineage_of.get(dep_key) {
                    Some(&dep) => stack.push((dep.clone(), false)),
                    None => return Err(gone_input(&l.key, dep_key)),
                }
            }
        }
        log::debug!(
            "re-creating {} released task(s) to recompute a lost key",
            order.len()
        );
        let planned: HashMap<&str, DefHash> = order.iter().map(|l| (&*l.key, l.hash)).collect();
        if let Some(l) = order.iter().find(|l| !self.inputs_match(l, &planned)) {
            return Err(redefined_input(&l.key));
        }
        drop(planned);
        for l in order {
            let deps = l
                .node
                .dependency_refs()
                .into_iter()
                .filter_map(|d| self.task_ids.get(d).copied())
                .collect();
            self.create_task(l, deps, priority);
        }
        self.task_ids
            .get(&root.key)
            .copied()
            .ok_or_else(|| gone_input(&root.key, &root.key))
    }

    /// Whether the inputs `l` would be computed from now (the scheduler's tasks, or the
    /// lineages about to be re-created, `planned`) are the ones its definition hash was
    /// computed over.
    fn inputs_match(&self, l: &Lineage, planned: &HashMap<&str, DefHash>) -> bool {
        let mut deps = Vec::new();
        for k in l.node.refs() {
            let hash = planned
                .get(k)
                .copied()
                .or_else(|| self.task_ids.get(k).and_then(|&id| self.hash_of(id)));
            match hash {
                Some(h) => deps.push(h),
                None => return false,
            }
        }
        DefHash::combine(DefHash::of_node(&l.node).0, deps) == l.hash
    }

    /// Adds a task for `lineage` whose inputs are the existing tasks `deps` (its node's
    /// references, distinct), `Ready` or `Waiting` for them.
    fn create_task(
        &mut self,
        lineage: Arc<Lineage>,
        deps: Vec<TaskId>,
        priority: (u64, u64),
    ) -> TaskId {
        let tid = self.next_task;
        let mut waiting_on = 0;
        for dep in &deps {
            if self.tasks.get_mut(dep).is_some_and(|dt| dt.claim_for(tid)) {
                waiting_on += 1;
            }
        }
        self.insert_task(lineage, deps, waiting_on, priority)
    }

    /// Makes task `self.next_task` (whose inputs `deps` were claimed for it already, and
    /// `waiting_on` of them are not in memory), `Ready` or `Waiting`.
    fn insert_task(
        &mut self,
        lineage: Arc<Lineage>,
        deps: Vec<TaskId>,
        waiting_on: u32,
        priority: (u64, u64),
    ) -> TaskId {
        let tid = self.next_task;
        self.next_task += 1;
        let signature = self.signature_of(&lineage.node);
        self.use_signature(signature);
        let status = if waiting_on == 0 {
            self.ready.entry(signature).or_default().push(ReadyEntry {
                priority,
                task: tid,
            });
            TaskStatus::Ready
        } else {
            TaskStatus::Waiting
        };
        self.task_ids.insert(lineage.key.clone(), tid);
        self.tasks.insert(
            tid,
            Box::new(TaskState {
                key: lineage.key.clone(),
                lineage: Some(lineage),
                status,
                deps,
                dependents: Dependents::new(),
                waiting_on,
                waiters: 0,
                deps_done: false,
                kept: false,
                wanted_by: Vec::new(),
                who_has: Holders::default(),
                nbytes: 0,
                signature,
                priority,
                fetch_retries: 0,
                deaths: 0,
                assigned: 0,
            }),
        );
        tid
    }

    /// Recounts which inputs an unfinished task still waits for and sets it `Waiting` or
    /// `Ready` accordingly (taking it back from its worker if it was assigned).
    fn rewait(&mut self, tid: TaskId) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        match t.status {
            TaskStatus::Memory | TaskStatus::Erred(_) => return,
            TaskStatus::Processing(w) => {
                if let Some(w) = self.workers.get_mut(&w) {
                    w.processing.remove(&tid);
                }
                // Tasks queued behind it on that worker wait for it there: take them back too.
                let queued: Vec<TaskId> = t
                    .dependents
                    .iter()
                    .copied()
                    .filter(|d| {
                        self.tasks
                            .get(d)
                            .is_some_and(|dt| dt.status == TaskStatus::Processing(w))
                    })
                    .collect();
                self.rewait_now(tid);
                for d in queued {
                    self.rewait(d);
                }
                return;
            }
            TaskStatus::Waiting | TaskStatus::Ready => {}
        }
        self.rewait_now(tid);
    }

    /// The recount itself (see `rewait`).
    fn rewait_now(&mut self, tid: TaskId) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        let waiting_on = t
            .deps
            .iter()
            .filter(|d| {
                self.tasks
                    .get(d)
                    .is_some_and(|dt| dt.status != TaskStatus::Memory)
            })
            .count();
        if waiting_on == 0 {
            self.push_ready(tid);
        } else if let Some(t) = self.tasks.get_mut(&tid) {
            t.waiting_on = waiting_on as u32;
            t.status = TaskStatus::Waiting;
        }
    }

    /// Marks `tid` ready and queues it (in the queue of its functions).
    fn push_ready(&mut self, tid: TaskId) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        t.status = TaskStatus::Ready;
        t.waiting_on = 0;
        self.ready.entry(t.signature).or_default().push(ReadyEntry {
            priority: t.priority,
            task: tid,
        });
    }

    fn fail_lost(&mut self, tid: TaskId, error: ErrorInfo, out: &mut Outbox) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.status = TaskStatus::Waiting;
            t.kept = false;
        }
        self.fail_task(tid, error, out);
    }

    /// Tasks no registered worker can run (no worker at all, or none offering all their
    /// functions): one that something waits for fails after `no_workers_timeout` (the
    /// computations waiting get `no_workers` or `unknown_function`); one only kept (a lost kept
    /// key) waits for as long as it takes, so a worker that can run it, or a holder coming back
    /// with its copy, revives it. Looked at once a second.
    fn check_stalled(&mut self, now: Instant, out: &mut Outbox) {
        if self.stalled.is_empty()
            || self
                .checks
                .stall_scan
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.checks.stall_scan = Some(now);
        let timeout = self.config.no_workers_timeout;
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for (tid, since) in self.stalled.iter_mut() {
            match self.tasks.get(tid) {
                Some(t) if t.status == TaskStatus::Ready => {
                    if t.waiters == 0 {
                        *since = None;
                    } else if now.saturating_duration_since(*since.get_or_insert(now)) >= timeout {
                        expired.push(*tid);
                    }
                }
                _ => gone.push(*tid),
            }
        }
        for tid in gone {
            self.stalled.remove(&tid);
        }
        for tid in expired {
            self.stalled.remove(&tid);
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            let key = t.key.to_string();
            let error = if self.workers.is_empty() {
                ErrorInfo::new(
                    ErrorKind::NoWorkers,
                    format!(
                        "key {key:?} waited {timeout:?} with no worker registered; start \
                         zask-worker pointing at the scheduler's address_to_workers"
                    ),
                )
                .with_key(&key)
            } else {
                let functions = self.functions_of(t.signature);
                let missing = self.missing_function(t.signature).cloned();
                ErrorInfo {
                    kind: ErrorKind::UnknownFunction,
                    message: format!(
                        "key {key:?} calls {}, which no registered worker has offered for \
                         {timeout:?} (its workers went away); start a worker that offers it",
                        match &missing {
                            Some(f) => format!("{f:?}"),
                            None => format!("{functions:?}, which no one worker offers together"),
                        }
                    ),
                    key: Some(key),
                    function: missing,
                    dependency: None,
                }
            };
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.status = TaskStatus::Waiting;
                t.kept = false;
            }
            self.fail_task(tid, error, out);
        }
    }

    /// Whether some registered worker offers every function of `signature`.
    fn runnable(&self, signature: u32) -> bool {
        let functions = self.functions_of(signature);
        self.workers
            .values()
            .any(|w| functions.iter().all(|f| w.functions.contains(f)))
    }

    /// Whether task `tid` (`t`) is a value adopted after a restart that nobody waits for: a
    /// new definition of its key replaces it.
    fn replaceable(&self, tid: TaskId, t: &TaskState) -> bool {
        t.waiters == 0 && self.adopted.contains_key(&tid)
    }

    /// The functions of signature `id`.
    fn functions_of(&self, id: u32) -> &[String] {
        self.signatures
            .get(id as usize)
            .map_or(&[], |f| f.as_slice())
    }

    /// A function of signature `id` that no registered worker offers, if there is one.
    fn missing_function(&self, id: u32) -> Option<&String> {
        self.functions_of(id)
            .iter()
            .find(|f| !self.function_counts.contains_key(f.as_str()))
    }

    /// A worker registered: the stalled tasks it makes runnable are queued again (the others
    /// stay stalled, keeping their time).
    fn unstall(&mut self) {
        let runnable: Vec<TaskId> = self
            .stalled
            .keys()
            .copied()
            .filter(|tid| {
                self.tasks
                    .get(tid)
                    .is_some_and(|t| t.status == TaskStatus::Ready && self.runnable(t.signature))
            })
            .collect();
        for tid in runnable {
            self.stalled.remove(&tid);
            self.push_ready(tid);
        }
    }

    /// Periodic work: declare silent workers dead and expire computations waiting for workers.
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
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
        self.expire_clients(now, out);
        self.check_retirements(now, out);
        self.expire_adopted(now, out);
        self.check_stalled(now, out);
        self.run_checks(now, out);
        let (expired, kept): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.deadline);
        self.parked = kept;
        for p in expired {
            out.to_clients.push((
                p.client,
                ToClient::Error {
                    request: p.get.request,
                    error: ErrorInfo::new(
                        ErrorKind::NoWorkers,
                        format!(
                            "no worker registered within {:?}; start zask-worker pointing at \
                             the scheduler's address_to_workers",
                            self.config.no_workers_timeout
                        ),
                    ),
                },
            ));
        }
    }

    /// The client on `route` is alive (any message counts).
    pub fn on_client_seen(&mut self, route: &[u8], now: Instant) {
        match self.clients_seen.get_mut(route) {
            Some(t) => *t = now,
            None => {
                self.clients_seen.insert(route.to_vec(), now);
            }
        }
    }

    /// Cancels the computations of clients silent for longer than `client_timeout`, telling
    /// them (a client that does not ping, but still reads, learns why nothing came).
    fn expire_clients(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.config.client_timeout;
        let silent = |seen: Option<&Instant>| {
            seen.is_some_and(|t| now.saturating_duration_since(*t) > timeout)
        };
        let mut gone: Vec<Route> = self
            .graphs
            .values()
            .map(|g| &g.client)
            .chain(self.parked.iter().map(|p| &p.client))
            .filter(|c| silent(self.clients_seen.get(*c)))
            .cloned()
            .collect();
        gone.sort();
        gone.dedup();
        for client in gone {
            log::warn!("a client silent for over {timeout:?} is gone; cancelling its computations");
            let error = ErrorInfo::new(
                ErrorKind::Cancelled,
                format!(
                    "cancelled: the scheduler heard nothing from this client for over \
                     {timeout:?} (zask-scheduler --client-timeout); a client waiting for results \
                     must send a message (a `status` ping) more often than that"
                ),
            );
            self.cancel_client(&client, Some(error), out);
        }
        // Forget clients with nothing in flight that have been silent a while.
        let busy: HashSet<&Route> = self.graphs.values().map(|g| &g.client).collect();
        let stale: Vec<Route> = self
            .clients_seen
            .iter()
            .filter(|(c, t)| !busy.contains(c) && now.saturating_duration_since(**t) > timeout)
            .map(|(c, _)| c.clone())
            .collect();
        for c in stale {
            self.clients_seen.remove(&c);
        }
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

    /// The scheduler is shutting down: tell every worker and every waiting client.
    pub fn on_close(&mut self, out: &mut Outbox) {
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
        for p in self.parked.drain(..) {
            out.to_clients.push((
                p.client,
                ToClient::Error {
                    request: p.get.request,
                    error: ErrorInfo::new(
                        ErrorKind::ShuttingDown,
                        "the scheduler is shutting down",
                    ),
                },
            ));
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

    // ----- clients -------------------------------------------------------------------------

    /// A client scatters `items` (key, value): each goes to one worker (the one holding the
    /// fewest bytes), held until released. Answered once all are stored. A key already held
    /// is kept as it is (same key, same value).
    pub fn on_scatter(
        &mut self,
        client: &[u8],
        request: u64,
        items: Vec<(String, Value)>,
        out: &mut Outbox,
    ) {
        let checked = match self.check_scatter(&items) {
            Ok(checked) => checked,
            Err(error) => {
                out.to_clients
                    .push((client.to_vec(), ToClient::Error { request, error }));
                return;
            }
        };
        let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        let sid = self.next_scatter;
        self.next_scatter += 1;
        let mut pending = 0;
        let mut planned: HashMap<WorkerId, u64> = HashMap::default();
        let signature = self.signature_of(&Node::Literal(Value::Nil));
        for ((key, value), (hash, nbytes)) in items.into_iter().zip(checked) {
            if let Some(&tid) = self.task_ids.get(key.as_str()) {
                if self.hash_of(tid) == Some(hash) {
                    // Held with the same value already: kept.
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        t.kept = true;
                    }
                    self.adopted.remove(&tid);
                    continue;
                }
                // An adopted value nobody claimed (`check_scatter` allowed only that): replaced.
                self.forget(tid, out);
            }
            let Some(wid) = self
                .workers
                .values()
                .min_by_key(|w| (w.nbytes + planned.get(&w.id).copied().unwrap_or(0), w.id))
                .map(|w| w.id)
            else {
                continue;
            };
            *planned.entry(wid).or_insert(0) += nbytes;
            self.assignments += 1;
            let shared: Key = Arc::from(key.as_str());
            let status = TaskStatus::Processing(wid);
            let tid = self.insert_value(shared, hash, status, nbytes, signature);
            if let Some(w) = self.workers.get_mut(&wid) {
                w.processing.insert(tid);
                let mut item = KeyData::inline(key, value);
                item.hash = Some(hash);
                out.put_data.entry(w.route.clone()).or_default().push(item);
            }
            self.scatter_of.insert(tid, sid);
            pending += 1;
        }
        if pending == 0 {
            out.to_clients
                .push((client.to_vec(), ToClient::Scattered { request, keys }));
            return;
        }
        self.scatters.insert(
            sid,
            PendingScatter {
                client: client.to_vec(),
                request,
                keys,
                remaining: pending,
            },
        );
    }

    /// A scatter is valid when there are workers, its keys are distinct and non-empty, its
    /// values nest no deeper than `MAX_NESTING`, and each key is either new or held with
    /// the same value (same key, same value). Returns each value's definition hash and size.
    fn check_scatter(&self, items: &[(String, Value)]) -> Result<Vec<(DefHash, u64)>, ErrorInfo> {
        if self.workers.is_empty() {
            return Err(ErrorInfo::new(
                ErrorKind::NoWorkers,
                "no worker is registered to hold scattered data; start zask-worker first",
            ));
        }
        let mut seen = HashSet::default();
        let mut checked = Vec::with_capacity(items.len());
        for (key, value) in items {
            if key.is_empty() {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    "scattered keys must not be empty",
                ));
            }
            if !seen.insert(key.as_str()) {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    format!("key {key:?} is scattered twice"),
                )
                .with_key(key));
            }
            let nbytes = match value.measure(zask_core::value::MAX_NESTING) {
                Ok(nbytes) => nbytes,
                Err(e) => {
                    return Err(ErrorInfo::new(
                        ErrorKind::BadRequest,
                        format!("the value scattered as {key:?} cannot be kept: {e}"),
                    )
                    .with_key(key))
                }
            };
            let hash = DefHash::of_value(value);
            checked.push((hash, nbytes));
            let Some((&tid, t)) = self
                .task_ids
                .get(key.as_str())
                .and_then(|tid| Some((tid, self.tasks.get(tid)?)))
            else {
                continue;
            };
            if self.hash_of(tid) != Some(hash) && !self.replaceable(tid, t) {
                let what = if t.status == TaskStatus::Memory {
                    "held with another value"
                } else {
                    "being computed"
                };
                return Err(ErrorInfo::new(
                    ErrorKind::KeyConflict,
                    format!(
                        "key {key:?} is already {what}; a key names one value, so scatter \
                         under another key, or release the held one first"
                    ),
                )
                .with_key(key));
            }
            if t.status != TaskStatus::Memory {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    format!("key {key:?} is being stored; scatter under another key"),
                )
                .with_key(key));
            }
        }
        Ok(checked)
    }

    /// A scattered value `tid` is stored: answer its scatter when it was the last.
    fn scatter_stored(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(sid) = self.scatter_of.remove(&tid) else {
            return;
        };
        let done = match self.scatters.get_mut(&sid) {
            Some(sc) => {
                sc.remaining = sc.remaining.saturating_sub(1);
                sc.remaining == 0
            }
            None => false,
        };
        if done {
            if let Some(sc) = self.scatters.remove(&sid) {
                out.to_clients.push((
                    sc.client,
                    ToClient::Scattered {
                        request: sc.request,
                        keys: sc.keys,
                    },
                ));
            }
        }
    }

    /// A client lets `keys` go: they are no longer kept, and are released once nothing else
    /// needs them.
    pub fn on_release(&mut self, client: &[u8], request: u64, keys: Vec<String>, out: &mut Outbox) {
        let mut unknown = Vec::new();
        for key in &keys {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                unknown.push(key.clone());
                continue;
            };
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.kept = false;
            }
            self.adopted.remove(&tid);
            self.check_release(tid, out);
        }
        out.to_clients.push((
            client.to_vec(),
            ToClient::Released {
                request,
                keys,
                unknown,
            },
        ));
    }

    /// Releases copies of `tid` beyond `max_copies` once no unfinished task needs it (copies
    /// appear when peers fetch inputs). The lowest-numbered holders keep theirs.
    fn trim_copies(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        let max = self.config.max_copies.max(1);
        if t.status != TaskStatus::Memory
            || t.who_has.len() <= max
            || t.waiters as usize > t.wanted_by.len()
        {
            return;
        }
        let mut holders: Vec<WorkerId> = t.who_has.iter().copied().collect();
        // Copies on retiring workers go first; then the lowest-numbered holders keep theirs.
        holders.sort_unstable_by_key(|w| (self.workers.get(w).is_none_or(|w| w.retiring), *w));
        let key = t.key.clone();
        for wid in holders.into_iter().skip(max) {
            self.remove_holder(tid, wid);
            self.send_release(wid, String::from(&*key), out);
        }
    }

    /// A client asks for `keys` of `graph` (already parsed).
    pub fn on_get(&mut self, client: &[u8], get: GetRequest, now: Instant, out: &mut Outbox) {
        if self.workers.is_empty() {
            log::info!("no workers yet; request {} waits for one", get.request);
            self.parked.push(Parked {
                client: client.to_vec(),
                get,
                deadline: now + self.config.no_workers_timeout,
            });
            return;
        }
        let request = get.request;
        let mut get = get;
        match self.submit(client, &mut get, out) {
            Ok(()) => self.schedule(out),
            Err(error) => out
                .to_clients
                .push((client.to_vec(), ToClient::Error { request, error })),
        }
    }

    fn unpark(&mut self, now: Instant, out: &mut Outbox) {
        for p in std::mem::take(&mut self.parked) {
            self.on_get(&p.client, p.get, now, out);
        }
    }

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

    fn start_retirement(
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
    fn check_retirements(&mut self, now: Instant, out: &mut Outbox) {
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

    /// A client went away: cancel what only it wanted.
    pub fn on_client_gone(&mut self, client: &[u8]) {
        let mut out = Outbox::default();
        self.cancel_client(client, None, &mut out);
    }

    /// Cancels the computations of `client` (what only they wanted is released), answering
    /// each with `error` when there is one to give.
    fn cancel_client(&mut self, client: &[u8], error: Option<ErrorInfo>, out: &mut Outbox) {
        self.clients_seen.remove(client);
        let mine: Vec<GraphId> = self
            .graphs
            .iter()
            .filter(|(_, g)| g.client == client)
            .map(|(id, _)| *id)
            .collect();
        for g in mine {
            if let Some(graph) = self.graphs.remove(&g) {
                if let Some(error) = &error {
                    out.to_clients.push((
                        graph.client.clone(),
                        ToClient::Error {
                            request: graph.request,
                            error: error.clone(),
                        },
                    ));
                }
                self.drop_graph_claims(g, &graph.outputs, false);
            }
        }
        let (theirs, others): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.client == client);
        self.parked = others;
        if let Some(error) = &error {
            for p in theirs {
                out.to_clients.push((
                    p.client,
                    ToClient::Error {
                        request: p.get.request,
                        error: error.clone(),
                    },
                ));
            }
        }
    }

    /// Hands `value` of output `tid` to every computation waiting for it.
    fn deliver(&mut self, tid: TaskId, key: &str, value: Value, out: &mut Outbox) {
        let wanted_by = match self.tasks.get(&tid) {
            Some(t) => t.wanted_by.clone(),
            None => return,
        };
        let mut complete = Vec::new();
        for g in wanted_by {
            if let Some(graph) = self.graphs.get_mut(&g) {
                if !graph.values.contains_key(key) {
                    graph.values.insert(key.to_string(), value.clone());
                    if graph.values.len() == graph.outputs.len() {
                        complete.push(g);
                    }
                }
            }
        }
        for g in complete {
            self.complete_graph(g, out);
        }
    }

    fn complete_graph(&mut self, g: GraphId, out: &mut Outbox) {
        let Some(graph) = self.graphs.remove(&g) else {
            return;
        };
        let items = graph
            .values
            .into_iter()
            .map(|(key, value)| KeyData::inline(key, value))
            .collect();
        out.to_clients.push((
            graph.client,
            ToClient::Result {
                request: graph.request,
                items,
            },
        ));
        self.drop_graph_claims(g, &graph.outputs, graph.keep_results);
    }

    /// Asks holders for the values of `tids` (outputs already in memory), grouped by holder.
    fn gather(&mut self, tids: Vec<TaskId>, out: &mut Outbox) {
        let mut by_worker: HashMap<WorkerId, Vec<TaskId>> = HashMap::default();
        for tid in tids {
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            // Prefer the least loaded holder.
            let holder = t
                .who_has
                .iter()
                .filter_map(|w| self.workers.get(w))
                .min_by_key(|w| (w.processing.len(), w.id))
                .map(|w| w.id);
            match holder {
                Some(w) => by_worker.entry(w).or_default().push(tid),
                None => self.recompute_lost(tid, out),
            }
        }
        for (wid, keys) in by_worker {
            let Some(w) = self.workers.get(&wid) else {
                continue;
            };
            let request = self.next_gather;
            self.next_gather += 1;
            let names = keys
                .iter()
                .filter_map(|t| self.tasks.get(t).map(|t| String::from(&*t.key)))
                .collect();
            out.to_workers.push((
                w.route.clone(),
                ToWorker::GetData(GetDataBody {
                    request,
                    keys: names,
                }),
            ));
            self.gathers.insert(
                request,
                Gather {
                    worker: wid,
                    keys,
                    sent: None,
                    attempts: 0,
                    nbytes: 0,
                },
            );
        }
    }

    fn on_data(
        &mut self,
        wid: WorkerId,
        request: u64,
        items: Vec<KeyData>,
        missing: Vec<String>,
        out: &mut Outbox,
    ) {
        // Only the worker asked answers, and only for the keys asked of it.
        let asked: HashSet<TaskId> = match self.gathers.get(&request) {
            Some(g) if g.worker == wid => g.keys.iter().copied().collect(),
            _ => {
                log::warn!(
                    "worker {} answered a request for data that was not asked of it; ignoring it",
                    self.worker_address(wid)
                );
                return;
            }
        };
        self.gathers.remove(&request);
        let mut answered = HashSet::default();
        for item in items {
            match self.task_ids.get(item.key.as_str()) {
                Some(&tid) if asked.contains(&tid) && answered.insert(tid) => {
                    self.deliver(tid, &item.key, item.data.value, out)
                }
                _ => log::warn!(
                    "worker {} sent {:?}, which was not asked of it; ignoring it",
                    self.worker_address(wid),
                    item.key
                ),
            }
        }
        // The worker no longer has these (said missing, or left out): forget that copy and
        // ask elsewhere (or recompute).
        let mut retry = Vec::new();
        let left_out = asked
            .iter()
            .filter(|t| !answered.contains(t))
            .filter_map(|t| self.tasks.get(t).map(|t| String::from(&*t.key)));
        let mut missing: Vec<String> = missing;
        missing.extend(left_out);
        missing.sort();
        missing.dedup();
        for key in missing {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                continue;
            };
            if !asked.contains(&tid) || answered.contains(&tid) {
                continue;
            }
            self.remove_holder(tid, wid);
            if self.tasks.get(&tid).is_some_and(|t| t.who_has.is_empty()) {
                self.recompute_lost(tid, out);
            } else {
                retry.push(tid);
            }
        }
        if !retry.is_empty() {
            self.gather(retry, out);
        }
        self.schedule(out);
    }

    // ----- assignment ----------------------------------------------------------------------

    /// The signature (sorted set of functions called, function names given to `map` and the
    /// like included) of `node`, registered if new. A node calling one function (the usual
    /// case) is looked up by that name, with no allocation. Callers that make a task of it
    /// count it with [`SchedulerState::use_signature`].
    fn signature_of(&mut self, node: &Node) -> u32 {
        if let Node::Task(t) = node {
            let plain = |n: &Node| !matches!(n, Node::Task(_) | Node::List(_) | Node::Map(_));
            if t.args.iter().all(plain)
                && t.kwargs.iter().all(|(_, n)| plain(n))
                && zask_core::graph::function_argument(&t.func).is_none()
            {
                if let Some(&id) = self.single_signatures.get(t.func.as_str()) {
                    return id;
                }
            }
        }
        let mut functions: Vec<String> = Vec::new();
        node.for_each_function(&mut |f| {
            if !functions.iter().any(|x| x == f) {
                functions.push(f.to_string());
            }
        });
        functions.sort();
        if let Some(&id) = self.signature_ids.get(&functions) {
            return id;
        }
        if self.free_signatures.is_empty() && self.signatures.len() >= SIGNATURES_KEPT {
            self.collect_signatures();
        }
        let id = match self.free_signatures.pop() {
            Some(id) => {
                self.signatures[id as usize] = functions.clone();
                id
            }
            None => {
                self.signatures.push(functions.clone());
                self.signature_users.push(0);
                (self.signatures.len() - 1) as u32
            }
        };
        if let [only] = functions.as_slice() {
            self.single_signatures.insert(only.clone(), id);
        }
        self.signature_ids.insert(functions, id);
        id
    }

    /// One more task uses signature `id`.
    fn use_signature(&mut self, id: u32) {
        if let Some(n) = self.signature_users.get_mut(id as usize) {
            *n += 1;
        }
    }

    /// One task fewer uses signature `id`.
    fn unuse_signature(&mut self, id: u32) {
        if let Some(n) = self.signature_users.get_mut(id as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Forgets the signatures no task uses (their ids are given again), so that the table is
    /// bounded by the signatures in use, not by every one ever seen.
    fn collect_signatures(&mut self) {
        for (id, users) in self.signature_users.iter().enumerate() {
            if *users > 0 {
                continue;
            }
            let functions = std::mem::take(&mut self.signatures[id]);
            if let [only] = functions.as_slice() {
                self.single_signatures.remove(only);
            }
            self.signature_ids.remove(&functions);
            self.durations.remove(&(id as u32));
            self.ready.remove(&(id as u32));
            self.free_signatures.push(id as u32);
        }
        log::debug!(
            "{} of {} function signatures unused and forgotten",
            self.free_signatures.len(),
            self.signatures.len()
        );
    }

    /// Assigns ready tasks to workers with free slots, in priority order: each step takes the
    /// best head among the queues whose functions some free worker offers.
    fn schedule(&mut self, out: &mut Outbox) {
        if self.workers.is_empty() {
            // Nobody to run them: they stall (see `check_stalled`), and run when a worker comes.
            for (_, queue) in self.ready.drain() {
                for entry in queue.run.into_iter().chain(queue.heap) {
                    if self
                        .tasks
                        .get(&entry.task)
                        .is_some_and(|t| t.status == TaskStatus::Ready)
                    {
                        self.stalled.entry(entry.task).or_insert(None);
                    }
                }
            }
            return;
        }
        // Signatures whose capable workers are all full, for this pass.
        let mut blocked: HashSet<u32> = HashSet::default();
        loop {
            let best = self
                .ready
                .iter()
                .filter(|(sig, q)| !q.is_empty() && !blocked.contains(*sig))
                .filter_map(|(sig, q)| q.peek().map(|e| (e.priority, e.task, *sig)))
                .min();
            let Some((_, _, sig)) = best else {
                break;
            };
            let Some(entry) = self.ready.get_mut(&sig).and_then(ReadyQueue::pop) else {
                break;
            };
            let valid = self
                .tasks
                .get(&entry.task)
                .is_some_and(|t| t.status == TaskStatus::Ready);
            if !valid {
                continue; // A stale entry: the task moved on since it was queued.
            }
            match self.pick_worker(entry.task) {
                Pick::Worker(wid) => self.assign(entry.task, wid, out),
                Pick::Busy => {
                    if let Some(q) = self.ready.get_mut(&sig) {
                        q.push(entry);
                    }
                    blocked.insert(sig);
                }
                Pick::Nobody(f) => {
                    // It waits for a worker that offers `f` (see `check_stalled`).
                    if !self.stalled.contains_key(&entry.task) {
                        let key = self.tasks.get(&entry.task).map(|t| t.key.clone());
                        log::warn!(
                            "task {key:?} calls {f:?}, which no registered worker offers any \
                             more; it waits for one"
                        );
                        self.stalled.insert(entry.task, None);
                    }
                }
            }
        }
        self.ready.retain(|_, q| !q.is_empty());
    }

    /// Whether `w` may take one more task whose function signature is `signature`.
    ///
    /// A worker is kept busy, not flooded: it may hold `nthreads × saturation` tasks, or, for
    /// tasks known to be short, as many as fill `queue_budget` of work per thread (so tiny
    /// tasks travel and report in large batches instead of one round trip each).
    fn has_slot(&self, w: &Worker, signature: u32) -> bool {
        if w.retiring {
            return false;
        }
        let per_thread = match self.durations.get(&signature) {
            Some(&us) => {
                let budget_us = self.config.queue_budget.as_secs_f64() * 1e6;
                (budget_us / us.max(TASK_FLOOR_US)) as u32
            }
            None => 0,
        };
        let per_thread = per_thread.clamp(self.config.saturation.max(1), MAX_TASKS_PER_THREAD);
        w.processing.len() < (w.nthreads * per_thread) as usize
    }

    fn pick_worker(&self, tid: TaskId) -> Pick {
        let Some(t) = self.tasks.get(&tid) else {
            return Pick::Busy;
        };
        if let Some(f) = self.missing_function(t.signature) {
            return Pick::Nobody(f.clone());
        }
        let functions = self.functions_of(t.signature);
        let capable = |w: &&Worker| functions.iter().all(|f| w.functions.contains(f));
        // Bytes of this task's inputs that each holder already has.
        let mut local: HashMap<WorkerId, u64> = HashMap::default();
        for d in &t.deps {
            if let Some(dt) = self.tasks.get(d) {
                for w in &dt.who_has {
                    *local.entry(*w).or_insert(0) += dt.nbytes.max(1);
                }
            }
        }
        let best = self
            .workers
            .values()
            .filter(|w| self.has_slot(w, t.signature))
            .filter(capable)
            .max_by(|a, b| {
                let la = local.get(&a.id).copied().unwrap_or(0);
                let lb = local.get(&b.id).copied().unwrap_or(0);
                la.cmp(&lb)
                    .then_with(|| {
                        // Less loaded first: compare processing/nthreads without division.
                        let load_a = a.processing.len() as u64 * b.nthreads as u64;
                        let load_b = b.processing.len() as u64 * a.nthreads as u64;
                        load_b.cmp(&load_a)
                    })
                    .then(b.id.cmp(&a.id))
            });
        match best {
            Some(w) => Pick::Worker(w.id),
            // Full, or nobody offers all of its functions together.
            None if self.runnable(t.signature) => Pick::Busy,
            None => Pick::Nobody(functions.join(", ")),
        }
    }

    /// Assigns `tid` to `wid`, then the dependents whose only missing input is a task just
    /// assigned there: the worker queues them behind their input, so a chain runs without a
    /// scheduler round trip per step.
    fn assign(&mut self, tid: TaskId, wid: WorkerId, out: &mut Outbox) {
        let mut next = vec![tid];
        while let Some(tid) = next.pop() {
            self.assign_one(tid, wid, out);
            if !self.config.queue_dependents {
                continue;
            }
            let dependents = match self.tasks.get(&tid) {
                Some(t) => t.dependents.clone(),
                None => continue,
            };
            for d in dependents {
                let Some(dt) = self.tasks.get(&d) else {
                    continue;
                };
                if dt.status != TaskStatus::Waiting || dt.waiting_on != 1 {
                    continue;
                }
                // Not bound by the worker's slots: a dependent queued behind its input costs
                // the worker nothing until that input is done, and it would run there anyway
                // (its input is there). Only a hard cap applies.
                let fits = self.workers.get(&wid).is_some_and(|w| {
                    !w.retiring
                        && w.processing.len() < (w.nthreads * MAX_TASKS_PER_THREAD) as usize
                        && self
                            .signatures
                            .get(dt.signature as usize)
                            .is_some_and(|fs| fs.iter().all(|f| w.functions.contains(f)))
                });
                if fits {
                    next.push(d);
                }
            }
        }
    }

    fn assign_one(&mut self, tid: TaskId, wid: WorkerId, out: &mut Outbox) {
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        if !self.stalled.is_empty() {
            self.stalled.remove(&tid);
        }
        w.processing.insert(tid);
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        t.status = TaskStatus::Processing(wid);
        self.assignments += 1;
        t.assigned = self.assignments;
        let node = t
            .lineage
            .as_ref()
            .map(|l| l.node.clone())
            .unwrap_or_else(|| Arc::new(Node::Literal(Value::Nil)));
        let send_value = !t.wanted_by.is_empty();
        let key = String::from(&*t.key);
        let hash = t.definition(tid, &self.given).unwrap_or_default();
        let mut who_has = Vec::new();
        if let Some(t) = self.tasks.get(&tid) {
            for d in &t.deps {
                let Some(dt) = self.tasks.get(d) else {
                    continue;
                };
                // Held there, or queued there ahead of this task.
                if dt.who_has.contains(&wid) || dt.status == TaskStatus::Processing(wid) {
                    continue;
                }
                let addresses: Vec<Arc<str>> = dt
                    .who_has
                    .iter()
                    .filter_map(|h| self.workers.get(h).map(|w| w.address.clone()))
                    .collect();
                let dep_hash = dt.definition(*d, &self.given).unwrap_or_default();
                who_has.push((dt.key.clone(), dep_hash, addresses));
            }
        }
        let task = ComputeTask {
            key,
            hash,
            node,
            who_has,
            send_value,
        };
        let Some(route) = self.workers.get(&wid).map(|w| w.route.as_slice()) else {
            return;
        };
        if let Some(batch) = batch_of(&mut out.compute, route) {
            batch.push(task);
        }
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

/// The error of `key`, which depends on the failed key `root.key`: `dependency_failed`,
/// naming the key, the input that failed, its function and its message.
fn dependency_failed(key: &str, root: &ErrorInfo) -> ErrorInfo {
    let input = root.key.as_deref().unwrap_or("?");
    ErrorInfo {
        kind: ErrorKind::DependencyFailed,
        message: format!(
            "key {key:?} could not be computed: it depends on {input:?}, which failed: {}",
            root.message
        ),
        key: Some(key.to_string()),
        function: root.function.clone(),
        dependency: root.key.clone(),
    }
}

/// The error for a lost key whose inputs were defined anew since it was computed.
fn redefined_input(key: &str) -> ErrorInfo {
    ErrorInfo::new(
        ErrorKind::Lost,
        format!(
            "key {key:?} was lost and cannot be recomputed: a key it was computed from has been \
             released and defined anew since; submit its graph again"
        ),
    )
    .with_key(key)
}

/// The error for a lost key whose input `dep` is gone for good (data without lineage).
fn gone_input(key: &str, dep: &str) -> ErrorInfo {
    ErrorInfo::new(
        ErrorKind::Lost,
        format!(
            "key {key:?} was lost and cannot be recomputed: its input {dep:?} was scattered \
             data that is gone too; scatter it again"
        ),
    )
    .with_key(key)
}

enum Pick {
    Worker(WorkerId),
    /// Workers that could run it are all full.
    Busy,
    /// No registered worker offers this function any more.
    Nobody(String),
}

/// How a worker came to hold a key it tells the scheduler about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// It held the key when it registered (a sled store kept across a restart, or a worker
    /// the scheduler had forgotten).
    Registered,
    /// It fetched the key from a peer (`acquired`).
    Fetched,
}

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

mod checks;
mod submit;

#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;
