//! Clients: the handshake, the computations they ask for (`get`, and `gather`, a `get` of held
//! keys; parked while no worker is registered), the keys they let go (`release`), and clients
//! going away or falling silent (their computations are cancelled).

use super::*;
use futures::FutureOptions;

/// One `get` in flight.
#[derive(Debug)]
pub(super) struct GraphState {
    pub(super) client: Route,
    pub(super) request: u64,
    pub(super) outputs: Vec<TaskId>,
    pub(super) values: HashMap<String, Value>,
    pub(super) keep_results: bool,
    /// How far it is (sent to the client when it asked, `progress`).
    pub(super) progress: Progress,
    /// When it was submitted.
    pub(super) submitted: Instant,
}

/// How far a computation is (`zask computations`, the dashboard, and the client when it
/// asked: `progress` in its `get`).
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) done: u64,
    pub(super) failed: u64,
    pub(super) total: u64,
    /// The ids of the tasks it made (`first..first + total`): only those are counted (a
    /// task re-created from lineage later is not one of them).
    pub(super) first: u64,
    /// Whether the client asked to be sent it.
    pub(super) send: bool,
    /// When it was last sent, and whether it changed since.
    pub(super) sent: Option<Instant>,
    pub(super) changed: bool,
}

impl Progress {
    pub(super) fn new(created: (u64, u64), send: bool) -> Progress {
        Progress {
            done: 0,
            failed: 0,
            total: created.1 - created.0,
            first: created.0,
            send,
            sent: None,
            changed: true,
        }
    }
}

/// How often a computation's progress is sent at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// A client's request to compute `keys` of `graph` (a `get`, parsed).
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The client's request id, for the reply.
    pub request: u64,
    /// The graph to compute from (empty for a `gather`: the keys are held already).
    pub graph: Graph,
    /// Each node's own hash, by index, as the decoder computed them (empty: computed at
    /// submission).
    pub hashes: Vec<DefHash>,
    /// The keys wanted: one key, or (nested) lists of keys.
    pub keys: Keys,
    /// Leave the results on the workers.
    pub keep_results: bool,
    /// Send `progress` messages while it runs.
    pub progress: bool,
}

/// A `get` waiting for the first worker to register.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) client: Route,
    pub(super) get: GetRequest,
    pub(super) deadline: Instant,
    /// A submission of futures (with its options), not a `get`.
    pub(super) future: Option<FutureOptions>,
}

impl Parked {
    /// It will not be submitted: its client is told `error` (a `get` by an `error` reply,
    /// submitted futures by an `erred` event for each key).
    pub(super) fn fail(self, error: &ErrorInfo, out: &mut Outbox) {
        if self.future.is_some() {
            futures::fail_keys(&self.client, self.get.keys.flatten(), error, out);
            return;
        }
        out.to_clients.push((
            self.client,
            ToClient::Error {
                request: self.get.request,
                error: error.clone(),
            },
        ));
    }
}

impl SchedulerState {
    /// A client says hello in `protocol`: welcomed, with this scheduler's id (by which it
    /// notices a restart), when that is the protocol spoken here; refused with
    /// `version_mismatch` otherwise.
    pub fn on_hello(&mut self, client: &[u8], request: u64, protocol: u32, out: &mut Outbox) {
        let reply = if protocol == PROTOCOL_VERSION {
            ToClient::Welcome {
                request,
                protocol: PROTOCOL_VERSION,
                scheduler_id: self.id.clone(),
            }
        } else {
            ToClient::Error {
                request,
                error: ErrorInfo::new(
                    ErrorKind::VersionMismatch,
                    format!(
                        "client speaks protocol {protocol}, scheduler speaks \
                         {PROTOCOL_VERSION}; use the same zask version"
                    ),
                ),
            }
        };
        out.to_clients.push((client.to_vec(), reply));
    }

    /// The client on `route` is alive (any message counts).
    pub fn on_client_seen(&mut self, route: &[u8], now: Instant) {
        match self.clients_seen.get_mut(route) {
            Some(t) => *t = now,
            None => {
                self.clients_seen.insert(route.to_vec(), now);
            }
        }
    }

    /// Cancels the computations of clients silent for longer than `client_timeout`, telling
    /// them (a client that does not ping, but still reads, learns why nothing came).
    pub(super) fn expire_clients(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.config.client_timeout;
        let silent = |seen: Option<&Instant>| {
            seen.is_some_and(|t| now.saturating_duration_since(*t) > timeout)
        };
        let mut gone: Vec<Route> = self
            .graphs
            .values()
            .map(|g| &g.client)
            .chain(self.parked.iter().map(|p| &p.client))
            .chain(self.futures.routes())
            .filter(|c| silent(self.clients_seen.get(*c)))
            .cloned()
            .collect();
        gone.sort();
        gone.dedup();
        for client in gone {
            log::warn!("a client silent for over {timeout:?} is gone; cancelling its computations");
            let error = ErrorInfo::new(
                ErrorKind::Cancelled,
                format!(
                    "cancelled: the scheduler heard nothing from this client for over \
                     {timeout:?} (zask-scheduler --client-timeout); a client waiting for results \
                     must send a message (a `status` ping) more often than that"
                ),
            );
            self.cancel_client(&client, Some(error), out);
        }
        // Forget clients with nothing in flight that have been silent a while.
        let busy: HashSet<&Route> = self
            .graphs
            .values()
            .map(|g| &g.client)
            .chain(self.futures.routes())
            .collect();
        let stale: Vec<Route> = self
            .clients_seen
            .iter()
            .filter(|(c, t)| !busy.contains(c) && now.saturating_duration_since(**t) > timeout)
            .map(|(c, _)| c.clone())
            .collect();
        for c in stale {
            self.clients_seen.remove(&c);
            self.forget_idle_client(&c);
        }
    }

    /// A client lets `keys` go: they are no longer kept, and are released once nothing else
    /// needs them.
    pub fn on_release(&mut self, client: &[u8], request: u64, keys: Vec<String>, out: &mut Outbox) {
        let mut unknown = Vec::new();
        for key in &keys {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                unknown.push(key.clone());
                continue;
            };
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.kept = false;
            }
            self.adopted.remove(&tid);
            self.check_release(tid, out);
        }
        out.to_clients.push((
            client.to_vec(),
            ToClient::Released {
                request,
                keys,
                unknown,
            },
        ));
    }

    /// A client asks for `keys` of `graph` (already parsed).
    pub fn on_get(&mut self, client: &[u8], get: GetRequest, now: Instant, out: &mut Outbox) {
        if self.workers.is_empty() {
            log::info!("no workers yet; request {} waits for one", get.request);
            self.parked.push(Parked {
                client: client.to_vec(),
                get,
                deadline: now + self.config.no_workers_timeout,
                future: None,
            });
            return;
        }
        let request = get.request;
        let mut get = get;
        match self.submit(client, &mut get, now, out) {
            Ok(()) => self.schedule(out),
            Err(error) => out
                .to_clients
                .push((client.to_vec(), ToClient::Error { request, error })),
        }
    }

    /// A client gathers held `keys` (scattered, or kept by `keep_results`): a `get` with no
    /// graph, answered with their values.
    pub fn on_gather(
        &mut self,
        client: &[u8],
        request: u64,
        keys: Vec<String>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let get = GetRequest {
            request,
            graph: Graph::new(),
            hashes: Vec::new(),
            keys: Keys::Many(keys.into_iter().map(Keys::One).collect()),
            keep_results: false,
            progress: false,
        };
        self.on_get(client, get, now, out);
    }

    /// A worker registered: the parked gets are submitted.
    pub(super) fn unpark(&mut self, now: Instant, out: &mut Outbox) {
        for p in std::mem::take(&mut self.parked) {
            match p.future {
                Some(options) => self.submit_future(&p.client, p.get, options, out),
                None => self.on_get(&p.client, p.get, now, out),
            }
        }
        self.schedule(out);
    }

    /// Fails the parked gets that waited `no_workers_timeout` for a worker.
    pub(super) fn expire_parked(&mut self, now: Instant, out: &mut Outbox) {
        let (expired, kept): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.deadline);
        self.parked = kept;
        for p in expired {
            let error = ErrorInfo::new(
                ErrorKind::NoWorkers,
                format!(
                    "no worker registered within {:?}; start zask-worker pointing at the \
                     scheduler's address_to_workers",
                    self.config.no_workers_timeout
                ),
            );
            p.fail(&error, out);
        }
    }

    /// A client went away: cancel what only it wanted, and drop its futures.
    pub fn on_client_gone(&mut self, client: &[u8]) {
        let mut out = Outbox::default();
        self.cancel_client(client, None, &mut out);
    }

    /// A computation leaves `graphs` (done, failed or cancelled): its progress stops being
    /// tracked.
    pub(super) fn end_graph(&mut self, graph: &GraphState) {
        if graph.progress.send {
            self.tracked = self.tracked.saturating_sub(1);
        }
    }

    /// Task `tid` of rank `rank` finished (`failed` or done): counted in its computation's
    /// progress, if the computation made it.
    pub(super) fn count_progress(&mut self, tid: TaskId, rank: u64, failed: bool) {
        if let Some(p) = self.progress_of(tid, rank) {
            if failed {
                p.failed += 1;
            } else {
                p.done += 1;
            }
            p.changed = true;
        }
    }

    /// Task `tid` of rank `rank`, counted done, was lost and is computed again: no longer
    /// counted.
    pub(super) fn uncount_progress(&mut self, tid: TaskId, rank: u64) {
        if let Some(p) = self.progress_of(tid, rank) {
            p.done = p.done.saturating_sub(1);
            p.changed = true;
        }
    }

    /// The progress of the computation that made task `tid` (of rank `rank`), if it is in
    /// flight.
    fn progress_of(&mut self, tid: TaskId, rank: u64) -> Option<&mut Progress> {
        if self.graphs.is_empty() {
            return None;
        }
        let p = &mut self.graphs.get_mut(&assign::graph_of(rank))?.progress;
        (p.first..p.first + p.total).contains(&tid.0).then_some(p)
    }

    /// Sends the progress of computations whose clients asked for it, at most every
    /// `PROGRESS_INTERVAL` each, when it changed.
    pub(super) fn send_progress(&mut self, now: Instant, out: &mut Outbox) {
        if self.tracked == 0 {
            return;
        }
        for g in self.graphs.values_mut() {
            let p = &mut g.progress;
            if !p.send {
                continue;
            }
            let due = p
                .sent
                .is_none_or(|t| now.saturating_duration_since(t) >= PROGRESS_INTERVAL);
            if !p.changed || !due {
                continue;
            }
            p.changed = false;
            p.sent = Some(now);
            out.to_clients.push((
                g.client.clone(),
                ToClient::Progress {
                    request: g.request,
                    done: p.done.min(p.total),
                    failed: p.failed.min(p.total - p.done.min(p.total)),
                    total: p.total,
                },
            ));
        }
    }

    /// Cancels computation `g`, answering its client with `error` when there is one to give;
    /// what only it wanted is released. False if no such computation is in flight.
    pub(super) fn cancel_graph(
        &mut self,
        g: GraphId,
        error: Option<ErrorInfo>,
        out: &mut Outbox,
    ) -> bool {
        let Some(graph) = self.graphs.remove(&g) else {
            return false;
        };
        if let Some(error) = error {
            out.to_clients.push((
                graph.client.clone(),
                ToClient::Error {
                    request: graph.request,
                    error,
                },
            ));
        }
        self.end_graph(&graph);
        self.drop_graph_claims(g, &graph.outputs, false);
        true
    }

    /// Cancels the computations of `client` (what only they wanted is released), answering
    /// each with `error` when there is one to give.
    fn cancel_client(&mut self, client: &[u8], error: Option<ErrorInfo>, out: &mut Outbox) {
        self.clients_seen.remove(client);
        self.drop_client_futures(client, error.as_ref(), out);
        let mine: Vec<GraphId> = self
            .graphs
            .iter()
            .filter(|(_, g)| g.client == client)
            .map(|(id, _)| *id)
            .collect();
        for g in mine {
            self.cancel_graph(g, error.clone(), out);
        }
        let (theirs, others): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.client == client);
        self.parked = others;
        if let Some(error) = &error {
            for p in theirs {
                p.fail(error, out);
            }
        }
    }
}
