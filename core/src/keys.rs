//! [`Keys`]: which keys a `get` asks for, and the shape of its answer.
//!
//! One key gives its value; a list of keys gives a list; nested lists give nested lists
//! (`[["z"], "y"]` gives `[[7], 4]`), as in dask's `get`.

use std::collections::HashMap;

use crate::value::Value;

/// One key, or a (nested) list of keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Keys {
    /// A key.
    One(String),
    /// A list of keys, or of lists.
    Many(Vec<Keys>),
}

impl Keys {
    /// Every key, depth first, with repeats removed (linear: a million keys take
    /// milliseconds).
    pub fn flatten(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
        self.walk(&mut |k| {
            if seen.insert(k) {
                out.push(k.to_string());
            }
        });
        out
    }

    /// Calls `f` on every key, depth first, repeats included (iteratively: keys nested
    /// deeply cost no recursion).
    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        let mut stack: Vec<std::slice::Iter<'a, Keys>> = Vec::new();
        match self {
            Keys::One(k) => return f(k),
            Keys::Many(l) => stack.push(l.iter()),
        }
        while let Some(top) = stack.last_mut() {
            match top.next() {
                None => {
                    stack.pop();
                }
                Some(Keys::One(k)) => f(k),
                Some(Keys::Many(l)) => stack.push(l.iter()),
            }
        }
    }

    /// Builds the answer: the value of each key, in the keys' shape. A key missing from
    /// `values` gives nil (callers check completeness first).
    pub fn shape(&self, values: &HashMap<String, Value>) -> Value {
        match self {
            Keys::One(k) => values.get(k).cloned().unwrap_or(Value::Nil),
            Keys::Many(l) => Value::List(l.iter().map(|k| k.shape(values)).collect()),
        }
    }

    /// The wire form: a string, or nested lists of strings.
    pub fn to_value(&self) -> Value {
        match self {
            Keys::One(k) => Value::Str(k.clone()),
            Keys::Many(l) => Value::List(l.iter().map(Keys::to_value).collect()),
        }
    }

    /// Parses the wire form; anything but strings and lists is an error, and so are lists
    /// nested deeper than [`crate::value::MAX_NESTING`].
    pub fn from_value(value: &Value) -> Result<Keys, String> {
        if value.nesting(crate::value::MAX_NESTING).is_err() {
            return Err(format!(
                "keys nest more than {} levels of lists",
                crate::value::MAX_NESTING
            ));
        }
        Keys::parse(value)
    }

    fn parse(value: &Value) -> Result<Keys, String> {
        match value {
            Value::Str(s) => Ok(Keys::One(s.clone())),
            Value::List(l) => Ok(Keys::Many(
                l.iter().map(Keys::parse).collect::<Result<_, _>>()?,
            )),
            other => Err(format!(
                "keys are a string or nested lists of strings, found {}",
                other.type_name()
            )),
        }
    }
}

impl From<&str> for Keys {
    fn from(k: &str) -> Keys {
        Keys::One(k.to_string())
    }
}
impl From<String> for Keys {
    fn from(k: String) -> Keys {
        Keys::One(k)
    }
}
impl<T: Into<Keys>> From<Vec<T>> for Keys {
    fn from(l: Vec<T>) -> Keys {
        Keys::Many(l.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Keys> + Clone> From<&[T]> for Keys {
    fn from(l: &[T]) -> Keys {
        Keys::Many(l.iter().cloned().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_shape_the_answer() {
        let keys = Keys::Many(vec![Keys::from(vec!["z"]), Keys::from("y")]);
        assert_eq!(keys.flatten(), vec!["z", "y"]);
        let values = HashMap::from([
            ("z".to_string(), Value::Int(7)),
            ("y".to_string(), Value::Int(4)),
        ]);
        assert_eq!(
            keys.shape(&values),
            Value::List(vec![Value::List(vec![Value::Int(7)]), Value::Int(4)])
        );
        assert_eq!(Keys::from_value(&keys.to_value()).unwrap(), keys);
        assert!(Keys::from_value(&Value::Int(1)).is_err());
        assert_eq!(keys.to_value().nesting(usize::MAX), Ok(2));
    }

    /// A million requested keys, half of them repeats, flatten in linear time (this took
    /// minutes when repeats were found by a scan).
    #[test]
    fn a_million_keys_flatten_quickly_in_order() {
        let keys = Keys::Many(
            (0..1_000_000)
                .map(|i| Keys::One(format!("k{}", i % 500_000)))
                .collect(),
        );
        let start = std::time::Instant::now();
        let flat = keys.flatten();
        assert_eq!(flat.len(), 500_000);
        assert_eq!(flat[0], "k0");
        assert_eq!(flat[499_999], "k499999");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "flattening took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn keys_nested_too_deep_are_refused_by_name() {
        let mut deep = Value::from("k");
        for _ in 0..=crate::value::MAX_NESTING {
            deep = Value::List(vec![deep]);
        }
        let err = Keys::from_value(&deep).unwrap_err();
        assert!(err.contains("nest"), "{err}");
    }
}
