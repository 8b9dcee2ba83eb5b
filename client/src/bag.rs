//! [`Bag`]: a lazy, partitioned sequence, as dask's Bag, built from the workers' standard
//! functions.
//!
//! ```no_run
//! # use zask_client::{Bag, Client};
//! # let client = Client::connect("tcp://127.0.0.1:8787").unwrap();
//! let bag = Bag::from_sequence(0..5, 2).map("inc");
//! assert_eq!(bag.npartitions(), 2);
//! let total = bag.sum().compute(&client).unwrap();          // 15
//! client.set_collection("numbers", &bag.to_collection()).unwrap();
//! let same = zask_client::Bag::from_collection(&client.get_collection("numbers").unwrap());
//! ```
//!
//! A bag is a graph with one key per partition. Each operation adds one task per partition
//! (`map` → the standard `map`, `filter` → `filter`) and reductions add a per-partition task
//! and one combining task. Keys are deterministic: `"<operation>-<token>-<partition>"`, where
//! the token is a stable hash of the operation, its arguments and its input's token (like
//! dask's `tokenize`), so two clients that build the same bag get the same keys, and the
//! scheduler reuses what one of them computed and kept.

use zask_core::graph::{key, list, task, Graph, Node};
use zask_core::token::tokenize;
use zask_core::{Collection, Keys, Value};

use crate::client::Client;
use crate::error::Error;

/// A lazy, partitioned sequence of values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bag {
    graph: Graph,
    partitions: Vec<String>,
    token: String,
}

/// A single lazy value (a bag's reduction): a graph and the key holding the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    graph: Graph,
    key: String,
}

impl Bag {
    /// A bag of `items` split into `npartitions` partitions of equal size (the last may be
    /// smaller), as dask's `from_sequence`: 5 items in 2 partitions are `[0, 1, 2]`, `[3, 4]`.
    pub fn from_sequence<T: Into<Value>>(
        items: impl IntoIterator<Item = T>,
        npartitions: usize,
    ) -> Bag {
        let items: Vec<Value> = items.into_iter().map(Into::into).collect();
        let npartitions = npartitions.max(1);
        let size = items.len().div_ceil(npartitions).max(1);
        let token = tokenize(&[
            &Value::from("from_sequence"),
            &Value::List(items.clone()),
            &Value::from(npartitions),
        ]);
        let mut graph = Graph::new();
        let mut partitions = Vec::new();
        for (i, chunk) in items.chunks(size).enumerate() {
            let k = format!("from_sequence-{token}-{i}");
            graph.insert(k.clone(), Node::Literal(Value::List(chunk.to_vec())));
            partitions.push(k);
        }
        if partitions.is_empty() {
            let k = format!("from_sequence-{token}-0");
            graph.insert(k.clone(), Node::Literal(Value::List(Vec::new())));
            partitions.push(k);
        }
        Bag {
            graph,
            partitions,
            token,
        }
    }

    /// How many partitions the bag has.
    pub fn npartitions(&self) -> usize {
        self.partitions.len()
    }

    /// The partitions' keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.partitions
    }

    /// The bag's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Applies the worker function `func` to every item.
    pub fn map(&self, func: &str) -> Bag {
        self.per_partition("map", func, |p| task("map", (func, key(p))))
    }

    /// Keeps the items for which the worker function `func` is truthy.
    pub fn filter(&self, func: &str) -> Bag {
        self.per_partition("filter", func, |p| task("filter", (func, key(p))))
    }

    /// The sum of the items.
    pub fn sum(&self) -> Item {
        self.reduction(
            "sum",
            &Value::Nil,
            |p| task("sum", (key(p),)),
            |parts| task("sum", (list(parts),)),
        )
    }

    /// The number of items.
    pub fn count(&self) -> Item {
        self.reduction(
            "count",
            &Value::Nil,
            |p| task("len", (key(p),)),
            |parts| task("sum", (list(parts),)),
        )
    }

    /// Folds the items with the two-argument worker function `func`, starting from `initial`
    /// in each partition and again when combining partitions (so `initial` should be neutral
    /// for `func`, as in dask: `fold("add", 0)`).
    pub fn fold(&self, func: &str, initial: impl Into<Value>) -> Item {
        let initial = initial.into();
        let arg = Value::List(vec![Value::from(func), initial.clone()]);
        self.reduction(
            "fold",
            &arg,
            |p| task("reduce", (func, key(p), Node::Literal(initial.clone()))),
            |parts| {
                task(
                    "reduce",
                    (func, list(parts), Node::Literal(initial.clone())),
                )
            },
        )
    }

    /// All items in one list.
    pub fn to_list(&self) -> Item {
        let token = self.derive("to_list", &Value::Nil);
        let k = format!("to_list-{token}");
        let mut graph = self.graph.clone();
        let parts = self
            .partitions
            .iter()
            .map(|p| key(p.as_str()))
            .collect::<Vec<_>>();
        graph.insert(k.clone(), task("concat", (list(parts),)));
        Item { graph, key: k }
    }

    /// Computes the bag: all its items, in order.
    pub fn compute(&self, client: &Client) -> Result<Vec<Value>, Error> {
        match self.to_list().compute(client)? {
            Value::List(items) => Ok(items),
            other => Err(Error::Protocol(format!(
                "a bag computed to a {}, not a list",
                other.type_name()
            ))),
        }
    }

    /// The bag as a collection to store on the scheduler: kind `"bag"`, its partitions as
    /// keys, `meta` `{"npartitions": n, "token": t}`.
    pub fn to_collection(&self) -> Collection {
        Collection {
            kind: "bag".to_string(),
            graph: self.graph.clone(),
            keys: Keys::Many(self.partitions.iter().cloned().map(Keys::One).collect()),
            meta: Value::Map(vec![
                (
                    Value::from("npartitions"),
                    Value::from(self.partitions.len()),
                ),
                (Value::from("token"), Value::from(self.token.as_str())),
            ]),
        }
    }

    /// The bag a collection holds; an error if the collection is not a bag.
    pub fn from_collection(collection: &Collection) -> Result<Bag, Error> {
        if collection.kind != "bag" {
            return Err(Error::Protocol(format!(
                "the collection is a {:?}, not a bag",
                collection.kind
            )));
        }
        let Keys::Many(keys) = &collection.keys else {
            return Err(Error::Protocol(
                "a bag's keys are a list of partitions".into(),
            ));
        };
        let partitions = keys
            .iter()
            .map(|k| match k {
                Keys::One(k) => Ok(k.clone()),
                Keys::Many(_) => Err(Error::Protocol("a bag's partition keys are strings".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let token = match collection.meta.get("token") {
            Some(Value::Str(t)) => t.clone(),
            _ => tokenize(&[&collection.keys.to_value()]),
        };
        Ok(Bag {
            graph: collection.graph.clone(),
            partitions,
            token,
        })
    }

    /// The token of an operation `name` with argument `arg` applied to this bag.
    fn derive(&self, name: &str, arg: &Value) -> String {
        tokenize(&[&Value::from(name), arg, &Value::from(self.token.as_str())])
    }

    fn per_partition(&self, name: &str, func: &str, make: impl Fn(&str) -> Node) -> Bag {
        let token = self.derive(name, &Value::from(func));
        let mut graph = self.graph.clone();
        let mut partitions = Vec::with_capacity(self.partitions.len());
        for (i, p) in self.partitions.iter().enumerate() {
            let k = format!("{name}-{token}-{i}");
            graph.insert(k.clone(), make(p));
            partitions.push(k);
        }
        Bag {
            graph,
            partitions,
            token,
        }
    }

    fn reduction(
        &self,
        name: &str,
        arg: &Value,
        per_partition: impl Fn(&str) -> Node,
        combine: impl Fn(Vec<Node>) -> Node,
    ) -> Item {
        let token = self.derive(name, arg);
        let mut graph = self.graph.clone();
        let mut parts = Vec::with_capacity(self.partitions.len());
        for (i, p) in self.partitions.iter().enumerate() {
            let k = format!("{name}-part-{token}-{i}");
            graph.insert(k.clone(), per_partition(p));
            parts.push(key(k));
        }
        let k = format!("{name}-{token}");
        graph.insert(k.clone(), combine(parts));
        Item { graph, key: k }
    }
}

impl Item {
    /// Computes the value.
    pub fn compute(&self, client: &Client) -> Result<Value, Error> {
        client.get(&self.graph, self.key.as_str())
    }

    /// The key holding the value.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The graph computing it.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The item as a collection to store on the scheduler: kind `"item"`.
    pub fn to_collection(&self) -> Collection {
        Collection {
            kind: "item".to_string(),
            graph: self.graph.clone(),
            keys: Keys::One(self.key.clone()),
            meta: Value::Map(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_sequence_partitions_like_dask() {
        let bag = Bag::from_sequence(0..5, 2);
        assert_eq!(bag.npartitions(), 2);
        let parts: Vec<&Node> = bag
            .keys()
            .iter()
            .filter_map(|k| bag.graph().get(k))
            .collect();
        assert_eq!(
            parts,
            vec![
                &Node::Literal(Value::from(vec![0, 1, 2])),
                &Node::Literal(Value::from(vec![3, 4]))
            ]
        );
        assert_eq!(Bag::from_sequence(Vec::<i64>::new(), 3).npartitions(), 1);
    }

    #[test]
    fn keys_are_deterministic_and_distinct_per_operation() {
        let a = Bag::from_sequence(0..5, 2).map("inc");
        let b = Bag::from_sequence(0..5, 2).map("inc");
        assert_eq!(a, b);
        assert_ne!(a.keys(), Bag::from_sequence(0..5, 2).map("dec").keys());
        assert_ne!(a.keys(), Bag::from_sequence(0..6, 2).map("inc").keys());
        assert!(a.keys()[0].starts_with("map-"));
        assert_eq!(a.sum().key(), b.sum().key());
        assert_ne!(a.sum().key(), a.count().key());
    }

    #[test]
    fn round_trips_through_a_collection() {
        let bag = Bag::from_sequence(0..5, 2).map("inc").filter("is_even");
        let c = bag.to_collection();
        assert_eq!(c.kind, "bag");
        assert_eq!(c.meta.get("npartitions"), Some(&Value::Int(2)));
        let wire = Collection::from_value(&c.to_value()).unwrap();
        assert_eq!(Bag::from_collection(&wire).unwrap(), bag);
        let not_a_bag = Collection::graph(bag.graph().clone(), bag.keys()[0].as_str());
        assert!(Bag::from_collection(&not_a_bag).is_err());
    }
}
