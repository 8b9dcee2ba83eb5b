//! The `zask` command line, run as a process against a cluster of processes.

mod common;

use std::time::Duration;

use common::{free_port, repo_file, run_command, zask_command, Cluster, Output};
use serde_json::json;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn graph_file() -> String {
    repo_file("examples/graph.json").display().to_string()
}

/// Runs `zask args...` (with `stdin` if given) and returns what it did.
fn zask(args: &[&str], stdin: Option<&str>) -> Output {
    run_command(zask_command(args), stdin, CLI_TIMEOUT)
}

/// Runs `zask get --scheduler ADDR args...`, expects success, and returns stdout trimmed.
fn get_ok(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let mut all = vec!["get", "--scheduler", cluster.clients_address()];
    all.extend_from_slice(args);
    let out = zask(&all, stdin);
    assert!(out.status.success(), "zask {all:?} failed: {out:?}");
    out.stdout.trim().to_string()
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn get_prints_results_as_json() {
    let cluster = Cluster::start(2, 1);
    let graph = graph_file();
    // One key: its value.
    assert_eq!(get_ok(&cluster, &[&graph, "total"], None), "55");
    // Several keys: a list.
    assert_eq!(
        json_of(&get_ok(&cluster, &[&graph, "x", "y", "z"], None)),
        json!([1, 2, 3])
    );
    assert_eq!(
        json_of(&get_ok(&cluster, &[&graph, "numbers", "total"], None)),
        json!([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 55])
    );
    // A `[` key: nested shape.
    assert_eq!(
        json_of(&get_ok(&cluster, &[&graph, r#"[["z"], "y"]"#], None)),
        json!([[3], 2])
    );
    assert_eq!(
        json_of(&get_ok(
            &cluster,
            &[&graph, r#"["x", ["y"]]"#, "total"],
            None
        )),
        json!([[1, [2]], 55])
    );
    // Nothing is left on the workers.
    cluster.wait_until_idle();
}

#[test]
fn get_reads_the_graph_from_stdin() {
    let cluster = Cluster::start(2, 1);
    let graph = r#"{"a": {"fn": "add", "args": [20, 22]}, "b": {"fn": "add", "args": ["x", "y"]}}"#;
    assert_eq!(get_ok(&cluster, &["-", "a"], Some(graph)), "42");
    assert_eq!(
        json_of(&get_ok(&cluster, &["-", "a", "b"], Some(graph))),
        json!([42, "xy"])
    );
}

#[test]
fn get_with_keep_results_leaves_the_result_on_a_worker() {
    let cluster = Cluster::start(2, 1);
    let graph = r#"{"kept": {"fn": "mul", "args": [6, 7]}}"#;
    assert_eq!(
        get_ok(&cluster, &["--keep-results", "-", "kept"], Some(graph)),
        "42"
    );
    assert!(cluster.client().status().unwrap().keys >= 1);
    // A later graph uses it.
    let later = r#"{"more": {"fn": "inc", "args": [{"ref": "kept"}]}}"#;
    assert_eq!(get_ok(&cluster, &["-", "more"], Some(later)), "43");
}

#[test]
fn a_failing_graph_exits_non_zero_with_a_message() {
    let cluster = Cluster::start(2, 1);
    let addr = cluster.clients_address();
    let failing = r#"{"a": {"fn": "fail", "args": ["deliberate failure"]}}"#;
    let out = zask(&["get", "--scheduler", addr, "-", "a"], Some(failing));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("deliberate failure"), "{out:?}");
    assert!(out.stdout.trim().is_empty(), "{out:?}");

    // A graph that does not parse.
    let out = zask(&["get", "--scheduler", addr, "-", "a"], Some("{not json"));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("invalid graph"), "{out:?}");

    // A key the graph lacks.
    let out = zask(
        &["get", "--scheduler", addr, "-", "zz"],
        Some(r#"{"a": 1}"#),
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("zz"), "{out:?}");

    // A graph file that does not exist.
    let out = zask(
        &["get", "--scheduler", addr, "/nonexistent/graph.json", "a"],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/graph.json"), "{out:?}");

    // A `[` key that is not JSON.
    let out = zask(&["get", "--scheduler", addr, &graph_file(), "[oops"], None);
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stderr.is_empty(), "{out:?}");

    // The cluster is fine.
    assert_eq!(get_ok(&cluster, &[&graph_file(), "total"], None), "55");
}

#[test]
fn no_scheduler_at_the_address() {
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let out = zask(
        &[
            "get",
            "--scheduler",
            &address,
            "--timeout",
            "1",
            &graph_file(),
            "total",
        ],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("no zask scheduler"), "{out:?}");
    // A malformed address.
    let out = zask(
        &["status", "--scheduler", "not-an-address", "--timeout", "1"],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stderr.is_empty(), "{out:?}");
}

#[test]
fn the_scheduler_address_from_the_environment() {
    let cluster = Cluster::start(2, 1);
    let mut command = zask_command(&["get", &graph_file(), "total"]);
    command.env("ZASK_SCHEDULER", cluster.clients_address());
    let out = run_command(command, None, CLI_TIMEOUT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "55");
    // Without it (and without --scheduler), a usage error.
    let out = zask(&["get", &graph_file(), "total"], None);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("--scheduler"), "{out:?}");
}

#[test]
fn workers_prints_one_json_line_per_worker_and_status_prints_counters() {
    let cluster = Cluster::start(2, 2);
    let out = zask(&["workers", "--scheduler", cluster.clients_address()], None);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let mut pids: Vec<u64> = Vec::new();
    for line in lines {
        let w = json_of(line);
        assert!(w["address"]
            .as_str()
            .unwrap()
            .starts_with("tcp://127.0.0.1:"));
        assert_eq!(w["nthreads"], json!(2));
        assert!(w["functions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "inc"));
        assert!(w["worker_id"].is_string());
        assert!(w["last_seen_ms"].is_u64());
        pids.push(w["pid"].as_u64().unwrap());
    }
    pids.sort();
    let mut spawned: Vec<u64> = cluster.workers.iter().map(|w| w.pid() as u64).collect();
    spawned.sort();
    assert_eq!(pids, spawned);

    let out = zask(&["status", "--scheduler", cluster.clients_address()], None);
    assert!(out.status.success(), "{out:?}");
    let s = json_of(out.stdout.trim());
    assert_eq!(s["workers"], json!(2));
    assert_eq!(
        s["scheduler_id"].as_str(),
        Some(cluster.client().scheduler_id())
    );
    for field in ["tasks", "graphs", "keys"] {
        assert!(s[field].is_u64(), "{field} in {s}");
    }
}

#[test]
fn local_runs_a_whole_cluster() {
    let out = zask(&["local", &graph_file(), "total"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "55");
    let out = zask(
        &[
            "local",
            "--workers",
            "3",
            "--nthreads",
            "2",
            &graph_file(),
            "x",
            "z",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_of(out.stdout.trim()), json!([1, 3]));
    let out = zask(
        &["local", "-", "a"],
        Some(r#"{"a": {"fn": "fail", "args": ["local failure"]}}"#),
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("local failure"), "{out:?}");
}

#[test]
fn help_works() {
    let out = zask(&["--help"], None);
    assert!(out.status.success(), "{out:?}");
    for word in ["get", "workers", "status", "local"] {
        assert!(
            out.stdout.contains(word),
            "--help lacks {word}: {}",
            out.stdout
        );
    }
    let out = zask(&["get", "--help"], None);
    assert!(out.status.success(), "{out:?}");
    for word in ["--scheduler", "--keep-results", "--timeout"] {
        assert!(
            out.stdout.contains(word),
            "get --help lacks {word}: {}",
            out.stdout
        );
    }
    let out = zask(&["--version"], None);
    assert!(out.status.success(), "{out:?}");
    // No subcommand: a usage error.
    let out = zask(&[], None);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn ctrl_c_on_get_cancels_the_computation() {
    let cluster = Cluster::start(2, 2);
    // Eight tasks of 60 s and their sum: the workers run four and queue the rest.
    let mut graph = serde_json::Map::new();
    let mut parts = Vec::new();
    for i in 0..8 {
        graph.insert(format!("s{i}"), json!({"fn": "sleep", "args": [60, i]}));
        parts.push(json!({"ref": format!("s{i}")}));
    }
    graph.insert("total".into(), json!({"fn": "sum", "args": [parts]}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.json");
    std::fs::write(&path, serde_json::Value::Object(graph).to_string()).unwrap();
    let path = path.display().to_string();
    let command = zask_command(&[
        "get",
        "--scheduler",
        cluster.clients_address(),
        "--progress",
        &path,
        "total",
    ]);
    let mut get = common::Proc::spawn("zask get", command);
    let client = cluster.client();
    common::wait_until("the tasks to run", common::DEADLINE, || {
        let busy: u64 = client.workers().ok()?.iter().map(|w| w.processing).sum();
        (busy >= 4).then_some(())
    });
    get.signal("INT");
    let status = get.wait_exit(CLI_TIMEOUT).expect("zask get exits");
    assert_eq!(status.code(), Some(130), "{}", get.stderr_text());
    assert!(
        get.stderr_text().contains("cancelled"),
        "{}",
        get.stderr_text()
    );
    let start = std::time::Instant::now();
    common::wait_until("the computation to be gone", common::DEADLINE, || {
        let s = client.status().ok()?;
        let ws = client.workers().ok()?;
        let busy: u64 = ws.iter().map(|w| w.processing).sum();
        let held: u64 = ws.iter().map(|w| w.keys).sum();
        (s.tasks == 0 && s.graphs == 0 && busy == 0 && held == 0).then_some(())
    });
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The workers' threads are free: a new computation runs at once.
    let started = std::time::Instant::now();
    cluster.assert_serving();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn get_progress_reports_how_far_the_computation_is() {
    let cluster = Cluster::start(1, 1);
    let graph = json!({
        "a": {"fn": "sleep", "args": [0.4, 1]},
        "b": {"fn": "sleep", "args": [0.4, {"ref": "a"}]},
        "c": {"fn": "sleep", "args": [0.4, {"ref": "b"}]},
        "d": {"fn": "inc", "args": [{"ref": "c"}]},
    })
    .to_string();
    let out = zask(
        &[
            "get",
            "--scheduler",
            cluster.clients_address(),
            "--progress",
            "-",
            "d",
        ],
        Some(&graph),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "2");
    assert!(
        out.stderr.contains("progress: ") && out.stderr.contains("/4 tasks done, 0 failed"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn values_that_make_no_sense_are_refused_not_clamped() {
    let out = zask(&["local", "--workers", "0", &graph_file(), "total"], None);
    assert!(!out.status.success());
    assert!(out.stderr.contains("at least one worker"), "{out:?}");
    let out = zask(
        &[
            "status",
            "--scheduler",
            "tcp://127.0.0.1:1",
            "--timeout",
            "0",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--timeout takes a positive number"),
        "{out:?}"
    );
}
