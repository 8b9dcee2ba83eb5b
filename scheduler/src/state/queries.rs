//! Queries: what clients and tests may read of the state (the workers, who holds a key, counts)
//! and the `status` and `workers` replies made of it.

use super::*;
use zask_core::protocol::{ComputationSummary, HeldKey, MAX_HELD_KEYS_LISTED};

impl SchedulerState {
    /// The registered workers, for clients and tests.
    pub fn workers(&self, now: Instant) -> Vec<WorkerSummary> {
        let mut list: Vec<WorkerSummary> = self
            .workers
            .values()
            .map(|w| w.summary(now, true))
            .collect();
        list.sort_by(|a, b| a.address.cmp(&b.address));
        list
    }

    /// The addresses of the workers holding `key` (empty when nobody does).
    pub fn who_has(&self, key: &str) -> Vec<String> {
        match self.task_ids.get(key).and_then(|id| self.tasks.get(id)) {
            Some(t) => self.holders(t),
            None => Vec::new(),
        }
    }

    /// The addresses of the workers holding `t`'s value, sorted.
    fn holders(&self, t: &TaskState) -> Vec<String> {
        let mut holders: Vec<String> = t
            .who_has
            .iter()
            .filter_map(|w| self.workers.get(w).map(|w| w.address.to_string()))
            .collect();
        holders.sort();
        holders
    }

    /// How many tasks (in flight or held) the scheduler tracks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// How many computations are in flight.
    pub fn graph_count(&self) -> usize {
        self.graphs.len()
    }

    /// How many keys are held on workers.
    pub fn held_count(&self) -> usize {
        self.held
    }

    /// A client asks how the scheduler is doing (`zask status`, and the ping of a client
    /// waiting for results): answered with its id and counts.
    pub fn on_status(&self, client: &[u8], request: u64, out: &mut Outbox) {
        out.to_clients.push((
            client.to_vec(),
            ToClient::Status {
                request,
                scheduler_id: self.id.clone(),
                workers: self.workers.len() as u64,
                tasks: self.task_count() as u64,
                graphs: self.graph_count() as u64,
                keys: self.held_count() as u64,
            },
        ));
    }

    /// A client asks for the registered workers (`zask workers`).
    pub fn on_list_workers(&self, client: &[u8], request: u64, now: Instant, out: &mut Outbox) {
        out.to_clients.push((
            client.to_vec(),
            ToClient::Workers {
                request,
                workers: self.workers(now),
            },
        ));
    }

    /// The computations in flight: the gets, oldest first, then each client's futures.
    pub fn computations(&self, now: Instant) -> Vec<ComputationSummary> {
        self.computations_upto(now, usize::MAX)
    }

    /// The first `limit` of [`SchedulerState::computations`] (only those are formatted).
    pub(super) fn computations_upto(&self, now: Instant, limit: usize) -> Vec<ComputationSummary> {
        let mut gets: Vec<(&GraphId, &GraphState)> = self.graphs.iter().collect();
        gets.sort_by_key(|(g, _)| **g);
        let mut list: Vec<ComputationSummary> = gets
            .into_iter()
            .take(limit)
            .map(|(g, graph)| {
                let p = &graph.progress;
                let done = p.done.min(p.total);
                let failed = p.failed.min(p.total - done);
                ComputationSummary {
                    id: format!("get-{}", g.0),
                    kind: "get".to_string(),
                    client: futures::hex(&graph.client),
                    age_ms: now.saturating_duration_since(graph.submitted).as_millis() as u64,
                    total: p.total,
                    done,
                    failed,
                    waiting: p.total - done - failed,
                }
            })
            .collect();
        if list.len() < limit {
            list.extend(self.future_computations(now));
            list.truncate(limit);
        }
        list
    }

    /// How many computations are in flight: gets, and clients holding futures.
    pub(super) fn computation_count(&self) -> usize {
        self.graphs.len() + self.futures.holding_clients()
    }

    /// A client asks for the computations in flight (`zask computations`).
    pub fn on_computations(&self, client: &[u8], request: u64, now: Instant, out: &mut Outbox) {
        out.to_clients.push((
            client.to_vec(),
            ToClient::Computations {
                request,
                computations: self.computations(now),
            },
        ));
    }

    /// A client cancels a computation by its id (`zask cancel`): a get fails with
    /// `cancelled` (its client is told), a client's futures are all cancelled (it is sent a
    /// `cancelled` event for each).
    pub fn on_cancel_computation(
        &mut self,
        client: &[u8],
        request: u64,
        id: String,
        out: &mut Outbox,
    ) {
        let number = |prefix: &str| id.strip_prefix(prefix)?.parse::<u64>().ok();
        let found = if let Some(n) = number("get-") {
            let error = ErrorInfo::new(
                ErrorKind::Cancelled,
                format!("computation {id} was cancelled (zask cancel)"),
            );
            self.cancel_graph(GraphId(n), Some(error), out)
        } else if let Some(n) = number("futures-") {
            self.cancel_client_futures(n, out)
        } else {
            false
        };
        let reply = if found {
            log::info!("computation {id} cancelled at a client's request");
            ToClient::ComputationCancelled { request, id }
        } else {
            ToClient::Error {
                request,
                error: ErrorInfo::new(
                    ErrorKind::UnknownComputation,
                    format!(
                        "no computation {id:?} is in flight (`zask computations` lists them: \
                         get-N or futures-N)"
                    ),
                ),
            }
        };
        out.to_clients.push((client.to_vec(), reply));
    }

    /// A client asks which keys are held, with their sizes and holders (`zask keys`): up to
    /// `limit` of them (at most [`MAX_HELD_KEYS_LISTED`]), sorted by key, which ones of more
    /// being unspecified (read from the workers' holdings, so the cost is that of the keys
    /// listed, not of every task).
    pub fn on_held_keys(&self, client: &[u8], request: u64, limit: u64, out: &mut Outbox) {
        let limit = limit.min(MAX_HELD_KEYS_LISTED);
        let mut seen: HashSet<TaskId> = HashSet::default();
        let mut keys = Vec::new();
        'workers: for w in self.workers.values() {
            for &tid in &w.has {
                if keys.len() as u64 >= limit {
                    break 'workers;
                }
                if !seen.insert(tid) {
                    continue;
                }
                if let Some(t) = self.tasks.get(&tid) {
                    keys.push(HeldKey {
                        key: String::from(&*t.key),
                        nbytes: t.nbytes,
                        holders: self.holders(t),
                    });
                }
            }
        }
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        out.to_clients.push((
            client.to_vec(),
            ToClient::HeldKeys {
                request,
                total: self.held as u64,
                keys,
            },
        ));
    }

    /// `held_count` counted the slow way, to check the counter in tests.
    #[cfg(test)]
    pub(super) fn held_by_scan(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| !t.who_has.is_empty())
            .count()
    }
}
