//! The executor threads: where tasks run.
//!
//! The loop hands [`Job`]s to `nthreads` threads in batches (one channel operation and one
//! wake-up for many tiny tasks); each thread evaluates them (a job may carry the chain of
//! tasks queued behind it, run link after link on the same thread) and sends the
//! [`JobResult`]s back in groups, waking the loop once per group.
//!
//! [`run_now`] runs a batch on the calling thread: the state machine's tests and the
//! scheduler's simulated cluster run real jobs with it, with no threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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

/// Where the loop hands batches of jobs to the executor threads.
pub type JobSender = mpsc::Sender<Vec<Job>>;
/// Where the loop finds what the executors finished.
pub type ResultReceiver = mpsc::Receiver<Vec<JobResult>>;

/// Starts `nthreads` executor threads; each pushes an empty message to `wake_endpoint` when
/// it has sent results and `wake_pending` was clear (one wake-up for many results).
pub fn spawn_executors(
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
                    if !run_batch(batch, &registry, &mut |r, last| sender.push(r, last)) {
                        return;
                    }
                }
            })
            .map_err(Error::Thread)?;
    }
    Ok((jobs_tx, results_rx))
}

/// Runs `batch` on this thread and returns every result, in the order they finished.
pub fn run_now(batch: Vec<Job>, registry: &Registry) -> Vec<JobResult> {
    let mut results = Vec::new();
    run_batch(batch, registry, &mut |r, _| {
        results.push(r);
        true
    });
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

/// Runs a batch of jobs, each with the chain queued behind it, handing each result to
/// `push` (with whether it is the batch's last); false when `push` says the loop is gone.
fn run_batch(
    batch: Vec<Job>,
    registry: &Registry,
    push: &mut dyn FnMut(JobResult, bool) -> bool,
) -> bool {
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
            if !push(done, i + 1 == count && link.is_none()) {
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
