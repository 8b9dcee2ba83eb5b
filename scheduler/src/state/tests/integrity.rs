//! Tests of what keeps answers right and waits bounded: definition hashes (`key_conflict`,
//! stale copies), trusting only the worker a task is assigned to, adopting what workers hold
//! after a restart, tasks waiting for a worker that can run them, bounded signatures, and the
//! checks of unreported tasks and unanswered requests.

use super::*;
use crate::state::functions::SIGNATURES_KEPT;
use zask_core::graph::{key, task};
use zask_core::protocol::TaskFailed;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn state() -> SchedulerState {
    SchedulerState::new(
        "integrity-test".to_string(),
        Config {
            heartbeat_timeout: secs(1000),
            queue_dependents: false,
            queue_budget: Duration::ZERO,
            ..Config::default()
        },
    )
}

fn send(s: &mut SchedulerState, route: &[u8], msg: FromWorker, now: Instant) -> Outbox {
    let msg = super::with_hashes(s, msg);
    let mut out = Outbox::default();
    s.on_worker_message(route, msg, now, &mut out);
    s.on_flushed(&mut out);
    out
}

fn tick(s: &mut SchedulerState, now: Instant) -> Outbox {
    let mut out = Outbox::default();
    s.on_tick(now, &mut out);
    s.on_flushed(&mut out);
    out
}

fn error_of(out: &Outbox, client: &[u8], request: u64) -> Option<ErrorInfo> {
    out.to_clients.iter().find_map(|(c, m)| match m {
        ToClient::Error { request: r, error } if c == client && *r == request => {
            Some(error.clone())
        }
        _ => None,
    })
}

fn value_of(out: &Outbox, client: &[u8], request: u64, key: &str) -> Option<Value> {
    out.to_clients.iter().find_map(|(c, m)| match m {
        ToClient::Result { request: r, items } if c == client && *r == request => items
            .iter()
            .find(|i| i.key == key)
            .map(|i| i.data.value.clone()),
        _ => None,
    })
}

fn released(out: &Outbox, route: &[u8]) -> Vec<String> {
    out.release.get(route).cloned().unwrap_or_default()
}

/// Of workers w1 and w2, the one `out` gives tasks to, and the other.
fn placement(out: &Outbox) -> (&'static [u8], &'static [u8]) {
    if compute_keys(out, b"w1").is_empty() {
        (b"w2", b"w1")
    } else {
        (b"w1", b"w2")
    }
}

/// The request id of the first `get_data` in `out`.
fn gather_request(out: &Outbox) -> Option<u64> {
    out.to_workers.iter().find_map(|(_, m)| match m {
        ToWorker::GetData(GetDataBody { request, .. }) => Some(*request),
        _ => None,
    })
}

/// A worker's answer to `get_data` `request`: `key` with `value`.
fn data_reply(request: u64, key: &str, value: Value) -> FromWorker {
    FromWorker::Data(DataBody {
        request,
        items: vec![KeyData::inline(key.into(), value)],
        missing: Vec::new(),
    })
}

/// The task checks sent to w1 while it heartbeats, and the scheduler ticks, once a second
/// for `seconds` from `t0`.
fn checks_over(
    s: &mut SchedulerState,
    t0: Instant,
    seconds: u64,
) -> Vec<(u64, Vec<(String, DefHash)>)> {
    let mut checks = Vec::new();
    for t in 1..=seconds {
        heartbeat(s, b"w1", t0 + secs(t));
        let out = tick(s, t0 + secs(t));
        checks.extend(out.to_workers.into_iter().filter_map(|(_, m)| match m {
            ToWorker::CheckTasks { request, keys } => Some((request, keys)),
            _ => None,
        }));
    }
    checks
}

/// `{a: n, b: mul(a, 10), c: add(b, 1)}`: the graph six clients sent at once with the same
/// key names and different `a`.
fn abc(n: i64) -> Graph {
    let mut g = Graph::new();
    g.insert("a", n);
    g.insert("b", task("mul", (key("a"), 10)));
    g.insert("c", task("add", (key("b"), 1)));
    g
}

const MATH: &[&str] = &["add", "mul", "inc", "sum"];

#[test]
fn the_same_key_defined_differently_is_a_conflict_while_it_is_computed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 4, t0);
    get(&mut s, b"c0", 1, &abc(0), "c", false, t0);
    // The same definition shares the work: nothing new is sent.
    let out = get(&mut s, b"c1", 1, &abc(0), "c", false, t0);
    assert!(error_of(&out, b"c1", 1).is_none(), "{out:?}");
    assert!(out.compute.is_empty(), "{out:?}");
    // Another `a` under the same names: refused, naming the first key that differs.
    let out = get(&mut s, b"c4", 1, &abc(4), "c", false, t0);
    let e = error_of(&out, b"c4", 1).expect("a conflict");
    assert_eq!(e.kind, "key_conflict");
    assert_eq!(e.key.as_deref(), Some("a"));
    assert!(e.message.contains("another key"), "{e:?}");
    // `c` alone defined the same way over a different `b` is a conflict too (hashes cover
    // inputs), even though c's own node is identical.
    let mut g = abc(0);
    g.insert("b", task("mul", (key("a"), 11)));
    let out = get(&mut s, b"c5", 1, &g, "c", false, t0);
    assert_eq!(error_of(&out, b"c5", 1).unwrap().key.as_deref(), Some("b"));
    // Nothing changed for the first computation.
    report(&mut s, b"w1", vec![done("a", Value::Int(0))], t0);
    let out = report(&mut s, b"w1", vec![done("b", Value::Int(0))], t0);
    assert!(out.to_clients.is_empty());
    let out = report(&mut s, b"w1", vec![done("c", Value::Int(1))], t0);
    assert_eq!(value_of(&out, b"c0", 1, "c"), Some(Value::Int(1)));
    assert_eq!(value_of(&out, b"c1", 1, "c"), Some(Value::Int(1)));
}

#[test]
fn a_held_key_defined_differently_is_a_conflict_until_released() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 4, t0);
    let mut v1 = Graph::new();
    v1.insert("x", task("inc", (1,)));
    get(&mut s, b"c1", 1, &v1, "x", true, t0);
    report(&mut s, b"w1", vec![done("x", Value::Int(2))], t0);
    let mut v2 = Graph::new();
    v2.insert("x", task("inc", (5,)));
    v2.insert("y", task("inc", (key("x"),)));
    let out = get(&mut s, b"c2", 1, &v2, "y", false, t0);
    let e = error_of(&out, b"c2", 1).expect("x is held with another definition");
    assert_eq!(
        (e.kind.as_str(), e.key.as_deref()),
        ("key_conflict", Some("x"))
    );
    assert!(e.message.contains("release"), "{e:?}");
    // Released: x may be defined anew, and is computed from the new definition.
    let mut out = Outbox::default();
    s.on_release(b"c1", 2, vec!["x".into()], &mut out);
    s.on_flushed(&mut out);
    let out = get(&mut s, b"c2", 2, &v2, "y", false, t0);
    assert!(error_of(&out, b"c2", 2).is_none(), "{out:?}");
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
}

#[test]
fn a_literal_matches_a_scattered_value_and_scatters_do_not_overwrite() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("x".into(), Value::Int(5))], &mut out);
    report(&mut s, b"w1", vec![done("x", Value::Int(5))], t0);
    // The same value written in a graph is the same definition.
    let mut g = Graph::new();
    g.insert("x", 5);
    g.insert("y", task("inc", (key("x"),)));
    let out = get(&mut s, b"c2", 1, &g, "y", false, t0);
    assert!(error_of(&out, b"c2", 1).is_none(), "{out:?}");
    assert_eq!(compute_keys(&out, b"w1"), vec!["y"]);
    // Another value under the same key, in a graph or a scatter: refused.
    g.insert("x", 6);
    let out = get(&mut s, b"c2", 2, &g, "y", false, t0);
    assert_eq!(error_of(&out, b"c2", 2).unwrap().kind, "key_conflict");
    let mut out = Outbox::default();
    s.on_scatter(b"c3", 1, vec![("x".into(), Value::Int(6))], &mut out);
    assert_eq!(error_of(&out, b"c3", 1).unwrap().kind, "key_conflict");
    let mut out = Outbox::default();
    s.on_scatter(b"c3", 2, vec![("x".into(), Value::Int(5))], &mut out);
    assert!(matches!(
        out.to_clients.last(),
        Some((_, ToClient::Scattered { .. }))
    ));
}

#[test]
fn only_the_assigned_worker_is_believed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    register(&mut s, b"w2", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (4,)));
    let out = get(&mut s, b"c1", 1, &g, "x", false, t0);
    let (on, other) = placement(&out);
    // A result of 777 from the worker that was not given x: ignored, and it drops it.
    let out = report(&mut s, other, vec![done("x", Value::Int(777))], t0);
    assert!(out.to_clients.is_empty(), "{out:?}");
    assert_eq!(released(&out, other), vec!["x"]);
    // A failure from it: ignored too.
    let f = TaskFailed {
        key: "x".into(),
        hash: None,
        kind: "task_failed".into(),
        function: Some("inc".into()),
        message: "made up".into(),
        missing: None,
    };
    let msg = FromWorker::Report(ReportBody {
        done: Vec::new(),
        failed: vec![f],
        acquired: Vec::new(),
    });
    let out = send(&mut s, other, msg, t0);
    assert!(out.to_clients.is_empty(), "{out:?}");
    // A claim to have fetched x, which it was never asked to: ignored.
    let msg = FromWorker::Report(ReportBody {
        done: Vec::new(),
        failed: Vec::new(),
        acquired: vec![info(&s, "x", 8)],
    });
    send(&mut s, other, msg, t0);
    assert!(s.who_has("x").is_empty());
    // The assigned worker's result is the answer.
    let out = report(&mut s, on, vec![done("x", Value::Int(5))], t0);
    assert_eq!(value_of(&out, b"c1", 1, "x"), Some(Value::Int(5)));
}

#[test]
fn a_data_reply_counts_only_from_the_worker_asked_and_for_the_keys_asked() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    register(&mut s, b"w2", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (4,)));
    let out = get(&mut s, b"c1", 1, &g, "x", true, t0);
    let (on, other) = placement(&out);
    report(&mut s, on, vec![done("x", Value::Int(5))], t0);
    let out = get(&mut s, b"c1", 2, &Graph::new(), "x", false, t0);
    let request = gather_request(&out).expect("x is gathered");
    let forged = data_reply(request, "x", Value::Int(777));
    let out = send(&mut s, other, forged, t0);
    assert!(out.to_clients.is_empty(), "{out:?}");
    let extra = FromWorker::Data(DataBody {
        request,
        items: vec![
            KeyData::inline("x".into(), Value::Int(5)),
            KeyData::inline("y".into(), Value::Int(1)),
        ],
        missing: Vec::new(),
    });
    let out = send(&mut s, on, extra, t0);
    assert_eq!(value_of(&out, b"c1", 2, "x"), Some(Value::Int(5)));
}

#[test]
fn a_lost_kept_key_waits_for_a_worker_and_its_holder_revives_it() {
    // k = special(1) is kept on wb, the only worker offering `special`. wb dies: nobody can
    // recompute k. It must wait (not fail for good), and when wb comes back with its copy
    // (same definition) the key is held again and a client gets it.
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", MATH, 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    g.insert("k", task("special", (1,)));
    get(&mut s, b"c1", 1, &g, "k", true, t0);
    report(&mut s, b"wb", vec![done("k", Value::Int(42))], t0);
    let hash = hash_in(&s, "k");
    send(
        &mut s,
        b"wb",
        FromWorker::Goodbye {
            worker_id: "id-wb".into(),
        },
        t0,
    );
    // Long after any timeout, k is still known, waiting.
    heartbeat(&mut s, b"wa", t0 + secs(100));
    tick(&mut s, t0 + secs(100));
    assert_eq!(s.task_count(), 1);
    // wb returns (a new process, same store) holding k.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-wb-again".into(),
        address: "tcp://wb:9000".into(),
        pid: 2,
        nthreads: 1,
        functions: vec!["special".into()],
        has: vec![KeyInfo {
            key: "k".into(),
            nbytes: 8,
            hash,
        }],
    };
    let out = send(&mut s, b"wb2", msg, t0 + secs(101));
    assert!(out.compute.is_empty(), "k is not recomputed: {out:?}");
    assert_eq!(s.who_has("k"), vec!["tcp://wb:9000".to_string()]);
    // A get of k (even one that redefines nothing) is answered.
    let out = get(&mut s, b"c2", 1, &g, "k", false, t0 + secs(101));
    assert!(error_of(&out, b"c2", 1).is_none(), "{out:?}");
}

#[test]
fn a_lost_key_is_not_recomputed_from_an_input_defined_anew() {
    // y = inc(x) is kept; x is released. x is then defined anew (allowed: nobody has it).
    // y's only holder dies: recomputing y from the new x would give a wrong value.
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("x", 1);
    g.insert("y", task("inc", (key("x"),)));
    sim.get(b"c1", 1, &g, "y", true);
    sim.run();
    assert_eq!(sim.s.task_count(), 1, "x was released");
    let mut g2 = Graph::new();
    g2.insert("x", 100);
    sim.get(b"c2", 1, &g2, "x", true);
    sim.run();
    sim.worker(b"w2", FUNCS, 1);
    let w1_holds_y = sim.s.who_has("y");
    let (dead, alive): (&[u8], &[u8]) = if w1_holds_y.iter().any(|a| a.contains("w1")) {
        (b"w1", b"w2")
    } else {
        (b"w2", b"w1")
    };
    sim.kill(dead);
    heartbeat(&mut sim.s, alive, t0 + secs(5));
    let out = tick(&mut sim.s, t0 + secs(11));
    sim.absorb(out);
    sim.run();
    sim.get(b"c1", 2, &Graph::new(), "y", false);
    sim.run();
    let e = sim.error(b"c1", 2);
    assert!(e.kind == "lost" || e.kind == "missing_key", "{e:?}");
    assert!(
        sim.dispatched.iter().filter(|(_, k)| k == "y").count() == 1,
        "y was not computed again from the new x"
    );
}

#[test]
fn adopted_values_give_way_to_a_new_definition() {
    let mut s = state();
    let t0 = Instant::now();
    // A worker registers with a value the (restarted) scheduler does not know.
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: "tcp://w1:9000".into(),
        pid: 1,
        nthreads: 1,
        functions: MATH.iter().map(|f| f.to_string()).collect(),
        has: vec![KeyInfo {
            key: "b".into(),
            nbytes: 8,
            hash: DefHash::of_value(&Value::Int(20)),
        }],
    };
    send(&mut s, b"w1", msg, t0);
    assert_eq!(s.task_count(), 1);
    // A graph that defines b otherwise replaces it (it has no users yet).
    let out = get(&mut s, b"c1", 1, &abc(4), "b", false, t0);
    assert!(error_of(&out, b"c1", 1).is_none(), "{out:?}");
    assert_eq!(released(&out, b"w1"), vec!["b"]);
    assert_eq!(compute_keys(&out, b"w1"), vec!["a"]);
}

#[test]
fn an_adopted_value_gathered_is_kept_until_released() {
    let mut s = state();
    let t0 = Instant::now();
    let hash = DefHash::of_value(&Value::Int(5));
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: "tcp://w1:9000".into(),
        pid: 1,
        nthreads: 1,
        functions: MATH.iter().map(|f| f.to_string()).collect(),
        has: vec![KeyInfo {
            key: "scattered".into(),
            nbytes: 8,
            hash,
        }],
    };
    send(&mut s, b"w1", msg, t0);
    let out = get(&mut s, b"c1", 1, &Graph::new(), "scattered", false, t0);
    let request = gather_request(&out).expect("gathered");
    let data = data_reply(request, "scattered", Value::Int(5));
    let out = send(&mut s, b"w1", data, t0);
    assert_eq!(value_of(&out, b"c1", 1, "scattered"), Some(Value::Int(5)));
    // Claimed: past the grace period it is still held.
    heartbeat(&mut s, b"w1", t0 + secs(300));
    let out = tick(&mut s, t0 + secs(300));
    assert!(released(&out, b"w1").is_empty(), "{out:?}");
    assert_eq!(s.who_has("scattered"), vec!["tcp://w1:9000".to_string()]);
}

#[test]
fn the_signature_table_stays_bounded() {
    let mut s = state();
    let t0 = Instant::now();
    let functions: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let names: Vec<&str> = functions.iter().map(String::as_str).collect();
    register(&mut s, b"w1", &names, 1, t0);
    // 3,000 distinct sets of functions, each computed and released.
    for n in 0..3_000u64 {
        let mut g = Graph::new();
        let (a, b) = ((n % 60) as usize, ((n / 60) % 60) as usize);
        g.insert(
            "k",
            task(&functions[a], (task(&functions[b], (n as i64,)), n as i64)),
        );
        let out = get(&mut s, b"c1", n, &g, "k", false, t0);
        assert_eq!(compute_keys(&out, b"w1"), vec!["k"]);
        report(&mut s, b"w1", vec![done("k", Value::Int(1))], t0);
        assert_eq!(s.task_count(), 0);
    }
    assert!(
        s.signatures.len() <= SIGNATURES_KEPT,
        "{} signatures kept",
        s.signatures.len()
    );
    assert!(s.signature_ids.len() <= SIGNATURES_KEPT);
}

#[test]
fn higher_order_tasks_go_only_where_the_function_they_name_is() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"plain", &["map", "inc"], 1, t0);
    register(&mut s, b"custom", &["map", "word_count"], 1, t0);
    for n in 0..4 {
        let mut g = Graph::new();
        g.insert(format!("m{n}"), task("map", ("word_count", vec!["a b"])));
        let out = get(&mut s, b"c1", n, &g, format!("m{n}").as_str(), false, t0);
        assert!(compute_keys(&out, b"plain").is_empty(), "{out:?}");
        assert_eq!(compute_keys(&out, b"custom"), vec![format!("m{n}")]);
        report(
            &mut s,
            b"custom",
            vec![done(&format!("m{n}"), Value::Int(1))],
            t0,
        );
    }
    // Named but offered by nobody: refused at submission, naming it.
    let mut g = Graph::new();
    g.insert("m", task("map", ("nope", vec![1])));
    let out = get(&mut s, b"c1", 9, &g, "m", false, t0);
    let e = error_of(&out, b"c1", 9).expect("refused");
    assert_eq!(
        (e.kind.as_str(), e.function.as_deref()),
        ("unknown_function", Some("nope"))
    );
}

#[test]
fn a_task_its_worker_does_not_know_is_assigned_again() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    let out = get(&mut s, b"c1", 1, &g, "x", false, t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"]);
    // The worker heartbeats but never reports x (its compute was lost).
    let checks = checks_over(&mut s, t0, 31);
    assert_eq!(checks.len(), 1, "{checks:?}");
    let x_hash = s.task_ids.get("x").and_then(|&t| s.hash_of(t)).unwrap();
    assert_eq!(
        checks[0].1,
        vec![("x".to_string(), x_hash)],
        "asked with its hash"
    );
    let answer = FromWorker::TaskStatus {
        request: checks[0].0,
        unknown: vec!["x".into()],
    };
    let out = send(&mut s, b"w1", answer, t0 + secs(31));
    assert_eq!(compute_keys(&out, b"w1"), vec!["x"], "sent again");
    let out = report(&mut s, b"w1", vec![done("x", Value::Int(2))], t0 + secs(32));
    assert_eq!(value_of(&out, b"c1", 1, "x"), Some(Value::Int(2)));
}

/// A scattered value whose `put_data` was lost: the check names it with the hash it was
/// scattered with, and a worker that does not know it makes the scatter fail (not hang).
#[test]
fn a_scattered_value_that_never_arrived_is_checked_and_fails() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("sv".into(), Value::Int(5))], &mut out);
    assert!(out.put_data.contains_key(b"w1".as_slice()), "{out:?}");
    let checks = checks_over(&mut s, t0, 31);
    assert_eq!(checks.len(), 1, "{checks:?}");
    let hash = s.task_ids.get("sv").and_then(|&t| s.hash_of(t)).unwrap();
    assert_eq!(checks[0].1, vec![("sv".to_string(), hash)]);
    let answer = FromWorker::TaskStatus {
        request: checks[0].0,
        unknown: vec!["sv".into()],
    };
    let out = send(&mut s, b"w1", answer, t0 + secs(31));
    let e = error_of(&out, b"c1", 1).expect("the scatter fails");
    assert_eq!(e.kind, "lost", "{e:?}");
    // Nothing of it is left assigned to the worker (its slot is free again).
    assert_eq!(s.task_count(), 0);
    assert_eq!(s.workers(t0)[0].processing, 0, "{:?}", s.workers(t0));
}

#[test]
fn a_worker_that_does_not_answer_a_check_is_removed() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    register(&mut s, b"w2", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    let out = get(&mut s, b"c1", 1, &g, "x", false, t0);
    let (on, other) = placement(&out);
    let mut moved = false;
    for t in 1..=45 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        if compute_keys(&out, other) == vec!["x"] {
            moved = true;
            break;
        }
    }
    assert!(
        moved,
        "x moves to the other worker once {on:?} does not answer"
    );
    assert_eq!(s.workers(t0).len(), 1);
}

#[test]
fn a_gather_not_answered_in_time_is_asked_elsewhere() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    get(&mut s, b"c1", 1, &g, "x", true, t0);
    report(&mut s, b"w1", vec![done("x", Value::Int(2))], t0);
    // A second holder, and a gather that the first never answers.
    let mut msg = super::register_msg(b"w2", MATH, 1);
    if let FromWorker::Register { has, .. } = &mut msg {
        has.push(info(&s, "x", 8));
    }
    send(&mut s, b"w2", msg, t0);
    let out = get(&mut s, b"c1", 2, &Graph::new(), "x", false, t0);
    let (route, _) = out
        .to_workers
        .iter()
        .find(|(_, m)| matches!(m, ToWorker::GetData(GetDataBody { .. })))
        .cloned()
        .expect("a gather");
    let mut again = None;
    for t in 1..=12 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        again = again.or(out.to_workers.into_iter().find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, .. }) => Some((r, request)),
            _ => None,
        }));
    }
    let (other, _) = again.expect("asked of the other holder");
    assert_ne!(other, route);
    assert_eq!(
        s.who_has("x").len(),
        1,
        "the silent holder's copy is dropped"
    );
}

/// Tasks stalled when their function's only worker left, then queued again when a worker
/// offering it registered, are not failed while they wait their turn on it.
#[test]
fn tasks_waiting_their_turn_on_a_new_capable_worker_do_not_fail() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"wa", &["add", "inc"], 1, t0);
    register(&mut s, b"wb", &["special"], 1, t0);
    let mut g = Graph::new();
    let mut names = Vec::new();
    for i in 0..10 {
        g.insert(format!("s{i}").as_str(), task("special", (i as i64,)));
        names.push(format!("s{i}"));
    }
    let keys = Keys::Many(names.iter().map(|k| Keys::One(k.clone())).collect());
    get(&mut s, b"c1", 1, &g, keys, false, t0);
    let goodbye = FromWorker::Goodbye {
        worker_id: "id-wb".into(),
    };
    send(&mut s, b"wb", goodbye, t0);
    heartbeat(&mut s, b"wa", t0 + secs(5));
    tick(&mut s, t0 + secs(5));
    let out = register(&mut s, b"wc", &["special"], 1, t0 + secs(21));
    assert_eq!(compute_keys(&out, b"wc").len(), 2, "it fills its slots");
    heartbeat(&mut s, b"wa", t0 + secs(36));
    heartbeat(&mut s, b"wc", t0 + secs(36));
    let out = tick(&mut s, t0 + secs(36));
    assert!(error_of(&out, b"c1", 1).is_none(), "{out:?}");
    // They run in turn on it.
    let mut finished = 0;
    let mut now = t0 + secs(36);
    let mut running = compute_keys(&register(&mut s, b"wd", &[], 1, now), b"wc");
    running.extend(
        s.tasks
            .values()
            .filter(|t| t.status == TaskStatus::Processing(s.worker_by_route[&b"wc".to_vec()]))
            .map(|t| t.key.to_string()),
    );
    running.sort();
    running.dedup();
    while let Some(k) = running.pop() {
        now += secs(1);
        let out = report(&mut s, b"wc", vec![done(&k, Value::Int(1))], now);
        assert!(error_of(&out, b"c1", 1).is_none(), "{out:?}");
        running.extend(compute_keys(&out, b"wc"));
        finished += 1;
    }
    assert_eq!(finished, 10);
}

/// A worker's report of a task taken back from it, run all the same, is not taken for a new
/// definition of that key given to it since (its result is another definition's value).
#[test]
fn a_late_result_of_another_definition_is_not_taken() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", &["inc"], 1, t0);
    let mut g = Graph::new();
    g.insert("d", task("inc", (1,)));
    get(&mut s, b"c0", 1, &g, "d", true, t0);
    report(&mut s, b"w1", vec![done("d", Value::Int(2))], t0);
    register(&mut s, b"w2", &["inc", "add"], 1, t0);
    let mut g = Graph::new();
    g.insert("k", task("add", (key("d"), 1)));
    let out = get(&mut s, b"c1", 1, &g, "k", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["k"]);
    let old_k = hash_in(&s, "k");
    // w2 runs k; w1 (d's holder) leaves: k is taken back from w2, which runs it all the
    // same. Then c1 goes away: k is forgotten.
    send(
        &mut s,
        b"w1",
        FromWorker::Goodbye {
            worker_id: "id-w1".into(),
        },
        t0,
    );
    s.on_client_gone(b"c1");
    let mut out = Outbox::default();
    s.on_flushed(&mut out);
    // c2 defines k anew; it goes to w2.
    let mut g = Graph::new();
    g.insert("k", task("inc", (100,)));
    let out = get(&mut s, b"c2", 1, &g, "k", false, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["k"]);
    // w2's run of the old k ends: its report carries the old definition's hash.
    let mut old = done("k", Value::Int(3));
    old.hash = old_k;
    let out = report(&mut s, b"w2", vec![old], t0);
    assert_eq!(
        value_of(&out, b"c2", 1, "k"),
        None,
        "the old value is not the answer"
    );
    assert!(out.compute.is_empty() && out.release.is_empty(), "{out:?}");
    // The worker runs the k it was given since, and that one is the answer.
    let out = report(&mut s, b"w2", vec![done("k", Value::Int(101))], t0);
    assert_eq!(value_of(&out, b"c2", 1, "k"), Some(Value::Int(101)));
}

/// After a restart, a resubmitted graph reuses an adopted value of the same definition; the
/// graph's definition becomes its lineage, so it is recomputed (not "lost") if its holder
/// goes away.
#[test]
fn an_adopted_value_reused_by_a_graph_can_be_recomputed() {
    let mut s = state();
    let t0 = Instant::now();
    let b_hash = DefHash::combine(
        DefHash::of_node(&task("mul", (key("a"), 10))).0,
        [DefHash::of_value(&Value::Int(4))],
    );
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: "id-w1".into(),
        address: "tcp://w1:9000".into(),
        pid: 1,
        nthreads: 1,
        functions: MATH.iter().map(|f| f.to_string()).collect(),
        has: vec![KeyInfo {
            key: "b".into(),
            nbytes: 8,
            hash: b_hash,
        }],
    };
    send(&mut s, b"w1", msg, t0);
    register(&mut s, b"w2", MATH, 1, t0);
    let out = get(&mut s, b"c1", 1, &abc(4), "c", false, t0);
    assert!(error_of(&out, b"c1", 1).is_none(), "{out:?}");
    let sent: Vec<String> = out
        .compute
        .values()
        .flatten()
        .map(|t| t.key.clone())
        .collect();
    assert_eq!(sent, vec!["c"], "b is reused, a not needed");
    let out = send(
        &mut s,
        b"w1",
        FromWorker::Goodbye {
            worker_id: "id-w1".into(),
        },
        t0,
    );
    assert!(
        error_of(&out, b"c1", 1).is_none(),
        "b's definition was in the graph: {out:?}"
    );
    let mut sent: Vec<String> = out
        .compute
        .values()
        .flatten()
        .map(|t| t.key.clone())
        .collect();
    sent.sort();
    assert_eq!(sent, vec!["a"], "b is recomputed from its inputs");
}

/// With no worker left, a computation does not wait forever: it gets `no_workers` after
/// `no_workers_timeout`, unless a worker comes back in time.
#[test]
fn a_computation_left_without_workers_is_told_in_time() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    get(&mut s, b"c1", 1, &g, "x", false, t0);
    let goodbye = FromWorker::Goodbye {
        worker_id: "id-w1".into(),
    };
    send(&mut s, b"w1", goodbye, t0);
    let mut told = None;
    for i in 1..60u64 {
        s.on_client_seen(b"c1", t0 + secs(i));
        let out = tick(&mut s, t0 + secs(i));
        if let Some(e) = error_of(&out, b"c1", 1) {
            told = Some((i, e));
            break;
        }
    }
    let (after, e) = told.expect("told, not left waiting");
    assert_eq!(e.kind, "no_workers", "{e:?}");
    assert!((30..=32).contains(&after), "after {after} s");
    // A worker coming back in time picks the work up instead.
    register(&mut s, b"w1", MATH, 1, t0 + secs(100));
    let mut g = Graph::new();
    g.insert("y", task("inc", (1,)));
    get(&mut s, b"c1", 2, &g, "y", false, t0 + secs(100));
    let goodbye = FromWorker::Goodbye {
        worker_id: "id-w1".into(),
    };
    send(&mut s, b"w1", goodbye, t0 + secs(100));
    s.on_client_seen(b"c1", t0 + secs(110));
    assert!(error_of(&tick(&mut s, t0 + secs(110)), b"c1", 2).is_none());
    let out = register(&mut s, b"w2", MATH, 1, t0 + secs(111));
    assert_eq!(compute_keys(&out, b"w2"), vec!["y"]);
}

/// A slow holder of the only copy of scattered data is not given up on: its late answer to
/// the request is taken (asking again under a new request, and ignoring the old answer,
/// would never end for a value slower to send than the timeout).
#[test]
fn the_only_copy_of_scattered_data_is_waited_for_and_its_late_answer_taken() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    let mut out = Outbox::default();
    s.on_scatter(b"c1", 1, vec![("big".into(), Value::Int(5))], &mut out);
    report(&mut s, b"w1", vec![done("big", Value::Int(5))], t0);
    let out = get(&mut s, b"c1", 2, &Graph::new(), "big", false, t0);
    let request = gather_request(&out).expect("gathered");
    // (The test's answer timeout is 10 s: asked again at about 10 s, then 20 s later.)
    let mut asked_again = Vec::new();
    for t in 1..=35 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        assert!(released(&out, b"w1").is_empty(), "{out:?}");
        for (route, m) in &out.to_workers {
            if let ToWorker::GetData(GetDataBody { request: r, keys }) = m {
                assert_eq!(route, b"w1");
                assert_eq!(*r, request, "asked again under another request: {out:?}");
                assert_eq!(keys, &vec!["big".to_string()]);
                asked_again.push(t);
            }
        }
    }
    assert_eq!(asked_again.len(), 2, "asked again at {asked_again:?}");
    let gap = asked_again[1] - asked_again[0];
    assert!(
        (19..=22).contains(&gap),
        "waits twice as long: {asked_again:?}"
    );
    let late = data_reply(request, "big", Value::Int(5));
    let out = send(&mut s, b"w1", late.clone(), t0 + secs(36));
    assert_eq!(value_of(&out, b"c1", 2, "big"), Some(Value::Int(5)));
    // The answer to the same request sent again is not taken twice.
    let out = send(&mut s, b"w1", late, t0 + secs(37));
    assert_eq!(value_of(&out, b"c1", 2, "big"), None);
}

/// A large value gets time to travel: a gather is given up only after the answer timeout
/// plus a second per 8 MiB asked for.
#[test]
fn a_large_value_has_time_to_travel() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", MATH, 1, t0);
    register(&mut s, b"w2", MATH, 1, t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    let out = get(&mut s, b"c1", 1, &g, "x", true, t0);
    let (worker, _) = placement(&out);
    let mut big = done("x", Value::Int(2));
    big.nbytes = 800 << 20; // 100 s at 8 MiB/s
    report(&mut s, worker, vec![big], t0);
    let mut g = Graph::new();
    g.insert("x", task("inc", (1,)));
    let out = get(&mut s, b"c1", 2, &g, "x", false, t0 + secs(1));
    assert!(
        out.to_workers
            .iter()
            .any(|(_, m)| matches!(m, ToWorker::GetData(GetDataBody { .. }))),
        "gathered: {out:?}"
    );
    for t in 2..=105 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        assert!(
            released(&out, worker).is_empty(),
            "given up at {t} s: {out:?}"
        );
    }
    let mut given_up = false;
    for t in 106..=125 {
        heartbeat(&mut s, b"w1", t0 + secs(t));
        heartbeat(&mut s, b"w2", t0 + secs(t));
        let out = tick(&mut s, t0 + secs(t));
        given_up |= !released(&out, worker).is_empty();
    }
    assert!(given_up, "a gather unanswered for good is given up");
}
