//! The scheduler's side of the worker protocol, against fake workers: raw DEALER sockets that
//! register with a real `zask-scheduler` and answer (or do not answer) by hand.

mod common;

use std::time::{Duration, Instant};

use common::{
    raw_socket, recv_parts, send_frames, wait_until, FakeWorker, SchedulerProc, DEADLINE,
};
use zask::{key, task, Graph, Value};
use zask_core::frames;
use zask_core::protocol::{
    ComputeBody, ComputeTask, FromClient, FromWorker, GetBody, ReleaseBody, ReportBody, TaskFailed,
    ToClient, ToWorker,
};

fn raw_get(graph: &Graph, keys: &str, request: u64) -> frames::Frames {
    frames::encode(
        &FromClient::Get(GetBody {
            request,
            graph: graph.clone().into(),
            keys: Value::Str(keys.to_string()),
            keep_results: false,
            progress: false,
        }),
        Vec::new(),
    )
    .unwrap()
}

#[test]
fn tasks_reach_a_worker_and_results_reach_the_client() {
    // One task at a time (no dependents queued behind their inputs), to see each message.
    let scheduler = SchedulerProc::start(&["--no-queue-dependents"]);
    let ctx = zmq::Context::new();
    let worker = FakeWorker::register(
        &ctx,
        &scheduler.workers_address,
        "w",
        1,
        &["add", "inc"],
        vec![],
    );
    let client = scheduler.client();
    let done = std::thread::spawn(move || {
        let mut g = Graph::new();
        g.insert("x", task("add", (1, 2)));
        g.insert("y", task("inc", (key("x"),)));
        client.get(&g, "y")
    });
    // x first (y waits for it), its value not wanted by the client.
    let tasks = worker.next_compute();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].key, "x");
    assert!(!tasks[0].send_value);
    assert_eq!(*tasks[0].node, task("add", (1, 2)));
    worker.report_done(&tasks[0], Value::Int(3));
    // Then y, whose input is on this worker (so no who_has), its value wanted.
    let tasks = worker.next_compute();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].key, "y");
    assert!(tasks[0].send_value);
    assert!(
        tasks[0]
            .who_has
            .iter()
            .all(|(_, _, peers)| peers.is_empty()),
        "{tasks:?}"
    );
    // The client gets whatever the worker reports.
    worker.report_done(&tasks[0], Value::Int(4));
    assert_eq!(done.join().unwrap().unwrap(), Value::Int(4));
    // Then the worker is told to release both.
    let mut released = Vec::new();
    wait_until("x and y to be released", DEADLINE, || {
        if let Some(ToWorker::Release(ReleaseBody { keys })) =
            worker.recv(Duration::from_millis(100))
        {
            released.extend(keys);
        }
        released.sort();
        (released == ["x", "y"]).then_some(())
    });
}

#[test]
fn a_failure_reported_by_a_worker_reaches_the_client() {
    let scheduler = SchedulerProc::start(&[]);
    let ctx = zmq::Context::new();
    let worker = FakeWorker::register(&ctx, &scheduler.workers_address, "w", 1, &["inc"], vec![]);
    let client = scheduler.client();
    let done = std::thread::spawn(move || {
        let mut g = Graph::new();
        g.insert("a", task("inc", (1,)));
        g.insert("b", task("inc", (key("a"),)));
        client.get(&g, "b")
    });
    let tasks = worker.next_compute();
    assert_eq!(tasks[0].key, "a");
    worker.send(&FromWorker::Report(ReportBody {
        done: vec![],
        failed: vec![TaskFailed {
            key: "a".into(),
            hash: Some(tasks[0].hash),
            kind: "task_failed".into(),
            function: Some("inc".into()),
            message: "inc: made-up failure".into(),
            missing: None,
        }],
        acquired: vec![],
    }));
    // The client asked for b: its error names b, the input that failed (a), a's function
    // and message.
    let info = common::scheduler_error(done.join().unwrap());
    assert_eq!(info.kind, "dependency_failed", "{info:?}");
    assert_eq!(info.key.as_deref(), Some("b"), "{info:?}");
    assert_eq!(info.dependency.as_deref(), Some("a"), "{info:?}");
    assert_eq!(info.function.as_deref(), Some("inc"), "{info:?}");
    assert!(info.message.contains("made-up failure"), "{info:?}");
}

#[test]
fn a_worker_gets_at_most_nthreads_times_saturation_tasks() {
    // Without the queue budget (which lets short tasks go in batches), saturation alone.
    let scheduler = SchedulerProc::start(&["--saturation", "2", "--queue-budget-ms", "0"]);
    let ctx = zmq::Context::new();
    let worker = FakeWorker::register(&ctx, &scheduler.workers_address, "w", 1, &["inc"], vec![]);
    let client = scheduler.client();
    let done = std::thread::spawn(move || {
        let mut g = Graph::new();
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            g.insert(k.as_str(), task("inc", (i as i64,)));
        }
        client.get(&g, keys.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let mut outstanding: Vec<ComputeTask> = Vec::new();
    let mut finished = 0;
    while finished < 10 {
        if outstanding.is_empty() {
            outstanding.extend(worker.next_compute());
        }
        // Anything more sent right away would show up here.
        for m in worker.drain(Duration::from_millis(100)) {
            if let ToWorker::Compute(ComputeBody { tasks }) = m {
                outstanding.extend(tasks);
            }
        }
        assert!(
            outstanding.len() <= 2,
            "{} tasks outstanding on a 1-thread worker",
            outstanding.len()
        );
        let t = outstanding.remove(0);
        let n: i64 = t.key[1..].parse().unwrap();
        worker.report_done(&t, Value::Int(n + 1));
        finished += 1;
    }
    let expected: Vec<Value> = (1..=10).map(Value::Int).collect();
    assert_eq!(done.join().unwrap().unwrap(), Value::List(expected));
}

#[test]
fn a_silent_worker_is_pruned_and_asked_to_register_when_heard_again() {
    let scheduler = SchedulerProc::start(&["--heartbeat-timeout", "1"]);
    let ctx = zmq::Context::new();
    let worker = FakeWorker::register(&ctx, &scheduler.workers_address, "w", 1, &["inc"], vec![]);
    let client = scheduler.client();
    assert_eq!(client.workers().unwrap().len(), 1);
    // Silence: pruned.
    wait_until("the silent worker to be pruned", DEADLINE, || {
        client.workers().ok()?.is_empty().then_some(())
    });
    // Heard again: asked to register.
    worker.heartbeat();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no please_register");
        if let Some(ToWorker::PleaseRegister) = worker.recv(left) {
            break;
        }
    }
}

/// When a key is released and, in the same scheduler turn, created again by a new computation
/// and assigned to the worker that held it, the scheduler sends that worker `compute` and
/// then `release` for the key. A real worker still holding the key answers the compute at
/// once ("computed here before") and then deletes it, so the scheduler believes the worker
/// holds a key it has deleted, and tasks that need it there fail with missing_dependency.
#[test]
fn a_key_released_and_recreated_in_one_turn_is_not_released_after_its_compute() {
    let scheduler = SchedulerProc::start(&[]);
    let ctx = zmq::Context::new();
    let worker = FakeWorker::register(&ctx, &scheduler.workers_address, "w", 4, &["add"], vec![]);
    let first = raw_socket(&ctx, zmq::DEALER, &scheduler.clients_address);
    let second = raw_socket(&ctx, zmq::DEALER, &scheduler.clients_address);
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    let mut bad_rounds = Vec::new();
    // The race needs the report finishing the first computation and the second computation's
    // request to be handled in the same scheduler turn: try many times.
    for round in 0..200u64 {
        let requests = [2 * round, 2 * round + 1];
        send_frames(&first, None, raw_get(&g, "x", requests[0]));
        let tasks = worker.next_compute();
        assert_eq!(tasks[0].key, "x");
        worker.report_done(&tasks[0], Value::Int(3));
        send_frames(&second, None, raw_get(&g, "x", requests[1]));
        // Serve the worker side until both clients have their results.
        let mut answered = [false, false];
        let deadline = Instant::now() + DEADLINE;
        while answered != [true, true] {
            assert!(Instant::now() < deadline, "round {round}: no results");
            if let Some(ToWorker::Compute(ComputeBody { tasks })) =
                worker.recv(Duration::from_millis(10))
            {
                assert!(tasks.iter().all(|t| t.key == "x"), "{tasks:?}");
                // What the scheduler sent along with this compute, before we answer it (both
                // leave in one flush, so they arrive together).
                let with_it = worker.drain(Duration::from_millis(20));
                if with_it.iter().any(
                    |m| matches!(m, ToWorker::Release(ReleaseBody { keys }) if keys.iter().any(|k| k == "x")),
                ) {
                    bad_rounds.push(round);
                }
                worker.report_done(&tasks[0], Value::Int(3));
            }
            for (i, socket) in [&first, &second].into_iter().enumerate() {
                if let Some(parts) = recv_parts(socket, Duration::ZERO) {
                    match frames::decode::<ToClient>(&parts[0]).unwrap() {
                        ToClient::Result { request, .. } => assert_eq!(request, requests[i]),
                        other => panic!("expected a result, got {other:?}"),
                    }
                    answered[i] = true;
                }
            }
        }
        if bad_rounds.len() >= 3 {
            break;
        }
    }
    assert!(
        bad_rounds.is_empty(),
        "`compute x` was followed by `release x` in rounds {bad_rounds:?}"
    );
}
