//! Authentication and encryption with a shared secret (docs/security.md), with real processes
//! over real sockets: the right secret, a wrong one and none, for a client, a worker and a
//! process fetching from a worker's peer port; an encrypted cluster computing the end-to-end
//! graphs; and the bytes of a captured connection, which must hold no key or value.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client_options, SchedulerProc, WorkerBin, WorkerProc, DEADLINE};
use zask::graph::{key, list, task, Graph};
use zask::security::Secret;
use zask::{Client, ClientOptions, Value};
use zask_core::frames;
use zask_core::protocol::{GetDataBody, Message, PeerReply, Tagged};

const TOKEN: &str = "a-test-secret-0123456789abcdef-0123456789";
const OTHER_TOKEN: &str = "another-secret-0123456789abcdef-012345678";

/// A file holding `token`, in a fresh directory.
fn token_file(dir: &tempfile::TempDir, name: &str, token: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn options(token: Option<&str>) -> ClientOptions {
    ClientOptions {
        secret: token.map(|t| Secret::new(t).unwrap()),
        ..client_options()
    }
}

/// A scheduler and two workers sharing `TOKEN`, and a client holding it.
struct SecureCluster {
    _dir: tempfile::TempDir,
    token: PathBuf,
    scheduler: SchedulerProc,
    workers: Vec<WorkerProc>,
    client: Client,
}

fn secure_cluster() -> SecureCluster {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "secret", TOKEN);
    let scheduler = SchedulerProc::start_logging(&["--auth-token-file", arg(&token)], "warn");
    let workers: Vec<WorkerProc> = (0..2)
        .map(|_| {
            WorkerProc::start_logging(
                WorkerBin::Stock,
                &scheduler.workers_address,
                1,
                &["--auth-token-file", arg(&token)],
                "warn",
            )
        })
        .collect();
    let client = Client::connect_with(&scheduler.clients_address, options(Some(TOKEN))).unwrap();
    client.wait_for_workers(2, DEADLINE).unwrap();
    SecureCluster {
        _dir: dir,
        token,
        scheduler,
        workers,
        client,
    }
}

#[test]
fn an_encrypted_cluster_computes_the_end_to_end_graphs() {
    let c = secure_cluster();
    let mut g = Graph::new();
    g.insert("x", task("add", (1, 2)));
    g.insert("y", task("inc", (key("x"),)));
    g.insert("z", task("add", (key("y"), key("x"))));
    let got = c.client.get(&g, vec!["y", "z"]).unwrap();
    assert_eq!(got, Value::List(vec![Value::Int(4), Value::Int(7)]));
    // Inputs spread over both workers, summed on one: peers fetch from each other.
    let mut g = Graph::new();
    let mut refs = Vec::new();
    for i in 0..200 {
        let k = format!("i-{i}");
        g.insert(k.as_str(), task("inc", (i,)));
        refs.push(key(k.as_str()));
    }
    g.insert("total", task("sum", (list(refs),)));
    assert_eq!(c.client.get(&g, "total").unwrap(), Value::Int(20_100));
    // A large value travels in frames of its own (split in 1 MiB parts when encrypted).
    let mut g = Graph::new();
    g.insert("big", task("zeros", (3_000_000,)));
    g.insert("n", task("nbytes", (key("big"),)));
    let got = c.client.get(&g, vec!["n", "big"]).unwrap();
    assert_eq!(
        got,
        Value::List(vec![
            Value::Int(3_000_000),
            Value::Bytes(vec![0; 3_000_000].into())
        ])
    );
}

/// Connecting without the scheduler's secret fails with "authentication failed", at once.
fn assert_refused(address: &str, token: Option<&str>) {
    let started = Instant::now();
    let err = match Client::connect_with(address, options(token)) {
        Ok(_) => panic!("a client with {token:?} got in"),
        Err(e) => e,
    };
    assert!(
        matches!(err, zask::client_error::Error::AuthenticationFailed(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "told in {:?}, not after a timeout",
        started.elapsed()
    );
}

#[test]
fn a_client_without_the_secret_or_with_another_is_told_authentication_failed() {
    let c = secure_cluster();
    assert_refused(&c.scheduler.clients_address, None);
    assert_refused(&c.scheduler.clients_address, Some(OTHER_TOKEN));
    // The scheduler logged the failed handshakes (with the endpoint they came in on).
    common::wait_until("the refusals logged", DEADLINE, || {
        let log = c.scheduler.proc.stderr_text();
        let endpoint = c
            .scheduler
            .clients_address
            .rsplit(':')
            .next()
            .unwrap_or("?");
        let logged = log
            .lines()
            .any(|l| l.contains("closed during the secure handshake") && l.contains(endpoint));
        logged.then_some(())
    });
    // A client with a secret against a scheduler without one is refused too.
    let open = SchedulerProc::start(&[]);
    assert_refused(&open.clients_address, Some(TOKEN));
    // And the right one still gets in.
    common::assert_serving(&c.client);
}

#[test]
fn a_worker_without_the_secret_or_with_another_exits_with_the_error() {
    let c = secure_cluster();
    let dir = tempfile::tempdir().unwrap();
    let other = token_file(&dir, "other", OTHER_TOKEN);
    for args in [vec![], vec!["--auth-token-file", arg(&other)]] {
        let mut worker =
            WorkerProc::start(WorkerBin::Stock, &c.scheduler.workers_address, 1, &args);
        let status = worker
            .proc
            .wait_exit(DEADLINE)
            .unwrap_or_else(|| panic!("a worker with {args:?} is still running"));
        assert_eq!(status.code(), Some(1), "{args:?}");
        let log = worker.proc.stderr_text();
        assert!(log.contains("authentication failed"), "{log}");
    }
    assert_eq!(c.client.workers().unwrap().len(), 2, "neither registered");
    common::assert_serving(&c.client);
}

/// Asks the worker at `address` for `key` from a socket secured with `token` (or none); the
/// value, or `None` if nothing answered within two seconds.
fn fetch_from_peer(address: &str, key: &str, token: Option<&str>) -> Option<Value> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    if let Some(t) = token {
        Secret::new(t).unwrap().connect(&socket).unwrap();
    }
    socket.connect(address).unwrap();
    let keys = vec![key.to_string()];
    let msg = Tagged(GetDataBody { request: 7, keys });
    frames::send(&socket, None, frames::encode(&msg, Vec::new()).unwrap()).unwrap();
    if socket.poll(zmq::POLLIN, 2000).unwrap() == 0 {
        return None;
    }
    let parts = socket.recv_multipart(0).unwrap();
    match PeerReply::decode(&parts[0]).unwrap() {
        PeerReply::Data(body) => {
            let item = body.items.into_iter().next()?;
            frames::unpack(item.data, &parts[1..]).ok()
        }
        PeerReply::Error { message, .. } => panic!("{message}"),
    }
}

#[test]
fn a_peer_without_the_secret_gets_nothing_from_a_worker() {
    let c = secure_cluster();
    let mut g = Graph::new();
    g.insert("kept-for-peers", task("add", (40, 2)));
    c.client.get_with(&g, "kept-for-peers", true).unwrap();
    let holder = common::wait_until("the value held", DEADLINE, || {
        c.client.status().ok()?;
        let workers = c.client.workers().ok()?;
        workers.into_iter().find(|w| w.keys > 0).map(|w| w.address)
    });
    assert_eq!(fetch_from_peer(&holder, "kept-for-peers", None), None);
    assert_eq!(
        fetch_from_peer(&holder, "kept-for-peers", Some(OTHER_TOKEN)),
        None
    );
    assert_eq!(
        fetch_from_peer(&holder, "kept-for-peers", Some(TOKEN)),
        Some(Value::Int(42)),
        "a peer with the secret is served"
    );
    let logged = c.workers.iter().any(|w| {
        w.proc
            .stderr_text()
            .contains("closed during the secure handshake")
    });
    assert!(logged, "the worker logged the refusals");
    let _ = &c.token;
}

/// A TCP proxy from a local port to `target`, keeping every byte it forwards (both ways).
fn recording_proxy(target: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("tcp://").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(&target) else {
                continue;
            };
            for (from, to) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                let record = record.clone();
                std::thread::spawn(move || pump(from, to, record));
            }
        }
    });
    (address, seen)
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        record.lock().unwrap().extend_from_slice(&buf[..n]);
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Computes a graph with a telling key and value through a recording proxy; the bytes seen.
fn captured(scheduler: &SchedulerProc, token: Option<&str>) -> Vec<u8> {
    let (proxy, seen) = recording_proxy(&scheduler.clients_address);
    let client = Client::connect_with(&proxy, options(token)).unwrap();
    let mut g = Graph::new();
    g.insert("telling-key-name", Value::from("telling-plain-value"));
    g.insert(
        "telling-result",
        task("add", (key("telling-key-name"), "-and-more")),
    );
    let got = client.get(&g, "telling-result").unwrap();
    assert_eq!(got, Value::from("telling-plain-value-and-more"));
    drop(client);
    let bytes = seen.lock().unwrap().clone();
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_captured_encrypted_connection_holds_no_key_or_value() {
    let c = secure_cluster();
    let bytes = captured(&c.scheduler, Some(TOKEN));
    assert!(bytes.len() > 200, "something was captured");
    for needle in ["telling-key-name", "telling-plain-value", "telling-result"] {
        assert!(
            !contains(&bytes, needle),
            "{needle:?} crossed the wire in clear"
        );
    }
    // The same without a secret shows them all (so the check above can fail).
    let open = SchedulerProc::start(&[]);
    let _worker = WorkerProc::start(WorkerBin::Stock, &open.workers_address, 1, &[]);
    open.client().wait_for_workers(1, DEADLINE).unwrap();
    let bytes = captured(&open, None);
    for needle in ["telling-key-name", "telling-plain-value", "telling-result"] {
        assert!(contains(&bytes, needle), "{needle:?} was expected in clear");
    }
}
