//! The client, its futures, `as_completed`, `wait`, and the Bag, for Python.
//!
//! Every call that waits releases the interpreter lock and wakes every 100 ms to let Python
//! handle signals: Ctrl-C (`KeyboardInterrupt`) during `get` or `result` cancels what it
//! waited for on the scheduler, then raises.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use zask_client::{ClientOptions, Future, FutureStatus, WaitMode};
use zask_core::graph::{Node, Task};
use zask_core::security::Secret;
use zask_core::{Collection, Value};

use crate::convert::{to_py, to_value};
use crate::errors::{runtime, to_pyerr};
use crate::graph::{function_name, graph_of, keys_of, Converter};

/// How long a wait runs without the interpreter lock before Python may handle a signal.
const SLICE: Duration = Duration::from_millis(100);

/// Runs `step` (which waits at most about `SLICE`) without the interpreter lock until it
/// gives an answer, handling signals between steps; `on_interrupt` runs before a signal's
/// exception (`KeyboardInterrupt`) is raised.
fn blocking<T: Send>(
    py: Python<'_>,
    mut step: impl FnMut() -> Option<T> + Send,
    on_interrupt: impl FnOnce(),
) -> PyResult<T> {
    loop {
        if let Some(v) = py.detach(&mut step) {
            return Ok(v);
        }
        if let Err(e) = py.check_signals() {
            on_interrupt();
            return Err(e);
        }
    }
}

/// A connection to a zask scheduler (the `zask.Client` of the Python package wraps it).
#[pyclass(name = "NativeClient", module = "zask._native")]
pub struct PyClient {
    client: zask_client::Client,
}

/// A future of a task (`zask.Future`).
#[pyclass(name = "Future", module = "zask._native")]
pub struct PyFuture {
    future: Future,
}

impl PyFuture {
    /// The key it names.
    pub fn key(&self) -> &str {
        self.future.key()
    }
}

fn status_name(s: FutureStatus) -> &'static str {
    match s {
        FutureStatus::Pending => "pending",
        FutureStatus::Finished => "finished",
        FutureStatus::Error => "error",
        FutureStatus::Cancelled => "cancelled",
        FutureStatus::Lost => "lost",
    }
}

/// Waits until every future of `futures` is done (or one failed), handling signals; on
/// Ctrl-C they are cancelled.
fn wait_all(py: Python<'_>, futures: &[Future], deadline: Option<Instant>) -> PyResult<bool> {
    let owned: Vec<Future> = futures.to_vec();
    blocking(
        py,
        || {
            let slice = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(false);
                    }
                    left.min(SLICE)
                }
                None => SLICE,
            };
            let waited = zask_client::wait(owned.clone(), slice, WaitMode::AllCompleted);
            let failed = waited
                .done
                .iter()
                .any(|f| f.status() != FutureStatus::Finished);
            (waited.not_done.is_empty() || failed).then_some(true)
        },
        || {
            // (Only those not done: a finished value stays for its other handles.)
            for f in futures.iter().filter(|f| !f.done()) {
                f.cancel();
            }
        },
    )
}

/// A timeout in seconds from Python: `None` or infinity is none; NaN or a negative one is an
/// error; a huge one is capped (at about 30 years).
fn timeout_of(t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "a timeout is a number of seconds, not {t}"
        ))),
        Some(t) if t.is_infinite() => Ok(None),
        Some(t) => Ok(Some(Duration::from_secs_f64(t.min(1e9)))),
    }
}

/// The instant `timeout` seconds from now (`None`: never).
fn deadline_of(t: Option<f64>) -> PyResult<Option<Instant>> {
    Ok(timeout_of(t)?.and_then(|d| Instant::now().checked_add(d)))
}

/// The error of the first of `futures` that failed or was cancelled, if one did.
fn first_failure(futures: &[Future]) -> Option<PyErr> {
    futures
        .iter()
        .find(|f| matches!(f.status(), FutureStatus::Error | FutureStatus::Cancelled))
        .and_then(|f| f.result_timeout(Duration::ZERO).err())
        .map(to_pyerr)
}

/// The values of `futures`, in order: waited for (Ctrl-C cancels them), the first failure
/// raised as soon as there is one.
fn values_of(
    py: Python<'_>,
    client: &zask_client::Client,
    futures: &[Future],
) -> PyResult<Vec<Value>> {
    wait_all(py, futures, None)?;
    if let Some(e) = first_failure(futures) {
        return Err(e);
    }
    let client = client.clone();
    let fs = futures.to_vec();
    py.detach(move || client.gather_futures(&fs))
        .map_err(to_pyerr)
}

/// Computes `keys` of `graph` as futures (so that Ctrl-C cancels exactly this computation),
/// and gives their values in the keys' shape.
fn compute_shaped(
    py: Python<'_>,
    client: &zask_client::Client,
    graph: &zask_core::Graph,
    keys: &zask_core::Keys,
) -> PyResult<Value> {
    let flat = keys.flatten();
    let names: Vec<&str> = flat.iter().map(String::as_str).collect();
    let futures = client.compute(graph, &names).map_err(to_pyerr)?;
    let values = values_of(py, client, &futures)?;
    let by_key: std::collections::HashMap<String, Value> = flat.into_iter().zip(values).collect();
    Ok(keys.shape(&by_key))
}

#[pymethods]
impl PyFuture {
    /// The key it names.
    #[getter(key)]
    fn key_py(&self) -> String {
        self.future.key().to_string()
    }

    /// `pending`, `finished`, `error`, `cancelled` or `lost` (being computed again).
    #[getter]
    fn status(&self) -> &'static str {
        status_name(self.future.status())
    }

    /// Whether it is finished, failed or cancelled.
    fn done(&self) -> bool {
        self.future.done()
    }

    /// Its value, waiting at most `timeout` seconds (forever: `None`). A failed task raises
    /// its error, a cancelled one `CancelledError`, a timeout `TimeoutError`; Ctrl-C cancels
    /// it and raises `KeyboardInterrupt`.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let deadline = deadline_of(timeout)?;
        wait_all(py, std::slice::from_ref(&self.future), deadline)?;
        // Fetched in slices too (a value lost meanwhile is computed again first).
        let f = &self.future;
        let value = blocking(
            py,
            || {
                let left = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()),
                    None => SLICE,
                };
                match f.result_timeout(left.clamp(Duration::from_millis(1), SLICE)) {
                    Err(zask_client::Error::Timeout { .. })
                        if deadline.is_none_or(|d| Instant::now() < d) =>
                    {
                        None
                    }
                    other => Some(other),
                }
            },
            || {
                if !f.done() {
                    f.cancel();
                }
            },
        )?
        .map_err(to_pyerr)?;
        to_py(py, &value)
    }

    /// The exception it failed with, or `None` (waits like `result`).
    #[pyo3(signature = (timeout=None))]
    fn exception(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyErr>> {
        match self.result(py, timeout) {
            Ok(_) => Ok(None),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Err(e),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => Err(e),
            Err(e) => Ok(Some(e)),
        }
    }

    /// Cancels it: it stops being waited for at once; the scheduler stops its task if nobody
    /// else wants it.
    fn cancel(&self) {
        self.future.cancel();
    }

    /// Calls `callback(future)` once it is done, from another thread (at once, from this one,
    /// if it is done already).
    fn add_done_callback(slf: Bound<'_, Self>, callback: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.borrow().future.done() {
            callback.call1(py, (slf,))?;
            return Ok(());
        }
        let future = slf.borrow().future.clone();
        let handle: Py<PyFuture> = slf.unbind();
        std::thread::Builder::new()
            .name("zask-callback".into())
            .spawn(move || {
                while !zask_client::wait(
                    vec![future.clone()],
                    Duration::from_secs(3600),
                    WaitMode::AllCompleted,
                )
                .not_done
                .is_empty()
                {}
                Python::attach(|py| {
                    if let Err(e) = callback.call1(py, (handle,)) {
                        e.print(py);
                    }
                });
            })
            .map_err(|e| runtime(format!("cannot start a callback thread: {e}")))?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<Future: {}, key: {}>",
            status_name(self.future.status()),
            self.future.key()
        )
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.future.key().hash(&mut h);
        h.finish()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyFuture>()
            .is_ok_and(|o| o.borrow().future.key() == self.future.key())
    }
}

/// Futures in the order they finish (`zask.as_completed`).
#[pyclass(name = "AsCompleted", module = "zask._native")]
pub struct PyAsCompleted {
    /// (Behind a lock: a Python object may be shared between threads.)
    inner: std::sync::Mutex<zask_client::AsCompleted>,
    with_results: bool,
}

impl PyAsCompleted {
    fn lock(&self) -> std::sync::MutexGuard<'_, zask_client::AsCompleted> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl PyAsCompleted {
    /// Adds a future to those waited for.
    fn add(&self, future: &Bound<'_, PyFuture>) {
        self.lock().add(future.borrow().future.clone());
    }

    /// How many are still to come.
    fn count(&self) -> usize {
        self.lock().len()
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = &self.inner;
        let future = blocking(
            py,
            || {
                let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                if inner.is_empty() {
                    return Some(None);
                }
                inner.next_timeout(SLICE).map(Some)
            },
            || {},
        )?;
        let Some(future) = future else {
            return Err(PyStopIteration::new_err(()));
        };
        let handle = Py::new(
            py,
            PyFuture {
                future: future.clone(),
            },
        )?;
        if !self.with_results {
            return Ok(handle.into_any());
        }
        let value = match py.detach(move || future.result_timeout(Duration::from_secs(3600))) {
            Ok(v) => to_py(py, &v)?,
            Err(e) => to_pyerr(e).into_value(py).into_any(),
        };
        Ok(PyTuple::new(py, [handle.into_any(), value])?
            .into_any()
            .unbind())
    }
}

/// For benchmarks: converts dask-style graph `dsk` and encodes it with `keys` as a `get`
/// sends it, and returns the message's size in bytes: the client's own cost of building and
/// sending a graph, without the network and the scheduler.
#[pyfunction]
pub fn encode_graph(dsk: &Bound<'_, PyDict>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
    let graph = graph_of(dsk)?;
    let keys = keys_of(keys)?.flatten();
    let item = zask_core::protocol::SubmitItem {
        graph: &graph,
        keys,
        priority: 0,
        retries: 0,
        workers: Vec::new(),
    };
    rmp_serde::to_vec_named(&item)
        .map(|b| b.len())
        .map_err(|e| runtime(format!("cannot encode the graph: {e}")))
}

/// `zask.as_completed(futures, with_results=False)`.
#[pyfunction]
#[pyo3(signature = (futures, with_results=false))]
pub fn as_completed(futures: &Bound<'_, PyAny>, with_results: bool) -> PyResult<PyAsCompleted> {
    let mut inner = zask_client::as_completed(Vec::new());
    for f in futures.try_iter()? {
        inner.add(f?.cast::<PyFuture>()?.borrow().future.clone());
    }
    Ok(PyAsCompleted {
        inner: std::sync::Mutex::new(inner),
        with_results,
    })
}

/// `zask.wait(futures, timeout=None, return_when="ALL_COMPLETED")`: the futures done and not
/// done, when the first or all are done, or the timeout passed.
#[pyfunction]
#[pyo3(signature = (futures, timeout=None, return_when="ALL_COMPLETED"))]
pub fn wait<'py>(
    py: Python<'py>,
    futures: &Bound<'py, PyAny>,
    timeout: Option<f64>,
    return_when: &str,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let mode = match return_when {
        "ALL_COMPLETED" => WaitMode::AllCompleted,
        "FIRST_COMPLETED" => WaitMode::FirstCompleted,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "return_when is ALL_COMPLETED or FIRST_COMPLETED, not {other:?}"
            )))
        }
    };
    let handles: Vec<Bound<'py, PyFuture>> = futures
        .try_iter()?
        .map(|f| Ok(f?.cast::<PyFuture>()?.clone()))
        .collect::<PyResult<_>>()?;
    let all: Vec<Future> = handles.iter().map(|h| h.borrow().future.clone()).collect();
    let deadline = deadline_of(timeout)?;
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    let slice = || match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        None => SLICE,
    };
    if !all.is_empty() {
        match mode {
            WaitMode::AllCompleted => blocking(
                py,
                || {
                    let waited = zask_client::wait(all.clone(), slice(), mode);
                    (waited.not_done.is_empty() || expired()).then_some(())
                },
                || {},
            )?,
            WaitMode::FirstCompleted => {
                // One watcher per future for the whole wait (not one per slice).
                let first = std::sync::Mutex::new(zask_client::as_completed(all.clone()));
                blocking(
                    py,
                    || {
                        let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
                        (first.next_timeout(slice()).is_some() || expired()).then_some(())
                    },
                    || {},
                )?
            }
        }
    }
    let done = PyList::empty(py);
    let not_done = PyList::empty(py);
    for h in handles {
        if h.borrow().future.done() {
            done.append(h)?;
        } else {
            not_done.append(h)?;
        }
    }
    Ok((done, not_done))
}

/// Converts a submitted call's arguments (futures become references to their keys).
fn call_node(
    func: String,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Node> {
    let conv = Converter {
        names: None,
        key: &func,
        spec: false,
        inner: None,
        extra: None,
    };
    let args = args
        .iter()
        .map(|a| conv.node(&a, 0))
        .collect::<PyResult<Vec<_>>>()?;
    let mut kw = Vec::new();
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            kw.push((k.extract::<String>()?, conv.node(&v, 0)?));
        }
    }
    Ok(Node::Task(Task {
        func,
        args,
        kwargs: kw,
    }))
}

/// The name of the function `func` (a zask function, or a name).
fn func_name(func: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Some(name) = function_name(func) {
        return Ok(name);
    }
    if let Ok(name) = func.extract::<String>() {
        return Ok(name);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "{} is not a zask function: decorate it with @zask.function (and start workers with \
         --module), or name one workers offer with zask.function(\"name\")",
        func.repr()?
    )))
}

#[pymethods]
impl PyClient {
    /// Connects to the scheduler's `address_to_clients`.
    #[new]
    #[pyo3(signature = (address, timeout=10.0, auth_token_file=None))]
    fn new(
        py: Python<'_>,
        address: String,
        timeout: f64,
        auth_token_file: Option<std::path::PathBuf>,
    ) -> PyResult<PyClient> {
        let secret = Secret::from_cli(auth_token_file.as_deref())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let options = ClientOptions {
            timeout: Duration::from_secs_f64(timeout.max(0.001)),
            secret,
            ..ClientOptions::default()
        };
        let client = py
            .detach(|| zask_client::Client::connect_with(&address, options))
            .map_err(to_pyerr)?;
        Ok(PyClient { client })
    }

    /// The scheduler's address.
    #[getter]
    fn address(&self) -> String {
        self.client.address().to_string()
    }

    /// Computes `keys` of dask-style graph `dsk` (see `zask.Client.get`).
    fn get(
        &self,
        py: Python<'_>,
        dsk: &Bound<'_, PyDict>,
        keys: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let graph = graph_of(dsk)?;
        let keys = keys_of(keys)?;
        let value = compute_shaped(py, &self.client, &graph, &keys)?;
        to_py(py, &value)
    }

    /// Submits `func(*args, **kwargs)` (see `zask.Client.submit`).
    #[pyo3(signature = (func, args, kwargs=None, key=None, pure=true, priority=0, retries=0, workers=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        key: Option<String>,
        pure: bool,
        priority: i32,
        retries: u32,
        workers: Option<Vec<String>>,
    ) -> PyResult<PyFuture> {
        let node = call_node(func_name(func)?, args, kwargs)?;
        let mut submit = self
            .client
            .submit_node(node)
            .pure(pure)
            .priority(priority)
            .retries(retries);
        if let Some(k) = key {
            submit = submit.key(k);
        }
        if let Some(w) = workers {
            submit = submit.workers(w);
        }
        let future = submit.submit().map_err(to_pyerr)?;
        Ok(PyFuture { future })
    }

    /// Submits `func(item)` for each item (see `zask.Client.map`).
    #[pyo3(signature = (func, items, pure=true, priority=0, retries=0))]
    fn map(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
        pure: bool,
        priority: i32,
        retries: u32,
    ) -> PyResult<Py<PyList>> {
        let name = func_name(func)?;
        let out = PyList::empty(py);
        for item in items.try_iter()? {
            let args = PyTuple::new(py, [item?])?;
            let node = call_node(name.clone(), &args, None)?;
            let future = self
                .client
                .submit_node(node)
                .pure(pure)
                .priority(priority)
                .retries(retries)
                .submit()
                .map_err(to_pyerr)?;
            out.append(Py::new(py, PyFuture { future })?)?;
        }
        Ok(out.unbind())
    }

    /// The values of `futures`, in order (waiting for them; Ctrl-C cancels them).
    fn gather(&self, py: Python<'_>, futures: &Bound<'_, PyAny>) -> PyResult<Py<PyList>> {
        let fs: Vec<Future> = futures
            .try_iter()?
            .map(|f| Ok(f?.cast::<PyFuture>()?.borrow().future.clone()))
            .collect::<PyResult<_>>()?;
        let values = values_of(py, &self.client, &fs)?;
        let out = PyList::empty(py);
        for v in &values {
            out.append(to_py(py, v)?)?;
        }
        Ok(out.unbind())
    }

    /// Puts values on workers; returns their keys (held until `release`).
    fn scatter(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let mut vals = Vec::new();
        for (i, v) in values.try_iter()?.enumerate() {
            vals.push(to_value(&v?, &|| format!("scattered value {i}"))?);
        }
        let client = self.client.clone();
        py.detach(move || client.scatter(vals)).map_err(to_pyerr)
    }

    /// Lets held keys go; returns those the scheduler did not know.
    fn release(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Vec<String>> {
        let client = self.client.clone();
        py.detach(move || client.release(&keys)).map_err(to_pyerr)
    }

    /// Stores a graph (or a Bag) as a collection for other clients.
    #[pyo3(signature = (name, graph, keys, kind="graph"))]
    fn set_collection(
        &self,
        py: Python<'_>,
        name: String,
        graph: &Bound<'_, PyDict>,
        keys: &Bound<'_, PyAny>,
        kind: &str,
    ) -> PyResult<bool> {
        let collection = Collection {
            kind: kind.to_string(),
            graph: graph_of(graph)?,
            keys: keys_of(keys)?,
            meta: Value::Map(Vec::new()),
        };
        let client = self.client.clone();
        py.detach(move || client.set_collection(&name, &collection))
            .map_err(to_pyerr)
    }

    /// Stores a Bag as a collection (kind `bag`).
    fn set_bag(&self, py: Python<'_>, name: String, bag: &PyBag) -> PyResult<bool> {
        let collection = bag.bag.to_collection();
        let client = self.client.clone();
        py.detach(move || client.set_collection(&name, &collection))
            .map_err(to_pyerr)
    }

    /// A stored collection: `{"kind", "graph" (in its JSON form), "keys", "meta"}`.
    fn get_collection(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let c = py
            .detach(move || client.get_collection(&name))
            .map_err(to_pyerr)?;
        to_py(py, &c.to_value())
    }

    /// The stored Bag `name`.
    fn get_bag(&self, py: Python<'_>, name: String) -> PyResult<PyBag> {
        let client = self.client.clone();
        let c = py
            .detach(move || client.get_collection(&name))
            .map_err(to_pyerr)?;
        let bag = zask_client::Bag::from_collection(&c).map_err(to_pyerr)?;
        Ok(PyBag { bag })
    }

    /// The stored collections: `[{"name", "kind", "tasks", "nbytes"}]`.
    fn list_collections(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let client = self.client.clone();
        let list = py
            .detach(move || client.list_collections())
            .map_err(to_pyerr)?;
        let out = PyList::empty(py);
        for c in list {
            let d = PyDict::new(py);
            d.set_item("name", c.name)?;
            d.set_item("kind", c.kind)?;
            d.set_item("tasks", c.tasks)?;
            d.set_item("nbytes", c.nbytes)?;
            out.append(d)?;
        }
        Ok(out.unbind())
    }

    /// Deletes a stored collection.
    fn delete_collection(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let client = self.client.clone();
        py.detach(move || client.delete_collection(&name))
            .map_err(to_pyerr)
    }

    /// Computes a stored collection (a bag gives the list of its items).
    fn compute_collection(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let c = py
            .detach(move || client.get_collection(&name))
            .map_err(to_pyerr)?;
        if c.kind == "bag" {
            let bag = zask_client::Bag::from_collection(&c).map_err(to_pyerr)?;
            return PyBag { bag }.items(py, &self.client);
        }
        let value = compute_shaped(py, &self.client, &c.graph, &c.keys)?;
        to_py(py, &value)
    }

    /// The scheduler's counters.
    fn status(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let s = py.detach(move || client.status()).map_err(to_pyerr)?;
        let d = PyDict::new(py);
        d.set_item("scheduler_id", s.scheduler_id)?;
        d.set_item("workers", s.workers)?;
        d.set_item("tasks", s.tasks)?;
        d.set_item("graphs", s.graphs)?;
        d.set_item("keys", s.keys)?;
        Ok(d.into_any().unbind())
    }

    /// The registered workers.
    fn workers(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let client = self.client.clone();
        let ws = py.detach(move || client.workers()).map_err(to_pyerr)?;
        let out = PyList::empty(py);
        for w in ws {
            let d = PyDict::new(py);
            d.set_item("address", w.address)?;
            d.set_item("nthreads", w.nthreads)?;
            d.set_item("functions", w.functions)?;
            d.set_item("keys", w.keys)?;
            d.set_item("nbytes", w.nbytes)?;
            d.set_item("processing", w.processing)?;
            d.set_item("pid", w.pid)?;
            out.append(d)?;
        }
        Ok(out.unbind())
    }

    /// The computations in flight, every client's (`zask computations`): dicts with `id`
    /// (`get-N`, `futures-N`), `kind`, `client`, `age_ms`, `total`, `done`, `failed`,
    /// `waiting`.
    fn computations(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let client = self.client.clone();
        let cs = py.detach(move || client.computations()).map_err(to_pyerr)?;
        let out = PyList::empty(py);
        for c in cs {
            let d = PyDict::new(py);
            d.set_item("id", c.id)?;
            d.set_item("kind", c.kind)?;
            d.set_item("client", c.client)?;
            d.set_item("age_ms", c.age_ms)?;
            d.set_item("total", c.total)?;
            d.set_item("done", c.done)?;
            d.set_item("failed", c.failed)?;
            d.set_item("waiting", c.waiting)?;
            out.append(d)?;
        }
        Ok(out.unbind())
    }

    /// Cancels a computation by the id `computations` gives (`zask cancel`).
    fn cancel_computation(&self, py: Python<'_>, id: String) -> PyResult<()> {
        let client = self.client.clone();
        py.detach(move || client.cancel_computation(&id))
            .map_err(to_pyerr)
    }

    /// Held keys (`zask keys`): `(total, [dict(key, nbytes, holders)])`, at most `limit`
    /// listed (and at most 10,000).
    #[pyo3(signature = (limit=100))]
    fn held_keys(&self, py: Python<'_>, limit: u64) -> PyResult<(u64, Py<PyList>)> {
        let client = self.client.clone();
        let (total, keys) = py
            .detach(move || client.held_keys(limit))
            .map_err(to_pyerr)?;
        let out = PyList::empty(py);
        for k in keys {
            let d = PyDict::new(py);
            d.set_item("key", k.key)?;
            d.set_item("nbytes", k.nbytes)?;
            d.set_item("holders", k.holders)?;
            out.append(d)?;
        }
        Ok((total, out.unbind()))
    }

    /// Waits until `n` workers are registered (at most `timeout` seconds).
    #[pyo3(signature = (n, timeout=30.0))]
    fn wait_for_workers(&self, py: Python<'_>, n: usize, timeout: f64) -> PyResult<()> {
        let deadline = deadline_of(Some(timeout))?;
        let client = &self.client;
        blocking(
            py,
            || {
                let expired = deadline.is_some_and(|d| Instant::now() >= d);
                match client.wait_for_workers(n, SLICE) {
                    Err(zask_client::Error::Timeout { .. }) if !expired => None,
                    other => Some(other),
                }
            },
            || {},
        )?
        .map_err(to_pyerr)
    }

    /// Closes the connection: the scheduler cancels this client's computations and drops
    /// its futures.
    fn close(&self, py: Python<'_>) {
        let client = self.client.clone();
        py.detach(move || client.disconnect());
    }
}

/// A lazy, partitioned sequence (dask's Bag), built with zask functions by name.
#[pyclass(name = "Bag", module = "zask._native")]
pub struct PyBag {
    bag: zask_client::Bag,
}

#[pymethods]
impl PyBag {
    /// A bag of `items` in `npartitions` partitions.
    #[staticmethod]
    #[pyo3(signature = (items, npartitions=1))]
    fn from_sequence(items: &Bound<'_, PyAny>, npartitions: usize) -> PyResult<PyBag> {
        let mut values = Vec::new();
        for (i, item) in items.try_iter()?.enumerate() {
            values.push(to_value(&item?, &|| format!("item {i}"))?);
        }
        Ok(PyBag {
            bag: zask_client::Bag::from_sequence(values, npartitions.max(1)),
        })
    }

    /// `func` applied to every item.
    fn map(&self, func: &Bound<'_, PyAny>) -> PyResult<PyBag> {
        Ok(PyBag {
            bag: self.bag.map(&func_name(func)?),
        })
    }

    /// The items for which `func` is true.
    fn filter(&self, func: &Bound<'_, PyAny>) -> PyResult<PyBag> {
        Ok(PyBag {
            bag: self.bag.filter(&func_name(func)?),
        })
    }

    /// How many partitions.
    #[getter]
    fn npartitions(&self) -> usize {
        self.bag.npartitions()
    }

    /// The list of items, computed on `client`.
    fn compute(&self, py: Python<'_>, client: &PyClient) -> PyResult<Py<PyAny>> {
        self.items(py, &client.client)
    }

    /// The sum of the items, computed on `client`.
    fn sum(&self, py: Python<'_>, client: &PyClient) -> PyResult<Py<PyAny>> {
        item_value(py, &client.client, &self.bag.sum())
    }

    /// How many items, computed on `client`.
    fn count(&self, py: Python<'_>, client: &PyClient) -> PyResult<Py<PyAny>> {
        item_value(py, &client.client, &self.bag.count())
    }

    /// The keys of its partitions.
    fn keys(&self) -> Vec<String> {
        self.bag.keys().to_vec()
    }
}

impl PyBag {
    /// The list of its items, computed on `client` (interruptible, as `get`).
    fn items(&self, py: Python<'_>, client: &zask_client::Client) -> PyResult<Py<PyAny>> {
        item_value(py, client, &self.bag.to_list())
    }
}

/// The value of a bag's item (a reduction, or its list of items), computed on `client`.
fn item_value(
    py: Python<'_>,
    client: &zask_client::Client,
    item: &zask_client::Item,
) -> PyResult<Py<PyAny>> {
    let keys = zask_core::Keys::One(item.key().to_string());
    let value = compute_shaped(py, client, item.graph(), &keys)?;
    to_py(py, &value)
}
