//! Graphs as dask writes them, made into zask graphs.
//!
//! A graph is a dict from keys to values. A key is a `str`, or any other hashable object
//! (dask's collections use tuples such as `('x', 0)`), named on the wire by its `repr`. A
//! value is:
//!
//! - a task: a tuple whose first element is a zask function (`zask.function("add")`, or a
//!   Python function decorated with `@zask.function`), the rest its arguments;
//! - a key of the graph (a reference to its value), inside tasks, lists and dicts too;
//! - a list or dict (with `str` keys) of values, which may hold tasks and references;
//! - anything else: a literal, as `convert` carries it (a tuple that is not a task is a
//!   literal list).
//!
//! The task objects of dask 2024.12 and later (`dask._task_spec`: `Task`, `DataNode`, `Alias`,
//! `TaskRef`, and the `List`/`Tuple`/`Dict`/`Set` containers) are read too, so that
//! `dask.compute(obj, scheduler=client.get)` works. A task whose function is not a zask
//! function (a lambda, or dask's own helpers) is an error naming its key: code is never
//! pickled or sent.

use std::cell::RefCell;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use zask_core::graph::{Node, Task};
use zask_core::{Graph, Keys, Value};

use crate::convert::to_value;

/// The attribute a zask function object carries: its registered name.
pub const FUNCTION_ATTR: &str = "__zask_function__";

/// The attribute a `zask.Key` carries: the key it names (a reference wherever it appears).
pub const KEY_ATTR: &str = "__zask_key__";

/// The zask key naming graph key `key`: a `str` as it is, anything else by its `repr`.
pub fn key_name(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_str()?.to_string());
    }
    Ok(key.repr()?.to_str()?.to_string())
}

/// Keys as asked for (one key, or lists of them nested), as zask `Keys`.
pub fn keys_of(keys: &Bound<'_, PyAny>) -> PyResult<Keys> {
    if let Ok(list) = keys.cast::<PyList>() {
        return list
            .iter()
            .map(|k| keys_of(&k))
            .collect::<PyResult<_>>()
            .map(Keys::Many);
    }
    Ok(Keys::One(key_name(keys)?))
}

/// The name of the zask function `obj` is, if it is one.
pub fn function_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    obj.getattr(FUNCTION_ATTR).ok()?.extract::<String>().ok()
}

/// The dask task-spec class of `obj` (`"Task"`, `"Alias"`, ...), if it is one.
fn task_spec_class(obj: &Bound<'_, PyAny>) -> Option<String> {
    let ty = obj.get_type();
    let module = ty.module().ok()?;
    if module.to_str().ok()? != "dask._task_spec" {
        return None;
    }
    Some(ty.name().ok()?.to_str().ok()?.to_string())
}

/// Converts a dask-style graph.
pub fn graph_of(dsk: &Bound<'_, PyDict>) -> PyResult<Graph> {
    // Each key's name, by the key as the graph holds it: a reference equal to a key (`('x',
    // 0.0)` for `('x', 0)`) is named by that key, and two keys with one name are refused.
    let names = PyDict::new(dsk.py());
    let mut seen: rustc_hash::FxHashSet<String> = rustc_hash::FxHashSet::default();
    for k in dsk.keys() {
        let name = key_name(&k)?;
        if !seen.insert(name.clone()) {
            return Err(PyTypeError::new_err(format!(
                "two keys of the graph are both named {name:?} on the wire (a str key equal \
                 to the repr of another key); rename one"
            )));
        }
        names.set_item(k, name)?;
    }
    drop(seen);
    let extra = RefCell::new(Vec::new());
    let mut graph = Graph::new();
    for (k, v) in dsk.iter() {
        let key = key_name(&k)?;
        let node = Converter {
            names: Some(&names),
            key: &key,
            spec: false,
            inner: None,
            extra: Some(&extra),
        }
        .node(&v, 0)?;
        graph.nodes.insert(key, node);
    }
    for (key, node) in extra.into_inner() {
        if graph.nodes.contains_key(&key) {
            return Err(PyTypeError::new_err(format!(
                "key {key:?} is both a key of the graph and of a subgraph dask fused"
            )));
        }
        graph.nodes.insert(key, node);
    }
    Ok(graph)
}

/// The node of one value, with the graph (if any) its references point into.
pub struct Converter<'a, 'py> {
    /// The graph's keys, each with its name: references (`None`: no graph).
    pub names: Option<&'a Bound<'py, PyDict>>,
    /// The key whose value this is (named in errors).
    pub key: &'a str,
    /// Inside dask's task objects, where only `TaskRef` and `Alias` are references: strings
    /// and tuples there are literals.
    pub spec: bool,
    /// Inside a subgraph dask fused into one task (`_execute_subgraph`): its keys, with the
    /// names they are given in the graph (references to them come first).
    pub inner: Option<&'a Bound<'py, PyDict>>,
    /// Entries to add to the graph (the keys of fused subgraphs); `None`: no graph.
    pub extra: Option<&'a RefCell<Vec<(String, Node)>>>,
}

impl<'a, 'py> Converter<'a, 'py> {
    /// The node of `obj`.
    pub fn node(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Node> {
        if depth > zask_core::value::MAX_NESTING {
            return Err(PyTypeError::new_err(format!(
                "key {:?} nests deeper than zask takes",
                self.key
            )));
        }
        // The common cases first: plain strings (keys of the graph, or literals) and numbers.
        if obj.is_exact_instance_of::<PyString>() {
            if let Some(name) = self.key_of(obj) {
                return Ok(Node::Ref(name));
            }
            return Ok(Node::Literal(Value::Str(
                obj.cast::<PyString>()?.to_str()?.to_string(),
            )));
        }
        if obj.is_none()
            || obj.is_exact_instance_of::<PyInt>()
            || obj.is_exact_instance_of::<PyFloat>()
            || obj.is_exact_instance_of::<PyBool>()
        {
            let key = self.key;
            return Ok(Node::Literal(to_value(obj, &|| {
                format!("a value of key {key:?}")
            })?));
        }
        // A future (of the native client): a reference to its key.
        if let Ok(f) = obj.cast::<crate::client::PyFuture>() {
            return Ok(Node::Ref(f.borrow().key().to_string()));
        }
        if !(obj.is_exact_instance_of::<PyTuple>()
            || obj.is_exact_instance_of::<PyList>()
            || obj.is_exact_instance_of::<PyDict>())
        {
            if let Some(name) = function_name(obj) {
                // A function given as an argument (to `map`, say): by its name.
                return Ok(Node::Literal(Value::Str(name)));
            }
            // A key named explicitly (`zask.Key`, what `scatter` gives).
            if let Ok(k) = obj.getattr(KEY_ATTR) {
                return Ok(Node::Ref(k.extract::<String>()?));
            }
            if let Some(class) = task_spec_class(obj) {
                return self.task_spec(obj, &class, depth);
            }
        }
        if let Some(name) = self.key_of(obj) {
            return Ok(Node::Ref(name));
        }
        if self.spec && obj.is_instance_of::<PyTuple>() {
            // (Inside dask's task objects a tuple is a value, never a task.)
            let key = self.key;
            return Ok(Node::Literal(to_value(obj, &|| {
                format!("a value of key {key:?}")
            })?));
        }
        if let Ok(tuple) = obj.cast::<PyTuple>() {
            if let Some(first) = tuple.iter().next() {
                if let Some(func) = function_name(&first) {
                    let args = tuple
                        .iter()
                        .skip(1)
                        .map(|a| self.node(&a, depth + 1))
                        .collect::<PyResult<Vec<_>>>()?;
                    return Ok(Node::Task(Task {
                        func,
                        args,
                        kwargs: Vec::new(),
                    }));
                }
                if first.is_callable() {
                    return Err(self.not_a_zask_function(&first));
                }
            }
        }
        if let Ok(list) = obj.cast::<PyList>() {
            let items = list
                .iter()
                .map(|i| self.node(&i, depth + 1))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(collapse_list(items));
        }
        if let Ok(dict) = obj.cast::<PyDict>() {
            let mut entries = Vec::with_capacity(dict.len());
            for (k, v) in dict.iter() {
                let Ok(name) = k.cast::<PyString>() else {
                    return Err(PyTypeError::new_err(format!(
                        "key {:?}: a dict key is a {}; zask maps take str keys",
                        self.key,
                        k.get_type().name()?
                    )));
                };
                entries.push((
                    Value::Str(name.to_str()?.to_string()),
                    self.node(&v, depth + 1)?,
                ));
            }
            return Ok(collapse_map(entries));
        }
        let key = self.key;
        Ok(Node::Literal(to_value(obj, &|| {
            format!("a value of key {key:?}")
        })?))
    }

    /// The name of `obj` if it is a key of the graph (a `str` or a tuple equal to one of its
    /// keys), outside dask's task objects.
    fn key_of(&self, obj: &Bound<'_, PyAny>) -> Option<String> {
        let names = self.names?;
        if self.spec || !(obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyTuple>()) {
            return None;
        }
        // (An unhashable tuple is no key.)
        names.get_item(obj).ok()??.extract().ok()
    }

    /// The name of a key a dask task object refers to: the graph's name for it, or (a key
    /// held from before) its own.
    fn ref_name(&self, key: &Bound<'_, PyAny>) -> PyResult<String> {
        for scope in [self.inner, self.names].into_iter().flatten() {
            if let Ok(Some(name)) = scope.get_item(key) {
                return name.extract();
            }
        }
        key_name(key)
    }

    /// The same converter, inside dask's task objects.
    fn in_spec(&self) -> Converter<'a, 'py> {
        Converter {
            names: self.names,
            key: self.key,
            spec: true,
            inner: self.inner,
            extra: self.extra,
        }
    }

    fn not_a_zask_function(&self, f: &Bound<'_, PyAny>) -> PyErr {
        let what = f
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "an object".into());
        PyTypeError::new_err(format!(
            "key {:?} calls {what}, which is not a zask function: zask runs only functions \
             workers offer by name (decorate a function with @zask.function and start workers \
             with --module, or use zask.function(\"name\") for one they offer); code is never \
             pickled or sent",
            self.key
        ))
    }

    /// A task whose function is one of dask's own helpers that `dask.bag` graphs are built
    /// of, translated into zask's standard library (`None`: not one of them). Each argument
    /// still goes through the usual checks: the user's functions must be zask functions.
    fn dask_internal(
        &self,
        func: &Bound<'_, PyAny>,
        task: &Bound<'_, PyAny>,
        depth: usize,
    ) -> PyResult<Option<Node>> {
        let module: String = func
            .getattr("__module__")
            .and_then(|m| m.extract())
            .unwrap_or_default();
        let name: String = func
            .getattr("__name__")
            .and_then(|m| m.extract())
            .unwrap_or_default();
        if !matches!(
            module.as_str(),
            "dask._task_spec" | "dask.bag.core" | "builtins"
        ) {
            return Ok(None);
        }
        let args: Vec<Bound<'_, PyAny>> =
            task.getattr("args")?.try_iter()?.collect::<PyResult<_>>()?;
        let this = self.in_spec();
        let arg = |i: usize| -> PyResult<Node> {
            match args.get(i) {
                Some(a) => this.node(a, depth + 1),
                None => Err(PyTypeError::new_err(format!(
                    "key {:?}: dask's {name} without argument {i}",
                    self.key
                ))),
            }
        };
        let call = |f: &str, args: Vec<Node>| {
            Node::Task(Task {
                func: f.to_string(),
                args,
                kwargs: Vec::new(),
            })
        };
        let node = match (module.as_str(), name.as_str()) {
            ("dask._task_spec", "_execute_subgraph") => self.subgraph(&args, depth)?,
            ("dask._task_spec", "_identity_cast") | ("dask._task_spec", "to_container") => {
                let items = (0..args.len()).map(arg).collect::<PyResult<Vec<_>>>()?;
                collapse_list(items)
            }
            ("dask.bag.core", "reify") => arg(0)?,
            ("dask.bag.core", "map_chunk") => {
                // map_chunk(f, [partition], None, {}): f over one partition's items.
                let f = self.function_arg(args.first())?;
                let iters = match arg(1)? {
                    Node::List(items) => items,
                    Node::Literal(Value::List(items)) => {
                        items.into_iter().map(Node::Literal).collect()
                    }
                    other => vec![other],
                };
                let no_kwargs = args.get(3).is_none_or(|k| {
                    k.getattr("args")
                        .and_then(|a| a.len())
                        .map(|n| n == 0)
                        .unwrap_or_else(|_| k.is_none())
                });
                let [partition] = <[Node; 1]>::try_from(iters).map_err(|_| {
                    PyTypeError::new_err(format!(
                        "key {:?}: zask maps a bag over one sequence at a time (dask's \
                         map over several bags or with keyword arguments is not supported)",
                        self.key
                    ))
                })?;
                if !no_kwargs {
                    return Err(PyTypeError::new_err(format!(
                        "key {:?}: keyword arguments of a bag's map are not supported",
                        self.key
                    )));
                }
                call("map", vec![Node::Literal(Value::Str(f)), partition])
            }
            ("dask.bag.core", "empty_safe_apply") | ("dask.bag.core", "empty_safe_aggregate") => {
                let f = self.reduction(args.first())?;
                call(&f, vec![arg(1)?])
            }
            ("dask.bag.core", "finalize_item") => {
                call("getitem", vec![arg(0)?, Node::Literal(Value::Int(0))])
            }
            ("dask.bag.core", "finalize") => call("concat", vec![arg(0)?]),
            ("builtins", "filter") => {
                let f = self.function_arg(args.first())?;
                call("filter", vec![Node::Literal(Value::Str(f)), arg(1)?])
            }
            _ => return Ok(None),
        };
        Ok(Some(node))
    }

    /// The name of the zask function a dask helper is given (the user's function).
    fn function_arg(&self, f: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let Some(f) = f else {
            return Err(PyTypeError::new_err(format!(
                "key {:?}: a dask helper without its function",
                self.key
            )));
        };
        function_name(f).ok_or_else(|| self.not_a_zask_function(f))
    }

    /// The standard-library function of a bag reduction's function (Python's `sum`, `max`,
    /// `min`, `len`, toolz's `count`), or a zask function.
    fn reduction(&self, f: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let Some(f) = f else {
            return self.function_arg(None);
        };
        if let Some(name) = function_name(f) {
            return Ok(name);
        }
        let module: String = f
            .getattr("__module__")
            .and_then(|m| m.extract())
            .unwrap_or_default();
        let name: String = f
            .getattr("__name__")
            .and_then(|m| m.extract())
            .unwrap_or_default();
        match (module.as_str(), name.as_str()) {
            ("builtins", "sum") => Ok("sum".into()),
            ("builtins", "max") => Ok("max".into()),
            ("builtins", "min") => Ok("min".into()),
            ("builtins", "len") | ("toolz.itertoolz", "count") => Ok("len".into()),
            _ => Err(self.not_a_zask_function(f)),
        }
    }

    /// A subgraph dask fused into one task (`_execute_subgraph(subgraph, outkey, inkeys,
    /// *inputs)`): its entries become keys of the graph (named after this key), and this key
    /// refers to its output.
    fn subgraph(&self, args: &[Bound<'_, PyAny>], depth: usize) -> PyResult<Node> {
        let (Some(inner), Some(outkey), Some(extra)) = (args.first(), args.get(1), self.extra)
        else {
            return Err(PyTypeError::new_err(format!(
                "key {:?}: a fused dask subgraph zask cannot read here",
                self.key
            )));
        };
        let py = inner.py();
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = inner
            .call_method0("items")?
            .try_iter()?
            .map(|kv| kv?.extract())
            .collect::<PyResult<_>>()?;
        let names = PyDict::new(py);
        for (k, _) in &items {
            names.set_item(k, format!("{}/{}", self.key, key_name(k)?))?;
        }
        for (k, v) in &items {
            let name: String = names
                .get_item(k)?
                .map_or(Ok(String::new()), |n| n.extract())?;
            let node = Converter {
                names: self.names,
                key: &name,
                spec: true,
                inner: Some(&names),
                extra: self.extra,
            }
            .node(v, depth + 1)?;
            extra.borrow_mut().push((name, node));
        }
        let out: String = names
            .get_item(outkey)?
            .map_or_else(|| key_name(outkey), |n| n.extract())?;
        Ok(Node::Ref(out))
    }

    /// A node of dask's task spec (`dask._task_spec`).
    fn task_spec(&self, obj: &Bound<'_, PyAny>, class: &str, depth: usize) -> PyResult<Node> {
        let this = self.in_spec();
        match class {
            "Task" => {
                let func = obj.getattr("func")?;
                if let Some(node) = self.dask_internal(&func, obj, depth)? {
                    return Ok(node);
                }
                let Some(name) = function_name(&func) else {
                    return Err(self.not_a_zask_function(&func));
                };
                let args = obj
                    .getattr("args")?
                    .try_iter()?
                    .map(|a| this.node(&a?, depth + 1))
                    .collect::<PyResult<Vec<_>>>()?;
                let mut kwargs = Vec::new();
                if let Ok(kw) = obj.getattr("kwargs")?.cast::<PyDict>() {
                    for (k, v) in kw.iter() {
                        kwargs.push((k.extract::<String>()?, this.node(&v, depth + 1)?));
                    }
                }
                Ok(Node::Task(Task {
                    func: name,
                    args,
                    kwargs,
                }))
            }
            "DataNode" => this.node(&obj.getattr("value")?, depth + 1),
            "Alias" => Ok(Node::Ref(self.ref_name(&obj.getattr("target")?)?)),
            "TaskRef" => Ok(Node::Ref(self.ref_name(&obj.getattr("key")?)?)),
            "List" | "Tuple" | "Set" => {
                let items = obj
                    .getattr("args")?
                    .try_iter()?
                    .map(|a| this.node(&a?, depth + 1))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(collapse_list(items))
            }
            "Dict" => {
                // Its `args` alternate keys and values.
                let flat: Vec<Bound<'_, PyAny>> = obj
                    .getattr("args")?
                    .try_iter()?
                    .collect::<PyResult<Vec<_>>>()?;
                let mut entries = Vec::with_capacity(flat.len() / 2);
                for pair in flat.chunks(2) {
                    if let [k, v] = pair {
                        let name = k.extract::<String>().map_err(|_| {
                            PyTypeError::new_err(format!(
                                "key {:?}: a dict key is not a str; zask maps take str keys",
                                self.key
                            ))
                        })?;
                        entries.push((Value::Str(name), this.node(v, depth + 1)?));
                    }
                }
                Ok(collapse_map(entries))
            }
            other => Err(PyTypeError::new_err(format!(
                "key {:?} holds a dask {other}, which zask does not read",
                self.key
            ))),
        }
    }
}

/// A list node, a literal when every item is one (as zask's own graph reader makes it).
fn collapse_list(items: Vec<Node>) -> Node {
    if items.iter().all(|n| matches!(n, Node::Literal(_))) {
        Node::Literal(Value::List(
            items
                .into_iter()
                .map(|n| match n {
                    Node::Literal(v) => v,
                    _ => Value::Nil,
                })
                .collect(),
        ))
    } else {
        Node::List(items)
    }
}

/// A map node, a literal when every value is one.
fn collapse_map(entries: Vec<(Value, Node)>) -> Node {
    if entries.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
        Node::Literal(Value::Map(
            entries
                .into_iter()
                .map(|(k, n)| match n {
                    Node::Literal(v) => (k, v),
                    _ => (k, Value::Nil),
                })
                .collect(),
        ))
    } else {
        Node::Map(entries)
    }
}
