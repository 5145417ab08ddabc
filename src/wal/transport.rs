//! The one thing the two WAL transports (Kafka, RocksMQ) do differently: hand over the raw
//! records of the DML channels, in order per channel, from positions ferry keeps. Decoding,
//! filtering, sequencing, the durable log and the applier are shared and never know which
//! transport fed them.
//!
//! A position is the transport's own, a number that grows along a channel: a Kafka offset,
//! or a RocksMQ message id. ferry stores, compares and shows both the same way, always as
//! the position of the next record to read (the last record read plus one).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use super::WalError;

/// A boxed future (trait objects cannot have async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One record as the transport holds it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The channel (a Kafka topic, a RocksMQ topic: `{prefix}-rootcoord-dml_{i}`).
    pub channel: String,
    /// Its position in the channel.
    pub position: i64,
    /// The record's bytes (`None`: a record without a value, which Milvus skips too).
    pub value: Option<Vec<u8>>,
}

/// A source of WAL records.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// The channels this transport reads.
    fn channels(&self) -> &[String];

    /// Where each channel's next record will be: recorded before a snapshot, these are where
    /// streaming starts, so nothing written after the snapshot began is missed.
    fn high_watermarks(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, WalError>>;

    /// Records of every channel in `from`, starting at its position.
    fn open(&self, from: &HashMap<String, i64>) -> Result<Box<dyn RawStream>, WalError>;

    /// What the transport reads, for logs and errors ("Kafka at host:9092").
    fn describe(&self) -> String;

    /// Whether it can read now, for `/readyz`: a short detail when it can. By default, the
    /// channels' high watermarks are fetched.
    fn probe(&self) -> BoxFuture<'_, Result<String, WalError>> {
        Box::pin(async move { self.high_watermarks().await.map(|_| "ok".to_string()) })
    }
}

/// Records of the opened channels, in order per channel.
pub trait RawStream: Send {
    /// The next record. Transient failures (a broker restart, a file compacted away under a
    /// reader) are waited out inside; an error here stops the stream.
    fn next(&mut self) -> BoxFuture<'_, Result<RawRecord, WalError>>;
}
