//! Test harness: real zask processes (scheduler, workers, the `zask` CLI) on 127.0.0.1 with
//! ports the OS chooses, so test files and the tests in them run in parallel.
//!
//! Every child process is owned by a [`Proc`], which kills it (SIGKILL) when dropped, also
//! when a test panics. Every wait has a deadline: [`wait_until`] polls a condition, and
//! output of children is read by threads and handed over through channels.
//!
//! The binaries must be built first (`cargo build --workspace --examples`): `cargo test` only
//! builds the `zask` binary of the package under test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zask::{Client, ClientOptions, Graph, Keys, Value};
use zask_core::frames;
use zask_core::protocol::{
    ComputeBody, ComputeTask, Data, FromWorker, KeyInfo, ReportBody, TaskDone, ToWorker,
    WorkerSummary, PROTOCOL_VERSION,
};

/// How long a process may take to start and print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any condition we poll for may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Timeout of a `get` in tests (generous: only there so that nothing hangs forever).
pub const GET_TIMEOUT: Duration = Duration::from_secs(120);

/// Removes from `command`'s environment every `ZASK_*` variable of the caller's (all of them,
/// whatever program reads them: a developer's ZASK_SCHEDULER_DASHBOARD_PORT or ZASK_AUTH_TOKEN
/// must not reach the programs under test), but those `command` sets itself. A variable a test
/// sets after this call is passed too.
pub fn clear_zask_env(command: &mut Command) {
    let set: Vec<std::ffi::OsString> = command
        .get_envs()
        .filter(|(_, value)| value.is_some())
        .map(|(name, _)| name.to_os_string())
        .collect();
    for (name, _) in std::env::vars_os() {
        let zask = name.to_str().is_some_and(|n| n.starts_with("ZASK_"));
        if zask && !set.contains(&name) {
            command.env_remove(&name);
        }
    }
}

// ----- binaries -----------------------------------------------------------------------------

/// The directory holding the workspace's binaries (next to the `zask` binary).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_zask"))
        .parent()
        .expect("the zask binary has a parent directory")
        .to_path_buf()
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --examples` first",
        path.display()
    );
    path
}

/// The `zask` command line.
pub fn zask_bin() -> PathBuf {
    existing(PathBuf::from(env!("CARGO_BIN_EXE_zask")))
}

pub fn scheduler_bin() -> PathBuf {
    existing(bin_dir().join("zask-scheduler"))
}

/// Which worker binary to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerBin {
    /// `zask-worker`: the standard library only.
    Stock,
    /// `examples/custom_worker`: the standard library plus word_count, scale, parse_int and
    /// explode.
    Custom,
}

impl WorkerBin {
    pub fn path(self) -> PathBuf {
        match self {
            WorkerBin::Stock => existing(bin_dir().join("zask-worker")),
            WorkerBin::Custom => existing(bin_dir().join("examples").join("custom_worker")),
        }
    }
}

/// A file of the repository (e.g. `examples/graph.json`).
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ----- processes ----------------------------------------------------------------------------

/// A child process, killed when dropped. Its stdout lines arrive on a channel; its stderr is
/// kept (the last 64 KiB) to explain failures.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    /// Starts `command` (stdin null, stdout piped, stderr captured, RUST_LOG=error unless the
    /// command sets it, no ZASK_* variables from the caller unless the command sets them).
    pub fn spawn(name: &str, mut command: Command) -> Proc {
        clear_zask_env(&mut command);
        // ZASK_TEST_LOG=debug shows the children's logs on the test's stderr.
        let log = std::env::var("ZASK_TEST_LOG").ok();
        let set = command
            .get_envs()
            .find(|(k, _)| *k == "RUST_LOG")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        command
            .env(
                "RUST_LOG",
                log.clone().or(set).as_deref().unwrap_or("error"),
            )
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if log.is_some() {
                Stdio::inherit()
            } else {
                Stdio::piped()
            });
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(line) => {
                        if tx.send(line).is_err() {
                            // Nobody listens any more: keep draining so the child never blocks.
                            continue;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || drain_into(err, sink));
        }
        Proc {
            name: name.to_string(),
            child,
            stdout: rx,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of stdout; panics after `timeout` or if stdout closes first.
    pub fn read_line(&mut self, timeout: Duration) -> String {
        match self.stdout.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{} printed no line within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(5));
                panic!(
                    "{} closed stdout (exit: {status:?}); stderr:\n{}",
                    self.name,
                    self.stderr_text()
                )
            }
        }
    }

    /// Like [`Proc::read_line`], but `None` when the process ends (closes stdout) first.
    pub fn try_read_line(&mut self, timeout: Duration) -> Option<String> {
        match self.stdout.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{} printed no line within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads a line `PREFIX: value` and returns the value.
    pub fn read_field(&mut self, prefix: &str, timeout: Duration) -> String {
        let line = self.read_line(timeout);
        match line.strip_prefix(prefix).and_then(|r| r.strip_prefix(": ")) {
            Some(value) => value.trim().to_string(),
            None => panic!(
                "{}: expected a line `{prefix}: ...`, got {line:?}",
                self.name
            ),
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    /// SIGTERM (a graceful stop: zask binaries handle it).
    pub fn terminate(&mut self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (`TERM`, `STOP`, `CONT`, ...) to the process.
    pub fn signal(&mut self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_into(mut from: impl Read, sink: Arc<Mutex<Vec<u8>>>) {
    const KEEP: usize = 64 * 1024;
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.extend_from_slice(&buf[..n]);
                if s.len() > 2 * KEEP {
                    let cut = s.len() - KEEP;
                    s.drain(..cut);
                }
            }
        }
    }
}

// ----- polling ------------------------------------------------------------------------------

/// Polls `check` every 20 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The port of a `tcp://host:port` address.
pub fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

// ----- scheduler and workers ----------------------------------------------------------------

/// A running `zask-scheduler`.
pub struct SchedulerProc {
    pub proc: Proc,
    /// `address_to_workers`.
    pub workers_address: String,
    /// `address_to_clients`.
    pub clients_address: String,
}

impl SchedulerProc {
    /// Starts a scheduler on 127.0.0.1 with `args` added, and reads its two address lines.
    pub fn start(args: &[&str]) -> SchedulerProc {
        let mut proc = Self::spawn(args);
        let workers_address = proc.read_field("address_to_workers", START_TIMEOUT);
        let clients_address = proc.read_field("address_to_clients", START_TIMEOUT);
        SchedulerProc {
            proc,
            workers_address,
            clients_address,
        }
    }

    /// Starts a scheduler on fixed ports, retrying while they are not yet free again (after
    /// the previous scheduler on them was killed).
    pub fn start_on(port_to_workers: u16, port_to_clients: u16, args: &[&str]) -> SchedulerProc {
        let pw = port_to_workers.to_string();
        let pc = port_to_clients.to_string();
        let mut all: Vec<&str> = vec!["--port-to-workers", &pw, "--port-to-clients", &pc];
        all.extend_from_slice(args);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut proc = Self::spawn(&all);
            match proc.try_read_line(START_TIMEOUT) {
                Some(line) => {
                    let workers_address = line
                        .strip_prefix("address_to_workers: ")
                        .unwrap_or_else(|| panic!("unexpected scheduler output {line:?}"))
                        .to_string();
                    let clients_address = proc.read_field("address_to_clients", START_TIMEOUT);
                    return SchedulerProc {
                        proc,
                        workers_address,
                        clients_address,
                    };
                }
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                None => panic!(
                    "the scheduler could not start on ports {pw} and {pc}; stderr:\n{}",
                    proc.stderr_text()
                ),
            }
        }
    }

    fn spawn(args: &[&str]) -> Proc {
        Self::spawn_logging(args, "error")
    }

    fn spawn_logging(args: &[&str], log: &str) -> Proc {
        let mut command = Command::new(scheduler_bin());
        command
            .args(["--host", "127.0.0.1"])
            .args(args)
            .env("RUST_LOG", log);
        Proc::spawn("zask-scheduler", command)
    }

    /// As [`SchedulerProc::start`], logging at `log` (`warn`, ...) to its captured stderr.
    pub fn start_logging(args: &[&str], log: &str) -> SchedulerProc {
        let mut proc = Self::spawn_logging(args, log);
        let workers_address = proc.read_field("address_to_workers", START_TIMEOUT);
        let clients_address = proc.read_field("address_to_clients", START_TIMEOUT);
        SchedulerProc {
            proc,
            workers_address,
            clients_address,
        }
    }

    /// A new client of this scheduler.
    pub fn client(&self) -> Client {
        connect(&self.clients_address)
    }
}

/// A running worker process.
pub struct WorkerProc {
    pub proc: Proc,
    /// The `worker_address` it printed (its name at the scheduler).
    pub address: String,
    pub bin: WorkerBin,
}

impl WorkerProc {
    /// Starts a worker of `bin` for the scheduler at `scheduler_workers_address`, on
    /// 127.0.0.1, with `args` added; returns once it printed its address.
    pub fn start(
        bin: WorkerBin,
        scheduler_workers_address: &str,
        nthreads: u32,
        args: &[&str],
    ) -> WorkerProc {
        Self::start_logging(bin, scheduler_workers_address, nthreads, args, "error")
    }

    /// As [`WorkerProc::start`], logging at `log` (`warn`, ...) to its captured stderr.
    pub fn start_logging(
        bin: WorkerBin,
        scheduler_workers_address: &str,
        nthreads: u32,
        args: &[&str],
        log: &str,
    ) -> WorkerProc {
        let mut command = Command::new(bin.path());
        command
            .arg(scheduler_workers_address)
            .args(["--host", "127.0.0.1", "--nthreads"])
            .arg(nthreads.to_string())
            .args(args)
            .env("RUST_LOG", log);
        let name = match bin {
            WorkerBin::Stock => "zask-worker",
            WorkerBin::Custom => "custom_worker",
        };
        let mut proc = Proc::spawn(name, command);
        let address = proc.read_field("worker_address", START_TIMEOUT);
        WorkerProc { proc, address, bin }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    workers: Vec<WorkerBin>,
    nthreads: u32,
    scheduler_args: Vec<String>,
    worker_args: Vec<String>,
}

impl ClusterBuilder {
    /// Extra arguments for the scheduler, e.g. `["--heartbeat-timeout", "1"]`.
    pub fn scheduler_args(mut self, args: &[&str]) -> Self {
        self.scheduler_args
            .extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Extra arguments for every worker, e.g. `["--fetch-timeout", "1"]`.
    pub fn worker_args(mut self, args: &[&str]) -> Self {
        self.worker_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Every worker runs `bin`.
    pub fn worker_bin(mut self, bin: WorkerBin) -> Self {
        for w in &mut self.workers {
            *w = bin;
        }
        self
    }

    /// Exactly these workers, in this order.
    pub fn workers(mut self, bins: &[WorkerBin]) -> Self {
        self.workers = bins.to_vec();
        self
    }

    pub fn nthreads(mut self, n: u32) -> Self {
        self.nthreads = n;
        self
    }

    /// Starts the scheduler and the workers, and waits until every worker has registered.
    pub fn start(self) -> Cluster {
        let args: Vec<&str> = self.scheduler_args.iter().map(String::as_str).collect();
        let scheduler = SchedulerProc::start(&args);
        let mut cluster = Cluster {
            scheduler,
            workers: Vec::new(),
            worker_args: self.worker_args,
            nthreads: self.nthreads,
            client: None,
        };
        for bin in self.workers {
            cluster.spawn_worker(bin);
        }
        let client = cluster.new_client();
        let n = cluster.workers.len();
        client
            .wait_for_workers(n, DEADLINE)
            .unwrap_or_else(|e| panic!("workers did not register: {e}"));
        cluster.client = Some(client);
        cluster
    }
}

/// A scheduler and workers, each its own process, plus a connected client.
pub struct Cluster {
    pub scheduler: SchedulerProc,
    pub workers: Vec<WorkerProc>,
    worker_args: Vec<String>,
    nthreads: u32,
    client: Option<Client>,
}

impl Cluster {
    /// `nworkers` stock workers of `nthreads` threads each.
    pub fn builder(nworkers: usize, nthreads: u32) -> ClusterBuilder {
        ClusterBuilder {
            workers: vec![WorkerBin::Stock; nworkers],
            nthreads,
            scheduler_args: Vec::new(),
            worker_args: Vec::new(),
        }
    }

    /// `nworkers` stock workers of `nthreads` threads each, all registered.
    pub fn start(nworkers: usize, nthreads: u32) -> Cluster {
        Cluster::builder(nworkers, nthreads).start()
    }

    /// The cluster's own client.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the cluster has a client")
    }

    /// A new, separate client connection.
    pub fn new_client(&self) -> Client {
        self.scheduler.client()
    }

    pub fn clients_address(&self) -> &str {
        &self.scheduler.clients_address
    }

    pub fn workers_address(&self) -> &str {
        &self.scheduler.workers_address
    }

    fn spawn_worker(&mut self, bin: WorkerBin) -> usize {
        let args: Vec<&str> = self.worker_args.iter().map(String::as_str).collect();
        let w = WorkerProc::start(bin, &self.scheduler.workers_address, self.nthreads, &args);
        self.workers.push(w);
        self.workers.len() - 1
    }

    /// Starts one more worker and waits until it is registered; returns its index.
    pub fn add_worker(&mut self, bin: WorkerBin) -> usize {
        let i = self.spawn_worker(bin);
        let address = self.workers[i].address.clone();
        let client = self.new_client();
        wait_until("the new worker to register", DEADLINE, || {
            client
                .workers()
                .ok()?
                .iter()
                .any(|w| w.address == address)
                .then_some(())
        });
        i
    }

    /// SIGKILLs worker `i` and forgets it (the scheduler is not told).
    pub fn kill_worker(&mut self, i: usize) -> WorkerProc {
        let mut w = self.workers.remove(i);
        w.proc.kill();
        w
    }

    /// The registered workers, as the scheduler lists them.
    pub fn list_workers(&self) -> Vec<WorkerSummary> {
        self.client().workers().expect("listing workers")
    }

    /// Waits until the scheduler tracks no task or computation and no worker holds a key.
    pub fn wait_until_idle(&self) {
        let client = self.client();
        let mut last = String::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let (Ok(s), Ok(ws)) = (client.status(), client.workers()) {
                let held: u64 = ws.iter().map(|w| w.keys).sum();
                if s.keys == 0 && s.tasks == 0 && s.graphs == 0 && held == 0 {
                    return;
                }
                last = format!(
                    "status: keys {} tasks {} graphs {}; workers' keys: {:?}",
                    s.keys,
                    s.tasks,
                    s.graphs,
                    ws.iter().map(|w| w.keys).collect::<Vec<_>>()
                );
            }
            assert!(
                Instant::now() < deadline,
                "after {DEADLINE:?} the cluster still holds something ({last})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until no worker holds a key (status keys 0 and workers' keys 0), regardless of
    /// tasks the scheduler may track.
    pub fn wait_until_nothing_held(&self) {
        let client = self.client();
        wait_until("no worker to hold a key", DEADLINE, || {
            let s = client.status().ok()?;
            let held: u64 = client.workers().ok()?.iter().map(|w| w.keys).sum();
            (s.keys == 0 && held == 0).then_some(())
        });
    }

    /// Computes a tiny graph and checks its result: the cluster still serves.
    pub fn assert_serving(&self) {
        assert_serving(self.client());
    }
}

/// Connects a client with test timeouts (a `get` may take [`GET_TIMEOUT`]).
pub fn connect(address: &str) -> Client {
    Client::connect_with(address, client_options())
        .unwrap_or_else(|e| panic!("cannot connect a client to {address}: {e}"))
}

pub fn client_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(20),
        get_timeout: GET_TIMEOUT,
        scheduler_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    }
}

/// Computes `{a: 40, b: add(a, 2)}` (under unique key names) and checks it gives 42.
pub fn assert_serving(client: &Client) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (format!("serving-a-{n}"), format!("serving-b-{n}"));
    let mut graph = Graph::new();
    graph.insert(a.as_str(), 40);
    graph.insert(b.as_str(), zask::task("add", (zask::key(a.as_str()), 2)));
    let got = client
        .get(&graph, b.as_str())
        .unwrap_or_else(|e| panic!("the cluster no longer computes: {e}"));
    assert_eq!(got, Value::Int(42));
}

/// A graph from JSON text.
pub fn graph_json(json: serde_json::Value) -> Graph {
    Graph::from_value(&Value::from_json(&json)).expect("a valid graph")
}

/// Keys from JSON: a string is one key, an array a (nested) list.
pub fn keys_json(json: serde_json::Value) -> Keys {
    Keys::from_value(&Value::from_json(&json)).expect("valid keys")
}

/// A value from JSON.
pub fn value_json(json: serde_json::Value) -> Value {
    Value::from_json(&json)
}

// ----- raw sockets --------------------------------------------------------------------------

/// A raw ZeroMQ socket of `kind` connected to `address` (linger 0, 20 s receive timeout).
pub fn raw_socket(ctx: &zmq::Context, kind: zmq::SocketType, address: &str) -> zmq::Socket {
    let s = ctx.socket(kind).expect("socket");
    s.set_linger(0).expect("linger");
    s.set_rcvtimeo(20_000).expect("rcvtimeo");
    s.set_sndtimeo(20_000).expect("sndtimeo");
    s.connect(address).expect("connect");
    s
}

/// Receives one multipart message, waiting at most `timeout`; `None` on timeout.
pub fn recv_parts(socket: &zmq::Socket, timeout: Duration) -> Option<Vec<Vec<u8>>> {
    let mut items = [socket.as_poll_item(zmq::POLLIN)];
    let n = zmq::poll(&mut items, timeout.as_millis() as i64).expect("poll");
    if n == 0 {
        return None;
    }
    Some(socket.recv_multipart(0).expect("recv"))
}

/// Sends an encoded message (`frames::encode(&msg, blobs)`), preceded by `route` if given.
pub fn send_frames(socket: &zmq::Socket, route: Option<&[u8]>, f: frames::Frames) {
    if let Some(route) = route {
        socket.send(route, zmq::SNDMORE).expect("send route");
    }
    let n = f.blobs.len();
    socket
        .send(f.header, if n == 0 { 0 } else { zmq::SNDMORE })
        .expect("send header");
    for (i, blob) in f.blobs.into_iter().enumerate() {
        let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
        socket.send(blob, flags).expect("send blob");
    }
}

/// The scheduler's error report of a failed call; panics if the call succeeded or failed
/// otherwise.
pub fn scheduler_error(result: Result<Value, zask_client::Error>) -> zask::ErrorInfo {
    match result {
        Ok(v) => panic!("expected an error from the scheduler, got the value {v:?}"),
        Err(zask_client::Error::Scheduler(info)) => info,
        Err(other) => panic!("expected an error from the scheduler, got: {other:?}"),
    }
}

// ----- one-shot commands --------------------------------------------------------------------

/// What a finished command printed, and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Reads `pipe` (a child's stdout or stderr) to its end on a thread of its own: its text
/// comes through the channel once the pipe closes (empty without a pipe).
pub fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Waits for `child` to exit, at most `timeout`: its status, or `None` if it still runs.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the child when dropped (a command that outlives its deadline, or a panic).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to completion (no ZASK_* variables from the caller unless `command` sets
/// them, RUST_LOG=error unless it sets that), feeding it `stdin`; panics if it runs longer
/// than `timeout`.
pub fn run_command(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    clear_zask_env(&mut command);
    if !command
        .get_envs()
        .any(|(k, v)| k == "RUST_LOG" && v.is_some())
    {
        command.env("RUST_LOG", "error");
    }
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let described = format!("{command:?}");
    let mut child = KillOnDrop(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {described}: {e}")),
    );
    let out = read_in_background(child.0.stdout.take());
    let err = read_in_background(child.0.stderr.take());
    if let (Some(mut pipe), Some(input)) = (child.0.stdin.take(), stdin) {
        let input = input.to_string();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let status = wait_for_exit(&mut child.0, timeout)
        .unwrap_or_else(|| panic!("{described} did not finish within {timeout:?}"));
    let collect = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the output of {described} did not close"))
    };
    Output {
        status,
        stdout: collect(out),
        stderr: collect(err),
    }
}

/// A `zask` command line with `args` and no ZASK_* variables from the caller (a test may set
/// some on it afterwards).
pub fn zask_command(args: &[&str]) -> Command {
    let mut command = Command::new(zask_bin());
    clear_zask_env(&mut command);
    command.args(args);
    command
}

/// A fake worker: a DEALER registered with a real scheduler, speaking the worker protocol by
/// hand (it answers, or does not answer, as a test needs).
pub struct FakeWorker {
    pub socket: zmq::Socket,
    pub worker_id: String,
}

impl FakeWorker {
    /// Registers with the scheduler whose worker port is `workers_address`, as holding `has`,
    /// and waits for its welcome.
    pub fn register(
        ctx: &zmq::Context,
        workers_address: &str,
        name: &str,
        nthreads: u32,
        functions: &[&str],
        has: Vec<KeyInfo>,
    ) -> FakeWorker {
        let socket = raw_socket(ctx, zmq::DEALER, workers_address);
        let w = FakeWorker {
            socket,
            worker_id: format!("fake-{name}"),
        };
        w.send(&FromWorker::Register {
            protocol: PROTOCOL_VERSION,
            worker_id: w.worker_id.clone(),
            // Nobody fetches from it in these tests; the address only has to be unique.
            address: format!("tcp://127.0.0.1:1/{name}"),
            pid: std::process::id(),
            nthreads,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            has,
        });
        match w.recv(DEADLINE) {
            Some(ToWorker::Welcome { .. }) => w,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Sends `msg` to the scheduler.
    pub fn send(&self, msg: &FromWorker) {
        send_frames(&self.socket, None, frames::encode(msg, Vec::new()).unwrap());
    }

    /// The next message from the scheduler, within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<ToWorker> {
        let parts = recv_parts(&self.socket, timeout)?;
        Some(frames::decode(&parts[0]).expect("a message the worker protocol can decode"))
    }

    /// The next `compute`, skipping other messages; panics after [`DEADLINE`].
    pub fn next_compute(&self) -> Vec<ComputeTask> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no compute within {DEADLINE:?}");
            if let Some(ToWorker::Compute(ComputeBody { tasks })) = self.recv(left) {
                return tasks;
            }
        }
    }

    /// Every message that arrives within `quiet` of the previous one.
    pub fn drain(&self, quiet: Duration) -> Vec<ToWorker> {
        let mut msgs = Vec::new();
        while let Some(m) = self.recv(quiet) {
            msgs.push(m);
        }
        msgs
    }

    /// Reports `t` done with `value` (under the definition hash it was given with).
    pub fn report_done(&self, t: &ComputeTask, value: Value) {
        self.send(&FromWorker::Report(ReportBody {
            done: vec![TaskDone {
                key: t.key.clone(),
                hash: t.hash,
                nbytes: value.nbytes(),
                duration_us: 1,
                data: Some(Data {
                    value,
                    frame: None,
                    raw: false,
                    extra_frames: 0,
                }),
            }],
            failed: vec![],
            acquired: vec![],
        }));
    }

    /// Tells the scheduler it is alive.
    pub fn heartbeat(&self) {
        self.send(&FromWorker::Heartbeat {
            worker_id: self.worker_id.clone(),
        });
    }
}

// ----- HTTP (the scheduler's dashboard) -------------------------------------------------

/// A cluster of `workers` workers of `nthreads` threads whose scheduler serves its dashboard
/// on a port the OS chooses, and the dashboard's URL (`http://127.0.0.1:PORT/`).
pub fn cluster_with_dashboard(workers: usize, nthreads: u32) -> (Cluster, String) {
    let mut cluster = Cluster::builder(workers, nthreads)
        .scheduler_args(&["--dashboard-port", "any"])
        .start();
    let url = cluster
        .scheduler
        .proc
        .read_field("dashboard", START_TIMEOUT);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (cluster, url)
}

/// The `host:port` of a dashboard URL (`http://host:port/`).
pub fn dashboard_address(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// An HTTP/1.0 request to `url` (`http://host:port/`) for `path`: the status and the body.
pub fn http(url: &str, method: &str, path: &str) -> (u16, String) {
    let host = dashboard_address(url);
    try_http(host, host, method, path).expect("an answer from the dashboard")
}

/// The same to `address` with the `Host` header `host`; an error if it cannot be had.
pub fn try_http(
    address: &str,
    host: &str,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.is_empty() {
        return Err(std::io::Error::other("closed without an answer"));
    }
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
