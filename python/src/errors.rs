//! zask's errors as Python exceptions (the classes live in `zask/_errors.py`).
//!
//! | zask | Python |
//! |---|---|
//! | a task failed (`task_failed`, `dependency_failed`, ...) | `zask.TaskError` (`key`, `function`, `message`, `kind`) |
//! | `key_conflict` | `zask.KeyConflict` |
//! | the scheduler unreachable, silent or restarted | `zask.SchedulerUnreachable` |
//! | a future cancelled | `zask.CancelledError` (also a `concurrent.futures.CancelledError`) |
//! | a timeout | `TimeoutError` |
//! | anything else the scheduler said | `zask.ZaskError` (`kind`) |

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;

use zask_client::Error;
use zask_core::ErrorKind;

/// The Python exception of a zask error.
pub fn to_pyerr(e: Error) -> PyErr {
    Python::attach(|py| match make(py, &e) {
        Ok(err) => err,
        Err(failed) => failed,
    })
}

fn make(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let errors = py.import("zask._errors")?;
    let class = |name: &str| errors.getattr(name);
    let message = e.to_string();
    let exc = match e {
        Error::Timeout { .. } => return Ok(PyTimeoutError::new_err(message)),
        Error::Invalid(_) => return Ok(PyValueError::new_err(message)),
        Error::Cancelled(key) => {
            let exc = class("CancelledError")?.call1((message,))?;
            exc.setattr("key", key)?;
            exc
        }
        Error::SchedulerUnreachable(_)
        | Error::SchedulerRestarted
        | Error::NoScheduler(..)
        | Error::Closed => class("SchedulerUnreachable")?.call1((message,))?,
        Error::Scheduler(info) => {
            let name = match info.kind {
                ErrorKind::KeyConflict => "KeyConflict",
                ErrorKind::TaskFailed
                | ErrorKind::DependencyFailed
                | ErrorKind::WorkerDied
                | ErrorKind::Lost
                | ErrorKind::MissingDependency => "TaskError",
                _ => "ZaskError",
            };
            let exc = class(name)?.call1((info.message.clone(),))?;
            exc.setattr("kind", info.kind.as_str())?;
            exc.setattr("key", info.key.clone())?;
            exc.setattr("function", info.function.clone())?;
            exc.setattr("dependency", info.dependency.clone())?;
            exc.setattr("message", info.message.clone())?;
            exc
        }
        other => {
            let exc = class("ZaskError")?.call1((other.to_string(),))?;
            exc.setattr("kind", other.kind())?;
            exc
        }
    };
    Ok(PyErr::from_value(exc))
}

/// A Python exception for a failure outside zask's errors.
pub fn runtime(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}
