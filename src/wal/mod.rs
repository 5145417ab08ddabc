//! The source's write-ahead log: Milvus 2.3 DML channels on Kafka.
//!
//! # Layout
//! Decoding the records ([`WalEvent`]) and the channels' names are [`crate::msgstream`]'s.
//! - `reader`: [`WalReader`] (watermarks, a [`WalStream`] at ferry-managed offsets).
//! - `sequencer`: records → sealed, timestamp-ordered time-tick windows.
//! - `ingest`: the loop from Kafka into the durable log (`crate::log`).
//! - `error`: [`WalError`].

mod error;
mod ingest;
mod reader;
pub mod sequencer;

pub use crate::msgstream::{compose, decode, dml_channel, dml_channels, physical_ms, DecodeError, DeleteEvent, InsertEvent, WalEvent};
pub use error::WalError;
pub use ingest::{ingest, IngestConfig};
pub use reader::{CollectionFilter, WalReader, WalRecord, WalStream};


