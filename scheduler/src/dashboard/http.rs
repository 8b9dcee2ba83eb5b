//! The dashboard's HTTP server (`tiny_http`, on threads of its own): the page, the JSON API
//! and `/metrics`. Read-only: nothing here changes the scheduler.

use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;
use tiny_http::{Header, Method, Request, Response};

use super::Shared;

/// The page, embedded in the binary (no external assets).
const PAGE: &str = include_str!("page.html");

/// Threads answering requests (a slow reader holds one).
const THREADS: usize = 2;

/// The running server.
pub(super) struct Server {
    server: Arc<tiny_http::Server>,
    port: u16,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `host:port` (port 0: the OS chooses) and starts answering.
    pub(super) fn start(host: &str, port: u16, shared: Arc<Shared>) -> Result<Server, String> {
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let server = tiny_http::Server::http(&address)
            .map_err(|e| format!("cannot serve the dashboard on {address}: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| format!("the dashboard's socket on {address} has no port"))?;
        let server = Arc::new(server);
        let mut threads = Vec::new();
        for i in 0..THREADS {
            let (server, shared) = (server.clone(), shared.clone());
            let thread = std::thread::Builder::new()
                .name(format!("zask-dashboard-{i}"))
                .spawn(move || serve(&server, &shared))
                .map_err(|e| format!("cannot start the dashboard's thread: {e}"))?;
            threads.push(thread);
        }
        log::info!("dashboard on {address} (port {port})");
        Ok(Server {
            server,
            port,
            threads,
        })
    }

    /// The port it listens on.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the threads (each `recv` returns) and waits for them.
    pub(super) fn stop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, shared: &Shared) {
    loop {
        match server.recv() {
            Ok(request) => answer(request, shared),
            Err(e) => {
                log::debug!("the dashboard stops: {e}");
                return;
            }
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// Answers one request; a client that went away is only logged.
fn answer(request: Request, shared: &Shared) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let (status, content_type, body) = if !matches!(request.method(), Method::Get | Method::Head) {
        (405, "text/plain; charset=utf-8", "only GET\n".to_string())
    } else {
        route(&path, shared)
    };
    let mut response = Response::from_string(body).with_status_code(status);
    for h in [
        header("Content-Type", content_type),
        header("Cache-Control", "no-store"),
        header("X-Content-Type-Options", "nosniff"),
        // The page runs only its own inline script and talks only to this server.
        header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:",
        ),
    ]
    .into_iter()
    .flatten()
    {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("a dashboard reader went away: {e}");
    }
}

const JSON: &str = "application/json";

/// The status, content type and body for `path`.
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
        "/api/snapshot" => json(shared.look().snapshot(&shared.info)),
        "/api/scheduler" => json(shared.look().scheduler(&shared.info)),
        "/api/workers" => json(shared.look().workers()),
        "/api/computations" => json(shared.look().computations()),
        "/api/throughput" => json(shared.look().throughput()),
        "/api/task-stream" => json(shared.look().task_stream()),
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
