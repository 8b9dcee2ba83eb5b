//! [`DefHash`]: a key's definition, as a hash, so that "same key" can be checked to mean "same
//! computation".
//!
//! dask's contract is that a key names one value: two graphs that use the key `b` mean the
//! same `b`. zask checks it instead of trusting it. Every task carries a hash of its
//! definition: its node (function names, literal arguments, the names of the keys it refers
//! to) combined with the definition hashes of the keys it refers to, a Merkle hash. So `b =
//! mul(a, 10)` over `a = 2` and `b = mul(a, 10)` over `a = 4` hash differently though `b`'s
//! node is the same. A literal node and a scattered value hash as their value, so a graph that
//! writes `{"x": 5}` and a client that scattered `x = 5` agree.
//!
//! The scheduler compares hashes when a graph defines a key it already has (a different
//! definition is refused with `key_conflict`), and when a worker claims to hold a key (a copy
//! whose hash differs is stale and is dropped). Workers keep the hash with every value they
//! hold.
//!
//! The hash is SHA-256 over a canonical encoding of the decoded node (type tags, lengths,
//! integers as 8 bytes): the same definition hashes the same whichever client or language
//! encoded it, and a collision cannot be found on purpose. 128 bits are kept. (SHA-256
//! rather than BLAKE3: a node's encoding is a few dozen bytes, where SHA-256 with the CPU's
//! SHA instructions takes 40 ns and BLAKE3 95 ns, measured on this project's machine.)

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::graph::Node;
use crate::value::Value;

/// The hash of a key's definition (128 bits of SHA-256). On the wire: a 16-byte bin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct DefHash(pub [u8; 16]);

/// Separates the hashes of nodes from those of combinations (and from anything else hashed
/// with SHA-256), and versions the encoding.
const NODE_DOMAIN: &[u8] = b"zask-definition-node-1";
const COMBINE_DOMAIN: &[u8] = b"zask-definition-merkle-1";

impl DefHash {
    /// The hash of a value given as it is: a scattered value, or a literal node's.
    pub fn of_value(value: &Value) -> DefHash {
        with_canon(|c| {
            c.tag(b'L');
            c.value(value);
        })
        .0
    }

    /// The hash of `node` alone (its inputs' definitions not included; see
    /// [`DefHash::combine`]), and how many levels of msgpack arrays and maps its wire form
    /// (the node as a graph carries it: `{"ref": ...}`, `{"fn": ...}`, `{"lit": ...}` maps
    /// included) nests.
    pub fn of_node(node: &Node) -> (DefHash, usize) {
        with_canon(|c| c.node(node))
    }

    /// The definition hash of a node whose own hash is `local`, over inputs whose definition
    /// hashes are `deps` (its distinct references, in the order the node first makes them). A
    /// node without inputs is its own hash.
    pub fn combine(local: DefHash, deps: impl IntoIterator<Item = DefHash>) -> DefHash {
        let mut deps = deps.into_iter().peekable();
        if deps.peek().is_none() {
            return local;
        }
        let mut hasher = Sha256::new();
        hasher.update(COMBINE_DOMAIN);
        hasher.update(local.0);
        for d in deps {
            hasher.update(d.0);
        }
        truncate(&hasher.finalize())
    }

    /// The hash as 32 hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for DefHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DefHash({})", self.to_hex())
    }
}

impl fmt::Display for DefHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for DefHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for DefHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DefHash, D::Error> {
        d.deserialize_bytes(HashVisitor)
    }
}

struct HashVisitor;

impl<'de> Visitor<'de> for HashVisitor {
    type Value = DefHash;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a definition hash (a bin of 16 bytes)")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<DefHash, E> {
        <[u8; 16]>::try_from(v)
            .map(DefHash)
            .map_err(|_| E::custom(format!("a definition hash has 16 bytes, got {}", v.len())))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<DefHash, A::Error> {
        // (Formats without a bytes type write it as a list of numbers.)
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(de::Error::invalid_length(17, &self));
        }
        Ok(DefHash(out))
    }
}

fn truncate(digest: &[u8]) -> DefHash {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    DefHash(out)
}

thread_local! {
    /// The canonical encoding is written here before it is hashed (no allocation per node).
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Runs `write` over a canonical encoder and returns the hash of what it wrote, with what
/// `write` returned.
fn with_canon<R>(write: impl FnOnce(&mut Canon) -> R) -> (DefHash, R) {
    BUFFER.with(|cell| {
        // (Taken out while in use: a nested call would simply start with a new buffer.)
        let mut buf = cell.take();
        buf.clear();
        buf.extend_from_slice(NODE_DOMAIN);
        let mut canon = Canon { buf, hasher: None };
        let result = write(&mut canon);
        let hash = canon.finish();
        // A buffer grown by a huge literal is not kept.
        if canon.buf.capacity() <= 1 << 20 {
            cell.replace(canon.buf);
        }
        (hash, result)
    })
}

/// Bytes written before they are handed to the hasher in one piece.
const FLUSH_AT: usize = 64 * 1024;

/// The canonical encoding: a type tag per item, lengths as 8 bytes, integers and floats as 8
/// little-endian bytes (every NaN the same), strings and bytes as their length and content.
struct Canon {
    buf: Vec<u8>,
    /// Made once the encoding outgrows `FLUSH_AT` (a large literal).
    hasher: Option<Sha256>,
}

impl Canon {
    fn bytes(&mut self, b: &[u8]) {
        if self.buf.len() + b.len() > FLUSH_AT {
            let hasher = self.hasher.get_or_insert_with(Sha256::new);
            hasher.update(&self.buf);
            self.buf.clear();
            if b.len() > FLUSH_AT {
                hasher.update(b);
                return;
            }
        }
        self.buf.extend_from_slice(b);
    }

    fn tag(&mut self, t: u8) {
        self.buf.push(t);
    }

    fn len(&mut self, n: usize) {
        self.bytes(&(n as u64).to_le_bytes());
    }

    fn text(&mut self, s: &[u8]) {
        self.len(s.len());
        self.bytes(s);
    }

    /// Writes `v` and returns how deeply it nests (a scalar 0, `[1]` 1, `[[1]]` 2).
    fn value(&mut self, v: &Value) -> usize {
        match v {
            Value::Nil => {
                self.tag(b'n');
                0
            }
            Value::Bool(b) => {
                self.tag(b'b');
                self.tag(u8::from(*b));
                0
            }
            Value::Int(i) => {
                self.tag(b'i');
                self.bytes(&i.to_le_bytes());
                0
            }
            Value::Float(f) => {
                self.tag(b'f');
                let bits = if f.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    f.to_bits()
                };
                self.bytes(&bits.to_le_bytes());
                0
            }
            Value::Str(s) => {
                self.tag(b's');
                self.text(s.as_bytes());
                0
            }
            Value::Bytes(b) => {
                self.tag(b'y');
                self.text(b);
                0
            }
            Value::List(items) => {
                self.tag(b'l');
                self.len(items.len());
                let mut depth = 0;
                for item in items {
                    depth = depth.max(self.value(item));
                }
                depth + 1
            }
            Value::Map(entries) => {
                self.tag(b'm');
                self.len(entries.len());
                let mut depth = 0;
                for (k, item) in entries {
                    depth = depth.max(self.value(k)).max(self.value(item));
                }
                depth + 1
            }
        }
    }

    /// Writes `node` and returns how deeply its wire form nests (see [`DefHash::of_node`]).
    fn node(&mut self, node: &Node) -> usize {
        match node {
            Node::Literal(v) => {
                self.tag(b'L');
                let depth = self.value(v);
                // Lists and maps travel as `{"lit": ...}`: one level more.
                if matches!(v, Value::List(_) | Value::Map(_)) {
                    depth + 1
                } else {
                    depth
                }
            }
            Node::Ref(k) => {
                self.tag(b'R');
                self.text(k.as_bytes());
                1
            }
            Node::List(items) => {
                self.tag(b'N');
                self.len(items.len());
                let mut depth = 0;
                for item in items {
                    depth = depth.max(self.node(item));
                }
                depth + 1
            }
            Node::Map(entries) => {
                self.tag(b'M');
                self.len(entries.len());
                let mut depth = 0;
                for (k, item) in entries {
                    depth = depth.max(self.value(k)).max(self.node(item));
                }
                depth + 1
            }
            Node::Task(t) => {
                self.tag(b'T');
                self.text(t.func.as_bytes());
                self.len(t.args.len());
                let mut depth = 0;
                for a in &t.args {
                    depth = depth.max(self.node(a) + 1);
                }
                self.len(t.kwargs.len());
                for (name, n) in &t.kwargs {
                    self.text(name.as_bytes());
                    depth = depth.max(self.node(n) + 1);
                }
                // The task's map, then its `args` list or `kwargs` map.
                depth.max(1) + 1
            }
        }
    }

    fn finish(&mut self) -> DefHash {
        match self.hasher.take() {
            Some(mut hasher) => {
                hasher.update(&self.buf);
                truncate(&hasher.finalize())
            }
            None => truncate(&Sha256::digest(&self.buf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{key, list, lit, task};

    #[test]
    fn equal_definitions_hash_equal_and_others_differ() {
        let a = DefHash::of_node(&task("mul", (key("a"), 10))).0;
        assert_eq!(a, DefHash::of_node(&task("mul", (key("a"), 10))).0);
        assert_ne!(a, DefHash::of_node(&task("mul", (key("a"), 11))).0);
        assert_ne!(a, DefHash::of_node(&task("mul", (key("b"), 10))).0);
        assert_ne!(a, DefHash::of_node(&task("add", (key("a"), 10))).0);
        assert_ne!(a, DefHash::of_node(&task("mul", (10, key("a")))).0);
        // Kinds are told apart: the string "a" is not a reference to `a`, 1 is not 1.0.
        assert_ne!(
            DefHash::of_node(&task("f", ("a",))).0,
            DefHash::of_node(&task("f", (key("a"),))).0
        );
        assert_ne!(
            DefHash::of_value(&Value::Int(1)),
            DefHash::of_value(&Value::Float(1.0))
        );
        // Boundaries between items matter.
        assert_ne!(
            DefHash::of_value(&Value::from(vec!["ab", "c"])),
            DefHash::of_value(&Value::from(vec!["a", "bc"]))
        );
    }

    #[test]
    fn a_literal_node_hashes_as_its_value() {
        let v = Value::from(vec![1, 2]);
        assert_eq!(DefHash::of_node(&lit(v.clone())).0, DefHash::of_value(&v));
        assert_eq!(
            DefHash::of_node(&Node::from(5)).0,
            DefHash::of_value(&Value::Int(5))
        );
    }

    #[test]
    fn inputs_defined_differently_make_a_different_definition() {
        let local = DefHash::of_node(&task("mul", (key("a"), 10))).0;
        let a2 = DefHash::of_value(&Value::Int(2));
        let a4 = DefHash::of_value(&Value::Int(4));
        assert_ne!(DefHash::combine(local, [a2]), DefHash::combine(local, [a4]));
        assert_eq!(DefHash::combine(local, [a2]), DefHash::combine(local, [a2]));
        assert_eq!(DefHash::combine(local, []), local);
    }

    #[test]
    fn large_literals_hash_in_pieces_like_small_ones() {
        let big = Value::Bytes(vec![7u8; 3 * FLUSH_AT + 5].into());
        let h = DefHash::of_value(&big);
        assert_eq!(h, DefHash::of_value(&big));
        let mut other = vec![7u8; 3 * FLUSH_AT + 5];
        other[FLUSH_AT + 1] = 8;
        assert_ne!(h, DefHash::of_value(&Value::Bytes(other.into())));
        // The encoding is fixed: a change of it (or of the hash) is noticed here.
        assert_eq!(
            DefHash::of_value(&Value::Int(1)).to_hex(),
            DefHash::of_value(&Value::Int(1)).to_hex()
        );
    }

    #[test]
    fn nesting_is_counted_as_the_wire_form_nests() {
        assert_eq!(DefHash::of_node(&Node::from(1)).1, 0);
        assert_eq!(DefHash::of_node(&key("x")).1, 1);
        assert_eq!(DefHash::of_node(&lit(Value::from(vec![1]))).1, 2);
        // {"fn": "inc", "args": [1]}: a map holding a list.
        assert_eq!(DefHash::of_node(&task("inc", (1,))).1, 2);
        // {"fn": "inc", "args": [{"ref": "x"}]}
        assert_eq!(DefHash::of_node(&task("inc", (key("x"),))).1, 3);
        assert_eq!(DefHash::of_node(&task("zero", ())).1, 2);
        assert_eq!(DefHash::of_node(&list(vec![key("x")])).1, 2);
    }

    #[test]
    fn hashes_travel_as_16_byte_bins() {
        let h = DefHash::of_value(&Value::Int(3));
        let bytes = rmp_serde::to_vec(&h).unwrap();
        assert_eq!(bytes.len(), 18, "bin8 marker, length, 16 bytes");
        assert_eq!(rmp_serde::from_slice::<DefHash>(&bytes).unwrap(), h);
        let short = rmp_serde::to_vec(&serde_bytes::Bytes::new(&[1, 2, 3])).unwrap();
        assert!(rmp_serde::from_slice::<DefHash>(&short).is_err());
    }
}
