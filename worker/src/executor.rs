//! The executor threads: where tasks run.
//!
//! The loop hands [`Job`]s to `nthreads` threads in batches (one channel operation and one
//! wake-up for many tiny tasks); each thread evaluates them (a job may carry the chain of
//! tasks queued behind it, run link after link on the same thread) and sends the
//! [`JobResult`]s back in groups, waking the loop once per group.
//!
//! A cancelled job is skipped where it waits; a running one's thread is replaced (see
//! [`Executors`]).
//!
//! [`run_now`] runs a batch on the calling thread: the state machine's tests and the
//! scheduler's simulated cluster run real jobs with it, with no threads.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zask_core::graph::Node;
use zask_core::net;
use zask_core::protocol::ErrorKind;
use zask_core::value::MAX_NESTING;
use zask_core::Value;

use crate::error::Error;
use crate::eval::{evaluate, EvalError};
use crate::registry::Registry;

/// How long an executor may hold finished results of a batch before sending them back.
const RESULTS_DELAY: Duration = Duration::from_micros(200);

/// A task to run on an executor thread.
pub struct Job {
    /// The task's key.
    pub key: String,
    /// Which acceptance of the task this is (a result is taken only for the task it was run
    /// for: the key may have been given again, with another definition, meanwhile).
    pub serial: u64,
    /// What to evaluate.
    pub node: Arc<Node>,
    /// The value of each reference of `node`, in `Node::for_each_ref` order.
    pub inputs: Vec<Value>,
    /// Positions in `inputs` that take the value of the job this one follows in a chain.
    pub from_previous: Vec<usize>,
    /// The task queued here behind this one (waiting for its value and nothing else): the
    /// same thread runs it right after, so a chain runs link after link with no hand-off
    /// through the loop per step.
    pub then: Option<Box<Job>>,
}

impl Job {
    /// How many tasks this job runs (itself and the links chained behind it).
    pub fn links(&self) -> usize {
        let mut n = 1;
        let mut link = self.then.as_deref();
        while let Some(job) = link {
            n += 1;
            link = job.then.as_deref();
        }
        n
    }
}

/// What an executor thread sends back for one task.
pub struct JobResult {
    /// The task's key.
    pub key: String,
    /// The job's serial (see [`Job::serial`]).
    pub serial: u64,
    /// The value and its size (measured on the executor, which also checks its nesting).
    pub result: Result<(Value, u64), EvalError>,
    /// How long it ran.
    pub duration: Duration,
    /// Set when the job did not run because the link before it in its chain failed.
    pub failed_input: Option<String>,
}

/// The executor threads, as the loop sees them: where it hands batches of jobs, finds their
/// results, and cancels jobs.
///
/// Each thread keeps the batch it took in a queue of its own (`Slot::queue`) and says which
/// job it runs (`Slot::running`). Cancelled jobs are skipped where they wait; a cancelled job
/// that is running cannot be stopped (a function is plain code), so its thread is *abandoned*:
/// a new thread takes over its queue at once, and the old one exits when the function returns,
/// its result discarded. At most `MAX_ABANDONED_PER_THREAD × nthreads` threads are abandoned
/// at a time; past that a cancelled job runs to its end in its thread.
pub struct Executors {
    jobs: Option<mpsc::Sender<Vec<Job>>>,
    results: mpsc::Receiver<Vec<JobResult>>,
    shared: Arc<Shared>,
}

/// Abandoned threads (still running a cancelled job) allowed per executor thread.
const MAX_ABANDONED_PER_THREAD: usize = 4;

/// What the executor threads share.
struct Shared {
    jobs: Mutex<mpsc::Receiver<Vec<Job>>>,
    results: mpsc::Sender<Vec<JobResult>>,
    registry: Registry,
    ctx: zmq::Context,
    wake_endpoint: String,
    wake_pending: Arc<AtomicBool>,
    /// Serials of cancelled jobs whose result has not come back yet.
    cancelled: Mutex<HashSet<u64>>,
    /// Whether `cancelled` may be non-empty (one atomic load per job otherwise).
    any_cancelled: AtomicBool,
    /// The live threads' slots.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Threads abandoned and still running.
    abandoned: AtomicUsize,
    max_abandoned: usize,
    /// Names threads.
    next_thread: AtomicUsize,
}

/// One executor thread's queue and what it runs.
#[derive(Default)]
struct Slot {
    /// The serial of the job running (0: none).
    running: AtomicU64,
    /// The serial of the cancelled job this thread was running when another thread took over
    /// its queue (0: none). The thread exits once that job returns.
    abandoned: AtomicU64,
    /// Jobs taken from the channel and not started.
    queue: Mutex<VecDeque<Job>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Executors {
    /// Starts `nthreads` executor threads; each pushes an empty message to `wake_endpoint`
    /// when it has sent results and `wake_pending` was clear (one wake-up for many results).
    pub fn spawn(
        ctx: &zmq::Context,
        wake_endpoint: &str,
        nthreads: u32,
        registry: Registry,
        wake_pending: Arc<AtomicBool>,
    ) -> Result<Executors, Error> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Vec<Job>>();
        let (results_tx, results_rx) = mpsc::channel::<Vec<JobResult>>();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(jobs_rx),
            results: results_tx,
            registry,
            ctx: ctx.clone(),
            wake_endpoint: wake_endpoint.to_string(),
            wake_pending,
            cancelled: Mutex::new(HashSet::new()),
            any_cancelled: AtomicBool::new(false),
            slots: Mutex::new(Vec::new()),
            abandoned: AtomicUsize::new(0),
            max_abandoned: nthreads.max(1) as usize * MAX_ABANDONED_PER_THREAD,
            next_thread: AtomicUsize::new(0),
        });
        for _ in 0..nthreads.max(1) {
            spawn_thread(&shared, VecDeque::new()).map_err(|(e, _)| e)?;
        }
        Ok(Executors {
            jobs: Some(jobs_tx),
            results: results_rx,
            shared,
        })
    }

    /// Hands a batch of jobs to the threads; false if they are gone.
    pub fn send(&self, batch: Vec<Job>) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(batch).is_ok())
    }

    /// A batch of finished jobs, if one is waiting.
    pub fn try_recv(&self) -> Option<Vec<JobResult>> {
        let batch = self.results.try_recv().ok()?;
        if self.shared.any_cancelled.load(Ordering::Acquire) {
            let mut cancelled = lock(&self.shared.cancelled);
            for r in &batch {
                cancelled.remove(&r.serial);
            }
            if cancelled.is_empty() {
                self.shared.any_cancelled.store(false, Ordering::Release);
            }
        }
        Some(batch)
    }

    /// Cancels the jobs with these serials: those not started are skipped (each still gives
    /// a result, of kind `cancelled`), a running one's thread is replaced (see [`Executors`]).
    pub fn cancel(&self, serials: &[u64]) {
        if serials.is_empty() {
            return;
        }
        lock(&self.shared.cancelled).extend(serials.iter().copied());
        self.shared.any_cancelled.store(true, Ordering::Release);
        let slots: Vec<Arc<Slot>> = lock(&self.shared.slots).clone();
        for slot in slots {
            // (A thread sets and clears what it runs under its queue's lock: checked under it,
            // the job is still running when its queue is taken.)
            let queue = {
                let mut queue = lock(&slot.queue);
                let running = slot.running.load(Ordering::Acquire);
                if running == 0
                    || !serials.contains(&running)
                    || slot.abandoned.load(Ordering::Acquire) != 0
                {
                    continue;
                }
                if self.shared.abandoned.load(Ordering::Acquire) >= self.shared.max_abandoned {
                    log::warn!(
                        "a cancelled task runs on: {} threads already run cancelled tasks",
                        self.shared.max_abandoned
                    );
                    continue;
                }
                slot.abandoned.store(running, Ordering::Release);
                self.shared.abandoned.fetch_add(1, Ordering::AcqRel);
                std::mem::take(&mut *queue)
            };
            if let Err((e, queue)) = spawn_thread(&self.shared, queue) {
                log::error!("cannot start an executor thread in place of a cancelled one: {e}");
                // The thread keeps its queue and runs it after the cancelled job.
                let mut own = lock(&slot.queue);
                own.extend(queue);
                if slot.abandoned.swap(0, Ordering::AcqRel) != 0 {
                    self.shared.abandoned.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Stops handing out jobs: the threads exit once the batches given are done.
    pub fn close(&mut self) {
        self.jobs = None;
    }
}

/// Starts one executor thread that first runs `queue` (given back with the error if the
/// thread cannot be started).
fn spawn_thread(shared: &Arc<Shared>, queue: VecDeque<Job>) -> Result<(), (Error, VecDeque<Job>)> {
    let wake = match wake_socket(shared) {
        Ok(wake) => wake,
        Err(e) => return Err((e, queue)),
    };
    let slot = Arc::new(Slot {
        queue: Mutex::new(queue),
        ..Slot::default()
    });
    lock(&shared.slots).push(slot.clone());
    let i = shared.next_thread.fetch_add(1, Ordering::Relaxed);
    let thread_shared = shared.clone();
    let thread_slot = slot.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("zask-exec-{i}"))
        // Deeply nested task nodes are evaluated recursively.
        .stack_size(zask_core::service::STACK_SIZE)
        .spawn(move || {
            executor_thread(&thread_shared, &thread_slot, &wake);
            lock(&thread_shared.slots).retain(|s| !Arc::ptr_eq(s, &thread_slot));
            if thread_slot.abandoned.load(Ordering::Acquire) != 0 {
                thread_shared.abandoned.fetch_sub(1, Ordering::AcqRel);
            }
        });
    if let Err(e) = spawned {
        lock(&shared.slots).retain(|s| !Arc::ptr_eq(s, &slot));
        let queue = std::mem::take(&mut *lock(&slot.queue));
        return Err((Error::Thread(e), queue));
    }
    Ok(())
}

/// An executor thread's socket to wake the loop.
fn wake_socket(shared: &Shared) -> Result<zmq::Socket, Error> {
    let wake = shared.ctx.socket(zmq::PUSH)?;
    net::configure(&wake)?;
    wake.connect(&shared.wake_endpoint)?;
    Ok(wake)
}

/// One executor thread: runs the jobs of its queue, taking a batch from the channel when it
/// is empty, until the channel closes, or it is abandoned and its queue is empty (its
/// successor took it). Results still held are sent before it returns.
fn executor_thread(shared: &Shared, slot: &Slot, wake: &zmq::Socket) {
    let mut sender = ResultSender {
        results: &shared.results,
        wake,
        wake_pending: &shared.wake_pending,
        done: Vec::new(),
        since_sent: Instant::now(),
    };
    let hooks = ThreadHooks { shared, slot };
    loop {
        let job = {
            let mut queue = lock(&slot.queue);
            let job = queue.pop_front();
            if job.is_none() && slot.abandoned.load(Ordering::Acquire) != 0 {
                drop(queue);
                sender.flush();
                return;
            }
            job
        };
        let Some(job) = job else {
            sender.flush();
            let batch = lock(&shared.jobs).recv();
            match batch {
                Ok(batch) => lock(&slot.queue).extend(batch),
                Err(_) => return,
            }
            continue;
        };
        let loop_alive = run_job(job, &shared.registry, &hooks, &mut |r, more| {
            let last = !more && lock(&slot.queue).is_empty();
            sender.push(r, last)
        });
        if !loop_alive {
            return;
        }
    }
}

/// What running a job asks of the thread it runs on.
trait Hooks {
    /// Whether the job with `serial` was cancelled (it is then skipped).
    fn cancelled(&self, serial: u64) -> bool;
    /// The job with `serial` starts (0: it ended).
    fn running(&self, serial: u64);
    /// Whether this thread was abandoned while it ran the job with `serial` (the rest of the
    /// chain is then skipped).
    fn abandoned(&self, serial: u64) -> bool;
}

/// No cancellation (`run_now`).
struct NoHooks;

impl Hooks for NoHooks {
    fn cancelled(&self, _: u64) -> bool {
        false
    }
    fn running(&self, _: u64) {}
    fn abandoned(&self, _: u64) -> bool {
        false
    }
}

/// An executor thread's hooks.
struct ThreadHooks<'a> {
    shared: &'a Shared,
    slot: &'a Slot,
}

impl Hooks for ThreadHooks<'_> {
    fn cancelled(&self, serial: u64) -> bool {
        self.shared.any_cancelled.load(Ordering::Acquire)
            && lock(&self.shared.cancelled).contains(&serial)
    }
    fn running(&self, serial: u64) {
        // Under the queue's lock, where `Executors::cancel` reads it.
        let _queue = lock(&self.slot.queue);
        self.slot.running.store(serial, Ordering::Release);
    }
    fn abandoned(&self, serial: u64) -> bool {
        self.slot.abandoned.load(Ordering::Acquire) == serial
    }
}

/// Runs `batch` on this thread and returns every result, in the order they finished.
pub fn run_now(batch: Vec<Job>, registry: &Registry) -> Vec<JobResult> {
    let mut results = Vec::new();
    for job in batch {
        run_job(job, registry, &NoHooks, &mut |r, _| {
            results.push(r);
            true
        });
    }
    results
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
    /// Sends the results held, if any.
    fn flush(&mut self) {
        if self.done.is_empty() {
            return;
        }
        if self.results.send(std::mem::take(&mut self.done)).is_ok()
            && !self.wake_pending.swap(true, Ordering::AcqRel)
        {
            let _ = self.wake.send(&b""[..], zmq::DONTWAIT);
        }
        self.since_sent = Instant::now();
    }

    /// Queues one result; sends the group when `last` (nothing more queued) or when the
    /// group has waited `RESULTS_DELAY` (a slow task is reported when it finishes, not with
    /// the rest). False when the loop is gone.
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

/// Runs a job with the chain queued behind it, handing each result to `push` (with whether
/// more links of the chain follow); false when `push` says the loop is gone. If the thread
/// was abandoned while a link ran, the links after it are given back as cancelled.
fn run_job(
    job: Job,
    registry: &Registry,
    hooks: &dyn Hooks,
    push: &mut dyn FnMut(JobResult, bool) -> bool,
) -> bool {
    // The value of the link before (or the key of the link that failed).
    let mut previous: Option<Result<Value, String>> = None;
    let mut link = Some(job);
    let mut abandoned = false;
    while let Some(mut job) = link.take() {
        link = job.then.take().map(|next| *next);
        let start = Instant::now();
        let mut failed_input = None;
        let result = if abandoned || hooks.cancelled(job.serial) {
            Err(EvalError {
                kind: ErrorKind::Cancelled,
                function: None,
                message: "cancelled".to_string(),
            })
        } else {
            hooks.running(job.serial);
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
            hooks.running(0);
            abandoned = hooks.abandoned(job.serial);
            result.and_then(|value| measure(value, &job.node))
        };
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
        if !push(done, link.is_some()) {
            return false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use zask_core::graph::task;

    fn job(serial: u64, node: Node) -> Job {
        Job {
            key: format!("k{serial}"),
            serial,
            node: Arc::new(node),
            inputs: Vec::new(),
            from_previous: Vec::new(),
            then: None,
        }
    }

    /// Waits for `n` results (each wait bounded).
    fn results(ex: &Executors, n: usize) -> Vec<JobResult> {
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while all.len() < n {
            assert!(Instant::now() < deadline, "only {} results came", all.len());
            match ex.try_recv() {
                Some(batch) => all.extend(batch),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        all
    }

    #[test]
    fn a_cancelled_running_job_gives_its_thread_back_and_a_queued_one_is_skipped() {
        let ctx = zmq::Context::new();
        let endpoint = "inproc://executor-test";
        let wake = ctx.socket(zmq::PULL).unwrap();
        wake.bind(endpoint).unwrap();
        let ex = Executors::spawn(
            &ctx,
            endpoint,
            1,
            Registry::with_stdlib(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        // One thread: the sleep runs, the other two wait in its queue.
        assert!(ex.send(vec![
            job(1, task("sleep", (30,))),
            job(2, task("inc", (1,))),
            job(3, task("inc", (2,))),
        ]));
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&ex.shared.slots)[0].running.load(Ordering::Acquire) != 1 {
            assert!(Instant::now() < deadline, "the sleep never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = Instant::now();
        ex.cancel(&[1, 3]);
        let done = results(&ex, 2);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let by_serial: HashMap<u64, &JobResult> = done.iter().map(|r| (r.serial, r)).collect();
        assert_eq!(
            by_serial[&2].result.as_ref().map(|(v, _)| v.clone()).ok(),
            Some(Value::Int(2)),
            "the next job ran on the new thread"
        );
        let skipped = by_serial[&3].result.as_ref().err().map(|e| e.kind.clone());
        assert_eq!(skipped, Some(ErrorKind::Cancelled));
        assert_eq!(ex.shared.abandoned.load(Ordering::Acquire), 1);
        assert_eq!(
            lock(&ex.shared.slots).len(),
            2,
            "the abandoned one and its successor"
        );
    }
}
