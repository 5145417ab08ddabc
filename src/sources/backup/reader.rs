//! A collection's binlog segments as a [`CollectionReader`]: the reader of `ferry
//! import-backup` and of `ferry migrate` with `[source.storage]`.
//!
//! A unit is a segment holding rows (L0 segments only hold deletes), in row order. It is
//! parsed and checked whole (every field log, timestamps, row counts against the meta) and
//! the collection's deletes applied before its first row is sent, so a corrupt file fails
//! its segment with nothing of it on the target. The same files read the same way with the
//! same deletes give the same rows in the same order, which is what makes "rows `..n` are
//! on the target" a complete cursor. The collection's deletes are read once, and held (in
//! the decode budget) for as long as the reader lives.

use super::{BackupCollection, BackupError, BackupSegment, BackupSource};
use crate::copy::{CollectionReader, CopyError, Order, Page, Pages, Position, SourceError, Unit};
use crate::plan::CollectionPlan;
use crate::sources::binlog::{Deletes, Reservation};
use crate::state::keys;

impl SourceError for BackupError {
    fn is_retryable(&self) -> bool {
        BackupError::is_retryable(self)
    }
}

impl From<BackupError> for CopyError {
    fn from(e: BackupError) -> Self {
        CopyError::Source(Box::new(e))
    }
}

/// One collection of a [`BackupSource`], with its deletes.
pub struct BackupReader<'a> {
    src: &'a BackupSource,
    coll: &'a BackupCollection,
    c: &'a CollectionPlan,
    /// (partition name, segment) of every segment holding rows.
    segments: Vec<(&'a str, &'a BackupSegment)>,
    deletes: Deletes,
    _deletes_held: Vec<Reservation>,
}

impl<'a> BackupReader<'a> {
    /// Reads the collection's deletes (every delta log, L0 segments included) and holds them.
    pub async fn open(
        src: &'a BackupSource,
        coll: &'a BackupCollection,
        c: &'a CollectionPlan,
    ) -> Result<BackupReader<'a>, BackupError> {
        let segments = coll
            .partitions
            .iter()
            .flat_map(|p| p.segments.iter().filter(|s| !s.is_l0).map(move |s| (p.name.as_str(), s)))
            .collect();
        let (deletes, held) = src.collection_deletes_held(coll).await?;
        Ok(BackupReader { src, coll, c, segments, deletes, _deletes_held: held })
    }
}

impl CollectionReader for BackupReader<'_> {
    fn units(&self) -> Vec<Unit> {
        self.segments
            .iter()
            .enumerate()
            .map(|(index, (partition, seg))| Unit {
                key: keys::backup_segment(&self.c.target_name, self.src.name(), seg.segment_id),
                name: format!("segment {}", seg.segment_id),
                // Partition-key collections: Milvus routes each row by its key.
                partition: if self.c.partition_key { String::new() } else { partition.to_string() },
                order: Order::Row,
                index,
            })
            .collect()
    }

    async fn expected_rows(&self) -> u64 {
        self.coll.num_rows().max(0) as u64
    }

    async fn read_unit(&self, unit: &Unit, _from: Option<&Position>, out: &Pages) -> Result<(), CopyError> {
        let (_, seg) = self.segments[unit.index];
        // `_held` is the part of the decode budget the rows take, returned once they are sent.
        let (mut data, _held) = self.src.read_segment_held(self.coll, seg).await?;
        let deleted = data.apply_deletes(&self.deletes, &self.c.pk_field)? as u64;
        let rows = data.rows.len() as u64;
        if out.send(Page::Counted { rows, deleted }).await {
            out.send_rows(data.rows).await;
        }
        Ok(())
    }
}
