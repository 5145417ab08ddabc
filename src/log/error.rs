//! Errors of the durable log.

/// What went wrong reading or writing the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log storage at {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("log entry {seq} of channel {channel} is corrupt: {reason}")]
    Corrupt {
        channel: String,
        seq: u64,
        reason: String,
    },
    #[error("channel {channel}: {what} would move backward from {from} to {to}")]
    Backward {
        channel: String,
        what: &'static str,
        from: String,
        to: String,
    },
    #[error("channel {channel}: cursor {to} is past the end of the log ({end})")]
    PastEnd { channel: String, to: u64, end: u64 },
    #[error("channel name {channel:?} is too long for a log key")]
    ChannelName { channel: String },
    #[error("log config: {field}: {reason}")]
    Config { field: &'static str, reason: String },
}

impl LogError {
    /// Never: a failing disk or a corrupt record does not heal by waiting, and a backward
    /// move is a bug that retrying would only repeat.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
