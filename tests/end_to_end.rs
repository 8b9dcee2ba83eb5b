//! End to end: a scheduler, two workers and clients, each a separate process (the clients in
//! this test process), computing graphs over real sockets.

mod common;

use std::collections::HashSet;

use common::{graph_json, keys_json, scheduler_error, value_json, Cluster, WorkerBin, DEADLINE};
use serde_json::json;
use zask::{key, list, task, Graph, Keys, Node, Value};

/// `{x: add(1, 2), y: inc(x), z: add(y, x)}`, the original suite's graph.
fn xyz() -> Graph {
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("z", task("add", (key("y"), key("x"))));
    g
}

#[test]
fn original_suite_schedule_y_and_nested_keys() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    assert_eq!(client.get(&xyz(), "y").unwrap(), Value::Int(4));
    cluster.wait_until_idle();
    // [['z'], 'y'] == [[7], 4]
    let keys = Keys::Many(vec![Keys::Many(vec![Keys::from("z")]), Keys::from("y")]);
    assert_eq!(
        client.get(&xyz(), keys).unwrap(),
        value_json(json!([[7], 4]))
    );
    // After a get, no worker holds intermediates or results.
    cluster.wait_until_idle();
}

#[test]
fn original_suite_literal_input_and_key_list() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({
        "x": 1,
        "y": {"fn": "inc", "args": [{"ref": "x"}]},
        "z": {"fn": "add", "args": [{"ref": "y"}, {"ref": "x"}]},
    }));
    assert_eq!(
        cluster.client().get(&graph, vec!["y", "z"]).unwrap(),
        value_json(json!([2, 3]))
    );
    cluster.wait_until_idle();
    // The same key twice, and nesting deeper.
    assert_eq!(
        cluster
            .client()
            .get(&graph, keys_json(json!(["z", [["y", "z"]], "x"])))
            .unwrap(),
        value_json(json!([3, [[2, 3]], 1]))
    );
    cluster.wait_until_idle();
}

#[test]
fn keep_results_leaves_results_that_later_graphs_reuse() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();
    let mut first = Graph::new();
    first.insert("x", task("add", (1, 2)));
    assert_eq!(client.get_with(&first, "x", true).unwrap(), Value::Int(3));
    // The result stays on a worker.
    let status = client.status().unwrap();
    assert!(status.keys > 0, "keep_results left nothing: {status:?}");
    let holders: Vec<_> = cluster
        .list_workers()
        .into_iter()
        .filter(|w| w.keys > 0)
        .collect();
    assert_eq!(holders.len(), 1, "one worker should hold x: {holders:?}");

    // A later graph defining x the same way uses the held value instead of recomputing it;
    // one that refers to x without defining it too.
    let second = graph_json(json!({
        "x": {"fn": "add", "args": [1, 2]},
        "y": {"fn": "inc", "args": [{"ref": "x"}]},
    }));
    assert_eq!(client.get(&second, "y").unwrap(), Value::Int(4));
    // One defining x differently is refused: the held x is not its x.
    let redefined = graph_json(json!({
        "x": 100,
        "y2": {"fn": "inc", "args": [{"ref": "x"}]},
    }));
    let e = scheduler_error(client.get(&redefined, "y2"));
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("key_conflict", Some("x"))
    );
    // A different client sees the same held value.
    let other = cluster.new_client();
    let third = graph_json(json!({"w": {"fn": "mul", "args": [{"ref": "x"}, 10]}}));
    assert_eq!(other.get(&third, "w").unwrap(), Value::Int(30));
    // Asking for x itself returns the held value too.
    assert_eq!(other.get(&Graph::new(), "x").unwrap(), Value::Int(3));
    // y and w were not kept: eventually only x is held.
    common::wait_until("only x to stay held", DEADLINE, || {
        let s = client.status().ok()?;
        let held: u64 = client.workers().ok()?.iter().map(|w| w.keys).sum();
        (s.keys == 1 && held == 1).then_some(())
    });
}

#[test]
fn partitions_kept_by_one_client_are_fetched_by_another() {
    // dask's bag.from_sequence(range(5), npartitions=2).map(inc), as two partitions.
    let cluster = Cluster::start(2, 1);
    let producer = cluster.new_client();
    let graph = graph_json(json!({
        "part-0": {"fn": "map", "args": ["inc", [0, 1, 2]]},
        "part-1": {"fn": "map", "args": ["inc", [3, 4]]},
    }));
    let stored = producer
        .get_with(&graph, vec!["part-0", "part-1"], true)
        .unwrap();
    assert_eq!(stored, value_json(json!([[1, 2, 3], [4, 5]])));
    drop(producer);
    // Another client, knowing only the keys, gets the same partitions and computes on them.
    let consumer = cluster.new_client();
    assert_eq!(
        consumer
            .get(&Graph::new(), vec!["part-0", "part-1"])
            .unwrap(),
        stored
    );
    let total = graph_json(json!({
        "all": {"fn": "concat", "args": [[{"ref": "part-0"}, {"ref": "part-1"}]]},
        "total": {"fn": "sum", "args": [{"ref": "all"}]},
    }));
    assert_eq!(consumer.get(&total, "total").unwrap(), Value::Int(15));
    // The kept partitions are still there, and nothing else.
    common::wait_until("only the partitions to stay held", DEADLINE, || {
        let s = consumer.status().ok()?;
        (s.keys == 2 && s.tasks == 2).then_some(())
    });
}

#[test]
fn failing_task_raises_and_dependents_fail_and_cluster_recovers() {
    let cluster = Cluster::start(2, 1);
    let client = cluster.client();

    let graph = graph_json(json!({"bad": {"fn": "fail", "args": ["deliberate failure"]}}));
    let info = scheduler_error(client.get(&graph, "bad"));
    assert_eq!(info.kind, "task_failed", "{info:?}");
    assert_eq!(info.key.as_deref(), Some("bad"), "{info:?}");
    assert_eq!(info.function.as_deref(), Some("fail"), "{info:?}");
    assert!(info.message.contains("deliberate failure"), "{info:?}");
    cluster.wait_until_idle();

    // A dependent (two levels down) of a failing task fails too, naming the failing task.
    let graph = graph_json(json!({
        "ok": 1,
        "bad": {"fn": "fail", "args": ["broken input"]},
        "mid": {"fn": "add", "args": [{"ref": "ok"}, {"ref": "bad"}]},
        "top": {"fn": "inc", "args": [{"ref": "mid"}]},
    }));
    let info = scheduler_error(client.get(&graph, vec!["ok", "top"]));
    // The error names the key asked for, the input that failed, its function and message.
    assert_eq!(info.kind, "dependency_failed", "{info:?}");
    assert_eq!(info.key.as_deref(), Some("top"), "{info:?}");
    assert_eq!(info.dependency.as_deref(), Some("bad"), "{info:?}");
    assert_eq!(info.function.as_deref(), Some("fail"), "{info:?}");
    assert!(info.message.contains("broken input"), "{info:?}");
    cluster.wait_until_idle();

    // A function error (not `fail`) is reported the same way, with the function's message.
    let graph = graph_json(json!({"d": {"fn": "div", "args": [1, 0]}}));
    let info = scheduler_error(client.get(&graph, "d"));
    assert_eq!(info.kind, "task_failed", "{info:?}");
    assert_eq!(info.function.as_deref(), Some("div"), "{info:?}");
    assert!(info.message.contains("division by zero"), "{info:?}");

    // The cluster still computes, and a failed key can be defined again.
    cluster.assert_serving();
    let graph = graph_json(json!({
        "bad": 5,
        "top": {"fn": "inc", "args": [{"ref": "bad"}]},
    }));
    assert_eq!(client.get(&graph, "top").unwrap(), Value::Int(6));
    cluster.wait_until_idle();
}

#[test]
fn failing_task_does_not_disturb_a_concurrent_computation() {
    let cluster = Cluster::start(2, 1);
    let good_client = cluster.new_client();
    let good = std::thread::spawn(move || {
        let graph = graph_json(json!({
            "slow": {"fn": "sleep", "args": [0.3, 20]},
            "after": {"fn": "add", "args": [{"ref": "slow"}, 1]},
        }));
        good_client.get(&graph, "after")
    });
    let graph = graph_json(json!({"boom": {"fn": "fail", "args": ["no"]}}));
    let info = scheduler_error(cluster.client().get(&graph, "boom"));
    assert_eq!(info.kind, "task_failed");
    assert_eq!(good.join().unwrap().unwrap(), Value::Int(21));
    cluster.wait_until_idle();
}

/// `xyz()` with every key prefixed (so concurrent computations do not share keys).
fn xyz_prefixed(p: &str) -> Graph {
    let (x, y, z) = (format!("{p}x"), format!("{p}y"), format!("{p}z"));
    let mut g = Graph::new();
    g.insert(x.as_str(), task("add", (1, 2)));
    g.insert(y.as_str(), task("inc", (key(x.as_str()),)));
    g.insert(z.as_str(), task("add", (key(y.as_str()), key(x.as_str()))));
    g
}

#[test]
fn several_clients_concurrently_get_equal_correct_results() {
    let cluster = Cluster::start(2, 2);
    let address = cluster.clients_address().to_string();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let address = address.clone();
            std::thread::spawn(move || {
                let client = common::connect(&address);
                let mut results = Vec::new();
                for i in 0..10 {
                    // The same graph under keys of its own: every client gets the same values.
                    let p = format!("{t}-{i}-");
                    let got = client
                        .get(&xyz_prefixed(&p), vec![format!("{p}z"), format!("{p}y")])
                        .unwrap();
                    results.push(got);
                    // Different values.
                    let mut g = Graph::new();
                    let a = format!("a-{t}-{i}");
                    let b = format!("b-{t}-{i}");
                    g.insert(a.as_str(), (t * 100 + i) as i64);
                    g.insert(b.as_str(), task("mul", (key(a.as_str()), 2)));
                    let own = client.get(&g, b.as_str()).unwrap();
                    assert_eq!(own, Value::Int(((t * 100 + i) * 2) as i64));
                }
                results
            })
        })
        .collect();
    let all: Vec<Value> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread panicked"))
        .collect();
    assert_eq!(all.len(), 40);
    for r in &all {
        assert_eq!(r, &value_json(json!([7, 4])));
    }
    cluster.wait_until_idle();
}

#[test]
fn one_client_cloned_across_threads_with_many_requests_outstanding() {
    let cluster = Cluster::start(2, 2);
    let client = cluster.new_client();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let n = (t * 10 + i) as i64;
                        let k = format!("s-{t}-{i}");
                        let r = format!("r-{t}-{i}");
                        let mut g = Graph::new();
                        // A short sleep keeps many requests outstanding at once.
                        g.insert(k.as_str(), task("sleep", (0.02, n)));
                        g.insert(r.as_str(), task("add", (key(k.as_str()), n)));
                        let got = client.get(&g, r.as_str()).unwrap();
                        assert_eq!(got, Value::Int(2 * n));
                        // The same graph under keys of its own.
                        let p = format!("{t}-{i}-");
                        client
                            .get(&xyz_prefixed(&p), format!("{p}z").as_str())
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for v in t.join().expect("a thread panicked") {
            assert_eq!(v, Value::Int(7));
        }
    }
    cluster.wait_until_idle();
}

/// Computations of the very same keys at once, from one client cloned across threads and
/// from separate clients: the scheduler shares tasks between computations, and releases
/// them while new computations re-create them.
#[test]
fn concurrent_computations_of_the_same_keys() {
    let cluster = Cluster::start(2, 2);
    let client = cluster.new_client();
    let address = cluster.clients_address().to_string();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            // Half the threads share one client, the others have their own.
            let client = if t % 2 == 0 {
                client.clone()
            } else {
                common::connect(&address)
            };
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        let n = (t * 10 + i) as i64;
                        let mut g = Graph::new();
                        g.insert(format!("s-{t}-{i}"), task("sleep", (0.02, n)));
                        client.get(&g, format!("s-{t}-{i}").as_str()).unwrap();
                        client.get(&xyz(), "z")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in threads {
        for r in t.join().expect("a thread panicked") {
            match r {
                Ok(v) => assert_eq!(v, Value::Int(7)),
                Err(e) => failures.push(format!("{e:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 320 gets failed, the first: {}",
        failures.len(),
        failures[0]
    );
    cluster.wait_until_idle();
}

#[test]
fn a_chain_of_a_thousand_tasks() {
    let cluster = Cluster::start(2, 1);
    let mut g = Graph::new();
    g.insert("c-0", 0);
    for i in 1..=1000 {
        g.insert(
            format!("c-{i}"),
            task("inc", (key(format!("c-{}", i - 1)),)),
        );
    }
    assert_eq!(
        cluster.client().get(&g, "c-1000").unwrap(),
        Value::Int(1000)
    );
    cluster.wait_until_idle();
}

/// `i-0` .. `i-{n-1}` = `inc(i)`, and `total` = their sum, `n (n + 1) / 2`.
fn incs_and_sum(n: i64) -> Graph {
    let mut g = Graph::new();
    let mut refs: Vec<Node> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = format!("i-{i}");
        g.insert(k.as_str(), task("inc", (i,)));
        refs.push(key(k));
    }
    g.insert("total", task("sum", (list(refs),)));
    g
}

/// More inputs on each worker than one fetch request carries (65,536): the sum's worker
/// fetches them in chunks, the first served while it takes in the rest.
#[test]
fn a_sum_over_more_inputs_than_one_fetch_carries() {
    let cluster = Cluster::start(2, 1);
    let n = 160_000i64;
    let g = incs_and_sum(n);
    assert_eq!(
        cluster.client().get(&g, "total").unwrap(),
        Value::Int(n * (n + 1) / 2)
    );
    cluster.wait_until_idle();
}

#[test]
fn ten_thousand_independent_tasks_and_a_sum_over_them() {
    let cluster = Cluster::start(2, 2);
    let n = 10_000i64;
    let g = incs_and_sum(n);
    // sum of (i + 1) for i in 0..n
    let expected = n * (n + 1) / 2;
    assert_eq!(
        cluster.client().get(&g, "total").unwrap(),
        Value::Int(expected)
    );
    // Some of the inputs directly, in the answer's shape.
    assert_eq!(
        cluster
            .client()
            .get(&g, vec!["i-0", "i-9999", "total"])
            .unwrap(),
        value_json(json!([1, 10000, expected]))
    );
    cluster.wait_until_idle();
}

#[test]
fn large_values_travel_between_workers_and_to_the_client() {
    let cluster = Cluster::start(2, 1);
    // 1 MB of bytes (a blob frame), its size computed wherever, and the bytes themselves.
    let graph = graph_json(json!({
        "big": {"fn": "zeros", "args": [1_000_000]},
        "size": {"fn": "nbytes", "args": [{"ref": "big"}]},
        "text": {"fn": "add", "args": ["a", "b"]},
    }));
    let got = cluster
        .client()
        .get(&graph, vec!["size", "big", "text"])
        .unwrap();
    let Value::List(items) = got else {
        panic!("expected a list, got {got:?}")
    };
    assert_eq!(items[0], Value::Int(1_000_000));
    assert_eq!(items[1], Value::Bytes(vec![0; 1_000_000].into()));
    assert_eq!(items[2], Value::Str("ab".into()));
    cluster.wait_until_idle();
}

// ----- custom workers -----------------------------------------------------------------------

#[test]
fn custom_worker_functions() {
    let cluster = Cluster::builder(2, 1).worker_bin(WorkerBin::Custom).start();
    let client = cluster.client();
    for w in cluster.list_workers() {
        for f in ["word_count", "scale", "parse_int", "explode", "inc"] {
            assert!(w.functions.iter().any(|x| x == f), "{f} missing in {w:?}");
        }
    }
    let graph = graph_json(json!({
        "text": "the quick brown  fox\tjumps",
        "words": {"fn": "word_count", "args": [{"ref": "text"}]},
        "scaled": {"fn": "scale", "args": [[1.0, 2, -0.5], 2.0]},
        "n": {"fn": "parse_int", "args": [" 42 "]},
        "sum": {"fn": "add", "args": [{"ref": "n"}, {"ref": "words"}]},
    }));
    assert_eq!(
        client
            .get(&graph, vec!["words", "scaled", "n", "sum"])
            .unwrap(),
        value_json(json!([5, [2.0, 4.0, -1.0], 42, 47]))
    );

    let bad = graph_json(json!({"p": {"fn": "parse_int", "args": ["x"]}}));
    let info = scheduler_error(client.get(&bad, "p"));
    assert_eq!(info.kind, "task_failed", "{info:?}");
    assert_eq!(info.function.as_deref(), Some("parse_int"), "{info:?}");
    assert_eq!(info.key.as_deref(), Some("p"), "{info:?}");
    assert!(info.message.contains("invalid digit"), "{info:?}");

    let pids: HashSet<u32> = cluster.workers.iter().map(|w| w.pid()).collect();
    let boom = graph_json(json!({"e": {"fn": "explode", "args": ["kaboom"]}}));
    let info = scheduler_error(client.get(&boom, "e"));
    assert_eq!(info.kind, "task_failed", "{info:?}");
    assert_eq!(info.function.as_deref(), Some("explode"), "{info:?}");
    assert!(info.message.contains("panicked"), "{info:?}");
    assert!(info.message.contains("kaboom"), "{info:?}");

    // The worker that panicked keeps serving: both processes are alive and registered, and
    // both compute (a task pinned to each by holding its input there would need more
    // machinery; several independent tasks spread over both).
    let listed: HashSet<u32> = cluster.list_workers().iter().map(|w| w.pid).collect();
    assert_eq!(listed, pids);
    let mut g = Graph::new();
    let mut names = Vec::new();
    for i in 0..20 {
        let k = format!("wc-{i}");
        g.insert(
            k.as_str(),
            task("word_count", (format!("{} words here", i),)),
        );
        names.push(k);
    }
    let got = client
        .get(&g, names.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(got, Value::List(vec![Value::Int(3); 20]));
    // Panics again, several at once, then still serving.
    for _ in 0..3 {
        let info = scheduler_error(client.get(&boom, "e"));
        assert!(info.message.contains("panicked"), "{info:?}");
    }
    cluster.assert_serving();
    cluster.wait_until_idle();
}

#[test]
fn tasks_go_only_to_workers_that_offer_their_function() {
    let cluster = Cluster::builder(2, 1)
        .workers(&[WorkerBin::Stock, WorkerBin::Custom])
        .start();
    let custom_address = cluster.workers[1].address.clone();
    let workers = cluster.list_workers();
    let stock = workers
        .iter()
        .find(|w| w.address == cluster.workers[0].address)
        .expect("stock worker listed");
    assert!(!stock.functions.iter().any(|f| f == "word_count"));
    let custom = workers
        .iter()
        .find(|w| w.address == custom_address)
        .expect("custom worker listed");
    assert!(custom.functions.iter().any(|f| f == "word_count"));

    // Many word_count tasks, mixed with standard ones: all succeed, so none went to the stock
    // worker (which would fail them with unknown_function).
    let mut g = Graph::new();
    let mut outs = Vec::new();
    for i in 0..30 {
        let n = format!("n-{i}");
        let t = format!("t-{i}");
        let c = format!("c-{i}");
        g.insert(n.as_str(), task("inc", (i,)));
        g.insert(t.as_str(), task("mul", (key(n.as_str()), 0)));
        g.insert(c.as_str(), task("word_count", ("one two three",)));
        outs.push(c);
        outs.push(t);
    }
    let got = cluster
        .client()
        .get(&g, outs.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let expected: Vec<Value> = (0..30)
        .flat_map(|_| [Value::Int(3), Value::Int(0)])
        .collect();
    assert_eq!(got, Value::List(expected));
    // The custom worker can take inputs computed on the stock one.
    let chained = graph_json(json!({
        "s": {"fn": "add", "args": ["alpha ", "beta gamma"]},
        "wc": {"fn": "word_count", "args": [{"ref": "s"}]},
        "more": {"fn": "inc", "args": [{"ref": "wc"}]},
    }));
    assert_eq!(
        cluster.client().get(&chained, "more").unwrap(),
        Value::Int(4)
    );
    cluster.wait_until_idle();

    // Kept results show where the tasks ran: every word_count result is on the custom worker.
    let mut g = Graph::new();
    let mut outs = Vec::new();
    for i in 0..10 {
        let k = format!("kept-{i}");
        g.insert(k.as_str(), task("word_count", (format!("w{i} x y"),)));
        outs.push(k);
    }
    let got = cluster
        .client()
        .get_with(
            &g,
            outs.iter().map(String::as_str).collect::<Vec<_>>(),
            true,
        )
        .unwrap();
    assert_eq!(got, Value::List(vec![Value::Int(3); 10]));
    for w in cluster.list_workers() {
        let expected = if w.address == custom_address { 10 } else { 0 };
        assert_eq!(w.keys, expected, "{w:?}");
    }
}

#[test]
fn unknown_function_is_reported_with_function_and_key() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_json(json!({
        "a": 1,
        "b": {"fn": "no_such_function", "args": [{"ref": "a"}]},
    }));
    let info = scheduler_error(cluster.client().get(&graph, "b"));
    assert_eq!(info.kind, "unknown_function", "{info:?}");
    assert_eq!(
        info.function.as_deref(),
        Some("no_such_function"),
        "{info:?}"
    );
    assert_eq!(info.key.as_deref(), Some("b"), "{info:?}");
    assert!(info.message.contains("no_such_function"), "{info:?}");
    // word_count exists only on custom workers; this cluster has none.
    let graph = graph_json(json!({"w": {"fn": "word_count", "args": ["a b"]}}));
    let info = scheduler_error(cluster.client().get(&graph, "w"));
    assert_eq!(info.kind, "unknown_function", "{info:?}");
    assert_eq!(info.function.as_deref(), Some("word_count"), "{info:?}");
    cluster.assert_serving();
    cluster.wait_until_idle();
}
