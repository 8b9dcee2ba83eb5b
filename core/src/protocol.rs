//! Every message zask processes exchange, as serde types.
//!
//! A message is a ZeroMQ multipart message: (on a ROUTER, the peer's routing id), one header
//! frame (a msgpack map with an `"op"` field naming the message, encoded by rmp-serde with
//! field names), then zero or more blob frames that hold large values (see [`Data`]).
//! `docs/protocol.md` specifies each message frame by frame; keep the two in step.
//!
//! The enums are named by direction: [`FromWorker`] / [`ToWorker`] on the scheduler's worker
//! socket, [`FromClient`] / [`ToClient`] on its client socket, [`PeerRequest`] / [`PeerReply`]
//! between workers. Messages that carry many tasks carry them in batches (`compute`, `report`)
//! so that the hot path never needs one message per task.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::graph::Node;
use crate::graph_serde::HashedGraph;
use crate::hash::DefHash;
use crate::value::Value;

/// The protocol version. Registration (`register`) and the client handshake (`hello`) carry it;
/// a scheduler refuses a peer with another version, saying both versions. Version 2 added
/// definition hashes (workers keep one with every value).
pub const PROTOCOL_VERSION: u32 = 2;

/// A value in a message: small values inline in the header, large ones in a blob frame of their
/// own (so they are neither copied into nor parsed out of the header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Data {
    /// The value itself when it is inline; nil when it is in a frame.
    #[serde(default)]
    pub value: Value,
    /// Index of the blob frame holding the value (0 is the first frame after the header).
    #[serde(default)]
    pub frame: Option<u32>,
    /// With `frame`: the frame is the raw content of a bytes value (not msgpack).
    #[serde(default)]
    pub raw: bool,
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyData {
    pub key: String,
    pub data: Data,
    /// The definition hash of the value, where the receiver keeps it: a scattered value sent
    /// to a worker (`put_data`), a value a peer serves (`data` between workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<DefHash>,
}

impl KeyData {
    /// `key` with its value inline, and no hash.
    pub fn inline(key: String, value: Value) -> KeyData {
        KeyData {
            key,
            data: Data {
                value,
                frame: None,
                raw: false,
            },
            hash: None,
        }
    }
}

/// A key a worker holds, with the size of its value (for data locality) and the definition
/// hash it was stored with (so a stale copy is told from the current one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key: String,
    pub nbytes: u64,
    pub hash: DefHash,
}

/// Why a request failed: a machine-readable kind and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// One of the kinds listed in `docs/protocol.md`: `task_failed`, `dependency_failed`,
    /// `invalid_graph`, `missing_key`, `key_conflict`, `cycle`, `unknown_function`,
    /// `no_workers`, `bad_request`, `version_mismatch`, `too_large`, `cancelled`,
    /// `shutting_down`, ...
    pub kind: String,
    /// What went wrong and, where it helps, what to do about it.
    pub message: String,
    /// The key concerned, when there is one (with `dependency_failed`: the key asked for).
    #[serde(default)]
    pub key: Option<String>,
    /// The function concerned, when there is one (with `dependency_failed`: the function of
    /// the input that failed).
    #[serde(default)]
    pub function: Option<String>,
    /// With `dependency_failed`: the input that failed (the root of the failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
}

impl ErrorInfo {
    /// An error of `kind` with `message` and no key or function.
    pub fn new(kind: &str, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            kind: kind.to_string(),
            message: message.into(),
            key: None,
            function: None,
            dependency: None,
        }
    }

    /// The same error, naming `key`.
    pub fn with_key(mut self, key: &str) -> ErrorInfo {
        self.key = Some(key.to_string());
        self
    }
}

impl std::fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// An input of a task as `compute` lists it: its key, its definition hash (a peer's copy
/// must have it) and the peers holding it.
pub type Holders = (Arc<str>, DefHash, Vec<Arc<str>>);

/// A task for a worker to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeTask {
    /// The key the result is stored under.
    pub key: String,
    /// The key's definition hash: the worker stores the result with it, and a value it holds
    /// under this key with another hash is stale (computed again, not reported).
    pub hash: DefHash,
    /// The key's node (see `docs/graph-format.md`), shared with the scheduler's lineage.
    pub node: Arc<Node>,
    /// For each dependency the worker may not hold: its hash and the peer addresses that hold
    /// it. A dependency listed nowhere is expected on this worker (held, or computed there
    /// first). Shared strings: the scheduler lists a wide task's 500,000 inputs without
    /// copying each key and address.
    #[serde(default)]
    pub who_has: Vec<Holders>,
    /// Send the value back in the `report` (a client is waiting for it).
    #[serde(default)]
    pub send_value: bool,
}

/// A task a worker finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDone {
    pub key: String,
    /// The definition hash of the task run (as `compute` gave it): a result is taken only for
    /// the definition the key has now.
    pub hash: DefHash,
    /// Size of the result (`Value::nbytes`).
    pub nbytes: u64,
    /// How long the function ran, in microseconds.
    pub duration_us: u64,
    /// The result, when the task asked for `send_value`.
    #[serde(default)]
    pub data: Option<Data>,
}

/// A task a worker could not finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub key: String,
    /// The definition hash of the task that failed, when the worker could read it: a failure
    /// counts only for the definition the key has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<DefHash>,
    /// `task_failed` (the function returned an error or panicked), `unknown_function`,
    /// `missing_dependency` (no holder could provide an input), `bad_task` (malformed node).
    pub kind: String,
    /// The function that failed, when there is one.
    #[serde(default)]
    pub function: Option<String>,
    pub message: String,
    /// With `missing_dependency`: the input that could not be fetched.
    #[serde(default)]
    pub missing: Option<String>,
}

/// The fields of a `report` (decoded directly when `op` comes first; see `frames::peek_op`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReportBody {
    #[serde(default)]
    pub done: Vec<TaskDone>,
    #[serde(default)]
    pub failed: Vec<TaskFailed>,
    #[serde(default)]
    pub acquired: Vec<KeyInfo>,
}

/// The fields of a `get` (decoded directly when `op` comes first: a big graph is then read
/// once, straight into nodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetBody {
    pub request: u64,
    pub graph: HashedGraph,
    pub keys: Value,
    #[serde(default)]
    pub keep_results: bool,
}

/// The fields of a `compute` (decoded directly when `op` comes first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ComputeBody {
    pub tasks: Vec<ComputeTask>,
}

/// The fields of a worker's `release` (decoded directly when `op` comes first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReleaseBody {
    pub keys: Vec<String>,
}

/// The fields of a peer's `get_data` (decoded directly when `op` comes first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetDataBody {
    pub request: u64,
    pub keys: Vec<String>,
}

/// The fields of a peer's `data` answer (decoded directly when `op` comes first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DataBody {
    pub request: u64,
    pub items: Vec<KeyData>,
    #[serde(default)]
    pub missing: Vec<String>,
}

/// Facts about a registered worker, for clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// The address peers fetch data from, `tcp://host:port`; also the worker's name.
    pub address: String,
    /// The worker process's unique id (new at every start).
    pub worker_id: String,
    pub pid: u32,
    pub nthreads: u32,
    /// Names of the functions it can run, sorted.
    pub functions: Vec<String>,
    /// How many keys it holds, and their total size.
    pub keys: u64,
    pub nbytes: u64,
    /// Tasks assigned to it and not yet reported.
    pub processing: u64,
    /// Milliseconds since the scheduler last heard from it.
    pub last_seen_ms: u64,
}

/// Worker → scheduler, on the scheduler's worker socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromWorker {
    /// Join (or rejoin) the cluster; sent at start and whenever the scheduler asks.
    Register {
        protocol: u32,
        /// Unique per worker process start.
        worker_id: String,
        /// Where peers reach this worker, `tcp://host:port`.
        address: String,
        pid: u32,
        nthreads: u32,
        functions: Vec<String>,
        /// Keys already held (on re-registration).
        #[serde(default)]
        has: Vec<KeyInfo>,
    },
    /// Still alive (sent every heartbeat interval).
    Heartbeat { worker_id: String },
    /// Answer to `check_tasks`: the keys asked about that this worker neither runs, queues
    /// nor holds (those it holds were reported again, in a `report` sent just before).
    TaskStatus {
        request: u64,
        #[serde(default)]
        unknown: Vec<String>,
    },
    /// A batch of finished and failed tasks, plus keys fetched from peers (now held here too).
    Report {
        #[serde(default)]
        done: Vec<TaskDone>,
        #[serde(default)]
        failed: Vec<TaskFailed>,
        #[serde(default)]
        acquired: Vec<KeyInfo>,
    },
    /// Answer to `get_data`: the keys found, and those not held.
    Data {
        request: u64,
        items: Vec<KeyData>,
        #[serde(default)]
        missing: Vec<String>,
    },
    /// The worker is closing; forget it and what it holds.
    Goodbye { worker_id: String },
    /// The worker wants to leave gracefully (SIGTERM): stop giving it tasks, move the data
    /// only it holds to other workers, then answer `retired`.
    Retiring { worker_id: String },
}

/// Scheduler → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToWorker {
    /// Registration accepted.
    Welcome { protocol: u32, scheduler_id: String },
    /// Registration refused (for example another protocol version); the worker exits.
    Rejected { message: String },
    /// The scheduler does not know this worker (it restarted, or dropped the worker): register.
    PleaseRegister,
    /// Run these tasks (a worker runs at most `nthreads` at once and queues the rest).
    Compute { tasks: Vec<ComputeTask> },
    /// Delete these keys from the store.
    Release { keys: Vec<String> },
    /// Store these values (scattered by a client); each is then reported as a finished task
    /// in `report` (`done`).
    PutData { items: Vec<KeyData> },
    /// Send the values of these keys (answered by `data`).
    GetData { request: u64, keys: Vec<String> },
    /// The scheduler is shutting down; the worker keeps its data and waits for a scheduler.
    Closing,
    /// Fetch these keys (each with its definition hash) from the peers named and keep them
    /// (data moving off a retiring worker); each is reported as `acquired`.
    Replicate {
        who_has: Vec<(String, DefHash, Vec<String>)>,
    },
    /// Are these tasks (assigned a while ago and not reported; each key with the definition
    /// hash it is assigned under) running, queued or held here, under that definition?
    /// Answered by `task_status`; held ones are reported again.
    CheckTasks {
        request: u64,
        keys: Vec<(String, DefHash)>,
    },
    /// Retirement is complete (or was requested by an admin and is complete): leave now.
    Retired,
    /// The worker at `address` is gone: fail fetches from it at once, try other holders.
    PeerGone { address: String },
}

/// Client → scheduler, on the scheduler's client socket. Every request carries a `request` id
/// chosen by the client; the reply carries the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromClient {
    /// Handshake: answered by `welcome` or, on a version mismatch, `error`.
    Hello { request: u64, protocol: u32 },
    /// Compute `keys` (a key or nested lists of keys) of `graph`.
    Get {
        request: u64,
        graph: HashedGraph,
        keys: Value,
        #[serde(default)]
        keep_results: bool,
    },
    /// Ping: answered by `status`.
    Status { request: u64 },
    /// List the registered workers: answered by `workers`.
    Workers { request: u64 },
    /// Store a collection under `name` (replacing any): answered by `collection_stored`.
    SetCollection {
        request: u64,
        name: String,
        /// `{"kind": str, "graph": graph, "keys": keys, "meta": map}`.
        collection: Value,
    },
    /// Fetch a stored collection: answered by `collection`.
    GetCollection { request: u64, name: String },
    /// List the stored collections: answered by `collections`.
    ListCollections { request: u64 },
    /// Delete a stored collection: answered by `collection_deleted`.
    DeleteCollection { request: u64, name: String },
    /// Put these values on workers (spread across them), held until released: answered by
    /// `scattered` once every value is stored.
    Scatter { request: u64, items: Vec<KeyData> },
    /// The values of held keys: answered by `result`.
    Gather { request: u64, keys: Vec<String> },
    /// Let these keys go (scattered or kept ones): answered by `released`.
    Release { request: u64, keys: Vec<String> },
    /// Retire the worker at `address` gracefully (its unique data moves to other workers,
    /// then it exits): answered by `retired` once it is gone.
    Retire { request: u64, address: String },
    /// The client is going away: cancel its computations.
    Goodbye,
}

/// Scheduler → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToClient {
    Welcome {
        request: u64,
        protocol: u32,
        scheduler_id: String,
    },
    /// The values of a `get`'s keys (each once, in any order; the client shapes them).
    Result {
        request: u64,
        items: Vec<KeyData>,
    },
    /// A request failed.
    Error {
        request: u64,
        error: ErrorInfo,
    },
    Status {
        request: u64,
        scheduler_id: String,
        workers: u64,
        /// Tasks the scheduler tracks (waiting, running or held).
        tasks: u64,
        /// Computations in flight.
        graphs: u64,
        /// Keys held on workers.
        keys: u64,
    },
    Workers {
        request: u64,
        workers: Vec<WorkerSummary>,
    },
    /// A collection was stored; `replaced` says whether one of that name was overwritten.
    CollectionStored {
        request: u64,
        name: String,
        replaced: bool,
    },
    /// A stored collection, in its wire form.
    Collection {
        request: u64,
        name: String,
        collection: Value,
    },
    /// The stored collections, sorted by name.
    Collections {
        request: u64,
        collections: Vec<CollectionSummary>,
    },
    CollectionDeleted {
        request: u64,
        name: String,
    },
    /// The scattered values are stored on workers, under these keys.
    Scattered {
        request: u64,
        keys: Vec<String>,
    },
    /// The worker retired: its data moved and it left.
    Retired {
        request: u64,
        address: String,
    },
    /// The keys were let go; `unknown` lists those the scheduler did not know.
    Released {
        request: u64,
        keys: Vec<String>,
        #[serde(default)]
        unknown: Vec<String>,
    },
}

impl ToClient {
    /// The request this message answers.
    pub fn request(&self) -> u64 {
        match self {
            ToClient::Welcome { request, .. }
            | ToClient::Result { request, .. }
            | ToClient::Error { request, .. }
            | ToClient::Status { request, .. }
            | ToClient::Workers { request, .. }
            | ToClient::CollectionStored { request, .. }
            | ToClient::Collection { request, .. }
            | ToClient::Collections { request, .. }
            | ToClient::CollectionDeleted { request, .. }
            | ToClient::Scattered { request, .. }
            | ToClient::Released { request, .. }
            | ToClient::Retired { request, .. } => *request,
        }
    }
}

/// The ops a client may send (`FromClient`'s variants, as they are named on the wire).
pub const CLIENT_OPS: [&str; 13] = [
    "hello",
    "get",
    "status",
    "workers",
    "goodbye",
    "set_collection",
    "get_collection",
    "list_collections",
    "delete_collection",
    "scatter",
    "gather",
    "release",
    "retire",
];

/// A stored collection, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSummary {
    pub name: String,
    pub kind: String,
    /// Keys in its graph.
    pub tasks: u64,
    /// Size of its stored form, in bytes.
    pub nbytes: u64,
}

/// Worker → worker: a request on a peer's ROUTER socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerRequest {
    /// Send these keys' values.
    GetData { request: u64, keys: Vec<String> },
}

/// Worker → worker: the answer from a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerReply {
    /// The values found, and the keys not held.
    Data {
        request: u64,
        items: Vec<KeyData>,
        #[serde(default)]
        missing: Vec<String>,
    },
    /// The request could not be read.
    Error { request: u64, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CLIENT_OPS` names exactly `FromClient`'s variants (serde lists them when it meets an
    /// op it does not know).
    #[test]
    fn client_ops_are_the_client_messages() {
        #[derive(Serialize)]
        struct Op {
            op: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Op { op: "no_such_op" }).unwrap();
        let error = rmp_serde::from_slice::<FromClient>(&bytes)
            .unwrap_err()
            .to_string();
        let expected = error
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{error}"))
            .1;
        let mut variants: Vec<&str> = expected.split(", ").map(|v| v.trim_matches('`')).collect();
        let mut ops = CLIENT_OPS.to_vec();
        variants.sort_unstable();
        ops.sort_unstable();
        assert_eq!(variants, ops);
    }
}
