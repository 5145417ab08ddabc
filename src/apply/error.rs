//! Errors of the apply loop. Target errors a retry can fix never reach here: the loop
//! waits them out. What does reach here stops the channel and names what to fix.

use crate::log::LogError;
use crate::milvus::data::DataError;
use crate::milvus::MilvusError;
use crate::wal::DecodeError;

/// Why applying a channel stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "channel {channel}: log entry {seq} (Kafka offset {offset}) does not decode: {source}"
    )]
    Decode {
        channel: String,
        seq: u64,
        offset: i64,
        #[source]
        source: DecodeError,
    },
    #[error("collection {collection}: inserted rows have no primary-key column {field:?}")]
    MissingPrimaryKey { collection: String, field: String },
    #[error("collection {collection}: primary keys of different types in one batch")]
    MixedKeyTypes { collection: String },
    #[error("collection {collection}: inserts in one batch do not share columns: {source}")]
    Columns {
        collection: String,
        #[source]
        source: DataError,
    },
    #[error("collection {collection}: target rejected {op}: {source}")]
    Target {
        collection: String,
        op: &'static str,
        #[source]
        source: MilvusError,
    },
    #[error("source collection {name} (ID {collection_id}) was dropped while being migrated; its target is left as it is")]
    SourceCollectionDropped { collection_id: i64, name: String },
    #[error("following new source collection {collection:?}: {reason}")]
    Follow { collection: String, reason: String },
    /// A failure injected by a test's failpoint (see [`crate::failpoint::fail_once`]).
    #[error("failpoint {0}: injected failure")]
    Injected(&'static str),
}

impl ApplyError {
    /// Never: retryable target errors are retried inside the loop, and everything else
    /// needs a person (a schema mismatch, a dropped collection, a bad log entry).
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApplyError::Log(_) => "log",
            ApplyError::Decode { .. } => "decode",
            ApplyError::MissingPrimaryKey { .. }
            | ApplyError::MixedKeyTypes { .. }
            | ApplyError::Columns { .. } => "data",
            ApplyError::Target { .. } => "target",
            ApplyError::SourceCollectionDropped { .. } => "source_dropped",
            ApplyError::Follow { .. } => "follow",
            ApplyError::Injected(_) => "injected",
        }
    }
}
