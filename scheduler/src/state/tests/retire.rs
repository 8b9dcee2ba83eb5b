//! Tests of retirement (see `retire.rs`): a retiring worker's unique data moves before it
//! leaves, and every client that asked is answered.

use super::*;

#[test]
fn retiring_worker_hands_its_unique_data_over_then_is_let_go() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1")]);
    let out = retiring(&mut s, b"w1", t0);
    assert_eq!(
        msgs_to(&out, b"w2"),
        vec![ToWorker::Replicate {
            who_has: vec![("a0".to_string(), hash_in(&s, "a0"), vec![addr(b"w1")])]
        }]
    );
    assert!(msgs_to(&out, b"w1").is_empty(), "not retired yet: {out:?}");
    assert_eq!(s.workers(t0).len(), 2, "still listed while its data moves");
    // No new work for the retiring worker.
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("b{i}"), task("inc", (i,)));
    }
    let out = get(
        &mut s,
        b"c1",
        2,
        &g,
        keys_of(&["b0", "b1", "b2", "b3"]),
        false,
        t0,
    );
    assert!(compute_keys(&out, b"w1").is_empty(), "{out:?}");
    assert_eq!(compute_keys(&out, b"w2").len(), 2);
    // Heartbeats and unrelated reports do not let it go early.
    let out = heartbeat(&mut s, b"w1", t0 + secs(1));
    assert!(out.is_empty(), "{out:?}");
    // w2 has copied a0: w1 is told it retired and is removed; a0 stays, on w2.
    let out = acquired(&mut s, b"w2", "a0", 8, t0 + secs(1));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert!(msgs_to(&out, b"w2").contains(&ToWorker::PeerGone {
        address: addr(b"w1")
    }));
    assert!(out.release.is_empty(), "nothing is released: {out:?}");
    assert!(
        compute_keys(&out, b"w2").is_empty(),
        "a0 is not recomputed: {out:?}"
    );
    assert_eq!(addresses(&s, t0 + secs(1)), vec![addr(b"w2")]);
    assert_eq!(s.who_has("a0"), vec![addr(b"w2")]);
    // And it is gathered from there.
    let out = get(&mut s, b"c1", 3, &Graph::new(), "a0", false, t0 + secs(1));
    assert_eq!(
        out.to_workers,
        vec![(
            b"w2".to_vec(),
            ToWorker::GetData(GetDataBody {
                request: 1,
                keys: vec!["a0".into()]
            })
        )]
    );
}

#[test]
fn retiring_worker_finishes_its_running_tasks_first() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &independent(1), "a0", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a0"]);
    let out = retiring(&mut s, b"w1", t0);
    assert!(msgs_to(&out, b"w1").is_empty(), "still running a0: {out:?}");
    assert!(out.compute.is_empty(), "a0 is not taken away: {out:?}");
    let out = report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("a0", 1)])));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(addresses(&s, t0), vec![addr(b"w2")]);
    assert_eq!((s.task_count(), s.held_count()), (0, 0));
}

#[test]
fn retire_asked_by_a_client_is_answered_once_done() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 7, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    assert!(out.to_clients.is_empty(), "not yet: {out:?}");
    assert_eq!(msgs_to(&out, b"w2").len(), 1, "a replicate: {out:?}");
    let out = acquired(&mut s, b"w2", "a0", 8, t0);
    assert_eq!(
        out.to_clients,
        vec![(
            b"admin".to_vec(),
            ToClient::Retired {
                request: 7,
                address: addr(b"w1")
            }
        )]
    );
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(s.who_has("a0"), vec![addr(b"w2")]);
    // An idle worker holding nothing goes at once.
    let mut out = Outbox::default();
    register(&mut s, b"w3", FUNCS, 1, t0);
    s.on_retire(b"admin", 8, &addr(b"w3"), t0, &mut out);
    s.on_flushed(&mut out);
    assert_eq!(msgs_to(&out, b"w3"), vec![ToWorker::Retired]);
    assert!(matches!(
        out.to_clients.as_slice(),
        [(_, ToClient::Retired { request: 8, .. })]
    ));
}

#[test]
fn retire_of_an_unknown_address_is_an_error() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 3, "tcp://nowhere:1", t0, &mut out);
    s.on_flushed(&mut out);
    let e = error_of(&out, b"admin", 3).expect("an error");
    assert_eq!(e.kind, "unknown_worker");
    assert!(e.message.contains("tcp://nowhere:1"), "{e:?}");
    assert!(out.to_workers.is_empty());
    assert_eq!(s.workers(t0).len(), 1);
}

#[test]
fn retirement_deadline_lets_the_worker_go_even_if_its_data_did_not_move() {
    let mut s = state_with(Config {
        retire_timeout: secs(5),
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let out = retiring(&mut s, b"w1", t0);
    assert_eq!(msgs_to(&out, b"w2").len(), 1, "{out:?}");
    // w2 never manages to copy a0.
    for t in [2, 4] {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        assert!(msgs_to(&out, b"w1").is_empty(), "{out:?}");
        assert!(
            !msgs_to(&out, b"w2")
                .iter()
                .any(|m| matches!(m, ToWorker::Replicate { .. })),
            "the copy is asked for once: {out:?}"
        );
    }
    let out = tick(&mut s, t0 + secs(5));
    assert_eq!(msgs_to(&out, b"w1"), vec![ToWorker::Retired]);
    assert_eq!(addresses(&s, t0 + secs(5)), vec![addr(b"w2")]);
    // a0 had lineage: it is computed again rather than lost.
    assert_eq!(compute_keys(&out, b"w2"), vec!["a0"]);
}

#[test]
fn retirement_moves_data_again_when_the_copying_worker_dies() {
    // A scattered key (no lineage: it cannot be recomputed) on retiring w1. The worker asked
    // to copy it dies before it did: the key must be asked of another worker.
    let mut s = state();
    let t0 = Instant::now();
    for r in [b"w1", b"w2", b"w3"] {
        register(&mut s, r, FUNCS, 1, t0);
    }
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("k".into(), Value::Int(5))], &mut out);
    s.on_flushed(&mut out);
    assert_eq!(
        out.put_data.keys().collect::<Vec<_>>(),
        vec![&b"w1".to_vec()]
    );
    report(&mut s, b"w1", vec![done_held("k", 8)], t0);
    let out = retiring(&mut s, b"w1", t0);
    let first = if msgs_to(&out, b"w2").is_empty() {
        b"w3"
    } else {
        b"w2"
    };
    let other: &[u8] = if first == b"w2" { b"w3" } else { b"w2" };
    let out = goodbye(&mut s, first, t0 + secs(1));
    let mut asked = msgs_to(&out, other);
    for t in 2..5 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, other, t0 + secs(t));
        asked.extend(msgs_to(&tick(&mut s, t0 + secs(t)), other));
    }
    assert!(
        asked.contains(&ToWorker::Replicate {
            who_has: vec![("k".to_string(), hash_in(&s, "k"), vec![addr(b"w1")])]
        }),
        "k is asked of {} once {} is gone: {asked:?}",
        name(other),
        name(first)
    );
}

#[test]
fn retire_request_is_answered_when_the_worker_goes_away_first() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin", 7, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    assert!(out.to_clients.is_empty());
    // w1 goes before w2 copied a0 (killed, or a second SIGTERM): the admin must hear of it.
    let out = goodbye(&mut s, b"w1", t0 + secs(1));
    let answered = out.to_clients.iter().any(|(c, m)| {
        c == b"admin"
            && matches!(
                m,
                ToClient::Retired { request: 7, .. } | ToClient::Error { request: 7, .. }
            )
    });
    assert!(answered, "the retire request is left unanswered: {out:?}");
}

#[test]
fn every_retire_request_for_a_worker_is_answered() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    let mut out = Outbox::default();
    s.on_retire(b"admin1", 1, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    s.on_retire(b"admin2", 2, &addr(b"w1"), t0, &mut out);
    s.on_flushed(&mut out);
    let out = acquired(&mut s, b"w2", "a0", 8, t0);
    for (client, request) in [(b"admin1", 1), (b"admin2", 2)] {
        assert!(
            out.to_clients.iter().any(|(c, m)| c == client
                && matches!(m, ToClient::Retired { request: r, .. } if *r == request)),
            "{} is not answered: {out:?}",
            name(client)
        );
    }
}
