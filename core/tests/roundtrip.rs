//! Property test: every message of every direction, encoded as zask writes it and decoded as
//! zask reads it (`Message::decode`, the fast paths included), comes back equal.

use std::sync::Arc;

use proptest::prelude::*;
use zask_core::frames;
use zask_core::graph::{Graph, Node, Task};
use zask_core::graph_serde::HashedGraph;
use zask_core::protocol::{
    CollectionSummary, ComputeBody, ComputeTask, Data, DataBody, ErrorInfo, ErrorKind, FromClient,
    FromWorker, GetBody, GetDataBody, KeyData, KeyEvent, KeyInfo, KeyStatus, Message, PeerReply,
    PeerRequest, ReleaseBody, ReportBody, SubmitBody, SubmitItem, TaskDone, TaskFailed, ToClient,
    ToWorker, WorkerSummary,
};
use zask_core::{DefHash, Value};

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9_./-]{0,12}"
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-1e12f64..1e12).prop_map(Value::Float),
        text().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Value::Bytes(b.into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

fn hash() -> impl Strategy<Value = DefHash> {
    any::<[u8; 16]>().prop_map(DefHash)
}

fn data() -> impl Strategy<Value = Data> {
    (
        value(),
        proptest::option::of(0u32..8),
        any::<bool>(),
        0u32..3,
    )
        .prop_map(|(value, frame, raw, extra_frames)| Data {
            value,
            frame,
            raw,
            extra_frames,
        })
}

fn key_data() -> impl Strategy<Value = KeyData> {
    (text(), data(), proptest::option::of(hash())).prop_map(|(key, data, hash)| KeyData {
        key,
        data,
        hash,
    })
}

fn key_info() -> impl Strategy<Value = KeyInfo> {
    (text(), any::<u64>(), hash()).prop_map(|(key, nbytes, hash)| KeyInfo { key, nbytes, hash })
}

fn kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::TaskFailed),
        Just(ErrorKind::MissingDependency),
        Just(ErrorKind::KeyConflict),
        "[a-z_]{1,12}".prop_map(|name| ErrorKind::from_name(&name)),
    ]
}

/// A node, as a graph's wire form reads back (a node is written in one form of several that
/// mean the same: the strategy's node is read back once, and that form must then round-trip).
fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        value().prop_map(Node::Literal),
        "[a-z]{1,6}".prop_map(Node::Ref),
    ];
    let raw = leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Node::List),
            (
                "[a-z]{1,6}",
                proptest::collection::vec(inner.clone(), 0..3),
                proptest::collection::vec(("[a-z]{1,4}", inner), 0..2)
            )
                .prop_map(|(func, args, kwargs)| Node::Task(Task {
                    func,
                    args,
                    kwargs
                })),
        ]
    });
    raw.prop_map(|n| {
        let mut graph = Graph::new();
        graph.insert("k", n);
        let bytes = rmp_serde::to_vec_named(&graph).expect("a graph encodes");
        let back: Graph = rmp_serde::from_slice(&bytes).expect("a graph decodes");
        back.get("k").expect("the node").clone()
    })
}

fn graph() -> impl Strategy<Value = Graph> {
    proptest::collection::vec(("[a-z]{1,6}", node()), 0..4).prop_map(|entries| {
        let mut g = Graph::new();
        for (k, n) in entries {
            g.insert(k, n);
        }
        g
    })
}

fn compute_task() -> impl Strategy<Value = ComputeTask> {
    (
        text(),
        hash(),
        node(),
        proptest::collection::vec(
            (text(), hash(), proptest::collection::vec(text(), 0..3)),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(key, hash, node, who_has, send_value)| ComputeTask {
            key,
            hash,
            node: Arc::new(node),
            who_has: who_has
                .into_iter()
                .map(|(k, h, p)| (Arc::from(k), h, p.into_iter().map(Arc::from).collect()))
                .collect(),
            send_value,
        })
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..4)
}

fn from_client() -> impl Strategy<Value = FromClient> {
    prop_oneof![
        (any::<u64>(), any::<u32>())
            .prop_map(|(request, protocol)| FromClient::Hello { request, protocol }),
        (any::<u64>(), graph(), value(), any::<bool>(), any::<bool>()).prop_map(
            |(request, graph, keys, keep_results, progress)| {
                FromClient::Get(GetBody {
                    request,
                    graph: HashedGraph::new(graph),
                    keys,
                    keep_results,
                    progress,
                })
            }
        ),
        (
            any::<u64>(),
            proptest::collection::vec(
                (graph(), strings(), any::<i32>(), any::<u32>(), strings()),
                0..3
            )
        )
            .prop_map(|(request, items)| {
                FromClient::Submit(SubmitBody {
                    request,
                    items: items
                        .into_iter()
                        .map(|(graph, keys, priority, retries, workers)| SubmitItem {
                            graph: HashedGraph::new(graph),
                            keys,
                            priority,
                            retries,
                            workers,
                        })
                        .collect(),
                })
            }),
        strings().prop_map(|keys| FromClient::DropFutures { keys }),
        strings().prop_map(|keys| FromClient::Cancel { keys }),
        any::<u64>().prop_map(|request| FromClient::Status { request }),
        any::<u64>().prop_map(|request| FromClient::Workers { request }),
        (any::<u64>(), text(), value()).prop_map(|(request, name, collection)| {
            FromClient::SetCollection {
                request,
                name,
                collection,
            }
        }),
        (any::<u64>(), text())
            .prop_map(|(request, name)| FromClient::GetCollection { request, name }),
        any::<u64>().prop_map(|request| FromClient::ListCollections { request }),
        (any::<u64>(), text())
            .prop_map(|(request, name)| FromClient::DeleteCollection { request, name }),
        (any::<u64>(), proptest::collection::vec(key_data(), 0..3))
            .prop_map(|(request, items)| FromClient::Scatter { request, items }),
        (any::<u64>(), strings()).prop_map(|(request, keys)| FromClient::Gather { request, keys }),
        (any::<u64>(), strings()).prop_map(|(request, keys)| FromClient::Release { request, keys }),
        (any::<u64>(), text())
            .prop_map(|(request, address)| FromClient::Retire { request, address }),
        Just(FromClient::Goodbye),
    ]
}

fn error_info() -> impl Strategy<Value = ErrorInfo> {
    (
        kind(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(kind, message, key, function, dependency)| ErrorInfo {
            kind,
            message,
            key,
            function,
            dependency,
        })
}

fn to_client() -> impl Strategy<Value = ToClient> {
    let summary = (
        text(),
        text(),
        any::<u32>(),
        any::<u32>(),
        strings(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                address,
                worker_id,
                pid,
                nthreads,
                functions,
                keys,
                nbytes,
                processing,
                last_seen_ms,
            )| WorkerSummary {
                address,
                worker_id,
                pid,
                nthreads,
                functions,
                keys,
                nbytes,
                processing,
                last_seen_ms,
            },
        );
    let collection =
        (text(), text(), any::<u64>(), any::<u64>()).prop_map(|(name, kind, tasks, nbytes)| {
            CollectionSummary {
                name,
                kind,
                tasks,
                nbytes,
            }
        });
    prop_oneof![
        (any::<u64>(), any::<u32>(), text()).prop_map(|(request, protocol, scheduler_id)| {
            ToClient::Welcome {
                request,
                protocol,
                scheduler_id,
            }
        }),
        (any::<u64>(), proptest::collection::vec(key_data(), 0..3))
            .prop_map(|(request, items)| ToClient::Result { request, items }),
        (any::<u64>(), error_info())
            .prop_map(|(request, error)| ToClient::Error { request, error }),
        (
            any::<u64>(),
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(request, scheduler_id, workers, tasks, graphs, keys)| {
                ToClient::Status {
                    request,
                    scheduler_id,
                    workers,
                    tasks,
                    graphs,
                    keys,
                }
            }),
        (any::<u64>(), proptest::collection::vec(summary, 0..2))
            .prop_map(|(request, workers)| ToClient::Workers { request, workers }),
        (any::<u64>(), text(), any::<bool>()).prop_map(|(request, name, replaced)| {
            ToClient::CollectionStored {
                request,
                name,
                replaced,
            }
        }),
        (any::<u64>(), text(), value()).prop_map(|(request, name, collection)| {
            ToClient::Collection {
                request,
                name,
                collection,
            }
        }),
        (any::<u64>(), proptest::collection::vec(collection, 0..2)).prop_map(
            |(request, collections)| ToClient::Collections {
                request,
                collections
            }
        ),
        (any::<u64>(), text())
            .prop_map(|(request, name)| ToClient::CollectionDeleted { request, name }),
        (any::<u64>(), strings()).prop_map(|(request, keys)| ToClient::Scattered { request, keys }),
        (any::<u64>(), text())
            .prop_map(|(request, address)| ToClient::Retired { request, address }),
        (any::<u64>(), strings(), strings()).prop_map(|(request, keys, unknown)| {
            ToClient::Released {
                request,
                keys,
                unknown,
            }
        }),
        any::<u64>().prop_map(|request| ToClient::Submitted { request }),
        proptest::collection::vec(
            (
                text(),
                prop_oneof![
                    Just(KeyStatus::Done),
                    Just(KeyStatus::Erred),
                    Just(KeyStatus::Cancelled),
                    Just(KeyStatus::Lost)
                ],
                proptest::option::of(error_info())
            ),
            0..3
        )
        .prop_map(|events| ToClient::Events {
            events: events
                .into_iter()
                .map(|(key, status, error)| KeyEvent { key, status, error })
                .collect()
        }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(request, done, failed, total)| ToClient::Progress {
                request,
                done,
                failed,
                total
            }
        ),
    ]
}

fn from_worker() -> impl Strategy<Value = FromWorker> {
    let done = (
        text(),
        hash(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(data()),
    )
        .prop_map(|(key, hash, nbytes, duration_us, data)| TaskDone {
            key,
            hash,
            nbytes,
            duration_us,
            data,
        });
    let failed = (
        text(),
        proptest::option::of(hash()),
        kind(),
        proptest::option::of(text()),
        text(),
        proptest::option::of(text()),
    )
        .prop_map(|(key, hash, kind, function, message, missing)| TaskFailed {
            key,
            hash,
            kind,
            function,
            message,
            missing,
        });
    prop_oneof![
        (
            any::<u32>(),
            text(),
            text(),
            any::<u32>(),
            any::<u32>(),
            strings(),
            proptest::collection::vec(key_info(), 0..3)
        )
            .prop_map(
                |(protocol, worker_id, address, pid, nthreads, functions, has)| {
                    FromWorker::Register {
                        protocol,
                        worker_id,
                        address,
                        pid,
                        nthreads,
                        functions,
                        has,
                    }
                }
            ),
        text().prop_map(|worker_id| FromWorker::Heartbeat { worker_id }),
        (any::<u64>(), strings())
            .prop_map(|(request, unknown)| FromWorker::TaskStatus { request, unknown }),
        (
            proptest::collection::vec(done, 0..3),
            proptest::collection::vec(failed, 0..3),
            proptest::collection::vec(key_info(), 0..3)
        )
            .prop_map(|(done, failed, acquired)| FromWorker::Report(ReportBody {
                done,
                failed,
                acquired
            })),
        (
            any::<u64>(),
            proptest::collection::vec(key_data(), 0..3),
            strings()
        )
            .prop_map(|(request, items, missing)| FromWorker::Data(DataBody {
                request,
                items,
                missing
            })),
        text().prop_map(|worker_id| FromWorker::Goodbye { worker_id }),
        text().prop_map(|worker_id| FromWorker::Retiring { worker_id }),
    ]
}

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(protocol, scheduler_id)| ToWorker::Welcome {
            protocol,
            scheduler_id
        }),
        text().prop_map(|message| ToWorker::Rejected { message }),
        Just(ToWorker::PleaseRegister),
        proptest::collection::vec(compute_task(), 0..3)
            .prop_map(|tasks| ToWorker::Compute(ComputeBody { tasks })),
        strings().prop_map(|keys| ToWorker::Release(ReleaseBody { keys })),
        proptest::collection::vec(key_data(), 0..3).prop_map(|items| ToWorker::PutData { items }),
        (any::<u64>(), strings())
            .prop_map(|(request, keys)| ToWorker::GetData(GetDataBody { request, keys })),
        Just(ToWorker::Closing),
        proptest::collection::vec((text(), hash(), strings()), 0..3)
            .prop_map(|who_has| ToWorker::Replicate { who_has }),
        (
            any::<u64>(),
            proptest::collection::vec((text(), hash()), 0..3)
        )
            .prop_map(|(request, keys)| ToWorker::CheckTasks { request, keys }),
        Just(ToWorker::Retired),
        text().prop_map(|address| ToWorker::PeerGone { address }),
        strings().prop_map(|keys| ToWorker::Cancel { keys }),
    ]
}

fn peer_reply() -> impl Strategy<Value = PeerReply> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::collection::vec(key_data(), 0..3),
            strings()
        )
            .prop_map(|(request, items, missing)| PeerReply::Data(DataBody {
                request,
                items,
                missing
            })),
        (any::<u64>(), text()).prop_map(|(request, message)| PeerReply::Error { request, message }),
    ]
}

/// `msg` encoded as zask writes it, decoded as zask reads it.
fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: &M) -> M {
    let frames = frames::encode(msg, Vec::new()).expect("every message encodes");
    M::decode(&frames.header).unwrap_or_else(|e| panic!("{msg:?} did not decode: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_to_scheduler(msg in from_client()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn scheduler_to_client(msg in to_client()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn worker_to_scheduler(msg in from_worker()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn scheduler_to_worker(msg in to_worker()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn peers(request in any::<u64>(), keys in strings(), reply in peer_reply()) {
        let msg = PeerRequest::GetData(GetDataBody { request, keys });
        prop_assert_eq!(round_trip(&msg), msg);
        prop_assert_eq!(round_trip(&reply), reply);
    }
}
