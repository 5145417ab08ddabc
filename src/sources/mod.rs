//! Source readers: everything ferry copies rows from, each a
//! [`CollectionReader`](crate::copy::CollectionReader) that the copy engine drives.
//!
//! # Layout
//!
//! - [`query`]: a live collection read by key-paged queries at one timestamp.
//! - [`storage`]: a live collection read from its own storage (`[source.storage]`): a
//!   flush, the list of its flushed segments, then its binlogs read as a backup's are.
//! - [`store`]: where files live: a local folder or an object-store prefix (S3 and
//!   S3-compatible, GCS, Azure), credentials from the environment.
//! - [`binlog`]: Milvus 2.x binlog files (storage v1): event framing, Parquet payloads
//!   decoded into `FieldData` columns, delta logs into [`binlog::Deletes`].
//! - [`backup`]: milvus-backup folders: meta JSON, binlog layout, whole segments read into
//!   `Rows` with their row timestamps and deletes.
//! - [`v1x`]: Milvus 0.9–1.x data files (`.rv`, `.uid`, `deleted_docs`) plus
//!   milvus-migration's `meta.json`, read into `Rows` of `id` and `vector`.
//!
//! # Design
//!
//! Readers only read: units of work, and the rows of a unit in a fixed order from a resume
//! point. Writing, resumption and progress are the copy engine's.
//!
//! Every parser takes bytes from an untrusted file and a label naming it; every error names
//! the file, the byte offset and what is wrong, and no length read from a file is used to
//! allocate before it is checked against the bytes present. Each module has its own error
//! enum; none is retryable except transport failures of the store. Parsers produce the
//! same `Rows` batches every other data path uses, with field names, types and ids taken
//! from the schema, so the applier cannot tell a backup row from a live one.
//!
//! Each module has a `testdata` sub-module that writes its format (binlogs as Milvus 2.3
//! writes them, backup folders, 1.x files); tests and fixtures use them, and integration
//! tests can lay out real Milvus binlogs as milvus-backup would.

pub mod backup;
pub mod binlog;
pub mod query;
pub mod storage;
pub mod store;
pub mod v1x;

pub use backup::{BackupCollection, BackupError, BackupReader, BackupSource, SegmentData};
pub use binlog::{BinlogError, DecodeBudget, Deletes, ReadLimits};
pub use store::{Store, StoreError};
pub use v1x::{V1xError, V1xReader, V1xSource};
