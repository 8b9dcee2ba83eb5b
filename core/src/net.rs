//! Small ZeroMQ helpers every zask process uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Binds `socket` to `tcp://host:port` (port 0: the OS chooses) and returns the address peers
/// should connect to, with the port actually bound.
pub fn bind_tcp(socket: &zmq::Socket, host: &str, port: u16) -> Result<String, zmq::Error> {
    let bind_host = if host.is_empty() { "*" } else { host };
    let endpoint = if port == 0 {
        format!("tcp://{bind_host}:*")
    } else {
        format!("tcp://{bind_host}:{port}")
    };
    socket.bind(&endpoint)?;
    let bound = socket
        .get_last_endpoint()?
        .map_err(|_| zmq::Error::EINVAL)?;
    let bound_port = bound.rsplit(':').next().unwrap_or("0");
    Ok(format!("tcp://{}:{bound_port}", advertised_host(host)))
}

/// The name peers reach a socket bound on `host` by: `host` itself, or this machine's host
/// name when bound to all interfaces.
pub fn advertised_host(host: &str) -> String {
    match host {
        "" | "*" | "0.0.0.0" => local_hostname(),
        h => h.to_string(),
    }
}

/// This machine's host name (for advertised addresses when binding to all interfaces).
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// Socket options every zask socket gets: no lingering on close (closing never blocks), and
/// reconnects that back off up to a second.
pub fn configure(socket: &zmq::Socket) -> Result<(), zmq::Error> {
    socket.set_linger(0)?;
    socket.set_reconnect_ivl(50)?;
    socket.set_reconnect_ivl_max(1000)?;
    socket.set_sndhwm(0)?;
    socket.set_rcvhwm(0)?;
    Ok(())
}

/// A fresh identifier, unique across processes and restarts (pid, time and a counter).
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether binding to `host` listens only on this machine (the loopback interface).
pub fn is_loopback(host: &str) -> bool {
    match host {
        "localhost" | "::1" | "[::1]" => true,
        h => h
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "localhost", "::1"] {
            assert!(super::is_loopback(h), "{h}");
        }
        for h in ["", "*", "0.0.0.0", "10.0.0.1", "example.org"] {
            assert!(!super::is_loopback(h), "{h}");
        }
    }
}
