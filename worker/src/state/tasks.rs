//! Taking tasks in: which inputs are here, which are coming (computed here, or fetched),
//! which to fetch from whom; the waits that follow; scattered values; tasks taken back.

use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap as HashMap;
use smallvec::SmallVec;
use zask_core::frames;
use zask_core::graph::Node;
use zask_core::protocol::{ComputeTask, ErrorKind, KeyData};
use zask_core::{Bytes, DefHash};

use super::fetch::{Fetching, ToFetch, FETCH_CHUNK};
use super::{Outbox, WorkerState};

/// The tasks waiting for one input (see `WorkerState::waiting`).
pub(crate) type Waiters = SmallVec<[Arc<str>; 1]>;

/// An input as a `compute` lists it: its key and the peers holding it.
type Listed<'a> = (&'a Arc<str>, &'a DefHash, &'a Vec<Arc<str>>);

/// The inputs a task was accepted with, as one number: the definition hashes of its
/// references, in node order, summed. A task runs only if the inputs it is given sum the
/// same (see `LocalTask::inputs`). (A sum, not a hash: cheap, and one input of another
/// definition, or several, changes it but for a chance of about 2^-120.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InputsDigest(u128);

impl InputsDigest {
    /// Counts one input of definition `hash`.
    pub(crate) fn add(&mut self, hash: &DefHash) {
        self.0 = self.0.wrapping_add(u128::from_le_bytes(hash.0));
    }
}

/// A task this worker was given and has not finished.
pub(crate) struct LocalTask {
    pub(crate) node: Arc<Node>,
    /// Its definition hash: the result is stored with it.
    pub(crate) hash: DefHash,
    /// This acceptance of the task (see `Job::serial`).
    pub(crate) serial: u64,
    /// Inputs not yet local.
    pub(crate) missing: usize,
    /// Whether the scheduler wants the value sent with the report.
    pub(crate) send_value: bool,
    /// Given to an executor. (`ready` may hold a key twice, or a key whose task was dropped
    /// and given anew, still waiting for inputs: only a task with all its inputs, not yet
    /// dispatched, is run.)
    pub(crate) dispatched: bool,
    /// The definitions of the inputs it was given with. An input here may be replaced by
    /// another definition before the task runs (the task was taken back, unknown to this
    /// worker, and the key redefined): the task then does not run on it, since its result
    /// would be stored under a definition it is not the value of.
    pub(crate) inputs: InputsDigest,
}

impl WorkerState {
    /// A `compute`: takes its tasks in. `early` is called with the outbox when a chunk of a
    /// wide task's inputs is ready to be fetched, so the loop can send it while the rest is
    /// taken in (tests pass a closure that does nothing).
    pub fn on_compute(
        &mut self,
        tasks: Vec<ComputeTask>,
        now: Instant,
        early: &mut dyn FnMut(&mut Outbox),
    ) {
        let mut to_fetch: ToFetch = HashMap::default();
        // A task may depend on one listed after it in the same batch.
        let has_inputs = |t: &ComputeTask| {
            let mut any = false;
            t.node.for_each_ref(&mut |_| any = true);
            any
        };
        let batch: HashMap<&str, DefHash> = if tasks.iter().any(has_inputs) {
            tasks.iter().map(|t| (t.key.as_str(), t.hash)).collect()
        } else {
            HashMap::default()
        };
        let mut failed = Vec::new();
        for t in &tasks {
            if !self.accept_task(t, &batch, &mut to_fetch, now, early) {
                failed.push(t.key.as_str());
            }
        }
        // Tasks of the batch that failed at once: whoever waits for them fails too.
        for key in failed {
            self.fail_waiters(key);
        }
        self.send_fetches(to_fetch, now);
    }

    /// A task of a `compute` that cannot be read (a malformed node, one nested too deep):
    /// it fails alone, `bad_task`, naming it; the others of the message are taken.
    pub fn on_unreadable_task(&mut self, key: &str, error: &str) {
        self.fail(
            key,
            None,
            ErrorKind::BadTask,
            None,
            format!("the task cannot be read: {error}"),
            None,
        );
    }

    /// Takes one task of a `compute` batch (`batch`: the keys of the batch's tasks, with
    /// their hashes, when some task of it has inputs): queue it, or wait for its inputs; false
    /// if it failed at once.
    fn accept_task(
        &mut self,
        t: &ComputeTask,
        batch: &HashMap<&str, DefHash>,
        to_fetch: &mut ToFetch,
        now: Instant,
        early: &mut dyn FnMut(&mut Outbox),
    ) -> bool {
        match self.tasks.get(&t.key) {
            // Running: it reports when done.
            Some(known) if known.hash == t.hash && known.dispatched => return true,
            Some(known) => {
                // Given again with another definition: the old one is dropped (a run of it
                // still going is not taken: its serial is stale). Given again with the same
                // one, not running yet: taken anew, with the inputs as the scheduler lists
                // them now (an input it waited for may have been redefined since).
                if known.hash != t.hash {
                    log::info!("task {:?} is given anew with another definition", t.key);
                }
                self.drop_task(&t.key);
            }
            None => {}
        }
        // A fetch of another definition of this key in flight is not taken (its late answer
        // would replace the value computed here); whoever waits for the key gets this one.
        if self
            .fetching
            .get(t.key.as_str())
            .is_some_and(|f| f.hash != t.hash)
        {
            self.fetching.remove(t.key.as_str());
        }
        match self.store.held(&t.key) {
            Some(held) if held.hash == t.hash => {
                // Computed (or fetched) here before: report it again.
                let value = if t.send_value {
                    self.store.get(&t.key).ok().flatten()
                } else {
                    None
                };
                self.report
                    .push_done(t.key.clone(), held.hash, held.nbytes, 0, value);
                return true;
            }
            Some(_) => {
                // A stale value of another definition: never reported for this one.
                log::info!("dropping a stale value of {:?} (another definition)", t.key);
                self.remove_stored(&t.key);
            }
            None => {}
        }
        // Every reference, in node order (a repeated key counted once below: its second
        // reference finds this task already waiting for it).
        let refs = t.node.refs();
        if refs.len() > 64 {
            // A wide task: grow the tables once rather than step by step.
            self.waiting.reserve(refs.len());
            self.fetching.reserve(refs.len());
        }
        let waiter: Arc<str> = Arc::from(t.key.as_str());
        // The scheduler lists holders in the node's order: follow it with a cursor, and build
        // a map only for a sender that lists them otherwise.
        let mut cursor = 0;
        let mut by_key: Option<HashMap<&str, Listed>> = None;
        let mut missing = 0;
        let mut inputs = InputsDigest::default();
        for dep in refs {
            // (The listed key is shared by every table the input enters: no copy of it.)
            let listed = match t.who_has.get(cursor) {
                Some((k, hash, peers)) if **k == *dep => {
                    cursor += 1;
                    Some((k, hash, peers))
                }
                _ => None,
            };
            let listed = listed.or_else(|| {
                by_key
                    .get_or_insert_with(|| {
                        t.who_has
                            .iter()
                            .map(|(k, h, p)| (&**k, (k, h, p)))
                            .collect()
                    })
                    .get(dep)
                    .copied()
            });
            // Computed in this batch: under that definition (the batch is the scheduler's word
            // now; anything here of another is stale).
            let in_batch = batch.get(dep);
            match (self.store.held(dep), listed) {
                // Here, and the copy wanted (or any copy, when none is named).
                (Some(held), Some((_, hash, _))) if held.hash == *hash => {
                    inputs.add(hash);
                    continue;
                }
                (Some(held), None) if in_batch.is_none_or(|h| *h == held.hash) => {
                    inputs.add(&held.hash);
                    continue;
                }
                // Here, but of another definition: stale, fetched anew.
                (Some(_), _) => {
                    log::info!("dropping a stale copy of input {dep:?} (another definition)");
                    self.remove_stored(dep);
                }
                (None, _) => {}
            }
            if let Some((_, hash, peers)) = listed {
                // Something here under this key from another definition (a task taken back
                // from this worker, still queued or fetching its inputs): not waited for.
                if self.tasks.get(dep).is_some_and(|local| local.hash != *hash) {
                    log::info!("dropping a task of another definition of {dep:?}");
                    self.drop_task(dep);
                }
                if let Some(f) = self.fetching.get_mut(dep) {
                    if f.hash != *hash {
                        // Fetched anew, from the holders of the copy wanted now.
                        f.hash = *hash;
                        f.untried = peers.iter().rev().map(|p| p.to_string()).collect();
                        if let Some(first) = f.untried.pop() {
                            let key: Arc<str> = Arc::from(dep);
                            to_fetch.entry(first).or_default().push(key);
                        }
                    }
                }
            }
            // Coming here already (computed in this batch or before it, or being fetched):
            // under which definition.
            let coming = in_batch.copied().or_else(|| {
                self.tasks
                    .get(dep)
                    .map(|local| local.hash)
                    .or_else(|| self.fetching.get(dep).map(|f| f.hash))
            });
            // The definition waited for: the one named, or the one coming.
            if let Some(hash) = listed.map(|(_, hash, _)| hash).or(coming.as_ref()) {
                inputs.add(hash);
            }
            if coming.is_some() {
                if self.add_waiter(dep, None, &waiter) {
                    missing += 1;
                }
                continue;
            }
            match listed.and_then(|(k, h, p)| Some((k, h, p.split_first()?))) {
                Some((dep, hash, (first, others))) => {
                    self.add_waiter(dep, Some(dep), &waiter);
                    missing += 1;
                    // The others, to try in order if the first fails (popped from the end).
                    // (Recorded first: a full chunk is sent below, and sending marks them.)
                    self.fetching.insert(
                        dep.clone(),
                        Fetching {
                            untried: others.iter().rev().map(|p| p.to_string()).collect(),
                            hash: *hash,
                            request: 0,
                        },
                    );
                    match to_fetch.get_mut(&**first) {
                        Some(keys) => {
                            keys.push(dep.clone());
                            // A wide task's inputs are asked for in chunks: the peer serves
                            // the first while this worker is still taking in the rest.
                            if keys.len() >= FETCH_CHUNK {
                                let chunk = std::mem::take(keys);
                                self.start_fetch(first.to_string(), chunk, now);
                                early(&mut self.outbox);
                            }
                        }
                        None => {
                            to_fetch.insert(first.to_string(), vec![dep.clone()]);
                        }
                    }
                }
                None => {
                    self.fail(
                        &t.key,
                        Some(t.hash),
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {dep:?} is neither on this worker nor on any peer named"),
                        Some(dep.to_string()),
                    );
                    // Undo the waits registered for earlier inputs.
                    self.forget_waits(&t.node, &waiter);
                    return false;
                }
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.tasks.insert(
            t.key.clone(),
            LocalTask {
                node: t.node.clone(),
                hash: t.hash,
                serial,
                missing,
                send_value: t.send_value,
                dispatched: false,
                inputs,
            },
        );
        if missing == 0 {
            self.ready.push_back(t.key.clone());
        }
        true
    }

    /// Forgets every task this worker was given (the scheduler forgot this worker, or is
    /// going away: it takes its tasks back, and gives them again as it sees fit). Runs still
    /// on an executor finish, and are not taken.
    pub(crate) fn forget_tasks(&mut self) {
        if !self.tasks.is_empty() {
            log::info!(
                "dropping {} task(s) the scheduler took back",
                self.tasks.len()
            );
        }
        self.tasks.clear();
        self.waiting.clear();
        self.ready.clear();
        self.fetching.clear();
        self.fetches.clear();
    }

    /// Forgets the task of `key` (given anew, or taken back by the scheduler), with its
    /// waits on inputs. A run of it already on an executor finishes, and is not taken.
    pub(crate) fn drop_task(&mut self, key: &str) {
        if let Some(task) = self.tasks.remove(key) {
            let waiter: Arc<str> = Arc::from(key);
            self.forget_waits(&task.node, &waiter);
        }
    }

    /// The scheduler no longer wants these tasks: those queued or waiting for inputs are
    /// forgotten, and those given to the executors are cancelled there (a running one's
    /// thread is freed; its result, like a skipped one's, comes back to a task no longer
    /// here and is dropped). Values held are not touched.
    pub(crate) fn cancel(&mut self, keys: Vec<String>) {
        for key in keys {
            let Some(task) = self.tasks.remove(key.as_str()) else {
                continue;
            };
            if task.dispatched {
                self.outbox.cancelled.push(task.serial);
            } else {
                self.forget_waits(&task.node, &Arc::from(key.as_str()));
            }
        }
    }

    /// Deletes `key` from the store (a stale value, or one the scheduler released).
    pub(crate) fn remove_stored(&mut self, key: &str) {
        if let Err(e) = self.store.remove(key) {
            log::warn!("cannot delete {key:?}: {e}");
        }
    }

    /// Notes that `waiter` waits for `dep`; false if it already did (a repeated reference).
    /// (`shared`: `dep` as a shared string, if the caller has one.)
    fn add_waiter(&mut self, dep: &str, shared: Option<&Arc<str>>, waiter: &Arc<str>) -> bool {
        match self.waiting.get_mut(dep) {
            Some(w) if w.last() == Some(waiter) => false,
            Some(w) => {
                w.push(waiter.clone());
                true
            }
            None => {
                let dep = shared.cloned().unwrap_or_else(|| Arc::from(dep));
                self.waiting
                    .insert(dep, Waiters::from_elem(waiter.clone(), 1));
                true
            }
        }
    }

    /// Takes `waiter` (a task that failed here) off the waiting lists of its inputs, so that
    /// no stale wait is counted for it when it is sent again.
    pub(crate) fn forget_waits(&mut self, node: &Node, waiter: &Arc<str>) {
        let waiting = &mut self.waiting;
        node.for_each_ref(&mut |dep| {
            if let Some(waiters) = waiting.get_mut(dep) {
                waiters.retain(|w| w != waiter);
                if waiters.is_empty() {
                    waiting.remove(dep);
                }
            }
        });
    }

    /// Stores a scattered value and reports it like a finished task.
    pub(crate) fn put(&mut self, item: KeyData, unpacker: &mut frames::Unpacker<'_, Bytes>) {
        let Some(hash) = item.hash else {
            return self.fail(
                &item.key,
                None,
                ErrorKind::TaskFailed,
                None,
                "a scattered value came without its definition hash".to_string(),
                None,
            );
        };
        let stored = unpacker
            .unpack(item.data)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                let nbytes = value.nbytes();
                self.store
                    .insert(&item.key, value, hash, nbytes)
                    .map(|()| nbytes)
                    .map_err(|e| e.to_string())
            });
        match stored {
            Ok(nbytes) => {
                self.report
                    .push_done(item.key.clone(), hash, nbytes, 0, None);
                self.input_arrived(&item.key);
            }
            Err(e) => self.fail(
                &item.key,
                Some(hash),
                ErrorKind::TaskFailed,
                None,
                format!("cannot store scattered value: {e}"),
                None,
            ),
        }
    }
}
