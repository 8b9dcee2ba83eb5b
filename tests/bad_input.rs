//! Bad input: each is answered with a clear error, and the cluster keeps serving afterwards
//! (checked by a successful computation after each).

mod common;

use std::time::Duration;

use common::{
    graph_json, raw_socket, recv_parts, scheduler_error, send_frames, value_json, Cluster,
};
use serde_json::json;
use zask::{Graph, Value};
use zask_core::frames;
use zask_core::protocol::{
    DataBody, ErrorInfo, FromClient, FromWorker, KeyData, KeyInfo, ReportBody, TaskDone,
    TaskFailed, ToClient, ToWorker, PROTOCOL_VERSION,
};

const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Receives the scheduler's reply on a raw client DEALER, decoded.
fn recv_reply(socket: &zmq::Socket) -> ToClient {
    let parts = recv_parts(socket, REPLY_TIMEOUT).expect("the scheduler did not answer");
    frames::decode(&parts[0]).expect("a reply the client protocol can decode")
}

/// Expects an `error` reply to `request`, and returns its report.
fn expect_error(socket: &zmq::Socket, request: u64) -> ErrorInfo {
    match recv_reply(socket) {
        ToClient::Error { request: r, error } => {
            assert_eq!(r, request, "the error answers another request: {error:?}");
            error
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// A `get` whose graph may be anything (malformed ones included), built as a plain map.
fn raw_get(graph: serde_json::Value, keys: serde_json::Value, request: u64) -> frames::Frames {
    let header = Value::Map(vec![
        (Value::from("op"), Value::from("get")),
        (Value::from("request"), Value::from(request)),
        (Value::from("graph"), value_json(graph)),
        (Value::from("keys"), value_json(keys)),
        (Value::from("keep_results"), Value::Bool(false)),
    ]);
    frames::encode(&header, Vec::new()).unwrap()
}

#[test]
fn cyclic_graph() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({
        "a": {"fn": "inc", "args": [{"ref": "b"}]},
        "b": {"fn": "inc", "args": [{"ref": "c"}]},
        "c": {"fn": "inc", "args": [{"ref": "a"}]},
        "d": {"fn": "inc", "args": [{"ref": "a"}]},
    }));
    let info = scheduler_error(cluster.client().get(&graph, "d"));
    assert_eq!(info.kind, "cycle", "{info:?}");
    for k in ["a", "b", "c"] {
        assert!(
            info.message.contains(k),
            "the message should name the cycle: {info:?}"
        );
    }
    cluster.assert_serving();
    // A key referring to itself.
    let graph = graph_json(json!({"s": {"fn": "inc", "args": [{"ref": "s"}]}}));
    let info = scheduler_error(cluster.client().get(&graph, "s"));
    assert_eq!(info.kind, "cycle", "{info:?}");
    cluster.assert_serving();
    // Nothing of the rejected graphs was kept.
    cluster.wait_until_idle();
}

#[test]
fn reference_to_a_missing_key() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({
        "a": 1,
        "b": {"fn": "add", "args": [{"ref": "a"}, {"ref": "ghost"}]},
    }));
    let info = scheduler_error(cluster.client().get(&graph, "b"));
    assert_eq!(info.kind, "missing_key", "{info:?}");
    assert_eq!(info.key.as_deref(), Some("b"), "{info:?}");
    assert!(info.message.contains("ghost"), "{info:?}");
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn requested_key_not_in_the_graph() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({"a": 1, "b": {"fn": "inc", "args": [{"ref": "a"}]}}));
    let info = scheduler_error(cluster.client().get(&graph, vec!["b", "nope"]));
    assert_eq!(info.kind, "missing_key", "{info:?}");
    assert_eq!(info.key.as_deref(), Some("nope"), "{info:?}");
    assert!(info.message.contains("nope"), "{info:?}");
    // An empty graph and a key.
    let info = scheduler_error(cluster.client().get(&Graph::new(), "x"));
    assert_eq!(info.kind, "missing_key", "{info:?}");
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn malformed_graphs_and_keys_sent_raw() {
    let cluster = Cluster::start(2, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.clients_address());

    // {"fn": 3}: a task whose function name is not a string.
    send_frames(
        &socket,
        None,
        raw_get(json!({"a": {"fn": 3}}), json!("a"), 11),
    );
    let info = expect_error(&socket, 11);
    assert_eq!(info.kind, "invalid_graph", "{info:?}");

    // A reference that is not a string, and args that are not a list.
    send_frames(
        &socket,
        None,
        raw_get(json!({"a": {"ref": 7}}), json!("a"), 12),
    );
    assert_eq!(expect_error(&socket, 12).kind, "invalid_graph");
    send_frames(
        &socket,
        None,
        raw_get(json!({"a": {"fn": "inc", "args": 5}}), json!("a"), 13),
    );
    assert_eq!(expect_error(&socket, 13).kind, "invalid_graph");

    // A graph that is not a map.
    send_frames(&socket, None, raw_get(json!([1, 2, 3]), json!("a"), 14));
    assert_eq!(expect_error(&socket, 14).kind, "invalid_graph");

    // Keys that are neither a string nor lists of strings.
    send_frames(&socket, None, raw_get(json!({"a": 1}), json!(3), 15));
    assert_eq!(expect_error(&socket, 15).kind, "bad_request");
    send_frames(
        &socket,
        None,
        raw_get(json!({"a": 1}), json!(["a", {"b": 1}]), 16),
    );
    assert_eq!(expect_error(&socket, 16).kind, "bad_request");

    // The same socket still gets answers to good requests.
    send_frames(
        &socket,
        None,
        raw_get(json!({"a": {"fn": "add", "args": [1, 2]}}), json!("a"), 17),
    );
    match recv_reply(&socket) {
        ToClient::Result { request, items } => {
            assert_eq!(request, 17);
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].key, "a");
            assert_eq!(items[0].data.value, Value::Int(3));
        }
        other => panic!("expected a result, got {other:?}"),
    }
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn oversized_message() {
    let cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--max-message-size", "2000"])
        .start();
    let graph = graph_json(json!({
        "big": "x".repeat(5000),
        "n": {"fn": "len", "args": [{"ref": "big"}]},
    }));
    let info = scheduler_error(cluster.client().get(&graph, "n"));
    assert_eq!(info.kind, "too_large", "{info:?}");
    assert!(
        info.message.contains("2000"),
        "the message should say the limit: {info:?}"
    );
    // Small graphs still work, on the same client and a new one.
    cluster.assert_serving();
    common::assert_serving(&cluster.new_client());

    // The client's own limit refuses before sending.
    let options = zask::ClientOptions {
        max_message_size: 1000,
        ..common::client_options()
    };
    let small_client = zask::Client::connect_with(cluster.clients_address(), options).unwrap();
    match small_client.get(&graph, "n") {
        Err(zask_client::Error::TooLarge { size, limit }) => {
            assert_eq!(limit, 1000);
            assert!(size > 5000, "size {size}");
        }
        other => panic!("expected the client's TooLarge error, got {other:?}"),
    }
    cluster.wait_until_idle();
}

#[test]
fn garbage_bytes_to_the_client_port() {
    let cluster = Cluster::start(2, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.clients_address());

    // Not msgpack at all.
    socket
        .send(&b"\xc1\xff this is not msgpack \x00\x01"[..], 0)
        .unwrap();
    let info = expect_error(&socket, 0);
    assert_eq!(info.kind, "bad_request", "{info:?}");
    assert!(!info.message.is_empty());
    cluster.assert_serving();

    // Several frames of garbage.
    socket
        .send_multipart([&b"\x93\x01"[..], &b"junk"[..], &b"\xff\xff"[..]], 0)
        .unwrap();
    assert_eq!(expect_error(&socket, 0).kind, "bad_request");
    cluster.assert_serving();

    // An empty frame.
    socket.send(&b""[..], 0).unwrap();
    assert_eq!(expect_error(&socket, 0).kind, "bad_request");

    // Random-looking bytes of many lengths.
    let mut x: u32 = 12345;
    for len in [1usize, 2, 3, 7, 64, 1000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        socket.send(bytes, 0).unwrap();
        match recv_reply(&socket) {
            ToClient::Error { error, .. } => assert_eq!(error.kind, "bad_request", "{error:?}"),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn header_with_an_unknown_op_or_missing_fields() {
    let cluster = Cluster::start(2, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.clients_address());

    let unknown = value_json(json!({"op": "frobnicate", "request": 42}));
    send_frames(&socket, None, frames::encode(&unknown, Vec::new()).unwrap());
    let info = expect_error(&socket, 42);
    assert_eq!(info.kind, "bad_request", "{info:?}");

    // A known op lacking its fields.
    let partial = value_json(json!({"op": "get", "request": 43}));
    send_frames(&socket, None, frames::encode(&partial, Vec::new()).unwrap());
    assert_eq!(expect_error(&socket, 43).kind, "bad_request");

    // No op at all.
    let no_op = value_json(json!({"request": 44, "graph": {}}));
    send_frames(&socket, None, frames::encode(&no_op, Vec::new()).unwrap());
    assert_eq!(expect_error(&socket, 44).kind, "bad_request");

    // Headers the spec does not allow (docs/protocol.md: a map with a str `op`, and a
    // `request`): refused as `bad_request`, under request id 0 when none can be read.
    let array = value_json(json!(["status", 21]));
    send_frames(&socket, None, frames::encode(&array, Vec::new()).unwrap());
    assert_eq!(expect_error(&socket, 0).kind, "bad_request");
    let op_int = value_json(json!({"op": 1}));
    send_frames(&socket, None, frames::encode(&op_int, Vec::new()).unwrap());
    assert_eq!(expect_error(&socket, 0).kind, "bad_request");
    let no_request = value_json(json!({"op": "status"}));
    send_frames(
        &socket,
        None,
        frames::encode(&no_request, Vec::new()).unwrap(),
    );
    assert_eq!(expect_error(&socket, 0).kind, "bad_request");

    // A hello speaking another protocol version.
    let hello = FromClient::Hello {
        request: 45,
        protocol: PROTOCOL_VERSION + 100,
    };
    send_frames(&socket, None, frames::encode(&hello, Vec::new()).unwrap());
    let info = expect_error(&socket, 45);
    assert_eq!(info.kind, "version_mismatch", "{info:?}");

    // The socket is still served.
    send_frames(
        &socket,
        None,
        frames::encode(&FromClient::Status { request: 46 }, Vec::new()).unwrap(),
    );
    match recv_reply(&socket) {
        ToClient::Status {
            request, workers, ..
        } => {
            assert_eq!(request, 46);
            assert_eq!(workers, 2);
        }
        other => panic!("expected a status reply, got {other:?}"),
    }
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn garbage_to_the_worker_port() {
    let cluster = Cluster::start(2, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.workers_address());

    socket.send(&b"\xc1\xff garbage \x00"[..], 0).unwrap();
    socket
        .send_multipart([&b"\x81\xa2op"[..], &b"junk"[..]], 0)
        .unwrap();
    socket.send(&b""[..], 0).unwrap();
    let unknown = value_json(json!({"op": "frobnicate", "worker_id": "w"}));
    send_frames(&socket, None, frames::encode(&unknown, Vec::new()).unwrap());
    // A report whose value points at a blob frame it does not have.
    let dangling = FromWorker::Report(ReportBody {
        done: vec![TaskDone {
            key: "x".into(),
            hash: zask_core::DefHash::default(),
            nbytes: 1,
            duration_us: 1,
            data: Some(zask_core::protocol::Data {
                value: Value::Nil,
                frame: Some(9),
                raw: false,
                extra_frames: 0,
            }),
        }],
        failed: vec![],
        acquired: vec![],
    });
    send_frames(
        &socket,
        None,
        frames::encode(&dangling, Vec::new()).unwrap(),
    );
    cluster.assert_serving();
    assert_eq!(cluster.list_workers().len(), 2);
    // The report decoded (its unreadable value fails only that task), but this sender is
    // not a registered worker: the only answer anything got is to register.
    while let Some(reply) = recv_parts(&socket, Duration::from_millis(300)) {
        let msg: ToWorker = frames::decode(&reply[0]).unwrap();
        assert_eq!(msg, ToWorker::PleaseRegister);
    }

    // A heartbeat from a worker the scheduler does not know: it is asked to register.
    let heartbeat = FromWorker::Heartbeat {
        worker_id: "stranger".into(),
    };
    send_frames(
        &socket,
        None,
        frames::encode(&heartbeat, Vec::new()).unwrap(),
    );
    let reply = recv_parts(&socket, REPLY_TIMEOUT).expect("an answer to the heartbeat");
    let msg: ToWorker = frames::decode(&reply[0]).unwrap();
    assert_eq!(msg, ToWorker::PleaseRegister);

    // A registration speaking another protocol version is rejected.
    let bad_version = FromWorker::Register {
        protocol: PROTOCOL_VERSION + 100,
        worker_id: "future-worker".into(),
        address: "tcp://127.0.0.1:1".into(),
        pid: 1,
        nthreads: 1,
        functions: vec!["inc".into()],
        has: vec![],
    };
    send_frames(
        &socket,
        None,
        frames::encode(&bad_version, Vec::new()).unwrap(),
    );
    let reply = recv_parts(&socket, REPLY_TIMEOUT).expect("an answer to the registration");
    match frames::decode::<ToWorker>(&reply[0]).unwrap() {
        ToWorker::Rejected { message } => {
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}")
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    assert_eq!(cluster.list_workers().len(), 2);
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn nonsense_from_a_registered_worker() {
    let cluster = Cluster::start(2, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.workers_address());
    // Registers offering no function, so that no task is ever sent to it.
    let register = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "fake-worker".into(),
        address: "tcp://127.0.0.1:1".into(),
        pid: 1,
        nthreads: 1,
        functions: vec![],
        has: vec![],
    };
    send_frames(
        &socket,
        None,
        frames::encode(&register, Vec::new()).unwrap(),
    );
    let reply = recv_parts(&socket, REPLY_TIMEOUT).expect("an answer to the registration");
    assert!(matches!(
        frames::decode::<ToWorker>(&reply[0]).unwrap(),
        ToWorker::Welcome { .. }
    ));
    assert_eq!(cluster.list_workers().len(), 3);

    // Reports about tasks nobody asked for, data nobody requested, garbage.
    let report = FromWorker::Report(ReportBody {
        done: vec![TaskDone {
            key: "never-submitted".into(),
            hash: zask_core::DefHash::default(),
            nbytes: 8,
            duration_us: 5,
            data: None,
        }],
        failed: vec![TaskFailed {
            key: "also-never-submitted".into(),
            hash: None,
            kind: "task_failed".into(),
            function: Some("inc".into()),
            message: "nonsense".into(),
            missing: None,
        }],
        acquired: vec![KeyInfo {
            key: "phantom".into(),
            nbytes: 8,
            hash: zask_core::DefHash::of_value(&Value::Int(1)),
        }],
    });
    send_frames(&socket, None, frames::encode(&report, Vec::new()).unwrap());
    let data = FromWorker::Data(DataBody {
        request: 987_654,
        items: vec![KeyData::inline("phantom".into(), Value::Int(1))],
        missing: vec!["other".into()],
    });
    send_frames(&socket, None, frames::encode(&data, Vec::new()).unwrap());
    socket.send(&b"\xc1 garbage"[..], 0).unwrap();
    // Then it leaves.
    let goodbye = FromWorker::Goodbye {
        worker_id: "fake-worker".into(),
    };
    send_frames(&socket, None, frames::encode(&goodbye, Vec::new()).unwrap());
    let client = cluster.client();
    common::wait_until("the fake worker to be gone", common::DEADLINE, || {
        (client.workers().ok()?.len() == 2).then_some(())
    });
    cluster.assert_serving();
    cluster.wait_until_idle();
}
