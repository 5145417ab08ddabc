//! A 1.x collection's segments as a [`CollectionReader`]: the reader of `ferry import-1x`.
//!
//! A unit is a segment, in row order (file order, deleted rows skipped). It is checked
//! before its first row is sent (file headers against sizes, ids against vectors, every
//! `deleted_docs` offset, every float finite), then read in row ranges of about a page, so
//! a large segment never sits in memory whole.

use super::{V1xCollection, V1xError, V1xSource};
use crate::copy::{CollectionReader, CopyError, Order, Page, Pages, Position, SourceError, Unit};
use crate::plan::CollectionPlan;
use crate::state::keys;

impl SourceError for V1xError {
    fn is_retryable(&self) -> bool {
        V1xError::is_retryable(self)
    }
}

impl From<V1xError> for CopyError {
    fn from(e: V1xError) -> Self {
        CopyError::Source(Box::new(e))
    }
}

/// One collection (table) of a [`V1xSource`].
pub struct V1xReader<'a> {
    pub src: &'a V1xSource,
    pub coll: &'a V1xCollection,
    pub c: &'a CollectionPlan,
}

impl CollectionReader for V1xReader<'_> {
    fn units(&self) -> Vec<Unit> {
        self.coll
            .segments
            .iter()
            .enumerate()
            .map(|(index, seg)| Unit {
                key: keys::v1x_segment(&self.c.target_name, &seg.segment),
                name: format!("segment {}", seg.segment),
                partition: String::new(),
                order: Order::Row,
                index,
            })
            .collect()
    }

    async fn expected_rows(&self) -> u64 {
        self.coll.rows.max(0) as u64
    }

    async fn read_unit(&self, unit: &Unit, _from: Option<&Position>, out: &Pages) -> Result<(), CopyError> {
        let (src, coll) = (self.src, self.coll);
        let seg = &coll.segments[unit.index];
        let stored = src.stored_rows(seg).await?;
        // An empty range checks every header, the id/vector row counts and `deleted_docs`.
        src.read_rows(coll, seg, 0..0).await?;
        let row_bytes = coll.metric()?.vector_kind().row_bytes(coll.dim as usize) + 8;
        let chunk = (out.page_bytes / row_bytes.max(1)).max(1);
        // Every vector is checked once before the first write (local files: cheap next to the
        // writes), so a value Milvus refuses fails the segment with nothing of it written.
        src.check_finite(coll, seg, chunk * 8).await?;
        let deleted = src.deleted_rows(seg, stored).await?;
        let (rows, deleted) = ((stored - deleted) as u64, deleted as u64);
        if !out.send(Page::Counted { rows, deleted }).await {
            return Ok(());
        }
        for start in (0..stored).step_by(chunk) {
            let rows = src.read_rows(coll, seg, start..(start + chunk).min(stored)).await?;
            if !rows.is_empty() && !out.send(Page::Rows(rows)).await {
                break;
            }
        }
        Ok(())
    }
}
