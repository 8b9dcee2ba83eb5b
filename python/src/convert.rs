//! Python objects and zask values, both ways.
//!
//! | Python | zask |
//! |---|---|
//! | `None`, `bool`, `int` (64-bit; a larger one is an error), `float`, `str` | nil, bool, int, float, str |
//! | `bytes` (shared, not copied), `bytearray`, `memoryview` and any buffer (copied) | bytes |
//! | `list`, `tuple` (comes back as a list) | list |
//! | `dict` with `str` keys | map |
//!
//! Anything else is a `TypeError` naming the type and where it was met.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use pyo3::IntoPyObjectExt;

use zask_core::{Bytes, Value};

/// How deep values may nest (as zask's own limit).
const MAX_DEPTH: usize = zask_core::value::MAX_NESTING;

/// Whether a `bytes` object is shared (the client: sent without a copy) or copied (a worker's
/// result: a Python object released without the interpreter lock is freed only when some
/// thread next takes it, which on a worker running only Rust functions may be never).
#[derive(Clone, Copy, PartialEq)]
pub enum BytesMode {
    Share,
    Copy,
}

/// The zask value of Python object `obj` (`what` names it in errors, e.g. "argument 2 of key
/// 'y'"); `bytes` objects are shared.
pub fn to_value(obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Value> {
    to_value_at(obj, what, 0, BytesMode::Share)
}

/// As [`to_value`], copying `bytes` objects.
pub fn to_value_copied(obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Value> {
    to_value_at(obj, what, 0, BytesMode::Copy)
}

fn to_value_at(
    obj: &Bound<'_, PyAny>,
    what: &dyn Fn() -> String,
    depth: usize,
    mode: BytesMode,
) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyTypeError::new_err(format!(
            "{} nests deeper than {MAX_DEPTH} levels",
            what()
        )));
    }
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Err(PyOverflowError::new_err(format!(
                "{}: the int {} does not fit in 64 bits, the largest zask carries",
                what(),
                obj.str().map(|s| s.to_string()).unwrap_or_default()
            ))),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.to_str()?.to_string()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        if mode == BytesMode::Copy {
            return Ok(Value::Bytes(Bytes::copy_from_slice(b.as_bytes())));
        }
        // Kept alive by the reference, and immutable: read without a copy.
        let shared: PyBackedBytes = b.clone().into();
        return Ok(Value::Bytes(Bytes::from_owner(shared)));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(Bytes::from(b.to_vec())));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list_value(list.iter(), what, depth, mode);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return list_value(tuple.iter(), what, depth, mode);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let Ok(name) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{}: a dict key is a {}; zask maps take str keys",
                    what(),
                    k.get_type().name()?
                )));
            };
            let name = name.to_str()?.to_string();
            let value = to_value_at(&v, &|| format!("{}[{name:?}]", what()), depth + 1, mode)?;
            entries.push((Value::Str(name), value));
        }
        return Ok(Value::Map(entries));
    }
    // Any other object with the buffer protocol (memoryview, array, numpy arrays of bytes).
    if let Ok(buffer) = pyo3::buffer::PyBuffer::<u8>::get(obj) {
        return Ok(Value::Bytes(Bytes::from(buffer.to_vec(obj.py())?)));
    }
    Err(PyTypeError::new_err(format!(
        "{} is a {}, which zask does not carry (it takes None, bool, int, float, str, bytes, \
         list, tuple and dict with str keys)",
        what(),
        obj.get_type().name()?
    )))
}

/// The zask list of a Python list's or tuple's `items`.
fn list_value<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    what: &dyn Fn() -> String,
    depth: usize,
    mode: BytesMode,
) -> PyResult<Value> {
    let mut values = Vec::with_capacity(items.size_hint().0);
    for (i, item) in items.enumerate() {
        values.push(to_value_at(
            &item,
            &|| format!("{}[{i}]", what()),
            depth + 1,
            mode,
        )?);
    }
    Ok(Value::List(values))
}

/// The Python object of zask value `v`.
pub fn to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::Nil => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::Int(i) => i.into_py_any(py)?,
        Value::Float(f) => f.into_py_any(py)?,
        Value::Str(s) => s.into_py_any(py)?,
        Value::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(to_py(py, k)?, to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}
