//! zask-worker: a zask worker, as a library (to build worker binaries with your own
//! functions) and as the `zask-worker` binary (with the standard library).
//!
//! - [`registry`]: [`Registry`], functions registered by name; a typed Rust function or closure
//!   registers in one line (`registry.register("inc", |x: i64| x + 1)`).
//! - [`stdlib`]: the standard functions every `zask-worker` has (`add`, `sum`, `map`, ...).
//! - [`eval`]: evaluating a task's node with its inputs.
//! - [`store`]: [`Store`], where results live: [`MemoryStore`] or [`SledStore`] on disk.
//! - [`server`]: [`Worker`], the event loop: registration, heartbeats, tasks, peer fetches.
//! - [`cli`]: the `zask-worker` command line, reusable by custom worker binaries
//!   (`zask_worker::cli::main_with(registry)`).
//! - [`error`]: [`Error`], why a worker could not start.

pub mod cli;
pub mod error;
pub mod eval;
pub mod registry;
pub mod server;
pub mod stdlib;
pub mod store;

pub use error::Error;
pub use registry::{Args, CallError, Registry};
pub use server::{Worker, WorkerOptions};
pub use store::{MemoryStore, SledStore, Store, StoreKind};
