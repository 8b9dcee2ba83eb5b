//! The task graph: string keys mapped to [`Node`]s, and a builder that reads like dask's dicts.
//!
//! A node is a literal, a reference to another key, a list or map of nodes, or a task (a
//! function name with argument nodes). The same structure has a JSON form (files, the command
//! line) and a msgpack form (the wire); both parse through [`Node::from_value`]. The format is
//! specified in `docs/graph-format.md`.
//!
//! ```
//! use zask_core::graph::{Graph, key, task};
//! let mut graph = Graph::new();
//! graph.insert("x", 1);
//! graph.insert("y", task("add", (key("x"), 2)));
//! assert_eq!(graph.dependencies("y"), vec!["x".to_string()]);
//! ```

use crate::value::Value;

/// One node of a graph: what a key's value is made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A value taken as it is.
    Literal(Value),
    /// The value of another key.
    Ref(String),
    /// A list whose items are nodes (references inside are resolved).
    List(Vec<Node>),
    /// A map whose values are nodes.
    Map(Vec<(Value, Node)>),
    /// A call of a registered function.
    Task(Task),
}

/// A call of a function registered on workers, by name, with argument nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The registered function's name, e.g. `"add"`.
    pub func: String,
    /// Positional arguments.
    pub args: Vec<Node>,
    /// Keyword arguments, in order.
    pub kwargs: Vec<(String, Node)>,
}

/// A graph node could not be parsed; the message says what was wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

impl Node {
    /// Parses a node from its msgpack/JSON form (see `docs/graph-format.md`).
    pub fn from_value(value: &Value) -> Result<Node, NodeError> {
        match value {
            Value::List(items) => {
                let nodes = items
                    .iter()
                    .map(Node::from_value)
                    .collect::<Result<Vec<_>, _>>()?;
                if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                    Ok(Node::Literal(Value::List(
                        nodes.into_iter().map(Node::into_literal).collect(),
                    )))
                } else {
                    Ok(Node::List(nodes))
                }
            }
            Value::Map(entries) => Node::from_map(entries),
            other => Ok(Node::Literal(other.clone())),
        }
    }

    fn from_map(entries: &[(Value, Value)]) -> Result<Node, NodeError> {
        let names: Vec<Option<&str>> = entries.iter().map(|(k, _)| k.as_str()).collect();
        match form_of(&names).map_err(NodeError)? {
            Form::Ref => match &entries[0].1 {
                Value::Str(k) => Ok(Node::Ref(k.clone())),
                other => Err(NodeError(format!(
                    "{{\"ref\": ...}} takes a key string, got {}",
                    other.type_name()
                ))),
            },
            Form::Lit => Ok(Node::Literal(entries[0].1.clone())),
            Form::Bytes => bytes_literal(&entries[0].1).map_err(NodeError),
            Form::Float => float_literal(&entries[0].1).map_err(NodeError),
            Form::Task => Node::task_from_map(entries),
            Form::Map => {
                let mut nodes = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    nodes.push((k.clone(), Node::from_value(v)?));
                }
                if nodes.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                    Ok(Node::Literal(Value::Map(
                        nodes
                            .into_iter()
                            .map(|(k, n)| (k, n.into_literal()))
                            .collect(),
                    )))
                } else {
                    Ok(Node::Map(nodes))
                }
            }
        }
    }

    fn task_from_map(entries: &[(Value, Value)]) -> Result<Node, NodeError> {
        // The function's name first, so that errors about the arguments can name it.
        let func = match entries.iter().find(|(k, _)| k.as_str() == Some("fn")) {
            Some((_, Value::Str(f))) if !f.is_empty() => f.clone(),
            Some((_, other)) => {
                return Err(NodeError(format!(
                    "\"fn\" takes a non-empty function name, got {}",
                    describe(other)
                )))
            }
            None => return Err(NodeError("a task needs \"fn\"".to_string())),
        };
        let mut task = Task {
            func,
            args: Vec::new(),
            kwargs: Vec::new(),
        };
        for (k, v) in entries {
            match (k.as_str(), v) {
                (Some("fn"), _) => {}
                (Some("args"), Value::List(args)) => {
                    task.args = args
                        .iter()
                        .map(Node::from_value)
                        .collect::<Result<_, _>>()?
                }
                (Some("args"), other) => {
                    return Err(NodeError(format!(
                        "\"args\" of {:?} takes a list, got {}",
                        task.func,
                        other.type_name()
                    )))
                }
                (Some("kwargs"), Value::Map(kw)) => {
                    for (name, node) in kw {
                        let Some(name) = name.as_str() else {
                            return Err(NodeError(format!(
                                "\"kwargs\" names of {:?} must be strings",
                                task.func
                            )));
                        };
                        task.kwargs
                            .push((name.to_string(), Node::from_value(node)?));
                    }
                }
                (_, other) => {
                    return Err(NodeError(format!(
                        "\"kwargs\" of {:?} takes a map of names to nodes, got {}",
                        task.func,
                        other.type_name()
                    )))
                }
            }
        }
        Ok(Node::Task(task))
    }

    fn into_literal(self) -> Value {
        match self {
            Node::Literal(v) => v,
            _ => Value::Nil,
        }
    }

    /// The node in its wire form (the inverse of [`Node::from_value`]).
    pub fn to_value(&self) -> Value {
        fn s(x: &str) -> Value {
            Value::Str(x.to_string())
        }
        match self {
            Node::Literal(v @ (Value::List(_) | Value::Map(_))) => {
                Value::Map(vec![(s("lit"), v.clone())])
            }
            Node::Literal(v) => v.clone(),
            Node::Ref(k) => Value::Map(vec![(s("ref"), s(k))]),
            Node::List(l) => Value::List(l.iter().map(Node::to_value).collect()),
            Node::Map(m) => Value::Map(m.iter().map(|(k, n)| (k.clone(), n.to_value())).collect()),
            Node::Task(t) => {
                let mut entries = vec![(s("fn"), s(&t.func))];
                if !t.args.is_empty() {
                    entries.push((
                        s("args"),
                        Value::List(t.args.iter().map(Node::to_value).collect()),
                    ));
                }
                if !t.kwargs.is_empty() {
                    entries.push((
                        s("kwargs"),
                        Value::Map(t.kwargs.iter().map(|(k, n)| (s(k), n.to_value())).collect()),
                    ));
                }
                Value::Map(entries)
            }
        }
    }

    /// Calls `f` on every key this node references, in order, with repeats.
    pub fn for_each_ref<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::Literal(_) => {}
            Node::Ref(k) => f(k),
            Node::List(l) => l.iter().for_each(|n| n.for_each_ref(f)),
            Node::Map(m) => m.iter().for_each(|(_, n)| n.for_each_ref(f)),
            Node::Task(t) => {
                t.args.iter().for_each(|n| n.for_each_ref(f));
                t.kwargs.iter().for_each(|(_, n)| n.for_each_ref(f));
            }
        }
    }

    /// Calls `f` on every function name this node calls (nested tasks included), and on the
    /// function names it gives to functions that call them (`map("word_count", ...)` calls
    /// `map` and `word_count`; see [`function_argument`]).
    pub fn for_each_function<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::Literal(_) | Node::Ref(_) => {}
            Node::List(l) => l.iter().for_each(|n| n.for_each_function(f)),
            Node::Map(m) => m.iter().for_each(|(_, n)| n.for_each_function(f)),
            Node::Task(t) => {
                f(&t.func);
                if let Some(at) = function_argument(&t.func) {
                    if let Some(Node::Literal(Value::Str(name))) = t.args.get(at) {
                        f(name);
                    }
                }
                t.args.iter().for_each(|n| n.for_each_function(f));
                t.kwargs.iter().for_each(|(_, n)| n.for_each_function(f));
            }
        }
    }

    /// The distinct keys this node references, in first-seen order.
    pub fn dependencies(&self) -> Vec<String> {
        self.dependency_refs()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Every key this node references, in [`Node::for_each_ref`] order, repeats included:
    /// no hashing, for walks that tolerate a key seen twice.
    pub fn refs(&self) -> Vec<&str> {
        let mut refs = Vec::new();
        self.for_each_ref(&mut |k| refs.push(k));
        refs
    }

    /// The distinct keys this node references, in first-seen order, borrowed. Linear in the
    /// number of references (a task over 100,000 keys is fine).
    pub fn dependency_refs(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = Vec::new();
        let mut seen: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
        self.for_each_ref(&mut |k| {
            if seen.insert(k) {
                deps.push(k);
            }
        });
        deps
    }

    /// Adds a keyword argument to a task node (a no-op on other nodes). Builder style:
    /// `task("range", (0, 10)).kwarg("step", 2)`.
    pub fn kwarg(mut self, name: &str, value: impl Into<Node>) -> Node {
        if let Node::Task(t) = &mut self {
            t.kwargs.push((name.to_string(), value.into()));
        }
        self
    }
}

/// The standard functions that take the name of another function as an argument, and where:
/// `map(f, items)`, `filter(f, items)` and `reduce(f, items[, initial])` call `f`. A task of
/// theirs is placed only on a worker that offers both, and refused at submission when no
/// worker offers `f`.
pub const FUNCTION_ARGUMENTS: [(&str, usize); 3] = [("map", 0), ("filter", 0), ("reduce", 0)];

/// The position of the function-name argument of `func`, if it takes one (see
/// [`FUNCTION_ARGUMENTS`]).
pub fn function_argument(func: &str) -> Option<usize> {
    FUNCTION_ARGUMENTS
        .iter()
        .find(|(name, _)| *name == func)
        .map(|(_, at)| *at)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{s:?}"),
        other => other.type_name().to_string(),
    }
}

/// The field names that make a map a special form. A map that uses one of them and is not
/// that form exactly is an error (a typo such as `{"fn": "inc", "arg": [1]}` must not become a
/// literal map); a map that holds these names as data is written `{"lit": ...}`.
pub const RESERVED_FIELDS: [&str; 7] = ["fn", "args", "kwargs", "ref", "lit", "bytes", "float"];

/// What a map node is, by its field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `{"ref": key}`
    Ref,
    /// `{"lit": value}`
    Lit,
    /// `{"bytes": base64 or bin}`
    Bytes,
    /// `{"float": "nan" | "inf" | "-inf" | number}`
    Float,
    /// `{"fn": name, "args": [...], "kwargs": {...}}` (`args` and `kwargs` optional)
    Task,
    /// A map of nodes (no reserved field).
    Map,
}

/// Classifies a map node by its field names (`None`: a name that is not a string); an error
/// says what is wrong with a map that uses a reserved field wrongly.
pub(crate) fn form_of(names: &[Option<&str>]) -> Result<Form, String> {
    const DATA_HINT: &str = "a map holding these names as data is written {\"lit\": ...}";
    let shown = |name: Option<&str>| match name {
        Some(n) => format!("{n:?}"),
        None => "a field that is not a string".to_string(),
    };
    if let [Some(only)] = names {
        match *only {
            "ref" => return Ok(Form::Ref),
            "lit" => return Ok(Form::Lit),
            "bytes" => return Ok(Form::Bytes),
            "float" => return Ok(Form::Float),
            _ => {}
        }
    }
    let is_task_field = |n: &Option<&str>| matches!(n, Some("fn" | "args" | "kwargs"));
    if names.contains(&Some("fn")) {
        return match names.iter().find(|n| !is_task_field(n)) {
            None => Ok(Form::Task),
            Some(other) => Err(format!(
                "a task takes the fields \"fn\", \"args\" and \"kwargs\", not {}; {DATA_HINT}",
                shown(*other)
            )),
        };
    }
    let Some(reserved) = names.iter().flatten().find(|n| RESERVED_FIELDS.contains(n)) else {
        return Ok(Form::Map);
    };
    if matches!(*reserved, "args" | "kwargs") {
        return Err(format!(
            "{reserved:?} without \"fn\": a task names its function in \"fn\"; {DATA_HINT}"
        ));
    }
    let other = names
        .iter()
        .find(|n| **n != Some(*reserved))
        .copied()
        .flatten();
    Err(format!(
        "{{{reserved:?}: ...}} takes no other field, but this map also has {}; {DATA_HINT}",
        shown(other)
    ))
}

/// The value of a `{"bytes": ...}` form: a bin as it is, or base64 text.
pub(crate) fn bytes_literal(v: &Value) -> Result<Node, String> {
    match v {
        Value::Bytes(b) => Ok(Node::Literal(Value::Bytes(b.clone()))),
        Value::Str(s) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Node::Literal(Value::Bytes(b.into())))
                .map_err(|e| format!("{{\"bytes\": ...}} is not base64: {e}"))
        }
        other => Err(format!(
            "{{\"bytes\": ...}} takes a base64 string, got {}",
            other.type_name()
        )),
    }
}

/// The value of a `{"float": ...}` form: `"nan"`, `"inf"`, `"-inf"`, a number, or a number
/// in text (how JSON, which has no NaN or infinity, writes any float).
pub(crate) fn float_literal(v: &Value) -> Result<Node, String> {
    let parsed = match v {
        Value::Str(s) => crate::value::parse_float_literal(s),
        other => other.as_f64(),
    };
    parsed
        .map(|f| Node::Literal(Value::Float(f)))
        .ok_or_else(|| {
            format!(
                "{{\"float\": ...}} takes \"nan\", \"inf\", \"-inf\" or a number, got {}",
                describe(v)
            )
        })
}

impl<T: Into<Value>> From<T> for Node {
    fn from(v: T) -> Node {
        Node::Literal(v.into())
    }
}

/// A reference to the value of another key (`{"ref": k}`).
pub fn key(k: impl Into<String>) -> Node {
    Node::Ref(k.into())
}

/// A literal taken exactly as given, even if it looks like a task (`{"lit": v}`).
pub fn lit(v: impl Into<Value>) -> Node {
    Node::Literal(v.into())
}

/// A list of nodes; references inside it are resolved before a function sees it.
pub fn list(items: impl IntoIterator<Item = Node>) -> Node {
    Node::List(items.into_iter().collect())
}

/// A task: call the worker function `func` with `args` (a tuple of nodes or a `Vec<Node>`).
pub fn task(func: &str, args: impl IntoArgs) -> Node {
    Node::Task(Task {
        func: func.to_string(),
        args: args.into_args(),
        kwargs: Vec::new(),
    })
}

/// Anything that can be a task's positional arguments: `()`, tuples of up to 8 nodes, a
/// `Vec<Node>`.
pub trait IntoArgs {
    /// The argument nodes, in order.
    fn into_args(self) -> Vec<Node>;
}

impl IntoArgs for Vec<Node> {
    fn into_args(self) -> Vec<Node> {
        self
    }
}

impl IntoArgs for () {
    fn into_args(self) -> Vec<Node> {
        Vec::new()
    }
}

macro_rules! tuple_args {
    ($($name:ident),+) => {
        impl<$($name: Into<Node>),+> IntoArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Vec<Node> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);
tuple_args!(A, B, C, D, E, F, G);
tuple_args!(A, B, C, D, E, F, G, H);

/// The nodes of a graph by key, in insertion order (fast lookups; big graphs are common).
pub type Nodes = indexmap::IndexMap<String, Node, rustc_hash::FxBuildHasher>;

/// A task graph: keys mapped to nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The nodes, by key, in the order they were inserted.
    pub nodes: Nodes,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Sets `key` to `node` (a literal value, `key(..)`, `task(..)`, ...), replacing any earlier.
    pub fn insert(&mut self, key: impl Into<String>, node: impl Into<Node>) -> &mut Graph {
        self.nodes.insert(key.into(), node.into());
        self
    }

    /// The node of `key`, if the graph has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// How many keys the graph has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no keys.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The keys `key` depends on directly (empty when `key` is not in the graph).
    pub fn dependencies(&self, key: &str) -> Vec<String> {
        self.nodes
            .get(key)
            .map(Node::dependencies)
            .unwrap_or_default()
    }

    /// Parses a graph from its msgpack/JSON form: a map of keys to nodes. Errors name the key.
    pub fn from_value(value: &Value) -> Result<Graph, NodeError> {
        let Value::Map(entries) = value else {
            return Err(NodeError(format!(
                "a graph is a map of keys to nodes, got {}",
                value.type_name()
            )));
        };
        let mut nodes = Nodes::default();
        for (k, v) in entries {
            let Value::Str(k) = k else {
                return Err(NodeError(format!("graph keys must be strings, got {k}")));
            };
            let node = Node::from_value(v).map_err(|e| NodeError(format!("key {k:?}: {}", e.0)))?;
            crate::graph_serde::check_node(k, &node).map_err(|e| NodeError(e.to_string()))?;
            if nodes.insert(k.clone(), node).is_some() {
                return Err(NodeError(format!("key {k:?} appears twice")));
            }
        }
        Ok(Graph { nodes })
    }

    /// Parses a graph from JSON text.
    pub fn from_json_str(text: &str) -> Result<Graph, NodeError> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| NodeError(format!("invalid JSON: {e}")))?;
        Graph::from_value(&Value::from_json(&json))
    }

    /// The graph in its wire form.
    pub fn to_value(&self) -> Value {
        Value::Map(
            self.nodes
                .iter()
                .map(|(k, n)| (Value::Str(k.clone()), n.to_value()))
                .collect(),
        )
    }

    /// The graph as JSON (bytes as `{"bytes": base64}`).
    pub fn to_json(&self) -> serde_json::Value {
        self.to_value().to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Graph, NodeError> {
        Graph::from_value(&Value::from_json(&json))
    }

    #[test]
    fn parses_every_node_form() {
        let g = parse(serde_json::json!({
            "x": 1,
            "y": {"fn": "add", "args": [{"ref": "x"}, 2]},
            "a": {"ref": "y"},
            "l": [1, {"ref": "x"}],
            "t": {"lit": {"fn": "add"}},
            "b": {"bytes": "AAE="},
            "m": {"k": {"ref": "x"}},
            "kw": {"fn": "range", "args": [5], "kwargs": {"step": 2}}
        }))
        .unwrap();
        assert_eq!(g.get("x"), Some(&Node::Literal(Value::Int(1))));
        assert_eq!(g.get("y"), Some(&task("add", (key("x"), 2))));
        assert_eq!(g.get("a"), Some(&key("y")));
        assert_eq!(g.get("l"), Some(&Node::List(vec![Node::from(1), key("x")])));
        assert_eq!(
            g.get("t"),
            Some(&lit(Value::Map(vec![(
                Value::Str("fn".into()),
                Value::Str("add".into())
            )])))
        );
        assert_eq!(g.get("b"), Some(&lit(Value::Bytes(vec![0, 1].into()))));
        assert_eq!(g.dependencies("m"), vec!["x"]);
        assert_eq!(g.get("kw"), Some(&task("range", (5,)).kwarg("step", 2)));
    }

    #[test]
    fn round_trips_through_the_wire_form() {
        let mut g = Graph::new();
        g.insert("x", Value::List(vec![Value::Int(1)]));
        g.insert(
            "y",
            task("add", (key("x"), lit(Value::Map(vec![])))).kwarg("z", 1),
        );
        g.insert("z", list(vec![key("x"), key("y")]));
        g.insert("b", Value::Bytes(vec![1, 2, 3].into()));
        assert_eq!(Graph::from_value(&g.to_value()).unwrap(), g);
        assert_eq!(Graph::from_json_str(&g.to_json().to_string()).unwrap(), g);
    }

    #[test]
    fn malformed_nodes_name_the_key() {
        let err = parse(serde_json::json!({"y": {"fn": 3}})).unwrap_err();
        assert!(err.0.contains("\"y\"") && err.0.contains("fn"), "{err}");
        let err = parse(serde_json::json!({"y": {"ref": 3}})).unwrap_err();
        assert!(err.0.contains("ref"), "{err}");
        let err = parse(serde_json::json!({"y": {"fn": "add", "args": 3}})).unwrap_err();
        assert!(err.0.contains("args"), "{err}");
        assert!(parse(serde_json::json!([1])).is_err());
    }
}
