//! The dashboard's HTTP side with real processes: `/metrics` in Prometheus's text format,
//! the JSON API, the routes, the port rules, and a running computation seen from outside.
//! (The page itself is checked in a browser by `tests/dashboard.rs`.)

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{
    cluster_with_dashboard, dashboard_address, http, scheduler_bin, try_http, wait_until, Proc,
    DEADLINE, START_TIMEOUT,
};
use zask::{key, task, Graph, Keys, Value};

fn get_json(url: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(url, "GET", path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("line {l:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {l:?} is not a number"));
            (name.to_string(), value)
        })
        .collect()
}

/// `n` tasks `inc(i)`, one `fail`ing task, and their sum.
fn graph(n: usize) -> Graph {
    let mut g = Graph::new();
    for i in 0..n {
        g.insert(format!("i{i}"), task("inc", (i as i64,)));
    }
    let all: Vec<_> = (0..n).map(|i| key(format!("i{i}"))).collect();
    g.insert("total", task("sum", (zask::list(all),)));
    g.insert("broken", task("fail", ("on purpose",)));
    g
}

#[test]
fn metrics_count_what_ran_by_function_in_prometheus_text() {
    let (cluster, url) = cluster_with_dashboard(2, 1);
    let client = cluster.client();
    let n = 200;
    let total = client.get(&graph(n), Keys::from("total")).expect("the sum");
    assert_eq!(total, Value::Int((1..=n as i64).sum()));
    assert!(client.get(&graph(n), Keys::from("broken")).is_err());

    let (status, text) = http(&url, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    let s = samples(&text);
    let sample = |name: &str| -> f64 {
        *s.get(name)
            .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
    };
    assert_eq!(
        sample("zask_tasks_completed_total{function=\"inc\"}"),
        n as f64
    );
    assert_eq!(sample("zask_tasks_completed_total{function=\"sum\"}"), 1.0);
    assert_eq!(sample("zask_tasks_failed_total{function=\"fail\"}"), 1.0);
    assert_eq!(
        sample("zask_task_duration_seconds_count{function=\"inc\"}"),
        n as f64
    );
    assert_eq!(
        sample("zask_task_duration_seconds_bucket{function=\"inc\",le=\"+Inf\"}"),
        n as f64
    );
    assert_eq!(sample("zask_workers"), 2.0);
    assert_eq!(sample("zask_worker_threads"), 2.0);
    assert!(sample("zask_scheduler_loop_busy_seconds_total") > 0.0);
    assert!(sample("process_resident_memory_bytes") > 1e6);
    for state in ["waiting", "ready", "processing", "memory", "erred"] {
        sample(&format!("zask_tasks{{state=\"{state}\"}}"));
    }
    // Every family is described, and every name follows Prometheus's rules.
    for family in [
        "zask_tasks",
        "zask_tasks_completed_total",
        "zask_tasks_failed_total",
        "zask_task_duration_seconds",
        "zask_workers",
        "zask_worker_threads",
        "zask_worker_processing_tasks",
        "zask_worker_held_bytes",
        "zask_clients",
        "zask_computations",
        "zask_held_keys",
        "zask_held_bytes",
        "zask_transfer_bytes_total",
        "zask_scheduler_loop_busy_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
    }
    for name in s.keys() {
        let bare = name.split('{').next().unwrap_or_default();
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !bare.starts_with(|c: char| c.is_ascii_digit()),
            "{name}"
        );
    }
    // Counters only grow: run more (the sum's inputs were released: computed again), scrape
    // again.
    client.get(&graph(n), Keys::from("total")).expect("again");
    let text = http(&url, "GET", "/metrics").1;
    let s = samples(&text);
    assert_eq!(
        s["zask_tasks_completed_total{function=\"inc\"}"],
        2.0 * n as f64,
        "{text}"
    );
    let more = {
        let mut g = Graph::new();
        g.insert("more", task("inc", (10_000,)));
        g
    };
    client.get(&more, Keys::from("more")).expect("one more");
    let s = samples(&http(&url, "GET", "/metrics").1);
    assert_eq!(
        s["zask_tasks_completed_total{function=\"inc\"}"],
        2.0 * n as f64 + 1.0
    );
}

#[test]
fn the_api_shows_workers_computations_and_the_task_stream_while_it_runs() {
    let (cluster, url) = cluster_with_dashboard(2, 1);
    // Look once, so that the scheduler records finished tasks for the task stream.
    let first = get_json(&url, "/api/snapshot");
    assert_eq!(
        first["workers"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    let mut g = Graph::new();
    for i in 0..8 {
        g.insert(format!("s{i}"), task("sleep", (0.5, i)));
    }
    let all: Vec<_> = (0..8).map(|i| key(format!("s{i}"))).collect();
    g.insert("slow", task("sum", (zask::list(all),)));
    let client = cluster.new_client();
    let running = std::thread::spawn(move || client.get(&g, Keys::from("slow")));
    let seen = wait_until("the computation in /api/computations", DEADLINE, || {
        let list = get_json(&url, "/api/computations");
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["kind"] == "get" && c["total"] == 9))
            .cloned()
    });
    assert!(seen["id"].as_str().is_some_and(|id| id.starts_with("get-")));
    assert_eq!(seen["done"].as_u64().map(|d| d <= 9), Some(true), "{seen}");
    let slow = running
        .join()
        .expect("the client thread")
        .expect("the slow sum");
    assert_eq!(slow, Value::Int(28));
    let snapshot = wait_until("the task stream to show the sleeps", DEADLINE, || {
        let s = get_json(&url, "/api/snapshot");
        let sleeps = s["task_stream"]
            .as_array()?
            .iter()
            .filter(|t| t["function"] == "sleep")
            .count();
        (sleeps == 8).then_some(s)
    });
    for t in snapshot["task_stream"].as_array().into_iter().flatten() {
        let (start, end) = (t["start_unix_ms"].as_f64(), t["end_unix_ms"].as_f64());
        assert!(matches!((start, end), (Some(a), Some(b)) if a <= b), "{t}");
        if t["function"] == "sleep" {
            let ms = end.unwrap_or(0.0) - start.unwrap_or(0.0);
            assert!(
                (450.0..5_000.0).contains(&ms),
                "a 0.5 s sleep ran {ms} ms: {t}"
            );
        }
    }
    let workers: Vec<&str> = snapshot["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["address"].as_str())
        .collect();
    assert_eq!(workers.len(), 2);
    for t in snapshot["task_stream"].as_array().into_iter().flatten() {
        assert!(
            workers.contains(&t["worker"].as_str().unwrap_or("?")),
            "{t}"
        );
    }
    assert!(snapshot["tasks"]["completed_total"].as_u64() >= Some(9));
    assert!(snapshot["scheduler"]["rss_bytes"].as_u64() > Some(0));
    let sleep = snapshot["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "sleep"))
        .cloned()
        .expect("the sleep function's statistics");
    assert_eq!(sleep["completed"], 8);
    assert!(sleep["mean_duration_s"].as_f64() >= Some(0.5), "{sleep}");
    // Each part has its own address, the same as the snapshot's field.
    for (path, field) in [
        ("/api/workers", "workers"),
        ("/api/functions", "functions"),
        ("/api/throughput", "throughput"),
    ] {
        assert!(get_json(&url, path).is_array(), "{path} ({field})");
    }
    assert!(get_json(&url, "/api/scheduler")["id"].is_string());
}

#[test]
fn routes_are_read_only_and_unknown_ones_say_what_exists() {
    let (_cluster, url) = cluster_with_dashboard(2, 1);
    let (status, page) = http(&url, "GET", "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") && page.contains("api/snapshot"),
        "{page}"
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "src=\"//",
    ] {
        assert!(!page.contains(external), "the page loads {external}...");
    }
    assert_eq!(http(&url, "GET", "/health"), (200, "ok\n".to_string()));
    let (status, body) = http(&url, "GET", "/nothing");
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");
    assert_eq!(http(&url, "POST", "/api/snapshot").0, 405);
    assert_eq!(http(&url, "DELETE", "/").0, 405);
}

/// Reads a scheduler's address lines, then its `dashboard:` line.
fn dashboard_line(s: &mut Proc) -> String {
    s.read_field("address_to_workers", START_TIMEOUT);
    s.read_field("address_to_clients", START_TIMEOUT);
    s.read_field("dashboard", START_TIMEOUT)
}

fn scheduler_output(args: &[&str]) -> Proc {
    let mut command = Command::new(scheduler_bin());
    command
        .args(["--host", "127.0.0.1"])
        .args(args)
        .env("RUST_LOG", "warn");
    Proc::spawn("zask-scheduler", command)
}

#[test]
fn a_taken_port_is_an_error_and_the_default_port_taken_is_replaced() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    let mut s = scheduler_output(&["--dashboard-port", &port]);
    let status = s.wait_exit(START_TIMEOUT).expect("the scheduler exits");
    assert!(!status.success());
    let err = s.stderr_text();
    assert!(
        err.contains("dashboard") && err.contains("--dashboard-port"),
        "{err}"
    );

    // The default port (8788) taken: by this test, or by someone else already.
    let _default = TcpListener::bind("127.0.0.1:8788");
    let mut s = scheduler_output(&[]);
    let url = dashboard_line(&mut s);
    assert!(!url.ends_with(":8788/"), "{url}");
    assert_eq!(http(&url, "GET", "/health").0, 200);
    wait_until("the warning about the default port", DEADLINE, || {
        s.stderr_text()
            .contains("default port 8788 is taken")
            .then_some(())
    });

    let mut s = scheduler_output(&["--dashboard-port", "0"]);
    s.read_field("address_to_workers", START_TIMEOUT);
    s.read_field("address_to_clients", START_TIMEOUT);
    s.terminate();
    assert_eq!(s.try_read_line(START_TIMEOUT), None, "no dashboard line");

    // 8788 given explicitly, and taken: an error, not another port.
    let _taken = TcpListener::bind("127.0.0.1:8788");
    let mut s = scheduler_output(&["--dashboard-port", "8788"]);
    let status = s.wait_exit(START_TIMEOUT).expect("the scheduler exits");
    assert!(!status.success());
    assert!(
        s.stderr_text().contains("--dashboard-port"),
        "{}",
        s.stderr_text()
    );
}

#[test]
fn a_request_for_another_host_is_refused_against_dns_rebinding() {
    let (_cluster, url) = cluster_with_dashboard(2, 1);
    let address = dashboard_address(&url);
    let port = address.rsplit(':').next().unwrap_or_default();
    let (status, body) = try_http(
        address,
        &format!("evil.example:{port}"),
        "GET",
        "/api/snapshot",
    )
    .expect("an answer");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DNS rebinding"), "{body}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) = try_http(address, &host, "GET", "/health").expect("an answer");
        assert_eq!(status, 200, "{host}");
    }
}

#[test]
fn connections_that_never_finish_a_request_neither_stop_the_dashboard_nor_the_scheduler() {
    let (mut cluster, url) = cluster_with_dashboard(2, 1);
    let address = dashboard_address(&url).to_string();
    // More connections than the dashboard serves at once, each sending half a request head.
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&address).ok()?;
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            Some(s)
        })
        .collect();
    assert!(!idle.is_empty());
    // And readers that ask for a lot and never read it (their answers fill the socket).
    let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\n\r\n").repeat(400);
    let stuck: Vec<TcpStream> = (0..4)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&address).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
            let _ = s.write_all(request.as_bytes());
            Some(s)
        })
        .collect();
    // The scheduler serves clients meanwhile, and the dashboard answers again once the idle
    // connections' time to send a head (5 s) is up.
    let client = cluster.client();
    assert_eq!(client.workers().expect("the workers").len(), 2);
    wait_until("the dashboard to answer again", DEADLINE, || {
        try_http(&address, &address, "GET", "/health")
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    // And it stops promptly with connections still open.
    let mut idle_again: Vec<TcpStream> = (0..10)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    for s in &mut idle_again {
        let _ = s.write_all(b"GET / HTTP/1.1\r\n");
    }
    let scheduler = &mut cluster.scheduler.proc;
    scheduler.terminate();
    let started = std::time::Instant::now();
    assert!(
        scheduler.wait_exit(START_TIMEOUT).is_some(),
        "the scheduler exits"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop((idle, stuck));
}

#[test]
fn with_a_secret_the_dashboard_listens_on_loopback_only() {
    let dir = tempfile::tempdir().expect("a directory");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("the secret");
    let secret = secret.to_string_lossy().into_owned();
    let mut command = Command::new(scheduler_bin());
    command
        .args(["--host", "0.0.0.0", "--dashboard-port", "any"])
        .args(["--auth-token-file", &secret])
        .env("RUST_LOG", "info");
    let mut s = Proc::spawn("zask-scheduler", command);
    let url = dashboard_line(&mut s);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(http(&url, "GET", "/health").0, 200);
}

#[test]
fn a_flood_of_requests_that_go_away_leaves_the_dashboard_answering() {
    let (_cluster, url) = cluster_with_dashboard(2, 1);
    let address = dashboard_address(&url).to_string();
    // Half a second of requests for data, each connection closed at once.
    let until = std::time::Instant::now() + Duration::from_millis(500);
    let flooders: Vec<_> = (0..16)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                while std::time::Instant::now() < until {
                    if let Ok(mut s) = TcpStream::connect(&address) {
                        let request =
                            format!("GET /api/snapshot HTTP/1.1\r\nHost: {address}\r\n\r\n");
                        let _ = s.write_all(request.as_bytes());
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    let sent: usize = flooders
        .into_iter()
        .map(|f| f.join().expect("a flooder"))
        .sum();
    assert!(sent > 100, "{sent}");
    let started = std::time::Instant::now();
    let (status, _) = try_http(&address, &address, "GET", "/health").expect("health");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let (status, body) = try_http(&address, &address, "GET", "/api/scheduler").expect("data");
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn requests_without_a_host_or_of_another_method_are_answered_by_the_rules() {
    let (_cluster, url) = cluster_with_dashboard(2, 1);
    let address = dashboard_address(&url);
    let raw = |request: &str| -> String {
        let mut s = TcpStream::connect(address).expect("a connection");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        s.write_all(request.as_bytes()).expect("the request");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let answer = raw("GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw("GET /health HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let answer = raw("PUT /health HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("allow: get, head"),
        "{answer}"
    );
}
