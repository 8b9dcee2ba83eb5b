//! `zask-worker`: a zask worker with the standard library of functions.

fn main() {
    zask_worker::cli::main_with(zask_worker::Registry::with_stdlib());
}
