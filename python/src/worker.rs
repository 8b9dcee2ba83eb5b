//! Workers running Python functions, and the command lines of the package's console scripts.
//!
//! `zask-worker ADDRESS --module mymodule` (the console script) imports the modules, then
//! hands the functions they registered with `@zask.function` to [`run_worker`]: the Rust
//! worker, with the standard library plus those functions, each called on the worker's
//! executor threads with the interpreter lock held. A Python exception becomes the task's
//! error, with its traceback; a result zask cannot carry is a task error too.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use zask_core::Value;
use zask_worker::{Args, Registry};

use crate::convert::{to_py, to_value_copied};

/// Calls Python function `f` (registered as `name`) with a task's arguments.
fn call(f: &Py<PyAny>, name: &str, args: Args) -> Result<Value, String> {
    Python::attach(|py| {
        let call = || -> PyResult<Result<Value, String>> {
            let positional = args
                .args
                .iter()
                .map(|v| to_py(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            let kwargs = PyDict::new(py);
            for (k, v) in &args.kwargs {
                kwargs.set_item(k, to_py(py, v)?)?;
            }
            let positional = PyTuple::new(py, positional)?;
            match f.call(py, positional, Some(&kwargs)) {
                Ok(result) => {
                    Ok(
                        to_value_copied(result.bind(py), &|| format!("the result of {name}"))
                            .map_err(|e| format!("{name} returned a value zask cannot carry: {e}")),
                    )
                }
                Err(e) => Ok(Err(traceback(py, &e))),
            }
        };
        match call() {
            Ok(r) => r,
            Err(e) => Err(format!("{name}: {}", traceback(py, &e))),
        }
    })
}

/// The text Python would print for exception `e`, with its traceback.
fn traceback(py: Python<'_>, e: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let value = e.clone_ref(py).into_value(py);
        let value = value.bind(py);
        // (The three-argument form: Python 3.9 has no other.)
        tb.getattr("format_exception")?
            .call1((value.get_type(), value, value.getattr("__traceback__")?))?
            .extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat().trim_end().to_string(),
        Err(_) => e.to_string(),
    }
}

/// Runs a worker (the command line `argv`, program name first) offering the standard library
/// plus `functions` (name → Python callable), until it is stopped. Exits the process on
/// error, as `zask-worker` does.
#[pyfunction]
pub fn run_worker(
    py: Python<'_>,
    argv: Vec<String>,
    functions: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let mut registry = Registry::with_stdlib();
    for (name, f) in functions.iter() {
        let name: String = name.extract()?;
        if registry.contains(&name) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "the Python function {name:?} has the name of a standard-library function; \
                 it would run instead of it on this worker only: give it another name \
                 (@zask.function(name=\"...\"))"
            )));
        }
        let f: Py<PyAny> = f.unbind();
        let label = name.clone();
        registry.register_raw(&name, move |_, args| call(&f, &label, args));
    }
    py.detach(move || zask_worker::cli::main_with_args(argv, registry));
    Ok(())
}

/// `zask-scheduler` with the command line `argv`.
#[pyfunction]
pub fn run_scheduler(py: Python<'_>, argv: Vec<String>) {
    py.detach(move || zask_scheduler::cli::main_with_args(argv));
}

/// `zask` (the client command line) with `argv`; returns the exit status.
#[pyfunction]
pub fn run_zask(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(move || zask::cli::exit_status_with_args(argv))
}
