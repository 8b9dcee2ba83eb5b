//! Batches, chains, waits, failures, tasks given anew or taken back.

use super::*;
use crate::state::run::DISPATCH_AHEAD;
use zask_core::graph::{key, lit, task as node};

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn inc(k: &str) -> Node {
    node("inc", (key(k),))
}

#[test]
fn a_task_without_inputs_runs_and_its_value_is_sent_when_wanted() {
    let mut w = Harness::new();
    w.compute(vec![
        ComputeTask {
            send_value: true,
            ..task("a", node("inc", (lit(int(1)),)))
        },
        task("b", node("inc", (lit(int(10)),))),
    ]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a", "b"]);
    assert_eq!(reported.value("a"), Some(&int(2)));
    assert_eq!(reported.value("b"), None, "not wanted, not sent");
    assert_eq!(w.held("b"), Some((int(11), h("b"))));
    assert_eq!(w.state.task_count(), 0);
}

#[test]
fn a_batch_is_reported_in_one_message() {
    let mut w = Harness::new();
    let tasks = (0..50)
        .map(|i| task(&format!("t{i}"), node("inc", (lit(int(i)),))))
        .collect();
    w.compute(tasks);
    let (outbox, reported) = w.settle();
    assert_eq!(reported.done.len(), 50);
    let reports = outbox
        .to_scheduler
        .iter()
        .filter(|(m, _)| matches!(m, FromWorker::Report(ReportBody { .. })))
        .count();
    assert_eq!(reports, 1, "tiny tasks finished together travel together");
}

#[test]
fn a_batch_may_list_a_dependent_before_its_dependency() {
    let mut w = Harness::new();
    w.compute(vec![
        task("b", inc("a")),
        task("a", node("inc", (lit(int(1)),))),
    ]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failed, vec![]);
    assert_eq!(w.held("b"), Some((int(3), h("b"))));
}

#[test]
fn a_chain_queued_here_runs_as_one_job_link_after_link() {
    let mut w = Harness::new();
    let mut tasks = vec![task("c0", node("inc", (lit(int(0)),)))];
    for i in 1..20 {
        tasks.push(task(&format!("c{i}"), inc(&format!("c{}", i - 1))));
    }
    w.compute(tasks);
    w.state.on_tick(w.now);
    let outbox = w.state.take_outbox();
    let jobs: Vec<&Job> = outbox.jobs.iter().flatten().collect();
    assert_eq!(jobs.len(), 1, "one job carries the whole chain");
    assert_eq!(jobs[0].links(), 20);
    for batch in outbox.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    let (_, reported) = w.settle();
    assert_eq!(reported.done.len(), 20);
    assert_eq!(w.held("c19"), Some((int(20), h("c19"))));
}

#[test]
fn a_link_that_fails_fails_the_rest_of_its_chain_naming_the_input() {
    let mut w = Harness::new();
    w.compute(vec![
        task("a", node("inc", (lit(int(0)),))),
        task("b", node("fail", (key("a"),))),
        task("c", inc("b")),
        task("d", inc("c")),
    ]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a"]);
    assert_eq!(reported.failure("b").kind, "task_failed");
    assert_eq!(reported.failure("b").function.as_deref(), Some("fail"));
    let c = reported.failure("c");
    assert_eq!(
        (c.kind.as_str(), c.missing.as_deref()),
        ("missing_dependency", Some("b"))
    );
    let d = reported.failure("d");
    assert_eq!(
        (d.kind.as_str(), d.missing.as_deref()),
        ("missing_dependency", Some("c"))
    );
    assert_eq!(d.hash, Some(h("d")));
    assert_eq!(w.state.task_count(), 0);
}

#[test]
fn an_unknown_function_fails_with_its_kind() {
    let mut w = Harness::new();
    w.compute(vec![task("a", node("no_such_function", (lit(int(0)),)))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("a").kind, "unknown_function");
}

#[test]
fn an_input_neither_here_nor_listed_fails_the_task_at_once() {
    let mut w = Harness::new();
    w.compute(vec![task("b", node("add", (key("a"), key("x"))))]);
    let (outbox, reported) = w.settle();
    let b = reported.failure("b");
    assert_eq!(
        (b.kind.as_str(), b.missing.as_deref()),
        ("missing_dependency", Some("a"))
    );
    assert!(outbox.fetches.is_empty());
    assert!(w.state.waiting.is_empty(), "no wait is left behind");
}

#[test]
fn what_waits_for_a_task_that_failed_at_once_fails_too() {
    let mut w = Harness::new();
    w.compute(vec![task("b", inc("nowhere")), task("c", inc("b"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("b").missing.as_deref(), Some("nowhere"));
    assert_eq!(reported.failure("c").missing.as_deref(), Some("b"));
}

#[test]
fn a_task_fails_while_it_waits_for_other_inputs_then_waits_afresh_when_given_again() {
    let mut w = Harness::new();
    // c needs a (fetched from p) and b (computed here, and failing).
    w.compute(vec![
        task("b", node("fail", (lit("no"),))),
        task_from(
            "c",
            node("add", (key("a"), key("b"))),
            &[("a", &["tcp://p:1"])],
        ),
    ]);
    let (outbox, reported) = w.settle();
    assert_eq!(reported.failure("c").missing.as_deref(), Some("b"));
    let fetch = outbox.fetches[0].clone();
    // The input fetched for it still arrives: kept, and c is not run.
    w.answer(&fetch, vec![item("a", int(1), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done, vec![]);
    assert_eq!(reported.acquired.len(), 1);
    // Given again (b now computed elsewhere, held by q): c waits for b afresh and runs.
    w.compute(vec![task_from(
        "c",
        node("add", (key("a"), key("b"))),
        &[("b", &["tcp://q:1"])],
    )]);
    let (outbox, _) = w.settle();
    assert_eq!(
        fetched(&outbox),
        vec![("tcp://q:1".to_string(), vec!["b".to_string()])]
    );
    w.answer(&outbox.fetches[0], vec![item("b", int(2), h("b"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["c"]);
    assert_eq!(w.held("c"), Some((int(3), h("c"))));
}

#[test]
fn a_task_given_again_while_it_runs_is_not_run_twice() {
    let mut w = Harness::new();
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    w.state.on_tick(w.now);
    let first = w.state.take_outbox();
    assert_eq!(first.jobs.len(), 1);
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    w.state.on_tick(w.now);
    assert!(
        w.state.take_outbox().jobs.is_empty(),
        "running: it reports when done"
    );
    for batch in first.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a"]);
}

#[test]
fn a_run_of_a_task_given_anew_with_another_definition_is_not_taken() {
    let mut w = Harness::new();
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    w.state.on_tick(w.now);
    let old = w.state.take_outbox();
    // Redefined while the old run is on an executor.
    w.compute(vec![ComputeTask {
        hash: h("a2"),
        ..task("a", node("inc", (lit(int(100)),)))
    }]);
    for batch in old.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    assert_eq!(w.held("a"), None, "the old run's value is not stored");
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a"]);
    assert_eq!(reported.done[0].0.hash, h("a2"));
    assert_eq!(w.held("a"), Some((int(101), h("a2"))));
}

#[test]
fn a_result_held_here_is_reported_again_without_running() {
    let mut w = Harness::new();
    w.hold("a", int(7), h("a"));
    w.compute(vec![ComputeTask {
        send_value: true,
        ..task("a", node("inc", (lit(int(1)),)))
    }]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a"]);
    assert_eq!(reported.value("a"), Some(&int(7)), "held, not recomputed");
}

#[test]
fn a_stale_value_of_another_definition_is_computed_anew() {
    let mut w = Harness::new();
    w.hold("a", int(7), h("old"));
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done[0].0.hash, h("a"));
    assert_eq!(w.held("a"), Some((int(2), h("a"))));
}

#[test]
fn an_input_held_here_under_another_definition_is_fetched_anew() {
    let mut w = Harness::new();
    w.hold("a", int(7), h("old"));
    w.compute(vec![task_from("b", inc("a"), &[("a", &["tcp://p:1"])])]);
    let (outbox, _) = w.settle();
    assert_eq!(
        fetched(&outbox),
        vec![("tcp://p:1".to_string(), vec!["a".to_string()])]
    );
    assert_eq!(w.held("a"), None, "the stale copy is dropped");
    w.answer(&outbox.fetches[0], vec![item("a", int(1), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["b"]);
    assert_eq!(w.held("b"), Some((int(2), h("b"))));
}

#[test]
fn an_input_computed_in_the_same_batch_outranks_an_old_copy() {
    let mut w = Harness::new();
    w.hold("a", int(7), h("old"));
    w.compute(vec![
        task("a", node("inc", (lit(int(1)),))),
        task("b", inc("a")),
    ]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failed, vec![]);
    assert_eq!(w.held("b"), Some((int(3), h("b"))));
}

#[test]
fn dispatch_keeps_a_bounded_look_ahead_per_thread() {
    let mut w = Harness::new();
    let n = (w.state.config.nthreads * DISPATCH_AHEAD) as i64 + 40;
    let tasks = (0..n)
        .map(|i| task(&format!("t{i}"), node("inc", (lit(int(i)),))))
        .collect();
    w.compute(tasks);
    w.state.on_tick(w.now);
    let outbox = w.state.take_outbox();
    let dispatched: usize = outbox.jobs.iter().map(Vec::len).sum();
    assert_eq!(dispatched as u32, w.state.config.nthreads * DISPATCH_AHEAD);
    assert!(outbox
        .jobs
        .iter()
        .all(|b| b.len() <= (DISPATCH_AHEAD / 2) as usize));
    for batch in outbox.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    let (_, reported) = w.settle();
    assert_eq!(reported.done.len() as i64, n);
}

#[test]
fn an_input_released_before_the_task_runs_fails_it_naming_the_input() {
    let mut w = Harness::new();
    w.hold("a", int(1), h("a"));
    w.compute(vec![task("b", inc("a")), task("c", inc("b"))]);
    w.msg(ToWorker::Release(ReleaseBody {
        keys: vec!["a".to_string()],
    }));
    let (_, reported) = w.settle();
    let b = reported.failure("b");
    assert_eq!(
        (b.kind.as_str(), b.missing.as_deref()),
        ("missing_dependency", Some("a"))
    );
    assert_eq!(reported.failure("c").missing.as_deref(), Some("b"));
}

#[test]
fn an_input_replaced_by_another_definition_before_the_task_runs_fails_it() {
    let mut w = Harness::new();
    w.hold("a", int(1), h("a"));
    w.compute(vec![task("b", inc("a"))]);
    // Another definition of a lands here (scattered) before b is dispatched.
    w.state.store.remove("a").expect("memory store");
    w.hold("a", int(50), h("a2"));
    let (_, reported) = w.settle();
    let b = reported.failure("b");
    assert_eq!(
        (b.kind.as_str(), b.missing.as_deref()),
        ("missing_dependency", None)
    );
    assert_eq!(
        w.held("b"),
        None,
        "never computed from the other definition"
    );
}

#[test]
fn a_scattered_value_is_stored_reported_and_wakes_its_waiters() {
    let mut w = Harness::new();
    // b waits for a, asked of p; a is scattered here before p answers.
    w.compute(vec![task_from("b", inc("a"), &[("a", &["tcp://p:1"])])]);
    let (outbox, _) = w.settle();
    assert_eq!(w.state.tasks["b"].missing, 1);
    w.msg(ToWorker::PutData {
        items: vec![item("a", int(5), h("a"))],
    });
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["a", "b"]);
    assert_eq!(w.held("b"), Some((int(6), h("b"))));
    // p's answer, late, changes nothing.
    w.answer(&outbox.fetches[0], vec![item("a", int(5), h("a"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done, vec![]);
    assert_eq!(w.held("a"), Some((int(5), h("a"))));
}

#[test]
fn a_scattered_value_without_a_hash_is_refused() {
    let mut w = Harness::new();
    w.msg(ToWorker::PutData {
        items: vec![KeyData {
            hash: None,
            ..item("a", int(5), h("a"))
        }],
    });
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("a").kind, "task_failed");
    assert_eq!(w.held("a"), None);
}

#[test]
fn an_unreadable_task_fails_alone() {
    let mut w = Harness::new();
    w.state.on_unreadable_task("bad", "nested too deep");
    w.compute(vec![task("good", node("inc", (lit(int(1)),)))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("bad").kind, "bad_task");
    assert!(reported.failure("bad").message.contains("nested too deep"));
    assert_eq!(reported.done_keys(), vec!["good"]);
}

#[test]
fn a_repeated_input_is_waited_for_once() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("add", (key("a"), key("a"))),
        &[("a", &["tcp://p:1"])],
    )]);
    let (outbox, _) = w.settle();
    assert_eq!(outbox.fetches.len(), 1);
    assert_eq!(outbox.fetches[0].keys.len(), 1);
    assert_eq!(w.state.tasks["b"].missing, 1);
    w.answer(&outbox.fetches[0], vec![item("a", int(4), h("a"))]);
    w.settle();
    assert_eq!(w.held("b"), Some((int(8), h("b"))));
}

#[test]
fn a_task_given_anew_while_it_waits_takes_the_inputs_listed_now() {
    let mut w = Harness::new();
    w.compute(vec![task_from("b", inc("a"), &[("a", &["tcp://p:1"])])]);
    let (first, _) = w.settle();
    // Given again, a now named with another definition on q.
    w.compute(vec![ComputeTask {
        who_has: vec![(Arc::from("a"), h("a2"), vec![Arc::from("tcp://q:1")])],
        ..task("b", inc("a"))
    }]);
    let (second, _) = w.settle();
    assert_eq!(
        fetched(&second),
        vec![("tcp://q:1".to_string(), vec!["a".to_string()])]
    );
    // The old copy's late answer is not taken.
    w.answer(&first.fetches[0], vec![item("a", int(1), h("a"))]);
    assert_eq!(w.held("a"), None);
    w.answer(&second.fetches[0], vec![item("a", int(10), h("a2"))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["b"]);
    assert_eq!(w.held("b"), Some((int(11), h("b"))));
}

#[test]
fn a_failed_store_write_fails_the_task_and_its_waiters() {
    let mut w = Harness::with_store(Box::new(FailingStore::default()));
    w.compute(vec![
        task("a", node("inc", (lit(int(1)),))),
        task("b", inc("a")),
    ]);
    let (_, reported) = w.settle();
    assert_eq!(reported.failure("a").kind, "task_failed");
    assert!(reported.failure("a").message.contains("disk full"));
    // (b ran chained behind a, with its value: its own write fails the same way.)
    assert_eq!(reported.failed.len(), 2);
}

/// A store whose writes all fail, and which says it is broken once one has.
#[derive(Default)]
pub(crate) struct FailingStore {
    inner: MemoryStore,
    failed: bool,
}

impl Store for FailingStore {
    fn get_with(
        &self,
        key: &str,
    ) -> Result<Option<(Value, crate::store::Held)>, crate::store::StoreError> {
        self.inner.get_with(key)
    }
    fn held(&self, key: &str) -> Option<crate::store::Held> {
        self.inner.held(key)
    }
    fn insert(
        &mut self,
        _key: &str,
        _value: Value,
        _hash: DefHash,
        _nbytes: u64,
    ) -> Result<(), crate::store::StoreError> {
        self.failed = true;
        Err(crate::store::StoreError("disk full".to_string()))
    }
    fn remove(&mut self, key: &str) -> Result<bool, crate::store::StoreError> {
        self.inner.remove(key)
    }
    fn all_held(&self) -> Vec<KeyInfo> {
        self.inner.all_held()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn broken(&self) -> Option<&str> {
        self.failed.then_some("disk full")
    }
}

#[test]
fn cancel_forgets_a_task_waiting_for_inputs_and_frees_a_dispatched_one() {
    let mut w = Harness::new();
    // `waits` needs an input a peer holds; `runs` is dispatched at once.
    w.compute(vec![
        task_from(
            "waits",
            node("inc", (key("far"),)),
            &[("far", &["tcp://peer:1"])],
        ),
        task("runs", node("inc", (lit(int(1)),))),
    ]);
    w.state.on_tick(w.now);
    let mut outbox = w.state.take_outbox();
    let jobs: Vec<Job> = std::mem::take(&mut outbox.jobs)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(jobs.len(), 1);
    let fetch = outbox
        .fetches
        .first()
        .cloned()
        .expect("the input is fetched");
    w.msg(ToWorker::Cancel {
        keys: vec!["waits".into(), "runs".into(), "unknown".into()],
    });
    let serial = jobs[0].serial;
    assert_eq!(
        w.state.take_outbox().cancelled,
        vec![serial],
        "the executors are told to drop the dispatched job"
    );
    // Its result comes back all the same (run, or skipped): it is dropped, not reported.
    let results = run_now(jobs, &w.registry);
    w.state.on_jobs_done(results);
    // The input arrives: nothing waits for it any more, so nothing runs.
    w.answer(&fetch, vec![item("far", int(41), h("far"))]);
    let (_, reported) = w.settle();
    assert!(
        reported.done_keys().is_empty(),
        "{:?}",
        reported.done_keys()
    );
    assert!(reported.failed_keys().is_empty());
    assert_eq!(w.state.running, 0);
    // Given again, it runs.
    w.compute(vec![task("runs", node("inc", (lit(int(1)),)))]);
    let (_, reported) = w.settle();
    assert_eq!(reported.done_keys(), vec!["runs"]);
}
