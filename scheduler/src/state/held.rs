//! Copies workers say they hold: at registration (a store kept across a restart) or fetched
//! from a peer (`acquired`). A copy of the key's current definition that was asked for is
//! recorded; any other is dropped. A registered copy of a key the scheduler does not know is
//! adopted for `adopt_grace`, so that a client resubmitting or gathering it finds it.

use super::*;

/// How a worker came to hold a key it tells the scheduler about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// It held the key when it registered (a sled store kept across a restart, or a worker
    /// the scheduler had forgotten).
    Registered,
    /// It fetched the key from a peer (`acquired`).
    Fetched,
}

impl SchedulerState {
    /// Worker `wid` holds `info.key` (it registered with it, or fetched it from a peer): record
    /// the copy if it is the key's current definition and is wanted, otherwise ask the worker
    /// to drop it. A copy of a key still being computed (or waiting for a worker that can
    /// compute it) makes it held at once. A registered copy of a key the scheduler does not
    /// know (it restarted, or forgot the key while the worker was away) is adopted for
    /// `adopt_grace`, so a client that resubmits or gathers finds it.
    pub(super) fn on_held(
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
            // (Unless it holds it, or is computing it: then the copy is what it will report
            // as the result, and a release now would delete it after that report.)
            if !t.who_has.contains(&wid) && t.status != TaskStatus::Processing(wid) {
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
    pub(super) fn expire_adopted(&mut self, now: Instant, out: &mut Outbox) {
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

    /// Whether task `tid` (`t`) is one nothing claims, so that a new definition of its key
    /// replaces it: a value adopted after a restart that nobody waits for, or a task whose
    /// last claim went in this turn (a future dropped just before its key is submitted
    /// anew: it would be forgotten at the end of the turn). Not a scattered value still
    /// being stored (its scatter waits for it).
    pub(super) fn replaceable(&self, tid: TaskId, t: &TaskState) -> bool {
        t.waiters == 0
            && (self.adopted.contains_key(&tid) || !t.kept)
            && !self.scatter_of.contains_key(&tid)
    }
}
