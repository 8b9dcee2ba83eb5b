//! Never a wrong answer, never lost data, with real processes: the same key names with
//! different definitions, a worker coming back with a stale copy, workers reporting what they
//! were not asked, a scheduler restarting, a kept key whose only holder dies, and collections
//! that could not be read back.
//!
//! Each test stages what was found to go wrong (see issue 11) and checks that the answer is
//! the right value or a clear error, never another computation's value.

mod common;

use std::time::Duration;

use common::{
    port_of, run_command, scheduler_error, wait_until, zask_command, Cluster, FakeWorker,
    SchedulerProc, WorkerBin, WorkerProc, DEADLINE,
};
use zask::{key, task, Collection, Graph, Value};
use zask_core::protocol::{
    DataBody, FromWorker, KeyData, KeyInfo, ReportBody, TaskDone, TaskFailed,
};
use zask_core::DefHash;

/// `{a: sleep(s, n), b: mul(a, 10), c: add(b, 1)}`: the same key names, a different `a` per
/// client.
fn abc(n: i64, seconds: f64) -> Graph {
    let mut g = Graph::new();
    g.insert("a", task("sleep", (seconds, n)));
    g.insert("b", task("mul", (key("a"), 10)));
    g.insert("c", task("add", (key("b"), 1)));
    g
}

#[test]
fn six_clients_with_the_same_key_names_never_get_each_others_values() {
    let cluster = Cluster::start(2, 2);
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let client = cluster.new_client();
            std::thread::spawn(move || (i, client.get(&abc(i, 0.5), "c")))
        })
        .collect();
    let mut answered = 0;
    for t in threads {
        let (i, result) = t.join().expect("a client thread");
        match result {
            Ok(v) => {
                assert_eq!(v, Value::Int(10 * i + 1), "client {i} got another's value");
                answered += 1;
            }
            Err(e) => {
                let info = e.info().unwrap_or_else(|| panic!("client {i}: {e}"));
                assert_eq!(info.kind, "key_conflict", "client {i}: {info:?}");
                assert!(
                    matches!(info.key.as_deref(), Some("a" | "b" | "c")),
                    "{info:?}"
                );
            }
        }
    }
    assert!(answered >= 1, "somebody computed");
    // Once those are done the keys are free again: each definition gets its own answer.
    cluster.wait_until_idle();
    for i in 0..6 {
        assert_eq!(
            cluster.client().get(&abc(i, 0.0), "c").unwrap(),
            Value::Int(10 * i + 1)
        );
    }
}

#[test]
fn a_kept_key_redefined_on_the_command_line_is_refused_until_released() {
    let cluster = Cluster::start(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1.json");
    let v2 = dir.path().join("v2.json");
    std::fs::write(&v1, r#"{"x": {"fn": "add", "args": [1, 2]}}"#).unwrap();
    std::fs::write(
        &v2,
        r#"{"x": {"fn": "add", "args": [10, 20]}, "y": {"fn": "inc", "args": [{"ref": "x"}]}}"#,
    )
    .unwrap();
    // `zask COMMAND --scheduler ADDRESS ARGS...`
    let zask = |args: &[&str]| {
        let mut all = vec![args[0], "--scheduler", cluster.clients_address()];
        all.extend_from_slice(&args[1..]);
        run_command(zask_command(&all), None, DEADLINE)
    };
    let out = zask(&["get", "--keep-results", v1.to_str().unwrap(), "x"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "3");
    // v2 defines x otherwise: not v1's x (which would give 4), but an error saying what to do.
    let out = zask(&["get", v2.to_str().unwrap(), "y"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("\"x\"") && out.stderr.contains("release"),
        "{out:?}"
    );
    let out = zask(&["release", "x"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("\"released\":[\"x\"]"), "{out:?}");
    let out = zask(&["get", v2.to_str().unwrap(), "y"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "31");
}

#[test]
fn an_abandoned_get_does_not_lend_its_values_to_a_later_graph() {
    let cluster = Cluster::start(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.json");
    let other = dir.path().join("other.json");
    std::fs::write(&slow, r#"{"x": {"fn": "sleep", "args": [2, 1]}}"#).unwrap();
    std::fs::write(
        &other,
        r#"{"x": 2, "y": {"fn": "inc", "args": [{"ref": "x"}]}}"#,
    )
    .unwrap();
    let address = cluster.clients_address().to_string();
    let out = run_command(
        zask_command(&[
            "get",
            "--scheduler",
            &address,
            "--timeout",
            "0.5",
            slow.to_str().unwrap(),
            "x",
        ]),
        None,
        DEADLINE,
    );
    assert!(!out.status.success(), "the get gives up: {out:?}");
    // While the abandoned x runs, the other x is refused; once it is gone, the other graph
    // gets its own x. Never inc(1) = 2.
    let answer = wait_until("the other graph to be computed", DEADLINE, || {
        let out = run_command(
            zask_command(&["get", "--scheduler", &address, other.to_str().unwrap(), "y"]),
            None,
            DEADLINE,
        );
        if out.status.success() {
            return Some(out.stdout.trim().to_string());
        }
        assert!(out.stderr.contains("\"x\""), "{out:?}");
        None
    });
    assert_eq!(answer, "3");
}

/// Client 1 keeps `b` (from a = 2) on a worker with a disk store, and the worker is killed;
/// client 1 releases `b`. Client 2 computes `b` from a = 4 while the old worker restarts on
/// the same store and registers with its old `b`: that copy is refused, client 2 gets 40.
#[test]
fn a_worker_back_with_a_stale_copy_does_not_replace_the_new_value() {
    let scheduler = SchedulerProc::start(&["--heartbeat-timeout", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled:{}", dir.path().join("w1").display());
    let worker_args = ["--store", store.as_str(), "--heartbeat-interval", "0.2"];
    let mut w1 = WorkerProc::start(
        WorkerBin::Stock,
        &scheduler.workers_address,
        1,
        &worker_args,
    );
    let client1 = scheduler.client();
    client1.wait_for_workers(1, DEADLINE).unwrap();
    let mut old = Graph::new();
    old.insert("a", 2);
    old.insert("b", task("mul", (key("a"), 10)));
    assert_eq!(client1.get_with(&old, "b", true).unwrap(), Value::Int(20));
    w1.proc.kill();
    assert!(client1.release(&["b".to_string()]).unwrap().is_empty());
    wait_until("the killed worker to be removed", DEADLINE, || {
        client1.workers().ok()?.is_empty().then_some(())
    });
    let _w2 = WorkerProc::start(WorkerBin::Stock, &scheduler.workers_address, 1, &[]);
    client1.wait_for_workers(1, DEADLINE).unwrap();
    let client2 = scheduler.client();
    let new = std::thread::spawn(move || {
        let mut g = Graph::new();
        g.insert("a", task("sleep", (2, 4)));
        g.insert("b", task("mul", (key("a"), 10)));
        client2.get(&g, "b")
    });
    wait_until("client 2's computation to start", DEADLINE, || {
        (client1.status().ok()?.graphs == 1).then_some(())
    });
    let _w1_again = WorkerProc::start(
        WorkerBin::Stock,
        &scheduler.workers_address,
        1,
        &worker_args,
    );
    assert_eq!(new.join().unwrap().unwrap(), Value::Int(40));
}

/// A registered worker that was never given `x` reports it done with 777, reports it failed,
/// claims to have fetched it, and answers gathers it was not asked: none of it is believed.
#[test]
fn only_the_worker_given_a_task_is_believed() {
    let cluster = Cluster::start(1, 1);
    let ctx = zmq::Context::new();
    // It offers no function, so it is never given a task.
    let fake = FakeWorker::register(&ctx, cluster.workers_address(), "liar", 1, &[], Vec::new());
    let send = |msg: &FromWorker| fake.send(msg);
    let client = cluster.client().clone();
    client.wait_for_workers(2, DEADLINE).unwrap();
    let answer = std::thread::spawn(move || {
        let mut g = Graph::new();
        g.insert("x", task("sleep", (1.5, 5)));
        g.insert("y", task("inc", (key("x"),)));
        client.get(&g, vec!["x", "y"])
    });
    wait_until("the computation to start", DEADLINE, || {
        (cluster.client().status().ok()?.graphs == 1).then_some(())
    });
    let x777 = zask_core::protocol::Data {
        value: Value::Int(777),
        frame: None,
        raw: false,
        extra_frames: 0,
    };
    send(&FromWorker::Report(ReportBody {
        done: vec![TaskDone {
            key: "x".into(),
            hash: DefHash::of_node(&task("sleep", (1.5, 5))).0,
            nbytes: 8,
            duration_us: 1,
            data: Some(x777),
        }],
        failed: vec![TaskFailed {
            key: "y".into(),
            hash: None,
            kind: "task_failed".into(),
            function: Some("inc".into()),
            message: "made up".into(),
            missing: None,
        }],
        acquired: vec![KeyInfo {
            key: "x".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::Int(777)),
        }],
    }));
    for request in 1..50 {
        send(&FromWorker::Data(DataBody {
            request,
            items: vec![KeyData::inline("x".into(), Value::Int(777))],
            missing: Vec::new(),
        }));
    }
    assert_eq!(
        answer.join().unwrap().unwrap(),
        Value::List(vec![Value::Int(5), Value::Int(6)])
    );
}

/// Scattered data and kept results survive a scheduler restart (a crash, then a graceful
/// one): the workers register with what they hold, the new scheduler adopts it, and a client
/// that gathers or resubmits finds it.
#[test]
fn scattered_and_kept_values_survive_a_scheduler_restart() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let client = cluster.client().clone();
    let keys = client
        .scatter(vec![Value::from("precious"), Value::Int(7)])
        .unwrap();
    let mut g = Graph::new();
    g.insert("kept", task("add", (key(keys[1].as_str()), 1)));
    assert_eq!(client.get_with(&g, "kept", true).unwrap(), Value::Int(8));
    let (pw, pc) = (
        port_of(cluster.workers_address()),
        port_of(cluster.clients_address()),
    );
    for graceful in [false, true] {
        if graceful {
            cluster.scheduler.proc.terminate();
            cluster
                .scheduler
                .proc
                .wait_exit(DEADLINE)
                .expect("it stops");
        } else {
            cluster.scheduler.proc.kill();
        }
        cluster.scheduler = SchedulerProc::start_on(pw, pc, &["--heartbeat-timeout", "1"]);
        let fresh = cluster.new_client();
        wait_until(
            "both workers to register with what they hold",
            DEADLINE,
            || {
                let w = fresh.workers().ok()?;
                (w.len() == 2 && w.iter().map(|w| w.keys).sum::<u64>() == 3).then_some(())
            },
        );
        // A gather finds the scattered values (and keeps them, as scattering did).
        assert_eq!(
            fresh.gather(keys.clone()).unwrap(),
            Value::List(vec![Value::from("precious"), Value::Int(7)])
        );
        // The kept result is reused by a resubmission of its graph (same definition)...
        assert_eq!(fresh.get_with(&g, "kept", true).unwrap(), Value::Int(8));
        // ... and a different definition of it is refused, not answered with it.
        let mut other = Graph::new();
        other.insert("kept", task("add", (key(keys[1].as_str()), 2)));
        let e = scheduler_error(fresh.get(&other, "kept"));
        assert_eq!(e.kind, "key_conflict");
    }
}

/// The only holder of a kept key (on disk) dies, and the only other worker cannot run its
/// function: the key waits for a worker that can (no failure for good), and when its holder
/// comes back with its copy the key is held again and served.
#[test]
fn a_kept_key_whose_holder_dies_waits_and_revives_when_it_returns() {
    let scheduler = SchedulerProc::start(&["--heartbeat-timeout", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled:{}", dir.path().join("custom").display());
    let custom_args = ["--store", store.as_str(), "--heartbeat-interval", "0.2"];
    let mut custom = WorkerProc::start(
        WorkerBin::Custom,
        &scheduler.workers_address,
        1,
        &custom_args,
    );
    let _stock = WorkerProc::start(WorkerBin::Stock, &scheduler.workers_address, 1, &[]);
    let client = scheduler.client();
    client.wait_for_workers(2, DEADLINE).unwrap();
    let mut g = Graph::new();
    g.insert("words", task("word_count", ("one two three",)));
    assert_eq!(client.get_with(&g, "words", true).unwrap(), Value::Int(3));
    custom.proc.kill();
    wait_until("the custom worker to be removed", DEADLINE, || {
        (client.workers().ok()?.len() == 1).then_some(())
    });
    // A get of the key waits (nobody can compute it right now) instead of failing.
    let waiting = {
        let client = client.clone();
        let g = g.clone();
        std::thread::spawn(move || client.get(&g, "words"))
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !waiting.is_finished(),
        "it waits for a worker that can run it"
    );
    let _custom_again = WorkerProc::start(
        WorkerBin::Custom,
        &scheduler.workers_address,
        1,
        &custom_args,
    );
    assert_eq!(waiting.join().unwrap().unwrap(), Value::Int(3));
    // Later gets, and gathers, keep working.
    assert_eq!(
        client.gather(vec!["words"]).unwrap(),
        Value::List(vec![Value::Int(3)])
    );
}

/// A collection that could not be read back is refused when it is stored; one bad entry in
/// storage (written by something else) never breaks the list, and can be deleted.
#[test]
fn collections_that_could_not_be_read_back_are_refused_and_never_break_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A stored entry that cannot be read, as an older or a broken writer could leave it.
    {
        let db = sled::open(state.join("collections")).unwrap();
        db.insert("broken", &b"\xc1 not msgpack"[..]).unwrap();
        db.flush().unwrap();
    }
    let state_arg = state.display().to_string();
    let cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--state-dir", &state_arg])
        .start();
    let client = cluster.client();
    let nested = |levels: usize| {
        let mut deep = Value::Int(1);
        for _ in 0..levels {
            deep = Value::List(vec![deep]);
        }
        let mut graph = Graph::new();
        graph.insert("deep", zask::lit(deep));
        Collection::graph(graph, "deep")
    };
    // Deeper than values may nest (but readable): refused naming the key.
    let err = client.set_collection("too-deep", &nested(600)).unwrap_err();
    let info = err.info().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(info.kind, "invalid_graph", "{info:?}");
    assert!(
        info.message.contains("\"deep\"") && info.message.contains("nests"),
        "{info:?}"
    );
    // Deeper than a message may nest (the case that was stored, then broke every listing):
    // refused too, and answered (it used to be answered under no request id: a hang).
    let err = client
        .set_collection("too-deep", &nested(1_020))
        .unwrap_err();
    let info = err.info().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(info.kind, "bad_request", "{info:?}");
    assert!(info.message.contains("nest"), "{info:?}");
    let mut fine = Graph::new();
    fine.insert("x", 1);
    client
        .set_collection("fine", &Collection::graph(fine, "x"))
        .unwrap();
    let listed = client.list_collections().unwrap();
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|c| (c.name.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(names, vec![("broken", "unreadable"), ("fine", "graph")]);
    assert_eq!(client.compute_collection("fine").unwrap(), Value::Int(1));
    assert_eq!(
        client.get_collection("broken").unwrap_err().kind(),
        Some("storage")
    );
    client.delete_collection("broken").unwrap();
    assert_eq!(client.list_collections().unwrap().len(), 1);
}
