//! The bulk copy: every row of a collection from source to target, in parallel, resumable.
//!
//! # Layout
//! - `unit`: work units (partition x key split), their page expressions and durable state.
//! - `progress`: bars and log lines.
//! - this file: the copy loop.
//!
//! # How a unit is copied
//! A reader pages through the unit by primary key (`pk > last`, `limit = page_rows`) at a
//! fixed guarantee timestamp and hands pages over a bounded channel (two pages) to a writer,
//! which gathers them into batches and writes every batch as soon as it is full: the longest
//! run of rows within `batch_bytes` is sent, the rows over it stay for the next page, so
//! every write but a unit's last is a full batch (no 8 MiB + 1.8 MB pairs). Reads and writes
//! overlap; memory is bounded by about `parallelism x (1 batch + 4 pages)`.
//!
//! Each row is copied once between the decoded query reply and the write request: pages are
//! appended into room reserved for a full batch (the first page's columns are moved in and
//! grown), a full batch is written from where it lies, and only the carried-over rest is
//! moved out. (The write request then takes its own copy of the columns; see `milvus::dml`.)
//!
//! # Resumption
//! Before a batch is sent, its highest key is stored as the unit's `intent`; after the target
//! accepts it, the `cursor` moves to that key and the intent is cleared. A restart re-reads
//! from the cursor and writes every batch that may overlap the old intent as an upsert, so a
//! batch cut short by a crash is neither lost nor duplicated; later batches are plain inserts
//! (cheaper on Milvus 2.3). Into a target that existed before the job, everything is upserted.

pub mod progress;
pub mod unit;

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, TryStreamExt};
use tokio::sync::{mpsc, watch};

use crate::milvus::{KeyPager, MilvusClient, MilvusError, PagerError, PkValue, Rows};
use crate::plan::CollectionPlan;
use crate::proto::schema::DataType;
use crate::state::{StateError, StateStore};
use progress::{CollectionProgress, Progress};
use unit::{Unit, UnitState};

/// Errors of the bulk copy. Each names the collection.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("collection {collection:?}: {source}")]
    Milvus {
        collection: String,
        source: MilvusError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("collection {collection:?}, unit {unit}: {reason}")]
    Data {
        collection: String,
        unit: String,
        reason: String,
    },
    #[error("copy interrupted by shutdown; re-run to continue")]
    Interrupted,
}

impl SnapshotError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SnapshotError::Milvus { source, .. } if source.is_retryable())
    }
}

/// Bulk-copy tuning (from the job file's `[copy]`).
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    pub parallelism: usize,
    pub page_rows: u64,
    pub batch_bytes: usize,
    pub key_splits: u32,
}

impl From<&crate::config::CopyConfig> for CopyOptions {
    fn from(c: &crate::config::CopyConfig) -> Self {
        CopyOptions {
            parallelism: c.parallelism,
            page_rows: c.page_rows,
            batch_bytes: c.batch_bytes,
            key_splits: c.key_splits,
        }
    }
}

/// What one collection's copy did in this run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    pub source: String,
    pub target: String,
    /// Rows written in this run (a resumed copy does not count what earlier runs wrote, so
    /// rows/s is this run's rate).
    pub rows: u64,
    /// Bytes written in this run.
    pub bytes: u64,
    pub seconds: f64,
}

impl CopyReport {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-3)
    }
}

/// Copies collections from one source to one target.
pub struct Copier {
    pub source: MilvusClient,
    pub target: MilvusClient,
    pub state: StateStore,
    pub opts: CopyOptions,
    pub progress: Arc<Progress>,
    pub shutdown: watch::Receiver<bool>,
}

fn state_key(collection: &str, unit: &Unit) -> String {
    format!("snapshot/{collection}/{}", unit.key())
}

impl Copier {
    /// Copies every row of `plan`'s collection as of `snapshot_ts` (a hybrid timestamp: the
    /// copy sees at least everything written before it). `fresh_target`: the target was
    /// created empty by this job, so rows past the resume point can be inserted.
    pub async fn copy_collection(
        &self,
        plan: &CollectionPlan,
        snapshot_ts: u64,
        fresh_target: bool,
    ) -> Result<CopyReport, SnapshotError> {
        let started = Instant::now();
        let partitions: Vec<String> = plan.partitions.iter().map(|(n, _)| n.clone()).collect();
        let units = unit::units(
            &partitions,
            plan.partition_key,
            plan.pk_type == DataType::Int64,
            self.opts.key_splits,
        );
        let mut done_before = 0;
        for u in &units {
            if let Some(s) = self.state.get::<UnitState>(&state_key(&plan.target_name, u))? {
                done_before += s.rows_done;
            }
        }
        // The statistics estimate misses unflushed rows; count(*) (the source is loaded to
        // be read) is exact. Only for progress: a failure falls back to the estimate.
        let expected = match self.source.count(&plan.source_name, &[]).await {
            // A share of a split collection: its fraction of the shards (keys spread evenly).
            Ok(n) => match &plan.shards {
                Some(f) => n * f.keep.len() as u64 / f.num_shards as u64,
                None => n,
            },
            Err(e) => {
                tracing::debug!(collection = %plan.source_name, error = %e, "count(*) failed; progress uses the estimate");
                plan.row_estimate
            }
        };
        let progress = self.progress.collection(&plan.target_name, expected, done_before);
        let before = progress.done();
        stream::iter(units.into_iter().map(Ok))
            .try_for_each_concurrent(self.opts.parallelism, |u| {
                let progress = progress.clone();
                async move {
                    self.copy_unit(plan, &u, snapshot_ts, fresh_target, &progress)
                        .await
                }
            })
            .await?;
        progress.finish();
        Ok(CopyReport {
            source: plan.source_name.clone(),
            target: plan.target_name.clone(),
            rows: progress.done().0 - before.0,
            bytes: progress.done().1 - before.1,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    async fn copy_unit(
        &self,
        plan: &CollectionPlan,
        unit: &Unit,
        snapshot_ts: u64,
        fresh_target: bool,
        progress: &CollectionProgress,
    ) -> Result<(), SnapshotError> {
        let key = state_key(&plan.target_name, unit);
        let mut st: UnitState = self.state.get(&key)?.unwrap_or_default();
        if st.done {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel::<Rows>(2);
        let reader = self.read_unit(plan, unit, st.cursor.clone(), snapshot_ts, tx);
        let writer = self.write_unit(plan, unit, &key, &mut st, fresh_target, progress, rx);
        let (r, w) = tokio::join!(reader, writer);
        // A writer failure closes the channel, which ends the reader: report the writer's.
        w?;
        let interrupted = r?;
        if interrupted {
            return Err(SnapshotError::Interrupted);
        }
        st.done = true;
        self.save(&key, &st).await?;
        Ok(())
    }

    /// Pages through the unit; returns whether it stopped early for shutdown.
    async fn read_unit(
        &self,
        plan: &CollectionPlan,
        unit: &Unit,
        cursor: Option<PkValue>,
        snapshot_ts: u64,
        tx: mpsc::Sender<Rows>,
    ) -> Result<bool, SnapshotError> {
        let mut pager = KeyPager::new(&plan.source_name, &plan.pk_field, plan.output_fields.clone());
        pager.partitions = unit.partition.iter().cloned().collect();
        pager.filter = unit.filter(&plan.pk_field);
        pager.page_rows = self.opts.page_rows;
        pager.guarantee_ts = snapshot_ts;
        pager.cursor = cursor;
        pager.shards = plan.shards.clone();
        loop {
            if *self.shutdown.borrow() {
                return Ok(true);
            }
            let page = pager.next_page(&self.source).await.map_err(|e| match e {
                PagerError::Milvus(source) => SnapshotError::Milvus {
                    collection: plan.source_name.clone(),
                    source,
                },
                PagerError::Order { reason, .. } => SnapshotError::Data {
                    collection: plan.source_name.clone(),
                    unit: unit.key(),
                    reason,
                },
            })?;
            let Some(page) = page else { return Ok(false) };
            if tx.send(page).await.is_err() {
                return Ok(false);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_unit(
        &self,
        plan: &CollectionPlan,
        unit: &Unit,
        key: &str,
        st: &mut UnitState,
        fresh_target: bool,
        progress: &CollectionProgress,
        mut rx: mpsc::Receiver<Rows>,
    ) -> Result<(), SnapshotError> {
        let max = self.opts.batch_bytes;
        let mut batch = Rows::default();
        // Bytes in `batch` (kept up to date instead of re-measured per page).
        let mut pending = 0usize;
        // Rows of pages like the first that reach the bound: room reserved up front.
        let mut room = 0usize;
        while let Some(page) = rx.recv().await {
            let page_bytes = page.byte_size();
            if room == 0 && !page.is_empty() {
                room = page.len() * max.div_ceil(page_bytes.max(1)).max(1);
            }
            let was_empty = batch.is_empty();
            pending += page_bytes;
            batch.append_owned(page).map_err(|e| SnapshotError::Data {
                collection: plan.source_name.clone(),
                unit: unit.key(),
                reason: e.to_string(),
            })?;
            if was_empty {
                batch.reserve(room.saturating_sub(batch.len()));
            }
            // Send only full batches; what is over the bound waits for the next page.
            while pending >= max {
                let (rest, rest_bytes) = batch.split_after_bytes(max, room);
                let full = std::mem::replace(&mut batch, rest);
                pending = rest_bytes;
                self.write_batch(plan, unit, key, st, fresh_target, progress, full)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.write_batch(plan, unit, key, st, fresh_target, progress, batch)
                .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_batch(
        &self,
        plan: &CollectionPlan,
        unit: &Unit,
        key: &str,
        st: &mut UnitState,
        fresh_target: bool,
        progress: &CollectionProgress,
        rows: Rows,
    ) -> Result<(), SnapshotError> {
        let keys = rows.primary_keys(&plan.pk_field).ok_or_else(|| SnapshotError::Data {
            collection: plan.source_name.clone(),
            unit: unit.key(),
            reason: "batch lost its primary key column".into(),
        })?;
        let (first, last) = (keys.get(0), keys.get(keys.len() - 1));
        let may_exist = !fresh_target
            || matches!((&st.intent, &first), (Some(i), Some(f)) if f <= i);
        st.intent = match (&st.intent, &last) {
            (Some(i), Some(l)) if i > l => Some(i.clone()),
            _ => last.clone(),
        };
        self.save(key, st).await?;
        let partition = unit.partition.as_deref().unwrap_or("");
        let write = if may_exist {
            self.target.upsert(&plan.target_name, partition, &rows).await
        } else {
            self.target.insert(&plan.target_name, partition, &rows).await
        };
        write.map_err(|source| SnapshotError::Milvus {
            collection: plan.target_name.clone(),
            source,
        })?;
        crate::failpoint::hit("snapshot.after_target_write");
        let bytes = rows.byte_size() as u64;
        st.cursor = last.clone();
        st.rows_done += rows.len() as u64;
        st.bytes_done += bytes;
        if st.intent.as_ref() <= st.cursor.as_ref() {
            st.intent = None;
        }
        self.save(key, st).await?;
        progress.add(rows.len() as u64, bytes);
        Ok(())
    }

    /// Stores a unit's state. The store flushes (fsyncs) every write, which takes up to
    /// ~150 ms on a busy disk: done on the blocking pool so that it does not stall the
    /// readers and writers sharing the runtime's threads. Still awaited: the order of intent,
    /// target write and cursor is what makes a restart safe.
    async fn save(&self, key: &str, st: &UnitState) -> Result<(), SnapshotError> {
        let (state, key, st) = (self.state.clone(), key.to_string(), st.clone());
        match tokio::task::spawn_blocking(move || state.put(&key, &st)).await {
            Ok(r) => Ok(r?),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime is shutting down.
                Err(_) => Err(SnapshotError::Interrupted),
            },
        }
    }
}

/// The source's "now" for a consistent read: a timestamp from its own TSO. A server
/// without AllocTimestamp (Milvus Lite) gets 0, and every page is then read at Strong
/// consistency, which sees at least as much. Never ferry's own clock: one behind the
/// source's would read before writes a stream's start position already skips (lost rows),
/// one ahead would make every read wait for the source to reach it.
pub async fn snapshot_timestamp(source: &MilvusClient) -> Result<u64, crate::milvus::MilvusError> {
    match source.alloc_timestamp().await {
        Ok(ts) => Ok(ts),
        Err(crate::milvus::MilvusError::Rpc { code: tonic::Code::Unimplemented, .. }) => Ok(0),
        Err(e) => Err(e),
    }
}
