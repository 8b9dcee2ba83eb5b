//! zask-worker: a zask worker, as a library (to build worker binaries with your own
//! functions) and as the `zask-worker` binary (with the standard library).
//!
//! - [`registry`]: [`Registry`], functions registered by name; a typed Rust function or closure
//!   registers in one line (`registry.register("inc", |x: i64| x + 1)`).
//! - [`stdlib`]: the standard functions every `zask-worker` has (`add`, `sum`, `map`, ...).
//! - [`eval`]: evaluating a task's node with its inputs.
//! - [`store`]: [`Store`], where results live: [`MemoryStore`] or [`SledStore`] on disk.
//! - [`state`]: [`WorkerState`], the worker's brain: a state machine with no I/O and no
//!   clock (tasks, fetches from peers, reports, registration, retirement), tested alone.
//! - [`executor`]: the threads tasks run on.
//! - [`server`]: [`Worker`], the event loop: it moves bytes between the sockets, the
//!   executors and the state machine.
//! - [`cli`]: the `zask-worker` command line, reusable by custom worker binaries
//!   (`zask_worker::cli::main_with(registry)`).
//! - [`error`]: [`Error`], why a worker could not start.

#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod eval;
pub mod executor;
pub mod registry;
pub mod server;
pub mod state;
pub mod stdlib;
pub mod store;

pub use error::Error;
pub use registry::{Args, CallError, Registry};
pub use server::{Worker, WorkerOptions};
pub use state::{Outbox, WorkerConfig, WorkerState};
pub use store::{MemoryStore, SledStore, Store, StoreKind};
