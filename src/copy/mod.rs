//! The copy engine: every bulk copy of rows into a target goes through here, whatever the
//! source.
//!
//! ```text
//!  CollectionReader ──► pages ──► UnitWriter ──► Target
//!  (sources/: query,              (writer.rs:       (MilvusClient;
//!   binlog segments, 1.x)          batches, intent,  a fake in tests)
//!                                  cursor, progress)
//! ```
//!
//! # Layout
//! - this file: the [`CollectionReader`] trait sources implement, the [`Copier`] that drives
//!   any of them (units in parallel, each unit's reader and writer overlapped), target
//!   preparation ([`prepare_targets`]), options, report and errors.
//! - `writer`: the one resumable writer and its durable [`UnitState`].
//! - [`target`]: the [`Target`] trait every path writes through (copies, `verify --repair`,
//!   the stream applier).
//! - [`finish`]: the end of a copy into a target: flush, indexes, load, count, release, and
//!   the repeated-keys count; [`CollectionSummary`] and its table.
//! - [`progress`]: bars and log lines.
//!
//! # Units, order and resumption
//! A reader splits a collection into units (a partition and key split read by query; a
//! segment of binlogs; a 1.x segment). Each unit's rows come in a fixed order: by primary
//! key ([`Order::Key`], and a reader resumes after a key), or the same rows in the same order
//! on every read ([`Order::Row`], and a reader starts from the unit's first row: the writer
//! skips what is on the target). A row's [`Position`] is its key or its 1-based row number.
//!
//! Before a batch is sent, its last position is stored as the unit's `intent`; after the
//! target accepts it, the `cursor` moves there and the intent is cleared. A restart writes
//! every batch that starts at or below an old intent as an upsert (it may have landed before
//! the crash), later batches as plain inserts (cheaper on Milvus 2.3); into a target that
//! existed before the job, everything is upserted. So a batch cut short by a crash is
//! neither lost nor duplicated. The failpoint `copy.after_target_write` sits between the
//! target write and the cursor.

pub mod finish;
pub mod progress;
pub mod target;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::milvus::{MilvusClient, MilvusError, PkValue, Rows};
use crate::plan::{self, CollectionPlan, IfExists, Plan, PlanError, TargetState};
use crate::state::{keys, StateError, StateStore};
pub use finish::{CollectionSummary, IndexMode};
use progress::{CollectionProgress, Progress};
pub use target::Target;
pub use writer::UnitState;

/// Errors of a copy. Each names the collection (and the unit, where one is at fault).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source by query.
    #[error("collection {collection:?}: {source}")]
    Milvus {
        collection: String,
        source: MilvusError,
    },
    #[error("collection {collection:?}: writing to the target failed: {source}")]
    Write {
        collection: String,
        source: MilvusError,
    },
    /// A step around the copy (flush, index, load, count) on either side.
    #[error("collection {collection:?}: {step} failed: {source}")]
    Step {
        collection: String,
        step: &'static str,
        source: MilvusError,
    },
    /// A file source's error, as it is (it names the file and offset).
    #[error("{0}")]
    Source(Box<dyn SourceError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// `unit` says what it is: `unit p1#0of4`, `segment 4471`.
    #[error("collection {collection:?}, {unit}: {reason}")]
    Data {
        collection: String,
        unit: String,
        reason: String,
    },
    #[error("copy interrupted by shutdown; re-run the same command to continue")]
    Interrupted,
}

/// A file source's error type (backup folders, binlogs, 1.x files).
pub trait SourceError: std::error::Error + Send + Sync + 'static {
    /// Only transport failures are worth retrying.
    fn is_retryable(&self) -> bool;
}

impl CopyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            CopyError::Milvus { source, .. }
            | CopyError::Write { source, .. }
            | CopyError::Step { source, .. } => source.is_retryable(),
            CopyError::Source(e) => e.is_retryable(),
            CopyError::Plan(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// A step's error maker: `.map_err(CopyError::step(&c.target_name, "load"))`.
    pub fn step(collection: &str, step: &'static str) -> impl FnOnce(MilvusError) -> CopyError {
        let collection = collection.to_string();
        move |source| CopyError::Step { collection, step, source }
    }
}

/// Copy tuning (from the job file's `[copy]`).
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
    /// Units of work of the collection (all runs).
    #[serde(skip)]
    pub units: usize,
    /// Rows the readers counted for their units, deletes applied (file sources; all runs).
    #[serde(skip)]
    pub counted_rows: u64,
    /// Rows the readers counted as deleted (file sources; all runs).
    #[serde(skip)]
    pub deleted: u64,
}

impl CopyReport {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-3)
    }
}

/// How a unit's rows are ordered, which decides what a position is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// By primary key (this field); a reader resumes after the cursor's key.
    Key { pk_field: String },
    /// The same rows in the same order on every read; a reader starts from the first row.
    Row,
}

/// Where a row stands in its unit: its key, or its 1-based row number (so the cursor is the
/// number of rows through it). Stored as the key's JSON (`{"Int":5}`) or a bare number, as
/// earlier releases stored them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Position {
    Row(u64),
    Key(PkValue),
}

/// One independently resumable slice of a collection, as its reader describes it.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Where its [`UnitState`] is stored.
    pub key: String,
    /// How errors and logs name it: `unit p1#0of4`, `segment 4471`.
    pub name: String,
    /// Target partition; empty for the default partition or a partition-key collection
    /// (Milvus routes each row by its key).
    pub partition: String,
    pub order: Order,
    /// The reader's own index of the unit.
    pub index: usize,
}

/// What a reader sends for a unit.
#[derive(Debug)]
pub enum Page {
    Rows(Rows),
    /// The unit's rows (deletes applied) and deleted rows, as soon as the reader knows them:
    /// recorded in the unit's state, and checked against an earlier run's.
    Counted { rows: u64, deleted: u64 },
}

/// Where a reader sends a unit's pages.
pub struct Pages {
    tx: mpsc::Sender<Page>,
    shutdown: CancellationToken,
    /// Suggested page size for readers that choose it (a share of a batch).
    pub page_bytes: usize,
}

impl Pages {
    /// Hands a page to the writer; `false` means stop reading (shutdown, or the writer
    /// failed and reports why).
    pub async fn send(&self, page: Page) -> bool {
        !self.shutdown.is_cancelled() && self.tx.send(page).await.is_ok()
    }

    /// Sends `rows` in pages of about [`Pages::page_bytes`] (for readers that read a unit
    /// whole); `false` as for [`Pages::send`].
    pub async fn send_rows(&self, rows: Rows) -> bool {
        for part in rows.split_by_bytes(self.page_bytes) {
            if !part.is_empty() && !self.send(Page::Rows(part)).await {
                return false;
            }
        }
        true
    }
}

/// A source of one collection's rows: the query pager, a collection's binlog segments (a
/// backup or `[source.storage]`), a 1.x table.
pub trait CollectionReader: Sync {
    /// The collection's units of work.
    fn units(&self) -> Vec<Unit>;

    /// Rows the copy is expected to write, for progress only.
    fn expected_rows(&self) -> impl Future<Output = u64> + Send;

    /// Sends the rows of `unit` in its order: after `from` ([`Order::Key`]), or from the first
    /// row ([`Order::Row`]). Returns when every row is sent or [`Pages::send`] says stop.
    fn read_unit(
        &self,
        unit: &Unit,
        from: Option<&Position>,
        out: &Pages,
    ) -> impl Future<Output = Result<(), CopyError>> + Send;
}

/// Copies collections into one target: any reader, one writer per unit.
pub struct Copier<T: Target> {
    pub target: T,
    pub state: StateStore,
    pub opts: CopyOptions,
    pub progress: Arc<Progress>,
    pub shutdown: CancellationToken,
}

impl<T: Target> Copier<T> {
    /// Copies every row `reader` has for `c`. `fresh_target`: the target was created empty
    /// by this job, so rows past a resume point can be inserted.
    pub async fn copy_collection<R: CollectionReader>(
        &self,
        reader: &R,
        c: &CollectionPlan,
        fresh_target: bool,
    ) -> Result<CopyReport, CopyError> {
        let started = Instant::now();
        let units = reader.units();
        let mut done_before = 0;
        for u in &units {
            if let Some(s) = self.state.get::<UnitState>(&u.key)? {
                done_before += s.rows_done;
            }
        }
        let progress = self.progress.collection(&c.target_name, reader.expected_rows().await, done_before);
        let before = progress.done();
        stream::iter(units.iter().map(Ok))
            .try_for_each_concurrent(self.opts.parallelism, |u| {
                let progress = progress.clone();
                async move { self.copy_unit(reader, c, u, fresh_target, &progress).await }
            })
            .await?;
        progress.finish();
        let mut report = CopyReport {
            source: c.source_name.clone(),
            target: c.target_name.clone(),
            rows: progress.done().0 - before.0,
            bytes: progress.done().1 - before.1,
            seconds: started.elapsed().as_secs_f64(),
            units: units.len(),
            ..Default::default()
        };
        for u in &units {
            let st: UnitState = self.state.get(&u.key)?.unwrap_or_default();
            report.counted_rows += st.rows;
            report.deleted += st.deleted;
        }
        Ok(report)
    }

    /// Copies every collection of `plan` in turn, each from the reader `open` makes for the
    /// collection at that index, reporting progress while it runs.
    pub async fn copy_all<R: CollectionReader>(
        &self,
        plan: &Plan,
        fresh: &[bool],
        mut open: impl AsyncFnMut(usize) -> Result<R, CopyError>,
    ) -> Result<Vec<CopyReport>, CopyError> {
        let work = async {
            let mut reports = Vec::new();
            for (i, (c, fresh)) in plan.collections.iter().zip(fresh).enumerate() {
                let reader = open(i).await?;
                reports.push(self.copy_collection(&reader, c, *fresh).await?);
            }
            Ok(reports)
        };
        self.progress.while_running(work).await
    }

    async fn copy_unit<R: CollectionReader>(
        &self,
        reader: &R,
        c: &CollectionPlan,
        unit: &Unit,
        fresh_target: bool,
        progress: &CollectionProgress,
    ) -> Result<(), CopyError> {
        let st = UnitState::load(&self.state, unit)?;
        if st.done {
            return Ok(());
        }
        if self.shutdown.is_cancelled() {
            return Err(CopyError::Interrupted);
        }
        let (tx, rx) = mpsc::channel::<Page>(2);
        let from = if unit.order == Order::Row { None } else { st.cursor.clone() };
        let pages = Pages {
            tx,
            shutdown: self.shutdown.clone(),
            page_bytes: (self.opts.batch_bytes / 8).max(1),
        };
        let mut writer = writer::UnitWriter::new(self, c, unit, st, fresh_target, progress);
        let read = async move {
            let r = reader.read_unit(unit, from.as_ref(), &pages).await;
            drop(pages);
            r
        };
        let (r, w) = tokio::join!(read, writer.run(rx));
        // A writer failure closes the channel, which ends the reader: report the writer's.
        w?;
        r?;
        if self.shutdown.is_cancelled() {
            return Err(CopyError::Interrupted);
        }
        let st = writer.finish().await?;
        tracing::info!(collection = %c.target_name, unit = %unit.name, rows = st.rows_done, deleted = st.deleted, "unit copied");
        Ok(())
    }

    /// Stores a unit's state. The store flushes (fsyncs) every write, which takes up to
    /// ~150 ms on a busy disk: done on the blocking pool so that it does not stall the
    /// readers and writers sharing the runtime's threads. Still awaited: the order of intent,
    /// target write and cursor is what makes a restart safe.
    async fn save(&self, key: &str, st: &UnitState) -> Result<(), CopyError> {
        let (state, key, st) = (self.state.clone(), key.to_string(), st.clone());
        match tokio::task::spawn_blocking(move || state.put(&key, &st)).await {
            Ok(r) => Ok(r?),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime is shutting down.
                Err(_) => Err(CopyError::Interrupted),
            },
        }
    }
}

/// What a command did: the plan of a dry run (to print), or a summary per collection (to
/// print, then judge).
#[derive(Debug)]
pub enum Outcome<S> {
    Planned {
        plan: Plan,
        /// Lines the plan's rendering does not say (where rows come from, sizes).
        notes: Vec<String>,
    },
    Done(Vec<S>),
}

/// Creates the targets, remembering which ones this job created (so a re-run after a crash
/// resumes into them without `--if-exists=resume`). Returns, per collection, whether the
/// target started empty under this job (the writer's `fresh_target`).
pub async fn prepare_targets(
    target: &MilvusClient,
    plan: &Plan,
    state: &StateStore,
    if_exists: IfExists,
) -> Result<Vec<bool>, CopyError> {
    let mut mode = if_exists;
    let mut fresh = Vec::new();
    for c in &plan.collections {
        if state.get::<bool>(&keys::created(&c.target_name))?.unwrap_or(false) {
            mode = IfExists::Resume;
        }
    }
    let states = plan::ensure_target(target, plan, mode).await?;
    for (c, s) in plan.collections.iter().zip(states) {
        let ours = state.get::<bool>(&keys::created(&c.target_name))?.unwrap_or(false);
        if s == TargetState::Created {
            state.put(&keys::created(&c.target_name), &true)?;
        }
        fresh.push(s == TargetState::Created || ours);
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests;
