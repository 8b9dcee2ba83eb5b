//! Deterministic tests of [`SchedulerState`]: no sockets, no sleeps, explicit instants.
//!
//! Two styles: low-level helpers (here: `register`, `get`, `report`, ...) for tests that check
//! exactly what the scheduler sends after each event, and [`Sim`] (`sim.rs`), a simulated
//! cluster of real worker state machines (`zask_worker::WorkerState`) that run what they are
//! sent. One file per concept, named after the file of the rules it tests:
//!
//! | file | what it tests |
//! | --- | --- |
//! | `sim.rs` | (the simulated cluster itself) |
//! | `release.rs` | intermediates released, results before releases, `keep_results` |
//! | `submit.rs` | validation; reuse of held and shared keys |
//! | `lifecycle.rs` | failures and their spreading; fetch failures retried |
//! | `assign.rs` | locality, load, saturation, order |
//! | `queue.rs` | dependents queued behind their input; deeper queues for short tasks |
//! | `functions.rs` | tasks only on workers with their functions; stalled tasks |
//! | `workers.rs` | registration, heartbeats, goodbyes, restarts, deaths |
//! | `held.rs` | copies held at registration or fetched; adoption |
//! | `recompute.rs` | lost keys recomputed from lineage |
//! | `gather.rs` | results collected from another holder |
//! | `futures.rs` | submissions as futures, events, claims per client, drop, cancel, retries, priority |
//! | `clients.rs` | parked gets, clients gone or silent, closing, handshake, `gather`, `status` |
//! | `retire.rs` | retirement |
//! | `integrity.rs` | definition hashes, trusted reports, adoption, bounded tables and waits |
//! | `scale.rs` | long chains, wide graphs |
//! | `cluster.rs` | the end-to-end graphs through workers dying, restarting and joining |

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use zask_core::graph::{key, list, task};
use zask_core::protocol::Data;

mod assign;
mod clients;
mod cluster;
mod functions;
mod futures;
mod gather;
mod held;
mod integrity;
mod lifecycle;
mod queue;
mod recompute;
mod release;
mod retire;
mod scale;
mod sim;
mod stats;
mod submit;
mod workers;

use sim::Sim;

const FUNCS: &[&str] = &["add", "inc", "sum", "big"];

fn state() -> SchedulerState {
    SchedulerState::new("sched-test".to_string(), test_config())
}

/// The defaults, with the 10 s heartbeat timeout these tests were written against, and
/// without queueing dependents behind their inputs (which changes what is sent when; the tests
/// of that behaviour turn it on).
fn test_config() -> Config {
    Config {
        heartbeat_timeout: Duration::from_secs(10),
        queue_dependents: false,
        queue_budget: Duration::ZERO,
        ..Config::default()
    }
}

fn state_with(config: Config) -> SchedulerState {
    SchedulerState::new("sched-test".to_string(), config)
}

fn name(route: &[u8]) -> String {
    String::from_utf8_lossy(route).into_owned()
}

/// The address a test worker on `route` advertises.
fn addr(route: &[u8]) -> String {
    format!("tcp://{}:9000", name(route))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn register_msg(route: &[u8], functions: &[&str], nthreads: u32) -> FromWorker {
    FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: format!("id-{}", name(route)),
        address: addr(route),
        pid: 4242,
        nthreads,
        functions: functions.iter().map(|f| f.to_string()).collect(),
        has: Vec::new(),
    }
}

fn register(
    s: &mut SchedulerState,
    route: &[u8],
    functions: &[&str],
    nthreads: u32,
    now: Instant,
) -> Outbox {
    let mut out = Outbox::default();
    s.on_worker_message(
        route,
        register_msg(route, functions, nthreads),
        now,
        &mut out,
    );
    out
}

/// A worker message as a well-behaved worker sends it: finished tasks carry the definition
/// hash they were given with (a test that leaves it blank means "the current one").
fn with_hashes(s: &SchedulerState, mut msg: FromWorker) -> FromWorker {
    if let FromWorker::Report(ReportBody { done, .. }) = &mut msg {
        for d in done.iter_mut() {
            if d.hash == DefHash::default() {
                if let Some(h) = s.task_ids.get(d.key.as_str()).and_then(|&t| s.hash_of(t)) {
                    d.hash = h;
                }
            }
        }
    }
    msg
}

fn send(s: &mut SchedulerState, route: &[u8], msg: FromWorker, now: Instant) -> Outbox {
    let msg = with_hashes(s, msg);
    let mut out = Outbox::default();
    s.on_worker_message(route, msg, now, &mut out);
    s.on_flushed(&mut out);
    out
}

fn heartbeat(s: &mut SchedulerState, route: &[u8], now: Instant) -> Outbox {
    let msg = FromWorker::Heartbeat {
        worker_id: format!("id-{}", name(route)),
    };
    send(s, route, msg, now)
}

fn get(
    s: &mut SchedulerState,
    client: &[u8],
    request: u64,
    graph: &Graph,
    keys: impl Into<Keys>,
    keep_results: bool,
    now: Instant,
) -> Outbox {
    let mut out = Outbox::default();
    let request = GetRequest {
        request,
        graph: graph.clone(),
        hashes: Vec::new(),
        keys: keys.into(),
        keep_results,
        progress: false,
    };
    s.on_get(client, request, now, &mut out);
    s.on_flushed(&mut out);
    out
}

fn tick(s: &mut SchedulerState, now: Instant) -> Outbox {
    let mut out = Outbox::default();
    s.on_tick(now, &mut out);
    s.on_flushed(&mut out);
    out
}

/// A finished task, with its value (as when `send_value` was set).
fn done(key: &str, value: Value) -> TaskDone {
    TaskDone {
        key: key.to_string(),
        // (Filled in by `send` with the hash the scheduler gave the task.)
        hash: DefHash::default(),
        nbytes: value.nbytes(),
        duration_us: 10,
        data: Some(Data {
            value,
            frame: None,
            raw: false,
            extra_frames: 0,
        }),
    }
}

/// A finished task whose value stays on the worker.
fn done_held(key: &str, nbytes: u64) -> TaskDone {
    TaskDone {
        key: key.to_string(),
        hash: DefHash::default(),
        nbytes,
        duration_us: 10,
        data: None,
    }
}

fn report(s: &mut SchedulerState, route: &[u8], done: Vec<TaskDone>, now: Instant) -> Outbox {
    let msg = FromWorker::Report(ReportBody {
        done,
        failed: Vec::new(),
        acquired: Vec::new(),
    });
    send(s, route, msg, now)
}

fn failed(key: &str, function: &str, message: &str) -> TaskFailed {
    TaskFailed {
        key: key.to_string(),
        hash: None,
        kind: ErrorKind::TaskFailed,
        function: Some(function.to_string()),
        message: message.to_string(),
        missing: None,
    }
}

fn report_failed(s: &mut SchedulerState, route: &[u8], f: TaskFailed, now: Instant) -> Outbox {
    let msg = FromWorker::Report(ReportBody {
        done: Vec::new(),
        failed: vec![f],
        acquired: Vec::new(),
    });
    send(s, route, msg, now)
}

/// The tasks sent to `route` in `out`.
/// A compute's `who_has` as plain strings (to compare with literals).
fn listed(who_has: &[zask_core::protocol::Holders]) -> Vec<(String, Vec<String>)> {
    who_has
        .iter()
        .map(|(k, _, peers)| (k.to_string(), peers.iter().map(|p| p.to_string()).collect()))
        .collect()
}

/// The definition hash the scheduler has for `key` (what a worker holding it must claim).
fn hash_in(s: &SchedulerState, key: &str) -> DefHash {
    s.task_ids
        .get(key)
        .and_then(|&t| s.hash_of(t))
        .unwrap_or_else(|| panic!("the scheduler does not know {key}"))
}

/// A worker's claim to hold `key` (of `nbytes`), with the hash the scheduler has for it.
fn info(s: &SchedulerState, key: &str, nbytes: u64) -> KeyInfo {
    KeyInfo {
        key: key.to_string(),
        nbytes,
        hash: hash_in(s, key),
    }
}

fn computes<'a>(out: &'a Outbox, route: &[u8]) -> &'a [ComputeTask] {
    out.compute.get(route).map(Vec::as_slice).unwrap_or(&[])
}

/// The keys of the tasks sent to `route`, in the order sent.
fn compute_keys(out: &Outbox, route: &[u8]) -> Vec<String> {
    computes(out, route).iter().map(|t| t.key.clone()).collect()
}

/// Every key sent to any worker.
fn all_compute_keys(out: &Outbox) -> Vec<String> {
    let mut keys: Vec<String> = out
        .compute
        .values()
        .flatten()
        .map(|t| t.key.clone())
        .collect();
    keys.sort();
    keys
}

/// The keys released from `route`, sorted.
/// The keys of the tasks `out` cancels on `route`, sorted.
fn cancelled(out: &Outbox, route: &[u8]) -> Vec<String> {
    let mut keys: Vec<String> = out
        .cancel
        .get(route)
        .map(|ks| ks.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn released(out: &Outbox, route: &[u8]) -> Vec<String> {
    let mut keys = out.release.get(route).cloned().unwrap_or_default();
    keys.sort();
    keys
}

fn task_of<'a>(out: &'a Outbox, route: &[u8], key: &str) -> &'a ComputeTask {
    computes(out, route)
        .iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("{key} was not sent to {}: {out:?}", name(route)))
}

/// The values of the `Result` answering `request` of `client`, by key.
fn result_of(out: &Outbox, client: &[u8], request: u64) -> Option<BTreeMap<String, Value>> {
    results_in(&out.to_clients, client, request)
}

fn results_in(
    msgs: &[(Route, ToClient)],
    client: &[u8],
    request: u64,
) -> Option<BTreeMap<String, Value>> {
    msgs.iter().find_map(|(route, msg)| match msg {
        ToClient::Result { request: r, items } if route == client && *r == request => {
            let mut map = BTreeMap::new();
            for item in items {
                assert_eq!(item.data.frame, None, "values from the state are inline");
                let previous = map.insert(item.key.clone(), item.data.value.clone());
                assert!(previous.is_none(), "key {} answered twice", item.key);
            }
            Some(map)
        }
        _ => None,
    })
}

/// The error answering `request` of `client`.
fn error_of(out: &Outbox, client: &[u8], request: u64) -> Option<ErrorInfo> {
    errors_in(&out.to_clients, client, request)
}

fn errors_in(msgs: &[(Route, ToClient)], client: &[u8], request: u64) -> Option<ErrorInfo> {
    msgs.iter().find_map(|(route, msg)| match msg {
        ToClient::Error { request: r, error } if route == client && *r == request => {
            Some(error.clone())
        }
        _ => None,
    })
}

fn ints(pairs: &[(&str, i64)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Int(*v)))
        .collect()
}

/// `{x: add(1, 2), y: inc(x), z: add(y, x)}`, the original test suite's graph.
fn xyz() -> Graph {
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("z", task("add", (key("y"), key("x"))));
    g
}

/// `n` independent tasks `a0..a{n-1}` (`ai = inc(i)`).
fn independent(n: usize) -> Graph {
    let mut g = Graph::new();
    for i in 0..n {
        g.insert(format!("a{i}"), task("inc", (i as i64,)));
    }
    g
}

fn keys_of(names: &[&str]) -> Keys {
    Keys::Many(names.iter().map(|k| Keys::from(*k)).collect())
}

/// `a = add(1, 2)`, `b = inc(a)`, `c = add(b, 10)`: c is 14.
fn chain_abc() -> Graph {
    let mut g = Graph::new();
    g.insert("a", task("add", (1, 2)));
    g.insert("b", task("inc", (key("a"),)));
    g.insert("c", task("add", (key("b"), 10)));
    g
}

fn goodbye(s: &mut SchedulerState, route: &[u8], now: Instant) -> Outbox {
    let msg = FromWorker::Goodbye {
        worker_id: format!("id-{}", name(route)),
    };
    send(s, route, msg, now)
}

fn retiring(s: &mut SchedulerState, route: &[u8], now: Instant) -> Outbox {
    let msg = FromWorker::Retiring {
        worker_id: format!("id-{}", name(route)),
    };
    send(s, route, msg, now)
}

fn acquired(s: &mut SchedulerState, route: &[u8], key: &str, nbytes: u64, now: Instant) -> Outbox {
    let msg = FromWorker::Report(ReportBody {
        done: Vec::new(),
        failed: Vec::new(),
        acquired: vec![info(s, key, nbytes)],
    });
    send(s, route, msg, now)
}

/// The messages (other than compute/release/put_data) sent to `route`, in order.
fn msgs_to(out: &Outbox, route: &[u8]) -> Vec<ToWorker> {
    out.to_workers
        .iter()
        .filter(|(r, _)| r == route)
        .map(|(_, m)| m.clone())
        .collect()
}

fn addresses(s: &SchedulerState, now: Instant) -> Vec<String> {
    s.workers(now).into_iter().map(|w| w.address).collect()
}

/// The route of the (only) holder of `key` among `routes`.
fn holder_of<'a>(s: &SchedulerState, key: &str, routes: &[&'a [u8]]) -> &'a [u8] {
    let holders = s.who_has(key);
    assert_eq!(holders.len(), 1, "{key} has one holder: {holders:?}");
    routes
        .iter()
        .copied()
        .find(|r| addr(r) == holders[0])
        .unwrap_or_else(|| panic!("{key} is held by an unknown worker {holders:?}"))
}
