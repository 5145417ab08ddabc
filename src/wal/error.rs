//! Errors of reading the WAL.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::DecodeError;
use crate::log::LogError;

/// What went wrong reading the source's WAL into the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka topic {topic}: {source}")]
    Topic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("WAL topic {topic}: position {offset} is no longer (or not yet) in the topic; the WAL ferry needs was deleted by retention or the position is wrong ({reason})")]
    OffsetOutOfRange {
        topic: String,
        offset: i64,
        reason: String,
    },
    /// `retryable`: reopening the secondary instance may succeed (the primary rewrote files
    /// under it); otherwise the path or the library is wrong.
    #[error("RocksMQ at {path}: {reason}")]
    RocksMq { path: String, reason: String, retryable: bool },
    #[error("WAL topic {topic} position {offset}: {source}")]
    Decode {
        topic: String,
        offset: i64,
        #[source]
        source: DecodeError,
    },
    #[error("channel {channel}: {bytes} bytes of WAL read without a time tick (more than {max_bytes}); is the source's root coordinator down?")]
    NoTimeTick {
        channel: String,
        bytes: usize,
        max_bytes: usize,
    },
    #[error("channel {channel}: no start position in the log; record the high watermarks before starting the stream")]
    NoPosition { channel: String },
    #[error("record from unexpected channel {channel}")]
    UnknownChannel { channel: String },
    #[error("WAL reader task failed: {reason}")]
    Task { reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Kafka errors a broker restart, a leader move or a network blip cause: librdkafka keeps
/// its fetch position and reconnects by itself, so waiting is all it takes.
pub(crate) fn kafka_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(code) => matches!(
            code,
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::MessageTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::BrokerNotAvailable
                | C::ReplicaNotAvailable
                | C::NotEnoughReplicas
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::KafkaStorageError
                | C::CoordinatorNotAvailable
                | C::QueueFull
                | C::ThrottlingQuotaExceeded
        ),
        None => false,
    }
}

/// The consumer's position is outside the topic's retained range.
pub(crate) fn kafka_out_of_range(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset) | Some(RDKafkaErrorCode::OffsetOutOfRange)
    )
}

impl WalError {
    /// Whether retrying (re-creating the stream from the log's positions) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WalError::Client { source, .. } | WalError::Topic { source, .. } => {
                kafka_transient(source)
            }
            WalError::Log(e) => e.is_retryable(),
            WalError::RocksMq { retryable, .. } => *retryable,
            WalError::OffsetOutOfRange { .. }
            | WalError::Decode { .. }
            | WalError::NoTimeTick { .. }
            | WalError::NoPosition { .. }
            | WalError::UnknownChannel { .. }
            | WalError::Task { .. } => false,
        }
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WalError::Client { .. } | WalError::Topic { .. } => "kafka",
            WalError::RocksMq { .. } => "rocksmq",
            WalError::OffsetOutOfRange { .. } => "out_of_range",
            WalError::Decode { .. } => "decode",
            WalError::NoTimeTick { .. } => "no_time_tick",
            WalError::NoPosition { .. } | WalError::UnknownChannel { .. } => "config",
            WalError::Task { .. } => "internal",
            WalError::Log(_) => "log",
        }
    }
}
