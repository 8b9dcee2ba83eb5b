//! A worker binary with functions of its own, built on the zask-worker library.
//!
//! ```text
//! cargo run --example custom_worker -- tcp://127.0.0.1:8786 --nthreads 2
//! ```
//!
//! It takes the same flags as `zask-worker` and offers the standard library plus the
//! functions registered below; the scheduler sends tasks calling them only to workers that
//! offer them.

use zask_worker::Registry;

/// The number of words in a text.
fn word_count(text: String) -> i64 {
    text.split_whitespace().count() as i64
}

/// Fails the first `failures` times it is called with `path` (the calls are counted in that
/// file), then returns how many calls it took.
fn flaky(path: String, failures: i64) -> Result<i64, String> {
    let calls = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&path, calls.to_string()).map_err(|e| format!("flaky: {path}: {e}"))?;
    if calls <= failures {
        return Err(format!(
            "flaky: call {calls} fails (the first {failures} do)"
        ));
    }
    Ok(calls)
}

/// mimalloc: a faster allocator for the many small allocations of messages and tasks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut registry = Registry::with_stdlib();
    // A plain function, a closure, and a fallible closure: each registers in one line.
    registry.register("word_count", word_count);
    registry.register("scale", |xs: Vec<f64>, factor: f64| -> Vec<f64> {
        xs.iter().map(|x| x * factor).collect()
    });
    registry.register_fallible("parse_int", |s: String| s.trim().parse::<i64>());
    // A function that panics: zask reports it as a task error, and the worker keeps running.
    registry.register("explode", |message: String| -> i64 { panic!("{message}") });
    // Side effects the tests observe: a task failing its first runs (retries), and one that
    // leaves a file behind (to tell whether a task ran at all).
    registry.register_fallible("flaky", flaky);
    registry.register_fallible("touch", |path: String| {
        std::fs::write(&path, b"ran").map(|_| path)
    });
    zask_worker::cli::main_with(registry);
}
