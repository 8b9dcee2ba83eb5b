//! [`Scheduler`]: the thin ZeroMQ loop around [`SchedulerState`].
//!
//! One thread owns the two ROUTER sockets (workers, clients) and a wake-up socket. Each turn
//! it drains every message waiting, feeds them to the state machine, then sends what the
//! [`Outbox`] collected, one `compute` and one `release` per worker. Decoding, size limits and
//! replies to malformed messages live here; every decision lives in the state machine
//! (`state/`), or for collections in `collections.rs`: the loop only moves bytes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zask_core::frames;
use zask_core::protocol::{
    Body, ComputeBody, DataBody, DecodeError, ErrorInfo, ErrorKind, FromClient, FromWorker,
    GetBody, KeyData, KeyInfo, Message, ReleaseBody, ReportBody, SubmitBody, TaskDone, TaskFailed,
    ToClient, ToWorker, CLIENT_OPS,
};
use zask_core::security::{self, Gatekeeper, Secret};
use zask_core::service::Service;
use zask_core::value::MAX_NESTING;
use zask_core::{msgpack, DefHash};
use zask_core::{net, Bytes, Keys};

use crate::collections::{CollectionStore, Collections};
use crate::dashboard::{Dashboard, DashboardPort, Monitor, SchedulerInfo};
use crate::error::Error;
use crate::state::{Config, GetRequest, Outbox, Route, SchedulerState};

/// How a scheduler is started. `Default` binds all interfaces on ports the OS chooses.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Interface to bind and host name to advertise; empty or `0.0.0.0`: all interfaces,
    /// advertised under this machine's host name.
    pub host: String,
    /// Port for workers (0: the OS chooses).
    pub port_to_workers: u16,
    /// Port for clients (0: the OS chooses).
    pub port_to_clients: u16,
    /// Policy tunables (heartbeat timeout, ...).
    pub config: Config,
    /// Largest message accepted from a client, in bytes; larger ones get a `too_large` error.
    pub max_message_size: usize,
    /// Where to keep collections so they survive restarts (None: in memory).
    pub state_dir: Option<PathBuf>,
    /// Largest collection accepted, in bytes (its stored form).
    pub max_collection_size: usize,
    /// Replies queued for one client at the most (ZeroMQ's high-water mark). A client that
    /// does not read past it has its computations cancelled and its replies dropped (it is
    /// told once it is heard from again).
    pub client_queue: i32,
    /// The cluster's shared secret: with one, every connection must prove it holds it, and
    /// all traffic is encrypted (see `docs/security.md`); without, anyone who can reach the
    /// ports is let in.
    pub secret: Option<Secret>,
    /// Where to serve the dashboard and `/metrics` over HTTP (`Off` by default here; the
    /// `zask-scheduler` command serves it on [`crate::dashboard::DEFAULT_PORT`]).
    pub dashboard_port: DashboardPort,
    /// The interface the dashboard binds (None: `host`, but loopback when there is a secret
    /// and `host` is not loopback: the dashboard has no authentication).
    pub dashboard_host: Option<String>,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            host: String::new(),
            port_to_workers: 0,
            port_to_clients: 0,
            config: Config::default(),
            max_message_size: 1 << 30,
            state_dir: None,
            max_collection_size: 64 << 20,
            client_queue: 100_000,
            secret: None,
            dashboard_port: DashboardPort::Off,
            dashboard_host: None,
        }
    }
}

/// A running scheduler. Dropping it closes it.
pub struct Scheduler {
    id: String,
    address_to_workers: String,
    address_to_clients: String,
    service: Service,
    /// Lets in only connections that hold the secret (when there is one).
    _gatekeeper: Option<Gatekeeper>,
    /// The dashboard's server, when it serves one (stopped after the loop).
    dashboard: Option<Dashboard>,
}

impl Scheduler {
    /// Binds both sockets and starts the scheduler's thread. Returns once it is listening.
    pub fn start(options: SchedulerOptions) -> Result<Scheduler, Error> {
        let ctx = zmq::Context::new();
        let mut workers = ctx.socket(zmq::ROUTER)?;
        let mut clients = ctx.socket(zmq::ROUTER)?;
        let gatekeeper = match &options.secret {
            Some(secret) => Some(secret.start_gatekeeper(&ctx, &[&workers, &clients])?),
            None => None,
        };
        for s in [&mut workers, &mut clients] {
            net::configure(s)?;
            security::secure_server(options.secret.as_ref(), s)?;
        }
        if options.secret.is_none() && !net::is_loopback(&options.host) {
            log::warn!(
                "listening on {:?} with no secret: anyone who can reach these ports can run \
                 the workers' functions, read every value, register workers and retire them \
                 (set --auth-token-file or ZASK_AUTH_TOKEN; see docs/security.md)",
                if options.host.is_empty() {
                    "all interfaces"
                } else {
                    &options.host
                }
            );
        }
        // A worker reconnecting with its fixed routing id takes its route over.
        workers.set_router_handover(true)?;
        // Replies to a client that does not read are bounded; a full queue (or a client that
        // is gone) makes sending fail instead of dropping the reply silently.
        clients.set_sndhwm(options.client_queue.max(1))?;
        clients.set_router_mandatory(true)?;
        let address_to_workers = net::bind_tcp(&workers, &options.host, options.port_to_workers)
            .map_err(|e| Error::Bind(options.port_to_workers, e))?;
        let address_to_clients = net::bind_tcp(&clients, &options.host, options.port_to_clients)
            .map_err(|e| Error::Bind(options.port_to_clients, e))?;
        let id = net::unique_id("scheduler");
        let state = SchedulerState::new(id.clone(), options.config.clone());
        let max_message_size = options.max_message_size;
        let max_collection_size = options.max_collection_size;
        let client_queue = options.client_queue.max(1);
        let collections = CollectionStore::open(options.state_dir.as_deref())
            .map_err(|e| Error::State(e.to_string()))?;
        let dashboard_host = match &options.dashboard_host {
            Some(h) => h.clone(),
            None if options.secret.is_some() && !net::is_loopback(&options.host) => {
                if options.dashboard_port != DashboardPort::Off {
                    log::info!(
                        "the dashboard listens on loopback only: it has no authentication, and \
                         this cluster has a secret (--dashboard-host opens it wider)"
                    );
                }
                "127.0.0.1".to_string()
            }
            None => options.host.clone(),
        };
        let info = SchedulerInfo {
            id: id.clone(),
            address_to_workers: address_to_workers.clone(),
            address_to_clients: address_to_clients.clone(),
            started: Instant::now(),
        };
        let advertised = net::advertised_host(&options.host);
        let (dashboard, monitor) =
            match Dashboard::start(&dashboard_host, &advertised, options.dashboard_port, info)
                .map_err(Error::Dashboard)?
            {
                Some((d, m)) => (Some(d), Some(m)),
                None => (None, None),
            };
        let service_ctx = ctx.clone();
        let service = Service::spawn(&ctx, &id, "zask-scheduler", move |wake| {
            Loop {
                state,
                workers,
                clients,
                wake: wake.socket,
                stop: wake.stop,
                max_message_size,
                collections: Collections::new(collections, max_collection_size),
                unread: HashMap::new(),
                client_queue,
                monitor,
                _ctx: service_ctx,
            }
            .run()
        })
        .map_err(Error::Thread)?;
        log::info!(
            "scheduler {id}: workers at {address_to_workers}, clients at {address_to_clients}"
        );
        Ok(Scheduler {
            id,
            address_to_workers,
            address_to_clients,
            service,
            _gatekeeper: gatekeeper,
            dashboard,
        })
    }

    /// The dashboard's address (`http://host:port/`), when it serves one.
    pub fn dashboard_url(&self) -> Option<&str> {
        self.dashboard.as_ref().map(Dashboard::url)
    }

    /// Where workers connect, `tcp://host:port`.
    pub fn address_to_workers(&self) -> &str {
        &self.address_to_workers
    }

    /// Where clients connect, `tcp://host:port`.
    pub fn address_to_clients(&self) -> &str {
        &self.address_to_clients
    }

    /// This scheduler's unique id (new at every start).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Shuts down: tells workers and waiting clients, closes the sockets, joins the thread.
    /// Closing twice is fine (and dropping closes).
    pub fn close(&self) {
        self.service.close();
    }

    /// Blocks until the scheduler has stopped (after `close`, from another thread or Ctrl-C).
    pub fn wait(&self) {
        self.service.wait();
    }

    /// A handle that can stop this scheduler from another thread (for a Ctrl-C handler).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        self.service.stopper()
    }
}

/// Dropped replies remembered per client that does not read (to answer with an error).
const MAX_UNREAD_REMEMBERED: usize = 1024;
/// Clients that do not read remembered at the most.
const MAX_UNREAD_CLIENTS: usize = 1024;

/// How often the loop runs periodic work (heartbeat checks), at the most.
const TICK: Duration = Duration::from_millis(100);
/// Messages handled from one socket before looking at the other (fairness).
const BATCH: usize = 4096;

struct Loop {
    state: SchedulerState,
    workers: zmq::Socket,
    clients: zmq::Socket,
    wake: zmq::Socket,
    stop: Arc<AtomicBool>,
    max_message_size: usize,
    /// Answers the collection requests.
    collections: Collections,
    /// Clients whose replies were dropped because they did not read them: the request ids
    /// dropped (a bounded number), answered with an error once the client is heard from.
    unread: HashMap<Vec<u8>, Vec<u64>>,
    /// The bound of each client's reply queue (for messages).
    client_queue: i32,
    /// Observations for the dashboard, when it serves one.
    monitor: Option<Monitor>,
    _ctx: zmq::Context,
}

/// The request id of a client message, read without decoding the rest (so one that cannot be
/// decoded, nested too deep say, is still answered under its id); 0 if it has none.
fn request_id(header: &[u8]) -> u64 {
    read_request(header).unwrap_or(0)
}

/// The `request` field of a message header, if it has a readable one.
fn read_request(header: &[u8]) -> Option<u64> {
    rmp_serde::from_slice(msgpack::field(header, "request")?).ok()
}

impl Loop {
    fn run(mut self) {
        let mut out = Outbox::default();
        let mut last_tick = Instant::now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.state.on_close(&mut out);
                self.state.on_flushed(&mut out);
                // Give the goodbyes a moment to leave before the sockets close.
                let _ = self.workers.set_linger(500);
                let _ = self.clients.set_linger(500);
                self.flush(&mut out);
                log::info!("scheduler {} closed", self.state.id);
                return;
            }
            let mut items = [
                self.workers.as_poll_item(zmq::POLLIN),
                self.clients.as_poll_item(zmq::POLLIN),
                self.wake.as_poll_item(zmq::POLLIN),
            ];
            let timeout = TICK.saturating_sub(last_tick.elapsed()).as_millis() as i64;
            if let Err(e) = zmq::poll(&mut items, timeout.max(1)) {
                log::error!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let turn_started = Instant::now();
            let (workers_ready, clients_ready, woken) = (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
            );
            if woken {
                while let Ok(Some(_)) = frames::recv(&self.wake) {}
            }
            let now = Instant::now();
            if workers_ready {
                self.drain_workers(now, &mut out);
            }
            if clients_ready {
                self.drain_clients(now, &mut out);
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.state.on_tick(last_tick, &mut out);
            }
            self.flush(&mut out);
            // Releases the turn freed go out after its answers.
            self.state.on_flushed(&mut out);
            self.flush(&mut out);
            if let Some(monitor) = &mut self.monitor {
                monitor.after_turn(&mut self.state, Instant::now());
                // (Its own observation counted in.)
                monitor.busy(turn_started.elapsed());
            }
        }
    }

    fn drain_workers(&mut self, now: Instant, out: &mut Outbox) {
        for _ in 0..BATCH {
            let parts = match frames::recv(&self.workers) {
                Ok(Some(parts)) => parts,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("receiving from a worker failed: {e}");
                    break;
                }
            };
            if parts.len() < 2 {
                log::warn!("dropping a worker message with no header");
                continue;
            }
            let mut parts = parts.into_iter();
            let (Some(route), Some(header)) = (parts.next(), parts.next()) else {
                continue;
            };
            let route = route.to_vec();
            // Values in blobs become `Bytes` owning the received frames: no copy.
            let blobs: Vec<Bytes> = parts.map(frames::to_bytes).collect();
            match decode_worker_message(&header, &blobs) {
                Ok(msg) => self.state.on_worker_message(&route, msg, now, out),
                Err(e) => {
                    self.state.on_worker_seen(&route, now);
                    log::warn!("dropping a malformed worker message: {e}");
                }
            }
        }
    }

    fn drain_clients(&mut self, now: Instant, out: &mut Outbox) {
        for _ in 0..BATCH {
            let parts = match frames::recv(&self.clients) {
                Ok(Some(parts)) => parts,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("receiving from a client failed: {e}");
                    break;
                }
            };
            if parts.len() < 2 {
                log::warn!("dropping a client message with no header");
                continue;
            }
            let route = parts[0].to_vec();
            self.state.on_client_seen(&route, now);
            let size = frames::total_size(&parts[1..]);
            if size > self.max_message_size {
                let request = request_id(&parts[1]);
                let error = ErrorInfo::new(
                    ErrorKind::TooLarge,
                    format!(
                        "message of {size} bytes exceeds the scheduler's limit of {} bytes \
                         (zask-scheduler --max-message-size)",
                        self.max_message_size
                    ),
                );
                out.to_clients
                    .push((route, ToClient::Error { request, error }));
                continue;
            }
            if self.unread.contains_key(&route) {
                self.tell_unread(&route, out);
            }
            match decode_client_message(&parts[1], &parts[2..]) {
                Ok(msg) => {
                    drop(parts); // The raw frames are not needed once decoded.
                    self.on_client_message(route, msg, now, out)
                }
                Err(error) => {
                    let request = request_id(&parts[1]);
                    out.to_clients
                        .push((route, ToClient::Error { request, error }));
                }
            }
        }
    }

    /// Answers the requests of `client` whose replies were dropped while it did not read.
    fn tell_unread(&mut self, client: &[u8], out: &mut Outbox) {
        for request in self.unread.remove(client).unwrap_or_default() {
            let error = ErrorInfo::new(
                ErrorKind::Cancelled,
                format!(
                    "the reply was dropped: this client left more than {} replies unread \
                     (zask-scheduler --client-queue), so its computations were cancelled; read \
                     replies as they come, and submit again",
                    self.client_queue
                ),
            );
            out.to_clients
                .push((client.to_vec(), ToClient::Error { request, error }));
        }
    }

    /// Hands a decoded client message to whoever decides its answer: the state machine, or
    /// the collections.
    fn on_client_message(
        &mut self,
        route: Vec<u8>,
        msg: FromClient,
        now: Instant,
        out: &mut Outbox,
    ) {
        match msg {
            FromClient::Hello { request, protocol } => {
                self.state.on_hello(&route, request, protocol, out)
            }
            FromClient::Get(GetBody {
                request,
                graph,
                keys,
                keep_results,
                progress,
            }) => {
                let parsed = Keys::from_value(&keys)
                    .map(|k| (graph, k))
                    .map_err(|e| ErrorInfo::new(ErrorKind::BadRequest, e));
                match parsed {
                    Ok((graph, keys)) => {
                        let get = GetRequest {
                            request,
                            graph: graph.graph,
                            hashes: graph.hashes,
                            keys,
                            keep_results,
                            progress,
                        };
                        self.state.on_get(&route, get, now, out)
                    }
                    Err(error) => out
                        .to_clients
                        .push((route, ToClient::Error { request, error })),
                }
            }
            FromClient::Status { request } => self.state.on_status(&route, request, out),
            FromClient::Workers { request } => {
                self.state.on_list_workers(&route, request, now, out)
            }
            FromClient::Goodbye => self.state.on_client_gone(&route),
            FromClient::SetCollection {
                request,
                name,
                collection,
            } => {
                let reply = self.collections.on_set(request, name, &collection);
                out.to_clients.push((route, reply));
            }
            FromClient::GetCollection { request, name } => {
                let reply = self.collections.on_get(request, name);
                out.to_clients.push((route, reply));
            }
            FromClient::ListCollections { request } => {
                let reply = self.collections.on_list(request);
                out.to_clients.push((route, reply));
            }
            FromClient::DeleteCollection { request, name } => {
                let reply = self.collections.on_delete(request, name);
                out.to_clients.push((route, reply));
            }
            FromClient::Scatter { request, items } => {
                let items = items.into_iter().map(|i| (i.key, i.data.value)).collect();
                self.state.on_scatter(&route, request, items, out);
            }
            FromClient::Gather { request, keys } => {
                self.state.on_gather(&route, request, keys, now, out)
            }
            FromClient::Release { request, keys } => {
                self.state.on_release(&route, request, keys, out);
            }
            FromClient::Submit(SubmitBody { request, items }) => {
                self.state.on_submit(&route, request, items, now, out)
            }
            FromClient::DropFutures { keys } => self.state.on_drop_futures(&route, keys),
            FromClient::Cancel { keys } => self.state.on_cancel(&route, keys, out),
            FromClient::Retire { request, address } => {
                self.state.on_retire(&route, request, &address, now, out);
            }
            FromClient::Computations { request } => {
                self.state.on_computations(&route, request, now, out)
            }
            FromClient::CancelComputation { request, id } => {
                self.state.on_cancel_computation(&route, request, id, out)
            }
            FromClient::HeldKeys { request, limit } => {
                self.state.on_held_keys(&route, request, limit, out)
            }
        }
    }

    fn flush(&mut self, out: &mut Outbox) {
        for (route, msg) in out.to_workers.drain(..) {
            send(&self.workers, &route, &msg, Vec::new());
        }
        // Cancels and releases before computes: a key forgotten and created again in the same
        // turn must be cancelled and deleted before it is computed, not after.
        out.settle_cancels();
        for (route, keys) in out.cancel.drain() {
            let keys = keys.into_iter().map(|(k, _)| k).collect();
            send(
                &self.workers,
                &route,
                &ToWorker::Cancel { keys },
                Vec::new(),
            );
        }
        for (route, keys) in out.release.drain() {
            let msg = ToWorker::Release(ReleaseBody { keys });
            send(&self.workers, &route, &msg, Vec::new());
        }
        for (route, items) in out.put_data.drain() {
            let mut blobs = Vec::new();
            let items = pack_items(items, &mut blobs);
            send(&self.workers, &route, &ToWorker::PutData { items }, blobs);
        }
        for (route, tasks) in out.compute.drain() {
            let msg = ToWorker::Compute(ComputeBody { tasks });
            send(&self.workers, &route, &msg, Vec::new());
        }
        let events = out
            .events
            .drain()
            .map(|(route, events)| (route, ToClient::Events { events }));
        let to_clients: Vec<(Route, ToClient)> = std::mem::take(&mut out.to_clients)
            .into_iter()
            .chain(events)
            .collect();
        for (route, msg) in to_clients {
            let request = msg.request();
            let (msg, blobs) = pack_client_message(msg);
            let sent = frames::encode(&msg, blobs)
                .and_then(|f| frames::send(&self.clients, Some(&route), f));
            match sent {
                Ok(()) => {}
                Err(frames::FrameError::Zmq(zmq::Error::EAGAIN)) => {
                    self.not_reading(route, request)
                }
                Err(frames::FrameError::Zmq(zmq::Error::EHOSTUNREACH)) => {
                    log::debug!("a client left before its reply to request {request} was sent");
                }
                Err(e) => log::warn!("sending to a client failed: {e}"),
            }
        }
    }

    /// A client's reply queue is full: it does not read. Its computations are cancelled, and
    /// the dropped request is remembered (a bounded number), to be answered with an error
    /// once the client is heard from again.
    fn not_reading(&mut self, route: Vec<u8>, request: u64) {
        let first = !self.unread.contains_key(&route);
        if first && self.unread.len() >= MAX_UNREAD_CLIENTS {
            // (Mostly clients that never spoke again: some other client's bookkeeping, not
            // necessarily the oldest, is given up; that client is then not told why its
            // replies stopped.)
            if let Some(stale) = self.unread.keys().next().cloned() {
                self.unread.remove(&stale);
            }
        }
        let dropped = self.unread.entry(route.clone()).or_default();
        if dropped.len() < MAX_UNREAD_REMEMBERED {
            dropped.push(request);
        }
        if first {
            log::warn!(
                "a client does not read its replies ({} queued, the limit); dropping its replies \
                 and cancelling its computations",
                self.client_queue
            );
            self.state.on_client_gone(&route);
        }
    }
}

fn send<T: serde::Serialize>(socket: &zmq::Socket, route: &[u8], msg: &T, blobs: Vec<Vec<u8>>) {
    match frames::encode(msg, blobs) {
        Ok(f) => {
            if let Err(e) = frames::send(socket, Some(route), f) {
                log::warn!("sending failed: {e}");
            }
        }
        Err(e) => log::error!("encoding a message failed: {e}"),
    }
}

/// Moves large values of a `result` into blob frames.
fn pack_client_message(msg: ToClient) -> (ToClient, Vec<Vec<u8>>) {
    let mut blobs = Vec::new();
    let msg = match msg {
        ToClient::Result { request, items } => ToClient::Result {
            request,
            items: pack_items(items, &mut blobs),
        },
        other => other,
    };
    (msg, blobs)
}

/// Moves the large values among `items` (inline until now) into `blobs`.
fn pack_items(items: Vec<KeyData>, blobs: &mut Vec<Vec<u8>>) -> Vec<KeyData> {
    items
        .into_iter()
        .map(|item| KeyData {
            key: item.key,
            data: frames::pack(item.data.value, blobs),
            hash: item.hash,
        })
        .collect()
}

/// Decodes a client message and brings scattered values inline (out of their blob frames).
/// The error is the one to answer with: what is wrong, in words (a header that is not a map
/// with an `op` string, an unknown op, a graph node that is malformed, naming its key, ...).
fn decode_client_message(header: &[u8], blobs: &[zmq::Message]) -> Result<FromClient, ErrorInfo> {
    let bad = |message: String| ErrorInfo::new(ErrorKind::BadRequest, message);
    let mut msg = FromClient::decode(header).map_err(|e| match e {
        DecodeError::NotAMessage(message) => bad(format!("{message} (see docs/protocol.md)")),
        DecodeError::UnknownOp { op, .. } => bad(format!(
            "unknown op {op:?}; a client sends one of {} (see docs/protocol.md)",
            CLIENT_OPS.join(", ")
        )),
        DecodeError::InvalidGraph(error) => ErrorInfo {
            key: error.key().map(str::to_string),
            ..ErrorInfo::new(ErrorKind::InvalidGraph, error.to_string())
        },
        DecodeError::TooDeep => bad(format!(
            "the {:?} request nests too deeply for the decoder; values, keys and graph nodes \
             may nest at most {MAX_NESTING} levels of lists and maps",
            msgpack::header_op(header).unwrap_or("?")
        )),
        DecodeError::Malformed(message) => bad(format!(
            "cannot decode the {:?} request: {message} (see docs/protocol.md)",
            msgpack::header_op(header).unwrap_or("?")
        )),
    })?;
    if let FromClient::Scatter { items, .. } = &mut msg {
        let mut unpacker = frames::Unpacker::new(blobs);
        for item in items.iter_mut() {
            unpacker.inline(&mut item.data).map_err(|e| {
                bad(format!("scattered key {:?}: {e}", item.key)).with_key(&item.key)
            })?;
        }
    }
    Ok(msg)
}

/// Decodes a worker message and brings its values inline (out of their blob frames). A
/// `report` or `data` with items that cannot be read is taken apart item by item: the rest
/// is taken, and only those items fail (a finished task whose result cannot be read fails
/// with `task_failed`; a value sent for a gather counts as missing).
fn decode_worker_message(header: &[u8], blobs: &[Bytes]) -> Result<FromWorker, DecodeError> {
    let mut msg = match FromWorker::decode(header) {
        Ok(msg) => msg,
        Err(e) => match msgpack::header_op(header) {
            Ok(ReportBody::OP) => lenient_report(header, &e).ok_or(e)?,
            Ok(DataBody::OP) => lenient_data(header, &e).ok_or(e)?,
            _ => return Err(e),
        },
    };
    match &mut msg {
        FromWorker::Report(ReportBody { done, failed, .. }) => {
            let mut unreadable = Vec::new();
            let mut unpacker = frames::Unpacker::new(blobs);
            done.retain_mut(
                |d| match d.data.as_mut().map(|data| unpacker.inline(data)) {
                    Some(Err(e)) => {
                        let why = e.to_string();
                        unreadable.push(unreadable_report(&d.key, Some(d.hash), "result", &why));
                        false
                    }
                    _ => true,
                },
            );
            failed.extend(unreadable);
        }
        FromWorker::Data(DataBody { items, missing, .. }) => {
            let mut unpacker = frames::Unpacker::new(blobs);
            items.retain_mut(|item| match unpacker.inline(&mut item.data) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "a worker sent a value for {:?} that cannot be read: {e}",
                        item.key
                    );
                    missing.push(item.key.clone());
                    false
                }
            });
        }
        _ => {}
    }
    Ok(msg)
}

/// The failure reported in place of a task whose report (of `what`: its result, or its
/// failure) cannot be read.
fn unreadable_report(key: &str, hash: Option<DefHash>, what: &str, why: &str) -> TaskFailed {
    TaskFailed {
        key: key.to_string(),
        hash,
        kind: ErrorKind::TaskFailed,
        function: None,
        message: format!("its worker's report of the {what} cannot be read: {why}"),
        missing: None,
    }
}

/// A `report` that does not decode as a whole, read item by item (see
/// `decode_worker_message`); `None` if even that is impossible.
fn lenient_report(header: &[u8], why: &DecodeError) -> Option<FromWorker> {
    log::warn!("a worker's report cannot be read whole ({why}); reading it item by item");
    let items = |name: &str| -> Vec<&[u8]> {
        msgpack::field(header, name)
            .and_then(msgpack::array_items)
            .unwrap_or_default()
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for item in items("done") {
        match rmp_serde::from_slice::<TaskDone>(item) {
            Ok(d) => done.push(d),
            Err(e) => match msgpack::str_field(item, "key") {
                Some(key) => failed.push(unreadable_report(key, None, "result", &e.to_string())),
                None => log::warn!("dropping a finished task of a report, without a key: {e}"),
            },
        }
    }
    for item in items("failed") {
        match rmp_serde::from_slice::<TaskFailed>(item) {
            Ok(f) => failed.push(f),
            Err(e) => match msgpack::str_field(item, "key") {
                Some(key) => failed.push(unreadable_report(key, None, "failure", &e.to_string())),
                None => log::warn!("dropping a failed task of a report, without a key: {e}"),
            },
        }
    }
    let acquired = items("acquired")
        .into_iter()
        .filter_map(|item| rmp_serde::from_slice::<KeyInfo>(item).ok())
        .collect();
    Some(FromWorker::Report(ReportBody {
        done,
        failed,
        acquired,
    }))
}

/// A `data` answer that does not decode as a whole, read item by item: the items that
/// cannot be read count as missing.
fn lenient_data(header: &[u8], why: &DecodeError) -> Option<FromWorker> {
    log::warn!("a worker's data cannot be read whole ({why}); reading it item by item");
    let request = read_request(header)?;
    let mut items = Vec::new();
    let mut missing: Vec<String> = msgpack::field(header, "missing")
        .and_then(|m| rmp_serde::from_slice(m).ok())
        .unwrap_or_default();
    for item in msgpack::field(header, "items").and_then(msgpack::array_items)? {
        match rmp_serde::from_slice::<KeyData>(item) {
            Ok(i) => items.push(i),
            Err(_) => {
                if let Some(key) = msgpack::str_field(item, "key") {
                    missing.push(key.to_string());
                }
            }
        }
    }
    Some(FromWorker::Data(DataBody {
        request,
        items,
        missing,
    }))
}
