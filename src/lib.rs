//! ferry moves live Milvus collections from one cluster to another.
//!
//! # Layout
//!
//! - [`proto`]: generated Milvus wire types (from `proto/milvus`).
//! - [`milvus`]: the Milvus gRPC client: connection, auth, retries, typed errors, and helpers
//!   over columnar `FieldData`.
//! - [`sources`]: file sources: milvus-backup folders (Milvus 2.x binlogs) and Milvus 1.x
//!   data files, read into columnar `Rows` from a local folder or an object store.
//! - [`wal`]: the source's Milvus 2.3 write-ahead log on Kafka: decoding, reading at
//!   ferry-managed offsets, sealing time-tick windows into the durable log.
//! - [`log`]: the durable log (sled): pending WAL events, Kafka positions, apply cursors.
//! - [`apply`]: the per-channel apply loop: batches from the log, coalesced per key (upsert
//!   ordering trap included), written to the target, cursor advanced after.
//! - [`verify`]: source vs target per collection and partition: counts, or every key and a
//!   row digest merge-joined in key order; optional repair.
pub mod proto;
pub mod milvus;
pub mod secret;
pub mod config;
pub mod plan;
pub mod state;
pub mod snapshot;
pub mod failpoint;
pub mod migrate;
pub mod sources;
pub mod cli;
pub mod wal;
pub mod log;
pub mod metrics;
pub mod apply;
pub mod job;
pub mod daemon;
pub mod cutover;
pub mod verify;

/// Makes ring the process's TLS crypto provider (once; later calls do nothing). The
/// dependency tree enables both of rustls's providers, and rustls then refuses to pick one
/// itself: without this, the first TLS server (or client) built panics.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
