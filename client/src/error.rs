//! The client crate's one error type.

use std::time::Duration;

use zask_core::ErrorInfo;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler refused or failed the request: a task failed, the graph is invalid, a key
    /// is missing, ... `kind()` says which (see `docs/protocol.md` for the kinds).
    #[error("{0}")]
    Scheduler(ErrorInfo),
    #[error("cannot connect to {0:?} (expected tcp://host:port): {1}")]
    Connect(String, zmq::Error),
    #[error("no zask scheduler answered at {0} within {1:?}; is zask-scheduler running, and is this its address_to_clients?")]
    NoScheduler(String, Duration),
    #[error("timed out after {after:?} {what}")]
    Timeout { what: String, after: Duration },
    #[error(
        "the scheduler stopped answering for {0:?}; it may have died or the network may be down"
    )]
    SchedulerUnreachable(Duration),
    #[error("the scheduler restarted and forgot this request; submit it again")]
    SchedulerRestarted,
    #[error("request of {size} bytes exceeds the client's limit of {limit} bytes; scatter large data instead of embedding it in the graph")]
    TooLarge { size: usize, limit: usize },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the client is closed")]
    Closed,
    #[error("ZeroMQ error: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("cannot start the client thread: {0}")]
    Thread(std::io::Error),
}

impl Error {
    /// The scheduler's error kind (`task_failed`, `missing_key`, `cycle`, ...), when the
    /// scheduler reported the error.
    pub fn kind(&self) -> Option<&str> {
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
        ) || self.kind() == Some("shutting_down")
    }

    /// Whether submitting the same request again may succeed (the scheduler restarted or was
    /// unreachable, or the call timed out).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::SchedulerRestarted | Error::SchedulerUnreachable(_) | Error::Timeout { .. }
        ) || self.kind() == Some("shutting_down")
    }
}
