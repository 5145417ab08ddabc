//! Errors of the Milvus client. Each names the call and the collection (or database) it was
//! made for, so an operator reading a job's error log knows where to look.

use crate::proto::common::{ErrorCode, Status};

/// What went wrong talking to a Milvus server.
#[derive(Debug, thiserror::Error)]
pub enum MilvusError {
    /// The URI could not be turned into an endpoint.
    #[error("invalid Milvus uri {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    /// The TCP/TLS connection could not be made.
    #[error("cannot connect to Milvus at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },

    /// The gRPC layer failed (transport, deadline, authentication at the HTTP/2 level).
    #[error("{call} on {target} failed: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        target: String,
        code: tonic::Code,
        message: String,
    },

    /// Milvus answered with a non-success status.
    #[error("{call} on {target} failed: Milvus error {code} ({error_code:?}): {reason}")]
    Server {
        call: &'static str,
        target: String,
        /// New-style numeric error code (2.3+), 0 when the server only sets `error_code`.
        code: i32,
        /// Legacy error code, still the most informative on 2.3.
        error_code: ErrorCode,
        reason: String,
        /// The server's own opinion on whether a retry can help.
        retriable: bool,
    },

    /// The server's answer was well-formed gRPC but not what the call expects.
    #[error("{call} on {target}: unexpected response: {reason}")]
    Protocol {
        call: &'static str,
        target: String,
        reason: String,
    },

    /// A local wait (flush, load) ran out of time.
    #[error("{call} on {target} did not finish within {seconds} s")]
    Timeout {
        call: &'static str,
        target: String,
        seconds: u64,
    },
}

impl MilvusError {
    /// Whether retrying the same call may succeed: the server is (re)starting, throttling or
    /// briefly unreachable. Everything else is the caller's problem and surfaces at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            MilvusError::Connect { .. } => true,
            MilvusError::Rpc { code, message, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Aborted
                ) || (*code == tonic::Code::Unknown && message.contains("transport error"))
            }
            MilvusError::Server {
                error_code,
                retriable,
                reason,
                ..
            } => {
                *retriable
                    || matches!(
                        error_code,
                        ErrorCode::RateLimit
                            | ErrorCode::NotReadyServe
                            | ErrorCode::NotReadyCoordActivating
                            | ErrorCode::NoReplicaAvailable
                            | ErrorCode::NotShardLeader
                            | ErrorCode::DataCoordNa
                            | ErrorCode::TimeTickLongDelay
                    )
                    || reason.contains("rate limit")
                    || reason.contains("server is not ready")
            }
            MilvusError::InvalidUri { .. }
            | MilvusError::Protocol { .. }
            | MilvusError::Timeout { .. } => false,
        }
    }

    /// A failure inside the server that says nothing about the request: an assertion or
    /// race in a query node (Milvus 2.3.5 sometimes fails a query over a growing segment with
    /// `Assert "std::max(data_barrier, indexing_barrier) == num_chunk"` under concurrent
    /// inserts). Safe to retry for reads only.
    pub fn is_internal(&self) -> bool {
        matches!(self, MilvusError::Server { reason, .. }
            if reason.contains("service internal error") || reason.contains("Assert \""))
    }

    /// A short, bounded label for metrics (`kind` label): never the raw message.
    pub fn kind(&self) -> &'static str {
        match self {
            MilvusError::InvalidUri { .. } => "config",
            MilvusError::Connect { .. } => "unreachable",
            MilvusError::Rpc { code, .. } => match code {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => "auth",
                tonic::Code::Unavailable => "unreachable",
                tonic::Code::DeadlineExceeded => "timeout",
                tonic::Code::ResourceExhausted => "rate_limited",
                _ => "rpc",
            },
            MilvusError::Server { error_code, .. } => match error_code {
                ErrorCode::RateLimit => "rate_limited",
                ErrorCode::PermissionDenied => "auth",
                ErrorCode::CollectionNotExists | ErrorCode::CollectionNameNotFound => {
                    "not_found"
                }
                _ => "server",
            },
            MilvusError::Protocol { .. } => "protocol",
            MilvusError::Timeout { .. } => "timeout",
        }
    }

    /// True when the server says the named collection does not exist.
    pub fn is_collection_not_found(&self) -> bool {
        match self {
            MilvusError::Server {
                error_code, reason, ..
            } => {
                matches!(
                    error_code,
                    ErrorCode::CollectionNotExists | ErrorCode::CollectionNameNotFound
                ) || reason.contains("collection not found")
                    || reason.contains("can't find collection")
            }
            _ => false,
        }
    }

    /// True when the failure is about credentials or privileges.
    pub fn is_auth(&self) -> bool {
        self.kind() == "auth"
            || matches!(self, MilvusError::Server { reason, .. }
                if reason.contains("auth") || reason.contains("credential") || reason.contains("permission"))
    }

    pub(crate) fn from_status(call: &'static str, target: &str, status: &Status) -> Option<Self> {
        #[allow(deprecated)]
        let legacy = status.error_code;
        if legacy == 0 && status.code == 0 {
            return None;
        }
        Some(MilvusError::Server {
            call,
            target: target.to_string(),
            code: status.code,
            error_code: ErrorCode::try_from(legacy).unwrap_or(ErrorCode::UnexpectedError),
            reason: if status.reason.is_empty() {
                status.detail.clone()
            } else {
                status.reason.clone()
            },
            retriable: status.retriable,
        })
    }

    pub(crate) fn from_grpc(call: &'static str, target: &str, status: tonic::Status) -> Self {
        MilvusError::Rpc {
            call,
            target: target.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// Result alias of the client.
pub type Result<T, E = MilvusError> = std::result::Result<T, E>;
