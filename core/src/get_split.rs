//! A `get` read field by field: its graph with typed errors, on two threads when it is big.
//!
//! While a large graph is submitted the scheduler has nothing else to do, and on a machine
//! with few cores one of them sits idle: decoding the graph is the largest single step of a
//! million-task submission. So a `get` whose graph has at least [`SPLIT_MIN_NODES`] nodes is
//! read in two halves: a quick pass skips over the first half of the graph's entries to find
//! where the second begins (no values are built), a helper thread decodes the second half
//! while this thread decodes the first, and the halves are joined in order.
//!
//! The result is exactly the one [`frames::decode`](crate::frames::decode) gives. Anything
//! unusual (a key that is not a string, a key twice, a malformed node, a field twice, an
//! extension type, ...) makes the split reader step aside and the message is read again on
//! one thread, which says what is wrong: a [`GraphError`] naming the key for the graph (which
//! serde could only give as text), a [`DecodeError::Malformed`] for the other fields.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::graph::{Graph, Node, Nodes};
use crate::graph_serde::{check_node, GraphError, HashedGraph};
use crate::hash::DefHash;
use crate::msgpack::{self, skip, take_value};
use crate::protocol::{DecodeError, GetBody};
use crate::value::Value;

#[cfg(test)]
use crate::frames;

/// Graphs with fewer nodes are decoded on one thread (a thread costs more than it saves).
pub const SPLIT_MIN_NODES: usize = 20_000;

/// The most entries a graph's tables are made ready for before they are read (as serde's
/// own graph reader does): a message's claimed count is not trusted with an allocation.
const INITIAL_CAPACITY: usize = 1 << 20;

/// Decodes a `get` header, its graph on two threads when it is big.
pub fn decode_get(header: &[u8]) -> Result<GetBody, DecodeError> {
    match split_decode(header) {
        Some(body) => Ok(body),
        None => read_get(header, |rd| Ok(read_graph(rd)?)),
    }
}

/// The split read; `None` to leave the message to the one-thread reader.
fn split_decode(header: &[u8]) -> Option<GetBody> {
    // (The error is never looked at: the one-thread reader finds it again, and says it.)
    let step_aside = || DecodeError::Malformed(String::new());
    read_get(header, |rd| split_graph(rd).ok_or_else(step_aside)).ok()
}

/// Reads a `get`'s fields as serde reads [`GetBody`] (in any order, each at most once, fields
/// it does not know ignored), the graph with `read_graph`.
fn read_get(
    header: &[u8],
    mut read_graph: impl FnMut(&mut &[u8]) -> Result<HashedGraph, DecodeError>,
) -> Result<GetBody, DecodeError> {
    let mut rd = header;
    let fields = rmp::decode::read_map_len(&mut rd)
        .map_err(|_| DecodeError::Malformed("a message header is a msgpack map".into()))?;
    let mut request = None;
    let mut graph = None;
    let mut keys = None;
    let mut keep_results = None;
    let mut progress = None;
    for _ in 0..fields {
        let name = msgpack::take_field_name(&mut rd).ok_or_else(truncated)?;
        match name {
            Some("graph") => {
                once(&graph, "graph")?;
                graph = Some(read_graph(&mut rd)?);
            }
            Some("request") => {
                once(&request, "request")?;
                request = Some(field(&mut rd, "request")?);
            }
            Some("keys") => {
                once(&keys, "keys")?;
                keys = Some(field::<Value>(&mut rd, "keys")?);
            }
            Some("keep_results") => {
                once(&keep_results, "keep_results")?;
                keep_results = Some(field(&mut rd, "keep_results")?);
            }
            Some("progress") => {
                once(&progress, "progress")?;
                progress = Some(field(&mut rd, "progress")?);
            }
            // `op`, or a field this version does not know.
            _ => skip(&mut rd).ok_or_else(truncated)?,
        }
    }
    let missing = |name: &str| DecodeError::Malformed(format!("missing field `{name}`"));
    Ok(GetBody {
        request: request.ok_or_else(|| missing("request"))?,
        graph: graph.ok_or_else(|| missing("graph"))?,
        keys: keys.ok_or_else(|| missing("keys"))?,
        keep_results: keep_results.unwrap_or(false),
        progress: progress.unwrap_or(false),
    })
}

/// The error for a header that ends before its last field does (or holds a msgpack
/// extension type, which no zask message does).
fn truncated() -> DecodeError {
    DecodeError::Malformed("the message is truncated (or holds a msgpack extension type)".into())
}

/// An error if the field `name` was read already.
fn once<T>(read: &Option<T>, name: &str) -> Result<(), DecodeError> {
    match read {
        Some(_) => Err(DecodeError::Malformed(format!("duplicate field `{name}`"))),
        None => Ok(()),
    }
}

/// Decodes the field `name`, at the start of `rd` (and moves `rd` past it).
fn field<T: DeserializeOwned>(rd: &mut &[u8], name: &str) -> Result<T, DecodeError> {
    let bytes = take_value(rd).ok_or_else(truncated)?;
    rmp_serde::from_slice(bytes).map_err(|e| match DecodeError::from(e) {
        DecodeError::Malformed(message) => {
            DecodeError::Malformed(format!("field `{name}`: {message}"))
        }
        other => other,
    })
}

/// Reads the graph map at `rd` (and moves `rd` past it) on this thread.
fn read_graph(rd: &mut &[u8]) -> Result<HashedGraph, GraphError> {
    let count = graph_len(rd)?;
    // The tables grow as entries are read: the count a message claims is not trusted with
    // an allocation (an entry takes 2 bytes on the wire, far more in memory).
    let capacity = count.min(INITIAL_CAPACITY);
    let mut hashes = Vec::with_capacity(capacity);
    let mut nodes = Nodes::with_capacity_and_hasher(capacity, Default::default());
    // (A reader over `rd` itself, which it moves past what it reads.)
    let mut de = rmp_serde::Deserializer::new(&mut *rd);
    read_entries(&mut de, count, |key, node, hash| {
        hashes.push(hash);
        insert(&mut nodes, key, node)
    })?;
    Ok(HashedGraph {
        graph: Graph { nodes },
        hashes,
    })
}

/// The number of entries of the graph map at `rd` (and moves `rd` past the map's header).
fn graph_len(rd: &mut &[u8]) -> Result<usize, GraphError> {
    let start = *rd;
    let count = rmp::decode::read_map_len(rd)
        .map_err(|_| GraphError::NotAMap(msgpack::describe(start).to_string()))?;
    // Each entry takes two bytes at least: a count beyond what is left is a truncated graph
    // (and no table is made for it).
    if count as usize > rd.len() / 2 {
        return Err(GraphError::Unreadable(
            "the message ends inside the graph".into(),
        ));
    }
    Ok(count as usize)
}

/// Adds a node to `nodes`; a key twice is an error.
fn insert(nodes: &mut Nodes, key: String, node: Node) -> Result<(), GraphError> {
    match nodes.entry(key) {
        indexmap::map::Entry::Occupied(e) => Err(GraphError::Twice {
            key: e.key().clone(),
        }),
        indexmap::map::Entry::Vacant(e) => {
            e.insert(node);
            Ok(())
        }
    }
}

/// Reads the graph map at `rd` (and moves `rd` past it), the second half of its entries on a
/// helper thread; `None` for a small graph or anything unusual.
fn split_graph(rd: &mut &[u8]) -> Option<HashedGraph> {
    let count = graph_len(rd).ok()?;
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
    // (Each half's tables grow as its entries are read: the halves were only skipped over,
    // and entries that skip may still not read.)
    std::thread::scope(|scope| {
        // (No thread to be had: the one-thread reader does it all.)
        let helper = std::thread::Builder::new()
            .name("zask-decode".into())
            // Nested nodes are decoded recursively: the same stack as the scheduler's loop.
            .stack_size(crate::service::STACK_SIZE)
            .spawn_scoped(scope, || read_half(second, count - first_count))
            .ok()?;
        let mine = read_half(first, first_count);
        // Where the graph ends (the helper reads the same bytes; this pass is much cheaper).
        let mut end = second;
        let skipped = (0..(count - first_count) * 2).try_for_each(|_| skip(&mut end));
        // Joined before anything is decided, so a helper that failed is never left behind.
        let theirs = helper.join().ok().flatten();
        let ((mine, mut hashes), (theirs, their_hashes), ()) = (mine?, theirs?, skipped?);
        *rd = end;
        hashes.extend(their_hashes);
        let mut nodes = Nodes::with_capacity_and_hasher(count, Default::default());
        for (key, node) in mine.into_iter().chain(theirs) {
            // A key twice: the one-thread reader says which.
            insert(&mut nodes, key, node).ok()?;
        }
        Some(HashedGraph {
            graph: Graph { nodes },
            hashes,
        })
    })
}

/// The entries of one half of a graph, and their hashes.
type Half = (Vec<(String, Node)>, Vec<DefHash>);

/// Decodes `count` graph entries from the start of `bytes`.
fn read_half(bytes: &[u8], count: usize) -> Option<Half> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let capacity = count.min(INITIAL_CAPACITY);
    let mut entries = Vec::with_capacity(capacity);
    let mut hashes = Vec::with_capacity(capacity);
    read_entries(&mut de, count, |key, node, hash| {
        entries.push((key, node));
        hashes.push(hash);
        Ok(())
    })
    .ok()?;
    Some((entries, hashes))
}

/// Decodes `count` graph entries (a string key, then a node), each checked and hashed as
/// [`check_node`] does, and handed to `take` with its hash.
fn read_entries<'de, R: rmp_serde::decode::ReadSlice<'de>>(
    de: &mut rmp_serde::Deserializer<R>,
    count: usize,
    mut take: impl FnMut(String, Node, DefHash) -> Result<(), GraphError>,
) -> Result<(), GraphError> {
    for _ in 0..count {
        let key = match Value::deserialize(&mut *de) {
            Ok(Value::Str(key)) => key,
            Ok(other) => return Err(GraphError::KeyNotAString(other.to_string())),
            Err(e) => return Err(GraphError::Unreadable(e.to_string())),
        };
        let node = match Node::deserialize(&mut *de) {
            Ok(node) => node,
            Err(e) => {
                let message = e.to_string();
                return Err(GraphError::BadNode { key, message });
            }
        };
        let hash = check_node(&key, &node)?;
        take(key, node, hash)?;
    }
    Ok(())
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
        #[derive(serde::Serialize)]
        struct NoKeys<'a> {
            op: &'static str,
            request: u64,
            graph: &'a Graph,
        }
        let no_keys = NoKeys {
            op: "get",
            request: 1,
            graph: &graph,
        };
        let err = decode_get(&rmp_serde::to_vec_named(&no_keys).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`keys`"), "{err}");
    }

    /// The peak memory of this process, in bytes (Linux).
    #[cfg(target_os = "linux")]
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// A `get` whose graph claims as many entries as its bytes could hold (two bytes each)
    /// but holds none: refused without making tables for them. (Each entry costs far more in
    /// memory than on the wire: the tables made up front for 32 million claimed entries
    /// took over half a GiB.)
    #[cfg(target_os = "linux")]
    #[test]
    fn a_graph_that_claims_more_entries_than_it_holds_allocates_nothing_for_them() {
        let filler = 64 << 20;
        let claimed = (filler / 2) as u32;
        let mut bytes = Vec::with_capacity(filler + 64);
        rmp::encode::write_map_len(&mut bytes, 4).unwrap();
        rmp::encode::write_str(&mut bytes, "op").unwrap();
        rmp::encode::write_str(&mut bytes, "get").unwrap();
        rmp::encode::write_str(&mut bytes, "request").unwrap();
        rmp::encode::write_uint(&mut bytes, 1).unwrap();
        rmp::encode::write_str(&mut bytes, "keys").unwrap();
        rmp::encode::write_str(&mut bytes, "k").unwrap();
        rmp::encode::write_str(&mut bytes, "graph").unwrap();
        rmp::encode::write_map_len(&mut bytes, claimed).unwrap();
        // Entries whose keys are not strings: the first is refused.
        bytes.resize(bytes.len() + filler, 0xc0);
        let before = peak_rss();
        let err = decode_get(&bytes).unwrap_err();
        let grown = peak_rss().saturating_sub(before);
        assert!(err.to_string().contains("string"), "{err}");
        assert!(grown < 128 << 20, "decoding took {} MiB", grown >> 20);
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
