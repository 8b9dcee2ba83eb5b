//! Tasks: what the scheduler knows of each key ([`TaskState`]), how the key was defined
//! ([`Lineage`]), which workers hold its value ([`Holders`]), and how tasks are made (from a
//! submitted graph's nodes, again from lineage, or for a value without lineage).

use super::*;

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskStatus {
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
pub(crate) struct TaskState {
    pub(crate) key: Key,
    /// How it is computed, and how its inputs are (None for scattered data).
    pub(crate) lineage: Option<Arc<Lineage>>,
    pub(crate) status: TaskStatus,
    /// Distinct dependencies.
    pub(crate) deps: Vec<TaskId>,
    /// Tasks that listed this one as a dependency (may include finished or forgotten ones).
    /// Usually one or two, kept inline (no allocation per task of a wide fan-in).
    pub(crate) dependents: Dependents,
    /// Dependencies not yet in memory.
    pub(crate) waiting_on: u32,
    /// Unfinished dependents needing the value, plus computations wanting it as an output.
    pub(crate) waiters: u32,
    /// Whether this task's own claims on its dependencies were dropped already.
    pub(crate) deps_done: bool,
    /// Keep the data even when nothing waits on it (`keep_results`).
    pub(crate) kept: bool,
    /// Computations that want this key as an output.
    pub(crate) wanted_by: Vec<GraphId>,
    /// Workers holding the value.
    pub(crate) who_has: Holders,
    /// Size of the value, once known.
    pub(crate) nbytes: u64,
    /// Which set of functions the node calls (an index into the scheduler's signature
    /// table; a worker must offer all of them). Ready tasks queue per signature.
    pub(crate) signature: u32,
    /// Lower runs first: (computation sequence, position in it).
    pub(crate) priority: (u64, u64),
    /// How often a worker failed to fetch this task's inputs (bounded retries).
    pub(crate) fetch_retries: u32,
    /// How many workers died while running it (past `Config::allowed_failures`, it fails).
    pub(crate) deaths: u32,
    /// When it was last assigned (a counter), to tell running tasks from queued ones.
    pub(crate) assigned: u64,
}

/// The tasks depending on one task (see `TaskState::dependents`).
pub(crate) type Dependents = SmallVec<[TaskId; 2]>;

impl TaskState {
    /// Records that task `dependent` needs this one's value; true if it has to wait for it.
    pub(super) fn claim_for(&mut self, dependent: TaskId) -> bool {
        self.waiters += 1;
        self.dependents.push(dependent);
        self.status != TaskStatus::Memory
    }

    /// Its definition hash: its lineage's, or for a value without lineage (this is task `tid`)
    /// the one it was given with, in `given`.
    pub(super) fn definition(
        &self,
        tid: TaskId,
        given: &HashMap<TaskId, DefHash>,
    ) -> Option<DefHash> {
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
pub(crate) struct Lineage {
    pub(crate) key: Key,
    pub(crate) node: Arc<Node>,
    pub(crate) deps: Vec<Arc<Lineage>>,
    /// The key's definition hash (its node's, combined with its inputs').
    pub(crate) hash: DefHash,
}

impl Lineage {
    /// The lineage of each input that has one, by key (a task over a million inputs is
    /// re-linked in linear time, not by a search per input).
    pub(super) fn deps_by_key(&self) -> HashMap<&str, &Arc<Lineage>> {
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
pub(crate) struct Holders(SmallVec<[WorkerId; 2]>);

impl Holders {
    /// Adds `w`; false if it was there already.
    pub(crate) fn insert(&mut self, w: WorkerId) -> bool {
        if self.0.contains(&w) {
            return false;
        }
        self.0.push(w);
        true
    }
    /// Removes `w`; false if it was not there.
    pub(crate) fn remove(&mut self, w: &WorkerId) -> bool {
        match self.0.iter().position(|x| x == w) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }
    /// Whether `w` holds the key.
    pub(crate) fn contains(&self, w: &WorkerId) -> bool {
        self.0.contains(w)
    }
    /// Whether nobody holds the key.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// How many workers hold the key.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
    /// The holders, in no particular order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, WorkerId> {
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

impl SchedulerState {
    /// The definition hash of task `tid`.
    pub(super) fn hash_of(&self, tid: TaskId) -> Option<DefHash> {
        self.tasks.get(&tid)?.definition(tid, &self.given)
    }

    /// Records a value without lineage (scattered, or adopted from a worker) under `key`, with
    /// the definition hash it was given: nothing to wait for, kept until released. One being
    /// stored on a worker (`Processing`) counts as the latest assignment (it is checked).
    pub(super) fn insert_value(
        &mut self,
        key: Key,
        hash: DefHash,
        status: TaskStatus,
        nbytes: u64,
        signature: u32,
    ) -> TaskId {
        let tid = self.next_task;
        self.next_task = tid.next();
        self.use_signature(signature);
        self.stats.counts.add(&status);
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

    /// Records that worker `wid` holds `tid`, of `nbytes`.
    pub(super) fn add_holder(&mut self, tid: TaskId, wid: WorkerId, nbytes: u64) {
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

    /// Records that worker `wid` no longer holds `tid`.
    pub(super) fn remove_holder(&mut self, tid: TaskId, wid: WorkerId) {
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

    /// Adds a task for `lineage` whose inputs are the existing tasks `deps` (its node's
    /// references, distinct), `Ready` or `Waiting` for them.
    pub(super) fn create_task(
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
        self.insert_task(lineage, deps, waiting_on, priority, None)
    }

    /// Makes task `self.next_task` (whose inputs `deps` were claimed for it already, and
    /// `waiting_on` of them are not in memory), `Ready` or `Waiting`; with a `restriction`
    /// (see `functions::restriction`), it runs only on the workers it names.
    pub(super) fn insert_task(
        &mut self,
        lineage: Arc<Lineage>,
        deps: Vec<TaskId>,
        waiting_on: u32,
        priority: (u64, u64),
        restriction: Option<&str>,
    ) -> TaskId {
        let tid = self.next_task;
        self.next_task = tid.next();
        let signature = self.signature_with(&lineage.node, restriction);
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
        self.stats.counts.add(&status);
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
}
