//! Assignment: the ready queues, placement and batching.
//!
//! Ready tasks queue per function signature, in priority order (computations in submission
//! order; within one, the post-order of a depth-first walk from its outputs). `schedule` takes
//! the best head among the queues that some worker with a free slot can serve; `pick_worker`
//! prefers the worker already holding the most bytes of the task's inputs, then the least
//! loaded; `has_slot` bounds what a worker holds (`saturation` tasks per thread, or
//! `queue_budget` of work for short tasks). `assign` also queues a dependent behind its only
//! missing input on the same worker (`queue_dependents`), and batches everything for one
//! worker into one `compute`. A task taken back (`rewait`) is counted again and queued, or
//! made to wait.

use super::*;

/// An entry of the ready queue (a max-heap, so the ordering is reversed).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ReadyEntry {
    pub(super) priority: (u64, u64),
    pub(super) task: TaskId,
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

/// Ready tasks by priority. Tasks ready when their computation arrives come in priority
/// order (a graph's tasks are created in it), so they go to a plain queue in O(1); tasks that
/// become ready later go to a heap. Popping takes the better of the two heads. (A million
/// tasks in a heap alone cost a cache-missing O(log n) each.)
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    pub(super) run: VecDeque<ReadyEntry>,
    pub(super) heap: BinaryHeap<ReadyEntry>,
}

impl ReadyQueue {
    /// Queues `entry`: at the back of the run if it comes no earlier than its tail, else in
    /// the heap.
    pub(super) fn push(&mut self, entry: ReadyEntry) {
        match self.run.back() {
            Some(last) if entry.priority < last.priority => self.heap.push(entry),
            _ => self.run.push_back(entry),
        }
    }

    /// The entry to run next, left queued.
    pub(super) fn peek(&self) -> Option<&ReadyEntry> {
        match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(b)) => Some(if a.priority <= b.priority { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Takes the entry to run next.
    pub(super) fn pop(&mut self) -> Option<ReadyEntry> {
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

    /// Whether no entry is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.run.is_empty() && self.heap.is_empty()
    }
}

/// Bits of a task's rank (the first half of `TaskState::priority`) that hold the id of the
/// computation that made it; the bits above hold its user priority, inverted (higher first).
const GRAPH_BITS: u32 = 40;

/// The rank of the tasks computation `g` makes, submitted with user `priority` (clamped to
/// 24 bits: -8,388,608 to 8,388,607): lower runs first, so a higher priority comes first,
/// then earlier computations (ids wrap after 2^40 computations, which only affects order).
pub(super) fn rank(g: GraphId, priority: i32) -> u64 {
    let p = i64::from(priority.clamp(-(1 << 23), (1 << 23) - 1));
    let inverted = ((1 << 23) - 1 - p) as u64;
    (inverted << GRAPH_BITS) | (g.0 & ((1 << GRAPH_BITS) - 1))
}

/// The computation that made a task of rank `rank` (see [`rank`]).
pub(super) fn graph_of(rank: u64) -> GraphId {
    GraphId(rank & ((1 << GRAPH_BITS) - 1))
}

/// The least a task is assumed to cost, whatever its function's own time: about a worker's
/// CPU per task for the message, the store and the report (measured at 1.5-2.5 µs), so a
/// worker thread holds up to 1,000 tiny tasks (`queue_budget` 5 ms / 2.5 µs = 2,000, capped
/// at `MAX_TASKS_PER_THREAD`): enough to stay busy while its reports travel.
const TASK_FLOOR_US: f64 = 2.5;

/// Tasks per thread a worker may hold at the most.
const MAX_TASKS_PER_THREAD: u32 = 1_000;

/// Where `pick_worker` would put a ready task.
enum Pick {
    Worker(WorkerId),
    /// Workers that could run it are all full.
    Busy,
    /// No registered worker offers this function any more.
    Nobody(String),
}

impl SchedulerState {
    /// Recounts which inputs an unfinished task still waits for and sets it `Waiting` or
    /// `Ready` accordingly (taking it back from its worker if it was assigned).
    pub(super) fn rewait(&mut self, tid: TaskId) {
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
            stats::set_status(&mut self.stats.counts, t, TaskStatus::Waiting);
        }
    }

    /// Marks `tid` ready and queues it (in the queue of its functions).
    pub(super) fn push_ready(&mut self, tid: TaskId) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        stats::set_status(&mut self.stats.counts, t, TaskStatus::Ready);
        t.waiting_on = 0;
        self.ready.entry(t.signature).or_default().push(ReadyEntry {
            priority: t.priority,
            task: tid,
        });
    }

    /// Assigns ready tasks to workers with free slots, in priority order: each step takes the
    /// best head among the queues whose functions some free worker offers.
    pub(super) fn schedule(&mut self, out: &mut Outbox) {
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

    /// The worker for ready task `tid`: among those with a free slot offering all its
    /// functions, the one holding the most bytes of its inputs, then the least loaded.
    fn pick_worker(&self, tid: TaskId) -> Pick {
        let Some(t) = self.tasks.get(&tid) else {
            return Pick::Busy;
        };
        if let Some(f) = self.missing_function(t.signature) {
            return Pick::Nobody(f.clone());
        }
        let functions = self.functions_of(t.signature);
        let capable = |w: &&Worker| functions.iter().all(|f| w.offers(f));
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
                            .is_some_and(|fs| fs.iter().all(|f| w.offers(f)))
                });
                if fits {
                    next.push(d);
                }
            }
        }
    }

    /// Assigns `tid` to `wid`: the task goes into the worker's `compute` batch, naming the
    /// holders of each input the worker does not have.
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
        stats::set_status(&mut self.stats.counts, t, TaskStatus::Processing(wid));
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
