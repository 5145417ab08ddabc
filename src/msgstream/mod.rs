//! Milvus's message stream: the DML channels' names and the msgstream protobuf records on
//! them (inserts, deletes, time ticks, DDL), whichever transport carries them. The WAL
//! reader ([`crate::wal`]) fetches them, the durable log ([`crate::log`]) stores them, and
//! the applier ([`crate::apply`]) decodes them.

pub mod decode;
#[cfg(test)]
pub(crate) mod testdata;

pub use decode::{compose, decode, physical_ms, DecodeError, DeleteEvent, InsertEvent, WalEvent};

/// The DML channel names of a Milvus cluster: `{prefix}-rootcoord-dml_0` .. `_{count-1}`.
pub fn dml_channels(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| dml_channel(prefix, i)).collect()
}

/// The topic of physical DML channel `i`.
pub fn dml_channel(prefix: &str, i: impl std::fmt::Display) -> String {
    format!("{prefix}-rootcoord-dml_{i}")
}

