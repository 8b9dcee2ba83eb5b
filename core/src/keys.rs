//! [`Keys`]: which keys a `get` asks for, and the shape of its answer.
//!
//! One key gives its value; a list of keys gives a list; nested lists give nested lists
//! (`[["z"], "y"]` gives `[[7], 4]`), as in dask's `get`.

use std::collections::HashMap;

use crate::value::Value;

/// One key, or a (nested) list of keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Keys {
    One(String),
    Many(Vec<Keys>),
}

impl Keys {
    /// Every key, depth first, with repeats removed.
    pub fn flatten(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |k| {
            if !out.iter().any(|o: &String| o == k) {
                out.push(k.to_string());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Keys::One(k) => f(k),
            Keys::Many(l) => l.iter().for_each(|k| k.walk(f)),
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

    /// Parses the wire form; anything but strings and lists is an error.
    pub fn from_value(value: &Value) -> Result<Keys, String> {
        match value {
            Value::Str(s) => Ok(Keys::One(s.clone())),
            Value::List(l) => Ok(Keys::Many(
                l.iter().map(Keys::from_value).collect::<Result<_, _>>()?,
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
    }
}
