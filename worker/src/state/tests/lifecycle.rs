//! Registration, heartbeats, a scheduler restart, task checks, release, retirement, closing.

use super::tasks::FailingStore;
use super::*;
use zask_core::graph::{key, lit, task as node};
use zask_core::protocol::PROTOCOL_VERSION;

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn registers(outbox: &Outbox) -> usize {
    others(outbox)
        .iter()
        .filter(|m| matches!(m, FromWorker::Register { .. }))
        .count()
}

fn heartbeats(outbox: &Outbox) -> usize {
    others(outbox)
        .iter()
        .filter(|m| matches!(m, FromWorker::Heartbeat { .. }))
        .count()
}

#[test]
fn a_worker_registers_at_start_offering_what_its_store_holds() {
    let mut store = MemoryStore::new();
    store.insert("old", int(1), h("old"), 9).expect("memory");
    let mut w = Harness::unregistered(Box::new(store));
    w.state.on_start(w.now);
    let outbox = w.state.take_outbox();
    match others(&outbox)[..] {
        [FromWorker::Register {
            protocol,
            worker_id,
            address,
            nthreads,
            has,
            ..
        }] => {
            assert_eq!(*protocol, PROTOCOL_VERSION);
            assert_eq!(worker_id, "worker-test");
            assert_eq!(address, "tcp://here:1");
            assert_eq!(*nthreads, 2);
            assert_eq!(has.len(), 1);
            assert_eq!((has[0].key.as_str(), has[0].hash), ("old", h("old")));
        }
        ref other => panic!("not one register: {other:?}"),
    }
    assert!(!w.state.is_registered());
    w.welcome();
    assert!(w.state.is_registered());
}

#[test]
fn an_unwelcomed_worker_registers_again_every_heartbeat_interval() {
    let mut w = Harness::unregistered(Box::new(MemoryStore::new()));
    w.state.on_start(w.now);
    w.state.take_outbox();
    let interval = w.state.config.heartbeat_interval;
    assert_eq!(w.state.next_deadline(w.now), w.now + interval);
    w.advance(interval / 2);
    assert_eq!(registers(&w.state.take_outbox()), 0);
    w.advance(interval / 2);
    assert_eq!(registers(&w.state.take_outbox()), 1);
}

#[test]
fn a_registered_worker_heartbeats_every_interval() {
    let mut w = Harness::new();
    let interval = w.state.config.heartbeat_interval;
    w.advance(interval - Duration::from_millis(1));
    assert_eq!(heartbeats(&w.state.take_outbox()), 0);
    w.advance(Duration::from_millis(1));
    let outbox = w.state.take_outbox();
    assert_eq!((heartbeats(&outbox), registers(&outbox)), (1, 0));
    w.advance(interval);
    assert_eq!(heartbeats(&w.state.take_outbox()), 1);
}

#[test]
fn after_a_scheduler_restart_the_worker_forgets_its_tasks_and_registers_anew() {
    let mut w = Harness::new();
    w.hold("kept", int(3), h("kept"));
    w.compute(vec![
        task_from("b", node("inc", (key("a"),)), &[("a", &["tcp://p:1"])]),
        task("c", node("inc", (key("b"),))),
    ]);
    let (before, _) = w.settle();
    assert_eq!(w.state.task_count(), 2);
    w.msg(ToWorker::PleaseRegister);
    let outbox = w.state.take_outbox();
    assert!(!w.state.is_registered());
    assert_eq!(w.state.task_count(), 0);
    assert_eq!(w.state.fetch_count(), 0);
    match others(&outbox)[..] {
        [FromWorker::Register { has, .. }] => {
            assert_eq!(has.len(), 1, "its values are offered again");
            assert_eq!(has[0].key, "kept");
        }
        ref other => panic!("not one register: {other:?}"),
    }
    // The old fetch's answer is not taken, and nothing runs.
    w.answer(&before.fetches[0], vec![item("a", int(1), h("a"))]);
    assert_eq!(w.held("a"), None);
    w.welcome();
    let (_, reported) = w.settle();
    assert_eq!(reported.done, vec![]);
    // Given the tasks again, it computes them.
    w.hold("a", int(1), h("a"));
    w.compute(vec![
        task("b", node("inc", (key("a"),))),
        task("c", node("inc", (key("b"),))),
    ]);
    w.settle();
    assert_eq!(w.held("c"), Some((int(3), h("c"))));
}

#[test]
fn a_closing_scheduler_takes_the_tasks_back_and_the_worker_waits() {
    let mut w = Harness::new();
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    w.settle();
    w.msg(ToWorker::Closing);
    assert!(!w.state.is_registered());
    assert_eq!(w.state.task_count(), 0);
    // It registers again at its next heartbeat.
    w.advance(w.state.config.heartbeat_interval);
    assert_eq!(registers(&w.state.take_outbox()), 1);
}

#[test]
fn a_rejected_worker_leaves_saying_goodbye() {
    let mut w = Harness::unregistered(Box::new(MemoryStore::new()));
    w.state.on_start(w.now);
    w.msg(ToWorker::Rejected {
        message: "protocol".to_string(),
    });
    assert!(w.state.take_outbox().leave);
    w.state.on_close();
    let outbox = w.state.take_outbox();
    assert!(matches!(others(&outbox)[..], [FromWorker::Goodbye { .. }]));
}

#[test]
fn a_task_check_reports_again_what_is_held_and_names_the_unknown() {
    let mut w = Harness::new();
    w.hold("done", int(1), h("done"));
    w.hold("other", int(1), h("other-old"));
    w.compute(vec![task_from(
        "waiting",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    w.settle();
    w.msg(ToWorker::CheckTasks {
        request: 4,
        keys: vec![
            ("done".to_string(), h("done")),
            ("other".to_string(), h("other")),
            ("waiting".to_string(), h("waiting")),
            ("lost".to_string(), h("lost")),
        ],
    });
    let outbox = w.state.take_outbox();
    let mut reported = Reported::default();
    reported.add(&outbox);
    assert_eq!(reported.done_keys(), vec!["done"]);
    // The report goes before the answer.
    assert!(matches!(
        outbox.to_scheduler[0].0,
        FromWorker::Report(ReportBody { .. })
    ));
    match others(&outbox)[..] {
        [FromWorker::TaskStatus { request, unknown }] => {
            assert_eq!(*request, 4);
            assert_eq!(unknown, &vec!["other".to_string(), "lost".to_string()]);
        }
        ref other => panic!("not one task_status: {other:?}"),
    }
}

#[test]
fn a_task_check_does_not_call_a_failure_not_yet_reported_unknown() {
    let mut w = Harness::new();
    w.compute(vec![task("bad", node("fail", (lit("x"),)))]);
    // Run it, but keep the report from going (a tick would send it).
    w.state.on_tick(w.now);
    let out = w.state.take_outbox();
    for batch in out.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    w.msg(ToWorker::CheckTasks {
        request: 1,
        keys: vec![("bad".to_string(), h("bad"))],
    });
    let outbox = w.state.take_outbox();
    let mut reported = Reported::default();
    reported.add(&outbox);
    assert_eq!(reported.failed_keys(), vec!["bad"]);
    match others(&outbox)[..] {
        [FromWorker::TaskStatus { unknown, .. }] => assert!(unknown.is_empty()),
        ref other => panic!("not one task_status: {other:?}"),
    }
}

#[test]
fn release_deletes_values() {
    let mut w = Harness::new();
    w.hold("a", int(1), h("a"));
    w.hold("b", int(2), h("b"));
    w.msg(ToWorker::Release(ReleaseBody {
        keys: vec!["a".to_string(), "never-held".to_string()],
    }));
    assert_eq!(w.held("a"), None);
    assert_eq!(w.held("b"), Some((int(2), h("b"))));
}

#[test]
fn the_scheduler_gets_the_values_it_asks_for() {
    let mut w = Harness::new();
    w.hold("a", int(1), h("a"));
    w.msg(ToWorker::GetData(GetDataBody {
        request: 9,
        keys: vec!["a".to_string(), "b".to_string()],
    }));
    let outbox = w.state.take_outbox();
    match &outbox.to_scheduler[..] {
        [(
            FromWorker::Data(DataBody {
                request,
                items,
                missing,
            }),
            blobs,
        )] => {
            assert_eq!(*request, 9);
            let value = frames::unpack(items[0].data.clone(), blobs).expect("value");
            assert_eq!((items[0].key.as_str(), value), ("a", int(1)));
            assert_eq!(missing, &vec!["b".to_string()]);
        }
        _ => panic!("not one data message"),
    }
}

#[test]
fn a_retiring_worker_says_so_and_leaves_when_told() {
    let mut w = Harness::new();
    w.state.on_retire();
    w.advance(Duration::ZERO);
    let outbox = w.state.take_outbox();
    assert!(others(&outbox)
        .iter()
        .any(|m| matches!(m, FromWorker::Retiring { .. })));
    assert!(!outbox.leave);
    w.advance(Duration::from_secs(1));
    let again = w.state.take_outbox();
    assert!(
        !others(&again)
            .iter()
            .any(|m| matches!(m, FromWorker::Retiring { .. })),
        "once"
    );
    w.msg(ToWorker::Retired);
    assert!(w.state.take_outbox().leave);
}

#[test]
fn a_retiring_worker_leaves_when_retirement_takes_too_long() {
    let mut w = Harness::new();
    // (Heartbeats rarer than the timeout, so the deadline is the retirement's.)
    w.state.config.heartbeat_interval = Duration::from_secs(3600);
    w.state.on_retire();
    w.advance(Duration::ZERO);
    w.state.take_outbox();
    let timeout = w.state.config.retire_timeout;
    assert_eq!(w.state.next_deadline(w.now), w.now + timeout);
    w.advance(timeout);
    assert!(!w.state.take_outbox().leave);
    w.advance(Duration::from_millis(1));
    assert!(w.state.take_outbox().leave);
}

#[test]
fn an_unregistered_worker_asked_to_retire_leaves_at_once() {
    let mut w = Harness::unregistered(Box::new(MemoryStore::new()));
    w.state.on_start(w.now);
    w.state.on_retire();
    w.advance(Duration::ZERO);
    assert!(w.state.take_outbox().leave);
}

#[test]
fn a_store_that_failed_for_good_retires_the_worker() {
    let mut w = Harness::with_store(Box::new(FailingStore::default()));
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    let (outbox, reported) = w.settle();
    assert_eq!(reported.failure("a").kind, "task_failed");
    let retiring = others(&outbox)
        .iter()
        .filter(|m| matches!(m, FromWorker::Retiring { .. }))
        .count();
    assert_eq!(retiring, 1, "it retires, once");
}

#[test]
fn a_worker_retiring_when_the_scheduler_goes_away_waits_for_it_until_its_timeout() {
    let mut w = Harness::new();
    w.state.on_retire();
    w.advance(Duration::ZERO);
    w.state.take_outbox();
    w.msg(ToWorker::Closing);
    // Its data can only be handed over through a scheduler: it registers again meanwhile.
    w.advance(w.state.config.heartbeat_interval);
    let outbox = w.state.take_outbox();
    assert_eq!(registers(&outbox), 1);
    assert!(!outbox.leave);
    w.advance(w.state.config.retire_timeout);
    assert!(w.state.take_outbox().leave, "but not for ever");
}

#[test]
fn durations_of_years_mean_never_and_do_not_overflow() {
    let mut w = Harness::new();
    w.state.config.heartbeat_interval = Duration::MAX;
    w.state.config.retire_timeout = Duration::MAX;
    w.state.config.fetch_timeout = Duration::MAX;
    w.state.on_retire();
    w.advance(Duration::ZERO);
    w.compute(vec![task_from(
        "b",
        node("inc", (key("a"),)),
        &[("a", &["tcp://p:1"])],
    )]);
    w.settle();
    assert!(w.state.next_deadline(w.now) > w.now + Duration::from_secs(1 << 30));
    w.advance(Duration::from_secs(1 << 30));
    assert!(!w.state.take_outbox().leave);
    assert_eq!(w.state.fetch_count(), 1, "still waiting");
}

#[test]
fn closing_reports_what_finished_then_says_goodbye() {
    let mut w = Harness::new();
    w.compute(vec![task("a", node("inc", (lit(int(1)),)))]);
    w.state.on_tick(w.now);
    let out = w.state.take_outbox();
    for batch in out.jobs {
        let results = run_now(batch, &w.registry);
        w.state.on_jobs_done(results);
    }
    w.state.on_close();
    let outbox = w.state.take_outbox();
    let mut reported = Reported::default();
    reported.add(&outbox);
    assert_eq!(reported.done_keys(), vec!["a"]);
    assert!(matches!(
        outbox.to_scheduler.last().map(|(m, _)| m),
        Some(FromWorker::Goodbye { .. })
    ));
}

#[test]
fn a_report_waits_briefly_for_company_while_tasks_still_run() {
    let mut w = Harness::new();
    w.compute(vec![
        task("fast", node("inc", (lit(int(1)),))),
        task("slow", node("inc", (lit(int(2)),))),
    ]);
    w.state.on_tick(w.now);
    let mut jobs: Vec<Job> = w.state.take_outbox().jobs.into_iter().flatten().collect();
    assert_eq!(jobs.len(), 2);
    let slow = jobs.pop().expect("two jobs");
    let results = run_now(jobs, &w.registry);
    w.state.on_jobs_done(results);
    // One still running: the report waits (up to REPORT_DELAY).
    w.state.on_tick(w.now);
    let mut reported = Reported::default();
    reported.add(&w.state.take_outbox());
    assert_eq!(reported.done, vec![]);
    assert!(w.state.next_deadline(w.now) <= w.now + crate::state::REPORT_DELAY);
    w.advance(crate::state::REPORT_DELAY);
    reported.add(&w.state.take_outbox());
    assert_eq!(
        reported.done.len(),
        1,
        "sent once it has waited long enough"
    );
    let results = run_now(vec![slow], &w.registry);
    w.state.on_jobs_done(results);
    // Nothing else runs: sent at once.
    w.state.on_tick(w.now);
    reported.add(&w.state.take_outbox());
    assert_eq!(reported.done.len(), 2);
}
