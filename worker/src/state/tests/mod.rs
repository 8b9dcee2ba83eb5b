//! Tests of [`WorkerState`]: deterministic, no sockets, no threads, time passed by hand.
//! Jobs the state dispatches run for real, on the test's thread ([`run_now`]), with the
//! standard library of functions.
//!
//! - `tasks.rs`: batches, chains, waits, failures, tasks given anew or taken back.
//! - `fetch.rs`: fetches from peers (chunks, out-of-order and partial answers, bad values,
//!   stranger keys, peers gone, timeouts), replication, serving peers.
//! - `lifecycle.rs`: registration, heartbeats, re-registration after a scheduler restart,
//!   task checks, release, retirement, closing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zask_core::graph::Node;
use zask_core::protocol::{
    ComputeBody, ComputeTask, DataBody, FromWorker, GetDataBody, KeyData, KeyInfo, PeerReply,
    ReleaseBody, ReportBody, TaskDone, TaskFailed, ToWorker,
};
use zask_core::{frames, Bytes, DefHash, Value};

use super::{FetchRequest, Outbox, WorkerConfig, WorkerState};
use crate::executor::{run_now, Job};
use crate::registry::Registry;
use crate::store::{MemoryStore, Store};

/// A worker state with a memory store and the standard library, at a fixed start time.
pub(crate) struct Harness {
    pub(crate) state: WorkerState,
    pub(crate) now: Instant,
    pub(crate) registry: Registry,
}

/// The hash a test gives the definition named `name`.
pub(crate) fn h(name: &str) -> DefHash {
    DefHash::of_value(&Value::from(name))
}

/// A task of key `key` with node `node`, its definition hashed from its key.
pub(crate) fn task(key: &str, node: Node) -> ComputeTask {
    ComputeTask {
        key: key.to_string(),
        hash: h(key),
        node: Arc::new(node),
        who_has: Vec::new(),
        send_value: false,
    }
}

/// `task`, with inputs held by peers: `(key, peers)`, each of the hash `h(key)`.
pub(crate) fn task_from(key: &str, node: Node, who_has: &[(&str, &[&str])]) -> ComputeTask {
    ComputeTask {
        who_has: who_has
            .iter()
            .map(|(k, peers)| {
                (
                    Arc::from(*k),
                    h(k),
                    peers.iter().map(|p| Arc::from(*p)).collect(),
                )
            })
            .collect(),
        ..task(key, node)
    }
}

/// A value as a peer sends it (inline, with its hash).
pub(crate) fn item(key: &str, value: Value, hash: DefHash) -> KeyData {
    let mut blobs = Vec::new();
    let data = frames::pack(value, &mut blobs);
    assert!(
        blobs.is_empty(),
        "test values are small enough to go inline"
    );
    KeyData {
        key: key.to_string(),
        data,
        hash: Some(hash),
    }
}

/// What reports in an outbox said.
#[derive(Default, Debug)]
pub(crate) struct Reported {
    pub(crate) done: Vec<(TaskDone, Option<Value>)>,
    pub(crate) failed: Vec<TaskFailed>,
    pub(crate) acquired: Vec<KeyInfo>,
}

impl Reported {
    pub(crate) fn done_keys(&self) -> Vec<&str> {
        self.done.iter().map(|(d, _)| d.key.as_str()).collect()
    }

    pub(crate) fn failed_keys(&self) -> Vec<&str> {
        self.failed.iter().map(|f| f.key.as_str()).collect()
    }

    pub(crate) fn failure(&self, key: &str) -> &TaskFailed {
        self.failed
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("{key} did not fail: {:?}", self.failed_keys()))
    }

    pub(crate) fn value(&self, key: &str) -> Option<&Value> {
        self.done
            .iter()
            .find(|(d, _)| d.key == key)
            .and_then(|(_, v)| v.as_ref())
    }

    fn add(&mut self, outbox: &Outbox) {
        for (msg, blobs) in &outbox.to_scheduler {
            if let FromWorker::Report(ReportBody {
                done,
                failed,
                acquired,
            }) = msg
            {
                for d in done {
                    let value = d
                        .data
                        .clone()
                        .map(|data| frames::unpack(data, blobs).expect("a report's value"));
                    self.done.push((d.clone(), value));
                }
                self.failed.extend(failed.iter().cloned());
                self.acquired.extend(acquired.iter().cloned());
            }
        }
    }
}

/// The messages to the scheduler in an outbox that are not reports.
pub(crate) fn others(outbox: &Outbox) -> Vec<&FromWorker> {
    outbox
        .to_scheduler
        .iter()
        .map(|(m, _)| m)
        .filter(|m| !matches!(m, FromWorker::Report(ReportBody { .. })))
        .collect()
}

pub(crate) fn config() -> WorkerConfig {
    WorkerConfig {
        worker_id: "worker-test".to_string(),
        address: "tcp://here:1".to_string(),
        pid: 1,
        nthreads: 2,
        functions: vec!["add".to_string(), "inc".to_string()],
        heartbeat_interval: Duration::from_millis(500),
        fetch_timeout: Duration::from_secs(10),
        retire_timeout: Duration::from_secs(60),
    }
}

impl Harness {
    /// A worker that has registered and been welcomed.
    pub(crate) fn new() -> Harness {
        Harness::with_store(Box::new(MemoryStore::new()))
    }

    pub(crate) fn with_store(store: Box<dyn Store>) -> Harness {
        let mut w = Harness::unregistered(store);
        w.state.on_start(w.now);
        w.welcome();
        w.state.take_outbox();
        w
    }

    pub(crate) fn unregistered(store: Box<dyn Store>) -> Harness {
        Harness {
            state: WorkerState::new(config(), store),
            now: Instant::now(),
            registry: Registry::with_stdlib(),
        }
    }

    pub(crate) fn welcome(&mut self) {
        self.msg(ToWorker::Welcome {
            protocol: zask_core::PROTOCOL_VERSION,
            scheduler_id: "s".to_string(),
        });
    }

    /// Hands the state a message from the scheduler.
    pub(crate) fn msg(&mut self, msg: ToWorker) {
        self.state.on_scheduler_message(msg, &[], self.now);
    }

    /// A `compute` of `tasks`.
    pub(crate) fn compute(&mut self, tasks: Vec<ComputeTask>) {
        self.msg(ToWorker::Compute(ComputeBody { tasks }));
    }

    /// Lets `d` pass, and ticks.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.state.on_tick(self.now);
    }

    /// Ticks, takes the outbox, and runs the jobs in it (their results go back to the state).
    /// Returns the outbox (jobs removed) and how many jobs ran.
    pub(crate) fn step(&mut self) -> (Outbox, usize) {
        self.state.on_tick(self.now);
        let mut outbox = self.state.take_outbox();
        let mut ran = 0;
        for batch in std::mem::take(&mut outbox.jobs) {
            ran += batch.iter().map(Job::links).sum::<usize>();
            let results = run_now(batch, &self.registry);
            self.state.on_jobs_done(results);
        }
        (outbox, ran)
    }

    /// Steps until no job runs and nothing is left to report; returns everything the steps
    /// put in their outboxes (jobs removed), in one outbox, and what it reported.
    pub(crate) fn settle(&mut self) -> (Outbox, Reported) {
        let mut all = Outbox::default();
        let mut reported = Reported::default();
        for _ in 0..1000 {
            let (outbox, ran) = self.step();
            reported.add(&outbox);
            let quiet = ran == 0 && outbox.is_empty();
            all.to_scheduler.extend(outbox.to_scheduler);
            all.drop_peers.extend(outbox.drop_peers);
            all.fetches.extend(outbox.fetches);
            all.peer_replies.extend(outbox.peer_replies);
            all.leave |= outbox.leave;
            if quiet && self.state.running == 0 {
                return (all, reported);
            }
            // Reports wait a little for company while tasks run.
            self.now += Duration::from_millis(2);
        }
        panic!("the worker did not settle");
    }

    /// A peer's answer to fetch `fetch`, with `items`.
    pub(crate) fn answer(&mut self, fetch: &FetchRequest, items: Vec<KeyData>) {
        let reply = PeerReply::Data(DataBody {
            request: fetch.request,
            items,
            missing: Vec::new(),
        });
        let blobs: [Bytes; 0] = [];
        self.state
            .on_peer_reply(&fetch.peer, reply, &blobs, self.now);
    }

    /// The value held under `key`, with its hash.
    pub(crate) fn held(&self, key: &str) -> Option<(Value, DefHash)> {
        self.state
            .store
            .get_with(key)
            .expect("memory store")
            .map(|(v, held)| (v, held.hash))
    }

    /// Stores `value` under `key` as if computed here earlier.
    pub(crate) fn hold(&mut self, key: &str, value: Value, hash: DefHash) {
        let nbytes = value.nbytes();
        self.state
            .store
            .insert(key, value, hash, nbytes)
            .expect("memory store");
    }
}

/// The fetch requests in an outbox, by peer, keys sorted.
pub(crate) fn fetched(outbox: &Outbox) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = outbox
        .fetches
        .iter()
        .map(|f| {
            let mut keys: Vec<String> = f.keys.iter().map(|k| k.to_string()).collect();
            keys.sort();
            (f.peer.clone(), keys)
        })
        .collect();
    out.sort();
    out
}

mod fetch;
mod lifecycle;
mod tasks;
