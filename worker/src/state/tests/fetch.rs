//! Fetches from peers: requests, answers (partial, out of order, bad, stranger keys),
//! timeouts, peers gone, chunks; replication; serving peers.

use super::*;
use crate::state::fetch::FETCH_CHUNK;
use zask_core::graph::{key, task as node};
use zask_core::protocol::PeerRequest;

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn add(a: &str, b: &str) -> Node {
    node("add", (key(a), key(b)))
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn inputs_are_asked_of_their_first_holder_one_request_per_peer() {
    let mut w = Harness::new();
    w.compute(vec![
        task_from(
            "c",
            add("a", "b"),
            &[("a", &["tcp://p:1", "tcp://q:1"]), ("b", &["tcp://p:1"])],
        ),
        task_from("d", node("inc", (key("x"),)), &[("x", &["tcp://q:1"])]),
    ]);
    let (outbox, _) = w.settle();
    assert_eq!(
        fetched(&outbox),
        vec![
            (s("tcp://p:1"), vec![s("a"), s("b")]),
            (s("tcp://q:1"), vec![s("x")])
        ]
    );
    assert_eq!(w.state.fetch_count(), 3);
}

#[test]
fn an_answer_stores_the_inputs_reports_them_acquired_and_runs_the_task() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "c",
        add("a", "b"),
        &[("a", &["tcp://p:1"]), ("b", &["tcp://p:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.answer(
        &outbox.fetches[0],
        vec![item("a", int(1), h("a")), item("b", int(2), h("b"))],
    );
    let (_, reported) = w.settle();
    let mut acquired: Vec<&str> = reported.acquired.iter().map(|k| k.key.as_str()).collect();
    acquired.sort();
    assert_eq!(acquired, vec!["a", "b"]);
    assert_eq!(reported.acquired[0].hash, h(&reported.acquired[0].key));
    assert_eq!(reported.done_keys(), vec!["c"]);
    assert_eq!(w.held("c"), Some((int(3), h("c"))));
    assert_eq!(w.state.fetch_count(), 0);
    assert!(w.state.fetches.is_empty());
}

#[test]
fn answers_may_come_out_of_order() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "c",
        add("a", "b"),
        &[("a", &["tcp://p:1"]), ("b", &["tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    let (to_p, to_q) = match outbox.fetches[0].peer.as_str() {
        "tcp://p:1" => (&outbox.fetches[0], &outbox.fetches[1]),
        _ => (&outbox.fetches[1], &outbox.fetches[0]),
    };
    // q's answer first, though asked second; then p's.
    w.answer(to_q, vec![item("b", int(20), h("b"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done, vec![]);
    w.answer(to_p, vec![item("a", int(1), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["c"]);
    assert_eq!(w.held("c"), Some((int(21), h("c"))));
}

#[test]
fn a_partial_answer_asks_the_next_holder_only_for_what_did_not_arrive() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "c",
        add("a", "b"),
        &[
            ("a", &["tcp://p:1", "tcp://q:1"]),
            ("b", &["tcp://p:1", "tcp://q:1"]),
        ],
    )]);
    let (outbox, _) = w.settle();
    w.answer(&outbox.fetches[0], vec![item("b", int(2), h("b"))]);
    let (retry, _) = w.settle();
    assert_eq!(fetched(&retry), vec![(s("tcp://q:1"), vec![s("a")])]);
    w.answer(&retry.fetches[0], vec![item("a", int(1), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["c"]);
}

#[test]
fn a_bad_value_is_refused_and_the_next_holder_asked() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    let bad = KeyData {
        key: s("a"),
        // Refers to a blob frame that is not there.
        data: zask_core::protocol::Data {
            frame: Some(3),
            ..Default::default()
        },
        hash: Some(h("a")),
    };
    w.answer(&outbox.fetches[0], vec![bad]);
    let (retry, reported) = w.settle();
    assert_eq!(reported.acquired, vec![]);
    assert_eq!(w.held("a"), None);
    assert_eq!(fetched(&retry), vec![(s("tcp://q:1"), vec![s("a")])]);
}

#[test]
fn a_copy_of_another_definition_is_refused_like_a_bad_value() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.answer(&outbox.fetches[0], vec![item("a", int(666), h("stale"))]);
    let (retry, _) = w.settle();
    assert_eq!(w.held("a"), None);
    assert_eq!(fetched(&retry), vec![(s("tcp://q:1"), vec![s("a")])]);
    w.answer(&retry.fetches[0], vec![item("a", int(1), h("a"))]);
    w.settle();
    assert_eq!(w.held("b"), Some((int(2), h("b"))));
}

#[test]
fn a_stranger_key_in_an_answer_is_not_taken() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.answer(
        &outbox.fetches[0],
        vec![item("a", int(1), h("a")), item("zzz", int(9), h("zzz"))],
    );
    let (_, reported) = w.settle();
    assert_eq!(w.held("zzz"), None);
    assert_eq!(reported.acquired.len(), 1);
    assert_eq!(reported.done_keys(), vec!["b"]);
}

#[test]
fn an_answer_to_a_request_not_in_flight_is_ignored() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    w.settle();
    let forged = FetchRequest {
        peer: s("tcp://p:1"),
        request: 999,
        keys: vec![Arc::from("a")].into(),
    };
    w.answer(&forged, vec![item("a", int(1), h("a"))]);
    assert_eq!(w.held("a"), None);
    assert_eq!(
        w.state.fetch_count(),
        1,
        "still waiting for the real answer"
    );
}

#[test]
fn a_peer_error_asks_the_next_holder() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    let reply = PeerReply::Error {
        request: outbox.fetches[0].request,
        message: s("cannot"),
    };
    w.state.on_peer_reply("tcp://p:1", reply, &[], w.now);
    let (retry, _) = w.settle();
    assert_eq!(fetched(&retry), vec![(s("tcp://q:1"), vec![s("a")])]);
}

#[test]
fn a_peer_that_does_not_answer_in_time_is_dropped_and_the_next_holder_asked() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    // (Heartbeats rarer than the timeout, so the deadline is the fetch's.)
    w.state.config.heartbeat_interval = Duration::from_secs(3600);
    let asked_at = w.now;
    let (outbox, _) = w.settle();
    let deadline = asked_at + w.state.config.fetch_timeout;
    assert_eq!(w.state.next_deadline(w.now), deadline);
    w.advance(w.state.config.fetch_timeout - Duration::from_millis(100));
    let early = w.state.take_outbox();
    assert!(
        early.fetches.is_empty() && early.drop_peers.is_empty(),
        "not yet"
    );
    w.advance(Duration::from_millis(200));
    let late = w.state.take_outbox();
    assert_eq!(late.drop_peers, vec![s("tcp://p:1")]);
    assert_eq!(fetched(&late), vec![(s("tcp://q:1"), vec![s("a")])]);
    // p's answer arrives after all: not taken (the request was given up).
    w.answer(&outbox.fetches[0], vec![item("a", int(1), h("a"))]);
    assert_eq!(w.held("a"), None);
}

#[test]
fn when_the_last_holder_fails_whatever_waits_fails_naming_the_input() {
    let mut w = Harness::new();
    w.compute(vec![
        task_from("b", node("inc", (key("a"),)), &[("a", &["tcp://p:1"])]),
        task("c", node("inc", (key("b"),))),
    ]);
    let (outbox, _) = w.settle();
    w.answer(&outbox.fetches[0], vec![]);
    let (_, reported) = w.settle();
    let b = reported.failure("b");
    assert_eq!(
        (b.kind.as_str(), b.missing.as_deref()),
        ("missing_dependency", Some("a"))
    );
    assert_eq!(reported.failure("c").missing.as_deref(), Some("b"));
    assert_eq!(w.state.task_count(), 0);
    assert_eq!(w.state.fetch_count(), 0);
}

#[test]
fn a_peer_gone_fails_its_fetches_at_once_and_is_not_asked_again() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "c",
        add("a", "b"),
        &[
            ("a", &["tcp://p:1", "tcp://q:1"]),
            ("b", &["tcp://q:1", "tcp://p:1"]),
        ],
    )]);
    let (outbox, _) = w.settle();
    w.msg(ToWorker::PeerGone {
        address: s("tcp://p:1"),
    });
    let (after, _) = w.settle();
    assert_eq!(after.drop_peers, vec![s("tcp://p:1")]);
    assert_eq!(fetched(&after), vec![(s("tcp://q:1"), vec![s("a")])]);
    // q cannot serve b: p, gone, is not asked; c fails.
    let to_q = outbox
        .fetches
        .iter()
        .find(|f| f.peer == "tcp://q:1")
        .expect("q asked");
    w.answer(to_q, vec![]);
    let (last, reported) = w.settle();
    assert!(last.fetches.is_empty());
    assert_eq!(reported.failure("c").missing.as_deref(), Some("b"));
}

#[test]
fn a_fetch_that_cannot_be_sent_goes_to_the_next_holder() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.state.on_fetch_unsent(outbox.fetches[0].request, w.now);
    let (retry, _) = w.settle();
    assert_eq!(fetched(&retry), vec![(s("tcp://q:1"), vec![s("a")])]);
}

#[test]
fn two_tasks_sharing_an_input_fetch_it_once() {
    let mut w = Harness::new();
    w.compute(vec![
        task_from("b", node("inc", (key("a"),)), &[("a", &["tcp://p:1"])]),
        task_from("c", node("neg", (key("a"),)), &[("a", &["tcp://p:1"])]),
    ]);
    let (outbox, _) = w.settle();
    assert_eq!(fetched(&outbox), vec![(s("tcp://p:1"), vec![s("a")])]);
    w.answer(&outbox.fetches[0], vec![item("a", int(5), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["b", "c"]);
}

#[test]
fn an_input_asked_anew_under_another_definition_is_fetched_anew() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    let (first, _) = w.settle();
    // Another task wants a under another definition, held by q: the fetch follows it.
    w.compute(vec![ComputeTask {
        who_has: vec![(Arc::from("a"), h("a2"), vec![Arc::from("tcp://q:1")])],
        ..task("c", node("inc", (key("a"),)))
    }]);
    let (second, _) = w.settle();
    assert_eq!(fetched(&second), vec![(s("tcp://q:1"), vec![s("a")])]);
    // The first request's answer, of the old definition, no longer counts.
    w.answer(&first.fetches[0], vec![item("a", int(1), h("a"))]);
    assert_eq!(w.held("a"), None);
    w.answer(&second.fetches[0], vec![item("a", int(100), h("a2"))]);
    w.settle();
    assert_eq!(w.held("c"), Some((int(101), h("c"))));
}

#[test]
fn a_wide_task_asks_for_its_inputs_in_chunks_while_it_is_taken_in() {
    let mut w = Harness::new();
    let n = FETCH_CHUNK + 10;
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let node = zask_core::graph::task("sum", (zask_core::graph::list(keys.iter().map(key)),));
    let who_has = keys
        .iter()
        .map(|k| (Arc::from(k.as_str()), h(k), vec![Arc::from("tcp://p:1")]))
        .collect();
    let t = ComputeTask {
        who_has,
        ..task("total", node)
    };
    let mut early = Vec::new();
    w.state
        .on_compute(vec![t], w.now, &mut |outbox: &mut Outbox| {
            early.extend(outbox.fetches.drain(..).map(|f| f.keys.len()));
        });
    assert_eq!(early, vec![FETCH_CHUNK], "the first chunk goes out early");
    let rest = w.state.take_outbox();
    assert_eq!(rest.fetches.len(), 1);
    assert_eq!(rest.fetches[0].keys.len(), 10);
    assert_eq!(w.state.fetches.len(), 2, "both requests are tracked");
}

#[test]
fn replication_fetches_keys_and_reports_them_acquired() {
    let mut w = Harness::new();
    w.hold("here", int(1), h("here"));
    w.msg(ToWorker::Replicate {
        who_has: vec![
            (s("here"), h("here"), vec![s("tcp://p:1")]),
            (s("x"), h("x"), vec![s("tcp://p:1"), s("tcp://q:1")]),
        ],
    });
    let (outbox, reported) = w.settle();
    let acquired: Vec<&str> = reported.acquired.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(acquired, vec!["here"], "held already: acquired at once");
    assert_eq!(fetched(&outbox), vec![(s("tcp://p:1"), vec![s("x")])]);
    w.answer(&outbox.fetches[0], vec![item("x", int(2), h("x"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.acquired.len(), 1);
    assert_eq!(reported.acquired[0].key, "x");
    assert_eq!(w.held("x"), Some((int(2), h("x"))));
}

#[test]
fn replication_replaces_a_copy_of_another_definition() {
    let mut w = Harness::new();
    w.hold("x", int(1), h("old"));
    w.msg(ToWorker::Replicate {
        who_has: vec![(s("x"), h("x"), vec![s("tcp://p:1")])],
    });
    let (outbox, reported) = w.settle();
    assert_eq!(reported.acquired, vec![]);
    assert_eq!(w.held("x"), None);
    assert_eq!(fetched(&outbox), vec![(s("tcp://p:1"), vec![s("x")])]);
}

#[test]
fn a_peer_is_served_what_is_held_and_told_what_is_not() {
    let mut w = Harness::new();
    w.hold("a", int(1), h("a"));
    let request = PeerRequest::GetData(GetDataBody {
        request: 7,
        keys: vec![s("a"), s("nope")],
    });
    w.state.on_peer_request(b"route".to_vec(), Ok(request));
    let outbox = w.state.take_outbox();
    assert_eq!(outbox.peer_replies.len(), 1);
    let out = &outbox.peer_replies[0];
    assert_eq!(out.route, b"route".to_vec());
    match &out.reply {
        PeerReply::Data(DataBody {
            request,
            items,
            missing,
        }) => {
            assert_eq!(*request, 7);
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].hash, Some(h("a")));
            let value = frames::unpack(items[0].data.clone(), &out.blobs).expect("a value");
            assert_eq!(value, int(1));
            assert_eq!(missing, &vec![s("nope")]);
        }
        other => panic!("not data: {other:?}"),
    }
}

#[test]
fn a_request_that_cannot_be_read_is_answered_with_an_error() {
    let mut w = Harness::new();
    w.state.on_peer_request(b"r".to_vec(), Err(s("garbage")));
    let outbox = w.state.take_outbox();
    match &outbox.peer_replies[0].reply {
        PeerReply::Error { request, message } => {
            assert_eq!(*request, 0);
            assert!(message.contains("garbage"));
        }
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn a_fetch_that_cannot_be_sent_to_the_last_holder_fails_the_waiting_task() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.state.on_fetch_unsent(outbox.fetches[0].request, w.now);
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("b").missing.as_deref(), Some("a"));
    assert_eq!(w.state.task_count(), 0);
}

#[test]
fn a_stale_unsent_notice_does_not_fail_a_key_asked_anew() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1", "tcp://q:1"])],
    )]);
    let (first, _) = w.settle();
    // p does not answer in time: q is asked.
    w.advance(w.state.config.fetch_timeout);
    let second = w.state.take_outbox();
    assert_eq!(fetched(&second), vec![(s("tcp://q:1"), vec![s("a")])]);
    // A late word that p's request could not be sent is about a request given up.
    w.state.on_fetch_unsent(first.fetches[0].request, w.now);
    let (_, reported) = w.settle();
    assert_eq!(reported.failed, vec![]);
    assert_eq!(w.state.fetch_count(), 1);
    w.answer(&second.fetches[0], vec![item("a", int(1), h("a"))]);
    w.settle();
    assert_eq!(w.held("b"), Some((int(2), h("b"))));
}

/// A task over `FETCH_CHUNK + 10` inputs, all on p.
fn wide_task() -> (ComputeTask, Vec<String>) {
    let n = FETCH_CHUNK + 10;
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let node = zask_core::graph::task("sum", (zask_core::graph::list(keys.iter().map(key)),));
    let who_has = keys
        .iter()
        .map(|k| {
            (
                Arc::from(k.as_str()),
                h(k),
                vec![Arc::from("tcp://p:1"), Arc::from("tcp://q:1")],
            )
        })
        .collect();
    let t = ComputeTask {
        who_has,
        ..task("total", node)
    };
    (t, keys)
}

#[test]
fn a_wide_task_runs_once_every_chunk_is_answered() {
    let mut w = Harness::new();
    let (t, keys) = wide_task();
    let mut early = Vec::new();
    w.state
        .on_compute(vec![t], w.now, &mut |outbox: &mut Outbox| {
            early.append(&mut outbox.fetches);
        });
    early.extend(w.state.take_outbox().fetches);
    assert_eq!(early.len(), 2);
    // The second chunk's answer first, then the first's.
    for fetch in early.iter().rev() {
        let items = fetch
            .keys
            .iter()
            .map(|k| {
                let i: i64 = k[1..].parse().expect("k<i>");
                item(k, int(i), h(k))
            })
            .collect();
        w.answer(fetch, items);
    }
    let (_, reported) = w.settle();
    assert_eq!(reported.acquired.len(), keys.len());
    assert_eq!(reported.done_keys(), vec!["total"]);
    let n = keys.len() as i64;
    assert_eq!(w.held("total"), Some((int(n * (n - 1) / 2), h("total"))));
}

#[test]
fn an_early_chunk_that_cannot_be_sent_goes_to_the_next_holder() {
    let mut w = Harness::new();
    let (t, _) = wide_task();
    let mut early = Vec::new();
    w.state
        .on_compute(vec![t], w.now, &mut |outbox: &mut Outbox| {
            early.append(&mut outbox.fetches);
        });
    w.state.take_outbox();
    assert_eq!(early.len(), 1);
    w.state.on_fetch_unsent(early[0].request, w.now);
    let retry = w.state.take_outbox();
    assert_eq!(retry.fetches.len(), 1);
    assert_eq!(retry.fetches[0].peer, "tcp://q:1");
    assert_eq!(retry.fetches[0].keys.len(), FETCH_CHUNK);
}

#[test]
fn replication_gives_up_quietly_when_no_holder_has_the_key() {
    let mut w = Harness::new();
    w.msg(ToWorker::Replicate {
        who_has: vec![(s("x"), h("x"), vec![s("tcp://p:1")])],
    });
    let (outbox, _) = w.settle();
    w.answer(&outbox.fetches[0], vec![]);
    let (after, reported) = w.settle();
    assert!(after.fetches.is_empty());
    assert_eq!((reported.acquired.len(), reported.failed.len()), (0, 0));
    assert_eq!(w.state.fetch_count(), 0);
}

#[test]
fn replication_of_a_key_already_being_fetched_asks_for_it_once() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("x"),)),
        &[("x", &["tcp://p:1"])],
    )]);
    let (outbox, _) = w.settle();
    w.msg(ToWorker::Replicate {
        who_has: vec![(s("x"), h("x"), vec![s("tcp://q:1")])],
    });
    let (again, _) = w.settle();
    assert!(again.fetches.is_empty(), "already on its way");
    w.answer(&outbox.fetches[0], vec![item("x", int(1), h("x"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.acquired.len(), 1);
    assert_eq!(reported.done_keys(), vec!["b"]);
}

#[test]
fn a_peer_dropped_and_asked_again_in_one_turn_is_dropped_first() {
    let mut w = Harness::new();
    // a from p; b from q, then p. Both requests time out together: p's socket is dropped,
    // and b is asked of p, on a fresh socket (the outbox lists drops before fetches).
    w.compute(vec![task_from(
        "c",
        add("a", "b"),
        &[("a", &["tcp://p:1"]), ("b", &["tcp://q:1", "tcp://p:1"])],
    )]);
    w.settle();
    w.advance(w.state.config.fetch_timeout);
    let outbox = w.state.take_outbox();
    let mut dropped = outbox.drop_peers.clone();
    dropped.sort();
    assert_eq!(dropped, vec![s("tcp://p:1"), s("tcp://q:1")]);
    assert_eq!(fetched(&outbox), vec![(s("tcp://p:1"), vec![s("b")])]);
}
