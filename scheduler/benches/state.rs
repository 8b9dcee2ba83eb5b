//! The scheduler's own cost per task, with no sockets and no other processes: W6's shape
//! (`n` independent `inc` tasks and one `sum` over them all) driven through
//! [`SchedulerState`] by two simulated workers, timing each phase the real loop goes through.
//!
//! `cargo bench -p zask-scheduler --bench state [-- TASKS [REPS]]` (defaults: 100,000 tasks,
//! 5 repetitions). Each phase includes the encoding and decoding the loop does around the
//! state (the `get`'s msgpack decoded into a graph, `compute` batches encoded, `report`s
//! decoded), so its total is the scheduler's CPU per task that `zask bench` cannot separate
//! from the workers'.

use std::time::{Duration, Instant};

use zask_core::frames;
use zask_core::graph::{key, list, task, Graph};
use zask_core::protocol::{
    ComputeBody, Data, FromWorker, GetBody, KeyInfo, Message, ReleaseBody, ReportBody, TaskDone,
    ToWorker, PROTOCOL_VERSION,
};
use zask_core::{Keys, Value};
use zask_scheduler::{Config, GetRequest, Outbox, SchedulerState};

// The allocator the scheduler's binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tasks a simulated worker reports per message (as a busy real worker batches them).
const REPORT_BATCH: usize = 1024;

#[derive(Default)]
struct Phases {
    decode: Duration,
    submit: Duration,
    run: Duration,
    finish: Duration,
    release: Duration,
}

fn graph(n: usize, tag: usize) -> (Graph, String) {
    let mut graph = Graph::new();
    let mut refs = Vec::with_capacity(n);
    for i in 0..n {
        let k = format!("inc-{tag}-{i}");
        graph.insert(k.clone(), task("inc", (i as i64,)));
        refs.push(key(k));
    }
    let total = format!("total-{tag}");
    graph.insert(total.clone(), task("sum", (list(refs),)));
    (graph, total)
}

fn register(s: &mut SchedulerState, route: &[u8], now: Instant) {
    let msg = FromWorker::Register {
        protocol: PROTOCOL_VERSION,
        worker_id: format!("id-{}", String::from_utf8_lossy(route)),
        address: format!("tcp://{}:9000", String::from_utf8_lossy(route)),
        pid: 1,
        nthreads: 1,
        functions: vec!["inc".into(), "sum".into()],
        has: Vec::new(),
    };
    s.on_worker_message(route, msg, now, &mut Outbox::default());
}

/// Encodes what the loop would send, and returns the compute batches (route, header).
fn sent(out: &mut Outbox) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut batches = Vec::new();
    for (_, keys) in out.release.drain() {
        let f =
            frames::encode(&ToWorker::Release(ReleaseBody { keys }), Vec::new()).expect("encode");
        std::hint::black_box(f);
    }
    for (route, tasks) in out.compute.drain() {
        let f =
            frames::encode(&ToWorker::Compute(ComputeBody { tasks }), Vec::new()).expect("encode");
        batches.push((route, f.header));
    }
    out.to_workers.clear();
    out.to_clients.clear();
    batches
}

/// One repetition; returns the time of each phase (the simulated workers' time excluded).
fn rep(s: &mut SchedulerState, n: usize, tag: usize, now: Instant) -> Phases {
    let mut phases = Phases::default();
    let (g, total) = graph(n, tag);
    let header = frames::encode(
        &zask_core::protocol::FromClient::Get(GetBody {
            request: tag as u64,
            graph: zask_core::graph_serde::HashedGraph::new(g),
            keys: Keys::One(total.clone()).to_value(),
            keep_results: false,
            progress: false,
        }),
        Vec::new(),
    )
    .expect("encode")
    .header;

    let mut out = Outbox::default();
    let t0 = Instant::now();
    let body: GetBody = zask_core::get_split::decode_get(&header).expect("decode");
    phases.decode = t0.elapsed();
    let keys = Keys::from_value(&body.keys).expect("keys");
    let get = GetRequest {
        request: body.request,
        graph: body.graph.graph,
        hashes: body.graph.hashes,
        keys,
        keep_results: body.keep_results,
        progress: false,
    };
    s.on_get(b"client", get, now, &mut out);
    let mut pending = sent(&mut out);
    s.on_flushed(&mut out);
    pending.extend(sent(&mut out));
    phases.submit = t0.elapsed();

    let mut answered = false;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for (route, header) in pending {
            let Ok(ToWorker::Compute(body)) = ToWorker::decode(&header) else {
                panic!("not a compute");
            };
            // The simulated worker: every task done, reported in batches.
            let mut reports = Vec::new();
            for chunk in body.tasks.chunks(REPORT_BATCH) {
                let mut report = ReportBody::default();
                for t in chunk {
                    for (dep, hash, _) in &t.who_has {
                        report.acquired.push(KeyInfo {
                            key: dep.to_string(),
                            nbytes: 8,
                            hash: *hash,
                        });
                    }
                    report.done.push(TaskDone {
                        key: t.key.clone(),
                        hash: t.hash,
                        nbytes: 8,
                        duration_us: 1,
                        data: t.send_value.then(|| Data {
                            value: Value::Int(42),
                            frame: None,
                            raw: false,
                            extra_frames: 0,
                        }),
                    });
                }
                let msg = FromWorker::Report(report);
                reports.push(frames::encode(&msg, Vec::new()).expect("encode").header);
            }
            let finishing = body.tasks.iter().any(|t| t.send_value);
            let t0 = Instant::now();
            for header in reports {
                // As the loop decodes it (straight into the report's body).
                let msg = FromWorker::decode(&header).expect("decode");
                s.on_worker_message(&route, msg, now, &mut out);
            }
            answered |= out
                .to_clients
                .iter()
                .any(|(_, m)| matches!(m, zask_core::protocol::ToClient::Result { .. }));
            next.extend(sent(&mut out));
            if finishing {
                phases.finish += t0.elapsed();
            } else {
                phases.run += t0.elapsed();
            }
            // What the loop does after each flush: forget what the turn freed.
            let t0 = Instant::now();
            s.on_flushed(&mut out);
            next.extend(sent(&mut out));
            phases.release += t0.elapsed();
        }
        pending = next;
    }
    assert!(answered, "the simulated computation did not finish");
    assert_eq!(s.task_count(), 0, "tasks left behind");
    phases
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let reps = args.get(1).copied().unwrap_or(5);
    let now = Instant::now();
    let mut s = SchedulerState::new("bench".into(), Config::default());
    register(&mut s, b"w0", now);
    register(&mut s, b"w1", now);
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / (n + 1) as f64;
    println!("scheduler state, {n} inc + 1 sum, 2 simulated workers; µs per task:");
    println!("(finish: until the result is out; release: what follows each flush)");
    println!("rep  decode  submit  run  finish  release  total");
    for r in 0..reps {
        let p = rep(&mut s, n, r, now);
        println!(
            "{r:3}  {:.3}  {:.3}  {:.3}  {:.3}  {:.3}  {:.3}",
            per_task(p.decode),
            per_task(p.submit),
            per_task(p.run),
            per_task(p.finish),
            per_task(p.release),
            per_task(p.submit + p.run + p.finish + p.release)
        );
    }
}
