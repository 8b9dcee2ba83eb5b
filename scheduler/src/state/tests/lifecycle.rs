//! Tests of a task's end (see `lifecycle.rs`): a failure fails every computation that needs
//! it and leaves nothing behind; reports of tasks nobody wants are dropped; a task whose worker
//! could not fetch its inputs is given again, a bounded number of times.

use super::*;

#[test]
fn task_failure_fails_the_graph_and_leaves_nothing() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report_failed(&mut s, b"w1", failed("x", "add", "integer overflow"), t0);
    // z was asked for: its error names it, and the input that failed, its function and
    // message.
    let e = error_of(&out, b"c1", 1).expect("the get fails");
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("x"));
    assert_eq!(e.function.as_deref(), Some("add"));
    assert!(e.message.contains("integer overflow"), "{}", e.message);
    assert!(
        out.compute.is_empty(),
        "dependents of x do not run: {out:?}"
    );
    assert_eq!(s.task_count(), 0, "nothing left behind");
    assert_eq!(s.graph_count(), 0);
    assert_eq!(
        s.who_has("x"),
        Vec::<String>::new(),
        "a failed key is not stored"
    );
    assert_eq!(s.workers(t0)[0].processing, 0);
}

#[test]
fn failure_in_the_middle_releases_finished_inputs() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let out = report_failed(&mut s, b"w1", failed("y", "inc", "nope"), t0);
    let e = error_of(&out, b"c1", 1).unwrap();
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("y"));
    // x is released with the failure (and y, the failed key, in case the worker kept
    // something of it).
    assert_eq!(released(&out, b"w1"), vec!["x", "y"]);
    assert!(out.compute.is_empty(), "z does not run");
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.held_count(), 0);
}

#[test]
fn failure_does_not_disturb_other_clients() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut other = Graph::new();
    other.insert("a", task("inc", (1,)));
    other.insert("b", task("inc", (key("a"),)));
    sim.get(b"c2", 1, &other, "b", false);
    // x fails wherever it was sent.
    let (route, _) = sim
        .dispatched
        .iter()
        .find(|(_, k)| k == "x")
        .cloned()
        .expect("x dispatched");
    sim.pending
        .get_mut(&route)
        .unwrap()
        .retain(|t| t.key != "x");
    let out = report_failed(&mut sim.s, &route, failed("x", "add", "boom"), sim.now);
    sim.absorb(out);
    sim.run();
    let e = sim.error(b"c1", 1);
    assert_eq!(e.kind, "dependency_failed");
    assert_eq!(e.key.as_deref(), Some("z"));
    assert_eq!(e.dependency.as_deref(), Some("x"));
    assert_eq!(sim.result(b"c2", 1), ints(&[("b", 3)]));
    assert_eq!(sim.times_dispatched("y"), 0);
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn failure_and_success_side_by_side_leave_nothing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut other = Graph::new();
    other.insert("a", task("inc", (1,)));
    other.insert("b", task("inc", (key("a"),)));
    sim.get(b"c2", 1, &other, "b", false);
    sim.pending
        .get_mut(b"w1".as_slice())
        .unwrap()
        .retain(|t| t.key != "x");
    let out = report_failed(&mut sim.s, b"w1", failed("x", "add", "boom"), sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("b", 3)]));
    sim.assert_clean();
}

#[test]
fn failure_fails_every_graph_needing_the_key() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let out = get(&mut s, b"c2", 5, &xyz(), "z", false, t0);
    assert!(out.compute.is_empty(), "x is already processing");
    let out = report_failed(&mut s, b"w1", failed("x", "add", "boom"), t0);
    for (client, request, wanted) in [(b"c1", 1, "y"), (b"c2", 5, "z")] {
        let e = error_of(&out, client, request).expect("both fail");
        assert_eq!(e.kind, "dependency_failed");
        assert_eq!(e.key.as_deref(), Some(wanted));
        assert_eq!(e.dependency.as_deref(), Some("x"));
    }
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.graph_count(), 0);
}

#[test]
fn report_for_a_key_nobody_wants_is_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = report(&mut s, b"w1", vec![done_held("stray", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["stray"]);
    let out = report_failed(&mut s, b"w1", failed("stray", "inc", "x"), t0);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn missing_dependency_is_retried() {
    // w2 runs y but cannot fetch x from w1 (w1 lost it): x is recomputed and y runs again.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let y = task_of(&out, b"w2", "y");
    assert_eq!(
        listed(&y.who_has),
        vec![("x".to_string(), vec![addr(b"w1")])]
    );
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "no holder had x".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0);
    assert!(out.to_clients.is_empty(), "retried, not failed: {out:?}");
    let sent = all_compute_keys(&out);
    assert_eq!(sent, vec!["x"], "x recomputed first, y waits for it");
    let route = if computes(&out, b"w1").is_empty() {
        b"w2"
    } else {
        b"w1"
    };
    let out = report(&mut s, route, vec![done_held("x", 8)], t0);
    assert_eq!(all_compute_keys(&out), vec!["y"]);
    let out = report(&mut s, b"w2", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

/// A worker that found an input of another definition than it was given with names no
/// input: the task is given again (a few times), not failed at once.
#[test]
fn a_task_whose_inputs_were_replaced_is_given_again() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let replaced = || TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "an input was replaced by another definition".into(),
        missing: None,
    };
    for _ in 0..3 {
        let out = report_failed(&mut s, b"w1", replaced(), t0);
        assert!(
            out.to_clients.is_empty(),
            "given again, not failed: {out:?}"
        );
        assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    }
    // Bounded: the fourth time it fails.
    let out = report_failed(&mut s, b"w1", replaced(), t0);
    assert!(!out.to_clients.is_empty(), "{out:?}");
}

#[test]
fn missing_dependency_while_the_input_is_recomputed_runs_it_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    // y runs on w2; w1 dies before w2 fetched x. The scheduler notices first ...
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["x"], "x recomputed");
    // ... then w2 says it could not fetch x. x is already on its way: do not run it twice.
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 did not answer".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0 + secs(12));
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert!(
        out.compute.is_empty(),
        "x is processing already; nothing new to send: {out:?}"
    );
    let out = report(&mut s, b"w2", vec![done_held("x", 8)], t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"]);
    let out = report(&mut s, b"w2", vec![done("y", Value::Int(4))], t0 + secs(12));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn missing_dependency_retries_are_bounded() {
    // w2 (the only worker with inc) keeps failing to fetch x from w1: x is recomputed and y
    // retried a few times, then y fails with `missing_dependency`.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    get(&mut s, b"c1", 1, &g, "y", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"]);
    let missing = || TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "no holder answered".into(),
        missing: Some("x".into()),
    };
    for attempt in 0..3 {
        let out = report_failed(&mut s, b"w2", missing(), t0);
        assert!(out.to_clients.is_empty(), "attempt {attempt} is retried");
        assert_eq!(compute_keys(&out, b"w1"), vec!["x"], "x recomputed");
        let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
        assert_eq!(compute_keys(&out, b"w2"), vec!["y"], "y sent again");
    }
    let out = report_failed(&mut s, b"w2", missing(), t0);
    let e = error_of(&out, b"c1", 1).expect("y fails after 3 retries");
    assert_eq!(e.kind, "missing_dependency");
    assert_eq!(e.key.as_deref(), Some("y"));
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(s.graph_count(), 0);
    assert_eq!(s.task_count(), 0);
}
