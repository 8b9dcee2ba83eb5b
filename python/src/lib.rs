//! zask-python: the `zask._native` extension module of the Python package `zask` (built with
//! maturin; see `python/pyproject.toml` and `docs/python.md`).
//!
//! It wraps the Rust client and worker: no part of the protocol is written again in Python.
//!
//! - `convert.rs`: Python objects and zask values, both ways.
//! - `graph.rs`: graphs as dask writes them (and dask's task objects) made into zask graphs.
//! - `client.rs`: `NativeClient`, `Future`, `as_completed`, `wait`, `Bag`.
//! - `worker.rs`: workers running Python functions; the console scripts' entry points.
//! - `errors.rs`: zask's errors as the package's exceptions.
//!
//! The Python side (`python/zask/`) adds `zask.Client`, `@zask.function` and the exceptions.

use pyo3::prelude::*;

mod client;
mod convert;
mod errors;
mod graph;
mod worker;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::PyClient>()?;
    m.add_class::<client::PyFuture>()?;
    m.add_class::<client::PyAsCompleted>()?;
    m.add_class::<client::PyBag>()?;
    m.add_function(wrap_pyfunction!(client::as_completed, m)?)?;
    m.add_function(wrap_pyfunction!(client::wait, m)?)?;
    m.add_function(wrap_pyfunction!(client::encode_graph, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_scheduler, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_zask, m)?)?;
    Ok(())
}
