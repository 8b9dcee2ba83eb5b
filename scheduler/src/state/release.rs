//! Release by reference counts: a task lives while something needs it.
//!
//! A task's `waiters` counts the unfinished dependents that need its value plus the
//! computations that want it as an output. A dependent that finishes (or fails) drops its
//! claims on its inputs; a computation that ends drops its claims on its outputs. The tasks
//! that lost a claim are looked at after the turn's messages went out (`on_flushed`): one that
//! nothing needs, and that is not `kept`, is forgotten and its data released from its holders,
//! then whatever only it needed. Copies beyond `max_copies` are released once no unfinished
//! task needs them.

use super::*;

impl SchedulerState {
    /// Asks worker `wid` to drop its copy of `key` (with the turn's other releases).
    pub(super) fn send_release(&mut self, wid: WorkerId, key: String, out: &mut Outbox) {
        if let Some(w) = self.workers.get(&wid) {
            if let Some(batch) = batch_of(&mut out.release, &w.route) {
                batch.push(key);
            }
        }
    }

    /// Computation `g` ended: its claims on its `outputs` are dropped (those in memory are
    /// `kept` when `keep`), and they are looked at after the flush.
    pub(super) fn drop_graph_claims(&mut self, g: GraphId, outputs: &[TaskId], keep: bool) {
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
    pub(super) fn drop_dep_claims(&mut self, tid: TaskId) {
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
        if std::mem::take(&mut self.slots_freed) {
            // Tasks cancelled on their workers freed slots that ready tasks may take (no
            // report will come for them to do it).
            self.schedule(out);
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
    pub(super) fn check_release(&mut self, tid: TaskId, out: &mut Outbox) {
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
                // A scattered value being stored: its scatter waits for it; released when it
                // is reported.
                TaskStatus::Processing(_) if t.lineage.is_none() => continue,
                // Nobody wants it any more: its worker forgets it (a running one's result is
                // discarded, its thread freed for the next task).
                TaskStatus::Processing(w) => {
                    let w = *w;
                    let hash = t.definition(id, &self.given).unwrap_or_default();
                    if let Some(route) = self.workers.get(&w).map(|w| w.route.as_slice()) {
                        if let Some(batch) = batch_of(&mut out.cancel, route) {
                            batch.push((String::from(&*t.key), hash));
                        }
                    }
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.processing.remove(&id);
                    }
                    self.slots_freed = true;
                    self.take_dep_claims(id, &mut stack);
                }
                TaskStatus::Waiting | TaskStatus::Ready | TaskStatus::Erred(_) => {
                    self.take_dep_claims(id, &mut stack);
                }
                TaskStatus::Memory => {}
            }
            self.forget(id, out);
        }
    }

    /// Removes `tid` from the scheduler and its data from every holder.
    pub(super) fn forget(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(t) = self.tasks.remove(&tid) else {
            return;
        };
        self.task_ids.remove(&t.key);
        self.stats.counts.remove(&t.status);
        self.unuse_signature(t.signature);
        self.futures.forget(tid);
        if let TaskStatus::Processing(w) = t.status {
            if let Some(worker) = self.workers.get_mut(&w) {
                worker.processing.remove(&tid);
            }
        }
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

    /// Releases copies of `tid` beyond `max_copies` once no unfinished task needs it (copies
    /// appear when peers fetch inputs). The lowest-numbered holders keep theirs.
    fn trim_copies(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        let max = self.config.max_copies.max(1);
        if t.status != TaskStatus::Memory
            || t.who_has.len() <= max
            || t.waiters as usize > t.wanted_by.len() + self.futures.holders(tid)
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
}
