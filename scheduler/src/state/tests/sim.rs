//! The simulated cluster: a [`SchedulerState`] plus stand-in workers that do whatever they
//! are told. They evaluate the tasks they are sent with a few test functions (`add`, `inc`,
//! `sum`, `big`), fetch inputs from each other, answer `get_data` and obey `release`.
//!
//! The simulation is strict: a task sent before its inputs are held where the scheduler says,
//! or a key released while a task still needs it, makes the test fail.
//!
//! What a worker does is behind three seams, so that real worker state machines can later
//! take the stand-ins' place: [`Sim::absorb`] hands them what the scheduler sent (tasks,
//! releases, other messages), [`Sim::run_tasks`] and [`Sim::answer_get_data`] make the messages
//! a worker sends back, which [`Sim::deliver`] hands to the scheduler.

use super::*;

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

/// An argument that must be an int.
fn int(v: &Value) -> i64 {
    v.as_int()
        .unwrap_or_else(|| panic!("expected an int, got {v:?}"))
}

/// The functions a simulated worker offers (`special` is `inc` under another name).
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
    pub(super) stores: BTreeMap<Route, HashMap<String, Value>>,
    /// Tasks sent and not yet run, per worker.
    pub(super) pending: BTreeMap<Route, Vec<ComputeTask>>,
    /// `get_data` requests not yet answered.
    pub(super) get_data: Vec<(Route, u64, Vec<String>)>,
    /// Everything sent to clients.
    pub(super) to_clients: Vec<(Route, ToClient)>,
    /// Every task sent, in order.
    pub(super) dispatched: Vec<(Route, String)>,
    /// Every key released, in order.
    pub(super) released: Vec<(Route, String)>,
    /// Other messages to workers (welcome, ...).
    pub(super) to_workers: Vec<(Route, ToWorker)>,
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
                ToWorker::GetData { request, keys } => self.get_data.push((route, request, keys)),
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
    pub(super) fn step(&mut self) -> bool {
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
                let msg = self.answer_get_data(&route, request, keys);
                self.deliver(&route, msg);
            }
            return true;
        }
        let Some(route) = self.pending.keys().next().cloned() else {
            return false;
        };
        let tasks = self.pending.remove(&route).unwrap_or_default();
        let msg = self.run_tasks(&route, tasks);
        self.deliver(&route, msg);
        true
    }

    /// Hands a message of the worker on `route` to the scheduler, and takes in its answer.
    fn deliver(&mut self, route: &[u8], msg: FromWorker) {
        let out = send(&mut self.s, route, msg, self.now);
        self.absorb(out);
    }

    /// What the worker on `route` answers to `get_data` `request` for `keys`: the values it
    /// holds, the others as missing.
    fn answer_get_data(&self, route: &Route, request: u64, keys: Vec<String>) -> FromWorker {
        let store = &self.stores[route];
        let mut items = Vec::new();
        let mut missing = Vec::new();
        for k in keys {
            match store.get(&k) {
                Some(v) => items.push(KeyData::inline(k, v.clone())),
                None => missing.push(k),
            }
        }
        FromWorker::Data {
            request,
            items,
            missing,
        }
    }

    /// The worker on `route` runs `tasks` in order, fetching their inputs from the holders
    /// named (as a worker would), and returns its report.
    fn run_tasks(&mut self, route: &Route, tasks: Vec<ComputeTask>) -> FromWorker {
        let mut done_list = Vec::new();
        let mut acquired = Vec::new();
        for t in tasks {
            let node = (*t.node).clone();
            for dep in node.dependencies() {
                if self.stores[route].contains_key(&dep) {
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
                self.stores.get_mut(route).unwrap().insert(dep, value);
            }
            let store = &self.stores[route];
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
            self.stores.get_mut(route).unwrap().insert(t.key, value);
        }
        FromWorker::Report {
            done: done_list,
            failed: Vec::new(),
            acquired,
        }
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
    pub(super) fn times_dispatched(&self, key: &str) -> usize {
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

    pub(super) fn was_released(&self, key: &str) -> bool {
        self.released.iter().any(|(_, k)| k == key)
    }

    /// Nothing is left in the scheduler nor on any worker.
    pub(super) fn assert_clean(&self) {
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
