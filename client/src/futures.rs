//! Futures: tasks submitted one at a time, results taken as they finish.
//!
//! [`Client::submit`] returns a [`Future`] at once; the task is added to the scheduler's live
//! graph (dask's `update_graph`), and may depend on earlier futures (a `Future` is accepted
//! wherever a key reference is: the scheduler resolves it, no data passes through the client).
//! The scheduler pushes news of each key (done, erred, cancelled, lost) to the clients holding
//! futures of it; values stay on the workers until asked for ([`Future::result`],
//! [`Client::gather_futures`], [`AsCompleted::with_results`], or `.await`).
//!
//! # Lifetimes
//! Each client counts its own handles of a key (clones of a `Future`). When the last is
//! dropped, the client tells the scheduler (batched with other news it sends), which releases
//! the key once nothing else needs it. A client that disconnects, or is silent past the
//! scheduler's `--client-timeout`, has all of its futures dropped. A client holding futures
//! pings the scheduler, so that it is not taken for gone while it waits or idles.
//!
//! # Keys
//! By default a task's key is `<function>-<token>`, the token a hash of its node (the function,
//! its arguments, keys it refers to; see `docs/futures.md`), so the same call made twice, by
//! this client or another, names one result. [`Submit::pure`]`(false)` gives a fresh key;
//! [`Submit::key`] sets one.
//!
//! # Sending
//! Submissions, drops and cancels are queued in order and sent by the client's I/O thread,
//! as many as piled up since it last sent, in one message per kind: 10,000 `submit` calls in a
//! loop travel in a handful of messages.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use zask_core::graph::{IntoArgs, Node, Task};
use zask_core::protocol::{KeyEvent, KeyStatus, SubmitItem};
use zask_core::{ErrorInfo, Graph, Value};

use crate::client::{Client, Reply};
use crate::error::Error;

/// Where a future is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutureStatus {
    /// Submitted; not finished yet.
    Pending,
    /// Its value is held on a worker.
    Finished,
    /// It failed (or could not be kept track of: the scheduler restarted or went silent).
    Error,
    /// It was cancelled.
    Cancelled,
    /// Its only copy was lost with a worker; it is being computed again.
    Lost,
}

impl FutureStatus {
    /// Whether the future will not change any more (finished, failed or cancelled).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            FutureStatus::Finished | FutureStatus::Error | FutureStatus::Cancelled
        )
    }
}

/// Why a future failed, kept until asked (an [`Error`] is not `Clone`).
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The scheduler reported an error.
    Scheduler(ErrorInfo),
    /// The scheduler went silent for this long.
    Unreachable(Duration),
    /// The scheduler restarted (and forgot every future).
    Restarted,
    /// The client was closed.
    Closed,
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Failure::Scheduler(info) => Error::Scheduler(info.clone()),
            Failure::Unreachable(after) => Error::SchedulerUnreachable(*after),
            Failure::Restarted => Error::SchedulerRestarted,
            Failure::Closed => Error::Closed,
        }
    }
}

/// One key this client holds futures of.
#[derive(Debug)]
struct Entry {
    status: FutureStatus,
    failure: Option<Failure>,
    /// Live `Future` handles of the key.
    handles: usize,
    /// Cancels this client sent whose `cancelled` event has not come back yet (such an event
    /// only confirms what the client did; one that comes after a new submission of the key
    /// must not mark it cancelled again).
    cancels_sent: u32,
    /// Tasks to wake when it is done (`.await`).
    wakers: Vec<Waker>,
    /// Channels to tell when it is done (`as_completed`, `wait`).
    watchers: Vec<mpsc::Sender<Arc<str>>>,
    /// The token of the task node this client submitted under the key (`None`: not known, a
    /// key of a graph given to `compute` that the graph does not define).
    definition: Option<String>,
}

/// Whom to tell that futures are done, collected under the table's lock and told after it
/// is released (a waker may run code that drops a `Future`, which takes the lock).
#[derive(Default)]
struct Notify {
    wakers: Vec<Waker>,
    sends: Vec<(mpsc::Sender<Arc<str>>, Arc<str>)>,
}

impl Notify {
    fn fire(self) {
        for w in self.wakers {
            w.wake();
        }
        for (tx, key) in self.sends {
            let _ = tx.send(key);
        }
    }
}

impl Entry {
    /// Whether a new handle must submit the key again: it was cancelled, or failed on this
    /// side (the scheduler restarted or went silent) rather than by the scheduler's word.
    fn needs_submitting(&self) -> bool {
        self.status == FutureStatus::Cancelled
            || matches!(self.failure, Some(ref f) if !matches!(f, Failure::Scheduler(_)))
    }

    fn new() -> Entry {
        Entry {
            status: FutureStatus::Pending,
            failure: None,
            handles: 0,
            cancels_sent: 0,
            wakers: Vec::new(),
            watchers: Vec::new(),
            definition: None,
        }
    }

    /// Sets a done status; whoever waits is told through `notify`.
    fn finish(
        &mut self,
        key: &Arc<str>,
        status: FutureStatus,
        failure: Option<Failure>,
        notify: &mut Notify,
    ) {
        self.status = status;
        self.failure = failure;
        notify.wakers.append(&mut self.wakers);
        notify
            .sends
            .extend(self.watchers.drain(..).map(|tx| (tx, key.clone())));
    }
}

/// The error of a submission of `key` whose definition differs from the one this client
/// holds a future of.
fn conflict(key: &str) -> Error {
    Error::Scheduler(
        ErrorInfo::new(
            zask_core::ErrorKind::KeyConflict,
            format!(
                "this client holds a future of key {key:?} with another definition; a key \
                 names one value, so give this call another key (or drop the other future \
                 first)"
            ),
        )
        .with_key(key),
    )
}

/// Something for the scheduler, in the order the client did it.
#[derive(Debug)]
pub(crate) enum Op {
    /// A submission, encoded (`SubmitItem`), with its keys.
    Submit(Vec<u8>, Vec<Arc<str>>),
    /// The last handle of a key was dropped.
    Drop(String),
    /// A key was cancelled.
    Cancel(String),
}

/// What the table holds, under its lock.
#[derive(Debug, Default)]
pub(crate) struct Table {
    keys: HashMap<Arc<str>, Entry>,
    /// For the scheduler, in order (taken by the I/O thread).
    ops: Vec<Op>,
    /// `submit` messages sent and not answered yet: their keys (failed if it is refused).
    batches: HashMap<u64, Vec<Arc<str>>>,
}

/// The futures of one client: shared by its handles and its I/O thread.
#[derive(Debug, Default)]
pub(crate) struct FutureTable {
    table: Mutex<Table>,
    changed: Condvar,
}

impl FutureTable {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new handle of `key`, submitted as `definition` (the token of its node); `item` (its
    /// submission) is queued if the key is new here or must be submitted again (it was
    /// cancelled, or failed on this side). `Ok(true)` if the queue was empty (the I/O thread
    /// must be woken); a `key_conflict` if this client holds a future of the key with
    /// another definition (nothing changes then).
    fn register(
        &self,
        key: &Arc<str>,
        definition: &str,
        item: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<bool, Error> {
        let mut t = self.lock();
        if let Some(e) = t.keys.get(key) {
            if e.handles > 0 && e.definition.as_deref().is_some_and(|d| d != definition) {
                return Err(conflict(key));
            }
        }
        let entry = t.keys.entry(key.clone()).or_insert_with(Entry::new);
        entry.handles += 1;
        let resubmit = entry.handles == 1 || entry.needs_submitting();
        entry.definition = Some(definition.to_string());
        if !resubmit {
            return Ok(false);
        }
        entry.status = FutureStatus::Pending;
        entry.failure = None;
        let wake = t.ops.is_empty();
        t.ops.push(Op::Submit(item(), vec![key.clone()]));
        Ok(wake)
    }

    /// Handles of `keys` (one each, with their definitions if known) for one submission of
    /// several keys (`compute`); sent if any of them must be.
    fn register_many(
        &self,
        keys: &[(Arc<str>, Option<String>)],
        item: Vec<u8>,
    ) -> Result<bool, Error> {
        let mut t = self.lock();
        for (key, definition) in keys {
            if let (Some(e), Some(new)) = (t.keys.get(key), definition) {
                if e.handles > 0 && e.definition.as_ref().is_some_and(|d| d != new) {
                    return Err(conflict(key));
                }
            }
        }
        let mut send = false;
        for (key, definition) in keys {
            let entry = t.keys.entry(key.clone()).or_insert_with(Entry::new);
            entry.handles += 1;
            if entry.handles == 1 || entry.needs_submitting() {
                entry.status = FutureStatus::Pending;
                entry.failure = None;
                send = true;
            }
            if definition.is_some() {
                entry.definition = definition.clone();
            }
        }
        if !send {
            return Ok(false);
        }
        let wake = t.ops.is_empty();
        let keys = keys.iter().map(|(k, _)| k.clone()).collect();
        t.ops.push(Op::Submit(item, keys));
        Ok(wake)
    }

    fn add_handle(&self, key: &Arc<str>) {
        if let Some(e) = self.lock().keys.get_mut(key) {
            e.handles += 1;
        }
    }

    /// A handle of `key` was dropped; true if the I/O thread must be woken. With the last
    /// one, the key goes, unless a cancel of it is still to be confirmed: it stays, with no
    /// handle, until then (so that the confirmation does not cancel a new submission).
    fn drop_handle(&self, key: &Arc<str>) -> bool {
        let mut t = self.lock();
        let Some(e) = t.keys.get_mut(key) else {
            return false;
        };
        e.handles = e.handles.saturating_sub(1);
        if e.handles > 0 {
            return false;
        }
        if e.cancels_sent == 0 {
            t.keys.remove(key);
        }
        let wake = t.ops.is_empty();
        t.ops.push(Op::Drop(key.to_string()));
        wake
    }

    /// Cancels `key` here at once; true if the I/O thread must be woken.
    fn cancel(&self, key: &Arc<str>) -> bool {
        let mut t = self.lock();
        let mut notify = Notify::default();
        let Some(e) = t.keys.get_mut(key) else {
            return false;
        };
        e.cancels_sent += 1;
        e.finish(key, FutureStatus::Cancelled, None, &mut notify);
        let wake = t.ops.is_empty();
        t.ops.push(Op::Cancel(key.to_string()));
        drop(t);
        self.changed.notify_all();
        notify.fire();
        wake
    }

    /// What to send, in order.
    pub(crate) fn take_ops(&self) -> Vec<Op> {
        std::mem::take(&mut self.lock().ops)
    }

    /// A `submit` message with these keys was sent as `request`.
    pub(crate) fn sent_batch(&self, request: u64, keys: Vec<Arc<str>>) {
        self.lock().batches.insert(request, keys);
    }

    /// The scheduler read `submit` `request`.
    pub(crate) fn batch_read(&self, request: u64) -> bool {
        self.lock().batches.remove(&request).is_some()
    }

    /// The scheduler refused `submit` `request` (it could not read it): its keys fail.
    /// False if `request` is no submission.
    pub(crate) fn batch_refused(&self, request: u64, error: &ErrorInfo) -> bool {
        let mut t = self.lock();
        let mut notify = Notify::default();
        let Some(keys) = t.batches.remove(&request) else {
            return false;
        };
        for key in keys {
            if let Some(e) = t.keys.get_mut(&key) {
                let failure = Some(Failure::Scheduler(error.clone()));
                e.finish(&key, FutureStatus::Error, failure, &mut notify);
            }
        }
        drop(t);
        self.changed.notify_all();
        notify.fire();
        true
    }

    /// News from the scheduler.
    pub(crate) fn apply(&self, events: Vec<KeyEvent>) {
        let mut t = self.lock();
        let mut notify = Notify::default();
        for ev in events {
            let Some(key) = t
                .keys
                .get_key_value(ev.key.as_str())
                .map(|(k, _)| k.clone())
            else {
                continue; // Dropped here since.
            };
            let Some(e) = t.keys.get_mut(&key) else {
                continue;
            };
            if e.cancels_sent > 0 {
                // Cancelled here: news of it sent before the scheduler saw the cancel is
                // stale; its `cancelled` confirms the cancel.
                if ev.status == KeyStatus::Cancelled {
                    e.cancels_sent -= 1;
                    if e.cancels_sent == 0 && e.handles == 0 {
                        t.keys.remove(&key);
                    }
                }
                continue;
            }
            match ev.status {
                KeyStatus::Done => e.finish(&key, FutureStatus::Finished, None, &mut notify),
                // A finished key stays finished when a later submission of it fails (its
                // value is still held for this client), unless the scheduler dropped it.
                KeyStatus::Erred
                    if e.status == FutureStatus::Finished
                        && ev.error.as_ref().map(|i| &i.kind)
                            != Some(&zask_core::ErrorKind::Cancelled) => {}
                KeyStatus::Erred => {
                    let failure = ev.error.map(Failure::Scheduler);
                    e.finish(&key, FutureStatus::Error, failure, &mut notify)
                }
                KeyStatus::Cancelled => e.finish(&key, FutureStatus::Cancelled, None, &mut notify),
                KeyStatus::Lost => {
                    if !e.status.is_done() || e.status == FutureStatus::Finished {
                        e.status = FutureStatus::Lost;
                    }
                }
            }
        }
        drop(t);
        self.changed.notify_all();
        notify.fire();
    }

    /// Fails the futures not done yet (`everything`: all of them, finished ones too, when the
    /// scheduler forgot them all).
    pub(crate) fn fail(&self, failure: Failure, everything: bool) {
        let mut t = self.lock();
        let mut notify = Notify::default();
        t.batches.clear();
        for (key, e) in t.keys.iter_mut() {
            if everything || !e.status.is_done() {
                e.finish(key, FutureStatus::Error, Some(failure.clone()), &mut notify);
            }
        }
        drop(t);
        self.changed.notify_all();
        notify.fire();
    }

    /// Whether the client holds any future (it then pings the scheduler).
    pub(crate) fn any(&self) -> bool {
        !self.lock().keys.is_empty()
    }

    fn status(&self, key: &str) -> (FutureStatus, Option<Failure>) {
        match self.lock().keys.get(key) {
            Some(e) => (e.status, e.failure.clone()),
            None => (FutureStatus::Cancelled, None),
        }
    }

    /// Waits until `key` is done, or `deadline`.
    fn wait(&self, key: &str, deadline: Instant) -> (FutureStatus, Option<Failure>) {
        let mut t = self.lock();
        loop {
            let (status, failure) = match t.keys.get(key) {
                Some(e) => (e.status, e.failure.clone()),
                None => return (FutureStatus::Cancelled, None),
            };
            let now = Instant::now();
            if status.is_done() || now >= deadline {
                return (status, failure);
            }
            t = match self.changed.wait_timeout(t, deadline - now) {
                Ok((t, _)) => t,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Sends `key` on `tx` once it is done (at once if it is).
    fn watch(&self, key: &Arc<str>, tx: mpsc::Sender<Arc<str>>) {
        let mut t = self.lock();
        match t.keys.get_mut(key) {
            Some(e) if !e.status.is_done() => e.watchers.push(tx),
            _ => {
                let _ = tx.send(key.clone());
            }
        }
    }

    /// The status of `key`; while not done, `waker` is woken when it is.
    fn poll(&self, key: &str, waker: &Waker) -> (FutureStatus, Option<Failure>) {
        let mut t = self.lock();
        match t.keys.get_mut(key) {
            Some(e) => {
                if !e.status.is_done() && !e.wakers.iter().any(|w| w.will_wake(waker)) {
                    e.wakers.push(waker.clone());
                }
                (e.status, e.failure.clone())
            }
            None => (FutureStatus::Cancelled, None),
        }
    }
}

/// A handle of a task submitted to the scheduler: its key, its status, and its value once
/// computed. Cloning is cheap; the key is released when the last handle (of this client) is
/// dropped. A `&Future` converts into a graph [`Node`] (a reference to its key), so it can be
/// an argument of a later submission.
pub struct Future {
    key: Arc<str>,
    client: Client,
    /// The value being fetched for `.await`.
    fetch: Option<Arc<AsyncSlot>>,
}

impl std::fmt::Debug for Future {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Future({:?}, {:?})", self.key, self.status())
    }
}

impl Clone for Future {
    fn clone(&self) -> Future {
        self.client.futures().add_handle(&self.key);
        Future {
            key: self.key.clone(),
            client: self.client.clone(),
            fetch: None,
        }
    }
}

impl Drop for Future {
    fn drop(&mut self) {
        if self.client.futures().drop_handle(&self.key) {
            self.client.wake_io();
        }
    }
}

impl From<&Future> for Node {
    fn from(f: &Future) -> Node {
        Node::Ref(f.key.to_string())
    }
}

impl From<Future> for Node {
    fn from(f: Future) -> Node {
        Node::Ref(f.key.to_string())
    }
}

/// A future names its key where keys are asked for: `client.gather(&futures[..])` gives
/// their values as a list, shaped like the keys (waiting on the scheduler for those not done;
/// the first failure fails it).
impl From<&Future> for zask_core::Keys {
    fn from(f: &Future) -> zask_core::Keys {
        zask_core::Keys::One(f.key.to_string())
    }
}

impl From<Future> for zask_core::Keys {
    fn from(f: Future) -> zask_core::Keys {
        zask_core::Keys::One(f.key.to_string())
    }
}

impl Future {
    /// The key it names.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where it is now.
    pub fn status(&self) -> FutureStatus {
        self.client.futures().status(&self.key).0
    }

    /// Whether it is done (finished, failed or cancelled).
    pub fn done(&self) -> bool {
        self.status().is_done()
    }

    /// Its value, waiting for it as long as the client's `get_timeout`.
    pub fn result(&self) -> Result<Value, Error> {
        self.result_timeout(self.client.options().get_timeout)
    }

    /// Its value, waiting at most `timeout` (then [`Error::Timeout`]; the future is still
    /// good). A failed task gives its error; a cancelled one [`Error::Cancelled`].
    pub fn result_timeout(&self, timeout: Duration) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        let (status, failure) = self.client.futures().wait(&self.key, deadline);
        self.outcome(status, failure, timeout)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut values = self
            .client
            .gather_keys(&[self.key.to_string()], left.max(Duration::from_millis(1)))?;
        values
            .remove(&*self.key)
            .ok_or_else(|| Error::Protocol(format!("the result lacks key {:?}", self.key)))
    }

    /// Cancels it: the client stops waiting at once, and the scheduler drops this client's
    /// claim; a task nobody else wants stops (a queued one is dropped, a running one's result
    /// discarded and its thread freed).
    pub fn cancel(&self) {
        log::debug!("cancel future {}", self.key);
        if self.client.futures().cancel(&self.key) {
            self.client.wake_io();
        }
    }

    /// Waits until done or `deadline`; its status then.
    fn wait_until(&self, deadline: Instant) -> FutureStatus {
        self.client.futures().wait(&self.key, deadline).0
    }

    /// `Ok` if it finished; its error otherwise.
    fn outcome(
        &self,
        status: FutureStatus,
        failure: Option<Failure>,
        timeout: Duration,
    ) -> Result<(), Error> {
        match status {
            FutureStatus::Finished => Ok(()),
            FutureStatus::Error => Err(failure
                .map(|f| f.to_error())
                .unwrap_or_else(|| Error::Protocol("a failed future without its error".into()))),
            FutureStatus::Cancelled => Err(Error::Cancelled(self.key.to_string())),
            FutureStatus::Pending | FutureStatus::Lost => Err(Error::Timeout {
                what: format!("waiting for future {:?}", self.key),
                after: timeout,
            }),
        }
    }
}

/// Fetching a value for `.await`: filled by the client's I/O thread, which wakes the task.
#[derive(Debug, Default)]
pub(crate) struct AsyncSlot {
    state: Mutex<(Option<Reply>, Option<Waker>)>,
}

impl AsyncSlot {
    /// The reply came.
    pub(crate) fn fill(&self, reply: Reply) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 = Some(reply);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The reply, if it came; else `waker` is woken when it does.
    fn take(&self, waker: &Waker) -> Option<Reply> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.is_none() {
            s.1 = Some(waker.clone());
        }
        s.0.take()
    }
}

/// `.await` gives the value, as [`Future::result`] does (without a timeout: it fails when
/// the scheduler fails or goes silent). No async runtime is needed: the client's I/O thread
/// wakes the task.
impl std::future::Future for Future {
    type Output = Result<Value, Error>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(slot) = &this.fetch {
            return match slot.take(cx.waker()) {
                None => Poll::Pending,
                Some(reply) => {
                    this.fetch = None;
                    Poll::Ready(crate::client::values_of(reply).and_then(|mut values| {
                        values.remove(&*this.key).ok_or_else(|| {
                            Error::Protocol(format!("the result lacks key {:?}", this.key))
                        })
                    }))
                }
            };
        }
        let (status, failure) = this.client.futures().poll(&this.key, cx.waker());
        if !status.is_done() {
            return Poll::Pending;
        }
        if let Err(e) = this.outcome(status, failure, Duration::ZERO) {
            return Poll::Ready(Err(e));
        }
        let slot = Arc::new(AsyncSlot::default());
        if let Err(e) = this.client.gather_async(&this.key, slot.clone()) {
            return Poll::Ready(Err(e));
        }
        this.fetch = Some(slot);
        // The reply may be there already.
        std::pin::Pin::new(this).poll(cx)
    }
}

/// A submission being built: [`Client::submit`] and [`Client::task`] start one.
#[must_use = "a submission does nothing until `.submit()`"]
pub struct Submit<'c> {
    client: &'c Client,
    node: Node,
    key: Option<String>,
    pure: bool,
    priority: i32,
    retries: u32,
    workers: Vec<String>,
}

/// The most retries a submission may ask for (a task that always fails must fail in the end).
pub const MAX_RETRIES: u32 = 1_000;

/// The lowest and highest priorities (24 bits).
const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -(1 << 23)..=(1 << 23) - 1;

impl<'c> Submit<'c> {
    /// Adds a keyword argument (the node must be a task).
    pub fn kwarg(mut self, name: &str, value: impl Into<Node>) -> Submit<'c> {
        self.node = self.node.kwarg(name, value);
        self
    }

    /// Higher runs first among ready tasks (default 0; -8,388,608 to 8,388,607).
    pub fn priority(mut self, priority: i32) -> Submit<'c> {
        self.priority = priority;
        self
    }

    /// A failure runs the task again, up to `n` times, before it counts.
    pub fn retries(mut self, n: u32) -> Submit<'c> {
        self.retries = n;
        self
    }

    /// Runs the task only on the workers at these addresses (as `Client::workers` lists
    /// them). While none of them is registered it waits for one; past the scheduler's
    /// `--no-workers-timeout`, a task something waits for fails (`unknown_function`).
    pub fn workers<S: Into<String>>(
        mut self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Submit<'c> {
        self.workers = addresses.into_iter().map(Into::into).collect();
        self
    }

    /// `false`: a fresh key, so the call is run even if the same call was made before (for
    /// functions with side effects or randomness). Default `true`: the key is a hash of the
    /// call, shared with every identical call.
    pub fn pure(mut self, pure: bool) -> Submit<'c> {
        self.pure = pure;
        self
    }

    /// Names the result `key` (instead of a hash of the call).
    pub fn key(mut self, key: impl Into<String>) -> Submit<'c> {
        self.key = Some(key.into());
        self
    }

    /// Submits it: the future returns at once.
    pub fn submit(self) -> Result<Future, Error> {
        if self.client.is_closed() {
            return Err(Error::Closed);
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::Invalid(format!(
                "retries {} is more than {MAX_RETRIES}",
                self.retries
            )));
        }
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(Error::Invalid(format!(
                "priority {} is out of range ({} to {})",
                self.priority,
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            )));
        }
        let node_bytes = rmp_serde::to_vec_named(&self.node)
            .map_err(|e| Error::Protocol(format!("cannot encode the task: {e}")))?;
        let name = match &self.node {
            Node::Task(Task { func, .. }) => func.as_str(),
            _ => "value",
        };
        let definition = zask_core::token::tokenize_encoded(&[&node_bytes]);
        let key: Arc<str> = match self.key {
            Some(k) => Arc::from(k),
            None if self.pure => Arc::from(format!("{name}-{definition}")),
            None => Arc::from(format!("{name}-{}", fresh_token())),
        };
        let (priority, retries, workers) = (self.priority, self.retries, &self.workers);
        let wake = self.client.futures().register(&key, &definition, &mut || {
            encode_item(&key, &node_bytes, priority, retries, workers)
        })?;
        log::debug!(
            "future {key} submitted ({}; sent with the next batch)",
            if wake { "new" } else { "already held" }
        );
        if wake {
            self.client.wake_io();
        }
        Ok(Future {
            key,
            client: self.client.clone(),
            fetch: None,
        })
    }
}

/// A submission of one task: `{"graph": {key: node}, "keys": [key], "priority": p,
/// "retries": n, "workers": [...]}` (the last three only when not 0 or empty), written around
/// the node's bytes.
fn encode_item(key: &str, node: &[u8], priority: i32, retries: u32, workers: &[String]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(node.len() + 2 * key.len() + 32);
    let fields =
        2 + u32::from(priority != 0) + u32::from(retries != 0) + u32::from(!workers.is_empty());
    // (Writing to a Vec cannot fail.)
    let _ = rmp::encode::write_map_len(&mut buf, fields);
    let _ = rmp::encode::write_str(&mut buf, "graph");
    let _ = rmp::encode::write_map_len(&mut buf, 1);
    let _ = rmp::encode::write_str(&mut buf, key);
    buf.extend_from_slice(node);
    let _ = rmp::encode::write_str(&mut buf, "keys");
    let _ = rmp::encode::write_array_len(&mut buf, 1);
    let _ = rmp::encode::write_str(&mut buf, key);
    if priority != 0 {
        let _ = rmp::encode::write_str(&mut buf, "priority");
        let _ = rmp::encode::write_sint(&mut buf, i64::from(priority));
    }
    if retries != 0 {
        let _ = rmp::encode::write_str(&mut buf, "retries");
        let _ = rmp::encode::write_uint(&mut buf, u64::from(retries));
    }
    if !workers.is_empty() {
        let _ = rmp::encode::write_str(&mut buf, "workers");
        let _ = rmp::encode::write_array_len(&mut buf, workers.len() as u32);
        for w in workers {
            let _ = rmp::encode::write_str(&mut buf, w);
        }
    }
    buf
}

/// 16 random hex digits (a key no other call makes).
fn fresh_token() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No randomness: a process-unique id still names one call.
        return zask_core::net::unique_id("fresh");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Client {
    /// Submits a call of worker function `func` with `args` (a tuple of nodes, values or
    /// `&Future`s): returns its future at once. See [`Client::task`] for options.
    pub fn submit(&self, func: &str, args: impl IntoArgs) -> Result<Future, Error> {
        self.task(func, args).submit()
    }

    /// Starts a submission of `func(args)`, with options (`kwarg`, `priority`, `retries`,
    /// `pure`, `key`) before `.submit()`.
    pub fn task(&self, func: &str, args: impl IntoArgs) -> Submit<'_> {
        self.submit_node(zask_core::graph::task(func, args))
    }

    /// Starts a submission of a built node (a task, usually).
    pub fn submit_node(&self, node: Node) -> Submit<'_> {
        Submit {
            client: self,
            node,
            key: None,
            pure: true,
            priority: 0,
            retries: 0,
            workers: Vec::new(),
        }
    }

    /// Submits `func(item)` for each item: one future per item, in order.
    pub fn map<T: Into<Node>>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Future>, Error> {
        items
            .into_iter()
            .map(|item| self.submit(func, (item.into(),)))
            .collect()
    }

    /// Submits `graph` and returns a future for each of `keys` (dask's `compute`/`persist`):
    /// the results stay on the workers while their futures live.
    pub fn compute(&self, graph: &Graph, keys: &[&str]) -> Result<Vec<Future>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let key_list: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let item = rmp_serde::to_vec_named(&SubmitItem {
            graph,
            keys: key_list,
            priority: 0,
            retries: 0,
            workers: Vec::new(),
        })
        .map_err(|e| Error::Protocol(format!("cannot encode the graph: {e}")))?;
        let mut shared: Vec<(Arc<str>, Option<String>)> = Vec::with_capacity(keys.len());
        for k in keys {
            let definition = match graph.get(k) {
                Some(node) => Some(zask_core::token::tokenize_encoded(&[
                    &rmp_serde::to_vec_named(node)
                        .map_err(|e| Error::Protocol(format!("cannot encode the graph: {e}")))?,
                ])),
                None => None,
            };
            shared.push((Arc::from(*k), definition));
        }
        log::debug!(
            "futures of {} keys of a graph of {} tasks submitted",
            keys.len(),
            graph.len()
        );
        if self.futures().register_many(&shared, item)? {
            self.wake_io();
        }
        Ok(shared
            .into_iter()
            .map(|(key, _)| Future {
                key,
                client: self.clone(),
                fetch: None,
            })
            .collect())
    }

    /// The values of `futures`, in order, once all are done; the first failure (in order)
    /// if any failed. One request fetches them all.
    pub fn gather_futures(&self, futures: &[Future]) -> Result<Vec<Value>, Error> {
        log::debug!("gathering {} futures", futures.len());
        let timeout = self.options().get_timeout;
        let deadline = Instant::now() + timeout;
        for f in futures {
            let (status, failure) = f.client.futures().wait(&f.key, deadline);
            f.outcome(status, failure, timeout)?;
        }
        let mut keys: Vec<String> = futures.iter().map(|f| f.key.to_string()).collect();
        keys.sort_unstable();
        keys.dedup();
        let left = deadline.saturating_duration_since(Instant::now());
        let values = self.gather_keys(&keys, left.max(Duration::from_millis(1)))?;
        futures
            .iter()
            .map(|f| {
                values
                    .get(&*f.key)
                    .cloned()
                    .ok_or_else(|| Error::Protocol(format!("the result lacks key {:?}", f.key)))
            })
            .collect()
    }
}

/// Futures in the order they finish (errors and cancellations included); more can be added
/// while iterating. Each is yielded once per time it was added.
pub struct AsCompleted {
    tx: mpsc::Sender<Arc<str>>,
    rx: mpsc::Receiver<Arc<str>>,
    waiting: HashMap<Arc<str>, Vec<Future>>,
    left: usize,
}

/// [`AsCompleted`] over `futures`.
pub fn as_completed(futures: impl IntoIterator<Item = Future>) -> AsCompleted {
    let (tx, rx) = mpsc::channel();
    let mut ac = AsCompleted {
        tx,
        rx,
        waiting: HashMap::new(),
        left: 0,
    };
    for f in futures {
        ac.add(f);
    }
    ac
}

impl AsCompleted {
    /// Adds a future to those waited for.
    pub fn add(&mut self, future: Future) {
        future.client.futures().watch(&future.key, self.tx.clone());
        self.waiting
            .entry(future.key.clone())
            .or_default()
            .push(future);
        self.left += 1;
    }

    /// How many futures are still to come.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether every future added has come.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The next future done, waiting at most `timeout`: `None` if none is done by then (or
    /// none is left: see [`AsCompleted::is_empty`]).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Future> {
        let deadline = Instant::now() + timeout;
        while self.left > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let key = self.rx.recv_timeout(left).ok()?;
            if let Some(f) = self.take(&key) {
                return Some(f);
            }
        }
        None
    }

    /// The next future done, without waiting: `None` if none is done yet.
    pub fn try_next(&mut self) -> Option<Future> {
        while self.left > 0 {
            let key = self.rx.try_recv().ok()?;
            if let Some(f) = self.take(&key) {
                return Some(f);
            }
        }
        None
    }

    fn take(&mut self, key: &Arc<str>) -> Option<Future> {
        let list = self.waiting.get_mut(key)?;
        let f = list.pop()?;
        if list.is_empty() {
            self.waiting.remove(key);
        }
        self.left -= 1;
        Some(f)
    }

    /// Yields each future with its value (or error), fetching the values of futures that
    /// finish together in one request.
    pub fn with_results(self) -> AsCompletedResults {
        AsCompletedResults {
            inner: self,
            ready: VecDeque::new(),
        }
    }
}

impl Iterator for AsCompleted {
    type Item = Future;

    fn next(&mut self) -> Option<Future> {
        while self.left > 0 {
            // Every future is done in the end: finished, failed, cancelled, or failed by the
            // client when the scheduler restarts or goes silent.
            let key = self.rx.recv().ok()?;
            if let Some(f) = self.take(&key) {
                return Some(f);
            }
        }
        None
    }
}

/// [`AsCompleted::with_results`].
pub struct AsCompletedResults {
    inner: AsCompleted,
    ready: VecDeque<(Future, Result<Value, Error>)>,
}

impl Iterator for AsCompletedResults {
    type Item = (Future, Result<Value, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        while self.ready.is_empty() {
            let first = self.inner.next()?;
            let mut done = vec![first];
            while let Some(f) = self.inner.try_next() {
                done.push(f);
            }
            self.fetch(done);
        }
        self.ready.pop_front()
    }
}

impl AsCompletedResults {
    /// Fetches the values of futures just done (those of one client together) into
    /// `ready`; one that is no longer done (lost since, being recomputed) is waited for
    /// again.
    fn fetch(&mut self, done: Vec<Future>) {
        let mut finished = Vec::new();
        for f in done {
            match f.status() {
                FutureStatus::Finished => finished.push(f),
                FutureStatus::Pending | FutureStatus::Lost => self.inner.add(f),
                FutureStatus::Error | FutureStatus::Cancelled => {
                    let r = f.result_timeout(Duration::ZERO);
                    self.ready.push_back((f, r));
                }
            }
        }
        let mut by_client: Vec<Vec<Future>> = Vec::new();
        for f in finished {
            match by_client.iter_mut().find(|g| g[0].client.same(&f.client)) {
                Some(g) => g.push(f),
                None => by_client.push(vec![f]),
            }
        }
        for group in by_client {
            let client = group[0].client.clone();
            match client.gather_futures(&group) {
                Ok(values) => self
                    .ready
                    .extend(group.into_iter().zip(values.into_iter().map(Ok))),
                Err(_) => {
                    // One failed (lost meanwhile, say): each on its own, with its own error.
                    for f in group {
                        let r = f.result();
                        self.ready.push_back((f, r));
                    }
                }
            }
        }
    }
}

/// What [`wait`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Until one future is done.
    FirstCompleted,
    /// Until every future is done.
    AllCompleted,
}

/// The futures [`wait`] was given, split by whether they were done when it returned.
#[derive(Debug)]
pub struct Waited {
    /// Done (finished, failed or cancelled).
    pub done: Vec<Future>,
    /// Not done yet.
    pub not_done: Vec<Future>,
}

/// Waits until the first or all of `futures` are done (`mode`), or `timeout` passes (not an
/// error: see what is done in the answer).
pub fn wait(futures: Vec<Future>, timeout: Duration, mode: WaitMode) -> Waited {
    let deadline = Instant::now() + timeout;
    match mode {
        WaitMode::AllCompleted => {
            for f in &futures {
                f.wait_until(deadline);
            }
        }
        WaitMode::FirstCompleted => {
            let (tx, rx) = mpsc::channel();
            for f in &futures {
                f.client.futures().watch(&f.key, tx.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = rx.recv_timeout(left);
        }
    }
    let (done, not_done) = futures.into_iter().partition(|f| f.done());
    Waited { done, not_done }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_named_by_the_hash_of_its_node() {
        // The example of docs/futures.md, checked with Python's msgpack and hashlib.
        let node = zask_core::graph::task("inc", (1,));
        let bytes = rmp_serde::to_vec_named(&node).unwrap();
        assert_eq!(
            bytes,
            [
                0x82, 0xa2, 0x66, 0x6e, 0xa3, 0x69, 0x6e, 0x63, 0xa4, 0x61, 0x72, 0x67, 0x73, 0x91,
                0x01
            ]
        );
        assert_eq!(
            zask_core::token::tokenize_encoded(&[&bytes]),
            "e225a138ab6cef4d"
        );
    }

    fn event(key: &str, status: KeyStatus, error: Option<ErrorInfo>) -> KeyEvent {
        KeyEvent {
            key: key.into(),
            status,
            error,
        }
    }

    fn register(t: &FutureTable, key: &Arc<str>, definition: &str) -> Result<bool, Error> {
        t.register(key, definition, &mut || b"item".to_vec())
    }

    fn submits(ops: &[Op]) -> usize {
        ops.iter().filter(|o| matches!(o, Op::Submit(..))).count()
    }

    #[test]
    fn news_sent_before_a_cancel_does_not_undo_it() {
        let t = FutureTable::default();
        let k: Arc<str> = Arc::from("k");
        register(&t, &k, "d1").unwrap();
        t.cancel(&k);
        // A `done` the scheduler sent before it read the cancel.
        t.apply(vec![event("k", KeyStatus::Done, None)]);
        assert_eq!(t.status("k").0, FutureStatus::Cancelled);
        t.apply(vec![event("k", KeyStatus::Cancelled, None)]);
        assert_eq!(t.status("k").0, FutureStatus::Cancelled);
    }

    #[test]
    fn a_late_cancel_confirmation_does_not_cancel_a_new_submission() {
        let t = FutureTable::default();
        let k: Arc<str> = Arc::from("k");
        register(&t, &k, "d1").unwrap();
        t.cancel(&k);
        t.drop_handle(&k);
        // The same call again, before the scheduler confirmed the cancel.
        register(&t, &k, "d1").unwrap();
        let ops = t.take_ops();
        assert_eq!(submits(&ops), 2, "submitted again: {ops:?}");
        assert_eq!(t.status("k").0, FutureStatus::Pending);
        t.apply(vec![event("k", KeyStatus::Cancelled, None)]);
        assert_eq!(
            t.status("k").0,
            FutureStatus::Pending,
            "the confirmation is old news"
        );
        t.apply(vec![event("k", KeyStatus::Done, None)]);
        assert_eq!(t.status("k").0, FutureStatus::Finished);
        t.drop_handle(&k);
        assert!(!t.any(), "nothing is left once its handles are gone");
    }

    #[test]
    fn one_key_two_definitions_is_refused_here() {
        let t = FutureTable::default();
        let k: Arc<str> = Arc::from("x");
        register(&t, &k, "d1").unwrap();
        let e = register(&t, &k, "d2").unwrap_err();
        assert_eq!(e.kind(), Some("key_conflict"), "{e}");
        assert_eq!(submits(&t.take_ops()), 1);
        // The same definition shares the future, and is not sent again.
        assert!(!register(&t, &k, "d1").unwrap());
        assert!(t.take_ops().is_empty());
        // Once the handles are gone, the key may be defined anew.
        t.drop_handle(&k);
        t.drop_handle(&k);
        register(&t, &k, "d2").unwrap();
    }

    #[test]
    fn a_finished_future_survives_a_failed_submission_of_its_key() {
        let t = FutureTable::default();
        let k: Arc<str> = Arc::from("k");
        register(&t, &k, "d1").unwrap();
        t.apply(vec![event("k", KeyStatus::Done, None)]);
        let conflict = ErrorInfo::new(zask_core::ErrorKind::KeyConflict, "another definition");
        t.apply(vec![event("k", KeyStatus::Erred, Some(conflict))]);
        assert_eq!(t.status("k").0, FutureStatus::Finished);
        // Unless the scheduler dropped this client's futures.
        let dropped = ErrorInfo::new(zask_core::ErrorKind::Cancelled, "silent client");
        t.apply(vec![event("k", KeyStatus::Erred, Some(dropped))]);
        assert_eq!(t.status("k").0, FutureStatus::Error);
    }

    #[test]
    fn a_submission_is_written_as_the_protocol_reads_it() {
        let node = rmp_serde::to_vec_named(&zask_core::graph::task("inc", (1,))).unwrap();
        let item = encode_item("k", &node, -3, 2, &["tcp://a:1".to_string()]);
        let read: SubmitItem = rmp_serde::from_slice(&item).unwrap();
        assert_eq!(read.keys, vec!["k".to_string()]);
        assert_eq!((read.priority, read.retries), (-3, 2));
        assert_eq!(read.workers, vec!["tcp://a:1".to_string()]);
        assert_eq!(
            read.graph.graph.get("k"),
            Some(&zask_core::graph::task("inc", (1,)))
        );
        let plain: SubmitItem = rmp_serde::from_slice(&encode_item("k", &node, 0, 0, &[])).unwrap();
        assert_eq!((plain.priority, plain.retries), (0, 0));
        assert!(plain.workers.is_empty());
    }
}
