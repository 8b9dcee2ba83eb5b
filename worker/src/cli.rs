//! The `zask-worker` command line, shared by the stock binary and custom worker binaries.
//!
//! A custom worker is a `main` that builds a [`Registry`] and hands it here:
//!
//! ```no_run
//! use zask_worker::Registry;
//! fn main() {
//!     let mut registry = Registry::with_stdlib();
//!     registry.register("double", |x: i64| x * 2);
//!     zask_worker::cli::main_with(registry);
//! }
//! ```

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use clap::Parser;

use crate::registry::Registry;
use crate::server::{Worker, WorkerOptions};
use crate::store::StoreKind;

/// Run a zask worker: register with the scheduler, run tasks, serve results to peers.
///
/// Logs to stderr (RUST_LOG=debug for more, RUST_LOG=warn for less). Ctrl-C or SIGTERM retires
/// it gracefully: the scheduler moves the data only it holds to other workers, then lets it go;
/// a second signal stops it at once. The worker may start before the scheduler: it registers
/// once the scheduler is up, and again whenever the scheduler restarts.
#[derive(Parser, Debug)]
#[command(name = "zask-worker", version)]
pub struct Args {
    /// The scheduler's address_to_workers, e.g. tcp://10.0.0.5:8786.
    #[arg(env = "ZASK_WORKER_SCHEDULER_ADDRESS")]
    pub scheduler_address: String,
    /// Interface to bind for peers, and host name to advertise to them. Default: all
    /// interfaces, advertised as this machine's host name.
    #[arg(long, env = "ZASK_WORKER_HOST", default_value = "")]
    pub host: String,
    /// Port peers fetch data from (0: the OS chooses).
    #[arg(long, env = "ZASK_WORKER_PORT_TO_WORKERS", default_value_t = 0)]
    pub port_to_workers: u16,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, env = "ZASK_WORKER_NTHREADS")]
    pub nthreads: Option<u32>,
    /// Where results are kept: `memory`, or `sled:DIR` (on disk, kept across restarts).
    #[arg(long, env = "ZASK_WORKER_STORE", default_value = "memory")]
    pub store: StoreKind,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, env = "ZASK_WORKER_HEARTBEAT_INTERVAL", default_value_t = 0.5)]
    pub heartbeat_interval: f64,
    /// Seconds a peer may take to answer a fetch before the next holder is tried.
    #[arg(long, env = "ZASK_WORKER_FETCH_TIMEOUT", default_value_t = 10.0)]
    pub fetch_timeout: f64,
    /// Seconds a retiring worker (first Ctrl-C or SIGTERM) waits for the scheduler to move its
    /// data to other workers before leaving anyway. A second signal leaves at once.
    #[arg(long, env = "ZASK_WORKER_RETIRE_TIMEOUT", default_value_t = 60.0)]
    pub retire_timeout: f64,
    /// Also offer test-only functions that crash the worker (`abort`: the process aborts).
    /// For testing failure handling only; never enable in production.
    #[arg(long, env = "ZASK_WORKER_ENABLE_TEST_FUNCTIONS")]
    pub enable_test_functions: bool,
    /// File holding the cluster's shared secret, the scheduler's (`zask token` makes one).
    /// With it the worker proves it to the scheduler and to peers, lets in only peers that
    /// hold it, and encrypts all traffic. Or set ZASK_AUTH_TOKEN to the secret itself.
    #[arg(long, env = "ZASK_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<std::path::PathBuf>,
}

/// What the worker does on SIGINT/SIGTERM.
struct SignalActions {
    retire: Box<dyn Fn() + Send + Sync>,
    stop: Box<dyn Fn() + Send + Sync>,
}

impl SignalActions {
    /// The `n`th signal (from 0): the first retires gracefully, any later one stops at once:
    /// the worker is told to stop, and if it has not within `FORCED_EXIT_AFTER` (its loop is
    /// stuck, on a wedged disk say), the process exits anyway.
    fn on_signal(&self, n: usize) {
        if n == 0 {
            (self.retire)()
        } else {
            (self.stop)();
            let _ = std::thread::Builder::new()
                .name("zask-forced-exit".into())
                .spawn(|| {
                    std::thread::sleep(FORCED_EXIT_AFTER);
                    eprintln!(
                        "zask-worker: did not stop within {FORCED_EXIT_AFTER:?} of the second \
                         signal; exiting"
                    );
                    std::process::exit(1);
                });
        }
    }
}

/// Environment variables the worker read before they were renamed ZASK_WORKER_*: one still
/// set is pointed out (it is no longer read).
const RENAMED_ENV: [(&str, &str); 8] = [
    ("ZASK_SCHEDULER_WORKERS", "ZASK_WORKER_SCHEDULER_ADDRESS"),
    ("ZASK_WORKER_PORT", "ZASK_WORKER_PORT_TO_WORKERS"),
    ("ZASK_NTHREADS", "ZASK_WORKER_NTHREADS"),
    ("ZASK_STORE", "ZASK_WORKER_STORE"),
    ("ZASK_HEARTBEAT_INTERVAL", "ZASK_WORKER_HEARTBEAT_INTERVAL"),
    ("ZASK_FETCH_TIMEOUT", "ZASK_WORKER_FETCH_TIMEOUT"),
    ("ZASK_RETIRE_TIMEOUT", "ZASK_WORKER_RETIRE_TIMEOUT"),
    (
        "ZASK_ENABLE_TEST_FUNCTIONS",
        "ZASK_WORKER_ENABLE_TEST_FUNCTIONS",
    ),
];

/// After a second signal, how long the worker may take to stop before the process exits.
const FORCED_EXIT_AFTER: Duration = Duration::from_secs(2);

fn seconds(s: f64, flag: &str) -> Duration {
    match Duration::try_from_secs_f64(s) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!("zask-worker: --{flag} takes a positive number of seconds, got {s}");
            std::process::exit(2)
        }
    }
}

/// Parses the command line and runs a worker offering `registry`'s functions until Ctrl-C,
/// SIGTERM, or the scheduler refusing it. Exits the process with a message on error.
pub fn main_with(registry: Registry) {
    main_with_args(std::env::args_os(), registry)
}

/// As [`main_with`], with the command line given (the program name first, as
/// `std::env::args_os` gives them): for a program that parses some arguments itself (the
/// Python package's `zask-worker --module ...`).
pub fn main_with_args<I, T>(args: I, registry: Registry)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // Before parsing: clap refuses a command line missing SCHEDULER_ADDRESS, which the worker
    // once read from ZASK_SCHEDULER_WORKERS; the hint says which name to use now.
    zask_core::program::begin("worker", "info", &RENAMED_ENV);
    let args = Args::parse_from(args);
    let mut options = WorkerOptions::new(&args.scheduler_address);
    options.host = args.host;
    options.port_to_workers = args.port_to_workers;
    match args.nthreads {
        Some(0) => {
            eprintln!("zask-worker: --nthreads must be at least 1");
            std::process::exit(2);
        }
        Some(n) => options.nthreads = n,
        None => {}
    }
    options.store = args.store;
    let mut registry = registry;
    if args.enable_test_functions {
        log::warn!("test-only functions enabled: `abort` crashes this worker");
        registry.register_raw("abort", |_, _| std::process::abort());
    }
    options.registry = registry;
    options.retire_timeout = seconds(args.retire_timeout, "retire-timeout");
    options.heartbeat_interval = seconds(args.heartbeat_interval, "heartbeat-interval");
    options.fetch_timeout = seconds(args.fetch_timeout, "fetch-timeout");
    options.secret = match zask_core::security::Secret::from_cli(args.auth_token_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zask-worker: {e}");
            std::process::exit(2);
        }
    };
    // The first signal retires gracefully; a second one leaves at once. The handler goes in
    // before the worker starts (a signal right after it registers must not kill it); signals
    // that came before the worker existed are applied once it does.
    let signals = Arc::new(AtomicUsize::new(0));
    let actions: Arc<OnceLock<SignalActions>> = Arc::new(OnceLock::new());
    let handler = {
        let (signals, actions) = (signals.clone(), actions.clone());
        move || {
            let n = signals.fetch_add(1, Ordering::SeqCst);
            if let Some(actions) = actions.get() {
                actions.on_signal(n);
            }
        }
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    let worker = match Worker::start(options) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("zask-worker: {e}");
            std::process::exit(1);
        }
    };
    let actions = actions.get_or_init(|| SignalActions {
        retire: Box::new(worker.retirer()),
        stop: Box::new(worker.stopper()),
    });
    for n in 0..signals.load(Ordering::SeqCst) {
        actions.on_signal(n);
    }
    println!("worker_address: {}", worker.address());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    worker.wait();
    if let Some(why) = worker.failure() {
        eprintln!("zask-worker: {why}");
        std::process::exit(1);
    }
}
