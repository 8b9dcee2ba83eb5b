//! Tests of workers coming and going (see `workers.rs`): registration, heartbeats, goodbyes,
//! restarts, and workers dying under the tasks they ran.

use super::*;

#[test]
fn silent_worker_is_removed_and_its_tasks_reassigned() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &independent(2), keys_of(&["a0", "a1"]), false);
    assert_eq!(sim.pending[b"w1".as_slice()].len(), 2);
    sim.now = t0 + secs(1);
    sim.worker(b"w2", FUNCS, 1);
    sim.kill(b"w1");
    // w2 keeps beating; w1 is silent.
    for t in [5, 10] {
        heartbeat(&mut sim.s, b"w2", t0 + secs(t));
    }
    let out = tick(&mut sim.s, t0 + secs(10));
    assert!(
        out.is_empty(),
        "exactly the timeout is not over it: {out:?}"
    );
    assert_eq!(sim.s.workers(t0 + secs(10)).len(), 2);
    sim.now = t0 + secs(10) + Duration::from_millis(1);
    let out = tick(&mut sim.s, sim.now);
    let mut moved = compute_keys(&out, b"w2");
    moved.sort();
    assert_eq!(moved, vec!["a0", "a1"], "w1's tasks go to w2");
    sim.absorb(out);
    let workers = sim.s.workers(sim.now);
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].address, addr(b"w2"));
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("a0", 1), ("a1", 2)]));
    // w1 comes back from the dead: it is asked to register.
    let out = heartbeat(&mut sim.s, b"w1", sim.now);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
}

#[test]
fn heartbeats_and_any_message_keep_a_worker_alive() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    heartbeat(&mut s, b"w1", t0 + secs(8));
    s.on_worker_seen(b"w2", t0 + secs(9));
    assert!(tick(&mut s, t0 + secs(15)).is_empty());
    assert_eq!(s.workers(t0 + secs(15)).len(), 2);
    assert_eq!(s.workers(t0 + secs(15))[0].last_seen_ms, 7000);
    let out = tick(&mut s, t0 + secs(18) + Duration::from_millis(500));
    // The survivor is told its peer is gone (so fetches from it fail fast), nothing else.
    assert_eq!(
        out.to_workers,
        vec![(
            b"w2".to_vec(),
            ToWorker::PeerGone {
                address: addr(b"w1")
            }
        )]
    );
    assert!(out.compute.is_empty() && out.release.is_empty() && out.to_clients.is_empty());
    let left = s.workers(t0 + secs(19));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].address, addr(b"w2"));
    assert!(tick(&mut s, t0 + secs(30)).is_empty());
    assert!(s.workers(t0 + secs(30)).is_empty());
}

#[test]
fn heartbeat_timeout_is_configurable() {
    let mut s = state_with(Config {
        heartbeat_timeout: secs(1),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    tick(&mut s, t0 + Duration::from_millis(1001));
    assert!(s.workers(t0).is_empty());
}

#[test]
fn goodbye_removes_the_worker_and_reassigns_its_tasks() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &independent(2), keys_of(&["a0", "a1"]), false);
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
    let mut moved = compute_keys(&out, b"w2");
    moved.sort();
    assert_eq!(moved, vec!["a0", "a1"]);
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("a0", 1), ("a1", 2)]));
    // A goodbye from an unknown route is not answered.
    let out = send(
        &mut sim.s,
        b"w9",
        FromWorker::Goodbye {
            worker_id: "id-w9".into(),
        },
        sim.now,
    );
    assert!(out.is_empty());
}

#[test]
fn protocol_mismatch_is_rejected() {
    let mut s = state();
    let t0 = Instant::now();
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION + 98,
        worker_id: "id-w1".into(),
        address: addr(b"w1"),
        pid: 1,
        nthreads: 1,
        functions: vec!["inc".into()],
        has: Vec::new(),
    };
    let out = send(&mut s, b"w1", msg, t0);
    match out.to_workers.as_slice() {
        [(route, ToWorker::Rejected { message })] => {
            assert_eq!(route, b"w1");
            assert!(
                message.contains(&(PROTOCOL_VERSION + 98).to_string()),
                "{message}"
            );
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(s.workers(t0).is_empty());
    // The rejected worker is unknown afterwards.
    let out = heartbeat(&mut s, b"w1", t0);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
}

#[test]
fn unknown_route_is_asked_to_register() {
    let mut s = state();
    let t0 = Instant::now();
    let out = heartbeat(&mut s, b"ghost", t0);
    assert_eq!(
        out.to_workers,
        vec![(b"ghost".to_vec(), ToWorker::PleaseRegister)]
    );
    let out = report(&mut s, b"ghost", vec![done_held("k", 1)], t0);
    assert_eq!(
        out.to_workers,
        vec![(b"ghost".to_vec(), ToWorker::PleaseRegister)]
    );
    assert!(out.release.is_empty());
}

#[test]
fn registration_is_welcomed_and_listed() {
    let mut s = state();
    let t0 = Instant::now();
    let out = register(&mut s, b"w1", &["inc", "add"], 3, t0);
    assert_eq!(
        out.to_workers,
        vec![(
            b"w1".to_vec(),
            ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: "sched-test".into()
            }
        )]
    );
    let w = s.workers(t0 + secs(2));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].address, addr(b"w1"));
    assert_eq!(w[0].worker_id, "id-w1");
    assert_eq!(w[0].pid, 4242);
    assert_eq!(w[0].nthreads, 3);
    assert_eq!(w[0].functions, vec!["add", "inc"], "sorted");
    assert_eq!(w[0].last_seen_ms, 2000);
    assert_eq!((w[0].keys, w[0].nbytes, w[0].processing), (0, 0, 0));
}

#[test]
fn reregistering_keeps_one_worker() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.step(); // x done on w1, y sent
                // Same process, same route: welcomed again, and its unfinished task is sent
                // again (messages may have been lost while it was away); nothing released.
    let out = register(&mut sim.s, b"w1", FUNCS, 1, sim.now);
    assert!(matches!(
        out.to_workers.as_slice(),
        [(_, ToWorker::Welcome { .. })]
    ));
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    assert!(out.release.is_empty());
    sim.absorb(out);
    assert_eq!(sim.s.workers(sim.now).len(), 1);
    // Same process, new route (reconnected): still one worker, found by its new route.
    let again = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: addr(b"w1"),
        pid: 4242,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: Vec::new(),
    };
    let out = send(&mut sim.s, b"w1-again", again, sim.now);
    assert!(
        matches!(out.to_workers.as_slice(), [(r, ToWorker::Welcome { .. })] if r == b"w1-again")
    );
    let w = sim.s.workers(sim.now);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].worker_id, "id-w1");
    assert_eq!(w[0].processing, 1, "y is still assigned to it");
    assert_eq!(sim.s.who_has("x"), vec![addr(b"w1")]);
    let out = heartbeat(&mut sim.s, b"w1-again", sim.now);
    assert!(out.is_empty(), "{out:?}");
    let out = heartbeat(&mut sim.s, b"w1", sim.now);
    assert_eq!(
        out.to_workers,
        vec![(b"w1".to_vec(), ToWorker::PleaseRegister)]
    );
    // Its report on the new route completes the computation.
    let out = report(
        &mut sim.s,
        b"w1-again",
        vec![done("y", Value::Int(4))],
        sim.now,
    );
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("y", 4)])));
}

#[test]
fn restarted_worker_replaces_its_old_self() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // A new process (new worker id) at w1's address: the old one is gone, its task moves.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1-second-life".into(),
        address: addr(b"w1"),
        pid: 5000,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: Vec::new(),
    };
    let out = send(&mut s, b"w1b", msg, t0);
    let w = s.workers(t0);
    assert_eq!(w.len(), 2);
    let me = w.iter().find(|w| w.address == addr(b"w1")).unwrap();
    assert_eq!((me.worker_id.as_str(), me.pid), ("id-w1-second-life", 5000));
    assert_eq!(all_compute_keys(&out), vec!["a0"], "a0 is sent again");
}

#[test]
fn zero_threads_count_as_one() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 0, t0);
    assert_eq!(s.workers(t0)[0].nthreads, 1);
    let names: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(5),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"w1").len(), 2);
}

#[test]
fn task_on_workers_that_died_allowed_failures_times_fails_as_worker_died() {
    let mut s = state_with(Config {
        allowed_failures: 2,
        ..test_config()
    });
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // w1 dies under a0: a0 is retried elsewhere.
    heartbeat(&mut s, b"w2", t0 + secs(9));
    heartbeat(&mut s, b"w3", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert!(out.to_clients.is_empty(), "one death is allowed: {out:?}");
    assert_eq!(compute_keys(&out, b"w2"), vec!["a0"]);
    // w2 dies under it too: a0 is the suspect.
    heartbeat(&mut s, b"w3", t0 + secs(20));
    let out = tick(&mut s, t0 + secs(20));
    assert_eq!(addresses(&s, t0 + secs(20)), vec![addr(b"w3")]);
    assert!(
        out.compute.is_empty(),
        "a0 is not tried a third time: {out:?}"
    );
    let e = error_of(&out, b"c1", 1).expect("the client is told");
    assert_eq!(e.kind, "worker_died");
    assert_eq!(e.key.as_deref(), Some("a0"));
    assert!(e.message.contains("a0") && e.message.contains('2'), "{e:?}");
    assert_eq!(s.task_count(), 0, "nothing is left of the computation");
    assert_eq!(s.graph_count(), 0);
    // The survivor still serves, and the key can be submitted again.
    let out = get(
        &mut s,
        b"c1",
        2,
        &independent(1),
        "a0",
        false,
        t0 + secs(20),
    );
    assert_eq!(compute_keys(&out, b"w3"), vec!["a0"]);
    let out = report(
        &mut s,
        b"w3",
        vec![done("a0", Value::Int(1))],
        t0 + secs(20),
    );
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("a0", 1)])));
}

#[test]
fn deaths_fail_dependents_too_and_keep_other_work() {
    let mut sim = Sim::with(Config {
        allowed_failures: 1,
        ..test_config()
    });
    let t0 = sim.now;
    sim.worker(b"w1", &["add"], 1);
    sim.worker(b"w2", &["inc"], 1);
    // x runs on w1 (the only add worker) and its dependent y needs inc on w2.
    sim.get(b"c1", 1, &xyz(), "y", false);
    sim.get(b"c2", 1, &independent(1), "a0", false);
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    let e = sim.error(b"c1", 1);
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref(), e.dependency.as_deref()),
        ("dependency_failed", Some("y"), Some("x"))
    );
    assert!(e.message.contains("workers that died"), "{e:?}");
    sim.run();
    assert_eq!(sim.result(b"c2", 1), ints(&[("a0", 1)]));
    sim.assert_clean();
}

#[test]
fn goodbyes_do_not_count_as_deaths() {
    let mut s = state_with(Config {
        allowed_failures: 1,
        ..test_config()
    });
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3", b"w4"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    // Three workers leave gracefully while running a0: it just moves on.
    for (gone, next) in [(b"w1", b"w2"), (b"w2", b"w3"), (b"w3", b"w4")] {
        let out = goodbye(&mut s, gone, t0);
        assert!(out.to_clients.is_empty(), "{out:?}");
        assert_eq!(compute_keys(&out, next), vec!["a0"]);
    }
    let out = report(&mut s, b"w4", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("a0", 1)])));
    // With allowed_failures 1, one real death is enough.
    register(&mut s, b"w5", FUNCS, 1, t0);
    let out = get(
        &mut s,
        b"c1",
        2,
        &independent(2),
        keys_of(&["a1"]),
        false,
        t0,
    );
    let on = if compute_keys(&out, b"w4").is_empty() {
        b"w5"
    } else {
        b"w4"
    };
    let other: &[u8] = if on == b"w4" { b"w5" } else { b"w4" };
    heartbeat(&mut s, other, t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    let e = error_of(&out, b"c1", 2).expect("a1 failed");
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("worker_died", Some("a1"))
    );
}

#[test]
fn peer_gone_is_broadcast_to_the_remaining_workers() {
    let mut s = state();
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let out = goodbye(&mut s, b"w2", t0);
    let gone = ToWorker::PeerGone {
        address: addr(b"w2"),
    };
    assert_eq!(msgs_to(&out, b"w1"), vec![gone.clone()]);
    assert_eq!(msgs_to(&out, b"w3"), vec![gone]);
    assert!(msgs_to(&out, b"w2").is_empty());
    // And when one dies silently.
    heartbeat(&mut s, b"w1", t0 + secs(9));
    let out = tick(&mut s, t0 + secs(11));
    assert_eq!(
        out.to_workers,
        vec![(
            b"w1".to_vec(),
            ToWorker::PeerGone {
                address: addr(b"w3")
            }
        )]
    );
}

#[test]
fn worker_joining_mid_computation_takes_work_at_once() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(10),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(compute_keys(&out, b"w1").len(), 2, "w1 is full");
    let out = register(&mut s, b"w2", FUNCS, 2, t0);
    assert_eq!(
        compute_keys(&out, b"w2").len(),
        4,
        "w2 fills its slots at once"
    );
}

#[test]
fn deaths_count_only_against_tasks_that_may_have_been_running() {
    // boom kills its workers; a0 is only queued behind it (one thread each). After two deaths
    // boom fails as worker_died -- a0, which never ran, must not.
    let mut s = state_with(Config {
        allowed_failures: 2,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut boom = Graph::new();
    boom.insert("boom", task("inc", (0,)));
    get(&mut s, b"c1", 1, &boom, "boom", false, t0);
    let out = get(&mut s, b"c2", 1, &independent(1), "a0", false, t0);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["a0"],
        "queued behind boom on w1"
    );
    // w1 dies; w2 joins and gets both again (boom first), then dies too.
    let out = register(&mut s, b"w2", FUNCS, 1, t0 + secs(5));
    assert!(out.compute.is_empty());
    let out = tick(&mut s, t0 + secs(11));
    assert_eq!(compute_keys(&out, b"w2"), vec!["boom", "a0"]);
    register(&mut s, b"w3", FUNCS, 1, t0 + secs(15));
    let out = tick(&mut s, t0 + secs(16));
    let e = error_of(&out, b"c1", 1).expect("boom fails");
    assert_eq!(e.kind, "worker_died");
    assert!(
        error_of(&out, b"c2", 1).is_none(),
        "a0 never ran, yet: {:?}",
        error_of(&out, b"c2", 1)
    );
}

/// A worker registering again (same process: it reconnected) lists what it held when it wrote
/// the registration; a copy the scheduler told it to drop meanwhile is among them. Taken, it
/// would be counted as held after the worker deleted it, and tasks would be sent there for an
/// input that is gone. (The randomized cluster test found this.)
#[test]
fn a_stale_registration_does_not_bring_back_a_released_copy() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1")]);
    // The client lets a0 go: the scheduler forgets it and tells w1 to drop it...
    let mut out = Outbox::default();
    s.on_release(b"c1", 2, vec!["a0".into()], &mut out);
    s.on_flushed(&mut out);
    assert_eq!(released(&out, b"w1"), vec!["a0"]);
    // ...while w1's registration, written before that arrived, still lists it.
    let mut msg = register_msg(b"w1", FUNCS, 1);
    if let FromWorker::Register { has, .. } = &mut msg {
        has.push(KeyInfo {
            key: "a0".into(),
            nbytes: 8,
            hash: DefHash([9; 16]),
        });
    }
    let out = send(&mut s, b"w1", msg, t0);
    assert!(
        s.who_has("a0").is_empty(),
        "a copy it was told to drop is not counted"
    );
    assert_eq!(released(&out, b"w1"), vec!["a0"], "and it is told again");
    // What it is known to hold it keeps.
    get(&mut s, b"c1", 3, &independent(2), "a1", true, t0);
    report(&mut s, b"w1", vec![done("a1", Value::Int(2))], t0);
    let mut msg = register_msg(b"w1", FUNCS, 1);
    if let FromWorker::Register { has, .. } = &mut msg {
        has.push(info(&s, "a1", 8));
    }
    let out = send(&mut s, b"w1", msg, t0);
    assert_eq!(s.who_has("a1"), vec![addr(b"w1")]);
    assert!(released(&out, b"w1").is_empty());
}
