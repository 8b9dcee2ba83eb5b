//! A task's end, as its worker reports it: done (its value is held, its dependents are woken,
//! the computations waiting get it) or failed (the failure spreads to every dependent, and to
//! every computation that wants one of them). A report counts only from the worker the task is
//! assigned to, and only for the definition it was given. A task its worker never got is
//! given again (`assign_again`).

use super::*;
use zask_core::protocol::KeyStatus;

impl SchedulerState {
    /// A task its worker does not have (its message, or the worker's state, was lost): one
    /// with a lineage is given again; a scattered value, which only its client has, fails as
    /// `lost` (the message says it `why`).
    pub(super) fn assign_again(&mut self, tid: TaskId, why: &str, out: &mut Outbox) {
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

    /// Worker `wid` finished task `done.key`. Taken only from the worker the task is assigned
    /// to, while it is: any other report (a task it was never given, one taken from it since,
    /// a duplicate) is logged and ignored, and the worker drops the value unless it is a
    /// known holder of it.
    pub(super) fn on_task_done(
        &mut self,
        wid: WorkerId,
        done: TaskDone,
        now: Instant,
        out: &mut Outbox,
    ) {
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
        self.stats.task_done(signature, wid, done.duration_us, now);
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
    pub(super) fn task_in_memory(&mut self, tid: TaskId, value: Option<Value>, out: &mut Outbox) {
        let (dependents, wanted_by, key) = {
            let Some(t) = self.tasks.get_mut(&tid) else {
                return;
            };
            stats::set_status(&mut self.stats.counts, t, TaskStatus::Memory);
            let rank = t.priority.0;
            self.count_progress(tid, rank, false);
            let Some(t) = self.tasks.get_mut(&tid) else {
                return;
            };
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
        self.notify(tid, KeyStatus::Done, None, out);
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
    pub(super) fn on_task_failed(&mut self, wid: WorkerId, failed: TaskFailed, out: &mut Outbox) {
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
        if failed.kind == ErrorKind::TaskFailed && self.futures.take_retry(tid) {
            log::info!(
                "task {:?} failed ({}); running it again (retries)",
                failed.key,
                failed.message
            );
            self.rewait(tid);
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
        // (Counted here, once final: a failure retried, or a fetch of an input given again,
        // is not the function's failure.)
        if let Some(t) = self.tasks.get(&tid) {
            self.stats.task_failed(t.signature);
        }
        self.fail_task(tid, error, out);
    }

    /// Task `tid`, which finished or was assigned, is to be computed again (its value was
    /// lost, or never arrived): `Waiting`, no longer counted done in its computation's
    /// progress nor assigned to its worker.
    pub(super) fn unfinish(&mut self, tid: TaskId) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        if let TaskStatus::Processing(w) = t.status {
            if let Some(w) = self.workers.get_mut(&w) {
                w.processing.remove(&tid);
            }
        }
        let was_done = t.status == TaskStatus::Memory;
        let rank = t.priority.0;
        stats::set_status(&mut self.stats.counts, t, TaskStatus::Waiting);
        if was_done {
            self.uncount_progress(tid, rank);
        }
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

    /// Marks `tid` and everything depending on it as failed, and fails every computation that
    /// wants one of them: with `error` if it wants `tid` itself, with a `dependency_failed`
    /// naming the key it wants and `tid` as the input that failed otherwise.
    pub(super) fn fail_task(&mut self, tid: TaskId, error: ErrorInfo, out: &mut Outbox) {
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
            let rank = t.priority.0;
            self.count_progress(id, rank, true);
            self.notify(id, KeyStatus::Erred, Some(&err), out);
            for &d in &dependents {
                if let Some(dt) = self.tasks.get(&d) {
                    stack.push((d, dependency_failed(&dt.key, &error)));
                }
            }
            let t = self.tasks.get_mut(&id);
            if let Some(t) = t {
                stats::set_status(&mut self.stats.counts, t, TaskStatus::Erred(Box::new(err)));
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
        self.end_graph(&graph);
        out.to_clients.push((
            graph.client.clone(),
            ToClient::Error {
                request: graph.request,
                error,
            },
        ));
        self.drop_graph_claims(g, &graph.outputs, false);
    }

    /// Fails `tid`, whose value is gone for good, with `error` (it is not kept any more).
    pub(super) fn fail_lost(&mut self, tid: TaskId, error: ErrorInfo, out: &mut Outbox) {
        self.unfinish(tid);
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.kept = false;
        }
        self.fail_task(tid, error, out);
    }
}

/// The error of `key`, which depends on the failed key `root.key`: `dependency_failed`,
/// naming the key, the input that failed, its function and its message.
pub(super) fn dependency_failed(key: &str, root: &ErrorInfo) -> ErrorInfo {
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
