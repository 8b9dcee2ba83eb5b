//! Evaluating a node: turning a task's node and its input values into its result.
//!
//! Literals are cloned, references take their input values, lists and maps are evaluated
//! item by item, and tasks (nested ones too) call registered functions after evaluating their
//! arguments, so `{"fn": "add", "args": [{"fn": "inc", "args": [1]}, 2]}` is 4.
//!
//! Inputs are given by position: one value per reference, in the order
//! [`Node::for_each_ref`] visits them (the order evaluation meets them too), so a task over a
//! million keys is evaluated without a map of its inputs.

use zask_core::graph::Node;
use zask_core::{ErrorKind, Value};

use crate::registry::{Args, CallError, Registry};

/// Why evaluating a node failed, in the terms a `report` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    /// `task_failed`, `unknown_function` or `missing_dependency`.
    pub kind: ErrorKind,
    /// The function that failed, if one did.
    pub function: Option<String>,
    /// What went wrong, for the user.
    pub message: String,
}

/// Evaluates `node`; `inputs` yields the value of each reference in `for_each_ref` order.
pub fn evaluate(
    node: &Node,
    inputs: &mut impl Iterator<Item = Value>,
    registry: &Registry,
) -> Result<Value, EvalError> {
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Ref(k) => inputs.next().ok_or_else(|| EvalError {
            kind: ErrorKind::MissingDependency,
            function: None,
            message: format!("input {k:?} is not on this worker"),
        }),
        Node::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for n in items {
                out.push(evaluate(n, inputs, registry)?);
            }
            Ok(Value::List(out))
        }
        Node::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, n) in entries {
                out.push((k.clone(), evaluate(n, inputs, registry)?));
            }
            Ok(Value::Map(out))
        }
        Node::Task(task) => {
            let mut args = Args {
                args: Vec::with_capacity(task.args.len()),
                kwargs: Vec::with_capacity(task.kwargs.len()),
            };
            for a in &task.args {
                args.args.push(evaluate(a, inputs, registry)?);
            }
            for (name, n) in &task.kwargs {
                args.kwargs
                    .push((name.clone(), evaluate(n, inputs, registry)?));
            }
            registry.call(&task.func, args).map_err(|e| match e {
                CallError::UnknownFunction(f) => EvalError {
                    kind: ErrorKind::UnknownFunction,
                    message: format!("no function named {f:?} is registered on this worker"),
                    function: Some(f),
                },
                CallError::Failed(message) => EvalError {
                    kind: ErrorKind::TaskFailed,
                    function: Some(task.func.clone()),
                    message,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zask_core::graph::{key, list, task};

    fn eval(node: &Node, inputs: Vec<Value>) -> Result<Value, EvalError> {
        evaluate(node, &mut inputs.into_iter(), &Registry::with_stdlib())
    }

    #[test]
    fn evaluates_nested_tasks_lists_and_refs() {
        let node = task("add", (task("inc", (1,)), key("x")));
        assert_eq!(eval(&node, vec![Value::Int(10)]), Ok(Value::Int(12)));
        let node = list(vec![key("x"), Node::from(2)]);
        assert_eq!(
            eval(&node, vec![Value::Int(10)]),
            Ok(Value::List(vec![Value::Int(10), Value::Int(2)]))
        );
    }

    #[test]
    fn inputs_are_taken_in_reference_order() {
        // Lists in order, nested tasks in place, a repeated key once per reference.
        let node = list(vec![
            key("a"),
            list(vec![key("b"), key("a")]),
            task("inc", (key("c"),)),
        ]);
        let mut order = Vec::new();
        node.for_each_ref(&mut |k| order.push(k.to_string()));
        assert_eq!(order, vec!["a", "b", "a", "c"]);
        let inputs = vec![Value::Int(1), Value::Int(2), Value::Int(1), Value::Int(3)];
        let expected = Value::List(vec![
            Value::Int(1),
            Value::List(vec![Value::Int(2), Value::Int(1)]),
            Value::Int(4),
        ]);
        assert_eq!(eval(&node, inputs), Ok(expected));
        // Positional arguments before keyword arguments.
        let mut registry = Registry::new();
        registry.register_raw("echo", |_, args| {
            let mut all = args.args;
            all.extend(args.kwargs.into_iter().map(|(_, v)| v));
            Ok(Value::List(all))
        });
        let node = task("echo", (key("p"),)).kwarg("k", key("q"));
        let inputs = [Value::Int(1), Value::Int(2)];
        let expected = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(
            evaluate(&node, &mut inputs.into_iter(), &registry),
            Ok(expected)
        );
    }

    #[test]
    fn errors_name_the_function() {
        let err = eval(&task("fail", ("boom",)), Vec::new()).unwrap_err();
        assert_eq!(err.kind, "task_failed");
        assert_eq!(err.function.as_deref(), Some("fail"));
        assert!(err.message.contains("boom"));
        let err = eval(&task("nope", ()), Vec::new()).unwrap_err();
        assert_eq!(err.kind, "unknown_function");
        let err = eval(&key("q"), Vec::new()).unwrap_err();
        assert_eq!(err.kind, "missing_dependency");
    }
}
