//! zask-core: what every zask process (scheduler, worker, client) shares.
//!
//! - [`value`]: [`Value`], the dynamic data tasks take and return (msgpack's model).
//! - [`graph`]: the task graph format ([`Graph`], [`Node`]) and a builder (`task`, `key`).
//! - [`graph_serde`]: graphs read from and written to the wire directly (no `Value` tree).
//! - [`hash`]: [`hash::DefHash`], a key's definition as a hash (same key, same computation).
//! - [`keys`]: [`Keys`], one key or nested lists of keys, and the shape of a `get`'s answer.
//! - [`collection`]: [`Collection`], a named graph stored on the scheduler.
//! - [`token`]: [`token::tokenize`], stable names for values (deterministic keys).
//! - [`msgpack`]: msgpack read without decoding (skipping, fields and items as bytes).
//! - [`protocol`]: every message, as serde types, named by direction, and how each direction's
//!   headers are decoded ([`protocol::Message`]); error kinds ([`ErrorKind`]).
//! - [`security`]: [`security::Secret`], a cluster's shared secret: every connection
//!   authenticated and encrypted (CURVE).
//! - [`fuzz`]: the entry points of the fuzz targets (`fuzz/`), run on kept inputs by the tests.
//! - [`frames`]: how messages become ZeroMQ frames (header + blobs for large values).
//! - [`get_split`]: a `get` read field by field, a big graph on two threads (its halves at
//!   once).
//! - [`net`]: small ZeroMQ helpers every process uses (addresses, socket options).
//! - [`memory`]: the C allocator told to keep the buffers ZeroMQ receives into (programs only).
//! - [`program`]: what the programs do first (logging, the allocator, renamed variables).
//! - [`service`]: [`service::Service`], a stoppable event-loop thread (scheduler, worker).

#![warn(missing_docs)]

pub mod collection;
pub mod frames;
pub mod fuzz;
pub mod get_split;
pub mod graph;
pub mod graph_serde;
pub mod hash;
pub mod keys;
pub mod memory;
pub mod msgpack;
pub mod net;
pub mod program;
pub mod protocol;
pub mod security;
pub mod service;
pub mod token;
pub mod value;

pub use collection::Collection;
pub use graph::{key, list, lit, task, Graph, Node, Task};
pub use hash::DefHash;
pub use keys::Keys;
pub use protocol::{ErrorInfo, ErrorKind, PROTOCOL_VERSION};
pub use value::{from_value, to_value, Bytes, Value};
