//! The source's write-ahead log: Milvus 2.3 DML channels on Kafka.
//!
//! # Layout
//! - `decode`: one Kafka record value → [`WalEvent`]; hybrid-timestamp helpers.
//! - `reader`: [`WalReader`] (watermarks, a [`WalStream`] at ferry-managed offsets).
//! - `sequencer`: records → sealed, timestamp-ordered time-tick windows.
//! - `ingest`: the loop from Kafka into the durable log (`crate::log`).
//! - `error`: [`WalError`].

pub mod decode;
mod error;
mod ingest;
mod reader;
pub mod sequencer;

pub use decode::{compose, decode, physical_ms, DecodeError, DeleteEvent, InsertEvent, WalEvent};
pub use error::WalError;
pub use ingest::{ingest, IngestConfig};
pub use reader::{dml_channels, CollectionFilter, WalReader, WalRecord, WalStream};

#[cfg(test)]
pub(crate) mod testdata;

/// Records appended to the durable log.
pub const RECORDS_APPENDED: &str = "ferry_wal_records_appended_total";
/// Kafka reads retried after a transient error (broker restart, leader move).
pub const READ_RETRIES: &str = "ferry_wal_read_retries_total";
/// Records without a value, skipped.
pub const EMPTY_RECORDS: &str = "ferry_wal_empty_records_total";
/// Records older than a time tick already seen (Milvus promises none).
pub const LATE_RECORDS: &str = "ferry_wal_late_records_total";

/// Registers the descriptions of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(RECORDS_APPENDED, "WAL records appended to the durable log");
    metrics::describe_counter!(READ_RETRIES, "Kafka reads retried after a transient error");
    metrics::describe_counter!(EMPTY_RECORDS, "WAL records without a value, skipped");
    metrics::describe_counter!(LATE_RECORDS, "WAL records older than an earlier time tick");
}
