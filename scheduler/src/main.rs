//! `zask-scheduler`: run a zask scheduler (see `cli.rs` for the command line).

/// mimalloc: a faster allocator for the many small allocations of messages and tasks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    zask_scheduler::cli::main_with_args(std::env::args_os());
}
