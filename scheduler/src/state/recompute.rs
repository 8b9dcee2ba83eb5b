//! Lost keys computed again from their lineage.
//!
//! A key whose only copy went away (with its worker, or missing when gathered) and that
//! something still needs waits again, and so does every unfinished task that needs it; the
//! inputs it was computed from are re-created from its lineage when they were released since.
//! A key without lineage (scattered data), or whose inputs were defined anew since, cannot be
//! computed again: it fails as `lost`.

use super::*;

impl SchedulerState {
    /// `tid`'s only copy may be gone. If it is (in memory with no holder) and something still
    /// needs it, it is computed again from its lineage, and every unfinished task that needs it
    /// waits for it again; without lineage or inputs, whoever waits gets an error.
    pub(super) fn recompute_lost(&mut self, tid: TaskId, out: &mut Outbox) {
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
        self.unfinish(tid);
        self.notify(tid, zask_core::protocol::KeyStatus::Lost, None, out);
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
                Some(&id) => {
                    if let Some(&dep) = lineage_of.get(dep_key) {
                        self.lend_lineage(id, dep);
                    }
                    id
                }
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
            if let Some(&id) = self.task_ids.get(&*l.key) {
                self.lend_lineage(id, &l);
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
                if let Some(&id) = self.task_ids.get(dep_key) {
                    if let Some(&dep) = lineage_of.get(dep_key) {
                        self.lend_lineage(id, dep);
                    }
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

    /// An input the recompute uses as it is, but that has no lineage of its own (a value a
    /// worker offered after a restart, adopted before any graph claimed it) gets the lineage
    /// the recompute has for it, when it is the same definition: if it is lost in turn, it
    /// can be computed again too (rather than failing as if it were scattered data).
    fn lend_lineage(&mut self, id: TaskId, lineage: &Arc<Lineage>) {
        let same = self.hash_of(id) == Some(lineage.hash);
        if let Some(t) = self.tasks.get_mut(&id) {
            if t.lineage.is_none() && same {
                t.lineage = Some(lineage.clone());
            }
        }
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
