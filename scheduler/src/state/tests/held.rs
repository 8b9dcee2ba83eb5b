//! Tests of the copies workers report holding (see `held.rs`): at registration (used, adopted
//! or released), fetched from peers, and a worker back with a new identity.

use super::*;

/// A registering worker's copy of a key being computed is used (it is the same definition);
/// a key the scheduler does not know is adopted for `adopt_grace` (a client may resubmit or
/// gather it), then released; a stale copy (another definition) is released at once.
#[test]
fn keys_held_at_registration_are_used_adopted_or_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    // A worker joins holding x (from an earlier life) and an unknown key.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w2".into(),
        address: addr(b"w2"),
        pid: 1,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![
            info(&s, "x", 8),
            KeyInfo {
                key: "junk".into(),
                nbytes: 8,
                hash: DefHash::of_value(&Value::from("junk")),
            },
        ],
    };
    let out = send(&mut s, b"w2", msg, t0);
    assert!(released(&out, b"w2").is_empty(), "{out:?}");
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    assert_eq!(s.who_has("junk"), vec![addr(b"w2")], "adopted");
    assert_eq!(
        compute_keys(&out, b"w2"),
        vec!["y"],
        "y runs next to x at once"
    );
    // w1's late report of x: x is no longer assigned to it, so it is not taken.
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(s.who_has("x"), vec![addr(b"w2")]);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    // Unclaimed, the adopted key goes after the grace period.
    heartbeat(&mut s, b"w1", t0 + secs(59));
    heartbeat(&mut s, b"w2", t0 + secs(59));
    assert!(released(&tick(&mut s, t0 + secs(59)), b"w2").is_empty());
    heartbeat(&mut s, b"w1", t0 + secs(61));
    heartbeat(&mut s, b"w2", t0 + secs(61));
    assert_eq!(released(&tick(&mut s, t0 + secs(61)), b"w2"), vec!["junk"]);
    // A stale copy of y (another definition) is dropped at once.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w3".into(),
        address: addr(b"w3"),
        pid: 1,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![KeyInfo {
            key: "y".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::Int(20)),
        }],
    };
    let out = send(&mut s, b"w3", msg, t0 + secs(61));
    assert_eq!(released(&out, b"w3"), vec!["y"]);
    assert!(s.who_has("y").is_empty());
}

#[test]
fn acquired_copies_are_tracked_and_released() {
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
    let out = report(&mut s, b"w2", vec![done_held("y2", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!(released(&out, b"w2"), vec!["x"]);
    assert_eq!(compute_keys(&out, b"w2"), vec!["t"]);
}

#[test]
fn worker_back_with_a_new_identity_keeps_wanted_data_and_drops_the_rest() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &chain_abc(), "c", true, t0);
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    let out = report(&mut s, b"w1", vec![done("c", Value::Int(14))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("c", 14)])));
    assert_eq!(s.task_count(), 1);
    // The worker process restarts (new id, same address, same sled store) on a new route,
    // holding c, a key nobody wants any more (b), and junk.
    let has = vec![
        info(&s, "c", 8),
        KeyInfo {
            key: "b".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::from("b")),
        },
        KeyInfo {
            key: "junk".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::from("junk")),
        },
    ];
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has,
    };
    let out = send(&mut s, b"w1-reborn", msg, t0 + secs(1));
    assert!(
        out.compute.is_empty(),
        "c is held: nothing to recompute: {out:?}"
    );
    // b and junk, unknown now, are adopted for the grace period (a client might resubmit
    // or gather them), c is used as it is.
    assert!(released(&out, b"w1-reborn").is_empty(), "{out:?}");
    let w = s.workers(t0 + secs(1));
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].worker_id.as_str(), w[0].pid, w[0].keys),
        ("id-w1-reborn", 777, 3)
    );
    assert_eq!(s.who_has("c"), vec![addr(b"w1")]);
    assert_eq!(s.task_count(), 3, "c, and the adopted b and junk");
    // Messages from the old route are not taken for the new worker.
    let out = heartbeat(&mut s, b"w1", t0 + secs(1));
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
    // Unclaimed, b and junk go after the grace period; c stays (kept).
    heartbeat(&mut s, b"w1-reborn", t0 + secs(62));
    let out = tick(&mut s, t0 + secs(62));
    let mut rel = released(&out, b"w1-reborn");
    rel.sort();
    assert_eq!(rel, vec!["b", "junk"]);
    assert_eq!(s.task_count(), 1, "the adopted values were dropped");
}

#[test]
fn worker_back_with_a_new_identity_while_others_recompute_its_data() {
    // Same, but another worker is around: whatever was started to replace the data is not
    // kept twice, and nothing is left behind once the kept key is released.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &chain_abc(), "c", true);
    sim.run();
    sim.worker(b"w2", FUNCS, 1);
    // w1 restarts: its store survives (sled), its route and id do not.
    sim.restart_on_store(b"w1", "id-w1-reborn");
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![info(&sim.s, "c", 8)],
    };
    let out = send(&mut sim.s, b"w1", msg, t0 + secs(1));
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.s.who_has("c"), vec![addr(b"w1")]);
    sim.get(b"c1", 2, &Graph::new(), "c", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("c", 14)]));
    let mut out = Outbox::default();
    sim.s.on_release(b"c1", 3, vec!["c".into()], &mut out);
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    sim.assert_clean();
}

#[test]
fn worker_back_with_a_new_identity_keeps_the_scattered_data_it_still_holds() {
    // A worker restarts (same address, sled store) before the heartbeat timeout, still
    // holding a scattered key: that copy is the one everybody wants, and must be kept.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("k".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    assert_eq!(s.who_has("k"), vec![addr(b"w1")]);
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-reborn".into(),
        address: addr(b"w1"),
        pid: 777,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![info(&s, "k", 8)],
    };
    let out = send(&mut s, b"w1-reborn", msg, t0 + secs(1));
    assert!(
        !released(&out, b"w1-reborn").contains(&"k".to_string()),
        "k is released from the only worker holding it: {out:?}"
    );
    assert_eq!(s.who_has("k"), vec![addr(b"w1")]);
}

/// A worker computing a key reports a copy of it it was not asked to fetch (it fetched it for
/// a task taken back since): the copy is not released, since the worker reports it as the
/// result right after; released, it would be deleted after that report, and the scheduler
/// would count a copy that is gone. (The randomized cluster test found this.)
#[test]
fn a_copy_of_a_key_its_holder_is_computing_is_not_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    let out = acquired(&mut s, b"w1", "a0", 8, t0);
    assert!(released(&out, b"w1").is_empty(), "{out:?}");
    let out = report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1")]);
    assert!(released(&out, b"w1").is_empty());
}
