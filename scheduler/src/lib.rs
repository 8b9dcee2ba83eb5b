//! zask-scheduler: the central scheduler of a zask cluster.
//!
//! It binds two ZeroMQ ROUTER sockets, one for workers and one for clients, tracks the workers
//! and who has which key, and runs the task graphs clients submit on the workers.
//!
//! - [`state`]: the sans-I/O brain, [`SchedulerState`], with `on_*` event methods and an
//!   [`Outbox`] of messages to send; all policy (validation, ordering, data locality, release
//!   of intermediates, failures, lost workers, the answers to clients) lives and is
//!   unit-tested there, one file per concept (its module doc maps them).
//! - [`server`]: [`Scheduler`], the thin ZeroMQ loop around the state.
//! - [`collections`]: named graphs clients store, in memory or in sled
//!   ([`collections::CollectionStore`]), and the answers to clients' requests about them.
//! - [`dashboard`]: the web page, JSON API and Prometheus `/metrics` served over HTTP, fed
//!   by observations of the state the loop takes while someone looks.
//! - [`error`]: [`Error`], why a scheduler could not start.
//!
//! - [`cli`]: the `zask-scheduler` command line around [`Scheduler`] (the binary's `main`,
//!   src/main.rs, calls it).

#![warn(missing_docs)]

pub mod cli;
pub mod collections;
pub mod dashboard;
pub mod error;
pub mod server;
pub mod state;

pub use error::Error;
pub use server::{Scheduler, SchedulerOptions};
pub use state::{Config, GetRequest, Outbox, SchedulerState};
