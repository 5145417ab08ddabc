//! The one resumable writer: a unit's pages gathered into batches of `batch_bytes`, each
//! written under the intent / write / cursor protocol (see the module doc of [`super`]).
//!
//! Batches: pages are appended into room reserved for a full batch (the first page's
//! columns are moved in and grown), and every batch is written as soon as it is full: the
//! longest run of rows within `batch_bytes` is sent from where it lies, the rows over it
//! stay for the next page, so every write but a unit's last is a full batch. Each row is
//! copied once between the reader's page and the write request. Memory is bounded by about
//! `parallelism x (1 batch + 4 pages)`.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::progress::CollectionProgress;
use super::{Copier, CopyError, Order, Page, Position, Target, Unit};
use crate::milvus::Rows;
use crate::plan::CollectionPlan;
use crate::state::{StateError, StateStore};

/// Durable progress of one unit, under its [`Unit::key`]. Reads both formats earlier
/// releases wrote (`snapshot/...`: cursor and intent keys; `import/...`: row counts, no
/// cursor) and writes every field either of them needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitState {
    /// Every row up to and including this position is on the target.
    #[serde(default)]
    pub cursor: Option<Position>,
    /// Rows written (all runs).
    #[serde(default)]
    pub rows_done: u64,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub done: bool,
    /// Last position of a batch sent but not yet confirmed: rows up to it may already be on
    /// the target, so they are written as upserts after a restart.
    #[serde(default)]
    pub intent: Option<Position>,
    /// Rows the unit holds, deletes applied, once its reader counted them (file sources).
    #[serde(default)]
    pub rows: u64,
    /// Rows of the unit removed by deletes (file sources).
    #[serde(default)]
    pub deleted: u64,
}

impl UnitState {
    /// The unit's stored state (default: nothing written).
    pub fn load(state: &StateStore, unit: &Unit) -> Result<UnitState, StateError> {
        let mut st: UnitState = state.get(&unit.key)?.unwrap_or_default();
        // Row order: the cursor is the rows written, which is all an import state of an
        // earlier release records.
        if unit.order == Order::Row && st.cursor.is_none() && st.rows_done > 0 {
            st.cursor = Some(Position::Row(st.rows_done));
        }
        Ok(st)
    }

    /// Whether an earlier run counted the unit (and so what it wrote matches those rows).
    fn has_count(&self) -> bool {
        self.rows > 0 || self.deleted > 0
    }
}

pub(super) struct UnitWriter<'a, T: Target> {
    copier: &'a Copier<T>,
    c: &'a CollectionPlan,
    unit: &'a Unit,
    st: UnitState,
    fresh_target: bool,
    progress: &'a CollectionProgress,
    /// Rows gathered for the next write, and their bytes.
    batch: Rows,
    pending: usize,
    /// Rows of pages like the first that reach the bound: room reserved up front.
    room: usize,
    /// Row order: rows of the unit before `batch`'s first row, and rows received.
    batch_start: u64,
    received: u64,
}

impl<'a, T: Target> UnitWriter<'a, T> {
    pub(super) fn new(
        copier: &'a Copier<T>,
        c: &'a CollectionPlan,
        unit: &'a Unit,
        st: UnitState,
        fresh_target: bool,
        progress: &'a CollectionProgress,
    ) -> Self {
        UnitWriter {
            copier,
            c,
            unit,
            st,
            fresh_target,
            progress,
            batch: Rows::default(),
            pending: 0,
            room: 0,
            batch_start: 0,
            received: 0,
        }
    }

    fn data_error(&self, reason: String) -> CopyError {
        CopyError::Data {
            collection: self.c.source_name.clone(),
            unit: self.unit.name.clone(),
            reason,
        }
    }

    /// Writes every page the reader sends, full batches as they fill.
    pub(super) async fn run(&mut self, mut rx: mpsc::Receiver<Page>) -> Result<(), CopyError> {
        while let Some(page) = rx.recv().await {
            match page {
                Page::Rows(rows) => self.push(rows).await?,
                Page::Counted { rows, deleted } => self.counted(rows, deleted).await?,
            }
        }
        Ok(())
    }

    /// Writes what is left and marks the unit done (the reader sent every row).
    pub(super) async fn finish(mut self) -> Result<UnitState, CopyError> {
        if !self.batch.is_empty() {
            let rest = std::mem::take(&mut self.batch);
            self.write_batch(rest).await?;
        }
        self.st.done = true;
        self.st.intent = None;
        self.copier.save(&self.unit.key, &self.st).await?;
        Ok(self.st)
    }

    /// The reader's count of the unit: an earlier run that wrote part of the unit must have
    /// read the same rows, or what it wrote cannot be matched up with them.
    async fn counted(&mut self, rows: u64, deleted: u64) -> Result<(), CopyError> {
        let st = &self.st;
        // Rows of the unit may be on the target: confirmed, or a batch that may have landed.
        let written = st.rows_done > 0 || st.intent.is_some();
        let changed = written && st.has_count() && (st.rows, st.deleted) != (rows, deleted);
        if changed || st.rows_done > rows {
            let more = if st.intent.is_some() { " (more may have landed)" } else { "" };
            let before = if st.has_count() {
                format!(", reading {} rows ({} deleted)", st.rows, st.deleted)
            } else {
                String::new()
            };
            return Err(self.data_error(format!(
                "an earlier run wrote {} of its rows{more}{before}; now it reads {rows} rows \
                 ({deleted} deleted): the source changed in between, so the rows on the target \
                 cannot be matched up. Copy into a new target collection (or use a new state_dir)",
                st.rows_done
            )));
        }
        self.st.rows = rows;
        self.st.deleted = deleted;
        Ok(())
    }

    /// Adds a page; writes every full batch.
    async fn push(&mut self, mut page: Rows) -> Result<(), CopyError> {
        if self.unit.order == Order::Row {
            // Rows at or below the cursor are on the target already.
            let first = self.received;
            self.received += page.len() as u64;
            let done = match self.st.cursor {
                Some(Position::Row(n)) => n,
                _ => 0,
            };
            let skip = done.saturating_sub(first).min(page.len() as u64) as usize;
            if skip == page.len() {
                return Ok(());
            }
            if skip > 0 {
                page = page.split_off(skip, 0);
            }
            if self.batch.is_empty() {
                self.batch_start = first + skip as u64;
            }
        }
        let max = self.copier.opts.batch_bytes;
        let page_bytes = page.byte_size();
        if self.room == 0 && !page.is_empty() {
            self.room = page.len() * max.div_ceil(page_bytes.max(1)).max(1);
        }
        let was_empty = self.batch.is_empty();
        self.pending += page_bytes;
        self.batch.append_owned(page).map_err(|e| self.data_error(e.to_string()))?;
        if was_empty {
            self.batch.reserve(self.room.saturating_sub(self.batch.len()));
        }
        // Send only full batches; what is over the bound waits for the next page.
        while self.pending >= max {
            let (rest, rest_bytes) = self.batch.split_after_bytes(max, self.room);
            let full = std::mem::replace(&mut self.batch, rest);
            self.pending = rest_bytes;
            self.write_batch(full).await?;
        }
        Ok(())
    }

    /// The positions of a batch's first and last rows.
    fn span(&self, rows: &Rows) -> Result<(Position, Position), CopyError> {
        match &self.unit.order {
            Order::Row => Ok((
                Position::Row(self.batch_start + 1),
                Position::Row(self.batch_start + rows.len() as u64),
            )),
            Order::Key { pk_field } => {
                let keys = rows
                    .primary_keys(pk_field)
                    .ok_or_else(|| self.data_error("batch lost its primary key column".into()))?;
                let key = |i| keys.get(i).map(Position::Key);
                match (key(0), key(keys.len().saturating_sub(1))) {
                    (Some(f), Some(l)) => Ok((f, l)),
                    _ => Err(self.data_error("batch lost its primary key column".into())),
                }
            }
        }
    }

    /// Intent, write, cursor (see the module doc of [`super`]).
    async fn write_batch(&mut self, rows: Rows) -> Result<(), CopyError> {
        let (first, last) = self.span(&rows)?;
        let may_exist = !self.fresh_target || self.st.intent.as_ref().is_some_and(|i| &first <= i);
        if self.st.intent.as_ref().is_none_or(|i| *i < last) {
            self.st.intent = Some(last.clone());
        }
        let copier = self.copier;
        copier.save(&self.unit.key, &self.st).await?;
        let (collection, partition) = (&self.c.target_name, self.unit.partition.as_str());
        let write = if may_exist {
            copier.target.upsert(collection, partition, &rows).await
        } else {
            copier.target.insert(collection, partition, &rows).await
        };
        write.map_err(|source| CopyError::Write { collection: collection.clone(), source })?;
        crate::failpoint::hit("copy.after_target_write");
        let bytes = rows.byte_size() as u64;
        self.st.cursor = Some(last);
        self.st.rows_done += rows.len() as u64;
        self.st.bytes_done += bytes;
        if self.st.intent <= self.st.cursor {
            self.st.intent = None;
        }
        self.batch_start += rows.len() as u64;
        copier.save(&self.unit.key, &self.st).await?;
        self.progress.add(rows.len() as u64, bytes);
        Ok(())
    }
}
