//! The `zask-scheduler` command line: the stock binary's `main`, and the Python package's
//! console script, call [`main_with_args`].

use std::time::Duration;

use crate::{Config, Scheduler, SchedulerOptions};
use clap::Parser;

/// Run the zask scheduler: workers connect to one port, clients to the other.
///
/// Once listening it prints two lines to stdout,
/// `address_to_workers: tcp://H:P` and `address_to_clients: tcp://H:Q`,
/// and a third, `dashboard: http://H:D/`, when it serves its dashboard; then it logs to stderr (set RUST_LOG=debug for more, RUST_LOG=warn for less).
/// Ctrl-C (or SIGTERM) shuts it down cleanly.
#[derive(Parser, Debug)]
#[command(name = "zask-scheduler", version)]
pub struct Args {
    /// Interface to bind and host name to advertise. Default: all interfaces, advertised as
    /// this machine's host name. Use 127.0.0.1 for a single-machine cluster.
    #[arg(long, env = "ZASK_SCHEDULER_HOST", default_value = "")]
    host: String,
    /// Port workers connect to (0: the OS chooses).
    #[arg(long, env = "ZASK_SCHEDULER_PORT_TO_WORKERS", default_value_t = 0)]
    port_to_workers: u16,
    /// Port clients connect to (0: the OS chooses).
    #[arg(long, env = "ZASK_SCHEDULER_PORT_TO_CLIENTS", default_value_t = 0)]
    port_to_clients: u16,
    /// Port of the dashboard and Prometheus `/metrics` (HTTP): a number, `0` for no
    /// dashboard, or `any` for a port the OS chooses. Default: 8788, or when that is taken
    /// (another scheduler on this machine) a port the OS chooses, with a warning; a port
    /// given that is taken is an error. The address is printed as a third line,
    /// `dashboard: URL`.
    #[arg(long, env = "ZASK_SCHEDULER_DASHBOARD_PORT", value_parser = crate::dashboard::parse_port)]
    dashboard_port: Option<crate::dashboard::DashboardPort>,
    /// Interface the dashboard binds. Default: --host; but loopback (127.0.0.1) when a secret
    /// is set and --host is not loopback, as the dashboard shows key names and addresses to
    /// anyone who can reach it, with no authentication.
    #[arg(long, env = "ZASK_SCHEDULER_DASHBOARD_HOST")]
    dashboard_host: Option<String>,
    /// File holding the cluster's shared secret (at least 16 bytes; `zask token` makes one).
    /// With a secret, only clients and workers holding it get in, and all traffic is
    /// encrypted. Or set ZASK_AUTH_TOKEN to the secret itself.
    #[arg(long, env = "ZASK_AUTH_TOKEN_FILE")]
    auth_token_file: Option<std::path::PathBuf>,
    /// Seconds without a heartbeat after which a worker is considered dead (its tasks are
    /// rescheduled and the keys only it held recomputed).
    #[arg(long, env = "ZASK_SCHEDULER_HEARTBEAT_TIMEOUT", default_value_t = 5.0,
          value_parser = positive_seconds)]
    heartbeat_timeout: f64,
    /// A task that was running on this many workers when they died is failed instead of
    /// retried (it may be what kills them).
    #[arg(long, env = "ZASK_SCHEDULER_ALLOWED_FAILURES", default_value_t = 3,
          value_parser = at_least_one::<u32>)]
    allowed_failures: u32,
    /// Seconds after which a silent client with computations in flight is considered gone and
    /// its computations cancelled.
    #[arg(long, env = "ZASK_SCHEDULER_CLIENT_TIMEOUT", default_value_t = 10.0,
          value_parser = positive_seconds)]
    client_timeout: f64,
    /// Seconds a retiring worker (SIGTERM, or `zask retire`) has to hand its unique data to
    /// other workers before it is let go anyway.
    #[arg(long, env = "ZASK_SCHEDULER_RETIRE_TIMEOUT", default_value_t = 30.0,
          value_parser = non_negative_seconds)]
    retire_timeout: f64,
    /// Seconds a computation submitted while no worker is registered waits for one.
    #[arg(long, env = "ZASK_SCHEDULER_NO_WORKERS_TIMEOUT", default_value_t = 30.0,
          value_parser = non_negative_seconds)]
    no_workers_timeout: f64,
    /// Tasks assigned to a worker at once, per worker thread (for tasks of unknown or long
    /// duration; short ones fill --queue-budget instead).
    #[arg(long, env = "ZASK_SCHEDULER_SATURATION", default_value_t = 2,
          value_parser = at_least_one::<u32>)]
    saturation: u32,
    /// Milliseconds of work a worker may have queued per thread, for tasks whose functions
    /// are known (from earlier reports) to be short: tiny tasks then travel and report in
    /// batches. 0 turns this off.
    #[arg(long, env = "ZASK_SCHEDULER_QUEUE_BUDGET_MS", default_value_t = 5.0,
          value_parser = non_negative_seconds)]
    queue_budget_ms: f64,
    /// Do not send a task to wait on the worker computing its only missing input (chains
    /// then take a scheduler round trip per step).
    #[arg(long, env = "ZASK_SCHEDULER_NO_QUEUE_DEPENDENTS")]
    no_queue_dependents: bool,
    /// Largest message accepted from a client, in bytes.
    #[arg(long, env = "ZASK_SCHEDULER_MAX_MESSAGE_SIZE", default_value_t = 1 << 30,
          value_parser = at_least_one::<usize>)]
    max_message_size: usize,
    /// Keep stored collections in a sled database under DIR, so they survive a restart
    /// (default: in memory).
    #[arg(long, env = "ZASK_SCHEDULER_STATE_DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Largest collection accepted, in bytes.
    #[arg(long, env = "ZASK_SCHEDULER_MAX_COLLECTION_SIZE", default_value_t = 64 << 20,
          value_parser = at_least_one::<usize>)]
    max_collection_size: usize,
    /// Copies of a key kept once no running task needs more (extra copies are released).
    #[arg(long, env = "ZASK_SCHEDULER_MAX_COPIES", default_value_t = 1,
          value_parser = at_least_one::<usize>)]
    max_copies: usize,
    /// Seconds a value is kept that a registering worker holds and this scheduler does not
    /// know (after a restart): a client that resubmits its graph or gathers the key in that
    /// time finds it (a gather keeps it until released).
    #[arg(long, env = "ZASK_SCHEDULER_ADOPT_GRACE", default_value_t = 60.0,
          value_parser = non_negative_seconds)]
    adopt_grace: f64,
    /// Seconds after which a task assigned to a worker and not reported is checked with the
    /// worker (one it does not know is assigned again).
    #[arg(long, env = "ZASK_SCHEDULER_CHECK_AFTER", default_value_t = 30.0,
          value_parser = positive_seconds)]
    check_after: f64,
    /// Seconds a worker has to answer a request of the scheduler's: a task check unanswered
    /// removes the worker; a request for data unanswered takes the data from elsewhere.
    #[arg(long, env = "ZASK_SCHEDULER_ANSWER_TIMEOUT", default_value_t = 10.0,
          value_parser = positive_seconds)]
    answer_timeout: f64,
    /// Reply messages queued for one client at the most (a count of messages, whatever their
    /// size; ZeroMQ's send high-water mark); a client that does not read past this has its
    /// computations cancelled (and is told once it is heard from again).
    #[arg(long, env = "ZASK_SCHEDULER_CLIENT_QUEUE", default_value_t = 100_000,
          value_parser = at_least_one::<i32>)]
    client_queue: i32,
}

fn seconds(s: f64, flag: &str) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_else(|_| {
        eprintln!("zask-scheduler: --{flag} takes a non-negative number of seconds, got {s}");
        std::process::exit(2)
    })
}

/// A flag's number of seconds (or milliseconds): finite and not negative.
fn non_negative_seconds(s: &str) -> Result<f64, String> {
    parse_seconds(s, false)
}

/// A flag's number of seconds: finite and more than 0.
fn positive_seconds(s: &str) -> Result<f64, String> {
    parse_seconds(s, true)
}

fn parse_seconds(s: &str, positive: bool) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    let fine = Duration::try_from_secs_f64(x).is_ok() && (!positive || x > 0.0);
    match (fine, positive) {
        (true, _) => Ok(x),
        (false, true) => Err(format!(
            "{s} makes no sense here: give a finite number above 0"
        )),
        (false, false) => Err(format!(
            "{s} makes no sense here: give a finite number, 0 or more"
        )),
    }
}

/// A flag's count: at least 1 (0 would leave the scheduler unable to work).
fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    let n: T = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n < T::from(1) {
        return Err(format!("{s} makes no sense here: give 1 or more"));
    }
    Ok(n)
}

/// Environment variables the scheduler read before they were renamed ZASK_SCHEDULER_*: one
/// still set is pointed out (it is no longer read).
const RENAMED_ENV: [(&str, &str); 19] = [
    ("ZASK_HOST", "ZASK_SCHEDULER_HOST"),
    ("ZASK_PORT_TO_WORKERS", "ZASK_SCHEDULER_PORT_TO_WORKERS"),
    ("ZASK_PORT_TO_CLIENTS", "ZASK_SCHEDULER_PORT_TO_CLIENTS"),
    ("ZASK_HEARTBEAT_TIMEOUT", "ZASK_SCHEDULER_HEARTBEAT_TIMEOUT"),
    ("ZASK_ALLOWED_FAILURES", "ZASK_SCHEDULER_ALLOWED_FAILURES"),
    ("ZASK_CLIENT_TIMEOUT", "ZASK_SCHEDULER_CLIENT_TIMEOUT"),
    ("ZASK_RETIRE_TIMEOUT", "ZASK_SCHEDULER_RETIRE_TIMEOUT"),
    (
        "ZASK_NO_WORKERS_TIMEOUT",
        "ZASK_SCHEDULER_NO_WORKERS_TIMEOUT",
    ),
    ("ZASK_SATURATION", "ZASK_SCHEDULER_SATURATION"),
    ("ZASK_QUEUE_BUDGET_MS", "ZASK_SCHEDULER_QUEUE_BUDGET_MS"),
    (
        "ZASK_NO_QUEUE_DEPENDENTS",
        "ZASK_SCHEDULER_NO_QUEUE_DEPENDENTS",
    ),
    ("ZASK_MAX_MESSAGE_SIZE", "ZASK_SCHEDULER_MAX_MESSAGE_SIZE"),
    ("ZASK_STATE_DIR", "ZASK_SCHEDULER_STATE_DIR"),
    (
        "ZASK_MAX_COLLECTION_SIZE",
        "ZASK_SCHEDULER_MAX_COLLECTION_SIZE",
    ),
    ("ZASK_MAX_COPIES", "ZASK_SCHEDULER_MAX_COPIES"),
    ("ZASK_ADOPT_GRACE", "ZASK_SCHEDULER_ADOPT_GRACE"),
    ("ZASK_CHECK_AFTER", "ZASK_SCHEDULER_CHECK_AFTER"),
    ("ZASK_ANSWER_TIMEOUT", "ZASK_SCHEDULER_ANSWER_TIMEOUT"),
    ("ZASK_CLIENT_QUEUE", "ZASK_SCHEDULER_CLIENT_QUEUE"),
];

/// Parses `args` (the program name first, as `std::env::args_os` gives them) and runs a
/// scheduler until Ctrl-C or SIGTERM. Exits the process with a message on error.
pub fn main_with_args<I, T>(args: I)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // Before parsing, as the worker does: a command line clap refuses still shows the hint.
    zask_core::program::begin("scheduler", "info", &RENAMED_ENV);
    let args = Args::parse_from(args);
    let secret = match zask_core::security::Secret::from_cli(args.auth_token_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zask-scheduler: {e}");
            std::process::exit(2);
        }
    };
    let options = SchedulerOptions {
        host: args.host,
        port_to_workers: args.port_to_workers,
        port_to_clients: args.port_to_clients,
        config: Config {
            heartbeat_timeout: seconds(args.heartbeat_timeout, "heartbeat-timeout"),
            no_workers_timeout: seconds(args.no_workers_timeout, "no-workers-timeout"),
            saturation: args.saturation,
            max_copies: args.max_copies,
            allowed_failures: args.allowed_failures,
            client_timeout: seconds(args.client_timeout, "client-timeout"),
            retire_timeout: seconds(args.retire_timeout, "retire-timeout"),
            queue_budget: seconds(args.queue_budget_ms / 1000.0, "queue-budget-ms"),
            queue_dependents: !args.no_queue_dependents,
            adopt_grace: seconds(args.adopt_grace, "adopt-grace"),
            check_after: seconds(args.check_after, "check-after"),
            answer_timeout: seconds(args.answer_timeout, "answer-timeout"),
        },
        max_message_size: args.max_message_size,
        state_dir: args.state_dir,
        max_collection_size: args.max_collection_size,
        client_queue: args.client_queue,
        secret,
        dashboard_port: args
            .dashboard_port
            .unwrap_or(crate::dashboard::DashboardPort::Default),
        dashboard_host: args.dashboard_host,
    };
    let scheduler = match Scheduler::start(options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zask-scheduler: {e}");
            std::process::exit(1);
        }
    };
    println!("address_to_workers: {}", scheduler.address_to_workers());
    println!("address_to_clients: {}", scheduler.address_to_clients());
    if let Some(url) = scheduler.dashboard_url() {
        println!("dashboard: {url}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let stop = scheduler.stopper();
    if let Err(e) = ctrlc::set_handler(stop) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    scheduler.wait();
}
