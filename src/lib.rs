//! zask: a distributed task scheduler. One scheduler, many workers, many clients, over ZeroMQ.
//!
//! This crate re-exports the public API of the workspace and runs a whole cluster in one
//! process ([`LocalCluster`], what `zask local` uses):
//!
//! ```no_run
//! use zask::{LocalCluster, graph::{Graph, key, task}};
//! let cluster = LocalCluster::start(2, 1).unwrap();
//! let client = cluster.client().unwrap();
//! let mut graph = Graph::new();
//! graph.insert("x", 1);
//! graph.insert("y", task("inc", (key("x"),)));
//! assert_eq!(client.get(&graph, "y").unwrap(), zask::Value::Int(2));
//! ```
//!
//! The pieces: `zask-core` (values, graphs, protocol), `zask-scheduler`, `zask-worker`,
//! `zask-client`. [`cli`] is the `zask` command line (the binary, src/main.rs, and the Python
//! package's console script call it), with `zask bench` (src/bench.rs, not part of this
//! library's API).

#![warn(missing_docs)]

mod bench;
pub mod cli;
pub mod local;

pub use local::{Error, LocalCluster};
pub use zask_client::error as client_error;
pub use zask_client::{
    as_completed, wait, AsCompleted, Bag, Client, ClientOptions, Future, FutureStatus, GetProgress,
    Item, Status, Submit, WaitMode, Waited,
};
pub use zask_core::{frames, graph, keys, protocol, security, value};
pub use zask_core::{key, list, lit, task, Collection, ErrorInfo, Graph, Keys, Node, Value};
pub use zask_scheduler::{Config as SchedulerConfig, Scheduler, SchedulerOptions};
pub use zask_worker::{Args, Registry, Store, StoreKind, Worker, WorkerOptions};
