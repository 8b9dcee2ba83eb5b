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
//!
//! Each message is defined once. Most are struct variants of their direction's enum; the hot
//! ones (`get`, `compute`, `release`, `report`, `get_data`, `data`) are a struct of their
//! own (a [`Body`]) that the variant wraps: the receiver reads their bytes straight into it
//! ([`Message::decode`], without the buffering serde needs for an `op` that could be
//! anywhere), and a sender that borrows the fields writes them with [`Tagged`]. Both give the
//! bytes the enum gives; `core/tests/golden.rs` pins every message's bytes, and checks the
//! examples in `docs/protocol.md` against them.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

use crate::graph::Node;
use crate::graph_serde::{GraphError, HashedGraph};
use crate::hash::DefHash;
use crate::msgpack;
use crate::value::Value;

mod op_first;

/// The protocol version. Registration (`register`) and the client handshake (`hello`) carry it;
/// a scheduler refuses a peer with another version, saying both versions. Version 2 added
/// definition hashes (workers keep one with every value); version 3, values split over
/// several frames (`Data::extra_frames`) and encrypted connections; version 4, futures
/// (`submit`, `events`, `drop_futures`, `cancel`) and progress reports.
pub const PROTOCOL_VERSION: u32 = 4;

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
    /// With `frame`: how many frames after `frame` the value continues in (0: it is in
    /// `frame` alone). Encrypted connections carry a large value in frames of at most
    /// [`crate::frames::ENCRYPTED_FRAME`] bytes, so that encrypting one overlaps sending the
    /// one before; the receiver joins them. (Written only when not 0.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_frames: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyData {
    /// The key.
    pub key: String,
    /// Its value, inline or in a blob frame.
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
                extra_frames: 0,
            },
            hash: None,
        }
    }
}

/// A key a worker holds, with the size of its value (for data locality) and the definition
/// hash it was stored with (so a stale copy is told from the current one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// The size of its value (`Value::nbytes`).
    pub nbytes: u64,
    /// The definition hash the value was stored with.
    pub hash: DefHash,
}

/// What kind of failure an [`ErrorInfo`] or a [`TaskFailed`] reports: the part of an error
/// that programs act on (a client submits again after `shutting_down`, the scheduler gives a
/// task again after `missing_dependency`). On the wire it is its name, a snake_case string
/// (`"task_failed"`); [`ErrorKind::as_str`] and `Display` give that name.
///
/// Decoding is lenient, as everywhere in the protocol (`docs/protocol.md`): a name this
/// version does not know, from a newer peer, becomes [`ErrorKind::Other`] with the name kept,
/// so the message carrying it is still read, and the name is passed on as it came (the
/// scheduler hands a worker's failure kind on to the client).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A task's function returned an error or panicked, or its result could not be kept
    /// (nested too deep, a full disk), or its worker's report of it could not be read.
    TaskFailed,
    /// The key asked for could not be computed because a key it depends on failed:
    /// [`ErrorInfo::dependency`] names that key, and the message gives its failure.
    DependencyFailed,
    /// A function the graph calls is offered by no registered worker (from a worker: it is
    /// not registered there).
    UnknownFunction,
    /// A reference to a key that is neither in the graph nor held.
    MissingKey,
    /// The graph defines (or a scatter stores) a key the scheduler holds or computes with
    /// another definition; [`ErrorInfo::key`] names it.
    KeyConflict,
    /// The graph has a cycle (the message shows its path).
    Cycle,
    /// A graph node is malformed, or a graph is not a map of keys to nodes;
    /// [`ErrorInfo::key`] names the node when there is one.
    InvalidGraph,
    /// A request that cannot be decoded, or is not what its op allows.
    BadRequest,
    /// The peer speaks another protocol version (the message says both).
    VersionMismatch,
    /// A message or a collection exceeds the scheduler's size limit.
    TooLarge,
    /// No worker registered in time to run the computation.
    NoWorkers,
    /// The only copy of a key was lost and the key cannot be computed again.
    Lost,
    /// The computation was cancelled: the client was silent past `--client-timeout`, or left
    /// more than `--client-queue` replies unread.
    Cancelled,
    /// A worker could not have an input of a task (no holder could provide it, or it was
    /// replaced by another definition); the scheduler gives the task again a few times.
    MissingDependency,
    /// A worker could not read a task it was given (a malformed node, one nested too deep).
    BadTask,
    /// The scheduler is shutting down; the request may be sent again to its successor.
    ShuttingDown,
    /// No stored collection has that name.
    UnknownCollection,
    /// The scheduler's collection storage failed.
    Storage,
    /// The task was running on `--allowed-failures` workers that died.
    WorkerDied,
    /// No registered worker has that address (`retire`).
    UnknownWorker,
    /// No computation in flight has that id (`cancel_computation`).
    UnknownComputation,
    /// A kind this version does not know (from a newer peer), by its name.
    Other(String),
}

impl ErrorKind {
    /// Every kind this version knows (all but [`ErrorKind::Other`]).
    pub const KNOWN: [ErrorKind; 21] = [
        ErrorKind::TaskFailed,
        ErrorKind::DependencyFailed,
        ErrorKind::UnknownFunction,
        ErrorKind::MissingKey,
        ErrorKind::KeyConflict,
        ErrorKind::Cycle,
        ErrorKind::InvalidGraph,
        ErrorKind::BadRequest,
        ErrorKind::VersionMismatch,
        ErrorKind::TooLarge,
        ErrorKind::NoWorkers,
        ErrorKind::Lost,
        ErrorKind::Cancelled,
        ErrorKind::MissingDependency,
        ErrorKind::BadTask,
        ErrorKind::ShuttingDown,
        ErrorKind::UnknownCollection,
        ErrorKind::Storage,
        ErrorKind::WorkerDied,
        ErrorKind::UnknownWorker,
        ErrorKind::UnknownComputation,
    ];

    /// The kind's name, as the wire carries it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::TaskFailed => "task_failed",
            ErrorKind::DependencyFailed => "dependency_failed",
            ErrorKind::UnknownFunction => "unknown_function",
            ErrorKind::MissingKey => "missing_key",
            ErrorKind::KeyConflict => "key_conflict",
            ErrorKind::Cycle => "cycle",
            ErrorKind::InvalidGraph => "invalid_graph",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NoWorkers => "no_workers",
            ErrorKind::Lost => "lost",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::MissingDependency => "missing_dependency",
            ErrorKind::BadTask => "bad_task",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::UnknownCollection => "unknown_collection",
            ErrorKind::Storage => "storage",
            ErrorKind::WorkerDied => "worker_died",
            ErrorKind::UnknownWorker => "unknown_worker",
            ErrorKind::UnknownComputation => "unknown_computation",
            ErrorKind::Other(name) => name,
        }
    }

    /// The kind named `name` ([`ErrorKind::Other`] if this version does not know it).
    pub fn from_name(name: &str) -> ErrorKind {
        ErrorKind::KNOWN
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or_else(|| ErrorKind::Other(name.to_string()))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorKind {
    fn from(name: &str) -> ErrorKind {
        ErrorKind::from_name(name)
    }
}

/// A kind equals its name (`kind == "lost"`).
impl PartialEq<str> for ErrorKind {
    fn eq(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

/// A kind equals its name (`kind == "lost"`).
impl PartialEq<&str> for ErrorKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ErrorKind, D::Error> {
        /// Reads the kind's name.
        struct Name;
        impl Visitor<'_> for Name {
            type Value = ErrorKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an error kind's name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<ErrorKind, E> {
                Ok(ErrorKind::from_name(name))
            }
            // (A peer that writes strings as msgpack bin: taken as a string was.)
            fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<ErrorKind, E> {
                match std::str::from_utf8(name) {
                    Ok(name) => Ok(ErrorKind::from_name(name)),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(name), &self)),
                }
            }
        }
        d.deserialize_str(Name)
    }
}

/// Why a request failed: a machine-readable kind and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// What kind of failure it is.
    pub kind: ErrorKind,
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
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            kind,
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

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    /// The task's key.
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
    /// The task's key.
    pub key: String,
    /// The definition hash of the task that failed, when the worker could read it: a failure
    /// counts only for the definition the key has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<DefHash>,
    /// [`ErrorKind::TaskFailed`] (the function returned an error or panicked),
    /// [`ErrorKind::UnknownFunction`], [`ErrorKind::MissingDependency`] (no holder could
    /// provide an input), [`ErrorKind::BadTask`] (malformed node).
    pub kind: ErrorKind,
    /// The function that failed, when there is one.
    #[serde(default)]
    pub function: Option<String>,
    /// What went wrong.
    pub message: String,
    /// With `missing_dependency`: the input that could not be fetched.
    #[serde(default)]
    pub missing: Option<String>,
}

/// The fields of a message, as a struct of their own: the message's one definition, which
/// its variant wraps (`FromWorker::Report(ReportBody)`). Bodies are the hot messages: read
/// straight from their bytes by [`Message::decode`], and written from borrowed fields by
/// [`Tagged`].
pub trait Body {
    /// The message's `op`, as its variant is named on the wire.
    const OP: &'static str;
}

/// A message written from its [`Body`] alone: `{"op": B::OP, ...the body's fields}`, the same
/// bytes as the variant that wraps the body. For senders whose fields are borrowed (a client's
/// `get` of the caller's graph, a worker's `get_data` of 50,000 keys it keeps): nothing is
/// copied to be sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tagged<B>(pub B);

impl<B: Body + Serialize> Serialize for Tagged<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(op_first::OpFirst::new(s, B::OP))
    }
}

/// `report`: a batch of finished and failed tasks, plus keys fetched from peers (now held by
/// the sender too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReportBody {
    /// Tasks finished.
    #[serde(default)]
    pub done: Vec<TaskDone>,
    /// Tasks that failed.
    #[serde(default)]
    pub failed: Vec<TaskFailed>,
    /// Keys fetched from peers (an input of a task given here, or a `replicate`).
    #[serde(default)]
    pub acquired: Vec<KeyInfo>,
}

impl Body for ReportBody {
    const OP: &'static str = "report";
}

/// `get`: compute `keys` of `graph`. Read on two threads when the graph is big (see
/// `get_split`). The graph is a [`HashedGraph`] where it is received; a client writes its
/// own [`crate::Graph`] by reference (`GetBody<&Graph, &Value>` in a [`Tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetBody<G = HashedGraph, K = Value> {
    /// The client's id for the request (the reply carries it).
    pub request: u64,
    /// The graph (see `docs/graph-format.md`).
    pub graph: G,
    /// A key or nested lists of keys (the answer has their shape).
    pub keys: K,
    /// Keep the results on the workers after answering (until released).
    #[serde(default)]
    pub keep_results: bool,
    /// Send `progress` messages for this request while it runs. (Written only when true.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub progress: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl<G, K> Body for GetBody<G, K> {
    const OP: &'static str = "get";
}

/// `submit`: add tasks to the scheduler's graph as futures, in a live computation. Each item
/// is validated and added on its own (one invalid item fails only its own keys, with an
/// `erred` event); the scheduler then pushes an [`KeyEvent`] for each of an item's `keys` as
/// it finishes, fails, is cancelled or is lost, and keeps them until the client drops them
/// (`drop_futures`) or goes away. Answered by `submitted` (or `error`, when the message
/// itself cannot be read). A client writes its items itself (`SubmitItem<&Graph>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitBody<I = SubmitItem> {
    /// The client's id for the request (`submitted` carries it).
    pub request: u64,
    /// The submissions, in order.
    pub items: Vec<I>,
}

impl<I> Body for SubmitBody<I> {
    const OP: &'static str = "submit";
}

/// One submission of a `submit`: a graph (it may refer to keys the scheduler already has:
/// earlier futures, running or held), the keys the client wants as futures, and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitItem<G = HashedGraph> {
    /// The tasks to add (see `docs/graph-format.md`).
    pub graph: G,
    /// The keys the client holds futures for (each in the graph, or already known).
    pub keys: Vec<String>,
    /// Higher runs first among ready tasks (default 0; from -8,388,608 to 8,388,607).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// A task of this submission that fails is run again up to this many times before its
    /// failure counts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The addresses of the workers its tasks may run on (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// What happened to a key a client holds a future for (pushed in `events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Its value is held on a worker (fetch it with `gather`).
    Done,
    /// It failed, or an input of it did (`error` says how).
    Erred,
    /// The client cancelled it (or the scheduler could not keep it).
    Cancelled,
    /// Its only copy went away with a worker; it is being computed again (a `done` follows).
    Lost,
}

/// One key's news, in `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEvent {
    /// The key.
    pub key: String,
    /// What happened.
    pub status: KeyStatus,
    /// With `erred`: the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `compute`: run these tasks (a worker runs at most `nthreads` at once and queues the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ComputeBody {
    /// The tasks.
    pub tasks: Vec<ComputeTask>,
}

impl Body for ComputeBody {
    const OP: &'static str = "compute";
}

/// A worker's `release`: delete these keys from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReleaseBody {
    /// The keys.
    pub keys: Vec<String>,
}

impl Body for ReleaseBody {
    const OP: &'static str = "release";
}

/// `get_data`: send the values of these keys (answered by `data`). The scheduler asks it of a
/// worker, a worker of a peer; a worker writes the keys it keeps by reference
/// (`GetDataBody<&[Arc<str>]>` in a [`Tagged`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetDataBody<K = Vec<String>> {
    /// The asker's id for the request (the answer carries it).
    pub request: u64,
    /// The keys.
    pub keys: K,
}

impl<K> Body for GetDataBody<K> {
    const OP: &'static str = "get_data";
}

/// `data`: the answer to `get_data`, to the scheduler or to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DataBody {
    /// The `get_data` answered.
    pub request: u64,
    /// The keys found, with their values.
    pub items: Vec<KeyData>,
    /// The keys asked for and not held.
    #[serde(default)]
    pub missing: Vec<String>,
}

impl Body for DataBody {
    const OP: &'static str = "data";
}

/// Facts about a registered worker, for clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// The address peers fetch data from, `tcp://host:port`; also the worker's name.
    pub address: String,
    /// The worker process's unique id (new at every start).
    pub worker_id: String,
    /// The worker's process id.
    pub pid: u32,
    /// How many tasks it runs at once.
    pub nthreads: u32,
    /// Names of the functions it can run, sorted.
    pub functions: Vec<String>,
    /// How many keys it holds.
    pub keys: u64,
    /// The total size of the values it holds.
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
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Unique per worker process start.
        worker_id: String,
        /// Where peers reach this worker, `tcp://host:port`.
        address: String,
        /// The worker's process id.
        pid: u32,
        /// How many tasks it runs at once.
        nthreads: u32,
        /// The functions it can run.
        functions: Vec<String>,
        /// Keys already held (on re-registration).
        #[serde(default)]
        has: Vec<KeyInfo>,
    },
    /// Still alive (sent every heartbeat interval).
    Heartbeat {
        /// The sender's `worker_id`.
        worker_id: String,
    },
    /// Answer to `check_tasks`: the keys asked about that this worker neither runs, queues
    /// nor holds (those it holds were reported again, in a `report` sent just before).
    TaskStatus {
        /// The `check_tasks` answered.
        request: u64,
        /// The keys unknown here.
        #[serde(default)]
        unknown: Vec<String>,
    },
    /// A batch of finished and failed tasks, plus keys fetched from peers (now held here too).
    Report(ReportBody),
    /// Answer to `get_data`: the keys found, and those not held.
    Data(DataBody),
    /// The worker is closing; forget it and what it holds.
    Goodbye {
        /// The sender's `worker_id`.
        worker_id: String,
    },
    /// The worker wants to leave gracefully (SIGTERM): stop giving it tasks, move the data
    /// only it holds to other workers, then answer `retired`.
    Retiring {
        /// The sender's `worker_id`.
        worker_id: String,
    },
}

/// Scheduler → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToWorker {
    /// Registration accepted.
    Welcome {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The scheduler's unique id (new at every start).
        scheduler_id: String,
    },
    /// Registration refused (for example another protocol version); the worker exits.
    Rejected {
        /// Why.
        message: String,
    },
    /// The scheduler does not know this worker (it restarted, or dropped the worker): register.
    PleaseRegister,
    /// Run these tasks (a worker runs at most `nthreads` at once and queues the rest).
    Compute(ComputeBody),
    /// Delete these keys from the store.
    Release(ReleaseBody),
    /// Store these values (scattered by a client); each is then reported as a finished task
    /// in `report` (`done`).
    PutData {
        /// The values, each with its hash.
        items: Vec<KeyData>,
    },
    /// Send the values of these keys (answered by `data`).
    GetData(GetDataBody),
    /// The scheduler is shutting down; the worker keeps its data and waits for a scheduler.
    Closing,
    /// Fetch these keys (each with its definition hash) from the peers named and keep them
    /// (data moving off a retiring worker); each is reported as `acquired`.
    Replicate {
        /// Each key, its hash, and the peers holding it.
        who_has: Vec<(String, DefHash, Vec<String>)>,
    },
    /// Are these tasks (assigned a while ago and not reported; each key with the definition
    /// hash it is assigned under) running, queued or held here, under that definition?
    /// Answered by `task_status`; held ones are reported again.
    CheckTasks {
        /// The scheduler's id for the question (the answer carries it).
        request: u64,
        /// Each key with its hash.
        keys: Vec<(String, DefHash)>,
    },
    /// Retirement is complete (or was requested by an admin and is complete): leave now.
    Retired,
    /// The worker at `address` is gone: fail fetches from it at once, try other holders.
    PeerGone {
        /// The gone worker's address.
        address: String,
    },
    /// Nobody wants these tasks any more: forget them if they are queued or waiting, and
    /// discard the result of one that runs (its thread is freed for the next task). Keys
    /// held are not touched (`release` deletes values). Nothing is reported for them.
    Cancel {
        /// The tasks' keys.
        keys: Vec<String>,
    },
}

/// Client → scheduler, on the scheduler's client socket. Every request carries a `request` id
/// chosen by the client; the reply carries the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromClient {
    /// Handshake: answered by `welcome` or, on a version mismatch, `error`.
    Hello {
        /// The request id.
        request: u64,
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// Compute `keys` (a key or nested lists of keys) of `graph`.
    Get(GetBody),
    /// Ping: answered by `status`.
    Status {
        /// The request id.
        request: u64,
    },
    /// List the registered workers: answered by `workers`.
    Workers {
        /// The request id.
        request: u64,
    },
    /// Store a collection under `name` (replacing any): answered by `collection_stored`.
    SetCollection {
        /// The request id.
        request: u64,
        /// The collection's name.
        name: String,
        /// `{"kind": str, "graph": graph, "keys": keys, "meta": map}`.
        collection: Value,
    },
    /// Fetch a stored collection: answered by `collection`.
    GetCollection {
        /// The request id.
        request: u64,
        /// The collection's name.
        name: String,
    },
    /// List the stored collections: answered by `collections`.
    ListCollections {
        /// The request id.
        request: u64,
    },
    /// Delete a stored collection: answered by `collection_deleted`.
    DeleteCollection {
        /// The request id.
        request: u64,
        /// The collection's name.
        name: String,
    },
    /// Put these values on workers (spread across them), held until released: answered by
    /// `scattered` once every value is stored.
    Scatter {
        /// The request id.
        request: u64,
        /// The keys and their values (large ones in blob frames).
        items: Vec<KeyData>,
    },
    /// The values of held keys: answered by `result`.
    Gather {
        /// The request id.
        request: u64,
        /// The keys.
        keys: Vec<String>,
    },
    /// Let these keys go (scattered or kept ones): answered by `released`.
    Release {
        /// The request id.
        request: u64,
        /// The keys.
        keys: Vec<String>,
    },
    /// Retire the worker at `address` gracefully (its unique data moves to other workers,
    /// then it exits): answered by `retired` once it is gone.
    Retire {
        /// The request id.
        request: u64,
        /// The worker's address.
        address: String,
    },
    /// The client is going away: cancel its computations.
    Goodbye,
    /// Add tasks as futures (see [`SubmitBody`]): answered by `submitted`, then `events`.
    Submit(SubmitBody),
    /// The client dropped its last future of these keys: they are released once nothing else
    /// needs them. Not answered.
    DropFutures {
        /// The keys.
        keys: Vec<String>,
    },
    /// Cancel these futures: as `drop_futures`, and the client is sent a `cancelled` event for
    /// each key it held; tasks nobody else needs stop (queued ones are dropped, a running one's
    /// result is discarded). Not answered otherwise.
    Cancel {
        /// The keys.
        keys: Vec<String>,
    },
    /// List the computations in flight (every client's): answered by `computations`.
    Computations {
        /// The request id.
        request: u64,
    },
    /// Cancel a computation by the id `computations` gave (`get-N`: that get fails with
    /// `cancelled`; `futures-N`: every future of that client is cancelled): answered by
    /// `computation_cancelled`, or an `unknown_computation` error.
    CancelComputation {
        /// The request id.
        request: u64,
        /// The computation's id.
        id: String,
    },
    /// List held keys, their sizes and holders (at most `limit`, and at most
    /// [`MAX_HELD_KEYS_LISTED`]): answered by `held_keys`.
    HeldKeys {
        /// The request id.
        request: u64,
        /// Keys listed at most.
        limit: u64,
    },
}

/// Scheduler → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToClient {
    /// The handshake's answer.
    Welcome {
        /// The `hello` answered.
        request: u64,
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The scheduler's unique id (new at every start).
        scheduler_id: String,
    },
    /// The values of a `get`'s keys (each once, in any order; the client shapes them).
    Result {
        /// The request answered.
        request: u64,
        /// The keys and their values (large ones in blob frames).
        items: Vec<KeyData>,
    },
    /// A request failed.
    Error {
        /// The request answered (0 if it could not be read).
        request: u64,
        /// What went wrong.
        error: ErrorInfo,
    },
    /// The scheduler's counters (the answer to a `status` ping).
    Status {
        /// The request answered.
        request: u64,
        /// The scheduler's unique id (new at every start).
        scheduler_id: String,
        /// Registered workers.
        workers: u64,
        /// Tasks the scheduler tracks (waiting, running or held).
        tasks: u64,
        /// Computations in flight.
        graphs: u64,
        /// Keys held on workers.
        keys: u64,
    },
    /// The registered workers.
    Workers {
        /// The request answered.
        request: u64,
        /// One summary per worker.
        workers: Vec<WorkerSummary>,
    },
    /// A collection was stored; `replaced` says whether one of that name was overwritten.
    CollectionStored {
        /// The request answered.
        request: u64,
        /// The collection's name.
        name: String,
        /// Whether a collection of that name was overwritten.
        replaced: bool,
    },
    /// A stored collection, in its wire form.
    Collection {
        /// The request answered.
        request: u64,
        /// The collection's name.
        name: String,
        /// The collection.
        collection: Value,
    },
    /// The stored collections, sorted by name.
    Collections {
        /// The request answered.
        request: u64,
        /// One summary per collection.
        collections: Vec<CollectionSummary>,
    },
    /// A collection was deleted.
    CollectionDeleted {
        /// The request answered.
        request: u64,
        /// The collection's name.
        name: String,
    },
    /// The scattered values are stored on workers, under these keys.
    Scattered {
        /// The request answered.
        request: u64,
        /// The keys, in the order scattered.
        keys: Vec<String>,
    },
    /// The worker retired: its data moved and it left.
    Retired {
        /// The request answered.
        request: u64,
        /// The worker's address.
        address: String,
    },
    /// A `submit` was read; its items' outcomes follow as `events`.
    Submitted {
        /// The request answered.
        request: u64,
    },
    /// News of keys the client holds futures for, in the order they happened (request 0:
    /// not an answer).
    Events {
        /// One entry per key and happening.
        events: Vec<KeyEvent>,
    },
    /// How far a `get` asked with `progress` is (sent a few times a second while it runs).
    Progress {
        /// The `get`.
        request: u64,
        /// Tasks of it finished.
        done: u64,
        /// Tasks of it failed.
        failed: u64,
        /// Tasks it made (those reused from other computations are not counted).
        total: u64,
    },
    /// The keys were let go; `unknown` lists those the scheduler did not know.
    Released {
        /// The request answered.
        request: u64,
        /// The keys let go.
        keys: Vec<String>,
        /// The keys the scheduler did not know.
        #[serde(default)]
        unknown: Vec<String>,
    },
    /// The computations in flight, oldest first.
    Computations {
        /// The request answered.
        request: u64,
        /// One summary per computation.
        computations: Vec<ComputationSummary>,
    },
    /// A computation was cancelled.
    ComputationCancelled {
        /// The request answered.
        request: u64,
        /// The computation's id.
        id: String,
    },
    /// Held keys: `total` in all, up to the `limit` asked (at most
    /// [`MAX_HELD_KEYS_LISTED`]) listed, sorted by key (which ones, of more, is unspecified).
    HeldKeys {
        /// The request answered.
        request: u64,
        /// Keys held in all.
        total: u64,
        /// The keys listed.
        keys: Vec<HeldKey>,
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
            | ToClient::Submitted { request }
            | ToClient::Progress { request, .. }
            | ToClient::Computations { request, .. }
            | ToClient::ComputationCancelled { request, .. }
            | ToClient::HeldKeys { request, .. }
            | ToClient::Retired { request, .. } => *request,
            ToClient::Events { .. } => 0,
        }
    }
}

/// The ops a client may send (`FromClient`'s variants, as they are named on the wire).
pub const CLIENT_OPS: [&str; 19] = [
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
    "submit",
    "drop_futures",
    "cancel",
    "computations",
    "cancel_computation",
    "held_keys",
];

/// A computation in flight, for `zask computations` and the dashboard: one `get`, or the
/// futures of one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputationSummary {
    /// Its id: `get-N` for a get, `futures-N` for a client's futures (for
    /// `cancel_computation`).
    pub id: String,
    /// `get` or `futures`.
    pub kind: String,
    /// The client's routing id, in hex.
    pub client: String,
    /// Milliseconds since it was submitted (futures: since the client's first submission).
    pub age_ms: u64,
    /// Tasks it made (tasks shared with computations before it are not counted).
    pub total: u64,
    /// Of them, finished.
    pub done: u64,
    /// Of them, failed.
    pub failed: u64,
    /// Of them, neither finished nor failed yet (nor cancelled).
    pub waiting: u64,
}

/// Held keys listed in one `held_keys` answer at most, whatever `limit` asks (the scheduler
/// builds the answer on its loop).
pub const MAX_HELD_KEYS_LISTED: u64 = 10_000;

/// A held key, for `zask keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldKey {
    /// The key.
    pub key: String,
    /// The size of its value (`Value::nbytes`).
    pub nbytes: u64,
    /// The addresses of the workers holding it.
    pub holders: Vec<String>,
}

/// A stored collection, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSummary {
    /// The collection's name.
    pub name: String,
    /// Its kind (`graph`, `bag`, ...).
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
    GetData(GetDataBody),
}

/// Worker → worker: the answer from a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerReply {
    /// The values found, and the keys not held.
    Data(DataBody),
    /// The request could not be read.
    Error {
        /// The request answered (0 if it could not be read).
        request: u64,
        /// Why.
        message: String,
    },
}

/// Why a message header could not be decoded, as receivers tell the cases apart: the
/// scheduler answers a client's `InvalidGraph` with `invalid_graph` naming the key, the rest
/// with `bad_request`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The header is not a msgpack map with an `op` string (the message says what it is).
    #[error("{0}")]
    NotAMessage(String),
    /// The `op` names no message this receiver takes.
    #[error("unknown op {op:?}; expected one of {}", expected.join(", "))]
    UnknownOp {
        /// The op received.
        op: String,
        /// The ops this receiver takes.
        expected: &'static [&'static str],
    },
    /// A graph in the message is not a map of keys to well-formed nodes.
    #[error(transparent)]
    InvalidGraph(#[from] GraphError),
    /// The message nests deeper than the decoder goes (1,024 levels, counted from the root of
    /// the part being decoded: a `get`'s fields and each of its graph's entries are decoded
    /// one by one).
    #[error("the message nests deeper than the decoder goes (depth limit exceeded)")]
    TooDeep,
    /// Anything else: a field missing, twice, or of the wrong type; a truncated message.
    #[error("{0}")]
    Malformed(String),
}

impl From<rmp_serde::decode::Error> for DecodeError {
    fn from(e: rmp_serde::decode::Error) -> DecodeError {
        match e {
            rmp_serde::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
            other => DecodeError::Malformed(other.to_string()),
        }
    }
}

/// The messages of one direction (an enum with one variant per `op`), and how its headers
/// are decoded.
pub trait Message: Serialize + DeserializeOwned {
    /// The ops of this direction (the enum's variants, as they are named on the wire).
    const OPS: &'static [&'static str];

    /// Decodes a header. It must be a map with an `op` string naming one of [`Message::OPS`]
    /// (anywhere in the map: `op` first, as zask writes it, costs nothing to find); a hot
    /// message is read straight into its [`Body`], the others through serde's tagged enum
    /// (which buffers the fields before it knows the variant: fine for small messages, twice
    /// the work for a `compute` of 500,000 inputs).
    fn decode(header: &[u8]) -> Result<Self, DecodeError>;
}

/// The op of `header`, which must be one of `ops`.
fn op_of<'a>(header: &'a [u8], ops: &'static [&'static str]) -> Result<&'a str, DecodeError> {
    let op = msgpack::header_op(header).map_err(DecodeError::NotAMessage)?;
    if !ops.contains(&op) {
        return Err(DecodeError::UnknownOp {
            op: op.to_string(),
            expected: ops,
        });
    }
    Ok(op)
}

/// Decodes a whole header as `T` (a body, or a direction's enum).
fn decode_as<T: DeserializeOwned>(header: &[u8]) -> Result<T, DecodeError> {
    Ok(rmp_serde::from_slice(header)?)
}

impl Message for FromWorker {
    const OPS: &'static [&'static str] = &[
        "register",
        "heartbeat",
        "task_status",
        "report",
        "data",
        "goodbye",
        "retiring",
    ];

    fn decode(header: &[u8]) -> Result<FromWorker, DecodeError> {
        match op_of(header, Self::OPS)? {
            ReportBody::OP => decode_as(header).map(FromWorker::Report),
            DataBody::OP => decode_as(header).map(FromWorker::Data),
            _ => decode_as(header),
        }
    }
}

impl Message for ToWorker {
    const OPS: &'static [&'static str] = &[
        "welcome",
        "rejected",
        "please_register",
        "compute",
        "release",
        "put_data",
        "get_data",
        "closing",
        "replicate",
        "check_tasks",
        "retired",
        "peer_gone",
        "cancel",
    ];

    fn decode(header: &[u8]) -> Result<ToWorker, DecodeError> {
        match op_of(header, Self::OPS)? {
            ComputeBody::OP => decode_as(header).map(ToWorker::Compute),
            ReleaseBody::OP => decode_as(header).map(ToWorker::Release),
            <GetDataBody>::OP => decode_as(header).map(ToWorker::GetData),
            _ => decode_as(header),
        }
    }
}

impl Message for FromClient {
    const OPS: &'static [&'static str] = &CLIENT_OPS;

    /// As [`Message::decode`]; a `get`'s graph is read on two threads when it is big, and
    /// what is wrong with it is told apart ([`DecodeError::InvalidGraph`], naming the key).
    fn decode(header: &[u8]) -> Result<FromClient, DecodeError> {
        match op_of(header, Self::OPS)? {
            <GetBody>::OP => crate::get_split::decode_get(header).map(FromClient::Get),
            <SubmitBody>::OP => decode_as(header).map(FromClient::Submit),
            _ => decode_as(header),
        }
    }
}

impl Message for ToClient {
    const OPS: &'static [&'static str] = &[
        "welcome",
        "result",
        "error",
        "status",
        "workers",
        "collection_stored",
        "collection",
        "collections",
        "collection_deleted",
        "scattered",
        "retired",
        "released",
        "submitted",
        "events",
        "progress",
        "computations",
        "computation_cancelled",
        "held_keys",
    ];

    fn decode(header: &[u8]) -> Result<ToClient, DecodeError> {
        op_of(header, Self::OPS)?;
        decode_as(header)
    }
}

impl Message for PeerRequest {
    const OPS: &'static [&'static str] = &["get_data"];

    fn decode(header: &[u8]) -> Result<PeerRequest, DecodeError> {
        op_of(header, Self::OPS)?;
        decode_as(header).map(PeerRequest::GetData)
    }
}

impl Message for PeerReply {
    const OPS: &'static [&'static str] = &["data", "error"];

    fn decode(header: &[u8]) -> Result<PeerReply, DecodeError> {
        match op_of(header, Self::OPS)? {
            DataBody::OP => decode_as(header).map(PeerReply::Data),
            _ => decode_as(header),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variants serde knows for `T` (it lists them when it meets an op it does not know).
    fn variants<T: DeserializeOwned + fmt::Debug>() -> Vec<String> {
        #[derive(Serialize)]
        struct Op {
            op: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Op { op: "no_such_op" }).unwrap();
        let error = rmp_serde::from_slice::<T>(&bytes).unwrap_err().to_string();
        let expected = error
            .split_once("expected one of ")
            .or_else(|| error.split_once("expected "))
            .unwrap_or_else(|| panic!("{error}"))
            .1;
        let mut variants: Vec<String> = expected
            .split(", ")
            .flat_map(|v| v.split(" or "))
            .map(|v| v.trim_matches('`').to_string())
            .collect();
        variants.sort_unstable();
        variants
    }

    fn sorted(ops: &[&str]) -> Vec<String> {
        let mut ops: Vec<String> = ops.iter().map(|op| op.to_string()).collect();
        ops.sort_unstable();
        ops
    }

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

    /// Each direction's `OPS` names exactly its enum's variants.
    #[test]
    fn ops_are_the_messages_of_each_direction() {
        assert_eq!(variants::<FromWorker>(), sorted(FromWorker::OPS));
        assert_eq!(variants::<ToWorker>(), sorted(ToWorker::OPS));
        assert_eq!(variants::<FromClient>(), sorted(FromClient::OPS));
        assert_eq!(variants::<ToClient>(), sorted(ToClient::OPS));
        assert_eq!(variants::<PeerRequest>(), sorted(PeerRequest::OPS));
        assert_eq!(variants::<PeerReply>(), sorted(PeerReply::OPS));
    }

    /// Every kind's name is its variant's name in snake_case, and reads back as the kind; a
    /// name this version does not know is kept.
    #[test]
    fn error_kinds_are_named_in_snake_case() {
        for kind in ErrorKind::KNOWN {
            let snake: String = format!("{kind:?}")
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                    sep.into_iter()
                        .chain(std::iter::once(c.to_ascii_lowercase()))
                })
                .collect();
            assert_eq!(kind.as_str(), snake);
            assert_eq!(ErrorKind::from_name(&snake), kind);
            let bytes = rmp_serde::to_vec(&kind).unwrap();
            assert_eq!(bytes, rmp_serde::to_vec(&snake).unwrap());
            assert_eq!(rmp_serde::from_slice::<ErrorKind>(&bytes).unwrap(), kind);
        }
        let newer = rmp_serde::to_vec("quota_exceeded").unwrap();
        let kind: ErrorKind = rmp_serde::from_slice(&newer).unwrap();
        assert_eq!(kind, ErrorKind::Other("quota_exceeded".into()));
        assert_eq!(rmp_serde::to_vec(&kind).unwrap(), newer);
        assert!(kind == "quota_exceeded");
        // A peer that writes strings as msgpack bin is read as one writing str.
        let mut bin = Vec::new();
        rmp::encode::write_bin(&mut bin, b"lost").unwrap();
        assert_eq!(
            rmp_serde::from_slice::<ErrorKind>(&bin).unwrap(),
            ErrorKind::Lost
        );
        let mut bad = Vec::new();
        rmp::encode::write_bin(&mut bad, &[0xff, 0xfe]).unwrap();
        assert!(
            rmp_serde::from_slice::<ErrorKind>(&bad).is_err(),
            "not UTF-8"
        );
    }

    /// Each body's `OP` is the op its variant is written with (`Message::decode` reads the
    /// body straight from the bytes of that op).
    #[test]
    fn bodies_know_their_op() {
        fn op_of<T: Serialize>(message: &T) -> String {
            let header = rmp_serde::to_vec_named(message).unwrap();
            msgpack::header_op(&header).unwrap().to_string()
        }
        let get = GetBody {
            request: 1,
            graph: HashedGraph::default(),
            keys: Value::Nil,
            keep_results: false,
            progress: false,
        };
        assert_eq!(op_of(&FromClient::Get(get)), <GetBody>::OP);
        let report = FromWorker::Report(ReportBody::default());
        assert_eq!(op_of(&report), ReportBody::OP);
        assert_eq!(op_of(&FromWorker::Data(DataBody::default())), DataBody::OP);
        assert_eq!(op_of(&PeerReply::Data(DataBody::default())), DataBody::OP);
        let compute = ToWorker::Compute(ComputeBody::default());
        assert_eq!(op_of(&compute), ComputeBody::OP);
        let release = ToWorker::Release(ReleaseBody::default());
        assert_eq!(op_of(&release), ReleaseBody::OP);
        let get_data = ToWorker::GetData(GetDataBody::default());
        assert_eq!(op_of(&get_data), <GetDataBody>::OP);
        let get_data = PeerRequest::GetData(GetDataBody::default());
        assert_eq!(op_of(&get_data), <GetDataBody>::OP);
    }

    /// A hot message is read straight into its body wherever its `op` is, and an unknown op
    /// or a header that is not a message is told apart.
    #[test]
    fn decoding_tells_what_is_wrong() {
        let release = ToWorker::Release(ReleaseBody {
            keys: vec!["x".into()],
        });
        let header = rmp_serde::to_vec_named(&release).unwrap();
        assert_eq!(ToWorker::decode(&header).unwrap(), release);
        let op_last = rmp_serde::to_vec_named(&Value::Map(vec![
            (Value::from("keys"), Value::from(vec!["x"])),
            (Value::from("op"), Value::from("release")),
        ]))
        .unwrap();
        assert_eq!(ToWorker::decode(&op_last).unwrap(), release);
        assert!(matches!(
            FromWorker::decode(&header),
            Err(DecodeError::UnknownOp { op, .. }) if op == "release"
        ));
        assert!(matches!(
            ToWorker::decode(&rmp_serde::to_vec(&Value::from(3)).unwrap()),
            Err(DecodeError::NotAMessage(_))
        ));
        // A collection nested 2,000 levels deep (written by hand: encoders recurse).
        let mut deep = vec![0x84, 0xa2, b'o', b'p', 0xae];
        deep.extend_from_slice(b"set_collection\xa7request\x01\xa4name\xa1c\xaacollection");
        deep.extend(std::iter::repeat_n(0x91u8, 2000));
        deep.push(0x01);
        // (On the stack the scheduler's loop has: decoding 1,024 levels recurses.)
        let decoded = std::thread::Builder::new()
            .stack_size(crate::service::STACK_SIZE)
            .spawn(move || FromClient::decode(&deep).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(decoded, Err(DecodeError::TooDeep)), "{decoded:?}");
    }
}

#[cfg(test)]
mod header_rules {
    use super::*;

    /// What `docs/protocol.md` says of headers: a map with a string `op`; an array, or an
    /// `op` of another type, is not a message (the scheduler answers `bad_request`); a
    /// request without `request` is malformed (answered under request id 0).
    #[test]
    fn headers_are_maps_with_a_string_op() {
        let array = rmp_serde::to_vec(&("status", 21u64)).unwrap();
        assert!(matches!(
            FromClient::decode(&array),
            Err(DecodeError::NotAMessage(_))
        ));
        let mut op_int = Vec::new();
        rmp::encode::write_map_len(&mut op_int, 1).unwrap();
        rmp::encode::write_str(&mut op_int, "op").unwrap();
        rmp::encode::write_uint(&mut op_int, 1).unwrap();
        assert!(matches!(
            FromClient::decode(&op_int),
            Err(DecodeError::NotAMessage(_))
        ));
        let mut no_request = Vec::new();
        rmp::encode::write_map_len(&mut no_request, 2).unwrap();
        rmp::encode::write_str(&mut no_request, "op").unwrap();
        rmp::encode::write_str(&mut no_request, "status").unwrap();
        rmp::encode::write_str(&mut no_request, "extra").unwrap();
        rmp::encode::write_uint(&mut no_request, 1).unwrap();
        assert!(matches!(
            FromClient::decode(&no_request),
            Err(DecodeError::Malformed(m)) if m.contains("request")
        ));
        // With a request id, the unknown field is ignored.
        let mut extra = Vec::new();
        rmp::encode::write_map_len(&mut extra, 3).unwrap();
        rmp::encode::write_str(&mut extra, "extra").unwrap();
        rmp::encode::write_uint(&mut extra, 1).unwrap();
        rmp::encode::write_str(&mut extra, "request").unwrap();
        rmp::encode::write_uint(&mut extra, 5).unwrap();
        rmp::encode::write_str(&mut extra, "op").unwrap();
        rmp::encode::write_str(&mut extra, "status").unwrap();
        assert_eq!(
            FromClient::decode(&extra).unwrap(),
            FromClient::Status { request: 5 }
        );
    }
}
