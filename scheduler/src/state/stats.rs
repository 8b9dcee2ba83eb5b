//! Statistics for the dashboard and Prometheus: counters kept as events happen (tasks by
//! state, tasks finished and failed per function with a histogram of their run times, bytes
//! moved between workers), the tasks finished while someone watches (the task stream), and
//! [`SchedulerState::observe`], which reads them out with the workers and computations.
//!
//! The hot path pays a few additions per finished task: nothing here walks the tasks. An
//! observation costs the workers, the computations in flight and the functions seen, and is
//! taken only while the dashboard or a scraper asks (a few times a second at most).

use super::*;
use zask_core::protocol::ComputationSummary;

/// Upper bounds of the task run-time histogram's buckets, in microseconds (the last bucket,
/// beyond them, is +Inf): 10 µs to 10 minutes.
pub const DURATION_BUCKETS_US: [u64; 9] = [
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    60_000_000,
    600_000_000,
];

/// Functions given their own statistics at most: names beyond these (a client may name any
/// function) are counted under [`OTHER_FUNCTIONS`], so the metrics stay bounded.
pub const MAX_FUNCTIONS: usize = 1_000;

/// The name the statistics of functions beyond [`MAX_FUNCTIONS`] go under.
pub const OTHER_FUNCTIONS: &str = "(other)";

/// Finished tasks remembered between two observations at most: past this, every other one is
/// dropped and from then on every other one recorded (an even sample at O(1) per task).
const FINISHED_KEPT: usize = 1_000;

/// Finished tasks an observation hands over at most (evenly sampled from those remembered).
pub const FINISHED_PER_OBSERVATION: usize = 500;

/// Computations an observation lists at most (the oldest; `computations_total` counts all).
pub const MAX_COMPUTATIONS_OBSERVED: usize = 1_000;

/// What one function's tasks did since the scheduler started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionStats {
    /// The function (a task calling several: their names joined with `+`).
    pub name: String,
    /// Tasks that finished.
    pub completed: u64,
    /// Tasks a worker reported failed.
    pub failed: u64,
    /// Total run time of the finished tasks, µs.
    pub duration_sum_us: u64,
    /// Finished tasks per run-time bucket ([`DURATION_BUCKETS_US`], then +Inf), not
    /// cumulative.
    pub buckets: [u64; DURATION_BUCKETS_US.len() + 1],
}

/// Tasks the scheduler tracks now, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Waiting for inputs.
    pub waiting: u64,
    /// Inputs ready, waiting for a worker.
    pub ready: u64,
    /// Assigned to a worker.
    pub processing: u64,
    /// Held by workers.
    pub memory: u64,
    /// Failed, kept while something refers to them.
    pub erred: u64,
}

impl TaskCounts {
    fn slot(&mut self, status: &TaskStatus) -> &mut u64 {
        match status {
            TaskStatus::Waiting => &mut self.waiting,
            TaskStatus::Ready => &mut self.ready,
            TaskStatus::Processing(_) => &mut self.processing,
            TaskStatus::Memory => &mut self.memory,
            TaskStatus::Erred(_) => &mut self.erred,
        }
    }

    /// A task with `status` was made.
    pub(super) fn add(&mut self, status: &TaskStatus) {
        *self.slot(status) += 1;
    }

    /// A task with `status` was forgotten.
    pub(super) fn remove(&mut self, status: &TaskStatus) {
        let n = self.slot(status);
        *n = n.saturating_sub(1);
    }
}

/// Sets `t`'s status, counted in `counts` (every change of a task's status goes through here,
/// so the counts by state need no walk over the tasks).
pub(super) fn set_status(counts: &mut TaskCounts, t: &mut TaskState, status: TaskStatus) {
    counts.remove(&t.status);
    counts.add(&status);
    t.status = status;
}

/// A task that finished on a worker, for the task stream.
#[derive(Debug, Clone)]
pub struct FinishedTask {
    /// The worker's address.
    pub worker: Arc<str>,
    /// Its function (as in [`FunctionStats::name`]).
    pub function: String,
    /// How long before the observation its report arrived (about when it ended).
    pub ended_ago: Duration,
    /// How long it ran.
    pub duration: Duration,
}

/// A worker as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct ObservedWorker {
    /// What `zask workers` shows of it.
    pub summary: WorkerSummary,
    /// Leaving gracefully.
    pub retiring: bool,
}

/// What the dashboard and the metrics read of the scheduler at one moment
/// ([`SchedulerState::observe`]).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Tasks tracked now, by state.
    pub tasks: TaskCounts,
    /// Tasks finished since the start.
    pub completed_total: u64,
    /// Tasks workers reported failed since the start.
    pub failed_total: u64,
    /// Keys held on workers.
    pub held_keys: u64,
    /// Bytes held on workers (each copy counted).
    pub held_bytes: u64,
    /// Bytes workers fetched from each other since the start.
    pub transfer_bytes_total: u64,
    /// Clients heard from within the client timeout.
    pub clients: u64,
    /// The workers, by address.
    pub workers: Vec<ObservedWorker>,
    /// The computations in flight (the oldest [`MAX_COMPUTATIONS_OBSERVED`]).
    pub computations: Vec<ComputationSummary>,
    /// How many computations are in flight.
    pub computations_total: u64,
    /// Per function, since the start.
    pub functions: Vec<FunctionStats>,
    /// Tasks finished since the last observation (while recording): at most
    /// [`FINISHED_PER_OBSERVATION`], evenly sampled.
    pub finished: Vec<FinishedTask>,
}

/// The statistics kept as events happen (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Tasks by state, kept by [`set_status`] and task creation and removal.
    pub(super) counts: TaskCounts,
    completed: u64,
    failed: u64,
    transfer_bytes: u64,
    functions: Vec<FunctionStats>,
    by_name: HashMap<String, usize>,
    /// Per signature id, its entry in `functions`.
    of_signature: Vec<usize>,
    /// Whether finished tasks are remembered for the task stream (someone watches).
    recording: bool,
    /// (worker, function entry, report time, run time µs), oldest first: every
    /// `finished_stride`-th task finished since the last observation.
    finished: Vec<(WorkerId, usize, Instant, u64)>,
    finished_stride: u64,
    /// Tasks finished since the last observation (while recording).
    finished_seen: u64,
}

impl Stats {
    /// Signature `id` (reused or new) calls `functions`: its tasks count under their name.
    pub(super) fn name_signature(&mut self, id: u32, functions: &[String]) {
        let name = signature_name(functions);
        let entry = match self.by_name.get(&name) {
            Some(&e) => e,
            None if self.functions.len() < MAX_FUNCTIONS => self.new_entry(name),
            None => match self.by_name.get(OTHER_FUNCTIONS) {
                Some(&e) => e,
                None => self.new_entry(OTHER_FUNCTIONS.to_string()),
            },
        };
        let id = id as usize;
        if self.of_signature.len() <= id {
            self.of_signature.resize(id + 1, 0);
        }
        self.of_signature[id] = entry;
    }

    fn new_entry(&mut self, name: String) -> usize {
        self.functions.push(FunctionStats {
            name: name.clone(),
            ..FunctionStats::default()
        });
        self.by_name.insert(name, self.functions.len() - 1);
        self.functions.len() - 1
    }

    fn entry(&mut self, signature: u32) -> Option<&mut FunctionStats> {
        let e = *self.of_signature.get(signature as usize)?;
        self.functions.get_mut(e)
    }

    /// A task of `signature` finished on `worker` after running `duration_us`.
    pub(super) fn task_done(
        &mut self,
        signature: u32,
        worker: WorkerId,
        duration_us: u64,
        now: Instant,
    ) {
        self.completed += 1;
        let bucket = DURATION_BUCKETS_US.partition_point(|&b| b < duration_us);
        if let Some(f) = self.entry(signature) {
            f.completed += 1;
            f.duration_sum_us = f.duration_sum_us.saturating_add(duration_us);
            f.buckets[bucket] += 1;
        }
        if self.recording {
            self.record_finished(signature, worker, duration_us, now);
        }
    }

    /// Remembers a finished task for the task stream: every `finished_stride`-th, the stride
    /// doubling (and every other one remembered dropped) each time [`FINISHED_KEPT`] are.
    fn record_finished(
        &mut self,
        signature: u32,
        worker: WorkerId,
        duration_us: u64,
        now: Instant,
    ) {
        self.finished_seen += 1;
        if !self
            .finished_seen
            .is_multiple_of(self.finished_stride.max(1))
        {
            return;
        }
        if self.finished.len() >= FINISHED_KEPT {
            let mut i = 0u32;
            self.finished.retain(|_| {
                i += 1;
                i.is_multiple_of(2)
            });
            self.finished_stride = self.finished_stride.max(1) * 2;
            if !self.finished_seen.is_multiple_of(self.finished_stride) {
                return;
            }
        }
        let e = self.of_signature.get(signature as usize).copied();
        self.finished
            .push((worker, e.unwrap_or(usize::MAX), now, duration_us));
    }

    /// Hands over the finished tasks remembered, and starts remembering anew.
    fn take_finished(&mut self) -> Vec<(WorkerId, usize, Instant, u64)> {
        self.finished_stride = 1;
        self.finished_seen = 0;
        std::mem::take(&mut self.finished)
    }

    /// A worker reported a task of `signature` failed.
    pub(super) fn task_failed(&mut self, signature: u32) {
        self.failed += 1;
        if let Some(f) = self.entry(signature) {
            f.failed += 1;
        }
    }

    /// A worker fetched `nbytes` from a peer.
    pub(super) fn transferred(&mut self, nbytes: u64) {
        self.transfer_bytes = self.transfer_bytes.saturating_add(nbytes);
    }
}

/// The name statistics give a task calling `functions` (restrictions to workers left out).
fn signature_name(functions: &[String]) -> String {
    let names: Vec<&str> = functions
        .iter()
        .filter(|f| functions::restricted_to(f).is_none())
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join("+")
    }
}

impl SchedulerState {
    /// Reads the statistics out, with the workers and the computations in flight, and starts
    /// (or goes on) remembering finished tasks for the next observation's task stream. Costs
    /// the workers, computations and functions, not the tasks.
    pub fn observe(&mut self, now: Instant) -> Observation {
        let stats = &mut self.stats;
        stats.recording = true;
        let remembered = stats.take_finished();
        let step = remembered.len().div_ceil(FINISHED_PER_OBSERVATION).max(1);
        let finished = remembered
            .into_iter()
            .step_by(step)
            .filter_map(|(w, f, at, us)| {
                Some(FinishedTask {
                    worker: self.workers.get(&w)?.address.clone(),
                    function: stats
                        .functions
                        .get(f)
                        .map_or_else(|| OTHER_FUNCTIONS.to_string(), |f| f.name.clone()),
                    ended_ago: now.saturating_duration_since(at),
                    duration: Duration::from_micros(us),
                })
            })
            .collect();
        let mut workers: Vec<ObservedWorker> = self
            .workers
            .values()
            .map(|w| ObservedWorker {
                summary: w.summary(now, false),
                retiring: w.retiring,
            })
            .collect();
        workers.sort_by(|a, b| a.summary.address.cmp(&b.summary.address));
        let client_timeout = self.config.client_timeout;
        let computations = self.computations_upto(now, MAX_COMPUTATIONS_OBSERVED);
        let computations_total = self.computation_count() as u64;
        let stats = &self.stats;
        Observation {
            tasks: stats.counts,
            completed_total: stats.completed,
            failed_total: stats.failed,
            held_keys: self.held as u64,
            held_bytes: self.workers.values().map(|w| w.nbytes).sum(),
            transfer_bytes_total: stats.transfer_bytes,
            clients: self
                .clients_seen
                .values()
                .filter(|&&t| now.saturating_duration_since(t) < client_timeout)
                .count() as u64,
            workers,
            computations,
            computations_total,
            functions: stats.functions.clone(),
            finished,
        }
    }

    /// Stops remembering finished tasks (nobody watches the task stream any more).
    pub fn stop_recording(&mut self) {
        self.stats.recording = false;
        self.stats.take_finished();
    }

    /// The task counts by state, counted the slow way, to check the counters in tests.
    #[cfg(test)]
    pub(super) fn counts_by_scan(&self) -> TaskCounts {
        let mut counts = TaskCounts::default();
        for t in self.tasks.values() {
            counts.add(&t.status);
        }
        counts
    }
}
