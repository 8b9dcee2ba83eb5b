//! Futures: tasks clients add to the live graph one submission at a time (`submit`), the keys
//! each client holds futures for, the news pushed to them (`events`), and letting go
//! (`drop_futures`, `cancel`, a client gone).
//!
//! A future is a claim, like a computation's on its outputs: each client holding a future of a
//! key adds one to the task's `waiters` (a client counts its own handles and says when it
//! dropped the last, so the scheduler keeps a set per client, not a count per handle). Unlike
//! a `get`, nothing is sent back but news: `done` (the value stays on its worker until the
//! client gathers it), `erred` (with the error), `cancelled`, `lost` (its only copy went away;
//! it is being computed again and a `done` follows). A submission is validated like a `get`
//! (same keys, same definitions, shared with every other client), and may refer to keys of
//! earlier submissions that run or are held.

use super::*;
use zask_core::protocol::{ComputationSummary, KeyEvent, KeyStatus, SubmitItem};

/// Retries a submission may ask for at most (more are taken as this many: a task that
/// always fails must fail in the end).
pub(crate) const MAX_RETRIES: u32 = 1_000;

/// A client's id inside this scheduler (for the futures it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientId(u64);

/// The futures every client holds.
#[derive(Debug, Default)]
pub(super) struct Futures {
    ids: HashMap<Route, ClientId>,
    clients: HashMap<ClientId, FutureClient>,
    next: u64,
    /// Per task, the clients holding a future of it.
    wanted: HashMap<TaskId, SmallVec<[ClientId; 1]>>,
    /// Runs left for tasks submitted with `retries` (a failure uses one up and runs the task
    /// again).
    retries: HashMap<TaskId, u32>,
}

/// One client's futures.
#[derive(Debug)]
struct FutureClient {
    route: Route,
    /// The keys it holds futures of, with what it was last told of each.
    keys: HashMap<TaskId, Told>,
    /// How many of `keys` it was told are done, and failed.
    done: u64,
    failed: u64,
    /// When it first submitted (while it holds futures).
    since: Option<Instant>,
}

/// What a client was last told of a key it holds a future of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Nothing,
    Done,
    Failed,
}

impl FutureClient {
    /// It is told `status` of `tid` (one of its keys): its counts follow.
    fn tell(&mut self, tid: TaskId, status: KeyStatus) {
        let now = match status {
            KeyStatus::Done => Told::Done,
            KeyStatus::Erred => Told::Failed,
            _ => Told::Nothing,
        };
        if let Some(told) = self.keys.get_mut(&tid) {
            let before = std::mem::replace(told, now);
            self.count(before, now);
        }
    }

    /// `tid` is no longer one of its keys.
    fn remove(&mut self, tid: TaskId) -> bool {
        match self.keys.remove(&tid) {
            Some(told) => {
                self.count(told, Told::Nothing);
                true
            }
            None => false,
        }
    }

    fn count(&mut self, before: Told, now: Told) {
        match before {
            Told::Done => self.done = self.done.saturating_sub(1),
            Told::Failed => self.failed = self.failed.saturating_sub(1),
            Told::Nothing => {}
        }
        match now {
            Told::Done => self.done += 1,
            Told::Failed => self.failed += 1,
            Told::Nothing => {}
        }
    }
}

/// How one submission's tasks are run (`submit` options).
#[derive(Debug, Clone, Default)]
pub(super) struct FutureOptions {
    pub(super) priority: i32,
    pub(super) retries: u32,
    /// Where they may run (`functions::restriction` of the `workers` listed).
    pub(super) restriction: Option<String>,
}

impl Futures {
    /// How many clients hold a future of `tid`.
    pub(super) fn holders(&self, tid: TaskId) -> usize {
        if self.wanted.is_empty() {
            return 0;
        }
        self.wanted.get(&tid).map_or(0, |c| c.len())
    }

    /// How many clients hold futures.
    pub(super) fn holding_clients(&self) -> usize {
        self.clients.values().filter(|c| !c.keys.is_empty()).count()
    }

    /// The clients holding futures.
    pub(super) fn routes(&self) -> impl Iterator<Item = &Route> {
        self.clients
            .values()
            .filter(|c| !c.keys.is_empty())
            .map(|c| &c.route)
    }

    /// A task is forgotten: no future can name it any more.
    pub(super) fn forget(&mut self, tid: TaskId) {
        if !self.retries.is_empty() {
            self.retries.remove(&tid);
        }
        if self.wanted.is_empty() {
            return;
        }
        for c in self.wanted.remove(&tid).unwrap_or_default() {
            if let Some(client) = self.clients.get_mut(&c) {
                client.remove(tid);
            }
        }
    }

    /// Takes one of `tid`'s retries, if it has one left.
    pub(super) fn take_retry(&mut self, tid: TaskId) -> bool {
        match self.retries.get_mut(&tid) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

impl SchedulerState {
    /// A client submits tasks as futures: each item is validated and added on its own (an
    /// invalid one fails its keys with `erred`), then the ready ones are placed. While no
    /// worker is registered the items wait, as a `get` does.
    pub fn on_submit(
        &mut self,
        client: &[u8],
        request: u64,
        items: Vec<SubmitItem>,
        now: Instant,
        out: &mut Outbox,
    ) {
        out.to_clients
            .push((client.to_vec(), ToClient::Submitted { request }));
        let c = self.client_id(client);
        if let Some(fc) = self.futures.clients.get_mut(&c) {
            if fc.keys.is_empty() {
                fc.since = Some(now);
            }
        }
        for item in items {
            let options = FutureOptions {
                priority: item.priority,
                retries: item.retries,
                restriction: functions::restriction(&item.workers),
            };
            let get = GetRequest {
                request: 0,
                graph: item.graph.graph,
                hashes: item.graph.hashes,
                keys: Keys::Many(item.keys.into_iter().map(Keys::One).collect()),
                keep_results: false,
                progress: false,
            };
            if self.workers.is_empty() {
                self.parked.push(Parked {
                    client: client.to_vec(),
                    get,
                    deadline: now + self.config.no_workers_timeout,
                    future: Some(options),
                });
                continue;
            }
            self.submit_future(client, get, options, out);
        }
        self.schedule(out);
    }

    /// Adds one submission's tasks and records `client`'s futures of its keys.
    pub(super) fn submit_future(
        &mut self,
        client: &[u8],
        mut get: GetRequest,
        options: FutureOptions,
        out: &mut Outbox,
    ) {
        let keys = get.keys.flatten();
        let c = self.client_id(client);
        let restriction = options.restriction.as_deref();
        let created = match self.add_tasks(&mut get, options.priority, restriction, out) {
            Ok((_, created)) => created,
            Err(error) => {
                fail_keys(client, keys, &error, out);
                return;
            }
        };
        if options.retries > 0 {
            let retries = options.retries.min(MAX_RETRIES);
            for id in created.0..created.1 {
                self.futures.retries.insert(TaskId(id), retries);
            }
        }
        for key in keys {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                continue;
            };
            self.want(c, tid);
            let status = self.tasks.get(&tid).map(|t| t.status.clone());
            match status {
                Some(TaskStatus::Memory) => self.notify_client(c, tid, KeyStatus::Done, None, out),
                Some(TaskStatus::Erred(e)) => {
                    self.notify_client(c, tid, KeyStatus::Erred, Some(&e), out)
                }
                _ => {}
            }
        }
    }

    /// The client dropped its last future of `keys`: they go once nothing else needs them.
    pub fn on_drop_futures(&mut self, client: &[u8], keys: Vec<String>) {
        self.unpark_keys(client, &keys);
        let Some(&c) = self.futures.ids.get(client) else {
            return;
        };
        for key in keys {
            if let Some(&tid) = self.task_ids.get(key.as_str()) {
                self.unwant(c, tid);
            }
        }
    }

    /// The client cancels its futures of `keys`: dropped, and the client told `cancelled`
    /// for each; a task nobody else needs stops (see `check_release`).
    pub fn on_cancel(&mut self, client: &[u8], keys: Vec<String>, out: &mut Outbox) {
        self.unpark_keys(client, &keys);
        let c = self.futures.ids.get(client).copied();
        let route = client.to_vec();
        for key in keys {
            if let (Some(c), Some(&tid)) = (c, self.task_ids.get(key.as_str())) {
                self.unwant(c, tid);
            }
            if let Some(events) = batch_of(&mut out.events, &route) {
                events.push(KeyEvent {
                    key,
                    status: KeyStatus::Cancelled,
                    error: None,
                });
            }
        }
    }

    /// Takes `keys` out of `client`'s submissions still waiting for a worker (its futures of
    /// them were dropped or cancelled before they were made); a submission left with no key
    /// is dropped.
    fn unpark_keys(&mut self, client: &[u8], keys: &[String]) {
        if self.parked.is_empty() {
            return;
        }
        let gone: HashSet<&str> = keys.iter().map(String::as_str).collect();
        for p in self.parked.iter_mut() {
            if p.future.is_none() || p.client != client {
                continue;
            }
            let left: Vec<Keys> = p
                .get
                .keys
                .flatten()
                .into_iter()
                .filter(|k| !gone.contains(k.as_str()))
                .map(Keys::One)
                .collect();
            p.get.keys = Keys::Many(left);
        }
        self.parked
            .retain(|p| p.future.is_none() || !p.get.keys.flatten().is_empty());
    }

    /// Drops every future `client` holds (it went away). With an `error` (the client may
    /// still be listening: it was silent, or did not read), it is told that each of them
    /// failed.
    pub(super) fn drop_client_futures(
        &mut self,
        client: &[u8],
        error: Option<&ErrorInfo>,
        out: &mut Outbox,
    ) {
        let Some(c) = self.futures.ids.remove(client) else {
            return;
        };
        if let Some(error) = error {
            let held: Vec<TaskId> = self
                .futures
                .clients
                .get(&c)
                .map(|fc| fc.keys.keys().copied().collect())
                .unwrap_or_default();
            for tid in held {
                self.notify_client(c, tid, KeyStatus::Erred, Some(error), out);
            }
        }
        let Some(fc) = self.futures.clients.remove(&c) else {
            return;
        };
        for tid in fc.keys.into_keys() {
            self.futures.remove_holder(tid, c);
            self.lose_claim(tid);
        }
    }

    /// Forgets `client`'s entry if it holds no future (a client gone quiet).
    pub(super) fn forget_idle_client(&mut self, client: &[u8]) {
        if let Some(&c) = self.futures.ids.get(client) {
            if self
                .futures
                .clients
                .get(&c)
                .is_none_or(|fc| fc.keys.is_empty())
            {
                self.futures.ids.remove(client);
                self.futures.clients.remove(&c);
            }
        }
    }

    /// Tells every client holding a future of `tid` what happened to it.
    pub(super) fn notify(
        &mut self,
        tid: TaskId,
        status: KeyStatus,
        error: Option<&ErrorInfo>,
        out: &mut Outbox,
    ) {
        if self.futures.wanted.is_empty() {
            return;
        }
        let Some(clients) = self.futures.wanted.get(&tid).cloned() else {
            return;
        };
        for c in clients {
            self.notify_client(c, tid, status, error, out);
        }
    }

    /// Tells client `c` what happened to `tid`.
    fn notify_client(
        &mut self,
        c: ClientId,
        tid: TaskId,
        status: KeyStatus,
        error: Option<&ErrorInfo>,
        out: &mut Outbox,
    ) {
        let (Some(client), Some(t)) = (self.futures.clients.get_mut(&c), self.tasks.get(&tid))
        else {
            return;
        };
        client.tell(tid, status);
        if let Some(events) = batch_of(&mut out.events, &client.route) {
            events.push(KeyEvent {
                key: String::from(&*t.key),
                status,
                error: error.cloned(),
            });
        }
    }

    /// The scheduler is shutting down: every client is told its unfinished futures fail.
    pub(super) fn close_futures(&mut self, out: &mut Outbox) {
        let error = ErrorInfo::new(ErrorKind::ShuttingDown, "the scheduler is shutting down");
        let wanted: Vec<TaskId> = self.futures.wanted.keys().copied().collect();
        for tid in wanted {
            if self
                .tasks
                .get(&tid)
                .is_some_and(|t| !matches!(t.status, TaskStatus::Memory | TaskStatus::Erred(_)))
            {
                self.notify(tid, KeyStatus::Erred, Some(&error), out);
            }
        }
    }

    /// The id of the client at `route`, given at its first future.
    fn client_id(&mut self, route: &[u8]) -> ClientId {
        if let Some(&c) = self.futures.ids.get(route) {
            return c;
        }
        self.futures.next += 1;
        let c = ClientId(self.futures.next);
        self.futures.ids.insert(route.to_vec(), c);
        self.futures.clients.insert(
            c,
            FutureClient {
                route: route.to_vec(),
                keys: HashMap::default(),
                done: 0,
                failed: 0,
                since: None,
            },
        );
        c
    }

    /// Client `c` holds a future of `tid` (a claim on it, once per client).
    fn want(&mut self, c: ClientId, tid: TaskId) {
        let Some(client) = self.futures.clients.get_mut(&c) else {
            return;
        };
        if client.keys.contains_key(&tid) {
            return;
        }
        client.keys.insert(tid, Told::Nothing);
        self.futures.wanted.entry(tid).or_default().push(c);
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.waiters += 1;
            // A future claims an adopted value, as a `gather` does.
            if t.lineage.is_none() {
                self.adopted.remove(&tid);
            }
        }
    }

    /// Client `c` no longer holds a future of `tid`.
    fn unwant(&mut self, c: ClientId, tid: TaskId) {
        let Some(client) = self.futures.clients.get_mut(&c) else {
            return;
        };
        if !client.remove(tid) {
            return;
        }
        self.futures.remove_holder(tid, c);
        self.lose_claim(tid);
    }

    /// One claim on `tid` is gone; whether it can be forgotten is checked after the flush.
    fn lose_claim(&mut self, tid: TaskId) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.waiters = t.waiters.saturating_sub(1);
        }
        self.release_checks.push(tid);
    }
}

/// Tells `client` that its futures of `keys` failed with `error` (a submission that could not
/// be made).
pub(super) fn fail_keys(client: &[u8], keys: Vec<String>, error: &ErrorInfo, out: &mut Outbox) {
    if let Some(events) = batch_of(&mut out.events, client) {
        events.extend(keys.into_iter().map(|key| KeyEvent {
            key,
            status: KeyStatus::Erred,
            error: Some(error.clone()),
        }));
    }
}

impl Futures {
    /// `c` no longer holds a future of `tid`.
    fn remove_holder(&mut self, tid: TaskId, c: ClientId) {
        if let Some(holders) = self.wanted.get_mut(&tid) {
            holders.retain(|x| *x != c);
            if holders.is_empty() {
                self.wanted.remove(&tid);
            }
        }
    }
}

impl SchedulerState {
    /// The futures of each client holding some, as computations (`futures-N`), by client.
    pub(super) fn future_computations(&self, now: Instant) -> Vec<ComputationSummary> {
        let mut list: Vec<(ClientId, ComputationSummary)> = self
            .futures
            .clients
            .iter()
            .filter(|(_, fc)| !fc.keys.is_empty())
            .map(|(c, fc)| {
                let total = fc.keys.len() as u64;
                (
                    *c,
                    ComputationSummary {
                        id: format!("futures-{}", c.0),
                        kind: "futures".to_string(),
                        client: hex(&fc.route),
                        age_ms: fc
                            .since
                            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
                        total,
                        done: fc.done,
                        failed: fc.failed,
                        waiting: total.saturating_sub(fc.done + fc.failed),
                    },
                )
            })
            .collect();
        list.sort_by_key(|(c, _)| c.0);
        list.into_iter().map(|(_, s)| s).collect()
    }

    /// Cancels every future of client number `n` (`futures-N`), as if it had cancelled them
    /// itself; false if no client of that number holds futures (or waits to submit some).
    pub(super) fn cancel_client_futures(&mut self, n: u64, out: &mut Outbox) -> bool {
        let Some(fc) = self.futures.clients.get(&ClientId(n)) else {
            return false;
        };
        let route = fc.route.clone();
        let mut keys: Vec<String> = fc
            .keys
            .keys()
            .filter_map(|tid| self.tasks.get(tid).map(|t| String::from(&*t.key)))
            .collect();
        for p in &self.parked {
            if p.future.is_some() && p.client == route {
                keys.extend(p.get.keys.flatten());
            }
        }
        if keys.is_empty() {
            // (A client that held futures once, and holds none now: nothing in flight.)
            return false;
        }
        self.on_cancel(&route, keys, out);
        true
    }
}

/// `bytes` in lowercase hex (a client's routing id, for people).
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
