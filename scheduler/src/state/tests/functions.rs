//! Tests of functions (see `functions.rs`): tasks go only to workers offering their functions,
//! and a task no registered worker can run waits for one, for a bounded time.

use super::*;

#[test]
fn task_goes_only_to_workers_with_its_function() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["add", "inc", "special"], 4, t0);
    register(&mut s, b"wa", &["add", "inc"], 4, t0);
    let mut g = Graph::new();
    for i in 0..6 {
        g.insert(format!("s{i}"), task("special", (i,)));
    }
    let keys: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let out = get(&mut s, b"c1", 1, &g, Keys::from(keys), false, t0);
    assert!(
        computes(&out, b"wa").is_empty(),
        "wa lacks special: {out:?}"
    );
    assert_eq!(computes(&out, b"wb").len(), 6);
    // Even a nested call counts: inc(special(1)) can only run on wb.
    let mut g = Graph::new();
    g.insert("n", task("inc", (task("special", (1,)),)));
    g.insert("plain", task("inc", (1,)));
    let out = get(&mut s, b"c1", 2, &g, keys_of(&["n", "plain"]), false, t0);
    assert!(!compute_keys(&out, b"wa").contains(&"n".to_string()));
    // wb has 8 slots and 6 are used: n fits there.
    assert!(compute_keys(&out, b"wb").contains(&"n".to_string()));
}

#[test]
fn tasks_wait_for_the_worker_with_their_function() {
    // wb (the only worker with `special`) is full: special tasks wait for it rather than go
    // to the idle wa.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wb", &["special"], 1, t0);
    register(&mut s, b"wa", &["add", "inc"], 8, t0);
    let mut g = Graph::new();
    for i in 0..4 {
        g.insert(format!("s{i}"), task("special", (i,)));
    }
    let out = get(
        &mut s,
        b"c1",
        1,
        &g,
        keys_of(&["s0", "s1", "s2", "s3"]),
        false,
        t0,
    );
    assert_eq!(computes(&out, b"wb").len(), 2, "saturation 2 x 1 thread");
    assert!(computes(&out, b"wa").is_empty());
    let first = compute_keys(&out, b"wb")[0].clone();
    let out = report(&mut s, b"wb", vec![done(&first, Value::Int(1))], t0);
    assert_eq!(computes(&out, b"wb").len(), 1);
    assert!(computes(&out, b"wa").is_empty());
}

/// A task whose function went away with its only worker waits for a worker that offers it
/// (as a graph waits for workers), for `no_workers_timeout`; then the computations waiting
/// for it fail with `unknown_function`.
#[test]
fn function_lost_with_its_only_worker_fails_the_task_in_time() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", &["add", "inc"], 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    g.insert("s", task("special", (1,)));
    let out = get(&mut s, b"c1", 1, &g, "s", false, t0);
    assert_eq!(compute_keys(&out, b"wb"), vec!["s"]);
    let out = send(
        &mut s,
        b"wb",
        FromWorker::Goodbye {
            worker_id: "id-wb".into(),
        },
        t0,
    );
    assert!(error_of(&out, b"c1", 1).is_none(), "it waits: {out:?}");
    assert!(out.compute.is_empty());
    heartbeat(&mut s, b"wa", t0 + secs(5));
    assert!(error_of(&tick(&mut s, t0 + secs(5)), b"c1", 1).is_none());
    heartbeat(&mut s, b"wa", t0 + secs(36));
    let out = tick(&mut s, t0 + secs(36));
    let e = error_of(&out, b"c1", 1).expect("nobody can run s any more");
    assert_eq!(e.kind, "unknown_function");
    assert_eq!(e.function.as_deref(), Some("special"));
    assert_eq!(e.key.as_deref(), Some("s"));
    assert!(out.compute.is_empty());
    assert_eq!(s.task_count(), 0);
}

/// A stalled task runs as soon as a worker offering its function registers.
#[test]
fn a_task_waiting_for_its_function_runs_when_a_worker_offers_it() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", &["add", "inc"], 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    g.insert("s", task("special", (1,)));
    get(&mut s, b"c1", 1, &g, "s", false, t0);
    send(
        &mut s,
        b"wb",
        FromWorker::Goodbye {
            worker_id: "id-wb".into(),
        },
        t0,
    );
    heartbeat(&mut s, b"wa", t0 + secs(20));
    assert!(error_of(&tick(&mut s, t0 + secs(20)), b"c1", 1).is_none());
    let out = register(&mut s, b"wc", &["special"], 1, t0 + secs(21));
    assert_eq!(compute_keys(&out, b"wc"), vec!["s"]);
    let out = report(&mut s, b"wc", vec![done("s", Value::Int(9))], t0 + secs(22));
    assert_eq!(result_of(&out, b"c1", 1), Some(ints(&[("s", 9)])));
}
