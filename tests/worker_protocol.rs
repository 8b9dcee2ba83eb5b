//! The worker's side of the protocol, against a fake scheduler: the test binds its own
//! ROUTER, starts real `zask-worker` processes pointing at it, and speaks the protocol by
//! hand. Also the peer protocol, on a worker's own ROUTER port.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, raw_socket, recv_parts, send_frames, WorkerBin, WorkerProc, DEADLINE};
use zask::{key, list, task, Node, Value};
use zask_core::frames;
use zask_core::protocol::{
    ComputeBody, ComputeTask, DataBody, FromWorker, GetDataBody, KeyData, PeerReply, PeerRequest,
    ReleaseBody, ReportBody, TaskDone, TaskFailed, ToWorker, PROTOCOL_VERSION,
};
use zask_core::DefHash;

/// A message from a worker: its route, the decoded header, and its blob frames.
struct Received {
    route: Vec<u8>,
    msg: FromWorker,
    blobs: Vec<Vec<u8>>,
}

/// What became of a task: done (with its value, when sent) or failed.
type Outcome = Result<(TaskDone, Option<Value>), TaskFailed>;

/// A ROUTER socket playing the scheduler.
struct FakeScheduler {
    _ctx: zmq::Context,
    router: zmq::Socket,
    address: String,
}

impl FakeScheduler {
    fn bind() -> FakeScheduler {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let address = router.get_last_endpoint().unwrap().unwrap();
        FakeScheduler {
            _ctx: ctx,
            router,
            address,
        }
    }

    /// Starts a real worker pointing at this fake scheduler.
    fn start_worker(&self, nthreads: u32, args: &[&str]) -> WorkerProc {
        let mut all = vec!["--heartbeat-interval", "0.2"];
        all.extend_from_slice(args);
        WorkerProc::start(WorkerBin::Stock, &self.address, nthreads, &all)
    }

    /// The next message from any worker, within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Received> {
        let mut parts = recv_parts(&self.router, timeout)?;
        assert!(
            parts.len() >= 2,
            "a worker message without a header: {parts:?}"
        );
        let route = parts.remove(0);
        let header = parts.remove(0);
        let msg = frames::decode::<FromWorker>(&header)
            .unwrap_or_else(|e| panic!("a worker sent an undecodable header: {e}"));
        Some(Received {
            route,
            msg,
            blobs: parts,
        })
    }

    /// Receives until `pick` returns `Some` (skipping other messages, e.g. heartbeats);
    /// panics after [`DEADLINE`].
    fn recv_until<T>(&self, what: &str, mut pick: impl FnMut(&Received) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("the worker did not send {what} within {DEADLINE:?}");
            }
            if let Some(r) = self.recv(left) {
                if let Some(v) = pick(&r) {
                    return v;
                }
            }
        }
    }

    fn send(&self, route: &[u8], msg: &ToWorker) {
        send_frames(
            &self.router,
            Some(route),
            frames::encode(msg, Vec::new()).unwrap(),
        );
    }

    /// Waits for `worker`'s registration, answers welcome, and returns its route and the
    /// registration.
    fn accept(&self, worker: &WorkerProc) -> (Vec<u8>, FromWorker) {
        let (route, reg) = self.recv_until("register", |r| match &r.msg {
            FromWorker::Register { address, .. } if *address == worker.address => {
                Some((r.route.clone(), r.msg.clone()))
            }
            _ => None,
        });
        self.send(
            &route,
            &ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: "fake-scheduler".into(),
            },
        );
        (route, reg)
    }

    fn compute(&self, route: &[u8], tasks: Vec<ComputeTask>) {
        self.send(route, &ToWorker::Compute(ComputeBody { tasks }));
    }

    /// Waits for the report of `key` from the worker at `route`: done (with its value, when
    /// sent) or failed. Also returns every key acquired in the reports seen on the way.
    fn outcome(&self, route: &[u8], key: &str) -> (Outcome, Vec<String>) {
        let mut acquired_all = Vec::new();
        let result = self.recv_until(&format!("a report on {key:?}"), |r| {
            if r.route != route {
                return None;
            }
            let FromWorker::Report(ReportBody {
                done,
                failed,
                acquired,
            }) = &r.msg
            else {
                return None;
            };
            acquired_all.extend(acquired.iter().map(|a| a.key.clone()));
            if let Some(d) = done.iter().find(|d| d.key == key) {
                let value = d
                    .data
                    .clone()
                    .map(|data| frames::unpack(data, &r.blobs).expect("a readable value"));
                return Some(Ok((d.clone(), value)));
            }
            failed.iter().find(|f| f.key == key).cloned().map(Err)
        });
        (result, acquired_all)
    }

    /// Asks the worker at `route` for `keys`; returns the values found and the missing keys.
    fn get_data(
        &self,
        route: &[u8],
        request: u64,
        keys: &[&str],
    ) -> (Vec<(String, Value)>, Vec<String>) {
        self.send(
            route,
            &ToWorker::GetData(GetDataBody {
                request,
                keys: keys.iter().map(|k| k.to_string()).collect(),
            }),
        );
        self.recv_until("data", |r| match &r.msg {
            FromWorker::Data(DataBody {
                request: got,
                items,
                missing,
            }) if *got == request && r.route == route => Some((
                items
                    .iter()
                    .map(|KeyData { key, data, .. }| {
                        (key.clone(), frames::unpack(data.clone(), &r.blobs).unwrap())
                    })
                    .collect(),
                missing.clone(),
            )),
            _ => None,
        })
    }
}

/// The definition hash these tests give key `k` (the fake scheduler's tasks, and the copies
/// fake peers serve, agree on it).
fn test_hash(k: &str) -> DefHash {
    DefHash::of_value(&Value::from(k))
}

/// A ROUTER playing a peer worker that holds inputs: the test answers its fetches by hand.
struct FakePeer {
    socket: zmq::Socket,
    address: String,
}

impl FakePeer {
    fn bind(ctx: &zmq::Context) -> FakePeer {
        let socket = ctx.socket(zmq::ROUTER).unwrap();
        socket.set_linger(0).unwrap();
        socket.bind("tcp://127.0.0.1:*").unwrap();
        let address = socket.get_last_endpoint().unwrap().unwrap();
        FakePeer { socket, address }
    }

    /// The next fetch asked of it: the asker's route, the request id and the keys.
    fn asked(&self) -> (Vec<u8>, u64, Vec<String>) {
        let mut parts = recv_parts(&self.socket, DEADLINE).expect("a get_data from the worker");
        let route = parts.remove(0);
        let PeerRequest::GetData(GetDataBody { request, keys }) =
            frames::decode(&parts[0]).unwrap();
        (route, request, keys)
    }

    /// Answers fetch `request` of the worker at `route` with `items`.
    fn answer(&self, route: &[u8], request: u64, items: Vec<KeyData>) {
        let reply = PeerReply::Data(DataBody {
            request,
            items,
            missing: Vec::new(),
        });
        send_frames(
            &self.socket,
            Some(route),
            frames::encode(&reply, Vec::new()).unwrap(),
        );
    }
}

/// A copy of `key` a peer serves, inline, with definition hash `hash`.
fn peer_item(key: &str, value: Value, hash: DefHash) -> KeyData {
    KeyData {
        key: key.into(),
        data: zask_core::protocol::Data {
            value,
            frame: None,
            raw: false,
            extra_frames: 0,
        },
        hash: Some(hash),
    }
}

fn compute_task(k: &str, node: zask::Node, send_value: bool) -> ComputeTask {
    ComputeTask {
        key: k.to_string(),
        hash: test_hash(k),
        node: std::sync::Arc::new(node),
        who_has: Vec::new(),
        send_value,
    }
}

/// A task whose inputs are on the peers `who_has` names; its value is wanted.
fn compute_from(k: &str, node: zask::Node, who_has: Vec<(String, Vec<String>)>) -> ComputeTask {
    ComputeTask {
        who_has: who_has
            .into_iter()
            .map(|(key, peers)| {
                let hash = test_hash(&key);
                (
                    key.into(),
                    hash,
                    peers.into_iter().map(Into::into).collect(),
                )
            })
            .collect(),
        ..compute_task(k, node, true)
    }
}

/// A task encoded as zask encodes it (a map with field names).
fn rmp_serde_bytes(task: &ComputeTask) -> Vec<u8> {
    frames::encode(task, Vec::new()).unwrap().header
}

fn done_value(outcome: Outcome) -> (TaskDone, Option<Value>) {
    outcome.unwrap_or_else(|f| panic!("the task failed: {f:?}"))
}

fn failure(outcome: Outcome) -> TaskFailed {
    match outcome {
        Ok(d) => panic!("expected the task to fail, it gave {d:?}"),
        Err(f) => f,
    }
}

#[test]
fn registers_computes_reports_and_serves_data() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(2, &[]);
    let (route, reg) = fake.accept(&worker);
    match reg {
        FromWorker::Register {
            protocol,
            worker_id,
            pid,
            nthreads,
            functions,
            has,
            ..
        } => {
            assert_eq!(protocol, PROTOCOL_VERSION);
            assert!(!worker_id.is_empty());
            assert_eq!(pid, worker.pid());
            assert_eq!(nthreads, 2);
            for f in ["add", "inc", "sum", "fail", "zeros"] {
                assert!(functions.iter().any(|x| x == f), "{f} not offered");
            }
            assert!(has.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // A task whose value is wanted.
    fake.compute(&route, vec![compute_task("x", task("add", (1, 2)), true)]);
    let (done, value) = done_value(fake.outcome(&route, "x").0);
    assert_eq!(value, Some(Value::Int(3)));
    assert_eq!(done.nbytes, 8);
    // A task using a local input, value not wanted.
    fake.compute(
        &route,
        vec![compute_task("y", task("inc", (key("x"),)), false)],
    );
    let (_, value) = done_value(fake.outcome(&route, "y").0);
    assert_eq!(value, None);
    // A batch: a chain given in one message, dependency first.
    fake.compute(
        &route,
        vec![
            compute_task("a", task("add", (key("x"), key("y"))), false),
            compute_task("b", task("mul", (key("a"), 10)), true),
        ],
    );
    let (_, value) = done_value(fake.outcome(&route, "b").0);
    assert_eq!(value, Some(Value::Int(70)));

    // get_data: values held, and a missing key reported as missing (no hang).
    let (items, missing) = fake.get_data(&route, 5, &["x", "y", "nope"]);
    assert_eq!(
        items,
        vec![
            ("x".to_string(), Value::Int(3)),
            ("y".to_string(), Value::Int(4))
        ]
    );
    assert_eq!(missing, vec!["nope".to_string()]);
    let (items, missing) = fake.get_data(&route, 6, &["only-missing"]);
    assert!(items.is_empty());
    assert_eq!(missing, vec!["only-missing".to_string()]);

    // A large value comes back in a blob frame.
    fake.compute(
        &route,
        vec![compute_task("big", task("zeros", (100_000,)), true)],
    );
    let (done, value) = done_value(fake.outcome(&route, "big").0);
    assert_eq!(value, Some(Value::Bytes(vec![0; 100_000].into())));
    assert_eq!(done.nbytes, 100_000);

    // The same key again: reported done again, not recomputed.
    fake.compute(&route, vec![compute_task("x", task("add", (1, 2)), true)]);
    let (_, value) = done_value(fake.outcome(&route, "x").0);
    assert_eq!(value, Some(Value::Int(3)));

    // Release, then the keys are missing.
    fake.send(
        &route,
        &ToWorker::Release(ReleaseBody {
            keys: vec!["x".into(), "big".into()],
        }),
    );
    let (items, missing) = fake.get_data(&route, 7, &["x", "big", "y"]);
    assert_eq!(items, vec![("y".to_string(), Value::Int(4))]);
    assert_eq!(missing, vec!["x".to_string(), "big".to_string()]);
}

/// docs/protocol.md: "An input not listed is expected on the worker (held, or the result of
/// another task it was given)". A compute batch listing a task before the task computing its
/// input is such a case.
#[test]
fn a_batch_listing_a_dependent_before_its_dependency() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    fake.compute(
        &route,
        vec![
            compute_task("b", task("mul", (key("a"), 10)), true),
            compute_task("a", task("add", (3, 4)), false),
        ],
    );
    let (_, value) = done_value(fake.outcome(&route, "b").0);
    assert_eq!(value, Some(Value::Int(70)));
    // A key referenced twice (and inside a list), computed after its dependent: the dependent
    // waits for it once and gets its value at every reference.
    fake.compute(
        &route,
        vec![
            compute_task(
                "d",
                task(
                    "add",
                    (
                        key("c"),
                        task("sum", (list(vec![key("c"), Node::from(1)]),)),
                    ),
                ),
                true,
            ),
            compute_task("c", task("add", (3, 4)), false),
        ],
    );
    let (_, value) = done_value(fake.outcome(&route, "d").0);
    assert_eq!(value, Some(Value::Int(15)));
}

#[test]
fn task_failures_are_reported_with_their_kind() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);

    fake.compute(
        &route,
        vec![compute_task("bad", task("fail", ("no luck",)), true)],
    );
    let f = failure(fake.outcome(&route, "bad").0);
    assert_eq!(f.kind, "task_failed", "{f:?}");
    assert_eq!(f.function.as_deref(), Some("fail"), "{f:?}");
    assert!(f.message.contains("no luck"), "{f:?}");

    fake.compute(
        &route,
        vec![compute_task("u", task("no_such_fn", (1,)), true)],
    );
    let f = failure(fake.outcome(&route, "u").0);
    assert_eq!(f.kind, "unknown_function", "{f:?}");
    assert!(f.message.contains("no_such_fn"), "{f:?}");

    // An input neither held nor named anywhere.
    fake.compute(
        &route,
        vec![compute_task("m", task("inc", (key("ghost"),)), true)],
    );
    let f = failure(fake.outcome(&route, "m").0);
    assert_eq!(f.kind, "missing_dependency", "{f:?}");
    assert_eq!(f.missing.as_deref(), Some("ghost"), "{f:?}");

    // A malformed node (sent as a plain map: zask's own types cannot hold one).
    let header = common::value_json(serde_json::json!({
        "op": "compute",
        "tasks": [{"key": "malformed", "node": {"fn": 3}, "who_has": [], "send_value": true}]
    }));
    send_frames(
        &fake.router,
        Some(&route),
        frames::encode(&header, Vec::new()).unwrap(),
    );
    let f = failure(fake.outcome(&route, "malformed").0);
    assert_eq!(f.kind, "bad_task", "{f:?}");

    // A batch holding a task nested deeper than any decoder takes (written by hand: encoders
    // recurse): only that task fails, naming it; the rest of the batch runs. (The whole batch
    // used to be dropped: nobody was answered.)
    let good = rmp_serde_bytes(&compute_task("fine", task("inc", (1,)), true));
    let mut header = b"\x82\xa2op\xa7compute\xa5tasks\x92".to_vec();
    header.extend_from_slice(&good);
    header.extend_from_slice(b"\x83\xa3key\xa4deep\xa4hash\xc4\x10");
    header.extend_from_slice(&[7u8; 16]);
    header.extend_from_slice(b"\xa4node");
    header.extend(std::iter::repeat_n(0x91u8, 1_100));
    header.push(0x01);
    fake.router.send(&route[..], zmq::SNDMORE).unwrap();
    fake.router.send(header, 0).unwrap();
    // (Both may come in one report: collected together.)
    let (mut deep, mut fine) = (None, None);
    fake.recv_until("reports on both tasks", |r| {
        if let FromWorker::Report(ReportBody { done, failed, .. }) = &r.msg {
            deep = deep
                .take()
                .or(failed.iter().find(|f| f.key == "deep").cloned());
            fine = fine
                .take()
                .or(done.iter().find(|d| d.key == "fine").cloned());
        }
        (deep.is_some() && fine.is_some()).then_some(())
    });
    let deep = deep.unwrap();
    assert_eq!(deep.kind, "bad_task", "{deep:?}");
    assert_eq!(fine.unwrap().data.map(|d| d.value), Some(Value::Int(2)));

    // A task depending on a failing one in the same batch fails too.
    fake.compute(
        &route,
        vec![
            compute_task("f1", task("fail", ("first",)), false),
            compute_task("f2", task("inc", (key("f1"),)), true),
        ],
    );
    let f = failure(fake.outcome(&route, "f2").0);
    assert_eq!(f.kind, "missing_dependency", "{f:?}");

    // A failed key is not stored.
    let (items, missing) = fake.get_data(&route, 1, &["bad", "f1", "f2"]);
    assert!(items.is_empty());
    assert_eq!(missing.len(), 3);
    // Still computing.
    fake.compute(&route, vec![compute_task("ok", task("inc", (41,)), true)]);
    assert_eq!(
        done_value(fake.outcome(&route, "ok").0).1,
        Some(Value::Int(42))
    );
}

/// A chain queued on a worker goes to its executor with its first link and runs there link
/// after link (longer than one dispatch, so it also resumes through the loop): every link's
/// value is right and stored, a link's other inputs and repeated references are filled, and
/// a failing link fails the rest of the chain, each naming the link before it.
#[test]
fn a_chain_queued_on_a_worker_runs_link_after_link() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    fake.compute(&route, vec![compute_task("x", task("add", (2, 3)), false)]);
    done_value(fake.outcome(&route, "x").0);

    // l0 = 0; l(i) = l(i-1) + x + l(i-1) - l(i-1) = l(i-1) + 5.
    let links = 300;
    let mut tasks = vec![compute_task("l0", task("identity", (0,)), false)];
    for i in 1..links {
        let previous = format!("l{}", i - 1);
        let node = task(
            "sub",
            (
                task(
                    "add",
                    (task("add", (key(&previous), key("x"))), key(&previous)),
                ),
                key(&previous),
            ),
        );
        tasks.push(compute_task(&format!("l{i}"), node, i == links - 1));
    }
    fake.compute(&route, tasks);
    let last = format!("l{}", links - 1);
    let (_, value) = done_value(fake.outcome(&route, &last).0);
    assert_eq!(value, Some(Value::Int(5 * (links as i64 - 1))));
    let (items, missing) = fake.get_data(&route, 1, &["l1", "l150", "l298"]);
    assert!(missing.is_empty(), "{missing:?}");
    let values: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![Value::Int(5), Value::Int(750), Value::Int(1490)]
    );

    fake.compute(
        &route,
        vec![
            compute_task("m0", task("inc", (1,)), false),
            compute_task("m1", task("fail", (key("m0"),)), false),
            compute_task("m2", task("inc", (key("m1"),)), false),
            compute_task("m3", task("inc", (key("m2"),)), true),
        ],
    );
    let f = failure(fake.outcome(&route, "m3").0);
    assert_eq!(f.kind, "missing_dependency", "{f:?}");
    assert_eq!(f.missing.as_deref(), Some("m2"), "{f:?}");
    let (items, missing) = fake.get_data(&route, 2, &["m0", "m1", "m2", "m3"]);
    assert_eq!(items, vec![("m0".to_string(), Value::Int(2))]);
    assert_eq!(missing, vec!["m1", "m2", "m3"]);
}

#[test]
fn a_fetch_from_a_dead_holder_retries_the_next_holder() {
    let fake = FakeScheduler::bind();
    let a = fake.start_worker(1, &["--fetch-timeout", "1"]);
    let b = fake.start_worker(1, &["--fetch-timeout", "1"]);
    let (route_a, _) = fake.accept(&a);
    let (route_b, _) = fake.accept(&b);

    fake.compute(
        &route_a,
        vec![compute_task("x", task("add", (1, 2)), false)],
    );
    done_value(fake.outcome(&route_a, "x").0);

    let dead = format!("tcp://127.0.0.1:{}", free_port());
    fake.compute(
        &route_b,
        vec![compute_from(
            "y",
            task("inc", (key("x"),)),
            vec![("x".into(), vec![dead.clone(), a.address.clone()])],
        )],
    );
    let (outcome, acquired) = fake.outcome(&route_b, "y");
    let (_, value) = done_value(outcome);
    assert_eq!(value, Some(Value::Int(4)));
    // B reports the copy of x it now holds (in the same report or an earlier one).
    assert!(acquired.iter().any(|k| k == "x"), "acquired: {acquired:?}");
    let (items, missing) = fake.get_data(&route_b, 1, &["x", "y"]);
    assert_eq!(items.len(), 2, "missing: {missing:?}");

    // Release both from B: B no longer has them, A still has x.
    fake.send(
        &route_b,
        &ToWorker::Release(ReleaseBody {
            keys: vec!["x".into(), "y".into()],
        }),
    );
    let (items, missing) = fake.get_data(&route_b, 2, &["x", "y"]);
    assert!(items.is_empty());
    assert_eq!(missing, vec!["x".to_string(), "y".to_string()]);
    let (items, _) = fake.get_data(&route_a, 3, &["x"]);
    assert_eq!(items, vec![("x".to_string(), Value::Int(3))]);

    // Only dead holders: the task fails naming the input (after the fetch timeout).
    fake.compute(
        &route_b,
        vec![compute_from(
            "z",
            task("inc", (key("q"),)),
            vec![("q".into(), vec![dead])],
        )],
    );
    let f = failure(fake.outcome(&route_b, "z").0);
    assert_eq!(f.kind, "missing_dependency", "{f:?}");
    assert_eq!(f.missing.as_deref(), Some("q"), "{f:?}");

    // A holder that is alive but does not have the key: the next one is tried at once.
    fake.compute(
        &route_b,
        vec![compute_from(
            "w",
            task("mul", (key("x"), 5)),
            vec![("x".into(), vec![b.address.clone(), a.address.clone()])],
        )],
    );
    // (B itself does not hold x any more; it asks A.)
    let (outcome, _) = fake.outcome(&route_b, "w");
    assert_eq!(done_value(outcome).1, Some(Value::Int(15)));

    // A key held by a peer referenced twice: fetched once, its value at both references.
    fake.compute(
        &route_a,
        vec![compute_task("p", task("add", (10, 1)), false)],
    );
    done_value(fake.outcome(&route_a, "p").0);
    fake.compute(
        &route_b,
        vec![compute_from(
            "pp",
            task("add", (key("p"), key("p"))),
            vec![("p".into(), vec![a.address.clone()])],
        )],
    );
    let (outcome, acquired) = fake.outcome(&route_b, "pp");
    assert_eq!(done_value(outcome).1, Some(Value::Int(22)));
    assert_eq!(acquired.iter().filter(|k| *k == "p").count(), 1);
}

/// A peer that answers a fetch out of order, with a value it cannot have (a frame it did not
/// send) and a key nobody asked for: what arrived intact is used, and only the bad key is
/// asked of its next holder.
#[test]
fn a_bad_fetch_answer_retries_only_what_did_not_arrive() {
    let fake = FakeScheduler::bind();
    let a = fake.start_worker(1, &[]);
    let b = fake.start_worker(1, &[]);
    let (route_a, _) = fake.accept(&a);
    let (route_b, _) = fake.accept(&b);
    fake.compute(
        &route_a,
        vec![
            compute_task("p", task("add", (1, 1)), false),
            compute_task("q", task("add", (2, 2)), false),
        ],
    );
    done_value(fake.outcome(&route_a, "q").0);

    let ctx = zmq::Context::new();
    let peer = FakePeer::bind(&ctx);
    let peer_address = peer.address.clone();
    fake.compute(
        &route_b,
        vec![compute_from(
            "s",
            task("add", (key("p"), key("q"))),
            vec![
                ("p".into(), vec![peer_address.clone(), a.address.clone()]),
                ("q".into(), vec![peer_address.clone(), a.address.clone()]),
            ],
        )],
    );
    let (route, request, keys) = peer.asked();
    assert_eq!(keys, vec!["p", "q"]);
    let item = |key: &str, value: Value| peer_item(key, value, test_hash(key));
    let mut p_elsewhere = item("p", Value::Nil);
    p_elsewhere.data.frame = Some(3);
    let items = vec![
        item("q", Value::Int(40)),
        item("stranger", Value::Int(7)),
        p_elsewhere,
    ];
    peer.answer(&route, request, items);
    // q came (40, not A's 4); p is asked of A.
    let (outcome, acquired) = fake.outcome(&route_b, "s");
    assert_eq!(done_value(outcome).1, Some(Value::Int(42)));
    assert!(acquired.iter().any(|k| k == "q"), "{acquired:?}");
    assert!(!acquired.iter().any(|k| k == "stranger"), "{acquired:?}");
    assert!(
        recv_parts(&peer.socket, Duration::from_millis(200)).is_none(),
        "nothing more asked of the bad peer"
    );
}

/// A task that failed on a worker while it still waited for another input (here `a`, still
/// running) leaves no wait behind: sent again, it waits for `a` afresh and runs once `a` is
/// done, with both inputs.
#[test]
fn a_task_failed_while_waiting_waits_afresh_when_sent_again() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &["--fetch-timeout", "0.3"]);
    let (route, _) = fake.accept(&worker);
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    fake.compute(
        &route,
        vec![
            compute_task("a", task("sleep", (1.5, 40)), false),
            compute_from(
                "t",
                task("add", (key("a"), key("b"))),
                vec![("b".into(), vec![dead])],
            ),
        ],
    );
    // b cannot be fetched: t fails while a still runs.
    let f = failure(fake.outcome(&route, "t").0);
    assert_eq!(f.missing.as_deref(), Some("b"), "{f:?}");
    // The scheduler makes b here and sends t again.
    fake.compute(
        &route,
        vec![
            compute_task("b", task("inc", (1,)), false),
            compute_task("t", task("add", (key("a"), key("b"))), true),
        ],
    );
    let (_, value) = done_value(fake.outcome(&route, "t").0);
    assert_eq!(value, Some(Value::Int(42)));
}

#[test]
fn the_peer_port_answers_get_data_and_garbage() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    fake.compute(&route, vec![compute_task("x", task("add", (1, 2)), false)]);
    done_value(fake.outcome(&route, "x").0);

    let ctx = zmq::Context::new();
    let peer = raw_socket(&ctx, zmq::DEALER, &worker.address);
    let timeout = Duration::from_secs(20);

    let request = PeerRequest::GetData(GetDataBody {
        request: 9,
        keys: vec!["nope".into(), "x".into()],
    });
    send_frames(&peer, None, frames::encode(&request, Vec::new()).unwrap());
    let parts = recv_parts(&peer, timeout).expect("an answer to get_data");
    match frames::decode::<PeerReply>(&parts[0]).unwrap() {
        PeerReply::Data(DataBody {
            request,
            items,
            missing,
        }) => {
            assert_eq!(request, 9);
            assert_eq!(missing, vec!["nope".to_string()]);
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].key, "x");
            assert_eq!(
                frames::unpack(items[0].data.clone(), &parts[1..]).unwrap(),
                Value::Int(3)
            );
        }
        other => panic!("expected data, got {other:?}"),
    }

    let request = PeerRequest::GetData(GetDataBody {
        request: 10,
        keys: vec!["nothing-here".into()],
    });
    send_frames(&peer, None, frames::encode(&request, Vec::new()).unwrap());
    let parts = recv_parts(&peer, timeout).expect("an answer for a missing key");
    match frames::decode::<PeerReply>(&parts[0]).unwrap() {
        PeerReply::Data(DataBody {
            request,
            items,
            missing,
        }) => {
            assert_eq!(request, 10);
            assert!(items.is_empty());
            assert_eq!(missing, vec!["nothing-here".to_string()]);
        }
        other => panic!("expected data, got {other:?}"),
    }

    for garbage in [&b"\xc1\xff not msgpack"[..], &b""[..], &b"\x93\x01\x02"[..]] {
        peer.send(garbage, 0).unwrap();
        let parts = recv_parts(&peer, timeout).expect("an answer to garbage");
        match frames::decode::<PeerReply>(&parts[0]).unwrap() {
            PeerReply::Error { message, .. } => assert!(!message.is_empty()),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // An unknown op.
    let unknown = common::value_json(serde_json::json!({"op": "steal", "request": 3}));
    send_frames(&peer, None, frames::encode(&unknown, Vec::new()).unwrap());
    let parts = recv_parts(&peer, timeout).expect("an answer to an unknown op");
    assert!(matches!(
        frames::decode::<PeerReply>(&parts[0]).unwrap(),
        PeerReply::Error { .. }
    ));

    // The worker still serves its scheduler.
    fake.compute(
        &route,
        vec![compute_task("y", task("inc", (key("x"),)), true)],
    );
    assert_eq!(
        done_value(fake.outcome(&route, "y").0).1,
        Some(Value::Int(4))
    );
}

#[test]
fn please_register_closing_and_rejected() {
    let fake = FakeScheduler::bind();
    let mut worker = fake.start_worker(1, &[]);
    let (route, first) = fake.accept(&worker);
    let FromWorker::Register { worker_id, .. } = first else {
        unreachable!()
    };
    // Heartbeats follow the welcome.
    fake.recv_until("a heartbeat", |r| match &r.msg {
        FromWorker::Heartbeat { worker_id: id } if *id == worker_id => Some(()),
        _ => None,
    });
    // Holding a key, asked to register again: it registers with the key it holds.
    fake.compute(&route, vec![compute_task("kept", task("inc", (1,)), false)]);
    done_value(fake.outcome(&route, "kept").0);
    fake.send(&route, &ToWorker::PleaseRegister);
    let has = fake.recv_until("register again", |r| match &r.msg {
        FromWorker::Register {
            worker_id: id, has, ..
        } if *id == worker_id => Some(has.clone()),
        _ => None,
    });
    assert_eq!(has.len(), 1);
    assert_eq!(has[0].key, "kept");
    fake.send(
        &route,
        &ToWorker::Welcome {
            protocol: PROTOCOL_VERSION,
            scheduler_id: "fake-2".into(),
        },
    );
    // The scheduler closing: the worker stays up and tries to register again.
    fake.send(&route, &ToWorker::Closing);
    fake.recv_until("register after closing", |r| match &r.msg {
        FromWorker::Register { worker_id: id, .. } if *id == worker_id => Some(()),
        _ => None,
    });
    assert!(worker.proc.is_running());
    // Rejected: the worker exits.
    fake.send(
        &route,
        &ToWorker::Rejected {
            message: "go away".into(),
        },
    );
    let status = worker.proc.wait_exit(DEADLINE);
    assert!(status.is_some(), "the rejected worker did not exit");
}

#[test]
fn a_worker_retires_on_sigterm_and_leaves_when_told() {
    let fake = FakeScheduler::bind();
    let mut worker = fake.start_worker(1, &[]);
    let (route, first) = fake.accept(&worker);
    let FromWorker::Register { worker_id, .. } = first else {
        unreachable!()
    };
    worker.proc.terminate();
    // It asks to retire and waits (still serving) until the scheduler lets it go.
    fake.recv_until("retiring", |r| match &r.msg {
        FromWorker::Retiring { worker_id: id } if *id == worker_id && r.route == route => Some(()),
        _ => None,
    });
    assert!(
        worker.proc.is_running(),
        "the worker left before it was told to"
    );
    fake.send(&route, &ToWorker::Retired);
    fake.recv_until("goodbye", |r| match &r.msg {
        FromWorker::Goodbye { worker_id: id } if *id == worker_id && r.route == route => Some(()),
        _ => None,
    });
    let status = worker.proc.wait_exit(DEADLINE).expect("the worker exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_stops_a_retiring_worker_at_once() {
    let fake = FakeScheduler::bind();
    let mut worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    worker.proc.terminate();
    fake.recv_until("retiring", |r| {
        (matches!(r.msg, FromWorker::Retiring { .. }) && r.route == route).then_some(())
    });
    worker.proc.terminate();
    fake.recv_until("goodbye", |r| {
        (matches!(r.msg, FromWorker::Goodbye { .. }) && r.route == route).then_some(())
    });
    let status = worker.proc.wait_exit(DEADLINE).expect("the worker exits");
    assert!(status.success(), "{status:?}");
}

/// An input asked for again under another definition (the scheduler now lists a new copy on
/// other holders) while the first request is in flight: the first request's answer, whatever
/// it holds, neither fails the tasks nor asks anyone again; the new request's answer is used,
/// by the new task only (the task given with the old definition never runs on the new one).
#[test]
fn an_input_asked_anew_under_another_definition() {
    let fake = FakeScheduler::bind();
    let b = fake.start_worker(1, &["--fetch-timeout", "30"]);
    let (route_b, _) = fake.accept(&b);
    let ctx = zmq::Context::new();
    let old_peer = FakePeer::bind(&ctx);
    let new_peer = FakePeer::bind(&ctx);
    let asked = |peer: &FakePeer| {
        let (route, request, keys) = peer.asked();
        assert_eq!(keys, vec!["x"]);
        (route, request)
    };
    let answer = |peer: &FakePeer, route: &[u8], request: u64, value: i64, hash: DefHash| {
        peer.answer(
            route,
            request,
            vec![peer_item("x", Value::Int(value), hash)],
        );
    };

    // s needs x of the old definition, held by the old peer only.
    fake.compute(
        &route_b,
        vec![compute_from(
            "s",
            task("inc", (key("x"),)),
            vec![("x".into(), vec![old_peer.address.clone()])],
        )],
    );
    let (old_route, old_request) = asked(&old_peer);
    // Then x is redefined: t needs the new copy, held by the new peer only.
    let new_hash = DefHash::of_value(&Value::from("x, redefined"));
    let mut t = compute_task("t", task("inc", (key("x"),)), true);
    t.who_has = vec![("x".into(), new_hash, vec![new_peer.address.clone().into()])];
    fake.compute(&route_b, vec![t]);
    let (new_route, new_request) = asked(&new_peer);
    assert_ne!(old_request, new_request);

    // The old peer answers the earlier request with the old copy: refused (another
    // definition), and no reason to give up on x, asked of the new peer meanwhile.
    answer(&old_peer, &old_route, old_request, 1, test_hash("x"));
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while let Some(r) = fake.recv(quiet_until.saturating_duration_since(Instant::now())) {
        if let FromWorker::Report(ReportBody { failed, .. }) = &r.msg {
            assert!(
                failed.is_empty(),
                "failed on the earlier answer: {failed:?}"
            );
        }
    }
    answer(&new_peer, &new_route, new_request, 10, new_hash);
    // t runs on the new x. s, given with the old x, must not: its result would be stored (and
    // offered) under s's definition, computed from another x.
    let (mut t_done, mut s_outcome, mut acquired) = (None, None, Vec::new());
    while t_done.is_none() || s_outcome.is_none() {
        let r = fake.recv(DEADLINE).expect("reports on s and t");
        if let FromWorker::Report(ReportBody {
            done,
            failed,
            acquired: got,
        }) = &r.msg
        {
            acquired.extend(got.iter().map(|a| a.key.clone()));
            for d in done {
                let value = d
                    .data
                    .clone()
                    .map(|data| frames::unpack(data, &r.blobs).unwrap());
                match d.key.as_str() {
                    "t" => t_done = Some(value),
                    "s" => s_outcome = Some(Ok(value)),
                    _ => {}
                }
            }
            if let Some(f) = failed.iter().find(|f| f.key == "s") {
                s_outcome = Some(Err(f.clone()));
            }
        }
    }
    assert_eq!(t_done, Some(Some(Value::Int(11))));
    let s_failure = s_outcome
        .unwrap()
        .expect_err("s ran on an x of another definition");
    assert_eq!(s_failure.kind, "missing_dependency", "{s_failure:?}");
    assert!(acquired.iter().any(|k| k == "x"), "{acquired:?}");
    let (items, missing) = fake.get_data(&route_b, 1, &["s"]);
    assert!(items.is_empty(), "s holds a value: {items:?}");
    assert_eq!(missing, vec!["s".to_string()]);
    assert!(
        recv_parts(&old_peer.socket, Duration::from_millis(200)).is_none(),
        "nothing more asked of the old peer"
    );
}

/// A task queued behind a full look-ahead, then given anew with another definition that
/// waits for an input: the old queue entry does not run the new task before its input is
/// here (which would fail it for a "released" input), and the new task runs once it is.
#[test]
fn a_task_given_anew_while_queued_waits_for_its_inputs() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &["--fetch-timeout", "30"]);
    let (route, _) = fake.accept(&worker);
    // One thread, and 64 tasks dispatched ahead (the first takes two seconds): what comes
    // next waits in the worker's queue.
    let mut busy = vec![compute_task("busy0", task("sleep", (2.0, 0)), false)];
    busy.extend((1..64).map(|i| compute_task(&format!("busy{i}"), task("add", (i, 0)), false)));
    fake.compute(&route, busy);
    fake.compute(&route, vec![compute_task("k", task("add", (1, 2)), true)]);
    // k given anew: now it needs x, which only a peer that has not answered yet holds.
    let ctx = zmq::Context::new();
    let peer = FakePeer::bind(&ctx);
    let mut k = compute_from(
        "k",
        task("inc", (key("x"),)),
        vec![("x".into(), vec![peer.address.clone()])],
    );
    k.hash = DefHash::of_value(&Value::from("k, redefined"));
    let new_hash = k.hash;
    fake.compute(&route, vec![k]);
    let (peer_route, request, _) = peer.asked();
    let quiet_deadline = Instant::now() + DEADLINE;
    // The queue drains (the sleeping task ends): k must not run, nor fail, yet.
    let mut drained: Option<Instant> = None;
    while drained.is_none_or(|at| at.elapsed() < Duration::from_millis(500)) {
        let Some(r) = fake.recv(Duration::from_millis(100)) else {
            assert!(
                drained.is_some() || Instant::now() < quiet_deadline,
                "busy tasks hang"
            );
            continue;
        };
        if let FromWorker::Report(ReportBody { done, failed, .. }) = &r.msg {
            assert!(
                failed.is_empty(),
                "failed before its input came: {failed:?}"
            );
            assert!(!done.iter().any(|d| d.key == "k"), "k ran early: {done:?}");
            if done.iter().any(|d| d.key == "busy63") {
                drained = Some(Instant::now());
            }
        }
    }
    let x = peer_item("x", Value::Int(5), test_hash("x"));
    peer.answer(&peer_route, request, vec![x]);
    let (done, value) = done_value(fake.outcome(&route, "k").0);
    assert_eq!(done.hash, new_hash);
    assert_eq!(value, Some(Value::Int(6)));
}

/// A task check names the definition asked about: a value held here of another definition
/// does not answer for it (the task is unknown, and that value is not reported as its result);
/// the value of that definition is reported again.
#[test]
fn a_task_check_counts_only_the_definition_asked_about() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    fake.compute(&route, vec![compute_task("k", task("add", (1, 2)), false)]);
    done_value(fake.outcome(&route, "k").0);
    let other = DefHash::of_value(&Value::from("k, another definition"));
    let check = |request: u64, hash: DefHash| {
        fake.send(
            &route,
            &ToWorker::CheckTasks {
                request,
                keys: vec![("k".to_string(), hash)],
            },
        );
        let mut reported = Vec::new();
        let unknown = fake.recv_until("task_status", |r| match &r.msg {
            FromWorker::Report(ReportBody { done, .. }) => {
                reported.extend(done.iter().map(|d| (d.key.clone(), d.hash)));
                None
            }
            FromWorker::TaskStatus {
                request: got,
                unknown,
            } if *got == request => Some(unknown.clone()),
            _ => None,
        });
        (unknown, reported)
    };
    let (unknown, reported) = check(7, other);
    assert_eq!(unknown, vec!["k".to_string()]);
    assert!(reported.is_empty(), "{reported:?}");
    let (unknown, reported) = check(8, test_hash("k"));
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(reported, vec![("k".to_string(), test_hash("k"))]);
}

/// A batch that lists a task before the input it computes, while this worker holds a copy of
/// that input of another definition: the task waits for the batch's input, not the old copy.
#[test]
fn a_batch_input_replaces_an_old_copy_for_the_tasks_that_use_it() {
    let fake = FakeScheduler::bind();
    let worker = fake.start_worker(1, &[]);
    let (route, _) = fake.accept(&worker);
    fake.compute(&route, vec![compute_task("d", task("add", (1, 2)), false)]);
    done_value(fake.outcome(&route, "d").0);
    // d redefined: the batch lists t (which uses d) first, then the new d.
    let mut d = compute_task("d", task("add", (5, 5)), false);
    d.hash = DefHash::of_value(&Value::from("d, redefined"));
    fake.compute(
        &route,
        vec![compute_task("t", task("inc", (key("d"),)), true), d],
    );
    let (_, value) = done_value(fake.outcome(&route, "t").0);
    assert_eq!(value, Some(Value::Int(11)));
}
