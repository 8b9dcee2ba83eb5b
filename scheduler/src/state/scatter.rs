//! Scatter: a client's values stored on workers (each on the one holding the fewest bytes),
//! kept until released; the client is answered once all are stored.

use super::*;

/// A client's `scatter` waiting for workers to store its values.
#[derive(Debug)]
pub(super) struct PendingScatter {
    pub(super) client: Route,
    pub(super) request: u64,
    pub(super) keys: Vec<String>,
    pub(super) remaining: usize,
}

impl SchedulerState {
    /// A client scatters `items` (key, value): each goes to one worker (the one holding the
    /// fewest bytes), held until released. Answered once all are stored. A key already held
    /// is kept as it is (same key, same value).
    pub fn on_scatter(
        &mut self,
        client: &[u8],
        request: u64,
        items: Vec<(String, Value)>,
        out: &mut Outbox,
    ) {
        let checked = match self.check_scatter(&items) {
            Ok(checked) => checked,
            Err(error) => {
                out.to_clients
                    .push((client.to_vec(), ToClient::Error { request, error }));
                return;
            }
        };
        let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        let sid = self.next_scatter;
        self.next_scatter += 1;
        let mut pending = 0;
        let mut planned: HashMap<WorkerId, u64> = HashMap::default();
        let signature = self.signature_of(&Node::Literal(Value::Nil));
        for ((key, value), (hash, nbytes)) in items.into_iter().zip(checked) {
            if let Some(&tid) = self.task_ids.get(key.as_str()) {
                if self.hash_of(tid) == Some(hash) {
                    // Held with the same value already: kept.
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        t.kept = true;
                    }
                    self.adopted.remove(&tid);
                    continue;
                }
                // An adopted value nobody claimed (`check_scatter` allowed only that): replaced.
                self.forget(tid, out);
            }
            let Some(wid) = self
                .workers
                .values()
                .min_by_key(|w| (w.nbytes + planned.get(&w.id).copied().unwrap_or(0), w.id))
                .map(|w| w.id)
            else {
                continue;
            };
            *planned.entry(wid).or_insert(0) += nbytes;
            self.assignments += 1;
            let shared: Key = Arc::from(key.as_str());
            let status = TaskStatus::Processing(wid);
            let tid = self.insert_value(shared, hash, status, nbytes, signature);
            if let Some(w) = self.workers.get_mut(&wid) {
                w.processing.insert(tid);
                let mut item = KeyData::inline(key, value);
                item.hash = Some(hash);
                out.put_data.entry(w.route.clone()).or_default().push(item);
            }
            self.scatter_of.insert(tid, sid);
            pending += 1;
        }
        if pending == 0 {
            out.to_clients
                .push((client.to_vec(), ToClient::Scattered { request, keys }));
            return;
        }
        self.scatters.insert(
            sid,
            PendingScatter {
                client: client.to_vec(),
                request,
                keys,
                remaining: pending,
            },
        );
    }

    /// A scatter is valid when there are workers, its keys are distinct and non-empty, its
    /// values nest no deeper than `MAX_NESTING`, and each key is either new or held with
    /// the same value (same key, same value). Returns each value's definition hash and size.
    fn check_scatter(&self, items: &[(String, Value)]) -> Result<Vec<(DefHash, u64)>, ErrorInfo> {
        if self.workers.is_empty() {
            return Err(ErrorInfo::new(
                ErrorKind::NoWorkers,
                "no worker is registered to hold scattered data; start zask-worker first",
            ));
        }
        let mut seen = HashSet::default();
        let mut checked = Vec::with_capacity(items.len());
        for (key, value) in items {
            if key.is_empty() {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    "scattered keys must not be empty",
                ));
            }
            if !seen.insert(key.as_str()) {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    format!("key {key:?} is scattered twice"),
                )
                .with_key(key));
            }
            let nbytes = match value.measure(zask_core::value::MAX_NESTING) {
                Ok(nbytes) => nbytes,
                Err(e) => {
                    return Err(ErrorInfo::new(
                        ErrorKind::BadRequest,
                        format!("the value scattered as {key:?} cannot be kept: {e}"),
                    )
                    .with_key(key))
                }
            };
            let hash = DefHash::of_value(value);
            checked.push((hash, nbytes));
            let Some((&tid, t)) = self
                .task_ids
                .get(key.as_str())
                .and_then(|tid| Some((tid, self.tasks.get(tid)?)))
            else {
                continue;
            };
            if self.hash_of(tid) != Some(hash) && !self.replaceable(tid, t) {
                let what = if t.status == TaskStatus::Memory {
                    "held with another value"
                } else {
                    "being computed"
                };
                return Err(ErrorInfo::new(
                    ErrorKind::KeyConflict,
                    format!(
                        "key {key:?} is already {what}; a key names one value, so scatter \
                         under another key, or release the held one first"
                    ),
                )
                .with_key(key));
            }
            if t.status != TaskStatus::Memory {
                return Err(ErrorInfo::new(
                    ErrorKind::BadRequest,
                    format!("key {key:?} is being stored; scatter under another key"),
                )
                .with_key(key));
            }
        }
        Ok(checked)
    }

    /// A scattered value `tid` is stored: answer its scatter when it was the last.
    pub(super) fn scatter_stored(&mut self, tid: TaskId, out: &mut Outbox) {
        let Some(sid) = self.scatter_of.remove(&tid) else {
            return;
        };
        let done = match self.scatters.get_mut(&sid) {
            Some(sc) => {
                sc.remaining = sc.remaining.saturating_sub(1);
                sc.remaining == 0
            }
            None => false,
        };
        if done {
            if let Some(sc) = self.scatters.remove(&sid) {
                out.to_clients.push((
                    sc.client,
                    ToClient::Scattered {
                        request: sc.request,
                        keys: sc.keys,
                    },
                ));
            }
        }
    }
}
