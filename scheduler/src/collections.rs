//! [`CollectionStore`]: the named graphs clients store on the scheduler.
//!
//! In memory by default; with `--state-dir DIR` in a sled database under DIR, so collections
//! survive a scheduler restart. Only graphs are stored, never data. This is plain storage: the
//! loop (`server.rs`) validates requests and answers them; the task state machine never sees
//! collections.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zask_core::protocol::CollectionSummary;
use zask_core::{Collection, Value};

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
