//! A big `get` read on two threads.
//!
//! While a large graph is submitted the scheduler has nothing else to do, and on a machine
//! with few cores one of them sits idle: decoding the graph is the largest single step of a
//! million-task submission. So a `get` whose graph has at least [`SPLIT_MIN_NODES`] nodes is
//! read in two halves: a quick pass skips over the first half of the graph's entries to find
//! where the second begins (no values are built), a helper thread decodes the second half
//! while this thread decodes the first, and the halves are joined in order.
//!
//! The result is exactly the one [`frames::decode`] gives. Anything unusual (a key that is
//! not a string, a key twice, a malformed node, a field twice, an extension type, ...) makes
//! the split reader step aside and the whole message is decoded the ordinary way, which then
//! gives its usual error message.

use serde::Deserialize;

use crate::frames::{self, FrameError};
use crate::graph::{Graph, Node, Nodes};
use crate::graph_serde::{check_node, HashedGraph};
use crate::hash::DefHash;
use crate::msgpack::{skip, take_value};
use crate::protocol::GetBody;
use crate::value::Value;

/// Graphs with fewer nodes are decoded on one thread (a thread costs more than it saves).
pub const SPLIT_MIN_NODES: usize = 20_000;

/// Decodes a `get` header, its graph on two threads when it is big.
pub fn decode_get(header: &[u8]) -> Result<GetBody, FrameError> {
    match split_decode(header) {
        Some(body) => Ok(body),
        None => frames::decode(header),
    }
}

/// The split read; `None` to leave the message to the ordinary decoder.
fn split_decode(header: &[u8]) -> Option<GetBody> {
    let mut rd = header;
    let fields = rmp::decode::read_map_len(&mut rd).ok()?;
    let mut request = None;
    let mut graph = None;
    let mut keys = None;
    let mut keep_results = None;
    for _ in 0..fields {
        let (name, rest) = rmp::decode::read_str_from_slice(rd).ok()?;
        rd = rest;
        if name == "graph" {
            if graph.is_some() {
                return None;
            }
            graph = Some(read_graph(&mut rd)?);
            continue;
        }
        let value = take_value(&mut rd)?;
        match name {
            "request" if request.is_none() => request = Some(rmp_serde::from_slice(value).ok()?),
            "keys" if keys.is_none() => keys = Some(rmp_serde::from_slice::<Value>(value).ok()?),
            "keep_results" if keep_results.is_none() => {
                keep_results = Some(rmp_serde::from_slice(value).ok()?)
            }
            "request" | "keys" | "keep_results" => return None,
            _ => {} // `op`, or a field this version does not know (ignored, as serde does).
        }
    }
    Some(GetBody {
        request: request?,
        graph: graph?,
        keys: keys?,
        keep_results: keep_results.unwrap_or(false),
    })
}

/// Reads the graph map at `rd` (and moves `rd` past it), the second half of its entries on a
/// helper thread; `None` for a small graph or anything unusual.
fn read_graph(rd: &mut &[u8]) -> Option<HashedGraph> {
    let count = rmp::decode::read_map_len(rd).ok()? as usize;
    if count < SPLIT_MIN_NODES {
        return None;
    }
    let first_count = count / 2;
    let start = *rd;
    let mut cursor = start;
    for _ in 0..first_count * 2 {
        skip(&mut cursor)?;
    }
    let second = cursor;
    let first = start.get(..start.len() - second.len())?;
    // Each half writes its nodes' hashes into its own part of one table (no copy after).
    let mut hashes = vec![DefHash::default(); count];
    let (my_hashes, their_hashes) = hashes.split_at_mut(first_count);
    std::thread::scope(|scope| {
        // (No thread to be had: the ordinary decoder does it all.)
        let helper = std::thread::Builder::new()
            .name("zask-decode".into())
            // Nested nodes are decoded recursively: the same stack as the scheduler's loop.
            .stack_size(crate::service::STACK_SIZE)
            .spawn_scoped(scope, || read_entries(second, their_hashes))
            .ok()?;
        let mine = read_entries(first, my_hashes);
        // Where the graph ends (the helper reads the same bytes; this pass is much cheaper).
        let mut end = second;
        let skipped = (0..(count - first_count) * 2).try_for_each(|_| skip(&mut end));
        // Joined before anything is decided, so a helper that failed is never left behind.
        let theirs = helper.join().ok().flatten();
        let (mine, theirs, ()) = (mine?, theirs?, skipped?);
        *rd = end;
        let mut nodes = Nodes::with_capacity_and_hasher(count, Default::default());
        for (key, node) in mine.into_iter().chain(theirs) {
            if nodes.insert(key, node).is_some() {
                return None; // A key twice: the ordinary decoder says which.
            }
        }
        Some(Graph { nodes })
    })
    .map(|graph| HashedGraph { graph, hashes })
}

/// Decodes as many graph entries (a string key, then a node) as `hashes` has room for, from
/// the start of `bytes`, each checked and hashed (into `hashes`) as [`check_node`] does.
fn read_entries(bytes: &[u8], hashes: &mut [DefHash]) -> Option<Vec<(String, Node)>> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let mut entries = Vec::with_capacity(hashes.len());
    for slot in hashes.iter_mut() {
        let Value::Str(key) = Value::deserialize(&mut de).ok()? else {
            return None;
        };
        let node = Node::deserialize(&mut de).ok()?;
        *slot = check_node(&key, &node).ok()?;
        entries.push((key, node));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{key, list, lit, task};

    /// A `get` as a client writes it.
    fn header(graph: &Graph, keys: Value, keep: bool) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Get<'a> {
            op: &'static str,
            request: u64,
            graph: &'a Graph,
            keys: Value,
            keep_results: bool,
        }
        rmp_serde::to_vec_named(&Get {
            op: "get",
            request: 7,
            graph,
            keys,
            keep_results: keep,
        })
        .unwrap()
    }

    /// Every kind of node, many times over.
    fn mixed(n: usize) -> Graph {
        let mut g = Graph::new();
        for i in 0..n {
            let k = format!("k{i}");
            let node = match i % 6 {
                0 => task("inc", (i as i64,)),
                1 => task("add", (key(format!("k{}", i - 1)), 2.5)),
                2 => list(vec![
                    key(format!("k{}", i - 2)),
                    Node::from("s"),
                    Node::from(i as i64),
                ]),
                3 => lit(Value::Map(vec![(
                    Value::from("a"),
                    Value::Bytes(vec![1, 2, 3].into()),
                )])),
                4 => task("sum", (list(vec![key("k0"), key(format!("k{}", i - 1))]),))
                    .kwarg("start", 1),
                _ => Node::from(Value::Nil),
            };
            g.insert(k, node);
        }
        g
    }

    #[test]
    fn a_big_graph_reads_the_same_on_two_threads() {
        let graph = mixed(SPLIT_MIN_NODES * 2 + 3);
        let bytes = header(&graph, Value::from("k5"), true);
        let split = split_decode(&bytes).expect("taken by the split reader");
        let plain: GetBody = frames::decode(&bytes).unwrap();
        assert_eq!(split, plain);
        assert_eq!(split.graph.graph.nodes.len(), SPLIT_MIN_NODES * 2 + 3);
        assert_eq!(split.request, 7);
        assert!(split.keep_results);
        // Insertion order is kept across the halves.
        let keys: Vec<&String> = split.graph.graph.nodes.keys().take(3).collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        assert_eq!(decode_get(&bytes).unwrap(), plain);
    }

    #[test]
    fn small_or_unusual_gets_are_left_to_the_ordinary_decoder() {
        let small = header(&mixed(10), Value::from("k1"), false);
        assert!(split_decode(&small).is_none());
        assert_eq!(decode_get(&small).unwrap().graph.graph.nodes.len(), 10);

        // A key written twice (a client can send it; a `Graph` cannot hold it): the ordinary
        // decoder's error, naming it.
        let graph = mixed(SPLIT_MIN_NODES + 1);
        let mut twice = header(&graph, Value::from("k1"), false);
        let last = format!("k{SPLIT_MIN_NODES}"); // Written only as the last key.
        let at = find(&twice, last.as_bytes());
        twice[at..at + last.len()].copy_from_slice(b"k10000");
        assert!(split_decode(&twice).is_none());
        let err = decode_get(&twice).unwrap_err().to_string();
        assert!(err.contains("\"k10000\" appears twice"), "{err}");

        // A malformed node past the middle: the ordinary error, naming the key.
        let mut bad = graph.clone();
        bad.insert(format!("k{}", SPLIT_MIN_NODES - 1), task("inc", (1,)));
        let mut bytes = header(&bad, Value::from("k1"), false);
        let at = find(&bytes, b"\xa2fn\xa3inc");
        bytes[at + 3] = 0xc3; // "fn": true (not a name)
        bytes.remove(at + 4);
        bytes.remove(at + 4);
        bytes.remove(at + 4);
        assert!(split_decode(&bytes).is_none());
        let err = decode_get(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("\"fn\" takes a non-empty function name"),
            "{err}"
        );

        // Truncated in the second half.
        let bytes = header(&graph, Value::from("k1"), false);
        assert!(decode_get(&bytes[..bytes.len() * 3 / 4]).is_err());
        // Without `keys`.
        assert!(decode_get(&rmp_serde::to_vec_named(&graph).unwrap()).is_err());
    }

    /// A deeply nested node in the half the helper thread decodes: read as the ordinary
    /// decoder reads it (the helper has the loop's stack; on a default 2 MiB stack this
    /// overflowed and took the process down).
    #[test]
    fn deep_nesting_in_the_second_half_is_read() {
        // (Built, encoded and dropped on a big stack too: all of that recurses.)
        let run = || {
            let mut graph = mixed(SPLIT_MIN_NODES);
            let nested = |levels: usize| {
                let mut deep = Node::from(1);
                for _ in 0..levels {
                    deep = Node::Map(vec![(Value::from("a"), deep)]);
                }
                deep
            };
            // (All-literal maps travel as `{"lit": ...}`: one level more than built.)
            graph.insert("deep", nested(crate::value::MAX_NESTING - 1));
            let bytes = header(&graph, Value::from("deep"), false);
            let split = split_decode(&bytes).expect("taken by the split reader");
            assert_eq!(split, frames::decode::<GetBody>(&bytes).unwrap());
            assert_eq!(
                split.graph.graph.nodes.get_index_of("deep"),
                Some(SPLIT_MIN_NODES)
            );
            // One level more is refused, by both readers, naming the key.
            graph.insert("deep", nested(crate::value::MAX_NESTING));
            let bytes = header(&graph, Value::from("deep"), false);
            assert!(split_decode(&bytes).is_none());
            let err = decode_get(&bytes).unwrap_err().to_string();
            assert!(
                err.contains("key \"deep\"") && err.contains("nests 513 levels"),
                "{err}"
            );
        };
        std::thread::Builder::new()
            .stack_size(crate::service::STACK_SIZE)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .rposition(|w| w == needle)
            .expect("present")
    }

    #[test]
    fn skip_passes_over_every_kind_of_value() {
        let values = Value::List(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-1),
            Value::Int(200),
            Value::Int(70_000),
            Value::Int(-5_000_000_000),
            Value::Float(1.5),
            Value::Str("x".repeat(40)),
            Value::Str("y".repeat(300)),
            Value::Str("z".repeat(70_000)),
            Value::Bytes(vec![7; 300].into()),
            Value::List(vec![Value::Int(1); 20]),
            Value::Map(vec![(Value::from("k"), Value::Int(1)); 20]),
        ]);
        let bytes = rmp_serde::to_vec(&values).unwrap();
        let mut rd = &bytes[..];
        skip(&mut rd).unwrap();
        assert!(rd.is_empty());
        let mut short = &bytes[..bytes.len() - 1];
        assert!(skip(&mut short).is_none());
    }
}
