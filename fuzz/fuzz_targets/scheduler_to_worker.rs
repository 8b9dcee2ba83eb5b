#![no_main]
//! Fuzz target: `zask_core::fuzz::scheduler_to_worker` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| zask_core::fuzz::scheduler_to_worker(data));
