//! The dashboard: a web page, a JSON API and Prometheus metrics, served over HTTP by the
//! scheduler (`--dashboard-port`, see `docs/dashboard.md`).
//!
//! The scheduler's loop never waits on it. While someone looks (a request came in the last
//! [`WATCH_FOR`]), the loop takes an [`Observation`] of its state at most every
//! [`INTERVAL`] (the workers, the computations, counters kept as events happen: never a walk
//! over the tasks) and hands it over through a mutex it only tries to take. HTTP requests are
//! answered on their own threads from the latest observation; a request finding none fresh
//! waits for the next, a second at the most.
//!
//! - [`history`]: what is kept between observations (throughput over time, the task stream),
//!   and the JSON documents of `/api/...`.
//! - [`metrics`]: `/metrics`, in Prometheus's text format (through `prometheus-client`).
//! - [`http`]: the server threads and the routes; `page.html` is the page, embedded.

mod history;
mod http;
mod metrics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::state::stats::Observation;
use crate::state::SchedulerState;
use history::History;

/// The dashboard's port when none is given.
pub const DEFAULT_PORT: u16 = 8788;

/// How often the loop observes its state at most, while someone looks.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// How long after a request observations go on (so a page polling every second, or a
/// scraper every 15 s, finds fresh data).
pub const WATCH_FOR: Duration = Duration::from_secs(30);

/// How long a request waits for a fresh observation at most.
const FRESH_WAIT: Duration = Duration::from_secs(1);

/// Where the dashboard listens (`--dashboard-port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardPort {
    /// No dashboard (`0`).
    Off,
    /// [`DEFAULT_PORT`], or, when it is taken, a port the OS chooses (with a warning): the
    /// `zask-scheduler` command when no port is given.
    Default,
    /// A port the OS chooses (`any`).
    Any,
    /// This port.
    Port(u16),
}

/// Reads `--dashboard-port`: a port number, `0` (off) or `any`.
pub fn parse_port(s: &str) -> Result<DashboardPort, String> {
    match s.trim() {
        "any" => Ok(DashboardPort::Any),
        "0" | "off" => Ok(DashboardPort::Off),
        n => n.parse::<u16>().map(DashboardPort::Port).map_err(|_| {
            format!("{s:?} is not a port: give a number from 1 to 65535, 0 (off) or `any`")
        }),
    }
}

/// What the scheduler tells the dashboard of itself at start.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerInfo {
    pub(crate) id: String,
    pub(crate) address_to_workers: String,
    pub(crate) address_to_clients: String,
    pub(crate) started: Instant,
}

/// What the loop and the HTTP threads share.
pub(crate) struct Shared {
    info: SchedulerInfo,
    /// Until when (ms after the scheduler started) someone is taken to look.
    watched_until_ms: AtomicU64,
    history: Mutex<History>,
}

impl Shared {
    fn ms_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.info.started).as_millis() as u64
    }

    /// Whether someone looked within [`WATCH_FOR`] of `now`.
    fn watched(&self, now: Instant) -> bool {
        self.ms_since_start(now) < self.watched_until_ms.load(Ordering::Relaxed)
    }

    /// A request for data came in: observations go on for [`WATCH_FOR`]. Returns the time
    /// of the request, for [`Shared::fresh_since`] (a request is answered from the first
    /// observation taken after it came, within [`INTERVAL`] and a turn of the loop, or after
    /// [`FRESH_WAIT`] with what there is).
    fn want_fresh(&self) -> Instant {
        let now = Instant::now();
        let until = self.ms_since_start(now + WATCH_FOR);
        self.watched_until_ms.fetch_max(until, Ordering::Relaxed);
        now
    }

    /// Whether the history holds an observation taken at `since` or after (false while
    /// someone else holds it: the asking thread, the server's, must not wait for a lock).
    fn fresh_since(&self, since: Instant) -> bool {
        let history = match self.history.try_lock() {
            Ok(h) => h,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        history.taken().is_some_and(|t| t >= since)
    }

    /// The history (as it is, if a reader panicked while holding it).
    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The loop's side: takes observations while someone looks, and measures how busy the loop
/// is.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    last: Option<Instant>,
    /// Time the loop spent working (not waiting in `poll`) since the start.
    busy: Duration,
    recording: bool,
}

impl Monitor {
    /// The loop worked for `d` (handling a turn's messages).
    pub(crate) fn busy(&mut self, d: Duration) {
        self.busy += d;
    }

    /// After each turn: an observation, when someone looks and the last one is
    /// [`INTERVAL`] old. Skipped (tried at the next turn) while a request reads the history.
    pub(crate) fn after_turn(&mut self, state: &mut SchedulerState, now: Instant) {
        if !self.shared.watched(now) {
            if self.recording {
                state.stop_recording();
                self.recording = false;
                self.last = None;
            }
            return;
        }
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < INTERVAL)
        {
            return;
        }
        let mut history = match self.shared.history.try_lock() {
            Ok(h) => h,
            // (A reader that panicked leaves the history as it was: go on with it.)
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let observation = state.observe(now);
        self.recording = true;
        self.last = Some(now);
        history.add(
            observation,
            now,
            SystemTime::now(),
            self.busy,
            resident_memory(),
        );
    }
}

/// A running dashboard; dropping it stops its threads.
pub(crate) struct Dashboard {
    url: String,
    server: http::Server,
}

impl Dashboard {
    /// Binds `host` (empty: all interfaces) on `port` and starts serving. `advertised` is the
    /// host name to put in the URL when bound to all interfaces. When the default port is
    /// taken another is chosen, with a warning; another port that is taken is an error.
    pub(crate) fn start(
        host: &str,
        advertised: &str,
        port: DashboardPort,
        info: SchedulerInfo,
    ) -> Result<Option<(Dashboard, Monitor)>, String> {
        let (port, fallback) = match port {
            DashboardPort::Off => return Ok(None),
            DashboardPort::Default => (DEFAULT_PORT, true),
            DashboardPort::Any => (0, false),
            DashboardPort::Port(p) => (p, false),
        };
        let bind = if host.is_empty() { "0.0.0.0" } else { host };
        let shared = Arc::new(Shared {
            info,
            watched_until_ms: AtomicU64::new(0),
            history: Mutex::new(History::default()),
        });
        // The names requests may come addressed to (besides IP addresses and localhost).
        let names: Vec<String> = [host, advertised]
            .into_iter()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let server = match http::Server::start(bind, port, names.clone(), shared.clone()) {
            Ok(s) => s,
            Err(e) if fallback => {
                log::warn!(
                    "the dashboard's default port {port} is taken ({e}); serving it on a port \
                     the OS chooses instead (--dashboard-port sets one)"
                );
                http::Server::start(bind, 0, names, shared.clone())?
            }
            Err(e) => return Err(e),
        };
        let shown = if host.is_empty() || host == "0.0.0.0" {
            advertised
        } else {
            host
        };
        let url = format!("http://{}:{}/", bracket_ipv6(shown), server.port());
        let monitor = Monitor {
            shared,
            last: None,
            busy: Duration::ZERO,
            recording: false,
        };
        Ok(Some((Dashboard { url, server }, monitor)))
    }

    /// The page's address, `http://host:port/`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving (also on drop).
    pub(crate) fn stop(&mut self) {
        self.server.stop();
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// This process's resident memory in bytes (0 where `/proc` cannot tell).
fn resident_memory() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The observation the metrics read, with the loop's busy time and the memory.
pub(crate) type Observed = (Arc<Observation>, Duration, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_or_refused_with_a_reason() {
        assert_eq!(parse_port("0"), Ok(DashboardPort::Off));
        assert_eq!(parse_port("any"), Ok(DashboardPort::Any));
        assert_eq!(parse_port("8788"), Ok(DashboardPort::Port(8788)));
        let e = parse_port("http").unwrap_err();
        assert!(e.contains("not a port"), "{e}");
        assert!(parse_port("70000").is_err());
    }

    #[test]
    fn memory_is_read() {
        assert!(resident_memory() > 0);
    }
}
