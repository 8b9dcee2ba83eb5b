//! Collections: the named graphs clients store on the scheduler.
//!
//! [`CollectionStore`] is plain storage: in memory by default; with `--state-dir DIR` in a sled
//! database under DIR, so collections survive a scheduler restart. Only graphs are stored, never
//! data. `Collections` answers the clients' requests about them (validation, the size limit,
//! the replies), so the loop (`server.rs`) only passes them on. The task state machine never
//! sees collections.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zask_core::protocol::{CollectionSummary, ErrorInfo, ErrorKind, ToClient};
use zask_core::{collection, Collection, Keys, Node, Value};

/// What is stored per name: the collection's wire form and what a listing shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    kind: String,
    tasks: u64,
    collection: Value,
}

/// The collections, by name.
pub enum CollectionStore {
    /// In memory: gone when the scheduler stops (no `--state-dir`).
    Memory(BTreeMap<String, Vec<u8>>),
    /// In a sled database under `--state-dir`: kept across restarts.
    Sled(sled::Db),
}

/// A storage operation failed (the disk, a corrupt entry).
#[derive(Debug, thiserror::Error)]
#[error("collection storage: {0}")]
pub struct StorageError(pub String);

fn sled_err(e: sled::Error) -> StorageError {
    StorageError(e.to_string())
}

impl CollectionStore {
    /// Collections in memory (`None`) or in a sled database under `state_dir`.
    pub fn open(state_dir: Option<&Path>) -> Result<CollectionStore, StorageError> {
        match state_dir {
            None => Ok(CollectionStore::Memory(BTreeMap::new())),
            Some(dir) => {
                let path = dir.join("collections");
                sled::open(&path)
                    .map(CollectionStore::Sled)
                    .map_err(|e| StorageError(format!("cannot open {}: {e}", path.display())))
            }
        }
    }

    /// Encodes `collection` for storage; returns the bytes and their size.
    pub fn encode(collection: &Collection) -> Result<Vec<u8>, StorageError> {
        let stored = Stored {
            kind: collection.kind.clone(),
            tasks: collection.graph.len() as u64,
            collection: collection.to_value(),
        };
        rmp_serde::to_vec_named(&stored).map_err(|e| StorageError(e.to_string()))
    }

    /// Stores encoded bytes under `name`; returns whether a collection was replaced.
    pub fn set(&mut self, name: &str, encoded: Vec<u8>) -> Result<bool, StorageError> {
        match self {
            CollectionStore::Memory(map) => Ok(map.insert(name.to_string(), encoded).is_some()),
            CollectionStore::Sled(db) => {
                let old = db.insert(name.as_bytes(), encoded).map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
                Ok(old.is_some())
            }
        }
    }

    /// The collection stored under `name`, in wire form.
    pub fn get(&self, name: &str) -> Result<Option<Value>, StorageError> {
        let bytes = match self {
            CollectionStore::Memory(map) => map.get(name).cloned(),
            CollectionStore::Sled(db) => db
                .get(name.as_bytes())
                .map_err(sled_err)?
                .map(|b| b.to_vec()),
        };
        match bytes {
            None => Ok(None),
            Some(b) => decode(&b).map(|s| Some(s.collection)),
        }
    }

    /// Deletes `name`; returns whether it existed.
    pub fn delete(&mut self, name: &str) -> Result<bool, StorageError> {
        match self {
            CollectionStore::Memory(map) => Ok(map.remove(name).is_some()),
            CollectionStore::Sled(db) => {
                let old = db.remove(name.as_bytes()).map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
                Ok(old.is_some())
            }
        }
    }

    /// Every collection's summary, sorted by name.
    pub fn list(&self) -> Result<Vec<CollectionSummary>, StorageError> {
        let entries: Vec<(String, Vec<u8>)> = match self {
            CollectionStore::Memory(map) => {
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            CollectionStore::Sled(db) => db
                .iter()
                .map(|r| {
                    r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
                        .map_err(sled_err)
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(entries
            .into_iter()
            .map(|(name, bytes)| {
                let (kind, tasks) = summary(&bytes).unwrap_or_else(|| {
                    log::error!(
                        "collection {name:?} is unreadable in storage; listed as such (delete it \
                         with `zask collections delete`)"
                    );
                    (UNREADABLE.to_string(), 0)
                });
                CollectionSummary {
                    name,
                    kind,
                    tasks,
                    nbytes: bytes.len() as u64,
                }
            })
            .collect())
    }
}

/// The answers to clients' collection requests: a store, and the largest collection it takes.
pub(crate) struct Collections {
    store: CollectionStore,
    max_size: usize,
}

impl Collections {
    /// Requests answered from `store`, refusing collections over `max_size` bytes (stored form).
    pub(crate) fn new(store: CollectionStore, max_size: usize) -> Collections {
        Collections { store, max_size }
    }

    /// `set_collection`: validates and stores a collection; the reply says whether one was
    /// replaced.
    pub(crate) fn on_set(&mut self, request: u64, name: String, collection: &Value) -> ToClient {
        let error = |kind: ErrorKind, message: String| ToClient::Error {
            request,
            error: ErrorInfo::new(kind, message),
        };
        if let Err(e) = collection::check_name(&name) {
            return error(ErrorKind::BadRequest, e.0);
        }
        let parsed = match Collection::from_value(collection) {
            Ok(c) => c,
            Err(e) => return error(ErrorKind::InvalidGraph, format!("collection {name:?}: {e}")),
        };
        if let Err(e) = check_kind(&parsed) {
            return error(
                ErrorKind::InvalidGraph,
                format!("collection {name:?} of kind {:?}: {e}", parsed.kind),
            );
        }
        let encoded = match CollectionStore::encode(&parsed) {
            Ok(b) => b,
            Err(e) => return storage_error(request, e),
        };
        if encoded.len() > self.max_size {
            return error(
                ErrorKind::TooLarge,
                format!(
                    "collection {name:?} takes {} bytes, over the limit of {} \
                     (zask-scheduler --max-collection-size)",
                    encoded.len(),
                    self.max_size
                ),
            );
        }
        match self.store.set(&name, encoded) {
            Ok(replaced) => {
                log::info!(
                    "collection {name:?} ({}) {}",
                    parsed.kind,
                    if replaced { "replaced" } else { "stored" }
                );
                ToClient::CollectionStored {
                    request,
                    name,
                    replaced,
                }
            }
            Err(e) => storage_error(request, e),
        }
    }

    /// `get_collection`: the collection stored under `name`.
    pub(crate) fn on_get(&self, request: u64, name: String) -> ToClient {
        match self.store.get(&name) {
            Ok(Some(collection)) => ToClient::Collection {
                request,
                name,
                collection,
            },
            Ok(None) => unknown_collection(request, &name),
            Err(e) => storage_error(request, e),
        }
    }

    /// `list_collections`: every collection's summary.
    pub(crate) fn on_list(&self, request: u64) -> ToClient {
        match self.store.list() {
            Ok(collections) => ToClient::Collections {
                request,
                collections,
            },
            Err(e) => storage_error(request, e),
        }
    }

    /// `delete_collection`: deletes the collection stored under `name`.
    pub(crate) fn on_delete(&mut self, request: u64, name: String) -> ToClient {
        match self.store.delete(&name) {
            Ok(true) => ToClient::CollectionDeleted { request, name },
            Ok(false) => unknown_collection(request, &name),
            Err(e) => storage_error(request, e),
        }
    }
}

/// The answer to a request naming a collection that is not stored.
/// Checks a collection has the shape its kind says, so that a client fetching it gets what the
/// kind promises (refused at `set_collection`, not when someone computes it):
///
/// - `bag`: its keys are the flat list of its partitions' keys, at least one; a partition
///   given as a literal is a list (of the bag's items); `meta`'s `npartitions`, if given, is
///   the number of partitions, and its `token` a string.
/// - `item` (a single lazy value): its keys are one key.
/// - `graph`, and kinds this scheduler does not know, are any graph and keys.
fn check_kind(c: &Collection) -> Result<(), String> {
    match c.kind.as_str() {
        "bag" => check_bag(c),
        "item" => match &c.keys {
            Keys::One(_) => Ok(()),
            Keys::Many(_) => Err(
                "an item is one value: its keys are one key, not a list (store a list of keys \
                 as kind \"graph\")"
                    .to_string(),
            ),
        },
        _ => Ok(()),
    }
}

fn check_bag(c: &Collection) -> Result<(), String> {
    let partitions: Vec<&str> = match &c.keys {
        Keys::One(k) => {
            return Err(format!(
                "a bag's keys are the list of its partitions' keys, got the single key {k:?} \
                 (store a plain graph as kind \"graph\")"
            ))
        }
        Keys::Many(keys) => keys
            .iter()
            .map(|k| match k {
                Keys::One(k) => Ok(k.as_str()),
                Keys::Many(_) => Err(
                    "a bag's keys are a flat list of its partitions' keys, not nested lists"
                        .to_string(),
                ),
            })
            .collect::<Result<_, _>>()?,
    };
    if partitions.is_empty() {
        return Err("a bag has at least one partition; its keys are an empty list".to_string());
    }
    for p in &partitions {
        let not_a_list = match c.graph.get(p) {
            Some(Node::Literal(Value::List(_))) | Some(Node::List(_)) => None,
            Some(Node::Literal(v)) => Some(format!("the literal {}", v.type_name())),
            Some(Node::Map(_)) => Some("a map".to_string()),
            // A task or a reference: its value is known once computed.
            _ => None,
        };
        if let Some(what) = not_a_list {
            return Err(format!(
                "partition {p:?} is {what}, not a list of items (a bag's keys are its \
                 partitions; store a plain graph as kind \"graph\")"
            ));
        }
    }
    match c.meta.get("npartitions") {
        None => {}
        Some(Value::Int(n)) if usize::try_from(*n).ok() == Some(partitions.len()) => {}
        Some(other) => {
            return Err(format!(
                "meta's npartitions is {}, but the bag has {} partitions (keys)",
                other.to_json(),
                partitions.len()
            ))
        }
    }
    match c.meta.get("token") {
        None | Some(Value::Str(_)) => Ok(()),
        Some(other) => Err(format!(
            "meta's token is a {}, not a string",
            other.type_name()
        )),
    }
}

fn unknown_collection(request: u64, name: &str) -> ToClient {
    ToClient::Error {
        request,
        error: ErrorInfo::new(
            ErrorKind::UnknownCollection,
            format!("no collection named {name:?}; `zask collections list` shows the stored ones"),
        ),
    }
}

/// The answer to a request the store failed (logged: the disk, a corrupt entry).
fn storage_error(request: u64, e: StorageError) -> ToClient {
    log::error!("{e}");
    ToClient::Error {
        request,
        error: ErrorInfo::new(ErrorKind::Storage, e.to_string()),
    }
}

/// The kind a listing shows for an entry that cannot be read (it is listed all the same, so
/// one bad entry never breaks the list, and can be deleted by name).
pub const UNREADABLE: &str = "unreadable";

/// A stored entry's kind and task count, read without decoding the collection itself.
fn summary(bytes: &[u8]) -> Option<(String, u64)> {
    use zask_core::msgpack;
    let kind = msgpack::as_str(msgpack::field(bytes, "kind")?)?.to_string();
    let tasks = rmp_serde::from_slice::<u64>(msgpack::field(bytes, "tasks")?).ok()?;
    Some((kind, tasks))
}

fn decode(bytes: &[u8]) -> Result<Stored, StorageError> {
    rmp_serde::from_slice(bytes).map_err(|e| StorageError(format!("corrupt entry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zask_core::graph::{key, task, Graph};

    fn sample() -> Collection {
        let mut g = Graph::new();
        g.insert("x", 1);
        g.insert("y", task("inc", (key("x"),)));
        Collection::graph(g, "y")
    }

    fn exercise(store: &mut CollectionStore) {
        let bytes = CollectionStore::encode(&sample()).unwrap();
        assert!(!store.set("a", bytes.clone()).unwrap());
        assert!(store.set("a", bytes).unwrap());
        let back = store.get("a").unwrap().unwrap();
        assert_eq!(Collection::from_value(&back).unwrap(), sample());
        assert_eq!(store.get("b").unwrap(), None);
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].name.as_str(), list[0].kind.as_str(), list[0].tasks),
            ("a", "graph", 2)
        );
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
    }

    /// The error kind of a reply, if it is one.
    fn error_kind(reply: &ToClient) -> Option<&str> {
        match reply {
            ToClient::Error { error, .. } => Some(error.kind.as_str()),
            _ => None,
        }
    }

    fn collections(max_size: usize) -> Collections {
        Collections::new(CollectionStore::open(None).unwrap(), max_size)
    }

    /// `get_collection` answers in normal form (docs/protocol.md): a list literal comes back
    /// wrapped in `lit`, empty `args` left out, `meta` `{}` when it was absent; storing that
    /// form again gives the same collection.
    #[test]
    fn a_collection_comes_back_in_normal_form() {
        let mut c = collections(1 << 20);
        let json = serde_json::json!({
            "kind": "graph",
            "graph": {"l": [0, 1, 2], "t": {"fn": "range", "args": []}},
            "keys": ["l", "t"],
        });
        let sent = Value::from_json(&json);
        assert!(matches!(
            c.on_set(1, "n".into(), &sent),
            ToClient::CollectionStored { .. }
        ));
        let ToClient::Collection { collection, .. } = c.on_get(2, "n".into()) else {
            panic!("not fetched");
        };
        let graph = collection.get("graph").unwrap();
        let lit = Value::Map(vec![(
            Value::from("lit"),
            Value::List(vec![Value::Int(0), Value::Int(1), Value::Int(2)]),
        )]);
        assert_eq!(graph.get("l"), Some(&lit));
        assert_eq!(
            graph.get("t"),
            Some(&Value::Map(vec![(Value::from("fn"), Value::from("range"))]))
        );
        assert_eq!(collection.get("meta"), Some(&Value::Map(Vec::new())));
        assert!(matches!(
            c.on_set(3, "n2".into(), &collection),
            ToClient::CollectionStored { .. }
        ));
        let ToClient::Collection {
            collection: again, ..
        } = c.on_get(4, "n2".into())
        else {
            panic!("not fetched");
        };
        assert_eq!(again, collection);
    }

    #[test]
    fn a_collection_is_stored_replaced_fetched_listed_and_deleted() {
        let mut c = collections(1 << 20);
        let value = sample().to_value();
        let stored = |replaced| ToClient::CollectionStored {
            request: 1,
            name: "a".to_string(),
            replaced,
        };
        assert_eq!(c.on_set(1, "a".to_string(), &value), stored(false));
        assert_eq!(c.on_set(1, "a".to_string(), &value), stored(true));
        let ToClient::Collection {
            request: 2,
            name,
            collection,
        } = c.on_get(2, "a".to_string())
        else {
            panic!("not fetched");
        };
        assert_eq!(name, "a");
        assert_eq!(Collection::from_value(&collection).unwrap(), sample());
        let ToClient::Collections {
            request: 3,
            collections,
        } = c.on_list(3)
        else {
            panic!("not listed");
        };
        assert_eq!(collections.len(), 1);
        assert_eq!(
            c.on_delete(4, "a".to_string()),
            ToClient::CollectionDeleted {
                request: 4,
                name: "a".to_string()
            }
        );
        assert_eq!(
            error_kind(&c.on_delete(5, "a".to_string())),
            Some("unknown_collection")
        );
        assert_eq!(
            error_kind(&c.on_get(6, "a".to_string())),
            Some("unknown_collection")
        );
    }

    #[test]
    fn a_collection_with_a_bad_name_is_refused() {
        let mut c = collections(1 << 20);
        let reply = c.on_set(1, "has space".to_string(), &sample().to_value());
        assert_eq!(error_kind(&reply), Some("bad_request"));
        assert_eq!(c.store.list().unwrap().len(), 0);
    }

    #[test]
    fn a_collection_that_is_not_one_is_refused() {
        let mut c = collections(1 << 20);
        let reply = c.on_set(1, "a".to_string(), &Value::Int(3));
        assert_eq!(error_kind(&reply), Some("invalid_graph"));
        assert_eq!(c.store.list().unwrap().len(), 0);
    }

    #[test]
    fn a_collection_is_checked_against_its_kind() {
        let mut c = collections(1 << 20);
        let mut set =
            |json: serde_json::Value| match c.on_set(1, "c".into(), &Value::from_json(&json)) {
                ToClient::CollectionStored { .. } => Ok(()),
                ToClient::Error { error, .. } => {
                    assert_eq!(error.kind.as_str(), "invalid_graph");
                    Err(error.message)
                }
                other => panic!("{other:?}"),
            };
        let plain = serde_json::json!({"x": 1, "y": {"fn": "inc", "args": [{"ref": "x"}]}});
        // A plain graph as a bag: refused, saying why.
        let e = set(serde_json::json!({"kind": "bag", "graph": plain, "keys": "y"})).unwrap_err();
        assert!(e.contains("single key \"y\""), "{e}");
        let e = set(serde_json::json!({"kind": "bag", "graph": plain, "keys": ["x", "y"]}))
            .unwrap_err();
        assert!(e.contains("partition \"x\" is the literal int"), "{e}");
        let e =
            set(serde_json::json!({"kind": "bag", "graph": plain, "keys": [["y"]]})).unwrap_err();
        assert!(e.contains("flat list"), "{e}");
        let e = set(serde_json::json!({"kind": "bag", "graph": plain, "keys": []})).unwrap_err();
        assert!(e.contains("at least one partition"), "{e}");
        // A bag as Bag::to_collection makes one: partitions of lists, or tasks.
        let bag = serde_json::json!({"p0": {"lit": [1, 2]}, "p1": {"fn": "range", "args": [3]}});
        let meta = serde_json::json!({"npartitions": 2, "token": "t"});
        set(serde_json::json!({"kind": "bag", "graph": bag, "keys": ["p0", "p1"], "meta": meta}))
            .unwrap();
        let e = set(serde_json::json!({"kind": "bag", "graph": bag, "keys": ["p0"], "meta": meta}))
            .unwrap_err();
        assert!(e.contains("npartitions is 2, but the bag has 1"), "{e}");
        // An item is one key.
        set(serde_json::json!({"kind": "item", "graph": plain, "keys": "y"})).unwrap();
        let e = set(serde_json::json!({"kind": "item", "graph": plain, "keys": ["x", "y"]}))
            .unwrap_err();
        assert!(e.contains("one key"), "{e}");
        // A graph, and kinds of the client's own, are any graph.
        set(serde_json::json!({"kind": "graph", "graph": plain, "keys": ["x", ["y"]]})).unwrap();
        set(serde_json::json!({"kind": "my-kind", "graph": plain, "keys": "x"})).unwrap();
    }

    #[test]
    fn a_collection_over_the_size_limit_is_refused() {
        let value = sample().to_value();
        let size = CollectionStore::encode(&sample()).unwrap().len();
        let mut c = collections(size - 1);
        let reply = c.on_set(1, "a".to_string(), &value);
        assert_eq!(error_kind(&reply), Some("too_large"));
        let mut c = collections(size);
        assert_eq!(error_kind(&c.on_set(1, "a".to_string(), &value)), None);
    }

    #[test]
    fn memory_store() {
        exercise(&mut CollectionStore::open(None).unwrap());
    }

    #[test]
    fn sled_store_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = CollectionStore::open(Some(dir.path())).unwrap();
        exercise(&mut store);
        let bytes = CollectionStore::encode(&sample()).unwrap();
        store.set("kept", bytes).unwrap();
        drop(store);
        // sled releases its lock from a background thread shortly after the drop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let store = loop {
            match CollectionStore::open(Some(dir.path())) {
                Ok(store) => break store,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        assert!(store.get("kept").unwrap().is_some());
    }
}
