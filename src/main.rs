//! `zask`: the command line for clients, and `zask local` to run a whole cluster at once (see
//! `cli.rs`).

use std::process::ExitCode;

/// mimalloc: a faster allocator for the many small allocations of messages and tasks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    zask::cli::main_with_args(std::env::args_os())
}
