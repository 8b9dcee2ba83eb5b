//! serde for [`Node`] and [`Graph`]: the wire form read and written directly.
//!
//! A graph of a million tasks arrives as one message; building a [`Value`] tree first and then
//! the nodes from it would cost twice the memory and time. These impls read msgpack (or any
//! serde format) straight into nodes, with the same rules and error messages as
//! [`Node::from_value`], and write nodes straight out.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::graph::{bytes_literal, float_literal, form_of, Form, Graph, Node, Task};
use crate::hash::DefHash;
use crate::value::{Value, MAX_NESTING};

/// Errors about a graph's content start with this (see [`GraphError`]), so that people
/// reading them can tell them from other decoding errors.
pub const INVALID_GRAPH: &str = "invalid graph";

/// What is wrong with a graph's content: the scheduler answers it with `invalid_graph`,
/// naming the key ([`GraphError::key`]). Readers that go through serde (which carries errors
/// as text) give its message; the `get` reader (`get_split`) gives it typed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// The graph is not a map (it is what the string says).
    #[error("{INVALID_GRAPH}: a graph is a map of keys to nodes, got {0}")]
    NotAMap(String),
    /// A key of the graph is not a string (it is the value shown).
    #[error("{INVALID_GRAPH}: graph keys must be strings, got {0}")]
    KeyNotAString(String),
    /// The node of `key` is malformed (`message` says how).
    #[error("{INVALID_GRAPH}: key {}: {message}", key_in_message(.key))]
    BadNode {
        /// The node's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The node of `key` nests deeper than [`MAX_NESTING`].
    #[error(
        "{INVALID_GRAPH}: key {}: the node nests {nesting} levels of lists, maps and tasks; \
         the limit is {MAX_NESTING}",
        key_in_message(.key)
    )]
    TooDeep {
        /// The node's key.
        key: String,
        /// How many levels it nests.
        nesting: usize,
    },
    /// The graph has `key` twice.
    #[error("{INVALID_GRAPH}: key {} appears twice", key_in_message(.key))]
    Twice {
        /// The key.
        key: String,
    },
    /// The graph's bytes cannot be read at all (truncated, say).
    #[error("{INVALID_GRAPH}: {0}")]
    Unreadable(String),
}

impl GraphError {
    /// The key whose node is wrong, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            GraphError::BadNode { key, .. }
            | GraphError::TooDeep { key, .. }
            | GraphError::Twice { key } => Some(key),
            GraphError::NotAMap(_) | GraphError::KeyNotAString(_) | GraphError::Unreadable(_) => {
                None
            }
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Literal(v @ (Value::List(_) | Value::Map(_))) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("lit", v)?;
                m.end()
            }
            Node::Literal(v) => v.serialize(s),
            Node::Ref(k) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("ref", k)?;
                m.end()
            }
            Node::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for n in items {
                    seq.serialize_element(n)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, n) in entries {
                    m.serialize_entry(k, n)?;
                }
                m.end()
            }
            Node::Task(t) => {
                let len = 1 + usize::from(!t.args.is_empty()) + usize::from(!t.kwargs.is_empty());
                let mut m = s.serialize_map(Some(len))?;
                m.serialize_entry("fn", &t.func)?;
                if !t.args.is_empty() {
                    m.serialize_entry("args", &t.args)?;
                }
                if !t.kwargs.is_empty() {
                    m.serialize_entry("kwargs", &Kwargs(&t.kwargs))?;
                }
                m.end()
            }
        }
    }
}

struct Kwargs<'a>(&'a [(String, Node)]);

impl Serialize for Kwargs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, n) in self.0 {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }
}

impl Serialize for Graph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.nodes.len()))?;
        for (k, n) in &self.nodes {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }
}

/// A map entry's value as read: a literal taken as written (`lit`), a task's arguments
/// (read straight into nodes), or a node.
enum Entry {
    Raw(Value),
    Args(Vec<Node>),
    Node(Node),
}

/// A map's key as read: the names of the special forms without an allocation, or any value.
enum MapKey {
    Known(&'static str),
    Other(Value),
}

impl MapKey {
    fn as_str(&self) -> Option<&str> {
        match self {
            MapKey::Known(k) => Some(k),
            MapKey::Other(v) => v.as_str(),
        }
    }

    fn into_value(self) -> Value {
        match self {
            MapKey::Known(k) => Value::from(k),
            MapKey::Other(v) => v,
        }
    }
}

const KNOWN_KEYS: [&str; 7] = crate::graph::RESERVED_FIELDS;

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MapKey, D::Error> {
        d.deserialize_any(MapKeyVisitor)
    }
}

struct MapKeyVisitor;

/// Visitor methods that hand the value to another visitor (`$to`) and wrap what it returns
/// (`$wrap`): the types a special visitor takes as any other.
macro_rules! delegate_visits {
    ($to:expr, $wrap:expr, $ret:ty; $($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(fn $name<E: de::Error>(self, $($arg: $ty),*) -> Result<$ret, E> {
            $to.$name($($arg),*).map($wrap)
        })*
    };
}

impl<'de> Visitor<'de> for MapKeyVisitor {
    type Value = MapKey;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MapKey, E> {
        match KNOWN_KEYS.iter().find(|k| **k == v) {
            Some(k) => Ok(MapKey::Known(k)),
            None => Ok(MapKey::Other(Value::Str(v.to_string()))),
        }
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<MapKey, E> {
        match KNOWN_KEYS.iter().find(|k| **k == v) {
            Some(k) => Ok(MapKey::Known(k)),
            None => Ok(MapKey::Other(Value::Str(v))),
        }
    }
    // Anything but a string is read as a [`Value`].
    delegate_visits!(crate::value::ValueVisitor, MapKey::Other, MapKey;
        visit_unit(),
        visit_none(),
        visit_bool(v: bool),
        visit_i64(v: i64),
        visit_u64(v: u64),
        visit_f64(v: f64),
        visit_bytes(v: &[u8]),
        visit_byte_buf(v: Vec<u8>),
    );
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<MapKey, D::Error> {
        Value::deserialize(d).map(MapKey::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MapKey, A::Error> {
        crate::value::ValueVisitor.visit_seq(seq).map(MapKey::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapKey, A::Error> {
        crate::value::ValueVisitor.visit_map(map).map(MapKey::Other)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<MapKey, A::Error> {
        crate::value::ValueVisitor
            .visit_enum(data)
            .map(MapKey::Other)
    }
}

/// A task's `args`: a list read straight into nodes (no literal list built and taken apart
/// again); anything else read as a node, for the error message.
struct ArgsEntry(Entry);

impl<'de> Deserialize<'de> for ArgsEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ArgsEntry, D::Error> {
        d.deserialize_any(ArgsVisitor)
    }
}

struct ArgsVisitor;

impl<'de> Visitor<'de> for ArgsVisitor {
    type Value = ArgsEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of arguments")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ArgsEntry, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(ArgsEntry(Entry::Args(items)))
    }
    // Anything but a list is read as a node (`args` then gets its error message).
    delegate_visits!(NodeVisitor, |n| ArgsEntry(Entry::Node(n)), ArgsEntry;
        visit_unit(),
        visit_none(),
        visit_bool(v: bool),
        visit_i64(v: i64),
        visit_u64(v: u64),
        visit_f64(v: f64),
        visit_str(v: &str),
        visit_string(v: String),
        visit_bytes(v: &[u8]),
        visit_byte_buf(v: Vec<u8>),
    );
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ArgsEntry, D::Error> {
        Node::deserialize(d).map(|n| ArgsEntry(Entry::Node(n)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ArgsEntry, A::Error> {
        NodeVisitor
            .visit_map(map)
            .map(|n| ArgsEntry(Entry::Node(n)))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<ArgsEntry, A::Error> {
        NodeVisitor
            .visit_enum(data)
            .map(|n| ArgsEntry(Entry::Node(n)))
    }
}

impl Entry {
    fn into_node(self) -> Result<Node, String> {
        match self {
            Entry::Node(n) => Ok(n),
            // Not a task's arguments after all (a map with an "args" key): a list as anywhere.
            Entry::Args(items) => Ok(list_node(items)),
            Entry::Raw(v) => Node::from_value(&v).map_err(|e| e.0),
        }
    }
}

/// A map node's entries as read: a task's two or three are kept inline (no allocation per
/// node of a million-task graph).
type Entries = SmallVec<[(MapKey, Entry); 3]>;

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a graph node")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Literal(Value::Nil))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Literal(Value::Nil))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Literal(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Literal(Value::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Literal(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Literal(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Literal(Value::Str(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Literal(Value::Str(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Literal(Value::Bytes(
            crate::value::Bytes::copy_from_slice(v),
        )))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Node, E> {
        Ok(Node::Literal(Value::Bytes(v.into())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(list_node(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let hint = map.size_hint();
        let mut entries = Entries::new();
        while let Some(k) = map.next_key::<MapKey>()? {
            let entry = match k {
                MapKey::Known("lit") => Entry::Raw(map.next_value::<Value>()?),
                MapKey::Known("args") => map.next_value::<ArgsEntry>()?.0,
                _ => Entry::Node(map.next_value::<Node>()?),
            };
            // The commonest node, `{"ref": key}` (a wide task has a million), is made at once;
            // anything else goes through `from_entries` (and its error messages).
            if hint == Some(1) {
                return match (k, entry) {
                    (MapKey::Known("ref"), Entry::Node(Node::Literal(Value::Str(key)))) => {
                        Ok(Node::Ref(key))
                    }
                    (k, entry) => {
                        from_entries(smallvec::smallvec![(k, entry)]).map_err(de::Error::custom)
                    }
                };
            }
            if entries.is_empty() && hint.is_some_and(|n| n > entries.inline_size()) {
                entries.reserve(hint.unwrap_or(0).min(1 << 16));
            }
            entries.push((k, entry));
        }
        from_entries(entries).map_err(de::Error::custom)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Node, A::Error> {
        Err(de::Error::custom(
            "msgpack extension types are not zask values",
        ))
    }
}

/// A list of nodes: a literal list if every item is a literal.
fn list_node(items: Vec<Node>) -> Node {
    if items.iter().all(|n| matches!(n, Node::Literal(_))) {
        Node::Literal(Value::List(items.into_iter().map(literal_of).collect()))
    } else {
        Node::List(items)
    }
}

fn literal_of(n: Node) -> Value {
    match n {
        Node::Literal(v) => v,
        _ => Value::Nil,
    }
}

/// The special forms (`ref`, `lit`, `bytes`, `float`, tasks) or a map of nodes, as in
/// `Node::from_value`.
fn from_entries(entries: Entries) -> Result<Node, String> {
    let names: SmallVec<[Option<&str>; 3]> = entries.iter().map(|(k, _)| k.as_str()).collect();
    let form = form_of(&names)?;
    drop(names);
    let single = |entries: Entries| entries.into_iter().next().map(|(_, e)| e);
    match form {
        Form::Lit => match single(entries) {
            Some(Entry::Raw(v)) => Ok(Node::Literal(v)),
            _ => Err("{\"lit\": ...} is malformed".to_string()),
        },
        Form::Ref => match single(entries) {
            Some(Entry::Node(Node::Literal(Value::Str(k)))) => Ok(Node::Ref(k)),
            Some(other) => Err(format!(
                "{{\"ref\": ...}} takes a key string, got {}",
                describe_entry(&other)
            )),
            None => Err("{\"ref\": ...} is malformed".to_string()),
        },
        Form::Bytes | Form::Float => {
            let value = match single(entries) {
                Some(Entry::Raw(v) | Entry::Node(Node::Literal(v))) => v,
                _ => Value::Nil,
            };
            if form == Form::Bytes {
                bytes_literal(&value)
            } else {
                float_literal(&value)
            }
        }
        Form::Task => task_from_entries(entries),
        Form::Map => {
            let mut nodes = Vec::with_capacity(entries.len());
            for (k, entry) in entries {
                nodes.push((k.into_value(), entry.into_node()?));
            }
            if nodes.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                Ok(Node::Literal(Value::Map(
                    nodes.into_iter().map(|(k, n)| (k, literal_of(n))).collect(),
                )))
            } else {
                Ok(Node::Map(nodes))
            }
        }
    }
}

fn describe_entry(e: &Entry) -> String {
    match e {
        Entry::Node(Node::Literal(Value::Str(s))) => format!("{s:?}"),
        Entry::Node(Node::Literal(v)) | Entry::Raw(v) => v.type_name().to_string(),
        Entry::Args(_) => "list".to_string(),
        Entry::Node(Node::Ref(_)) => "a reference".to_string(),
        Entry::Node(Node::Task(_)) => "a task".to_string(),
        Entry::Node(Node::List(_)) => "list".to_string(),
        Entry::Node(Node::Map(_)) => "map".to_string(),
    }
}

fn task_from_entries(entries: Entries) -> Result<Node, String> {
    // The function's name first, so that errors about the arguments can name it.
    let func = match entries.iter().find(|(k, _)| k.as_str() == Some("fn")) {
        Some((_, Entry::Node(Node::Literal(Value::Str(f))))) if !f.is_empty() => f.clone(),
        Some((_, other)) => {
            return Err(format!(
                "\"fn\" takes a non-empty function name, got {}",
                describe_entry(other)
            ))
        }
        None => return Err("a task needs \"fn\"".to_string()),
    };
    let mut task = Task {
        func,
        args: Vec::new(),
        kwargs: Vec::new(),
    };
    for (k, entry) in entries {
        match (k.as_str(), entry) {
            (Some("fn"), _) => {}
            (Some("args"), Entry::Args(items) | Entry::Node(Node::List(items))) => {
                task.args = items
            }
            (Some("args"), Entry::Node(Node::Literal(Value::List(items)))) => {
                task.args = items.into_iter().map(Node::Literal).collect()
            }
            (Some("args"), other) => {
                return Err(format!(
                    "\"args\" of {:?} takes a list, got {}",
                    task.func,
                    describe_entry(&other)
                ))
            }
            (Some("kwargs"), Entry::Node(Node::Map(kw))) => {
                for (name, node) in kw {
                    let Value::Str(name) = name else {
                        return Err(format!(
                            "\"kwargs\" names of {:?} must be strings",
                            task.func
                        ));
                    };
                    task.kwargs.push((name, node));
                }
            }
            (Some("kwargs"), Entry::Node(Node::Literal(Value::Map(kw)))) => {
                for (name, value) in kw {
                    let Value::Str(name) = name else {
                        return Err(format!(
                            "\"kwargs\" names of {:?} must be strings",
                            task.func
                        ));
                    };
                    task.kwargs.push((name, Node::Literal(value)));
                }
            }
            (_, other) => {
                return Err(format!(
                    "\"kwargs\" of {:?} takes a map of names to nodes, got {}",
                    task.func,
                    describe_entry(&other)
                ))
            }
        }
    }
    Ok(Node::Task(task))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A graph as the scheduler receives it: its nodes, and each node's own hash
/// ([`DefHash::of_node`]) by index, computed while decoding (so a big graph's are computed on
/// two threads, with its halves: see `get_split`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HashedGraph {
    /// The nodes.
    pub graph: Graph,
    /// `hashes[i]` is the hash of the node at index `i` of `graph.nodes`, alone.
    pub hashes: Vec<DefHash>,
}

impl HashedGraph {
    /// A graph built in code, hashed now.
    pub fn new(graph: Graph) -> HashedGraph {
        let hashes = HashedGraph::hashes_of(&graph);
        HashedGraph { graph, hashes }
    }

    /// The hash of each node of `graph`, alone, by index.
    pub fn hashes_of(graph: &Graph) -> Vec<DefHash> {
        graph
            .nodes
            .values()
            .map(|n| DefHash::of_node(n).0)
            .collect()
    }
}

impl From<Graph> for HashedGraph {
    fn from(graph: Graph) -> HashedGraph {
        HashedGraph::new(graph)
    }
}

impl Serialize for HashedGraph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.graph.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HashedGraph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashedGraph, D::Error> {
        d.deserialize_any(GraphVisitor)
    }
}

/// Checks a decoded node (it must not nest deeper than [`MAX_NESTING`]) and hashes it; the
/// error is the one a graph reader reports for that node's key.
pub(crate) fn check_node(key: &str, node: &Node) -> Result<DefHash, GraphError> {
    let (hash, nesting) = DefHash::of_node(node);
    if nesting > MAX_NESTING {
        return Err(GraphError::TooDeep {
            key: key.to_string(),
            nesting,
        });
    }
    Ok(hash)
}

/// A key as error messages about graphs quote it: as a JSON string (a key may hold quotes,
/// newlines, anything).
pub fn key_in_message(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

struct GraphVisitor;

impl<'de> Visitor<'de> for GraphVisitor {
    type Value = HashedGraph;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a graph: a map of keys to nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<HashedGraph, A::Error> {
        Err(not_a_map("list"))
    }
    fn visit_str<E: de::Error>(self, _v: &str) -> Result<HashedGraph, E> {
        Err(not_a_map("str"))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<HashedGraph, E> {
        Err(not_a_map("bytes"))
    }
    fn visit_i64<E: de::Error>(self, _v: i64) -> Result<HashedGraph, E> {
        Err(not_a_map("int"))
    }
    fn visit_u64<E: de::Error>(self, _v: u64) -> Result<HashedGraph, E> {
        Err(not_a_map("int"))
    }
    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<HashedGraph, E> {
        Err(not_a_map("float"))
    }
    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<HashedGraph, E> {
        Err(not_a_map("bool"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<HashedGraph, E> {
        Err(not_a_map("nil"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashedGraph, A::Error> {
        let capacity = map.size_hint().unwrap_or(0).min(1 << 20);
        let mut nodes = crate::graph::Nodes::with_capacity_and_hasher(capacity, Default::default());
        let mut hashes = Vec::with_capacity(capacity);
        while let Some(k) = map.next_key::<Value>()? {
            let Value::Str(key) = k else {
                return Err(de::Error::custom(GraphError::KeyNotAString(k.to_string())));
            };
            let node = map.next_value_seed(NodeSeed).map_err(|e| {
                de::Error::custom(GraphError::BadNode {
                    key: key.clone(),
                    message: e.to_string(),
                })
            })?;
            hashes.push(check_node(&key, &node).map_err(de::Error::custom)?);
            match nodes.entry(key) {
                indexmap::map::Entry::Occupied(e) => {
                    let key = e.key().clone();
                    return Err(de::Error::custom(GraphError::Twice { key }));
                }
                indexmap::map::Entry::Vacant(e) => {
                    e.insert(node);
                }
            }
        }
        Ok(HashedGraph {
            graph: Graph { nodes },
            hashes,
        })
    }
}

/// Reads one node (a seed, so that errors can be given the key's name).
struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

impl<'de> Deserialize<'de> for Graph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Graph, D::Error> {
        HashedGraph::deserialize(d).map(|g| g.graph)
    }
}

fn not_a_map<E: de::Error>(got: &str) -> E {
    E::custom(GraphError::NotAMap(got.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{key, list, lit, task};

    fn sample() -> Graph {
        let mut g = Graph::new();
        g.insert("x", Value::List(vec![Value::Int(1)]));
        g.insert(
            "y",
            task("add", (key("x"), lit(Value::Map(vec![])))).kwarg("z", 1),
        );
        g.insert("z", list(vec![key("x"), key("y")]));
        g.insert("b", Value::Bytes(vec![1, 2, 3].into()));
        g.insert("m", Node::Map(vec![(Value::from("k"), key("x"))]));
        g.insert("s", Value::from("text"));
        g
    }

    #[test]
    fn the_direct_wire_form_equals_the_value_form() {
        let g = sample();
        let direct = rmp_serde::to_vec_named(&g).unwrap();
        let via_value = rmp_serde::to_vec_named(&g.to_value()).unwrap();
        assert_eq!(direct, via_value);
        let back: Graph = rmp_serde::from_slice(&direct).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn reading_directly_agrees_with_from_value() {
        let json = serde_json::json!({
            "x": 1,
            "y": {"fn": "add", "args": [{"ref": "x"}, 2]},
            "a": {"ref": "y"},
            "l": [1, {"ref": "x"}],
            "t": {"lit": {"fn": "add"}},
            "b": {"bytes": "AAE="},
            "m": {"k": {"ref": "x"}},
            "kw": {"fn": "range", "args": [5], "kwargs": {"step": {"ref": "x"}}},
            "kwl": {"fn": "range", "args": [5], "kwargs": {"step": 2}},
            // Special names as data: through `lit`.
            "args_map": {"lit": {"args": [1, 2]}},
            "f_inf": {"float": "-inf"},
            "f_num": {"float": 2},
            "nested": {"fn": "add", "args": [{"fn": "inc", "args": [1]}, [1, {"ref": "x"}]]},
            "no_args": {"fn": "zero"},
            "single": {"only": {"ref": "x"}},
            "single_lit": {"lit": [1, {"ref": "x"}]},
            "empty_args": {"fn": "zero", "args": []}
        });
        let mut value = Value::from_json(&json);
        // A map with keys that are not strings.
        if let Value::Map(entries) = &mut value {
            entries.push((
                Value::from("int_keys"),
                Value::Map(vec![
                    (Value::Int(1), Value::from("a")),
                    (Value::Bool(true), Value::List(vec![])),
                ]),
            ));
        }
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        let direct: Graph = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(direct, Graph::from_value(&value).unwrap());
        assert_eq!(
            direct.get("args_map"),
            Some(&Node::Literal(Value::Map(vec![(
                Value::from("args"),
                Value::List(vec![Value::Int(1), Value::Int(2)])
            )])))
        );
        // (NaN is not equal to itself, so it is checked on its own.)
        let nan = Value::from_json(&serde_json::json!({"n": {"float": "nan"}}));
        let bytes = rmp_serde::to_vec_named(&nan).unwrap();
        for graph in [
            rmp_serde::from_slice::<Graph>(&bytes).unwrap(),
            Graph::from_value(&nan).unwrap(),
        ] {
            assert!(matches!(graph.get("n"), Some(Node::Literal(Value::Float(f))) if f.is_nan()));
        }
        assert_eq!(
            direct.get("f_inf"),
            Some(&Node::Literal(Value::Float(f64::NEG_INFINITY)))
        );
        assert_eq!(direct.get("f_num"), Some(&Node::Literal(Value::Float(2.0))));
    }

    /// A map that uses a reserved field and is not that form exactly is an error naming the
    /// key and the field, the same from msgpack and from JSON: a typo in a task must not
    /// become a literal map that is printed as a result.
    #[test]
    fn reserved_fields_outside_their_forms_are_errors() {
        for (node, words) in [
            (
                serde_json::json!({"fn": "inc", "arg": [1]}),
                vec!["\"arg\"", "lit"],
            ),
            (
                serde_json::json!({"fn": "inc", "kwarg": {}}),
                vec!["\"kwarg\""],
            ),
            (
                serde_json::json!({"func": "inc", "args": [1]}),
                vec!["\"args\" without \"fn\""],
            ),
            (serde_json::json!({"args": [1, 2]}), vec!["without \"fn\""]),
            (serde_json::json!({"ref": "x", "fn": 1}), vec!["\"ref\""]),
            (
                serde_json::json!({"lit": {"ref": "x"}, "other": 1}),
                vec!["\"lit\"", "\"other\""],
            ),
            (
                serde_json::json!({"ref": "x", "extra": 1}),
                vec!["\"ref\"", "\"extra\""],
            ),
            (
                serde_json::json!({"float": "lots"}),
                vec!["float", "\"lots\""],
            ),
        ] {
            let graph = serde_json::json!({"y": node});
            let value = Value::from_json(&graph);
            let bytes = rmp_serde::to_vec_named(&value).unwrap();
            let direct = rmp_serde::from_slice::<Graph>(&bytes)
                .unwrap_err()
                .to_string();
            let from_value = Graph::from_value(&value).unwrap_err().to_string();
            for err in [&direct, &from_value] {
                assert!(err.contains("\"y\""), "{err} lacks the key");
                for w in &words {
                    assert!(err.contains(w), "{err} lacks {w}");
                }
            }
        }
        // The function is named in errors about its arguments, wherever "fn" is written.
        let value = Value::from_json(&serde_json::json!({"y": {"args": 3, "fn": "inc"}}));
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        let err = rmp_serde::from_slice::<Graph>(&bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"args\" of \"inc\""), "{err}");
        let err = Graph::from_value(&value).unwrap_err().to_string();
        assert!(err.contains("\"args\" of \"inc\""), "{err}");
    }

    #[test]
    fn malformed_nodes_are_errors_naming_the_key() {
        for (json, words) in [
            (serde_json::json!({"y": {"fn": 3}}), vec!["\"y\"", "fn"]),
            (serde_json::json!({"y": {"ref": 3}}), vec!["\"y\"", "ref"]),
            (
                serde_json::json!({"y": {"ref": ["x"]}}),
                vec!["\"y\"", "ref"],
            ),
            (
                serde_json::json!({"y": {"ref": {"ref": "x"}}}),
                vec!["\"y\"", "ref"],
            ),
            (
                serde_json::json!({"y": {"fn": "add", "args": 3}}),
                vec!["args"],
            ),
            (serde_json::json!({"y": {"bytes": "!!"}}), vec!["base64"]),
        ] {
            let bytes = rmp_serde::to_vec_named(&Value::from_json(&json)).unwrap();
            let err = rmp_serde::from_slice::<Graph>(&bytes)
                .unwrap_err()
                .to_string();
            assert!(err.contains(INVALID_GRAPH), "{err}");
            for w in words {
                assert!(err.contains(w), "{err} lacks {w}");
            }
        }
        let not_a_map = rmp_serde::to_vec(&Value::List(vec![])).unwrap();
        assert!(rmp_serde::from_slice::<Graph>(&not_a_map).is_err());
    }
}
