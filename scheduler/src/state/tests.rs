//! Deterministic tests of [`SchedulerState`]: no sockets, no sleeps, explicit instants.
//!
//! Two styles: low-level helpers (`register`, `get`, `report`, ...) for tests that check
//! exactly what the scheduler sends after each event, and [`Sim`], a tiny simulated cluster
//! whose workers evaluate whatever they are sent (`add`, `inc`, `sum`, ...), fetch inputs from
//! each other, answer `get_data` and obey `release`. The simulation is strict: a task sent
//! before its inputs are held where the scheduler says, or a key released while a task still
//! needs it, makes the test fail.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use zask_core::graph::{key, list, task};
use zask_core::protocol::Data;

// ----- low-level helpers ---------------------------------------------------------------------

pub(super) const FUNCS: &[&str] = &["add", "inc", "sum", "big"];

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

pub(super) fn register_msg(route: &[u8], functions: &[&str], nthreads: u32) -> FromWorker {
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

pub(super) fn register(
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
pub(super) fn with_hashes(s: &SchedulerState, mut msg: FromWorker) -> FromWorker {
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

pub(super) fn heartbeat(s: &mut SchedulerState, route: &[u8], now: Instant) -> Outbox {
    let msg = FromWorker::Heartbeat {
        worker_id: format!("id-{}", name(route)),
    };
    send(s, route, msg, now)
}

pub(super) fn get(
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
pub(super) fn done(key: &str, value: Value) -> TaskDone {
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

pub(super) fn report(
    s: &mut SchedulerState,
    route: &[u8],
    done: Vec<TaskDone>,
    now: Instant,
) -> Outbox {
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
        kind: "task_failed".into(),
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
pub(super) fn hash_in(s: &SchedulerState, key: &str) -> DefHash {
    s.task_ids
        .get(key)
        .and_then(|&t| s.hash_of(t))
        .unwrap_or_else(|| panic!("the scheduler does not know {key}"))
}

/// A worker's claim to hold `key` (of `nbytes`), with the hash the scheduler has for it.
pub(super) fn info(s: &SchedulerState, key: &str, nbytes: u64) -> KeyInfo {
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
pub(super) fn compute_keys(out: &Outbox, route: &[u8]) -> Vec<String> {
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

pub(super) fn ints(pairs: &[(&str, i64)]) -> BTreeMap<String, Value> {
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

// ----- a simulated cluster -------------------------------------------------------------------

/// Evaluates a node like a worker would, with the functions the tests use.
fn eval(node: &Node, lookup: &mut dyn FnMut(&str) -> Value) -> Value {
    match node {
        Node::Literal(v) => v.clone(),
        Node::Ref(k) => lookup(k),
        Node::List(items) => Value::List(items.iter().map(|n| eval(n, lookup)).collect()),
        Node::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, n)| (k.clone(), eval(n, lookup)))
                .collect(),
        ),
        Node::Task(t) => {
            let args: Vec<Value> = t.args.iter().map(|n| eval(n, lookup)).collect();
            apply(&t.func, &args)
        }
    }
}

fn int(v: &Value) -> i64 {
    v.as_int()
        .unwrap_or_else(|| panic!("expected an int, got {v:?}"))
}

fn apply(func: &str, args: &[Value]) -> Value {
    match func {
        "add" => Value::Int(args.iter().map(int).sum()),
        "inc" | "special" => Value::Int(int(&args[0]) + 1),
        "sum" => Value::Int(
            args[0]
                .as_list()
                .expect("sum takes a list")
                .iter()
                .map(int)
                .sum(),
        ),
        // A value of `n` bytes.
        "big" => Value::Bytes(vec![7; int(&args[0]) as usize].into()),
        other => panic!("the simulated worker has no function {other:?}"),
    }
}

/// A scheduler plus simulated workers that do whatever they are told.
pub(super) struct Sim {
    pub(super) s: SchedulerState,
    pub(super) now: Instant,
    /// The keys each live worker holds, by route.
    stores: BTreeMap<Route, HashMap<String, Value>>,
    /// Tasks sent and not yet run, per worker.
    pending: BTreeMap<Route, Vec<ComputeTask>>,
    /// `get_data` requests not yet answered.
    get_data: Vec<(Route, u64, Vec<String>)>,
    /// Everything sent to clients.
    pub(super) to_clients: Vec<(Route, ToClient)>,
    /// Every task sent, in order.
    pub(super) dispatched: Vec<(Route, String)>,
    /// Every key released, in order.
    released: Vec<(Route, String)>,
    /// Other messages to workers (welcome, ...).
    to_workers: Vec<(Route, ToWorker)>,
}

impl Sim {
    pub(super) fn new() -> Sim {
        Sim::with(test_config())
    }

    pub(super) fn with(config: Config) -> Sim {
        Sim {
            s: state_with(config),
            now: Instant::now(),
            stores: BTreeMap::new(),
            pending: BTreeMap::new(),
            get_data: Vec::new(),
            to_clients: Vec::new(),
            dispatched: Vec::new(),
            released: Vec::new(),
            to_workers: Vec::new(),
        }
    }

    pub(super) fn worker(&mut self, route: &[u8], functions: &[&str], nthreads: u32) {
        self.stores.insert(route.to_vec(), HashMap::new());
        let out = register(&mut self.s, route, functions, nthreads, self.now);
        self.absorb(out);
    }

    pub(super) fn get(
        &mut self,
        client: &[u8],
        request: u64,
        graph: &Graph,
        keys: impl Into<Keys>,
        keep: bool,
    ) {
        let out = get(&mut self.s, client, request, graph, keys, keep, self.now);
        self.absorb(out);
    }

    /// The worker on `route` dies silently: its data and queued tasks are gone.
    pub(super) fn kill(&mut self, route: &[u8]) {
        self.stores.remove(route);
        self.pending.remove(route);
        self.get_data.retain(|(r, _, _)| r != route);
    }

    fn route_of(&self, address: &str) -> Option<Route> {
        self.stores.keys().find(|r| addr(r) == address).cloned()
    }

    /// Takes in what the scheduler sent, checking each task can run where it was sent.
    pub(super) fn absorb(&mut self, mut out: Outbox) {
        for (route, keys) in out.release.drain() {
            for k in keys {
                if let Some(store) = self.stores.get_mut(&route) {
                    store.remove(&k);
                }
                self.released.push((route.clone(), k));
            }
        }
        let mut compute: Vec<(Route, Vec<ComputeTask>)> = out.compute.drain().collect();
        compute.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, tasks) in compute {
            for t in tasks {
                self.dispatched.push((route.clone(), t.key.clone()));
                if !self.stores.contains_key(&route) {
                    continue; // a dead worker: the message is lost
                }
                self.check_inputs(&route, &t);
                self.pending.entry(route.clone()).or_default().push(t);
            }
        }
        for (route, msg) in out.to_workers.drain(..) {
            match msg {
                ToWorker::GetData(GetDataBody { request, keys }) => {
                    self.get_data.push((route, request, keys))
                }
                other => self.to_workers.push((route, other)),
            }
        }
        self.to_clients.append(&mut out.to_clients);
    }

    /// Every input of `t` is on `route` or on a live worker the scheduler named for it.
    fn check_inputs(&self, route: &Route, t: &ComputeTask) {
        let node = (*t.node).clone();
        for dep in node.dependencies() {
            if self.stores[route].contains_key(&dep) {
                continue;
            }
            // Queued on the same worker ahead of it: the worker runs it first.
            let queued_here = self
                .pending
                .get(route)
                .is_some_and(|p| p.iter().any(|q| q.key == dep));
            if queued_here {
                continue;
            }
            let holders = t
                .who_has
                .iter()
                .find(|(k, _, _)| **k == *dep)
                .map(|(_, _, a)| a.clone())
                .unwrap_or_default();
            let found = holders.iter().any(|a| {
                self.route_of(a)
                    .is_some_and(|r| self.stores[&r].contains_key(&dep))
            });
            assert!(
                found,
                "{} was sent to {} but its input {dep} is not held there nor by any named \
                 holder ({holders:?})",
                t.key,
                name(route)
            );
        }
    }

    /// Answers pending `get_data`s, then runs the queued tasks of one worker and reports them.
    /// Returns false when there was nothing to do.
    fn step(&mut self) -> bool {
        // (Small states only: the scan would make the big simulations quadratic.)
        if self.s.task_count() <= 5_000 {
            assert_eq!(
                self.s.held_count(),
                self.s.held_by_scan(),
                "the held keys' counter"
            );
        }
        if !self.get_data.is_empty() {
            for (route, request, keys) in std::mem::take(&mut self.get_data) {
                let store = &self.stores[&route];
                let mut items = Vec::new();
                let mut missing = Vec::new();
                for k in keys {
                    match store.get(&k) {
                        Some(v) => items.push(KeyData::inline(k, v.clone())),
                        None => missing.push(k),
                    }
                }
                let msg = FromWorker::Data(DataBody {
                    request,
                    items,
                    missing,
                });
                let out = send(&mut self.s, &route, msg, self.now);
                self.absorb(out);
            }
            return true;
        }
        let Some(route) = self.pending.keys().next().cloned() else {
            return false;
        };
        let tasks = self.pending.remove(&route).unwrap_or_default();
        let mut done_list = Vec::new();
        let mut acquired = Vec::new();
        for t in tasks {
            let node = (*t.node).clone();
            // Fetch inputs from the holders named (as a worker would).
            for dep in node.dependencies() {
                if self.stores[&route].contains_key(&dep) {
                    continue;
                }
                let listed = t.who_has.iter().find(|(k, _, _)| **k == *dep);
                let value = listed
                    .iter()
                    .flat_map(|(_, _, a)| a.iter())
                    .filter_map(|a| self.route_of(a))
                    .find_map(|r| self.stores[&r].get(&dep).cloned())
                    .unwrap_or_else(|| {
                        panic!("{}: input {dep} vanished before the task ran", t.key)
                    });
                acquired.push(KeyInfo {
                    key: dep.clone(),
                    nbytes: value.nbytes(),
                    hash: listed.map(|(_, h, _)| *h).unwrap_or_default(),
                });
                self.stores.get_mut(&route).unwrap().insert(dep, value);
            }
            let store = &self.stores[&route];
            let value = eval(&node, &mut |k| store[k].clone());
            done_list.push(TaskDone {
                key: t.key.clone(),
                hash: t.hash,
                nbytes: value.nbytes(),
                duration_us: 10,
                data: t.send_value.then(|| Data {
                    value: value.clone(),
                    frame: None,
                    raw: false,
                }),
            });
            self.stores.get_mut(&route).unwrap().insert(t.key, value);
        }
        let msg = FromWorker::Report(ReportBody {
            done: done_list,
            failed: Vec::new(),
            acquired,
        });
        let out = send(&mut self.s, &route, msg, self.now);
        self.absorb(out);
        true
    }

    /// Runs until nothing is left to do.
    pub(super) fn run(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < 1_000_000, "the simulation does not settle");
        }
    }

    pub(super) fn result(&self, client: &[u8], request: u64) -> BTreeMap<String, Value> {
        results_in(&self.to_clients, client, request).unwrap_or_else(|| {
            panic!(
                "no result for {} #{request}; sent to clients: {:?}",
                name(client),
                self.to_clients
            )
        })
    }

    pub(super) fn error(&self, client: &[u8], request: u64) -> ErrorInfo {
        errors_in(&self.to_clients, client, request)
            .unwrap_or_else(|| panic!("no error for {} #{request}", name(client)))
    }

    /// How often `key` was sent to a worker.
    fn times_dispatched(&self, key: &str) -> usize {
        self.dispatched.iter().filter(|(_, k)| k == key).count()
    }

    /// Keys held by any simulated worker, sorted.
    pub(super) fn held_anywhere(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .stores
            .values()
            .flat_map(|s| s.keys().cloned())
            .collect();
        keys.sort();
        keys
    }

    fn was_released(&self, key: &str) -> bool {
        self.released.iter().any(|(_, k)| k == key)
    }

    /// Nothing is left in the scheduler nor on any worker.
    fn assert_clean(&self) {
        assert_eq!(self.s.graph_count(), 0, "computations left in flight");
        let held = self.held_anywhere();
        assert!(
            held.is_empty(),
            "{} keys left on workers, e.g. {:?}",
            held.len(),
            &held[..held.len().min(10)]
        );
        assert_eq!(self.s.held_count(), 0, "keys the scheduler thinks are held");
        assert_eq!(self.s.task_count(), 0, "tasks left in the scheduler");
    }
}

// ----- the original test suite's cases -------------------------------------------------------

#[test]
fn get_y_returns_four_and_culls_z() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.times_dispatched("x"), 1);
    assert_eq!(sim.times_dispatched("y"), 1);
    assert_eq!(sim.times_dispatched("z"), 0, "z is not needed for y");
}

#[test]
fn only_requested_values_are_sent_back() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"], "only x is ready");
    assert!(
        !task_of(&out, b"w1", "x").send_value,
        "x is an intermediate"
    );
    assert!(out.to_clients.is_empty());
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let y = task_of(&out, b"w1", "y");
    assert!(y.send_value, "y is requested");
    assert!(y.who_has.is_empty(), "x is already on w1: {:?}", y.who_has);
    assert_eq!(
        (*y.node).clone(),
        task("inc", (key("x"),)),
        "the node travels in wire form"
    );
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn nested_keys_get_each_key_once() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from(vec!["z"]), Keys::from("y")]);
    sim.get(b"c1", 7, &xyz(), keys.clone(), false);
    sim.run();
    let values: HashMap<String, Value> = sim.result(b"c1", 7).into_iter().collect();
    assert_eq!(values.len(), 2);
    // Shaping is the client's job; with these items it gives [[7], 4].
    assert_eq!(
        keys.shape(&values),
        Value::List(vec![Value::List(vec![Value::Int(7)]), Value::Int(4)])
    );
    for k in ["x", "y", "z"] {
        assert_eq!(sim.times_dispatched(k), 1, "{k} computed once");
    }
}

#[test]
fn repeated_keys_are_answered_once() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from("y"), Keys::from(vec!["y", "x"])]);
    sim.get(b"c1", 1, &xyz(), keys, false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("x", 3), ("y", 4)]));
}

#[test]
fn no_worker_holds_intermediates_after_get_y() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert!(sim.was_released("x"), "x is an intermediate");
    assert!(sim.was_released("y"), "y is not kept");
    sim.assert_clean();
}

#[test]
fn no_worker_holds_intermediates_after_nested_get() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from(vec!["z"]), Keys::from("y")]);
    sim.get(b"c1", 1, &xyz(), keys, false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4), ("z", 7)]));
    for k in ["x", "y", "z"] {
        assert!(sim.was_released(k), "{k} released");
    }
    sim.assert_clean();
}

#[test]
fn outputs_without_inputs_are_released() {
    // A computation whose outputs have no dependencies leaves nothing behind.
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(
        b"c1",
        1,
        &independent(3),
        keys_of(&["a0", "a1", "a2"]),
        false,
    );
    sim.run();
    assert_eq!(
        sim.result(b"c1", 1),
        ints(&[("a0", 1), ("a1", 2), ("a2", 3)])
    );
    sim.assert_clean();
}

#[test]
fn intermediate_is_released_once_its_dependents_are_done() {
    // x feeds a and b; the output is c = add(a, b) computed from them. x goes when a and b
    // are both done, before c runs.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    g.insert("a", task("inc", (key("x"),)));
    g.insert("b", task("inc", (key("x"),)));
    g.insert("c", task("add", (key("a"), key("b"))));
    get(&mut s, b"c1", 1, &g, "c", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(all_compute_keys(&out), vec!["a", "b"]);
    let out = report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    assert!(released(&out, b"w1").is_empty(), "b still needs x");
    let out = report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c"]);
    assert_eq!(s.who_has("x"), Vec::<String>::new());
}

#[test]
fn result_leaves_before_the_releases_it_frees() {
    // The loop flushes the turn's messages, then calls on_flushed: the answer is not held up
    // by forgetting the graph behind it.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    g.insert("b", task("inc", (2,)));
    g.insert("total", task("add", (key("a"), key("b"))));
    get(&mut s, b"c1", 1, &g, "total", false, t0);
    report(
        &mut s,
        b"w1",
        vec![done_held("a", 8), done_held("b", 8)],
        t0,
    );
    let mut out = Outbox::default();
    let msg = FromWorker::Report(ReportBody {
        done: vec![done("total", Value::Int(5))],
        failed: Vec::new(),
        acquired: Vec::new(),
    });
    let msg = with_hashes(&s, msg);
    s.on_worker_message(b"w1", msg, t0, &mut out);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("total", 5)])));
    let mut early = released(&out, b"w1");
    early.retain(|k| k != "total");
    assert!(
        early.is_empty(),
        "inputs released before the flush: {early:?}"
    );
    let mut out = Outbox::default();
    s.on_flushed(&mut out);
    let mut late = released(&out, b"w1");
    late.sort();
    assert_eq!(late, vec!["a", "b"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn a_key_freed_in_a_turn_serves_a_get_of_the_same_turn() {
    // Between the turn that freed `a` and on_flushed, a new computation wants it: it is
    // reused, not recomputed, and not released.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    g.insert("b", task("inc", (key("a"),)));
    get(&mut s, b"c1", 1, &g, "b", false, t0);
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    let mut out = Outbox::default();
    let msg = FromWorker::Report(ReportBody {
        done: vec![done("b", Value::Int(3))],
        failed: Vec::new(),
        acquired: Vec::new(),
    });
    let msg = with_hashes(&s, msg);
    s.on_worker_message(b"w1", msg, t0, &mut out);
    let mut g2 = Graph::new();
    g2.insert("a", task("inc", (1,)));
    g2.insert("c", task("inc", (key("a"),)));
    let request = GetRequest {
        request: 2,
        graph: g2,
        hashes: Vec::new(),
        keys: "c".into(),
        keep_results: false,
    };
    s.on_get(b"c1", request, t0, &mut out);
    s.on_flushed(&mut out);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["c"],
        "a is reused, not recomputed"
    );
    assert!(!released(&out, b"w1").contains(&"a".to_string()));
    let out = report(&mut s, b"w1", vec![done("c", Value::Int(3))], t0);
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("c", 3)])));
    let mut released = released(&out, b"w1");
    released.sort();
    assert_eq!(released, vec!["a", "c"]);
    assert_eq!(s.task_count(), 0);
}

// ----- keep_results and reuse of held keys ---------------------------------------------------

#[test]
fn keep_results_leaves_outputs_on_workers() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.s.who_has("y"), vec![addr(b"w1")]);
    assert!(sim.stores[b"w1".as_slice()].contains_key("y"));
    assert!(!sim.was_released("y"));
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn keep_results_still_releases_intermediates() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    assert!(sim.was_released("x"));
    assert_eq!(sim.held_anywhere(), vec!["y"]);
    assert_eq!(sim.s.task_count(), 1);
    assert_eq!(sim.s.held_count(), 1);
}

#[test]
fn held_key_is_reused_not_recomputed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", true, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
    assert_eq!(s.who_has("y"), vec![addr(b"w1")]);

    // A later computation refers to y (here without y's node: the held key is enough) and
    // asks for it too.
    let mut g = Graph::new();
    g.insert("w", task("add", (key("y"), 10)));
    let out = get(&mut s, b"c2", 2, &g, keys_of(&["w", "y"]), false, t0);
    assert_eq!(
        all_compute_keys(&out),
        vec!["w"],
        "y is held: not recomputed"
    );
    assert!(task_of(&out, b"w1", "w").who_has.is_empty(), "y is on w1");
    let requests: Vec<(u64, Vec<String>)> = out
        .to_workers
        .iter()
        .filter_map(|(route, msg)| match msg {
            ToWorker::GetData(GetDataBody { request, keys }) if route == b"w1" => {
                Some((*request, keys.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "one get_data to y's holder: {out:?}");
    assert_eq!(requests[0].1, vec!["y"]);
    let data = FromWorker::Data(DataBody {
        request: requests[0].0,
        items: vec![KeyData::inline("y".into(), Value::Int(4))],
        missing: Vec::new(),
    });
    let out = send(&mut s, b"w1", data, t0);
    assert!(out.to_clients.is_empty(), "w is not done yet");
    let out = report(&mut s, b"w1", vec![done("w", Value::Int(14))], t0);
    assert_eq!(
        result_of(&out, b"c2", 2),
        Some(ints(&[("w", 14), ("y", 4)]))
    );
    assert_eq!(
        released(&out, b"w1"),
        vec!["w"],
        "w is not kept; y stays kept"
    );
    assert_eq!(s.who_has("y"), vec![addr(b"w1")]);
}

#[test]
fn held_key_in_a_resubmitted_graph_is_not_recomputed() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    let before = sim.dispatched.len();
    // The same graph again, asking for z: y is held; only z (and nothing for y) runs.
    sim.get(b"c1", 2, &xyz(), keys_of(&["z", "y"]), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("y", 4), ("z", 7)]));
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert!(!again.contains(&"y"), "y was recomputed: {again:?}");
    assert!(again.contains(&"z"));
}

/// A wide task (past the small-task dedup) whose references repeat and mix keys of its own
/// graph with keys the scheduler holds from an earlier computation: each input is one
/// dependency, the held ones are not recomputed, and the value counts every reference.
#[test]
fn a_wide_task_with_repeated_and_held_inputs() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(
        b"c1",
        1,
        &independent(10),
        keys_of(&["a0", "a1", "a2"]),
        true,
    );
    sim.run();
    let before = sim.dispatched.len();
    // a3..a9 were released; a0..a2 are held. b0..b9 are new.
    let mut g = independent(10);
    let mut refs = Vec::new();
    for round in 0..3 {
        for i in 0..10 {
            refs.push(key(format!("a{i}")));
            if round < 2 {
                refs.push(key(format!("b{i}")));
            }
        }
    }
    for i in 0..10 {
        g.insert(format!("b{i}"), task("inc", (100 + i as i64,)));
    }
    g.insert("total", task("sum", (list(refs),)));
    sim.get(b"c1", 2, &g, "total", false);
    sim.run();
    // a_i = i + 1, b_i = 101 + i: three times the a's, twice the b's.
    let a: i64 = (1..=10).sum();
    let b: i64 = (101..=110).sum();
    assert_eq!(sim.result(b"c1", 2), ints(&[("total", 3 * a + 2 * b)]));
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    for held in ["a0", "a1", "a2"] {
        assert!(!again.contains(&held), "{held} was recomputed: {again:?}");
    }
    for k in ["a3", "a9", "b0", "b9", "total"] {
        assert_eq!(
            again.iter().filter(|d| **d == k).count(),
            1,
            "{k}: {again:?}"
        );
    }
}

#[test]
fn held_output_alone_is_gathered_without_computing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    let before = sim.dispatched.len();
    sim.get(b"c2", 2, &Graph::new(), "a0", false);
    assert_eq!(sim.get_data.len(), 1, "a get_data for a0");
    sim.run();
    assert_eq!(sim.dispatched.len(), before, "nothing computed");
    assert_eq!(sim.result(b"c2", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")], "still kept");
}

#[test]
fn held_key_missing_on_its_worker_is_recomputed() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    // The worker lost it (say, its store was wiped) without telling anyone.
    sim.stores.get_mut(b"w1".as_slice()).unwrap().clear();
    sim.get(b"c2", 2, &Graph::new(), "a0", false);
    sim.run();
    assert_eq!(sim.result(b"c2", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.times_dispatched("a0"), 2, "recomputed from its lineage");
}

#[test]
fn empty_request_answers_at_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), Keys::Many(vec![]), false, t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(BTreeMap::new()));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.graph_count(), 0);
}

// ----- validation ----------------------------------------------------------------------------

/// Submits `graph` for `keys` on a scheduler with one worker and returns the error, checking
/// nothing was created or sent.
fn invalid(graph: &Graph, keys: impl Into<Keys>) -> ErrorInfo {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 9, graph, keys, false, t0);
    assert!(out.compute.is_empty(), "nothing runs: {out:?}");
    assert!(out.release.is_empty());
    assert_eq!(out.to_clients.len(), 1);
    assert_eq!(s.task_count(), 0, "an invalid graph leaves nothing behind");
    assert_eq!(s.graph_count(), 0);
    error_of(&out, b"c1", 9).expect("an error answers the request")
}

#[test]
fn missing_reference_is_an_error_naming_the_key() {
    let mut g = xyz();
    g.insert("y", task("inc", (key("nope"),)));
    let e = invalid(&g, "z");
    assert_eq!(e.kind, "missing_key");
    assert_eq!(e.key.as_deref(), Some("y"), "{e:?}");
    assert!(e.message.contains("\"nope\""), "{}", e.message);
}

#[test]
fn requested_key_not_in_graph_is_an_error() {
    let e = invalid(&xyz(), keys_of(&["y", "nope"]));
    assert_eq!(e.kind, "missing_key");
    assert_eq!(e.key.as_deref(), Some("nope"));
    assert!(e.message.contains("\"nope\""), "{}", e.message);
}

#[test]
fn cycle_is_an_error_showing_the_path() {
    let mut g = Graph::new();
    g.insert("a", task("inc", (key("b"),)));
    g.insert("b", task("inc", (key("c"),)));
    g.insert("c", task("inc", (key("a"),)));
    g.insert("d", task("inc", (key("a"),)));
    let e = invalid(&g, "d");
    assert_eq!(e.kind, "cycle");
    assert_eq!(e.key.as_deref(), Some("a"));
    assert!(e.message.contains("a -> b -> c -> a"), "{}", e.message);
    assert!(
        !e.message.contains("d ->"),
        "d is not on the cycle: {}",
        e.message
    );
}

#[test]
fn self_reference_is_a_cycle() {
    let mut g = Graph::new();
    g.insert("a", task("add", (key("a"), 1)));
    let e = invalid(&g, "a");
    assert_eq!(e.kind, "cycle");
    assert!(e.message.contains("a -> a"), "{}", e.message);
}

#[test]
fn alias_cycle_is_an_error() {
    // References without tasks: a is b, b is a.
    let mut g = Graph::new();
    g.insert("a", key("b"));
    g.insert("b", key("a"));
    let e = invalid(&g, "a");
    assert_eq!(e.kind, "cycle");
}

#[test]
fn unknown_function_is_an_error_naming_key_and_function() {
    let mut g = xyz();
    g.insert("y", task("inc", (task("frobnicate", (key("x"),)),)));
    let e = invalid(&g, "z");
    assert_eq!(e.kind, "unknown_function");
    assert_eq!(e.key.as_deref(), Some("y"));
    assert_eq!(e.function.as_deref(), Some("frobnicate"));
    assert!(e.message.contains("frobnicate"), "{}", e.message);
}

#[test]
fn unneeded_keys_are_not_validated() {
    // z is broken but only y is asked for: it is culled, as in dask.
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let mut g = xyz();
    g.insert("z", task("frobnicate", (key("missing"),)));
    sim.get(b"c1", 1, &g, "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
}

#[test]
fn invalid_graph_does_not_disturb_what_is_in_flight() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(s.task_count(), 2);
    // Another graph shares x and has a broken key after creating nothing.
    let mut g = xyz();
    g.insert("q", task("inc", (key("x"),)));
    g.insert("r", task("add", (key("q"), key("gone"))));
    let out = get(&mut s, b"c2", 2, &g, "r", false, t0);
    assert_eq!(error_of(&out, b"c2", 2).unwrap().kind, "missing_key");
    assert_eq!(s.task_count(), 2, "no task of the invalid graph was added");
    assert_eq!(s.graph_count(), 1);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn failed_key_is_forgotten_and_can_be_resubmitted() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let mut g = xyz();
    g.insert("keep_x", task("inc", (key("x"),)));
    get(&mut s, b"c1", 1, &g, "y", false, t0);
    let out = report_failed(&mut s, b"w1", failed("x", "add", "boom"), t0);
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "dependency_failed");
    // After the failure, nothing of it is left, so a resubmission runs x again.
    let out = get(&mut s, b"c1", 2, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
}

// ----- failures ------------------------------------------------------------------------------

#[test]
fn task_failure_fails_the_graph_and_leaves_nothing() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report_failed(&mut s, b"w1", failed("x", "add", "integer overflow"), t0);
    // z was asked for: its error names it, and the input that failed, its function and
    // message.
    let e = error_of(&out, b"c1", 1).expect("the get fails");
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("x"));
    assert_eq!(e.function.as_deref(), Some("add"));
    assert!(e.message.contains("integer overflow"), "{}", e.message);
    assert!(
        out.compute.is_empty(),
        "dependents of x do not run: {out:?}"
    );
    assert_eq!(s.task_count(), 0, "nothing left behind");
    assert_eq!(s.graph_count(), 0);
    assert_eq!(
        s.who_has("x"),
        Vec::<String>::new(),
        "a failed key is not stored"
    );
    assert_eq!(s.workers(t0)[0].processing, 0);
}

#[test]
fn failure_in_the_middle_releases_finished_inputs() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let out = report_failed(&mut s, b"w1", failed("y", "inc", "nope"), t0);
    let e = error_of(&out, b"c1", 1).unwrap();
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("y"));
    // x is released with the failure (and y, the failed key, in case the worker kept
    // something of it).
    assert_eq!(released(&out, b"w1"), vec!["x", "y"]);
    assert!(out.compute.is_empty(), "z does not run");
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.held_count(), 0);
}

#[test]
fn failure_does_not_disturb_other_clients() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut other = Graph::new();
    other.insert("a", task("inc", (1,)));
    other.insert("b", task("inc", (key("a"),)));
    sim.get(b"c2", 1, &other, "b", false);
    // x fails wherever it was sent.
    let (route, _) = sim
        .dispatched
        .iter()
        .find(|(_, k)| k == "x")
        .cloned()
        .expect("x dispatched");
    sim.pending
        .get_mut(&route)
        .unwrap()
        .retain(|t| t.key != "x");
    let out = report_failed(&mut sim.s, &route, failed("x", "add", "boom"), sim.now);
    sim.absorb(out);
    sim.run();
    let e = sim.error(b"c1", 1);
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("x"));
    assert_eq!(sim.result(b"c2", 1), ints(&[("b", 3)]));
    assert_eq!(sim.times_dispatched("y"), 0);
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn failure_and_success_side_by_side_leave_nothing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut other = Graph::new();
    other.insert("a", task("inc", (1,)));
    other.insert("b", task("inc", (key("a"),)));
    sim.get(b"c2", 1, &other, "b", false);
    sim.pending
        .get_mut(b"w1".as_slice())
        .unwrap()
        .retain(|t| t.key != "x");
    let out = report_failed(&mut sim.s, b"w1", failed("x", "add", "boom"), sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("b", 3)]));
    sim.assert_clean();
}

#[test]
fn failure_fails_every_graph_needing_the_key() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let out = get(&mut s, b"c2", 5, &xyz(), "z", false, t0);
    assert!(out.compute.is_empty(), "x is already processing");
    let out = report_failed(&mut s, b"w1", failed("x", "add", "boom"), t0);
    for (client, request, wanted) in [(b"c1", 1, "y"), (b"c2", 5, "z")] {
        let e = error_of(&out, client, request).expect("both fail");
        assert_eq!(e.kind, "dependency_failed");
        assert_eq!(e.key.as_deref(), Some(wanted));
        assert_eq!(e.dependency.as_deref(), Some("x"));
    }
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.graph_count(), 0);
}

#[test]
fn report_for_a_key_nobody_wants_is_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = report(&mut s, b"w1", vec![done_held("stray", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["stray"]);
    let out = report_failed(&mut s, b"w1", failed("stray", "inc", "x"), t0);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn missing_dependency_is_retried() {
    // w2 runs y but cannot fetch x from w1 (w1 lost it): x is recomputed and y runs again.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let y = task_of(&out, b"w2", "y");
    assert_eq!(
        listed(&y.who_has),
        vec![("x".to_string(), vec![addr(b"w1")])]
    );
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "no holder had x".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0);
    assert!(out.to_clients.is_empty(), "retried, not failed: {out:?}");
    let sent = all_compute_keys(&out);
    assert_eq!(sent, vec!["x"], "x recomputed first, y waits for it");
    let route = if computes(&out, b"w1").is_empty() {
        b"w2"
    } else {
        b"w1"
    };
    let out = report(&mut s, route, vec![done_held("x", 8)], t0);
    assert_eq!(all_compute_keys(&out), vec!["y"]);
    let out = report(&mut s, b"w2", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

/// A worker that found an input of another definition than it was given with names no
/// input: the task is given again (a few times), not failed at once.
#[test]
fn a_task_whose_inputs_were_replaced_is_given_again() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let replaced = || TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "an input was replaced by another definition".into(),
        missing: None,
    };
    for _ in 0..3 {
        let out = report_failed(&mut s, b"w1", replaced(), t0);
        assert!(
            out.to_clients.is_empty(),
            "given again, not failed: {out:?}"
        );
        assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    }
    // Bounded: the fourth time it fails.
    let out = report_failed(&mut s, b"w1", replaced(), t0);
    assert!(!out.to_clients.is_empty(), "{out:?}");
}

// ----- sharing -------------------------------------------------------------------------------

#[test]
fn shared_key_is_computed_once_for_two_clients() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g2 = Graph::new();
    g2.insert("x", task("add", (1, 2)));
    g2.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.get(b"c2", 1, &g2, keys_of(&["q", "x"]), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103), ("x", 3)]));
    assert_eq!(sim.times_dispatched("x"), 1, "x computed once");
}

#[test]
fn shared_output_is_delivered_to_both_clients() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let out = get(&mut s, b"c2", 2, &xyz(), "y", false, t0);
    assert!(out.compute.is_empty(), "already in flight");
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("y", 4)])));
}

#[test]
fn output_computed_without_value_is_gathered_for_a_late_client() {
    // x runs as an intermediate (no value sent back); meanwhile another client asks for x
    // itself, so the scheduler fetches it from the holder once it is done.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(!task_of(&out, b"w1", "x").send_value);
    get(&mut s, b"c2", 2, &xyz(), "x", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let request = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, keys }) if r == b"w1" && keys == &["x"] => {
                Some(*request)
            }
            _ => None,
        })
        .expect("x is gathered from w1");
    let data = FromWorker::Data(DataBody {
        request,
        items: vec![KeyData::inline("x".into(), Value::Int(3))],
        missing: Vec::new(),
    });
    let out = send(&mut s, b"w1", data, t0);
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("x", 3)])));
    // An answer to an unknown request is ignored.
    let stale = FromWorker::Data(DataBody {
        request: request + 100,
        items: Vec::new(),
        missing: vec!["x".into()],
    });
    assert!(send(&mut s, b"w1", stale, t0).is_empty());
}

#[test]
fn shared_key_already_in_memory_is_used() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    // c2 needs x too; it is held, so its task is ready at once.
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("inc", (key("x"),)));
    let out = get(&mut s, b"c2", 2, &g, "q", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["q"]);
    let out = report(&mut s, b"w1", vec![done("q", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("q", 4)])));
    assert_eq!(released(&out, b"w1"), vec!["q"], "c1's z still needs x");
    assert_eq!(s.who_has("x"), vec![addr(b"w1")]);
}

// ----- no workers ----------------------------------------------------------------------------

#[test]
fn get_waits_for_the_first_worker() {
    let mut s = state();
    let t0 = Instant::now();
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(out.is_empty(), "parked quietly: {out:?}");
    assert_eq!(s.task_count(), 0);
    assert!(tick(&mut s, t0 + secs(29)).is_empty(), "not expired yet");
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(29));
    assert!(matches!(
        out.to_workers.as_slice(),
        [(r, ToWorker::Welcome { .. })] if r == b"w1"
    ));
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["x"],
        "dispatched on registration"
    );
    // The old deadline no longer applies.
    let out = tick(&mut s, t0 + secs(31));
    assert!(out.to_clients.is_empty(), "{out:?}");
}

#[test]
fn get_without_workers_times_out() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    get(&mut s, b"c2", 2, &xyz(), "z", false, t0 + secs(10));
    let out = tick(&mut s, t0 + secs(30));
    let e = error_of(&out, b"c1", 1).expect("c1 gives up first");
    assert_eq!(e.kind, "no_workers");
    assert!(error_of(&out, b"c2", 2).is_none());
    let out = tick(&mut s, t0 + secs(40));
    assert_eq!(error_of(&out, b"c2", 2).unwrap().kind, "no_workers");
    // Nothing left: a worker registering now gets no work.
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(41));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
}

#[test]
fn no_workers_timeout_is_configurable() {
    let mut s = state_with(Config {
        no_workers_timeout: secs(2),
        ..test_config()
    });
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(tick(&mut s, t0 + Duration::from_millis(1999)).is_empty());
    let out = tick(&mut s, t0 + secs(2));
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "no_workers");
}

#[test]
fn parked_invalid_graph_fails_when_a_worker_comes() {
    let mut s = state();
    let t0 = Instant::now();
    let mut g = Graph::new();
    g.insert("a", task("frobnicate", (1,)));
    assert!(get(&mut s, b"c1", 1, &g, "a", false, t0).is_empty());
    let out = register(&mut s, b"w1", FUNCS, 1, t0);
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "unknown_function");
}

#[test]
fn parked_get_of_a_gone_client_is_dropped() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    assert!(out.is_empty());
    let out = register(&mut s, b"w1", FUNCS, 1, t0);
    assert!(out.compute.is_empty());
    assert!(tick(&mut s, t0 + secs(60)).to_clients.is_empty());
}

#[test]
fn close_tells_workers_and_waiting_clients() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"parked", 1, &xyz(), "y", false, t0);
    let mut s2 = state();
    register(&mut s2, b"w1", FUNCS, 1, t0);
    register(&mut s2, b"w2", FUNCS, 1, t0);
    get(&mut s2, b"c1", 3, &xyz(), "y", false, t0);

    let mut out = Outbox::default();
    s.on_close(&mut out);
    s.on_flushed(&mut out);
    assert_eq!(error_of(&out, b"parked", 1).unwrap().kind, "shutting_down");

    let mut out = Outbox::default();
    s2.on_close(&mut out);
    s2.on_flushed(&mut out);
    assert_eq!(error_of(&out, b"c1", 3).unwrap().kind, "shutting_down");
    let mut closing: Vec<&Route> = out
        .to_workers
        .iter()
        .filter(|(_, m)| *m == ToWorker::Closing)
        .map(|(r, _)| r)
        .collect();
    closing.sort();
    assert_eq!(closing, vec![&b"w1".to_vec(), &b"w2".to_vec()]);
}

// ----- placement -----------------------------------------------------------------------------

#[test]
fn task_goes_only_to_workers_with_its_function() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["add", "inc", "special"], 4, t0);
    register(&mut s, b"wa", &["add", "inc"], 4, t0);
    let mut g = Graph::new();
    for i in 0..6 {
        g.insert(format!("s{i}"), task("special", (i,)));
    }
    let keys: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let out = get(&mut s, b"c1", 1, &g, Keys::from(keys), false, t0);
    assert!(
        computes(&out, b"wa").is_empty(),
        "wa lacks special: {out:?}"
    );
    assert_eq!(computes(&out, b"wb").len(), 6);
    // Even a nested call counts: inc(special(1)) can only run on wb.
    let mut g = Graph::new();
    g.insert("n", task("inc", (task("special", (1,)),)));
    g.insert("plain", task("inc", (1,)));
    let out = get(&mut s, b"c1", 2, &g, keys_of(&["n", "plain"]), false, t0);
    assert!(!compute_keys(&out, b"wa").contains(&"n".to_string()));
    // wb has 8 slots and 6 are used: n fits there.
    assert!(compute_keys(&out, b"wb").contains(&"n".to_string()));
}

#[test]
fn tasks_wait_for_the_worker_with_their_function() {
    // wb (the only worker with `special`) is full: special tasks wait for it rather than go
    // to the idle wa.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["special"], 1, t0);
    register(&mut s, b"wa", &["add", "inc"], 8, t0);
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("s{i}"), task("special", (i,)));
    }
    let out = get(
        &mut s,
        b"c1",
        1,
        &g,
        keys_of(&["s0", "s1", "s2", "s3"]),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"wb").len(), 2, "saturation 2 x 1 thread");
    assert!(computes(&out, b"wa").is_empty());
    let first = compute_keys(&out, b"wb")[0].clone();
    let out = report(&mut s, b"wb", vec![done(&first, Value::Int(1))], t0);
    assert_eq!(computes(&out, b"wb").len(), 1);
    assert!(computes(&out, b"wa").is_empty());
}

/// A task whose function went away with its only worker waits for a worker that offers it
/// (as a graph waits for workers), for `no_workers_timeout`; then the computations waiting
/// for it fail with `unknown_function`.
#[test]
fn function_lost_with_its_only_worker_fails_the_task_in_time() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", &["add", "inc"], 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    g.insert("s", task("special", (1,)));
    let out = get(&mut s, b"c1", 1, &g, "s", false, t0);
    assert_eq!(compute_keys(&out, b"wb"), vec!["s"]);
    let out = send(
        &mut s,
        b"wb",
        FromWorker::Goodbye {
            worker_id: "id-wb".into(),
        },
        t0,
    );
    assert!(error_of(&out, b"c1", 1).is_none(), "it waits: {out:?}");
    assert!(out.compute.is_empty());
    heartbeat(&mut s, b"wa", t0 + secs(5));
    assert!(error_of(&tick(&mut s, t0 + secs(5)), b"c1", 1).is_none());
    heartbeat(&mut s, b"wa", t0 + secs(36));
    let out = tick(&mut s, t0 + secs(36));
    let e = error_of(&out, b"c1", 1).expect("nobody can run s any more");
    assert_eq!(e.kind, "unknown_function");
    assert_eq!(e.function.as_deref(), Some("special"));
    assert_eq!(e.key.as_deref(), Some("s"));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
}

/// A stalled task runs as soon as a worker offering its function registers.
#[test]
fn a_task_waiting_for_its_function_runs_when_a_worker_offers_it() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", &["add", "inc"], 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    g.insert("s", task("special", (1,)));
    get(&mut s, b"c1", 1, &g, "s", false, t0);
    send(
        &mut s,
        b"wb",
        FromWorker::Goodbye {
            worker_id: "id-wb".into(),
        },
        t0,
    );
    heartbeat(&mut s, b"wa", t0 + secs(20));
    assert!(error_of(&tick(&mut s, t0 + secs(20)), b"c1", 1).is_none());
    let out = register(&mut s, b"wc", &["special"], 1, t0 + secs(21));
    assert_eq!(compute_keys(&out, b"wc"), vec!["s"]);
    let out = report(&mut s, b"wc", vec![done("s", Value::Int(9))], t0 + secs(22));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("s", 9)])));
}

#[test]
fn data_locality_prefers_the_holder_of_big_inputs() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    // small goes to w1, big to w2 (least loaded); keep both.
    let mut g = Graph::new();
    g.insert("small", task("inc", (1,)));
    g.insert("big", task("big", (1_000_000,)));
    let out = get(&mut s, b"c1", 1, &g, keys_of(&["small", "big"]), true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["small"]);
    assert_eq!(compute_keys(&out, b"w2"), vec!["big"]);
    report(&mut s, b"w1", vec![done("small", Value::Int(2))], t0);
    let big = Value::Bytes(vec![7; 1_000_000].into());
    let out = report(&mut s, b"w2", vec![done("big", big)], t0);
    assert!(result_of(&out, b"c1", 1).is_some());
    assert_eq!(s.who_has("big"), vec![addr(b"w2")]);
    assert_eq!(s.who_has("small"), vec![addr(b"w1")]);

    // Both workers are idle; a task reading big goes to w2 (not to w1, the tie-break), and so
    // does one reading both (1 MB beats 8 bytes).
    let mut g = Graph::new();
    g.insert("one", task("sum", (list(vec![key("big")]),)));
    let out = get(&mut s, b"c1", 2, &g, "one", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["one"]);
    assert!(task_of(&out, b"w2", "one").who_has.is_empty());
    report(&mut s, b"w2", vec![done("one", Value::Int(0))], t0);
    let mut g = Graph::new();
    g.insert("both", task("add", (key("small"), key("big"))));
    let out = get(&mut s, b"c1", 3, &g, "both", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["both"]);
    assert_eq!(
        listed(&task_of(&out, b"w2", "both").who_has),
        vec![("small".to_string(), vec![addr(b"w1")])],
        "only the input w2 lacks is listed, with its holder"
    );
}

#[test]
fn locality_yields_when_the_holder_is_full() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("pad", task("inc", (0,)));
    g.insert("big", task("big", (1_000_000,)));
    let out = get(&mut s, b"c1", 1, &g, keys_of(&["pad", "big"]), true, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["big"]);
    report(&mut s, b"w1", vec![done("pad", Value::Int(1))], t0);
    report(
        &mut s,
        b"w2",
        vec![done("big", Value::Bytes(vec![0; 1_000_000].into()))],
        t0,
    );
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("u{i}"), task("add", (key("big"), i)));
    }
    let out = get(
        &mut s,
        b"c1",
        2,
        &g,
        keys_of(&["u0", "u1", "u2", "u3"]),
        false,
        t0,
    );
    assert_eq!(
        computes(&out, b"w2").len(),
        2,
        "w2 has 2 slots, filled first"
    );
    assert_eq!(
        computes(&out, b"w1").len(),
        2,
        "the rest go to w1 rather than wait"
    );
    for t in computes(&out, b"w1") {
        assert_eq!(
            listed(&t.who_has),
            vec![("big".to_string(), vec![addr(b"w2")])]
        );
    }
}

#[test]
fn least_loaded_worker_gets_the_next_task() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 4, t0);
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(10),
        {
            let k: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
            Keys::from(k)
        },
        false,
        t0,
    );
    // Capacity: w1 2, w2 8 -- all 10 go out, balanced by load per thread.
    assert_eq!(computes(&out, b"w1").len(), 2);
    assert_eq!(computes(&out, b"w2").len(), 8);
}

#[test]
fn saturation_limits_tasks_in_flight() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(5),
        Keys::from(names.clone()),
        false,
        t0,
    );
    let sent = compute_keys(&out, b"w1");
    assert_eq!(sent.len(), 2, "nthreads 1 x saturation 2");
    assert_eq!(s.workers(t0)[0].processing, 2);
    let mut all = sent.clone();
    let mut in_flight = sent;
    while !in_flight.is_empty() {
        let k = in_flight.remove(0);
        let i: i64 = k[1..].parse().unwrap();
        let out = report(&mut s, b"w1", vec![done(&k, Value::Int(i + 1))], t0);
        let more = compute_keys(&out, b"w1");
        assert!(more.len() <= 1, "one finished, at most one more: {more:?}");
        in_flight.extend(more.iter().cloned());
        all.extend(more);
        assert!(in_flight.len() <= 2);
        assert_eq!(s.workers(t0)[0].processing as usize, in_flight.len());
        if in_flight.is_empty() {
            let r = result_of(&out, b"c1", 1).expect("all done");
            assert_eq!(r.len(), 5);
        }
    }
    all.sort();
    assert_eq!(all, names, "each task sent exactly once");
}

#[test]
fn saturation_scales_with_threads_and_config() {
    let mut s = state_with(Config {
        saturation: 3,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let names: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(20),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"w1").len(), 6);
}

#[test]
fn computations_run_in_submission_order_and_depth_first() {
    let mut s = state_with(Config {
        saturation: 1,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("a1", task("inc", (1,)));
    g.insert("a2", task("inc", (key("a1"),)));
    g.insert("b1", task("inc", (2,)));
    g.insert("b2", task("inc", (key("b1"),)));
    g.insert("total", task("add", (key("a2"), key("b2"))));
    let mut order = Vec::new();
    let out = get(&mut s, b"c1", 1, &g, "total", false, t0);
    let mut g2 = Graph::new();
    g2.insert("later", task("inc", (0,)));
    let mut next = compute_keys(&out, b"w1");
    let out = get(&mut s, b"c2", 2, &g2, "later", false, t0);
    assert!(out.compute.is_empty(), "w1 is full");
    while let Some(k) = next.pop() {
        order.push(k.clone());
        let out = report(&mut s, b"w1", vec![done(&k, Value::Int(1))], t0);
        next = compute_keys(&out, b"w1");
        assert!(next.len() <= 1);
    }
    assert_eq!(order, vec!["a1", "a2", "b1", "b2", "total", "later"]);
}

// ----- workers coming and going --------------------------------------------------------------

#[test]
fn silent_worker_is_removed_and_its_tasks_reassigned() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &independent(2), keys_of(&["a0", "a1"]), false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 2);
    sim.now = t0 + secs(1);
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    // w2 keeps beating; w1 is silent.
    for t in [5, 10] {
        heartbeat(&mut sim.s, b"w2", t0 + secs(t));
    }
    let out = tick(&mut sim.s, t0 + secs(10));
    assert!(
        out.is_empty(),
        "exactly the timeout is not over it: {out:?}"
    );
    assert_eq!(sim.s.workers(t0 + secs(10)).len(), 2);
    sim.now = t0 + secs(10) + Duration::from_millis(1);
    let out = tick(&mut sim.s, sim.now);
    let mut moved = compute_keys(&out, b"w2");
    moved.sort();
    assert_eq!(moved, vec!["a0", "a1"], "w1's tasks go to w2");
    sim.absorb(out);
    let workers = sim.s.workers(sim.now);
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].address, addr(b"w2"));
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("a0", 1), ("a1", 2)]));
    // w1 comes back from the dead: it is asked to register.
    let out = heartbeat(&mut sim.s, b"w1", sim.now);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
}

#[test]
fn heartbeats_and_any_message_keep_a_worker_alive() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    heartbeat(&mut s, b"w1", t0 + secs(8));
    s.on_worker_seen(b"w2", t0 + secs(9));
    assert!(tick(&mut s, t0 + secs(15)).is_empty());
    assert_eq!(s.workers(t0 + secs(15)).len(), 2);
    assert_eq!(s.workers(t0 + secs(15))[0].last_seen_ms, 7000);
    let out = tick(&mut s, t0 + secs(18) + Duration::from_millis(500));
    // The survivor is told its peer is gone (so fetches from it fail fast), nothing else.
    assert_eq!(
        out.to_workers,
        vec![(
            b"w2".to_vec(),
            ToWorker::PeerGone {
                address: addr(b"w1")
            }
        )]
    );
    assert!(out.compute.is_empty() && out.release.is_empty() && out.to_clients.is_empty());
    let left = s.workers(t0 + secs(19));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].address, addr(b"w2"));
    assert!(tick(&mut s, t0 + secs(30)).is_empty());
    assert!(s.workers(t0 + secs(30)).is_empty());
}

#[test]
fn heartbeat_timeout_is_configurable() {
    let mut s = state_with(Config {
        heartbeat_timeout: secs(1),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    tick(&mut s, t0 + Duration::from_millis(1001));
    assert!(s.workers(t0).is_empty());
}

#[test]
fn lost_key_still_needed_is_recomputed() {
    // x is held only by w1, which also runs y (its input is there); w1 dies. x must be
    // computed again on w2, and y sent again once x is back, never before.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "x on w1");
    sim.now = t0 + secs(1);
    assert!(sim.step(), "w1 runs x");
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "y on w1, next to x");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    assert_eq!(
        compute_keys(&out, b"w2"),
        vec!["x"],
        "x is recomputed first; y waits for it"
    );
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
    assert_eq!(sim.times_dispatched("x"), 2);
}

#[test]
fn lost_key_needed_by_a_task_on_another_worker_is_recomputed() {
    // x is on w1 (the only `add` worker besides w2... w1 lacks inc), y runs on w2 and fetches
    // x from w1 -- but w1 died first.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    assert!(sim.step(), "w1 runs x");
    assert_eq!(sim.pending[b"w2".as_slice()].len(), 1, "y goes to w2");
    // w1 dies before w2 fetched x: w2 reports it could not get x.
    sim.kill(b"w1");
    sim.pending.remove(b"w2".as_slice());
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 did not answer".into(),
        missing: Some("x".into()),
    };
    sim.now = t0 + secs(2);
    let out = report_failed(&mut sim.s, b"w2", f, sim.now);
    assert!(out.to_clients.is_empty());
    sim.absorb(out);
    // Then the scheduler notices w1 is gone.
    heartbeat(&mut sim.s, b"w2", t0 + secs(11));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
}

#[test]
fn lost_key_nobody_needs_is_forgotten() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    get(&mut s, b"c1", 1, &g, "a", false, t0);
    let out = report(&mut s, b"w1", vec![done("a", Value::Int(2))], t0);
    assert!(result_of(&out, b"c1", 1).is_some());
    assert_eq!(s.task_count(), 0);
    let out = tick(&mut s, t0 + secs(12));
    assert!(out.compute.is_empty(), "{out:?}");
    assert_eq!(s.task_count(), 0);
}

#[test]
fn kept_key_lost_with_its_worker_can_still_be_fetched() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.get(b"c1", 2, &Graph::new(), "a0", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("a0", 1)]));
}

#[test]
fn goodbye_removes_the_worker_and_reassigns_its_tasks() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &independent(2), keys_of(&["a0", "a1"]), false);
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    let out = send(
        &mut sim.s,
        b"w1",
        FromWorker::Goodbye {
            worker_id: "id-w1".into(),
        },
        sim.now,
    );
    let mut moved = compute_keys(&out, b"w2");
    moved.sort();
    assert_eq!(moved, vec!["a0", "a1"]);
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("a0", 1), ("a1", 2)]));
    // A goodbye from an unknown route is not answered.
    let out = send(
        &mut sim.s,
        b"w9",
        FromWorker::Goodbye {
            worker_id: "id-w9".into(),
        },
        sim.now,
    );
    assert!(out.is_empty());
}

#[test]
fn goodbye_of_the_only_holder_recomputes_before_dependents_run() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.step(); // x on w1
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    let out = send(
        &mut sim.s,
        b"w1",
        FromWorker::Goodbye {
            worker_id: "id-w1".into(),
        },
        sim.now,
    );
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
}

#[test]
fn protocol_mismatch_is_rejected() {
    let mut s = state();
    let t0 = Instant::now();
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION + 98,
        worker_id: "id-w1".into(),
        address: addr(b"w1"),
        pid: 1,
        nthreads: 1,
        functions: vec!["inc".into()],
        has: Vec::new(),
    };
    let out = send(&mut s, b"w1", msg, t0);
    match out.to_workers.as_slice() {
        [(route, ToWorker::Rejected { message })] => {
            assert_eq!(route, b"w1");
            assert!(
                message.contains(&(PROTOCOL_VERSION + 98).to_string()),
                "{message}"
            );
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(s.workers(t0).is_empty());
    // The rejected worker is unknown afterwards.
    let out = heartbeat(&mut s, b"w1", t0);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
}

#[test]
fn unknown_route_is_asked_to_register() {
    let mut s = state();
    let t0 = Instant::now();
    let out = heartbeat(&mut s, b"ghost", t0);
    assert_eq!(
        out.to_workers,
        vec![(b"ghost".to_vec(), ToWorker::PleaseRegister)]
    );
    let out = report(&mut s, b"ghost", vec![done_held("k", 1)], t0);
    assert_eq!(
        out.to_workers,
        vec![(b"ghost".to_vec(), ToWorker::PleaseRegister)]
    );
    assert!(out.release.is_empty());
}

#[test]
fn registration_is_welcomed_and_listed() {
    let mut s = state();
    let t0 = Instant::now();
    let out = register(&mut s, b"w1", &["inc", "add"], 3, t0);
    assert_eq!(
        out.to_workers,
        vec![(
            b"w1".to_vec(),
            ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: "sched-test".into()
            }
        )]
    );
    let w = s.workers(t0 + secs(2));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].address, addr(b"w1"));
    assert_eq!(w[0].worker_id, "id-w1");
    assert_eq!(w[0].pid, 4242);
    assert_eq!(w[0].nthreads, 3);
    assert_eq!(w[0].functions, vec!["add", "inc"], "sorted");
    assert_eq!(w[0].last_seen_ms, 2000);
    assert_eq!((w[0].keys, w[0].nbytes, w[0].processing), (0, 0, 0));
}

#[test]
fn reregistering_keeps_one_worker() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.step(); // x done on w1, y sent
                // Same process, same route: welcomed again, and its unfinished task is sent
                // again (messages may have been lost while it was away); nothing released.
    let out = register(&mut sim.s, b"w1", FUNCS, 1, sim.now);
    assert!(matches!(
        out.to_workers.as_slice(),
        [(_, ToWorker::Welcome { .. })]
    ));
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    assert!(out.release.is_empty());
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    // Same process, new route (reconnected): still one worker, found by its new route.
    let again = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: addr(b"w1"),
        pid: 4242,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: Vec::new(),
    };
    let out = send(&mut sim.s, b"w1-again", again, sim.now);
    assert!(
        matches!(out.to_workers.as_slice(), [(r, ToWorker::Welcome { .. })] if r == b"w1-again")
    );
    let w = sim.s.workers(sim.now);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].worker_id, "id-w1");
    assert_eq!(w[0].processing, 1, "y is still assigned to it");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    let out = heartbeat(&mut sim.s, b"w1-again", sim.now);
    assert!(out.is_empty(), "{out:?}");
    let out = heartbeat(&mut sim.s, b"w1", sim.now);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
    // Its report on the new route completes the computation.
    let out = report(
        &mut sim.s,
        b"w1-again",
        vec![done("y", Value::Int(4))],
        sim.now,
    );
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn restarted_worker_replaces_its_old_self() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // A new process (new worker id) at w1's address: the old one is gone, its task moves.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-second-life".into(),
        address: addr(b"w1"),
        pid: 5000,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: Vec::new(),
    };
    let out = send(&mut s, b"w1b", msg, t0);
    let w = s.workers(t0);
    assert_eq!(w.len(), 2);
    let me = w.iter().find(|w| w.address == addr(b"w1")).unwrap();
    assert_eq!((me.worker_id.as_str(), me.pid), ("id-w1-second-life", 5000));
    assert_eq!(all_compute_keys(&out), vec!["a0"], "a0 is sent again");
}

/// A registering worker's copy of a key being computed is used (it is the same definition);
/// a key the scheduler does not know is adopted for `adopt_grace` (a client may resubmit or
/// gather it), then released; a stale copy (another definition) is released at once.
#[test]
fn keys_held_at_registration_are_used_adopted_or_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    // A worker joins holding x (from an earlier life) and an unknown key.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w2".into(),
        address: addr(b"w2"),
        pid: 1,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![
            info(&s, "x", 8),
            KeyInfo {
                key: "junk".into(),
                nbytes: 8,
                hash: DefHash::of_value(&Value::from("junk")),
            },
        ],
    };
    let out = send(&mut s, b"w2", msg, t0);
    assert!(released(&out, b"w2").is_empty(), "{out:?}");
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    assert_eq!(s.who_has("junk"), vec![addr(b"w2")], "adopted");
    assert_eq!(
        compute_keys(&out, b"w2"),
        vec!["y"],
        "y runs next to x at once"
    );
    // w1's late report of x: x is no longer assigned to it, so it is not taken.
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    // Unclaimed, the adopted key goes after the grace period.
    heartbeat(&mut s, b"w1", t0 + secs(59));
    heartbeat(&mut s, b"w2", t0 + secs(59));
    assert!(released(&tick(&mut s, t0 + secs(59)), b"w2").is_empty());
    heartbeat(&mut s, b"w1", t0 + secs(61));
    heartbeat(&mut s, b"w2", t0 + secs(61));
    assert_eq!(released(&tick(&mut s, t0 + secs(61)), b"w2"), vec!["junk"]);
    // A stale copy of y (another definition) is dropped at once.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w3".into(),
        address: addr(b"w3"),
        pid: 1,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![KeyInfo {
            key: "y".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::Int(20)),
        }],
    };
    let out = send(&mut s, b"w3", msg, t0 + secs(61));
    assert_eq!(released(&out, b"w3"), vec!["y"]);
    assert!(s.who_has("y").is_empty());
}

#[test]
fn acquired_copies_are_tracked_and_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("y2", task("inc", (key("x"),)));
    g.insert("t", task("add", (key("y"), key("y2"))));
    get(&mut s, b"c1", 1, &g, "t", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let msg = FromWorker::Report(ReportBody {
        done: vec![done_held("y", 8)],
        failed: Vec::new(),
        acquired: vec![info(&s, "x", 8)],
    });
    send(&mut s, b"w2", msg, t0);
    assert_eq!(s.who_has("x"), vec![addr(b"w1"), addr(b"w2")]);
    let out = report(&mut s, b"w2", vec![done_held("y2", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(released(&out, b"w2"), vec!["x"]);
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
}

// ----- clients going away --------------------------------------------------------------------

#[test]
fn client_gone_cancels_its_graph() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    assert_eq!(s.task_count(), 3);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    assert!(out.is_empty(), "nothing to tell anyone: {out:?}");
    assert_eq!(s.graph_count(), 0);
    assert_eq!(s.task_count(), 1, "only x, still running, is left");
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert!(out.compute.is_empty(), "y and z are not run");
    assert_eq!(released(&out, b"w1"), vec!["x"], "x's result is dropped");
    assert!(out.to_clients.is_empty());
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.held_count(), 0);
    assert_eq!(s.workers(t0)[0].processing, 0);
}

#[test]
fn client_gone_drops_queued_tasks_and_late_results() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(6),
        Keys::from(names),
        false,
        t0,
    );
    let sent = compute_keys(&out, b"w1");
    assert_eq!(sent.len(), 2);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    assert_eq!(
        s.task_count(),
        2,
        "the two running tasks are left until they report"
    );
    let out = report(&mut s, b"w1", vec![done(&sent[0], Value::Int(0))], t0);
    assert!(out.compute.is_empty(), "queued tasks were cancelled");
    assert_eq!(released(&out, b"w1"), vec![sent[0].clone()]);
    let out = report(&mut s, b"w1", vec![done(&sent[1], Value::Int(0))], t0);
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
    // A report for a task already forgotten is released as well.
    let out = report(&mut s, b"w1", vec![done_held(&sent[0], 8)], t0);
    assert_eq!(released(&out, b"w1"), vec![sent[0].clone()]);
}

#[test]
fn client_gone_keeps_what_others_need() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c2", 1, &g, "q", false);
    let mut out = Outbox::default();
    sim.s.on_client_gone(b"c1");
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103)]));
    assert!(results_in(&sim.to_clients, b"c1", 1).is_none());
    assert_eq!(sim.times_dispatched("y"), 0);
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(sim.times_dispatched("x"), 1);
}

#[test]
fn client_gone_leaves_other_clients_graphs_alone() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.get(b"c2", 1, &xyz(), "z", false);
    let mut out = Outbox::default();
    sim.s.on_client_gone(b"c1");
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    assert_eq!(sim.s.graph_count(), 1);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("z", 7)]));
}

// ----- scale ---------------------------------------------------------------------------------

#[test]
fn chain_of_a_thousand_tasks() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    let mut g = Graph::new();
    g.insert("c0", task("inc", (0,)));
    for i in 1..1000 {
        g.insert(format!("c{i}"), task("inc", (key(format!("c{}", i - 1)),)));
    }
    sim.get(b"c1", 1, &g, "c999", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c999", 1000)]));
    assert_eq!(sim.dispatched.len(), 1000);
    // Intermediates go as the chain advances: at most a couple held at any time, so at the
    // end all but the last link's input are released.
    let released: HashSet<&str> = sim.released.iter().map(|(_, k)| k.as_str()).collect();
    for i in 0..998 {
        assert!(released.contains(format!("c{i}").as_str()), "c{i} released");
    }
}

#[test]
fn chain_of_a_thousand_tasks_leaves_nothing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    let mut g = Graph::new();
    g.insert("c0", task("inc", (0,)));
    for i in 1..1000 {
        g.insert(format!("c{i}"), task("inc", (key(format!("c{}", i - 1)),)));
    }
    sim.get(b"c1", 1, &g, "c999", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c999", 1000)]));
    sim.assert_clean();
}

fn wide_graph(n: usize) -> Graph {
    let mut g = independent(n);
    g.insert(
        "total",
        task("sum", (list((0..n).map(|i| key(format!("a{i}")))),)),
    );
    g
}

#[test]
fn ten_thousand_tasks_and_a_sum() {
    let n = 10_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 4);
    sim.worker(b"w2", FUNCS, 4);
    sim.worker(b"w3", &["inc"], 2);
    sim.get(b"c1", 1, &wide_graph(n), "total", false);
    sim.run();
    let expected = (1..=n as i64).sum::<i64>();
    assert_eq!(sim.result(b"c1", 1), ints(&[("total", expected)]));
    assert_eq!(sim.dispatched.len(), n + 1);
    assert!(
        sim.dispatched.iter().any(|(r, _)| r == b"w3"),
        "every worker took part"
    );
    let (route, _) = sim.dispatched.iter().find(|(_, k)| k == "total").unwrap();
    assert_ne!(route, b"w3", "w3 has no sum");
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn ten_thousand_tasks_and_a_sum_leave_nothing() {
    let n = 10_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 4);
    sim.worker(b"w2", FUNCS, 4);
    sim.get(b"c1", 1, &wide_graph(n), "total", false);
    sim.run();
    assert_eq!(
        sim.result(b"c1", 1),
        ints(&[("total", (1..=n as i64).sum())])
    );
    sim.assert_clean();
}

// ----- more on lost workers and gathers ------------------------------------------------------

#[test]
fn lost_input_blocks_its_waiting_dependents_again() {
    // z = add(y, x) waits for y only (x is in memory on w1). w1 dies: x must be computed again,
    // and z must wait for both y and the new x -- not run as soon as x is back.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"], "only w2 has inc");
    // w2 already fetched x and is running y when w1 dies.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["x"], "x recomputed on w2");
    let out = report(&mut s, b"w2", vec![done_held("x", 8)], t0 + secs(12));
    assert!(
        !compute_keys(&out, b"w2").contains(&"z".to_string()),
        "z sent while y is still running: {out:?}"
    );
    let out = report(&mut s, b"w2", vec![done_held("y", 8)], t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["z"]);
}

#[test]
fn missing_dependency_while_the_input_is_recomputed_runs_it_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    // y runs on w2; w1 dies before w2 fetched x. The scheduler notices first ...
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["x"], "x recomputed");
    // ... then w2 says it could not fetch x. x is already on its way: do not run it twice.
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 did not answer".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0 + secs(12));
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert!(
        out.compute.is_empty(),
        "x is processing already; nothing new to send: {out:?}"
    );
    let out = report(&mut s, b"w2", vec![done_held("x", 8)], t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"]);
    let out = report(&mut s, b"w2", vec![done("y", Value::Int(4))], t0 + secs(12));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn missing_dependency_retries_are_bounded() {
    // w2 (the only worker with inc) keeps failing to fetch x from w1: x is recomputed and y
    // retried a few times, then y fails with `missing_dependency`.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    get(&mut s, b"c1", 1, &g, "y", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"]);
    let missing = || TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "no holder answered".into(),
        missing: Some("x".into()),
    };
    for attempt in 0..3 {
        let out = report_failed(&mut s, b"w2", missing(), t0);
        assert!(out.to_clients.is_empty(), "attempt {attempt} is retried");
        assert_eq!(compute_keys(&out, b"w1"), vec!["x"], "x recomputed");
        let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
        assert_eq!(compute_keys(&out, b"w2"), vec!["y"], "y sent again");
    }
    let out = report_failed(&mut s, b"w2", missing(), t0);
    let e = error_of(&out, b"c1", 1).expect("y fails after 3 retries");
    assert_eq!(e.kind, "missing_dependency");
    assert_eq!(e.key.as_deref(), Some("y"));
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(s.graph_count(), 0);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn idle_worker_is_not_starved_by_a_queue_it_cannot_serve() {
    // 2,000 `special` tasks that only the busy wb can run come first; then one `inc` that the
    // idle wa can run. wa should get it now, not after most special tasks are done.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["special"], 1, t0);
    register(&mut s, b"wa", &["inc"], 1, t0);
    let mut g = Graph::new();
    let mut keys = Vec::new();
    for i in 0..2000 {
        g.insert(format!("s{i:04}"), task("special", (i,)));
        keys.push(format!("s{i:04}"));
    }
    g.insert("plain", task("inc", (1,)));
    keys.push("plain".to_string());
    let out = get(&mut s, b"c1", 1, &g, Keys::from(keys), false, t0);
    assert_eq!(computes(&out, b"wb").len(), 2);
    assert_eq!(compute_keys(&out, b"wa"), vec!["plain"]);
}

#[test]
fn gather_sent_to_a_dead_worker_is_redirected() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")]);
    sim.get(b"c1", 2, &Graph::new(), "a0", false);
    assert_eq!(sim.get_data.len(), 1);
    // w1 dies before answering.
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w2")]);
}

#[test]
fn gather_missing_on_one_holder_asks_another() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    // w2 holds a copy too (it reconnected, saying so).
    let mut msg = register_msg(b"w2", FUNCS, 1);
    if let FromWorker::Register { has, .. } = &mut msg {
        has.push(info(&s, "a0", 8));
    }
    send(&mut s, b"w2", msg, t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1"), addr(b"w2")]);
    let out = get(&mut s, b"c1", 2, &Graph::new(), "a0", false, t0);
    let (route, request) = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, .. }) => Some((r.clone(), *request)),
            _ => None,
        })
        .expect("a get_data");
    let other: &[u8] = if route == b"w1" { b"w2" } else { b"w1" };
    let answer = FromWorker::Data(DataBody {
        request,
        items: Vec::new(),
        missing: vec!["a0".into()],
    });
    let out = send(&mut s, &route, answer, t0);
    assert!(
        out.compute.is_empty(),
        "another copy exists: no recomputation"
    );
    let request = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, keys }) if r == other && keys == &["a0"] => {
                Some(*request)
            }
            _ => None,
        })
        .expect("asked the other holder");
    assert_eq!(s.who_has("a0"), vec![addr(other)]);
    let answer = FromWorker::Data(DataBody {
        request,
        items: vec![KeyData::inline("a0".into(), Value::Int(1))],
        missing: Vec::new(),
    });
    let out = send(&mut s, other, answer, t0);
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("a0", 1)])));
}

#[test]
fn kept_key_lost_without_its_inputs_can_be_computed_again() {
    // y is kept but its input x was released; when y's only holder dies it cannot be rebuilt,
    // so it is forgotten -- and a later get with its graph computes it afresh.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    let holder = sim.s.who_has("y");
    assert_eq!(holder.len(), 1);
    let (dead, alive): (&[u8], &[u8]) = if holder[0] == addr(b"w1") {
        (b"w1", b"w2")
    } else {
        (b"w2", b"w1")
    };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert!(
        out.to_clients.is_empty(),
        "nobody is waiting for y: {out:?}"
    );
    sim.absorb(out);
    assert_eq!(sim.s.who_has("y"), Vec::<String>::new());
    sim.get(b"c1", 2, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("y", 4)]));
}

#[test]
fn zero_threads_count_as_one() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 0, t0);
    assert_eq!(s.workers(t0)[0].nthreads, 1);
    let names: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(5),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"w1").len(), 2);
}

#[test]
fn counts_follow_a_computation() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (0, 0, 0));
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (3, 1, 0));
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (3, 1, 1));
    let w = &s.workers(t0)[0];
    assert_eq!((w.keys, w.nbytes, w.processing), (1, 8, 1));
    report(&mut s, b"w1", vec![done_held("y", 8)], t0);
    assert_eq!(s.held_count(), 2);
    assert_eq!(s.workers(t0)[0].nbytes, 16);
    report(&mut s, b"w1", vec![done("z", Value::Int(7))], t0);
    assert_eq!(s.graph_count(), 0);
}

// ----- resilience ----------------------------------------------------------------------------

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

#[test]
fn lost_kept_key_is_recomputed_with_its_released_inputs_recursively() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &chain_abc(), "c", true);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c", 14)]));
    assert!(sim.was_released("a") && sim.was_released("b"));
    assert_eq!(sim.s.task_count(), 1, "only the kept c is left");
    let dead = holder_of(&sim.s, "c", &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert_eq!(
        compute_keys(&out, alive),
        vec!["a"],
        "a, then b, then c: only a can run first"
    );
    assert_eq!(
        sim.s.task_count(),
        3,
        "a and b are re-created from c's lineage"
    );
    sim.absorb(out);
    let before = sim.dispatched.len();
    sim.run();
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(again, vec!["b", "c"], "recomputed in order");
    assert_eq!(sim.s.who_has("c"), vec![addr(alive)]);
    assert_eq!(sim.s.task_count(), 1, "a and b are released again");
    assert_eq!(sim.held_anywhere(), vec!["c"]);
    sim.get(b"c1", 2, &Graph::new(), "c", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("c", 14)]));
}

/// A lost kept key over many released inputs (some referenced twice) is recomputed with all
/// of them re-created from its lineage, each once.
#[test]
fn lost_kept_wide_task_is_recomputed_with_its_released_inputs() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let n = 60;
    let mut g = independent(n);
    let mut refs: Vec<Node> = (0..n).map(|i| key(format!("a{i}"))).collect();
    refs.extend((0..n).step_by(3).map(|i| key(format!("a{i}"))));
    g.insert("total", task("sum", (list(refs),)));
    sim.get(b"c1", 1, &g, "total", true);
    sim.run();
    // a_i = i + 1: every one once, every third twice.
    let expected: i64 =
        (1..=n as i64).sum::<i64>() + (0..n as i64).step_by(3).map(|i| i + 1).sum::<i64>();
    assert_eq!(sim.result(b"c1", 1), ints(&[("total", expected)]));
    assert_eq!(sim.s.task_count(), 1, "only the kept total is left");
    let dead = holder_of(&sim.s, "total", &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(
        sim.s.task_count(),
        n + 1,
        "the inputs are re-created from the lineage"
    );
    let before = sim.dispatched.len();
    sim.absorb(out);
    sim.run();
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        again.len(),
        n + 1,
        "each input once, then the total: {again:?}"
    );
    assert_eq!(again.last(), Some(&"total"));
    sim.get(b"c1", 2, &Graph::new(), "total", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("total", expected)]));
}

#[test]
fn lost_kept_end_of_a_long_released_chain_is_recomputed() {
    let n = 300;
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("k0", task("inc", (0,)));
    for i in 1..n {
        g.insert(format!("k{i}"), task("inc", (key(format!("k{}", i - 1)),)));
    }
    let last = format!("k{}", n - 1);
    sim.get(b"c1", 1, &g, last.as_str(), true);
    sim.run();
    assert_eq!(sim.s.task_count(), 1);
    let dead = holder_of(&sim.s, &last, &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(compute_keys(&out, alive), vec!["k0"]);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.times_dispatched("k0"), 2);
    assert_eq!(sim.times_dispatched(&last), 2);
    assert_eq!(sim.s.task_count(), 1);
    sim.get(b"c1", 2, &Graph::new(), last.as_str(), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[(last.as_str(), n as i64)]));
}

#[test]
fn lost_intermediate_needed_by_a_waiting_task_is_recomputed_from_released_inputs() {
    // a -> x -> z <- p: x is done on w1 (a released), z waits for p on w2; w1 dies.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("a", task("add", (1, 2)));
    g.insert("x", task("inc", (key("a"),)));
    g.insert("p", task("inc", (100,)));
    g.insert("z", task("add", (key("x"), key("p"))));
    sim.get(b"c1", 1, &g, "z", false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "a on w1");
    assert_eq!(sim.pending[b"w2".as_slice()].len(), 1, "p on w2");
    assert!(sim.step(), "w1 runs a");
    assert!(sim.step(), "w1 runs x");
    assert!(sim.was_released("a"), "a went once x was done");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(compute_keys(&out, b"w2"), vec!["a"], "a is re-created");
    assert!(out.to_clients.is_empty());
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 105)]));
    assert_eq!(sim.times_dispatched("a"), 2);
    assert_eq!(sim.times_dispatched("x"), 2);
    assert_eq!(sim.times_dispatched("p"), 1);
    assert_eq!(sim.times_dispatched("z"), 1);
    sim.assert_clean();
}

#[test]
fn lost_input_of_a_task_fetching_it_elsewhere_is_recomputed() {
    // x is on w1 only; y was sent to w2 (which lacks x and must fetch it); w1 dies before
    // w2 fetched it. y is taken back, x recomputed, y sent again.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.worker(b"w3", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    assert!(sim.step(), "w1 runs x");
    let y_on = sim
        .pending
        .keys()
        .find(|r| sim.pending[*r].iter().any(|t| t.key == "y"))
        .cloned()
        .expect("y was sent");
    let y_task = sim.pending.remove(&y_on).unwrap();
    assert_eq!(
        listed(&y_task[0].who_has),
        vec![("x".to_string(), vec![addr(b"w1")])]
    );
    sim.kill(b"w1");
    for r in [b"w2", b"w3"] {
        heartbeat(&mut sim.s, r, t0 + secs(9));
    }
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    for r in [b"w2", b"w3"] {
        assert!(
            msgs_to(&out, r).contains(&ToWorker::PeerGone {
                address: addr(b"w1")
            }),
            "{} is told w1 is gone: {out:?}",
            name(r)
        );
    }
    assert_eq!(all_compute_keys(&out), vec!["x"], "x first; y waits");
    sim.absorb(out);
    // The worker that had y reports its fetch failed (late, after y was taken back).
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 is gone".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut sim.s, &y_on, f, sim.now);
    assert!(out.to_clients.is_empty(), "a stale failure: {out:?}");
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.times_dispatched("x"), 2);
    sim.assert_clean();
}

#[test]
fn task_on_workers_that_died_allowed_failures_times_fails_as_worker_died() {
    let mut s = state_with(Config {
        allowed_failures: 2,
        ..test_config()
    });
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // w1 dies under a0: a0 is retried elsewhere.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    heartbeat(&mut s, b"w3", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert!(out.to_clients.is_empty(), "one death is allowed: {out:?}");
    assert_eq!(compute_keys(&out, b"w2"), vec!["a0"]);
    // w2 dies under it too: a0 is the suspect.
    heartbeat(&mut s, b"w3", t0 + secs(20));
    let out = tick(&mut s, t0 + secs(20));
    assert_eq!(addresses(&s, t0 + secs(20)), vec![addr(b"w3")]);
    assert!(
        out.compute.is_empty(),
        "a0 is not tried a third time: {out:?}"
    );
    let e = error_of(&out, b"c1", 1).expect("the client is told");
    assert_eq!(e.kind, "worker_died");
    assert_eq!(e.key.as_deref(), Some("a0"));
    assert!(e.message.contains("a0") && e.message.contains('2'), "{e:?}");
    assert_eq!(s.task_count(), 0, "nothing is left of the computation");
    assert_eq!(s.graph_count(), 0);
    // The survivor still serves, and the key can be submitted again.
    let out = get(
        &mut s,
        b"c1",
        2,
        &independent(1),
        "a0",
        false,
        t0 + secs(20),
    );
    assert_eq!(compute_keys(&out, b"w3"), vec!["a0"]);
    let out = report(
        &mut s,
        b"w3",
        vec![done("a0", Value::Int(1))],
        t0 + secs(20),
    );
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("a0", 1)])));
}

#[test]
fn deaths_fail_dependents_too_and_keep_other_work() {
    let mut sim = Sim::with(Config {
        allowed_failures: 1,
        ..test_config()
    });
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", &["inc"], 1);
    // x runs on w1 (the only add worker) and its dependent y needs inc on w2.
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.get(b"c2", 1, &independent(1), "a0", false);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    let e = sim.error(b"c1", 1);
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref(), e.dependency.as_deref()),
        ("dependency_failed", Some("y"), Some("x"))
    );
    assert!(e.message.contains("workers that died"), "{e:?}");
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("a0", 1)]));
    sim.assert_clean();
}

#[test]
fn goodbyes_do_not_count_as_deaths() {
    let mut s = state_with(Config {
        allowed_failures: 1,
        ..test_config()
    });
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3", b"w4"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // Three workers leave gracefully while running a0: it just moves on.
    for (gone, next) in [(b"w1", b"w2"), (b"w2", b"w3"), (b"w3", b"w4")] {
        let out = goodbye(&mut s, gone, t0);
        assert!(out.to_clients.is_empty(), "{out:?}");
        assert_eq!(compute_keys(&out, next), vec!["a0"]);
    }
    let out = report(&mut s, b"w4", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("a0", 1)])));
    // With allowed_failures 1, one real death is enough.
    register(&mut s, b"w5", FUNCS, 1, t0);
    let out = get(
        &mut s,
        b"c1",
        2,
        &independent(2),
        keys_of(&["a1"]),
        false,
        t0,
    );
    let on = if compute_keys(&out, b"w4").is_empty() {
        b"w5"
    } else {
        b"w4"
    };
    let other: &[u8] = if on == b"w4" { b"w5" } else { b"w4" };
    heartbeat(&mut s, other, t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    let e = error_of(&out, b"c1", 2).expect("a1 failed");
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("worker_died", Some("a1"))
    );
}

#[test]
fn silent_client_has_its_computations_cancelled() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    s.on_client_seen(b"c1", t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    s.on_client_seen(b"c2", t0);
    let mut g = Graph::new();
    g.insert("q", task("inc", (41,)));
    let out = get(&mut s, b"c2", 1, &g, "q", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["q"]);
    // c2 keeps talking (its pings); c1 says nothing.
    s.on_client_seen(b"c2", t0 + secs(2));
    let out = tick(&mut s, t0 + secs(3));
    assert!(
        out.is_empty(),
        "exactly the timeout is not over it: {out:?}"
    );
    assert_eq!(s.graph_count(), 2);
    s.on_client_seen(b"c2", t0 + secs(4));
    let out = tick(&mut s, t0 + secs(4));
    // c1 is told (in case it still reads), and nobody else.
    let e = error_of(&out, b"c1", 1).expect("c1 is told");
    assert_eq!(e.kind, "cancelled");
    assert!(e.message.contains("--client-timeout"), "{e:?}");
    assert_eq!(out.to_clients.len(), 1, "{out:?}");
    assert_eq!(
        s.graph_count(),
        1,
        "c1's computation is cancelled, c2's is not"
    );
    assert_eq!(s.task_count(), 2, "x (running) and q are left");
    // x's late result is dropped, y and z never run.
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0 + secs(4));
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert!(out.compute.is_empty(), "{out:?}");
    let out = report(&mut s, b"w1", vec![done("q", Value::Int(42))], t0 + secs(5));
    assert_eq!(result_of(&out, b"c2", 1), Some(ints(&[("q", 42)])));
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (0, 0, 0));
}

#[test]
fn silent_client_keeps_what_others_want_and_kept_keys() {
    let mut sim = Sim::with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    // c1 keeps a0 from before; then starts z, which shares x with c2's q.
    sim.s.on_client_seen(b"c1", t0);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    sim.get(b"c1", 2, &xyz(), "z", false);
    sim.s.on_client_seen(b"c2", t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c2", 1, &g, "q", false);
    sim.now = t0 + secs(5);
    sim.s.on_client_seen(b"c2", sim.now);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    assert_eq!(sim.s.graph_count(), 1);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103)]));
    assert!(results_in(&sim.to_clients, b"c1", 2).is_none());
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(
        sim.held_anywhere(),
        vec!["a0"],
        "kept keys are not the client's to lose"
    );
}

#[test]
fn silent_client_with_a_parked_get_is_forgotten() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    s.on_client_seen(b"c1", t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    tick(&mut s, t0 + secs(4));
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(5));
    assert!(
        out.compute.is_empty(),
        "the parked get was dropped: {out:?}"
    );
    assert_eq!(s.task_count(), 0);
}

#[test]
fn retiring_worker_hands_its_unique_data_over_then_is_let_go() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1")]);
    let out = retiring(&mut s, b"w1", t0);
    assert_eq!(
        msgs_to(&out, b"w2"),
        vec![ToWorker::Replicate {
            who_has: vec![("a0".to_string(), hash_in(&s, "a0"), vec![addr(b"w1")])]
        }]
    );
    assert!(msgs_to(&out, b"w1").is_empty(), "not retired yet: {out:?}");
    assert_eq!(s.workers(t0).len(), 2, "still listed while its data moves");
    // No new work for the retiring worker.
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("b{i}"), task("inc", (i,)));
    }
    let out = get(
        &mut s,
        b"c1",
        2,
        &g,
        keys_of(&["b0", "b1", "b2", "b3"]),
        false,
        t0,
    );
    assert!(compute_keys(&out, b"w1").is_empty(), "{out:?}");
    assert_eq!(compute_keys(&out, b"w2").len(), 2);
    // Heartbeats and unrelated reports do not let it go early.
    let out = heartbeat(&mut s, b"w1", t0 + secs(1));
    assert!(out.is_empty(), "{out:?}");
    // w2 has copied a0: w1 is told it retired and is removed; a0 stays, on w2.
    let out = acquired(&mut s, b"w2", "a0", 8, t0 + secs(1));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert!(msgs_to(&out, b"w2").contains(&ToWorker::PeerGone {
        address: addr(b"w1")
    }));
    assert!(out.release.is_empty(), "nothing is released: {out:?}");
    assert!(
        compute_keys(&out, b"w2").is_empty(),
        "a0 is not recomputed: {out:?}"
    );
    assert_eq!(addresses(&s, t0 + secs(1)), vec![addr(b"w2")]);
    assert_eq!(s.who_has("a0"), vec![addr(b"w2")]);
    // And it is gathered from there.
    let out = get(&mut s, b"c1", 3, &Graph::new(), "a0", false, t0 + secs(1));
    assert_eq!(
        out.to_workers,
        vec![(
            b"w2".to_vec(),
            ToWorker::GetData(GetDataBody {
                request: 1,
                keys: vec!["a0".into()]
            })
        )]
    );
}

#[test]
fn retiring_worker_finishes_its_running_tasks_first() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    let out = retiring(&mut s, b"w1", t0);
    assert!(msgs_to(&out, b"w1").is_empty(), "still running a0: {out:?}");
    assert!(out.compute.is_empty(), "a0 is not taken away: {out:?}");
    let out = report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("a0", 1)])));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(addresses(&s, t0), vec![addr(b"w2")]);
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
}

#[test]
fn retire_asked_by_a_client_is_answered_once_done() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 7, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    assert!(out.to_clients.is_empty(), "not yet: {out:?}");
    assert_eq!(msgs_to(&out, b"w2").len(), 1, "a replicate: {out:?}");
    let out = acquired(&mut s, b"w2", "a0", 8, t0);
    assert_eq!(
        out.to_clients,
        vec![(
            b"admin".to_vec(),
            ToClient::Retired {
                request: 7,
                address: addr(b"w1")
            }
        )]
    );
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(s.who_has("a0"), vec![addr(b"w2")]);
    // An idle worker holding nothing goes at once.
    let mut out = Outbox::default();
    register(&mut s, b"w3", FUNCS, 1, t0);
    s.on_retire(b"admin", 8, &addr(b"w3"), t0, &mut out);
    s.on_flushed(&mut out);
    assert_eq!(msgs_to(&out, b"w3"), vec![ToWorker::Retired]);
    assert!(matches!(
        out.to_clients.as_slice(),
        [(_, ToClient::Retired { request: 8, .. })]
    ));
}

#[test]
fn retire_of_an_unknown_address_is_an_error() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 3, "tcp://nowhere:1", t0, &mut out);
    s.on_flushed(&mut out);
    let e = error_of(&out, b"admin", 3).expect("an error");
    assert_eq!(e.kind, "unknown_worker");
    assert!(e.message.contains("tcp://nowhere:1"), "{e:?}");
    assert!(out.to_workers.is_empty());
    assert_eq!(s.workers(t0).len(), 1);
}

#[test]
fn retirement_deadline_lets_the_worker_go_even_if_its_data_did_not_move() {
    let mut s = state_with(Config {
        retire_timeout: secs(5),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let out = retiring(&mut s, b"w1", t0);
    assert_eq!(msgs_to(&out, b"w2").len(), 1, "{out:?}");
    // w2 never manages to copy a0.
    for t in [2, 4] {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        assert!(msgs_to(&out, b"w1").is_empty(), "{out:?}");
        assert!(
            !msgs_to(&out, b"w2")
                .iter()
                .any(|m| matches!(m, ToWorker::Replicate { .. })),
            "the copy is asked for once: {out:?}"
        );
    }
    let out = tick(&mut s, t0 + secs(5));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(addresses(&s, t0 + secs(5)), vec![addr(b"w2")]);
    // a0 had lineage: it is computed again rather than lost.
    assert_eq!(compute_keys(&out, b"w2"), vec!["a0"]);
}

#[test]
fn retirement_moves_data_again_when_the_copying_worker_dies() {
    // A scattered key (no lineage: it cannot be recomputed) on retiring w1. The worker asked
    // to copy it dies before it did: the key must be asked of another worker.
    let mut s = state();
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("k".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    assert_eq!(
        out.put_data.keys().collect::<Vec<_>>(),
        vec![&b"w1".to_vec()]
    );
    report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    let out = retiring(&mut s, b"w1", t0);
    let first = if msgs_to(&out, b"w2").is_empty() {
        b"w3"
    } else {
        b"w2"
    };
    let other: &[u8] = if first == b"w2" { b"w3" } else { b"w2" };
    let out = goodbye(&mut s, first, t0 + secs(1));
    let mut asked = msgs_to(&out, other);
    for t in 2..5 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, other, t0 + secs(t));
        asked.extend(msgs_to(&tick(&mut s, t0 + secs(t)), other));
    }
    assert!(
        asked.contains(&ToWorker::Replicate {
            who_has: vec![("k".to_string(), hash_in(&s, "k"), vec![addr(b"w1")])]
        }),
        "k is asked of {} once {} is gone: {asked:?}",
        name(other),
        name(first)
    );
}

#[test]
fn peer_gone_is_broadcast_to_the_remaining_workers() {
    let mut s = state();
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = goodbye(&mut s, b"w2", t0);
    let gone = ToWorker::PeerGone {
        address: addr(b"w2"),
    };
    assert_eq!(msgs_to(&out, b"w1"), vec![gone.clone()]);
    assert_eq!(msgs_to(&out, b"w3"), vec![gone]);
    assert!(msgs_to(&out, b"w2").is_empty());
    // And when one dies silently.
    heartbeat(&mut s, b"w1", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert_eq!(
        out.to_workers,
        vec![(
            b"w1".to_vec(),
            ToWorker::PeerGone {
                address: addr(b"w3")
            }
        )]
    );
}

#[test]
fn worker_back_with_a_new_identity_keeps_wanted_data_and_drops_the_rest() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &chain_abc(), "c", true, t0);
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("c", Value::Int(14))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("c", 14)])));
    assert_eq!(s.task_count(), 1);
    // The worker process restarts (new id, same address, same sled store) on a new route,
    // holding c, a key nobody wants any more (b), and junk.
    let has = vec![
        info(&s, "c", 8),
        KeyInfo {
            key: "b".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::from("b")),
        },
        KeyInfo {
            key: "junk".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::from("junk")),
        },
    ];
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has,
    };
    let out = send(&mut s, b"w1-reborn", msg, t0 + secs(1));
    assert!(
        out.compute.is_empty(),
        "c is held: nothing to recompute: {out:?}"
    );
    // b and junk, unknown now, are adopted for the grace period (a client might resubmit
    // or gather them), c is used as it is.
    assert!(released(&out, b"w1-reborn").is_empty(), "{out:?}");
    let w = s.workers(t0 + secs(1));
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].worker_id.as_str(), w[0].pid, w[0].keys),
        ("id-w1-reborn", 777, 3)
    );
    assert_eq!(s.who_has("c"), vec![addr(b"w1")]);
    assert_eq!(s.task_count(), 3, "c, and the adopted b and junk");
    // Messages from the old route are not taken for the new worker.
    let out = heartbeat(&mut s, b"w1", t0 + secs(1));
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
    // Unclaimed, b and junk go after the grace period; c stays (kept).
    heartbeat(&mut s, b"w1-reborn", t0 + secs(62));
    let out = tick(&mut s, t0 + secs(62));
    let mut rel = released(&out, b"w1-reborn");
    rel.sort();
    assert_eq!(rel, vec!["b", "junk"]);
    assert_eq!(s.task_count(), 1, "the adopted values were dropped");
}

#[test]
fn worker_back_with_a_new_identity_while_others_recompute_its_data() {
    // Same, but another worker is around: whatever was started to replace the data is not
    // kept twice, and nothing is left behind once the kept key is released.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &chain_abc(), "c", true);
    sim.run();
    sim.worker(b"w2", FUNCS, 1);
    let kept = sim.stores[b"w1".as_slice()].clone();
    // w1 restarts: its store survives (sled), its route and id do not.
    sim.kill(b"w1");
    sim.stores.insert(b"w1".to_vec(), kept);
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![info(&sim.s, "c", 8)],
    };
    let out = send(&mut sim.s, b"w1", msg, t0 + secs(1));
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.s.who_has("c"), vec![addr(b"w1")]);
    sim.get(b"c1", 2, &Graph::new(), "c", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("c", 14)]));
    let mut out = Outbox::default();
    sim.s.on_release(b"c1", 3, vec!["c".into()], &mut out);
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    sim.assert_clean();
}

#[test]
fn worker_joining_mid_computation_takes_work_at_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(10),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(compute_keys(&out, b"w1").len(), 2, "w1 is full");
    let out = register(&mut s, b"w2", FUNCS, 2, t0);
    assert_eq!(
        compute_keys(&out, b"w2").len(),
        4,
        "w2 fills its slots at once"
    );
}

#[test]
fn lost_scattered_input_fails_the_waiting_client_naming_the_key() {
    // s is scattered (no lineage) on w1; t = inc(s) runs on w2, which must fetch s. w1 dies:
    // s cannot be recomputed, and the client waiting on t is told so.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &[], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("s".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("s", 8)], t0);
    let mut g = Graph::new();
    g.insert("t", task("inc", (key("s"),)));
    let out = get(&mut s, b"c1", 2, &g, "t", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    let e = error_of(&out, b"c1", 2).expect("the client is told");
    assert_eq!(e.kind, "dependency_failed", "{e:?}");
    assert_eq!(e.key.as_deref(), Some("t"), "{e:?}");
    assert_eq!(e.dependency.as_deref(), Some("s"), "{e:?}");
    assert!(e.message.contains("scatter"), "{e:?}");
    // Late report of t's fetch failing changes nothing.
    let f = TaskFailed {
        key: "t".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "gone".into(),
        missing: Some("s".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0 + secs(11));
    assert!(out.to_clients.is_empty(), "{out:?}");
}

#[test]
fn lost_key_computed_from_a_lost_scattered_input_fails_naming_the_key() {
    // c = inc(s) is kept, s scattered; both live on w1 only, which dies. c cannot be rebuilt:
    // a client asking for c then gets an error, not a hang or a wrong value.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("s".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("s", 8)], t0);
    let mut g = Graph::new();
    g.insert("c", task("inc", (key("s"),)));
    g.insert("d", task("inc", (key("c"),)));
    let out = get(&mut s, b"c1", 2, &g, "c", true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c"]);
    report(&mut s, b"w1", vec![done("c", Value::Int(6))], t0);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    tick(&mut s, t0 + secs(11));
    let out = get(&mut s, b"c1", 3, &g, "d", false, t0 + secs(11));
    let e = error_of(&out, b"c1", 3).expect("an error, not a hang");
    assert!(
        ["lost", "dependency_failed", "missing_key"].contains(&e.kind.as_str()),
        "{e:?}"
    );
    assert!(e.key.is_some(), "{e:?}");
}

#[test]
fn worker_back_with_a_new_identity_keeps_the_scattered_data_it_still_holds() {
    // A worker restarts (same address, sled store) before the heartbeat timeout, still
    // holding a scattered key: that copy is the one everybody wants, and must be kept.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("k".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    assert_eq!(s.who_has("k"), vec![addr(b"w1")]);
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![info(&s, "k", 8)],
    };
    let out = send(&mut s, b"w1-reborn", msg, t0 + secs(1));
    assert!(
        !released(&out, b"w1-reborn").contains(&"k".to_string()),
        "k is released from the only worker holding it: {out:?}"
    );
    assert_eq!(s.who_has("k"), vec![addr(b"w1")]);
}

#[test]
fn lost_worker_keys_with_other_holders_are_kept_not_recomputed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("y2", task("inc", (key("x"),)));
    g.insert("t", task("add", (key("y"), key("y2"))));
    get(&mut s, b"c1", 1, &g, "t", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let msg = FromWorker::Report(ReportBody {
        done: vec![done_held("y", 8)],
        failed: Vec::new(),
        acquired: vec![info(&s, "x", 8)],
    });
    send(&mut s, b"w2", msg, t0);
    assert_eq!(s.who_has("x"), vec![addr(b"w1"), addr(b"w2")]);
    // w1 dies: x is still on w2, so nothing is recomputed and y2 (on w2) is not disturbed.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert!(out.compute.is_empty(), "{out:?}");
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    let out = report(&mut s, b"w2", vec![done_held("y2", 8)], t0 + secs(11));
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
    let out = report(&mut s, b"w2", vec![done("t", Value::Int(8))], t0 + secs(11));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("t", 8)])));
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
}

#[test]
fn retire_request_is_answered_when_the_worker_goes_away_first() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 7, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    assert!(out.to_clients.is_empty());
    // w1 goes before w2 copied a0 (killed, or a second SIGTERM): the admin must hear of it.
    let out = goodbye(&mut s, b"w1", t0 + secs(1));
    let answered = out.to_clients.iter().any(|(c, m)| {
        c == b"admin"
            && matches!(
                m,
                ToClient::Retired { request: 7, .. } | ToClient::Error { request: 7, .. }
            )
    });
    assert!(answered, "the retire request is left unanswered: {out:?}");
}

#[test]
fn every_retire_request_for_a_worker_is_answered() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin1", 1, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    s.on_retire(b"admin2", 2, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    let out = acquired(&mut s, b"w2", "a0", 8, t0);
    for (client, request) in [(b"admin1", 1), (b"admin2", 2)] {
        assert!(
            out.to_clients.iter().any(|(c, m)| c == client
                && matches!(m, ToClient::Retired { request: r, .. } if *r == request)),
            "{} is not answered: {out:?}",
            name(client)
        );
    }
}

#[test]
fn deaths_count_only_against_tasks_that_may_have_been_running() {
    // boom kills its workers; a0 is only queued behind it (one thread each). After two deaths
    // boom fails as worker_died -- a0, which never ran, must not.
    let mut s = state_with(Config {
        allowed_failures: 2,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut boom = Graph::new();
    boom.insert("boom", task("inc", (0,)));
    get(&mut s, b"c1", 1, &boom, "boom", false, t0);
    let out = get(&mut s, b"c2", 1, &independent(1), "a0", false, t0);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["a0"],
        "queued behind boom on w1"
    );
    // w1 dies; w2 joins and gets both again (boom first), then dies too.
    let out = register(&mut s, b"w2", FUNCS, 1, t0 + secs(5));
    assert!(out.compute.is_empty());
    let out = tick(&mut s, t0 + secs(11));
    assert_eq!(compute_keys(&out, b"w2"), vec!["boom", "a0"]);
    register(&mut s, b"w3", FUNCS, 1, t0 + secs(15));
    let out = tick(&mut s, t0 + secs(16));
    let e = error_of(&out, b"c1", 1).expect("boom fails");
    assert_eq!(e.kind, "worker_died");
    assert!(
        error_of(&out, b"c2", 1).is_none(),
        "a0 never ran, yet: {:?}",
        error_of(&out, b"c2", 1)
    );
}

#[test]
fn forgetting_a_very_long_chain_does_not_overflow_the_stack() {
    // Each task keeps its lineage (and, through it, its inputs'): forgetting the last link of
    // a long chain drops the whole lineage at once.
    let n = 100_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("l0", task("inc", (0,)));
    for i in 1..n {
        g.insert(format!("l{i}"), task("inc", (key(format!("l{}", i - 1)),)));
    }
    let last = format!("l{}", n - 1);
    sim.get(b"c1", 1, &g, last.as_str(), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[(last.as_str(), n as i64)]));
    sim.assert_clean();
}
