//! The worker crate's one error type.

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind port {0} for peers (is it in use? pass another port, or 0 to let the OS choose): {1}")]
    Bind(u16, zmq::Error),
    #[error("cannot connect to the scheduler at {0:?} (expected tcp://host:port): {1}")]
    Connect(String, zmq::Error),
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
}
