//! [`Secret`]: a cluster's shared secret, and what it secures: every connection (client to
//! scheduler, worker to scheduler, worker to worker) is authenticated and encrypted with
//! ZeroMQ's CURVE mechanism (CurveZMQ: X25519 key exchange, XSalsa20-Poly1305, keys per
//! connection, nonces that refuse replays), through libsodium. No cryptography is written
//! here: this module derives keys and sets socket options.
//!
//! From the secret (a token of at least 16 bytes, from `--auth-token-file` or
//! `ZASK_AUTH_TOKEN`) two X25519 key pairs are derived with HKDF-SHA256: the *server* pair,
//! which every listening socket uses, and the *member* pair, which every connecting socket
//! uses. A connecting socket must know the server's public key to begin a handshake, and
//! proves it holds the member's secret key in it; a listening socket's [`Gatekeeper`] (ZeroMQ's
//! ZAP) lets in only the member key. So a peer without the secret reaches nothing, the secret
//! never crosses the wire, and a network observer sees only ciphertext. (Everyone holding the
//! secret is equally trusted: it is one secret per cluster, as in HyperQueue.)
//!
//! A connecting socket's refusal is noticed by a [`HandshakeWatch`] (a ZeroMQ socket monitor),
//! so that a client or worker with the wrong secret, or none, fails with "authentication
//! failed" at once rather than waiting out a timeout.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// The environment variable a secret can be given in (instead of a file).
pub const AUTH_TOKEN_ENV: &str = "ZASK_AUTH_TOKEN";
/// The shortest secret taken, in bytes. (The secret must be random, as `zask token` makes it:
/// one recorded handshake lets an observer test guesses of it offline, so a word or a phrase
/// would not do.)
pub const MIN_SECRET_LEN: usize = 32;
/// The ZAP domain zask's listening sockets use.
const ZAP_DOMAIN: &str = "zask";
/// Where libzmq asks a context's ZAP handler (fixed by the ZAP specification).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Why a secret could not be had, or a secured socket set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The token file could not be read.
    #[error("cannot read the secret from {0}: {1}")]
    Read(String, std::io::Error),
    /// The token is too short to be a secret.
    #[error(
        "the secret is {0} bytes long, shorter than {MIN_SECRET_LEN}: make a random one with \
         `zask token > FILE` (it prints 32 random bytes in hex)"
    )]
    TooShort(usize),
    /// This libzmq was built without CURVE.
    #[error("this build of libzmq has no CURVE support, so connections cannot be encrypted")]
    NoCurve,
    /// A ZeroMQ call failed.
    #[error("ZeroMQ error while securing a socket: {0}")]
    Zmq(#[from] zmq::Error),
    /// The gatekeeper thread could not start.
    #[error("cannot start the authentication thread: {0}")]
    Thread(std::io::Error),
}

/// A cluster's shared secret, as the keys derived from it. (The token itself is not kept.)
#[derive(Clone)]
pub struct Secret {
    server_secret: [u8; 32],
    server_public: [u8; 32],
    member_secret: [u8; 32],
    member_public: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (Never the keys: a debug print must not leak the secret.)
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret of `token` (surrounding whitespace ignored, as a file's last newline).
    pub fn new(token: &str) -> Result<Secret, SecurityError> {
        let token = token.trim();
        if token.len() < MIN_SECRET_LEN {
            return Err(SecurityError::TooShort(token.len()));
        }
        let kdf = Hkdf::<Sha256>::new(Some(b"zask curve keys v1"), token.as_bytes());
        let derive = |info: &[u8]| {
            let mut key = [0u8; 32];
            // (32 bytes is far below HKDF-SHA256's limit of 8,160: this cannot fail.)
            let _ = kdf.expand(info, &mut key);
            let public = PublicKey::from(&StaticSecret::from(key)).to_bytes();
            (key, public)
        };
        let (server_secret, server_public) = derive(b"server");
        let (member_secret, member_public) = derive(b"member");
        Ok(Secret {
            server_secret,
            server_public,
            member_secret,
            member_public,
        })
    }

    /// The secret in the file at `path`.
    pub fn from_file(path: &Path) -> Result<Secret, SecurityError> {
        let token = std::fs::read_to_string(path)
            .map_err(|e| SecurityError::Read(path.display().to_string(), e))?;
        Secret::new(&token)
    }

    /// The secret a process is given: from `file` if set, else from `token` (the value of
    /// `ZASK_AUTH_TOKEN`), else none (connections are neither authenticated nor encrypted).
    pub fn from_sources(
        file: Option<&Path>,
        token: Option<&str>,
    ) -> Result<Option<Secret>, SecurityError> {
        match (file, token) {
            (Some(path), _) => Secret::from_file(path).map(Some),
            // (Set but empty, as an unset shell variable expands: an error, not "no secret".)
            (None, Some(token)) => Secret::new(token).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The secret a command line is given: the file `--auth-token-file` names, else the
    /// value of `ZASK_AUTH_TOKEN`, else none.
    pub fn from_cli(file: Option<&Path>) -> Result<Option<Secret>, SecurityError> {
        let token = std::env::var(AUTH_TOKEN_ENV).ok();
        Secret::from_sources(file, token.as_deref())
    }

    /// A new random token (32 bytes from the operating system, in hex).
    pub fn generate_token() -> Result<String, std::io::Error> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Makes `socket` a secured listening socket (call before `bind`); the context's
    /// [`Gatekeeper`] must be running. Without an answer from the gatekeeper (if it ever
    /// stopped) the socket refuses everyone: it never falls back to letting anyone in.
    pub fn serve(&self, socket: &mut zmq::Socket) -> Result<(), SecurityError> {
        check_curve()?;
        socket.set_zap_domain(ZAP_DOMAIN)?;
        enforce_zap(socket)?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&self.server_secret)?;
        Ok(())
    }

    /// Makes `socket` a secured connecting socket (call before `connect`).
    pub fn connect(&self, socket: &zmq::Socket) -> Result<(), SecurityError> {
        check_curve()?;
        socket.set_curve_serverkey(&self.server_public)?;
        socket.set_curve_publickey(&self.member_public)?;
        socket.set_curve_secretkey(&self.member_secret)?;
        Ok(())
    }

    /// Starts the gatekeeper of `ctx`: it lets in connections that prove they hold the
    /// secret, refuses the others, and logs each refusal on the `listening` sockets with the
    /// address it came from (and nothing else from it). It runs until the returned handle is
    /// dropped. Call before the listening sockets bind.
    pub fn start_gatekeeper(
        &self,
        ctx: &zmq::Context,
        listening: &[&zmq::Socket],
    ) -> Result<Gatekeeper, SecurityError> {
        check_curve()?;
        let socket = ctx.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(ZAP_ENDPOINT)?;
        let mut monitors = Vec::with_capacity(listening.len());
        for listener in listening {
            let endpoint = format!("inproc://{}", crate::net::unique_id("gatekeeper-monitor"));
            // (Refusals by the ZAP handler are logged there, with the peer's address.)
            let wanted = zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL;
            listener.monitor(&endpoint, wanted as i32)?;
            let events = ctx.socket(zmq::PAIR)?;
            events.set_linger(0)?;
            events.connect(&endpoint)?;
            monitors.push(events);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let member = self.member_public;
        let thread = std::thread::Builder::new()
            .name("zask-gatekeeper".into())
            .spawn(move || gatekeeper(socket, monitors, member, thread_stop))
            .map_err(SecurityError::Thread)?;
        Ok(Gatekeeper {
            stop,
            thread: Some(thread),
        })
    }
}

/// Secures a listening socket with `secret`, if there is one (see [`Secret::serve`]); from
/// then on this process carries large values in frames of at most
/// [`crate::frames::ENCRYPTED_FRAME`] (encryption and sending then overlap).
pub fn secure_server(
    secret: Option<&Secret>,
    socket: &mut zmq::Socket,
) -> Result<(), SecurityError> {
    match secret {
        Some(s) => {
            crate::frames::set_max_frame(crate::frames::ENCRYPTED_FRAME);
            s.serve(socket)
        }
        None => Ok(()),
    }
}

/// As [`secure_server`], for a connecting socket.
pub fn secure_client(secret: Option<&Secret>, socket: &zmq::Socket) -> Result<(), SecurityError> {
    match secret {
        Some(s) => {
            crate::frames::set_max_frame(crate::frames::ENCRYPTED_FRAME);
            s.connect(socket)
        }
        None => Ok(()),
    }
}

/// `ZMQ_ZAP_ENFORCE_DOMAIN` (93; a draft option in libzmq 4.3.4's header, implemented in
/// every build): with no ZAP handler to ask, refuse the connection (the default lets it in).
/// Neither the `zmq` crate nor `zmq-sys` names it.
const ZMQ_ZAP_ENFORCE_DOMAIN: std::os::raw::c_int = 93;

/// Sets `ZMQ_ZAP_ENFORCE_DOMAIN` on `socket`.
fn enforce_zap(socket: &mut zmq::Socket) -> Result<(), SecurityError> {
    let on: std::os::raw::c_int = 1;
    // SAFETY: a valid socket, a documented option, and a pointer to an int of the size given,
    // alive for the call.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_ZAP_ENFORCE_DOMAIN,
            (&on as *const std::os::raw::c_int).cast(),
            std::mem::size_of::<std::os::raw::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(SecurityError::Zmq(zmq::Error::from_raw(unsafe {
            zmq_sys::zmq_errno()
        })))
    }
}

fn check_curve() -> Result<(), SecurityError> {
    if zmq::has("curve").unwrap_or(false) {
        Ok(())
    } else {
        Err(SecurityError::NoCurve)
    }
}

/// A context's ZAP handler (see [`Secret::start_gatekeeper`]); dropping it stops it.
pub struct Gatekeeper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers ZAP requests (RFC 27: version, request id, domain, address, identity, mechanism,
/// credentials) until `stop` is set: 200 for a CURVE client with the member key, 400 else;
/// and logs the handshakes the listening sockets' `monitors` say failed.
fn gatekeeper(
    socket: zmq::Socket,
    monitors: Vec<zmq::Socket>,
    member: [u8; 32],
    stop: Arc<AtomicBool>,
) {
    let mut log = RefusalLog::default();
    while !stop.load(Ordering::SeqCst) {
        let mut items: Vec<zmq::PollItem> = std::iter::once(&socket)
            .chain(&monitors)
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        match zmq::poll(&mut items, 100) {
            Ok(_) => {}
            // (A signal: Ctrl-C lands on any thread.)
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return gatekeeper_stopped(e),
        }
        let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        for (monitor, _) in monitors.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
                // (The address of a monitor's event is this side's endpoint.)
                let endpoint = event_address(&frames);
                log.note(&endpoint);
            }
        }
        log.flush(false);
        if !ready[0] {
            continue;
        }
        let frames = match socket.recv_multipart(0) {
            Ok(frames) => frames,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return gatekeeper_stopped(e),
        };
        let frame = |i: usize| frames.get(i).map(Vec::as_slice).unwrap_or_default();
        let allowed = frame(0) == b"1.0" && frame(5) == b"CURVE" && frame(6) == member;
        let (status, text): (&[u8], &[u8]) = match allowed {
            true => (b"200", b"OK"),
            false => {
                let address = String::from_utf8_lossy(frame(3));
                log::warn!(
                    "refused a connection from {address}: authentication failed (it proves no \
                     key of this cluster's secret)"
                );
                (b"400", b"authentication failed")
            }
        };
        let reply: [&[u8]; 6] = [b"1.0", frame(1), status, text, b"", b""];
        loop {
            match socket.send_multipart(reply, 0) {
                Ok(()) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return gatekeeper_stopped(e),
            }
        }
    }
    log.flush(true);
}

/// The address a socket monitor's event names (its second frame).
fn event_address(frames: &[Vec<u8>]) -> String {
    frames
        .get(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default()
}

/// The gatekeeper cannot go on. The listening sockets then refuse every connection
/// (`ZMQ_ZAP_ENFORCE_DOMAIN`): nobody gets in unchecked.
fn gatekeeper_stopped(e: zmq::Error) {
    log::error!(
        "the authentication thread stopped ({e}); no new connection can be let in: restart \
         this process"
    );
}

/// Handshakes that failed on the listening sockets, logged at most every few seconds (a port
/// scan, or someone without the secret retrying, must not flood the log).
#[derive(Default)]
struct RefusalLog {
    since: Option<std::time::Instant>,
    count: u64,
    endpoints: std::collections::BTreeSet<String>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, endpoint: &str) {
        self.count += 1;
        if self.endpoints.len() < 8 {
            self.endpoints.insert(endpoint.to_string());
        }
        if self.since.is_none() {
            // The first of a burst is told at once.
            let now = std::time::Instant::now();
            self.since = Some(now.checked_sub(Self::EVERY).unwrap_or(now));
        }
    }

    fn flush(&mut self, now: bool) {
        let Some(since) = self.since else {
            return;
        };
        if self.count == 0 || (!now && since.elapsed() < Self::EVERY) {
            return;
        }
        let on: Vec<&str> = self.endpoints.iter().map(String::as_str).collect();
        log::warn!(
            "{} connection(s) to {} closed during the secure handshake (a peer without this \
             cluster's secret, or a connection that dropped)",
            self.count,
            on.join(", ")
        );
        *self = RefusalLog {
            since: Some(std::time::Instant::now()),
            ..RefusalLog::default()
        };
    }
}

/// Watches a connecting socket's handshakes (a ZeroMQ socket monitor): says when the other
/// side refused it, so that its owner can fail with "authentication failed" rather than wait
/// out a timeout, and when a handshake succeeded again.
pub struct HandshakeWatch {
    events: zmq::Socket,
    /// Whether this side has a secret (without one, only a definite refusal counts).
    secured: bool,
    /// Handshakes that ended without success, in a row.
    failed_in_a_row: u32,
    /// A connection is made and its handshake not over.
    connecting: bool,
}

/// What a [`HandshakeWatch`] saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Handshake {
    /// A handshake succeeded (after failures, the way is open again).
    Succeeded,
    /// The other side refused: `definite` when it said so (a ZAP refusal, or a secret on one
    /// side only), else several secure handshakes in a row ended with the connection closed,
    /// which is what a wrong secret looks like (the other side cannot read our first message,
    /// and closes) but also a proxy in front of a peer that is down.
    Refused {
        /// Whether the other side said so.
        definite: bool,
        /// Why, for the user.
        why: String,
    },
}

/// Secure handshakes ended by the connection closing, in a row, that count as a refusal.
const LIKELY_REFUSALS: u32 = 3;

impl HandshakeWatch {
    /// Starts watching `socket` (before it connects), through an in-process socket named
    /// after `name` (unique in `ctx`); `secured`: whether `socket` has a secret.
    pub fn new(
        ctx: &zmq::Context,
        socket: &zmq::Socket,
        name: &str,
        secured: bool,
    ) -> Result<HandshakeWatch, SecurityError> {
        let endpoint = format!("inproc://{name}-monitor");
        let wanted = zmq_sys::ZMQ_EVENT_CONNECTED
            | zmq_sys::ZMQ_EVENT_DISCONNECTED
            | zmq_sys::ZMQ_EVENT_HANDSHAKE_SUCCEEDED
            | zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
        socket.monitor(&endpoint, wanted as i32)?;
        let events = ctx.socket(zmq::PAIR)?;
        events.set_linger(0)?;
        events.connect(&endpoint)?;
        Ok(HandshakeWatch {
            events,
            secured,
            failed_in_a_row: 0,
            connecting: false,
        })
    }

    /// The socket to poll for events.
    pub fn socket(&self) -> &zmq::Socket {
        &self.events
    }

    /// Reads the events that came: the last that matters, if any.
    pub fn check(&mut self) -> Option<Handshake> {
        let mut seen = None;
        while let Ok(frames) = self.events.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let event = u32::from(u16::from_ne_bytes([head[0], head[1]]));
            let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
            let address = event_address(&frames);
            if let Some(what) = self.on_event(event, value, &address) {
                seen = Some(what);
            }
        }
        seen
    }

    /// One monitor event (`value`: its number, an error code for failures).
    fn on_event(&mut self, event: u32, value: u32, address: &str) -> Option<Handshake> {
        let refused = |definite: bool| {
            let why = match definite {
                true => format!(
                    "authentication failed with {address}: the secret differs, or only one side \
                     has one (--auth-token-file, {AUTH_TOKEN_ENV})"
                ),
                false => format!(
                    "authentication failed with {address}: it closes every secure handshake \
                     (the secret differs, or it is not reachable directly)"
                ),
            };
            Some(Handshake::Refused { definite, why })
        };
        match event {
            zmq_sys::ZMQ_EVENT_CONNECTED => self.connecting = true,
            zmq_sys::ZMQ_EVENT_HANDSHAKE_SUCCEEDED => {
                self.connecting = false;
                self.failed_in_a_row = 0;
                return Some(Handshake::Succeeded);
            }
            // The other side said no: a ZAP refusal, or one side with a secret and one without.
            zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_AUTH => {
                self.connecting = false;
                return refused(true);
            }
            zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                if value == zmq_sys::ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH =>
            {
                self.connecting = false;
                return refused(true);
            }
            // A secure handshake that ended without success: with a wrong secret, every one.
            // (Without a secret, a handshake cut short is only a connection that dropped.)
            zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq_sys::ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL => {
                self.connecting = false;
                return self.failed(refused(false));
            }
            zmq_sys::ZMQ_EVENT_DISCONNECTED if self.connecting => {
                self.connecting = false;
                return self.failed(refused(false));
            }
            _ => {}
        }
        None
    }

    /// A secure handshake failed: a likely refusal once it happened often enough in a row.
    fn failed(&mut self, refusal: Option<Handshake>) -> Option<Handshake> {
        if !self.secured {
            return None;
        }
        self.failed_in_a_row += 1;
        if self.failed_in_a_row >= LIKELY_REFUSALS {
            self.failed_in_a_row = 0;
            return refusal;
        }
        None
    }

    /// Waits up to `timeout` for events, then reads them (see [`check`](Self::check)).
    pub fn wait(&mut self, timeout: Duration) -> Option<Handshake> {
        let _ = self.events.poll(zmq::POLLIN, timeout.as_millis() as i64);
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_come_from_the_secret_alone() {
        let a = Secret::new(TOKEN).unwrap();
        let b = Secret::new(&format!("  {TOKEN}\n")).unwrap();
        assert_eq!(
            a.server_public, b.server_public,
            "surrounding whitespace ignored"
        );
        assert_eq!(a.member_secret, b.member_secret);
        let c = Secret::new("another secret, long enough to be taken").unwrap();
        assert_ne!(a.server_public, c.server_public);
        assert_ne!(a.server_public, a.member_public);
        assert!(matches!(
            Secret::new("short"),
            Err(SecurityError::TooShort(5))
        ));
        assert!(Secret::new(&TOKEN[..31]).is_err(), "31 bytes are too few");
        assert_eq!(format!("{a:?}"), "Secret(..)");
        let token = Secret::generate_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, Secret::generate_token().unwrap());
    }

    /// A listening and a connecting socket, with these secrets (`None`: no secret), the
    /// listening one with its gatekeeper or not: whether a message got through, and what the
    /// connecting side's watch saw (within three seconds).
    fn pair(
        server: Option<&str>,
        client: Option<&str>,
        gatekeeper: bool,
    ) -> (bool, Option<Handshake>) {
        let ctx = zmq::Context::new();
        let server = server.map(|t| Secret::new(t).unwrap());
        let client = client.map(|t| Secret::new(t).unwrap());
        let mut router = ctx.socket(zmq::ROUTER).unwrap();
        let _gate = match (&server, gatekeeper) {
            (Some(s), true) => Some(s.start_gatekeeper(&ctx, &[&router]).unwrap()),
            _ => None,
        };
        secure_server(server.as_ref(), &mut router).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let (got, seen) = connect_and_watch(&ctx, &endpoint, client.as_ref(), Some(&router));
        (got, seen)
    }

    /// A DEALER (with `secret`, if any) connecting to `endpoint`: whether `router` got its
    /// message, and the last thing its watch saw within three seconds that is not a success.
    fn connect_and_watch(
        ctx: &zmq::Context,
        endpoint: &str,
        secret: Option<&Secret>,
        router: Option<&zmq::Socket>,
    ) -> (bool, Option<Handshake>) {
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_reconnect_ivl(20).unwrap();
        secure_client(secret, &dealer).unwrap();
        let name = crate::net::unique_id("t");
        let mut watch = HandshakeWatch::new(ctx, &dealer, &name, secret.is_some()).unwrap();
        dealer.connect(endpoint).unwrap();
        dealer.send("hello", 0).unwrap();
        let got = router.is_some_and(|r| r.poll(zmq::POLLIN, 1500).unwrap() > 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            match watch.wait(Duration::from_millis(100)) {
                Some(Handshake::Succeeded) if got => break,
                Some(Handshake::Succeeded) | None => {}
                refusal => {
                    seen = refusal;
                    break;
                }
            }
        }
        (got, seen)
    }

    fn definite(seen: &Option<Handshake>) -> bool {
        matches!(seen, Some(Handshake::Refused { definite: true, why }) if why.contains("authentication failed"))
    }

    #[test]
    fn only_the_same_secret_gets_in_and_a_refusal_is_noticed() {
        let other = "a different secret altogether, long enough";
        let (got, seen) = pair(Some(TOKEN), Some(TOKEN), true);
        assert!(got, "the right secret gets through");
        assert_eq!(seen, None);
        let (got, seen) = pair(Some(TOKEN), Some(other), true);
        assert!(!got, "a wrong secret reaches nothing");
        assert!(
            matches!(&seen, Some(Handshake::Refused { why, .. }) if why.contains("authentication failed")),
            "{seen:?}"
        );
        let (got, seen) = pair(Some(TOKEN), None, true);
        assert!(!got, "no secret reaches nothing");
        assert!(definite(&seen), "{seen:?}");
        let (got, seen) = pair(None, Some(TOKEN), true);
        assert!(!got, "a secret where there is none reaches nothing");
        assert!(definite(&seen), "{seen:?}");
        let (got, seen) = pair(None, None, true);
        assert!(got, "no secret on either side: as before");
        assert_eq!(seen, None);
    }

    /// A listening socket whose gatekeeper is not there refuses everyone, the right secret
    /// too: it never lets anyone in unchecked.
    #[test]
    fn without_its_gatekeeper_a_listening_socket_lets_no_one_in() {
        let (got, _) = pair(Some(TOKEN), Some(TOKEN), false);
        assert!(!got);
    }

    /// Something that accepts connections and closes them at once (a proxy in front of a
    /// peer that is down): never a refusal without a secret (nothing was refused); with one,
    /// a likely refusal, never a definite one.
    #[test]
    fn connections_closed_at_once_are_no_refusal_without_a_secret() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        let ctx = zmq::Context::new();
        let (_, seen) = connect_and_watch(&ctx, &endpoint, None, None);
        assert_eq!(seen, None, "no secret: a dropped connection is no refusal");
        let secret = Secret::new(TOKEN).unwrap();
        let (_, seen) = connect_and_watch(&ctx, &endpoint, Some(&secret), None);
        assert!(
            matches!(
                seen,
                Some(Handshake::Refused {
                    definite: false,
                    ..
                })
            ),
            "{seen:?}"
        );
    }

    #[test]
    fn an_empty_secret_in_the_environment_is_an_error_not_no_secret() {
        assert!(Secret::from_sources(None, Some("")).is_err());
        assert!(Secret::from_sources(None, Some(" \n")).is_err());
        assert!(Secret::from_sources(None, None).unwrap().is_none());
        assert!(Secret::from_sources(None, Some(TOKEN)).unwrap().is_some());
    }
}

#[cfg(test)]
mod vector {
    /// The derivation's test vector, as `docs/protocol.md` gives it (checked against Python's
    /// `cryptography`: HKDF-SHA256 and X25519 of the same inputs give the same bytes).
    #[test]
    fn the_documented_test_vector() {
        let s = super::Secret::new("0123456789abcdef0123456789abcdef").unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
                .unwrap();
        for (name, key) in [
            ("server secret key", hex(&s.server_secret)),
            ("server public key", hex(&s.server_public)),
            ("member secret key", hex(&s.member_secret)),
            ("member public key", hex(&s.member_public)),
        ] {
            let line = format!("{name}: {key}");
            assert!(doc.contains(&line), "docs/protocol.md lacks {line:?}");
        }
        assert_eq!(
            hex(&s.server_public),
            "7290dd750c798a98c328752df2ccec6fa210697d369a388f20e3753642e01357"
        );
        assert_eq!(
            hex(&s.member_public),
            "dac5802534641d8b7eac97ab25a5ef2ef6fe19af31a84156436dbb617ee9592e"
        );
    }
}
