//! `ferry import-backup` (milvus-backup folders) and `ferry import-1x` (Milvus 0.9–1.x
//! data): commands that compose a file reader (`sources::backup`, `sources::v1x`) with the
//! copy engine, written into the target exactly as `ferry migrate` writes.
//!
//! # Layout
//!
//! - [`backup`]: plan from a backup's meta; segments read whole, deletes applied.
//! - [`v1x`]: plan from milvus-migration's `meta.json` (`id` + `vector`).
//! - this file: what both share: options, errors, the collection selection, target
//!   preparation, the finish (flush, indexes, count) and the summary.
//!
//! # Design
//!
//! Planning and target creation are the offline migration's: a [`plan::SourceCollection`]
//! is made from the file meta instead of a live DescribeCollection, then
//! [`plan::plan_described`] and [`copy::prepare_targets`]. The unit of work and of resumption
//! is a segment, read by its `CollectionReader` and written by the copy engine's resumable
//! writer (state under `import/<target>/<backup>/<segment>`, `import-1x/<target>/<segment>`
//! for 1.x). The count check compares each target with the rows the files hold, deletes
//! applied.

pub mod backup;
pub mod v1x;

use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::copy::finish::{self, CollectionSummary, Finish, IndexMode};
use crate::copy::progress::Progress;
use crate::copy::{self, CopyError, CopyOptions, CopyReport, Copier};
use crate::milvus::{MilvusClient, MilvusError};
use serde::Serialize;

use crate::plan::{IfExists, Plan, PlanError};
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
    Copy(#[from] CopyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("collection {collection:?} is not in {location} (it has: {available})")]
    UnknownCollection {
        collection: String,
        location: String,
        available: String,
    },
    #[error("row count check failed: {details}")]
    CountMismatch { details: String },
}

impl ImportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportError::Connect(e) => e.is_retryable(),
            ImportError::Copy(e) => e.is_retryable(),
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
    let mut out = finish::render_summary(&copies);
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

/// A plan's targets prepared and a copier over them: what both imports start with.
struct Prepared {
    copier: Copier<MilvusClient>,
    fresh: Vec<bool>,
}

async fn prepare(
    cfg: &JobConfig,
    opts: &ImportOptions,
    target: &MilvusClient,
    plan: &Plan,
    shutdown: CancellationToken,
) -> Result<Prepared, ImportError> {
    let state = StateStore::open(&cfg.job.state_dir)?;
    let fresh = copy::prepare_targets(target, plan, &state, opts.if_exists).await?;
    let copier = Copier {
        target: target.clone(),
        state,
        opts: CopyOptions::from(&cfg.copy),
        progress: Progress::new(opts.quiet),
        shutdown,
    };
    Ok(Prepared { copier, fresh })
}

/// Finishes the targets (flush, indexes, count, `--load`) and sums each collection up;
/// `meta_rows`: rows the source meta records per collection (`None`: what the files held).
async fn finish_and_summarize(
    target: &MilvusClient,
    plan: &Plan,
    opts: &ImportOptions,
    reports: Vec<CopyReport>,
    meta_rows: &[Option<u64>],
) -> Result<Vec<ImportSummary>, ImportError> {
    let f = Finish { index: opts.index, flush: true, count: true, keep_loaded: opts.load };
    let counts = finish::finish_targets(target, &plan.collections, f).await?;
    Ok(reports
        .into_iter()
        .zip(counts)
        .zip(meta_rows)
        .map(|((copy, count), meta_rows)| {
            let (source_count, deleted, segments) = (copy.counted_rows, copy.deleted, copy.units);
            ImportSummary {
                meta_rows: meta_rows.unwrap_or(source_count + deleted),
                deleted,
                segments,
                copy: CollectionSummary {
                    source_count,
                    target_count: count.unwrap_or(0),
                    count_checked: count.is_some(),
                    ..CollectionSummary::unchecked(copy)
                },
            }
        })
        .collect())
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
                    ..Default::default()
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
