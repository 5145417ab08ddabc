//! ferry moves live Milvus collections from one cluster to another.
//!
//! # Layout
//!
//! How data flows, and where each part lives:
//!
//! ```text
//!  copying what is there (migrate, imports, run's snapshot):     streaming (`ferry run`):
//!                                                               Kafka DML channels
//!  sources (a reader) ──► copy (one writer) ──► target              │ wal (reader, sequencer, ingest)
//!   query pages, binlog segments,   intent/cursor,                  ▼
//!   1.x tables                      batches, finish             log (durable, sled) ──► apply ──► target
//! ```
//!
//! Both ends write through one trait, [`copy::Target`].
//!
//! Formats and clients (used by everything above them):
//! - [`proto`]: generated Milvus and ferry wire types (from `proto/`).
//! - [`milvus`]: the Milvus gRPC client: connection, auth, retries, typed errors, and
//!   columnar `Rows` over `FieldData`.
//! - [`msgstream`]: Milvus's DML channels and their msgstream records ([`msgstream::WalEvent`]),
//!   whatever transport carries them.
//! - [`secret`], [`config`] (the job file), [`state`] (the job's sled state store),
//!   [`metrics`], [`failpoint`].
//!
//! Copying what is there:
//! - [`plan`]: connect, which collections, and the exact target schema; refuses what the
//!   target cannot hold.
//! - [`sources`]: the readers: a live collection by query or from its own storage
//!   (`[source.storage]`), milvus-backup folders, Milvus 1.x files; from a folder or an
//!   object store.
//! - [`copy`]: the copy engine: one resumable writer driving any reader, target preparation,
//!   and the one finishing sequence (flush, indexes, load, count).
//! - [`migrate`] (`ferry migrate`) and [`import`] (`ferry import-backup`, `ferry import-1x`):
//!   commands composing a reader with the engine.
//! - [`verify`]: source vs target per collection and partition: counts, or every key and a
//!   row digest merge-joined in key order; optional repair (through [`copy::Target`]).
//!
//! Streaming what changes:
//! - [`wal`]: reading the DML channels on Kafka at ferry-managed offsets and sealing time-tick
//!   windows into the durable log.
//! - [`log`]: the durable log (sled): pending WAL events, positions, apply cursors, DDL marks.
//! - [`apply`]: the per-channel apply loop: batches from the log, coalesced per key, written
//!   to the target, cursor advanced after; DDL barriers and partitions by source ID.
//! - [`job`]: a zero-downtime job (record, start positions, snapshot, stream), its handle and
//!   state machine.
//! - [`cutover`]: the runbook: wait for lag, freeze, drain, verify, report.
//!
//! On top: [`daemon`] (the service around a job: control API, HTTP, signals) and [`cli`]
//! (the commands; the only module that imports `daemon`, `migrate` and `import`).
//! `scripts/module-deps` shows which top-level module imports which, and fails on a pair
//! that import each other (`scripts/test` runs it first).
pub mod proto;
pub mod milvus;
pub mod secret;
pub mod config;
pub mod plan;
pub mod state;
pub mod copy;
pub mod failpoint;
pub mod migrate;
pub mod sources;
pub mod import;
pub mod cli;
pub mod msgstream;
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
