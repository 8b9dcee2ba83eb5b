//! Golden bytes: every message of the protocol, in every direction, as the exact msgpack
//! header another language must write and must be able to read.
//!
//! Each case is a Rust value and its bytes (hex). The value must encode to exactly those bytes
//! (field names, field order, integer widths), and the bytes must decode to exactly that value
//! (through [`Message::decode`], which reads the hot messages straight into their body, and
//! through serde's tagged enum). `docs/protocol.md` shows the same examples ("Every message,
//! byte for byte"); a test reads it and checks each example against these, and that every op
//! of every direction has one, so the document and the code cannot drift apart.
//!
//! After a deliberate change of the protocol, `cargo test -p zask-core --test golden --
//! --ignored --nocapture` prints the section of the document and the hex of every case anew.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Write as _};
use std::sync::Arc;

use zask_core::frames;
use zask_core::graph::{key, task, Graph};
use zask_core::graph_serde::HashedGraph;
use zask_core::msgpack;
use zask_core::protocol::*;
use zask_core::{DefHash, Value};

const CLIENT_TO_SCHEDULER: &str = "Client → scheduler";
const SCHEDULER_TO_CLIENT: &str = "Scheduler → client";
const WORKER_TO_SCHEDULER: &str = "Worker → scheduler";
const SCHEDULER_TO_WORKER: &str = "Scheduler → worker";
const PEER_REQUEST: &str = "Worker → worker: request";
const PEER_REPLY: &str = "Worker → worker: reply";

/// Each direction (as `docs/protocol.md` names it) and its ops.
fn directions() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (CLIENT_TO_SCHEDULER, FromClient::OPS),
        (SCHEDULER_TO_CLIENT, ToClient::OPS),
        (WORKER_TO_SCHEDULER, FromWorker::OPS),
        (SCHEDULER_TO_WORKER, ToWorker::OPS),
        (PEER_REQUEST, PeerRequest::OPS),
        (PEER_REPLY, PeerReply::OPS),
    ]
}

/// One message and its golden bytes, checked both ways.
struct Case {
    direction: &'static str,
    op: String,
    /// The golden bytes, as written below.
    golden: Vec<u8>,
    /// What the value encodes to.
    encoded: Vec<u8>,
    /// What is wrong with decoding the golden bytes (nothing: they give the value).
    decoded: Result<(), String>,
}

fn case<M: Message + PartialEq + Debug>(direction: &'static str, value: M, hex: &str) -> Case {
    let encoded = frames::encode(&value, Vec::new())
        .expect("every message encodes")
        .header;
    let op = msgpack::header_op(&encoded)
        .expect("a header names its op")
        .to_string();
    let golden = from_hex(hex);
    let decoded = match (M::decode(&golden), rmp_serde::from_slice::<M>(&golden)) {
        (Ok(direct), Ok(tagged)) if direct == value && tagged == value => Ok(()),
        (direct, tagged) => Err(format!(
            "expected {value:?}\n  Message::decode gave {direct:?}\n  serde gave {tagged:?}"
        )),
    };
    Case {
        direction,
        op,
        golden,
        encoded,
        decoded,
    }
}

/// The bytes written in `hex` (whitespace ignored).
fn from_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => panic!("not a hex digit: {:?}", b as char),
        })
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "an odd number of hex digits"
    );
    digits.chunks(2).map(|d| d[0] << 4 | d[1]).collect()
}

/// A definition hash, all sixteen bytes `n`.
fn hash(n: u8) -> DefHash {
    DefHash([n; 16])
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The graph of the examples: `x` is 1, `y` adds 2 to it.
fn graph() -> Graph {
    let mut graph = Graph::new();
    graph.insert("x", 1);
    graph.insert("y", task("add", (key("x"), 2)));
    graph
}

/// A collection in its wire form (`{"kind", "graph", "keys", "meta"}`).
fn collection() -> Value {
    let mut graph = Graph::new();
    graph.insert("x", 1);
    Value::Map(vec![
        (Value::from("kind"), Value::from("graph")),
        (Value::from("graph"), graph.to_value()),
        (Value::from("keys"), Value::from("x")),
        (Value::from("meta"), Value::Map(Vec::new())),
    ])
}

fn inline(value: Value) -> Data {
    Data {
        value,
        frame: None,
        raw: false,
        extra_frames: 0,
    }
}

const WORKER: &str = "tcp://10.0.0.2:7001";
const PEER: &str = "tcp://10.0.0.3:7001";

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(client_to_scheduler());
    cases.extend(scheduler_to_client());
    cases.extend(worker_to_scheduler());
    cases.extend(scheduler_to_worker());
    cases.extend(peers());
    cases
}

fn client_to_scheduler() -> Vec<Case> {
    let d = CLIENT_TO_SCHEDULER;
    vec![
        case(
            d,
            FromClient::Hello {
                request: 1,
                protocol: PROTOCOL_VERSION,
            },
            HELLO,
        ),
        case(
            d,
            FromClient::Get(GetBody {
                request: 7,
                graph: HashedGraph::new(graph()),
                keys: Value::from("y"),
                keep_results: false,
                progress: false,
            }),
            GET,
        ),
        case(
            d,
            FromClient::Submit(SubmitBody {
                request: 13,
                items: vec![SubmitItem {
                    graph: HashedGraph::new(graph()),
                    keys: strings(&["y"]),
                    priority: 5,
                    retries: 2,
                    workers: Vec::new(),
                }],
            }),
            SUBMIT,
        ),
        case(
            d,
            FromClient::DropFutures {
                keys: strings(&["y"]),
            },
            DROP_FUTURES,
        ),
        case(
            d,
            FromClient::Cancel {
                keys: strings(&["y"]),
            },
            FROM_CLIENT_CANCEL,
        ),
        case(d, FromClient::Status { request: 2 }, STATUS),
        case(d, FromClient::Workers { request: 3 }, WORKERS),
        case(d, FromClient::Goodbye, GOODBYE),
        case(
            d,
            FromClient::SetCollection {
                request: 4,
                name: "numbers".into(),
                collection: collection(),
            },
            SET_COLLECTION,
        ),
        case(
            d,
            FromClient::GetCollection {
                request: 5,
                name: "numbers".into(),
            },
            GET_COLLECTION,
        ),
        case(
            d,
            FromClient::ListCollections { request: 6 },
            LIST_COLLECTIONS,
        ),
        case(
            d,
            FromClient::DeleteCollection {
                request: 8,
                name: "numbers".into(),
            },
            DELETE_COLLECTION,
        ),
        case(
            d,
            FromClient::Scatter {
                request: 9,
                items: vec![
                    KeyData::inline("scatter-1".into(), Value::from("hello")),
                    KeyData {
                        key: "big".into(),
                        data: Data {
                            value: Value::Nil,
                            frame: Some(0),
                            raw: true,
                            extra_frames: 0,
                        },
                        hash: None,
                    },
                ],
            },
            SCATTER,
        ),
        case(
            d,
            FromClient::Gather {
                request: 10,
                keys: strings(&["scatter-1"]),
            },
            GATHER,
        ),
        case(
            d,
            FromClient::Release {
                request: 11,
                keys: strings(&["scatter-1"]),
            },
            RELEASE,
        ),
        case(
            d,
            FromClient::Retire {
                request: 12,
                address: WORKER.into(),
            },
            RETIRE,
        ),
        case(d, FromClient::Computations { request: 14 }, COMPUTATIONS),
        case(
            d,
            FromClient::CancelComputation {
                request: 15,
                id: "get-3".into(),
            },
            CANCEL_COMPUTATION,
        ),
        case(
            d,
            FromClient::HeldKeys {
                request: 16,
                limit: 100,
            },
            HELD_KEYS,
        ),
    ]
}

fn scheduler_to_client() -> Vec<Case> {
    let d = SCHEDULER_TO_CLIENT;
    vec![
        case(
            d,
            ToClient::Welcome {
                request: 1,
                protocol: PROTOCOL_VERSION,
                scheduler_id: "scheduler-a1".into(),
            },
            TO_CLIENT_WELCOME,
        ),
        case(
            d,
            ToClient::Result {
                request: 7,
                items: vec![
                    KeyData::inline("y".into(), Value::Int(3)),
                    KeyData {
                        key: "big".into(),
                        data: Data {
                            value: Value::Nil,
                            frame: Some(0),
                            raw: false,
                            extra_frames: 0,
                        },
                        hash: None,
                    },
                ],
            },
            RESULT,
        ),
        case(
            d,
            ToClient::Error {
                request: 7,
                error: ErrorInfo {
                    kind: ErrorKind::DependencyFailed,
                    message: "key \"y\" could not be computed: it depends on \"x\", which failed"
                        .into(),
                    key: Some("y".into()),
                    function: Some("inc".into()),
                    dependency: Some("x".into()),
                },
            },
            ERROR,
        ),
        case(
            d,
            ToClient::Status {
                request: 2,
                scheduler_id: "scheduler-a1".into(),
                workers: 2,
                tasks: 10,
                graphs: 1,
                keys: 4,
            },
            TO_CLIENT_STATUS,
        ),
        case(
            d,
            ToClient::Workers {
                request: 3,
                workers: vec![WorkerSummary {
                    address: WORKER.into(),
                    worker_id: "worker-b7".into(),
                    pid: 4242,
                    nthreads: 4,
                    functions: strings(&["add", "inc"]),
                    keys: 2,
                    nbytes: 16,
                    processing: 1,
                    last_seen_ms: 120,
                }],
            },
            TO_CLIENT_WORKERS,
        ),
        case(
            d,
            ToClient::CollectionStored {
                request: 4,
                name: "numbers".into(),
                replaced: false,
            },
            COLLECTION_STORED,
        ),
        case(
            d,
            ToClient::Collection {
                request: 5,
                name: "numbers".into(),
                collection: collection(),
            },
            COLLECTION,
        ),
        case(
            d,
            ToClient::Collections {
                request: 6,
                collections: vec![CollectionSummary {
                    name: "numbers".into(),
                    kind: "graph".into(),
                    tasks: 1,
                    nbytes: 40,
                }],
            },
            COLLECTIONS,
        ),
        case(
            d,
            ToClient::CollectionDeleted {
                request: 8,
                name: "numbers".into(),
            },
            COLLECTION_DELETED,
        ),
        case(
            d,
            ToClient::Scattered {
                request: 9,
                keys: strings(&["scatter-1", "big"]),
            },
            SCATTERED,
        ),
        case(
            d,
            ToClient::Retired {
                request: 12,
                address: WORKER.into(),
            },
            TO_CLIENT_RETIRED,
        ),
        case(
            d,
            ToClient::Released {
                request: 11,
                keys: strings(&["scatter-1"]),
                unknown: Vec::new(),
            },
            RELEASED,
        ),
        case(d, ToClient::Submitted { request: 13 }, SUBMITTED),
        case(
            d,
            ToClient::Events {
                events: vec![
                    KeyEvent {
                        key: "y".into(),
                        status: KeyStatus::Done,
                        error: None,
                    },
                    KeyEvent {
                        key: "z".into(),
                        status: KeyStatus::Erred,
                        error: Some(ErrorInfo {
                            kind: ErrorKind::TaskFailed,
                            message: "boom".into(),
                            key: Some("z".into()),
                            function: Some("fail".into()),
                            dependency: None,
                        }),
                    },
                ],
            },
            EVENTS,
        ),
        case(
            d,
            ToClient::Progress {
                request: 7,
                done: 2,
                failed: 0,
                total: 3,
            },
            PROGRESS,
        ),
        case(
            d,
            ToClient::Computations {
                request: 14,
                computations: vec![ComputationSummary {
                    id: "get-3".into(),
                    kind: "get".into(),
                    client: "00a1".into(),
                    age_ms: 1500,
                    total: 3,
                    done: 1,
                    failed: 0,
                    waiting: 2,
                }],
            },
            TO_CLIENT_COMPUTATIONS,
        ),
        case(
            d,
            ToClient::ComputationCancelled {
                request: 15,
                id: "get-3".into(),
            },
            COMPUTATION_CANCELLED,
        ),
        case(
            d,
            ToClient::HeldKeys {
                request: 16,
                total: 1,
                keys: vec![HeldKey {
                    key: "y".into(),
                    nbytes: 8,
                    holders: strings(&[WORKER]),
                }],
            },
            TO_CLIENT_HELD_KEYS,
        ),
    ]
}

fn worker_to_scheduler() -> Vec<Case> {
    let d = WORKER_TO_SCHEDULER;
    vec![
        case(
            d,
            FromWorker::Register {
                protocol: PROTOCOL_VERSION,
                worker_id: "worker-b7".into(),
                address: WORKER.into(),
                pid: 4242,
                nthreads: 4,
                functions: strings(&["add", "inc"]),
                has: vec![KeyInfo {
                    key: "x".into(),
                    nbytes: 8,
                    hash: hash(1),
                }],
            },
            REGISTER,
        ),
        case(
            d,
            FromWorker::Heartbeat {
                worker_id: "worker-b7".into(),
            },
            HEARTBEAT,
        ),
        case(
            d,
            FromWorker::TaskStatus {
                request: 3,
                unknown: strings(&["y"]),
            },
            TASK_STATUS,
        ),
        case(
            d,
            FromWorker::Report(ReportBody {
                done: vec![TaskDone {
                    key: "y".into(),
                    hash: hash(2),
                    nbytes: 8,
                    duration_us: 12,
                    data: Some(inline(Value::Int(3))),
                }],
                failed: vec![TaskFailed {
                    key: "z".into(),
                    hash: Some(hash(3)),
                    kind: ErrorKind::TaskFailed,
                    function: Some("div".into()),
                    message: "division by zero".into(),
                    missing: None,
                }],
                acquired: vec![KeyInfo {
                    key: "w".into(),
                    nbytes: 8,
                    hash: hash(4),
                }],
            }),
            REPORT,
        ),
        case(
            d,
            FromWorker::Data(DataBody {
                request: 5,
                items: vec![KeyData::inline("x".into(), Value::Int(1))],
                missing: strings(&["w"]),
            }),
            FROM_WORKER_DATA,
        ),
        case(
            d,
            FromWorker::Goodbye {
                worker_id: "worker-b7".into(),
            },
            FROM_WORKER_GOODBYE,
        ),
        case(
            d,
            FromWorker::Retiring {
                worker_id: "worker-b7".into(),
            },
            RETIRING,
        ),
    ]
}

fn scheduler_to_worker() -> Vec<Case> {
    let d = SCHEDULER_TO_WORKER;
    vec![
        case(
            d,
            ToWorker::Welcome {
                protocol: PROTOCOL_VERSION,
                scheduler_id: "scheduler-a1".into(),
            },
            TO_WORKER_WELCOME,
        ),
        case(
            d,
            ToWorker::Rejected {
                message: "worker speaks protocol 1, scheduler speaks 2".into(),
            },
            REJECTED,
        ),
        case(d, ToWorker::PleaseRegister, PLEASE_REGISTER),
        case(d, compute(), COMPUTE),
        case(
            d,
            ToWorker::Release(ReleaseBody {
                keys: strings(&["x"]),
            }),
            TO_WORKER_RELEASE,
        ),
        case(
            d,
            ToWorker::PutData {
                items: vec![KeyData {
                    hash: Some(hash(5)),
                    ..KeyData::inline("scatter-1".into(), Value::from("hello"))
                }],
            },
            PUT_DATA,
        ),
        case(
            d,
            ToWorker::GetData(GetDataBody {
                request: 5,
                keys: strings(&["x", "w"]),
            }),
            TO_WORKER_GET_DATA,
        ),
        case(d, ToWorker::Closing, CLOSING),
        case(
            d,
            ToWorker::Replicate {
                who_has: vec![("x".into(), hash(1), strings(&[WORKER]))],
            },
            REPLICATE,
        ),
        case(
            d,
            ToWorker::CheckTasks {
                request: 3,
                keys: vec![("y".into(), hash(2))],
            },
            CHECK_TASKS,
        ),
        case(d, ToWorker::Retired, TO_WORKER_RETIRED),
        case(
            d,
            ToWorker::PeerGone {
                address: PEER.into(),
            },
            PEER_GONE,
        ),
        case(
            d,
            ToWorker::Cancel {
                keys: strings(&["y"]),
            },
            TO_WORKER_CANCEL,
        ),
    ]
}

/// A `compute` of `y`, whose input `x` is held by a peer.
fn compute() -> ToWorker {
    ToWorker::Compute(ComputeBody {
        tasks: vec![ComputeTask {
            key: "y".into(),
            hash: hash(2),
            node: Arc::new(task("add", (key("x"), 2))),
            who_has: vec![(Arc::from("x"), hash(1), vec![Arc::from(PEER)])],
            send_value: true,
        }],
    })
}

fn peers() -> Vec<Case> {
    vec![
        case(
            PEER_REQUEST,
            PeerRequest::GetData(GetDataBody {
                request: 1,
                keys: strings(&["x"]),
            }),
            PEER_GET_DATA,
        ),
        case(
            PEER_REPLY,
            PeerReply::Data(DataBody {
                request: 1,
                items: vec![KeyData {
                    hash: Some(hash(1)),
                    ..KeyData::inline("x".into(), Value::Int(1))
                }],
                missing: Vec::new(),
            }),
            PEER_DATA,
        ),
        case(
            PEER_REPLY,
            PeerReply::Error {
                request: 0,
                message: "cannot decode the request".into(),
            },
            PEER_ERROR,
        ),
    ]
}

/// Every message encodes to its golden bytes, and the golden bytes decode to the message.
#[test]
fn every_message_is_its_golden_bytes() {
    let mut wrong = Vec::new();
    for case in cases() {
        if case.encoded != case.golden {
            wrong.push(format!(
                "{} `{}` encodes to\n{}",
                case.direction,
                case.op,
                hex_lines(&case.encoded)
            ));
        }
        if let Err(e) = &case.decoded {
            wrong.push(format!(
                "{} `{}`: its golden bytes decode wrong: {e}",
                case.direction, case.op
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Every op of every direction has a golden case, once.
#[test]
fn every_op_has_a_golden_example() {
    let cases = cases();
    for (direction, ops) in directions() {
        let mut seen: Vec<&str> = cases
            .iter()
            .filter(|c| c.direction == direction)
            .map(|c| c.op.as_str())
            .collect();
        seen.sort_unstable();
        let mut ops = ops.to_vec();
        ops.sort_unstable();
        assert_eq!(seen, ops, "{direction}");
    }
}

/// A body written from borrowed fields ([`Tagged`]) is byte for byte the message its
/// variant gives: a client's `get` of its own graph, a worker's `get_data` of keys it keeps.
#[test]
fn borrowed_bodies_write_the_golden_bytes() {
    let graph = graph();
    let keys = Value::from("y");
    let get = Tagged(GetBody {
        request: 7,
        graph: &graph,
        keys: &keys,
        keep_results: false,
        progress: false,
    });
    assert_eq!(rmp_serde::to_vec_named(&get).unwrap(), from_hex(GET));
    let keys: Vec<Arc<str>> = vec![Arc::from("x"), Arc::from("w")];
    let get_data = Tagged(GetDataBody {
        request: 5,
        keys: &keys[..],
    });
    assert_eq!(
        rmp_serde::to_vec_named(&get_data).unwrap(),
        from_hex(TO_WORKER_GET_DATA)
    );
    let ToWorker::Compute(body) = compute() else {
        unreachable!()
    };
    assert_eq!(
        rmp_serde::to_vec_named(&Tagged(body)).unwrap(),
        from_hex(COMPUTE)
    );
}

/// Headers are read leniently: fields in any order, `op` anywhere, unknown fields ignored,
/// optional fields left out, integers in any width, an error kind this version does not know.
#[test]
fn lenient_headers_are_read() {
    let report = Value::Map(vec![
        (Value::from("zzz_future_field"), Value::Int(1)),
        (
            Value::from("failed"),
            Value::List(vec![Value::Map(vec![
                (Value::from("message"), Value::from("over quota")),
                (Value::from("kind"), Value::from("quota_exceeded")),
                (Value::from("key"), Value::from("z")),
            ])]),
        ),
        (Value::from("op"), Value::from("report")),
    ]);
    let header = rmp_serde::to_vec_named(&report).unwrap();
    let expected = FromWorker::Report(ReportBody {
        done: Vec::new(),
        failed: vec![TaskFailed {
            key: "z".into(),
            hash: None,
            kind: ErrorKind::Other("quota_exceeded".into()),
            function: None,
            message: "over quota".into(),
            missing: None,
        }],
        acquired: Vec::new(),
    });
    assert_eq!(FromWorker::decode(&header).unwrap(), expected);
    // `{"op": "status", "request": 2}` with the request as a u64 (cf 00 .. 02).
    let wide = from_hex(
        "82 a2 6f 70 a6 73 74 61 74 75 73 \
         a7 72 65 71 75 65 73 74 cf 00 00 00 00 00 00 00 02",
    );
    assert_eq!(
        FromClient::decode(&wide).unwrap(),
        FromClient::Status { request: 2 }
    );
}

// ----- docs/protocol.md ---------------------------------------------------------------------

/// The section of `docs/protocol.md` that shows every message.
const SECTION: &str = "## Every message, byte for byte";

/// An example as the document shows it.
#[derive(Default)]
struct Shown {
    readable: Option<String>,
    hex: Option<String>,
}

/// The examples of the document's section, by (direction, op).
fn shown_examples(doc: &str) -> BTreeMap<(String, String), Shown> {
    let start = doc
        .find(SECTION)
        .unwrap_or_else(|| panic!("docs/protocol.md has no section {SECTION:?}"));
    let mut examples: BTreeMap<(String, String), Shown> = BTreeMap::new();
    let mut direction = None;
    let mut op = None;
    let mut block: Option<(String, String)> = None; // (language, text)
    for line in doc[start + SECTION.len()..].lines() {
        if let Some((language, text)) = &mut block {
            if line.trim_end() == "```" {
                let (language, text) = (language.clone(), text.clone());
                block = None;
                let (Some(d), Some(o)) = (&direction, &op) else {
                    panic!("an example before its direction and op: {text}");
                };
                let shown = examples
                    .entry((String::clone(d), String::clone(o)))
                    .or_default();
                let slot = match language.as_str() {
                    "hex" => &mut shown.hex,
                    "text" => &mut shown.readable,
                    other => panic!("{d} `{o}`: a block of {other:?} (expected text or hex)"),
                };
                assert!(slot.is_none(), "{d} `{o}` shows two {language} blocks");
                *slot = Some(text);
            } else {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        if line.starts_with("## ") {
            break; // The next section.
        } else if let Some(heading) = line.strip_prefix("### ") {
            direction = Some(heading.trim().to_string());
            op = None;
        } else if let Some(heading) = line.strip_prefix("#### ") {
            op = Some(heading.trim().trim_matches('`').to_string());
        } else if let Some(language) = line.strip_prefix("```") {
            block = Some((language.trim().to_string(), String::new()));
        }
    }
    examples
}

/// Every example `docs/protocol.md` shows is exactly what the code writes and reads (its
/// bytes, and its readable form), and every op of every direction has one.
#[test]
fn the_protocol_document_shows_the_golden_bytes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let shown = shown_examples(&doc);
    let cases = cases();
    let expected: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.direction.to_string(), c.op.clone()))
        .collect();
    let found: BTreeSet<(String, String)> = shown.keys().cloned().collect();
    let regenerate = "(cargo test -p zask-core --test golden -- --ignored --nocapture prints the \
                      section anew)";
    assert_eq!(
        found.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "docs/protocol.md shows examples of no message {regenerate}"
    );
    assert_eq!(
        expected.difference(&found).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "docs/protocol.md lacks these examples {regenerate}"
    );
    for case in &cases {
        let shown = &shown[&(case.direction.to_string(), case.op.clone())];
        let what = format!("docs/protocol.md, {} `{}`", case.direction, case.op);
        let hex = shown
            .hex
            .as_deref()
            .unwrap_or_else(|| panic!("{what} has no hex block"));
        assert_eq!(
            from_hex(hex),
            case.encoded,
            "{what}: the bytes shown are not the message's {regenerate}"
        );
        assert_eq!(
            shown.readable.as_deref().map(str::trim_end),
            Some(readable(&case.encoded).trim_end()),
            "{what}: the readable form shown is not the message's {regenerate}"
        );
    }
}

/// Prints the document's section and every case's hex, from the code as it is.
#[test]
#[ignore]
fn print_the_examples() {
    let cases = cases();
    let mut doc = String::new();
    let mut direction = "";
    for case in &cases {
        if case.direction != direction {
            direction = case.direction;
            let _ = write!(doc, "### {direction}\n\n");
        }
        let _ = write!(
            doc,
            "#### `{}`\n\n```text\n{}```\n\n```hex\n{}```\n\n",
            case.op,
            readable(&case.encoded),
            hex_lines(&case.encoded)
        );
    }
    println!("{doc}");
    for case in &cases {
        println!(
            "{} `{}`:\n{}",
            case.direction,
            case.op,
            hex_lines(&case.encoded)
        );
    }
}

/// A header's bytes in hex: the map's length and `op` on the first line, then a line per
/// field (wrapped after 16 bytes, continued indented), so that they read beside
/// [`readable`].
fn hex_lines(header: &[u8]) -> String {
    let mut out = String::new();
    for part in header_parts(header) {
        for (j, chunk) in part.chunks(16).enumerate() {
            if j > 0 {
                out.push_str("  ");
            }
            let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&bytes.join(" "));
            out.push('\n');
        }
    }
    out
}

/// A header's bytes cut where [`readable`] starts a line: the map's length with the first
/// field, then each field.
fn header_parts(header: &[u8]) -> Vec<&[u8]> {
    let mut rd = header;
    if rmp::decode::read_map_len(&mut rd).is_err() {
        return vec![header];
    }
    let mut parts = Vec::new();
    let mut start = header;
    while !rd.is_empty() {
        msgpack::skip(&mut rd).expect("a field name");
        msgpack::skip(&mut rd).expect("a field value");
        let len = start.len() - rd.len();
        parts.push(&start[..len]);
        start = rd;
    }
    if parts.is_empty() {
        parts.push(header);
    }
    parts
}

/// A header in a readable form, a field per line: JSON, but for bin values, shown as
/// `bin(hex)`.
fn readable(header: &[u8]) -> String {
    let value = rmpv::decode::read_value(&mut &header[..]).expect("msgpack");
    let rmpv::Value::Map(fields) = value else {
        return format!("{}\n", show(&value));
    };
    if fields.is_empty() {
        return "{}\n".into();
    }
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ' ' });
        let _ = write!(out, "{}: {}", show(name), show(value));
        out.push_str(if i + 1 == fields.len() { "}\n" } else { ",\n" });
    }
    out
}

/// A msgpack value on one line.
fn show(value: &rmpv::Value) -> String {
    use rmpv::Value as V;
    match value {
        V::Nil => "null".into(),
        V::Boolean(b) => b.to_string(),
        V::Integer(i) => i.to_string(),
        V::F32(f) => format!("{f:?}"),
        V::F64(f) => format!("{f:?}"),
        V::String(s) => serde_json::to_string(s.as_str().expect("UTF-8")).expect("a string"),
        V::Binary(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("bin({hex})")
        }
        V::Array(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        V::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        V::Ext(tag, bytes) => format!("ext({tag}, {bytes:?})"),
    }
}

// ----- the golden bytes ---------------------------------------------------------------------

/// Client → scheduler: `hello`.
const HELLO: &str = "\
    83 a2 6f 70 a5 68 65 6c 6c 6f
    a7 72 65 71 75 65 73 74 01
    a8 70 72 6f 74 6f 63 6f 6c 04
";
/// Client → scheduler: `get`.
const GET: &str = "\
    85 a2 6f 70 a3 67 65 74
    a7 72 65 71 75 65 73 74 07
    a5 67 72 61 70 68 82 a1 78 01 a1 79 82 a2 66 6e
      a3 61 64 64 a4 61 72 67 73 92 81 a3 72 65 66 a1
      78 02
    a4 6b 65 79 73 a1 79
    ac 6b 65 65 70 5f 72 65 73 75 6c 74 73 c2
";
/// Client → scheduler: `status`.
const STATUS: &str = "\
    82 a2 6f 70 a6 73 74 61 74 75 73
    a7 72 65 71 75 65 73 74 02
";
/// Client → scheduler: `workers`.
const WORKERS: &str = "\
    82 a2 6f 70 a7 77 6f 72 6b 65 72 73
    a7 72 65 71 75 65 73 74 03
";
/// Client → scheduler: `goodbye`.
const GOODBYE: &str = "\
    81 a2 6f 70 a7 67 6f 6f 64 62 79 65
";
/// Client → scheduler: `set_collection`.
const SET_COLLECTION: &str = "\
    84 a2 6f 70 ae 73 65 74 5f 63 6f 6c 6c 65 63 74
      69 6f 6e
    a7 72 65 71 75 65 73 74 04
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
    aa 63 6f 6c 6c 65 63 74 69 6f 6e 84 a4 6b 69 6e
      64 a5 67 72 61 70 68 a5 67 72 61 70 68 81 a1 78
      01 a4 6b 65 79 73 a1 78 a4 6d 65 74 61 80
";
/// Client → scheduler: `get_collection`.
const GET_COLLECTION: &str = "\
    83 a2 6f 70 ae 67 65 74 5f 63 6f 6c 6c 65 63 74
      69 6f 6e
    a7 72 65 71 75 65 73 74 05
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
";
/// Client → scheduler: `list_collections`.
const LIST_COLLECTIONS: &str = "\
    82 a2 6f 70 b0 6c 69 73 74 5f 63 6f 6c 6c 65 63
      74 69 6f 6e 73
    a7 72 65 71 75 65 73 74 06
";
/// Client → scheduler: `delete_collection`.
const DELETE_COLLECTION: &str = "\
    83 a2 6f 70 b1 64 65 6c 65 74 65 5f 63 6f 6c 6c
      65 63 74 69 6f 6e
    a7 72 65 71 75 65 73 74 08
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
";
/// Client → scheduler: `scatter`.
const SCATTER: &str = "\
    83 a2 6f 70 a7 73 63 61 74 74 65 72
    a7 72 65 71 75 65 73 74 09
    a5 69 74 65 6d 73 92 82 a3 6b 65 79 a9 73 63 61
      74 74 65 72 2d 31 a4 64 61 74 61 83 a5 76 61 6c
      75 65 a5 68 65 6c 6c 6f a5 66 72 61 6d 65 c0 a3
      72 61 77 c2 82 a3 6b 65 79 a3 62 69 67 a4 64 61
      74 61 83 a5 76 61 6c 75 65 c0 a5 66 72 61 6d 65
      00 a3 72 61 77 c3
";
/// Client → scheduler: `gather`.
const GATHER: &str = "\
    83 a2 6f 70 a6 67 61 74 68 65 72
    a7 72 65 71 75 65 73 74 0a
    a4 6b 65 79 73 91 a9 73 63 61 74 74 65 72 2d 31
";
/// Client → scheduler: `release`.
const RELEASE: &str = "\
    83 a2 6f 70 a7 72 65 6c 65 61 73 65
    a7 72 65 71 75 65 73 74 0b
    a4 6b 65 79 73 91 a9 73 63 61 74 74 65 72 2d 31
";
/// Client → scheduler: `retire`.
const RETIRE: &str = "\
    83 a2 6f 70 a6 72 65 74 69 72 65
    a7 72 65 71 75 65 73 74 0c
    a7 61 64 64 72 65 73 73 b3 74 63 70 3a 2f 2f 31
      30 2e 30 2e 30 2e 32 3a 37 30 30 31
";

/// Scheduler → client: `welcome`.
const TO_CLIENT_WELCOME: &str = "\
    84 a2 6f 70 a7 77 65 6c 63 6f 6d 65
    a7 72 65 71 75 65 73 74 01
    a8 70 72 6f 74 6f 63 6f 6c 04
    ac 73 63 68 65 64 75 6c 65 72 5f 69 64 ac 73 63
      68 65 64 75 6c 65 72 2d 61 31
";
/// Scheduler → client: `result`.
const RESULT: &str = "\
    83 a2 6f 70 a6 72 65 73 75 6c 74
    a7 72 65 71 75 65 73 74 07
    a5 69 74 65 6d 73 92 82 a3 6b 65 79 a1 79 a4 64
      61 74 61 83 a5 76 61 6c 75 65 03 a5 66 72 61 6d
      65 c0 a3 72 61 77 c2 82 a3 6b 65 79 a3 62 69 67
      a4 64 61 74 61 83 a5 76 61 6c 75 65 c0 a5 66 72
      61 6d 65 00 a3 72 61 77 c2
";
/// Scheduler → client: `error`.
const ERROR: &str = "\
    83 a2 6f 70 a5 65 72 72 6f 72
    a7 72 65 71 75 65 73 74 07
    a5 65 72 72 6f 72 85 a4 6b 69 6e 64 b1 64 65 70
      65 6e 64 65 6e 63 79 5f 66 61 69 6c 65 64 a7 6d
      65 73 73 61 67 65 d9 3e 6b 65 79 20 22 79 22 20
      63 6f 75 6c 64 20 6e 6f 74 20 62 65 20 63 6f 6d
      70 75 74 65 64 3a 20 69 74 20 64 65 70 65 6e 64
      73 20 6f 6e 20 22 78 22 2c 20 77 68 69 63 68 20
      66 61 69 6c 65 64 a3 6b 65 79 a1 79 a8 66 75 6e
      63 74 69 6f 6e a3 69 6e 63 aa 64 65 70 65 6e 64
      65 6e 63 79 a1 78
";
/// Scheduler → client: `status`.
const TO_CLIENT_STATUS: &str = "\
    87 a2 6f 70 a6 73 74 61 74 75 73
    a7 72 65 71 75 65 73 74 02
    ac 73 63 68 65 64 75 6c 65 72 5f 69 64 ac 73 63
      68 65 64 75 6c 65 72 2d 61 31
    a7 77 6f 72 6b 65 72 73 02
    a5 74 61 73 6b 73 0a
    a6 67 72 61 70 68 73 01
    a4 6b 65 79 73 04
";
/// Scheduler → client: `workers`.
const TO_CLIENT_WORKERS: &str = "\
    83 a2 6f 70 a7 77 6f 72 6b 65 72 73
    a7 72 65 71 75 65 73 74 03
    a7 77 6f 72 6b 65 72 73 91 89 a7 61 64 64 72 65
      73 73 b3 74 63 70 3a 2f 2f 31 30 2e 30 2e 30 2e
      32 3a 37 30 30 31 a9 77 6f 72 6b 65 72 5f 69 64
      a9 77 6f 72 6b 65 72 2d 62 37 a3 70 69 64 cd 10
      92 a8 6e 74 68 72 65 61 64 73 04 a9 66 75 6e 63
      74 69 6f 6e 73 92 a3 61 64 64 a3 69 6e 63 a4 6b
      65 79 73 02 a6 6e 62 79 74 65 73 10 aa 70 72 6f
      63 65 73 73 69 6e 67 01 ac 6c 61 73 74 5f 73 65
      65 6e 5f 6d 73 78
";
/// Scheduler → client: `collection_stored`.
const COLLECTION_STORED: &str = "\
    84 a2 6f 70 b1 63 6f 6c 6c 65 63 74 69 6f 6e 5f
      73 74 6f 72 65 64
    a7 72 65 71 75 65 73 74 04
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
    a8 72 65 70 6c 61 63 65 64 c2
";
/// Scheduler → client: `collection`.
const COLLECTION: &str = "\
    84 a2 6f 70 aa 63 6f 6c 6c 65 63 74 69 6f 6e
    a7 72 65 71 75 65 73 74 05
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
    aa 63 6f 6c 6c 65 63 74 69 6f 6e 84 a4 6b 69 6e
      64 a5 67 72 61 70 68 a5 67 72 61 70 68 81 a1 78
      01 a4 6b 65 79 73 a1 78 a4 6d 65 74 61 80
";
/// Scheduler → client: `collections`.
const COLLECTIONS: &str = "\
    83 a2 6f 70 ab 63 6f 6c 6c 65 63 74 69 6f 6e 73
    a7 72 65 71 75 65 73 74 06
    ab 63 6f 6c 6c 65 63 74 69 6f 6e 73 91 84 a4 6e
      61 6d 65 a7 6e 75 6d 62 65 72 73 a4 6b 69 6e 64
      a5 67 72 61 70 68 a5 74 61 73 6b 73 01 a6 6e 62
      79 74 65 73 28
";
/// Scheduler → client: `collection_deleted`.
const COLLECTION_DELETED: &str = "\
    83 a2 6f 70 b2 63 6f 6c 6c 65 63 74 69 6f 6e 5f
      64 65 6c 65 74 65 64
    a7 72 65 71 75 65 73 74 08
    a4 6e 61 6d 65 a7 6e 75 6d 62 65 72 73
";
/// Scheduler → client: `scattered`.
const SCATTERED: &str = "\
    83 a2 6f 70 a9 73 63 61 74 74 65 72 65 64
    a7 72 65 71 75 65 73 74 09
    a4 6b 65 79 73 92 a9 73 63 61 74 74 65 72 2d 31
      a3 62 69 67
";
/// Scheduler → client: `retired`.
const TO_CLIENT_RETIRED: &str = "\
    83 a2 6f 70 a7 72 65 74 69 72 65 64
    a7 72 65 71 75 65 73 74 0c
    a7 61 64 64 72 65 73 73 b3 74 63 70 3a 2f 2f 31
      30 2e 30 2e 30 2e 32 3a 37 30 30 31
";
/// Scheduler → client: `released`.
const RELEASED: &str = "\
    84 a2 6f 70 a8 72 65 6c 65 61 73 65 64
    a7 72 65 71 75 65 73 74 0b
    a4 6b 65 79 73 91 a9 73 63 61 74 74 65 72 2d 31
    a7 75 6e 6b 6e 6f 77 6e 90
";

/// Worker → scheduler: `register`.
const REGISTER: &str = "\
    88 a2 6f 70 a8 72 65 67 69 73 74 65 72
    a8 70 72 6f 74 6f 63 6f 6c 04
    a9 77 6f 72 6b 65 72 5f 69 64 a9 77 6f 72 6b 65
      72 2d 62 37
    a7 61 64 64 72 65 73 73 b3 74 63 70 3a 2f 2f 31
      30 2e 30 2e 30 2e 32 3a 37 30 30 31
    a3 70 69 64 cd 10 92
    a8 6e 74 68 72 65 61 64 73 04
    a9 66 75 6e 63 74 69 6f 6e 73 92 a3 61 64 64 a3
      69 6e 63
    a3 68 61 73 91 83 a3 6b 65 79 a1 78 a6 6e 62 79
      74 65 73 08 a4 68 61 73 68 c4 10 01 01 01 01 01
      01 01 01 01 01 01 01 01 01 01 01
";
/// Worker → scheduler: `heartbeat`.
const HEARTBEAT: &str = "\
    82 a2 6f 70 a9 68 65 61 72 74 62 65 61 74
    a9 77 6f 72 6b 65 72 5f 69 64 a9 77 6f 72 6b 65
      72 2d 62 37
";
/// Worker → scheduler: `task_status`.
const TASK_STATUS: &str = "\
    83 a2 6f 70 ab 74 61 73 6b 5f 73 74 61 74 75 73
    a7 72 65 71 75 65 73 74 03
    a7 75 6e 6b 6e 6f 77 6e 91 a1 79
";
/// Worker → scheduler: `report`.
const REPORT: &str = "\
    84 a2 6f 70 a6 72 65 70 6f 72 74
    a4 64 6f 6e 65 91 85 a3 6b 65 79 a1 79 a4 68 61
      73 68 c4 10 02 02 02 02 02 02 02 02 02 02 02 02
      02 02 02 02 a6 6e 62 79 74 65 73 08 ab 64 75 72
      61 74 69 6f 6e 5f 75 73 0c a4 64 61 74 61 83 a5
      76 61 6c 75 65 03 a5 66 72 61 6d 65 c0 a3 72 61
      77 c2
    a6 66 61 69 6c 65 64 91 86 a3 6b 65 79 a1 7a a4
      68 61 73 68 c4 10 03 03 03 03 03 03 03 03 03 03
      03 03 03 03 03 03 a4 6b 69 6e 64 ab 74 61 73 6b
      5f 66 61 69 6c 65 64 a8 66 75 6e 63 74 69 6f 6e
      a3 64 69 76 a7 6d 65 73 73 61 67 65 b0 64 69 76
      69 73 69 6f 6e 20 62 79 20 7a 65 72 6f a7 6d 69
      73 73 69 6e 67 c0
    a8 61 63 71 75 69 72 65 64 91 83 a3 6b 65 79 a1
      77 a6 6e 62 79 74 65 73 08 a4 68 61 73 68 c4 10
      04 04 04 04 04 04 04 04 04 04 04 04 04 04 04 04
";
/// Worker → scheduler: `data`.
const FROM_WORKER_DATA: &str = "\
    84 a2 6f 70 a4 64 61 74 61
    a7 72 65 71 75 65 73 74 05
    a5 69 74 65 6d 73 91 82 a3 6b 65 79 a1 78 a4 64
      61 74 61 83 a5 76 61 6c 75 65 01 a5 66 72 61 6d
      65 c0 a3 72 61 77 c2
    a7 6d 69 73 73 69 6e 67 91 a1 77
";
/// Worker → scheduler: `goodbye`.
const FROM_WORKER_GOODBYE: &str = "\
    82 a2 6f 70 a7 67 6f 6f 64 62 79 65
    a9 77 6f 72 6b 65 72 5f 69 64 a9 77 6f 72 6b 65
      72 2d 62 37
";
/// Worker → scheduler: `retiring`.
const RETIRING: &str = "\
    82 a2 6f 70 a8 72 65 74 69 72 69 6e 67
    a9 77 6f 72 6b 65 72 5f 69 64 a9 77 6f 72 6b 65
      72 2d 62 37
";

/// Scheduler → worker: `welcome`.
const TO_WORKER_WELCOME: &str = "\
    83 a2 6f 70 a7 77 65 6c 63 6f 6d 65
    a8 70 72 6f 74 6f 63 6f 6c 04
    ac 73 63 68 65 64 75 6c 65 72 5f 69 64 ac 73 63
      68 65 64 75 6c 65 72 2d 61 31
";
/// Scheduler → worker: `rejected`.
const REJECTED: &str = "\
    82 a2 6f 70 a8 72 65 6a 65 63 74 65 64
    a7 6d 65 73 73 61 67 65 d9 2c 77 6f 72 6b 65 72
      20 73 70 65 61 6b 73 20 70 72 6f 74 6f 63 6f 6c
      20 31 2c 20 73 63 68 65 64 75 6c 65 72 20 73 70
      65 61 6b 73 20 32
";
/// Scheduler → worker: `please_register`.
const PLEASE_REGISTER: &str = "\
    81 a2 6f 70 af 70 6c 65 61 73 65 5f 72 65 67 69
      73 74 65 72
";
/// Scheduler → worker: `compute`.
const COMPUTE: &str = "\
    82 a2 6f 70 a7 63 6f 6d 70 75 74 65
    a5 74 61 73 6b 73 91 85 a3 6b 65 79 a1 79 a4 68
      61 73 68 c4 10 02 02 02 02 02 02 02 02 02 02 02
      02 02 02 02 02 a4 6e 6f 64 65 82 a2 66 6e a3 61
      64 64 a4 61 72 67 73 92 81 a3 72 65 66 a1 78 02
      a7 77 68 6f 5f 68 61 73 91 93 a1 78 c4 10 01 01
      01 01 01 01 01 01 01 01 01 01 01 01 01 01 91 b3
      74 63 70 3a 2f 2f 31 30 2e 30 2e 30 2e 33 3a 37
      30 30 31 aa 73 65 6e 64 5f 76 61 6c 75 65 c3
";
/// Scheduler → worker: `release`.
const TO_WORKER_RELEASE: &str = "\
    82 a2 6f 70 a7 72 65 6c 65 61 73 65
    a4 6b 65 79 73 91 a1 78
";
/// Scheduler → worker: `put_data`.
const PUT_DATA: &str = "\
    82 a2 6f 70 a8 70 75 74 5f 64 61 74 61
    a5 69 74 65 6d 73 91 83 a3 6b 65 79 a9 73 63 61
      74 74 65 72 2d 31 a4 64 61 74 61 83 a5 76 61 6c
      75 65 a5 68 65 6c 6c 6f a5 66 72 61 6d 65 c0 a3
      72 61 77 c2 a4 68 61 73 68 c4 10 05 05 05 05 05
      05 05 05 05 05 05 05 05 05 05 05
";
/// Scheduler → worker: `get_data`.
const TO_WORKER_GET_DATA: &str = "\
    83 a2 6f 70 a8 67 65 74 5f 64 61 74 61
    a7 72 65 71 75 65 73 74 05
    a4 6b 65 79 73 92 a1 78 a1 77
";
/// Scheduler → worker: `closing`.
const CLOSING: &str = "\
    81 a2 6f 70 a7 63 6c 6f 73 69 6e 67
";
/// Scheduler → worker: `replicate`.
const REPLICATE: &str = "\
    82 a2 6f 70 a9 72 65 70 6c 69 63 61 74 65
    a7 77 68 6f 5f 68 61 73 91 93 a1 78 c4 10 01 01
      01 01 01 01 01 01 01 01 01 01 01 01 01 01 91 b3
      74 63 70 3a 2f 2f 31 30 2e 30 2e 30 2e 32 3a 37
      30 30 31
";
/// Scheduler → worker: `check_tasks`.
const CHECK_TASKS: &str = "\
    83 a2 6f 70 ab 63 68 65 63 6b 5f 74 61 73 6b 73
    a7 72 65 71 75 65 73 74 03
    a4 6b 65 79 73 91 92 a1 79 c4 10 02 02 02 02 02
      02 02 02 02 02 02 02 02 02 02 02
";
/// Scheduler → worker: `retired`.
const TO_WORKER_RETIRED: &str = "\
    81 a2 6f 70 a7 72 65 74 69 72 65 64
";
/// Scheduler → worker: `peer_gone`.
const PEER_GONE: &str = "\
    82 a2 6f 70 a9 70 65 65 72 5f 67 6f 6e 65
    a7 61 64 64 72 65 73 73 b3 74 63 70 3a 2f 2f 31
      30 2e 30 2e 30 2e 33 3a 37 30 30 31
";

/// Worker → worker: request: `get_data`.
const PEER_GET_DATA: &str = "\
    83 a2 6f 70 a8 67 65 74 5f 64 61 74 61
    a7 72 65 71 75 65 73 74 01
    a4 6b 65 79 73 91 a1 78
";
/// Worker → worker: reply: `data`.
const PEER_DATA: &str = "\
    84 a2 6f 70 a4 64 61 74 61
    a7 72 65 71 75 65 73 74 01
    a5 69 74 65 6d 73 91 83 a3 6b 65 79 a1 78 a4 64
    61 74 61 83 a5 76 61 6c 75 65 01 a5 66 72 61 6d
    65 c0 a3 72 61 77 c2 a4 68 61 73 68 c4 10 01 01
    01 01 01 01 01 01 01 01 01 01 01 01 01 01
    a7 6d 69 73 73 69 6e 67 90
";
/// Worker → worker: reply: `error`.
const PEER_ERROR: &str = "\
    83 a2 6f 70 a5 65 72 72 6f 72
    a7 72 65 71 75 65 73 74 00
    a7 6d 65 73 73 61 67 65 b9 63 61 6e 6e 6f 74 20
    64 65 63 6f 64 65 20 74 68 65 20 72 65 71 75 65
    73 74
";
/// Client → scheduler: `submit`.
const SUBMIT: &str = "\
    83 a2 6f 70 a6 73 75 62 6d 69 74
    a7 72 65 71 75 65 73 74 0d
    a5 69 74 65 6d 73 91 84 a5 67 72 61 70 68 82 a1
      78 01 a1 79 82 a2 66 6e a3 61 64 64 a4 61 72 67
      73 92 81 a3 72 65 66 a1 78 02 a4 6b 65 79 73 91
      a1 79 a8 70 72 69 6f 72 69 74 79 05 a7 72 65 74
      72 69 65 73 02
";
/// Client → scheduler: `drop_futures`.
const DROP_FUTURES: &str = "\
    82 a2 6f 70 ac 64 72 6f 70 5f 66 75 74 75 72 65
      73
    a4 6b 65 79 73 91 a1 79
";
/// Client → scheduler: `cancel`.
const FROM_CLIENT_CANCEL: &str = "\
    82 a2 6f 70 a6 63 61 6e 63 65 6c
    a4 6b 65 79 73 91 a1 79
";
/// Scheduler → client: `submitted`.
const SUBMITTED: &str = "\
    82 a2 6f 70 a9 73 75 62 6d 69 74 74 65 64
    a7 72 65 71 75 65 73 74 0d
";
/// Scheduler → client: `events`.
const EVENTS: &str = "\
    82 a2 6f 70 a6 65 76 65 6e 74 73
    a6 65 76 65 6e 74 73 92 82 a3 6b 65 79 a1 79 a6
      73 74 61 74 75 73 a4 64 6f 6e 65 83 a3 6b 65 79
      a1 7a a6 73 74 61 74 75 73 a5 65 72 72 65 64 a5
      65 72 72 6f 72 84 a4 6b 69 6e 64 ab 74 61 73 6b
      5f 66 61 69 6c 65 64 a7 6d 65 73 73 61 67 65 a4
      62 6f 6f 6d a3 6b 65 79 a1 7a a8 66 75 6e 63 74
      69 6f 6e a4 66 61 69 6c
";
/// Scheduler → client: `progress`.
const PROGRESS: &str = "\
    85 a2 6f 70 a8 70 72 6f 67 72 65 73 73
    a7 72 65 71 75 65 73 74 07
    a4 64 6f 6e 65 02
    a6 66 61 69 6c 65 64 00
    a5 74 6f 74 61 6c 03
";
/// Client → scheduler: `computations`.
const COMPUTATIONS: &str = "\
    82 a2 6f 70 ac 63 6f 6d 70 75 74 61 74 69 6f 6e
      73
    a7 72 65 71 75 65 73 74 0e
";
/// Client → scheduler: `cancel_computation`.
const CANCEL_COMPUTATION: &str = "\
    83 a2 6f 70 b2 63 61 6e 63 65 6c 5f 63 6f 6d 70
      75 74 61 74 69 6f 6e
    a7 72 65 71 75 65 73 74 0f
    a2 69 64 a5 67 65 74 2d 33
";
/// Client → scheduler: `held_keys`.
const HELD_KEYS: &str = "\
    83 a2 6f 70 a9 68 65 6c 64 5f 6b 65 79 73
    a7 72 65 71 75 65 73 74 10
    a5 6c 69 6d 69 74 64
";
/// Scheduler → client: `computations`.
const TO_CLIENT_COMPUTATIONS: &str = "\
    83 a2 6f 70 ac 63 6f 6d 70 75 74 61 74 69 6f 6e
      73
    a7 72 65 71 75 65 73 74 0e
    ac 63 6f 6d 70 75 74 61 74 69 6f 6e 73 91 88 a2
      69 64 a5 67 65 74 2d 33 a4 6b 69 6e 64 a3 67 65
      74 a6 63 6c 69 65 6e 74 a4 30 30 61 31 a6 61 67
      65 5f 6d 73 cd 05 dc a5 74 6f 74 61 6c 03 a4 64
      6f 6e 65 01 a6 66 61 69 6c 65 64 00 a7 77 61 69
      74 69 6e 67 02
";
/// Scheduler → client: `computation_cancelled`.
const COMPUTATION_CANCELLED: &str = "\
    83 a2 6f 70 b5 63 6f 6d 70 75 74 61 74 69 6f 6e
      5f 63 61 6e 63 65 6c 6c 65 64
    a7 72 65 71 75 65 73 74 0f
    a2 69 64 a5 67 65 74 2d 33
";
/// Scheduler → client: `held_keys`.
const TO_CLIENT_HELD_KEYS: &str = "\
    84 a2 6f 70 a9 68 65 6c 64 5f 6b 65 79 73
    a7 72 65 71 75 65 73 74 10
    a5 74 6f 74 61 6c 01
    a4 6b 65 79 73 91 83 a3 6b 65 79 a1 79 a6 6e 62
      79 74 65 73 08 a7 68 6f 6c 64 65 72 73 91 b3 74
      63 70 3a 2f 2f 31 30 2e 30 2e 30 2e 32 3a 37 30
      30 31
";
/// Scheduler → worker: `cancel`.
const TO_WORKER_CANCEL: &str = "\
    82 a2 6f 70 a6 63 61 6e 63 65 6c
    a4 6b 65 79 73 91 a1 79
";
