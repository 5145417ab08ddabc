//! Applying the durable log to the target: one loop per DML channel.
//!
//! # Layout
//! - `plan`: pure batch planning: where a batch may end ([`cut`]) and the writes it makes
//!   ([`coalesce`]), including the upsert ordering trap.
//! - `applier`: [`Applier`], the loop: read from the cursor, plan, write with retries,
//!   then advance the cursor.
//! - `barrier`: [`Barriers`], DDL Milvus broadcasts to every channel of a collection
//!   (collection drops and creates), applied once when all of them reach it.
//! - `partitions`: [`SourcePartitions`], which source partition (by ID) each target
//!   partition holds: writes of dropped partitions are skipped, re-created ones replace
//!   the old.
//! - `target`: the [`Target`] trait the loop writes through, implemented by
//!   `MilvusClient`.
//! - `error`: [`ApplyError`].
//!
//! Delivery is at-least-once: a crash between the target write and the cursor advance
//! (failpoint `apply.after_target_write`) repeats the batch, which is harmless because
//! every write is an upsert or a delete by key and batches end on timestamp boundaries.

mod applier;
pub mod barrier;
mod error;
pub mod partitions;
pub mod plan;

pub use applier::{Applier, ApplyConfig, CollectionRoute, Follow, FollowFn, NewCollection, Routes};
pub use barrier::{BarrierKey, Barriers};
pub use error::ApplyError;
pub use partitions::SourcePartitions;
pub use plan::{coalesce, cut, BatchLimits, Coalesced, Cut, EventMeta, MetaKind};
pub use crate::copy::Target;

