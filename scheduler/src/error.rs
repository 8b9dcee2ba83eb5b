//! The scheduler crate's one error type.

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port could not be bound (the port, and why).
    #[error(
        "cannot bind port {0} (is it in use? pass another port, or 0 to let the OS choose): {1}"
    )]
    Bind(u16, zmq::Error),
    /// ZeroMQ refused to make or set up a socket.
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    /// The state directory (`--state-dir`) could not be opened.
    #[error("cannot open the state directory: {0}")]
    State(String),
    /// The connections could not be secured with the secret.
    #[error(transparent)]
    Security(#[from] zask_core::security::SecurityError),
    /// The dashboard could not be served (its port taken, say).
    #[error("{0} (--dashboard-port sets another port, `any` lets the OS choose, 0 turns it off)")]
    Dashboard(String),
    /// The scheduler's thread could not be started.
    #[error("cannot start the scheduler thread: {0}")]
    Thread(std::io::Error),
}
