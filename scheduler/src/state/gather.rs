//! Results: outputs delivered to the computations waiting for them, values collected from the
//! workers holding them (`get_data`, sent again elsewhere when a holder goes away or says it
//! lost them), and a computation answered once it has every output.

use super::*;

/// A `get_data` sent to a worker to collect outputs it holds.
#[derive(Debug)]
pub(super) struct Gather {
    pub(super) worker: WorkerId,
    pub(super) keys: Vec<TaskId>,
    /// When it was sent, as the first tick after it saw it (unanswered after
    /// `answer_timeout`, plus time for its size, the copies count as lost).
    pub(super) sent: Option<Instant>,
    /// How many times it was sent again, unanswered (for values only that worker holds).
    pub(super) attempts: u32,
    /// How much its values weigh, in bytes (worked out when `sent` is).
    pub(super) nbytes: u64,
}

impl SchedulerState {
    /// Sends the gathers pending on worker `wid` again (to whichever holder is best now): it
    /// went away, or its answers may have been lost.
    pub(super) fn regather_from(&mut self, wid: WorkerId, out: &mut Outbox) {
        let pending: Vec<u64> = self
            .gathers
            .iter()
            .filter(|(_, g)| g.worker == wid)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            if let Some(g) = self.gathers.remove(&id) {
                self.gather(g.keys, out);
            }
        }
    }

    /// Hands `value` of output `tid` to every computation waiting for it.
    pub(super) fn deliver(&mut self, tid: TaskId, key: &str, value: Value, out: &mut Outbox) {
        let wanted_by = match self.tasks.get(&tid) {
            Some(t) => t.wanted_by.clone(),
            None => return,
        };
        let mut complete = Vec::new();
        for g in wanted_by {
            if let Some(graph) = self.graphs.get_mut(&g) {
                if !graph.values.contains_key(key) {
                    graph.values.insert(key.to_string(), value.clone());
                    if graph.values.len() == graph.outputs.len() {
                        complete.push(g);
                    }
                }
            }
        }
        for g in complete {
            self.complete_graph(g, out);
        }
    }

    /// Computation `g` has every output: its client gets them, and its claims are dropped
    /// (its outputs kept on the workers if it asked to `keep_results`).
    pub(super) fn complete_graph(&mut self, g: GraphId, out: &mut Outbox) {
        let Some(graph) = self.graphs.remove(&g) else {
            return;
        };
        self.end_graph(&graph);
        let items = graph
            .values
            .into_iter()
            .map(|(key, value)| KeyData::inline(key, value))
            .collect();
        out.to_clients.push((
            graph.client,
            ToClient::Result {
                request: graph.request,
                items,
            },
        ));
        self.drop_graph_claims(g, &graph.outputs, graph.keep_results);
    }

    /// Asks holders for the values of `tids` (outputs already in memory), grouped by holder.
    pub(super) fn gather(&mut self, tids: Vec<TaskId>, out: &mut Outbox) {
        let mut by_worker: HashMap<WorkerId, Vec<TaskId>> = HashMap::default();
        for tid in tids {
            let Some(t) = self.tasks.get(&tid) else {
                continue;
            };
            // Prefer the least loaded holder.
            let holder = t
                .who_has
                .iter()
                .filter_map(|w| self.workers.get(w))
                .min_by_key(|w| (w.processing.len(), w.id))
                .map(|w| w.id);
            match holder {
                Some(w) => by_worker.entry(w).or_default().push(tid),
                None => self.recompute_lost(tid, out),
            }
        }
        for (wid, keys) in by_worker {
            let Some(w) = self.workers.get(&wid) else {
                continue;
            };
            let request = self.next_gather;
            self.next_gather += 1;
            let names = keys
                .iter()
                .filter_map(|t| self.tasks.get(t).map(|t| String::from(&*t.key)))
                .collect();
            out.to_workers.push((
                w.route.clone(),
                ToWorker::GetData(GetDataBody {
                    request,
                    keys: names,
                }),
            ));
            self.gathers.insert(
                request,
                Gather {
                    worker: wid,
                    keys,
                    sent: None,
                    attempts: 0,
                    nbytes: 0,
                },
            );
        }
    }

    /// Worker `wid` answered `get_data` `request`: its values go to the computations waiting,
    /// and what it no longer has is asked of another holder, or computed again.
    pub(super) fn on_data(
        &mut self,
        wid: WorkerId,
        request: u64,
        items: Vec<KeyData>,
        missing: Vec<String>,
        out: &mut Outbox,
    ) {
        // Only the worker asked answers, and only for the keys asked of it.
        let asked: HashSet<TaskId> = match self.gathers.get(&request) {
            Some(g) if g.worker == wid => g.keys.iter().copied().collect(),
            _ => {
                log::warn!(
                    "worker {} answered a request for data that was not asked of it; ignoring it",
                    self.worker_address(wid)
                );
                return;
            }
        };
        self.gathers.remove(&request);
        let mut answered = HashSet::default();
        for item in items {
            match self.task_ids.get(item.key.as_str()) {
                Some(&tid) if asked.contains(&tid) && answered.insert(tid) => {
                    self.deliver(tid, &item.key, item.data.value, out)
                }
                _ => log::warn!(
                    "worker {} sent {:?}, which was not asked of it; ignoring it",
                    self.worker_address(wid),
                    item.key
                ),
            }
        }
        // The worker no longer has these (said missing, or left out): forget that copy and
        // ask elsewhere (or recompute).
        let mut retry = Vec::new();
        let left_out = asked
            .iter()
            .filter(|t| !answered.contains(t))
            .filter_map(|t| self.tasks.get(t).map(|t| String::from(&*t.key)));
        let mut missing: Vec<String> = missing;
        missing.extend(left_out);
        missing.sort();
        missing.dedup();
        for key in missing {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                continue;
            };
            if !asked.contains(&tid) || answered.contains(&tid) {
                continue;
            }
            self.remove_holder(tid, wid);
            if self.tasks.get(&tid).is_some_and(|t| t.who_has.is_empty()) {
                self.recompute_lost(tid, out);
            } else {
                retry.push(tid);
            }
        }
        if !retry.is_empty() {
            self.gather(retry, out);
        }
        self.schedule(out);
    }
}
