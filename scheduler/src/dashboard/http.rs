//! The dashboard's HTTP server: `hyper` on a one-thread `tokio` runtime of its own, serving
//! the page, the JSON API and `/metrics`. Read-only: nothing here changes the scheduler.
//!
//! Whoever connects is bounded: at most [`MAX_CONNECTIONS`] connections at once (more are
//! closed at once), a request head of at most [`MAX_HEAD`] bytes read within
//! [`HEAD_TIMEOUT`], and a connection (keep-alive included) lives at most
//! [`CONNECTION_TIMEOUT`], so a reader that never reads holds a slot that long and no more.
//! Answers are made on a small pool of blocking threads (they wait for a fresh observation).
//! A request whose `Host` is not one of the scheduler's names or an IP address is refused, so
//! a web page elsewhere cannot read the dashboard through DNS rebinding.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::sync::{oneshot, Semaphore};

use super::Shared;

/// The page, embedded in the binary (no external assets).
const PAGE: &str = include_str!("page.html");

/// Connections served at once at most.
pub(super) const MAX_CONNECTIONS: usize = 64;
/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Time to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection stays open.
pub(super) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Threads making answers at once at most.
const ANSWER_THREADS: usize = 4;

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
        let port = listener.local_addr().map_err(cannot)?.port();
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
        log::info!("dashboard on {address} (port {port})");
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
        let (shared, names) = (shared.clone(), names.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (shared, names) = (shared.clone(), names.clone());
                async move { Ok::<_, Infallible>(answer(request, shared, &names).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(CONNECTION_TIMEOUT, connection)
                .await
                .is_err()
            {
                log::debug!("a dashboard connection reached its time limit; closed");
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
    bare.parse::<IpAddr>().is_ok()
        || bare.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(bare))
}

/// Answers one request.
async fn answer(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    names: &[String],
) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return response(405, text, "only GET\n".to_string());
    }
    let host = request
        .headers()
        .get(HOST)
        .map(|h| h.to_str().unwrap_or("?"));
    if let Some(host) = host.filter(|h| !host_allowed(h, names)) {
        return response(
            403,
            text,
            format!(
                "this dashboard does not answer to the host {host:?}: use the address the \
                 scheduler printed, or an IP address (a guard against DNS rebinding)\n"
            ),
        );
    }
    let path = request.uri().path().to_string();
    match tokio::task::spawn_blocking(move || route(&path, &shared)).await {
        Ok((status, content_type, body)) => response(status, content_type, body),
        Err(e) => {
            log::error!("the dashboard failed to answer: {e}");
            response(500, text, "the dashboard failed to answer\n".to_string())
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

/// The status, content type and body for `path` (may wait a second for a fresh
/// observation: run on a blocking thread).
fn route(path: &str, shared: &Shared) -> (u16, &'static str, String) {
    let json = |v: Value| (200, JSON, v.to_string());
    match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_string()),
        "/health" => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
        "/metrics" => {
            let observed = shared.look().observed();
            match observed.map(super::metrics::encode) {
                Some(Ok(text)) => (200, super::metrics::CONTENT_TYPE, text),
                Some(Err(_)) => (500, "text/plain", "cannot encode the metrics\n".into()),
                None => (
                    503,
                    "text/plain; charset=utf-8",
                    "no observation of the scheduler yet; try again in a second\n".into(),
                ),
            }
        }
        "/api/snapshot" => (200, JSON, shared.look().snapshot(&shared.info)),
        "/api/scheduler" => json(shared.look().scheduler(&shared.info)),
        "/api/workers" => json(shared.look().workers()),
        "/api/computations" => json(shared.look().computations()),
        "/api/throughput" => json(shared.look().throughput()),
        "/api/task-stream" => (200, JSON, shared.look().task_stream()),
        "/api/functions" => json(shared.look().functions()),
        _ => (
            404,
            "text/plain; charset=utf-8",
            "not found: the dashboard serves /, /api/snapshot, /api/scheduler, /api/workers, \
             /api/computations, /api/throughput, /api/task-stream, /api/functions, /metrics \
             and /health (see docs/dashboard.md)\n"
                .to_string(),
        ),
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
        for refused in [
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
