//! Futures (see `futures.rs`): submissions into the live graph, events, claims per client,
//! drops, cancels, retries, priority.

use super::*;
use zask_core::protocol::{KeyEvent, KeyStatus, SubmitItem};

/// A submission of `graph` wanting `keys`, with options.
fn item(graph: &Graph, keys: &[&str], priority: i32, retries: u32) -> SubmitItem {
    SubmitItem {
        graph: graph.clone().into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        priority,
        retries,
        workers: Vec::new(),
    }
}

fn submit(s: &mut SchedulerState, client: &[u8], items: Vec<SubmitItem>, now: Instant) -> Outbox {
    let mut out = Outbox::default();
    s.on_submit(client, 1, items, now, &mut out);
    s.on_flushed(&mut out);
    out
}

/// One task `key: func(args)`.
fn one(key_name: &str, node: Node) -> Graph {
    let mut g = Graph::new();
    g.insert(key_name, node);
    g
}

/// The events sent to `client`, as (key, status).
fn events(out: &Outbox, client: &[u8]) -> Vec<(String, KeyStatus)> {
    out.events
        .get(client)
        .map(|evs| evs.iter().map(|e| (e.key.clone(), e.status)).collect())
        .unwrap_or_default()
}

fn event_errors(out: &Outbox, client: &[u8]) -> Vec<KeyEvent> {
    out.events
        .get(client)
        .map(|evs| evs.iter().filter(|e| e.error.is_some()).cloned().collect())
        .unwrap_or_default()
}

fn drop_futures(s: &mut SchedulerState, client: &[u8], keys: &[&str]) -> Outbox {
    s.on_drop_futures(client, keys.iter().map(|k| k.to_string()).collect());
    let mut out = Outbox::default();
    s.on_flushed(&mut out);
    out
}

#[test]
fn a_submission_is_acknowledged_run_and_its_holder_told() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = submit(&mut s, b"c1", vec![item(&xyz(), &["y"], 0, 0)], t0);
    assert!(
        out.to_clients
            .iter()
            .any(|(r, m)| r == b"c1" && *m == ToClient::Submitted { request: 1 }),
        "{out:?}"
    );
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    assert!(
        !task_of(&out, b"w1", "y").send_value,
        "a future's value stays on its worker"
    );
    let out = report(&mut s, b"w1", vec![done_held("y", 8)], t0);
    assert_eq!(events(&out, b"c1"), vec![("y".into(), KeyStatus::Done)]);
    assert_eq!(released(&out, b"w1"), vec!["x"], "the input goes, y stays");
    assert_eq!(s.task_count(), 1);
    // The future is dropped: y goes.
    let out = drop_futures(&mut s, b"c1", &["y"]);
    assert_eq!(released(&out, b"w1"), vec!["y"]);
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
}

#[test]
fn later_submissions_use_earlier_futures_and_clients_share_keys() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let a = one("a", task("add", (1, 2)));
    let out = submit(&mut s, b"c1", vec![item(&a, &["a"], 0, 0)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a"]);
    // While `a` runs, `b` names it; a second client submits `a` too.
    let b = one("b", task("inc", (key("a"),)));
    let out = submit(&mut s, b"c1", vec![item(&b, &["b"], 0, 0)], t0);
    assert!(out.compute.is_empty(), "b waits for a");
    let out = submit(&mut s, b"c2", vec![item(&a, &["a"], 0, 0)], t0);
    assert!(out.compute.is_empty(), "a is not computed twice");
    let out = report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    assert_eq!(events(&out, b"c1"), vec![("a".into(), KeyStatus::Done)]);
    assert_eq!(events(&out, b"c2"), vec![("a".into(), KeyStatus::Done)]);
    assert_eq!(compute_keys(&out, b"w1"), vec!["b"]);
    // c1 lets a go; c2 still holds it.
    let out = drop_futures(&mut s, b"c1", &["a"]);
    assert!(out.release.is_empty(), "{out:?}");
    let out = report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    assert_eq!(events(&out, b"c1"), vec![("b".into(), KeyStatus::Done)]);
    assert!(out.release.is_empty(), "c2 holds a: {out:?}");
    // A held future's key submitted again is done at once.
    let out = submit(&mut s, b"c3", vec![item(&a, &["a"], 0, 0)], t0);
    assert_eq!(events(&out, b"c3"), vec![("a".into(), KeyStatus::Done)]);
    drop_futures(&mut s, b"c3", &["a"]);
    let out = drop_futures(&mut s, b"c2", &["a"]);
    assert_eq!(released(&out, b"w1"), vec!["a"]);
    drop_futures(&mut s, b"c1", &["b"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn an_invalid_item_fails_its_own_keys_only() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let good = one("g", task("inc", (1,)));
    let missing = one("m", task("inc", (key("nowhere"),)));
    let unknown = one("u", task("no_such_function", (1,)));
    let out = submit(
        &mut s,
        b"c1",
        vec![
            item(&good, &["g"], 0, 0),
            item(&missing, &["m"], 0, 0),
            item(&unknown, &["u"], 0, 0),
        ],
        t0,
    );
    assert_eq!(compute_keys(&out, b"w1"), vec!["g"]);
    let errors = event_errors(&out, b"c1");
    let kinds: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            let kind = e
                .error
                .as_ref()
                .map(|i| i.kind.to_string())
                .unwrap_or_default();
            (e.key.clone(), kind)
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("m".to_string(), "missing_key".to_string()),
            ("u".to_string(), "unknown_function".to_string())
        ]
    );
}

#[test]
fn a_failure_is_told_to_the_holders_of_every_key_it_reaches() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = submit(&mut s, b"c1", vec![item(&xyz(), &["x", "z"], 0, 0)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    let out = report_failed(&mut s, b"w1", failed("x", "add", "nope"), t0);
    let errors = event_errors(&out, b"c1");
    let mut got: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.key.clone(), e.error.as_ref().unwrap().kind.to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("x".to_string(), "task_failed".to_string()),
            ("z".to_string(), "dependency_failed".to_string())
        ]
    );
    // The failed keys stay (their error with them) while the futures live.
    let out = submit(&mut s, b"c2", vec![item(&xyz(), &["z"], 0, 0)], t0);
    assert_eq!(event_errors(&out, b"c2").len(), 1, "{out:?}");
    drop_futures(&mut s, b"c1", &["x", "z"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn retries_run_a_failed_task_again_then_fail() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let g = one("r", task("inc", (1,)));
    submit(&mut s, b"c1", vec![item(&g, &["r"], 0, 2)], t0);
    for _ in 0..2 {
        let out = report_failed(&mut s, b"w1", failed("r", "inc", "flaky"), t0);
        assert_eq!(compute_keys(&out, b"w1"), vec!["r"], "run again");
        assert!(events(&out, b"c1").is_empty());
    }
    let out = report_failed(&mut s, b"w1", failed("r", "inc", "flaky"), t0);
    assert!(out.compute.is_empty());
    assert_eq!(events(&out, b"c1"), vec![("r".into(), KeyStatus::Erred)]);
}

#[test]
fn higher_priority_runs_first_among_ready_tasks() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    // Two slots (saturation 2): a and b take them; c, d wait; then e comes with priority.
    let items: Vec<SubmitItem> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, k)| item(&one(k, task("inc", (i as i64,))), &[k], 0, 0))
        .collect();
    let out = submit(&mut s, b"c1", items, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a", "b"]);
    submit(
        &mut s,
        b"c1",
        vec![item(&one("e", task("inc", (9,))), &["e"], 5, 0)],
        t0,
    );
    let out = report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["e"], "e before c and d");
    // A negative priority goes after the default.
    submit(
        &mut s,
        b"c1",
        vec![item(&one("f", task("inc", (10,))), &["f"], -1, 0)],
        t0,
    );
    let out = report(&mut s, b"w1", vec![done_held("b", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c"]);
    let out = report(&mut s, b"w1", vec![done_held("e", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["d"]);
    let out = report(&mut s, b"w1", vec![done_held("c", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["f"]);
}

#[test]
fn cancel_stops_what_nobody_else_wants() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let items: Vec<SubmitItem> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, k)| item(&one(k, task("inc", (i as i64,))), &[k], 0, 0))
        .collect();
    let out = submit(&mut s, b"c1", items, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a", "b"]);
    // c2 also wants b.
    submit(
        &mut s,
        b"c2",
        vec![item(&one("b", task("inc", (1,))), &["b"], 0, 0)],
        t0,
    );
    let mut out = Outbox::default();
    s.on_cancel(b"c1", vec!["a".into(), "b".into(), "c".into()], &mut out);
    s.on_flushed(&mut out);
    assert_eq!(
        events(&out, b"c1"),
        vec![
            ("a".into(), KeyStatus::Cancelled),
            ("b".into(), KeyStatus::Cancelled),
            ("c".into(), KeyStatus::Cancelled)
        ]
    );
    assert!(events(&out, b"c2").is_empty());
    assert_eq!(
        cancelled(&out, b"w1"),
        vec!["a"],
        "a (running) stops; b is c2's; c was queued here only"
    );
    assert_eq!(s.task_count(), 1, "only b is left");
    assert_eq!(s.workers(t0)[0].processing, 1);
    // a's result, if it was on its way, is not kept.
    let out = report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    assert_eq!(released(&out, b"w1"), vec!["a"]);
}

#[test]
fn a_client_gone_drops_its_futures() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    submit(&mut s, b"c1", vec![item(&xyz(), &["z"], 0, 0)], t0);
    s.on_client_seen(b"c1", t0);
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    // Silent for the timeout, and holding futures: it is taken for gone.
    heartbeat(&mut s, b"w1", t0 + secs(4));
    let out = tick(&mut s, t0 + secs(4));
    assert_eq!(cancelled(&out, b"w1"), vec!["y"]);
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
    // A client that keeps pinging keeps its futures.
    submit(
        &mut s,
        b"c2",
        vec![item(&xyz(), &["x"], 0, 0)],
        t0 + secs(4),
    );
    for t in 5..10 {
        s.on_client_seen(b"c2", t0 + secs(t));
        heartbeat(&mut s, b"w1", t0 + secs(t));
        tick(&mut s, t0 + secs(t));
    }
    assert_eq!(s.task_count(), 1);
    s.on_client_gone(b"c2");
    let mut out = Outbox::default();
    s.on_flushed(&mut out);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn a_future_lost_with_its_worker_is_told_then_recomputed() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    let mut out = Outbox::default();
    sim.s
        .on_submit(b"c1", 1, vec![item(&xyz(), &["z"], 0, 0)], t0, &mut out);
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    sim.run();
    let news = |sim: &mut Sim| -> Vec<(String, KeyStatus)> {
        sim.take_events(b"c1")
            .into_iter()
            .map(|e| (e.key, e.status))
            .collect()
    };
    assert_eq!(news(&mut sim), vec![("z".into(), KeyStatus::Done)]);
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(
        news(&mut sim),
        vec![("z".into(), KeyStatus::Lost), ("z".into(), KeyStatus::Done)]
    );
    assert!(sim.holds(b"w2", "z"), "computed again on w2");
}

#[test]
fn workers_restrict_where_tasks_run() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    // w1 is the least loaded (more threads), but the tasks may run only on w2.
    let mut items = Vec::new();
    for i in 0..3 {
        let k = format!("r{i}");
        let mut it = item(&one(&k, task("inc", (i,))), &[k.as_str()], 0, 0);
        it.workers = vec![addr(b"w2")];
        items.push(it);
    }
    let out = submit(&mut s, b"c1", items, t0);
    assert!(computes(&out, b"w1").is_empty(), "{out:?}");
    assert_eq!(
        compute_keys(&out, b"w2"),
        vec!["r0", "r1"],
        "two slots on w2"
    );
    let out = report(&mut s, b"w2", vec![done_held("r0", 8)], t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["r2"]);
    // A restriction to a worker not registered waits for it.
    let mut late = item(&one("late", task("inc", (7,))), &["late"], 0, 0);
    late.workers = vec![addr(b"w3"), addr(b"w4")];
    let out = submit(&mut s, b"c1", vec![late], t0);
    assert!(out.compute.is_empty(), "{out:?}");
    let out = register(&mut s, b"w3", FUNCS, 1, t0);
    assert_eq!(compute_keys(&out, b"w3"), vec!["late"]);
    // One whose workers never come fails after no_workers_timeout, saying why.
    let mut never = item(&one("never", task("inc", (8,))), &["never"], 0, 0);
    never.workers = vec!["tcp://nowhere:1".into()];
    submit(&mut s, b"c1", vec![never], t0);
    for w in [b"w1", b"w2", b"w3"] {
        heartbeat(&mut s, w, t0 + secs(29));
        heartbeat(&mut s, w, t0 + secs(31));
    }
    tick(&mut s, t0 + secs(1));
    let out = tick(&mut s, t0 + secs(32));
    let errors = event_errors(&out, b"c1");
    assert_eq!(errors.len(), 1, "{out:?}");
    let message = &errors[0].error.as_ref().unwrap().message;
    assert!(message.contains("may run only on the workers"), "{message}");
    assert!(message.contains("tcp://nowhere:1"), "{message}");
}

#[test]
fn a_scattered_value_released_while_stored_still_answers_its_scatter() {
    // Only computed tasks are cancelled on their worker when nobody wants them: a scattered
    // value being stored is waited for, or its scatter would never be answered.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("k".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    let mut out = Outbox::default();
    s.on_release(b"c1", 2, vec!["k".into()], &mut out);
    s.on_flushed(&mut out);
    assert!(out.cancel.is_empty(), "{out:?}");
    let out = report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    assert!(
        out.to_clients
            .iter()
            .any(|(_, m)| matches!(m, ToClient::Scattered { request: 1, .. })),
        "{out:?}"
    );
    assert_eq!(released(&out, b"w1"), vec!["k"]);
    assert_eq!(s.task_count(), 0);
}

#[test]
fn slots_freed_by_a_cancel_are_filled_at_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let items: Vec<SubmitItem> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, k)| item(&one(k, task("inc", (i as i64,))), &[k], 0, 0))
        .collect();
    let out = submit(&mut s, b"c1", items, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a", "b"]);
    let mut out = Outbox::default();
    s.on_cancel(b"c1", vec!["a".into(), "b".into()], &mut out);
    s.on_flushed(&mut out);
    assert_eq!(cancelled(&out, b"w1"), vec!["a", "b"]);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["c"],
        "no report will come for a and b: c takes their slot now"
    );
}

#[test]
fn a_cancel_and_a_compute_of_one_key_cancel_out_only_for_the_same_definition() {
    let compute = |key: &str, hash: DefHash| ComputeTask {
        key: key.into(),
        hash,
        node: Arc::new(Node::Literal(Value::Nil)),
        who_has: Vec::new(),
        send_value: false,
    };
    let (h1, h2) = (
        DefHash::of_value(&Value::from(1)),
        DefHash::of_value(&Value::from(2)),
    );
    let mut out = Outbox::default();
    out.compute
        .insert(b"w1".to_vec(), vec![compute("a", h2), compute("b", h1)]);
    out.cancel.insert(
        b"w1".to_vec(),
        vec![("a".into(), h1), ("b".into(), h1), ("c".into(), h1)],
    );
    out.settle_cancels();
    // a: the old definition is cancelled, then the new one computed; b: the same
    // definition, assigned and cancelled in one turn: neither is sent.
    assert_eq!(compute_keys(&out, b"w1"), vec!["a"]);
    assert_eq!(cancelled(&out, b"w1"), vec!["a", "c"]);
}

#[test]
fn futures_dropped_or_cancelled_while_waiting_for_a_worker_are_not_made() {
    let mut s = state();
    let t0 = Instant::now();
    let items = vec![
        item(&one("p", task("inc", (1,))), &["p"], 0, 0),
        item(&one("q", task("inc", (2,))), &["q"], 0, 0),
        item(&one("r", task("inc", (3,))), &["r"], 0, 0),
    ];
    submit(&mut s, b"c1", items, t0);
    drop_futures(&mut s, b"c1", &["p"]);
    let mut out = Outbox::default();
    s.on_cancel(b"c1", vec!["q".into()], &mut out);
    assert_eq!(
        events(&out, b"c1"),
        vec![("q".into(), KeyStatus::Cancelled)]
    );
    let out = register(&mut s, b"w1", FUNCS, 1, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["r"], "{out:?}");
    assert_eq!(s.task_count(), 1);
}

#[test]
fn a_client_taken_for_gone_is_told_its_futures_failed() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    s.on_client_seen(b"c1", t0);
    submit(
        &mut s,
        b"c1",
        vec![item(&one("a", task("inc", (1,))), &["a"], 0, 0)],
        t0,
    );
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    heartbeat(&mut s, b"w1", t0 + secs(4));
    let out = tick(&mut s, t0 + secs(4));
    let errors = event_errors(&out, b"c1");
    assert_eq!(errors.len(), 1, "{out:?}");
    assert_eq!(errors[0].key, "a");
    assert_eq!(
        errors[0].error.as_ref().map(|e| e.kind.to_string()),
        Some("cancelled".to_string())
    );
    assert_eq!(released(&out, b"w1"), vec!["a"]);
}

#[test]
fn only_task_failures_use_retries() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    submit(
        &mut s,
        b"c1",
        vec![item(&one("r", task("inc", (1,))), &["r"], 0, 3)],
        t0,
    );
    let mut bad = failed("r", "inc", "unreadable");
    bad.kind = ErrorKind::BadTask;
    let out = report_failed(&mut s, b"w1", bad, t0);
    assert!(out.compute.is_empty(), "{out:?}");
    assert_eq!(events(&out, b"c1"), vec![("r".into(), KeyStatus::Erred)]);
}

#[test]
fn a_key_dropped_and_defined_anew_in_the_same_turn_is_not_a_conflict() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    submit(
        &mut s,
        b"c1",
        vec![item(&one("k", task("inc", (1,))), &["k"], 0, 0)],
        t0,
    );
    report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    // The client drops its future of k and submits another definition of k right after:
    // both arrive in one turn, before the flush that would forget k.
    s.on_drop_futures(b"c1", vec!["k".into()]);
    let mut out = Outbox::default();
    s.on_submit(
        b"c1",
        2,
        vec![item(&one("k", task("inc", (2,))), &["k"], 0, 0)],
        t0,
        &mut out,
    );
    assert!(event_errors(&out, b"c1").is_empty(), "{out:?}");
    assert_eq!(released(&out, b"w1"), vec!["k"], "the old value goes first");
    assert_eq!(compute_keys(&out, b"w1"), vec!["k"]);
    // A key still claimed by someone is a conflict, as always.
    let mut out = Outbox::default();
    s.on_submit(
        b"c2",
        1,
        vec![item(&one("k", task("inc", (3,))), &["k"], 0, 0)],
        t0,
        &mut out,
    );
    assert_eq!(event_errors(&out, b"c2").len(), 1);
}

#[test]
fn submissions_waiting_for_a_worker_fail_their_keys_when_the_scheduler_closes() {
    let mut s = state();
    let t0 = Instant::now();
    submit(
        &mut s,
        b"c1",
        vec![item(&one("p", task("inc", (1,))), &["p"], 0, 0)],
        t0,
    );
    let mut out = Outbox::default();
    s.on_close(&mut out);
    let errors = event_errors(&out, b"c1");
    assert_eq!(errors.len(), 1, "{out:?}");
    assert_eq!(errors[0].key, "p");
    assert_eq!(
        errors[0].error.as_ref().map(|e| e.kind.to_string()),
        Some("shutting_down".to_string())
    );
}
