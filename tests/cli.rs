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
    // A usage error, status 2 (as clap's own), for values that make no sense.
    let out = zask(&["local", "--workers", "0", &graph_file(), "total"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
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
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--timeout takes a positive number"),
        "{out:?}"
    );
}

// ----- issue 16: the CLI ---------------------------------------------------------------------

/// Runs `zask args...` with extra environment variables.
fn zask_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = zask_command(args);
    for (k, v) in env {
        command.env(k, v);
    }
    run_command(command, stdin, CLI_TIMEOUT)
}

/// Runs `zask args...`, expects success, and returns stdout.
fn zask_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = zask(args, stdin);
    assert!(out.status.success(), "zask {args:?} failed: {out:?}");
    out.stdout
}

/// The JSON objects of output printed one per line.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(json_of)
        .collect()
}

/// A graph file of `n` tasks sleeping 60 s and their sum (`total`): a computation that runs
/// until cancelled.
fn long_graph_file(dir: &tempfile::TempDir, n: usize) -> String {
    let mut graph = serde_json::Map::new();
    let mut parts = Vec::new();
    for i in 0..n {
        graph.insert(format!("s{i}"), json!({"fn": "sleep", "args": [60, i]}));
        parts.push(json!({"ref": format!("s{i}")}));
    }
    graph.insert("total".into(), json!({"fn": "sum", "args": [parts]}));
    let path = dir.path().join("long.json");
    std::fs::write(&path, serde_json::Value::Object(graph).to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn the_scheduler_and_timeout_flags_go_anywhere_on_the_line() {
    let cluster = Cluster::start(1, 1);
    let addr = cluster.clients_address();
    // Before the command, after it, after a collections subcommand, between the two.
    for args in [
        vec!["-s", addr, "workers"],
        vec!["workers", "-s", addr],
        vec!["--scheduler", addr, "--timeout", "5", "status"],
        vec!["status", "--timeout", "5", "--scheduler", addr],
        vec!["collections", "list", "-s", addr],
        vec!["collections", "-s", addr, "list"],
        vec!["-s", addr, "collections", "list", "--timeout", "5"],
        vec!["-s", addr, "keys", "--limit", "3"],
        vec!["computations", "-s", addr],
    ] {
        let out = zask(&args, None);
        assert!(out.status.success(), "zask {args:?}: {out:?}");
    }
    // The last one given counts: a wrong address before the command, the right one after.
    let out = zask(&["-s", "tcp://127.0.0.1:1", "status", "-s", addr], None);
    assert!(out.status.success(), "{out:?}");
    // From the environment.
    let out = zask_env(
        &["collections", "list"],
        &[("ZASK_SCHEDULER", addr), ("ZASK_TIMEOUT", "5")],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    // A bad ZASK_TIMEOUT is refused as the flag is.
    let out = zask_env(&["status", "-s", addr], &[("ZASK_TIMEOUT", "0")], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--timeout takes a positive number"),
        "{out:?}"
    );
    // No scheduler at all: a usage error saying how to give one, for every client command.
    for args in [
        vec!["workers"],
        vec!["status"],
        vec!["collections", "list"],
        vec!["keys"],
        vec!["computations"],
        vec!["cancel", "get-1"],
        vec!["release", "k"],
        vec!["retire", "tcp://127.0.0.1:1"],
        vec!["compute", "c"],
    ] {
        let out = zask(&args, None);
        assert_eq!(out.status.code(), Some(2), "zask {args:?}: {out:?}");
        assert!(
            out.stderr.contains("-s/--scheduler") && out.stderr.contains("ZASK_SCHEDULER"),
            "zask {args:?}: {out:?}"
        );
    }
}

#[test]
fn timeout_help_says_the_real_default_and_behaviour_agrees() {
    let workers_help = zask_ok(&["workers", "--help"], None);
    assert!(workers_help.contains("(default: 10)"), "{workers_help}");
    assert!(!workers_help.contains("3600"), "{workers_help}");
    let get_help = zask_ok(&["get", "--help"], None);
    assert!(get_help.contains("(default: 3600)"), "{get_help}");
    assert!(get_help.contains("at most 10"), "{get_help}");
    let help = zask_ok(&["--help"], None);
    assert!(
        help.contains("(default: 3600)") && help.contains("(default: 10)"),
        "{help}"
    );
    // Nothing listens here: each command waits as its help says, then says how long it
    // waited.
    let nobody = format!("tcp://127.0.0.1:{}", free_port());
    let graph = graph_file();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // A quick command without --timeout: 10 s.
        (vec!["status".into(), "-s".into(), nobody.clone()], "10s"),
        // With --timeout: that.
        (
            vec!["workers", "-s", &nobody, "--timeout", "1"]
                .into_iter()
                .map(String::from)
                .collect(),
            "1s",
        ),
        // A get connects within at most 10 s of its --timeout...
        (
            vec!["get", "-s", &nobody, "--timeout", "30", &graph, "total"]
                .into_iter()
                .map(String::from)
                .collect(),
            "10s",
        ),
        // ... or within all of it, when it is shorter.
        (
            vec!["get", "-s", &nobody, "--timeout", "2", &graph, "total"]
                .into_iter()
                .map(String::from)
                .collect(),
            "2s",
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(args, waited)| {
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let started = std::time::Instant::now();
                let out = zask(&args, None);
                let took = started.elapsed();
                assert_eq!(out.status.code(), Some(1), "zask {args:?}: {out:?}");
                assert!(
                    out.stderr.contains(&format!("within {waited}")),
                    "zask {args:?} should have waited {waited}: {out:?}"
                );
                let secs: f64 = waited.trim_end_matches('s').parse().unwrap();
                assert!(
                    took >= Duration::from_secs_f64(secs)
                        && took < Duration::from_secs_f64(secs + 20.0),
                    "zask {args:?} took {took:?}"
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The options of a `--help` text: each flag (`--name`) with the environment variable its
/// help shows, if any.
fn options_of(help: &str) -> Vec<(String, Option<String>)> {
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indented = line.len() > trimmed.len();
        if indented
            && trimmed.starts_with('-')
            && (line.starts_with("  -") || line.starts_with("      --"))
        {
            let flag = trimmed
                .split([',', ' ', '<'])
                .map(str::trim)
                .find(|w| w.starts_with("--"))
                .unwrap_or(trimmed)
                .to_string();
            options.push((flag, None));
        } else if !indented && !trimmed.is_empty() {
            // A section heading: the options' blocks ended.
            continue;
        } else if let (Some(start), Some(last)) = (line.find("[env: "), options.last_mut()) {
            let rest = &line[start + "[env: ".len()..];
            let name = rest.split('=').next().unwrap_or(rest).to_string();
            last.1 = Some(name);
        }
    }
    options
}

/// `--help` of `zask` and of every command under it (but `help`, and `scheduler` and `worker`,
/// which are the other programs), by command line.
fn zask_helps(path: Vec<String>) -> Vec<(Vec<String>, String)> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = zask_ok(&args, None);
    let mut all = vec![(path.clone(), help.clone())];
    let commands = help
        .split("\nCommands:\n")
        .nth(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or(""))
        .unwrap_or("");
    for line in commands.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if ["help", "scheduler", "worker"].contains(&name) && path.is_empty() || name == "help" {
            continue;
        }
        let mut sub = path.clone();
        sub.push(name.to_string());
        all.extend(zask_helps(sub));
    }
    all
}

#[test]
fn every_flag_of_every_program_has_its_own_environment_variable() {
    let mut helps: Vec<(&str, String, String)> = Vec::new();
    for (path, help) in zask_helps(Vec::new()) {
        helps.push(("zask", format!("zask {}", path.join(" ")), help));
    }
    for (program, bin) in [
        ("zask-scheduler", common::scheduler_bin()),
        ("zask-worker", common::WorkerBin::Stock.path()),
    ] {
        let out = std::process::Command::new(bin)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        helps.push((
            program,
            program.to_string(),
            String::from_utf8_lossy(&out.stdout).into(),
        ));
    }
    assert!(helps.len() > 15, "not every command was found: {helps:?}");
    // Every flag shows a variable; one variable names one flag, in one program (but the
    // cluster's secret, shared on purpose).
    let shared = ["ZASK_AUTH_TOKEN_FILE"];
    let mut owners: std::collections::BTreeMap<String, (&str, String)> = Default::default();
    for (program, command, help) in &helps {
        let options = options_of(help);
        assert!(
            !options.is_empty(),
            "{command}: no options found in:\n{help}"
        );
        for (flag, env) in options {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let Some(env) = env else {
                panic!("{command}: {flag} shows no environment variable:\n{help}");
            };
            let expected_prefix = match *program {
                "zask-scheduler" => "ZASK_SCHEDULER_",
                "zask-worker" => "ZASK_WORKER_",
                _ => "ZASK_",
            };
            if !shared.contains(&env.as_str()) {
                assert!(
                    env.starts_with(expected_prefix),
                    "{command}: {flag} reads {env}"
                );
                if *program == "zask" {
                    assert!(
                        !env.starts_with("ZASK_SCHEDULER_") && !env.starts_with("ZASK_WORKER_"),
                        "{command}: {flag} reads {env}, named like another program's"
                    );
                }
            }
            match owners.get(&env) {
                None => {
                    owners.insert(env.clone(), (*program, flag.clone()));
                }
                Some((p, f)) => {
                    assert!(
                        *f == flag && (*p == *program || shared.contains(&env.as_str())),
                        "{env} is read by {p} {f} and by {program} {flag}"
                    );
                }
            }
        }
    }
    // The programs' flags all seen (a parse that found too little would pass the above).
    for env in [
        "ZASK_SCHEDULER",
        "ZASK_TIMEOUT",
        "ZASK_OUTPUT",
        "ZASK_KEYS_LIMIT",
        "ZASK_SCHEDULER_RETIRE_TIMEOUT",
        "ZASK_SCHEDULER_SATURATION",
        "ZASK_WORKER_RETIRE_TIMEOUT",
        "ZASK_WORKER_NTHREADS",
        "ZASK_AUTH_TOKEN_FILE",
    ] {
        assert!(owners.contains_key(env), "{env} not found: {owners:?}");
    }
}

#[test]
fn computations_are_listed_with_progress_and_cancelled_by_id() {
    let cluster = Cluster::start(1, 2);
    let addr = cluster.clients_address();
    let dir = tempfile::tempdir().unwrap();
    let path = long_graph_file(&dir, 4);
    let mut get = common::Proc::spawn(
        "zask get",
        zask_command(&["get", "-s", addr, &path, "total"]),
    );
    // Listed, with its progress: 5 tasks, 2 of them running (two threads), none done.
    let computation = common::wait_until("the get to be listed", common::DEADLINE, || {
        let out = zask(&["computations", "-s", addr], None);
        assert!(out.status.success(), "{out:?}");
        json_lines(&out.stdout)
            .into_iter()
            .find(|c| c["kind"] == "get" && c["total"] == 5)
    });
    let id = computation["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("get-"), "{computation}");
    assert_eq!(computation["done"], json!(0), "{computation}");
    assert_eq!(computation["failed"], json!(0), "{computation}");
    assert_eq!(computation["waiting"], json!(5), "{computation}");
    assert!(computation["client"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_hexdigit()));
    assert!(computation["age_ms"].is_u64());
    // The same as a table.
    let table = zask_ok(&["computations", "-s", addr, "--output", "table"], None);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID", "KIND", "CLIENT", "AGE", "PROGRESS", "DONE", "FAILED", "WAITING", "TOTAL",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("[....................]   0%"), "{table}");

    // Cancelled by that id: the get's client fails with a cancelled error.
    let out = zask(&["cancel", &id, "-s", addr], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_of(out.stdout.trim()), json!({"cancelled": id}));
    let status = get.wait_exit(CLI_TIMEOUT).expect("zask get exits");
    assert_eq!(status.code(), Some(1), "{}", get.stderr_text());
    assert!(
        get.stderr_text().contains("cancelled"),
        "{}",
        get.stderr_text()
    );
    // Gone from the list; the workers' threads are free again.
    common::wait_until("the computation to be gone", common::DEADLINE, || {
        let out = zask(&["computations", "-s", addr], None);
        json_lines(&out.stdout).is_empty().then_some(())
    });
    assert_eq!(
        zask_ok(&["computations", "-s", addr, "--output", "table"], None).trim(),
        "no computations in flight"
    );
    cluster.wait_until_idle();
    cluster.assert_serving();
    // An id not in flight: an error naming the kind, as JSON when asked.
    let out = zask(&["cancel", &id, "-s", addr], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.starts_with("zask: error: "), "{out:?}");
    assert!(out.stderr.contains(&id), "{out:?}");
    let out = zask(&["cancel", &id, "-s", addr, "--output", "json"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = json_of(out.stderr.trim());
    assert_eq!(
        error["error"]["kind"],
        json!("unknown_computation"),
        "{out:?}"
    );
    assert!(error["error"]["message"].as_str().unwrap().contains(&id));
}

#[test]
fn kept_keys_are_listed_with_a_limit_and_released() {
    let cluster = Cluster::start(1, 1);
    let addr = cluster.clients_address();
    let worker = cluster.workers[0].address.clone();
    let graph = r#"{"k1": {"fn": "mul", "args": [6, 7]}, "k2": {"fn": "range", "args": [100]}}"#;
    let out = zask(
        &["get", "-s", addr, "--keep-results", "-", "k1", "k2"],
        Some(graph),
    );
    assert!(out.status.success(), "{out:?}");
    let listed = json_of(zask_ok(&["keys", "-s", addr], None).trim());
    assert_eq!(listed["total"], json!(2), "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(names, ["k1", "k2"], "{listed}");
    for k in keys {
        assert!(k["nbytes"].as_u64().unwrap() > 0, "{listed}");
        assert_eq!(k["holders"], json!([worker]), "{listed}");
    }
    // A limit lists fewer, and says how many there are.
    let limited = json_of(zask_ok(&["keys", "-s", addr, "--limit", "1"], None).trim());
    assert_eq!(limited["total"], json!(2), "{limited}");
    assert_eq!(limited["keys"].as_array().unwrap().len(), 1, "{limited}");
    let table = zask_ok(
        &["keys", "-s", addr, "--limit", "1", "--output", "table"],
        None,
    );
    assert!(table.starts_with("KEY"), "{table}");
    assert!(table.contains(&worker), "{table}");
    assert!(
        table.contains("1 of 2 held keys listed; --limit 2 lists them all"),
        "{table}"
    );
    let out = zask_env(&["keys", "-s", addr], &[("ZASK_KEYS_LIMIT", "0")], None);
    assert_eq!(json_of(out.stdout.trim()), json!({"total": 2, "keys": []}));
    // Released: gone from the workers.
    let out = zask_ok(&["release", "-s", addr, "k1", "k2", "nope"], None);
    assert_eq!(
        json_of(out.trim()),
        json!({"released": ["k1", "k2"], "unknown": ["nope"]})
    );
    cluster.wait_until_nothing_held();
    assert_eq!(
        json_of(zask_ok(&["keys", "-s", addr], None).trim()),
        json!({"total": 0, "keys": []})
    );
    assert_eq!(
        zask_ok(&["keys", "-s", addr, "--output", "table"], None).trim(),
        "no keys held"
    );
}

#[test]
fn tables_for_people_json_for_scripts_and_json_errors() {
    let cluster = Cluster::start(2, 1);
    let addr = cluster.clients_address();
    // Workers: an aligned table with one row per worker.
    let table = zask_ok(&["workers", "-s", addr, "--output", "table"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ADDRESS") && lines[0].contains("THREADS"),
        "{table}"
    );
    for w in &cluster.workers {
        assert!(
            lines[1..].iter().any(|l| l.starts_with(&w.address)),
            "{table}"
        );
    }
    let column = lines[0].find("THREADS").unwrap() + "THREADS".len();
    assert!(
        lines[1..].iter().all(|l| l[..column].ends_with('1')),
        "{table}"
    );
    // Status: key: value lines (the format from the environment too).
    let out = zask_env(&["status", "-s", addr], &[("ZASK_OUTPUT", "table")], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["workers:", "2"]),
        "{out:?}"
    );
    assert!(
        out.stdout.starts_with("scheduler_id: scheduler-"),
        "{out:?}"
    );
    // Not on a terminal, without --output: JSON, as before (and with --output json).
    for extra in [vec![], vec!["--output", "json"]] {
        let mut args = vec!["status", "-s", addr];
        args.extend(extra);
        let s = json_of(zask_ok(&args, None).trim());
        assert_eq!(s["workers"], json!(2));
    }
    // Collections: set, list and delete, as tables.
    let graph = graph_file();
    let out = zask_ok(
        &[
            "collections",
            "set",
            "c1",
            &graph,
            "--keys",
            "total",
            "-s",
            addr,
            "--output",
            "table",
        ],
        None,
    );
    assert_eq!(out.trim(), "name:     c1\nreplaced: false");
    let table = zask_ok(
        &["collections", "list", "-s", addr, "--output", "table"],
        None,
    );
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "KIND", "TASKS", "BYTES"], "{table}");
    assert_eq!(lines[1][..3], ["c1", "graph", "6"], "{table}");
    let json = json_lines(&zask_ok(&["collections", "list", "-s", addr], None));
    assert_eq!(json[0]["name"], json!("c1"));
    let got = json_of(zask_ok(&["collections", "get", "c1", "-s", addr], None).trim());
    assert_eq!(got["kind"], json!("graph"));
    assert_eq!(got["keys"], json!("total"));
    let out = zask_ok(
        &[
            "collections",
            "delete",
            "c1",
            "-s",
            addr,
            "--output",
            "table",
        ],
        None,
    );
    assert_eq!(out.trim(), "deleted: c1");
    assert_eq!(
        zask_ok(
            &["collections", "list", "-s", addr, "--output", "table"],
            None
        )
        .trim(),
        "no collections stored"
    );
    // Errors: plain text by default, JSON objects on stderr with --output json (same exit
    // status), stdout empty either way.
    let failing = r#"{"a": {"fn": "fail", "args": ["deliberate failure"]}}"#;
    let out = zask(&["get", "-s", addr, "-", "a"], Some(failing));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.starts_with("zask: error: "), "{out:?}");
    let out = zask(
        &["get", "-s", addr, "--output", "json", "-", "a"],
        Some(failing),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.trim().is_empty(), "{out:?}");
    let error = json_of(out.stderr.trim());
    assert_eq!(error["error"]["kind"], json!("task_failed"), "{out:?}");
    assert_eq!(error["error"]["key"], json!("a"), "{out:?}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deliberate failure"));
    // Usage errors too, with clap's status 2: no scheduler, an unknown flag, a bad graph.
    let out = zask_env(&["workers"], &[("ZASK_OUTPUT", "json")], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        json_of(out.stderr.trim())["error"]["kind"],
        json!("usage"),
        "{out:?}"
    );
    let out = zask(&["--output", "json", "workers", "--bogus"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let error = json_of(out.stderr.trim());
    assert_eq!(error["error"]["kind"], json!("usage"), "{out:?}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--bogus"));
    let out = zask(
        &["get", "-s", addr, "--output=json", "-", "a"],
        Some("{not json"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        json_of(out.stderr.trim())["error"]["kind"],
        json!("invalid_input")
    );
    // An unknown format is refused.
    let out = zask(&["status", "-s", addr, "--output", "yaml"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn zask_scheduler_and_zask_worker_run_a_cluster() {
    // Their help is the other programs', under their name here.
    let help = zask_ok(&["scheduler", "--help"], None);
    assert!(help.contains("Usage: zask scheduler [OPTIONS]"), "{help}");
    assert!(help.contains("ZASK_SCHEDULER_PORT_TO_WORKERS"), "{help}");
    let help = zask_ok(&["worker", "--help"], None);
    assert!(
        help.contains("Usage: zask worker [OPTIONS] <SCHEDULER_ADDRESS>"),
        "{help}"
    );
    assert!(help.contains("ZASK_WORKER_NTHREADS"), "{help}");
    let out = zask(&["scheduler", "--saturation", "0"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("makes no sense"), "{out:?}");
    let out = zask(&["scheduler", "--bogus"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("Usage: zask scheduler"), "{out:?}");
    // A scheduler and a worker, both `zask`.
    let mut scheduler = common::Proc::spawn(
        "zask scheduler",
        zask_command(&["scheduler", "--host", "127.0.0.1", "--dashboard-port", "0"]),
    );
    let to_workers = scheduler.read_field("address_to_workers", common::START_TIMEOUT);
    let to_clients = scheduler.read_field("address_to_clients", common::START_TIMEOUT);
    let mut worker = common::Proc::spawn(
        "zask worker",
        zask_command(&[
            "worker",
            &to_workers,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "2",
        ]),
    );
    let address = worker.read_field("worker_address", common::START_TIMEOUT);
    let workers = json_lines(&zask_ok(&["workers", "-s", &to_clients], None));
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0]["address"], json!(address));
    assert_eq!(workers[0]["nthreads"], json!(2));
    assert_eq!(workers[0]["pid"], json!(worker.pid()));
    assert_eq!(
        zask_ok(&["get", "-s", &to_clients, &graph_file(), "total"], None).trim(),
        "55"
    );
    // They stop as the programs do: the worker retires on SIGTERM, the scheduler stops.
    worker.terminate();
    assert!(worker
        .wait_exit(CLI_TIMEOUT)
        .expect("the worker exits")
        .success());
    scheduler.terminate();
    assert!(scheduler
        .wait_exit(CLI_TIMEOUT)
        .expect("the scheduler exits")
        .success());
}

#[test]
fn the_schedulers_values_that_make_no_sense_are_refused() {
    for (flag, value) in [
        ("--saturation", "0"),
        ("--max-copies", "0"),
        ("--allowed-failures", "0"),
        ("--client-queue", "0"),
        ("--max-message-size", "0"),
        ("--max-collection-size", "0"),
        ("--heartbeat-timeout", "0"),
        ("--heartbeat-timeout", "-1"),
        ("--client-timeout", "NaN"),
        ("--check-after", "inf"),
        ("--answer-timeout", "0"),
        ("--retire-timeout", "-0.5"),
        ("--no-workers-timeout", "nan"),
        ("--adopt-grace", "-1"),
        ("--queue-budget-ms", "-5"),
    ] {
        let mut command = std::process::Command::new(common::scheduler_bin());
        command.args([
            "--host",
            "127.0.0.1",
            "--dashboard-port",
            "0",
            &format!("{flag}={value}"),
        ]);
        let out = run_command(command, None, CLI_TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {out:?}");
        assert!(
            out.stderr.contains(flag) && out.stderr.contains("makes no sense here"),
            "{flag} {value}: {out:?}"
        );
    }
}

#[test]
fn collections_set_checks_the_kind_against_the_graph() {
    let cluster = Cluster::start(1, 1);
    let addr = cluster.clients_address();
    let graph = graph_file();
    // A plain graph as a bag: refused at once, saying why.
    let out = zask(
        &[
            "collections",
            "set",
            "-s",
            addr,
            "c",
            &graph,
            "--keys",
            "total",
            "--kind",
            "bag",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("a bag's keys are the list of its partitions")
            && out.stderr.contains("\"graph\""),
        "{out:?}"
    );
    let out = zask(
        &[
            "collections",
            "set",
            "-s",
            addr,
            "c",
            &graph,
            "--keys",
            "x",
            "y",
            "--kind",
            "bag",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("partition \"x\" is the literal int"),
        "{out:?}"
    );
    // Nothing was stored.
    assert!(json_lines(&zask_ok(&["collections", "list", "-s", addr], None)).is_empty());
    // A bag that is one: stored, and computed as a bag.
    let bag = r#"{"p0": [1, 2], "p1": {"fn": "range", "args": [3]}}"#;
    let out = zask(
        &[
            "collections",
            "set",
            "-s",
            addr,
            "b",
            "-",
            "--keys",
            "p0",
            "p1",
            "--kind",
            "bag",
        ],
        Some(bag),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        json_of(zask_ok(&["compute", "-s", addr, "b"], None).trim()),
        json!([1, 2, 0, 1, 2])
    );
    // As a graph, or a kind of one's own, the same graph is fine.
    for kind in ["graph", "mine"] {
        let out = zask(
            &[
                "collections",
                "set",
                "-s",
                addr,
                "c",
                &graph,
                "--keys",
                "total",
                "--kind",
                kind,
            ],
            None,
        );
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(zask_ok(&["compute", "-s", addr, "c"], None).trim(), "55");
}

#[test]
fn rust_log_debug_shows_what_the_client_does() {
    let cluster = Cluster::start(1, 1);
    let graph = r#"{"a": 1, "b": {"fn": "inc", "args": [{"ref": "a"}]}}"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), graph).unwrap();
    let path = file.path().display().to_string();
    let mut command = zask_command(&["get", "-s", cluster.clients_address(), &path, "b"]);
    command.env("RUST_LOG", "debug");
    let mut proc = common::Proc::spawn("zask get", command);
    let status = proc.wait_exit(CLI_TIMEOUT).expect("zask get exits");
    let stderr = proc.stderr_text();
    assert!(status.success(), "{stderr}");
    for expected in [
        &format!("connecting to {}", cluster.clients_address()),
        "request 1 sent: hello",
        "connected to scheduler",
        "get: 1 keys of a graph of 2 tasks",
        "request 2 sent: get",
        "request 2 (computing) answered in",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    // Quiet by default.
    let out = zask(&["status", "-s", cluster.clients_address()], None);
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_clients_futures_are_listed_and_cancelled_from_the_command_line() {
    let cluster = Cluster::start(1, 1);
    let addr = cluster.clients_address();
    let client = cluster.new_client();
    // One thread: the first sleep runs, the other three queue behind it.
    let futures: Vec<zask::Future> = (0..4)
        .map(|i| client.submit("sleep", (30.0, i)).expect("a submit"))
        .collect();
    let row = common::wait_until("the futures to be listed", common::DEADLINE, || {
        let out = zask(&["computations", "-s", addr], None);
        json_lines(&out.stdout)
            .into_iter()
            .find(|c| c["kind"] == "futures" && c["total"] == 4)
    });
    let id = row["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("futures-"), "{row}");
    assert_eq!(
        (row["done"].clone(), row["waiting"].clone()),
        (json!(0), json!(4))
    );
    let out = zask(&["cancel", &id, "-s", addr], None);
    assert!(out.status.success(), "{out:?}");
    // The client holding them is told: each future is cancelled, and the worker is free.
    for f in &futures {
        common::wait_until("the future to be cancelled", common::DEADLINE, || {
            (f.status() == zask::FutureStatus::Cancelled).then_some(())
        });
    }
    common::wait_until("no computation left", common::DEADLINE, || {
        let out = zask(&["computations", "-s", addr], None);
        json_lines(&out.stdout).is_empty().then_some(())
    });
    cluster.wait_until_idle();
    cluster.assert_serving();
}

// ----- flags, environment and the programs' hints ---------------------------------------------

/// Command lines of `zask status` and `zask collections list` with `flag` (a client flag and
/// its value) in each place it may go: before the command, after it, and after a collections
/// subcommand.
fn in_every_place(flag: &str, value: &str) -> Vec<Vec<String>> {
    [
        vec![flag, value, "status"],
        vec!["status", flag, value],
        vec![flag, value, "collections", "list"],
        vec!["collections", flag, value, "list"],
        vec!["collections", "list", flag, value],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(String::from).collect())
    .collect()
}

/// Runs `zask args...` with `env` added.
fn zask_env_owned(args: &[String], env: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    zask_env(&args, env, None)
}

#[test]
fn client_flags_win_over_their_variables_wherever_they_are_given() {
    let scheduler = common::SchedulerProc::start(&["--dashboard-port", "0"]);
    let addr = scheduler.clients_address.as_str();
    let nobody = format!("tcp://127.0.0.1:{}", free_port());
    // The address: ZASK_SCHEDULER names nobody; the flag, wherever it is, is the one used.
    for args in in_every_place("-s", addr) {
        let out = zask_env_owned(&args, &[("ZASK_SCHEDULER", &nobody), ("ZASK_TIMEOUT", "2")]);
        assert!(out.status.success(), "zask {args:?}: {out:?}");
    }
    // The wait: ZASK_TIMEOUT=0 would be refused (status 2), the default would wait 10 s; the
    // flag's second is the wait.
    for args in in_every_place("--timeout", "1") {
        let env = [("ZASK_SCHEDULER", nobody.as_str()), ("ZASK_TIMEOUT", "0")];
        let out = zask_env_owned(&args, &env);
        assert_eq!(out.status.code(), Some(1), "zask {args:?}: {out:?}");
        assert!(out.stderr.contains("within 1s"), "zask {args:?}: {out:?}");
    }
    // The secret: ZASK_AUTH_TOKEN_FILE holds a wrong one, the flag the scheduler's.
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "the-clusters-secret-0123456789abcdef\n").unwrap();
    std::fs::write(&wrong, "another-secret-0123456789abcdef-0123\n").unwrap();
    let (right, wrong) = (right.to_str().unwrap(), wrong.to_str().unwrap());
    let secure =
        common::SchedulerProc::start(&["--dashboard-port", "0", "--auth-token-file", right]);
    for args in in_every_place("--auth-token-file", right) {
        let env = [
            ("ZASK_SCHEDULER", secure.clients_address.as_str()),
            ("ZASK_AUTH_TOKEN_FILE", wrong),
            ("ZASK_TIMEOUT", "5"),
        ];
        let out = zask_env_owned(&args, &env);
        assert!(out.status.success(), "zask {args:?}: {out:?}");
    }
    // Among flags the last one counts, given in one place or in several.
    let env = [("ZASK_SCHEDULER", nobody.as_str()), ("ZASK_TIMEOUT", "2")];
    for args in [
        vec!["-s", &nobody, "status", "-s", addr],
        vec!["-s", &nobody, "-s", addr, "status"],
        vec!["status", "-s", &nobody, "-s", addr],
        vec![
            "-s",
            &nobody,
            "collections",
            "-s",
            &nobody,
            "list",
            "-s",
            addr,
        ],
        vec!["--timeout", "0", "status", "--timeout", "5", "-s", addr],
    ] {
        let out = zask_env(&args, &env, None);
        assert!(out.status.success(), "zask {args:?}: {out:?}");
    }
    for args in [
        vec!["-s", addr, "status", "-s", &nobody],
        vec!["-s", addr, "-s", &nobody, "status"],
        vec!["collections", "-s", addr, "list", "-s", &nobody],
    ] {
        let env = [("ZASK_SCHEDULER", addr), ("ZASK_TIMEOUT", "1")];
        let out = zask_env(&args, &env, None);
        assert_eq!(out.status.code(), Some(1), "zask {args:?}: {out:?}");
        assert!(out.stderr.contains(&nobody), "zask {args:?}: {out:?}");
    }
    // The variables fill in where no flag is given: ZASK_TIMEOUT's wait here.
    let env = [("ZASK_SCHEDULER", nobody.as_str()), ("ZASK_TIMEOUT", "1")];
    let out = zask_env(&["collections", "list"], &env, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("within 1s"), "{out:?}");
}

#[test]
fn a_renamed_variable_is_pointed_out_even_when_the_command_line_is_refused() {
    // The worker's address came from ZASK_SCHEDULER_WORKERS: without it clap refuses the
    // command line, after the hint naming the variable to set now.
    let worker = std::process::Command::new(common::WorkerBin::Stock.path());
    for mut command in [worker, zask_command(&["worker"])] {
        command
            .env("ZASK_SCHEDULER_WORKERS", "tcp://127.0.0.1:1")
            .env("RUST_LOG", "warn");
        let out = run_command(command, None, CLI_TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            out.stderr.contains(
                "ZASK_SCHEDULER_WORKERS is set but no longer read: the worker's variable is \
                 ZASK_WORKER_SCHEDULER_ADDRESS"
            ) && out.stderr.contains("<SCHEDULER_ADDRESS>"),
            "{out:?}"
        );
    }
    // The scheduler too, whatever it refuses.
    let mut command = std::process::Command::new(common::scheduler_bin());
    command
        .args(["--dashboard-port", "0", "--bogus"])
        .env("ZASK_SATURATION", "4")
        .env("RUST_LOG", "warn");
    let out = run_command(command, None, CLI_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "ZASK_SATURATION is set but no longer read: the scheduler's variable is \
             ZASK_SCHEDULER_SATURATION"
        ),
        "{out:?}"
    );
}

/// Variables a developer may have set, each of which breaks a test that lets it through.
const CALLERS_ZASK_ENV: &[(&str, &str)] = &[
    ("ZASK_SCHEDULER_DASHBOARD_PORT", "not-a-port"),
    ("ZASK_SCHEDULER_CLIENT_QUEUE", "0"),
    ("ZASK_WORKER_RETIRE_TIMEOUT", "-1"),
    ("ZASK_AUTH_TOKEN", "a-developers-secret-0123456789abcdef"),
    ("ZASK_SCHEDULER", "tcp://127.0.0.1:1"),
    ("ZASK_TIMEOUT", "0"),
    ("ZASK_OUTPUT", "table"),
];

#[test]
fn the_callers_zask_variables_do_not_reach_the_programs_under_test() {
    // This test binary again, running the helper below with a developer's variables set.
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "helper_cluster_under_a_developers_variables",
        "--exact",
        "--ignored",
        "--nocapture",
    ]);
    command.env("ZASK_TEST_CALLERS_ENV", "1");
    for (name, value) in CALLERS_ZASK_ENV {
        command.env(name, value);
    }
    let out = run_command(command, None, Duration::from_secs(120));
    assert!(
        out.status.success() && out.stdout.contains("1 passed"),
        "the helper failed: {out:?}"
    );
}

/// Run by [`the_callers_zask_variables_do_not_reach_the_programs_under_test`] with
/// [`CALLERS_ZASK_ENV`] set (does nothing run otherwise): a cluster and the `zask` command line,
/// started by the harness, run as if none were set; a variable a test sets itself still counts.
#[test]
#[ignore]
fn helper_cluster_under_a_developers_variables() {
    if std::env::var_os("ZASK_TEST_CALLERS_ENV").is_none() {
        return;
    }
    let cluster = Cluster::start(1, 1);
    let addr = cluster.clients_address();
    let workers = json_lines(&zask_ok(&["workers", "-s", addr], None));
    assert_eq!(workers.len(), 1, "{workers:?}");
    let out = zask_env(&["status"], &[("ZASK_SCHEDULER", addr)], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_of(out.stdout.trim())["workers"], json!(1), "{out:?}");
}

#[test]
fn the_keys_note_promises_no_more_than_the_scheduler_lists() {
    // More keys held than the scheduler lists in one answer (10,000).
    let cluster = Cluster::start(1, 2);
    let addr = cluster.clients_address();
    let n = zask::protocol::MAX_HELD_KEYS_LISTED + 1;
    let mut graph = zask::Graph::new();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("held-{i}");
        graph.insert(key.as_str(), zask::task("inc", (i,)));
        keys.push(zask::Keys::One(key));
    }
    cluster
        .client()
        .get_with(&graph, zask::Keys::Many(keys), true)
        .expect("the keys computed and kept");
    let table = zask_ok(
        &["keys", "-s", addr, "--limit", "1", "--output", "table"],
        None,
    );
    assert!(
        table.contains("1 of 10001 held keys listed (--limit lists at most 10,000 of them)"),
        "{table}"
    );
    assert!(!table.contains("lists them all"), "{table}");
}

/// `zask bench` runs every workload end to end at a tiny size, plain and encrypted. Each
/// workload checks its results against their closed form, so one that broke fails here; and
/// each lets its data go before the next (W5's blob, held by a future, among them): a result
/// left behind would make the bench wait for the scheduler to empty, then warn.
#[test]
fn bench_runs_every_workload_plain_and_encrypted() {
    for encrypt in [false, true] {
        let mut args = vec![
            "bench",
            "--json",
            "--no-warmup",
            "--reps",
            "2",
            "--w6-reps",
            "1",
            "--w7-reps",
            "1",
            "--w1-tasks",
            "50",
            "--w2-chain",
            "10",
            "--w3-leaves",
            "8",
            "--w4-gets",
            "3",
            "--w4-gap-gets",
            "1",
            "--w5-mib",
            "3",
            "--w6-tasks",
            "60",
            "--w7-tasks",
            "70",
            "--w8-futures",
            "20",
            "--w9-items",
            "20",
        ];
        if encrypt {
            args.push("--encrypt");
        }
        let out = zask(&args, None);
        assert!(out.status.success(), "zask {args:?} failed: {out:?}");
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
        let lines = json_lines(&out.stdout);
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l["workload"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(
            names,
            ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"]
        );
        for line in &lines {
            assert!(line.get("error").is_none(), "{line}");
            assert!(line["median_s"].as_f64().is_some_and(|s| s > 0.0), "{line}");
        }
        let w5 = &lines[4];
        assert_eq!(w5["description"], "3 MiB A->B", "{w5}");
        assert!(w5["gb_per_s"].as_f64().is_some_and(|g| g > 0.0), "{w5}");
    }
}
