//! [`Service`]: a background event-loop thread that can be stopped from anywhere.
//!
//! The scheduler and the worker each run one thread that owns their sockets. To stop it, set
//! a flag and wake its poll through an in-process socket; this type holds those three things
//! (flag, waker, thread) so both share one implementation of `close`, `wait` and `stopper`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The receiving side a loop polls to be woken, and the flag it checks on waking.
pub struct Wake {
    /// Readable when someone wants the loop to look at its flag (or at a channel).
    pub socket: zmq::Socket,
    /// Set when the loop should stop.
    pub stop: Arc<AtomicBool>,
    /// Where more PUSH sockets can connect to wake the loop (e.g. from executor threads).
    pub endpoint: String,
}

/// The stack of a thread that decodes messages: nested graph nodes are decoded recursively,
/// up to msgpack's nesting limit of 1,024 levels.
pub const STACK_SIZE: usize = 32 << 20;

/// A running event-loop thread.
pub struct Service {
    stop: Arc<AtomicBool>,
    waker: Mutex<zmq::Socket>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Service {
    /// Creates the wake-up pair in `ctx` (named after `id`), then runs `body` on a new thread
    /// named `name`, handing it the [`Wake`] side.
    pub fn spawn(
        ctx: &zmq::Context,
        id: &str,
        name: &str,
        body: impl FnOnce(Wake) + Send + 'static,
    ) -> Result<Service, std::io::Error> {
        let to_io = |e: zmq::Error| std::io::Error::other(e.to_string());
        let endpoint = Service::wake_endpoint(id);
        let socket = ctx.socket(zmq::PULL).map_err(to_io)?;
        socket.bind(&endpoint).map_err(to_io)?;
        let waker = ctx.socket(zmq::PUSH).map_err(to_io)?;
        crate::net::configure(&waker).map_err(to_io)?;
        waker.connect(&endpoint).map_err(to_io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Wake {
            socket,
            stop: stop.clone(),
            endpoint,
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            // Messages with deeply nested graph nodes are decoded recursively on this thread.
            .stack_size(STACK_SIZE)
            .spawn(move || body(wake))?;
        Ok(Service {
            stop,
            waker: Mutex::new(waker),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The in-process endpoint that wakes the loop of service `id` (other threads of the same
    /// ZeroMQ context may connect PUSH sockets to it, before or after the service starts).
    pub fn wake_endpoint(id: &str) -> String {
        format!("inproc://{id}-wake")
    }

    /// Asks the loop to stop and waits until it has. Closing twice is fine.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(waker) = self.waker.lock() {
            let _ = waker.send(&b""[..], zmq::DONTWAIT);
        }
        self.wait();
    }

    /// Blocks until the loop has stopped (after `close`, or a stopper, from another thread).
    pub fn wait(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// A function that asks the loop to stop, callable from any thread (a Ctrl-C handler):
    /// the loop notices within one poll interval.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || stop.store(true, Ordering::SeqCst)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.close();
    }
}
