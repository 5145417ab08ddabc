//! Verification (`ferry verify`, and the cutover's verify step): is the target equal to the
//! source, collection by collection and partition by partition?
//!
//! # Layout
//! - `compare`: one collection compared: counts, distinct keys, then the `full` units.
//! - `merge`: the merge-join of two key-ordered `(key, digest)` runs (pure).
//! - `scan`: one work unit compared (and repaired) over both servers.
//! - `report`: the report types (the JSON interface) and their human rendering.
//! - this file: options, errors, loading, and [`verify`] (passes and repair).
//!
//! # What is compared
//! - `counts`: `count(*)` per collection and per user partition on both sides (strong
//!   consistency). Partition-key collections are compared as a whole: their partitions are
//!   the server's hash buckets, not a placement the user chose.
//! - `full`: counts, plus both sides read in primary-key order (the copy's
//!   [`KeyPager`](crate::milvus::KeyPager): `pk > last`, key order checked on every page),
//!   each row reduced to [`Rows::row_digest`](crate::milvus::Rows::row_digest) (every field,
//!   vectors and floats bit-exact, JSON by meaning), and the two streams merge-joined into
//!   missing, extra and different keys. Work units are the copy's (partition x key split),
//!   `parallelism` at a time; each holds one page per side, so memory does not grow with the
//!   collection. Each side is read at a guarantee timestamp from its own TSO, taken when the
//!   pass starts.
//!
//! # Repair
//! With `repair`, the first pass also fixes what it finds, as it finds it: missing and
//! different rows are upserted from the source rows just read (batches of `batch_bytes`, into
//! the same partition, created first if the target lacks it), extra keys are deleted from the
//! target. A second pass then verifies from scratch; its verdict is the report's.
//!
//! # Loading
//! Milvus 2.3 queries only loaded collections. Sources the plan found unloaded are loaded
//! with [`finish::load_sources`]; unloaded targets are loaded here (they need an index). Both
//! are released afterwards, also on failure, and only those this call loaded.

mod compare;
mod merge;
mod report;
mod scan;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::CopyConfig;
use crate::copy::{finish, CopyError};
use crate::milvus::{MilvusClient, MilvusError, PagerError};
use crate::plan::Plan;
use crate::proto::common::LoadState;
use crate::copy::CopyOptions;
use crate::sources::query::snapshot_timestamp;
use compare::compare_collection;

pub use merge::{merge_step, Diff};
pub use report::{
    render, summary, CollectionReport, FullReport, KeyList, PartitionReport, PassReport,
    RepairReport, RepairedCollection, VerifyMode, VerifyReport,
};

/// Errors that stop a verification (differences are not errors: they are in the report).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Load(#[from] CopyError),
    #[error("collection {collection:?}: {step} failed: {source}")]
    Milvus {
        collection: String,
        step: &'static str,
        source: MilvusError,
    },
    #[error("collection {collection:?}: {reason}")]
    Data { collection: String, reason: String },
    #[error("target collection {collection:?} is not loaded and has no index, so Milvus cannot query it: create an index on its vector field (ferry migrate --index copy|autoindex does) or load it, then verify again")]
    NotQueryable { collection: String },
    #[error("verification interrupted by shutdown")]
    Interrupted,
    #[error("allocating the {side}'s read timestamp: {source}")]
    Timestamp { side: &'static str, source: MilvusError },
}

impl VerifyError {
    /// A failed key-ordered read of `collection`.
    fn scan(collection: &str, step: &'static str, e: PagerError) -> Self {
        match e {
            PagerError::Milvus(source) => VerifyError::Milvus {
                collection: collection.into(),
                step,
                source,
            },
            PagerError::Order { reason, .. } => VerifyError::Data {
                collection: collection.into(),
                reason,
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, VerifyError::Milvus { source, .. } if source.is_retryable())
    }
}

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub mode: VerifyMode,
    /// Keys listed per category (all are counted).
    pub sample: usize,
    /// Fix what the first pass finds, then verify again. Implies [`VerifyMode::Full`].
    pub repair: bool,
    /// Page size, parallelism, key splits and repair batch size: the copy's settings.
    pub scan: CopyOptions,
}

impl VerifyOptions {
    /// Options with the job file's `[copy]` settings, 10 sample keys, no repair.
    pub fn new(mode: VerifyMode, copy: &CopyConfig) -> Self {
        VerifyOptions {
            mode,
            sample: 10,
            repair: false,
            scan: CopyOptions::from(copy),
        }
    }
}

/// Compares every collection of `plan` on `source` and `target` (and repairs, if asked).
/// Returns the report whether or not they are equal; errors mean the comparison could not
/// be completed. `shutdown` turning true stops it with [`VerifyError::Interrupted`].
pub async fn verify(
    source: &MilvusClient,
    target: &MilvusClient,
    plan: &Plan,
    opts: &VerifyOptions,
    shutdown: CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    let mut loaded = Loaded::default();
    let result = verify_loaded(source, target, plan, opts, shutdown, &mut loaded).await;
    loaded.release(source, target, plan).await;
    result
}

async fn verify_loaded(
    source: &MilvusClient,
    target: &MilvusClient,
    plan: &Plan,
    opts: &VerifyOptions,
    shutdown: CancellationToken,
    loaded: &mut Loaded,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mode = if opts.repair {
        VerifyMode::Full
    } else {
        opts.mode
    };
    loaded.acquire(source, target, plan).await?;
    let (first, repair) = pass(source, target, plan, opts, mode, opts.repair, &shutdown).await?;
    let mut passes = vec![first];
    if opts.repair && !passes[0].equal {
        let (second, _) = pass(source, target, plan, opts, mode, false, &shutdown).await?;
        passes.push(second);
    }
    let equal = passes.last().is_some_and(|p| p.equal);
    Ok(VerifyReport {
        mode,
        equal,
        sample: opts.sample,
        seconds: started.elapsed().as_secs_f64(),
        passes,
        repair,
    })
}

/// Collections this call loaded, to release afterwards.
#[derive(Debug, Default)]
struct Loaded {
    sources: bool,
    targets: Vec<String>,
}

impl Loaded {
    async fn acquire(
        &mut self,
        source: &MilvusClient,
        target: &MilvusClient,
        plan: &Plan,
    ) -> Result<(), VerifyError> {
        self.sources = plan.collections.iter().any(|c| c.load_source);
        finish::load_sources(source, plan).await?;
        for c in &plan.collections {
            let name = &c.target_name;
            let step = |step: &'static str| {
                let collection = name.clone();
                move |source| VerifyError::Milvus {
                    collection,
                    step,
                    source,
                }
            };
            if !target
                .has_collection(name)
                .await
                .map_err(step("has collection"))?
            {
                continue;
            }
            match target.load_state(name).await {
                Ok(LoadState::Loaded) => {}
                // Someone else is loading it: wait, but it is not ours to release.
                Ok(LoadState::Loading) => target
                    .load(name, Duration::from_secs(900))
                    .await
                    .map_err(step("load target"))?,
                Ok(_) => {
                    if target
                        .describe_indexes(name)
                        .await
                        .map_err(step("describe index"))?
                        .is_empty()
                    {
                        return Err(VerifyError::NotQueryable {
                            collection: name.clone(),
                        });
                    }
                    tracing::info!(collection = %name, "loading the target collection to read it");
                    self.targets.push(name.clone());
                    target
                        .load(name, Duration::from_secs(900))
                        .await
                        .map_err(step("load target"))?;
                }
                // Servers without load states (Milvus Lite) query anything.
                Err(_) => {}
            }
        }
        Ok(())
    }

    async fn release(&self, source: &MilvusClient, target: &MilvusClient, plan: &Plan) {
        for name in &self.targets {
            if let Err(e) = target.release(name).await {
                tracing::warn!(collection = %name, error = %e, "could not release the target collection verify loaded");
            }
        }
        if self.sources {
            for c in plan.collections.iter().filter(|c| c.load_source) {
                if let Err(e) = source.release(&c.source_name).await {
                    tracing::warn!(collection = %c.source_name, error = %e, "could not release the source collection verify loaded");
                }
            }
        }
    }
}

/// One comparison of every collection; with `repair`, also the fixes.
async fn pass(
    source: &MilvusClient,
    target: &MilvusClient,
    plan: &Plan,
    opts: &VerifyOptions,
    mode: VerifyMode,
    repair: bool,
    shutdown: &CancellationToken,
) -> Result<(PassReport, Option<RepairReport>), VerifyError> {
    let started = Instant::now();
    let ts = |side| move |source| VerifyError::Timestamp { side, source };
    let source_ts = snapshot_timestamp(source).await.map_err(ts("source"))?;
    let target_ts = snapshot_timestamp(target).await.map_err(ts("target"))?;
    let mut collections = Vec::new();
    let mut repaired = Vec::new();
    for c in &plan.collections {
        if shutdown.is_cancelled() {
            return Err(VerifyError::Interrupted);
        }
        let ctx = Ctx {
            source,
            target,
            opts,
            mode,
            repair,
            source_ts,
            target_ts,
            shutdown,
        };
        let (report, fixed) = compare_collection(&ctx, c).await?;
        tracing::info!(
            source = %report.source,
            target = %report.target,
            equal = report.equal,
            source_rows = report.source_rows,
            source_keys = report.source_keys,
            target_keys = report.target_keys,
            target_rows = report.target_rows,
            missing = report.full.as_ref().map(|f| f.missing.count),
            extra = report.full.as_ref().map(|f| f.extra.count),
            different = report.full.as_ref().map(|f| f.different.count),
            "collection verified"
        );
        collections.push(report);
        repaired.extend(fixed);
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = PassReport {
        equal: collections.iter().all(|c| c.equal),
        source_ts,
        target_ts,
        seconds,
        collections,
    };
    let repair = repair.then_some(RepairReport {
        seconds,
        collections: repaired,
    });
    Ok((report, repair))
}

/// What every collection of a pass shares.
struct Ctx<'a> {
    source: &'a MilvusClient,
    target: &'a MilvusClient,
    opts: &'a VerifyOptions,
    mode: VerifyMode,
    repair: bool,
    source_ts: u64,
    target_ts: u64,
    shutdown: &'a CancellationToken,
}
