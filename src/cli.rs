//! The `zask` command line (clients, `zask local`, `zask bench`): the binary's `main` and the
//! Python package's console script call [`main_with_args`].

use crate::bench;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::security::Secret;
use crate::{Client, ClientOptions, GetProgress, Graph, Keys, LocalCluster, Value};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// zask: a distributed task scheduler.
///
/// Client commands talk to a running zask-scheduler (its address_to_clients, from --scheduler
/// or ZASK_SCHEDULER). `zask local` starts a scheduler and workers in this process instead.
/// Results print to stdout as JSON; errors print to stderr and exit with status 1.
/// RUST_LOG=debug shows what the client and, under `zask local`, the cluster do.
#[derive(Parser, Debug)]
#[command(name = "zask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Connection {
    /// The scheduler's address_to_clients, e.g. tcp://10.0.0.5:8787.
    #[arg(long, env = "ZASK_SCHEDULER")]
    scheduler: String,
    /// Seconds to wait for an answer (for `get`: for the whole computation).
    #[arg(long, env = "ZASK_TIMEOUT", default_value_t = 3600.0)]
    timeout: f64,
    /// File holding the cluster's shared secret, the scheduler's. Or set ZASK_AUTH_TOKEN to
    /// the secret itself. (See docs/security.md.)
    #[arg(long, env = "ZASK_AUTH_TOKEN_FILE")]
    auth_token_file: Option<std::path::PathBuf>,
}

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
        connection: Connection,
        #[command(flatten)]
        graph: GraphArgs,
        /// Leave the results on the workers, for later graphs to use.
        #[arg(long)]
        keep_results: bool,
        /// Show progress on stderr (done / total, failed, rate, time left): a bar when stderr
        /// is a terminal (shown there even without this flag), a line a second otherwise.
        #[arg(long, env = "ZASK_PROGRESS")]
        progress: bool,
    },
    /// List the registered workers (JSON, one object per worker).
    Workers {
        #[command(flatten)]
        connection: Connection,
    },
    /// Ping the scheduler and print its counters as JSON.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// Store, fetch, list and delete named graphs ("collections") on the scheduler.
    Collections {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: CollectionsCommand,
    },
    /// Retire a worker gracefully: the data only it holds moves to other workers, then it
    /// leaves. Prints {"retired": ADDRESS} once it is gone.
    Retire {
        #[command(flatten)]
        connection: Connection,
        /// The worker's address, as `zask workers` lists it.
        address: String,
    },
    /// Let held keys go (scattered, or kept with --keep-results): they are released from
    /// the workers once nothing else needs them, and may then be defined anew. Prints
    /// {"released": [...], "unknown": [...]}.
    Release {
        #[command(flatten)]
        connection: Connection,
        /// The keys to release.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Compute a stored collection and print its result as JSON.
    Compute {
        #[command(flatten)]
        connection: Connection,
        /// The collection's name.
        name: String,
    },
    /// Start a scheduler and workers in this process (127.0.0.1, ephemeral ports), compute
    /// keys of a graph, print the result as JSON, and stop.
    Local {
        /// Number of workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Threads per worker.
        #[arg(long, default_value_t = 1)]
        nthreads: u32,
        #[command(flatten)]
        graph: GraphArgs,
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
    /// name; the output says whether one was replaced).
    Set {
        /// The name: 1 to 200 letters, digits and ._-/:@
        name: String,
        /// The graph as JSON; `-` reads standard input.
        graph: String,
        /// The output keys (as for `zask get`: a key starting with `[` is a JSON array).
        #[arg(long, required = true, num_args = 1..)]
        keys: Vec<String>,
        /// The collection's kind (what it is to clients that fetch it).
        #[arg(long, default_value = "graph")]
        kind: String,
    },
    /// Print the stored collection as JSON: {"kind", "graph", "keys", "meta"}.
    Get { name: String },
    /// List the stored collections (one JSON object per line).
    List,
    /// Delete a stored collection.
    Delete { name: String },
}

/// Parses `args` (the program name first, as `std::env::args_os` gives them), runs the
/// command, prints its result (or error), and returns the process's exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    ExitCode::from(exit_status_with_args(args))
}

/// As [`main_with_args`], the exit status as a number (for callers that exit themselves,
/// such as the Python package's console script).
pub fn exit_status_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    match run(Cli::parse_from(args).command) {
        Ok(output) => {
            println!("{output}");
            0
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            // The Ctrl-C handler is cancelling the computation; it exits the process.
            std::thread::sleep(Duration::from_secs(5));
            130
        }
        Err(message) => {
            eprintln!("zask: error: {message}");
            1
        }
    }
}

fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Get {
            connection,
            graph,
            keep_results,
            progress,
        } => {
            let (graph, keys) = read_graph(&graph)?;
            let client = connect(&connection)?;
            cancel_on_interrupt(&client);
            let value = if progress || std::io::stderr().is_terminal() {
                get_showing_progress(&client, &graph, keys, keep_results)
            } else {
                client.get_with(&graph, keys, keep_results)
            };
            Ok(value.map_err(|e| e.to_string())?.to_json().to_string())
        }
        Command::Workers { connection } => {
            let workers = connect(&connection)?.workers().map_err(|e| e.to_string())?;
            let lines: Vec<String> = workers
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "address": w.address, "pid": w.pid, "nthreads": w.nthreads,
                        "keys": w.keys, "nbytes": w.nbytes, "processing": w.processing,
                        "last_seen_ms": w.last_seen_ms, "functions": w.functions,
                        "worker_id": w.worker_id,
                    })
                    .to_string()
                })
                .collect();
            Ok(lines.join("\n"))
        }
        Command::Status { connection } => {
            let s = connect(&connection)?.status().map_err(|e| e.to_string())?;
            Ok(serde_json::json!({
                "scheduler_id": s.scheduler_id, "workers": s.workers, "tasks": s.tasks,
                "graphs": s.graphs, "keys": s.keys,
            })
            .to_string())
        }
        Command::Collections {
            connection,
            command,
        } => collections(&connect(&connection)?, command),
        Command::Retire {
            connection,
            address,
        } => {
            connect(&connection)?
                .retire_worker(&address)
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({ "retired": address }).to_string())
        }
        Command::Release { connection, keys } => {
            let unknown = connect(&connection)?
                .release(&keys)
                .map_err(|e| e.to_string())?;
            let released: Vec<&String> = keys.iter().filter(|k| !unknown.contains(k)).collect();
            Ok(serde_json::json!({ "released": released, "unknown": unknown }).to_string())
        }
        Command::Compute { connection, name } => {
            let client = connect(&connection)?;
            cancel_on_interrupt(&client);
            client
                .compute_collection(&name)
                .map(|v| v.to_json().to_string())
                .map_err(|e| e.to_string())
        }
        Command::Local {
            workers,
            nthreads,
            graph,
        } => {
            let (graph, keys) = read_graph(&graph)?;
            if workers == 0 || nthreads == 0 {
                return Err(format!(
                    "zask local needs at least one worker of at least one thread (got \
                     --workers {workers} --nthreads {nthreads})"
                ));
            }
            let cluster = LocalCluster::start(workers, nthreads)
                .map_err(|e| format!("cannot start the local cluster: {e}"))?;
            let result = cluster
                .client()
                .map_err(|e| e.to_string())
                .and_then(|c| c.get(&graph, keys).map_err(|e| e.to_string()));
            cluster.close();
            Ok(result?.to_json().to_string())
        }
        Command::Token => {
            Secret::generate_token().map_err(|e| format!("cannot make a secret: {e}"))
        }
        Command::Bench(args) => bench::run(args),
        Command::BenchWorker(args) => bench::run_worker(args),
    }
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

fn collections(client: &Client, command: CollectionsCommand) -> Result<String, String> {
    let err = |e: crate::client_error::Error| e.to_string();
    match command {
        CollectionsCommand::Set {
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
            let replaced = client.set_collection(&name, &collection).map_err(err)?;
            Ok(serde_json::json!({"name": name, "replaced": replaced}).to_string())
        }
        CollectionsCommand::Get { name } => Ok(client
            .get_collection(&name)
            .map_err(err)?
            .to_json()
            .to_string()),
        CollectionsCommand::List => {
            let lines: Vec<String> = client
                .list_collections()
                .map_err(err)?
                .iter()
                .map(|c| {
                    serde_json::json!({"name": c.name, "kind": c.kind, "tasks": c.tasks,
                                       "nbytes": c.nbytes})
                    .to_string()
                })
                .collect();
            Ok(lines.join("\n"))
        }
        CollectionsCommand::Delete { name } => {
            client.delete_collection(&name).map_err(err)?;
            Ok(serde_json::json!({"deleted": name}).to_string())
        }
    }
}

fn connect(c: &Connection) -> Result<Client, String> {
    let timeout = Duration::try_from_secs_f64(c.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--timeout takes a positive number of seconds, got {}",
                c.timeout
            )
        })?;
    let secret = Secret::from_cli(c.auth_token_file.as_deref()).map_err(|e| e.to_string())?;
    let options = ClientOptions {
        get_timeout: timeout,
        timeout: timeout.min(Duration::from_secs(10)),
        secret,
        ..ClientOptions::default()
    };
    Client::connect_with(&c.scheduler, options).map_err(|e| e.to_string())
}

fn read_graph(args: &GraphArgs) -> Result<(Graph, Keys), String> {
    let text = if args.graph == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the graph from standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(&args.graph)
            .map_err(|e| format!("cannot read graph file {:?}: {e}", args.graph))?
    };
    let graph = Graph::from_json_str(&text).map_err(|e| format!("invalid graph: {e}"))?;
    let mut parts = Vec::with_capacity(args.keys.len());
    for k in &args.keys {
        if k.starts_with('[') {
            let json: serde_json::Value = serde_json::from_str(k)
                .map_err(|e| format!("key argument {k:?} is not a JSON array: {e}"))?;
            parts.push(Keys::from_value(&Value::from_json(&json))?);
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
