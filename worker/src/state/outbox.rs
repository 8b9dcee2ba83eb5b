//! [`Outbox`]: what the worker's state machine decided must happen. The loop carries it out
//! (sends the messages, hands the jobs to the executors, drops the peer sockets) after each
//! event; the tests read it.

use std::sync::Arc;

use zask_core::protocol::{FromWorker, PeerReply};
use zask_core::Bytes;

use crate::executor::Job;

/// A request for values to send to a peer (`get_data`). The state machine keeps track of it
/// (its deadline, the holders to try next); the loop only sends it, and says so with
/// `WorkerState::on_fetch_unsent` if it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// The peer's address (`tcp://host:port`).
    pub peer: String,
    /// The request's id, which its answer carries.
    pub request: u64,
    /// The keys asked for (shared with the state's record of the request: a 65,536-key fetch
    /// is not copied to be sent).
    pub keys: Arc<[Arc<str>]>,
}

/// An answer to a peer's request, to send back on the peer socket.
pub struct PeerReplyOut {
    /// The ROUTER routing id of the peer that asked.
    pub route: Vec<u8>,
    /// The answer.
    pub reply: PeerReply,
    /// The large values the answer refers to, served as stored (no copy).
    pub blobs: Vec<Bytes>,
}

/// Everything the state machine wants done, in the order it must be done: peers to drop
/// first (a fetch queued after a drop goes on a fresh socket), then messages and fetches.
#[derive(Default)]
pub struct Outbox {
    /// Messages to the scheduler, with the blobs they carry, in order.
    pub to_scheduler: Vec<(FromWorker, Vec<Vec<u8>>)>,
    /// Peer sockets to close (a peer gone, or one that did not answer: its queue may hold
    /// stale requests), before the fetches below are sent.
    pub drop_peers: Vec<String>,
    /// Fetch requests to send to peers.
    pub fetches: Vec<FetchRequest>,
    /// Answers to peers.
    pub peer_replies: Vec<PeerReplyOut>,
    /// Batches of jobs for the executor threads.
    pub jobs: Vec<Vec<Job>>,
    /// Serials of jobs given to the executors that were cancelled (skip them, or free the
    /// thread running one). Carried out before `jobs` are handed over.
    pub cancelled: Vec<u64>,
    /// The worker must close now (refused, retired, or its retirement took too long): the
    /// loop calls `WorkerState::on_close` and stops.
    pub leave: bool,
}

impl Outbox {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.to_scheduler.is_empty()
            && self.drop_peers.is_empty()
            && self.fetches.is_empty()
            && self.peer_replies.is_empty()
            && self.jobs.is_empty()
            && self.cancelled.is_empty()
            && !self.leave
    }
}
