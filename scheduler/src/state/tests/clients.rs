//! Tests of clients (see `clients.rs`): gets waiting for the first worker, clients going away or
//! falling silent, the scheduler closing, and the decisions taken off the loop (the handshake,
//! `gather`, `status`).

use super::*;

#[test]
fn get_waits_for_the_first_worker() {
    let mut s = state();
    let t0 = Instant::now();
    let out = get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(out.is_empty(), "parked quietly: {out:?}");
    assert_eq!(s.task_count(), 0);
    assert!(tick(&mut s, t0 + secs(29)).is_empty(), "not expired yet");
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(29));
    assert!(matches!(
        out.to_workers.as_slice(),
        [(r, ToWorker::Welcome { .. })] if r == b"w1"
    ));
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["x"],
        "dispatched on registration"
    );
    // The old deadline no longer applies.
    let out = tick(&mut s, t0 + secs(31));
    assert!(out.to_clients.is_empty(), "{out:?}");
}

#[test]
fn get_without_workers_times_out() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    get(&mut s, b"c2", 2, &xyz(), "z", false, t0 + secs(10));
    let out = tick(&mut s, t0 + secs(30));
    let e = error_of(&out, b"c1", 1).expect("c1 gives up first");
    assert_eq!(e.kind, "no_workers");
    assert!(error_of(&out, b"c2", 2).is_none());
    let out = tick(&mut s, t0 + secs(40));
    assert_eq!(error_of(&out, b"c2", 2).unwrap().kind, "no_workers");
    // Nothing left: a worker registering now gets no work.
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(41));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
}

#[test]
fn no_workers_timeout_is_configurable() {
    let mut s = state_with(Config {
        no_workers_timeout: secs(2),
        ..test_config()
    });
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    assert!(tick(&mut s, t0 + Duration::from_millis(1999)).is_empty());
    let out = tick(&mut s, t0 + secs(2));
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "no_workers");
}

#[test]
fn parked_invalid_graph_fails_when_a_worker_comes() {
    let mut s = state();
    let t0 = Instant::now();
    let mut g = Graph::new();
    g.insert("a", task("frobnicate", (1,)));
    assert!(get(&mut s, b"c1", 1, &g, "a", false, t0).is_empty());
    let out = register(&mut s, b"w1", FUNCS, 1, t0);
    assert_eq!(error_of(&out, b"c1", 1).unwrap().kind, "unknown_function");
}

#[test]
fn parked_get_of_a_gone_client_is_dropped() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    assert!(out.is_empty());
    let out = register(&mut s, b"w1", FUNCS, 1, t0);
    assert!(out.compute.is_empty());
    assert!(tick(&mut s, t0 + secs(60)).to_clients.is_empty());
}

#[test]
fn close_tells_workers_and_waiting_clients() {
    let mut s = state();
    let t0 = Instant::now();
    get(&mut s, b"parked", 1, &xyz(), "y", false, t0);
    let mut s2 = state();
    register(&mut s2, b"w1", FUNCS, 1, t0);
    register(&mut s2, b"w2", FUNCS, 1, t0);
    get(&mut s2, b"c1", 3, &xyz(), "y", false, t0);

    let mut out = Outbox::default();
    s.on_close(&mut out);
    s.on_flushed(&mut out);
    assert_eq!(error_of(&out, b"parked", 1).unwrap().kind, "shutting_down");

    let mut out = Outbox::default();
    s2.on_close(&mut out);
    s2.on_flushed(&mut out);
    assert_eq!(error_of(&out, b"c1", 3).unwrap().kind, "shutting_down");
    let mut closing: Vec<&Route> = out
        .to_workers
        .iter()
        .filter(|(_, m)| *m == ToWorker::Closing)
        .map(|(r, _)| r)
        .collect();
    closing.sort();
    assert_eq!(closing, vec![&b"w1".to_vec(), &b"w2".to_vec()]);
}

#[test]
fn client_gone_cancels_its_graph() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    assert_eq!(s.task_count(), 3);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    assert_eq!(
        cancelled(&out, b"w1"),
        vec!["x"],
        "the worker is told to stop x: {out:?}"
    );
    assert!(out.to_clients.is_empty() && out.compute.is_empty() && out.release.is_empty());
    assert_eq!(s.graph_count(), 0);
    assert_eq!(s.task_count(), 0, "x is forgotten at once");
    assert_eq!(s.workers(t0)[0].processing, 0, "w1's slot is free");
    // A result that was on its way is not kept.
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    assert!(out.compute.is_empty(), "y and z are not run");
    assert_eq!(released(&out, b"w1"), vec!["x"], "x's result is dropped");
    assert!(out.to_clients.is_empty());
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.held_count(), 0);
}

#[test]
fn client_gone_drops_queued_tasks_and_late_results() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(6),
        Keys::from(names),
        false,
        t0,
    );
    let sent = compute_keys(&out, b"w1");
    assert_eq!(sent.len(), 2);
    let mut out = Outbox::default();
    s.on_client_gone(b"c1");
    s.on_flushed(&mut out);
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(
        cancelled(&out, b"w1"),
        expected,
        "the worker drops what it was given"
    );
    assert_eq!(s.task_count(), 0, "nothing is left");
    assert_eq!(s.workers(t0)[0].processing, 0);
    // Results that were on their way are not kept.
    let out = report(&mut s, b"w1", vec![done(&sent[0], Value::Int(0))], t0);
    assert!(out.compute.is_empty(), "queued tasks were cancelled");
    assert_eq!(released(&out, b"w1"), vec![sent[0].clone()]);
    let out = report(&mut s, b"w1", vec![done(&sent[1], Value::Int(0))], t0);
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
    // A report for a task already forgotten is released as well.
    let out = report(&mut s, b"w1", vec![done_held(&sent[0], 8)], t0);
    assert_eq!(released(&out, b"w1"), vec![sent[0].clone()]);
}

#[test]
fn client_gone_keeps_what_others_need() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c2", 1, &g, "q", false);
    let mut out = Outbox::default();
    sim.s.on_client_gone(b"c1");
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103)]));
    assert!(results_in(&sim.to_clients, b"c1", 1).is_none());
    assert_eq!(sim.times_dispatched("y"), 0);
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(sim.times_dispatched("x"), 1);
}

#[test]
fn client_gone_leaves_other_clients_graphs_alone() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "z", false);
    sim.get(b"c2", 1, &xyz(), "z", false);
    let mut out = Outbox::default();
    sim.s.on_client_gone(b"c1");
    sim.s.on_flushed(&mut out);
    sim.absorb(out);
    assert_eq!(sim.s.graph_count(), 1);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("z", 7)]));
}

#[test]
fn silent_client_has_its_computations_cancelled() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    s.on_client_seen(b"c1", t0);
    let out = get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    s.on_client_seen(b"c2", t0);
    let mut g = Graph::new();
    g.insert("q", task("inc", (41,)));
    let out = get(&mut s, b"c2", 1, &g, "q", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["q"]);
    // c2 keeps talking (its pings); c1 says nothing.
    s.on_client_seen(b"c2", t0 + secs(2));
    let out = tick(&mut s, t0 + secs(3));
    assert!(
        out.is_empty(),
        "exactly the timeout is not over it: {out:?}"
    );
    assert_eq!(s.graph_count(), 2);
    s.on_client_seen(b"c2", t0 + secs(4));
    let out = tick(&mut s, t0 + secs(4));
    // c1 is told (in case it still reads), and nobody else.
    let e = error_of(&out, b"c1", 1).expect("c1 is told");
    assert_eq!(e.kind, "cancelled");
    assert!(e.message.contains("--client-timeout"), "{e:?}");
    assert_eq!(out.to_clients.len(), 1, "{out:?}");
    assert_eq!(
        s.graph_count(),
        1,
        "c1's computation is cancelled, c2's is not"
    );
    assert_eq!(s.task_count(), 1, "q is left; x (running) was cancelled");
    assert_eq!(cancelled(&out, b"w1"), vec!["x"]);
    // x's late result is dropped, y and z never run.
    let out = report(&mut s, b"w1", vec![done_held("x", 8)], t0 + secs(4));
    assert_eq!(released(&out, b"w1"), vec!["x"]);
    assert!(out.compute.is_empty(), "{out:?}");
    let out = report(&mut s, b"w1", vec![done("q", Value::Int(42))], t0 + secs(5));
    assert_eq!(result_of(&out, b"c2", 1), Some(ints(&[("q", 42)])));
    assert_eq!((s.task_count(), s.graph_count(), s.held_count()), (0, 0, 0));
}

#[test]
fn silent_client_keeps_what_others_want_and_kept_keys() {
    let mut sim = Sim::with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    // c1 keeps a0 from before; then starts z, which shares x with c2's q.
    sim.s.on_client_seen(b"c1", t0);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    sim.get(b"c1", 2, &xyz(), "z", false);
    sim.s.on_client_seen(b"c2", t0);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("q", task("add", (key("x"), 100)));
    sim.get(b"c2", 1, &g, "q", false);
    sim.now = t0 + secs(5);
    sim.s.on_client_seen(b"c2", sim.now);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    assert_eq!(sim.s.graph_count(), 1);
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("q", 103)]));
    assert!(results_in(&sim.to_clients, b"c1", 2).is_none());
    assert_eq!(sim.times_dispatched("z"), 0);
    assert_eq!(
        sim.held_anywhere(),
        vec!["a0"],
        "kept keys are not the client's to lose"
    );
}

#[test]
fn silent_client_with_a_parked_get_is_forgotten() {
    let mut s = state_with(Config {
        client_timeout: secs(3),
        ..test_config()
    });
    let t0 = Instant::now();
    s.on_client_seen(b"c1", t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    tick(&mut s, t0 + secs(4));
    let out = register(&mut s, b"w1", FUNCS, 1, t0 + secs(5));
    assert!(
        out.compute.is_empty(),
        "the parked get was dropped: {out:?}"
    );
    assert_eq!(s.task_count(), 0);
}

// ----- decisions the loop hands over -----------------------------------------------------------

#[test]
fn hello_in_the_scheduler_protocol_is_welcomed_with_its_id() {
    let mut s = state();
    let mut out = Outbox::default();
    s.on_hello(b"c1", 7, PROTOCOL_VERSION, &mut out);
    assert!(matches!(
        out.to_clients.as_slice(),
        [(c, ToClient::Welcome { request: 7, protocol, scheduler_id })]
            if c == b"c1" && *protocol == PROTOCOL_VERSION && scheduler_id == "sched-test"
    ));
}

#[test]
fn hello_in_another_protocol_is_a_version_mismatch() {
    let mut s = state();
    let mut out = Outbox::default();
    s.on_hello(b"c1", 7, PROTOCOL_VERSION + 1, &mut out);
    let e = error_of(&out, b"c1", 7).expect("refused");
    assert_eq!(e.kind, "version_mismatch");
    assert!(
        e.message.contains("use the same zask version"),
        "{}",
        e.message
    );
}

#[test]
fn gather_answers_the_values_of_held_keys() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", true);
    sim.run();
    let mut out = Outbox::default();
    sim.s
        .on_gather(b"c2", 2, vec!["y".to_string()], sim.now, &mut out);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c2", 2), ints(&[("y", 4)]));
    assert_eq!(sim.times_dispatched("y"), 1, "gathered, not computed again");
}

#[test]
fn gather_of_a_key_nobody_holds_is_an_error() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_gather(b"c1", 3, vec!["nope".to_string()], t0, &mut out);
    let e = error_of(&out, b"c1", 3).expect("refused");
    assert_eq!(e.key.as_deref(), Some("nope"), "{e:?}");
    assert_eq!(s.task_count(), 0);
}

#[test]
fn status_counts_workers_tasks_computations_and_held_keys() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "y", false, t0);
    let mut out = Outbox::default();
    s.on_status(b"c1", 9, &mut out);
    assert!(
        matches!(
            out.to_clients.as_slice(),
            [(c, ToClient::Status { request: 9, scheduler_id, workers: 2, tasks: 2, graphs: 1, keys: 0 })]
                if c == b"c1" && scheduler_id == "sched-test"
        ),
        "{out:?}"
    );
}

#[test]
fn workers_are_listed_on_request() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 3, t0);
    let mut out = Outbox::default();
    s.on_list_workers(b"c1", 4, t0, &mut out);
    let [(
        c,
        ToClient::Workers {
            request: 4,
            workers,
        },
    )] = out.to_clients.as_slice()
    else {
        panic!("{out:?}");
    };
    assert_eq!(c, b"c1");
    assert_eq!(workers, &s.workers(t0));
    assert_eq!(
        (workers[0].address.as_str(), workers[0].nthreads),
        ("tcp://w1:9000", 3)
    );
}
