//! Evaluating a node: turning a task's node and its input values into its result.
//!
//! Literals are cloned, references looked up in the inputs, lists and maps evaluated item by
//! item, and tasks (nested ones too) call registered functions after evaluating their
//! arguments, so `{"fn": "add", "args": [{"fn": "inc", "args": [1]}, 2]}` is 4.

use rustc_hash::FxHashMap as HashMap;

use zask_core::graph::Node;
use zask_core::Value;

use crate::registry::{Args, CallError, Registry};

/// Why evaluating a node failed, in the terms a `report` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    /// `task_failed`, `unknown_function` or `missing_dependency`.
    pub kind: &'static str,
    /// The function that failed, if one did.
    pub function: Option<String>,
    pub message: String,
}

/// Evaluates `node` with `inputs` holding the values of the keys it references.
pub fn evaluate(
    node: &Node,
    inputs: &HashMap<String, Value>,
    registry: &Registry,
) -> Result<Value, EvalError> {
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Ref(k) => inputs.get(k).cloned().ok_or_else(|| EvalError {
            kind: "missing_dependency",
            function: None,
            message: format!("input {k:?} is not on this worker"),
        }),
        Node::List(items) => items
            .iter()
            .map(|n| evaluate(n, inputs, registry))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
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
                    kind: "unknown_function",
                    message: format!("no function named {f:?} is registered on this worker"),
                    function: Some(f),
                },
                CallError::Failed(message) => EvalError {
                    kind: "task_failed",
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

    #[test]
    fn evaluates_nested_tasks_lists_and_refs() {
        let registry = Registry::with_stdlib();
        let inputs: HashMap<String, Value> =
            [("x".to_string(), Value::Int(10))].into_iter().collect();
        let node = task("add", (task("inc", (1,)), key("x")));
        assert_eq!(evaluate(&node, &inputs, &registry), Ok(Value::Int(12)));
        let node = list(vec![key("x"), Node::from(2)]);
        assert_eq!(
            evaluate(&node, &inputs, &registry),
            Ok(Value::List(vec![Value::Int(10), Value::Int(2)]))
        );
    }

    #[test]
    fn errors_name_the_function() {
        let registry = Registry::with_stdlib();
        let err = evaluate(&task("fail", ("boom",)), &HashMap::default(), &registry).unwrap_err();
        assert_eq!(err.kind, "task_failed");
        assert_eq!(err.function.as_deref(), Some("fail"));
        assert!(err.message.contains("boom"));
        let err = evaluate(&task("nope", ()), &HashMap::default(), &registry).unwrap_err();
        assert_eq!(err.kind, "unknown_function");
        let err = evaluate(&key("q"), &HashMap::default(), &registry).unwrap_err();
        assert_eq!(err.kind, "missing_dependency");
    }
}
