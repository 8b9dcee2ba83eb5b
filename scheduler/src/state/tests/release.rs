//! Tests of release by reference counts: only the requested values go back, intermediates
//! are released as soon as nothing needs them, results leave before the releases they free,
//! and `keep_results` keeps the outputs (see `release.rs`).

use super::*;

#[test]
fn get_y_returns_four_and_culls_z() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.times_dispatched("x"), 1);
    assert_eq!(sim.times_dispatched("y"), 1);
    assert_eq!(sim.times_dispatched("z"), 0, "z is not needed for y");
}

#[test]
fn only_requested_values_are_sent_back() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"], "only x is ready");
    assert!(
        !task_of(&out, b"w1", "x").send_value,
        "x is an intermediate"
    );
    assert!(out.to_clients.is_empty());
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let y = task_of(&out, b"w1", "y");
    assert!(y.send_value, "y is requested");
    assert!(y.who_has.is_empty(), "x is already on w1: {:?}", y.who_has);
    assert_eq!(
        (*y.node).clone(),
        task("inc", (key("x"),)),
        "the node travels in wire form"
    );
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn nested_keys_get_each_key_once() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from(vec!["z"]), Keys::from("y")]);
    sim.get(b"c1", 7, &xyz(), keys.clone(), false);
    sim.run();
    let values: HashMap<String, Value> = sim.result(b"c1", 7).into_iter().collect();
    assert_eq!(values.len(), 2);
    // Shaping is the client's job; with these items it gives [[7], 4].
    assert_eq!(
        keys.shape(&values),
        Value::List(vec![Value::List(vec![Value::Int(7)]), Value::Int(4)])
    );
    for k in ["x", "y", "z"] {
        assert_eq!(sim.times_dispatched(k), 1, "{k} computed once");
    }
}

#[test]
fn repeated_keys_are_answered_once() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from("y"), Keys::from(vec!["y", "x"])]);
    sim.get(b"c1", 1, &xyz(), keys, false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("x", 3), ("y", 4)]));
}

#[test]
fn no_worker_holds_intermediates_after_get_y() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert!(sim.was_released("x"), "x is an intermediate");
    assert!(sim.was_released("y"), "y is not kept");
    sim.assert_clean();
}

#[test]
fn no_worker_holds_intermediates_after_nested_get() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let keys = Keys::Many(vec![Keys::from(vec!["z"]), Keys::from("y")]);
    sim.get(b"c1", 1, &xyz(), keys, false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4), ("z", 7)]));
    for k in ["x", "y", "z"] {
        assert!(sim.was_released(k), "{k} released");
    }
    sim.assert_clean();
}

#[test]
fn outputs_without_inputs_are_released() {
    // A computation whose outputs have no dependencies leaves nothing behind.
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(
        b"c1",
        1,
        &independent(3),
        keys_of(&["a0", "a1", "a2"]),
        false,
    );
    sim.run();
    assert_eq!(
        sim.result(b"c1", 1),
        ints(&[("a0", 1), ("a1", 2), ("a2", 3)])
    );
    sim.assert_clean();
}

#[test]
fn intermediate_is_released_once_its_dependents_are_done() {
    // x feeds a and b; the output is c = add(a, b) computed from them. x goes when a and b
    // are both done, before c runs.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    g.insert("a", task("inc", (key("x"),)));
    g.insert("b", task("inc", (key("x"),)));
    g.insert("c", task("add", (key("a"), key("b"))));
    get(&mut s, b"c1", 1, &g, "c", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(all_compute_keys(&out), vec!["a", "b"]);
    let out = report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    assert!(released(&out, b"w1").is_empty(), "b still needs x");
    let out = report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c"]);
    assert_eq!(s.who_has("x"), Vec::<String>::new());
}

#[test]
fn result_leaves_before_the_releases_it_frees() {
    // The loop flushes the turn's messages, then calls on_flushed: the answer is not held up
    // by forgetting the graph behind it.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    g.insert("b", task("inc", (2,)));
    g.insert("total", task("add", (key("a"), key("b"))));
    get(&mut s, b"c1", 1, &g, "total", false, t0);
    report(
        &mut s,
        b"w1",
        vec![done_held("a", 8), done_held("b", 8)],
        t0,
    );
    let mut out = Outbox::default();
    let msg = FromWorker::Report(ReportBody {
        done: vec![done("total", Value::Int(5))],
        failed: Vec::new(),
        acquired: Vec::new(),
    });
    let msg = with_hashes(&s, msg);
    s.on_worker_message(b"w1", msg, t0, &mut out);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("total", 5)])));
    let mut early = released(&out, b"w1");
    early.retain(|k| k != "total");
    assert!(
        early.is_empty(),
        "inputs released before the flush: {early:?}"
    );
    let mut out = Outbox::default();
    s.on_flushed(&mut out);
    let mut late = released(&out, b"w1");
    late.sort();
    assert_eq!(late, vec!["a", "b"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn a_key_freed_in_a_turn_serves_a_get_of_the_same_turn() {
    // Between the turn that freed `a` and on_flushed, a new computation wants it: it is
    // reused, not recomputed, and not released.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    g.insert("b", task("inc", (key("a"),)));
    get(&mut s, b"c1", 1, &g, "b", false, t0);
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    let mut out = Outbox::default();
    let msg = FromWorker::Report(ReportBody {
        done: vec![done("b", Value::Int(3))],
        failed: Vec::new(),
        acquired: Vec::new(),
    });
    let msg = with_hashes(&s, msg);
    s.on_worker_message(b"w1", msg, t0, &mut out);
    let mut g2 = Graph::new();
    g2.insert("a", task("inc", (1,)));
    g2.insert("c", task("inc", (key("a"),)));
    let request = GetRequest {
        request: 2,
        graph: g2,
        hashes: Vec::new(),
        keys: "c".into(),
        keep_results: false,
        progress: false,
    };
    s.on_get(b"c1", request, t0, &mut out);
    s.on_flushed(&mut out);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["c"],
        "a is reused, not recomputed"
    );
    assert!(!released(&out, b"w1").contains(&"a".to_string()));
    let out = report(&mut s, b"w1", vec![done("c", Value::Int(3))], t0);
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("c", 3)])));
    let mut released = released(&out, b"w1");
    released.sort();
    assert_eq!(released, vec!["a", "c"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn keep_results_leaves_outputs_on_workers() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.s.who_has("y"), vec![addr(b"w1")]);
    assert!(sim.holds(b"w1", "y"));
    assert!(!sim.was_released("y"));
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn keep_results_still_releases_intermediates() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    assert!(sim.was_released("x"));
    assert_eq!(sim.held_anywhere(), vec!["y"]);
    assert_eq!(sim.s.task_count(), 1);
    assert_eq!(sim.s.held_count(), 1);
}

#[test]
fn counts_follow_a_computation() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (0, 0, 0));
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (3, 1, 0));
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (3, 1, 1));
    let w = &s.workers(t0)[0];
    assert_eq!((w.keys, w.nbytes, w.processing), (1, 8, 1));
    report(&mut s, b"w1", vec![done_held("y", 8)], t0);
    assert_eq!(s.held_count(), 2);
    assert_eq!(s.workers(t0)[0].nbytes, 16);
    report(&mut s, b"w1", vec![done("z", Value::Int(7))], t0);
    assert_eq!(s.graph_count(), 0);
}
