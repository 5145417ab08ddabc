//! The snapshot copy of `ferry migrate` read from the source's own storage
//! (`[source.storage]`): the source's binlogs are read like a backup's, so the source's query
//! nodes do no work for the copy.
//!
//! # How a snapshot is taken
//!
//! For each collection, once per job (kept in the job's sled state under
//! `storage/<target>`, so a re-run after a crash reads exactly the same segments as of the
//! same timestamp):
//!
//! 1. a timestamp `as_of` is allocated from the source;
//! 2. the source collection is flushed, and ferry waits until Milvus reports it flushed: every
//!    row and delete written before the flush is then in binlogs;
//! 3. DataCoord's list of the collection's segments (`GetPersistentSegmentInfo`) is taken,
//!    and its Flushed segments are recorded with their row counts. Segments a compaction
//!    replaced are not in the list, so no row is read twice. Segments opened after the flush
//!    (growing, or sealed by size since) are not read: they hold writes still arriving during
//!    the flush or after it, which an offline copy does not have (the count check says so if
//!    a source with writes going on lost rows that way).
//!
//! Each segment is then read and written as `ferry import-backup` does (same resumable
//! per-segment state, batches and checks), with rows inserted and deletes made after
//! `as_of` left out, so the target gets the collection as of `as_of`. Every delete of the
//! collection is applied to every segment by key and timestamp.
//!
//! This serves the offline copy only. `ferry run`'s snapshot must hold every row written
//! before its stream start (the stream skips them), which a query at a timestamp guarantees
//! but a list of flushed segments does not while writes go on: an insert stamped before the
//! flush may be given a segment opened after it.
//!
//! A re-run needs the recorded segments' files: Milvus garbage-collects the files of
//! compacted segments after `dataCoord.gc.dropTolerance` (hours). If they are gone, the run
//! fails naming the segment; start over with a new `state_dir` and target collection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::milvus::{MilvusClient, MilvusError};
use crate::plan::{CollectionPlan, Plan};
use crate::proto::common::SegmentState;
use crate::sources::backup::meta::SegmentBackupInfo;
use crate::sources::backup::{hidden_dynamic_field, BackupCollection, BackupError, BackupPartition, BackupReader, BackupSource};
use crate::sources::binlog::DecodeBudget;
use crate::sources::store::Store;
use crate::state::{keys, StateError, StateStore};

/// Errors of taking a storage snapshot. Each names the collection or file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("source collection {collection:?}: {step} failed: {source}")]
    Step {
        collection: String,
        step: &'static str,
        source: MilvusError,
    },
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Name under which segment states are kept (`import/<target>/source-storage/<segment>`).
const STATE_NAME: &str = "source-storage";

/// A collection's snapshot: the segments to read and the time they are read as of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageSnapshot {
    /// Source timestamp the copy reflects.
    pub as_of: u64,
    pub segments: Vec<SnapshotSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSegment {
    pub partition: i64,
    pub segment: i64,
    /// Rows DataCoord records for it (deletes not applied).
    pub rows: i64,
    /// An L0 segment: deletes only.
    #[serde(default)]
    pub deletes_only: bool,
}

/// `common.SegmentLevel` L0: a segment of deletes only (Milvus 2.4+).
const LEVEL_L0: i32 = 1;

/// The collection's snapshot: the one recorded by an earlier run of the job, or a new one
/// (timestamp, flush, segment list; see the module doc).
pub async fn snapshot(
    source: &MilvusClient,
    state: &StateStore,
    c: &CollectionPlan,
) -> Result<StorageSnapshot, StorageError> {
    let key = keys::storage_snapshot(&c.target_name);
    if let Some(s) = state.get::<StorageSnapshot>(&key)? {
        return Ok(s);
    }
    let step = |step: &'static str| {
        let collection = c.source_name.clone();
        move |source| StorageError::Step { collection, step, source }
    };
    // The binlogs are read as of a timestamp of the source's own clock (a Milvus that
    // stores binlogs always has one).
    let as_of = source.alloc_timestamp().await.map_err(step("allocate the read timestamp"))?;
    source
        .flush(std::slice::from_ref(&c.source_name), Duration::from_secs(900))
        .await
        .map_err(step("flush"))?;
    let infos = source
        .persistent_segments(&c.source_name)
        .await
        .map_err(step("list segments"))?;
    let partitions: Vec<i64> = c.partitions.iter().map(|(_, id)| *id).collect();
    let mut segments: Vec<SnapshotSegment> = infos
        .iter()
        .filter(|s| s.state == SegmentState::Flushed as i32)
        // L0 segments (2.4+) hold deletes for every partition (partition -1) or one.
        .filter(|s| s.level == LEVEL_L0 || partitions.contains(&s.partition_id))
        .map(|s| SnapshotSegment {
            partition: s.partition_id,
            segment: s.segment_id,
            rows: s.num_rows,
            deletes_only: s.level == LEVEL_L0,
        })
        .collect();
    segments.sort_by_key(|s| (s.partition, s.segment));
    let unflushed: Vec<i64> = infos
        .iter()
        .filter(|s| s.state == SegmentState::Sealed as i32 || s.state == SegmentState::Flushing as i32)
        .map(|s| s.segment_id)
        .collect();
    if !unflushed.is_empty() {
        // Opened and sealed after the flush by writes that went on (see the module doc).
        tracing::warn!(collection = %c.source_name, segments = ?unflushed, "segments sealed but not yet flushed are not read");
    }
    let snap = StorageSnapshot { as_of, segments };
    tracing::info!(
        collection = %c.source_name,
        segments = snap.segments.len(),
        rows = snap.segments.iter().map(|s| s.rows).sum::<i64>(),
        skipped = infos.len() - snap.segments.len(),
        "snapshot of the source's storage taken"
    );
    state.put(&key, &snap)?;
    Ok(snap)
}

fn segment(collection: i64, s: &SnapshotSegment) -> SegmentBackupInfo {
    SegmentBackupInfo {
        segment_id: s.segment,
        collection_id: collection,
        partition_id: s.partition,
        num_of_rows: s.rows,
        is_l0: s.deletes_only,
        ..Default::default()
    }
}

/// The snapshot's segments as the collection the segment reader takes.
fn collection(c: &CollectionPlan, database: &str, snap: &StorageSnapshot) -> BackupCollection {
    let desc = &c.source;
    let schema = desc.schema.clone().unwrap_or_default();
    let id = desc.collection_id;
    BackupCollection {
        id,
        db_name: database.to_string(),
        name: c.source_name.clone(),
        hidden_dynamic_field: hidden_dynamic_field(&schema),
        schema,
        shards: desc.shards_num,
        consistency: desc.consistency_level,
        properties: Vec::new(),
        backup_timestamp: snap.as_of,
        partitions: c
            .partitions
            .iter()
            .map(|(name, pid)| BackupPartition {
                id: *pid,
                name: name.clone(),
                segments: snap
                    .segments
                    .iter()
                    .filter(|s| s.partition == *pid && !s.deletes_only)
                    .map(|s| segment(id, s))
                    .collect(),
            })
            .collect(),
        l0_segments: snap.segments.iter().filter(|s| s.deletes_only).map(|s| segment(id, s)).collect(),
    }
}

/// The snapshots of every collection of a plan, opened for reading.
pub struct StorageSnapshots<'a> {
    plan: &'a Plan,
    /// One per collection of the plan, each holding that collection only.
    sources: Vec<BackupSource>,
}

impl<'a> StorageSnapshots<'a> {
    /// Takes (or reloads) each collection's snapshot and checks that every segment's files
    /// are under `location` (`[source.storage]`), before any target is touched. `database`:
    /// the source's; `budget`: what segments being decoded may take together.
    pub async fn take(
        location: &str,
        database: &str,
        budget: DecodeBudget,
        source: &MilvusClient,
        state: &StateStore,
        plan: &'a Plan,
    ) -> Result<StorageSnapshots<'a>, StorageError> {
        let store = Store::open(location).map_err(BackupError::from)?;
        let mut sources = Vec::new();
        for c in &plan.collections {
            let snap = snapshot(source, state, c).await?;
            let coll = collection(c, database, &snap);
            let src = BackupSource::live(store.clone(), STATE_NAME, vec![coll], snap.as_of).with_budget(budget.clone());
            let coll = &src.collections()[0];
            for seg in coll.segments() {
                src.segment_files(coll, seg).await?;
            }
            sources.push(src);
        }
        Ok(StorageSnapshots { plan, sources })
    }

    /// The reader of the plan's `i`th collection (its deletes read and held).
    pub async fn reader(&self, i: usize) -> Result<BackupReader<'_>, BackupError> {
        let src = &self.sources[i];
        BackupReader::open(src, &src.collections()[0], &self.plan.collections[i]).await
    }
}
