//! Applying the durable log to the target: one loop per DML channel.
//!
//! # Layout
//! - `plan`: pure batch planning: where a batch may end ([`cut`]) and the writes it makes
//!   ([`coalesce`]), including the upsert ordering trap.
//! - `applier`: [`Applier`], the loop: read from the cursor, plan, write with retries,
//!   then advance the cursor.
//! - `target`: the [`Target`] trait the loop writes through, implemented by
//!   `MilvusClient`.
//! - `error`: [`ApplyError`].
//!
//! Delivery is at-least-once: a crash between the target write and the cursor advance
//! (failpoint `apply.after_target_write`) repeats the batch, which is harmless because
//! every write is an upsert or a delete by key and batches end on timestamp boundaries.

mod applier;
mod error;
pub mod plan;
mod target;

pub use applier::{Applier, ApplyConfig, CollectionRoute, Routes};
pub use error::ApplyError;
pub use plan::{coalesce, cut, BatchLimits, Coalesced, Cut, EventMeta, MetaKind};
pub use target::Target;

/// Source time tick minus applied time, per channel (`channel` label).
pub const LAG_MS: &str = "ferry_apply_lag_ms";
/// Batches written to the target.
pub const BATCHES: &str = "ferry_apply_batches_total";
/// Rows upserted on the target.
pub const ROWS_UPSERTED: &str = "ferry_apply_rows_upserted_total";
/// Keys deleted on the target.
pub const KEYS_DELETED: &str = "ferry_apply_keys_deleted_total";
/// Target writes retried (`op`, `kind` labels).
pub const TARGET_RETRIES: &str = "ferry_apply_target_retries_total";

/// Registers the descriptions of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        LAG_MS,
        metrics::Unit::Milliseconds,
        "Replication lag: newest source time tick minus applied time"
    );
    metrics::describe_counter!(BATCHES, "Batches written to the target");
    metrics::describe_counter!(ROWS_UPSERTED, "Rows upserted on the target");
    metrics::describe_counter!(KEYS_DELETED, "Primary keys deleted on the target");
    metrics::describe_counter!(
        TARGET_RETRIES,
        "Target writes retried after a retryable error"
    );
}
