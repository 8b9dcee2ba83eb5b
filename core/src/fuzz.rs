//! The entry points of the fuzz targets (`fuzz/`, run with cargo-fuzz; see
//! `docs/fuzzing.md`): one per decoder that reads bytes from a socket. Each takes arbitrary
//! bytes and must return, whatever they are: no panic, no hang, no unbounded allocation. The
//! same functions run on every kept input in `core/tests/fuzz_regressions.rs`, so an input
//! that once broke a decoder stays a test.

use crate::collection::Collection;
use crate::frames;
use crate::graph::Graph;
use crate::keys::Keys;
use crate::msgpack;
use crate::protocol::{
    ComputeTask, FromClient, FromWorker, Message, PeerReply, PeerRequest, ToClient, ToWorker,
};
use crate::value::Value;

/// What a scheduler reads from a client: the message, then what it does with a `get`'s keys
/// and a collection.
pub fn client_to_scheduler(data: &[u8]) {
    match FromClient::decode(data) {
        Ok(FromClient::Get(body)) => {
            let _ = Keys::from_value(&body.keys);
        }
        Ok(FromClient::SetCollection { collection, .. }) => {
            let _ = Collection::from_value(&collection);
        }
        _ => {}
    }
}

/// What a client reads from the scheduler.
pub fn scheduler_to_client(data: &[u8]) {
    let _ = ToClient::decode(data);
}

/// What a scheduler reads from a worker, and the item-by-item reading of a `report` that did
/// not decode whole.
pub fn worker_to_scheduler(data: &[u8]) {
    if FromWorker::decode(data).is_err() {
        for name in ["done", "failed", "acquired", "items"] {
            if let Some(items) = msgpack::field(data, name).and_then(msgpack::array_items) {
                for item in items {
                    let _ = msgpack::str_field(item, "key");
                }
            }
        }
    }
}

/// What a worker reads from the scheduler, and the task-by-task reading of a `compute` that
/// did not decode whole.
pub fn scheduler_to_worker(data: &[u8]) {
    if ToWorker::decode(data).is_err() && msgpack::header_op(data) == Ok("compute") {
        if let Some(items) = msgpack::field(data, "tasks").and_then(msgpack::array_items) {
            for item in items {
                if frames::decode::<ComputeTask>(item).is_err() {
                    let _ = msgpack::str_field(item, "key");
                }
            }
        }
    }
}

/// What a worker reads from a peer (a request), and a peer's answer, with its values
/// unpacked from the frames after the header: `data` is split at its first byte's value
/// (the header's length, modulo what is there), the rest cut into four blobs.
pub fn peers(data: &[u8]) {
    let _ = PeerRequest::decode(data);
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let at = (cut as usize).min(rest.len());
    let (header, tail) = rest.split_at(at);
    let quarter = tail.len().div_ceil(4).max(1);
    let blobs: Vec<Vec<u8>> = tail.chunks(quarter).map(<[u8]>::to_vec).collect();
    if let Ok(PeerReply::Data(body)) = PeerReply::decode(header) {
        let mut unpacker = frames::Unpacker::new(&blobs);
        for item in body.items {
            if let Ok(value) = unpacker.unpack(item.data) {
                let _ = value.measure(crate::value::MAX_NESTING);
            }
        }
    }
}

/// The graph reader alone (a graph in its wire form) and the graph of a value.
pub fn graph(data: &[u8]) {
    let _ = rmp_serde::from_slice::<Graph>(data);
    if let Ok(value) = rmp_serde::from_slice::<Value>(data) {
        let _ = Graph::from_value(&value);
    }
}

/// The split `get` reader (a big graph read on two threads), straight.
pub fn get_split(data: &[u8]) {
    let _ = crate::get_split::decode_get(data);
}

/// The handshake: a `hello` (or whatever comes first) and the scheduler's answer to it.
pub fn handshake(data: &[u8]) {
    if let Ok(FromClient::Hello { protocol, .. }) = FromClient::decode(data) {
        let _ = protocol == crate::PROTOCOL_VERSION;
    }
    if let Ok(ToClient::Welcome { scheduler_id, .. }) = ToClient::decode(data) {
        let _ = scheduler_id.len();
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by name (for the regression test).
pub const TARGETS: [(&str, Target); 8] = [
    ("client_to_scheduler", client_to_scheduler),
    ("scheduler_to_client", scheduler_to_client),
    ("worker_to_scheduler", worker_to_scheduler),
    ("scheduler_to_worker", scheduler_to_worker),
    ("peers", peers),
    ("graph", graph),
    ("get_split", get_split),
    ("handshake", handshake),
];
