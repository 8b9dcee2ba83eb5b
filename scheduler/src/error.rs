//! The scheduler crate's one error type.

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot bind port {0} (is it in use? pass another port, or 0 to let the OS choose): {1}"
    )]
    Bind(u16, zmq::Error),
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("cannot open the state directory: {0}")]
    State(String),
    #[error("cannot start the scheduler thread: {0}")]
    Thread(std::io::Error),
}
