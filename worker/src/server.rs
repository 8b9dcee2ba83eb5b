//! [`Worker`]: a zask worker process's event loop, which only moves bytes.
//!
//! One thread owns every socket: a DEALER to the scheduler, a ROUTER that serves values to
//! peers, cached DEALERs to peers (one per peer address) for fetching inputs, and a wake-up
//! socket the executor threads ([`crate::executor`]) push to when they finish tasks.
//!
//! Every decision is the state machine's ([`WorkerState`]): the loop decodes what arrives,
//! hands it to an `on_*` method with the time, and carries out the [`Outbox`] (messages to
//! the scheduler, fetches and replies to peers, jobs for the executors, peers to drop); it
//! wakes at the state's next deadline to tick it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;
use zask_core::frames;
use zask_core::protocol::{
    ComputeBody, ComputeTask, FromWorker, GetDataBody, Message, PeerReply, PeerRequest, Tagged,
    ToWorker,
};
use zask_core::security::{self, Gatekeeper, Handshake, HandshakeWatch, Secret};
use zask_core::service::Service;
use zask_core::{net, Bytes};

use crate::error::Error;
use crate::executor::Executors;
use crate::registry::Registry;
use crate::state::{FetchRequest, Outbox, WorkerConfig, WorkerState};
use crate::store::StoreKind;

/// How a worker is started.
pub struct WorkerOptions {
    /// The scheduler's `address_to_workers`, e.g. `tcp://127.0.0.1:8786`.
    pub scheduler_address: String,
    /// Interface to bind for peers and host name to advertise (empty: all interfaces,
    /// advertised as this machine's host name).
    pub host: String,
    /// Port peers fetch data from (0: the OS chooses).
    pub port_to_workers: u16,
    /// Tasks run at once.
    pub nthreads: u32,
    /// Where results are kept.
    pub store: StoreKind,
    /// The functions this worker offers.
    pub registry: Registry,
    /// How often the worker tells the scheduler it is alive (and retries registering).
    pub heartbeat_interval: Duration,
    /// How long a peer may take to answer a fetch before the next holder is tried.
    pub fetch_timeout: Duration,
    /// How long a retiring worker waits for the scheduler to move its data before leaving.
    pub retire_timeout: Duration,
    /// The cluster's shared secret (see `docs/security.md`): with one, this worker proves it
    /// to the scheduler and to peers, lets in only peers that hold it, and encrypts all
    /// traffic. It must be the scheduler's.
    pub secret: Option<Secret>,
}

impl WorkerOptions {
    /// Options with defaults: all interfaces, OS-chosen port, one thread per core, memory
    /// store, the standard library.
    pub fn new(scheduler_address: &str) -> WorkerOptions {
        WorkerOptions {
            scheduler_address: scheduler_address.to_string(),
            host: String::new(),
            port_to_workers: 0,
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            store: StoreKind::Memory,
            registry: Registry::with_stdlib(),
            heartbeat_interval: Duration::from_millis(500),
            fetch_timeout: Duration::from_secs(10),
            retire_timeout: Duration::from_secs(60),
            secret: None,
        }
    }
}

/// A running worker. Dropping it closes it.
pub struct Worker {
    address: String,
    worker_id: String,
    service: Service,
    retire: Arc<AtomicBool>,
    /// Why the worker stopped, when it did not choose to (see [`Worker::failure`]).
    failure: Arc<Mutex<Option<String>>>,
    /// Lets in only peers that hold the secret (when there is one).
    _gatekeeper: Option<Gatekeeper>,
}

impl Worker {
    /// Opens the store, binds the peer socket, connects to the scheduler (which need not be
    /// up yet) and starts the worker's threads.
    pub fn start(options: WorkerOptions) -> Result<Worker, Error> {
        let ctx = zmq::Context::new();
        let store = options.store.open()?;
        let mut peers = ctx.socket(zmq::ROUTER)?;
        let gatekeeper = match &options.secret {
            Some(secret) => Some(secret.start_gatekeeper(&ctx, &[&peers])?),
            None => None,
        };
        net::configure(&peers)?;
        security::secure_server(options.secret.as_ref(), &mut peers)?;
        let address = net::bind_tcp(&peers, &options.host, options.port_to_workers)
            .map_err(|e| Error::Bind(options.port_to_workers, e))?;
        let worker_id = net::unique_id("worker");
        let scheduler = ctx.socket(zmq::DEALER)?;
        net::configure(&scheduler)?;
        // A fixed routing id: after a reconnect the scheduler still knows who is talking.
        scheduler.set_identity(worker_id.as_bytes())?;
        security::secure_client(options.secret.as_ref(), &scheduler)?;
        let watch = HandshakeWatch::new(&ctx, &scheduler, &worker_id, options.secret.is_some())?;
        scheduler
            .connect(&options.scheduler_address)
            .map_err(|e| Error::Connect(options.scheduler_address.clone(), e))?;
        let nthreads = options.nthreads.max(1);
        let wake_pending = Arc::new(AtomicBool::new(false));
        let executors = Executors::spawn(
            &ctx,
            &Service::wake_endpoint(&worker_id),
            nthreads,
            options.registry.clone(),
            wake_pending.clone(),
        )?;
        let mut functions = options.registry.names();
        functions.sort();
        let config = WorkerConfig {
            worker_id: worker_id.clone(),
            address: address.clone(),
            pid: std::process::id(),
            nthreads,
            functions,
            heartbeat_interval: options.heartbeat_interval,
            fetch_timeout: options.fetch_timeout,
            retire_timeout: options.retire_timeout,
        };
        let state = WorkerState::new(config, store);
        let loop_ctx = ctx.clone();
        let retire = Arc::new(AtomicBool::new(false));
        let loop_retire = retire.clone();
        let failure = Arc::new(Mutex::new(None));
        let loop_failure = failure.clone();
        let secret = options.secret.clone();
        let service = Service::spawn(&ctx, &worker_id, "zask-worker", move |wake| {
            Loop {
                ctx: loop_ctx,
                scheduler,
                peers,
                wake: wake.socket,
                stop: wake.stop,
                retire: loop_retire,
                peer_sockets: HashMap::default(),
                executors,
                wake_pending,
                state,
                unsent: Vec::new(),
                leaving: false,
                secret,
                watch,
                handshaken: false,
                failure: loop_failure,
            }
            .run()
        })
        .map_err(Error::Thread)?;
        log::info!(
            "worker {address} ({nthreads} threads) connecting to {}",
            options.scheduler_address
        );
        Ok(Worker {
            address,
            worker_id,
            service,
            retire,
            failure,
            _gatekeeper: gatekeeper,
        })
    }

    /// Where peers fetch data from; also the worker's name, `tcp://host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Why the worker stopped, if it was made to (the scheduler refused its connection: a
    /// wrong secret, or none); `None` while it runs or after an ordinary close.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// This worker process's unique id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Stops: tells the scheduler goodbye, closes the sockets, joins the loop. Closing twice
    /// is fine (and dropping closes).
    pub fn close(&self) {
        self.service.close();
    }

    /// Blocks until the worker has stopped.
    pub fn wait(&self) {
        self.service.wait();
    }

    /// Leaves gracefully: the scheduler stops giving this worker tasks and moves the data only
    /// it holds to other workers, then lets it go (or `retire_timeout` passes). Blocks until
    /// the worker has stopped.
    pub fn retire(&self) {
        (self.retirer())();
        self.wait();
    }

    /// A handle that starts a graceful retirement from another thread (a SIGTERM handler);
    /// the worker notices within one heartbeat interval.
    pub fn retirer(&self) -> impl Fn() + Send + Sync + 'static {
        let retire = self.retire.clone();
        move || retire.store(true, Ordering::SeqCst)
    }

    /// A handle that stops this worker from another thread (for a Ctrl-C handler).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        self.service.stopper()
    }
}

/// The worker's thread: its sockets, the executors' channels, and the state machine.
struct Loop {
    ctx: zmq::Context,
    scheduler: zmq::Socket,
    peers: zmq::Socket,
    wake: zmq::Socket,
    /// Set to stop (Ctrl-C, `close`).
    stop: Arc<AtomicBool>,
    /// Set to leave gracefully (SIGTERM).
    retire: Arc<AtomicBool>,
    /// DEALERs to peers, by address, created on first use.
    peer_sockets: HashMap<String, zmq::Socket>,
    executors: Executors,
    /// Set by executors when they woke the loop; cleared when the loop collects results.
    wake_pending: Arc<AtomicBool>,
    state: WorkerState,
    /// Fetches that could not be sent, told to the state once the event that queued them
    /// is done.
    unsent: Vec<u64>,
    /// The state said to leave.
    leaving: bool,
    /// The cluster's secret, for the sockets to peers.
    secret: Option<Secret>,
    /// Notices the scheduler refusing this worker's connection (a wrong secret, or none).
    watch: HandshakeWatch,
    /// Whether a handshake with the scheduler ever succeeded.
    handshaken: bool,
    /// Why the worker stopped, when it did not choose to.
    failure: Arc<Mutex<Option<String>>>,
}

impl Loop {
    fn run(mut self) {
        self.state.on_start(Instant::now());
        self.carry_out();
        loop {
            if self.stop.load(Ordering::SeqCst) || self.leaving {
                return self.close();
            }
            self.poll_once();
            // (Checked after the poll: a signal that came during it starts the retirement
            // in this turn.)
            if self.retire.load(Ordering::SeqCst) {
                self.state.on_retire();
            }
            self.state.on_tick(Instant::now());
            self.carry_out();
        }
    }

    fn close(&mut self) {
        let _ = self.scheduler.set_linger(1000);
        self.state.on_close();
        self.carry_out();
        self.executors.close();
        log::info!("worker {} closed", self.state.config().address);
    }

    fn poll_once(&mut self) {
        let peer_addrs: Vec<String> = self.peer_sockets.keys().cloned().collect();
        let (sched_ready, peers_ready, woken, watched, peer_ready) = {
            let mut items = vec![
                self.scheduler.as_poll_item(zmq::POLLIN),
                self.peers.as_poll_item(zmq::POLLIN),
                self.wake.as_poll_item(zmq::POLLIN),
                self.watch.socket().as_poll_item(zmq::POLLIN),
            ];
            for a in &peer_addrs {
                if let Some(s) = self.peer_sockets.get(a) {
                    items.push(s.as_poll_item(zmq::POLLIN));
                }
            }
            let now = Instant::now();
            let timeout = self.state.next_deadline(now).saturating_duration_since(now);
            let timeout = timeout.max(Duration::from_millis(1)).as_millis() as i64;
            if let Err(e) = zmq::poll(&mut items, timeout) {
                log::error!("poll failed: {e}");
                return;
            }
            let peer_ready: Vec<String> = items[4..]
                .iter()
                .zip(&peer_addrs)
                .filter(|(i, _)| i.is_readable())
                .map(|(_, a)| a.clone())
                .collect();
            (
                items[0].is_readable(),
                items[1].is_readable(),
                items[2].is_readable(),
                items[3].is_readable(),
                peer_ready,
            )
        };
        if watched {
            self.check_handshakes();
        }
        if woken {
            while let Ok(Some(_)) = frames::recv(&self.wake) {}
            self.collect_results();
        }
        if sched_ready {
            self.drain_scheduler();
        }
        if peers_ready {
            self.serve_peers();
        }
        for addr in peer_ready {
            self.drain_peer(&addr);
        }
    }

    /// The scheduler refused this worker's connection: it leaves, saying why (there is no
    /// way in without the right secret). A likely refusal (secure handshakes that keep
    /// ending with the connection closed) makes it leave only if it never got through: later,
    /// it is more likely a scheduler behind a proxy restarting, and ZeroMQ keeps trying.
    fn check_handshakes(&mut self) {
        match self.watch.check() {
            Some(Handshake::Succeeded) => self.handshaken = true,
            Some(Handshake::Refused { definite, why }) if definite || !self.handshaken => {
                log::error!("the scheduler refused this worker: {why}");
                if let Ok(mut failure) = self.failure.lock() {
                    *failure = Some(why);
                }
                self.leaving = true;
            }
            Some(Handshake::Refused { why, .. }) => log::error!("{why}; trying again"),
            None => {}
        }
    }

    fn collect_results(&mut self) {
        self.wake_pending.store(false, Ordering::Release);
        while let Some(batch) = self.executors.try_recv() {
            self.state.on_jobs_done(batch);
        }
        self.carry_out();
    }

    fn drain_scheduler(&mut self) {
        loop {
            let parts = match frames::recv(&self.scheduler) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("receiving from the scheduler failed: {e}");
                    return;
                }
            };
            let mut parts = parts.into_iter();
            let Some(header) = parts.next() else {
                continue;
            };
            let blobs: Vec<Bytes> = parts.map(frames::to_bytes).collect();
            let now = Instant::now();
            match ToWorker::decode(&header) {
                Ok(ToWorker::Compute(ComputeBody { tasks })) => self.compute(tasks, now),
                Ok(msg) => self.state.on_scheduler_message(msg, &blobs, now),
                Err(e) => match split_compute(&header) {
                    Some((tasks, unreadable)) => {
                        for (key, error) in unreadable {
                            self.state.on_unreadable_task(&key, &error);
                        }
                        self.compute(tasks, now);
                    }
                    None => log::warn!("dropping a malformed message from the scheduler: {e}"),
                },
            }
            self.carry_out();
        }
    }

    /// Gives a `compute` to the state; the fetches of a wide task's first chunks go out
    /// while the state is still taking the rest in.
    fn compute(&mut self, tasks: Vec<ComputeTask>, now: Instant) {
        let Loop {
            state,
            ctx,
            peer_sockets,
            unsent,
            secret,
            ..
        } = self;
        state.on_compute(tasks, now, &mut |outbox: &mut Outbox| {
            let drops = std::mem::take(&mut outbox.drop_peers);
            let fetches = std::mem::take(&mut outbox.fetches);
            to_peers(ctx, secret.as_ref(), peer_sockets, unsent, drops, fetches);
        });
    }

    fn serve_peers(&mut self) {
        loop {
            let parts = match frames::recv(&self.peers) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("receiving from a peer failed: {e}");
                    return;
                }
            };
            if parts.len() < 2 {
                continue;
            }
            let route = parts[0].to_vec();
            let request = PeerRequest::decode(&parts[1]);
            self.state
                .on_peer_request(route, request.map_err(|e| e.to_string()));
            self.carry_out();
        }
    }

    fn drain_peer(&mut self, addr: &str) {
        let mut replies = Vec::new();
        if let Some(socket) = self.peer_sockets.get(addr) {
            loop {
                match frames::recv(socket) {
                    Ok(Some(p)) => replies.push(p),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("receiving from {addr} failed: {e}");
                        break;
                    }
                }
            }
        }
        for parts in replies {
            let mut parts = parts.into_iter();
            let Some(header) = parts.next() else {
                continue;
            };
            match PeerReply::decode(&header) {
                Ok(reply) => {
                    // Large values become `Bytes` owning the received frames: no copy.
                    let blobs: Vec<Bytes> = parts.map(frames::to_bytes).collect();
                    self.state
                        .on_peer_reply(addr, reply, &blobs, Instant::now());
                    self.carry_out();
                }
                Err(e) => log::warn!("dropping a malformed reply from {addr}: {e}"),
            }
        }
    }

    /// Carries out what the state decided, until it decides nothing more (a fetch that
    /// could not be sent is told back to it, which may queue another).
    fn carry_out(&mut self) {
        loop {
            let outbox = self.state.take_outbox();
            if outbox.is_empty() && self.unsent.is_empty() {
                return;
            }
            for (msg, blobs) in outbox.to_scheduler {
                send_to_scheduler(&self.scheduler, &msg, blobs);
            }
            to_peers(
                &self.ctx,
                self.secret.as_ref(),
                &mut self.peer_sockets,
                &mut self.unsent,
                outbox.drop_peers,
                outbox.fetches,
            );
            for out in outbox.peer_replies {
                match frames::encode(&out.reply, Vec::new()) {
                    Ok(f) => {
                        let sent = frames::send_shared(
                            &mut self.peers,
                            Some(&out.route),
                            f.header,
                            out.blobs,
                        );
                        if let Err(e) = sent {
                            log::warn!("answering a peer failed: {e}");
                        }
                    }
                    Err(e) => log::error!("encoding a reply failed: {e}"),
                }
            }
            self.executors.cancel(&outbox.cancelled);
            for batch in outbox.jobs {
                if !self.executors.send(batch) {
                    log::error!("executor threads are gone");
                }
            }
            self.leaving |= outbox.leave;
            let now = Instant::now();
            for request in std::mem::take(&mut self.unsent) {
                self.state.on_fetch_unsent(request, now);
            }
        }
    }
}

/// The key and decoding error of each unreadable task of a `compute`.
type Unreadable = Vec<(String, String)>;

/// A `compute` that did not decode, taken task by task: the readable tasks, and the key and
/// error of each unreadable one (a malformed node, one nested too deep) that names its key.
/// `None` if it was not a readable `compute` at all.
fn split_compute(header: &[u8]) -> Option<(Vec<ComputeTask>, Unreadable)> {
    use zask_core::msgpack;
    if msgpack::header_op(header) != Ok("compute") {
        return None;
    }
    let items = msgpack::field(header, "tasks").and_then(msgpack::array_items)?;
    let mut tasks = Vec::new();
    let mut unreadable = Vec::new();
    for item in items {
        match frames::decode::<ComputeTask>(item) {
            Ok(task) => tasks.push(task),
            Err(e) => match msgpack::str_field(item, "key") {
                Some(key) => unreadable.push((key.to_string(), e.to_string())),
                None => log::warn!("dropping a task without a key from a compute: {e}"),
            },
        }
    }
    Some((tasks, unreadable))
}

fn send_to_scheduler(scheduler: &zmq::Socket, msg: &FromWorker, blobs: Vec<Vec<u8>>) {
    match frames::encode(msg, blobs) {
        Ok(f) => {
            if let Err(e) = frames::send(scheduler, None, f) {
                log::warn!("sending to the scheduler failed: {e}");
            }
        }
        Err(e) => log::error!("encoding a message failed: {e}"),
    }
}

/// Carries out the outbox's traffic to peers, in the order it asks: the sockets to drop first
/// (a fetch queued after a drop goes on a fresh socket), then the fetches; one that could not
/// be sent is noted in `unsent` (told to the state once the event is done).
fn to_peers(
    ctx: &zmq::Context,
    secret: Option<&Secret>,
    peer_sockets: &mut HashMap<String, zmq::Socket>,
    unsent: &mut Vec<u64>,
    drops: Vec<String>,
    fetches: Vec<FetchRequest>,
) {
    for peer in drops {
        peer_sockets.remove(&peer);
    }
    for fetch in fetches {
        if !send_fetch(ctx, secret, peer_sockets, &fetch) {
            unsent.push(fetch.request);
        }
    }
}

/// Sends one fetch request (connecting to the peer on first use); false if it could not be
/// sent (the peer's socket is then dropped).
fn send_fetch(
    ctx: &zmq::Context,
    secret: Option<&Secret>,
    peer_sockets: &mut HashMap<String, zmq::Socket>,
    fetch: &FetchRequest,
) -> bool {
    let peer = fetch.peer.as_str();
    let sent = peer_socket(ctx, secret, peer_sockets, peer).and_then(|socket| {
        // Written from the keys as they are (a fetch of 50,000 inputs is not copied).
        let msg = Tagged(GetDataBody {
            request: fetch.request,
            keys: &fetch.keys[..],
        });
        let f = frames::encode(&msg, Vec::new()).map_err(|e| e.to_string())?;
        frames::send(socket, None, f).map_err(|e| e.to_string())
    });
    match sent {
        Ok(()) => true,
        Err(e) => {
            log::warn!("cannot ask {peer} for data: {e}");
            peer_sockets.remove(peer);
            false
        }
    }
}

fn peer_socket<'a>(
    ctx: &zmq::Context,
    secret: Option<&Secret>,
    peer_sockets: &'a mut HashMap<String, zmq::Socket>,
    peer: &str,
) -> Result<&'a zmq::Socket, String> {
    if !peer_sockets.contains_key(peer) {
        let s = ctx.socket(zmq::DEALER).map_err(|e| e.to_string())?;
        net::configure(&s).map_err(|e| e.to_string())?;
        security::secure_client(secret, &s).map_err(|e| e.to_string())?;
        s.connect(peer)
            .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
        peer_sockets.insert(peer.to_string(), s);
    }
    peer_sockets
        .get(peer)
        .ok_or_else(|| "peer socket vanished".to_string())
}
