//! Running tasks: dispatching ready ones (with the chains queued behind them) to the
//! executors, taking their results in, and waking or failing what waits for them.

use zask_core::graph::Node;
use zask_core::protocol::ErrorKind;
use zask_core::Value;

use super::tasks::InputsDigest;
use super::WorkerState;
use crate::executor::{Job, JobResult};
use crate::store::Store;

/// Tasks handed to the executors per thread ahead of time (their inputs are taken then), in
/// batches of up to half as many.
pub(crate) const DISPATCH_AHEAD: u32 = 64;

/// The inputs of a task gathered from the store: their values in the order evaluation takes
/// them, the positions left blank, and the digest of the copies used.
struct Gathered {
    inputs: Vec<Value>,
    blanks: Vec<usize>,
    digest: InputsDigest,
}

/// The value of each reference of `node`, from `store`, in the order evaluation takes them.
/// References to `blank` (the link before, in a chain, not computed yet) are left nil, and
/// their positions returned. `Err`: an input the store does not hold.
fn gather_inputs(store: &dyn Store, node: &Node, blank: Option<&str>) -> Result<Gathered, String> {
    let mut inputs = Vec::new();
    let mut blanks = Vec::new();
    let mut digest = InputsDigest::default();
    let mut lost = None;
    node.for_each_ref(&mut |dep| {
        if lost.is_some() {
            return;
        }
        if blank == Some(dep) {
            blanks.push(inputs.len());
            inputs.push(Value::Nil);
            return;
        }
        match store.get_with(dep) {
            Ok(Some((v, held))) => {
                digest.add(&held.hash);
                inputs.push(v)
            }
            _ => lost = Some(dep.to_string()),
        }
    });
    match lost {
        Some(dep) => Err(dep),
        None => Ok(Gathered {
            inputs,
            blanks,
            digest,
        }),
    }
}

impl WorkerState {
    /// Hands ready tasks to the executor threads: up to `DISPATCH_AHEAD` per thread, so a
    /// thread that finishes a task takes the next at once, without waiting for the loop.
    /// (Still at most `nthreads` run at once: there are that many executor threads.)
    pub(crate) fn run_ready(&mut self) {
        let nthreads = self.config.nthreads.max(1);
        let mut jobs = Vec::new();
        while self.running + (jobs.len() as u32) < nthreads * DISPATCH_AHEAD {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            if task.missing != 0 || task.dispatched {
                continue; // A stale entry (see `LocalTask::dispatched`).
            }
            task.dispatched = true;
            let inputs = match gather_inputs(&*self.store, &task.node, None) {
                Ok(gathered) if gathered.digest == task.inputs => gathered.inputs,
                Ok(_) => {
                    self.inputs_replaced(&key);
                    continue;
                }
                Err(dep) => {
                    let hash = self.tasks.remove(&key).map(|t| t.hash);
                    self.fail(
                        &key,
                        hash,
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {dep:?} was released from this worker before the task ran"),
                        Some(dep),
                    );
                    self.fail_waiters(&key);
                    continue;
                }
            };
            let node = task.node.clone();
            let serial = task.serial;
            let budget =
                (nthreads * DISPATCH_AHEAD).saturating_sub(self.running + jobs.len() as u32 + 1);
            let (then, links) = self.take_chain(&key, budget);
            jobs.push(Job {
                key,
                serial,
                node,
                inputs,
                from_previous: Vec::new(),
                then,
            });
            // The chained links count as dispatched (each reports back on its own).
            self.running += links;
        }
        // Spread over the threads, at most half the look-ahead per batch so that a thread
        // finishing one batch finds the next already queued.
        let per_batch = jobs
            .len()
            .div_ceil(nthreads as usize)
            .clamp(1, (DISPATCH_AHEAD / 2) as usize);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let batch: Vec<Job> = jobs.by_ref().take(per_batch).collect();
            self.running += batch.len() as u32;
            self.outbox.jobs.push(batch);
        }
    }

    /// Takes the chain queued here behind `key`, which is being dispatched: the task waiting
    /// for it and for nothing else, then the one waiting for that, and so on, up to `budget`
    /// links. Each goes to the executor with `key`'s job, its input from the link before
    /// filled in there; returns the first link and how many there are.
    fn take_chain(&mut self, key: &str, budget: u32) -> (Option<Box<Job>>, u32) {
        let mut links: Vec<Job> = Vec::new();
        let mut previous = key.to_string();
        let Some(mut previous_hash) = self.tasks.get(key).map(|t| t.hash) else {
            return (None, 0);
        };
        while (links.len() as u32) < budget {
            let Some(waiters) = self.waiting.get(previous.as_str()) else {
                break;
            };
            let next = waiters
                .iter()
                .position(|w| self.tasks.get(&**w).is_some_and(|t| t.missing == 1));
            let Some(at) = next else {
                break;
            };
            let waiter = waiters[at].clone();
            let Some(task) = self.tasks.get_mut(&*waiter) else {
                break;
            };
            // Its other inputs are here (it misses only `previous`): take them now.
            let Ok(mut gathered) = gather_inputs(&*self.store, &task.node, Some(&previous)) else {
                break; // Left to the usual path, which reports the lost input.
            };
            for _ in &gathered.blanks {
                gathered.digest.add(&previous_hash);
            }
            if gathered.digest != task.inputs {
                break; // An input of another definition: left to the usual path, which fails it.
            }
            previous_hash = task.hash;
            let (inputs, from_previous) = (gathered.inputs, gathered.blanks);
            task.missing = 0;
            task.dispatched = true;
            let node = task.node.clone();
            let serial = task.serial;
            if let Some(waiters) = self.waiting.get_mut(previous.as_str()) {
                waiters.remove(at);
                if waiters.is_empty() {
                    self.waiting.remove(previous.as_str());
                }
            }
            previous = String::from(&*waiter);
            links.push(Job {
                key: previous.clone(),
                serial,
                node,
                inputs,
                from_previous,
                then: None,
            });
        }
        let count = links.len() as u32;
        let mut then = None;
        for mut link in links.into_iter().rev() {
            link.then = then;
            then = Some(Box::new(link));
        }
        (then, count)
    }

    /// An input of the task of `key` was replaced by another definition since it was given:
    /// it fails, with no input named (a task taken back, as this usually is, is not waited
    /// for; a current one the scheduler gives again, a few times), and so does whatever
    /// waits for it here.
    fn inputs_replaced(&mut self, key: &str) {
        let hash = self.tasks.remove(key).map(|t| t.hash);
        log::warn!("an input of {key:?} was replaced by another definition; not running it");
        self.fail(
            key,
            hash,
            ErrorKind::MissingDependency,
            None,
            "an input was replaced by another definition on this worker before the task ran"
                .to_string(),
            None,
        );
        self.fail_waiters(key);
    }

    /// Stores (or fails) one task an executor finished, and queues what waited for it.
    pub(crate) fn task_finished(&mut self, done: JobResult) {
        self.running = self.running.saturating_sub(1);
        let Some(task) = self.tasks.remove(&done.key) else {
            return;
        };
        // Only for the acceptance it was run for (the task may have been dropped, or given
        // anew, since: that one stays).
        if task.serial != done.serial {
            self.tasks.insert(done.key, task);
            return;
        }
        match done.result {
            Ok((value, nbytes)) => {
                let sent = task.send_value.then(|| value.clone());
                if let Err(e) = self.store.insert(&done.key, value, task.hash, nbytes) {
                    // (A link chained behind this task ran with the value all the same: its
                    // result is right, and it is reported as usual.)
                    let hash = Some(task.hash);
                    self.fail(
                        &done.key,
                        hash,
                        ErrorKind::TaskFailed,
                        None,
                        e.to_string(),
                        None,
                    );
                    self.fail_waiters(&done.key);
                    return;
                }
                let duration_us = done.duration.as_micros() as u64;
                self.report
                    .push_done(done.key.clone(), task.hash, nbytes, duration_us, sent);
                self.input_arrived(&done.key);
            }
            Err(e) => {
                let hash = Some(task.hash);
                self.fail(
                    &done.key,
                    hash,
                    e.kind,
                    e.function,
                    e.message,
                    done.failed_input,
                );
                self.fail_waiters(&done.key);
            }
        }
    }

    /// `key` is now local: tasks waiting for it may be ready.
    pub(crate) fn input_arrived(&mut self, key: &str) {
        for waiter in self.waiting.remove(key).unwrap_or_default() {
            if let Some(t) = self.tasks.get_mut(&*waiter) {
                t.missing = t.missing.saturating_sub(1);
                if t.missing == 0 {
                    self.ready.push_back(String::from(&*waiter));
                }
            }
        }
    }

    /// `key` will not become local: fail the tasks waiting for it, and those waiting for
    /// them (a chain queued here fails link by link, never hangs).
    pub(crate) fn fail_waiters(&mut self, key: &str) {
        let mut gone = vec![key.to_string()];
        while let Some(key) = gone.pop() {
            for waiter in self.waiting.remove(key.as_str()).unwrap_or_default() {
                if let Some(task) = self.tasks.remove(&*waiter) {
                    self.forget_waits(&task.node, &waiter);
                    self.fail(
                        &waiter,
                        Some(task.hash),
                        ErrorKind::MissingDependency,
                        None,
                        format!("input {key:?} could not be computed or fetched"),
                        Some(key.clone()),
                    );
                    gone.push(String::from(&*waiter));
                }
            }
        }
    }
}
