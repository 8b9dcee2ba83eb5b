//! [`Worker`]: a zask worker process's event loop.
//!
//! One thread owns every socket: a DEALER to the scheduler, a ROUTER that serves values to
//! peers, cached DEALERs to peers (one per peer address) for fetching inputs, and a wake-up
//! socket. Tasks run on `nthreads` executor threads; each finished task wakes the loop, which
//! stores the result and reports a batch of finished tasks in one `report` message.
//!
//! A task arrives with, for each input it may not hold, the peers holding it. The loop fetches
//! missing inputs from peers (many at once, never blocking: replies are just more events),
//! tries the next holder when one fails or times out, and waits for inputs that a queued task
//! on this same worker will compute. A task runs once all its inputs are local.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zask_core::frames;
use zask_core::graph::Node;
use zask_core::protocol::{
    ComputeBody, ComputeTask, Data, DataBody, ErrorKind, FromWorker, GetDataBody, KeyData, KeyInfo,
    Message, PeerReply, PeerRequest, ReleaseBody, ReportBody, Tagged, TaskDone, TaskFailed,
    ToWorker, PROTOCOL_VERSION,
};
use zask_core::service::Service;
use zask_core::value::MAX_NESTING;
use zask_core::{net, Bytes, DefHash, Value};

use crate::error::Error;
use crate::eval::{evaluate, EvalError};
use crate::registry::Registry;
use crate::store::{Store, StoreKind};

/// How a worker is started.
pub struct WorkerOptions {
    /// The scheduler's `address_to_workers`, e.g. `tcp://127.0.0.1:8786`.
    pub scheduler_address: String,
    /// Interface to bind for peers and host name to advertise (empty: all interfaces,
    /// advertised as this machine's host name).
    pub host: String,
    /// Port peers fetch data from (0: the OS chooses).
    pub port_to_workers: u16,
    /// Tasks run at once.
    pub nthreads: u32,
    /// Where results are kept.
    pub store: StoreKind,
    /// The functions this worker offers.
    pub registry: Registry,
    /// How often the worker tells the scheduler it is alive (and retries registering).
    pub heartbeat_interval: Duration,
    /// How long a peer may take to answer a fetch before the next holder is tried.
    pub fetch_timeout: Duration,
    /// How long a retiring worker waits for the scheduler to move its data before leaving.
    pub retire_timeout: Duration,
}

impl WorkerOptions {
    /// Options with defaults: all interfaces, OS-chosen port, one thread per core, memory
    /// store, the standard library.
    pub fn new(scheduler_address: &str) -> WorkerOptions {
        WorkerOptions {
            scheduler_address: scheduler_address.to_string(),
            host: String::new(),
            port_to_workers: 0,
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            store: StoreKind::Memory,
            registry: Registry::with_stdlib(),
            heartbeat_interval: Duration::from_millis(500),
            fetch_timeout: Duration::from_secs(10),
            retire_timeout: Duration::from_secs(60),
        }
    }
}

/// A running worker. Dropping it closes it.
pub struct Worker {
    address: String,
    worker_id: String,
    service: Service,
    retire: Arc<AtomicBool>,
}

impl Worker {
    /// Opens the store, binds the peer socket, connects to the scheduler (which need not be
    /// up yet) and starts the worker's threads.
    pub fn start(options: WorkerOptions) -> Result<Worker, Error> {
        let ctx = zmq::Context::new();
        let store = options.store.open()?;
        let peers = ctx.socket(zmq::ROUTER)?;
        net::configure(&peers)?;
        let address = net::bind_tcp(&peers, &options.host, options.port_to_workers)
            .map_err(|e| Error::Bind(options.port_to_workers, e))?;
        let worker_id = net::unique_id("worker");
        let scheduler = ctx.socket(zmq::DEALER)?;
        net::configure(&scheduler)?;
        // A fixed routing id: after a reconnect the scheduler still knows who is talking.
        scheduler.set_identity(worker_id.as_bytes())?;
        scheduler
            .connect(&options.scheduler_address)
            .map_err(|e| Error::Connect(options.scheduler_address.clone(), e))?;
        let nthreads = options.nthreads.max(1);
        let wake_pending = Arc::new(AtomicBool::new(false));
        let (jobs_tx, results_rx) = spawn_executors(
            &ctx,
            &Service::wake_endpoint(&worker_id),
            nthreads,
            options.registry.clone(),
            wake_pending.clone(),
        )?;
        let mut functions = options.registry.names();
        functions.sort();
        let loop_ctx = ctx.clone();
        let (loop_id, loop_address) = (worker_id.clone(), address.clone());
        let heartbeat_interval = options.heartbeat_interval;
        let fetch_timeout = options.fetch_timeout;
        let retire_timeout = options.retire_timeout;
        let retire = Arc::new(AtomicBool::new(false));
        let loop_retire = retire.clone();
        let service = Service::spawn(&ctx, &worker_id, "zask-worker", move |wake| {
            Loop {
                ctx: loop_ctx,
                scheduler,
                peers,
                wake: wake.socket,
                stop: wake.stop,
                peer_sockets: HashMap::default(),
                store,
                functions,
                worker_id: loop_id,
                address: loop_address,
                nthreads,
                heartbeat_interval,
                fetch_timeout,
                jobs: Some(jobs_tx),
                results: results_rx,
                tasks: HashMap::default(),
                waiting: HashMap::default(),
                ready: VecDeque::new(),
                running: 0,
                fetches: HashMap::default(),
                fetching: HashMap::default(),
                next_serial: 1,
                next_request: 1,
                report: Report::default(),
                registered: false,
                last_sent: None,
                retire: loop_retire,
                retiring_since: None,
                retire_timeout,
                wake_pending,
                report_since: None,
                awaiting: None,
            }
            .run()
        })
        .map_err(Error::Thread)?;
        log::info!(
            "worker {address} ({nthreads} threads) connecting to {}",
            options.scheduler_address
        );
        Ok(Worker {
            address,
            worker_id,
            service,
            retire,
        })
    }

    /// Where peers fetch data from; also the worker's name, `tcp://host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// This worker process's unique id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Stops: tells the scheduler goodbye, closes the sockets, joins the loop. Closing twice
    /// is fine (and dropping closes).
    pub fn close(&self) {
        self.service.close();
    }

    /// Blocks until the worker has stopped.
    pub fn wait(&self) {
        self.service.wait();
    }

    /// Leaves gracefully: the scheduler stops giving this worker tasks and moves the data only
    /// it holds to other workers, then lets it go (or `retire_timeout` passes). Blocks until
    /// the worker has stopped.
    pub fn retire(&self) {
        (self.retirer())();
        self.wait();
    }

    /// A handle that starts a graceful retirement from another thread (a SIGTERM handler);
    /// the worker notices within one heartbeat interval.
    pub fn retirer(&self) -> impl Fn() + Send + Sync + 'static {
        let retire = self.retire.clone();
        move || retire.store(true, Ordering::SeqCst)
    }

    /// A handle that stops this worker from another thread (for a Ctrl-C handler).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        self.service.stopper()
    }
}

/// How long finished tasks may wait for others before they are reported (while tasks are
/// still running on this worker; an idle worker reports at once).
const REPORT_DELAY: Duration = Duration::from_millis(1);
/// A report this large goes at once: small enough that the scheduler refills a worker long
/// before its queue runs dry (it holds up to ~1,000 tiny tasks per thread), large enough
/// that a report costs little per task.
const REPORT_BATCH: usize = 256;
/// How long one turn of the loop waits for a disk store's flush before it goes on (the report
/// waiting for it is sent at a later turn).
const FLUSH_WAIT: Duration = Duration::from_millis(10);
/// Tasks handed to the executors per thread ahead of time (their inputs are taken then), in
/// batches of up to half as many.
const DISPATCH_AHEAD: u32 = 64;
/// Keys asked of one peer in one request at the most: a wide task's inputs are fetched in
/// chunks, the first on its way while the rest of the task is being taken in.
const FETCH_CHUNK: usize = 65_536;

/// How long an executor may hold finished results of a batch before sending them back.
const RESULTS_DELAY: Duration = Duration::from_micros(200);

/// A task to run on an executor thread (they travel in batches: one channel operation and
/// one wake-up for many tiny tasks).
struct Job {
    key: String,
    /// Which acceptance of the task this is (a result is taken only for the task it was run
    /// for: the key may have been given again, with another definition, meanwhile).
    serial: u64,
    node: Arc<Node>,
    /// The value of each reference of `node`, in `Node::for_each_ref` order.
    inputs: Vec<Value>,
    /// Positions in `inputs` that take the value of the job this one follows in a chain.
    from_previous: Vec<usize>,
    /// The task queued here behind this one (waiting for its value and nothing else): the
    /// same thread runs it right after, so a chain runs link after link with no hand-off
    /// through the loop per step.
    then: Option<Box<Job>>,
}

/// What an executor thread sends back.
struct JobResult {
    key: String,
    serial: u64,
    /// The value and its size (measured on the executor, which also checks its nesting).
    result: Result<(Value, u64), EvalError>,
    duration: Duration,
    /// Set when the job did not run because the link before it in its chain failed.
    failed_input: Option<String>,
}

/// Where the loop hands batches of jobs to the executor threads.
type JobSender = mpsc::Sender<Vec<Job>>;
/// Where the loop finds what the executors finished.
type ResultReceiver = mpsc::Receiver<Vec<JobResult>>;

fn spawn_executors(
    ctx: &zmq::Context,
    wake_endpoint: &str,
    nthreads: u32,
    registry: Registry,
    wake_pending: Arc<AtomicBool>,
) -> Result<(JobSender, ResultReceiver), Error> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Vec<Job>>();
    let (results_tx, results_rx) = mpsc::channel::<Vec<JobResult>>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    for i in 0..nthreads {
        let wake = ctx.socket(zmq::PUSH)?;
        net::configure(&wake)?;
        wake.connect(wake_endpoint)?;
        let jobs_rx = jobs_rx.clone();
        let results_tx = results_tx.clone();
        let wake_pending = wake_pending.clone();
        let registry = registry.clone();
        std::thread::Builder::new()
            .name(format!("zask-exec-{i}"))
            // Deeply nested task nodes are evaluated recursively.
            .stack_size(zask_core::service::STACK_SIZE)
            .spawn(move || {
                while let Some(batch) = jobs_rx.lock().ok().and_then(|rx| rx.recv().ok()) {
                    let mut sender = ResultSender {
                        results: &results_tx,
                        wake: &wake,
                        wake_pending: &wake_pending,
                        done: Vec::new(),
                        since_sent: Instant::now(),
                    };
                    if !run_batch(batch, &registry, &mut sender) {
                        return;
                    }
                }
            })
            .map_err(Error::Thread)?;
    }
    Ok((jobs_tx, results_rx))
}

/// An executor's way back to the loop: finished jobs, sent in groups with one wake-up.
struct ResultSender<'a> {
    results: &'a mpsc::Sender<Vec<JobResult>>,
    wake: &'a zmq::Socket,
    wake_pending: &'a AtomicBool,
    done: Vec<JobResult>,
    since_sent: Instant,
}

impl ResultSender<'_> {
    /// Queues one result; sends the group when `last` (nothing more in the batch) or when
    /// the group has waited `RESULTS_DELAY` (a slow task is reported when it finishes, not
    /// with the rest). False when the loop is gone.
    fn push(&mut self, result: JobResult, last: bool) -> bool {
        self.done.push(result);
        if !last && self.since_sent.elapsed() < RESULTS_DELAY {
            return true;
        }
        if self.results.send(std::mem::take(&mut self.done)).is_err() {
            return false;
        }
        self.since_sent = Instant::now();
        // One wake-up for however many results pile up while the loop is busy.
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.wake.send(&b""[..], zmq::DONTWAIT);
        }
        true
    }
}

/// Runs a batch of jobs, each with the chain queued behind it; false when the loop is gone.
fn run_batch(batch: Vec<Job>, registry: &Registry, sender: &mut ResultSender) -> bool {
    let count = batch.len();
    for (i, job) in batch.into_iter().enumerate() {
        // The value of the link before (or the key of the link that failed).
        let mut previous: Option<Result<Value, String>> = None;
        let mut link = Some(job);
        while let Some(mut job) = link.take() {
            link = job.then.take().map(|next| *next);
            let start = Instant::now();
            let mut failed_input = None;
            let result = match previous.take() {
                Some(Err(input)) => {
                    let message = format!("input {input:?} failed");
                    failed_input = Some(input);
                    Err(EvalError {
                        kind: ErrorKind::MissingDependency,
                        function: None,
                        message,
                    })
                }
                Some(Ok(value)) => {
                    for &at in &job.from_previous {
                        if let Some(slot) = job.inputs.get_mut(at) {
                            *slot = value.clone();
                        }
                    }
                    evaluate(&job.node, &mut job.inputs.into_iter(), registry)
                }
                None => evaluate(&job.node, &mut job.inputs.into_iter(), registry),
            };
            let result = result.and_then(|value| measure(value, &job.node));
            if link.is_some() {
                previous = Some(match &result {
                    Ok((value, _)) => Ok(value.clone()),
                    Err(_) => Err(job.key.clone()),
                });
            }
            let done = JobResult {
                key: job.key,
                serial: job.serial,
                result,
                duration: start.elapsed(),
                failed_input,
            };
            if !sender.push(done, i + 1 == count && link.is_none()) {
                return false;
            }
        }
    }
    true
}

/// A result's size, or a task error if it nests deeper than [`MAX_NESTING`] (no message could
/// carry it, and nothing should recurse on it): the value is then dropped without recursion.
fn measure(value: Value, node: &Node) -> Result<(Value, u64), EvalError> {
    match value.measure(MAX_NESTING) {
        Ok(nbytes) => Ok((value, nbytes)),
        Err(too_deep) => {
            value.dismantle();
            let function = match node {
                Node::Task(t) => Some(t.func.clone()),
                _ => None,
            };
            Err(EvalError {
                kind: ErrorKind::TaskFailed,
                message: format!(
                    "its result cannot be kept: {too_deep} (build flatter results, or split \
                     the work into more tasks)"
                ),
                function,
            })
        }
    }
}

/// The inputs a task was accepted with, as one number: the definition hashes of its
/// references, in node order, summed. A task runs only if the inputs it is given sum the
/// same (see `LocalTask::inputs`). (A sum, not a hash: cheap, and one input of another
/// definition, or several, changes it but for a chance of about 2^-120.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InputsDigest(u128);

impl InputsDigest {
    fn add(&mut self, hash: &DefHash) {
        self.0 = self.0.wrapping_add(u128::from_le_bytes(hash.0));
    }
}

/// The inputs of a task gathered from the store: their values in the order evaluation takes
/// them, the positions left blank, and the digest of the copies used.
struct Gathered {
    inputs: Vec<Value>,
    blanks: Vec<usize>,
    digest: InputsDigest,
}

/// The value of each reference of `node`, from `store`, in the order evaluation takes them.
/// References to `blank` (the link before, in a chain, not computed yet) are left nil, and
/// their positions returned. `Err`: an input the store does not hold.
fn gather_inputs(store: &dyn Store, node: &Node, blank: Option<&str>) -> Result<Gathered, String> {
    let mut inputs = Vec::new();
    let mut blanks = Vec::new();
    let mut digest = InputsDigest::default();
    let mut lost = None;
    node.for_each_ref(&mut |dep| {
        if lost.is_some() {
            return;
        }
        if blank == Some(dep) {
            blanks.push(inputs.len());
            inputs.push(Value::Nil);
            return;
        }
        match store.get_with(dep) {
            Ok(Some((v, held))) => {
                digest.add(&held.hash);
                inputs.push(v)
            }
            _ => lost = Some(dep.to_string()),
        }
    });
    match lost {
        Some(dep) => Err(dep),
        None => Ok(Gathered {
            inputs,
            blanks,
            digest,
        }),
    }
}

/// An input as a `compute` lists it: its key and the peers holding it.
type Listed<'a> = (&'a Arc<str>, &'a DefHash, &'a Vec<Arc<str>>);

/// Inputs to fetch, by the peer to ask first.
type ToFetch = HashMap<String, Vec<Arc<str>>>;

/// The tasks waiting for one input (see `Loop::waiting`).
type Waiters = SmallVec<[Arc<str>; 1]>;

/// A task this worker was given and has not finished.
struct LocalTask {
    node: Arc<Node>,
    /// Its definition hash: the result is stored with it.
    hash: DefHash,
    /// This acceptance of the task (see `Job::serial`).
    serial: u64,
    /// Inputs not yet local.
    missing: usize,
    send_value: bool,
    /// Given to an executor. (`ready` may hold a key twice, or a key whose task was dropped
    /// and given anew, still waiting for inputs: only a task with all its inputs, not yet
    /// dispatched, is run.)
    dispatched: bool,
    /// The definitions of the inputs it was given with. An input here may be replaced by
    /// another definition before the task runs (the task was taken back, unknown to this
    /// worker, and the key redefined): the task then does not run on it, since its result
    /// would be stored under a definition it is not the value of.
    inputs: InputsDigest,
}

/// An input being fetched: the holders not tried yet, the definition hash a copy must have
/// (a peer's copy of another definition is refused like a bad value), and the request it is
/// asked in now (an answer to an earlier request for it, before it was asked anew, does not
/// count for it; 0: not asked yet).
struct Fetching {
    untried: Vec<String>,
    hash: DefHash,
    request: u64,
}

/// A fetch request in flight to a peer.
struct Fetch {
    peer: String,
    keys: Vec<Arc<str>>,
    deadline: Instant,
}

/// What a report to the scheduler will carry.
#[derive(Default)]
struct Report {
    done: Vec<TaskDone>,
    values: Vec<Option<Value>>,
    failed: Vec<TaskFailed>,
    acquired: Vec<KeyInfo>,
}

impl Report {
    /// Adds a task done (`value`: its value, when the scheduler wants it sent).
    fn push_done(
        &mut self,
        key: String,
        hash: DefHash,
        nbytes: u64,
        duration_us: u64,
        value: Option<Value>,
    ) {
        self.done.push(TaskDone {
            key,
            hash,
            nbytes,
            duration_us,
            data: None,
        });
        self.values.push(value);
    }

    fn is_empty(&self) -> bool {
        self.done.is_empty() && self.failed.is_empty() && self.acquired.is_empty()
    }

    fn len(&self) -> usize {
        self.done.len() + self.failed.len() + self.acquired.len()
    }
}

struct Loop {
    ctx: zmq::Context,
    scheduler: zmq::Socket,
    peers: zmq::Socket,
    wake: zmq::Socket,
    stop: Arc<AtomicBool>,
    /// DEALERs to peers, by address, created on first use.
    peer_sockets: HashMap<String, zmq::Socket>,
    store: Box<dyn Store>,
    functions: Vec<String>,
    worker_id: String,
    address: String,
    nthreads: u32,
    heartbeat_interval: Duration,
    fetch_timeout: Duration,
    jobs: Option<JobSender>,
    results: ResultReceiver,
    tasks: HashMap<String, LocalTask>,
    /// Input key → tasks waiting for it (it is being fetched or computed here). A task's key
    /// is shared by all its entries (a task over a million inputs has a million of them), and
    /// one waiter is kept inline (no allocation per input of a wide task).
    waiting: HashMap<Arc<str>, Waiters>,
    ready: VecDeque<String>,
    running: u32,
    fetches: HashMap<u64, Fetch>,
    /// Input key being fetched → holders not tried yet, and the hash it must have.
    fetching: HashMap<Arc<str>, Fetching>,
    /// The serial of the next task accepted.
    next_serial: u64,
    next_request: u64,
    /// What finished since the last report was closed.
    report: Report,
    /// A closed report held back until the store has made its first `.1` writes durable
    /// (what it says is stored then survives a crash); later results go to `report`, so a
    /// busy worker's flushes never chase a growing report.
    awaiting: Option<(Report, u64)>,
    registered: bool,
    /// When the last register/heartbeat went out.
    last_sent: Option<Instant>,
    /// Set to leave gracefully (SIGTERM): the scheduler moves our unique data, then says
    /// `retired`.
    retire: Arc<AtomicBool>,
    /// When retiring started; we leave anyway `retire_timeout` later.
    retiring_since: Option<Instant>,
    retire_timeout: Duration,
    /// Set by executors when they woke the loop; cleared when the loop collects results.
    wake_pending: Arc<AtomicBool>,
    /// Since when the report has had something in it (reports wait a little for company
    /// while tasks are still running, so many finished tasks travel in one message).
    report_since: Option<Instant>,
}

impl Loop {
    fn run(mut self) {
        self.register();
        loop {
            if self.stop.load(Ordering::SeqCst) || self.retire_done() {
                self.shut_down();
                return;
            }
            self.poll_once();
            self.check_fetch_timeouts();
            self.run_ready();
            self.send_report(false);
            self.heartbeat();
            self.check_store();
        }
    }

    fn poll_once(&mut self) {
        let peer_addrs: Vec<String> = self.peer_sockets.keys().cloned().collect();
        let (sched_ready, peers_ready, woken, peer_ready) = {
            let mut items = vec![
                self.scheduler.as_poll_item(zmq::POLLIN),
                self.peers.as_poll_item(zmq::POLLIN),
                self.wake.as_poll_item(zmq::POLLIN),
            ];
            for a in &peer_addrs {
                if let Some(s) = self.peer_sockets.get(a) {
                    items.push(s.as_poll_item(zmq::POLLIN));
                }
            }
            let timeout = self.poll_timeout().as_millis() as i64;
            if let Err(e) = zmq::poll(&mut items, timeout.max(1)) {
                log::error!("poll failed: {e}");
                return;
            }
            let peer_ready: Vec<String> = items[3..]
                .iter()
                .zip(&peer_addrs)
                .filter(|(i, _)| i.is_readable())
                .map(|(_, a)| a.clone())
                .collect();
            (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
                peer_ready,
            )
        };
        if woken {
            while let Ok(Some(_)) = frames::recv(&self.wake) {}
            self.collect_results();
        }
        if sched_ready {
            self.drain_scheduler();
        }
        if peers_ready {
            self.serve_peers();
        }
        for addr in peer_ready {
            self.drain_peer(&addr);
        }
        // Many inputs just arrived: the scheduler learns of the copies while the tasks that
        // wanted them are gathered and run.
        if self.report.acquired.len() >= REPORT_BATCH {
            self.send_report(false);
        }
    }

    /// Starts retiring when asked; true when it is time to leave (not registered, so nothing
    /// to hand over, or the retirement took too long).
    fn retire_done(&mut self) -> bool {
        if !self.retire.load(Ordering::SeqCst) {
            return false;
        }
        match self.retiring_since {
            None if !self.registered => true,
            None => {
                log::info!("retiring: handing data over to other workers");
                let msg = FromWorker::Retiring {
                    worker_id: self.worker_id.clone(),
                };
                self.send_to_scheduler(&msg, Vec::new());
                self.retiring_since = Some(Instant::now());
                false
            }
            Some(since) if since.elapsed() > self.retire_timeout => {
                log::warn!(
                    "retiring took over {:?}; leaving anyway",
                    self.retire_timeout
                );
                true
            }
            Some(_) => false,
        }
    }

    /// A store that failed for good (a disk store after a write error) takes no more values:
    /// the worker retires, so the scheduler moves what it holds and sends it no more work.
    fn check_store(&mut self) {
        if let Some(why) = self.store.broken() {
            if !self.retire.swap(true, Ordering::SeqCst) {
                log::error!("the store failed for good ({why}); retiring this worker");
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        let mut t = self.heartbeat_interval;
        if let Some(since) = self.report_since {
            t = t.min(REPORT_DELAY.saturating_sub(since.elapsed()));
        }
        if self.awaiting.is_some() {
            t = t.min(REPORT_DELAY);
        }
        if let Some(last) = self.last_sent {
            t = t.min(self.heartbeat_interval.saturating_sub(last.elapsed()));
        }
        if let Some(first) = self.fetches.values().map(|f| f.deadline).min() {
            t = t.min(first.saturating_duration_since(Instant::now()));
        }
        t.max(Duration::from_millis(1))
    }

    // ----- the scheduler -------------------------------------------------------------------

    fn register(&mut self) {
        let has = self.store.all_held();
        let msg = FromWorker::Register {
            protocol: PROTOCOL_VERSION,
            worker_id: self.worker_id.clone(),
            address: self.address.clone(),
            pid: std::process::id(),
            nthreads: self.nthreads,
            functions: self.functions.clone(),
            has,
        };
        self.send_to_scheduler(&msg, Vec::new());
        self.last_sent = Some(Instant::now());
    }

    fn heartbeat(&mut self) {
        let due = self
            .last_sent
            .is_none_or(|t| t.elapsed() >= self.heartbeat_interval);
        if !due {
            return;
        }
        if self.registered {
            let msg = FromWorker::Heartbeat {
                worker_id: self.worker_id.clone(),
            };
            self.send_to_scheduler(&msg, Vec::new());
            self.last_sent = Some(Instant::now());
        } else {
            self.register();
        }
    }

    fn send_to_scheduler(&self, msg: &FromWorker, blobs: Vec<Vec<u8>>) {
        match frames::encode(msg, blobs) {
            Ok(f) => {
                if let Err(e) = frames::send(&self.scheduler, None, f) {
                    log::warn!("sending to the scheduler failed: {e}");
                }
            }
            Err(e) => log::error!("encoding a message failed: {e}"),
        }
    }

    fn drain_scheduler(&mut self) {
        loop {
            let parts = match frames::recv(&self.scheduler) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("receiving from the scheduler failed: {e}");
                    return;
                }
            };
            let Some(header) = parts.first() else {
                continue;
            };
            match ToWorker::decode(header) {
                Ok(msg) => self.on_scheduler_message(msg, &parts[1..]),
                Err(e) => {
                    if !self.fail_malformed_tasks(header) {
                        log::warn!("dropping a malformed message from the scheduler: {e}");
                    }
                }
            }
        }
    }

    /// A `compute` that did not decode: taken task by task, each failing alone (`bad_task`,
    /// naming it) if it cannot be read (a malformed node, one nested too deep), the others
    /// taken. Returns false if it was not a readable `compute` at all.
    fn fail_malformed_tasks(&mut self, header: &[u8]) -> bool {
        use zask_core::msgpack;
        if msgpack::header_op(header) != Ok("compute") {
            return false;
        }
        let Some(items) = msgpack::field(header, "tasks").and_then(msgpack::array_items) else {
            return false;
        };
        let mut tasks = Vec::new();
        for item in items {
            match frames::decode::<ComputeTask>(item) {
                Ok(task) => tasks.push(task),
                Err(e) => {
                    let key = msgpack::str_field(item, "key");
                    match key {
                        Some(key) => self.fail(
                            key,
                            None,
                            ErrorKind::BadTask,
                            None,
                            format!("the task cannot be read: {e}"),
                            None,
                        ),
                        None => log::warn!("dropping a task without a key from a compute: {e}"),
                    }
                }
            }
        }
        self.on_scheduler_message(ToWorker::Compute(ComputeBody { tasks }), &[]);
        true
    }

    fn on_scheduler_message(&mut self, msg: ToWorker, blobs: &[zmq::Message]) {
        match msg {
            ToWorker::Welcome { scheduler_id, .. } => {
                if !self.registered {
                    log::info!("registered with scheduler {scheduler_id}");
                }
                self.registered = true;
            }
            ToWorker::Rejected { message } => {
                log::error!("the scheduler refused this worker: {message}");
                self.stop.store(true, Ordering::SeqCst);
            }
            ToWorker::PleaseRegister => {
                if self.registered {
                    log::info!("the scheduler does not know this worker; registering again");
                }
                self.registered = false;
                self.forget_tasks();
                self.register();
            }
            ToWorker::Closing => {
                log::info!("the scheduler is shutting down; waiting for it to come back");
                self.registered = false;
                self.forget_tasks();
            }
            ToWorker::CheckTasks { request, keys } => {
                let mut unknown = Vec::new();
                // Failures not sent yet are not unknown: they are reported next.
                let failing: HashSet<(String, DefHash)> = self
                    .report
                    .failed
                    .iter()
                    .chain(self.awaiting.iter().flat_map(|(r, _)| r.failed.iter()))
                    .filter_map(|f| Some((f.key.clone(), f.hash?)))
                    .collect();
                for (key, hash) in keys {
                    if failing.contains(&(key.clone(), hash)) {
                        continue;
                    }
                    // Only the definition asked about counts (one of another definition here
                    // is a task taken back, which the scheduler gives anew if it is unknown).
                    if self.tasks.get(&key).is_some_and(|t| t.hash == hash) {
                        continue;
                    }
                    match self.store.held(&key).filter(|held| held.hash == hash) {
                        // Done here, and its report lost: reported again.
                        Some(held) => self.report.push_done(key, held.hash, held.nbytes, 0, None),
                        None => unknown.push(key),
                    }
                }
                // What is reported again goes first.
                self.send_report(true);
                let msg = FromWorker::TaskStatus { request, unknown };
                self.send_to_scheduler(&msg, Vec::new());
            }
            ToWorker::Compute(ComputeBody { tasks }) => {
                let mut to_fetch: ToFetch = HashMap::default();
                // A task may depend on one listed after it in the same batch.
                let has_inputs = |t: &ComputeTask| {
                    let mut any = false;
                    t.node.for_each_ref(&mut |_| any = true);
                    any
                };
                let batch: HashMap<&str, DefHash> = if tasks.iter().any(has_inputs) {
                    tasks.iter().map(|t| (t.key.as_str(), t.hash)).collect()
                } else {
                    HashMap::default()
                };
                let mut failed = Vec::new();
                for t in &tasks {
                    if !self.accept_task(t, &batch, &mut to_fetch) {
                        failed.push(t.key.as_str());
                    }
                }
                // Tasks of the batch that failed at once: whoever waits for them fails too.
                for key in failed {
                    self.fail_waiters(key);
                }
                self.send_fetches(to_fetch);
            }
            ToWorker::PutData { items } => {
                for item in items {
                    self.put(item, blobs);
                }
            }
            ToWorker::Replicate { who_has } => {
                let mut to_fetch: ToFetch = HashMap::default();
                for (key, hash, holders) in who_has {
                    self.replicate(key, hash, holders, &mut to_fetch);
                }
                self.send_fetches(to_fetch);
            }
            ToWorker::Retired => {
                log::info!("retired: leaving");
                self.stop.store(true, Ordering::SeqCst);
            }
            ToWorker::PeerGone { address } => {
                self.peer_sockets.remove(&address);
                let dead: Vec<u64> = self
                    .fetches
                    .iter()
                    .filter(|(_, f)| f.peer == address)
                    .map(|(r, _)| *r)
                    .collect();
                // (Not retried with the peer gone.)
                for f in self.fetching.values_mut() {
                    f.untried.retain(|p| p != &address);
                }
                for request in dead {
                    if let Some(f) = self.fetches.remove(&request) {
                        self.fetch_failed(f.keys, Some(request));
                    }
                }
            }
            ToWorker::Release(ReleaseBody { keys }) => {
                for k in keys {
                    self.remove_stored(&k);
                }
            }
            ToWorker::GetData(GetDataBody { request, keys }) => {
                let mut blobs = Vec::new();
                let (items, missing) = self.lookup(keys, |v| frames::pack(v, &mut blobs));
                let msg = FromWorker::Data(DataBody {
                    request,
                    items,
                    missing,
                });
                self.send_to_scheduler(&msg, blobs);
            }
        }
    }

    /// Takes one task of a `compute` batch (`batch`: the keys of the batch's tasks, with
    /// their hashes, when some task of it has inputs): queue it, or wait for its inputs; false
    /// if it failed at once.
    fn accept_task(
        &mut self,
        t: &ComputeTask,
        batch: &HashMap<&str, DefHash>,
        to_fetch: &mut ToFetch,
    ) -> bool {
        match self.tasks.get(&t.key) {
            // Running: it reports when done.
            Some(known) if known.hash == t.hash && known.dispatched => return true,
            Some(known) => {
                // Given again with another definition: the old one is dropped (a run of it
                // still going is not taken: its serial is stale). Given again with the same
                // one, not running yet: taken anew, with the inputs as the scheduler lists
                // them now (an input it waited for may have been redefined since).
                if known.hash != t.hash {
                    log::info!("task {:?} is given anew with another definition", t.key);
                }
                self.drop_task(&t.key);
            }
            None => {}
        }
        // A fetch of another definition of this key in flight is not taken (its late answer
        // would replace the value computed here); whoever waits for the key gets this one.
        if self
            .fetching
            .get(t.key.as_str())
            .is_some_and(|f| f.hash != t.hash)
        {
            self.fetching.remove(t.key.as_str());
        }
        match self.store.held(&t.key) {
            Some(held) if held.hash == t.hash => {
                // Computed (or fetched) here before: report it again.
                let value = if t.send_value {
                    self.store.get(&t.key).ok().flatten()
                } else {
                    None
                };
                self.report
                    .push_done(t.key.clone(), held.hash, held.nbytes, 0, value);
                return true;
            }
            Some(_) => {
                // A stale value of another definition: never reported for this one.
                log::info!("dropping a stale value of {:?} (another definition)", t.key);
                self.remove_stored(&t.key);
            }
            None => {}
        }
        // Every reference, in node order (a repeated key counted once below: its second
        // reference finds this task already waiting for it).
        let refs = t.node.refs();
        if refs.len() > 64 {
            // A wide task: grow the tables once rather than step by step.
            self.waiting.reserve(refs.len());
            self.fetching.reserve(refs.len());
        }
        let waiter: Arc<str> = Arc::from(t.key.as_str());
        // The scheduler lists holders in the node's order: follow it with a cursor, and build
        // a map only for a sender that lists them otherwise.
        let mut cursor = 0;
        let mut by_key: Option<HashMap<&str, Listed>> = None;
        let mut missing = 0;
        let mut inputs = InputsDigest::default();
        for dep in refs {
            // (The listed key is shared by every table the input enters: no copy of it.)
            let listed = match t.who_has.get(cursor) {
                Some((k, hash, peers)) if **k == *dep => {
                    cursor += 1;
                    Some((k, hash, peers))
                }
                _ => None,
            };
            let listed = listed.or_else(|| {
                by_key
                    .get_or_insert_with(|| {
                        t.who_has
                            .iter()
                            .map(|(k, h, p)| (&**k, (k, h, p)))
                            .collect()
                    })
                    .get(dep)
                    .copied()
            });
            // Computed in this batch: under that definition (the batch is the scheduler's word
            // now; anything here of another is stale).
            let in_batch = batch.get(dep);
            match (self.store.held(dep), listed) {
                // Here, and the copy wanted (or any copy, when none is named).
                (Some(held), Some((_, hash, _))) if held.hash == *hash => {
                    inputs.add(hash);
                    continue;
                }
                (Some(held), None) if in_batch.is_none_or(|h| *h == held.hash) => {
                    inputs.add(&held.hash);
                    continue;
                }
                // Here, but of another definition: stale, fetched anew.
                (Some(_), _) => {
                    log::info!("dropping a stale copy of input {dep:?} (another definition)");
                    self.remove_stored(dep);
                }
                (None, _) => {}
            }
            if let Some((_, hash, peers)) = listed {
                // Something here under this key from another definition (a task taken back
                // from this worker, still queued or fetching its inputs): not waited for.
                if self.tasks.get(dep).is_some_and(|local| local.hash != *hash) {
                    log::info!("dropping a task of another definition of {dep:?}");
                    self.drop_task(dep);
                }
                if let Some(f) = self.fetching.get_mut(dep) {
                    if f.hash != *hash {
                        // Fetched anew, from the holders of the copy wanted now.
                        f.hash = *hash;
                        f.untried = peers.iter().rev().map(|p| p.to_string()).collect();
                        if let Some(first) = f.untried.pop() {
                            let key: Arc<str> = Arc::from(dep);
                            to_fetch.entry(first).or_default().push(key);
                        }
                    }
                }
            }
            // Coming here already (computed in this batch or before it, or being fetched):
            // under which definition.
            let coming = in_batch.copied().or_else(|| {
                self.tasks
                    .get(dep)
                    .map(|local| local.hash)
                    .or_else(|| self.fetching.get(dep).map(|f| f.hash))
            });
            // The definition waited for: the one named, or the one coming.
            if let Some(hash) = listed.map(|(_, hash, _)| hash).or(coming.as_ref()) {
                inputs.add(hash);
            }
            if coming.is_some() {
                if self.add_waiter(dep, None, &waiter) {
                    missing += 1;
                }
                continue;
            }
            match listed.and_then(|(k, h, p)| Some((k, h, p.split_first()?))) {
                Some((dep, hash, (first, others))) => {
                    self.add_waiter(dep, Some(dep), &waiter);
                    missing += 1;
                    // The others, to try in order if the first fails (popped from the end).
                    // (Recorded first: a full chunk is sent below, and sending marks them.)
                    self.fetching.insert(
                        dep.clone(),
                        Fetching {
                            untried: others.iter().rev().map(|p| p.to_string()).collect(),
                            hash: *hash,
                            request: 0,
                        },
                    );
                    match to_fetch.get_mut(&**first) {
                        Some(keys) => {
                            keys.push(dep.clone());
                            // A wide task's inputs are asked for in chunks: the peer serves
                            // the first while this worker is still taking in the rest.
                            if keys.len() >= FETCH_CHUNK {
                                let chunk = std::mem::take(keys);
                                if let Err(chunk) = self.try_fetch(first, chunk) {
                                    // Left for `send_fetches`, which handles the failure once
                                    // the batch's tasks are all known.
                                    if let Some(keys) = to_fetch.get_mut(&**first) {
                                        keys.extend(chunk);
                                    }
                                }
                            }
                        }
                        None => {
                            to_fetch.insert(first.to_string(), vec![dep.clone()]);
                        }
                    }
                }
                None => {
                    self.fail(
                        &t.key,
                        Some(t.hash),
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {dep:?} is neither on this worker nor on any peer named"),
                        Some(dep.to_string()),
                    );
                    // Undo the waits registered for earlier inputs.
                    self.forget_waits(&t.node, &waiter);
                    return false;
                }
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.tasks.insert(
            t.key.clone(),
            LocalTask {
                node: t.node.clone(),
                hash: t.hash,
                serial,
                missing,
                send_value: t.send_value,
                dispatched: false,
                inputs,
            },
        );
        if missing == 0 {
            self.ready.push_back(t.key.clone());
        }
        true
    }

    /// Forgets every task this worker was given (the scheduler forgot this worker, or is
    /// going away: it takes its tasks back, and gives them again as it sees fit). Runs still
    /// on an executor finish, and are not taken.
    fn forget_tasks(&mut self) {
        if !self.tasks.is_empty() {
            log::info!(
                "dropping {} task(s) the scheduler took back",
                self.tasks.len()
            );
        }
        self.tasks.clear();
        self.waiting.clear();
        self.ready.clear();
        self.fetching.clear();
        self.fetches.clear();
    }

    /// Forgets the task of `key` (given anew, or taken back by the scheduler), with its
    /// waits on inputs. A run of it already on an executor finishes, and is not taken.
    fn drop_task(&mut self, key: &str) {
        if let Some(task) = self.tasks.remove(key) {
            let waiter: Arc<str> = Arc::from(key);
            self.forget_waits(&task.node, &waiter);
        }
    }

    /// Deletes `key` from the store (a stale value, or one the scheduler released).
    fn remove_stored(&mut self, key: &str) {
        if let Err(e) = self.store.remove(key) {
            log::warn!("cannot delete {key:?}: {e}");
        }
    }

    /// Notes that `waiter` waits for `dep`; false if it already did (a repeated reference).
    /// (`shared`: `dep` as a shared string, if the caller has one.)
    fn add_waiter(&mut self, dep: &str, shared: Option<&Arc<str>>, waiter: &Arc<str>) -> bool {
        match self.waiting.get_mut(dep) {
            Some(w) if w.last() == Some(waiter) => false,
            Some(w) => {
                w.push(waiter.clone());
                true
            }
            None => {
                let dep = shared.cloned().unwrap_or_else(|| Arc::from(dep));
                self.waiting
                    .insert(dep, Waiters::from_elem(waiter.clone(), 1));
                true
            }
        }
    }

    /// Takes `waiter` (a task that failed here) off the waiting lists of its inputs, so that
    /// no stale wait is counted for it when it is sent again.
    fn forget_waits(&mut self, node: &Node, waiter: &Arc<str>) {
        let waiting = &mut self.waiting;
        node.for_each_ref(&mut |dep| {
            if let Some(waiters) = waiting.get_mut(dep) {
                waiters.retain(|w| w != waiter);
                if waiters.is_empty() {
                    waiting.remove(dep);
                }
            }
        });
    }

    /// Starts copying `key` (of definition `hash`) from `holders` (data moving off a
    /// retiring worker); it is reported as `acquired` once here.
    fn replicate(
        &mut self,
        key: String,
        hash: DefHash,
        holders: Vec<String>,
        to_fetch: &mut ToFetch,
    ) {
        match self.store.held(&key) {
            Some(held) if held.hash == hash => {
                let nbytes = held.nbytes;
                self.report.acquired.push(KeyInfo { key, nbytes, hash });
                return;
            }
            Some(_) => self.remove_stored(&key),
            None => {}
        }
        if self.fetching.contains_key(key.as_str()) {
            return;
        }
        let mut untried: Vec<String> = holders.into_iter().rev().collect();
        if let Some(first) = untried.pop() {
            let key: Arc<str> = Arc::from(key);
            to_fetch.entry(first).or_default().push(key.clone());
            self.fetching.insert(
                key,
                Fetching {
                    untried,
                    hash,
                    request: 0,
                },
            );
        }
    }

    /// Stores a scattered value and reports it like a finished task.
    fn put(&mut self, item: KeyData, blobs: &[zmq::Message]) {
        let Some(hash) = item.hash else {
            return self.fail(
                &item.key,
                None,
                ErrorKind::TaskFailed,
                None,
                "a scattered value came without its definition hash".to_string(),
                None,
            );
        };
        let stored = frames::unpack(item.data, blobs)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                let nbytes = value.nbytes();
                self.store
                    .insert(&item.key, value, hash, nbytes)
                    .map(|()| nbytes)
                    .map_err(|e| e.to_string())
            });
        match stored {
            Ok(nbytes) => {
                self.report
                    .push_done(item.key.clone(), hash, nbytes, 0, None);
                self.input_arrived(&item.key);
            }
            Err(e) => self.fail(
                &item.key,
                Some(hash),
                ErrorKind::TaskFailed,
                None,
                format!("cannot store scattered value: {e}"),
                None,
            ),
        }
    }

    /// Reports task `key` (of definition `hash`, when known) failed.
    fn fail(
        &mut self,
        key: &str,
        hash: Option<DefHash>,
        kind: ErrorKind,
        function: Option<String>,
        message: String,
        missing: Option<String>,
    ) {
        self.report.failed.push(TaskFailed {
            key: key.to_string(),
            hash,
            kind,
            function,
            message,
            missing,
        });
    }

    /// An input of the task of `key` was replaced by another definition since it was given:
    /// it fails, with no input named (a task taken back, as this usually is, is not waited
    /// for; a current one the scheduler gives again, a few times), and so does whatever
    /// waits for it here.
    fn inputs_replaced(&mut self, key: &str) {
        let hash = self.tasks.remove(key).map(|t| t.hash);
        log::warn!("an input of {key:?} was replaced by another definition; not running it");
        self.fail(
            key,
            hash,
            ErrorKind::MissingDependency,
            None,
            "an input was replaced by another definition on this worker before the task ran"
                .to_string(),
            None,
        );
        self.fail_waiters(key);
    }

    /// Hands ready tasks to the executor threads: up to `DISPATCH_AHEAD` per thread, so a
    /// thread that finishes a task takes the next at once, without waiting for this loop.
    /// (Still at most `nthreads` run at once: there are that many executor threads.)
    fn run_ready(&mut self) {
        let mut jobs = Vec::new();
        while self.running + (jobs.len() as u32) < self.nthreads * DISPATCH_AHEAD {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            if task.missing != 0 || task.dispatched {
                continue; // A stale entry (see `LocalTask::dispatched`).
            }
            task.dispatched = true;
            let inputs = match gather_inputs(&*self.store, &task.node, None) {
                Ok(gathered) if gathered.digest == task.inputs => gathered.inputs,
                Ok(_) => {
                    self.inputs_replaced(&key);
                    continue;
                }
                Err(dep) => {
                    let hash = self.tasks.remove(&key).map(|t| t.hash);
                    self.fail(
                        &key,
                        hash,
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {dep:?} was released from this worker before the task ran"),
                        Some(dep),
                    );
                    self.fail_waiters(&key);
                    continue;
                }
            };
            let node = task.node.clone();
            let serial = task.serial;
            let budget = (self.nthreads * DISPATCH_AHEAD)
                .saturating_sub(self.running + jobs.len() as u32 + 1);
            let (then, links) = self.take_chain(&key, budget);
            jobs.push(Job {
                key,
                serial,
                node,
                inputs,
                from_previous: Vec::new(),
                then,
            });
            // The chained links count as dispatched (each reports back on its own).
            self.running += links;
        }
        // Spread over the threads, at most half the look-ahead per batch so that a thread
        // finishing one batch finds the next already queued.
        let per_batch = jobs
            .len()
            .div_ceil(self.nthreads as usize)
            .clamp(1, (DISPATCH_AHEAD / 2) as usize);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<Job> = jobs.by_ref().take(per_batch).collect();
            let n = batch.len() as u32;
            match &self.jobs {
                Some(tx) if tx.send(batch).is_ok() => self.running += n,
                _ => {
                    log::error!("executor threads are gone");
                    return;
                }
            }
        }
    }

    /// Takes the chain queued here behind `key`, which is being dispatched: the task waiting
    /// for it and for nothing else, then the one waiting for that, and so on, up to `budget`
    /// links. Each goes to the executor with `key`'s job, its input from the link before
    /// filled in there; returns the first link and how many there are.
    fn take_chain(&mut self, key: &str, budget: u32) -> (Option<Box<Job>>, u32) {
        let mut links: Vec<Job> = Vec::new();
        let mut previous = key.to_string();
        let Some(mut previous_hash) = self.tasks.get(key).map(|t| t.hash) else {
            return (None, 0);
        };
        while (links.len() as u32) < budget {
            let Some(waiters) = self.waiting.get(previous.as_str()) else {
                break;
            };
            let next = waiters
                .iter()
                .position(|w| self.tasks.get(&**w).is_some_and(|t| t.missing == 1));
            let Some(at) = next else {
                break;
            };
            let waiter = waiters[at].clone();
            let Some(task) = self.tasks.get_mut(&*waiter) else {
                break;
            };
            // Its other inputs are here (it misses only `previous`): take them now.
            let Ok(mut gathered) = gather_inputs(&*self.store, &task.node, Some(&previous)) else {
                break; // Left to the usual path, which reports the lost input.
            };
            for _ in &gathered.blanks {
                gathered.digest.add(&previous_hash);
            }
            if gathered.digest != task.inputs {
                break; // An input of another definition: left to the usual path, which fails it.
            }
            previous_hash = task.hash;
            let (inputs, from_previous) = (gathered.inputs, gathered.blanks);
            task.missing = 0;
            task.dispatched = true;
            let node = task.node.clone();
            let serial = task.serial;
            if let Some(waiters) = self.waiting.get_mut(previous.as_str()) {
                waiters.remove(at);
                if waiters.is_empty() {
                    self.waiting.remove(previous.as_str());
                }
            }
            previous = String::from(&*waiter);
            links.push(Job {
                key: previous.clone(),
                serial,
                node,
                inputs,
                from_previous,
                then: None,
            });
        }
        let count = links.len() as u32;
        let mut then = None;
        for mut link in links.into_iter().rev() {
            link.then = then;
            then = Some(Box::new(link));
        }
        (then, count)
    }

    fn collect_results(&mut self) {
        self.wake_pending.store(false, Ordering::Release);
        while let Ok(batch) = self.results.try_recv() {
            for done in batch {
                self.task_finished(done);
            }
        }
    }

    /// Stores (or fails) one task an executor finished, and queues what waited for it.
    fn task_finished(&mut self, done: JobResult) {
        self.running = self.running.saturating_sub(1);
        let Some(task) = self.tasks.remove(&done.key) else {
            return;
        };
        // Only for the acceptance it was run for (the task may have been dropped, or given
        // anew, since: that one stays).
        if task.serial != done.serial {
            self.tasks.insert(done.key, task);
            return;
        }
        match done.result {
            Ok((value, nbytes)) => {
                let sent = task.send_value.then(|| value.clone());
                if let Err(e) = self.store.insert(&done.key, value, task.hash, nbytes) {
                    // (A link chained behind this task ran with the value all the same: its
                    // result is right, and it is reported as usual.)
                    let hash = Some(task.hash);
                    self.fail(
                        &done.key,
                        hash,
                        ErrorKind::TaskFailed,
                        None,
                        e.to_string(),
                        None,
                    );
                    self.fail_waiters(&done.key);
                    return;
                }
                let duration_us = done.duration.as_micros() as u64;
                self.report
                    .push_done(done.key.clone(), task.hash, nbytes, duration_us, sent);
                self.input_arrived(&done.key);
            }
            Err(e) => {
                let hash = Some(task.hash);
                self.fail(
                    &done.key,
                    hash,
                    e.kind,
                    e.function,
                    e.message,
                    done.failed_input,
                );
                self.fail_waiters(&done.key);
            }
        }
    }

    /// `key` is now local: tasks waiting for it may be ready.
    fn input_arrived(&mut self, key: &str) {
        for waiter in self.waiting.remove(key).unwrap_or_default() {
            if let Some(t) = self.tasks.get_mut(&*waiter) {
                t.missing = t.missing.saturating_sub(1);
                if t.missing == 0 {
                    self.ready.push_back(String::from(&*waiter));
                }
            }
        }
    }

    /// `key` will not become local: fail the tasks waiting for it, and those waiting for
    /// them (a chain queued here fails link by link, never hangs).
    fn fail_waiters(&mut self, key: &str) {
        let mut gone = vec![key.to_string()];
        while let Some(key) = gone.pop() {
            for waiter in self.waiting.remove(key.as_str()).unwrap_or_default() {
                if let Some(task) = self.tasks.remove(&*waiter) {
                    self.forget_waits(&task.node, &waiter);
                    self.fail(
                        &waiter,
                        Some(task.hash),
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {key:?} could not be computed or fetched"),
                        Some(key.clone()),
                    );
                    gone.push(String::from(&*waiter));
                }
            }
        }
    }

    /// Sends what finished, unless (and `force` is false) tasks are still running here and
    /// the report is young and small: then it waits for company, up to `REPORT_DELAY`.
    fn send_report(&mut self, force: bool) {
        if self.awaiting.is_none() {
            if self.report.is_empty() {
                return;
            }
            let since = *self.report_since.get_or_insert_with(Instant::now);
            let busy = self.running > 0 || !self.ready.is_empty();
            let small = self.report.len() < REPORT_BATCH;
            if !force && busy && small && since.elapsed() < REPORT_DELAY {
                return;
            }
            self.report_since = None;
            let report = std::mem::take(&mut self.report);
            self.awaiting = Some((report, self.store.writes()));
        }
        let Some((_, upto)) = &self.awaiting else {
            return;
        };
        // A value is reported stored once it is durable; a slow flush holds the report back
        // (the loop goes on serving, heartbeating, and asks again at its next turn).
        let wait = if force {
            Duration::from_secs(2)
        } else {
            FLUSH_WAIT
        };
        match self.store.flush(*upto, wait) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => log::error!("cannot make stored results durable: {e}"),
        }
        if let Some((report, _)) = self.awaiting.take() {
            self.send_a_report(report);
        }
        if force && !self.report.is_empty() {
            // What came in while the closed report waited (it then waits no longer).
            self.send_report(true);
        }
    }

    /// Sends one report, durable or not.
    fn send_a_report(&mut self, report: Report) {
        let mut blobs = Vec::new();
        let done = report
            .done
            .into_iter()
            .zip(report.values)
            .map(|(mut d, v)| {
                d.data = v.map(|v| frames::pack(v, &mut blobs));
                d
            })
            .collect();
        let msg = FromWorker::Report(ReportBody {
            done,
            failed: report.failed,
            acquired: report.acquired,
        });
        self.send_to_scheduler(&msg, blobs);
    }

    // ----- peers ---------------------------------------------------------------------------

    /// The values of `keys` held here, each packed by `pack`, and the keys not held.
    fn lookup(
        &self,
        keys: Vec<String>,
        mut pack: impl FnMut(Value) -> Data,
    ) -> (Vec<KeyData>, Vec<String>) {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        for key in keys {
            match self.store.get_with(&key) {
                Ok(Some((v, held))) => items.push(KeyData {
                    key,
                    data: pack(v),
                    hash: Some(held.hash),
                }),
                Ok(None) => missing.push(key),
                Err(e) => {
                    log::warn!("cannot read {key:?}: {e}");
                    missing.push(key)
                }
            }
        }
        (items, missing)
    }

    fn serve_peers(&mut self) {
        loop {
            let parts = match frames::recv(&self.peers) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("receiving from a peer failed: {e}");
                    return;
                }
            };
            if parts.len() < 2 {
                continue;
            }
            let route = parts[0].to_vec();
            let mut blobs = Vec::new();
            let reply = match PeerRequest::decode(&parts[1]) {
                Ok(PeerRequest::GetData(GetDataBody { request, keys })) => {
                    // Large values are served from the store as they are (no copy).
                    let (items, missing) =
                        self.lookup(keys, |v| frames::pack_shared(v, &mut blobs));
                    PeerReply::Data(DataBody {
                        request,
                        items,
                        missing,
                    })
                }
                Err(e) => PeerReply::Error {
                    request: 0,
                    message: format!("cannot decode the request: {e}"),
                },
            };
            match frames::encode(&reply, Vec::new()) {
                Ok(f) => {
                    let sent = frames::send_shared(&mut self.peers, Some(&route), f.header, blobs);
                    if let Err(e) = sent {
                        log::warn!("answering a peer failed: {e}");
                    }
                }
                Err(e) => log::error!("encoding a reply failed: {e}"),
            }
        }
    }

    /// Sends one fetch request per peer.
    fn send_fetches(&mut self, to_fetch: ToFetch) {
        for (peer, keys) in to_fetch {
            if !keys.is_empty() {
                self.send_fetch(peer, keys);
            }
        }
    }

    /// Asks `peer` for `keys` (or, if it cannot be reached, tries their next holders).
    fn send_fetch(&mut self, peer: String, keys: Vec<Arc<str>>) {
        if let Err(keys) = self.try_fetch(&peer, keys) {
            self.peer_sockets.remove(&peer);
            self.fetch_failed(keys, None);
        }
    }

    /// Sends one fetch request; gives the keys back if it could not be sent.
    fn try_fetch(&mut self, peer: &str, keys: Vec<Arc<str>>) -> Result<(), Vec<Arc<str>>> {
        let request = self.next_request;
        let sent = self.peer_socket(peer).and_then(|socket| {
            // Written from the keys as they are (a fetch of 50,000 inputs is not copied).
            let msg = Tagged(GetDataBody {
                request,
                keys: &keys[..],
            });
            let f = frames::encode(&msg, Vec::new()).map_err(|e| e.to_string())?;
            frames::send(socket, None, f).map_err(|e| e.to_string())
        });
        match sent {
            Ok(()) => {
                self.next_request += 1;
                for k in &keys {
                    if let Some(f) = self.fetching.get_mut(k) {
                        f.request = request;
                    }
                }
                self.fetches.insert(
                    request,
                    Fetch {
                        peer: peer.to_string(),
                        keys,
                        deadline: Instant::now() + self.fetch_timeout,
                    },
                );
                Ok(())
            }
            Err(e) => {
                log::warn!("cannot ask {peer} for data: {e}");
                Err(keys)
            }
        }
    }

    fn peer_socket(&mut self, peer: &str) -> Result<&zmq::Socket, String> {
        if !self.peer_sockets.contains_key(peer) {
            let s = self.ctx.socket(zmq::DEALER).map_err(|e| e.to_string())?;
            net::configure(&s).map_err(|e| e.to_string())?;
            s.connect(peer)
                .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
            self.peer_sockets.insert(peer.to_string(), s);
        }
        self.peer_sockets
            .get(peer)
            .ok_or_else(|| "peer socket vanished".to_string())
    }

    fn drain_peer(&mut self, addr: &str) {
        let mut replies = Vec::new();
        if let Some(socket) = self.peer_sockets.get(addr) {
            loop {
                match frames::recv(socket) {
                    Ok(Some(p)) => replies.push(p),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("receiving from {addr} failed: {e}");
                        break;
                    }
                }
            }
        }
        for parts in replies {
            let mut parts = parts.into_iter();
            let Some(header) = parts.next() else {
                continue;
            };
            match PeerReply::decode(&header) {
                Ok(PeerReply::Data(DataBody {
                    request,
                    items,
                    missing: _,
                })) => {
                    // Large values become `Bytes` owning the received frames: no copy.
                    let blobs: Vec<Bytes> = parts.map(frames::to_bytes).collect();
                    self.on_fetched(request, items, &blobs)
                }
                Ok(PeerReply::Error { request, message }) => {
                    log::warn!("{addr} could not serve request {request}: {message}");
                    if let Some(f) = self.fetches.remove(&request) {
                        self.fetch_failed(f.keys, Some(request));
                    }
                }
                Err(e) => log::warn!("dropping a malformed reply from {addr}: {e}"),
            }
        }
    }

    fn on_fetched(&mut self, request: u64, items: Vec<KeyData>, blobs: &[Bytes]) {
        let Some(fetch) = self.fetches.remove(&request) else {
            return; // Timed out already and retried elsewhere.
        };
        // The peer's `missing` list is not needed: whatever did not arrive is still pending.
        self.store.reserve(items.len());
        // Whether the answer holds every key asked for, in order, all taken in: then none is
        // left to retry (the usual case, with no second pass over a 65,536-key fetch).
        let mut complete = items.len() == fetch.keys.len();
        for (i, item) in items.into_iter().enumerate() {
            if complete && fetch.keys.get(i).is_none_or(|k| **k != *item.key) {
                complete = false;
            }
            // Taken out of `fetching` at once, put back if it cannot be taken in.
            let Some((key, fetching)) = self.fetching.remove_entry(item.key.as_str()) else {
                continue;
            };
            let hash = fetching.hash;
            let stored = if item.hash != Some(hash) {
                Err(format!(
                    "a peer's copy of {key:?} is of another definition (or has no hash); not \
                     taken"
                ))
            } else {
                frames::unpack(item.data, blobs)
                    .map_err(|e| format!("bad value for {key:?} from a peer: {e}"))
                    .and_then(|value| {
                        let nbytes = value
                            .measure(MAX_NESTING)
                            .map_err(|e| format!("bad value for {key:?} from a peer: {e}"))?;
                        self.store
                            .insert(&key, value, hash, nbytes)
                            .map(|()| nbytes)
                            .map_err(|e| format!("cannot store fetched {key:?}: {e}"))
                    })
            };
            let nbytes = match stored {
                Ok(nbytes) => nbytes,
                Err(e) => {
                    log::warn!("{e}");
                    self.fetching.insert(key, fetching);
                    complete = false;
                    continue;
                }
            };
            self.input_arrived(&item.key);
            self.report.acquired.push(KeyInfo {
                key: item.key,
                nbytes,
                hash,
            });
        }
        if complete {
            return;
        }
        // The keys of this fetch not stored now (said missing, left out of the answer, bad
        // or unstorable): try the next holder (`fetch_failed` leaves those asked anew since).
        self.fetch_failed(fetch.keys, Some(request));
    }

    /// These inputs could not be had from the holder asked: try the next, or fail the tasks
    /// that wait for them.
    ///
    /// With `request`, only the keys still waited for under that request count: one dropped
    /// and asked for anew since (under a later request, perhaps of another holder) is that
    /// request's business, and its waiters must not fail because an older request did.
    fn fetch_failed(&mut self, keys: Vec<Arc<str>>, request: Option<u64>) {
        let mut retry: ToFetch = HashMap::default();
        for key in keys {
            let next = match self.fetching.get_mut(&key) {
                None => continue, // Stored already, or no longer wanted.
                Some(f) if request.is_some_and(|r| r != f.request) => continue,
                Some(f) => f.untried.pop(),
            };
            match next {
                Some(peer) => retry.entry(peer).or_default().push(key),
                None => {
                    self.fetching.remove(&key);
                    self.fail_waiters(&key);
                }
            }
        }
        if !retry.is_empty() {
            self.send_fetches(retry);
        }
    }

    fn check_fetch_timeouts(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        for request in expired {
            if let Some(f) = self.fetches.remove(&request) {
                log::warn!("{} did not answer within {:?}", f.peer, self.fetch_timeout);
                // Start afresh with that peer next time (its queue may hold stale requests).
                self.peer_sockets.remove(&f.peer);
                self.fetch_failed(f.keys, Some(request));
            }
        }
    }

    fn shut_down(&mut self) {
        // What finished is reported even if a flush does not end (a full disk): the goodbye
        // that follows makes the scheduler forget this worker's copies anyway, and a client
        // waiting for a value sent with the report gets it.
        if self.awaiting.is_some() || !self.report.is_empty() {
            match self
                .store
                .flush(self.store.writes(), Duration::from_secs(2))
            {
                Ok(true) => {}
                Ok(false) => log::warn!("closing before stored results are durable"),
                Err(e) => log::error!("cannot make stored results durable: {e}"),
            }
            if let Some((report, _)) = self.awaiting.take() {
                self.send_a_report(report);
            }
            let report = std::mem::take(&mut self.report);
            if !report.is_empty() {
                self.send_a_report(report);
            }
        }
        let msg = FromWorker::Goodbye {
            worker_id: self.worker_id.clone(),
        };
        let _ = self.scheduler.set_linger(1000);
        self.send_to_scheduler(&msg, Vec::new());
        self.jobs = None;
        log::info!("worker {} closed", self.address);
    }
}
