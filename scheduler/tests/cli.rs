//! The `zask-scheduler` binary's command line. (Having an integration test here also makes
//! `cargo test --workspace` build the binary, which the workspace's process tests start.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-scheduler"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port-to-workers",
        "--port-to-clients",
        "--heartbeat-timeout",
        "ZASK_SCHEDULER_PORT_TO_WORKERS",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn prints_both_addresses_once_listening() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zask-scheduler"))
        .args(["--host", "127.0.0.1"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.starts_with("address_to_workers: tcp://127.0.0.1:"),
        "{first}"
    );
    assert!(
        second.starts_with("address_to_clients: tcp://127.0.0.1:"),
        "{second}"
    );
    assert_ne!(first.rsplit(':').next(), second.rsplit(':').next());
}

#[test]
fn a_bad_flag_value_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_zask-scheduler"))
        .args(["--port-to-workers", "notaport"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("port-to-workers"));
}
