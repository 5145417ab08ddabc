//! Imports from files: `ferry import-backup` (milvus-backup folders) and `ferry import-1x`
//! (Milvus 0.9–1.x data), written into the target exactly as the offline migration writes.
//!
//! # Layout
//!
//! - [`backup`]: plan from a backup's meta, segments read whole, deletes applied.
//! - [`storage`]: `ferry migrate` with `[source.storage]`: a live source's flushed segments
//!   read from its own storage as of a timestamp, through [`backup`]'s segment path.
//! - [`v1x`]: plan from milvus-migration's `meta.json` (`id` + `vector`), segments read in
//!   row ranges.
//! - this file: what both share: options, the per-segment writer and its durable state, the
//!   end of the run (flush, indexes, count check) and the summary.
//!
//! # Design
//!
//! Planning and target creation are the offline migration's: a [`plan::SourceCollection`]
//! is made from the file meta instead of a live DescribeCollection, then
//! [`plan::plan_described`], [`migrate::prepare_targets`] and [`migrate::index_and_count`]
//! do what they do for `ferry migrate`. Rows are written in batches bounded by
//! `copy.batch_bytes`, like the snapshot copy's.
//!
//! The unit of work and of resumption is a segment. A segment is parsed and checked whole
//! (every field log, timestamps, row counts against the meta, deletes applied; for 1.x the
//! headers and `deleted_docs`) before its first row is written, so a corrupt file fails its
//! segment with nothing of it on the target. Its progress lives in the job's sled state
//! under `import/<target>/<backup>/<segment>` (`import-1x/<target>/<segment>` for 1.x) as a
//! [`SegmentState`]:
//!
//! - a segment's rows come in a fixed order (the same files read the same way, the same
//!   deletes applied), so "rows `0..rows_done` are on the target" is a complete cursor;
//! - before a batch is sent, `intent` is set to its end; after the target accepts it,
//!   `rows_done` moves there and `intent` is cleared. A restart writes every batch that
//!   starts below an old `intent` as an upsert (it may have landed before the crash), the
//!   rest as inserts; into a target that existed before the job, everything is upserted;
//! - `rows_done` never moves backward, and `done` is set only after the last batch.

pub mod backup;
pub mod storage;
pub mod v1x;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::JobConfig;
use crate::migrate::{self, CollectionSummary, IndexMode, MigrateError};
use crate::milvus::{MilvusClient, MilvusError, Rows};
use crate::plan::{IfExists, Plan, PlanError};
use crate::snapshot::progress::{CollectionProgress, Progress};
use crate::snapshot::CopyReport;
use crate::sources::{BackupError, V1xError};
use crate::state::{StateError, StateStore};

/// Errors of an import. Each names the file, segment or collection at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("target: {0}")]
    Connect(MilvusError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    V1x(#[from] V1xError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("collection {collection:?} is not in {location} (it has: {available})")]
    UnknownCollection {
        collection: String,
        location: String,
        available: String,
    },
    #[error("collection {collection:?}: writing to the target failed: {source}")]
    Write {
        collection: String,
        source: MilvusError,
    },
    #[error("collection {collection:?}, segment {segment}: {reason}")]
    Segment {
        collection: String,
        segment: String,
        reason: String,
    },
    #[error("source collection {collection:?}: {step} failed: {source}")]
    SourceStep {
        collection: String,
        step: &'static str,
        source: MilvusError,
    },
    #[error("import interrupted by shutdown; re-run the same command to continue")]
    Interrupted,
    #[error("row count check failed: {details}")]
    CountMismatch { details: String },
}

impl ImportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportError::Connect(e)
            | ImportError::Write { source: e, .. }
            | ImportError::SourceStep { source: e, .. } => e.is_retryable(),
            ImportError::Backup(e) => e.is_retryable(),
            ImportError::V1x(e) => e.is_retryable(),
            ImportError::Plan(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Options of `ferry import-backup` and `ferry import-1x`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Local folder or object-store URL.
    pub path: String,
    /// Backup name under `path` (milvus-backup only).
    pub backup: Option<String>,
    pub dry_run: bool,
    pub if_exists: IfExists,
    pub index: IndexMode,
    pub load: bool,
    pub allow_autoid_off: bool,
    pub quiet: bool,
}

/// Durable progress of one segment (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentState {
    /// Every row of the segment is on the target.
    pub done: bool,
    /// Rows the segment contributes, deletes applied (known once it was read).
    pub rows: u64,
    /// Rows of the segment removed by deletes.
    pub deleted: u64,
    /// Rows `0..rows_done` of the segment are on the target.
    pub rows_done: u64,
    /// End of the batch being written: rows below it may be on the target already.
    pub intent: Option<u64>,
}

/// What an import did for one collection.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Rows, bytes, time, and the count check (`source_count` is the expected count: the
    /// meta's rows less deleted rows).
    #[serde(flatten)]
    pub copy: CollectionSummary,
    /// Rows the source meta records (deletes not applied).
    pub meta_rows: u64,
    /// Rows removed by deletes (1.x: `deleted_docs`).
    pub deleted: u64,
    pub segments: usize,
}

/// The end-of-run table: the offline migration's, plus where the expected counts come from.
pub fn render_summary(summaries: &[ImportSummary]) -> String {
    use std::fmt::Write;
    let copies: Vec<CollectionSummary> = summaries.iter().map(|s| s.copy.clone()).collect();
    let mut out = migrate::render_summary(&copies);
    for s in summaries {
        let _ = writeln!(
            out,
            "{}: {} segments, {} rows in the source meta, {} deleted, {} expected on the target",
            s.copy.copy.target, s.segments, s.meta_rows, s.deleted, s.copy.source_count
        );
    }
    out
}

/// Fails when a checked collection's count differs from the expected one.
pub fn check_counts(summaries: &[ImportSummary]) -> Result<(), ImportError> {
    let bad: Vec<String> = summaries
        .iter()
        .filter(|s| s.copy.count_checked && s.copy.source_count != s.copy.target_count)
        .map(|s| {
            format!(
                "{} should hold {} rows ({} in the source meta, {} deleted), it holds {}",
                s.copy.copy.target,
                s.copy.source_count,
                s.meta_rows,
                s.deleted,
                s.copy.target_count
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ImportError::CountMismatch {
            details: bad.join("; "),
        })
    }
}

/// Connects to the target only: imports read no source cluster.
async fn connect_target(cfg: &JobConfig) -> Result<MilvusClient, ImportError> {
    MilvusClient::connect(&cfg.target.connect_options())
        .await
        .map_err(ImportError::Connect)
}

/// The job's `[[collections]]` selection over the collections a source holds: (source name,
/// target name, description). Without a selection, every collection, sorted by name.
fn select(
    cfg: &JobConfig,
    available: &[String],
    location: &str,
) -> Result<Vec<(String, String, Option<String>)>, ImportError> {
    if cfg.collections.is_empty() {
        let mut names = available.to_vec();
        names.sort();
        return Ok(names.into_iter().map(|n| (n.clone(), n, None)).collect());
    }
    cfg.collections
        .iter()
        .map(|c| {
            if !available.contains(&c.source) {
                let mut a = available.to_vec();
                a.sort();
                return Err(ImportError::UnknownCollection {
                    collection: c.source.clone(),
                    location: location.to_string(),
                    available: a.join(", "),
                });
            }
            Ok((
                c.source.clone(),
                c.target_name().to_string(),
                c.description.clone(),
            ))
        })
        .collect()
}

/// The write side of an import: target, state, batching, progress.
struct Importer {
    target: MilvusClient,
    state: StateStore,
    batch_bytes: usize,
    parallelism: usize,
    progress: Arc<Progress>,
    shutdown: watch::Receiver<bool>,
}

/// Where one segment's rows go.
struct SegmentTarget<'a> {
    collection: &'a str,
    /// Partition name; empty for the default partition or a partition-key collection.
    partition: &'a str,
    /// State key of the segment.
    key: String,
    fresh_target: bool,
    progress: &'a CollectionProgress,
}

impl Importer {
    fn new(
        target: MilvusClient,
        state: StateStore,
        copy: &crate::config::CopyConfig,
        quiet: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Importer {
        Importer {
            target,
            state,
            batch_bytes: copy.batch_bytes,
            parallelism: copy.parallelism,
            progress: Progress::new(quiet),
            shutdown,
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Writes `rows`, which are rows `first..first + rows.len()` of the segment, in batches
    /// of at most `batch_bytes`; rows already on the target (`st.rows_done`) are skipped.
    async fn write(
        &self,
        to: &SegmentTarget<'_>,
        st: &mut SegmentState,
        rows: &Rows,
        first: u64,
    ) -> Result<(), ImportError> {
        let n = rows.len() as u64;
        if n == 0 || first + n <= st.rows_done {
            return Ok(());
        }
        let skip = st.rows_done.saturating_sub(first) as usize;
        // The snapshot copy's bound: rows per batch from the average row size.
        let per_row = rows.byte_size().div_ceil(rows.len()).max(1);
        let rows_per = (self.batch_bytes / per_row).max(1);
        let mut start = skip;
        while start < rows.len() {
            if self.stopping() {
                return Err(ImportError::Interrupted);
            }
            let end = (start + rows_per).min(rows.len());
            let idx: Vec<usize> = (start..end).collect();
            let batch = rows.select(&idx);
            let (b_start, b_end) = (first + start as u64, first + end as u64);
            let may_exist = !to.fresh_target || st.intent.is_some_and(|i| b_start < i);
            st.intent = Some(st.intent.map_or(b_end, |i| i.max(b_end)));
            self.state.put(&to.key, st)?;
            let written = if may_exist {
                self.target
                    .upsert(to.collection, to.partition, &batch)
                    .await
            } else {
                self.target
                    .insert(to.collection, to.partition, &batch)
                    .await
            };
            written.map_err(|source| ImportError::Write {
                collection: to.collection.to_string(),
                source,
            })?;
            crate::failpoint::hit("import.after_target_write");
            st.rows_done = b_end;
            if st.intent.is_some_and(|i| i <= st.rows_done) {
                st.intent = None;
            }
            self.state.put(&to.key, st)?;
            to.progress
                .add(batch.len() as u64, batch.byte_size() as u64);
            start = end;
        }
        Ok(())
    }

    /// Flushes the targets, builds indexes, counts each target against `expected` (rows the
    /// files hold, deletes applied), and fills in the summaries.
    async fn finish(
        &self,
        plan: &Plan,
        index: IndexMode,
        load: bool,
        summaries: &mut [ImportSummary],
    ) -> Result<(), ImportError> {
        let names: Vec<String> = plan
            .collections
            .iter()
            .map(|c| c.target_name.clone())
            .collect();
        self.target
            .flush(&names, Duration::from_secs(600))
            .await
            .map_err(|source| ImportError::Write {
                collection: names.join(","),
                source,
            })?;
        for (c, s) in plan.collections.iter().zip(summaries.iter_mut()) {
            match migrate::index_and_count(&self.target, c, index, load).await? {
                Some(n) => {
                    s.copy.target_count = n;
                    s.copy.count_checked = true;
                }
                None => s.copy.count_checked = false,
            }
        }
        Ok(())
    }
}

/// A summary for a collection whose rows are all written.
fn summary(
    c: &crate::plan::CollectionPlan,
    progress: &CollectionProgress,
    before: (u64, u64),
    started: Instant,
    states: &[SegmentState],
    meta_rows: u64,
) -> ImportSummary {
    let (rows, bytes) = progress.done();
    ImportSummary {
        copy: CollectionSummary {
            copy: CopyReport {
                source: c.source_name.clone(),
                target: c.target_name.clone(),
                rows: rows.saturating_sub(before.0),
                bytes: bytes.saturating_sub(before.1),
                seconds: started.elapsed().as_secs_f64(),
            },
            source_count: states.iter().map(|s| s.rows).sum(),
            source_keys: None,
            target_count: 0,
            target_keys: None,
            count_checked: false,
        },
        meta_rows,
        deleted: states.iter().map(|s| s.deleted).sum(),
        segments: states.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(expected: u64, got: u64, checked: bool) -> ImportSummary {
        ImportSummary {
            copy: CollectionSummary {
                copy: CopyReport {
                    source: "a".into(),
                    target: "b".into(),
                    rows: got,
                    bytes: 1,
                    seconds: 1.0,
                },
                source_count: expected,
                source_keys: None,
                target_count: got,
                target_keys: None,
                count_checked: checked,
            },
            meta_rows: expected + 2,
            deleted: 2,
            segments: 3,
        }
    }

    #[test]
    fn count_check_fails_only_on_a_checked_difference() {
        assert!(check_counts(&[summary(5, 5, true), summary(5, 4, false)]).is_ok());
        let e = check_counts(&[summary(5, 4, true)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b should hold 5 rows (7 in the source meta, 2 deleted), it holds 4"),
            "{e}"
        );
        let table = render_summary(&[summary(5, 5, true)]);
        assert!(table.contains("ok 5"), "{table}");
        assert!(
            table.contains("b: 3 segments, 7 rows in the source meta, 2 deleted, 5 expected"),
            "{table}"
        );
    }
}
