//! The function registry: the names a worker can run, mapped to Rust functions.
//!
//! A graph's tasks name functions (`{"fn": "inc", "args": [1]}`); a worker runs a task by looking
//! its name up here and calling the function with the evaluated arguments. Functions come in
//! three flavours, all stored the same way (as a [`RawFunction`]):
//!
//! - typed: `registry.register("inc", |x: i64| x + 1)`. Arguments are converted from [`Value`]s
//!   with serde, the result converted back; argument-count and conversion errors are reported
//!   with the function's name.
//! - fallible: `registry.register_fallible("parse", |s: String| s.parse::<i64>())`, where an
//!   `Err(e)` becomes the task's error (`e.to_string()`).
//! - raw: `registry.register_raw("f", |registry, args| ...)` sees the [`Args`] (keyword arguments
//!   included) and the registry itself, so it can call other functions by name. The standard
//!   library (see [`crate::stdlib`]) is written this way.
//!
//! [`Registry::call`] catches panics, so a buggy function fails its task instead of the worker.
//!
//! ```
//! use zask_worker::{Args, Registry};
//! use zask_core::Value;
//! let mut registry = Registry::new();
//! registry.register("inc", |x: i64| x + 1);
//! let args = Args { args: vec![Value::Int(41)], kwargs: vec![] };
//! assert_eq!(registry.call("inc", args), Ok(Value::Int(42)));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zask_core::{from_value, to_value, Value};

/// Arguments of one call: positional and keyword, already evaluated.
///
/// It is what a task's argument nodes become once every reference is replaced by its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    /// Positional arguments, in order.
    pub args: Vec<Value>,
    /// Keyword arguments, in the order the task gave them.
    pub kwargs: Vec<(String, Value)>,
}

impl Args {
    /// Positional arguments only (no keyword arguments): the common case, and a short way to
    /// build arguments for [`Registry::call`] from Rust.
    pub fn positional(args: Vec<Value>) -> Args {
        Args {
            args,
            kwargs: Vec::new(),
        }
    }

    /// Exactly `N` positional arguments and no keyword arguments, or an error in the standard
    /// wording (`inc takes 1 argument, got 2`).
    pub(crate) fn exactly<const N: usize>(self, name: &str) -> Result<[Value; N], String> {
        no_kwargs(name, &self.kwargs)?;
        let got = self.args.len();
        self.args
            .try_into()
            .map_err(|_| arity_message(name, N, N, got))
    }

    /// Between `min` and `max` positional arguments and no keyword arguments.
    pub(crate) fn between(self, name: &str, min: usize, max: usize) -> Result<Vec<Value>, String> {
        no_kwargs(name, &self.kwargs)?;
        if self.args.len() < min || self.args.len() > max {
            return Err(arity_message(name, min, max, self.args.len()));
        }
        Ok(self.args)
    }
}

fn no_kwargs(name: &str, kwargs: &[(String, Value)]) -> Result<(), String> {
    if kwargs.is_empty() {
        Ok(())
    } else {
        Err(format!("{name} takes no keyword arguments"))
    }
}

/// `inc takes 1 argument, got 2`, `sleep takes 1 or 2 arguments, got 0`,
/// `range takes 1 to 3 arguments, got 4`.
pub(crate) fn arity_message(name: &str, min: usize, max: usize, got: usize) -> String {
    let expected = if min == max {
        format!("{min} argument{}", if min == 1 { "" } else { "s" })
    } else if min + 1 == max {
        format!("{min} or {max} arguments")
    } else {
        format!("{min} to {max} arguments")
    };
    format!("{name} takes {expected}, got {got}")
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The task names a function this worker does not have (the graph and the worker's
    /// registry disagree).
    #[error("no function named {0:?} is registered on this worker")]
    UnknownFunction(String),
    /// The function returned an error, got bad arguments, or panicked (`"panicked: <msg>"`).
    #[error("{0}")]
    Failed(String),
}

/// A raw function: sees the registry (so map/filter/reduce can call other functions by name)
/// and the arguments, and returns a value or an error message.
pub type RawFunction = dyn Fn(&Registry, Args) -> Result<Value, String> + Send + Sync;

/// The functions a worker can run, by name.
///
/// Cloning is cheap (the table is shared behind an `Arc`), so every thread of a worker can hold
/// its own handle; registering on a clone copies the table first and leaves the others as they
/// were.
#[derive(Clone, Default)]
pub struct Registry {
    functions: Arc<HashMap<String, Arc<RawFunction>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("functions", &self.names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry holding the standard library (`add`, `sum`, `map`, ...; see
    /// [`crate::stdlib`] and `docs/functions.md`), what a worker starts with.
    pub fn with_stdlib() -> Registry {
        let mut registry = Registry::new();
        crate::stdlib::register_stdlib(&mut registry);
        registry
    }

    /// Registers a typed function, e.g. `registry.register("inc", |x: i64| x + 1)`.
    ///
    /// Each parameter (up to six) is converted from its positional argument with serde
    /// ([`zask_core::from_value`]), so any `DeserializeOwned` type works, `Value` included; the
    /// result is converted back with [`zask_core::to_value`]. Keyword arguments or the wrong
    /// number of arguments fail the call. A function registered under an existing name
    /// replaces it.
    pub fn register<M, F: TypedFunction<M>>(&mut self, name: &str, f: F) -> &mut Registry {
        let raw = f.into_raw(name);
        self.insert(name, raw)
    }

    /// Registers a typed function that can fail: it returns `Result<T, E>` where `T` is
    /// serializable and `E: Display`; an `Err(e)` fails the task with `e.to_string()`.
    pub fn register_fallible<M, F: FallibleFunction<M>>(
        &mut self,
        name: &str,
        f: F,
    ) -> &mut Registry {
        let raw = f.into_raw(name);
        self.insert(name, raw)
    }

    /// Registers a raw function, which sees the arguments as [`Value`]s (keyword arguments
    /// included) and the registry itself (to call other functions by name). For functions that
    /// are polymorphic, take keyword arguments, or must avoid the serde conversion.
    pub fn register_raw(
        &mut self,
        name: &str,
        f: impl Fn(&Registry, Args) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Registry {
        self.insert(name, Arc::new(f))
    }

    fn insert(&mut self, name: &str, f: Arc<RawFunction>) -> &mut Registry {
        Arc::make_mut(&mut self.functions).insert(name.to_string(), f);
        self
    }

    /// Calls the function registered as `name`. A panic inside the function is caught and
    /// reported as `CallError::Failed("panicked: <message>")`; the panic hook still runs (by
    /// default it prints the panic to stderr).
    pub fn call(&self, name: &str, args: Args) -> Result<Value, CallError> {
        let f = self
            .functions
            .get(name)
            .ok_or_else(|| CallError::UnknownFunction(name.to_string()))?;
        match catch_unwind(AssertUnwindSafe(|| f(self, args))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(CallError::Failed(message)),
            Err(payload) => Err(CallError::Failed(format!(
                "panicked: {}",
                panic_message(payload.as_ref())
            ))),
        }
    }

    /// Whether a function is registered as `name` (to reject a graph before running it).
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The registered names, sorted (for registration messages and error reports).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

/// A Rust function or closure that [`Registry::register`] can turn into a [`RawFunction`]:
/// implemented for `Fn(A1, ..., An) -> R` with `n` from 0 to 6, every `Ai: DeserializeOwned`
/// and `R: Serialize`. `M` is a marker type (the function's signature) that lets one trait cover
/// every arity; it is always inferred.
pub trait TypedFunction<M>: Send + Sync + 'static {
    /// Wraps the function: checks the argument count, converts the arguments and the result.
    /// `name` is used in error messages.
    fn into_raw(self, name: &str) -> Arc<RawFunction>;
}

/// Like [`TypedFunction`], for functions returning `Result<T, E>` with `T: Serialize` and
/// `E: Display` (what [`Registry::register_fallible`] takes).
pub trait FallibleFunction<M>: Send + Sync + 'static {
    /// Wraps the function: checks and converts the arguments, turns `Err(e)` into the task's
    /// error message and converts `Ok` results. `name` is used in error messages.
    fn into_raw(self, name: &str) -> Arc<RawFunction>;
}

/// Converts positional argument number `index` (1-based) of `name`.
fn convert_arg<T: DeserializeOwned>(name: &str, index: usize, value: Value) -> Result<T, String> {
    from_value(value).map_err(|e| format!("argument {index} of {name}: {e}"))
}

fn convert_result<T: Serialize>(name: &str, result: &T) -> Result<Value, String> {
    to_value(result).map_err(|e| format!("the result of {name} is not a value: {e}"))
}

macro_rules! impl_typed {
    ($n:literal; $($ty:ident $var:ident $index:literal),*) => {
        impl<F, R, $($ty,)*> TypedFunction<fn($($ty,)*) -> R> for F
        where
            F: Fn($($ty),*) -> R + Send + Sync + 'static,
            R: Serialize,
            $($ty: DeserializeOwned,)*
        {
            fn into_raw(self, name: &str) -> Arc<RawFunction> {
                let name = name.to_string();
                Arc::new(move |_: &Registry, args: Args| {
                    let [$($var),*] = args.exactly::<$n>(&name)?;
                    $(let $var: $ty = convert_arg(&name, $index, $var)?;)*
                    convert_result(&name, &(self)($($var),*))
                })
            }
        }

        impl<F, T, E, $($ty,)*> FallibleFunction<fn($($ty,)*) -> Result<T, E>> for F
        where
            F: Fn($($ty),*) -> Result<T, E> + Send + Sync + 'static,
            T: Serialize,
            E: fmt::Display,
            $($ty: DeserializeOwned,)*
        {
            fn into_raw(self, name: &str) -> Arc<RawFunction> {
                let name = name.to_string();
                Arc::new(move |_: &Registry, args: Args| {
                    let [$($var),*] = args.exactly::<$n>(&name)?;
                    $(let $var: $ty = convert_arg(&name, $index, $var)?;)*
                    match (self)($($var),*) {
                        Ok(result) => convert_result(&name, &result),
                        Err(e) => Err(e.to_string()),
                    }
                })
            }
        }
    };
}

impl_typed!(0;);
impl_typed!(1; A1 a1 1);
impl_typed!(2; A1 a1 1, A2 a2 2);
impl_typed!(3; A1 a1 1, A2 a2 2, A3 a3 3);
impl_typed!(4; A1 a1 1, A2 a2 2, A3 a3 3, A4 a4 4);
impl_typed!(5; A1 a1 1, A2 a2 2, A3 a3 3, A4 a4 4, A5 a5 5);
impl_typed!(6; A1 a1 1, A2 a2 2, A3 a3 3, A4 a4 4, A5 a5 5, A6 a6 6);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(registry: &Registry, name: &str, args: Vec<Value>) -> Result<Value, CallError> {
        registry.call(name, Args::positional(args))
    }

    fn failed(message: &str) -> Result<Value, CallError> {
        Err(CallError::Failed(message.to_string()))
    }

    fn double(x: i64) -> i64 {
        x * 2
    }

    #[test]
    fn closure_types_are_inferred() {
        let mut registry = Registry::new();
        registry.register("inc", |x: i64| x + 1);
        assert_eq!(
            call(&registry, "inc", vec![Value::Int(1)]),
            Ok(Value::Int(2))
        );
    }

    #[test]
    fn function_items_register_and_registration_chains() {
        let mut registry = Registry::new();
        registry
            .register("double", double)
            .register("neg", |x: f64| -x);
        assert_eq!(
            call(&registry, "double", vec![Value::Int(4)]),
            Ok(Value::Int(8))
        );
        assert_eq!(
            call(&registry, "neg", vec![Value::Float(1.5)]),
            Ok(Value::Float(-1.5))
        );
        assert_eq!(registry.names(), vec!["double", "neg"]);
        assert!(registry.contains("double"));
        assert!(!registry.contains("triple"));
    }

    #[test]
    fn argument_types() {
        let mut registry = Registry::new();
        registry
            .register("total", |xs: Vec<i64>| xs.iter().sum::<i64>())
            .register("shout", |s: String| s.to_uppercase())
            .register("half", |x: f64| x / 2.0)
            .register("fma", |a: i64, b: i64, c: i64| a * b + c)
            .register("answer", || 42)
            .register("unit", |_: Value| ())
            .register("maybe", |x: Option<i64>| x.unwrap_or(-1))
            .register("six", |a: i64, b: i64, c: i64, d: i64, e: i64, f: i64| {
                a + b + c + d + e + f
            });
        let ints = |xs: &[i64]| Value::List(xs.iter().map(|&x| Value::Int(x)).collect());
        assert_eq!(
            call(&registry, "total", vec![ints(&[1, 2, 3])]),
            Ok(Value::Int(6))
        );
        assert_eq!(
            call(&registry, "shout", vec![Value::from("hey")]),
            Ok(Value::from("HEY"))
        );
        assert_eq!(
            call(&registry, "half", vec![Value::Float(3.0)]),
            Ok(Value::Float(1.5))
        );
        // An integer converts to an f64 parameter.
        assert_eq!(
            call(&registry, "half", vec![Value::Int(3)]),
            Ok(Value::Float(1.5))
        );
        assert_eq!(
            call(
                &registry,
                "fma",
                vec![Value::Int(2), Value::Int(3), Value::Int(4)]
            ),
            Ok(Value::Int(10))
        );
        assert_eq!(call(&registry, "answer", vec![]), Ok(Value::Int(42)));
        assert_eq!(call(&registry, "unit", vec![Value::Int(1)]), Ok(Value::Nil));
        assert_eq!(
            call(&registry, "maybe", vec![Value::Nil]),
            Ok(Value::Int(-1))
        );
        assert_eq!(
            call(&registry, "six", (1..=6).map(Value::Int).collect()),
            Ok(Value::Int(21))
        );
    }

    #[test]
    fn argument_errors_name_the_function() {
        let mut registry = Registry::new();
        registry
            .register("inc", |x: i64| x + 1)
            .register("answer", || 42)
            .register("fma", |a: i64, b: i64, c: i64| a * b + c);
        assert_eq!(
            call(&registry, "inc", vec![Value::Int(1), Value::Int(2)]),
            failed("inc takes 1 argument, got 2")
        );
        assert_eq!(
            call(&registry, "inc", vec![]),
            failed("inc takes 1 argument, got 0")
        );
        assert_eq!(
            call(&registry, "answer", vec![Value::Nil]),
            failed("answer takes 0 arguments, got 1")
        );
        assert_eq!(
            call(&registry, "fma", vec![Value::Int(1)]),
            failed("fma takes 3 arguments, got 1")
        );
        let with_kwargs = Args {
            args: vec![Value::Int(1)],
            kwargs: vec![("by".to_string(), Value::Int(2))],
        };
        assert_eq!(
            registry.call("inc", with_kwargs),
            failed("inc takes no keyword arguments")
        );
        let Err(CallError::Failed(message)) = call(
            &registry,
            "fma",
            vec![Value::Int(1), Value::from("x"), Value::Int(3)],
        ) else {
            panic!("a str converted to an i64");
        };
        assert!(message.starts_with("argument 2 of fma: "), "{message}");
    }

    #[test]
    fn fallible_functions() {
        let mut registry = Registry::new();
        registry.register_fallible("parse", |s: String| s.trim().parse::<i64>());
        registry.register_fallible("check", |x: i64, limit: i64| {
            if x <= limit {
                Ok(x)
            } else {
                Err(format!("{x} is over {limit}"))
            }
        });
        assert_eq!(
            call(&registry, "parse", vec![Value::from(" 12 ")]),
            Ok(Value::Int(12))
        );
        assert_eq!(
            call(&registry, "parse", vec![Value::from("x")]),
            failed("invalid digit found in string")
        );
        assert_eq!(
            call(&registry, "check", vec![Value::Int(3), Value::Int(2)]),
            failed("3 is over 2")
        );
        assert_eq!(
            call(&registry, "parse", vec![]),
            failed("parse takes 1 argument, got 0")
        );
    }

    #[test]
    fn raw_functions_see_kwargs_and_the_registry() {
        let mut registry = Registry::new();
        registry.register("inc", |x: i64| x + 1);
        registry.register_raw("twice", |registry, args| {
            let name = args
                .kwargs
                .iter()
                .find(|(k, _)| k == "fn")
                .and_then(|(_, v)| v.as_str())
                .ok_or("twice needs fn=")?
                .to_string();
            let once = registry
                .call(&name, Args::positional(args.args))
                .map_err(|e| e.to_string())?;
            registry
                .call(&name, Args::positional(vec![once]))
                .map_err(|e| e.to_string())
        });
        let args = Args {
            args: vec![Value::Int(1)],
            kwargs: vec![("fn".to_string(), Value::from("inc"))],
        };
        assert_eq!(registry.call("twice", args), Ok(Value::Int(3)));
        assert_eq!(call(&registry, "twice", vec![]), failed("twice needs fn="));
    }

    #[test]
    fn unknown_functions() {
        let registry = Registry::new();
        let err = call(&registry, "nope", vec![]).unwrap_err();
        assert_eq!(err, CallError::UnknownFunction("nope".to_string()));
        assert_eq!(
            err.to_string(),
            "no function named \"nope\" is registered on this worker"
        );
    }

    #[test]
    fn panics_are_caught() {
        let mut registry = Registry::new();
        registry
            .register("boom", |x: i64| -> i64 { panic!("boom {x}") })
            .register("static", || -> i64 { panic!("static message") })
            .register("index", |xs: Vec<i64>| xs[10]);
        assert_eq!(
            call(&registry, "boom", vec![Value::Int(7)]),
            failed("panicked: boom 7")
        );
        assert_eq!(
            call(&registry, "static", vec![]),
            failed("panicked: static message")
        );
        let Err(CallError::Failed(message)) = call(&registry, "index", vec![Value::List(vec![])])
        else {
            panic!("indexing an empty vector succeeded");
        };
        assert!(
            message.starts_with("panicked: index out of bounds"),
            "{message}"
        );
        // The registry still works after a panic.
        assert!(registry.contains("boom"));
    }

    #[test]
    fn clones_share_until_changed() {
        let mut a = Registry::new();
        a.register("inc", |x: i64| x + 1);
        let mut b = a.clone();
        b.register("dec", |x: i64| x - 1);
        assert_eq!(a.names(), vec!["inc"]);
        assert_eq!(b.names(), vec!["dec", "inc"]);
        // Re-registering replaces.
        b.register("inc", |x: i64| x + 100);
        assert_eq!(call(&b, "inc", vec![Value::Int(1)]), Ok(Value::Int(101)));
        assert_eq!(call(&a, "inc", vec![Value::Int(1)]), Ok(Value::Int(2)));
    }

    #[test]
    fn registry_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Registry>();
    }
}
