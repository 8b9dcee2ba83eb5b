//! Functions: which workers can run a task.
//!
//! The set of functions a node calls is interned as a signature (a worker must offer all of
//! them); the table is bounded, signatures no task uses being forgotten past
//! `SIGNATURES_KEPT`. A ready task no registered worker can run is stalled: when something
//! needs it, it fails after `no_workers_timeout`; it runs as soon as a worker offering its
//! functions registers.

use super::*;

/// The prefix of a signature entry that restricts tasks to some workers (`workers` of a
/// submission): `@workers:` followed by their addresses, sorted, separated by `|`. A worker
/// offers it if its address is one of them.
const RESTRICTION: &str = "@workers:";

/// The signature entry that restricts tasks to the workers at `addresses` (`None`: no
/// restriction).
pub(super) fn restriction(addresses: &[String]) -> Option<String> {
    if addresses.is_empty() {
        return None;
    }
    let mut sorted: Vec<&str> = addresses.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    Some(format!("{RESTRICTION}{}", sorted.join("|")))
}

/// The addresses a signature entry restricts tasks to, if it is a restriction.
pub(super) fn restricted_to(entry: &str) -> Option<std::str::Split<'_, char>> {
    entry.strip_prefix(RESTRICTION).map(|list| list.split('|'))
}

/// Function signatures kept before the unused ones are forgotten.
pub(super) const SIGNATURES_KEPT: usize = 1024;

impl SchedulerState {
    /// Tasks no registered worker can run (no worker at all, or none offering all their
    /// functions): one that something waits for fails after `no_workers_timeout` (the
    /// computations waiting get `no_workers` or `unknown_function`); one only kept (a lost kept
    /// key) waits for as long as it takes, so a worker that can run it, or a holder coming back
    /// with its copy, revives it. Looked at once a second.
    pub(super) fn check_stalled(&mut self, now: Instant, out: &mut Outbox) {
        if self.stalled.is_empty()
            || self
                .checks
                .stall_scan
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.checks.stall_scan = Some(now);
        let timeout = self.config.no_workers_timeout;
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for (tid, since) in self.stalled.iter_mut() {
            match self.tasks.get(tid) {
                Some(t) if t.status == TaskStatus::Ready => {
                    if t.waiters == 0 {
                        *since = None;
                    } else if now.saturating_duration_since(*since.get_or_insert(now)) >= timeout {
                        expired.push(*tid);
                    }
                }
                _ => gone.push(*tid),
            }
        }
        for tid in gone {
            self.stalled.remove(&tid);
        }
        for tid in expired {
            self.stalled.remove(&tid);
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            let key = t.key.to_string();
            let error = if self.workers.is_empty() {
                ErrorInfo::new(
                    ErrorKind::NoWorkers,
                    format!(
                        "key {key:?} waited {timeout:?} with no worker registered; start \
                         zask-worker pointing at the scheduler's address_to_workers"
                    ),
                )
                .with_key(&key)
            } else {
                let functions = self.functions_of(t.signature);
                let missing = self.missing_function(t.signature).cloned();
                let only_on = missing.as_deref().and_then(restricted_to);
                if let Some(addresses) = only_on {
                    let addresses: Vec<&str> = addresses.collect();
                    ErrorInfo::new(
                        ErrorKind::UnknownFunction,
                        format!(
                            "key {key:?} may run only on the workers {addresses:?} (its \
                             `workers`), and none of them has been registered for {timeout:?}"
                        ),
                    )
                    .with_key(&key)
                } else {
                    ErrorInfo {
                        kind: ErrorKind::UnknownFunction,
                        message: format!(
                            "key {key:?} calls {}, which no registered worker has offered for \
                         {timeout:?} (its workers went away); start a worker that offers it",
                            match &missing {
                                Some(f) => format!("{f:?}"),
                                None =>
                                    format!("{functions:?}, which no one worker offers together"),
                            }
                        ),
                        key: Some(key),
                        function: missing,
                        dependency: None,
                    }
                }
            };
            if let Some(t) = self.tasks.get_mut(&tid) {
                stats::set_status(&mut self.stats.counts, t, TaskStatus::Waiting);
                t.kept = false;
            }
            self.fail_task(tid, error, out);
        }
    }

    /// Whether some registered worker offers every function of `signature`.
    pub(super) fn runnable(&self, signature: u32) -> bool {
        let functions = self.functions_of(signature);
        self.workers
            .values()
            .any(|w| functions.iter().all(|f| w.offers(f)))
    }

    /// The functions of signature `id`.
    pub(super) fn functions_of(&self, id: u32) -> &[String] {
        self.signatures
            .get(id as usize)
            .map_or(&[], |f| f.as_slice())
    }

    /// A function of signature `id` that no registered worker offers, if there is one (a
    /// restriction to workers none of which is registered counts as one).
    pub(super) fn missing_function(&self, id: u32) -> Option<&String> {
        self.functions_of(id)
            .iter()
            .find(|f| match restricted_to(f) {
                Some(_) => !self.workers.values().any(|w| w.offers(f)),
                None => !self.function_counts.contains_key(f.as_str()),
            })
    }

    /// A worker registered: the stalled tasks it makes runnable are queued again (the others
    /// stay stalled, keeping their time).
    pub(super) fn unstall(&mut self) {
        let runnable: Vec<TaskId> = self
            .stalled
            .keys()
            .copied()
            .filter(|tid| {
                self.tasks
                    .get(tid)
                    .is_some_and(|t| t.status == TaskStatus::Ready && self.runnable(t.signature))
            })
            .collect();
        for tid in runnable {
            self.stalled.remove(&tid);
            self.push_ready(tid);
        }
    }

    /// The signature (sorted set of functions called, function names given to `map` and the
    /// like included) of `node`, registered if new. A node calling one function (the usual
    /// case) is looked up by that name, with no allocation. Callers that make a task of it
    /// count it with [`SchedulerState::use_signature`].
    pub(super) fn signature_of(&mut self, node: &Node) -> u32 {
        self.signature_with(node, None)
    }

    /// As [`SchedulerState::signature_of`], for a task that may run only where
    /// `restriction` (a [`restriction`] name) allows.
    pub(super) fn signature_with(&mut self, node: &Node, restriction: Option<&str>) -> u32 {
        if let (Node::Task(t), None) = (node, restriction) {
            let plain = |n: &Node| !matches!(n, Node::Task(_) | Node::List(_) | Node::Map(_));
            if t.args.iter().all(plain)
                && t.kwargs.iter().all(|(_, n)| plain(n))
                && zask_core::graph::function_argument(&t.func).is_none()
            {
                if let Some(&id) = self.single_signatures.get(t.func.as_str()) {
                    return id;
                }
            }
        }
        let mut functions: Vec<String> = Vec::new();
        node.for_each_function(&mut |f| {
            if !functions.iter().any(|x| x == f) {
                functions.push(f.to_string());
            }
        });
        functions.extend(restriction.map(str::to_string));
        functions.sort();
        if let Some(&id) = self.signature_ids.get(&functions) {
            return id;
        }
        if self.free_signatures.is_empty() && self.signatures.len() >= SIGNATURES_KEPT {
            self.collect_signatures();
        }
        let id = match self.free_signatures.pop() {
            Some(id) => {
                self.signatures[id as usize] = functions.clone();
                id
            }
            None => {
                self.signatures.push(functions.clone());
                self.signature_users.push(0);
                (self.signatures.len() - 1) as u32
            }
        };
        if let [only] = functions.as_slice() {
            self.single_signatures.insert(only.clone(), id);
        }
        self.stats.name_signature(id, &functions);
        self.signature_ids.insert(functions, id);
        id
    }

    /// One more task uses signature `id`.
    pub(super) fn use_signature(&mut self, id: u32) {
        if let Some(n) = self.signature_users.get_mut(id as usize) {
            *n += 1;
        }
    }

    /// One task fewer uses signature `id`.
    pub(super) fn unuse_signature(&mut self, id: u32) {
        if let Some(n) = self.signature_users.get_mut(id as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Forgets the signatures no task uses (their ids are given again), so that the table is
    /// bounded by the signatures in use, not by every one ever seen.
    fn collect_signatures(&mut self) {
        for (id, users) in self.signature_users.iter().enumerate() {
            if *users > 0 {
                continue;
            }
            let functions = std::mem::take(&mut self.signatures[id]);
            if let [only] = functions.as_slice() {
                self.single_signatures.remove(only);
            }
            self.signature_ids.remove(&functions);
            self.durations.remove(&(id as u32));
            self.ready.remove(&(id as u32));
            self.free_signatures.push(id as u32);
        }
        log::debug!(
            "{} of {} function signatures unused and forgotten",
            self.free_signatures.len(),
            self.signatures.len()
        );
    }
}
