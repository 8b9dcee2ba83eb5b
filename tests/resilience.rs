//! Resilience with real processes: workers killed (SIGKILL) or aborting in the middle of a
//! computation, a scheduler killed and restarted under a waiting client, a client killed while
//! its computation runs, workers retiring gracefully (SIGTERM, `Client::retire_worker`,
//! `zask retire`), and workers joining or coming back mid-computation.
//!
//! The scheduler runs with `--heartbeat-timeout 1` and workers beat every 0.2 s, so deaths
//! are noticed quickly. Every wait has a deadline; nothing asserts how long anything took.

mod common;

use std::collections::HashSet;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    free_port, port_of, run_command, wait_until, zask_command, Cluster, ClusterBuilder, Proc,
    SchedulerProc, WorkerBin, WorkerProc, DEADLINE,
};
use zask::{key, list, task, Client, Collection, Graph, Node, Value};

/// A cluster of `n` stock workers that notices deaths within about a second.
fn quick(n: usize, nthreads: u32) -> ClusterBuilder {
    Cluster::builder(n, nthreads)
        .scheduler_args(&["--heartbeat-timeout", "1"])
        .worker_args(&["--heartbeat-interval", "0.2"])
}

/// Runs `client.get(graph, keys)` on a thread of its own.
fn get_in_background(
    client: &Client,
    graph: Graph,
    keys: Vec<String>,
) -> JoinHandle<Result<Value, zask::client_error::Error>> {
    let client = client.clone();
    std::thread::spawn(move || {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        if keys.len() == 1 {
            client.get(&graph, keys[0])
        } else {
            client.get(&graph, keys)
        }
    })
}

/// Waits (with a deadline) for a background `get` and returns its value.
fn join_get(handle: JoinHandle<Result<Value, zask::client_error::Error>>) -> Value {
    let deadline = std::time::Instant::now() + common::GET_TIMEOUT;
    while !handle.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the computation did not finish within {:?}",
            common::GET_TIMEOUT
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    handle
        .join()
        .expect("the get thread panicked")
        .unwrap_or_else(|e| panic!("the computation failed: {e}"))
}

/// The index in `cluster.workers` of the worker at `address`.
fn index_of(cluster: &Cluster, address: &str) -> usize {
    cluster
        .workers
        .iter()
        .position(|w| w.address == address)
        .unwrap_or_else(|| panic!("{address} is not one of the cluster's workers"))
}

/// Kills (SIGKILL) the worker that the scheduler lists as satisfying `pick`, once one does.
fn kill_worker_when(
    cluster: &mut Cluster,
    what: &str,
    pick: impl Fn(&[zask::protocol::WorkerSummary]) -> Option<String>,
) -> WorkerProc {
    let client = cluster.new_client();
    let address = wait_until(what, DEADLINE, || pick(&client.workers().ok()?));
    let i = index_of(cluster, &address);
    cluster.kill_worker(i)
}

/// Waits until the scheduler lists exactly `n` workers.
fn wait_for_worker_count(client: &Client, n: usize) {
    wait_until(&format!("{n} workers to be listed"), DEADLINE, || {
        (client.workers().ok()?.len() == n).then_some(())
    });
}

// ----- workers dying mid-computation --------------------------------------------------------

#[test]
fn worker_killed_in_the_middle_of_ten_thousand_tasks() {
    let mut cluster = quick(3, 1).start();
    let n = 10_000i64;
    let mut g = Graph::new();
    let mut groups: Vec<Node> = Vec::new();
    for j in 0..n / 100 {
        let mut refs: Vec<Node> = Vec::new();
        for i in j * 100..(j + 1) * 100 {
            let k = format!("t-{i}");
            // A little work each, so that the kill lands mid-run.
            g.insert(k.as_str(), task("sleep", (0.0005, task("inc", (i,)))));
            refs.push(key(k));
        }
        let s = format!("s-{j}");
        g.insert(s.as_str(), task("sum", (list(refs),)));
        groups.push(key(s));
    }
    g.insert("total", task("sum", (list(groups),)));
    let running = get_in_background(cluster.client(), g, vec!["total".into()]);
    // Kill a worker once it holds results nobody else has. (How many it holds at once
    // depends on the timing: under load a worker may never hold 100.)
    let dead = kill_worker_when(&mut cluster, "a worker to hold 40 keys", |ws| {
        ws.iter().find(|w| w.keys >= 40).map(|w| w.address.clone())
    });
    assert!(
        !running.is_finished(),
        "the computation ended before the kill; make the tasks slower"
    );
    assert_eq!(join_get(running), Value::Int(n * (n + 1) / 2));
    let client = cluster.client();
    wait_for_worker_count(client, 2);
    assert!(client
        .workers()
        .unwrap()
        .iter()
        .all(|w| w.address != dead.address));
    cluster.wait_until_idle();
}

#[test]
fn worker_killed_in_the_middle_of_a_thousand_task_chain() {
    let mut cluster = quick(3, 1).start();
    let n = 1000;
    let mut g = Graph::new();
    g.insert("c-0", task("sleep", (0.002, 0)));
    for i in 1..n {
        g.insert(
            format!("c-{i}"),
            task(
                "sleep",
                (0.002, task("inc", (key(format!("c-{}", i - 1)),))),
            ),
        );
    }
    let last = format!("c-{}", n - 1);
    let running = get_in_background(cluster.client(), g, vec![last]);
    // Let the chain get going, then kill the worker holding its latest link: every link
    // before it was released, so the chain is recomputed from its lineage.
    let client = cluster.new_client();
    wait_until("the chain to be well under way", DEADLINE, || {
        (client.status().ok()?.tasks < n as u64 - 50).then_some(())
    });
    kill_worker_when(&mut cluster, "a worker holding a link", |ws| {
        ws.iter().find(|w| w.keys > 0).map(|w| w.address.clone())
    });
    assert!(
        !running.is_finished(),
        "the chain ended before the kill; make the links slower"
    );
    assert_eq!(join_get(running), Value::Int(n as i64 - 1));
    cluster.wait_until_idle();
}

#[test]
fn killed_only_holder_of_an_intermediate_is_recomputed_for_a_later_task() {
    // w -> x is done on one worker (w released, x held there only); y needs x and s, and s
    // sleeps on the other worker. The holder of x dies: x (and w) are computed again.
    let mut cluster = quick(2, 1).start();
    let mut g = Graph::new();
    g.insert("w", task("add", (20, 0)));
    g.insert("x", task("inc", (key("w"),)));
    g.insert("s", task("sleep", (3, 1)));
    g.insert("y", task("add", (key("x"), key("s"))));
    let running = get_in_background(cluster.client(), g, vec!["y".into()]);
    kill_worker_when(&mut cluster, "x to be done while s runs", |ws| {
        let idle_holder = ws.iter().find(|w| w.keys > 0 && w.processing == 0)?;
        ws.iter()
            .any(|w| w.processing > 0)
            .then(|| idle_holder.address.clone())
    });
    assert!(!running.is_finished());
    assert_eq!(join_get(running), Value::Int(22));
    wait_for_worker_count(cluster.client(), 1);
    cluster.wait_until_idle();
}

#[test]
fn killed_holder_of_a_kept_result_is_recomputed_for_a_later_graph() {
    // Two steps: base is kept on one worker; a later graph needs it after its holder died.
    let mut cluster = quick(2, 1).start();
    let client = cluster.client().clone();
    let mut g = Graph::new();
    g.insert("base-0", task("add", (20, 0)));
    g.insert("base", task("inc", (key("base-0"),)));
    assert_eq!(client.get_with(&g, "base", true).unwrap(), Value::Int(21));
    kill_worker_when(&mut cluster, "the holder of base", |ws| {
        ws.iter().find(|w| w.keys > 0).map(|w| w.address.clone())
    });
    wait_for_worker_count(&client, 1);
    let mut g2 = Graph::new();
    g2.insert("twice", task("mul", (key("base"), 2)));
    assert_eq!(client.get(&g2, "twice").unwrap(), Value::Int(42));
    assert_eq!(client.gather("base").unwrap(), Value::Int(21));
    client.release(&["base".to_string()]).unwrap();
    cluster.wait_until_idle();
}

#[test]
fn task_that_kills_its_workers_fails_as_worker_died() {
    let cluster = Cluster::builder(3, 1)
        .scheduler_args(&["--heartbeat-timeout", "1", "--allowed-failures", "2"])
        .worker_args(&["--heartbeat-interval", "0.2", "--enable-test-functions"])
        .start();
    let client = cluster.client();
    let mut g = Graph::new();
    g.insert("boom", task("abort", ()));
    let e = common::scheduler_error(client.get(&g, "boom"));
    assert_eq!(e.kind, "worker_died", "{e:?}");
    assert_eq!(e.key.as_deref(), Some("boom"), "{e:?}");
    assert!(e.message.contains("boom"), "{e:?}");
    // Exactly two workers died, and the third still serves.
    let mut cluster = cluster;
    let exited = wait_until("two workers to exit", DEADLINE, || {
        let exited = cluster
            .workers
            .iter_mut()
            .map(|w| !w.proc.is_running())
            .filter(|&exited| exited)
            .count();
        (exited >= 2).then_some(exited)
    });
    assert_eq!(exited, 2);
    wait_for_worker_count(cluster.client(), 1);
    cluster.assert_serving();
    cluster.wait_until_idle();
}

// ----- the scheduler restarting -------------------------------------------------------------

#[test]
fn scheduler_killed_and_restarted_under_a_waiting_client() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state").display().to_string();
    let mut cluster = quick(2, 1)
        .scheduler_args(&["--state-dir", &state_dir])
        .start();
    let client = cluster.client().clone();
    let mut stored = Graph::new();
    stored.insert("p", 40);
    stored.insert("q", task("add", (key("p"), 2)));
    client
        .set_collection("survivor", &Collection::graph(stored, "q"))
        .unwrap();
    // A computation of about a second and a half, waited on by another client.
    let mut g = Graph::new();
    let mut refs = Vec::new();
    for i in 0..30i64 {
        g.insert(format!("r-{i}"), task("sleep", (0.1, i)));
        refs.push(key(format!("r-{i}")));
    }
    g.insert("r-total", task("sum", (list(refs),)));
    let waiting = cluster.new_client();
    let running = get_in_background(&waiting, g, vec!["r-total".into()]);
    wait_until("the computation to start", DEADLINE, || {
        let s = client.status().ok()?;
        (s.graphs == 1 && s.keys > 0).then_some(())
    });
    let old_id = client.scheduler_id().to_string();
    let (pw, pc) = (
        port_of(cluster.workers_address()),
        port_of(cluster.clients_address()),
    );
    cluster.scheduler.proc.kill();
    // (Values the workers hold are adopted for a short grace period here, so that the
    // cluster is seen to let them go.)
    cluster.scheduler = SchedulerProc::start_on(
        pw,
        pc,
        &[
            "--heartbeat-timeout",
            "1",
            "--state-dir",
            &state_dir,
            "--adopt-grace",
            "2",
        ],
    );
    let fresh = cluster.new_client();
    assert_ne!(fresh.scheduler_id(), old_id);
    // The workers register again by themselves.
    wait_for_worker_count(&fresh, 2);
    let pids: HashSet<u32> = fresh.workers().unwrap().iter().map(|w| w.pid).collect();
    let spawned: HashSet<u32> = cluster.workers.iter().map(|w| w.pid()).collect();
    assert_eq!(pids, spawned);
    // The waiting client resubmitted transparently and gets the right answer.
    assert_eq!(join_get(running), Value::Int((0..30).sum::<i64>()));
    // Stored collections survived.
    let names: Vec<String> = fresh
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["survivor".to_string()]);
    assert_eq!(
        fresh.compute_collection("survivor").unwrap(),
        Value::Int(42)
    );
    common::assert_serving(&fresh);
    cluster.wait_until_idle();
}

// ----- clients going away -------------------------------------------------------------------

#[test]
fn killed_client_has_its_computation_cancelled() {
    let cluster = quick(2, 1)
        .scheduler_args(&["--client-timeout", "1"])
        .start();
    let client = cluster.client();
    // A live client waiting longer than the client timeout is not cancelled (it pings).
    let mut g = Graph::new();
    for i in 0..6i64 {
        g.insert(format!("live-{i}"), task("sleep", (0.5, i)));
    }
    let keys: Vec<String> = (0..6).map(|i| format!("live-{i}")).collect();
    let got = client
        .get(&g, keys.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(got, Value::List((0..6).map(Value::Int).collect()));
    // A `zask get` process of a long computation (80 s of work for two workers: far longer
    // than the deadlines below), killed while it waits.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.json");
    let mut nodes = serde_json::Map::new();
    let mut refs = Vec::new();
    for i in 0..40 {
        let k = format!("long-{i}");
        nodes.insert(
            k.clone(),
            serde_json::json!({"fn": "sleep", "args": [4, i]}),
        );
        refs.push(serde_json::json!({ "ref": k }));
    }
    nodes.insert(
        "long-total".into(),
        serde_json::json!({"fn": "sum", "args": [refs]}),
    );
    std::fs::write(&path, serde_json::Value::Object(nodes).to_string()).unwrap();
    let path_arg = path.display().to_string();
    let mut waiter = Proc::spawn(
        "zask get",
        zask_command(&[
            "get",
            "--scheduler",
            cluster.clients_address(),
            &path_arg,
            "long-total",
        ]),
    );
    wait_until("the long computation to run", DEADLINE, || {
        let s = client.status().ok()?;
        (s.graphs == 1 && s.tasks > 0).then_some(())
    });
    waiter.kill();
    // Its computation is cancelled once it is silent for the client timeout...
    wait_until("the computation to be cancelled", DEADLINE, || {
        (client.status().ok()?.graphs == 0).then_some(())
    });
    // ...and once the tasks already on the workers end, nothing is left.
    cluster.wait_until_idle();
    let s = client.status().unwrap();
    assert_eq!((s.graphs, s.tasks, s.keys), (0, 0, 0));
    cluster.assert_serving();
}

// ----- graceful retirement ------------------------------------------------------------------

/// Scatters a value that only one worker holds (it has no lineage: it cannot be recomputed)
/// and returns the holder's address.
fn scatter_on_one_worker(cluster: &Cluster, key: &str, value: &Value) -> String {
    let client = cluster.client();
    let keys = client
        .scatter_named(vec![(key.to_string(), value.clone())])
        .unwrap();
    assert_eq!(keys, vec![key.to_string()]);
    let holders: Vec<String> = client
        .workers()
        .unwrap()
        .into_iter()
        .filter(|w| w.keys > 0)
        .map(|w| w.address)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    holders[0].clone()
}

/// After `holder` retired: it exited cleanly, the others hold `key`, and it gathers.
fn assert_moved(cluster: &mut Cluster, holder: &str, key: &str, value: &Value) {
    let i = index_of(cluster, holder);
    let status = cluster.workers[i]
        .proc
        .wait_exit(DEADLINE)
        .expect("the retired worker exits");
    assert!(
        status.success(),
        "the retired worker exited with {status:?}"
    );
    let client = cluster.client().clone();
    wait_until("the retired worker to be removed", DEADLINE, || {
        let ws = client.workers().ok()?;
        (!ws.iter().any(|w| w.address == holder)).then_some(())
    });
    let ws = client.workers().unwrap();
    assert_eq!(ws.iter().map(|w| w.keys).sum::<u64>(), 1, "{ws:?}");
    assert_eq!(client.gather(key).unwrap(), *value);
    client.release(&[key.to_string()]).unwrap();
    cluster.wait_until_idle();
}

fn unique_value() -> Value {
    Value::Bytes((0..100_000u32).map(|i| (i % 251) as u8).collect())
}

#[test]
fn sigterm_retires_a_worker_moving_its_data() {
    let mut cluster = quick(2, 1).start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "only-here-sigterm", &value);
    let i = index_of(&cluster, &holder);
    cluster.workers[i].proc.terminate();
    assert_moved(&mut cluster, &holder, "only-here-sigterm", &value);
}

#[test]
fn client_retire_worker_moves_its_data() {
    let mut cluster = quick(2, 1).start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "only-here-client", &value);
    cluster.client().retire_worker(&holder).unwrap();
    assert_moved(&mut cluster, &holder, "only-here-client", &value);
    let e = cluster.client().retire_worker(&holder).unwrap_err();
    assert_eq!(e.kind(), Some("unknown_worker"), "{e}");
}

#[test]
fn zask_retire_command_moves_a_workers_data() {
    let mut cluster = quick(2, 1).start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "only-here-cli", &value);
    let out = run_command(
        zask_command(&["retire", "--scheduler", cluster.clients_address(), &holder]),
        None,
        DEADLINE,
    );
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(printed, serde_json::json!({ "retired": holder }));
    assert_moved(&mut cluster, &holder, "only-here-cli", &value);
}

#[test]
fn retiring_worker_keeps_computed_results_without_recomputing() {
    // A kept computed result moves too (it is gathered from the survivor), and a
    // computation in flight on the retiring worker still completes.
    let mut cluster = quick(2, 1).start();
    let client = cluster.client().clone();
    let mut g = Graph::new();
    g.insert("kept-r", task("sleep", (0.01, 7)));
    assert_eq!(client.get_with(&g, "kept-r", true).unwrap(), Value::Int(7));
    let holder = client
        .workers()
        .unwrap()
        .into_iter()
        .find(|w| w.keys > 0)
        .expect("a holder")
        .address;
    let mut g2 = Graph::new();
    for i in 0..10i64 {
        g2.insert(format!("during-{i}"), task("sleep", (0.1, i)));
    }
    let keys: Vec<String> = (0..10).map(|i| format!("during-{i}")).collect();
    let running = get_in_background(&client, g2, keys);
    client.retire_worker(&holder).unwrap();
    assert_eq!(
        join_get(running),
        Value::List((0..10).map(Value::Int).collect())
    );
    assert_moved(&mut cluster, &holder, "kept-r", &Value::Int(7));
}

#[test]
fn retiring_sole_worker_waits_for_a_new_worker_to_take_its_data() {
    // Nowhere to move the data: the worker waits (well within the retire timeouts) and
    // leaves as soon as a newcomer has copied it.
    let mut cluster = quick(1, 1).start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "waits-for-a-home", &value);
    cluster.workers[0].proc.terminate();
    // (Give the signal a moment to arrive; not an assertion.)
    std::thread::sleep(Duration::from_millis(500));
    cluster.add_worker(WorkerBin::Stock);
    assert_moved(&mut cluster, &holder, "waits-for-a-home", &value);
    cluster.assert_serving();
}

#[test]
fn second_sigterm_stops_a_retiring_worker_at_once() {
    let mut cluster = quick(1, 1)
        .scheduler_args(&["--retire-timeout", "600"])
        .worker_args(&["--retire-timeout", "600"])
        .start();
    let value = unique_value();
    scatter_on_one_worker(&cluster, "left-behind", &value);
    cluster.workers[0].proc.terminate();
    std::thread::sleep(Duration::from_millis(500));
    cluster.workers[0].proc.terminate();
    // Only the second signal can make it exit before the 600 s retire timeouts.
    let status = cluster.workers[0]
        .proc
        .wait_exit(DEADLINE)
        .expect("the worker exits on the second SIGTERM");
    assert!(status.success(), "{status:?}");
    wait_for_worker_count(cluster.client(), 0);
    // The scattered value left with it: asking for it (of a cluster with a worker again) is
    // an error naming the key.
    cluster.add_worker(WorkerBin::Stock);
    let e = common::scheduler_error(cluster.client().gather("left-behind"));
    assert_eq!(e.key.as_deref(), Some("left-behind"), "{e:?}");
}

#[test]
fn retirement_copies_again_when_the_copying_workers_die() {
    let mut cluster = quick(3, 1)
        .scheduler_args(&["--retire-timeout", "8"])
        .start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "needs-a-second-try", &value);
    let h = index_of(&cluster, &holder);
    // The other two freeze: whichever is asked to copy the key will not do it.
    for i in 0..3 {
        if i != h {
            cluster.workers[i].proc.signal("STOP");
        }
    }
    let client = cluster.client().clone();
    let retiring = {
        let client = client.clone();
        let holder = holder.clone();
        std::thread::spawn(move || client.retire_worker(&holder))
    };
    wait_for_worker_count(&client, 1);
    // They die for good; a new worker joins, well before the retire timeout.
    for i in (0..3).rev() {
        if i != h {
            cluster.kill_worker(i);
        }
    }
    cluster.add_worker(WorkerBin::Stock);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !retiring.is_finished() {
        assert!(std::time::Instant::now() < deadline, "retire_worker hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
    retiring.join().unwrap().unwrap();
    assert_eq!(client.gather("needs-a-second-try").unwrap(), value);
}

#[test]
fn retire_worker_returns_when_the_worker_dies_mid_retirement() {
    // The only worker has nowhere to move its data, so it waits; then it is killed.
    let mut cluster = quick(1, 1).start();
    let value = unique_value();
    let holder = scatter_on_one_worker(&cluster, "retire-then-die", &value);
    let retiring = {
        let client = cluster.new_client();
        std::thread::spawn(move || client.retire_worker(&holder))
    };
    // (Give the request a moment to arrive; not an assertion.)
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill_worker(0);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !retiring.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "retire_worker still waits {DEADLINE:?} after its worker died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Either answer is fine (it is gone; or an error saying its data could not move), as
    // long as there is one.
    let _ = retiring.join().unwrap();
}

// ----- workers joining and coming back ------------------------------------------------------

#[test]
fn worker_joining_mid_computation_takes_tasks() {
    let mut cluster = quick(1, 1).start();
    let mut g = Graph::new();
    let keys: Vec<String> = (0..100).map(|i| format!("j-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        g.insert(k.as_str(), task("sleep", (0.05, i as i64)));
    }
    let running = get_in_background(cluster.client(), g, keys);
    let client = cluster.client().clone();
    wait_until("the computation to start", DEADLINE, || {
        (client.status().ok()?.graphs == 1).then_some(())
    });
    let i = cluster.add_worker(WorkerBin::Stock);
    let newcomer = cluster.workers[i].address.clone();
    wait_until("the new worker to get tasks", DEADLINE, || {
        assert!(!running.is_finished(), "the computation ended first");
        let ws = client.workers().ok()?;
        ws.iter()
            .any(|w| w.address == newcomer && (w.processing > 0 || w.keys > 0))
            .then_some(())
    });
    assert_eq!(
        join_get(running),
        Value::List((0..100).map(Value::Int).collect())
    );
    cluster.wait_until_idle();
}

#[test]
fn worker_restarted_with_its_store_is_new_and_its_kept_data_is_used() {
    // One worker with a sled store holds a kept result; it is killed, forgotten, and started
    // again on the same port with the same store: it registers as a new worker, and the
    // result it still holds is used (gathered) rather than lost.
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled:{}", dir.path().join("store").display());
    let port = free_port().to_string();
    let mut cluster = quick(1, 1)
        .worker_args(&["--store", &store, "--port-to-workers", &port])
        .start();
    let client = cluster.client().clone();
    let mut g = Graph::new();
    g.insert("st-a", task("add", (1, 2)));
    g.insert("st-b", task("inc", (key("st-a"),)));
    g.insert("st-c", task("add", (key("st-b"), 10)));
    assert_eq!(client.get_with(&g, "st-c", true).unwrap(), Value::Int(14));
    // Let sled write it to disk (it flushes every half second) before the crash.
    std::thread::sleep(Duration::from_millis(1500));
    let old = cluster.kill_worker(0);
    wait_for_worker_count(&client, 0);
    let w = WorkerProc::start(
        WorkerBin::Stock,
        cluster.workers_address(),
        1,
        &[
            "--heartbeat-interval",
            "0.2",
            "--store",
            &store,
            "--port-to-workers",
            &port,
        ],
    );
    assert_eq!(w.address, old.address);
    let pid = w.pid();
    cluster.workers.push(w);
    let listed = wait_until("the restarted worker to register", DEADLINE, || {
        let ws = client.workers().ok()?;
        (ws.len() == 1 && ws[0].pid == pid).then_some(ws)
    });
    assert_ne!(listed[0].worker_id, "", "{listed:?}");
    assert_eq!(client.gather("st-c").unwrap(), Value::Int(14));
    // Only st-c is tracked: inputs re-created to recompute it were dropped again.
    wait_until("only the kept key to be tracked", DEADLINE, || {
        let s = client.status().ok()?;
        (s.tasks == 1 && s.keys == 1).then_some(())
    });
    client.release(&["st-c".to_string()]).unwrap();
    cluster.wait_until_idle();
}

#[test]
fn worker_restarted_quickly_keeps_scattered_data_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled:{}", dir.path().join("store").display());
    let port = free_port().to_string();
    let args = [
        "--heartbeat-interval",
        "0.2",
        "--store",
        &store,
        "--port-to-workers",
        &port,
    ];
    let mut cluster = Cluster::builder(1, 1)
        .scheduler_args(&["--heartbeat-timeout", "30"])
        .worker_args(&args)
        .start();
    let client = cluster.client().clone();
    let value = unique_value();
    scatter_on_one_worker(&cluster, "restart-scattered", &value);
    // Let sled write it to disk (it flushes every half second) before the crash.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill_worker(0);
    let w = WorkerProc::start(WorkerBin::Stock, cluster.workers_address(), 1, &args);
    let pid = w.pid();
    cluster.workers.push(w);
    wait_until(
        "the restarted worker to replace the old one",
        DEADLINE,
        || {
            let ws = client.workers().ok()?;
            (ws.len() == 1 && ws[0].pid == pid).then_some(())
        },
    );
    assert_eq!(client.gather("restart-scattered").unwrap(), value);
}
