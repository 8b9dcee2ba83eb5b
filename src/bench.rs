//! `zask bench`: the reference workloads W1–W9 against a real cluster of separate processes.
//!
//! The cluster is one `zask-scheduler` process (the binary next to the running `zask`) and
//! `--workers` worker processes, each of them this `zask` binary run as the hidden
//! `zask bench-worker` subcommand: a worker with the standard library plus, only when asked,
//! the extra functions W5 uses to pin its tasks to a worker (`make_on_a` and `consume_on_a`
//! exist only on worker A, `consume_on_b` only on worker B; the scheduler sends a task only to a
//! worker offering its function). The client is this process.
//!
//! The workloads mirror `shared/bench/dask_anchor.py` (the dask.distributed anchor):
//!
//! | id | graph | timed |
//! |---|---|---|
//! | W1 | 10,000 independent `inc(i)` + one `sum` of them all | one get of the sum |
//! | W2 | chain `x0 = inc(0)`, `x_i = inc(x_{i-1})`, 1,000 tasks | one get of the last |
//! | W3 | binary `add` tree over 4,096 `inc(i)` leaves (8,191 tasks) | one get of the root |
//! | W4 | one task `add(1, 2)` with a fresh key, 200 gets back to back (+50 after a 20 ms idle gap) | each get |
//! | W5 | 64 MiB made on worker A (held by a future), its size taken on B, minus the same on A | the consumer's get |
//! | W6 | as W1 with 100,000 tasks | one get |
//! | W7 | as W1 with 1,000,000 tasks; the scheduler's peak RSS | one get |
//! | W8 | 10,000 `submit(inc, i)` one after another, then `gather` of their futures | submits + gather |
//! | W9 | `map(inc, 0..10,000)`, then `as_completed` with results | map + the last result |
//!
//! Every repetition uses fresh keys, building the graph is not timed, the clock runs from just
//! before `client.get` to its return, and every result is checked. Between repetitions the
//! bench waits until the scheduler holds no task.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use zask_client::{Client, ClientOptions, FutureStatus, WaitMode};
use zask_core::graph::{key, list, task, Graph};
use zask_core::security::{Secret, AUTH_TOKEN_ENV};
use zask_core::Value;
use zask_worker::{Registry, Worker, WorkerOptions};

/// The workload ids, in the order they run.
pub const WORKLOADS: [&str; 9] = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"];

/// Run the reference workloads W1–W9 on a real local cluster of separate processes and print
/// a table (or JSON lines) of median / min / max times.
///
/// Needs `zask-scheduler` next to this `zask` binary: build with
/// `cargo build --release --workspace`. Progress goes to stderr, the report to stdout.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of worker processes (W5 needs at least 2).
    #[arg(long, env = "ZASK_BENCH_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Threads per worker.
    #[arg(long, env = "ZASK_BENCH_NTHREADS", default_value_t = 1)]
    pub nthreads: u32,
    /// Repetitions of W1–W5, W8 and W9.
    #[arg(long, env = "ZASK_BENCH_REPS", default_value_t = 5)]
    pub reps: usize,
    /// Repetitions of W6.
    #[arg(long, env = "ZASK_BENCH_W6_REPS", default_value_t = 3)]
    pub w6_reps: usize,
    /// Repetitions of W7 (the first runs in a fresh scheduler whose memory is not yet
    /// mapped, and is the slowest; the median is of all).
    #[arg(long, env = "ZASK_BENCH_W7_REPS", default_value_t = 3)]
    pub w7_reps: usize,
    /// Run only these workloads (repeatable, or a comma list: `--only W1,W4`).
    #[arg(long, env = "ZASK_BENCH_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
    /// W1: independent `inc` tasks (plus one `sum`).
    #[arg(long, env = "ZASK_BENCH_W1_TASKS", default_value_t = 10_000)]
    pub w1_tasks: usize,
    /// W2: length of the `inc` chain.
    #[arg(long, env = "ZASK_BENCH_W2_CHAIN", default_value_t = 1_000)]
    pub w2_chain: usize,
    /// W3: leaves of the `add` tree.
    #[arg(long, env = "ZASK_BENCH_W3_LEAVES", default_value_t = 4_096)]
    pub w3_leaves: usize,
    /// W4: back-to-back gets of a one-task graph per repetition.
    #[arg(long, env = "ZASK_BENCH_W4_GETS", default_value_t = 200)]
    pub w4_gets: usize,
    /// W4: further gets with a 20 ms idle gap before each (0: none).
    #[arg(long, env = "ZASK_BENCH_W4_GAP_GETS", default_value_t = 50)]
    pub w4_gap_gets: usize,
    /// W5: MiB moved from worker A to worker B.
    #[arg(long, env = "ZASK_BENCH_W5_MIB", default_value_t = 64)]
    pub w5_mib: usize,
    /// W6: independent `inc` tasks (plus one `sum`).
    #[arg(long, env = "ZASK_BENCH_W6_TASKS", default_value_t = 100_000)]
    pub w6_tasks: usize,
    /// W7: independent `inc` tasks (plus one `sum`).
    #[arg(long, env = "ZASK_BENCH_W7_TASKS", default_value_t = 1_000_000)]
    pub w7_tasks: usize,
    /// W8: futures submitted one `submit` call at a time, then gathered.
    #[arg(long, env = "ZASK_BENCH_W8_FUTURES", default_value_t = 10_000)]
    pub w8_futures: usize,
    /// W9: items mapped (one future each), then taken as they complete.
    #[arg(long, env = "ZASK_BENCH_W9_ITEMS", default_value_t = 10_000)]
    pub w9_items: usize,
    /// Seconds one get may take before the workload fails.
    #[arg(long, env = "ZASK_BENCH_GET_TIMEOUT", default_value_t = 1800.0)]
    pub get_timeout: f64,
    /// Seconds the scheduler may stay silent (not answering pings) during a get.
    #[arg(long, env = "ZASK_BENCH_SCHEDULER_TIMEOUT", default_value_t = 60.0)]
    pub scheduler_timeout: f64,
    /// Skip the short untimed warm-up.
    #[arg(long, env = "ZASK_BENCH_NO_WARMUP")]
    pub no_warmup: bool,
    /// Print one JSON object per workload per line instead of a table.
    #[arg(long, env = "ZASK_BENCH_JSON")]
    pub json: bool,
    /// Give the cluster a fresh random secret: every connection authenticated and encrypted
    /// (CURVE), to measure what that costs.
    #[arg(long, env = "ZASK_BENCH_ENCRYPT")]
    pub encrypt: bool,
    /// Watch the scheduler's dashboard while the workloads run, as an open page and a
    /// Prometheus scraper do: `/api/snapshot` and `/metrics` fetched every second (to measure
    /// what watching costs; without this flag the dashboard is served but nobody looks).
    #[arg(long, env = "ZASK_BENCH_WATCH_DASHBOARD")]
    pub watch_dashboard: bool,
}

/// The hidden `zask bench-worker`: a worker with the standard library and, on request, the
/// extra functions `zask bench` uses to place W5's tasks.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchWorkerArgs {
    /// The scheduler's address_to_workers.
    pub scheduler_address: String,
    /// Interface to bind for peers and host name to advertise.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    pub nthreads: u32,
    /// Also offer this function (repeatable): `make_on_a` (= zeros), `consume_on_a` or
    /// `consume_on_b` (= nbytes).
    #[arg(long)]
    pub extra_function: Vec<String>,
    /// Stop when standard input closes (so the worker never outlives `zask bench`).
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
}

/// The extra functions a bench worker may offer, and the standard function each one is.
const EXTRA_FUNCTIONS: [(&str, &str); 3] = [
    ("make_on_a", "zeros"),
    ("consume_on_a", "nbytes"),
    ("consume_on_b", "nbytes"),
];

/// The registry of a bench worker: the standard library plus the named extra functions.
pub fn bench_registry(extra: &[String]) -> Result<Registry, String> {
    let mut registry = Registry::with_stdlib();
    for name in extra {
        let Some((_, standard)) = EXTRA_FUNCTIONS.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = EXTRA_FUNCTIONS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown extra function {name:?} (known: {})",
                known.join(", ")
            ));
        };
        let standard = *standard;
        registry.register_raw(name, move |registry, args| {
            registry.call(standard, args).map_err(|e| e.to_string())
        });
    }
    Ok(registry)
}

/// Runs a bench worker until it is stopped (or, with `--stop-on-stdin-eof`, until standard
/// input closes).
pub fn run_worker(args: BenchWorkerArgs) -> Result<String, String> {
    let mut options = WorkerOptions::new(&args.scheduler_address);
    options.host = args.host;
    options.nthreads = args.nthreads.max(1);
    options.registry = bench_registry(&args.extra_function)?;
    // (`zask bench --encrypt` gives its workers the secret in ZASK_AUTH_TOKEN.)
    options.secret = Secret::from_cli(None).map_err(|e| e.to_string())?;
    let worker = Worker::start(options).map_err(|e| format!("cannot start the worker: {e}"))?;
    if args.stop_on_stdin_eof {
        let stop = worker.stopper();
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            stop();
        });
    }
    worker.wait();
    Ok(String::new())
}

// ------------------------------------------------------------------------------------ graphs

/// W1/W6/W7: `n` independent `inc(i)` and one `sum` over them all; the key to get.
pub fn graph_independent(n: usize, tag: &str) -> (Graph, String) {
    let mut graph = Graph::new();
    let mut refs = Vec::with_capacity(n);
    for i in 0..n {
        let k = format!("inc-{tag}-{i}");
        graph.insert(k.clone(), task("inc", (i as i64,)));
        refs.push(key(k));
    }
    let total = format!("total-{tag}");
    graph.insert(total.clone(), task("sum", (list(refs),)));
    (graph, total)
}

/// W2: `x0 = inc(0)`, `x_i = inc(x_{i-1})`, `n` tasks in all (n >= 1); the last key.
pub fn graph_chain(n: usize, tag: &str) -> (Graph, String) {
    let mut graph = Graph::new();
    graph.insert(format!("x-{tag}-0"), task("inc", (0i64,)));
    for i in 1..n {
        graph.insert(
            format!("x-{tag}-{i}"),
            task("inc", (key(format!("x-{tag}-{}", i - 1)),)),
        );
    }
    (graph, format!("x-{tag}-{}", n.max(1) - 1))
}

/// W3: `leaves` (>= 1) tasks `inc(i)` reduced pairwise with `add` until one is left; the root
/// key. As in the dask script; with an odd count the last key of a level moves up unchanged.
pub fn graph_tree(leaves: usize, tag: &str) -> (Graph, String) {
    let mut graph = Graph::new();
    let mut level: Vec<String> = (0..leaves.max(1))
        .map(|i| {
            let k = format!("leaf-{tag}-{i}");
            graph.insert(k.clone(), task("inc", (i as i64,)));
            k
        })
        .collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for (j, pair) in level.chunks(2).enumerate() {
            if let [a, b] = pair {
                let k = format!("add-{tag}-{depth}-{j}");
                graph.insert(k.clone(), task("add", (key(a.as_str()), key(b.as_str()))));
                next.push(k);
            } else {
                next.push(pair[0].clone());
            }
        }
        level = next;
    }
    (graph, level.remove(0))
}

/// `1 + 2 + ... + n`.
fn triangle(n: usize) -> i64 {
    let n = n as i64;
    n * (n + 1) / 2
}

// ------------------------------------------------------------------------------ statistics

/// Nearest-rank percentile (as the dask script's `pct`): the smallest sample with at least
/// `p`% of the samples at or below it. `None` for no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * s.len() as f64).ceil() as usize;
    Some(s[rank.saturating_sub(1).min(s.len() - 1)])
}

/// The median (the mean of the two middle samples for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

fn min_max(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// The `--only` list, upper-cased and checked; empty means every workload.
pub fn selected(only: &[String]) -> Result<BTreeSet<&'static str>, String> {
    let mut set = BTreeSet::new();
    for w in only {
        let w = w.trim().to_ascii_uppercase();
        if w.is_empty() {
            continue;
        }
        match WORKLOADS.iter().find(|x| **x == w) {
            Some(x) => {
                set.insert(*x);
            }
            None => return Err(format!("--only: unknown workload {w:?} (W1 to W9)")),
        }
    }
    if set.is_empty() {
        set.extend(WORKLOADS);
    }
    Ok(set)
}

// --------------------------------------------------------------------------------- cluster

/// Peak and current resident set size of a process, from /proc/PID/status (bytes).
fn proc_rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets a process's peak RSS (VmHWM) to its current RSS; false where Linux refuses.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The processes of the bench cluster; dropping it stops them all (also on a panic).
struct Cluster {
    scheduler: Child,
    /// Kept open so the scheduler never writes to a closed pipe.
    _scheduler_stdout: BufReader<ChildStdout>,
    workers: Vec<Child>,
    /// Closing a worker's stdin stops it (it runs with `--stop-on-stdin-eof`).
    worker_stdins: Vec<ChildStdin>,
    address_to_clients: String,
    /// The dashboard's URL.
    dashboard: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.worker_stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(2);
        for w in &mut self.workers {
            while matches!(w.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

/// The role of worker `i`: its extra functions (worker 0 is W5's A, worker 1 its B).
fn extra_functions(i: usize) -> &'static [&'static str] {
    match i {
        0 => &["make_on_a", "consume_on_a"],
        1 => &["consume_on_b"],
        _ => &[],
    }
}

impl Cluster {
    fn start(nworkers: usize, nthreads: u32, token: Option<&str>) -> Result<Cluster, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the running executable: {e}"))?;
        let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
        let scheduler_bin = dir.join(format!("zask-scheduler{}", std::env::consts::EXE_SUFFIX));
        if !scheduler_bin.is_file() {
            return Err(format!(
                "{} not found next to {}: build with `cargo build --release --workspace`",
                scheduler_bin.display(),
                exe.display()
            ));
        }
        let mut cmd = Command::new(&scheduler_bin);
        secret_env(&mut cmd, token);
        cmd.args(["--host", "127.0.0.1", "--dashboard-port", "any"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut scheduler = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", scheduler_bin.display()))?;
        let mut stdout = BufReader::new(scheduler.stdout.take().expect("piped stdout"));
        let mut read_address = |prefix: &str| -> Result<String, String> {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("zask-scheduler exited before printing {prefix}")),
            }
            line.trim()
                .strip_prefix(prefix)
                .map(|a| a.trim().to_string())
                .ok_or_else(|| format!("zask-scheduler printed {line:?}, expected {prefix} ..."))
        };
        let addresses = read_address("address_to_workers:").and_then(|w| {
            let c = read_address("address_to_clients:")?;
            Ok((w, c, read_address("dashboard:")?))
        });
        let (to_workers, to_clients, dashboard) = match addresses {
            Ok(a) => a,
            Err(e) => {
                let _ = scheduler.kill();
                let _ = scheduler.wait();
                return Err(e);
            }
        };
        let mut cluster = Cluster {
            scheduler,
            _scheduler_stdout: stdout,
            workers: Vec::new(),
            worker_stdins: Vec::new(),
            address_to_clients: to_clients,
            dashboard,
        };
        for i in 0..nworkers {
            let mut cmd = Command::new(&exe);
            secret_env(&mut cmd, token);
            cmd.arg("bench-worker")
                .arg(&to_workers)
                .args(["--host", "127.0.0.1", "--stop-on-stdin-eof"])
                .args(["--nthreads", &nthreads.max(1).to_string()]);
            for f in extra_functions(i) {
                cmd.args(["--extra-function", f]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start worker {i} ({}): {e}", exe.display()))?;
            cluster
                .worker_stdins
                .push(child.stdin.take().expect("piped stdin"));
            cluster.workers.push(child);
        }
        Ok(cluster)
    }

    fn scheduler_pid(&self) -> u32 {
        self.scheduler.id()
    }

    /// Fails if a process of the cluster has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.scheduler.try_wait() {
            return Err(format!("zask-scheduler exited ({status})"));
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Ok(Some(status)) = w.try_wait() {
                return Err(format!("worker {i} exited ({status})"));
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------ workloads

/// One repetition's measurements: the timed wall clock, and workload-specific metrics.
#[derive(Debug, Clone, Default)]
struct Rep {
    wall_s: f64,
    metrics: Vec<(&'static str, f64)>,
}

/// A finished workload, summarised over its repetitions.
#[derive(Debug, Clone)]
struct Summary {
    workload: &'static str,
    description: String,
    tasks: usize,
    reps: usize,
    median_s: f64,
    min_s: f64,
    max_s: f64,
    us_per_task: f64,
    /// Medians over the repetitions of each per-repetition metric, then workload metrics.
    metrics: Vec<(&'static str, f64)>,
}

struct Bench<'a> {
    args: &'a BenchArgs,
    cluster: Cluster,
    client: Client,
}

fn expect_int(what: &str, got: &Value, want: i64) -> Result<(), String> {
    match got {
        Value::Int(x) if *x == want => Ok(()),
        other => Err(format!(
            "wrong result for {what}: got {other}, expected {want}"
        )),
    }
}

fn secs(s: f64, flag: &str) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "--{flag} takes a positive number of seconds, got {s}"
        )),
    }
}

impl Bench<'_> {
    /// Times one get of `keys` (the clock covers only the get).
    fn timed_get(&self, graph: &Graph, k: &str) -> Result<(f64, Value), String> {
        let t0 = Instant::now();
        let result = self.client.get(graph, k);
        let dt = t0.elapsed().as_secs_f64();
        result
            .map(|v| (dt, v))
            .map_err(|e| format!("get {k:?}: {e}"))
    }

    /// Waits until the scheduler holds no tasks.
    fn settle(&mut self) -> Result<(), String> {
        self.cluster.check_alive()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.client.status().map_err(|e| format!("status: {e}"))?;
            if status.tasks == 0 && status.graphs == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "zask bench: warning: the scheduler still tracks {} tasks ({} computations) 60 s after the last get",
                    status.tasks, status.graphs
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn independent(&self, n: usize, tag: &str) -> Result<Rep, String> {
        let (graph, k) = graph_independent(n, tag);
        let (dt, v) = self.timed_get(&graph, &k)?;
        drop(graph);
        expect_int(&k, &v, triangle(n))?;
        Ok(Rep {
            wall_s: dt,
            metrics: vec![("tasks_per_s", (n + 1) as f64 / dt)],
        })
    }

    fn chain(&self, n: usize, tag: &str) -> Result<Rep, String> {
        let (graph, k) = graph_chain(n, tag);
        let (dt, v) = self.timed_get(&graph, &k)?;
        expect_int(&k, &v, n as i64)?;
        Ok(Rep {
            wall_s: dt,
            metrics: vec![("us_per_step", dt / n as f64 * 1e6)],
        })
    }

    /// W8: `n` submits of `inc(base + i)` (keys by the default hash of the call; `base` makes
    /// them fresh per repetition), then one gather of all the futures, checked.
    fn submits(&self, n: usize, rep: usize) -> Result<Rep, String> {
        let base = (rep as i64 + 1) * 1_000_000_000;
        let t0 = Instant::now();
        let mut futures = Vec::with_capacity(n);
        for i in 0..n as i64 {
            let f = self
                .client
                .submit("inc", (base + i,))
                .map_err(|e| format!("submit: {e}"))?;
            futures.push(f);
        }
        let submitted = t0.elapsed().as_secs_f64();
        let values = self
            .client
            .gather_futures(&futures)
            .map_err(|e| format!("gather: {e}"))?;
        let dt = t0.elapsed().as_secs_f64();
        for (i, v) in values.iter().enumerate() {
            expect_int(&format!("future {i}"), v, base + i as i64 + 1)?;
        }
        drop(futures);
        Ok(Rep {
            wall_s: dt,
            metrics: vec![
                ("us_per_future", dt / n as f64 * 1e6),
                ("us_per_submit_call", submitted / n as f64 * 1e6),
            ],
        })
    }

    /// W9: `map(inc, base..base + n)`, then `as_completed` with results until the last one,
    /// each checked.
    fn mapped(&self, n: usize, rep: usize) -> Result<Rep, String> {
        let base = (rep as i64 + 1) * 1_000_000_000 + 500_000_000;
        let t0 = Instant::now();
        let futures = self
            .client
            .map("inc", (0..n as i64).map(|i| Value::Int(base + i)))
            .map_err(|e| format!("map: {e}"))?;
        let keys: std::collections::HashMap<String, i64> = futures
            .iter()
            .enumerate()
            .map(|(i, f)| (f.key().to_string(), base + i as i64 + 1))
            .collect();
        let mut seen = 0;
        for (f, v) in zask_client::as_completed(futures).with_results() {
            let v = v.map_err(|e| format!("future {}: {e}", f.key()))?;
            expect_int(f.key(), &v, keys[f.key()])?;
            seen += 1;
        }
        let dt = t0.elapsed().as_secs_f64();
        if seen != n {
            return Err(format!("as_completed gave {seen} futures of {n}"));
        }
        Ok(Rep {
            wall_s: dt,
            metrics: vec![("us_per_future", dt / n as f64 * 1e6)],
        })
    }

    fn tree(&self, leaves: usize, tag: &str) -> Result<Rep, String> {
        let (graph, k) = graph_tree(leaves, tag);
        let (dt, v) = self.timed_get(&graph, &k)?;
        expect_int(&k, &v, triangle(leaves))?;
        Ok(Rep {
            wall_s: dt,
            metrics: vec![],
        })
    }

    /// `count` gets of a fresh one-task graph, with `gap` idle before each; microseconds.
    fn roundtrips(&self, count: usize, gap: Duration, tag: &str) -> Result<Vec<f64>, String> {
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
            let k = format!("y-{tag}-{i}");
            let mut graph = Graph::new();
            graph.insert(k.clone(), task("add", (1i64, 2i64)));
            let (dt, v) = self.timed_get(&graph, &k)?;
            expect_int(&k, &v, 3)?;
            samples.push(dt * 1e6);
        }
        Ok(samples)
    }

    fn latency(&self, tag: &str) -> Result<Rep, String> {
        let s = self.roundtrips(self.args.w4_gets, Duration::ZERO, &format!("{tag}-b2b"))?;
        let mut metrics = vec![
            ("p50_us", percentile(&s, 50.0).unwrap_or(f64::NAN)),
            ("p99_us", percentile(&s, 99.0).unwrap_or(f64::NAN)),
        ];
        if self.args.w4_gap_gets > 0 {
            let g = self.roundtrips(
                self.args.w4_gap_gets,
                Duration::from_millis(20),
                &format!("{tag}-gap"),
            )?;
            metrics.push(("gap20ms_p50_us", percentile(&g, 50.0).unwrap_or(f64::NAN)));
            metrics.push(("gap20ms_p99_us", percentile(&g, 99.0).unwrap_or(f64::NAN)));
        }
        Ok(Rep {
            wall_s: s.iter().sum::<f64>() / 1e6,
            metrics,
        })
    }

    /// As the dask script: the blob is made on A and held there by a future (`submit` and
    /// `wait`: its value does not travel to us); then the size is taken on A (the baseline:
    /// no transfer) and on B (which fetches the blob from A first), each timed; then the
    /// future is dropped, which lets the blob go.
    fn transfer(&mut self, nbytes: usize, tag: &str) -> Result<Rep, String> {
        let blob = format!("blob-{tag}");
        let mut graph = Graph::new();
        graph.insert(blob.clone(), task("make_on_a", (nbytes as i64,)));
        let futures = self
            .client
            .compute(&graph, &[blob.as_str()])
            .map_err(|e| format!("compute {blob:?}: {e}"))?;
        let timeout = self.client.options().get_timeout;
        let held = zask_client::wait(futures, timeout, WaitMode::AllCompleted).done;
        match held.first().map(|f| f.status()) {
            Some(FutureStatus::Finished) => {}
            Some(status) => return Err(format!("{blob}: {status:?}")),
            None => return Err(format!("{blob}: not made within {timeout:?}")),
        }
        let consume = |function: &str| -> Result<f64, String> {
            let k = format!("{function}-{tag}");
            let mut graph = Graph::new();
            graph.insert(k.clone(), task(function, (key(blob.as_str()),)));
            let (dt, v) = self.timed_get(&graph, &k)?;
            expect_int(&k, &v, nbytes as i64)?;
            Ok(dt)
        };
        let consumed = consume("consume_on_a").and_then(|l| Ok((l, consume("consume_on_b")?)));
        // Let the blob go (on A, and B's copy), whether or not the consumers worked.
        drop(held);
        let (local, remote) = consumed?;
        let transfer = (remote - local).max(1e-9);
        Ok(Rep {
            wall_s: remote,
            metrics: vec![
                ("gb_per_s", nbytes as f64 / transfer / 1e9),
                ("remote_s", remote),
                ("local_baseline_s", local),
                ("transfer_s", transfer),
            ],
        })
    }

    /// Checks W5's placement: exactly one worker offers each extra function, and not the same
    /// worker for A's and B's.
    fn check_placement(&self) -> Result<(), String> {
        let workers = self.client.workers().map_err(|e| format!("workers: {e}"))?;
        let holders = |f: &str| -> Vec<String> {
            workers
                .iter()
                .filter(|w| w.functions.iter().any(|x| x == f))
                .map(|w| w.address.clone())
                .collect()
        };
        let (a, a2, b) = (
            holders("make_on_a"),
            holders("consume_on_a"),
            holders("consume_on_b"),
        );
        if a.len() != 1 || a != a2 || b.len() != 1 || a == b {
            return Err(format!(
                "W5 needs make_on_a and consume_on_a on one worker and consume_on_b on another; \
                 found {a:?}, {a2:?}, {b:?} (W5 needs --workers 2 or more)"
            ));
        }
        Ok(())
    }

    fn warm_up(&mut self) -> Result<(), String> {
        for i in 0..3 {
            self.independent(1_000, &format!("warm{i}"))?;
            self.chain(50, &format!("warm{i}"))?;
            self.roundtrips(20, Duration::ZERO, &format!("warm{i}"))?;
        }
        if self.args.workers >= 2 {
            self.transfer(1 << 20, "warm")?;
        }
        self.settle()
    }

    /// Runs workload `w`: its repetitions, settling after each.
    fn run(&mut self, w: &'static str) -> Result<Summary, String> {
        let a = self.args;
        let (reps, tasks, description) = match w {
            "W1" => (
                a.reps,
                a.w1_tasks + 1,
                format!("{} inc + 1 sum", a.w1_tasks),
            ),
            "W2" => (a.reps, a.w2_chain, format!("chain of {} inc", a.w2_chain)),
            "W3" => (
                a.reps,
                2 * a.w3_leaves.max(1) - 1,
                format!("add tree, {} inc leaves", a.w3_leaves),
            ),
            "W4" => (a.reps, a.w4_gets, format!("1-task get x{}", a.w4_gets)),
            "W5" => (a.reps, 1, format!("{} MiB A->B", a.w5_mib)),
            "W6" => (
                a.w6_reps,
                a.w6_tasks + 1,
                format!("{} inc + 1 sum", a.w6_tasks),
            ),
            "W7" => (
                a.w7_reps,
                a.w7_tasks + 1,
                format!("{} inc + 1 sum", a.w7_tasks),
            ),
            "W8" => (
                a.reps,
                a.w8_futures,
                format!("{} submit + gather", a.w8_futures),
            ),
            "W9" => (
                a.reps,
                a.w9_items,
                format!("map {} + as_completed", a.w9_items),
            ),
            _ => unreachable!("unknown workload {w}"),
        };
        if reps == 0 {
            return Err("0 repetitions asked".into());
        }
        match w {
            "W2" if a.w2_chain == 0 => return Err("--w2-chain must be at least 1".into()),
            "W4" if a.w4_gets == 0 => return Err("--w4-gets must be at least 1".into()),
            "W8" if a.w8_futures == 0 => return Err("--w8-futures must be at least 1".into()),
            "W9" if a.w9_items == 0 => return Err("--w9-items must be at least 1".into()),
            "W5" => self.check_placement()?,
            _ => {}
        }
        let pid = self.cluster.scheduler_pid();
        let reset = reset_peak_rss(pid);
        let mut results = Vec::with_capacity(reps);
        for rep in 0..reps {
            let tag = format!("{}r{rep}", w.to_ascii_lowercase());
            let r = match w {
                "W1" => self.independent(a.w1_tasks, &tag),
                "W2" => self.chain(a.w2_chain, &tag),
                "W3" => self.tree(a.w3_leaves, &tag),
                "W4" => self.latency(&tag),
                "W5" => self.transfer(a.w5_mib << 20, &tag),
                "W6" => self.independent(a.w6_tasks, &tag),
                "W8" => self.submits(a.w8_futures, rep),
                "W9" => self.mapped(a.w9_items, rep),
                _ => self.independent(a.w7_tasks, &tag),
            }
            .map_err(|e| format!("repetition {rep}: {e}"))?;
            let extra: Vec<String> = r
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
                .collect();
            eprintln!(
                "zask bench: {w} rep {rep}: {:.4} s {}",
                r.wall_s,
                extra.join(" ")
            );
            results.push(r);
            self.settle()?;
        }
        let walls: Vec<f64> = results.iter().map(|r| r.wall_s).collect();
        let median_s = median(&walls).unwrap_or(f64::NAN);
        let (min_s, max_s) = min_max(&walls);
        let mut metrics: Vec<(&'static str, f64)> = Vec::new();
        for (i, (name, _)) in results[0].metrics.iter().enumerate() {
            let values: Vec<f64> = results.iter().map(|r| r.metrics[i].1).collect();
            metrics.push((name, median(&values).unwrap_or(f64::NAN)));
        }
        if let Some((hwm, _)) = proc_rss(pid) {
            metrics.push(("scheduler_peak_rss_bytes", hwm as f64));
            if !reset {
                // Without the reset the peak covers the whole run so far.
                metrics.push(("scheduler_peak_rss_is_cumulative", 1.0));
            }
        }
        Ok(Summary {
            workload: w,
            description,
            tasks,
            reps,
            median_s,
            min_s,
            max_s,
            us_per_task: median_s / tasks as f64 * 1e6,
            metrics,
        })
    }
}

// -------------------------------------------------------------------------------- output

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn json_line(s: &Summary, args: &BenchArgs) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("workload".into(), s.workload.into());
    obj.insert("description".into(), s.description.clone().into());
    obj.insert("tasks".into(), s.tasks.into());
    obj.insert("reps".into(), s.reps.into());
    obj.insert("workers".into(), args.workers.into());
    obj.insert("nthreads".into(), args.nthreads.into());
    obj.insert("median_s".into(), s.median_s.into());
    obj.insert("min_s".into(), s.min_s.into());
    obj.insert("max_s".into(), s.max_s.into());
    obj.insert("us_per_task".into(), s.us_per_task.into());
    for (k, v) in &s.metrics {
        let v = if k.ends_with("_bytes") {
            serde_json::Value::from(*v as u64)
        } else if k.ends_with("_is_cumulative") {
            serde_json::Value::from(*v != 0.0)
        } else {
            serde_json::Value::from(*v)
        };
        obj.insert((*k).into(), v);
    }
    serde_json::Value::Object(obj).to_string()
}

fn error_json_line(w: &str, error: &str, args: &BenchArgs) -> String {
    serde_json::json!({
        "workload": w, "error": error, "workers": args.workers, "nthreads": args.nthreads,
    })
    .to_string()
}

fn table(rows: &[Result<Summary, (&'static str, String)>], args: &BenchArgs) -> String {
    let mut out = format!(
        "zask bench: {} workers x {} threads\n\n\
         | workload | what | tasks | reps | median s | min s | max s | us/task | other (medians over reps) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
        args.workers, args.nthreads
    );
    for row in rows {
        match row {
            Ok(s) => {
                let other: Vec<String> = s
                    .metrics
                    .iter()
                    .map(|(k, v)| match *k {
                        "scheduler_peak_rss_bytes" => {
                            format!("scheduler peak RSS {:.0} MiB", v / f64::from(1 << 20))
                        }
                        "scheduler_peak_rss_is_cumulative" => "(peak over the whole run)".into(),
                        _ => format!("{k} {}", fmt_num(*v)),
                    })
                    .collect();
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} |\n",
                    s.workload,
                    s.description,
                    s.tasks,
                    s.reps,
                    s.median_s,
                    s.min_s,
                    s.max_s,
                    fmt_num(s.us_per_task),
                    other.join(", ")
                ));
            }
            Err((w, e)) => out.push_str(&format!("| {w} | ERROR: {e} | | | | | | | |\n")),
        }
    }
    out.trim_end().to_string()
}

/// Gives a bench process the bench's secret, or none (not the secret of the user's own
/// cluster, which the environment may hold).
fn secret_env(cmd: &mut Command, token: Option<&str>) {
    cmd.env_remove("ZASK_AUTH_TOKEN_FILE");
    match token {
        Some(token) => cmd.env(AUTH_TOKEN_ENV, token),
        None => cmd.env_remove(AUTH_TOKEN_ENV),
    };
}

/// `zask bench`: starts the cluster, runs the selected workloads, returns the report (the
/// table or JSON lines). If a workload fails, the others still run; the report is then printed
/// here and an error returned (so the exit status is non-zero).
pub fn run(args: BenchArgs) -> Result<String, String> {
    let wanted = selected(&args.only)?;
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let token = match args.encrypt {
        true => Some(Secret::generate_token().map_err(|e| format!("cannot make a secret: {e}"))?),
        false => None,
    };
    let secret = match &token {
        Some(t) => Some(Secret::new(t).map_err(|e| e.to_string())?),
        None => None,
    };
    let options = ClientOptions {
        get_timeout: secs(args.get_timeout, "get-timeout")?,
        scheduler_timeout: secs(args.scheduler_timeout, "scheduler-timeout")?,
        secret,
        ..ClientOptions::default()
    };
    let mut cluster = Cluster::start(args.workers, args.nthreads, token.as_deref())?;
    let client = Client::connect_with(&cluster.address_to_clients, options)
        .map_err(|e| format!("cannot connect to the bench scheduler: {e}"))?;
    if let Err(e) = client.wait_for_workers(args.workers, Duration::from_secs(30)) {
        cluster.check_alive()?;
        return Err(format!("the bench workers did not register: {e}"));
    }
    eprintln!(
        "zask bench: scheduler pid {} at {}, {} workers x {} threads",
        cluster.scheduler_pid(),
        cluster.address_to_clients,
        args.workers,
        args.nthreads
    );
    let dashboard = cluster.dashboard.clone();
    let mut bench = Bench {
        args: &args,
        cluster,
        client,
    };
    let watcher = args
        .watch_dashboard
        .then(|| DashboardWatcher::start(&dashboard));
    if !args.no_warmup {
        let t0 = Instant::now();
        bench
            .warm_up()
            .map_err(|e| format!("warm-up failed: {e}"))?;
        eprintln!(
            "zask bench: warm-up done in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    let mut rows: Vec<Result<Summary, (&'static str, String)>> = Vec::new();
    let mut lines = Vec::new();
    for w in WORKLOADS.iter().copied().filter(|w| wanted.contains(w)) {
        let t0 = Instant::now();
        let result = bench.run(w);
        let elapsed = t0.elapsed().as_secs_f64();
        match result {
            Ok(s) => {
                eprintln!("zask bench: {w} done in {elapsed:.1} s");
                lines.push(json_line(&s, &args));
                rows.push(Ok(s));
            }
            Err(e) => {
                eprintln!("zask bench: {w} FAILED after {elapsed:.1} s: {e}");
                lines.push(error_json_line(w, &e, &args));
                rows.push(Err((w, e)));
                // A dead cluster fails every later workload: say so once and stop.
                if let Err(dead) = bench.cluster.check_alive() {
                    let report = if args.json {
                        lines.join("\n")
                    } else {
                        table(&rows, &args)
                    };
                    println!("{report}");
                    let _ = std::io::stdout().flush();
                    return Err(format!("{w} failed and the cluster is down: {dead}"));
                }
                // Let whatever the failed workload left behind drain.
                let _ = bench.settle();
            }
        }
    }
    drop(watcher);
    drop(bench);
    let report = if args.json {
        lines.join("\n")
    } else {
        table(&rows, &args)
    };
    let failed: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.as_ref().err().map(|(w, _)| *w))
        .collect();
    if failed.is_empty() {
        Ok(report)
    } else {
        println!("{report}");
        let _ = std::io::stdout().flush();
        Err(format!("workloads failed: {}", failed.join(", ")))
    }
}

/// Fetches the dashboard's `/api/snapshot` and `/metrics` every second until dropped (what an
/// open page and a scraper cost the scheduler).
struct DashboardWatcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DashboardWatcher {
    fn start(url: &str) -> DashboardWatcher {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut fetched, mut failed) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                let second = Instant::now() + Duration::from_secs(1);
                for path in ["/api/snapshot", "/metrics"] {
                    match http_get(&host, path) {
                        Ok(_) => fetched += 1,
                        Err(e) => {
                            failed += 1;
                            log::warn!("watching the dashboard: {path}: {e}");
                        }
                    }
                }
                while Instant::now() < second && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            eprintln!("zask bench: watched the dashboard: {fetched} fetches, {failed} failed");
        });
        eprintln!("zask bench: watching the dashboard at {url} every second");
        DashboardWatcher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DashboardWatcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain HTTP/1.0 GET of `path` on `host:port`: the body's size.
fn http_get(host: &str, path: &str) -> std::io::Result<usize> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    if !response.starts_with(b"HTTP/1.0 200") && !response.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "{path}: {}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        )));
    }
    Ok(response.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zask_core::Node;

    fn refs(graph: &Graph, k: &str) -> usize {
        graph.dependencies(k).len()
    }

    #[test]
    fn independent_graph_has_n_plus_one_tasks() {
        let (g, total) = graph_independent(10, "t");
        assert_eq!(g.len(), 11);
        assert_eq!(total, "total-t");
        assert_eq!(refs(&g, &total), 10);
        assert!(matches!(g.get("inc-t-9"), Some(Node::Task(t)) if t.func == "inc"));
    }

    #[test]
    fn chain_graph_has_n_tasks_each_on_the_previous() {
        let (g, last) = graph_chain(1_000, "c");
        assert_eq!(g.len(), 1_000);
        assert_eq!(last, "x-c-999");
        assert_eq!(g.dependencies("x-c-999"), vec!["x-c-998".to_string()]);
        assert!(g.dependencies("x-c-0").is_empty());
        let (g, last) = graph_chain(1, "c");
        assert_eq!((g.len(), last.as_str()), (1, "x-c-0"));
    }

    #[test]
    fn tree_graph_has_two_leaves_minus_one_tasks() {
        let (g, root) = graph_tree(4_096, "t");
        assert_eq!(g.len(), 8_191);
        assert_eq!(root, "add-t-12-0");
        assert_eq!(refs(&g, &root), 2);
        // An odd count carries the last key up a level.
        for leaves in [1, 2, 3, 5, 7, 100] {
            let (g, root) = graph_tree(leaves, "o");
            assert_eq!(g.len(), 2 * leaves - 1, "{leaves} leaves");
            assert!(g.get(&root).is_some());
        }
        assert_eq!(triangle(4_096), (1..=4_096).sum::<i64>());
    }

    #[test]
    fn fresh_keys_per_tag() {
        let (a, _) = graph_independent(5, "w1r0");
        let (b, _) = graph_independent(5, "w1r1");
        assert!(a.nodes.keys().all(|k| b.get(k).is_none()));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&xs, 50.0), Some(100.0));
        assert_eq!(percentile(&xs, 99.0), Some(198.0));
        assert_eq!(percentile(&xs, 100.0), Some(200.0));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }

    #[test]
    fn only_accepts_lists_and_any_case() {
        let all = selected(&[]).unwrap();
        assert_eq!(all.len(), 9);
        let some = selected(&["w4".into(), "W1".into(), " w4".into()]).unwrap();
        assert_eq!(some.into_iter().collect::<Vec<_>>(), vec!["W1", "W4"]);
        assert!(selected(&["W10".into()]).is_err());
    }

    #[test]
    fn bench_registry_adds_only_the_asked_functions() {
        let r = bench_registry(&["make_on_a".into()]).unwrap();
        assert!(r.contains("make_on_a") && r.contains("inc"));
        assert!(!r.contains("consume_on_b"));
        let args = zask_worker::Args::positional(vec![Value::Int(16)]);
        assert_eq!(
            r.call("make_on_a", args),
            Ok(Value::Bytes(vec![0; 16].into()))
        );
        let r = bench_registry(&["consume_on_b".into()]).unwrap();
        let args = zask_worker::Args::positional(vec![Value::Bytes(vec![0; 16].into())]);
        assert_eq!(r.call("consume_on_b", args), Ok(Value::Int(16)));
        assert!(bench_registry(&["nope".into()]).is_err());
    }
}
