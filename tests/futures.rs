//! Futures end to end: a real scheduler and workers, each its own process, and clients that
//! submit tasks one at a time, chain them, take results as they finish, cancel them, and go
//! away.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_until, Cluster, Proc, WorkerBin, DEADLINE};
use zask::client_error::Error;
use zask::{as_completed, key, task, wait, FutureStatus, Graph, Value, WaitMode};

/// A fresh path in the temporary directory (the custom worker's `touch` and `flaky` write
/// there).
fn temp_path(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("zask-futures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path.to_string_lossy().into_owned()
}

#[test]
fn ten_thousand_submits_come_back_right_in_completion_order() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let n = 10_000;
    let mut expected = HashMap::new();
    let mut futures = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let f = client.submit("inc", (i,)).unwrap();
        expected.insert(f.key().to_string(), i + 1);
        futures.push(f);
    }
    let mut seen = 0;
    for (f, value) in as_completed(futures).with_results() {
        assert!(f.done(), "{f:?} is yielded only once done");
        assert_eq!(value.unwrap(), Value::Int(expected[f.key()]), "{}", f.key());
        seen += 1;
    }
    assert_eq!(seen, n);
    cluster.wait_until_idle();
}

#[test]
fn a_chain_of_a_thousand_futures() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let mut f = client.submit("inc", (0,)).unwrap();
    for _ in 1..1000 {
        // The previous future is dropped as soon as the next one names it: the scheduler
        // keeps it for the task that depends on it, and releases it once that one ran.
        f = client.submit("inc", (&f,)).unwrap();
    }
    assert_eq!(f.result().unwrap(), Value::Int(1000));
    drop(f);
    cluster.wait_until_idle();
}

#[test]
fn same_call_same_key_and_map_compute_gather() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let a = client.submit("add", (1, 2)).unwrap();
    let b = client.submit("add", (1, 2)).unwrap();
    assert_eq!(a.key(), b.key(), "the same call names one result");
    assert!(a.key().starts_with("add-"), "{}", a.key());
    let c = client.task("add", (1, 2)).pure(false).submit().unwrap();
    assert_ne!(a.key(), c.key(), "pure(false) gives a fresh key");
    let named = client
        .task("add", (&a, 10))
        .key("thirteen")
        .submit()
        .unwrap();
    assert_eq!(named.key(), "thirteen");
    let kw = client
        .task("range", (5,))
        .kwarg("unused", 0)
        .key("kw")
        .submit()
        .unwrap();
    assert!(kw.result().is_err(), "range takes no keyword arguments");
    assert_eq!(named.result().unwrap(), Value::Int(13));
    let squares = client.map("inc", (0..10).map(Value::from)).unwrap();
    let values = client.gather_futures(&squares).unwrap();
    assert_eq!(values, (1..=10).map(Value::from).collect::<Vec<_>>());
    // Futures are keys too: gather gives the values in the keys' shape.
    assert_eq!(
        client.gather(&squares[..3]).unwrap(),
        Value::List((1..=3).map(Value::from).collect())
    );
    let mut g = Graph::new();
    g.insert("gx", 20);
    g.insert("gy", task("add", (key("gx"), 22)));
    g.insert("gz", task("inc", (key("gy"),)));
    let fs = client.compute(&g, &["gy", "gz"]).unwrap();
    assert_eq!(
        client.gather_futures(&fs).unwrap(),
        vec![Value::Int(42), Value::Int(43)]
    );
    // A later submission depends on a computed key, resolved on the scheduler.
    let later = client.submit("add", (&fs[1], &fs[0])).unwrap();
    assert_eq!(later.result().unwrap(), Value::Int(85));
    // Another client making the same call shares the key and its result.
    let other = cluster.new_client();
    let shared = other.submit("add", (1, 2)).unwrap();
    assert_eq!(shared.key(), a.key());
    assert_eq!(shared.result().unwrap(), Value::Int(3));
    drop((a, b, c, named, kw, squares, fs, later, shared));
    cluster.wait_until_idle();
}

#[test]
fn failures_reach_the_future_and_its_dependents() {
    let cluster = Cluster::start(1, 1);
    let client = cluster.client();
    let bad = client.submit("fail", ("boom",)).unwrap();
    let after = client.submit("inc", (&bad,)).unwrap();
    let e = bad.result().unwrap_err();
    assert_eq!(e.kind(), Some("task_failed"), "{e}");
    assert!(e.to_string().contains("boom"), "{e}");
    assert_eq!(bad.status(), FutureStatus::Error);
    let e = after.result().unwrap_err();
    assert_eq!(e.kind(), Some("dependency_failed"), "{e}");
    assert_eq!(
        e.info().and_then(|i| i.dependency.as_deref()),
        Some(bad.key())
    );
    // A submission that cannot be valid fails its future, not the client.
    let unknown = client.submit("no_such_function", (1,)).unwrap();
    let e = unknown.result().unwrap_err();
    assert_eq!(e.kind(), Some("unknown_function"), "{e}");
    drop((bad, after, unknown));
    cluster.wait_until_idle();
}

#[test]
fn retries_run_a_failing_task_again() {
    let cluster = Cluster::builder(1, 1).worker_bin(WorkerBin::Custom).start();
    let client = cluster.client();
    let path = temp_path("flaky-2");
    let f = client
        .task("flaky", (path.as_str(), 2))
        .retries(2)
        .submit()
        .unwrap();
    assert_eq!(
        f.result().unwrap(),
        Value::Int(3),
        "two failures, then a success"
    );
    let path = temp_path("flaky-1");
    let g = client
        .task("flaky", (path.as_str(), 2))
        .retries(1)
        .submit()
        .unwrap();
    let e = g.result().unwrap_err();
    assert_eq!(e.kind(), Some("task_failed"), "{e}");
    assert!(e.to_string().contains("call 2 fails"), "{e}");
    drop((f, g));
    cluster.wait_until_idle();
}

#[test]
fn higher_priority_runs_before_earlier_lower_ones() {
    let cluster = Cluster::start(1, 1);
    let client = cluster.client();
    // The one thread is busy; the worker holds one more task queued (saturation 2).
    let blocker = client.task("sleep", (0.5, "blocker")).submit().unwrap();
    let low: Vec<_> = (0..6)
        .map(|i| {
            client
                .task("sleep", (0.05, format!("low{i}")))
                .submit()
                .unwrap()
        })
        .collect();
    let high = client
        .task("sleep", (0.05, "high"))
        .priority(10)
        .submit()
        .unwrap();
    let mut all = vec![blocker, high];
    all.extend(low);
    let order: Vec<String> = as_completed(all)
        .with_results()
        .map(|(_, v)| v.unwrap().as_str().unwrap_or_default().to_string())
        .collect();
    let position = |name: &str| order.iter().position(|v| v == name).unwrap();
    // The blocker and low0 were on the worker before `high` came; every other low waits.
    for i in 1..6 {
        assert!(
            position("high") < position(&format!("low{i}")),
            "high ran after low{i}: {order:?}"
        );
    }
    cluster.wait_until_idle();
}

#[test]
fn cancelling_a_running_task_frees_its_thread() {
    let cluster = Cluster::builder(1, 1).worker_bin(WorkerBin::Custom).start();
    let client = cluster.client();
    let long = client.task("sleep", (60,)).pure(false).submit().unwrap();
    let next = client.submit("inc", (41,)).unwrap();
    // Until `long` runs (the next one is queued behind it on the worker).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(next.status(), FutureStatus::Pending);
    let start = Instant::now();
    long.cancel();
    assert_eq!(next.result().unwrap(), Value::Int(42));
    let took = start.elapsed();
    eprintln!("after the cancel, the queued task finished in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the queued task waited {took:?} (the cancelled one sleeps 60 s)"
    );
    assert!(matches!(long.result(), Err(Error::Cancelled(_))));
    // Cancelling a queued task: it never runs.
    let blocker = client.task("sleep", (1,)).pure(false).submit().unwrap();
    let path = temp_path("cancelled-touch");
    let queued = client.submit("touch", (path.as_str(),)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    queued.cancel();
    blocker.result().unwrap();
    let after = client.submit("inc", (1,)).unwrap();
    assert_eq!(after.result().unwrap(), Value::Int(2));
    assert!(
        !std::path::Path::new(&path).exists(),
        "the cancelled task ran"
    );
    drop((long, next, blocker, queued, after));
    cluster.wait_until_idle();
}

#[test]
fn dropped_futures_are_released() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let fs = client.map("inc", (0..100).map(Value::from)).unwrap();
    let waited = wait(fs, DEADLINE, WaitMode::AllCompleted);
    assert_eq!(waited.done.len(), 100);
    let held: u64 = cluster.list_workers().iter().map(|w| w.keys).sum();
    assert_eq!(held, 100, "the values stay while their futures live");
    drop(waited);
    cluster.wait_until_idle();
}

#[test]
fn wait_first_completed_and_timeouts() {
    let cluster = Cluster::start(1, 2);
    let client = cluster.client();
    let slow = client.task("sleep", (30,)).pure(false).submit().unwrap();
    let quick = client.submit("inc", (5,)).unwrap();
    let waited = wait(
        vec![slow.clone(), quick.clone()],
        DEADLINE,
        WaitMode::FirstCompleted,
    );
    assert_eq!(waited.done.len(), 1);
    assert_eq!(waited.done[0].key(), quick.key());
    let e = slow.result_timeout(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(!slow.done(), "a timeout leaves the future as it was");
    slow.cancel();
    drop((slow, quick, waited));
    cluster.wait_until_idle();
}

#[test]
fn await_a_future_without_a_runtime() {
    let cluster = Cluster::start(1, 1);
    let client = cluster.client();
    let f = client.submit("add", (40, 2)).unwrap();
    let g = client.submit("inc", (&f,)).unwrap();
    let (a, b) = pollster::block_on(async { (f.clone().await, g.clone().await) });
    assert_eq!(a.unwrap(), Value::Int(42));
    assert_eq!(b.unwrap(), Value::Int(43));
    let bad = client.submit("fail", ("no",)).unwrap();
    assert!(pollster::block_on(bad.clone()).is_err());
    drop((f, g, bad));
    cluster.wait_until_idle();
}

#[test]
fn a_future_lost_with_its_worker_is_recomputed() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .start();
    let client = cluster.client().clone();
    let f = client.submit("add", (40, 2)).unwrap();
    assert_eq!(f.result().unwrap(), Value::Int(42));
    let holder = cluster
        .list_workers()
        .iter()
        .position(|w| w.keys > 0)
        .expect("a worker holds the result");
    let address = cluster.workers[holder].address.clone();
    let index = cluster
        .workers
        .iter()
        .position(|w| w.address == address)
        .unwrap();
    cluster.kill_worker(index);
    wait_until("the scheduler to notice", DEADLINE, || {
        (cluster.list_workers().len() == 1).then_some(())
    });
    assert_eq!(f.result().unwrap(), Value::Int(42), "computed again");
    drop(f);
    cluster.wait_until_idle();
}

/// Run by `a_killed_client_leaves_nothing_behind` as its own process: connects to the
/// scheduler named in `ZASK_TEST_SCHEDULER`, submits 1,000 futures (some running, most
/// queued, some done), says so, and waits to be killed.
#[test]
#[ignore]
fn helper_client_holding_futures() {
    let Ok(address) = std::env::var("ZASK_TEST_SCHEDULER") else {
        return;
    };
    let client = common::connect(&address);
    let mut futures = Vec::new();
    for i in 0..1000 {
        let f = if i % 10 == 0 {
            client.submit("inc", (i,)).unwrap()
        } else {
            client.task("sleep", (5, i)).submit().unwrap()
        };
        futures.push(f);
    }
    futures[0].result().unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_client_leaves_nothing_behind() {
    let cluster = Cluster::builder(2, 2)
        .scheduler_args(&["--client-timeout", "2"])
        .start();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "helper_client_holding_futures",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("ZASK_TEST_SCHEDULER", cluster.clients_address());
    let mut helper = Proc::spawn("client", command);
    let deadline = Instant::now() + DEADLINE;
    while helper.read_line(DEADLINE) != "READY" {
        assert!(
            Instant::now() < deadline,
            "the helper client never got ready"
        );
    }
    let status = cluster.client().status().unwrap();
    assert!(status.tasks >= 1000, "{status:?}");
    helper.kill();
    // The scheduler hears nothing from it for --client-timeout, then drops its futures and
    // stops their tasks on the workers.
    cluster.wait_until_idle();
    let busy: u64 = cluster.list_workers().iter().map(|w| w.processing).sum();
    assert_eq!(busy, 0);
    cluster.assert_serving();
}

#[test]
fn futures_fail_clearly_when_the_scheduler_restarts() {
    let pw = common::free_port();
    let pc = common::free_port();
    let mut scheduler = common::SchedulerProc::start_on(pw, pc, &[]);
    let worker = common::WorkerProc::start(WorkerBin::Stock, &scheduler.workers_address, 1, &[]);
    let client = scheduler.client();
    client.wait_for_workers(1, DEADLINE).unwrap();
    let slow = client.task("sleep", (30,)).pure(false).submit().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    scheduler.proc.kill();
    let _restarted = common::SchedulerProc::start_on(pw, pc, &[]);
    let e = slow.result().unwrap_err();
    assert!(
        matches!(
            e,
            Error::SchedulerRestarted | Error::SchedulerUnreachable(_)
        ),
        "{e}"
    );
    // Submitting again works on the new scheduler.
    client.wait_for_workers(1, DEADLINE).unwrap();
    let again = client.submit("inc", (1,)).unwrap();
    assert_eq!(again.result().unwrap(), Value::Int(2));
    drop(worker);
}

#[test]
fn workers_pins_tasks_to_the_workers_named() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let target = cluster.workers[1].address.clone();
    let futures: Vec<_> = (0..20)
        .map(|i| {
            client
                .task("inc", (i,))
                .workers([target.as_str()])
                .submit()
                .unwrap()
        })
        .collect();
    let values = client.gather_futures(&futures).unwrap();
    assert_eq!(values, (1..=20).map(Value::from).collect::<Vec<_>>());
    for w in cluster.list_workers() {
        let expected = if w.address == target { 20 } else { 0 };
        assert_eq!(w.keys, expected, "{} holds {} keys", w.address, w.keys);
    }
    drop(futures);
    cluster.wait_until_idle();
}

#[test]
fn a_disconnected_client_refuses_new_futures() {
    let cluster = Cluster::start(1, 1);
    let client = cluster.new_client();
    let f = client.submit("inc", (1,)).unwrap();
    assert_eq!(f.result().unwrap(), Value::Int(2));
    client.disconnect();
    assert!(matches!(client.submit("inc", (2,)), Err(Error::Closed)));
    assert!(matches!(
        client.compute(&Graph::new(), &["x"]),
        Err(Error::Closed)
    ));
    drop(f);
    cluster.wait_until_idle();
}

#[test]
fn as_completed_yields_in_the_order_futures_finish() {
    let cluster = Cluster::start(1, 3);
    let client = cluster.client();
    // Submitted slowest first; all three run at once (three threads).
    let fs = vec![
        client.task("sleep", (1.5, "slow")).submit().unwrap(),
        client.task("sleep", (0.1, "fast")).submit().unwrap(),
        client.task("sleep", (0.9, "middle")).submit().unwrap(),
    ];
    let mut ac = as_completed(fs);
    let first = ac.next().unwrap();
    assert_eq!(first.result().unwrap(), Value::from("fast"));
    // More can be added while iterating.
    ac.add(client.task("sleep", (0.2, "added")).submit().unwrap());
    let rest: Vec<Value> = ac.map(|f| f.result().unwrap()).collect();
    assert_eq!(
        rest,
        vec![
            Value::from("added"),
            Value::from("middle"),
            Value::from("slow")
        ]
    );
    drop(first);
    cluster.wait_until_idle();
}
