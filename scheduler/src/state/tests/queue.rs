//! Tests of the policy that keeps workers busy without round trips: dependents queued behind
//! their only missing input on the same worker, and deeper queues for tasks known to be short.
//! (The other suites turn both off, to check the rest one message at a time.)

use super::*;
use zask_core::graph::{key, task};

fn chain(n: usize) -> Graph {
    let mut g = Graph::new();
    g.insert("c0", task("inc", (0,)));
    for i in 1..n {
        g.insert(format!("c{i}"), task("inc", (key(format!("c{}", i - 1)),)));
    }
    g
}

fn default_config() -> Config {
    Config {
        heartbeat_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

#[test]
fn a_chain_is_queued_behind_its_first_link() {
    let mut s = SchedulerState::new("s".into(), default_config());
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    // The whole chain goes at once, each link queued behind the one before.
    let out = get(&mut s, b"c1", 1, &chain(6), "c5", false, t0);
    assert_eq!(
        compute_keys(&out, b"w1"),
        vec!["c0", "c1", "c2", "c3", "c4", "c5"]
    );
    // c1 waits on the worker for c0: the scheduler names no holder for it.
    let c1 = &out.compute[b"w1".as_slice()][1];
    assert!(c1.who_has.is_empty(), "{c1:?}");
    // Reports come back; nothing is sent twice.
    let out = report(&mut s, b"w1", vec![done("c0", Value::Int(1))], t0);
    assert!(compute_keys(&out, b"w1").is_empty());
}

#[test]
fn short_tasks_go_in_large_batches_long_ones_do_not() {
    let mut s = SchedulerState::new("s".into(), default_config());
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut g = Graph::new();
    for i in 0..2000 {
        g.insert(format!("a{i}"), task("inc", (i,)));
    }
    let keys: Vec<String> = (0..2000).map(|i| format!("a{i}")).collect();
    let out = get(&mut s, b"c1", 1, &g, keys.clone(), false, t0);
    assert_eq!(
        compute_keys(&out, b"w1").len(),
        2,
        "unknown duration: saturation"
    );
    // 10 µs each: a 5 ms budget holds 500 per thread.
    let out = report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    assert_eq!(compute_keys(&out, b"w1").len(), 499);
    // A long task type stays at `saturation`.
    let mut slow = done("a1", Value::Int(2));
    slow.duration_us = 1_000_000;
    let mut s2 = SchedulerState::new("s".into(), default_config());
    register(&mut s2, b"w1", FUNCS, 1, t0);
    get(&mut s2, b"c1", 1, &g, keys, false, t0);
    let out = report(&mut s2, b"w1", vec![slow], t0);
    assert!(compute_keys(&out, b"w1").len() <= 1);
}

#[test]
fn chains_and_wide_graphs_complete_with_queueing_on() {
    let mut sim = Sim::with(default_config());
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &chain(1000), "c999", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c999", 1000)]));
    assert_eq!(sim.dispatched.len(), 1000, "each link runs once");
    let mut g = Graph::new();
    let mut refs = Vec::new();
    for i in 0..5000 {
        g.insert(format!("i{i}"), task("inc", (i,)));
        refs.push(key(format!("i{i}")));
    }
    g.insert("total", task("sum", (zask_core::graph::list(refs),)));
    sim.get(b"c1", 2, &g, "total", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("total", (1..=5000).sum())]));
    assert!(sim.held_anywhere().is_empty(), "{:?}", sim.held_anywhere());
}

#[test]
fn a_queued_dependent_goes_back_to_waiting_when_its_worker_dies() {
    let mut s = SchedulerState::new("s".into(), default_config());
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &chain(3), "c2", false, t0);
    register(&mut s, b"w2", FUNCS, 1, t0 + Duration::from_secs(9));
    // w1 (holding c0 and c1 queued) goes silent; c0 is ready again, c1 waits for it.
    let mut out = Outbox::default();
    super::heartbeat(&mut s, b"w2", t0 + Duration::from_secs(15));
    s.on_tick(t0 + Duration::from_secs(11), &mut out);
    s.on_flushed(&mut out);
    let sent = compute_keys(&out, b"w2");
    assert_eq!(sent.first().map(String::as_str), Some("c0"), "{sent:?}");
    if sent.len() > 1 {
        // Queued behind c0 on the same worker, never elsewhere.
        assert_eq!(sent[1], "c1");
    }
}

#[test]
fn the_ready_queue_pops_in_priority_order_whatever_the_push_order() {
    let mut q = ReadyQueue::default();
    let entry = |g: u64, p: u64, task: u64| ReadyEntry {
        priority: (g, p),
        task: TaskId(task),
    };
    // In order (the fast path), then out of order (the heap), then in order again.
    for (p, t) in [(1, 1), (2, 2), (5, 5)] {
        q.push(entry(1, p, t));
    }
    for (p, t) in [(3, 3), (0, 10), (4, 4)] {
        q.push(entry(1, p, t));
    }
    q.push(entry(2, 0, 20));
    assert_eq!(q.peek().map(|e| e.task.0), Some(10));
    let order: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|e| e.task.0).collect();
    assert_eq!(order, vec![10, 1, 2, 3, 4, 5, 20]);
    assert!(q.is_empty());
}

#[test]
fn tasks_queued_behind_a_task_taken_back_are_taken_back_too() {
    use super::heartbeat;
    // x is held on w2; chain y = inc(x), z = inc(y) goes to w1 (z queued behind y). w2 dies
    // before w1 fetched x: x is recomputed, and both y and z go back to waiting, none left
    // stranded on w1.
    let mut s = SchedulerState::new(
        "s".into(),
        Config {
            queue_budget: Duration::ZERO,
            ..default_config()
        },
    );
    let t0 = Instant::now();
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    get(&mut s, b"c1", 1, &g, "x", true, t0);
    report(&mut s, b"w2", vec![done("x", Value::Int(2))], t0);
    // Make w2 full (2 tasks per thread) so y goes to w1 (locality would pick w2 otherwise).
    let mut busy = Graph::new();
    busy.insert("b1", task("inc", (10,)));
    busy.insert("b2", task("inc", (11,)));
    get(&mut s, b"c2", 2, &busy, vec!["b1", "b2"], false, t0);
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("y", task("inc", (key("x"),)));
    g.insert("z", task("inc", (key("y"),)));
    let out = get(&mut s, b"c1", 3, &g, "z", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["y", "z"]);
    // w2 goes silent and is removed.
    heartbeat(&mut s, b"w1", t0 + Duration::from_secs(11));
    let mut out = Outbox::default();
    s.on_tick(t0 + Duration::from_secs(11), &mut out);
    s.on_flushed(&mut out);
    // x is recomputed on w1, with y and z queued behind it again.
    assert_eq!(compute_keys(&out, b"w1"), vec!["x", "y", "z"]);
}

#[test]
fn a_worker_registering_again_gets_its_unfinished_work_again() {
    let mut s = SchedulerState::new("s".into(), default_config());
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let out = get(&mut s, b"c1", 1, &chain(2), "c1", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["c0", "c1"]);
    // It comes back on a new route (its report of c0 was lost with the old connection),
    // saying it holds c0: c0 is recorded, c1 is sent again.
    let mut out = Outbox::default();
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: "tcp://w1:1".into(),
        pid: 1,
        nthreads: 1,
        functions: FUNCS.iter().map(|f| f.to_string()).collect(),
        has: vec![info(&s, "c0", 8)],
    };
    s.on_worker_message(b"w1-again", msg, t0, &mut out);
    s.on_flushed(&mut out);
    assert_eq!(s.workers(t0).len(), 1);
    assert_eq!(compute_keys(&out, b"w1-again"), vec!["c1"]);
    assert_eq!(s.who_has("c0").len(), 1);
}

/// A tree's tasks are each sent once (no task sent again behind its inputs' backs).
#[test]
fn every_task_of_a_tree_is_sent_once() {
    let mut sim = Sim::with(default_config());
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    let mut g = Graph::new();
    let mut level: Vec<String> = (0..512).map(|i| format!("l{i}")).collect();
    for (i, k) in level.iter().enumerate() {
        g.insert(k.as_str(), task("inc", (i as i64,)));
    }
    let mut n = 0;
    while level.len() > 1 {
        let mut next = Vec::new();
        for pair in level.chunks(2) {
            let k = format!("a{n}");
            n += 1;
            g.insert(
                k.as_str(),
                task("add", (key(pair[0].as_str()), key(pair[1].as_str()))),
            );
            next.push(k);
        }
        level = next;
    }
    let root = level[0].clone();
    sim.get(b"c1", 1, &g, root.as_str(), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1).len(), 1);
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (_, k) in &sim.dispatched {
        *counts.entry(k.clone()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(counts.len(), 1023);
}
