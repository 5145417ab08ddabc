//! The durable log: WAL events ferry has read from the source but not yet applied to the
//! target, kept in sled so a restart neither loses nor re-reads what it had.
//!
//! # Design note
//!
//! **Why a log at all.** The Kafka WAL is the source of truth, but ferry does not own its
//! retention and must keep reading while the target is slow or down (and while the snapshot
//! copy runs, before any applying starts). The log decouples the two: the ingest side reads
//! Kafka as fast as the log has room, the apply side drains it at the target's pace.
//!
//! **Key layout.** One sled tree (`ferry_log`), so one `apply_batch` is atomic over every
//! key a step touches. `{ch}` is the DML channel (Kafka topic) name, prefixed by its length
//! as a big-endian u16 so `dml_1` is never a prefix of `dml_10`:
//!
//! | key                          | value                                             |
//! |------------------------------|---------------------------------------------------|
//! | `e` `{ch}` seq (u64 BE)      | entry: version, Kafka offset, msg type, ts, collection ID, raw record |
//! | `p` `{ch}`                   | position: next Kafka offset to read, skip-through ts |
//! | `c` `{ch}`                   | apply cursor: next seq to apply, applied-through ts |
//! | `t` `{ch}`                   | newest source time tick appended                  |
//!
//! Entries are ordered by seq; big-endian keys make sled's key order the seq order.
//!
//! **Invariants.**
//! 1. *Appended happens-before consumed.* [`DurableLog::append`] writes a window's entries,
//!    the channel's new WAL position and its time tick in ONE batch: after any crash,
//!    the position never points past an entry that is missing.
//! 2. *Applied happens-before advanced.* The applier calls [`DurableLog::advance`] only
//!    after the target accepted everything below the new cursor.
//! 3. *Nothing moves backward.* Positions, cursors and source ticks are monotonic; an
//!    attempt to lower one is an error (a bug upstream), not a silent no-op.
//! 4. *GC = advance.* Entries below the cursor are removed in the same batch that moves
//!    the cursor, so what is stored is exactly what is pending.
//! 5. *Entries are sealed and ts-ordered.* The ingest side appends whole time-tick windows
//!    sorted by timestamp (see `wal::sequencer`), so any prefix of the log ending at a
//!    timestamp change is a consistent cut of the source.
//!
//! **Back-pressure.** Pending bytes (entries stored, i.e. not yet applied) are tracked in
//! memory; `append` waits while they exceed `max_pending_bytes`. One window may overshoot
//! the bound, which keeps a single huge window from deadlocking the pipeline.
//!
//! **Flush policy and recovery.** Writes go to sled's in-memory log and reach disk every
//! `flush_every_ms` (and on [`DurableLog::flush`], called at shutdown). `kill -9` loses at
//! most the unflushed tail; sled recovers a prefix of its batches, and because entries and
//! the WAL position travel in one batch, a lost tail means the position is older too: the
//! reader simply re-reads those records. A lost cursor advance means re-applying a batch,
//! which is idempotent (upserts and deletes by key). On open, positions, cursors and ticks
//! are read back, pending counts are recomputed by one scan of the entries, and the next
//! seq is `max(last entry + 1, cursor)`.

mod codec;
mod error;
mod fence;
mod store;

pub use codec::{ChannelPosition, Cursor, LogEntry, StoredEntry};
pub use error::LogError;
pub use fence::{FenceBreach, FenceWatch};
pub use store::{DurableLog, LogConfig};


#[cfg(test)]
mod tests;
