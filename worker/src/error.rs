//! The worker crate's one error type.

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer port could not be bound.
    #[error("cannot bind port {0} for peers (is it in use? pass another port, or 0 to let the OS choose): {1}")]
    Bind(u16, zmq::Error),
    /// The scheduler address could not be connected to (a malformed address).
    #[error("cannot connect to the scheduler at {0:?} (expected tcp://host:port): {1}")]
    Connect(String, zmq::Error),
    /// Any other ZeroMQ failure (creating a socket, configuring it).
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The connections could not be secured with the secret.
    #[error(transparent)]
    Security(#[from] zask_core::security::SecurityError),
    /// A thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
}
