//! `zask-worker`: a zask worker with the standard library of functions.

/// mimalloc: a faster allocator for the many small allocations of messages and tasks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    zask_worker::cli::main_with(zask_worker::Registry::with_stdlib());
}
