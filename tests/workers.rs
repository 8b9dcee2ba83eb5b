//! Workers joining, leaving, dying, and outliving schedulers: real processes, real signals.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{
    free_port, port_of, wait_until, Cluster, SchedulerProc, WorkerBin, WorkerProc, DEADLINE,
};
use zask::{key, task, Graph, Value};

fn worker_count(client: &zask::Client) -> Option<usize> {
    client.workers().ok().map(|w| w.len())
}

#[test]
fn workers_are_listed_with_their_pids() {
    let cluster = Cluster::start(2, 3);
    let listed = cluster.list_workers();
    assert_eq!(listed.len(), 2);
    let pids: HashSet<u32> = listed.iter().map(|w| w.pid).collect();
    let spawned: HashSet<u32> = cluster.workers.iter().map(|w| w.pid()).collect();
    assert_eq!(pids, spawned);
    let addresses: HashSet<&str> = listed.iter().map(|w| w.address.as_str()).collect();
    let printed: HashSet<&str> = cluster.workers.iter().map(|w| w.address.as_str()).collect();
    assert_eq!(addresses, printed);
    for w in &listed {
        assert_eq!(w.nthreads, 3, "{w:?}");
        assert!(w.address.starts_with("tcp://127.0.0.1:"), "{w:?}");
        assert!(w.functions.iter().any(|f| f == "inc"), "{w:?}");
        let mut sorted = w.functions.clone();
        sorted.sort();
        assert_eq!(sorted, w.functions, "functions are sorted");
        assert!(!w.worker_id.is_empty());
        assert_eq!(w.keys, 0);
        assert_eq!(w.processing, 0);
    }
    let ids: HashSet<&str> = listed.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "worker ids are unique");
    let status = cluster.client().status().unwrap();
    assert_eq!(status.workers, 2);
    assert_eq!(status.scheduler_id, cluster.client().scheduler_id());
}

#[test]
fn two_schedulers_get_distinct_ports() {
    let a = SchedulerProc::start(&[]);
    let b = SchedulerProc::start(&[]);
    let ports: HashSet<u16> = [
        &a.workers_address,
        &a.clients_address,
        &b.workers_address,
        &b.clients_address,
    ]
    .iter()
    .map(|addr| port_of(addr))
    .collect();
    assert_eq!(ports.len(), 4, "{ports:?}");
    // Both answer, as different schedulers.
    let (ca, cb) = (a.client(), b.client());
    assert_ne!(ca.scheduler_id(), cb.scheduler_id());
    assert_eq!(ca.status().unwrap().workers, 0);
    assert_eq!(cb.status().unwrap().workers, 0);
}

#[test]
fn a_killed_worker_is_pruned_by_the_scheduler() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let survivor = cluster.workers[1].pid();
    let dead = cluster.kill_worker(0);
    let client = cluster.client();
    // Only the survivor stays listed.
    let listed = wait_until("the dead worker to be pruned", DEADLINE, || {
        let listed = client.workers().ok()?;
        (listed.len() == 1 && listed[0].pid == survivor).then_some(listed)
    });
    assert_ne!(listed[0].address, dead.address);
    assert_eq!(client.status().unwrap().workers, 1);
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn a_killed_worker_holding_results_is_recomputed_elsewhere() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let client = cluster.client().clone();
    let mut g = Graph::new();
    g.insert("base", task("add", (20, 1)));
    assert_eq!(client.get_with(&g, "base", true).unwrap(), Value::Int(21));
    let holder = cluster
        .list_workers()
        .into_iter()
        .find(|w| w.keys > 0)
        .expect("a worker holds base");
    let i = cluster
        .workers
        .iter()
        .position(|w| w.address == holder.address)
        .expect("the holder is ours");
    cluster.kill_worker(i);
    wait_until("the dead worker to be pruned", DEADLINE, || {
        (worker_count(&client)? == 1).then_some(())
    });
    // base is recomputed from its lineage on the survivor.
    let mut g2 = Graph::new();
    g2.insert("twice", task("mul", (key("base"), 2)));
    assert_eq!(client.get(&g2, "twice").unwrap(), Value::Int(42));
}

#[test]
fn a_worker_closed_gracefully_leaves_promptly() {
    // A long heartbeat timeout: only the worker's goodbye can remove it quickly.
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "600"])
        .start();
    let client = cluster.client().clone();
    cluster.workers[0].proc.terminate();
    let status = cluster.workers[0]
        .proc
        .wait_exit(DEADLINE)
        .expect("the worker exits on SIGTERM");
    assert!(status.success(), "the worker exited with {status:?}");
    wait_until("the closed worker to be removed", DEADLINE, || {
        (worker_count(&client)? == 1).then_some(())
    });
    // Closing the other one too empties the list.
    cluster.workers[1].proc.terminate();
    cluster.workers[1].proc.wait_exit(DEADLINE).expect("exit");
    wait_until("the worker list to be empty", DEADLINE, || {
        (worker_count(&client)? == 0).then_some(())
    });
    // A new worker brings the cluster back.
    cluster.add_worker(WorkerBin::Stock);
    cluster.assert_serving();
}

#[test]
fn a_scheduler_closed_gracefully_exits() {
    let mut cluster = Cluster::start(1, 1);
    cluster.scheduler.proc.terminate();
    let status = cluster
        .scheduler
        .proc
        .wait_exit(DEADLINE)
        .expect("the scheduler exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    // The worker survives, waiting for a scheduler.
    assert!(cluster.workers[0].proc.is_running());
}

#[test]
fn a_worker_started_before_the_scheduler_registers_once_it_is_up() {
    let port = free_port();
    let worker = WorkerProc::start(
        WorkerBin::Stock,
        &format!("tcp://127.0.0.1:{port}"),
        1,
        &["--heartbeat-interval", "0.2"],
    );
    let scheduler = SchedulerProc::start_on(port, 0, &[]);
    assert_eq!(port_of(&scheduler.workers_address), port);
    let client = scheduler.client();
    client.wait_for_workers(1, DEADLINE).unwrap();
    let listed = client.workers().unwrap();
    assert_eq!(listed[0].pid, worker.pid());
    assert_eq!(listed[0].address, worker.address);
    common::assert_serving(&client);
}

#[test]
fn workers_reregister_with_a_restarted_scheduler() {
    let mut cluster = Cluster::builder(2, 1)
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let old_client = cluster.client().clone();
    let old_id = old_client.scheduler_id().to_string();
    let pw = port_of(cluster.workers_address());
    let pc = port_of(cluster.clients_address());
    cluster.scheduler.proc.kill();

    let restarted = SchedulerProc::start_on(pw, pc, &[]);
    let client = restarted.client();
    assert_ne!(client.scheduler_id(), old_id);
    wait_until("the workers to register again", DEADLINE, || {
        (worker_count(&client)? == 2).then_some(())
    });
    let pids: HashSet<u32> = client.workers().unwrap().iter().map(|w| w.pid).collect();
    let spawned: HashSet<u32> = cluster.workers.iter().map(|w| w.pid()).collect();
    assert_eq!(pids, spawned);
    let mut g = Graph::new();
    g.insert("a", task("add", (1, 2)));
    g.insert("b", task("inc", (key("a"),)));
    assert_eq!(client.get(&g, "b").unwrap(), Value::Int(4));
    common::assert_serving(&client);

    // The old client's connection reaches the new scheduler: a new call works, or fails
    // saying the scheduler restarted; it never hangs.
    match old_client.get(&g, "b") {
        Ok(v) => assert_eq!(v, Value::Int(4)),
        Err(e) => assert!(
            matches!(e, zask_client::Error::SchedulerRestarted),
            "unexpected error from the old client: {e:?}"
        ),
    }
    // Keep the restarted scheduler alive until the end of the test.
    drop(client);
    drop(restarted);
}

#[test]
fn heartbeats_keep_last_seen_fresh() {
    let cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "5"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let client = cluster.client();
    // Sample for a couple of seconds: both workers stay listed, always seen recently.
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let listed = client.workers().unwrap();
        assert_eq!(listed.len(), 2);
        for w in &listed {
            assert!(w.last_seen_ms < 5000, "{w:?}");
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples > 5);
}

#[test]
fn a_worker_with_a_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled:{}", dir.path().join("store").display());
    let cluster = Cluster::builder(2, 1)
        .worker_args(&["--store", &store])
        .workers(&[WorkerBin::Stock])
        .start();
    let mut g = Graph::new();
    g.insert("a", task("range", (5,)));
    g.insert("b", task("sum", (key("a"),)));
    assert_eq!(cluster.client().get(&g, "b").unwrap(), Value::Int(10));
    cluster.wait_until_idle();
}

#[test]
fn a_worker_dropped_while_frozen_registers_again_when_it_resumes() {
    let mut cluster = Cluster::builder(2, 1)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
        .start();
    let client = cluster.client().clone();
    let frozen_pid = cluster.workers[0].pid();
    cluster.workers[0].proc.signal("STOP");
    wait_until("the frozen worker to be dropped", DEADLINE, || {
        let listed = client.workers().ok()?;
        (listed.len() == 1 && listed[0].pid != frozen_pid).then_some(())
    });
    cluster.workers[0].proc.signal("CONT");
    wait_until("the resumed worker to register again", DEADLINE, || {
        let listed = client.workers().ok()?;
        (listed.len() == 2 && listed.iter().any(|w| w.pid == frozen_pid)).then_some(())
    });
    // Both compute: enough independent tasks to use both workers.
    let mut g = Graph::new();
    let keys: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        g.insert(k.as_str(), task("sleep", (0.01, i as i64)));
    }
    let got = client
        .get(&g, keys.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(got, Value::List((0..20).map(Value::Int).collect()));
    cluster.wait_until_idle();
}
