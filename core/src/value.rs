//! [`Value`]: the dynamic data that flows through zask.
//!
//! Every task argument, every task result, every literal in a graph is a `Value`. Its model is
//! msgpack's (nil, bool, integer, float, string, bytes, list, map), so it travels on the wire
//! without translation and any language with a msgpack library can produce and read it.
//!
//! Typed Rust data converts to and from a `Value` through serde ([`to_value`], [`from_value`]),
//! which is how typed worker functions receive their arguments.

use std::fmt;

pub use bytes::Bytes;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dynamically typed value, with msgpack's data model.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// msgpack nil, JSON null.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// Every integer that fits in an `i64` (larger unsigned integers become floats).
    Int(i64),
    /// A float (msgpack's 32-bit floats become 64-bit ones).
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes; large ones travel as their own ZeroMQ frames (see `frames`). `Bytes` is
    /// reference-counted: a 64 MiB value is not copied when a task reads it, a worker stores
    /// it, or a frame received from the network becomes a value.
    Bytes(Bytes),
    /// A list (a msgpack array).
    List(Vec<Value>),
    /// A map with arbitrary keys, in insertion order (msgpack maps are ordered on the wire).
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A short name of the value's type, for error messages ("expected int, got str").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// The value as an `i64`, if it is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as an `f64`, if it is a number (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a list, if it is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Looks up a string key in a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// An estimate of the value's size in memory and on the wire, in bytes. The scheduler uses
    /// it for data locality; the `nbytes` standard function returns it. (Iterative: a value
    /// nested a million levels deep, which a function may build, is measured without
    /// recursion.)
    pub fn nbytes(&self) -> u64 {
        // (No limit: it cannot fail.)
        self.measure(usize::MAX).unwrap_or_default()
    }

    /// [`Value::nbytes`], or an error if the value nests more than `max_nesting` levels (lists
    /// and maps inside each other; a scalar nests 0 levels, `[1]` one, `[[1]]` two). One walk
    /// does both, without recursion: a worker measures every result it makes this way.
    pub fn measure(&self, max_nesting: usize) -> Result<u64, TooDeep> {
        /// A value's own size (a list or map: 8 bytes more than its items).
        fn own(v: &Value) -> u64 {
            match v {
                Value::Nil | Value::Bool(_) => 1,
                Value::Int(_) | Value::Float(_) | Value::List(_) | Value::Map(_) => 8,
                Value::Str(s) => s.len() as u64,
                Value::Bytes(b) => b.len() as u64,
            }
        }
        let mut total = own(self);
        self.walk(max_nesting, |item| total = total.saturating_add(own(item)))?;
        Ok(total)
    }

    /// How many levels of lists and maps the value nests (a scalar 0, `[1]` one), or an error
    /// past `max_nesting`. Iterative, like [`Value::measure`].
    pub fn nesting(&self, max_nesting: usize) -> Result<usize, TooDeep> {
        self.walk(max_nesting, |_| {})
    }

    /// Walks the lists and maps inside the value without recursion, showing `item` every item
    /// (map keys too) once; returns how deeply they nest (a scalar 0), or an error as soon as
    /// a level past `max_nesting` is reached.
    fn walk<'a>(
        &'a self,
        max_nesting: usize,
        mut item: impl FnMut(&'a Value),
    ) -> Result<usize, TooDeep> {
        let mut deepest = 0;
        // Lists and maps still to open, with their nesting (the outermost is at level 1).
        let mut stack: smallvec::SmallVec<[(&Value, usize); 16]> = smallvec::SmallVec::new();
        if self.is_container() {
            stack.push((self, 1));
        }
        while let Some((v, level)) = stack.pop() {
            if level > max_nesting {
                return Err(TooDeep { limit: max_nesting });
            }
            deepest = deepest.max(level);
            let mut visit = |x: &'a Value| {
                item(x);
                if x.is_container() {
                    stack.push((x, level + 1));
                }
            };
            match v {
                Value::List(items) => items.iter().for_each(&mut visit),
                Value::Map(entries) => {
                    for (k, x) in entries {
                        visit(k);
                        visit(x);
                    }
                }
                _ => {}
            }
        }
        Ok(deepest)
    }

    /// Whether the value is a list or a map.
    pub fn is_container(&self) -> bool {
        matches!(self, Value::List(_) | Value::Map(_))
    }

    /// Drops the value without recursion (a value nested a million levels deep would overflow
    /// the stack of the ordinary, recursive drop).
    pub fn dismantle(self) {
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            match v {
                Value::List(items) => stack.extend(items.into_iter().filter(Value::is_container)),
                Value::Map(entries) => {
                    for (k, item) in entries {
                        if k.is_container() {
                            stack.push(k);
                        }
                        if item.is_container() {
                            stack.push(item);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Converts JSON into a value (numbers become `Int` when they are integers).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts the value to JSON for printing. Bytes become `{"bytes": "<base64>"}` (the graph
    /// format's bytes literal), floats JSON cannot write become `{"float": "nan"}`,
    /// `{"float": "inf"}` or `{"float": "-inf"}` (the graph format's float literal, so they are
    /// told apart from nil), and map keys that are not strings are written in their JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine;
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                None => serde_json::json!({ "float": non_finite_name(*f) }),
            },
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => serde_json::json!({
                "bytes": base64::engine::general_purpose::STANDARD.encode(b)
            }),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::Str(s) => s.clone(),
                            // (Bounded: a key written whole, inside keys inside keys, would
                            // have its quotes escaped anew at each level, doubling each time.)
                            other => other.brief(MAX_KEY_DISPLAY),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }

    /// The value as JSON (as [`to_json`](Self::to_json) writes it), cut to about `limit`
    /// bytes (ending `…` when cut), without building the JSON of what is cut: for error
    /// messages and logs, where a value may be anything a peer sent.
    pub fn brief(&self, limit: usize) -> String {
        let mut out = String::new();
        self.write_brief(&mut out, limit);
        out
    }

    /// Appends to `out` as [`brief`](Self::brief) writes; false once `limit` is reached.
    fn write_brief(&self, out: &mut String, limit: usize) -> bool {
        if out.len() >= limit {
            return false;
        }
        match self {
            Value::Str(s) => {
                if !push_json_str(out, s, limit) {
                    return cut(out);
                }
            }
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !item.write_brief(out, limit) {
                        return cut(out);
                    }
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let fits = match k {
                        Value::Str(s) => push_json_str(out, s, limit),
                        other => push_json_str(out, &other.brief(MAX_KEY_DISPLAY), limit),
                    };
                    out.push(':');
                    if !fits || !v.write_brief(out, limit) {
                        return cut(out);
                    }
                }
                out.push('}');
            }
            // Scalars and bytes: small, or cut below.
            other => {
                let json = match other {
                    Value::Bytes(b) if b.len() > limit => {
                        format!("{{\"bytes\": <{} bytes>}}", b.len())
                    }
                    _ => other.to_json().to_string(),
                };
                out.push_str(&json);
            }
        }
        if out.len() > limit {
            return cut(out);
        }
        true
    }
}

/// How long a map key that is not a string may be when written as a JSON key.
const MAX_KEY_DISPLAY: usize = 100;
/// How long a value's `Display` is at the most (see [`Value::brief`]).
const MAX_DISPLAY: usize = 4096;

/// Appends `s` as a JSON string (cut to fit `limit`); false if it was cut.
fn push_json_str(out: &mut String, s: &str, limit: usize) -> bool {
    let room = limit.saturating_sub(out.len());
    let mut end = s.len().min(room);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let json = serde_json::Value::String(s[..end].to_string()).to_string();
    out.push_str(&json);
    end == s.len()
}

/// Ends a cut value's text with `…`; always false (the value did not fit).
fn cut(out: &mut String) -> bool {
    if !out.ends_with('…') {
        out.push('…');
    }
    false
}

/// How a float JSON cannot write is named in `{"float": ...}`: `nan`, `inf` or `-inf`.
pub fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "nan"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// The float a `{"float": ...}` literal names (`nan`, `inf`, `-inf`, or a number in text).
pub fn parse_float_literal(text: &str) -> Option<f64> {
    match text {
        "nan" | "NaN" => Some(f64::NAN),
        "inf" | "+inf" | "Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok(),
    }
}

/// The most levels a value or a graph node may nest (lists and maps inside each other, counted
/// as they travel). Checked where values are made (a worker's task result, a scattered value)
/// and where nodes arrive (a submitted graph, a stored collection), so that every message
/// holding them stays well within the decoders' own limit (msgpack's 1,024 levels, counted
/// from the message's root) and nothing recurses deeper than that.
pub const MAX_NESTING: usize = 512;

/// A value nests deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value nests more than {limit} levels of lists and maps")]
pub struct TooDeep {
    /// The limit it exceeds.
    pub limit: usize,
}

impl fmt::Display for Value {
    /// Values display as JSON, cut after a few kilobytes (see [`Value::brief`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.brief(MAX_DISPLAY))
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i64) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, isize);

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v as f64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Nil, Into::into)
    }
}
impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Nil
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for item in l {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

pub(crate) struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a msgpack value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::from(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "msgpack extension types are not zask values",
        ))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Converts a value to and from typed Rust data failed; the message says which types clashed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

/// Converts typed Rust data into a [`Value`] (through serde).
pub fn to_value<T: Serialize + ?Sized>(data: &T) -> Result<Value, ConvertError> {
    let v = rmpv::ext::to_value(data).map_err(|e| ConvertError(e.to_string()))?;
    Ok(from_rmpv(v))
}

/// Converts a [`Value`] into typed Rust data (through serde), e.g. `from_value::<i64>(v)`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ConvertError> {
    let v = to_rmpv(value);
    rmpv::ext::from_value(v).map_err(|e| ConvertError(e.to_string()))
}

fn from_rmpv(v: rmpv::Value) -> Value {
    match v {
        rmpv::Value::Nil => Value::Nil,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => match i.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(i.as_f64().unwrap_or(f64::NAN)),
        },
        rmpv::Value::F32(f) => Value::Float(f as f64),
        rmpv::Value::F64(f) => Value::Float(f),
        rmpv::Value::String(s) => match s.into_str() {
            Some(s) => Value::Str(s),
            None => Value::Nil,
        },
        rmpv::Value::Binary(b) => Value::Bytes(Bytes::from(b)),
        rmpv::Value::Array(a) => Value::List(a.into_iter().map(from_rmpv).collect()),
        rmpv::Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (from_rmpv(k), from_rmpv(v)))
                .collect(),
        ),
        rmpv::Value::Ext(_, b) => Value::Bytes(Bytes::from(b)),
    }
}

fn to_rmpv(v: Value) -> rmpv::Value {
    match v {
        Value::Nil => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(b),
        Value::Int(i) => rmpv::Value::from(i),
        Value::Float(f) => rmpv::Value::F64(f),
        Value::Str(s) => rmpv::Value::from(s),
        Value::Bytes(b) => rmpv::Value::Binary(Vec::from(b)),
        Value::List(l) => rmpv::Value::Array(l.into_iter().map(to_rmpv).collect()),
        Value::Map(m) => rmpv::Value::Map(
            m.into_iter()
                .map(|(k, v)| (to_rmpv(k), to_rmpv(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trip_keeps_every_kind() {
        let v = Value::List(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-5),
            Value::Float(1.5),
            Value::Str("hé".into()),
            Value::Bytes(vec![0, 1, 255].into()),
            Value::Map(vec![(Value::Int(1), Value::Str("one".into()))]),
        ]);
        let bytes = rmp_serde::to_vec(&v).unwrap();
        let back: Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn typed_conversion_both_ways() {
        let v = to_value(&(1i64, "a", vec![1.5f64])).unwrap();
        assert_eq!(
            v,
            Value::List(vec![
                Value::Int(1),
                Value::Str("a".into()),
                Value::List(vec![Value::Float(1.5)])
            ])
        );
        let back: (i64, String, Vec<f64>) = from_value(v).unwrap();
        assert_eq!(back, (1, "a".to_string(), vec![1.5]));
        assert!(from_value::<i64>(Value::Str("x".into())).is_err());
    }

    #[test]
    fn measure_gives_nbytes_and_refuses_deep_values_without_recursion() {
        let v = Value::List(vec![
            Value::Int(1),
            Value::Str("abc".into()),
            Value::Map(vec![(Value::from("k"), Value::Nil)]),
        ]);
        // 8 (list) + 8 + 3 + (8 (map) + 1 + 1)
        assert_eq!(v.nbytes(), 29);
        assert_eq!(v.measure(2), Ok(29));
        assert_eq!(v.measure(1), Err(TooDeep { limit: 1 }));
        assert_eq!(Value::Int(3).measure(0), Ok(8));
        assert_eq!(v.nesting(10), Ok(2));
        assert_eq!(v.nesting(1), Err(TooDeep { limit: 1 }));
        assert_eq!(Value::Int(3).nesting(0), Ok(0));
        // A million levels (as `reduce("list", ...)` builds): measured, refused and dropped
        // without touching the stack.
        let mut deep = Value::Nil;
        for _ in 0..1_000_000 {
            deep = Value::List(vec![deep, Value::Int(0)]);
        }
        assert_eq!(
            deep.measure(MAX_NESTING),
            Err(TooDeep { limit: MAX_NESTING })
        );
        assert_eq!(deep.nbytes(), 1 + 1_000_000 * 16);
        deep.dismantle();
    }

    #[test]
    fn floats_json_cannot_write_are_told_apart_from_nil() {
        let v = Value::List(vec![
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Nil,
        ]);
        assert_eq!(
            v.to_string(),
            r#"[{"float":"nan"},{"float":"inf"},{"float":"-inf"},null]"#
        );
    }

    #[test]
    fn json_round_trip() {
        let json = serde_json::json!({"a": [1, 2.5, null, true, "s"]});
        assert_eq!(Value::from_json(&json).to_json(), json);
    }
}

#[cfg(test)]
mod brief_tests {
    use super::*;

    /// Maps as keys of maps as keys...: written whole, each level escaped the quotes of the
    /// one inside anew, doubling the text at every level (a fuzzer's find: a 300-byte message
    /// took minutes to describe in an error).
    #[test]
    fn nested_map_keys_are_described_in_bounded_time_and_size() {
        let mut v = Value::from("x");
        for _ in 0..200 {
            v = Value::Map(vec![(v, Value::Int(1))]);
        }
        let started = std::time::Instant::now();
        let text = v.to_string();
        let json = v.to_json().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(text.len() <= 4096 + 300, "{}", text.len());
        assert!(json.len() < 100_000, "{}", json.len());
    }

    #[test]
    fn small_values_display_as_their_json_and_large_ones_are_cut() {
        let v = Value::Map(vec![
            (
                Value::from("a"),
                Value::List(vec![Value::Int(1), Value::from("b\"c")]),
            ),
            (Value::Int(2), Value::Nil),
        ]);
        assert_eq!(v.to_string(), r#"{"a":[1,"b\"c"],"2":null}"#);
        let big = Value::List((0..10_000).map(Value::Int).collect());
        let text = big.to_string();
        assert!(text.ends_with('…') && text.len() < 4200, "{}", text.len());
        assert_eq!(
            Value::from("é".repeat(10)).brief(5).chars().last(),
            Some('…')
        );
    }
}
