//! [`Store`]: where a worker keeps the values it computed or fetched.
//!
//! A small mapping trait in the spirit of Python's `MutableMapping`, so the storage is
//! pluggable: [`MemoryStore`] (a hash map, the default) and [`SledStore`] (on disk, for data
//! larger than memory or that should survive a worker restart: the worker reports what it
//! holds when it registers, and the scheduler keeps what is still wanted).

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use zask_core::protocol::KeyInfo;
use zask_core::{DefHash, Value};

/// A store operation failed (disk full, corrupt data, ...).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// What is known of a held value without reading it: the definition hash it was stored with
/// (so a stale copy is told from the current one) and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The definition hash the value was stored with.
    pub hash: DefHash,
    /// Its size in bytes.
    pub nbytes: u64,
}

/// A key-value store of task results, each kept with its definition hash.
pub trait Store: Send {
    /// The value of `key`, if held.
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.get_with(key)?.map(|(v, _)| v))
    }
    /// The value of `key` with its hash and size, if held.
    fn get_with(&self, key: &str) -> Result<Option<(Value, Held)>, StoreError>;
    /// The hash and size of `key`'s value, if held (without reading the value).
    fn held(&self, key: &str) -> Option<Held>;
    /// Stores `value` (of size `nbytes`) under `key` with its definition `hash`, replacing
    /// any earlier value.
    fn insert(
        &mut self,
        key: &str,
        value: Value,
        hash: DefHash,
        nbytes: u64,
    ) -> Result<(), StoreError>;
    /// Deletes `key`; returns whether it was held.
    fn remove(&mut self, key: &str) -> Result<bool, StoreError>;
    /// Whether `key` is held.
    fn contains(&self, key: &str) -> bool {
        self.held(key).is_some()
    }
    /// Every key held, with its hash and size (what a worker registers with).
    fn all_held(&self) -> Vec<KeyInfo>;
    /// How many keys are held.
    fn len(&self) -> usize;
    /// Makes room for `additional` more keys (a hint before a large batch of inserts).
    fn reserve(&mut self, _additional: usize) {}
    /// Whether the store is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// How many writes (inserts and removals) the store has taken: `flush` makes them
    /// durable up to such a count.
    fn writes(&self) -> u64 {
        0
    }
    /// Makes the first `upto` writes durable (the worker calls it before reporting values
    /// stored, so a reported key survives the worker's crash in a persistent store), waiting
    /// at most `wait`: `Ok(false)` if it is still in progress (ask again later).
    fn flush(&mut self, _upto: u64, _wait: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Why the store takes no more values, if it failed for good (the worker then retires).
    fn broken(&self) -> Option<&str> {
        None
    }
}

/// Values in memory (a hash map).
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: HashMap<String, (Value, Held)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.data.get(key).map(|(v, _)| v.clone()))
    }
    fn get_with(&self, key: &str) -> Result<Option<(Value, Held)>, StoreError> {
        Ok(self.data.get(key).map(|(v, h)| (v.clone(), *h)))
    }
    fn held(&self, key: &str) -> Option<Held> {
        self.data.get(key).map(|(_, h)| *h)
    }
    fn insert(
        &mut self,
        key: &str,
        value: Value,
        hash: DefHash,
        nbytes: u64,
    ) -> Result<(), StoreError> {
        self.data
            .insert(key.to_string(), (value, Held { hash, nbytes }));
        Ok(())
    }
    fn remove(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.data.remove(key).is_some())
    }
    fn all_held(&self) -> Vec<KeyInfo> {
        self.data
            .iter()
            .map(|(k, (_, h))| KeyInfo {
                key: k.clone(),
                nbytes: h.nbytes,
                hash: h.hash,
            })
            .collect()
    }
    fn len(&self) -> usize {
        self.data.len()
    }
    fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional);
    }
}

/// Values on disk in a sled database: each record is a header (a format mark, the value's
/// definition hash and size) followed by the value, msgpack-encoded.
///
/// A full disk must give an error, never a hang: sled 0.34, when a write fails for lack of
/// space, can leave a flush waiting forever (and its drop, which flushes). So a value is
/// refused, with a "disk full" error, unless the disk has room for it with a wide margin
/// (`MIN_FREE`, plus `AMPLIFICATION` times the largest value stored: one insert may rewrite
/// a whole leaf of the tree); flushes run on a thread of their own, waited for at most
/// `FLUSH_TIMEOUT`; and a write or flush that fails anyway marks the store broken: later
/// writes fail at once (reads still work), and the worker retires.
pub struct SledStore {
    /// `None` once given up on (a broken store is not dropped: sled's drop may hang).
    db: Option<sled::Db>,
    dir: std::path::PathBuf,
    /// How many records of each size the store holds (the largest sets the margin of free
    /// space an insert needs).
    sizes: std::collections::BTreeMap<u64, u64>,
    /// Why the store was given up on, if it was.
    broken: Option<String>,
    flush: Flusher,
    /// How many inserts and removals were made.
    writes: u64,
    /// How many of them a finished flush made durable.
    durable: u64,
}

/// The thread that flushes a sled store (a flush may block forever on a full disk).
struct Flusher {
    /// Dropped to end the thread.
    requests: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<Result<(), String>>,
    /// Since when a flush asked for has not answered, and the write count it was asked at
    /// (it makes durable those writes, not necessarily later ones).
    pending: Option<(std::time::Instant, u64)>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when the store was given up on: the thread then never drops its handle on the
    /// database (a drop flushes, which may not end).
    given_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Free space a sled store leaves on its disk at the least.
const MIN_FREE: u64 = 16 << 20;
/// How much more space than a value a sled insert may take (measured: up to about 18 times
/// a value's size, as a leaf of 17 entries is rewritten whole; twice that for safety).
const AMPLIFICATION: u64 = 40;
/// How long a flush may take before the store is given up on (a flush on a full disk may
/// never end; the worker goes on serving meanwhile).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The first bytes of a record: a byte msgpack never uses (so a record of an older zask,
/// plain msgpack, is told apart), then the record format's version.
const RECORD_MARK: [u8; 2] = [0xc1, 1];
/// The record header: the mark, the 16-byte hash, the size as 8 bytes.
const RECORD_HEADER: usize = 2 + 16 + 8;

impl SledStore {
    /// Opens (or creates) the database in directory `dir`. Keys already there are kept.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        // A snapshot a full disk interrupted is left as `snap.*.generating`, which sled would
        // read as its newest snapshot and call corrupt for ever after: it is not one.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("snap.") && name.ends_with(".generating") {
                    log::warn!(
                        "removing an unfinished sled snapshot {name} in {}",
                        dir.display()
                    );
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let db = sled::open(dir).map_err(|e| {
            StoreError(format!(
                "cannot open sled database in {}: {e}",
                dir.display()
            ))
        })?;
        let (requests, asked) = mpsc::channel::<()>();
        let (answers, done) = mpsc::channel();
        let flushed = db.clone();
        let given_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_given_up = given_up.clone();
        let thread = std::thread::Builder::new()
            .name("zask-sled-flush".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let result = flushed.flush().map(|_| ()).map_err(|e| e.to_string());
                    if answers.send(result).is_err() {
                        break;
                    }
                }
                if thread_given_up.load(std::sync::atomic::Ordering::SeqCst) {
                    // sled's drop flushes, which may never end after a failure.
                    std::mem::forget(flushed);
                }
            })
            .map_err(|e| StoreError(format!("cannot start the flush thread: {e}")))?;
        let mut sizes = std::collections::BTreeMap::new();
        for (_, v) in db.iter().filter_map(Result::ok) {
            *sizes.entry(v.len() as u64).or_insert(0) += 1;
        }
        Ok(SledStore {
            db: Some(db),
            dir: dir.to_path_buf(),
            sizes,
            broken: None,
            flush: Flusher {
                requests: Some(requests),
                done,
                pending: None,
                thread: Some(thread),
                given_up,
            },
            writes: 0,
            durable: 0,
        })
    }

    fn db(&self) -> Result<&sled::Db, StoreError> {
        self.db
            .as_ref()
            .ok_or_else(|| StoreError("the store is closed".to_string()))
    }

    /// An error if the store was given up on.
    fn usable(&self) -> Result<(), StoreError> {
        match &self.broken {
            Some(why) => Err(StoreError(format!(
                "the disk store stopped taking values after a failure ({why}); free disk space \
                 and restart the worker"
            ))),
            None => Ok(()),
        }
    }

    /// Gives the store up after a failed write or flush.
    fn give_up(&mut self, why: String) -> StoreError {
        log::error!(
            "the disk store in {} failed ({why}); it takes no more values",
            self.dir.display()
        );
        self.broken = Some(why.clone());
        self.flush
            .given_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        StoreError(why)
    }

    /// An error unless the disk has room for a value of `len` bytes, with the margin.
    fn check_space(&self, len: u64) -> Result<(), StoreError> {
        let largest = self.sizes.keys().next_back().copied().unwrap_or(0);
        let need = MIN_FREE.saturating_add(AMPLIFICATION.saturating_mul(len.max(largest)));
        let free = fs2::available_space(&self.dir).map_err(|e| {
            StoreError(format!(
                "cannot tell the free space of {}: {e}",
                self.dir.display()
            ))
        })?;
        if free < need {
            return Err(StoreError(format!(
                "disk full: {} has {free} bytes free, and storing a value of {len} bytes safely \
                 needs {need}; free disk space, or use another --store",
                self.dir.display()
            )));
        }
        Ok(())
    }
}

impl SledStore {
    /// Asks the flush thread for a flush of the writes made so far.
    fn request_flush(&mut self) -> Result<(std::time::Instant, u64), StoreError> {
        let sent = self.flush.requests.as_ref().map(|r| r.send(()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(StoreError("the flush thread is gone".to_string()));
        }
        let pending = (std::time::Instant::now(), self.writes);
        self.flush.pending = Some(pending);
        Ok(pending)
    }

    /// A record of `len` bytes is no longer held.
    fn forget_size(&mut self, len: u64) {
        if let Some(n) = self.sizes.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                self.sizes.remove(&len);
            }
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // What is not durable yet is flushed now, for a few seconds at most. (A store given
        // up on is not flushed at all.)
        let flushed = match self.broken {
            None => self.flush(self.writes, Duration::from_secs(5)),
            Some(_) => Ok(false),
        };
        // The flush thread ends when its channel closes.
        self.flush.requests = None;
        match flushed {
            // Waited for, so the database is closed (its lock released) when this returns.
            Ok(true) => {
                if let Some(thread) = self.flush.thread.take() {
                    let _ = thread.join();
                }
            }
            // A slow flush (a busy disk): its end, and the database's close, which releases
            // the directory's lock, are waited for on a thread of their own, so that this
            // drop returns.
            Ok(false) if self.broken.is_none() => {
                log::warn!("closing the store before its last flush ended; it closes when it does");
                let (db, thread) = (self.db.take(), self.flush.thread.take());
                let _ = std::thread::Builder::new()
                    .name("zask-sled-close".into())
                    .spawn(move || {
                        if let Some(thread) = thread {
                            let _ = thread.join();
                        }
                        drop(db);
                    });
            }
            // Given up on, or the flush failed: sled's drop flushes, which may never end
            // after a failure, and the flush thread may be stuck in one: neither is waited
            // for.
            _ => {
                self.flush
                    .given_up
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                std::mem::forget(self.db.take());
            }
        }
    }
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError(e.to_string())
}

fn decode_value(key: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError(format!("corrupt value for key {key:?}: {e}")))
}

/// The header of a record, if it has one (a record of an older zask has none: its value
/// cannot be vouched for, and it is dropped at registration).
fn record_header(bytes: &[u8]) -> Option<Held> {
    if bytes.len() < RECORD_HEADER || bytes[..2] != RECORD_MARK {
        return None;
    }
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&bytes[2..18]);
    let mut nbytes = [0u8; 8];
    nbytes.copy_from_slice(&bytes[18..26]);
    Some(Held {
        hash: DefHash(hash),
        nbytes: u64::from_le_bytes(nbytes),
    })
}

impl Store for SledStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        match self.db()?.get(key.as_bytes()).map_err(sled_err)? {
            Some(bytes) => {
                let body = if record_header(&bytes).is_some() {
                    &bytes[RECORD_HEADER..]
                } else {
                    &bytes[..]
                };
                decode_value(key, body).map(Some)
            }
            None => Ok(None),
        }
    }
    fn get_with(&self, key: &str) -> Result<Option<(Value, Held)>, StoreError> {
        let Some(bytes) = self.db()?.get(key.as_bytes()).map_err(sled_err)? else {
            return Ok(None);
        };
        match record_header(&bytes) {
            Some(held) => Ok(Some((decode_value(key, &bytes[RECORD_HEADER..])?, held))),
            None => Ok(None),
        }
    }
    fn held(&self, key: &str) -> Option<Held> {
        let bytes = self.db.as_ref()?.get(key.as_bytes()).ok()??;
        record_header(&bytes)
    }
    fn insert(
        &mut self,
        key: &str,
        value: Value,
        hash: DefHash,
        nbytes: u64,
    ) -> Result<(), StoreError> {
        self.usable()?;
        let mut bytes = Vec::with_capacity(RECORD_HEADER + nbytes.min(1 << 20) as usize);
        bytes.extend_from_slice(&RECORD_MARK);
        bytes.extend_from_slice(&hash.0);
        bytes.extend_from_slice(&nbytes.to_le_bytes());
        rmp_serde::encode::write(&mut bytes, &value).map_err(|e| StoreError(e.to_string()))?;
        let len = bytes.len() as u64;
        self.check_space(len)?;
        match self.db()?.insert(key.as_bytes(), bytes) {
            Ok(old) => {
                self.writes += 1;
                *self.sizes.entry(len).or_insert(0) += 1;
                if let Some(old) = old {
                    self.forget_size(old.len() as u64);
                }
                Ok(())
            }
            Err(e) => Err(self.give_up(e.to_string())),
        }
    }
    fn remove(&mut self, key: &str) -> Result<bool, StoreError> {
        self.usable()?;
        match self.db()?.remove(key.as_bytes()) {
            Ok(old) => {
                self.writes += 1;
                if let Some(old) = &old {
                    self.forget_size(old.len() as u64);
                }
                Ok(old.is_some())
            }
            Err(e) => Err(self.give_up(e.to_string())),
        }
    }
    fn all_held(&self) -> Vec<KeyInfo> {
        let mut held = Vec::new();
        let mut stale = Vec::new();
        let Some(db) = &self.db else {
            return held;
        };
        for (k, v) in db.iter().filter_map(Result::ok) {
            match (String::from_utf8(k.to_vec()), record_header(&v)) {
                (Ok(key), Some(h)) => held.push(KeyInfo {
                    key,
                    nbytes: h.nbytes,
                    hash: h.hash,
                }),
                _ => stale.push(k),
            }
        }
        if !stale.is_empty() {
            log::warn!(
                "{} value(s) in the store have no definition hash (written by an older zask) \
                 and are not offered to the scheduler",
                stale.len()
            );
        }
        held
    }
    fn len(&self) -> usize {
        self.db.as_ref().map_or(0, |db| db.len())
    }
    fn writes(&self) -> u64 {
        self.writes
    }
    fn flush(&mut self, upto: u64, wait: Duration) -> Result<bool, StoreError> {
        self.usable()?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            if self.durable >= upto {
                return Ok(true);
            }
            // A flush covers the writes made before it was asked for: one asked for earlier
            // may end short of `upto`, and another is asked for then.
            let (since, asked_at) = match self.flush.pending {
                Some(pending) => pending,
                None => self.request_flush()?,
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.flush.done.recv_timeout(left) {
                Ok(Ok(())) => {
                    self.flush.pending = None;
                    self.durable = self.durable.max(asked_at);
                }
                Ok(Err(e)) => {
                    self.flush.pending = None;
                    return Err(self.give_up(e));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if since.elapsed() < FLUSH_TIMEOUT => {
                    return Ok(false)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.give_up(format!(
                        "a flush did not finish within {FLUSH_TIMEOUT:?} (is the disk full?)"
                    )))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.give_up("the flush thread is gone".to_string()))
                }
            }
        }
    }
    fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }
}

/// Which store a worker uses, as given on the command line: `memory` or `sled:DIR`.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    /// In memory: fast, gone with the process.
    Memory,
    /// On disk with sled, in this directory: survives a restart.
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

    fn put(store: &mut dyn Store, key: &str, value: Value) {
        let (hash, nbytes) = (DefHash::of_value(&value), value.nbytes());
        store.insert(key, value, hash, nbytes).unwrap();
    }

    fn exercise(store: &mut dyn Store) {
        assert!(store.is_empty());
        put(store, "a", Value::Int(1));
        put(store, "b", Value::Bytes(vec![1, 2, 3].into()));
        assert!(store.contains("a"));
        assert_eq!(store.get("a").unwrap(), Some(Value::Int(1)));
        assert_eq!(
            store.held("a"),
            Some(Held {
                hash: DefHash::of_value(&Value::Int(1)),
                nbytes: 8
            })
        );
        assert_eq!(
            store.get("b").unwrap(),
            Some(Value::Bytes(vec![1, 2, 3].into()))
        );
        assert_eq!(store.get("zz").unwrap(), None);
        assert_eq!(store.len(), 2);
        assert!(store.remove("a").unwrap());
        assert!(!store.remove("a").unwrap());
        assert!(!store.contains("a"));
        let held = store.all_held();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].key, "b");
        assert_eq!(held[0].nbytes, 3);
        assert_eq!(
            held[0].hash,
            DefHash::of_value(&Value::Bytes(vec![1, 2, 3].into()))
        );
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
        let store = reopen(dir.path());
        assert_eq!(
            store.get("b").unwrap(),
            Some(Value::Bytes(vec![1, 2, 3].into()))
        );
        assert!(
            store.held("b").is_some(),
            "its hash is kept across a restart"
        );
    }

    /// Opens the store in `dir` again after it was dropped: at once, or (on a disk so busy
    /// that the last flush outlasted the drop's wait) once that flush has ended.
    fn reopen(dir: &Path) -> SledStore {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match SledStore::open(dir) {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the dropped store never closed: {e}"),
            }
        }
    }

    /// The free-space margin follows the largest value held now, not the largest ever held
    /// (one big value, released, must not make every later insert need 40 times its size).
    #[test]
    fn the_space_margin_follows_the_values_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SledStore::open(dir.path()).unwrap();
        put(&mut store, "small", Value::Int(1));
        let small = store.sizes.keys().next_back().copied().unwrap();
        put(&mut store, "big", Value::Bytes(vec![0; 1 << 20].into()));
        assert!(store.sizes.keys().next_back().copied().unwrap() > 1 << 20);
        // Replaced by a small value, then removed: the margin is back to the small one.
        put(&mut store, "big", Value::Int(2));
        assert_eq!(store.sizes.keys().next_back().copied(), Some(small));
        store.remove("big").unwrap();
        store.remove("small").unwrap();
        assert!(store.sizes.is_empty());
        // Reopened, the sizes are read back.
        put(&mut store, "again", Value::Bytes(vec![0; 1000].into()));
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(store.sizes.len(), 1);
    }

    /// A flush covers the writes made before it was asked for: one asked for before a write
    /// does not vouch for it, even if it ends after the write.
    #[test]
    fn a_flush_vouches_only_for_the_writes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SledStore::open(dir.path()).unwrap();
        // A flush left in flight (asked for with no wait), then another write.
        let mut attempts = 0;
        loop {
            put(&mut store, &format!("first{attempts}"), Value::Int(1));
            let upto = store.writes();
            if !store.flush(upto, Duration::ZERO).unwrap() {
                break;
            }
            attempts += 1;
            assert!(attempts < 100, "every flush ended before it was waited for");
        }
        let asked_at = store.writes();
        put(&mut store, "second", Value::Int(2));
        let upto = store.writes();
        assert_eq!(upto, asked_at + 1);
        // The flush in flight covers the writes before it, not the second.
        assert!(store.flush(asked_at, Duration::from_secs(20)).unwrap());
        assert_eq!(store.durable, asked_at);
        // Another flush covers it (asked for and waited for within the one call).
        assert!(store.flush(upto, Duration::from_secs(20)).unwrap());
        assert_eq!(store.durable, upto);
        // Nothing written since: no flush is needed.
        assert!(store.flush(upto, Duration::ZERO).unwrap());
        assert!(store.flush.pending.is_none());
    }

    /// A store dropped while a flush is in flight closes once it ends (the database can be
    /// opened again at once), without waiting forever.
    #[test]
    fn a_store_dropped_during_a_flush_closes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SledStore::open(dir.path()).unwrap();
        put(&mut store, "a", Value::Int(1));
        let upto = store.writes();
        let _ = store.flush(upto, Duration::ZERO).unwrap();
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(store.get("a").unwrap(), Some(Value::Int(1)));
    }

    /// A value an older zask wrote (plain msgpack, no hash) is still read, but it is not
    /// offered to the scheduler: nothing vouches for which definition it is the value of.
    #[test]
    fn records_without_a_hash_are_not_offered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert("old", rmp_serde::to_vec(&Value::Int(5)).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get("old").unwrap(), Some(Value::Int(5)));
        assert_eq!(store.held("old"), None);
        assert!(store.all_held().is_empty());
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
