//! zask-client: talk to a zask scheduler.
//!
//! ```no_run
//! use zask_client::Client;
//! use zask_core::graph::{Graph, key, task};
//! let client = Client::connect("tcp://127.0.0.1:8787").unwrap();
//! let mut graph = Graph::new();
//! graph.insert("x", 1);
//! graph.insert("y", task("add", (key("x"), 2)));
//! assert_eq!(client.get(&graph, "y").unwrap(), zask_core::Value::Int(3));
//! ```
//!
//! - [`client`]: [`Client`] (`get`, `scatter`/`gather`/`release`, collections, `status`,
//!   `workers`), cheap to clone and usable from many
//!   threads with many requests outstanding; every call has a timeout.
//! - [`bag`]: [`Bag`], a lazy partitioned sequence (dask's Bag) to compute or store as a
//!   collection.
//! - [`futures`]: [`Future`]s (`Client::submit`, `map`, `compute`), [`as_completed`],
//!   [`wait`], `Client::gather_futures`; `.await` works on a `Future`.
//! - [`error`]: [`Error`], what can go wrong, with the scheduler's error kind when it answered.

#![warn(missing_docs)]

pub mod bag;
pub mod client;
pub mod error;
pub mod futures;

pub use bag::{Bag, Item};
pub use client::{Client, ClientOptions, GetProgress, Status};
pub use error::Error;
pub use futures::{
    as_completed, wait, AsCompleted, AsCompletedResults, Future, FutureStatus, Submit, WaitMode,
    Waited,
};
pub use zask_core::Collection;
