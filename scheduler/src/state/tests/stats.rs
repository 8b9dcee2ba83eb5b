//! Statistics (see `stats.rs`): counts by state, per-function counters, the task stream, and
//! what `zask computations`, `zask cancel` and `zask keys` read.

use super::*;
use crate::state::stats::{FunctionStats, Observation, TaskCounts, MAX_FUNCTIONS};
use zask_core::protocol::{KeyStatus, SubmitItem};

fn observe(s: &mut SchedulerState, now: Instant) -> Observation {
    s.observe(now)
}

fn function<'a>(o: &'a Observation, name: &str) -> &'a FunctionStats {
    o.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no statistics for {name}: {:?}", o.functions))
}

#[test]
fn tasks_are_counted_by_state_and_function_as_they_go() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    let o = observe(&mut s, t0);
    assert_eq!(
        o.tasks,
        TaskCounts {
            waiting: 2,
            processing: 1,
            ..Default::default()
        }
    );
    let mut x = done_held("x", 8);
    x.duration_us = 50;
    report(&mut s, b"w1", vec![x], t0);
    report_failed(&mut s, b"w1", failed("y", "inc", "boom"), t0);
    let o = observe(&mut s, t0);
    assert_eq!((o.completed_total, o.failed_total), (1, 1));
    let add = function(&o, "add");
    assert_eq!((add.completed, add.failed, add.duration_sum_us), (1, 0, 50));
    // 50 µs is in the second bucket (10 < 50 <= 100).
    assert_eq!(add.buckets[1], 1, "{:?}", add.buckets);
    assert_eq!(function(&o, "inc").failed, 1);
    // The computation failed: everything is forgotten, nothing counted in any state.
    assert_eq!(o.tasks, TaskCounts::default());
    assert_eq!(s.task_count(), 0);
}

#[test]
fn finished_tasks_are_streamed_only_while_someone_observes() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &xyz(), "z", false, t0);
    report(&mut s, b"w1", vec![done_held("x", 8)], t0);
    let o = observe(&mut s, t0);
    assert!(o.finished.is_empty(), "nobody watched when x finished");
    report(&mut s, b"w1", vec![done_held("y", 8)], t0 + secs(1));
    let o = observe(&mut s, t0 + secs(3));
    assert_eq!(o.finished.len(), 1);
    let f = &o.finished[0];
    assert_eq!((&*f.worker, f.function.as_str()), ("tcp://w1:9000", "inc"));
    assert_eq!(f.ended_ago, secs(2));
    assert_eq!(f.duration, Duration::from_micros(10));
    s.stop_recording();
    report(&mut s, b"w1", vec![done("z", Value::Int(7))], t0);
    assert!(observe(&mut s, t0).finished.is_empty());
}

#[test]
fn function_names_beyond_the_bound_share_one_entry() {
    let mut s = state();
    for i in 0..MAX_FUNCTIONS + 5 {
        s.stats.name_signature(i as u32, &[format!("f{i}")]);
    }
    let o = s.observe(Instant::now());
    assert_eq!(o.functions.len(), MAX_FUNCTIONS + 1);
    assert_eq!(o.functions.last().map(|f| f.name.as_str()), Some("(other)"));
}

fn submit_one(s: &mut SchedulerState, client: &[u8], key_name: &str, now: Instant) -> Outbox {
    let mut g = Graph::new();
    g.insert(key_name, task("inc", (1,)));
    let mut out = Outbox::default();
    let item = SubmitItem {
        graph: g.into(),
        keys: vec![key_name.to_string()],
        priority: 0,
        retries: 0,
        workers: Vec::new(),
    };
    s.on_submit(client, 1, vec![item], now, &mut out);
    s.on_flushed(&mut out);
    out
}

#[test]
fn computations_list_gets_and_each_clients_futures_with_progress() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    get(&mut s, b"c1", 7, &xyz(), "z", false, t0);
    submit_one(&mut s, b"c2", "f1", t0);
    submit_one(&mut s, b"c2", "f2", t0 + secs(1));
    report(
        &mut s,
        b"w1",
        vec![done_held("x", 8), done_held("f1", 8)],
        t0,
    );
    let list = s.computations(t0 + secs(2));
    assert_eq!(list.len(), 2, "{list:?}");
    let g = &list[0];
    assert_eq!(g.id, "get-1");
    assert_eq!((g.kind.as_str(), g.client.as_str()), ("get", "6331"));
    assert_eq!(
        (g.total, g.done, g.failed, g.waiting, g.age_ms),
        (3, 1, 0, 2, 2000)
    );
    let f = &list[1];
    assert!(f.id.starts_with("futures-"), "{f:?}");
    assert_eq!((f.kind.as_str(), f.client.as_str()), ("futures", "6332"));
    assert_eq!(
        (f.total, f.done, f.failed, f.waiting, f.age_ms),
        (2, 1, 0, 1, 2000)
    );
    // f2 fails; f1's future is dropped: one future left, failed.
    report_failed(&mut s, b"w1", failed("f2", "inc", "no"), t0);
    s.on_drop_futures(b"c2", vec!["f1".to_string()]);
    let f = s.computations(t0).pop().expect("the futures");
    assert_eq!((f.total, f.done, f.failed, f.waiting), (1, 0, 1, 0));
    // Its last future dropped, the client has no computation.
    s.on_drop_futures(b"c2", vec!["f2".to_string()]);
    assert_eq!(s.computations(t0).len(), 1);
}

#[test]
fn a_computation_is_cancelled_by_its_id_from_any_client() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    get(&mut s, b"c1", 7, &xyz(), "z", false, t0);
    submit_one(&mut s, b"c2", "f1", t0);
    let ids: Vec<String> = s.computations(t0).into_iter().map(|c| c.id).collect();
    // An admin client (c3) cancels the get: its client's request fails with `cancelled`.
    let mut out = Outbox::default();
    s.on_cancel_computation(b"c3", 1, ids[0].clone(), &mut out);
    s.on_flushed(&mut out);
    let e = error_of(&out, b"c1", 7).expect("the get fails");
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(e.message.contains("zask cancel"), "{}", e.message);
    assert!(out.to_clients.iter().any(|(r, m)| r == b"c3"
        && matches!(m, ToClient::ComputationCancelled { request: 1, id } if *id == ids[0])));
    assert_eq!(
        out.cancel.get(b"w1".as_slice()).map(Vec::len),
        Some(1),
        "x stops"
    );
    // Then the futures: c2 is told each is cancelled.
    let mut out = Outbox::default();
    s.on_cancel_computation(b"c3", 2, ids[1].clone(), &mut out);
    s.on_flushed(&mut out);
    let told: Vec<(String, KeyStatus)> = out.events[&b"c2".to_vec()]
        .iter()
        .map(|e| (e.key.clone(), e.status))
        .collect();
    assert_eq!(told, vec![("f1".to_string(), KeyStatus::Cancelled)]);
    assert_eq!((s.task_count(), s.computations(t0).len()), (0, 0));
    // An id not in flight (again, or made up) is an error naming what to do.
    for (request, id) in [
        (3, ids[0].as_str()),
        (4, ids[1].as_str()),
        (5, "futures-99"),
        (6, "get-x"),
        (7, "7"),
    ] {
        let mut out = Outbox::default();
        s.on_cancel_computation(b"c3", request, id.to_string(), &mut out);
        let e = error_of(&out, b"c3", request).expect("an error");
        assert_eq!(e.kind, ErrorKind::UnknownComputation, "{id}");
        assert!(e.message.contains("zask computations"), "{}", e.message);
    }
}

#[test]
fn held_keys_are_listed_up_to_the_limit_with_sizes_and_holders() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 4, t0);
    register(&mut s, b"w2", FUNCS, 4, t0);
    let g = independent(3);
    get(
        &mut s,
        b"c1",
        1,
        &g,
        Keys::from(vec!["a0", "a1", "a2"]),
        true,
        t0,
    );
    for (w, k) in [(b"w1", "a0"), (b"w2", "a1"), (b"w1", "a2")] {
        if s.tasks[&s.task_ids[k]].status == TaskStatus::Processing(s.worker_by_route[&w[..]]) {
            report(&mut s, w, vec![done(k, Value::Int(1))], t0);
        } else {
            let other: &[u8] = if w == b"w1" { b"w2" } else { b"w1" };
            report(&mut s, other, vec![done(k, Value::Int(1))], t0);
        }
    }
    let mut out = Outbox::default();
    s.on_held_keys(b"c1", 2, 10, &mut out);
    let Some((_, ToClient::HeldKeys { total, keys, .. })) = out.to_clients.pop() else {
        panic!("no held_keys reply: {out:?}");
    };
    assert_eq!(total, 3);
    let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(names, vec!["a0", "a1", "a2"]);
    for k in &keys {
        assert_eq!(k.nbytes, Value::Int(1).nbytes());
        assert_eq!(k.holders.len(), 1, "{k:?}");
        assert_eq!(k.holders, s.who_has(&k.key));
    }
    s.on_held_keys(b"c1", 3, 2, &mut out);
    let Some((_, ToClient::HeldKeys { total, keys, .. })) = out.to_clients.pop() else {
        panic!("no held_keys reply");
    };
    assert_eq!((total, keys.len()), (3, 2), "limited to 2, 3 in all");
}

#[test]
fn a_task_lost_and_computed_again_counts_once_in_its_computations_progress() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &chain_abc(), "c", false, t0);
    report(&mut s, b"w1", vec![done_held("a", 8)], t0);
    let progress = |s: &SchedulerState| {
        let c = &s.computations(t0)[0];
        (c.done, c.waiting, c.total)
    };
    assert_eq!(progress(&s), (1, 2, 3));
    // w1 leaves with a, before b ran: a is computed again on w2.
    register(&mut s, b"w2", FUNCS, 1, t0);
    let goodbye = FromWorker::Goodbye {
        worker_id: "id-w1".to_string(),
    };
    let out = send(&mut s, b"w1", goodbye, t0);
    assert_eq!(compute_keys(&out, b"w2"), vec!["a"], "{out:?}");
    assert_eq!(progress(&s), (0, 3, 3), "a is to be computed again");
    report(&mut s, b"w2", vec![done_held("a", 8)], t0);
    assert_eq!(progress(&s), (1, 2, 3));
    report(&mut s, b"w2", vec![done_held("b", 8)], t0);
    assert_eq!(progress(&s), (2, 1, 3));
}

#[test]
fn a_failure_retried_is_not_counted_as_the_functions_failure() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    let mut g = Graph::new();
    g.insert("f", task("inc", (1,)));
    let item = SubmitItem {
        graph: g.into(),
        keys: vec!["f".to_string()],
        priority: 0,
        retries: 2,
        workers: Vec::new(),
    };
    let mut out = Outbox::default();
    s.on_submit(b"c1", 1, vec![item], t0, &mut out);
    let out = report_failed(&mut s, b"w1", failed("f", "inc", "flaky"), t0);
    assert_eq!(compute_keys(&out, b"w1"), vec!["f"], "run again");
    report(&mut s, b"w1", vec![done_held("f", 8)], t0);
    let o = s.observe(t0);
    assert_eq!((o.completed_total, o.failed_total), (1, 0));
    assert_eq!(function(&o, "inc").failed, 0);
    // A failure that is final counts.
    let mut g = Graph::new();
    g.insert("h", task("inc", (2,)));
    get(&mut s, b"c1", 2, &g, "h", false, t0);
    report_failed(&mut s, b"w1", failed("h", "inc", "no"), t0);
    let o = s.observe(t0);
    assert_eq!((o.failed_total, function(&o, "inc").failed), (1, 1));
}

#[test]
fn a_flood_of_finished_tasks_is_sampled_evenly_for_the_task_stream() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    s.observe(t0);
    for i in 0..10_000u64 {
        s.stats.task_done(
            0,
            s.worker_by_route[&b"w1"[..]],
            10,
            t0 + Duration::from_millis(i),
        );
    }
    let o = s.observe(t0 + Duration::from_secs(10));
    let n = o.finished.len();
    assert!(
        (250..=crate::state::stats::FINISHED_PER_OBSERVATION).contains(&n),
        "{n}"
    );
    // Spread over the whole flood, not its first or last part.
    let ago: Vec<Duration> = o.finished.iter().map(|f| f.ended_ago).collect();
    assert!(
        ago.iter().max() >= Some(&Duration::from_millis(9_000)),
        "{ago:?}"
    );
    assert!(
        ago.iter().min() <= Some(&Duration::from_millis(1_000)),
        "{ago:?}"
    );
    assert!(observe(&mut s, t0).finished.is_empty(), "handed over once");
}
