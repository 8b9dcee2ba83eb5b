//! Tests of lost keys (see `recompute.rs`): computed again from their lineage, inputs released
//! long ago included, or failed as `lost` when they were scattered data.

use super::*;

#[test]
fn lost_key_still_needed_is_recomputed() {
    // x is held only by w1, which also runs y (its input is there); w1 dies. x must be
    // computed again on w2, and y sent again once x is back, never before.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "x on w1");
    sim.now = t0 + secs(1);
    assert!(sim.step(), "w1 runs x");
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "y on w1, next to x");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    assert_eq!(
        compute_keys(&out, b"w2"),
        vec!["x"],
        "x is recomputed first; y waits for it"
    );
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
    assert_eq!(sim.times_dispatched("x"), 2);
}

#[test]
fn lost_key_needed_by_a_task_on_another_worker_is_recomputed() {
    // x is on w1 (the only `add` worker besides w2... w1 lacks inc), y runs on w2 and fetches
    // x from w1 -- but w1 died first.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    assert!(sim.step(), "w1 runs x");
    assert_eq!(sim.pending[b"w2".as_slice()].len(), 1, "y goes to w2");
    // w1 dies before w2 fetched x: w2 reports it could not get x.
    sim.kill(b"w1");
    sim.pending.remove(b"w2".as_slice());
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 did not answer".into(),
        missing: Some("x".into()),
    };
    sim.now = t0 + secs(2);
    let out = report_failed(&mut sim.s, b"w2", f, sim.now);
    assert!(out.to_clients.is_empty());
    sim.absorb(out);
    // Then the scheduler notices w1 is gone.
    heartbeat(&mut sim.s, b"w2", t0 + secs(11));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
}

#[test]
fn lost_key_nobody_needs_is_forgotten() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let mut g = Graph::new();
    g.insert("a", task("inc", (1,)));
    get(&mut s, b"c1", 1, &g, "a", false, t0);
    let out = report(&mut s, b"w1", vec![done("a", Value::Int(2))], t0);
    assert!(result_of(&out, b"c1", 1).is_some());
    assert_eq!(s.task_count(), 0);
    let out = tick(&mut s, t0 + secs(12));
    assert!(out.compute.is_empty(), "{out:?}");
    assert_eq!(s.task_count(), 0);
}

#[test]
fn kept_key_lost_with_its_worker_can_still_be_fetched() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.get(b"c1", 2, &Graph::new(), "a0", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("a0", 1)]));
}

#[test]
fn goodbye_of_the_only_holder_recomputes_before_dependents_run() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.step(); // x on w1
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    let out = send(
        &mut sim.s,
        b"w1",
        FromWorker::Goodbye {
            worker_id: "id-w1".into(),
        },
        sim.now,
    );
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 7)]));
}

#[test]
fn lost_input_blocks_its_waiting_dependents_again() {
    // z = add(y, x) waits for y only (x is in memory on w1). w1 dies: x must be computed again,
    // and z must wait for both y and the new x -- not run as soon as x is back.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"], "only w2 has inc");
    // w2 already fetched x and is running y when w1 dies.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["x"], "x recomputed on w2");
    let out = report(&mut s, b"w2", vec![done_held("x", 8)], t0 + secs(12));
    assert!(
        !compute_keys(&out, b"w2").contains(&"z".to_string()),
        "z sent while y is still running: {out:?}"
    );
    let out = report(&mut s, b"w2", vec![done_held("y", 8)], t0 + secs(12));
    assert_eq!(compute_keys(&out, b"w2"), vec!["z"]);
}

#[test]
fn kept_key_lost_without_its_inputs_can_be_computed_again() {
    // y is kept but its input x was released; when y's only holder dies it cannot be rebuilt,
    // so it is forgotten -- and a later get with its graph computes it afresh.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    let holder = sim.s.who_has("y");
    assert_eq!(holder.len(), 1);
    let (dead, alive): (&[u8], &[u8]) = if holder[0] == addr(b"w1") {
        (b"w1", b"w2")
    } else {
        (b"w2", b"w1")
    };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert!(
        out.to_clients.is_empty(),
        "nobody is waiting for y: {out:?}"
    );
    sim.absorb(out);
    assert_eq!(sim.s.who_has("y"), Vec::<String>::new());
    sim.get(b"c1", 2, &xyz(), "y", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("y", 4)]));
}

#[test]
fn lost_kept_key_is_recomputed_with_its_released_inputs_recursively() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &chain_abc(), "c", true);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c", 14)]));
    assert!(sim.was_released("a") && sim.was_released("b"));
    assert_eq!(sim.s.task_count(), 1, "only the kept c is left");
    let dead = holder_of(&sim.s, "c", &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert_eq!(
        compute_keys(&out, alive),
        vec!["a"],
        "a, then b, then c: only a can run first"
    );
    assert_eq!(
        sim.s.task_count(),
        3,
        "a and b are re-created from c's lineage"
    );
    sim.absorb(out);
    let before = sim.dispatched.len();
    sim.run();
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(again, vec!["b", "c"], "recomputed in order");
    assert_eq!(sim.s.who_has("c"), vec![addr(alive)]);
    assert_eq!(sim.s.task_count(), 1, "a and b are released again");
    assert_eq!(sim.held_anywhere(), vec!["c"]);
    sim.get(b"c1", 2, &Graph::new(), "c", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("c", 14)]));
}

/// A lost kept key over many released inputs (some referenced twice) is recomputed with all
/// of them re-created from its lineage, each once.
#[test]
fn lost_kept_wide_task_is_recomputed_with_its_released_inputs() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let n = 60;
    let mut g = independent(n);
    let mut refs: Vec<Node> = (0..n).map(|i| key(format!("a{i}"))).collect();
    refs.extend((0..n).step_by(3).map(|i| key(format!("a{i}"))));
    g.insert("total", task("sum", (list(refs),)));
    sim.get(b"c1", 1, &g, "total", true);
    sim.run();
    // a_i = i + 1: every one once, every third twice.
    let expected: i64 =
        (1..=n as i64).sum::<i64>() + (0..n as i64).step_by(3).map(|i| i + 1).sum::<i64>();
    assert_eq!(sim.result(b"c1", 1), ints(&[("total", expected)]));
    assert_eq!(sim.s.task_count(), 1, "only the kept total is left");
    let dead = holder_of(&sim.s, "total", &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(
        sim.s.task_count(),
        n + 1,
        "the inputs are re-created from the lineage"
    );
    let before = sim.dispatched.len();
    sim.absorb(out);
    sim.run();
    let again: Vec<&str> = sim.dispatched[before..]
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        again.len(),
        n + 1,
        "each input once, then the total: {again:?}"
    );
    assert_eq!(again.last(), Some(&"total"));
    sim.get(b"c1", 2, &Graph::new(), "total", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("total", expected)]));
}

#[test]
fn lost_kept_end_of_a_long_released_chain_is_recomputed() {
    let n = 300;
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("k0", task("inc", (0,)));
    for i in 1..n {
        g.insert(format!("k{i}"), task("inc", (key(format!("k{}", i - 1)),)));
    }
    let last = format!("k{}", n - 1);
    sim.get(b"c1", 1, &g, last.as_str(), true);
    sim.run();
    assert_eq!(sim.s.task_count(), 1);
    let dead = holder_of(&sim.s, &last, &[b"w1", b"w2"]);
    let alive: &[u8] = if dead == b"w1" { b"w2" } else { b"w1" };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(compute_keys(&out, alive), vec!["k0"]);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.times_dispatched("k0"), 2);
    assert_eq!(sim.times_dispatched(&last), 2);
    assert_eq!(sim.s.task_count(), 1);
    sim.get(b"c1", 2, &Graph::new(), last.as_str(), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[(last.as_str(), n as i64)]));
}

#[test]
fn lost_intermediate_needed_by_a_waiting_task_is_recomputed_from_released_inputs() {
    // a -> x -> z <- p: x is done on w1 (a released), z waits for p on w2; w1 dies.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("a", task("add", (1, 2)));
    g.insert("x", task("inc", (key("a"),)));
    g.insert("p", task("inc", (100,)));
    g.insert("z", task("add", (key("x"), key("p"))));
    sim.get(b"c1", 1, &g, "z", false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 1, "a on w1");
    assert_eq!(sim.pending[b"w2".as_slice()].len(), 1, "p on w2");
    assert!(sim.step(), "w1 runs a");
    assert!(sim.step(), "w1 runs x");
    assert!(sim.was_released("a"), "a went once x was done");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    assert_eq!(compute_keys(&out, b"w2"), vec!["a"], "a is re-created");
    assert!(out.to_clients.is_empty());
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("z", 105)]));
    assert_eq!(sim.times_dispatched("a"), 2);
    assert_eq!(sim.times_dispatched("x"), 2);
    assert_eq!(sim.times_dispatched("p"), 1);
    assert_eq!(sim.times_dispatched("z"), 1);
    sim.assert_clean();
}

#[test]
fn lost_input_of_a_task_fetching_it_elsewhere_is_recomputed() {
    // x is on w1 only; y was sent to w2 (which lacks x and must fetch it); w1 dies before
    // w2 fetched it. y is taken back, x recomputed, y sent again.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.worker(b"w3", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    assert!(sim.step(), "w1 runs x");
    let y_on = sim
        .pending
        .keys()
        .find(|r| sim.pending[*r].iter().any(|t| t.key == "y"))
        .cloned()
        .expect("y was sent");
    let y_task = sim.pending.remove(&y_on).unwrap();
    assert_eq!(
        listed(&y_task[0].who_has),
        vec![("x".to_string(), vec![addr(b"w1")])]
    );
    sim.kill(b"w1");
    for r in [b"w2", b"w3"] {
        heartbeat(&mut sim.s, r, t0 + secs(9));
    }
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    for r in [b"w2", b"w3"] {
        assert!(
            msgs_to(&out, r).contains(&ToWorker::PeerGone {
                address: addr(b"w1")
            }),
            "{} is told w1 is gone: {out:?}",
            name(r)
        );
    }
    assert_eq!(all_compute_keys(&out), vec!["x"], "x first; y waits");
    sim.absorb(out);
    // The worker that had y reports its fetch failed (late, after y was taken back).
    let f = TaskFailed {
        key: "y".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "w1 is gone".into(),
        missing: Some("x".into()),
    };
    let out = report_failed(&mut sim.s, &y_on, f, sim.now);
    assert!(out.to_clients.is_empty(), "a stale failure: {out:?}");
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("y", 4)]));
    assert_eq!(sim.times_dispatched("x"), 2);
    sim.assert_clean();
}

#[test]
fn lost_scattered_input_fails_the_waiting_client_naming_the_key() {
    // s is scattered (no lineage) on w1; t = inc(s) runs on w2, which must fetch s. w1 dies:
    // s cannot be recomputed, and the client waiting on t is told so.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &[], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("s".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("s", 8)], t0);
    let mut g = Graph::new();
    g.insert("t", task("inc", (key("s"),)));
    let out = get(&mut s, b"c1", 2, &g, "t", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    let e = error_of(&out, b"c1", 2).expect("the client is told");
    assert_eq!(e.kind, "dependency_failed", "{e:?}");
    assert_eq!(e.key.as_deref(), Some("t"), "{e:?}");
    assert_eq!(e.dependency.as_deref(), Some("s"), "{e:?}");
    assert!(e.message.contains("scatter"), "{e:?}");
    // Late report of t's fetch failing changes nothing.
    let f = TaskFailed {
        key: "t".into(),
        hash: None,
        kind: "missing_dependency".into(),
        function: None,
        message: "gone".into(),
        missing: Some("s".into()),
    };
    let out = report_failed(&mut s, b"w2", f, t0 + secs(11));
    assert!(out.to_clients.is_empty(), "{out:?}");
}

#[test]
fn lost_key_computed_from_a_lost_scattered_input_fails_naming_the_key() {
    // c = inc(s) is kept, s scattered; both live on w1 only, which dies. c cannot be rebuilt:
    // a client asking for c then gets an error, not a hang or a wrong value.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("s".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("s", 8)], t0);
    let mut g = Graph::new();
    g.insert("c", task("inc", (key("s"),)));
    g.insert("d", task("inc", (key("c"),)));
    let out = get(&mut s, b"c1", 2, &g, "c", true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c"]);
    report(&mut s, b"w1", vec![done("c", Value::Int(6))], t0);
    heartbeat(&mut s, b"w2", t0 + secs(9));
    tick(&mut s, t0 + secs(11));
    let out = get(&mut s, b"c1", 3, &g, "d", false, t0 + secs(11));
    let e = error_of(&out, b"c1", 3).expect("an error, not a hang");
    assert!(
        ["lost", "dependency_failed", "missing_key"].contains(&e.kind.as_str()),
        "{e:?}"
    );
    assert!(e.key.is_some(), "{e:?}");
}

#[test]
fn lost_worker_keys_with_other_holders_are_kept_not_recomputed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["add"], 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("y2", task("inc", (key("x"),)));
    g.insert("t", task("add", (key("y"), key("y2"))));
    get(&mut s, b"c1", 1, &g, "t", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let msg = FromWorker::Report(ReportBody {
        done: vec![done_held("y", 8)],
        failed: Vec::new(),
        acquired: vec![info(&s, "x", 8)],
    });
    send(&mut s, b"w2", msg, t0);
    assert_eq!(s.who_has("x"), vec![addr(b"w1"), addr(b"w2")]);
    // w1 dies: x is still on w2, so nothing is recomputed and y2 (on w2) is not disturbed.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert!(out.compute.is_empty(), "{out:?}");
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    let out = report(&mut s, b"w2", vec![done_held("y2", 8)], t0 + secs(11));
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
    let out = report(&mut s, b"w2", vec![done("t", Value::Int(8))], t0 + secs(11));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("t", 8)])));
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
}
