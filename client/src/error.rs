//! The client crate's one error type.

use std::time::Duration;

use zask_core::{ErrorInfo, ErrorKind};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler refused or failed the request: a task failed, the graph is invalid, a key
    /// is missing, ... `kind()` says which (see `docs/protocol.md` for the kinds).
    #[error("{0}")]
    Scheduler(ErrorInfo),
    /// The address cannot be connected to (it is not `tcp://host:port`, say).
    #[error("cannot connect to {0:?} (expected tcp://host:port): {1}")]
    Connect(String, zmq::Error),
    /// No scheduler answered the handshake at the address, within the time given.
    #[error("no zask scheduler answered at {0} within {1:?}; is zask-scheduler running, and is this its address_to_clients?")]
    NoScheduler(String, Duration),
    /// The call was not answered in time.
    #[error("timed out after {after:?} {what}")]
    Timeout {
        /// What the call was doing.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The scheduler went silent while the call waited (retryable).
    #[error(
        "the scheduler stopped answering for {0:?}; it may have died or the network may be down"
    )]
    SchedulerUnreachable(Duration),
    /// The scheduler restarted while the call waited, and forgot it (retryable).
    #[error("the scheduler restarted and forgot this request; submit it again")]
    SchedulerRestarted,
    /// The request is larger than the client sends (`ClientOptions::max_message_size`).
    #[error("request of {size} bytes exceeds the client's limit of {limit} bytes; scatter large data instead of embedding it in the graph")]
    TooLarge {
        /// The request's size, in bytes.
        size: usize,
        /// `ClientOptions::max_message_size`.
        limit: usize,
    },
    /// The scheduler's answer is not what the protocol allows.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The future of this key was cancelled.
    #[error("the future of {0:?} was cancelled")]
    Cancelled(String),
    /// An argument makes no sense (the message says which, and why).
    #[error("{0}")]
    Invalid(String),
    /// The scheduler refused the connection: the secret differs, or only one side has one.
    #[error("{0}")]
    AuthenticationFailed(String),
    /// The connection could not be secured with the secret.
    #[error(transparent)]
    Security(#[from] zask_core::security::SecurityError),
    /// ZeroMQ failed.
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    /// The client's I/O thread could not be started.
    #[error("cannot start the client thread: {0}")]
    Thread(std::io::Error),
}

impl Error {
    /// The name of the scheduler's error kind (`task_failed`, `missing_key`, `cycle`, ...),
    /// when the scheduler reported the error.
    pub fn kind(&self) -> Option<&str> {
        self.error_kind().map(ErrorKind::as_str)
    }

    /// The scheduler's error kind, when the scheduler reported the error.
    pub fn error_kind(&self) -> Option<&ErrorKind> {
        match self {
            Error::Scheduler(info) => Some(&info.kind),
            _ => None,
        }
    }

    /// The scheduler's full error report, when it reported the error.
    pub fn info(&self) -> Option<&ErrorInfo> {
        match self {
            Error::Scheduler(info) => Some(info),
            _ => None,
        }
    }

    /// Whether the scheduler lost the request without computing it (it restarted, went
    /// silent, or shut down): a `get` then submits it again by itself
    /// (`ClientOptions::resubmit_attempts`), a crash and a graceful restart alike.
    pub fn is_lost_request(&self) -> bool {
        matches!(
            self,
            Error::SchedulerRestarted | Error::SchedulerUnreachable(_)
        ) || self.error_kind() == Some(&ErrorKind::ShuttingDown)
    }

    /// Whether submitting the same request again may succeed (the scheduler restarted or was
    /// unreachable, or the call timed out).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::SchedulerRestarted | Error::SchedulerUnreachable(_) | Error::Timeout { .. }
        ) || self.error_kind() == Some(&ErrorKind::ShuttingDown)
    }
}
