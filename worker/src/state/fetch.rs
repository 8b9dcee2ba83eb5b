//! Inputs fetched from peers: requests, the holders to try next, answers (complete, partial,
//! out of order, bad), timeouts and peers gone; replication (data moving off a retiring
//! worker); and serving this worker's values to peers.

use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap as HashMap;
use zask_core::frames;
use zask_core::protocol::{Data, DataBody, GetDataBody, KeyData, KeyInfo, PeerReply, PeerRequest};
use zask_core::value::MAX_NESTING;
use zask_core::{Bytes, DefHash, Value};

use super::{FetchRequest, PeerReplyOut, WorkerState};

/// Keys asked of one peer in one request at the most: a wide task's inputs are fetched in
/// chunks, the first on its way while the rest of the task is being taken in.
pub(crate) const FETCH_CHUNK: usize = 65_536;

/// Inputs to fetch, by the peer to ask first.
pub(crate) type ToFetch = HashMap<String, Vec<Arc<str>>>;

/// An input being fetched: the holders not tried yet, the definition hash a copy must have
/// (a peer's copy of another definition is refused like a bad value), and the request it is
/// asked in now (an answer to an earlier request for it, before it was asked anew, does not
/// count for it; 0: not asked yet).
pub(crate) struct Fetching {
    pub(crate) untried: Vec<String>,
    pub(crate) hash: DefHash,
    pub(crate) request: u64,
}

/// A fetch request in flight to a peer.
pub(crate) struct Fetch {
    pub(crate) peer: String,
    pub(crate) keys: Arc<[Arc<str>]>,
    pub(crate) deadline: Instant,
}

impl WorkerState {
    /// A peer asks for values (`Err`: its request could not be decoded): the answer goes to
    /// the outbox, addressed to `route`.
    pub fn on_peer_request(&mut self, route: Vec<u8>, request: Result<PeerRequest, String>) {
        let mut blobs = Vec::new();
        let reply = match request {
            Ok(PeerRequest::GetData(GetDataBody { request, keys })) => {
                // Large values are served from the store as they are (no copy).
                let (items, missing) = self.lookup(keys, |v| frames::pack_shared(v, &mut blobs));
                PeerReply::Data(DataBody {
                    request,
                    items,
                    missing,
                })
            }
            Err(e) => PeerReply::Error {
                request: 0,
                message: format!("cannot decode the request: {e}"),
            },
        };
        self.outbox.peer_replies.push(PeerReplyOut {
            route,
            reply,
            blobs,
        });
    }

    /// A peer answered a fetch (`blobs`: the frames after the answer's header).
    pub fn on_peer_reply(&mut self, peer: &str, reply: PeerReply, blobs: &[Bytes], now: Instant) {
        match reply {
            PeerReply::Data(DataBody {
                request,
                items,
                missing: _,
            }) => self.on_fetched(request, items, blobs, now),
            PeerReply::Error { request, message } => {
                log::warn!("{peer} could not serve request {request}: {message}");
                if let Some(f) = self.fetches.remove(&request) {
                    self.fetch_failed(&f.keys, request, now);
                }
            }
        }
    }

    /// The loop could not send fetch `request` (the peer cannot be reached): its keys are
    /// asked of their next holders.
    pub fn on_fetch_unsent(&mut self, request: u64, now: Instant) {
        if let Some(f) = self.fetches.remove(&request) {
            log::warn!("cannot ask {} for data", f.peer);
            self.fetch_failed(&f.keys, request, now);
        }
    }

    /// The values of `keys` held here, each packed by `pack`, and the keys not held.
    pub(crate) fn lookup(
        &self,
        keys: Vec<String>,
        mut pack: impl FnMut(Value) -> Data,
    ) -> (Vec<KeyData>, Vec<String>) {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        for key in keys {
            match self.store.get_with(&key) {
                Ok(Some((v, held))) => items.push(KeyData {
                    key,
                    data: pack(v),
                    hash: Some(held.hash),
                }),
                Ok(None) => missing.push(key),
                Err(e) => {
                    log::warn!("cannot read {key:?}: {e}");
                    missing.push(key)
                }
            }
        }
        (items, missing)
    }

    /// Starts copying keys (each of the definition given) from their holders (data moving
    /// off a retiring worker); each is reported as `acquired` once here.
    pub(crate) fn replicate(&mut self, who_has: Vec<(String, DefHash, Vec<String>)>, now: Instant) {
        let mut to_fetch: ToFetch = HashMap::default();
        for (key, hash, holders) in who_has {
            match self.store.held(&key) {
                Some(held) if held.hash == hash => {
                    let nbytes = held.nbytes;
                    self.report.acquired.push(KeyInfo { key, nbytes, hash });
                    continue;
                }
                Some(_) => self.remove_stored(&key),
                None => {}
            }
            if self.fetching.contains_key(key.as_str()) {
                continue;
            }
            let mut untried: Vec<String> = holders.into_iter().rev().collect();
            if let Some(first) = untried.pop() {
                let key: Arc<str> = Arc::from(key);
                to_fetch.entry(first).or_default().push(key.clone());
                self.fetching.insert(
                    key,
                    Fetching {
                        untried,
                        hash,
                        request: 0,
                    },
                );
            }
        }
        self.send_fetches(to_fetch, now);
    }

    /// The worker at `address` is gone: its socket is dropped, fetches from it fail at once
    /// and go to other holders (it is not tried again).
    pub(crate) fn peer_gone(&mut self, address: String, now: Instant) {
        let dead: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.peer == address)
            .map(|(r, _)| *r)
            .collect();
        for f in self.fetching.values_mut() {
            f.untried.retain(|p| p != &address);
        }
        self.outbox.drop_peers.push(address);
        for request in dead {
            if let Some(f) = self.fetches.remove(&request) {
                self.fetch_failed(&f.keys, request, now);
            }
        }
    }

    /// One fetch request per peer.
    pub(crate) fn send_fetches(&mut self, to_fetch: ToFetch, now: Instant) {
        for (peer, keys) in to_fetch {
            if !keys.is_empty() {
                self.start_fetch(peer, keys, now);
            }
        }
    }

    /// Asks `peer` for `keys`: a request in flight from now, due by `now + fetch_timeout`.
    pub(crate) fn start_fetch(&mut self, peer: String, keys: Vec<Arc<str>>, now: Instant) {
        let request = self.next_request;
        self.next_request += 1;
        for k in &keys {
            if let Some(f) = self.fetching.get_mut(k) {
                f.request = request;
            }
        }
        let keys: Arc<[Arc<str>]> = keys.into();
        self.outbox.fetches.push(FetchRequest {
            peer: peer.clone(),
            request,
            keys: keys.clone(),
        });
        let deadline = super::later(now, self.config.fetch_timeout);
        self.fetches.insert(
            request,
            Fetch {
                peer,
                keys,
                deadline,
            },
        );
    }

    fn on_fetched(&mut self, request: u64, items: Vec<KeyData>, blobs: &[Bytes], now: Instant) {
        let Some(fetch) = self.fetches.remove(&request) else {
            return; // Timed out already and retried elsewhere.
        };
        // The peer's `missing` list is not needed: whatever did not arrive is still pending.
        self.store.reserve(items.len());
        // Whether the answer holds every key asked for, in order, all taken in: then none is
        // left to retry (the usual case, with no second pass over a 65,536-key fetch).
        let mut complete = items.len() == fetch.keys.len();
        let mut unpacker = frames::Unpacker::new(blobs);
        for (i, item) in items.into_iter().enumerate() {
            if complete && fetch.keys.get(i).is_none_or(|k| **k != *item.key) {
                complete = false;
            }
            // Taken out of `fetching` at once, put back if it cannot be taken in.
            let Some((key, fetching)) = self.fetching.remove_entry(item.key.as_str()) else {
                continue;
            };
            let hash = fetching.hash;
            let stored = if item.hash != Some(hash) {
                Err(format!(
                    "a peer's copy of {key:?} is of another definition (or has no hash); not \
                     taken"
                ))
            } else {
                unpacker
                    .unpack(item.data)
                    .map_err(|e| format!("bad value for {key:?} from a peer: {e}"))
                    .and_then(|value| {
                        let nbytes = value
                            .measure(MAX_NESTING)
                            .map_err(|e| format!("bad value for {key:?} from a peer: {e}"))?;
                        self.store
                            .insert(&key, value, hash, nbytes)
                            .map(|()| nbytes)
                            .map_err(|e| format!("cannot store fetched {key:?}: {e}"))
                    })
            };
            let nbytes = match stored {
                Ok(nbytes) => nbytes,
                Err(e) => {
                    log::warn!("{e}");
                    self.fetching.insert(key, fetching);
                    complete = false;
                    continue;
                }
            };
            self.input_arrived(&item.key);
            self.report.acquired.push(KeyInfo {
                key: item.key,
                nbytes,
                hash,
            });
        }
        if complete {
            return;
        }
        // The keys of this fetch not stored now (said missing, left out of the answer, bad
        // or unstorable): try the next holder (`fetch_failed` leaves those asked anew since).
        self.fetch_failed(&fetch.keys, request, now);
    }

    /// These inputs could not be had from the holder asked: try the next, or fail the tasks
    /// that wait for them.
    ///
    /// Only the keys still waited for under `request` count: one dropped
    /// and asked for anew since (under a later request, perhaps of another holder) is that
    /// request's business, and its waiters must not fail because an older request did.
    fn fetch_failed(&mut self, keys: &[Arc<str>], request: u64, now: Instant) {
        let mut retry: ToFetch = HashMap::default();
        for key in keys {
            let next = match self.fetching.get_mut(key) {
                None => continue, // Stored already, or no longer wanted.
                Some(f) if f.request != request => continue,
                Some(f) => f.untried.pop(),
            };
            match next {
                Some(peer) => retry.entry(peer).or_default().push(key.clone()),
                None => {
                    self.fetching.remove(key);
                    self.fail_waiters(key);
                }
            }
        }
        if !retry.is_empty() {
            self.send_fetches(retry, now);
        }
    }

    /// Fetches past their deadline: the peer's socket is dropped (its queue may hold stale
    /// requests) and the keys go to their next holders.
    pub(crate) fn check_fetch_timeouts(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        for request in expired {
            if let Some(f) = self.fetches.remove(&request) {
                log::warn!(
                    "{} did not answer within {:?}",
                    f.peer,
                    self.config.fetch_timeout
                );
                self.outbox.drop_peers.push(f.peer);
                self.fetch_failed(&f.keys, request, now);
            }
        }
    }
}
