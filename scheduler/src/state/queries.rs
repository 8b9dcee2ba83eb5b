//! Queries: what clients and tests may read of the state (the workers, who holds a key, counts)
//! and the `status` and `workers` replies made of it.

use super::*;

impl SchedulerState {
    /// The registered workers, for clients and tests.
    pub fn workers(&self, now: Instant) -> Vec<WorkerSummary> {
        let mut list: Vec<WorkerSummary> = self
            .workers
            .values()
            .map(|w| {
                let mut functions: Vec<String> = w.functions.iter().cloned().collect();
                functions.sort();
                WorkerSummary {
                    address: w.address.to_string(),
                    worker_id: w.worker_id.clone(),
                    pid: w.pid,
                    nthreads: w.nthreads,
                    functions,
                    keys: w.has.len() as u64,
                    nbytes: w.nbytes,
                    processing: w.processing.len() as u64,
                    last_seen_ms: now.saturating_duration_since(w.last_seen).as_millis() as u64,
                }
            })
            .collect();
        list.sort_by(|a, b| a.address.cmp(&b.address));
        list
    }

    /// The addresses of the workers holding `key` (empty when nobody does).
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let Some(t) = self.task_ids.get(key).and_then(|id| self.tasks.get(id)) else {
            return Vec::new();
        };
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

    /// `held_count` counted the slow way, to check the counter in tests.
    #[cfg(test)]
    pub(super) fn held_by_scan(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| !t.who_has.is_empty())
            .count()
    }
}
