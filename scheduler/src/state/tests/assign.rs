//! Tests of placement (see `assign.rs`): data locality, load, saturation, and the order tasks
//! run in.

use super::*;

#[test]
fn data_locality_prefers_the_holder_of_big_inputs() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    // small goes to w1, big to w2 (least loaded); keep both.
    let mut g = Graph::new();
    g.insert("small", task("inc", (1,)));
    g.insert("big", task("big", (1_000_000,)));
    let out = get(&mut s, b"c1", 1, &g, keys_of(&["small", "big"]), true, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["small"]);
    assert_eq!(compute_keys(&out, b"w2"), vec!["big"]);
    report(&mut s, b"w1", vec![done("small", Value::Int(2))], t0);
    let big = Value::Bytes(vec![7; 1_000_000].into());
    let out = report(&mut s, b"w2", vec![done("big", big)], t0);
    assert!(result_of(&out, b"c1", 1).is_some());
    assert_eq!(s.who_has("big"), vec![addr(b"w2")]);
    assert_eq!(s.who_has("small"), vec![addr(b"w1")]);

    // Both workers are idle; a task reading big goes to w2 (not to w1, the tie-break), and so
    // does one reading both (1 MB beats 8 bytes).
    let mut g = Graph::new();
    g.insert("one", task("sum", (list(vec![key("big")]),)));
    let out = get(&mut s, b"c1", 2, &g, "one", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["one"]);
    assert!(task_of(&out, b"w2", "one").who_has.is_empty());
    report(&mut s, b"w2", vec![done("one", Value::Int(0))], t0);
    let mut g = Graph::new();
    g.insert("both", task("add", (key("small"), key("big"))));
    let out = get(&mut s, b"c1", 3, &g, "both", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["both"]);
    assert_eq!(
        listed(&task_of(&out, b"w2", "both").who_has),
        vec![("small".to_string(), vec![addr(b"w1")])],
        "only the input w2 lacks is listed, with its holder"
    );
}

#[test]
fn locality_yields_when_the_holder_is_full() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("pad", task("inc", (0,)));
    g.insert("big", task("big", (1_000_000,)));
    let out = get(&mut s, b"c1", 1, &g, keys_of(&["pad", "big"]), true, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["big"]);
    report(&mut s, b"w1", vec![done("pad", Value::Int(1))], t0);
    report(
        &mut s,
        b"w2",
        vec![done("big", Value::Bytes(vec![0; 1_000_000].into()))],
        t0,
    );
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("u{i}"), task("add", (key("big"), i)));
    }
    let out = get(
        &mut s,
        b"c1",
        2,
        &g,
        keys_of(&["u0", "u1", "u2", "u3"]),
        false,
        t0,
    );
    assert_eq!(
        computes(&out, b"w2").len(),
        2,
        "w2 has 2 slots, filled first"
    );
    assert_eq!(
        computes(&out, b"w1").len(),
        2,
        "the rest go to w1 rather than wait"
    );
    for t in computes(&out, b"w1") {
        assert_eq!(
            listed(&t.who_has),
            vec![("big".to_string(), vec![addr(b"w2")])]
        );
    }
}

#[test]
fn least_loaded_worker_gets_the_next_task() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    register(&mut s, b"w2", FUNCS, 4, t0);
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(10),
        {
            let k: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
            Keys::from(k)
        },
        false,
        t0,
    );
    // Capacity: w1 2, w2 8 -- all 10 go out, balanced by load per thread.
    assert_eq!(computes(&out, b"w1").len(), 2);
    assert_eq!(computes(&out, b"w2").len(), 8);
}

#[test]
fn saturation_limits_tasks_in_flight() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let names: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(5),
        Keys::from(names.clone()),
        false,
        t0,
    );
    let sent = compute_keys(&out, b"w1");
    assert_eq!(sent.len(), 2, "nthreads 1 x saturation 2");
    assert_eq!(s.workers(t0)[0].processing, 2);
    let mut all = sent.clone();
    let mut in_flight = sent;
    while !in_flight.is_empty() {
        let k = in_flight.remove(0);
        let i: i64 = k[1..].parse().unwrap();
        let out = report(&mut s, b"w1", vec![done(&k, Value::Int(i + 1))], t0);
        let more = compute_keys(&out, b"w1");
        assert!(more.len() <= 1, "one finished, at most one more: {more:?}");
        in_flight.extend(more.iter().cloned());
        all.extend(more);
        assert!(in_flight.len() <= 2);
        assert_eq!(s.workers(t0)[0].processing as usize, in_flight.len());
        if in_flight.is_empty() {
            let r = result_of(&out, b"c1", 1).expect("all done");
            assert_eq!(r.len(), 5);
        }
    }
    all.sort();
    assert_eq!(all, names, "each task sent exactly once");
}

#[test]
fn saturation_scales_with_threads_and_config() {
    let mut s = state_with(Config {
        saturation: 3,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 2, t0);
    let names: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let out = get(
        &mut s,
        b"c1",
        1,
        &independent(20),
        Keys::from(names),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"w1").len(), 6);
}

#[test]
fn computations_run_in_submission_order_and_depth_first() {
    let mut s = state_with(Config {
        saturation: 1,
        ..test_config()
    });
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("a1", task("inc", (1,)));
    g.insert("a2", task("inc", (key("a1"),)));
    g.insert("b1", task("inc", (2,)));
    g.insert("b2", task("inc", (key("b1"),)));
    g.insert("total", task("add", (key("a2"), key("b2"))));
    let mut order = Vec::new();
    let out = get(&mut s, b"c1", 1, &g, "total", false, t0);
    let mut g2 = Graph::new();
    g2.insert("later", task("inc", (0,)));
    let mut next = compute_keys(&out, b"w1");
    let out = get(&mut s, b"c2", 2, &g2, "later", false, t0);
    assert!(out.compute.is_empty(), "w1 is full");
    while let Some(k) = next.pop() {
        order.push(k.clone());
        let out = report(&mut s, b"w1", vec![done(&k, Value::Int(1))], t0);
        next = compute_keys(&out, b"w1");
        assert!(next.len() <= 1);
    }
    assert_eq!(order, vec!["a1", "a2", "b1", "b2", "total", "later"]);
}

#[test]
fn idle_worker_is_not_starved_by_a_queue_it_cannot_serve() {
    // 2,000 `special` tasks that only the busy wb can run come first; then one `inc` that the
    // idle wa can run. wa should get it now, not after most special tasks are done.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["special"], 1, t0);
    register(&mut s, b"wa", &["inc"], 1, t0);
    let mut g = Graph::new();
    let mut keys = Vec::new();
    for i in 0..2000 {
        g.insert(format!("s{i:04}"), task("special", (i,)));
        keys.push(format!("s{i:04}"));
    }
    g.insert("plain", task("inc", (1,)));
    keys.push("plain".to_string());
    let out = get(&mut s, b"c1", 1, &g, Keys::from(keys), false, t0);
    assert_eq!(computes(&out, b"wb").len(), 2);
    assert_eq!(compute_keys(&out, b"wa"), vec!["plain"]);
}
