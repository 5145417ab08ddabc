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
pub use reader::{dml_channel, dml_channels, CollectionFilter, WalReader, WalRecord, WalStream};

#[cfg(test)]
pub(crate) mod testdata;

