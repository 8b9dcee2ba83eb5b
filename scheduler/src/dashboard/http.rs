//! The dashboard's HTTP server: `hyper` on a one-thread `tokio` runtime of its own, serving
//! the page, the JSON API and `/metrics`. Read-only: nothing here changes the scheduler.
//!
//! Whoever connects is bounded: at most [`MAX_CONNECTIONS`] connections at once (more are
//! closed at once), a request head of at most [`MAX_HEAD`] bytes read within
//! [`HEAD_TIMEOUT`], and a connection (keep-alive included) is closed after
//! [`CONNECTION_TIMEOUT`] (gracefully: the answer under way is finished, within
//! [`CLOSE_GRACE`]), so a reader that never reads holds a slot that long and no more. A
//! request for data waits (asynchronously, on no thread) for a fresh observation, then its
//! answer is written on one of [`ANSWER_THREADS`] blocking threads: a flood of requests waits
//! in its connections, and costs at most those threads.
//! A request whose `Host` is not one of the scheduler's names or an IP address is refused, so
//! a web page elsewhere cannot read the dashboard through DNS rebinding.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::sync::{oneshot, Semaphore};

use super::{Shared, FRESH_WAIT};

/// The page, embedded in the binary (no external assets).
const PAGE: &str = include_str!("page.html");

/// Connections served at once at most.
pub(super) const MAX_CONNECTIONS: usize = 64;
/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Time to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long (the answer under way finished first).
pub(super) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Time an answer under way has to finish when its connection's time is up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Threads writing answers at once at most.
const ANSWER_THREADS: usize = 4;
/// How often a request waiting for a fresh observation looks.
const FRESH_POLL: Duration = Duration::from_millis(20);

/// The running server.
pub(super) struct Server {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `host:port` (port 0: the OS chooses) and starts answering. `names` are the host
    /// names requests may be addressed to (besides IP addresses and `localhost`).
    pub(super) fn start(
        host: &str,
        port: u16,
        names: Vec<String>,
        shared: Arc<Shared>,
    ) -> Result<Server, String> {
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let cannot = |e: std::io::Error| format!("cannot serve the dashboard on {address}: {e}");
        let listener = std::net::TcpListener::bind(&address).map_err(cannot)?;
        listener.set_nonblocking(true).map_err(cannot)?;
        let bound = listener.local_addr().map_err(cannot)?;
        let port = bound.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(ANSWER_THREADS)
            .thread_name("zask-dashboard")
            .build()
            .map_err(cannot)?;
        let (stop, stopped) = oneshot::channel();
        let names = Arc::new(names);
        let thread = std::thread::Builder::new()
            .name("zask-dashboard".to_string())
            .spawn(move || {
                runtime.block_on(serve(listener, shared, names, stopped));
                // Answers still being made (each waits a second at most) are not waited for.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| format!("cannot start the dashboard's thread: {e}"))?;
        log::info!("dashboard on {bound}");
        Ok(Server {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port it listens on.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving: open connections are dropped, the thread joined.
    pub(super) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until told to stop.
async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    names: Arc<Vec<String>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("the dashboard cannot listen: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let writers = Arc::new(Semaphore::new(ANSWER_THREADS));
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // (Out of file descriptors, say: wait a little rather than spin.)
                    log::warn!("the dashboard cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::debug!("the dashboard has {MAX_CONNECTIONS} connections; closing a new one");
            continue;
        };
        let (shared, names, writers) = (shared.clone(), names.clone(), writers.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (shared, names, writers) = (shared.clone(), names.clone(), writers.clone());
                async move { Ok::<_, Infallible>(answer(request, shared, &names, &writers).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_TIMEOUT) => {
                    connection.as_mut().graceful_shutdown();
                    if tokio::time::timeout(CLOSE_GRACE, connection).await.is_err() {
                        log::debug!("a dashboard connection reached its time limit; closed");
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Whether `host` (a `Host` header: a name or address, and maybe a port) is one this
/// dashboard answers to.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let bare = match host.rsplit_once(':') {
        // "[::1]:8788", "10.0.0.5:8788", "name:8788" (but not a bare IPv6 address).
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    // An IPv6 zone ("fe80::1%eth0", "%25" in a URL) and a fully qualified name's final dot.
    let bare = bare.split('%').next().unwrap_or(bare);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    !bare.is_empty()
        && (bare.parse::<IpAddr>().is_ok()
            || bare.eq_ignore_ascii_case("localhost")
            || names
                .iter()
                .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(bare)))
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Answers one request.
async fn answer(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    names: &[String],
    writers: &Arc<Semaphore>,
) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut r = response(405, TEXT, "only GET and HEAD\n".to_string());
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match request
        .headers()
        .get(HOST)
        .map(|h| h.to_str().unwrap_or("?"))
    {
        Some(host) if !host_allowed(host, names) => {
            return response(
                403,
                TEXT,
                format!(
                    "this dashboard does not answer to the host {host:?}: use the address the \
                     scheduler printed, or an IP address (a guard against DNS rebinding)\n"
                ),
            )
        }
        None if request.version() != Version::HTTP_10 => {
            return response(400, TEXT, "a request needs a Host header\n".to_string())
        }
        _ => {}
    }
    let path = request.uri().path().to_string();
    if let Some((status, content_type, body)) = fixed_route(&path) {
        return response(status, content_type, body);
    }
    // Data: wait for an observation taken after the request came (no thread held while
    // waiting), then write the answer on one of the answer threads.
    let since = shared.want_fresh();
    while !shared.fresh_since(since) && since.elapsed() < FRESH_WAIT {
        tokio::time::sleep(FRESH_POLL).await;
    }
    let Ok(permit) = writers.clone().acquire_owned().await else {
        return response(503, TEXT, "the dashboard is stopping\n".to_string());
    };
    let written = tokio::task::spawn_blocking(move || {
        let answer = data_route(&path, &shared);
        drop(permit);
        answer
    });
    match written.await {
        Ok((status, content_type, body)) => response(status, content_type, body),
        Err(e) => {
            log::error!("the dashboard failed to answer: {e}");
            response(500, TEXT, "the dashboard failed to answer\n".to_string())
        }
    }
}

fn response(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // The page runs only its own inline script and talks only to this server.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:",
        ),
    );
    response
}

const JSON: &str = "application/json";

/// The status, content type and body of the paths that need no observation (`None`: a path
/// of data).
fn fixed_route(path: &str) -> Option<(u16, &'static str, String)> {
    Some(match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_string()),
        "/health" => (200, TEXT, "ok\n".to_string()),
        p if DATA_PATHS.contains(&p) => return None,
        _ => (
            404,
            TEXT,
            "not found: the dashboard serves /, /api/snapshot, /api/scheduler, /api/workers, \
             /api/computations, /api/throughput, /api/task-stream, /api/functions, /metrics \
             and /health (see docs/dashboard.md)\n"
                .to_string(),
        ),
    })
}

/// The paths of data: the metrics and the JSON API.
const DATA_PATHS: [&str; 8] = [
    "/metrics",
    "/api/snapshot",
    "/api/scheduler",
    "/api/workers",
    "/api/computations",
    "/api/throughput",
    "/api/task-stream",
    "/api/functions",
];

/// The status, content type and body of a path of data, from the history as it is (run on
/// an answer thread: writing a snapshot takes a few milliseconds).
fn data_route(path: &str, shared: &Shared) -> (u16, &'static str, String) {
    let json = |v: Value| (200, JSON, v.to_string());
    match path {
        "/metrics" => {
            let observed = shared.history().observed();
            match observed.map(super::metrics::encode) {
                Some(Ok(text)) => (200, super::metrics::CONTENT_TYPE, text),
                Some(Err(_)) => (500, TEXT, "cannot encode the metrics\n".into()),
                None => (
                    503,
                    TEXT,
                    "no observation of the scheduler yet; try again in a second\n".into(),
                ),
            }
        }
        "/api/snapshot" => (200, JSON, shared.history().snapshot(&shared.info)),
        "/api/scheduler" => json(shared.history().scheduler(&shared.info)),
        "/api/workers" => json(shared.history().workers()),
        "/api/computations" => json(shared.history().computations()),
        "/api/throughput" => json(shared.history().throughput()),
        "/api/task-stream" => (200, JSON, shared.history().task_stream()),
        _ => json(shared.history().functions()),
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_by_address_or_by_the_schedulers_names_only() {
        let names = vec!["vm".to_string(), "sched.example".to_string()];
        for ok in [
            "127.0.0.1:8788",
            "10.0.0.5",
            "[::1]:8788",
            "::1",
            "localhost:8788",
            "LOCALHOST",
            "vm:8788",
            "sched.example",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for ok in [
            "localhost.",
            "vm.:8788",
            "127.0.0.1.",
            "[fe80::1%25eth0]:8788",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for refused in [
            ".",
            ":8788",
            "evil.example:8788",
            "evil.example",
            "vm.evil.example",
            "",
            "?",
        ] {
            assert!(!host_allowed(refused, &names), "{refused}");
        }
    }
}
