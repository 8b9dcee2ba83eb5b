//! The `zask-worker` binary's command line. (Having an integration test here also makes
//! `cargo test --workspace` build the binary, which the workspace's process tests start.)

use std::process::Command;

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-worker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port-to-workers",
        "--nthreads",
        "--store",
        "sled:DIR",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn an_unknown_store_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-worker"))
        .args(["tcp://127.0.0.1:1", "--store", "disk"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memory or sled:DIR"), "{err}");
}

#[test]
fn a_bad_scheduler_address_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-worker"))
        .args(["not-an-address", "--host", "127.0.0.1"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the scheduler"), "{err}");
}

#[test]
fn zero_threads_is_refused_not_clamped() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-worker"))
        .args(["tcp://127.0.0.1:1", "--nthreads", "0"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nthreads must be at least 1"), "{err}");
}
