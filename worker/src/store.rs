//! [`Store`]: where a worker keeps the values it computed or fetched.
//!
//! A small mapping trait in the spirit of Python's `MutableMapping`, so the storage is
//! pluggable: [`MemoryStore`] (a hash map, the default) and [`SledStore`] (on disk, for data
//! larger than memory or that should survive a worker restart: the worker reports what it
//! holds when it registers, and the scheduler keeps what is still wanted).

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use zask_core::Value;

/// A store operation failed (disk full, corrupt data, ...).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// A key-value store of task results.
pub trait Store: Send {
    /// The value of `key`, if held.
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError>;
    /// Stores `value` under `key`, replacing any earlier value.
    fn insert(&mut self, key: &str, value: Value) -> Result<(), StoreError>;
    /// Deletes `key`; returns whether it was held.
    fn remove(&mut self, key: &str) -> Result<bool, StoreError>;
    /// Whether `key` is held.
    fn contains(&self, key: &str) -> bool;
    /// Every key held, with the size of its value in bytes.
    fn keys_with_sizes(&self) -> Vec<(String, u64)>;
    /// How many keys are held.
    fn len(&self) -> usize;
    /// Makes room for `additional` more keys (a hint before a large batch of inserts).
    fn reserve(&mut self, _additional: usize) {}
    /// Whether the store is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes what was inserted durable (the worker calls it before reporting values stored,
    /// so a reported key survives the worker's crash in a persistent store).
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Values in memory (a hash map).
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: HashMap<String, Value>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.data.get(key).cloned())
    }
    fn insert(&mut self, key: &str, value: Value) -> Result<(), StoreError> {
        self.data.insert(key.to_string(), value);
        Ok(())
    }
    fn remove(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.data.remove(key).is_some())
    }
    fn contains(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }
    fn keys_with_sizes(&self) -> Vec<(String, u64)> {
        self.data
            .iter()
            .map(|(k, v)| (k.clone(), v.nbytes()))
            .collect()
    }
    fn len(&self) -> usize {
        self.data.len()
    }
    fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional);
    }
}

/// Values on disk in a sled database, msgpack-encoded.
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the database in directory `dir`. Keys already there are kept.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::open(dir).map_err(|e| {
            StoreError(format!(
                "cannot open sled database in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(SledStore { db })
    }
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError(e.to_string())
}

impl Store for SledStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        match self.db.get(key.as_bytes()).map_err(sled_err)? {
            Some(bytes) => rmp_serde::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("corrupt value for key {key:?}: {e}"))),
            None => Ok(None),
        }
    }
    fn insert(&mut self, key: &str, value: Value) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec(&value).map_err(|e| StoreError(e.to_string()))?;
        self.db.insert(key.as_bytes(), bytes).map_err(sled_err)?;
        Ok(())
    }
    fn remove(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.db.remove(key.as_bytes()).map_err(sled_err)?.is_some())
    }
    fn contains(&self, key: &str) -> bool {
        self.db.contains_key(key.as_bytes()).unwrap_or(false)
    }
    fn keys_with_sizes(&self) -> Vec<(String, u64)> {
        self.db
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                String::from_utf8(k.to_vec())
                    .ok()
                    .map(|k| (k, v.len() as u64))
            })
            .collect()
    }
    fn len(&self) -> usize {
        self.db.len()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(sled_err)
    }
}

/// Which store a worker uses, as given on the command line: `memory` or `sled:DIR`.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    Memory,
    Sled(std::path::PathBuf),
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<StoreKind, String> {
        match s {
            "memory" => Ok(StoreKind::Memory),
            _ => match s.strip_prefix("sled:") {
                Some(dir) if !dir.is_empty() => Ok(StoreKind::Sled(dir.into())),
                _ => Err(format!("unknown store {s:?}: use memory or sled:DIR")),
            },
        }
    }
}

impl StoreKind {
    /// Opens the store this names.
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreKind::Memory => Box::new(MemoryStore::new()),
            StoreKind::Sled(dir) => Box::new(SledStore::open(dir)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &mut dyn Store) {
        assert!(store.is_empty());
        store.insert("a", Value::Int(1)).unwrap();
        store
            .insert("b", Value::Bytes(vec![1, 2, 3].into()))
            .unwrap();
        assert!(store.contains("a"));
        assert_eq!(store.get("a").unwrap(), Some(Value::Int(1)));
        assert_eq!(
            store.get("b").unwrap(),
            Some(Value::Bytes(vec![1, 2, 3].into()))
        );
        assert_eq!(store.get("zz").unwrap(), None);
        assert_eq!(store.len(), 2);
        assert!(store.remove("a").unwrap());
        assert!(!store.remove("a").unwrap());
        assert!(!store.contains("a"));
        let keys: Vec<String> = store
            .keys_with_sizes()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["b".to_string()]);
    }

    #[test]
    fn memory_store_behaves_like_a_map() {
        exercise(&mut MemoryStore::new());
    }

    #[test]
    fn sled_store_behaves_like_a_map_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = SledStore::open(dir.path()).unwrap();
            exercise(&mut store);
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get("b").unwrap(),
            Some(Value::Bytes(vec![1, 2, 3].into()))
        );
    }

    #[test]
    fn store_kind_parses() {
        assert_eq!("memory".parse::<StoreKind>(), Ok(StoreKind::Memory));
        assert_eq!(
            "sled:/tmp/x".parse::<StoreKind>(),
            Ok(StoreKind::Sled("/tmp/x".into()))
        );
        assert!("disk".parse::<StoreKind>().is_err());
        assert!("sled:".parse::<StoreKind>().is_err());
    }
}
