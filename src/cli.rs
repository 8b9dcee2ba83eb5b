//! The `zask` command line (clients, `zask local`, `zask bench`, and `zask scheduler` /
//! `zask worker`, which run the other two programs): the binary's `main` and the Python
//! package's console script call [`main_with_args`].

use crate::bench;

mod output;

use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::security::Secret;
use crate::{Client, ClientOptions, GetProgress, Graph, Keys, LocalCluster, Value};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use output::{Format, Out, Table};
use serde_json::json;

/// zask: a distributed task scheduler.
///
/// Client commands (get, workers, status, computations, cancel, keys, release, retire,
/// compute, collections) talk to a running scheduler, at the address given with -s/--scheduler
/// or ZASK_SCHEDULER, anywhere on the line. `zask local` starts a scheduler and workers in
/// this process instead; `zask scheduler` and `zask worker` run a scheduler or a worker (the
/// same programs as zask-scheduler and zask-worker).
///
/// Output: tables for people when stdout is a terminal, JSON otherwise (so scripts read it),
/// or as --output says. Errors go to stderr (as JSON objects with --output json) and exit with
/// status 1 (2 for a command line that makes no sense). Every flag also reads an environment
/// variable, shown in --help; a flag given on the line wins over it, wherever it is given.
/// RUST_LOG=debug shows what the client (and, under `zask local`, the cluster) does, on
/// stderr.
#[derive(Parser, Debug)]
#[command(name = "zask", version)]
struct Cli {
    #[command(flatten)]
    connection: RootConnection,
    /// How to print results: `table` for people, `json` for scripts. Default: table when
    /// stdout is a terminal, else json. Asked for (here or in ZASK_OUTPUT), json also prints
    /// errors as JSON objects on stderr: {"error": {"kind": ..., "message": ...}}.
    #[arg(
        long,
        global = true,
        env = "ZASK_OUTPUT",
        value_enum,
        value_name = "FORMAT"
    )]
    output: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

/// Where the scheduler is, how long to wait for it, and the secret: given before the command,
/// after it, or (for `collections`) after its subcommand; the last one given on the line
/// counts, then the environment (ZASK_SCHEDULER, ZASK_TIMEOUT, ZASK_AUTH_TOKEN_FILE), then the
/// default.
///
/// Each of those places is a struct of its own for clap, and clap fills each one's unset flags
/// from the environment; so a place's values count only where they were given on the command
/// line ([`Connection::given_in`]), and the environment is taken from the root's alone.
#[derive(Debug, Clone, Default)]
struct Connection {
    scheduler: Option<String>,
    timeout: Option<f64>,
    auth_token_file: Option<PathBuf>,
}

impl Connection {
    /// These values, but only those given on the command line: `matches` are those of the
    /// (sub)command whose flags these are (a value clap took from the environment is dropped,
    /// so that it cannot win over a flag given elsewhere on the line).
    fn given_in(self, matches: &ArgMatches) -> Connection {
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        Connection {
            scheduler: self.scheduler.filter(|_| given("scheduler")),
            timeout: self.timeout.filter(|_| given("timeout")),
            auth_token_file: self.auth_token_file.filter(|_| given("auth_token_file")),
        }
    }

    /// These values, and `outer`'s where these have none.
    fn or(self, outer: &Connection) -> Connection {
        Connection {
            scheduler: self.scheduler.or_else(|| outer.scheduler.clone()),
            timeout: self.timeout.or(outer.timeout),
            auth_token_file: self
                .auth_token_file
                .or_else(|| outer.auth_token_file.clone()),
        }
    }
}

/// The client flags, as a struct for clap with its own help for `--timeout`.
macro_rules! connection_args {
    ($(#[$doc:meta])* $name:ident, $timeout_help:expr) => {
        $(#[$doc])*
        #[derive(clap::Args, Debug, Clone, Default)]
        struct $name {
            /// The scheduler's address_to_clients (zask-scheduler prints it when it starts),
            /// e.g. tcp://10.0.0.5:8787. Needed by every client command.
            #[arg(
                short = 's',
                long,
                env = "ZASK_SCHEDULER",
                value_name = "ADDRESS",
                overrides_with = "scheduler"
            )]
            scheduler: Option<String>,
            #[arg(
                long,
                env = "ZASK_TIMEOUT",
                value_name = "SECONDS",
                overrides_with = "timeout",
                help = $timeout_help
            )]
            timeout: Option<f64>,
            /// File holding the cluster's shared secret, the scheduler's (one secret per
            /// cluster: the scheduler, workers and clients read the same ZASK_AUTH_TOKEN_FILE).
            /// Or set ZASK_AUTH_TOKEN to the secret itself. (See docs/security.md.)
            #[arg(
                long,
                env = "ZASK_AUTH_TOKEN_FILE",
                value_name = "FILE",
                overrides_with = "auth_token_file"
            )]
            auth_token_file: Option<PathBuf>,
        }

        impl From<$name> for Connection {
            fn from(c: $name) -> Connection {
                Connection {
                    scheduler: c.scheduler,
                    timeout: c.timeout,
                    auth_token_file: c.auth_token_file,
                }
            }
        }
    };
}

connection_args!(
    /// The client flags before the command.
    RootConnection,
    "Seconds to wait. For get, compute and retire: the whole command (default: 3600), \
     connecting to the scheduler at most 10 of them. For the other client commands: each \
     answer of the scheduler, connecting included (default: 10)"
);
connection_args!(
    /// The client flags of a command that waits for one answer.
    QuickConnection,
    "Seconds to wait for the scheduler's answer, connecting included (default: 10)"
);
connection_args!(
    /// The client flags of a command that waits for a computation (or a worker to leave).
    LongConnection,
    "Seconds the whole command may take (default: 3600); connecting to the scheduler waits \
     at most 10 of them"
);

/// How long a command waits: for one answer, or for a computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// One answer (default 10 s).
    Quick,
    /// A computation, or a worker leaving (default 3600 s; connecting at most 10 s).
    Long,
}

/// The default `--timeout` of quick commands, and the longest wait to connect.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `--timeout` of `get`, `compute` and `retire`.
const LONG_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(clap::Args, Debug)]
struct GraphArgs {
    /// The graph as JSON (see docs/graph-format.md); `-` reads standard input.
    graph: String,
    /// Keys to compute. One key prints its value, several print a JSON list. A key starting
    /// with `[` is a JSON array of keys, nested as deep as you like, and the result has its
    /// shape.
    #[arg(required = true)]
    keys: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute keys of a graph on a running cluster and print the result as JSON.
    Get {
        #[command(flatten)]
        connection: LongConnection,
        #[command(flatten)]
        graph: GraphArgs,
        /// Leave the results on the workers, for later graphs to use (`zask keys` lists
        /// them, `zask release` lets them go).
        #[arg(long, env = "ZASK_KEEP_RESULTS")]
        keep_results: bool,
        /// Show progress on stderr (done / total, failed, rate, time left): a bar when stderr
        /// is a terminal (shown there even without this flag), a line a second otherwise.
        #[arg(long, env = "ZASK_PROGRESS")]
        progress: bool,
    },
    /// List the registered workers (JSON: one object per line).
    Workers {
        #[command(flatten)]
        connection: QuickConnection,
    },
    /// Ping the scheduler and print its counters.
    Status {
        #[command(flatten)]
        connection: QuickConnection,
    },
    /// List the computations in flight, every client's, with their progress: each get
    /// (id get-N), and the futures of each client holding some (id futures-N). JSON: one
    /// object per line.
    Computations {
        #[command(flatten)]
        connection: QuickConnection,
    },
    /// Cancel a computation in flight, by the id `zask computations` shows: a get fails with
    /// `cancelled` for its client; futures-N cancels all that client's futures.
    Cancel {
        #[command(flatten)]
        connection: QuickConnection,
        /// The computation's id (get-N or futures-N), as `zask computations` lists it.
        id: String,
    },
    /// List the keys held on the workers, with their sizes and holders (up to --limit, and
    /// how many are held in all). JSON: {"total": N, "keys": [{"key", "nbytes", "holders"}]}.
    Keys {
        #[command(flatten)]
        connection: QuickConnection,
        /// List at most this many keys (0: only count them). The scheduler lists at most
        /// 10,000 in one answer, whatever this asks.
        #[arg(long, env = "ZASK_KEYS_LIMIT", default_value_t = 100)]
        limit: u64,
    },
    /// Store, fetch, list and delete named graphs ("collections") on the scheduler.
    Collections {
        #[command(flatten)]
        connection: QuickConnection,
        #[command(subcommand)]
        command: CollectionsCommand,
    },
    /// Retire a worker gracefully: the data only it holds moves to other workers, then it
    /// leaves. Prints {"retired": ADDRESS} once it is gone.
    Retire {
        #[command(flatten)]
        connection: LongConnection,
        /// The worker's address, as `zask workers` lists it.
        address: String,
    },
    /// Let held keys go (scattered, or kept with --keep-results): they are released from
    /// the workers once nothing else needs them, and may then be defined anew. Prints
    /// {"released": [...], "unknown": [...]}.
    Release {
        #[command(flatten)]
        connection: QuickConnection,
        /// The keys to release.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Compute a stored collection and print its result as JSON.
    Compute {
        #[command(flatten)]
        connection: LongConnection,
        /// The collection's name.
        name: String,
    },
    /// Start a scheduler and workers in this process (127.0.0.1, ephemeral ports), compute
    /// keys of a graph, print the result as JSON, and stop.
    Local {
        /// Number of workers (at least 1).
        #[arg(long, env = "ZASK_LOCAL_WORKERS", default_value_t = 2)]
        workers: usize,
        /// Threads per worker (at least 1).
        #[arg(long, env = "ZASK_LOCAL_NTHREADS", default_value_t = 1)]
        nthreads: u32,
        #[command(flatten)]
        graph: GraphArgs,
    },
    /// Run a scheduler: the same program, flags and environment variables as zask-scheduler
    /// (`zask scheduler --help` lists them).
    #[command(disable_help_flag = true)]
    Scheduler {
        /// zask-scheduler's flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Run a worker with the standard library: the same program, flags and environment
    /// variables as zask-worker (`zask worker --help` lists them).
    #[command(disable_help_flag = true)]
    Worker {
        /// zask-worker's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Print a new random secret for a cluster (32 bytes from the operating system, in hex):
    /// `zask token > secret; chmod 600 secret`, then pass `--auth-token-file secret` to the
    /// scheduler, every worker and every client.
    Token,
    /// Run the benchmark workloads W1-W9 on a local cluster of separate processes.
    Bench(bench::BenchArgs),
    /// A worker process for `zask bench` (internal).
    #[command(hide = true)]
    BenchWorker(bench::BenchWorkerArgs),
}

#[derive(Subcommand, Debug)]
enum CollectionsCommand {
    /// Store GRAPH.json under NAME with its output keys (replacing any collection of that
    /// name; the output says whether one was replaced). The scheduler checks the graph fits
    /// the kind: a bag's keys are its partitions (see docs/collections.md).
    Set {
        #[command(flatten)]
        connection: QuickConnection,
        /// The name: 1 to 200 letters, digits and ._-/:@
        name: String,
        /// The graph as JSON; `-` reads standard input.
        graph: String,
        /// The output keys (as for `zask get`: a key starting with `[` is a JSON array).
        #[arg(long, env = "ZASK_COLLECTION_KEYS", required = true, num_args = 1..)]
        keys: Vec<String>,
        /// The collection's kind (what it is to clients that fetch it): `graph`, `bag` (its
        /// keys: the list of its partitions, each a list of items), `item` (one key), or a
        /// kind of your own.
        #[arg(long, env = "ZASK_COLLECTION_KIND", default_value = "graph")]
        kind: String,
    },
    /// Print the stored collection: {"kind", "graph", "keys", "meta"}.
    Get {
        #[command(flatten)]
        connection: QuickConnection,
        /// The collection's name.
        name: String,
    },
    /// List the stored collections (JSON: one object per line).
    List {
        #[command(flatten)]
        connection: QuickConnection,
    },
    /// Delete a stored collection.
    Delete {
        #[command(flatten)]
        connection: QuickConnection,
        /// The collection's name.
        name: String,
    },
}

/// Parses `args` (the program name first, as `std::env::args_os` gives them), runs the
/// command, prints its result (or error), and returns the process's exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(exit_status_with_args(args))
}

/// As [`main_with_args`], the exit status as a number (for callers that exit themselves,
/// such as the Python package's console script).
pub fn exit_status_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // `zask scheduler ...` and `zask worker ...` are the other programs, every argument theirs
    // (their own --help, logging and exit).
    match args.get(1).and_then(|a| a.to_str()) {
        Some("scheduler") => return run_scheduler(args[2..].to_vec()),
        Some("worker") => return run_worker(args[2..].to_vec()),
        _ => {}
    }
    // (The allocator tuned for `zask local`, `zask bench`'s workers, and a client receiving
    // large results.)
    zask_core::program::begin("zask", "warn", &[]);
    let parsed = Cli::command()
        .try_get_matches_from(&args)
        .and_then(|matches| {
            let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
            Ok((cli, matches))
        });
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if e.use_stderr() && json_asked(&args) => {
            let text = e.to_string();
            let message = text.trim().trim_start_matches("error: ");
            print_error(&CliError::usage(message), true);
            return 2;
        }
        Err(e) => e.exit(),
    };
    let json_errors = cli.output == Some(Format::Json);
    let format = cli.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    // The root's flags, or the environment's values where none was given there.
    let root: Connection = cli.connection.into();
    let command = matches.subcommand().map_or(&matches, |(_, m)| m);
    match run(cli.command, &root, command) {
        Ok(out) => {
            println!("{}", out.render(format));
            0
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            // The Ctrl-C handler is cancelling the computation; it exits the process.
            std::thread::sleep(Duration::from_secs(5));
            130
        }
        Err(e) => {
            print_error(&e, json_errors);
            e.status
        }
    }
}

/// Whether the command line or ZASK_OUTPUT asks for JSON (read by hand: for a command line
/// clap refused).
fn json_asked(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let on_line =
        args.windows(2).any(|w| w == ["--output", "json"]) || args.contains(&"--output=json");
    on_line || std::env::var("ZASK_OUTPUT").is_ok_and(|v| v == "json")
}

/// `zask scheduler ARGS`: zask-scheduler, named `zask scheduler` in its help and errors.
fn run_scheduler(args: Vec<OsString>) -> u8 {
    let argv = std::iter::once(OsString::from("zask scheduler")).chain(args);
    zask_scheduler::cli::main_with_args(argv);
    0
}

/// `zask worker ARGS`: zask-worker with the standard library, named `zask worker`.
fn run_worker(args: Vec<OsString>) -> u8 {
    let argv = std::iter::once(OsString::from("zask worker")).chain(args);
    zask_worker::cli::main_with_args(argv, zask_worker::Registry::with_stdlib());
    0
}

/// Why a command failed: a kind (the scheduler's error kind when it reported the error), a
/// message for people, and the exit status.
#[derive(Debug)]
struct CliError {
    kind: String,
    message: String,
    /// The key concerned, when the scheduler named one.
    key: Option<String>,
    status: u8,
}

impl CliError {
    fn new(kind: &str, message: impl Into<String>) -> CliError {
        CliError {
            kind: kind.to_string(),
            message: message.into(),
            key: None,
            status: 1,
        }
    }

    /// A command line that makes no sense (exit status 2, as clap's own errors).
    fn usage(message: impl Into<String>) -> CliError {
        CliError {
            status: 2,
            ..CliError::new("usage", message)
        }
    }

    /// Input that cannot be used: a graph file that cannot be read or parsed, bad keys.
    fn input(message: impl Into<String>) -> CliError {
        CliError::new("invalid_input", message)
    }
}

impl From<crate::client_error::Error> for CliError {
    fn from(e: crate::client_error::Error) -> CliError {
        use crate::client_error::Error as E;
        let kind = match &e {
            E::Scheduler(info) => info.kind.as_str(),
            E::Connect(..) => "connect",
            E::NoScheduler(..) => "no_scheduler",
            E::Timeout { .. } => "timeout",
            E::SchedulerUnreachable(_) => "scheduler_unreachable",
            E::SchedulerRestarted => "scheduler_restarted",
            E::TooLarge { .. } => "too_large",
            E::Protocol(_) => "protocol",
            E::Closed => "closed",
            E::Cancelled(_) => "cancelled",
            E::Invalid(_) => "invalid",
            E::AuthenticationFailed(_) => "authentication_failed",
            E::Security(_) => "security",
            E::Zmq(_) => "zmq",
            E::Thread(_) => "thread",
        };
        CliError {
            key: e.info().and_then(|i| i.key.clone()),
            ..CliError::new(kind, e.to_string())
        }
    }
}

/// Prints `e` on stderr: `zask: error: MESSAGE`, or with `json` a JSON object
/// `{"error": {"kind", "message"[, "key"]}}`.
fn print_error(e: &CliError, json: bool) {
    if json {
        let mut error = json!({"kind": e.kind, "message": e.message});
        if let Some(key) = &e.key {
            error["key"] = json!(key);
        }
        eprintln!("{}", json!({ "error": error }));
    } else {
        eprintln!("zask: error: {}", e.message);
    }
}

/// Runs `command`, whose matches are `matches`, with the client flags of `root` (given before
/// the command, or from the environment) where the command's own are not given.
fn run(command: Command, root: &Connection, matches: &ArgMatches) -> Result<Out, CliError> {
    let with = |c: Connection| c.given_in(matches).or(root);
    match command {
        Command::Get {
            connection,
            graph,
            keep_results,
            progress,
        } => {
            let (graph, keys) = read_graph(&graph)?;
            let client = connect(&with(connection.into()), Wait::Long)?;
            cancel_on_interrupt(&client);
            let value = if progress || std::io::stderr().is_terminal() {
                get_showing_progress(&client, &graph, keys, keep_results)
            } else {
                client.get_with(&graph, keys, keep_results)
            };
            Ok(Out::Text(value?.to_json().to_string()))
        }
        Command::Workers { connection } => {
            let workers = connect(&with(connection.into()), Wait::Quick)?.workers()?;
            Ok(workers_out(&workers))
        }
        Command::Status { connection } => {
            let s = connect(&with(connection.into()), Wait::Quick)?.status()?;
            Ok(Out::Object(vec![
                ("scheduler_id", json!(s.scheduler_id)),
                ("workers", json!(s.workers)),
                ("tasks", json!(s.tasks)),
                ("graphs", json!(s.graphs)),
                ("keys", json!(s.keys)),
            ]))
        }
        Command::Computations { connection } => {
            let list = connect(&with(connection.into()), Wait::Quick)?.computations()?;
            Ok(computations_out(&list))
        }
        Command::Cancel { connection, id } => {
            connect(&with(connection.into()), Wait::Quick)?.cancel_computation(&id)?;
            Ok(Out::Object(vec![("cancelled", json!(id))]))
        }
        Command::Keys { connection, limit } => {
            let (total, keys) = connect(&with(connection.into()), Wait::Quick)?.held_keys(limit)?;
            Ok(keys_out(total, keys))
        }
        Command::Collections {
            connection,
            command,
        } => {
            let outer = with(connection.into());
            let sub = matches.subcommand().map_or(matches, |(_, m)| m);
            collections(command, &outer, sub)
        }
        Command::Retire {
            connection,
            address,
        } => {
            connect(&with(connection.into()), Wait::Long)?.retire_worker(&address)?;
            Ok(Out::Object(vec![("retired", json!(address))]))
        }
        Command::Release { connection, keys } => {
            let unknown = connect(&with(connection.into()), Wait::Quick)?.release(&keys)?;
            let released: Vec<&String> = keys.iter().filter(|k| !unknown.contains(k)).collect();
            Ok(Out::Object(vec![
                ("released", json!(released)),
                ("unknown", json!(unknown)),
            ]))
        }
        Command::Compute { connection, name } => {
            let client = connect(&with(connection.into()), Wait::Long)?;
            cancel_on_interrupt(&client);
            let value = client.compute_collection(&name)?;
            Ok(Out::Text(value.to_json().to_string()))
        }
        Command::Local {
            workers,
            nthreads,
            graph,
        } => {
            let (graph, keys) = read_graph(&graph)?;
            if workers == 0 || nthreads == 0 {
                return Err(CliError::usage(format!(
                    "zask local needs at least one worker of at least one thread (got \
                     --workers {workers} --nthreads {nthreads})"
                )));
            }
            let cluster = LocalCluster::start(workers, nthreads).map_err(|e| {
                CliError::new(
                    "local_cluster",
                    format!("cannot start the local cluster: {e}"),
                )
            })?;
            let result = cluster
                .client()
                .and_then(|c| c.get(&graph, keys))
                .map_err(CliError::from);
            cluster.close();
            Ok(Out::Text(result?.to_json().to_string()))
        }
        Command::Scheduler { args } => Err(CliError::usage(format!(
            "zask scheduler takes only the scheduler's own flags, after it (zask scheduler \
             --help lists them); got zask's flags before it (scheduler flags: {args:?})"
        ))),
        Command::Worker { args } => Err(CliError::usage(format!(
            "zask worker takes only the worker's own arguments, after it (zask worker --help \
             lists them); got zask's flags before it (worker arguments: {args:?})"
        ))),
        Command::Token => Secret::generate_token()
            .map(Out::Text)
            .map_err(|e| CliError::new("token", format!("cannot make a secret: {e}"))),
        Command::Bench(args) => bench::run(args)
            .map(Out::Text)
            .map_err(|e| CliError::new("bench", e)),
        Command::BenchWorker(args) => bench::run_worker(args)
            .map(Out::Text)
            .map_err(|e| CliError::new("bench", e)),
    }
}

fn workers_out(workers: &[crate::protocol::WorkerSummary]) -> Out {
    let lines = workers
        .iter()
        .map(|w| {
            json!({
                "address": w.address, "pid": w.pid, "nthreads": w.nthreads,
                "keys": w.keys, "nbytes": w.nbytes, "processing": w.processing,
                "last_seen_ms": w.last_seen_ms, "functions": w.functions,
                "worker_id": w.worker_id,
            })
        })
        .collect();
    let rows = workers
        .iter()
        .map(|w| {
            vec![
                w.address.clone(),
                w.pid.to_string(),
                w.nthreads.to_string(),
                w.processing.to_string(),
                w.keys.to_string(),
                output::bytes(w.nbytes),
                format!("{} ago", output::millis(w.last_seen_ms)),
                w.functions.len().to_string(),
            ]
        })
        .collect();
    let table = Table {
        header: vec![
            "ADDRESS",
            "PID",
            "THREADS",
            "PROCESSING",
            "KEYS",
            "BYTES",
            "LAST SEEN",
            "FUNCTIONS",
        ],
        numeric: vec![false, true, true, true, true, true, true, true],
        rows,
        empty: "no workers registered",
        note: None,
    };
    Out::Rows(lines, table)
}

fn computations_out(list: &[crate::protocol::ComputationSummary]) -> Out {
    let lines = list
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "kind": c.kind, "client": c.client, "age_ms": c.age_ms,
                "total": c.total, "done": c.done, "failed": c.failed, "waiting": c.waiting,
            })
        })
        .collect();
    let rows = list
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.kind.clone(),
                c.client.clone(),
                output::millis(c.age_ms),
                output::bar(c.done + c.failed, c.total),
                c.done.to_string(),
                c.failed.to_string(),
                c.waiting.to_string(),
                c.total.to_string(),
            ]
        })
        .collect();
    let table = Table {
        header: vec![
            "ID", "KIND", "CLIENT", "AGE", "PROGRESS", "DONE", "FAILED", "WAITING", "TOTAL",
        ],
        numeric: vec![false, false, false, true, false, true, true, true, true],
        rows,
        empty: "no computations in flight",
        note: None,
    };
    Out::Rows(lines, table)
}

fn keys_out(total: u64, mut keys: Vec<crate::protocol::HeldKey>) -> Out {
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    let json = json!({
        "total": total,
        "keys": keys
            .iter()
            .map(|k| json!({"key": k.key, "nbytes": k.nbytes, "holders": k.holders}))
            .collect::<Vec<_>>(),
    });
    let shown = keys.len() as u64;
    // The scheduler lists at most MAX_HELD_KEYS_LISTED keys, whatever --limit asks.
    let most = crate::protocol::MAX_HELD_KEYS_LISTED;
    let note = (total > shown).then(|| {
        if total <= most {
            format!("{shown} of {total} held keys listed; --limit {total} lists them all")
        } else {
            format!(
                "{shown} of {total} held keys listed (--limit lists at most {} of them)",
                thousands(most)
            )
        }
    });
    let rows = keys
        .iter()
        .map(|k| vec![k.key.clone(), output::bytes(k.nbytes), k.holders.join(", ")])
        .collect();
    let table = Table {
        header: vec!["KEY", "BYTES", "HOLDERS"],
        numeric: vec![false, true, false],
        rows,
        empty: if total == 0 {
            "no keys held"
        } else {
            "(none listed)"
        },
        note,
    };
    Out::Document(json, table)
}

/// `n` with its thousands separated by commas: 10,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Set when Ctrl-C (or SIGTERM) interrupted a computation: the handler cancels it and exits.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// On Ctrl-C or SIGTERM, the computations of `client` are cancelled on the scheduler (the
/// client says goodbye, which cancels them and stops their tasks on the workers) before the
/// process exits with status 130.
fn cancel_on_interrupt(client: &Client) {
    let client = client.clone();
    let installed = ctrlc::set_handler(move || {
        INTERRUPTED.store(true, Ordering::SeqCst);
        client.disconnect();
        eprintln!("zask: interrupted; the computation was cancelled on the scheduler");
        std::process::exit(130);
    });
    if let Err(e) = installed {
        log::warn!("cannot catch Ctrl-C (an interrupted computation runs on): {e}");
    }
}

/// A `get` with its progress on stderr: a bar on a terminal, a line a second otherwise.
fn get_showing_progress(
    client: &Client,
    graph: &Graph,
    keys: Keys,
    keep_results: bool,
) -> Result<Value, crate::client_error::Error> {
    let (tx, rx) = std::sync::mpsc::channel::<GetProgress>();
    let terminal = std::io::stderr().is_terminal();
    let shower = std::thread::spawn(move || {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tasks, {msg}{per_sec} [{elapsed_precise}, ETA {eta}]",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        let mut last_line: Option<std::time::Instant> = None;
        for p in rx {
            bar.set_length(p.total);
            bar.set_position(p.done.min(p.total));
            if p.failed > 0 {
                bar.set_message(format!("{} failed, ", p.failed));
            }
            if !terminal && last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                eprintln!(
                    "progress: {}/{} tasks done, {} failed",
                    p.done.min(p.total),
                    p.total,
                    p.failed
                );
                last_line = Some(std::time::Instant::now());
            }
        }
        bar.finish_and_clear();
    });
    let result = client.get_with_progress(graph, keys, keep_results, tx);
    let _ = shower.join();
    result
}

/// Runs a `collections` subcommand, whose matches are `matches`, with the client flags of
/// `outer` (given before it, or from the environment) where its own are not given.
fn collections(
    command: CollectionsCommand,
    outer: &Connection,
    matches: &ArgMatches,
) -> Result<Out, CliError> {
    let client = |c: QuickConnection| {
        connect(
            &Connection::from(c).given_in(matches).or(outer),
            Wait::Quick,
        )
    };
    match command {
        CollectionsCommand::Set {
            connection,
            name,
            graph,
            keys,
            kind,
        } => {
            let (graph, keys) = read_graph(&GraphArgs { graph, keys })?;
            let collection = crate::Collection {
                kind,
                graph,
                keys,
                meta: Value::Map(Vec::new()),
            };
            let replaced = client(connection)?.set_collection(&name, &collection)?;
            Ok(Out::Object(vec![
                ("name", json!(name)),
                ("replaced", json!(replaced)),
            ]))
        }
        CollectionsCommand::Get { connection, name } => {
            let c = client(connection)?.get_collection(&name)?;
            let json = c.to_json();
            let field = |f: &str| json.get(f).cloned().unwrap_or(serde_json::Value::Null);
            Ok(Out::Object(vec![
                ("kind", field("kind")),
                ("keys", field("keys")),
                ("meta", field("meta")),
                ("graph", field("graph")),
            ]))
        }
        CollectionsCommand::List { connection } => {
            let list = client(connection)?.list_collections()?;
            let lines = list
                .iter()
                .map(|c| json!({"name": c.name, "kind": c.kind, "tasks": c.tasks, "nbytes": c.nbytes}))
                .collect();
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.kind.clone(),
                        c.tasks.to_string(),
                        output::bytes(c.nbytes),
                    ]
                })
                .collect();
            let table = Table {
                header: vec!["NAME", "KIND", "TASKS", "BYTES"],
                numeric: vec![false, false, true, true],
                rows,
                empty: "no collections stored",
                note: None,
            };
            Ok(Out::Rows(lines, table))
        }
        CollectionsCommand::Delete { connection, name } => {
            client(connection)?.delete_collection(&name)?;
            Ok(Out::Object(vec![("deleted", json!(name))]))
        }
    }
}

/// Connects to the scheduler `c` names, waiting as `wait` says unless `--timeout` is given:
/// a quick command waits for each answer 10 s (or --timeout), a long one 3600 s (or
/// --timeout) for the whole computation, connecting in at most 10 s of them.
fn connect(c: &Connection, wait: Wait) -> Result<Client, CliError> {
    let Some(scheduler) = c.scheduler.as_deref() else {
        return Err(CliError::usage(
            "no scheduler to talk to: give its address_to_clients (which zask-scheduler \
             prints when it starts) with -s/--scheduler tcp://HOST:PORT, or set ZASK_SCHEDULER",
        ));
    };
    let given = match c.timeout {
        None => None,
        Some(t) => Some(
            Duration::try_from_secs_f64(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "--timeout takes a positive number of seconds, got {t}"
                    ))
                })?,
        ),
    };
    let (timeout, get_timeout) = match wait {
        Wait::Quick => {
            let t = given.unwrap_or(QUICK_TIMEOUT);
            (t, t)
        }
        Wait::Long => {
            let t = given.unwrap_or(LONG_TIMEOUT);
            (t.min(QUICK_TIMEOUT), t)
        }
    };
    let secret = Secret::from_cli(c.auth_token_file.as_deref())
        .map_err(|e| CliError::new("auth_token", e.to_string()))?;
    let options = ClientOptions {
        get_timeout,
        timeout,
        secret,
        ..ClientOptions::default()
    };
    Ok(Client::connect_with(scheduler, options)?)
}

fn read_graph(args: &GraphArgs) -> Result<(Graph, Keys), CliError> {
    let text = if args.graph == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            CliError::input(format!("cannot read the graph from standard input: {e}"))
        })?;
        s
    } else {
        std::fs::read_to_string(&args.graph)
            .map_err(|e| CliError::input(format!("cannot read graph file {:?}: {e}", args.graph)))?
    };
    let graph =
        Graph::from_json_str(&text).map_err(|e| CliError::input(format!("invalid graph: {e}")))?;
    let mut parts = Vec::with_capacity(args.keys.len());
    for k in &args.keys {
        if k.starts_with('[') {
            let json: serde_json::Value = serde_json::from_str(k).map_err(|e| {
                CliError::input(format!("key argument {k:?} is not a JSON array: {e}"))
            })?;
            parts.push(Keys::from_value(&Value::from_json(&json)).map_err(CliError::input)?);
        } else {
            parts.push(Keys::One(k.clone()));
        }
    }
    let keys = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Keys::Many(parts)
    };
    Ok((graph, keys))
}
