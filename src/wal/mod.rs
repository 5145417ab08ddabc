//! The source's write-ahead log: Milvus 2.3 DML channels on Kafka, or in a standalone's
//! RocksMQ.
//!
//! # Layout
//! Decoding the records ([`WalEvent`]) and the channels' names are [`crate::msgstream`]'s.
//! - `transport`: the [`Transport`] trait, what Kafka and RocksMQ do differently (raw
//!   records from positions); `kafka` and `rocksmq` implement it.
//! - `reader`: [`WalReader`] (watermarks, a [`WalStream`] of decoded, filtered records at
//!   ferry-managed positions, whatever the transport).
//! - `sequencer`: records → sealed, timestamp-ordered time-tick windows.
//! - `ingest`: the loop from Kafka into the durable log (`crate::log`).
//! - `error`: [`WalError`].

mod error;
mod ingest;
pub mod kafka;
mod reader;
pub mod rocksmq;
pub mod transport;
pub mod sequencer;

pub use crate::msgstream::{compose, decode, dml_channel, dml_channels, physical_ms, DecodeError, DeleteEvent, InsertEvent, WalEvent};
pub use error::WalError;
pub use ingest::{ingest, IngestConfig};
pub use reader::{CollectionFilter, WalReader, WalRecord, WalStream};
pub use transport::{RawRecord, RawStream, Transport};


