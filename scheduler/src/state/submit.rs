//! Submission: a client's graph checked against what the scheduler has, then made into tasks.
//!
//! `plan` walks the graph from the requested keys and works out every reachable node's
//! definition hash (its own hash combined with its inputs', see `zask_core::hash`). A node
//! whose key the scheduler already has is reused when the hashes agree (same key, same
//! computation: it is not computed again) and refused with `key_conflict` when they do not.
//! Then `submit` makes the nodes that are needed into tasks, inputs first.

use super::*;
use assign::rank;
use clients::Progress;

impl SchedulerState {
    /// Validates a computation and adds its tasks; nothing changes if it is invalid.
    pub(super) fn submit(
        &mut self,
        client: &[u8],
        get: &mut GetRequest,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), Invalid> {
        let outputs = get.keys.flatten();
        // A get without a graph names held keys (a gather).
        let gathering = get.graph.nodes.is_empty();
        let (g, created) = self.add_tasks(get, 0, None, out)?;
        let mut output_ids = Vec::with_capacity(outputs.len());
        let mut to_gather = Vec::new();
        for key in &outputs {
            let Some(&tid) = self.task_ids.get(key.as_str()) else {
                continue;
            };
            // An adopted value a gather names is claimed: kept until released, like the
            // scattered data it most likely is.
            if gathering && self.adopted.remove(&tid).is_some() {
                log::info!("adopted key {key:?} claimed by a gather; kept until released");
            }
            if let Some(t) = self.tasks.get_mut(&tid) {
                t.waiters += 1;
                t.wanted_by.push(g);
                if t.status == TaskStatus::Memory {
                    to_gather.push(tid);
                }
            }
            output_ids.push(tid);
        }
        let progress = Progress::new(created, get.progress);
        let tracking = progress.send;
        self.graphs.insert(
            g,
            GraphState {
                client: client.to_vec(),
                request: get.request,
                outputs: output_ids,
                values: HashMap::default(),
                keep_results: get.keep_results,
                progress,
                submitted: now,
            },
        );
        if tracking {
            self.tracked += 1;
        }
        if outputs.is_empty() {
            self.complete_graph(g, out);
        } else if !to_gather.is_empty() {
            self.gather(to_gather, out);
        }
        Ok(())
    }

    /// Validates a computation's graph against what the scheduler has and makes the tasks its
    /// outputs need (nothing changes if it is invalid). Returns the computation's id and the
    /// range of the new tasks' ids. `priority` (higher first) ranks its tasks among ready
    /// ones before the submission order does; `restriction` limits where they run.
    pub(super) fn add_tasks(
        &mut self,
        get: &mut GetRequest,
        priority: i32,
        restriction: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(GraphId, (u64, u64)), Invalid> {
        let outputs = get.keys.flatten();
        if get.hashes.len() != get.graph.nodes.len() {
            // Not hashed while decoding (a graph built in code): hashed now.
            get.hashes = zask_core::graph_serde::HashedGraph::hashes_of(&get.graph);
        }
        // (From here on `get.hashes` holds each reached node's definition hash.)
        let plan = self.plan(&get.graph, &mut get.hashes, &outputs)?;
        // Values adopted after a restart that nobody claimed give way to a new definition.
        for &tid in &plan.replace {
            if let Some(key) = self.tasks.get(&tid).map(|t| t.key.clone()) {
                log::info!("key {key:?} is defined anew; dropping its unclaimed task");
            }
            self.forget(tid, out);
        }
        let g = self.next_graph;
        self.next_graph = g.next();
        let rank = rank(g, priority);
        let first_task = self.next_task.0;
        // Create the new tasks, dependencies first, each node moved out of the graph where it
        // lies (a million-entry table is not copied); the emptied graph is dropped after.
        let nodes = &mut get.graph.nodes;
        // The task made of each graph node (or reused for it), by index.
        let mut created: Vec<TaskId> = vec![NO_TASK; nodes.len()];
        for (&index, &tid) in &plan.reuse {
            if let Some(slot) = created.get_mut(index) {
                *slot = tid;
            }
        }
        // Before the new tasks are made, so that the lineage of a new task over such a value
        // includes the lineage it is given here.
        self.give_lineage(&get.graph, &get.hashes, &created, &plan.without_lineage);
        let nodes = &mut get.graph.nodes;
        // For a wide task, its inputs met so far: graph nodes by index (`stamp[i]` is the
        // position of the last task that took node `i`, plus one), held tasks in a set.
        let mut stamp: Vec<usize> = Vec::new();
        let mut seen: HashSet<TaskId> = HashSet::default();
        for (position, &index) in plan.order.iter().enumerate() {
            let Some((key, node)) = nodes.get_index_mut2(index) else {
                continue;
            };
            let key = std::mem::take(key);
            let node = std::mem::replace(node, Node::Literal(Value::Nil));
            // The distinct inputs in first-seen order (their ids resolved by `plan`).
            let refs = plan.refs_of(position);
            let wide = refs.len() > 16;
            if wide {
                stamp.resize(created.len(), 0);
                seen.clear();
            }
            // The task being made (`insert_task` below makes this id).
            let tid = self.next_task;
            let mut waiting_on = 0;
            let mut deps = Vec::new();
            let mut lineage_deps = Vec::new();
            for &r in refs {
                let (id, repeated) = match r.graph_index() {
                    Some(i) if wide => {
                        let mark = stamp.get_mut(i).map(|m| std::mem::replace(m, position + 1));
                        (created[i], mark == Some(position + 1))
                    }
                    Some(i) => (created[i], deps.contains(&created[i])),
                    None if wide => (r.task(), !seen.insert(r.task())),
                    None => (r.task(), deps.contains(&r.task())),
                };
                if id == NO_TASK || repeated {
                    continue;
                }
                // One visit to each input: its lineage, and its claim for the new task.
                let Some(dt) = self.tasks.get_mut(&id) else {
                    continue;
                };
                if let Some(lineage) = &dt.lineage {
                    lineage_deps.push(lineage.clone());
                }
                if dt.claim_for(tid) {
                    waiting_on += 1;
                }
                deps.push(id);
            }
            let lineage = Arc::new(Lineage {
                key: Arc::from(key),
                node: Arc::new(node),
                deps: lineage_deps,
                hash: get.hashes.get(index).copied().unwrap_or_default(),
            });
            created[index] = self.insert_task(
                lineage,
                deps,
                waiting_on,
                (rank, position as u64),
                restriction,
            );
        }
        get.graph.nodes = Nodes::default();
        drop(plan);
        Ok((g, (first_task, self.next_task.0)))
    }

    /// Checks a submitted graph against what exists, and returns the nodes to make into
    /// tasks (their indices in the graph), each after its dependencies, with each one's
    /// references resolved and every reachable node's definition hash.
    ///
    /// Two passes. The first walks every node reachable from the outputs, depth first, and
    /// computes its definition hash in post-order (its own hash, `local`, combined with the
    /// hashes of what it references, in order). A node whose key the scheduler already has
    /// is compared with it: the same definition is reused, a different one is refused
    /// (`key_conflict`), unless the one held is an adopted value nobody claimed, which gives
    /// way. The second pass keeps the nodes the outputs need through nodes that are not
    /// reused (the post-order, filtered, is still inputs first), and checks their functions.
    /// One hash lookup per edge into the graph, one into the task table per key.
    fn plan(
        &self,
        graph: &Graph,
        defs: &mut [DefHash],
        outputs: &[String],
    ) -> Result<Plan, Invalid> {
        const NEW: u8 = 0;
        const VISITING: u8 = 1;
        const DONE: u8 = 2;
        let count = graph.nodes.len();
        let mut marks = vec![NEW; count];
        let mut plan = Plan::default();
        let mut roots: Vec<usize> = Vec::new();
        for out_key in outputs {
            let Some((root, _, root_node)) = graph.nodes.get_full(out_key.as_str()) else {
                if self.known(out_key)?.is_some() {
                    continue;
                }
                return Err(ErrorInfo::new(
                    ErrorKind::MissingKey,
                    format!(
                        "requested key {out_key:?} is neither in the graph nor held by a worker"
                    ),
                )
                .with_key(out_key));
            };
            roots.push(root);
            if marks[root] == DONE {
                continue;
            }
            // Iterative DFS: (graph index, its references, next reference, those resolved).
            let mut stack: Vec<(usize, Vec<&str>, usize, Vec<PlannedRef>)> = Vec::new();
            marks[root] = VISITING;
            // (A repeated reference is met again DONE, so references need no dedup here.)
            stack.push((root, root_node.refs(), 0, Vec::new()));
            while let Some((index, deps, next, resolved)) = stack.last_mut() {
                let index = *index;
                if *next == deps.len() {
                    marks[index] = DONE;
                    let mut resolved = std::mem::take(resolved);
                    stack.pop();
                    self.define(graph, defs, index, &resolved, &mut plan)?;
                    plan.push(index, &mut resolved);
                    continue;
                }
                let dep = deps[*next];
                *next += 1;
                let Some((dep_index, _, dep_node)) = graph.nodes.get_full(dep) else {
                    // Not in the graph: a key the scheduler holds or computes (one that failed
                    // fails this key as its input: `dependency_failed`).
                    let key = graph.nodes.get_index(index).map_or("", |(k, _)| k.as_str());
                    let known = self
                        .known(dep)
                        .map_err(|e| lifecycle::dependency_failed(key, &e))?;
                    if let Some(tid) = known {
                        resolved.push(PlannedRef::of_task(tid));
                        continue;
                    }
                    return Err(ErrorInfo::new(
                        ErrorKind::MissingKey,
                        format!(
                            "key {key:?} refers to {dep:?}, which is neither in the graph nor \
                             held by a worker"
                        ),
                    )
                    .with_key(key));
                };
                resolved.push(PlannedRef::graph(dep_index));
                match marks[dep_index] {
                    DONE => continue,
                    VISITING => {
                        let start = stack.iter().position(|(i, ..)| *i == dep_index);
                        let mut cycle: Vec<&str> = stack[start.unwrap_or(0)..]
                            .iter()
                            .filter_map(|(i, ..)| graph.nodes.get_index(*i))
                            .map(|(k, _)| k.as_str())
                            .collect();
                        cycle.push(dep);
                        return Err(ErrorInfo::new(
                            ErrorKind::Cycle,
                            format!("the graph has a cycle: {}", cycle.join(" -> ")),
                        )
                        .with_key(dep));
                    }
                    _ => {}
                }
                marks[dep_index] = VISITING;
                stack.push((dep_index, dep_node.refs(), 0, Vec::new()));
            }
        }
        drop(marks);
        self.keep_needed(graph, &roots, &mut plan)?;
        Ok(plan)
    }

    /// Works out the definition hash of graph node `index` (whose references are `resolved`,
    /// their own hashes known by now) and compares it with the task the scheduler may have
    /// under that key: reused if equal, replaced if that task is an unclaimed adopted value,
    /// a `key_conflict` otherwise.
    fn define(
        &self,
        graph: &Graph,
        defs: &mut [DefHash],
        index: usize,
        resolved: &[PlannedRef],
        plan: &mut Plan,
    ) -> Result<(), Invalid> {
        let Some((key, _)) = graph.nodes.get_index(index) else {
            return Ok(());
        };
        let Some(&own) = defs.get(index) else {
            return Ok(());
        };
        let dep_hashes = resolved.iter().map(|r| {
            match r.graph_index() {
                Some(i) => defs.get(i).copied(),
                None => self.hash_of(r.task()),
            }
            .unwrap_or_default()
        });
        let def = DefHash::combine(own, dep_hashes);
        // The node's own hash is replaced by its definition's (its dependents read that).
        defs[index] = def;
        let Some(&tid) = self.task_ids.get(key.as_str()) else {
            return Ok(());
        };
        let Some(t) = self.tasks.get(&tid) else {
            return Ok(());
        };
        if self.hash_of(tid) == Some(def) {
            if let TaskStatus::Erred(e) = &t.status {
                return Err((**e).clone());
            }
            plan.reuse.insert(index, tid);
            if t.lineage.is_none() {
                plan.without_lineage.push(index);
            }
            return Ok(());
        }
        if self.replaceable(tid, t) {
            plan.replace.push(tid);
            return Ok(());
        }
        let what = match &t.status {
            TaskStatus::Memory => "held on the workers",
            TaskStatus::Erred(_) => "failed and still used by a computation",
            _ => "being computed",
        };
        Err(ErrorInfo::new(
            ErrorKind::KeyConflict,
            format!(
                "key {key:?} is already {what} with a different definition; a key names one \
                 value, so either give this definition another key, or release the held key \
                 first (`zask release {key}`, `Client::release`) and wait for computations \
                 using it to end"
            ),
        )
        .with_key(key))
    }

    /// The second pass of `plan`: keeps only the nodes the outputs (`roots`) need, through
    /// nodes that are not reused, in the first pass's order, and checks that some worker
    /// offers their functions.
    fn keep_needed(&self, graph: &Graph, roots: &[usize], plan: &mut Plan) -> Result<(), Invalid> {
        let mut functions = FunctionCheck::default();
        if plan.reuse.is_empty() {
            // Nothing reused: every node reached is needed (the usual case; no second walk).
            for &index in &plan.order {
                if let Some((key, node)) = graph.nodes.get_index(index) {
                    functions.check(self, key, node)?;
                }
            }
            return Ok(());
        }
        let mut needed = vec![false; graph.nodes.len()];
        for &r in roots {
            if !plan.reuse.contains_key(&r) {
                needed[r] = true;
            }
        }
        // Dependents come before their inputs in the reversed post-order.
        for position in (0..plan.order.len()).rev() {
            if !needed[plan.order[position]] {
                continue;
            }
            for r in plan.refs_of(position) {
                if let Some(i) = r.graph_index() {
                    if !plan.reuse.contains_key(&i) {
                        needed[i] = true;
                    }
                }
            }
        }
        // Keep the needed entries, compacting in place (entries only move down).
        let (mut kept, mut kept_refs) = (0, 0);
        for position in 0..plan.order.len() {
            let index = plan.order[position];
            let start = plan.starts[position];
            let end = plan
                .starts
                .get(position + 1)
                .copied()
                .unwrap_or(plan.refs.len());
            if !needed[index] {
                continue;
            }
            if let Some((key, node)) = graph.nodes.get_index(index) {
                functions.check(self, key, node)?;
            }
            plan.order[kept] = index;
            plan.starts[kept] = kept_refs;
            plan.refs.copy_within(start..end, kept_refs);
            kept += 1;
            kept_refs += end - start;
        }
        plan.order.truncate(kept);
        plan.starts.truncate(kept);
        plan.refs.truncate(kept_refs);
        Ok(())
    }

    /// Gives the tasks reused for graph nodes `indices` (tasks without lineage: values adopted
    /// after a restart, or scattered) the graph's definition as their lineage, so that they are
    /// recomputed, not lost, if their holder goes away. Their inputs' lineages are those of
    /// the tasks made or reused for them, or built from the graph (inputs no task was made
    /// for: not needed, since the value was there).
    fn give_lineage(
        &mut self,
        graph: &Graph,
        defs: &[DefHash],
        created: &[TaskId],
        indices: &[usize],
    ) {
        let mut built: HashMap<usize, Arc<Lineage>> = HashMap::default();
        for &root in indices {
            // Iterative post-order over the graph below `root` (a long chain must not recurse).
            let mut stack = vec![(root, false)];
            while let Some((index, expanded)) = stack.pop() {
                if built.contains_key(&index) {
                    continue;
                }
                let task = created.get(index).copied().filter(|t| *t != NO_TASK);
                if index != root {
                    if let Some(l) = task.and_then(|t| self.tasks.get(&t)?.lineage.clone()) {
                        built.insert(index, l);
                        continue;
                    }
                }
                let Some((key, node)) = graph.nodes.get_index(index) else {
                    continue;
                };
                let refs = node.dependency_refs();
                if !expanded {
                    stack.push((index, true));
                    for r in &refs {
                        if let Some(i) = graph.nodes.get_index_of(*r) {
                            stack.push((i, false));
                        }
                    }
                    continue;
                }
                let mut deps: Vec<Arc<Lineage>> = Vec::new();
                for r in refs {
                    let lineage = match graph.nodes.get_index_of(r) {
                        Some(i) => built.get(&i).cloned(),
                        None => self
                            .task_ids
                            .get(r)
                            .and_then(|t| self.tasks.get(t)?.lineage.clone()),
                    };
                    deps.extend(lineage);
                }
                let lineage = Arc::new(Lineage {
                    key: Arc::from(key.as_str()),
                    node: Arc::new(node.clone()),
                    deps,
                    hash: defs.get(index).copied().unwrap_or_default(),
                });
                built.insert(index, lineage.clone());
                if index == root {
                    if let Some(tid) = task {
                        self.set_lineage(tid, lineage);
                    }
                }
            }
        }
    }

    /// Gives task `tid`, which has none, its `lineage`: its hash moves there, and its signature
    /// becomes its node's (so that, recomputed, it goes to a worker offering its functions).
    fn set_lineage(&mut self, tid: TaskId, lineage: Arc<Lineage>) {
        if self.tasks.get(&tid).is_none_or(|t| t.lineage.is_some()) {
            return;
        }
        let signature = self.signature_of(&lineage.node);
        self.use_signature(signature);
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        let old = std::mem::replace(&mut t.signature, signature);
        t.lineage = Some(lineage);
        self.given.remove(&tid);
        self.unuse_signature(old);
    }

    /// The task of `key` if the scheduler already has it (so a new computation reuses it); an
    /// error if it has failed.
    fn known(&self, key: &str) -> Result<Option<TaskId>, Invalid> {
        let Some((&id, t)) = self
            .task_ids
            .get(key)
            .and_then(|id| Some((id, self.tasks.get(id)?)))
        else {
            return Ok(None);
        };
        match &t.status {
            TaskStatus::Erred(e) => Err((**e).clone()),
            _ => Ok(Some(id)),
        }
    }
}

/// No task (a graph node not created).
const NO_TASK: TaskId = TaskId(u64::MAX);

/// What a node refers to, resolved by `plan`: a task the scheduler has, or (top bit set) the
/// index of a node of the submitted graph, whose task is made first.
#[derive(Debug, Clone, Copy)]
struct PlannedRef(u64);

impl PlannedRef {
    const GRAPH: u64 = 1 << 63;

    /// A reference to the node at `index` of the submitted graph.
    fn graph(index: usize) -> PlannedRef {
        PlannedRef(index as u64 | Self::GRAPH)
    }

    /// A reference to task `tid`, which the scheduler has.
    fn of_task(tid: TaskId) -> PlannedRef {
        PlannedRef(tid.0)
    }

    fn graph_index(self) -> Option<usize> {
        (self.0 & Self::GRAPH != 0).then_some((self.0 & !Self::GRAPH) as usize)
    }

    /// The task referred to (when it is not a graph node: see `graph_index`).
    fn task(self) -> TaskId {
        TaskId(self.0)
    }
}

/// The nodes of a submitted graph to make into tasks, dependencies first, with each one's
/// references (in node order, repeats included) resolved, so making the tasks looks no key
/// up again.
#[derive(Default)]
struct Plan {
    /// Graph indices, in creation order.
    order: Vec<usize>,
    /// The references of every node in `order`, one after the other.
    refs: Vec<PlannedRef>,
    /// Where each node's references start in `refs`.
    starts: Vec<usize>,
    /// Graph nodes whose key the scheduler has with the same definition: that task is used.
    reuse: HashMap<usize, TaskId>,
    /// Those of them whose task has no lineage (an adopted or scattered value): the graph's
    /// definition becomes its lineage, so that it can be recomputed if lost. In post-order.
    without_lineage: Vec<usize>,
    /// Adopted values nobody claimed that a new definition of their key replaces.
    replace: Vec<TaskId>,
}

impl Plan {
    fn push(&mut self, index: usize, refs: &mut Vec<PlannedRef>) {
        self.order.push(index);
        self.starts.push(self.refs.len());
        self.refs.append(refs);
    }

    /// The references of the node at `position` in `order`.
    fn refs_of(&self, position: usize) -> &[PlannedRef] {
        let start = self.starts.get(position).copied().unwrap_or(0);
        let end = self
            .starts
            .get(position + 1)
            .copied()
            .unwrap_or(self.refs.len());
        self.refs.get(start..end).unwrap_or(&[])
    }
}

/// Checks that the functions of a graph's nodes are offered by some worker, remembering the
/// last name found (a graph's nodes mostly call the same few functions).
#[derive(Default)]
struct FunctionCheck<'g> {
    last_found: &'g str,
}

impl<'g> FunctionCheck<'g> {
    fn check(&mut self, s: &SchedulerState, key: &str, node: &'g Node) -> Result<(), Invalid> {
        let mut unknown = None;
        node.for_each_function(&mut |f| {
            if unknown.is_some() || f == self.last_found {
                return;
            }
            if s.function_counts.contains_key(f) {
                self.last_found = f;
            } else {
                unknown = Some(f);
            }
        });
        match unknown {
            None => Ok(()),
            Some(f) => Err(ErrorInfo {
                kind: ErrorKind::UnknownFunction,
                message: format!(
                    "key {key:?} calls {f:?}, which no registered worker offers; \
                     register it on a worker (see docs/functions.md)"
                ),
                key: Some(key.to_string()),
                function: Some(f.to_string()),
                dependency: None,
            }),
        }
    }
}

/// A submitted graph failed validation.
pub(super) type Invalid = ErrorInfo;
