#![no_main]
//! Fuzz target: `zask_core::fuzz::graph` (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| zask_core::fuzz::graph(data));
