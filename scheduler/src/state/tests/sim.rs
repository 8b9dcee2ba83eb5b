//! The simulated cluster: a [`SchedulerState`] plus real worker state machines
//! ([`WorkerState`], with memory stores and the standard library of functions), joined by
//! message passing on the test's thread: no sockets, no clock, deterministic.
//!
//! The simulation is strict: a task sent before its inputs are held where the scheduler says
//! (or coming to its worker), or a key released while a task still needs it, makes the test
//! fail; and the workers are the real ones, so what the scheduler tells them is carried out
//! exactly as a worker process would (fetching from peers, refusing stale copies, reporting
//! failures).

use super::*;
use zask_core::frames;
use zask_core::protocol::{ComputeBody, PeerRequest, ReleaseBody};
use zask_worker::executor::run_now;
use zask_worker::state::FetchRequest;
use zask_worker::{MemoryStore, Registry, WorkerConfig, WorkerState};

/// Lets `d` pass in `sim`: every live worker heartbeats at the end of it (a dead one does
/// not), the workers notice their overdue fetches, and the scheduler ticks.
pub(super) fn heartbeat_all(sim: &mut Sim, d: Duration) {
    sim.now += d;
    let routes: Vec<Route> = sim.workers.keys().cloned().collect();
    for route in routes {
        let out = heartbeat(&mut sim.s, &route, sim.now);
        sim.absorb(out);
    }
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
}

/// The functions simulated workers run: the standard library, plus `big` (a value of `n`
/// bytes) and `special` (`inc` under another name, for workers that alone offer it).
pub(super) fn sim_registry() -> Registry {
    let mut registry = Registry::with_stdlib();
    registry.register("big", |n: i64| {
        Value::Bytes(vec![7u8; n.max(0) as usize].into())
    });
    registry.register("special", |x: i64| x + 1);
    registry
}

/// A message a worker sent, with its blobs.
type Sent = (FromWorker, Vec<Vec<u8>>);

/// A scheduler plus real worker state machines ([`WorkerState`], with memory stores), joined
/// by message passing on this thread: no sockets, no clock, deterministic. The scheduler's
/// messages to a worker are delivered at once, but for `compute`s, which wait in `pending`
/// until the worker's turn comes (`step`), and `get_data`s, answered at the next step.
/// Fetches between workers are served by the peer's state machine on the spot; a fetch from a
/// dead peer is never answered (the fetching worker's timeout decides).
pub(super) struct Sim {
    pub(super) s: SchedulerState,
    pub(super) now: Instant,
    /// The live workers, by route.
    pub(super) workers: BTreeMap<Route, WorkerState>,
    /// What every worker runs.
    registry: Registry,
    /// `compute`s sent and not yet delivered, per worker.
    pub(super) pending: BTreeMap<Route, Vec<ComputeTask>>,
    /// Messages for a worker that wait behind its pending `compute`s (a connection delivers
    /// in order).
    held_back: BTreeMap<Route, Vec<(u64, ToWorker)>>,
    /// The sequence number of each task in `pending` (tasks numbered per worker as they are
    /// sent): a held-back message goes after the tasks numbered below its mark.
    pending_seq: BTreeMap<Route, Vec<u64>>,
    /// Tasks sent to each worker so far (the next sequence number).
    sent_tasks: BTreeMap<Route, u64>,
    /// Whether a worker may report a task failed for a lost input (`missing_dependency`):
    /// only where the test kills workers. Anywhere else it means the scheduler sent a task
    /// before its inputs were where it said, and the test fails.
    pub(super) lost_inputs_expected: bool,
    /// `get_data` requests not yet delivered.
    pub(super) get_data: Vec<(Route, u64, Vec<String>)>,
    /// Messages workers sent that the scheduler has not taken in yet.
    outgoing: BTreeMap<Route, Vec<Sent>>,
    /// Everything sent to clients.
    pub(super) to_clients: Vec<(Route, ToClient)>,
    /// Future events sent to clients, in order.
    pub(super) events: Vec<(Route, zask_core::protocol::KeyEvent)>,
    /// Every task sent, in order.
    pub(super) dispatched: Vec<(Route, String)>,
    /// The addresses of workers killed silently (see [`Sim::kill`]).
    dead: std::collections::BTreeSet<String>,
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
            workers: BTreeMap::new(),
            registry: sim_registry(),
            pending: BTreeMap::new(),
            held_back: BTreeMap::new(),
            pending_seq: BTreeMap::new(),
            sent_tasks: BTreeMap::new(),
            lost_inputs_expected: false,
            get_data: Vec::new(),
            outgoing: BTreeMap::new(),
            to_clients: Vec::new(),
            events: Vec::new(),
            dispatched: Vec::new(),
            dead: Default::default(),
            released: Vec::new(),
            to_workers: Vec::new(),
        }
    }

    /// Starts a worker on `route` offering `functions`: it registers at once.
    pub(super) fn worker(&mut self, route: &[u8], functions: &[&str], nthreads: u32) {
        let config = WorkerConfig {
            worker_id: format!("id-{}", name(route)),
            address: addr(route),
            pid: 4242,
            nthreads,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            // Liveness is the tests' to decide (`heartbeat`): simulated workers never
            // heartbeat on their own.
            heartbeat_interval: Duration::from_secs(1 << 30),
            fetch_timeout: Duration::from_secs(10),
            retire_timeout: Duration::from_secs(60),
        };
        let mut worker = WorkerState::new(config, Box::new(MemoryStore::new()));
        worker.on_start(self.now);
        self.workers.insert(route.to_vec(), worker);
        self.pump(route);
        self.deliver_outgoing(route);
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

    /// The worker on `route` dies silently: its data, queued tasks and unsent messages are
    /// gone.
    pub(super) fn kill(&mut self, route: &[u8]) {
        if self.workers.remove(route).is_some() {
            self.dead.insert(addr(route));
        }
        self.pending.remove(route);
        self.pending_seq.remove(route);
        self.held_back.remove(route);
        self.outgoing.remove(route);
        self.get_data.retain(|(r, _, _)| r != route);
    }

    /// The worker on `route` restarts on its store (a disk store survives a restart): a new
    /// state machine, called `worker_id`, with the old values and nothing else, which has
    /// not registered yet (the test sends its registration).
    pub(super) fn restart_on_store(&mut self, route: &[u8], worker_id: &str) {
        let Some(old) = self.workers.remove(route) else {
            return;
        };
        let config = WorkerConfig {
            worker_id: worker_id.to_string(),
            ..old.config().clone()
        };
        let store = old.into_store();
        self.kill(route);
        self.workers
            .insert(route.to_vec(), WorkerState::new(config, store));
    }

    /// The worker on `route`, restarted (`restart_on_store`), registers as it would at its
    /// start, offering what its store holds.
    pub(super) fn rejoin(&mut self, route: &[u8]) {
        if let Some(w) = self.workers.get_mut(route) {
            w.on_start(self.now);
            self.pump(route);
            self.deliver_outgoing(route);
        }
    }

    /// Whether the worker on `route` holds `key`.
    pub(super) fn holds(&self, route: &[u8], key: &str) -> bool {
        self.workers
            .get(route)
            .is_some_and(|w| w.store().contains(key))
    }

    /// The worker on `route` loses every value it holds (its store is wiped under it).
    pub(super) fn wipe(&mut self, route: &[u8]) {
        if let Some(w) = self.workers.get_mut(route) {
            for held in w.store().all_held() {
                w.on_scheduler_message(
                    ToWorker::Release(ReleaseBody {
                        keys: vec![held.key],
                    }),
                    &[],
                    self.now,
                );
            }
        }
    }

    fn route_of(&self, address: &str) -> Option<Route> {
        self.workers.keys().find(|r| addr(r) == address).cloned()
    }

    /// Takes in what the scheduler sent, checking each task can run where it was sent.
    pub(super) fn absorb(&mut self, mut out: Outbox) {
        // In the order the scheduler's loop sends them: other messages, releases, scattered
        // values, tasks.
        for (route, msg) in out.to_workers.drain(..) {
            match msg {
                ToWorker::GetData(GetDataBody { request, keys }) => {
                    self.get_data.push((route, request, keys))
                }
                other => {
                    self.to_workers.push((route.clone(), other.clone()));
                    self.deliver(&route, other);
                }
            }
        }
        out.settle_cancels();
        let mut cancel: Vec<(Route, Vec<String>)> = out
            .cancel
            .drain()
            .map(|(r, keys)| (r, keys.into_iter().map(|(k, _)| k).collect()))
            .collect();
        cancel.sort();
        for (route, keys) in cancel {
            self.deliver(&route, ToWorker::Cancel { keys });
        }
        let mut release: Vec<(Route, Vec<String>)> = out.release.drain().collect();
        release.sort();
        for (route, keys) in release {
            for k in &keys {
                self.released.push((route.clone(), k.clone()));
            }
            self.deliver(&route, ToWorker::Release(ReleaseBody { keys }));
        }
        let mut put_data: Vec<(Route, Vec<KeyData>)> = out.put_data.drain().collect();
        put_data.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, items) in put_data {
            self.deliver(&route, ToWorker::PutData { items });
        }
        let mut compute: Vec<(Route, Vec<ComputeTask>)> = out.compute.drain().collect();
        compute.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, tasks) in compute {
            for t in tasks {
                self.dispatched.push((route.clone(), t.key.clone()));
                if !self.workers.contains_key(&route) {
                    continue; // a dead worker: the message is lost
                }
                self.check_inputs(&route, &t);
                if !self.pending.contains_key(&route) {
                    // (A test took the tasks pending here: their numbers go with them.)
                    self.pending_seq.remove(&route);
                }
                let seq = self.sent_tasks.entry(route.clone()).or_insert(0);
                self.pending_seq
                    .entry(route.clone())
                    .or_default()
                    .push(*seq);
                *seq += 1;
                self.pending.entry(route.clone()).or_default().push(t);
            }
        }
        self.to_clients.append(&mut out.to_clients);
        let mut events: Vec<(Route, Vec<zask_core::protocol::KeyEvent>)> =
            out.events.drain().collect();
        events.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, evs) in events {
            self.events
                .extend(evs.into_iter().map(|e| (route.clone(), e)));
        }
    }

    /// The future events sent to `client` since the last call.
    pub(super) fn take_events(&mut self, client: &[u8]) -> Vec<zask_core::protocol::KeyEvent> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|(r, _)| r == client);
        self.events = others;
        mine.into_iter().map(|(_, e)| e).collect()
    }

    /// Hands a message to a live worker (what it answers waits in `outgoing`), or holds it
    /// back behind the worker's pending `compute`s.
    fn deliver(&mut self, route: &Route, msg: ToWorker) {
        if self.pending.get(route).is_some_and(|p| !p.is_empty()) {
            // (Behind the tasks sent so far: a `compute` sent later comes after it.)
            let mark = self.sent_tasks.get(route).copied().unwrap_or(0);
            self.held_back
                .entry(route.clone())
                .or_default()
                .push((mark, msg));
            return;
        }
        self.deliver_now(route, msg);
    }

    fn deliver_now(&mut self, route: &Route, msg: ToWorker) {
        if let Some(w) = self.workers.get_mut(route) {
            w.on_scheduler_message(msg, &[], self.now);
            self.pump(route);
        }
    }

    /// Every input of `t` is on `route`, coming there (a task it was given, or one sent to it
    /// ahead of this one), or on a live worker the scheduler named for it.
    fn check_inputs(&self, route: &Route, t: &ComputeTask) {
        let node = (*t.node).clone();
        for dep in node.dependencies() {
            // (Of the definition the scheduler has for it now.)
            let hash = hash_in(&self.s, &dep);
            let worker = &self.workers[route];
            let held = worker.store().held(&dep).is_some_and(|h| h.hash == hash);
            if held || worker.task_hash(&dep) == Some(hash) {
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
            // (A holder that died silently, unknown to the scheduler yet, cannot be checked:
            // the worker's fetch from it fails, and the scheduler deals with that.)
            let found = holders.iter().any(|a| match self.route_of(a) {
                None => self.dead.contains(a.as_ref()),
                Some(r) => {
                    let held = self.workers[&r].store().held(&dep);
                    held.is_some_and(|h| h.hash == hash)
                }
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

    /// Lets the worker on `route` act until it has nothing more to do now: runs the jobs it
    /// dispatches (for real), serves its fetches from the peers' state machines, and keeps
    /// what it sends the scheduler in `outgoing`. Returns whether it did anything.
    fn pump(&mut self, route: &[u8]) -> bool {
        let mut did = false;
        loop {
            let Some(w) = self.workers.get_mut(route) else {
                return did;
            };
            w.on_tick(self.now);
            let out = w.take_outbox();
            let busy = !out.jobs.is_empty() || !out.fetches.is_empty();
            did |= busy || !out.to_scheduler.is_empty();
            self.outgoing
                .entry(route.to_vec())
                .or_default()
                .extend(out.to_scheduler);
            for batch in out.jobs {
                let results = run_now(batch, &self.registry);
                if let Some(w) = self.workers.get_mut(route) {
                    w.on_jobs_done(results);
                }
            }
            for fetch in out.fetches {
                self.serve_fetch(route, fetch);
            }
            if out.leave {
                // It leaves (retired, or refused): goodbye, and it is gone.
                if let Some(mut w) = self.workers.remove(route) {
                    w.on_close();
                    let out = w.take_outbox();
                    self.outgoing
                        .entry(route.to_vec())
                        .or_default()
                        .extend(out.to_scheduler);
                }
                self.pending.remove(route);
                self.pending_seq.remove(route);
                self.held_back.remove(route);
                return true;
            }
            if !busy {
                return did;
            }
        }
    }

    /// The peer a fetch asks (if alive) answers it from its store, at once.
    fn serve_fetch(&mut self, route: &[u8], fetch: FetchRequest) {
        let Some(peer_route) = self.route_of(&fetch.peer) else {
            return; // A dead peer never answers.
        };
        let Some(peer) = self.workers.get_mut(&peer_route) else {
            return;
        };
        let request = PeerRequest::GetData(GetDataBody {
            request: fetch.request,
            keys: fetch.keys.iter().map(|k| k.to_string()).collect(),
        });
        peer.on_peer_request(route.to_vec(), Ok(request));
        let out = peer.take_outbox();
        assert!(
            out.jobs.is_empty() && out.fetches.is_empty() && out.to_scheduler.is_empty(),
            "serving a peer only answers it"
        );
        for reply in out.peer_replies {
            if let Some(w) = self.workers.get_mut(&reply.route) {
                w.on_peer_reply(&fetch.peer, reply.reply, &reply.blobs, self.now);
            }
        }
    }

    /// Hands the scheduler what the worker on `route` sent, as its loop would (values inline,
    /// durations fixed at 10 µs so that policy does not depend on this machine's speed).
    /// Returns whether there was anything.
    fn deliver_outgoing(&mut self, route: &[u8]) -> bool {
        let messages = self.outgoing.remove(route).unwrap_or_default();
        let any = !messages.is_empty();
        for (mut msg, blobs) in messages {
            match &mut msg {
                FromWorker::Report(ReportBody { done, failed, .. }) => {
                    for f in failed.iter() {
                        assert!(
                            f.kind != "missing_dependency" || self.lost_inputs_expected,
                            "{} was sent to {} before its inputs were there: {}",
                            f.key,
                            name(route),
                            f.message
                        );
                    }
                    let mut unpacker = frames::Unpacker::new(&blobs);
                    for d in done.iter_mut() {
                        d.duration_us = 10;
                        if let Some(data) = &mut d.data {
                            unpacker.inline(data).expect("a report's value");
                        }
                    }
                }
                FromWorker::Data(DataBody { items, .. }) => {
                    let mut unpacker = frames::Unpacker::new(&blobs);
                    for item in items.iter_mut() {
                        unpacker.inline(&mut item.data).expect("a data value");
                    }
                }
                _ => {}
            }
            let out = send(&mut self.s, route, msg, self.now);
            self.absorb(out);
        }
        any
    }

    /// One step: delivers pending `get_data`s, or else hands the scheduler what some worker
    /// sent, or else gives one worker its pending tasks and lets it run them. Returns false
    /// when there was nothing to do.
    pub(super) fn step(&mut self) -> bool {
        // (Small states only: the scan would make the big simulations quadratic.)
        if self.s.task_count() <= 5_000 {
            assert_eq!(
                self.s.held_count(),
                self.s.held_by_scan(),
                "the held keys' counter"
            );
            assert_eq!(
                self.s.stats.counts,
                self.s.counts_by_scan(),
                "the tasks' counts by state"
            );
            let assigned: usize = self.s.workers.values().map(|w| w.processing.len()).sum();
            assert_eq!(
                assigned as u64, self.s.stats.counts.processing,
                "tasks assigned to workers, against tasks processing"
            );
        }
        if !self.get_data.is_empty() {
            for (route, request, keys) in std::mem::take(&mut self.get_data) {
                self.deliver(&route, ToWorker::GetData(GetDataBody { request, keys }));
                self.deliver_outgoing(&route);
            }
            return true;
        }
        let routes: Vec<Route> = self.workers.keys().cloned().collect();
        for route in &routes {
            self.pump(route);
        }
        let routes: Vec<Route> = self.outgoing.keys().cloned().collect();
        for route in &routes {
            if self.deliver_outgoing(route) {
                return true;
            }
        }
        // Messages held back behind tasks that were lost on the way (a test took them).
        let unblocked = self
            .held_back
            .keys()
            .find(|r| !self.pending.contains_key(*r))
            .cloned();
        if let Some(route) = unblocked {
            for (_, msg) in self.held_back.remove(&route).unwrap_or_default() {
                self.deliver_now(&route, msg);
            }
            self.deliver_outgoing(&route);
            return true;
        }
        let Some(route) = self.pending.keys().next().cloned() else {
            return false;
        };
        // In the order they were sent: the tasks sent before each held-back message, then it.
        let tasks = self.pending.remove(&route).unwrap_or_default();
        let seqs = self.pending_seq.remove(&route).unwrap_or_default();
        let mut tasks = seqs.into_iter().zip(tasks).peekable();
        for (mark, msg) in self.held_back.remove(&route).unwrap_or_default() {
            let mut batch = Vec::new();
            while let Some((_, t)) = tasks.next_if(|(seq, _)| *seq < mark) {
                batch.push(t);
            }
            if !batch.is_empty() {
                self.deliver_now(&route, ToWorker::Compute(ComputeBody { tasks: batch }));
            }
            self.deliver_now(&route, msg);
        }
        let rest: Vec<ComputeTask> = tasks.map(|(_, t)| t).collect();
        if !rest.is_empty() {
            self.deliver_now(&route, ToWorker::Compute(ComputeBody { tasks: rest }));
        }
        self.deliver_outgoing(&route);
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
    pub(super) fn times_dispatched(&self, key: &str) -> usize {
        self.dispatched.iter().filter(|(_, k)| k == key).count()
    }

    /// Keys held by any simulated worker, sorted.
    pub(super) fn held_anywhere(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .workers
            .values()
            .flat_map(|w| w.store().all_held().into_iter().map(|k| k.key))
            .collect();
        keys.sort();
        keys
    }

    pub(super) fn was_released(&self, key: &str) -> bool {
        self.released.iter().any(|(_, k)| k == key)
    }

    /// Nothing is left in the scheduler nor on any worker.
    pub(super) fn assert_clean(&self) {
        for (route, w) in &self.workers {
            assert_eq!(
                (w.task_count(), w.fetch_count()),
                (0, 0),
                "{} still has tasks or fetches",
                name(route)
            );
        }
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
