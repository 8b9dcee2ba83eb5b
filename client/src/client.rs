//! [`Client`]: submit graphs to a scheduler and wait for their results.
//!
//! A client owns one DEALER socket to the scheduler, driven by a background I/O thread. Calls
//! from any thread (or any clone: clones share the connection) encode their request, hand it to
//! the I/O thread over an in-process socket, and wait for the reply with the same request id,
//! so many requests can be outstanding at once. While requests are outstanding the I/O thread
//! pings the scheduler; if it stops answering, or answers as a different (restarted) scheduler,
//! every waiting call fails at once instead of waiting out its timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zask_core::frames;
use zask_core::graph::Graph;
use zask_core::protocol::{
    CollectionSummary, ComputationSummary, FromClient, GetBody, HeldKey, KeyData, Message, Tagged,
    ToClient, WorkerSummary, PROTOCOL_VERSION,
};
use zask_core::security::{self, Handshake, HandshakeWatch, Secret};
use zask_core::{net, Collection, ErrorKind, Keys, Value};

use crate::error::Error;
use crate::futures::{AsyncSlot, Failure, FutureTable, Op};

/// How a client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Timeout of quick calls (connect, status, workers).
    pub timeout: Duration,
    /// Timeout of `get` (the whole computation).
    pub get_timeout: Duration,
    /// How often to ping the scheduler while calls are outstanding.
    pub heartbeat_interval: Duration,
    /// With calls outstanding, fail them all if the scheduler is silent this long.
    pub scheduler_timeout: Duration,
    /// Largest request the client sends, in bytes (the scheduler has its own limit).
    pub max_message_size: usize,
    /// How many times `get` resubmits a computation the scheduler lost (it restarted, or
    /// stopped answering) before giving up with the error. Resubmitting is safe: keys name
    /// values, and whatever the workers still hold is reused.
    pub resubmit_attempts: u32,
    /// The cluster's shared secret, the scheduler's (see `docs/security.md`): the client
    /// proves it, and all traffic is encrypted. A client with the wrong secret, or none when
    /// the scheduler has one, fails with [`Error::AuthenticationFailed`] at once.
    pub secret: Option<Secret>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(10),
            get_timeout: Duration::from_secs(3600),
            heartbeat_interval: Duration::from_millis(500),
            scheduler_timeout: Duration::from_secs(10),
            max_message_size: 1 << 30,
            resubmit_attempts: 3,
            secret: None,
        }
    }
}

/// The scheduler's answer to a status ping.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The scheduler's unique id (changes when it restarts).
    pub scheduler_id: String,
    /// Registered workers.
    pub workers: u64,
    /// Tasks the scheduler tracks (waiting, running or held).
    pub tasks: u64,
    /// Computations in flight.
    pub graphs: u64,
    /// Keys held on workers.
    pub keys: u64,
}

/// How far a `get` is (see [`Client::get_with_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetProgress {
    /// Tasks of the computation finished.
    pub done: u64,
    /// Tasks of it failed.
    pub failed: u64,
    /// Tasks it made (keys reused from other computations are not counted).
    pub total: u64,
}

/// Where the progress of each `get` asked with progress goes, by request id.
type ProgressListeners = Arc<Mutex<HashMap<u64, mpsc::Sender<GetProgress>>>>;

/// A reply to a request (its header and blob frames), or why none came.
pub(crate) type Reply = Result<(ToClient, Vec<zmq::Message>), Error>;
type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

/// Who waits for a reply: a caller blocked on a channel, or a task (`.await`) on a slot.
enum Waiter {
    Channel(mpsc::SyncSender<Reply>),
    Slot(Arc<AsyncSlot>),
}

impl Waiter {
    fn send(self, reply: Reply) {
        match self {
            Waiter::Channel(tx) => {
                let _ = tx.send(reply);
            }
            Waiter::Slot(slot) => slot.fill(reply),
        }
    }
}
/// Why the scheduler refused the connection, once it has.
type Refused = Arc<Mutex<Option<String>>>;

/// A connection to a scheduler. Cheap to clone; usable from many threads at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    scheduler_id: String,
    options: ClientOptions,
    outgoing: Mutex<zmq::Socket>,
    pending: Pending,
    next_request: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Why the scheduler refused the connection, once it has.
    refused: Refused,
    /// The futures this client holds.
    futures: Arc<FutureTable>,
    /// Where progress reports of gets go.
    progress: ProgressListeners,
}

impl Client {
    /// Connects to a scheduler's `address_to_clients` with default options.
    pub fn connect(address: &str) -> Result<Client, Error> {
        Client::connect_with(address, ClientOptions::default())
    }

    /// Connects with `options`; fails if the scheduler does not answer within
    /// `options.timeout` or speaks another protocol version.
    pub fn connect_with(address: &str, options: ClientOptions) -> Result<Client, Error> {
        let started = Instant::now();
        log::debug!(
            "connecting to {address} ({}), waiting at most {:?}",
            if options.secret.is_some() {
                "with the cluster's secret: authenticated and encrypted"
            } else {
                "no secret"
            },
            options.timeout
        );
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER)?;
        net::configure(&dealer)?;
        security::secure_client(options.secret.as_ref(), &dealer)?;
        let endpoint = format!("inproc://{}", net::unique_id("client"));
        let watch = HandshakeWatch::new(
            &ctx,
            &dealer,
            &endpoint["inproc://".len()..],
            options.secret.is_some(),
        )?;
        let refused = Arc::new(Mutex::new(None));
        dealer
            .connect(address)
            .map_err(|e| Error::Connect(address.to_string(), e))?;
        let incoming = ctx.socket(zmq::PULL)?;
        incoming.bind(&endpoint)?;
        let outgoing = ctx.socket(zmq::PUSH)?;
        net::configure(&outgoing)?;
        outgoing.connect(&endpoint)?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let next_request = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let futures = Arc::new(FutureTable::default());
        let progress: ProgressListeners = Arc::new(Mutex::new(HashMap::new()));
        let io = Io {
            futures: futures.clone(),
            progress: progress.clone(),
            idle: true,
            dealer,
            incoming,
            pending: pending.clone(),
            next_request: next_request.clone(),
            stop: stop.clone(),
            options: options.clone(),
            scheduler_id: None,
            pings: HashMap::new(),
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            watch,
            refused: refused.clone(),
            _ctx: ctx,
        };
        let thread = std::thread::Builder::new()
            .name("zask-client".into())
            .spawn(move || io.run())
            .map_err(Error::Thread)?;
        let mut inner = Inner {
            address: address.to_string(),
            scheduler_id: String::new(),
            options,
            outgoing: Mutex::new(outgoing),
            pending,
            next_request,
            stop,
            thread: Mutex::new(Some(thread)),
            refused,
            futures,
            progress,
        };
        let timeout = inner.options.timeout;
        let (reply, _) = inner
            .request(
                |request| FromClient::Hello {
                    request,
                    protocol: PROTOCOL_VERSION,
                },
                timeout,
                "connecting",
            )
            .map_err(|e| match e {
                Error::Timeout { after, .. } => Error::NoScheduler(address.to_string(), after),
                other => other,
            })?;
        match reply {
            ToClient::Welcome { scheduler_id, .. } => {
                log::debug!(
                    "connected to scheduler {scheduler_id} at {address} (handshake in {:?})",
                    started.elapsed()
                );
                inner.scheduler_id = scheduler_id
            }
            other => return Err(unexpected(other)),
        }
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The scheduler address this client talks to.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The id of the scheduler this client connected to.
    pub fn scheduler_id(&self) -> &str {
        &self.inner.scheduler_id
    }

    /// Computes `keys` of `graph` and returns their values in the keys' shape: one key gives
    /// its value, a list a list, nested lists nested lists. Results are released from the
    /// workers afterwards.
    pub fn get(&self, graph: &Graph, keys: impl Into<Keys>) -> Result<Value, Error> {
        self.get_with(graph, keys, false)
    }

    /// Like [`Client::get`]; with `keep_results` the results stay on the workers, so later
    /// graphs can use them without recomputing.
    pub fn get_with(
        &self,
        graph: &Graph,
        keys: impl Into<Keys>,
        keep_results: bool,
    ) -> Result<Value, Error> {
        self.get_inner(graph, keys.into(), keep_results, None)
    }

    /// Like [`Client::get_with`], and the scheduler reports how far the computation is, a
    /// few times a second, on `progress` (for a progress bar: `zask get --progress`).
    pub fn get_with_progress(
        &self,
        graph: &Graph,
        keys: impl Into<Keys>,
        keep_results: bool,
        progress: mpsc::Sender<GetProgress>,
    ) -> Result<Value, Error> {
        self.get_inner(graph, keys.into(), keep_results, Some(progress))
    }

    fn get_inner(
        &self,
        graph: &Graph,
        keys: Keys,
        keep_results: bool,
        progress: Option<mpsc::Sender<GetProgress>>,
    ) -> Result<Value, Error> {
        let requests = std::cell::RefCell::new(Vec::new());
        let result = self.get_attempts(graph, keys, keep_results, progress, &requests);
        if !requests.borrow().is_empty() {
            let mut listeners = self
                .inner
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for r in requests.borrow().iter() {
                listeners.remove(r);
            }
        }
        result
    }

    fn get_attempts(
        &self,
        graph: &Graph,
        keys: Keys,
        keep_results: bool,
        progress: Option<mpsc::Sender<GetProgress>>,
        requests: &std::cell::RefCell<Vec<u64>>,
    ) -> Result<Value, Error> {
        let keys_value = keys.to_value();
        let timeout = self.inner.options.get_timeout;
        log::debug!(
            "get: {} keys of a graph of {} tasks{}{}, waiting at most {timeout:?}",
            keys.flatten().len(),
            graph.len(),
            if keep_results {
                ", keeping the results"
            } else {
                ""
            },
            if progress.is_some() {
                ", with progress"
            } else {
                ""
            },
        );
        let mut attempt = 0;
        let (reply, blobs) = loop {
            // Encoded from the caller's graph as it is (no copy of a big graph).
            let result = self.inner.request_encoded(
                |request| {
                    if let Some(tx) = &progress {
                        requests.borrow_mut().push(request);
                        self.inner
                            .progress
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(request, tx.clone());
                    }
                    let msg = Tagged(GetBody {
                        request,
                        graph,
                        keys: &keys_value,
                        keep_results,
                        progress: progress.is_some(),
                    });
                    frames::encode(&msg, Vec::new())
                },
                timeout,
                "computing",
            );
            match result {
                Err(e) if e.is_lost_request() && attempt < self.inner.options.resubmit_attempts => {
                    attempt += 1;
                    log::warn!("{e}; submitting the computation again (attempt {attempt})");
                    if e.error_kind() == Some(&ErrorKind::ShuttingDown) {
                        // The scheduler is going away: give its successor a moment to come.
                        std::thread::sleep(self.inner.options.heartbeat_interval);
                    }
                }
                other => break other?,
            }
        };
        let values = values_of(Ok((reply, blobs)))?;
        if let Some(k) = keys.flatten().into_iter().find(|k| !values.contains_key(k)) {
            return Err(Error::Protocol(format!("the result lacks key {k:?}")));
        }
        Ok(keys.shape(&values))
    }

    /// The values of held `keys`, by key (a gather waiting at most `timeout`).
    pub(crate) fn gather_keys(
        &self,
        keys: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Value>, Error> {
        let keys_value = Value::List(keys.iter().map(|k| Value::Str(k.clone())).collect());
        let graph = Graph::new();
        let reply = self.inner.request_encoded(
            |request| frames::encode(&gather_body(request, &graph, &keys_value), Vec::new()),
            timeout,
            "gathering",
        );
        values_of(reply)
    }

    /// Gathers `key` for `.await`: the reply fills `slot` (and wakes its task).
    pub(crate) fn gather_async(&self, key: &str, slot: Arc<AsyncSlot>) -> Result<(), Error> {
        let keys_value = Value::List(vec![Value::Str(key.to_string())]);
        let graph = Graph::new();
        self.inner.send_request(
            |request| frames::encode(&gather_body(request, &graph, &keys_value), Vec::new()),
            Waiter::Slot(slot),
        )?;
        Ok(())
    }

    /// The futures this client holds.
    pub(crate) fn futures(&self) -> &FutureTable {
        &self.inner.futures
    }

    /// Wakes the I/O thread (futures have news for the scheduler).
    pub(crate) fn wake_io(&self) {
        if let Ok(socket) = self.inner.outgoing.lock() {
            let _ = socket.send(&b""[..], zmq::DONTWAIT);
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Whether the connection was closed (`disconnect`): calls fail with [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// Whether `other` is a clone of this client (shares its connection).
    pub(crate) fn same(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Closes the connection now: the scheduler is told the client is going away (it
    /// cancels the client's computations and drops its futures), and every call waiting
    /// fails with [`Error::Closed`]. For a program that gives up (Ctrl-C); other clones of
    /// this client and its futures fail from then on.
    pub fn disconnect(&self) {
        log::debug!("disconnecting from {}", self.inner.address);
        self.inner.stop.store(true, Ordering::SeqCst);
        self.wake_io();
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// Pings the scheduler and returns its counters.
    pub fn status(&self) -> Result<Status, Error> {
        let timeout = self.inner.options.timeout;
        match self
            .inner
            .request(|request| FromClient::Status { request }, timeout, "status")?
            .0
        {
            ToClient::Status {
                scheduler_id,
                workers,
                tasks,
                graphs,
                keys,
                ..
            } => Ok(Status {
                scheduler_id,
                workers,
                tasks,
                graphs,
                keys,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The registered workers.
    pub fn workers(&self) -> Result<Vec<WorkerSummary>, Error> {
        let timeout = self.inner.options.timeout;
        match self
            .inner
            .request(
                |request| FromClient::Workers { request },
                timeout,
                "workers",
            )?
            .0
        {
            ToClient::Workers { workers, .. } => Ok(workers),
            other => Err(unexpected(other)),
        }
    }

    /// Stores `collection` on the scheduler under `name`, for any client to fetch. A collection
    /// of that name is replaced; the answer says whether one was.
    pub fn set_collection(&self, name: &str, collection: &Collection) -> Result<bool, Error> {
        let value = collection.to_value();
        let reply = self.call(move |request| FromClient::SetCollection {
            request,
            name: name.to_string(),
            collection: value,
        })?;
        match reply {
            ToClient::CollectionStored { replaced, .. } => Ok(replaced),
            other => Err(unexpected(other)),
        }
    }

    /// The collection stored under `name` (an `unknown_collection` error if there is none).
    pub fn get_collection(&self, name: &str) -> Result<Collection, Error> {
        match self.call(|request| FromClient::GetCollection {
            request,
            name: name.to_string(),
        })? {
            ToClient::Collection { collection, .. } => Collection::from_value(&collection)
                .map_err(|e| Error::Protocol(format!("the stored collection is malformed: {e}"))),
            other => Err(unexpected(other)),
        }
    }

    /// The stored collections, sorted by name.
    pub fn list_collections(&self) -> Result<Vec<CollectionSummary>, Error> {
        match self.call(|request| FromClient::ListCollections { request })? {
            ToClient::Collections { collections, .. } => Ok(collections),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes the collection stored under `name` (an `unknown_collection` error if none).
    pub fn delete_collection(&self, name: &str) -> Result<(), Error> {
        match self.call(|request| FromClient::DeleteCollection {
            request,
            name: name.to_string(),
        })? {
            ToClient::CollectionDeleted { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Computes a stored collection as its kind says: a bag gives the list of its items, any
    /// other collection its keys' values in their shape.
    pub fn compute_collection(&self, name: &str) -> Result<Value, Error> {
        let collection = self.get_collection(name)?;
        if collection.kind == "bag" {
            let bag = crate::bag::Bag::from_collection(&collection)?;
            return bag.compute(self).map(Value::List);
        }
        self.get(&collection.graph, collection.keys)
    }

    /// Puts `values` on workers (spread across them) and returns their keys, for graphs to
    /// reference (`key(k)`). Keys are tokens of the values (`scatter-<token>`), so the same
    /// value scattered twice is stored once. The values stay until [`Client::release`].
    pub fn scatter(&self, values: Vec<Value>) -> Result<Vec<String>, Error> {
        let items = values
            .into_iter()
            .map(|v| (format!("scatter-{}", zask_core::token::tokenize(&[&v])), v))
            .collect();
        self.scatter_named(items)
    }

    /// Puts values on workers under the given keys (a key already held keeps its value).
    pub fn scatter_named(&self, items: Vec<(String, Value)>) -> Result<Vec<String>, Error> {
        let mut blobs = Vec::new();
        let items: Vec<KeyData> = items
            .into_iter()
            .map(|(key, value)| KeyData {
                key,
                data: frames::pack(value, &mut blobs),
                hash: None,
            })
            .collect();
        let timeout = self.inner.options.get_timeout;
        let (reply, _) = self.inner.request_with_blobs(
            move |request| FromClient::Scatter { request, items },
            blobs,
            timeout,
            "scattering",
        )?;
        match reply {
            ToClient::Scattered { keys, .. } => Ok(keys),
            other => Err(unexpected(other)),
        }
    }

    /// The values of held keys (scattered, kept, or being computed), shaped like `keys`.
    /// A key nobody holds is a `missing_key` error.
    pub fn gather(&self, keys: impl Into<Keys>) -> Result<Value, Error> {
        self.get(&Graph::new(), keys)
    }

    /// Lets `keys` go: scattered or kept keys are released from the workers once nothing else
    /// needs them. Returns the keys the scheduler did not know.
    pub fn release(&self, keys: &[String]) -> Result<Vec<String>, Error> {
        let keys = keys.to_vec();
        match self.call(move |request| FromClient::Release { request, keys })? {
            ToClient::Released { unknown, .. } => Ok(unknown),
            other => Err(unexpected(other)),
        }
    }

    /// Retires the worker at `address` gracefully: the scheduler stops giving it tasks, moves
    /// the data only it holds to other workers, and tells it to leave. Returns once it left.
    pub fn retire_worker(&self, address: &str) -> Result<(), Error> {
        let timeout = self.inner.options.get_timeout;
        let address = address.to_string();
        let (reply, _) = self.inner.request(
            move |request| FromClient::Retire { request, address },
            timeout,
            "retiring a worker",
        )?;
        match reply {
            ToClient::Retired { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The computations in flight on the scheduler, every client's (`zask computations`):
    /// each get, and the futures of each client holding some, with their progress.
    pub fn computations(&self) -> Result<Vec<ComputationSummary>, Error> {
        match self.call(|request| FromClient::Computations { request })? {
            ToClient::Computations { computations, .. } => Ok(computations),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels a computation by the id [`Client::computations`] gives (`get-N`: that get
    /// fails with `cancelled` for its client; `futures-N`: that client's futures are all
    /// cancelled). An id not in flight is an `unknown_computation` error.
    pub fn cancel_computation(&self, id: &str) -> Result<(), Error> {
        let id = id.to_string();
        match self.call(move |request| FromClient::CancelComputation { request, id })? {
            ToClient::ComputationCancelled { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Keys held on the workers, with their sizes and holders: up to `limit` of them (at most
    /// 10,000, `zask_core::protocol::MAX_HELD_KEYS_LISTED`; sorted by key, which ones of more
    /// being unspecified), and how many are held in all.
    pub fn held_keys(&self, limit: u64) -> Result<(u64, Vec<HeldKey>), Error> {
        match self.call(move |request| FromClient::HeldKeys { request, limit })? {
            ToClient::HeldKeys { total, keys, .. } => Ok((total, keys)),
            other => Err(unexpected(other)),
        }
    }

    /// A quick request (with the short timeout).
    fn call(&self, build: impl FnOnce(u64) -> FromClient) -> Result<ToClient, Error> {
        let timeout = self.inner.options.timeout;
        Ok(self
            .inner
            .request(build, timeout, "waiting for the scheduler")?
            .0)
    }

    /// Waits until at least `n` workers are registered, polling; fails after `timeout`.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.workers()?.len();
            if count >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("waiting for {n} workers ({count} registered)"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `get` of held keys (a gather), borrowing its parts.
fn gather_body<'a>(
    request: u64,
    graph: &'a Graph,
    keys: &'a Value,
) -> Tagged<GetBody<&'a Graph, &'a Value>> {
    Tagged(GetBody {
        request,
        graph,
        keys,
        keep_results: false,
        progress: false,
    })
}

/// The values of a `result` reply, by key (large ones are `Bytes` owning the received
/// frames: no copy).
pub(crate) fn values_of(reply: Reply) -> Result<HashMap<String, Value>, Error> {
    let (reply, blobs) = reply?;
    let blobs: Vec<zask_core::Bytes> = blobs.into_iter().map(frames::to_bytes).collect();
    match reply {
        ToClient::Result { items, .. } => {
            let mut values = HashMap::with_capacity(items.len());
            let mut unpacker = frames::Unpacker::new(&blobs);
            for item in items {
                let value = unpacker
                    .unpack(item.data)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                values.insert(item.key, value);
            }
            Ok(values)
        }
        other => Err(unexpected(other)),
    }
}

/// An error or reply that does not answer the request.
fn unexpected(reply: ToClient) -> Error {
    match reply {
        ToClient::Error { error, .. } => Error::Scheduler(error),
        other => Error::Protocol(format!("unexpected reply: {other:?}")),
    }
}

impl Inner {
    /// Sends the request built by `build` (given its id) and waits for the reply.
    fn request(
        &self,
        build: impl FnOnce(u64) -> FromClient,
        timeout: Duration,
        what: &str,
    ) -> Result<(ToClient, Vec<zmq::Message>), Error> {
        self.request_with_blobs(build, Vec::new(), timeout, what)
    }

    /// Like `request`, with blob frames after the header.
    fn request_with_blobs(
        &self,
        build: impl FnOnce(u64) -> FromClient,
        blobs: Vec<Vec<u8>>,
        timeout: Duration,
        what: &str,
    ) -> Result<(ToClient, Vec<zmq::Message>), Error> {
        self.request_encoded(
            |request| frames::encode(&build(request), blobs),
            timeout,
            what,
        )
    }

    /// Like `request`, with the message encoded by `encode` (given the request id).
    fn request_encoded(
        &self,
        encode: impl FnOnce(u64) -> Result<frames::Frames, frames::FrameError>,
        timeout: Duration,
        what: &str,
    ) -> Result<(ToClient, Vec<zmq::Message>), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = Instant::now();
        let request = self.send_request(encode, Waiter::Channel(tx))?;
        let reply = match rx.recv_timeout(timeout) {
            Ok(Ok((ToClient::Error { error, .. }, _))) => Err(Error::Scheduler(error)),
            Ok(reply) => reply,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.lock_pending().remove(&request);
                Err(Error::Timeout {
                    what: what.to_string(),
                    after: timeout,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        };
        match &reply {
            Ok(_) => log::debug!(
                "request {request} ({what}) answered in {:?}",
                sent.elapsed()
            ),
            Err(e) => log::debug!(
                "request {request} ({what}) failed after {:?}: {e}",
                sent.elapsed()
            ),
        }
        reply
    }

    /// Sends the request `encode` writes (given its id), the reply to go to `waiter`;
    /// returns the request id.
    fn send_request(
        &self,
        encode: impl FnOnce(u64) -> Result<frames::Frames, frames::FrameError>,
        waiter: Waiter,
    ) -> Result<u64, Error> {
        if let Some(why) = self.refusal() {
            return Err(Error::AuthenticationFailed(why));
        }
        if self.stop.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let f = encode(request).map_err(|e| Error::Protocol(e.to_string()))?;
        let size = f.header.len() + f.blobs.iter().map(Vec::len).sum::<usize>();
        if log::log_enabled!(log::Level::Debug) {
            let op = zask_core::msgpack::str_field(&f.header, "op").unwrap_or("?");
            log::debug!("request {request} sent: {op} ({size} bytes)");
        }
        if size > self.options.max_message_size {
            return Err(Error::TooLarge {
                size,
                limit: self.options.max_message_size,
            });
        }
        self.lock_pending().insert(request, waiter);
        // (A refusal noticed since the check above failed the calls waiting then, not this.)
        if let Some(why) = self.refusal() {
            self.lock_pending().remove(&request);
            return Err(Error::AuthenticationFailed(why));
        }
        let sent = match self.outgoing.lock() {
            Ok(socket) => {
                frames::send(&socket, None, f).map_err(|e| Error::Protocol(e.to_string()))
            }
            Err(_) => Err(Error::Closed),
        };
        if let Err(e) = sent {
            self.lock_pending().remove(&request);
            return Err(e);
        }
        Ok(request)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the scheduler refused the connection, if it has.
    fn refusal(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the I/O thread with an empty message (it only forwards non-empty ones).
        if let Ok(socket) = self.outgoing.lock() {
            let _ = socket.send(&b""[..], zmq::DONTWAIT);
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// The background thread that owns the DEALER socket.
struct Io {
    dealer: zmq::Socket,
    incoming: zmq::Socket,
    pending: Pending,
    next_request: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    options: ClientOptions,
    /// The scheduler we talk to, once known.
    scheduler_id: Option<String>,
    /// Liveness pings in flight (request ids).
    pings: HashMap<u64, Instant>,
    last_heard: Instant,
    last_ping: Instant,
    /// Notices the scheduler refusing the connection (a wrong secret, or none).
    watch: HandshakeWatch,
    /// Why the scheduler refused the connection, once it has (shared with the callers).
    refused: Refused,
    /// The client's futures: what to send for them, and their news.
    futures: Arc<FutureTable>,
    /// Where progress reports of gets go.
    progress: ProgressListeners,
    /// Nothing was outstanding at the last liveness check (the scheduler's silence until
    /// then means nothing).
    idle: bool,
    _ctx: zmq::Context,
}

impl Io {
    fn run(mut self) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.say_goodbye();
                self.fail_all(|| Error::Closed);
                self.futures.fail(Failure::Closed, false);
                return;
            }
            let (from_scheduler, from_callers, watched) = {
                let mut items = [
                    self.dealer.as_poll_item(zmq::POLLIN),
                    self.incoming.as_poll_item(zmq::POLLIN),
                    self.watch.socket().as_poll_item(zmq::POLLIN),
                ];
                let timeout = self.options.heartbeat_interval.as_millis().max(1) as i64;
                if zmq::poll(&mut items, timeout).is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                (
                    items[0].is_readable(),
                    items[1].is_readable(),
                    items[2].is_readable(),
                )
            };
            if watched {
                self.check_handshakes();
            }
            if from_callers {
                self.forward_requests();
            }
            self.send_futures_news();
            if from_scheduler {
                self.dispatch_replies();
            }
            self.check_liveness();
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what the futures did since the last turn, in order: consecutive submissions in
    /// one `submit` (up to `SUBMIT_BATCH_BYTES`), drops in one `drop_futures`, cancels in one
    /// `cancel`.
    fn send_futures_news(&mut self) {
        let ops = self.futures.take_ops();
        if ops.is_empty() {
            return;
        }
        if self.idle {
            // Something is outstanding from now on: the scheduler's silence counts from here.
            self.last_heard = Instant::now();
            self.idle = false;
        }
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Submit(item, keys) => {
                    let mut items = vec![item];
                    let mut all_keys = keys;
                    let mut size = items[0].len();
                    let limit = SUBMIT_BATCH_BYTES.min(self.options.max_message_size / 2);
                    while size < limit {
                        match ops.next_if(|o| matches!(o, Op::Submit(..))) {
                            Some(Op::Submit(item, keys)) => {
                                size += item.len();
                                items.push(item);
                                all_keys.extend(keys);
                            }
                            _ => break,
                        }
                    }
                    let request = self.next_request.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "submission {request} sent: {} futures batched in one message ({size} \
                         bytes)",
                        items.len()
                    );
                    self.futures.sent_batch(request, all_keys);
                    self.send_header(submit_header(request, &items));
                }
                Op::Drop(key) => {
                    let mut keys = vec![key];
                    while let Some(Op::Drop(k)) = ops.next_if(|o| matches!(o, Op::Drop(_))) {
                        keys.push(k);
                    }
                    log::debug!("dropping {} futures no longer held", keys.len());
                    self.send_message(&FromClient::DropFutures { keys });
                }
                Op::Cancel(key) => {
                    let mut keys = vec![key];
                    while let Some(Op::Cancel(k)) = ops.next_if(|o| matches!(o, Op::Cancel(_))) {
                        keys.push(k);
                    }
                    log::debug!("cancelling {} futures: {keys:?}", keys.len());
                    self.send_message(&FromClient::Cancel { keys });
                }
            }
        }
    }

    /// Tells the scheduler this client goes (it cancels the client's computations and
    /// drops its futures), and waits briefly (300 ms at most) for a ping sent after it to be
    /// answered: then the goodbye was read, even if the process exits right away.
    fn say_goodbye(&mut self) {
        log::debug!("saying goodbye: the scheduler cancels this client's computations");
        let _ = self.dealer.set_linger(200);
        self.send_message(&FromClient::Goodbye);
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.send_message(&FromClient::Status { request });
        let deadline = Instant::now() + Duration::from_millis(300);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut items = [self.dealer.as_poll_item(zmq::POLLIN)];
            if zmq::poll(&mut items, left.as_millis().max(1) as i64).is_err()
                || !items[0].is_readable()
            {
                return;
            }
            while let Ok(Some(parts)) = frames::recv(&self.dealer) {
                let answered = parts
                    .first()
                    .and_then(|h| ToClient::decode(h).ok())
                    .is_some_and(
                        |m| matches!(m, ToClient::Status { request: r, .. } if r == request),
                    );
                if answered {
                    return;
                }
            }
        }
    }

    fn send_message(&self, msg: &FromClient) {
        match frames::encode(msg, Vec::new()) {
            Ok(f) => self.send_header(f.header),
            Err(e) => log::error!("cannot encode a message to the scheduler: {e}"),
        }
    }

    fn send_header(&self, header: Vec<u8>) {
        if let Err(e) = self.dealer.send(header, zmq::DONTWAIT) {
            log::warn!("sending to the scheduler failed: {e}");
        }
    }

    fn forward_requests(&mut self) {
        while let Ok(Some(parts)) = frames::recv(&self.incoming) {
            if parts.len() == 1 && parts[0].is_empty() {
                continue; // A wake-up.
            }
            // What futures did before this request was made goes first (a request may name
            // a key just submitted).
            self.send_futures_news();
            if self.lock_pending().len() <= 1 {
                // Nothing was outstanding: the scheduler's silence so far means nothing.
                self.last_heard = Instant::now();
            }
            let n = parts.len();
            for (i, part) in parts.into_iter().enumerate() {
                let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
                if let Err(e) = self.dealer.send(part, flags | zmq::DONTWAIT) {
                    log::warn!("sending to the scheduler failed: {e}");
                }
            }
        }
    }

    fn dispatch_replies(&mut self) {
        loop {
            let parts = match frames::recv(&self.dealer) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("receiving from the scheduler failed: {e}");
                    return;
                }
            };
            self.last_heard = Instant::now();
            let mut parts = parts.into_iter();
            let Some(header) = parts.next() else {
                continue;
            };
            let msg = match ToClient::decode(&header) {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("dropping a malformed message from the scheduler: {e}");
                    continue;
                }
            };
            let msg = match msg {
                ToClient::Events { events } => {
                    log::debug!("news of {} futures", events.len());
                    self.futures.apply(events);
                    continue;
                }
                ToClient::Submitted { request } if self.futures.batch_read(request) => {
                    log::debug!("submission {request} read by the scheduler");
                    continue;
                }
                ToClient::Progress {
                    request,
                    done,
                    failed,
                    total,
                } => {
                    log::trace!("request {request}: {done}/{total} tasks done, {failed} failed");
                    let listeners = self.progress.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(tx) = listeners.get(&request) {
                        let _ = tx.send(GetProgress {
                            done,
                            failed,
                            total,
                        });
                    }
                    continue;
                }
                ToClient::Error { request, error }
                    if self.futures.batch_refused(request, &error) =>
                {
                    log::error!("the scheduler refused a submission: {error}");
                    continue;
                }
                other => other,
            };
            let request = msg.request();
            if self.pings.remove(&request).is_some() {
                if let ToClient::Status { scheduler_id, .. } = &msg {
                    self.check_scheduler_id(scheduler_id);
                }
                continue;
            }
            if let ToClient::Welcome { scheduler_id, .. } = &msg {
                self.check_scheduler_id(scheduler_id);
            }
            let waiter = self.lock_pending().remove(&request);
            if let Some(waiter) = waiter {
                let reply = match msg {
                    ToClient::Error { error, .. } => Err(Error::Scheduler(error)),
                    other => Ok((other, parts.collect())),
                };
                waiter.send(reply);
            }
        }
    }

    /// The scheduler refused the connection: every call fails with why, now and until a
    /// handshake succeeds (ZeroMQ keeps trying in the background).
    fn check_handshakes(&mut self) {
        match self.watch.check() {
            Some(Handshake::Refused { why, .. }) => {
                log::error!("{why}");
                if let Ok(mut refused) = self.refused.lock() {
                    *refused = Some(why.clone());
                }
                self.fail_all(|| Error::AuthenticationFailed(why.clone()));
                self.futures.fail(Failure::Closed, false);
            }
            Some(Handshake::Succeeded) => {
                log::debug!("connection to the scheduler (re)established (handshake done)");
                if let Ok(mut refused) = self.refused.lock() {
                    *refused = None;
                }
            }
            None => {}
        }
    }

    fn check_scheduler_id(&mut self, id: &str) {
        match &self.scheduler_id {
            None => {
                log::debug!("talking to scheduler {id}");
                self.scheduler_id = Some(id.to_string())
            }
            Some(known) if known != id => {
                log::warn!("the scheduler restarted (was {known}, now {id})");
                self.scheduler_id = Some(id.to_string());
                self.fail_all(|| Error::SchedulerRestarted);
                // The new scheduler knows none of this client's futures.
                self.futures.fail(Failure::Restarted, true);
            }
            Some(_) => {}
        }
    }

    fn check_liveness(&mut self) {
        // A client holding futures pings even when it waits for nothing: the scheduler
        // keeps them only for a client it hears from.
        if self.lock_pending().is_empty() && !self.futures.any() {
            self.pings.clear();
            self.idle = true;
            return;
        }
        if self.idle {
            self.idle = false;
            self.last_heard = Instant::now();
        }
        let silent = self.last_heard.elapsed();
        if silent > self.options.scheduler_timeout {
            let after = self.options.scheduler_timeout;
            log::debug!("the scheduler was silent for {silent:?}: failing the calls waiting");
            self.fail_all(|| Error::SchedulerUnreachable(after));
            self.futures.fail(Failure::Unreachable(after), false);
            self.pings.clear();
            return;
        }
        if self.last_ping.elapsed() >= self.options.heartbeat_interval {
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            if let Ok(f) = frames::encode(&FromClient::Status { request }, Vec::new()) {
                log::trace!("ping {request} (silent for {silent:?})");
                if frames::send(&self.dealer, None, f).is_ok() {
                    self.pings.insert(request, Instant::now());
                }
            }
            self.last_ping = Instant::now();
        }
    }

    fn fail_all(&mut self, error: impl Fn() -> Error) {
        let waiters: Vec<_> = self.lock_pending().drain().collect();
        for (_, waiter) in waiters {
            waiter.send(Err(error()));
        }
    }
}

/// Submissions sent in one `submit` message at most, in bytes (a bigger batch is split).
const SUBMIT_BATCH_BYTES: usize = 8 << 20;

/// A `submit` header around items already encoded: `{"op": "submit", "request": n,
/// "items": [...]}`.
fn submit_header(request: u64, items: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = items.iter().map(Vec::len).sum();
    let mut buf = Vec::with_capacity(size + 32);
    // (Writing to a Vec cannot fail.)
    let _ = rmp::encode::write_map_len(&mut buf, 3);
    let _ = rmp::encode::write_str(&mut buf, "op");
    let _ = rmp::encode::write_str(&mut buf, "submit");
    let _ = rmp::encode::write_str(&mut buf, "request");
    let _ = rmp::encode::write_uint(&mut buf, request);
    let _ = rmp::encode::write_str(&mut buf, "items");
    let _ = rmp::encode::write_array_len(&mut buf, items.len() as u32);
    for item in items {
        buf.extend_from_slice(item);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use zask_core::protocol::{Message, SubmitBody, SubmitItem};

    #[test]
    fn a_submit_header_is_read_as_the_protocol_says() {
        let item = |k: &str| {
            let mut graph = Graph::new();
            graph.insert(k, zask_core::graph::task("inc", (1,)));
            rmp_serde::to_vec_named(&SubmitItem {
                graph: &graph,
                keys: vec![k.to_string()],
                priority: 0,
                retries: 0,
                workers: Vec::new(),
            })
            .unwrap()
        };
        let header = submit_header(9, &[item("a"), item("b")]);
        match FromClient::decode(&header).unwrap() {
            FromClient::Submit(SubmitBody { request, items }) => {
                assert_eq!(request, 9);
                let keys: Vec<&str> = items.iter().map(|i| i.keys[0].as_str()).collect();
                assert_eq!(keys, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
