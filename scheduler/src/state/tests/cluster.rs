//! The scheduler and real worker state machines together ([`Sim`]), through the graphs the
//! end-to-end tests use, with workers dying at every stage of a computation, one coming
//! back on its old store, and a new one joining. Each answer is checked against the graph
//! evaluated directly, in one process, with the same functions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use zask_core::graph::{key, list, task, Graph, Node};
use zask_core::{Keys, Value};
use zask_worker::eval::evaluate;
use zask_worker::Registry;

use super::sim::{heartbeat_all, sim_registry, Sim};

/// Every function the simulated workers have.
fn all_functions() -> Vec<String> {
    sim_registry().names()
}

/// The value of `key` in `graph`, evaluated directly (`Err`: a task of it fails).
fn reference(
    graph: &Graph,
    key: &str,
    registry: &Registry,
    memo: &mut HashMap<String, Result<Value, String>>,
) -> Result<Value, String> {
    if let Some(v) = memo.get(key) {
        return v.clone();
    }
    let node = graph.get(key).ok_or_else(|| format!("no key {key}"))?;
    let mut inputs = Vec::new();
    for dep in node.refs() {
        inputs.push(reference(graph, dep, registry, memo)?);
    }
    let value = evaluate(node, &mut inputs.into_iter(), registry).map_err(|e| e.message);
    memo.insert(key.to_string(), value.clone());
    value
}

/// The graphs of the end-to-end tests (tests/end_to_end.rs), with the keys asked of each.
fn graphs() -> Vec<(&'static str, Graph, Vec<String>)> {
    let mut out = Vec::new();
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("z", task("add", (key("y"), key("x"))));
    out.push(("xyz", g, vec!["y".to_string(), "z".to_string()]));

    let mut g = Graph::new();
    g.insert("a", 10);
    g.insert("b", task("inc", (key("a"),)));
    g.insert("c", task("mul", (key("b"), 2)));
    g.insert("d", list([key("a"), key("b"), key("c")]));
    out.push(("literal input and key list", g, vec!["d".to_string()]));

    let mut g = Graph::new();
    g.insert("c-0", 0);
    for i in 1..200 {
        let prev = format!("c-{}", i - 1);
        g.insert(format!("c-{i}"), task("inc", (key(prev.as_str()),)));
    }
    out.push(("a chain", g, vec!["c-199".to_string()]));

    let mut g = Graph::new();
    let mut refs = Vec::new();
    for i in 0..300 {
        let k = format!("i-{i}");
        g.insert(k.as_str(), task("inc", (i,)));
        refs.push(key(k.as_str()));
    }
    g.insert("total", task("sum", (list(refs),)));
    out.push(("incs and a sum", g, vec!["total".to_string()]));

    let mut g = Graph::new();
    let mut level: Vec<String> = (0..64)
        .map(|i| {
            let k = format!("leaf-{i}");
            g.insert(k.as_str(), task("mul", (i, 3)));
            k
        })
        .collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        level = level
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let k = format!("t{depth}-{i}");
                let args: Vec<Node> = pair.iter().map(|p| key(p.as_str())).collect();
                g.insert(k.as_str(), task("sum", (list(args),)));
                k
            })
            .collect();
    }
    out.push(("a tree reduction", g, level));

    let mut g = Graph::new();
    g.insert("big", task("zeros", (1_000_000,)));
    g.insert("size", task("nbytes", (key("big"),)));
    g.insert("text", task("add", ("a", "b")));
    g.insert("both", task("add", (key("big"), key("big"))));
    g.insert("n", task("nbytes", (key("both"),)));
    out.push((
        "large values",
        g,
        ["size", "big", "text", "n"].map(String::from).to_vec(),
    ));
    out
}

/// The expected answer to a get of `keys` from `graph`.
fn expected(graph: &Graph, keys: &[String]) -> BTreeMap<String, Value> {
    let registry = sim_registry();
    let mut memo = HashMap::new();
    keys.iter()
        .map(|k| {
            let v = reference(graph, k, &registry, &mut memo)
                .unwrap_or_else(|e| panic!("the reference evaluation of {k} failed: {e}"));
            (k.clone(), v)
        })
        .collect()
}

/// Three workers; `kill_after` steps into the computation, `victim` dies silently (its data
/// and queued tasks lost) and the next worker restarts on its store (its tasks forgotten,
/// its values offered again when it registers anew); time passes (the scheduler notices the
/// victim gone, workers give up on fetches from it), w4 joins. The answer must be the
/// reference one, and nothing may be left anywhere once it is given. Returns how many tasks
/// were sent in all.
fn run_through_failures(graph: &Graph, keys: &[String], victim: usize, kill_after: usize) -> usize {
    let functions = all_functions();
    let functions: Vec<&str> = functions.iter().map(String::as_str).collect();
    let routes: [&[u8]; 3] = [b"w1", b"w2", b"w3"];
    let mut sim = Sim::new();
    // (A worker's fetch from the victim fails: the scheduler is told, and deals with it.)
    sim.lost_inputs_expected = true;
    for w in routes {
        sim.worker(w, &functions, 2);
    }
    sim.get(b"c1", 1, graph, Keys::from(keys.to_vec()), false);
    for _ in 0..kill_after {
        if !sim.step() {
            break;
        }
    }
    sim.kill(routes[victim]);
    let restarted = routes[(victim + 1) % 3];
    sim.restart_on_store(restarted, "id-restarted");
    sim.rejoin(restarted);
    // Past the heartbeat timeout and the workers' fetch timeout: the victim is dropped.
    heartbeat_all(&mut sim, Duration::from_secs(11));
    sim.worker(b"w4", &functions, 2);
    sim.run();
    let context = format!(
        "w{} killed after {kill_after} steps, w{} restarted",
        victim + 1,
        (victim + 1) % 3 + 1
    );
    assert_eq!(sim.result(b"c1", 1), expected(graph, keys), "{context}");
    sim.assert_clean();
    sim.dispatched.len()
}

#[test]
fn the_end_to_end_graphs_come_out_right_with_workers_dying_and_rejoining() {
    for (name, graph, keys) in graphs() {
        let mut redone = 0;
        for victim in 0..3 {
            for kill_after in [0, 1, 2, 3, 4, 5, 6, 8, 12, 1000] {
                let sent = run_through_failures(&graph, &keys, victim, kill_after);
                redone += sent - graph.len();
            }
        }
        // (The failures must have cost work, or they tested nothing.)
        assert!(redone > 0, "{name}: no task was ever sent again");
    }
}

#[test]
fn the_end_to_end_graphs_come_out_right_on_a_quiet_cluster() {
    let functions = all_functions();
    let functions: Vec<&str> = functions.iter().map(String::as_str).collect();
    for (name, graph, keys) in graphs() {
        let mut sim = Sim::new();
        sim.worker(b"w1", &functions, 2);
        sim.worker(b"w2", &functions, 1);
        sim.get(b"c1", 1, &graph, Keys::from(keys.clone()), false);
        sim.run();
        assert_eq!(sim.result(b"c1", 1), expected(&graph, &keys), "{name}");
        sim.assert_clean();
    }
}

#[test]
fn a_failing_task_fails_its_dependents_and_the_cluster_goes_on() {
    let functions = all_functions();
    let functions: Vec<&str> = functions.iter().map(String::as_str).collect();
    let mut sim = Sim::new();
    sim.worker(b"w1", &functions, 2);
    sim.worker(b"w2", &functions, 2);
    let mut g = Graph::new();
    g.insert("bad", task("fail", ("deliberate failure",)));
    g.insert("after", task("inc", (key("bad"),)));
    sim.get(b"c1", 1, &g, "after", false);
    sim.run();
    let error = sim.error(b"c1", 1);
    assert_eq!(error.kind, "dependency_failed");
    assert_eq!(error.key.as_deref(), Some("after"));
    assert_eq!(error.dependency.as_deref(), Some("bad"));
    assert!(error.message.contains("deliberate failure"), "{error:?}");
    let (name, graph, keys) = graphs().remove(0);
    sim.get(b"c1", 2, &graph, Keys::from(keys.clone()), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), expected(&graph, &keys), "{name}");
    sim.assert_clean();
}
