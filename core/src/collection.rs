//! [`Collection`]: a named graph stored on the scheduler for other clients.
//!
//! A collection is a graph, the keys that are its result, and a small typed description: its
//! `kind` (`"graph"`, `"bag"`, ...) and `meta` (e.g. a bag's number of partitions), so that a
//! client fetching it gets back the same kind of object that was stored. Only the graph is
//! stored, never the data it will compute.

use crate::graph::Graph;
use crate::keys::Keys;
use crate::value::Value;

/// A stored graph with its output keys and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// What the collection is: `"graph"` for a plain graph, `"bag"` for a Bag, ...
    pub kind: String,
    /// The graph that computes it.
    pub graph: Graph,
    /// The keys that are its result (their values, shaped like the keys).
    pub keys: Keys,
    /// Kind-specific facts, a map (a bag: `{"npartitions": 2}`).
    pub meta: Value,
}

/// A collection's name is invalid, or its content is malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CollectionError(pub String);

/// Longest collection name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a collection name: 1 to 200 characters, letters, digits and `._-/:@`.
pub fn check_name(name: &str) -> Result<(), CollectionError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(CollectionError(format!(
            "collection names have 1 to {MAX_NAME_LEN} characters, got {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return Err(CollectionError(format!(
            "collection name {name:?} has the character {c:?}; use letters, digits and ._-/:@"
        )));
    }
    Ok(())
}

impl Collection {
    /// A plain graph with its output keys.
    pub fn graph(graph: Graph, keys: impl Into<Keys>) -> Collection {
        Collection {
            kind: "graph".to_string(),
            graph,
            keys: keys.into(),
            meta: Value::Map(Vec::new()),
        }
    }

    /// The wire form: `{"kind": str, "graph": graph, "keys": keys, "meta": map}`.
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            (Value::from("kind"), Value::from(self.kind.as_str())),
            (Value::from("graph"), self.graph.to_value()),
            (Value::from("keys"), self.keys.to_value()),
            (Value::from("meta"), self.meta.clone()),
        ])
    }

    /// Parses and checks the wire form: the graph parses, the keys are keys of the graph, and
    /// the kind is a short non-empty string.
    pub fn from_value(value: &Value) -> Result<Collection, CollectionError> {
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| CollectionError(format!("a collection needs a {name:?} field")))
        };
        let kind = match field("kind")? {
            Value::Str(k) if !k.is_empty() && k.len() <= 64 => k.clone(),
            _ => {
                return Err(CollectionError(
                    "a collection's \"kind\" is a string of 1 to 64 characters".to_string(),
                ))
            }
        };
        let graph = Graph::from_value(field("graph")?)
            .map_err(|e| CollectionError(format!("invalid graph: {e}")))?;
        let keys = Keys::from_value(field("keys")?).map_err(CollectionError)?;
        if let Some(k) = keys.flatten().iter().find(|k| graph.get(k).is_none()) {
            return Err(CollectionError(format!(
                "the collection's key {k:?} is not in its graph"
            )));
        }
        let meta = value.get("meta").cloned().unwrap_or(Value::Map(Vec::new()));
        if !matches!(meta, Value::Map(_)) {
            return Err(CollectionError(
                "a collection's \"meta\" is a map".to_string(),
            ));
        }
        if let Err(e) = meta.nesting(crate::value::MAX_NESTING) {
            return Err(CollectionError(format!("a collection's \"meta\": {e}")));
        }
        Ok(Collection {
            kind,
            graph,
            keys,
            meta,
        })
    }

    /// The collection as JSON (for `zask collections get`).
    pub fn to_json(&self) -> serde_json::Value {
        self.to_value().to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{key, task};

    #[test]
    fn round_trips_and_checks_its_keys() {
        let mut graph = Graph::new();
        graph.insert("x", 1);
        graph.insert("y", task("inc", (key("x"),)));
        let c = Collection::graph(graph.clone(), "y");
        assert_eq!(Collection::from_value(&c.to_value()).unwrap(), c);
        let bad = Collection::graph(graph, "nope");
        let err = Collection::from_value(&bad.to_value()).unwrap_err();
        assert!(err.0.contains("nope"), "{err}");
    }

    /// What could not be read back is refused when it is stored: a literal, a node, keys or
    /// meta nested deeper than the one limit.
    #[test]
    fn values_nested_too_deep_are_refused() {
        let deep = |levels: usize| {
            let mut v = Value::Int(1);
            for _ in 0..levels {
                v = Value::List(vec![v]);
            }
            v
        };
        let mut graph = Graph::new();
        graph.insert("x", deep(crate::value::MAX_NESTING + 10));
        let err = Collection::from_value(&Collection::graph(graph, "x").to_value()).unwrap_err();
        assert!(err.0.contains("\"x\"") && err.0.contains("nests"), "{err}");
        let mut graph = Graph::new();
        graph.insert("x", 1);
        let mut c = Collection::graph(graph, "x");
        c.meta = Value::Map(vec![(Value::from("m"), deep(600))]);
        let err = Collection::from_value(&c.to_value()).unwrap_err();
        assert!(err.0.contains("meta"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("bags/numbers-1.v2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"x".repeat(201)).is_err());
    }
}
