//! A cluster on separate "hosts": the scheduler and two workers each in a network namespace of
//! their own, joined by a bridge in a fourth one, on a private /24 that exists only inside
//! these namespaces (nothing routes to the outside). One worker's link is cut in the middle of
//! a computation, which must still complete correctly on the other; once the link is back the
//! worker rejoins.
//!
//! Needs root and `ip netns`; otherwise the test says it is skipping and passes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_command, scheduler_bin, zask_bin, Output, Proc, WorkerBin, START_TIMEOUT};

/// How long the worker may take to rejoin once its link is back (TCP retransmission backs
/// off while the link is down).
const REJOIN_DEADLINE: Duration = Duration::from_secs(90);
/// How long any other condition may take.
const DEADLINE: Duration = Duration::from_secs(60);

fn ip(args: &[&str]) -> Output {
    let mut command = Command::new("ip");
    command.args(args);
    run_command(command, None, Duration::from_secs(20))
}

/// Runs `ip ARGS`, panicking with its stderr if it fails.
fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        out.stderr
    );
}

/// Why the test cannot run here, if it cannot.
fn unsupported() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    match uid {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => {}
        Ok(o) => {
            return Some(format!(
                "not root (uid {})",
                String::from_utf8_lossy(&o.stdout).trim()
            ))
        }
        Err(e) => return Some(format!("cannot run `id -u`: {e}")),
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `ip`: {e}")),
    }
}

/// Network namespaces deleted (with their links) when dropped, also when the test panics.
/// Declare it before the processes running inside: locals drop in reverse order, so the
/// processes are killed first.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn add(&mut self, name: &str) -> Result<(), String> {
        let out = ip(&["netns", "add", name]);
        if !out.status.success() {
            return Err(out.stderr);
        }
        self.names.push(name.to_string());
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// `ip netns exec NS PROGRAM ARGS...`, as a command (ZASK_* variables are cleared by
/// [`Proc::spawn`] and [`cli`]).
fn in_ns(ns: &str, program: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program).args(args);
    command
}

/// Runs the `zask` CLI in namespace `ns` and returns its stdout; `None` if it failed.
fn cli(ns: &str, args: &[&str]) -> Option<String> {
    let mut command = in_ns(ns, &zask_bin(), args);
    for var in ["ZASK_SCHEDULER", "ZASK_TIMEOUT"] {
        command.env_remove(var);
    }
    let out = run_command(command, None, Duration::from_secs(60));
    out.status.success().then_some(out.stdout)
}

/// The workers `zask workers` lists: (address, keys, processing).
fn workers(ns: &str, scheduler: &str) -> Option<Vec<(String, u64, u64)>> {
    let out = cli(ns, &["workers", "--scheduler", scheduler, "--timeout", "5"])?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((
                v["address"].as_str()?.to_string(),
                v["keys"].as_u64()?,
                v["processing"].as_u64()?,
            ))
        })
        .collect()
}

fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cut_worker_link_mid_computation_and_rejoin() {
    if let Some(why) = unsupported() {
        eprintln!("skipping: needs root and ip netns ({why})");
        return;
    }
    let pid = std::process::id();
    let subnet = format!("10.231.{}", 20 + pid % 200);
    let (ns_s, ns_a, ns_b, ns_br) = (
        format!("zk{pid}s"),
        format!("zk{pid}a"),
        format!("zk{pid}b"),
        format!("zk{pid}br"),
    );
    let mut namespaces = Namespaces { names: Vec::new() };
    if let Err(e) = namespaces.add(&ns_br) {
        eprintln!("skipping: needs root and ip netns (cannot create a namespace: {e})");
        return;
    }
    for ns in [&ns_s, &ns_a, &ns_b] {
        namespaces
            .add(ns)
            .unwrap_or_else(|e| panic!("ip netns add {ns}: {e}"));
    }
    // The bridge, and one veth pair per host: `eth0` in the host, `v<x>` on the bridge.
    ip_ok(&["-n", &ns_br, "link", "set", "lo", "up"]);
    ip_ok(&["-n", &ns_br, "link", "add", "br0", "type", "bridge"]);
    ip_ok(&["-n", &ns_br, "link", "set", "br0", "up"]);
    let hosts = [(&ns_s, "vs", 1), (&ns_a, "va", 2), (&ns_b, "vb", 3)];
    for (ns, port, host) in hosts {
        ip_ok(&[
            "-n", &ns_br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        ip_ok(&["-n", &ns_br, "link", "set", port, "master", "br0"]);
        ip_ok(&["-n", &ns_br, "link", "set", port, "up"]);
        ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{subnet}.{host}/24"),
            "dev",
            "eth0",
        ]);
        ip_ok(&["-n", ns, "link", "set", "eth0", "up"]);
    }
    let (ip_s, ip_a, ip_b) = (
        format!("{subnet}.1"),
        format!("{subnet}.2"),
        format!("{subnet}.3"),
    );

    // The namespaces are private: fixed ports are fine.
    let mut scheduler = Proc::spawn(
        "zask-scheduler (netns)",
        in_ns(
            &ns_s,
            &scheduler_bin(),
            &[
                "--host",
                &ip_s,
                "--port-to-workers",
                "8786",
                "--port-to-clients",
                "8787",
                "--heartbeat-timeout",
                "1",
            ],
        ),
    );
    let to_workers = scheduler.read_field("address_to_workers", START_TIMEOUT);
    let to_clients = scheduler.read_field("address_to_clients", START_TIMEOUT);
    assert_eq!(to_workers, format!("tcp://{ip_s}:8786"));
    let worker = |ns: &str, host: &str| {
        let mut p = Proc::spawn(
            "zask-worker (netns)",
            in_ns(
                ns,
                &WorkerBin::Stock.path(),
                &[
                    &to_workers,
                    "--host",
                    host,
                    "--port-to-workers",
                    "9000",
                    "--nthreads",
                    "1",
                    "--heartbeat-interval",
                    "0.2",
                ],
            ),
        );
        let address = p.read_field("worker_address", START_TIMEOUT);
        assert_eq!(address, format!("tcp://{host}:9000"));
        (p, address)
    };
    let (_worker_a, addr_a) = worker(&ns_a, &ip_a);
    let (_worker_b, addr_b) = worker(&ns_b, &ip_b);
    wait_for("both workers to register", DEADLINE, || {
        (workers(&ns_s, &to_clients)?.len() == 2).then_some(())
    });

    // A computation of a few seconds, from a client in the scheduler's namespace.
    let n = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.json");
    let mut nodes = serde_json::Map::new();
    let mut refs = Vec::new();
    for i in 0..n {
        let k = format!("n-{i}");
        nodes.insert(
            k.clone(),
            serde_json::json!({"fn": "sleep", "args": [0.02, i]}),
        );
        refs.push(serde_json::json!({ "ref": k }));
    }
    nodes.insert(
        "total".into(),
        serde_json::json!({"fn": "sum", "args": [refs]}),
    );
    std::fs::write(&path, serde_json::Value::Object(nodes).to_string()).unwrap();
    let path_arg = path.display().to_string();
    let mut get = Proc::spawn(
        "zask get (netns)",
        in_ns(
            &ns_s,
            &zask_bin(),
            &["get", "--scheduler", &to_clients, &path_arg, "total"],
        ),
    );
    // Once worker B holds results of its own, cut its link.
    wait_for("worker B to hold results", DEADLINE, || {
        let ws = workers(&ns_s, &to_clients)?;
        ws.iter()
            .any(|(a, keys, _)| *a == addr_b && *keys > 0)
            .then_some(())
    });
    ip_ok(&["-n", &ns_b, "link", "set", "eth0", "down"]);
    let line = get.read_line(DEADLINE);
    assert_eq!(line.trim(), ((0..n).sum::<i64>()).to_string());
    let ws = workers(&ns_s, &to_clients).expect("workers listed");
    assert_eq!(
        ws.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        vec![addr_a.as_str()],
        "only A is left"
    );

    // The link comes back: B rejoins, and the cluster computes.
    ip_ok(&["-n", &ns_b, "link", "set", "eth0", "up"]);
    wait_for("worker B to rejoin", REJOIN_DEADLINE, || {
        let ws = workers(&ns_s, &to_clients)?;
        (ws.len() == 2 && ws.iter().any(|w| w.0 == addr_b)).then_some(())
    });
    let small = dir.path().join("small.json");
    std::fs::write(
        &small,
        serde_json::json!({
            "s-0": {"fn": "sleep", "args": [0.05, 1]},
            "s-1": {"fn": "sleep", "args": [0.05, 2]},
            "s-2": {"fn": "sleep", "args": [0.05, 3]},
            "s-3": {"fn": "sleep", "args": [0.05, 4]},
            "s-sum": {"fn": "add", "args": [{"ref": "s-0"}, {"ref": "s-3"}]},
        })
        .to_string(),
    )
    .unwrap();
    let out = cli(
        &ns_s,
        &[
            "get",
            "--scheduler",
            &to_clients,
            &small.display().to_string(),
            "s-sum",
            "s-1",
            "s-2",
        ],
    )
    .expect("the cluster computes after B rejoined");
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got, serde_json::json!([5, 2, 3]));
}
