//! No crash, no hang, no leak, and errors that say what is wrong, with real processes: values
//! nested too deep, a million requested keys, a full disk, workers that stay connected but
//! stop answering, a graceful scheduler restart, clients that never read or never ping, bad
//! headers, typos in nodes, higher-order functions in a mixed cluster, and floats JSON
//! cannot write.

mod common;

use std::time::{Duration, Instant};

use common::{
    graph_json, port_of, raw_socket, recv_parts, run_command, scheduler_error, send_frames,
    value_json, wait_until, zask_command, Cluster, FakeWorker, Proc, SchedulerProc, WorkerBin,
    WorkerProc, DEADLINE,
};
use serde_json::json;
use zask::{key, task, Graph, Keys, Value};
use zask_core::protocol::{ErrorInfo, FromClient, GetBody, KeyInfo, ToClient};
use zask_core::{frames, DefHash};

const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The next error a raw client socket receives (other replies skipped), within the timeout.
fn next_error(socket: &zmq::Socket, timeout: Duration) -> Option<(u64, ErrorInfo)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let parts = recv_parts(socket, deadline.saturating_duration_since(Instant::now()))?;
        if let Ok(ToClient::Error { request, error }) = frames::decode::<ToClient>(&parts[0]) {
            return Some((request, error));
        }
    }
    None
}

#[test]
fn a_value_nested_a_million_levels_is_a_task_error_not_a_dead_worker() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({
        "r": {"fn": "range", "args": [1_000_000]},
        "d": {"fn": "reduce", "args": ["list", {"ref": "r"}]},
    }));
    let e = scheduler_error(cluster.client().get(&graph, "d"));
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("task_failed", Some("d"))
    );
    assert!(e.message.contains("nests more than 512"), "{e:?}");
    assert_eq!(cluster.list_workers().len(), 2, "every worker is alive");
    cluster.assert_serving();
}

#[test]
fn results_nested_too_deep_fail_their_key_and_no_one_hangs() {
    let cluster = Cluster::start(1, 2);
    // A chain of 1,100 `list` tasks nests one level per link.
    let mut chain = Graph::new();
    chain.insert("l0", task("list", (0,)));
    for i in 1..1_100 {
        chain.insert(format!("l{i}"), task("list", (key(format!("l{}", i - 1)),)));
    }
    // Another client's small computation runs alongside (same worker, same reports).
    let other = {
        let client = cluster.new_client();
        std::thread::spawn(move || {
            let mut g = Graph::new();
            g.insert("side", task("inc", (1,)));
            client.get(&g, "side")
        })
    };
    let e = scheduler_error(cluster.client().get(&chain, "l1099"));
    assert_eq!(e.kind, "dependency_failed", "{e:?}");
    assert_eq!(e.key.as_deref(), Some("l1099"));
    assert_eq!(e.dependency.as_deref(), Some("l512"), "{e:?}");
    assert!(e.message.contains("nests more than 512"), "{e:?}");
    assert_eq!(other.join().unwrap().unwrap(), Value::Int(2));
    // A literal nested deeper than allowed is refused at submission, naming its key.
    let mut deep = Value::Int(1);
    for _ in 0..600 {
        deep = Value::List(vec![deep]);
    }
    let mut g = Graph::new();
    g.insert("deep", zask::lit(deep));
    g.insert("use", task("len", (key("deep"),)));
    let e = scheduler_error(cluster.client().get(&g, "use"));
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("invalid_graph", Some("deep"))
    );
    // One nested beyond what a message may hold is refused too, and answered.
    let mut deeper = Value::Int(1);
    for _ in 0..1_020 {
        deeper = Value::List(vec![deeper]);
    }
    g.insert("deep", zask::lit(deeper));
    let e = scheduler_error(cluster.client().get(&g, "use"));
    assert!(
        e.kind == "invalid_graph" || e.kind == "bad_request",
        "{e:?}"
    );
    assert!(
        e.message.contains("nest") || e.message.contains("depth"),
        "{e:?}"
    );
    cluster.assert_serving();
}

#[test]
fn a_million_requested_keys_are_answered() {
    let cluster = Cluster::start(1, 1);
    let n = 100_000;
    let mut g = Graph::new();
    for i in 0..n {
        g.insert(format!("k{i}"), i as i64);
    }
    let keys = Keys::Many(
        (0..1_000_000)
            .map(|i| Keys::One(format!("k{}", i % n)))
            .collect(),
    );
    let value = cluster.client().get(&g, keys).unwrap();
    let Value::List(items) = value else {
        panic!("a list")
    };
    assert_eq!(items.len(), 1_000_000);
    assert_eq!(items[123_456], Value::Int((123_456 % n) as i64));
    cluster.assert_serving();
}

/// A small disk (tmpfs) under a worker's sled store: values are stored while there is room,
/// then refused with a clear task error; the worker keeps serving what it holds, and stops on
/// signals.
#[test]
fn a_full_disk_gives_task_errors_and_the_worker_keeps_serving() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let _mount = Tmpfs::mount(&disk, "96m");
    let scheduler = SchedulerProc::start(&[]);
    let store = format!("sled:{}", disk.join("store").display());
    let mut worker = WorkerProc::start(
        WorkerBin::Stock,
        &scheduler.workers_address,
        1,
        &["--store", &store],
    );
    let client = scheduler.client();
    client.wait_for_workers(1, DEADLINE).unwrap();
    let mut kept = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let name = format!("big{i}");
        let mut g = Graph::new();
        g.insert(name.as_str(), task("zeros", (1 << 20,)));
        match client.get_with(&g, name.as_str(), true) {
            Ok(_) => kept.push(name),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the disk fills up");
    let info = e.info().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(info.kind, "task_failed", "{info:?}");
    assert!(info.message.contains("disk full"), "{info:?}");
    assert!(!kept.is_empty(), "values were stored while there was room");
    // It still answers: it holds what it stored, and serves it.
    let first = client.gather(vec![kept[0].as_str()]).unwrap();
    assert!(
        matches!(&first, Value::List(v) if matches!(&v[0], Value::Bytes(b) if b.len() == 1 << 20))
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(client.workers().unwrap().len(), 1, "it still heartbeats");
    // Two signals: it leaves at once.
    worker.proc.terminate();
    std::thread::sleep(Duration::from_millis(300));
    worker.proc.terminate();
    assert!(
        worker.proc.wait_exit(Duration::from_secs(10)).is_some(),
        "the worker did not stop"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A registered "worker" that heartbeats and takes tasks but never reports them nor answers
/// anything: its tasks go to a real worker once it does not answer a task check.
#[test]
fn a_worker_that_takes_tasks_and_never_reports_is_timed_out() {
    let cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--check-after", "1", "--answer-timeout", "1"])
        .start();
    let ctx = zmq::Context::new();
    let fake = FakeWorker::register(
        &ctx,
        cluster.workers_address(),
        "black-hole",
        4,
        &["inc"],
        Vec::new(),
    );
    cluster.client().wait_for_workers(2, DEADLINE).unwrap();
    let client = cluster.client().clone();
    let answer = std::thread::spawn(move || {
        let mut g = Graph::new();
        let keys: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            g.insert(k.as_str(), task("inc", (i as i64,)));
        }
        client.get(&g, keys.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let deadline = Instant::now() + DEADLINE;
    while !answer.is_finished() {
        assert!(Instant::now() < deadline, "the computation hangs");
        fake.heartbeat();
        std::thread::sleep(Duration::from_millis(200));
    }
    let expected: Vec<Value> = (1..=10).map(Value::Int).collect();
    assert_eq!(answer.join().unwrap().unwrap(), Value::List(expected));
}

/// A registered "worker" claims to hold a kept key and never answers a request for it: the
/// value is taken from its real holder instead.
#[test]
fn a_holder_that_never_answers_a_request_for_data_is_passed_over() {
    let cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--answer-timeout", "1"])
        .start();
    let client = cluster.client().clone();
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    assert_eq!(client.get_with(&g, "x", true).unwrap(), Value::Int(2));
    let ctx = zmq::Context::new();
    let held = KeyInfo {
        key: "x".into(),
        nbytes: 8,
        hash: DefHash::of_node(&task("inc", (1,))).0,
    };
    let fake = FakeWorker::register(&ctx, cluster.workers_address(), "mute", 1, &[], vec![held]);
    client.wait_for_workers(2, DEADLINE).unwrap();
    wait_until("the mute worker to be listed as a holder", DEADLINE, || {
        (client.workers().ok()?.iter().map(|w| w.keys).sum::<u64>() == 2).then_some(())
    });
    // The real holder is busy, so the mute one looks better to ask.
    let busy = {
        let client = cluster.new_client();
        std::thread::spawn(move || {
            let mut g = Graph::new();
            g.insert("busy", task("sleep", (3, 0)));
            client.get(&g, "busy")
        })
    };
    wait_until("the real worker to be busy", DEADLINE, || {
        (client.status().ok()?.graphs == 1).then_some(())
    });
    let gathered = {
        let client = client.clone();
        std::thread::spawn(move || client.gather(vec!["x"]))
    };
    let deadline = Instant::now() + DEADLINE;
    while !gathered.is_finished() {
        assert!(Instant::now() < deadline, "the gather hangs");
        fake.heartbeat();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        gathered.join().unwrap().unwrap(),
        Value::List(vec![Value::Int(2)])
    );
    busy.join().unwrap().unwrap();
}

/// `zask get` waiting when the scheduler is stopped gracefully (SIGTERM) and started again
/// submits again, as after a crash, and prints the answer.
#[test]
fn a_graceful_scheduler_restart_is_retried_like_a_crash() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.json");
    let mut g = serde_json::Map::new();
    let mut refs = Vec::new();
    for i in 0..10 {
        g.insert(format!("s{i}"), json!({"fn": "sleep", "args": [0.3, i]}));
        refs.push(json!({"ref": format!("s{i}")}));
    }
    g.insert("total".into(), json!({"fn": "sum", "args": [refs]}));
    std::fs::write(&path, serde_json::Value::Object(g).to_string()).unwrap();
    let address = cluster.clients_address().to_string();
    let mut cli = Proc::spawn(
        "zask get",
        zask_command(&[
            "get",
            "--scheduler",
            &address,
            path.to_str().unwrap(),
            "total",
        ]),
    );
    let client = cluster.client().clone();
    wait_until("the computation to start", DEADLINE, || {
        (client.status().ok()?.graphs == 1).then_some(())
    });
    let (pw, pc) = (port_of(cluster.workers_address()), port_of(&address));
    cluster.scheduler.proc.terminate();
    cluster
        .scheduler
        .proc
        .wait_exit(DEADLINE)
        .expect("it stops");
    cluster.scheduler = SchedulerProc::start_on(pw, pc, &["--heartbeat-timeout", "1"]);
    let line = cli.read_line(common::GET_TIMEOUT);
    assert_eq!(line.trim(), "45");
    let status = cli.wait_exit(DEADLINE).expect("zask get exits");
    assert!(status.success(), "{}", cli.stderr_text());
}

/// A client that sends requests and never reads the replies: its queue is bounded, its
/// computations cancelled, other clients served; when it reads and speaks again, it is told
/// what was dropped.
#[test]
fn a_client_that_never_reads_is_bounded_and_told() {
    let cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--client-queue", "100"])
        .start();
    let ctx = zmq::Context::new();
    let greedy = ctx.socket(zmq::DEALER).unwrap();
    greedy.set_rcvhwm(10).unwrap();
    greedy.set_linger(0).unwrap();
    greedy.connect(cluster.clients_address()).unwrap();
    for request in 1..=20_000u64 {
        let f = frames::encode(&FromClient::Status { request }, Vec::new()).unwrap();
        send_frames(&greedy, None, f);
    }
    // Others are served meanwhile.
    cluster.assert_serving();
    // The greedy client reads what reached it, then speaks again: it learns what was dropped.
    std::thread::sleep(Duration::from_millis(500));
    while recv_parts(&greedy, Duration::from_millis(300)).is_some() {}
    let f = frames::encode(&FromClient::Status { request: 99_999 }, Vec::new()).unwrap();
    send_frames(&greedy, None, f);
    let (_, error) = next_error(&greedy, REPLY_TIMEOUT).expect("told what was dropped");
    assert_eq!(error.kind, "cancelled", "{error:?}");
    assert!(error.message.contains("--client-queue"), "{error:?}");
    cluster.assert_serving();
}

/// A client that submits and then never pings: its computation is cancelled after the client
/// timeout, and it is told so (it may still be reading).
#[test]
fn a_client_that_never_pings_is_told_its_computation_was_cancelled() {
    let cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--client-timeout", "1"])
        .start();
    let ctx = zmq::Context::new();
    let silent = raw_socket(&ctx, zmq::DEALER, cluster.clients_address());
    let mut g = Graph::new();
    g.insert("slow", task("sleep", (5, 1)));
    let f = frames::encode(
        &FromClient::Get(GetBody {
            request: 7,
            graph: g.into(),
            keys: Value::from("slow"),
            keep_results: false,
            progress: false,
        }),
        Vec::new(),
    )
    .unwrap();
    send_frames(&silent, None, f);
    let (request, error) = next_error(&silent, REPLY_TIMEOUT).expect("told it was cancelled");
    assert_eq!(request, 7);
    assert_eq!(error.kind, "cancelled", "{error:?}");
    assert!(error.message.contains("--client-timeout"), "{error:?}");
}

/// Headers that are not what the protocol allows are answered with what is wrong.
#[test]
fn bad_headers_are_answered_with_what_is_wrong() {
    let cluster = Cluster::start(1, 1);
    let ctx = zmq::Context::new();
    let socket = raw_socket(&ctx, zmq::DEALER, cluster.clients_address());
    let ask = |header: Vec<u8>| {
        socket.send(header, 0).unwrap();
        next_error(&socket, REPLY_TIMEOUT).expect("an answer").1
    };
    let e = ask(frames::encode(&value_json(json!([1, 2, 3])), Vec::new())
        .unwrap()
        .header);
    assert_eq!(e.kind, "bad_request");
    assert!(
        e.message.contains("map") && e.message.contains("\"op\""),
        "{e:?}"
    );
    let e = ask(frames::encode(&value_json(json!({"op": 7})), Vec::new())
        .unwrap()
        .header);
    assert!(
        e.message.contains("\"op\"") && e.message.contains("string"),
        "{e:?}"
    );
    let e = ask(frames::encode(
        &value_json(json!({"op": "frobnicate", "request": 3})),
        Vec::new(),
    )
    .unwrap()
    .header);
    assert!(e.message.contains("unknown op \"frobnicate\""), "{e:?}");
    // Keys nested 100,000 deep (written by hand: encoders recurse).
    let mut header = vec![0x84];
    for (name, value) in [
        ("op", &b"\xa3get"[..]),
        ("request", &[0x05][..]),
        ("graph", &[0x80][..]),
    ] {
        header.push(0xa0 | name.len() as u8);
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(value);
    }
    header.extend_from_slice(b"\xa4keys");
    header.extend(std::iter::repeat_n(0x91u8, 100_000));
    header.extend_from_slice(b"\xa1k");
    let e = ask(header);
    assert_eq!(e.kind, "bad_request");
    assert!(e.message.contains("nest"), "{e:?}");
    // A malformed node is an invalid graph naming its key.
    let mut g = serde_json::Map::new();
    g.insert("y".into(), json!({"fn": 3}));
    let header = value_json(json!({"op": "get", "request": 9, "graph": g, "keys": "y"}));
    let e = ask(frames::encode(&header, Vec::new()).unwrap().header);
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("invalid_graph", Some("y"))
    );
    cluster.assert_serving();
}

/// A typo in a task node is an error naming the key and the field, not a literal map
/// printed as a result.
#[test]
fn a_typo_in_a_task_node_is_an_error_not_a_literal() {
    let cluster = Cluster::start(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.json");
    std::fs::write(&path, r#"{"y": {"fn": "inc", "arg": [1]}}"#).unwrap();
    let out = run_command(
        zask_command(&[
            "get",
            "--scheduler",
            cluster.clients_address(),
            path.to_str().unwrap(),
            "y",
        ]),
        None,
        DEADLINE,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("\"y\"") && out.stderr.contains("\"arg\""),
        "{out:?}"
    );
}

/// NaN and the infinities print as `{"float": ...}`, told apart from nil, and read back.
#[test]
fn floats_json_cannot_write_are_printed_so_they_can_be_told_apart() {
    let cluster = Cluster::start(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floats.json");
    std::fs::write(
        &path,
        r#"{"x": [{"float": "inf"}, {"float": "-inf"}, null],
            "nan": {"fn": "sub", "args": [{"float": "inf"}, {"float": "inf"}]}}"#,
    )
    .unwrap();
    let out = run_command(
        zask_command(&[
            "get",
            "--scheduler",
            cluster.clients_address(),
            path.to_str().unwrap(),
            "x",
            "nan",
        ]),
        None,
        DEADLINE,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        r#"[[{"float":"inf"},{"float":"-inf"},null],{"float":"nan"}]"#
    );
}

/// `map` over a custom function, in a cluster where only some workers offer it: placed where
/// it is, every time.
#[test]
fn higher_order_tasks_run_where_the_function_they_name_is() {
    let cluster = Cluster::builder(2, 1)
        .workers(&[WorkerBin::Stock, WorkerBin::Custom])
        .start();
    for i in 0..8 {
        let mut g = Graph::new();
        g.insert(
            format!("m{i}"),
            task("map", ("word_count", vec!["a b", "c d e"])),
        );
        assert_eq!(
            cluster.client().get(&g, format!("m{i}").as_str()).unwrap(),
            Value::List(vec![Value::Int(2), Value::Int(3)])
        );
    }
}
