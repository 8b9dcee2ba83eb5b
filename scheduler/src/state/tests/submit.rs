//! Tests of submission (see `submit.rs`): invalid graphs are refused whole, naming the key;
//! keys the scheduler holds or computes are reused, not computed again, and shared between
//! clients.

use super::*;

#[test]
fn held_key_is_reused_not_recomputed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", true, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
    assert_eq!(s.who_has("y"), vec![addr(b"w1")]);

    // A later computation refers to y (here without y's node: the held key is enough) and
    // asks for it too.
    let mut g = Graph::new();
    g.insert("w", task("add", (key("y"), 10)));
    let out = get(&mut s, b"c2", 2, &g, keys_of(&["w", "y"]), false, t0);
    assert_eq!(
        all_compute_keys(&out),
        vec!["w"],
        "y is held: not recomputed"
    );
    assert!(task_of(&out, b"w1", "w").who_has.is_empty(), "y is on w1");
    let requests: Vec<(u64, Vec<String>)> = out
        .to_workers
        .iter()
        .filter_map(|(route, msg)| match msg {
            ToWorker::GetData(GetDataBody { request, keys }) if route == b"w1" => {
                Some((*request, keys.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "one get_data to y's holder: {out:?}");
    assert_eq!(requests[0].1, vec!["y"]);
    let data = FromWorker::Data(DataBody {
        request: requests[0].0,
        items: vec![KeyData::inline("y".into(), Value::Int(4))],
        missing: Vec::new(),
    });
    let out = send(&mut s, b"w1", data, t0);
    assert!(out.to_clients.is_empty(), "w is not done yet");
    let out = report(&mut s, b"w1", vec![done("w", Value::Int(14))], t0);
    assert_eq!(
        result_of(&out, b"c2", 2),
        Some(ints(&[("w", 14), ("y", 4)]))
    );
    assert_eq!(
        released(&out, b"w1"),
        vec!["w"],
        "w is not kept; y stays kept"
    );
    assert_eq!(s.who_has("y"), vec![addr(b"w1")]);
}

#[test]
fn held_key_in_a_resubmitted_graph_is_not_recomputed() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    let before = sim.dispatched.len();
    // The same graph again, asking for z: y is held; only z (and nothing for y) runs.
    sim.get(b"c1", 2, &xyz(), keys_of(&["z", "y"]), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("y", 4), ("z", 7)]));
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert!(!again.contains(&"y"), "y was recomputed: {again:?}");
    assert!(again.contains(&"z"));
}

/// A wide task (past the small-task dedup) whose references repeat and mix keys of its own
/// graph with keys the scheduler holds from an earlier computation: each input is one
/// dependency, the held ones are not recomputed, and the value counts every reference.
#[test]
fn a_wide_task_with_repeated_and_held_inputs() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    sim.get(
        b"c1",
        1,
        &independent(10),
        keys_of(&["a0", "a1", "a2"]),
        true,
    );
    sim.run();
    let before = sim.dispatched.len();
    // a3..a9 were released; a0..a2 are held. b0..b9 are new.
    let mut g = independent(10);
    let mut refs = Vec::new();
    for round in 0..3 {
        for i in 0..10 {
            refs.push(key(format!("a{i}")));
            if round < 2 {
                refs.push(key(format!("b{i}")));
            }
        }
    }
    for i in 0..10 {
        g.insert(format!("b{i}"), task("inc", (100 + i as i64,)));
    }
    g.insert("total", task("sum", (list(refs),)));
    sim.get(b"c1", 2, &g, "total", false);
    sim.run();
    // a_i = i + 1, b_i = 101 + i: three times the a's, twice the b's.
    let a: i64 = (1..=10).sum();
    let b: i64 = (101..=110).sum();
    assert_eq!(sim.result(b"c1", 2), ints(&[("total", 3 * a + 2 * b)]));
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    for held in ["a0", "a1", "a2"] {
        assert!(!again.contains(&held), "{held} was recomputed: {again:?}");
    }
    for k in ["a3", "a9", "b0", "b9", "total"] {
        assert_eq!(
            again.iter().filter(|d| **d == k).count(),
            1,
            "{k}: {again:?}"
        );
    }
}

#[test]
fn held_output_alone_is_gathered_without_computing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    let before = sim.dispatched.len();
    sim.get(b"c2", 2, &Graph::new(), "a0", false);
    assert_eq!(sim.get_data.len(), 1, "a get_data for a0");
    sim.run();
    assert_eq!(sim.dispatched.len(), before, "nothing computed");
    assert_eq!(sim.result(b"c2", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")], "still kept");
}

#[test]
fn held_key_missing_on_its_worker_is_recomputed() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    // The worker lost it (say, its store was wiped) without telling anyone.
    sim.wipe(b"w1");
    sim.get(b"c2", 2, &Graph::new(), "a0", false);
    sim.run();
    assert_eq!(sim.result(b"c2", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.times_dispatched("a0"), 2, "recomputed from its lineage");
}

#[test]
fn empty_request_answers_at_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), Keys::Many(vec![]), false, t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(BTreeMap::new()));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.graph_count(), 0);
}

/// Submits `graph` for `keys` on a scheduler with one worker and returns the error, checking
/// nothing was created or sent.
fn invalid(graph: &Graph, keys: impl Into<Keys>) -> ErrorInfo {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 9, graph, keys, false, t0);
    assert!(out.compute.is_empty(), "nothing runs: {out:?}");
    assert!(out.release.is_empty());
    assert_eq!(out.to_clients.len(), 1);
    assert_eq!(s.task_count(), 0, "an invalid graph leaves nothing behind");
    assert_eq!(s.graph_count(), 0);
    error_of(&out, b"c1", 9).expect("an error answers the request")
}

#[test]
fn missing_reference_is_an_error_naming_the_key() {
    let mut g = xyz();
    g.insert("y", task("inc", (key("nope"),)));
    let e = invalid(&g, "z");
    assert_eq!(e.kind, "missing_key");
    assert_eq!(e.key.as_deref(), Some("y"), "{e:?}");
    assert!(e.message.contains("\"nope\""), "{}", e.message);
}

#[test]
fn requested_key_not_in_graph_is_an_error() {
    let e = invalid(&xyz(), keys_of(&["y", "nope"]));
    assert_eq!(e.kind, "missing_key");
    assert_eq!(e.key.as_deref(), Some("nope"));
    assert!(e.message.contains("\"nope\""), "{}", e.message);
}

#[test]
fn cycle_is_an_error_showing_the_path() {
    let mut g = Graph::new();
    g.insert("a", task("inc", (key("b"),)));
    g.insert("b", task("inc", (key("c"),)));
    g.insert("c", task("inc", (key("a"),)));
    g.insert("d", task("inc", (key("a"),)));
    let e = invalid(&g, "d");
    assert_eq!(e.kind, "cycle");
    assert_eq!(e.key.as_deref(), Some("a"));
    assert!(e.message.contains("a -> b -> c -> a"), "{}", e.message);
    assert!(
        !e.message.contains("d ->"),
        "d is not on the cycle: {}",
        e.message
    );
}

#[test]
fn self_reference_is_a_cycle() {
    let mut g = Graph::new();
    g.insert("a", task("add", (key("a"), 1)));
    let e = invalid(&g, "a");
    assert_eq!(e.kind, "cycle");
    assert!(e.message.contains("a -> a"), "{}", e.message);
}

#[test]
fn alias_cycle_is_an_error() {
    // References without tasks: a is b, b is a.
    let mut g = Graph::new();
    g.insert("a", key("b"));
    g.insert("b", key("a"));
    let e = invalid(&g, "a");
    assert_eq!(e.kind, "cycle");
}

#[test]
fn unknown_function_is_an_error_naming_key_and_function() {
    let mut g = xyz();
    g.insert("y", task("inc", (task("frobnicate", (key("x"),)),)));
    let e = invalid(&g, "z");
    assert_eq!(e.kind, "unknown_function");
    assert_eq!(e.key.as_deref(), Some("y"));
    assert_eq!(e.function.as_deref(), Some("frobnicate"));
    assert!(e.message.contains("frobnicate"), "{}", e.message);
}

#[test]
fn unneeded_keys_are_not_validated() {
    // z is broken but only y is asked for: it is culled, as in dask.
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let mut g = xyz();
    g.insert("z", task("frobnicate", (key("missing"),)));
    sim.get(b"c1", 1, &g, "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
}

#[test]
fn invalid_graph_does_not_disturb_what_is_in_flight() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert_eq!(s.task_count(), 2);
    // Another graph shares x and has a broken key after creating nothing.
    let mut g = xyz();
    g.insert("q", task("inc", (key("x"),)));
    g.insert("r", task("add", (key("q"), key("gone"))));
    let out = get(&mut s, b"c2", 2, &g, "r", false, t0);
    assert_eq!(error_of(&out, b"c2", 2).unwrap().kind, "missing_key");
    assert_eq!(s.task_count(), 2, "no task of the invalid graph was added");
    assert_eq!(s.graph_count(), 1);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn failed_key_is_forgotten_and_can_be_resubmitted() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let mut g = xyz();
    g.insert("keep_x", task("inc", (key("x"),)));
    get(&mut s, b"c1", 1, &g, "y", false, t0);
    let out = report_failed(&mut s, b"w1", failed("x", "add", "boom"), t0);
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "dependency_failed");
    // After the failure, nothing of it is left, so a resubmission runs x again.
    let out = get(&mut s, b"c1", 2, &xyz(), "y", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
}

#[test]
fn shared_key_is_computed_once_for_two_clients() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g2 = Graph::new();
    g2.insert("x", task("add", (1, 2)));
    g2.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.get(b"c2", 1, &g2, keys_of(&["q", "x"]), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103), ("x", 3)]));
    assert_eq!(sim.times_dispatched("x"), 1, "x computed once");
}

#[test]
fn shared_output_is_delivered_to_both_clients() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let out = get(&mut s, b"c2", 2, &xyz(), "y", false, t0);
    assert!(out.compute.is_empty(), "already in flight");
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("y", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("y", 4)])));
}

#[test]
fn output_computed_without_value_is_gathered_for_a_late_client() {
    // x runs as an intermediate (no value sent back); meanwhile another client asks for x
    // itself, so the scheduler fetches it from the holder once it is done.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(!task_of(&out, b"w1", "x").send_value);
    get(&mut s, b"c2", 2, &xyz(), "x", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let request = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, keys }) if r == b"w1" && keys == &["x"] => {
                Some(*request)
            }
            _ => None,
        })
        .expect("x is gathered from w1");
    let data = FromWorker::Data(DataBody {
        request,
        items: vec![KeyData::inline("x".into(), Value::Int(3))],
        missing: Vec::new(),
    });
    let out = send(&mut s, b"w1", data, t0);
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("x", 3)])));
    // An answer to an unknown request is ignored.
    let stale = FromWorker::Data(DataBody {
        request: request + 100,
        items: Vec::new(),
        missing: vec!["x".into()],
    });
    assert!(send(&mut s, b"w1", stale, t0).is_empty());
}

#[test]
fn shared_key_already_in_memory_is_used() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    // c2 needs x too; it is held, so its task is ready at once.
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("inc", (key("x"),)));
    let out = get(&mut s, b"c2", 2, &g, "q", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["q"]);
    let out = report(&mut s, b"w1", vec![done("q", Value::Int(4))], t0);
    assert_eq!(result_of(&out, b"c2", 2), Some(ints(&[("q", 4)])));
    assert_eq!(released(&out, b"w1"), vec!["q"], "c1's z still needs x");
    assert_eq!(s.who_has("x"), vec![addr(b"w1")]);
}
