//! Verification (`ferry verify`, and the cutover's verify step): is the target equal to the
//! source, collection by collection and partition by partition?
//!
//! # Layout
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

mod merge;
mod report;
mod scan;

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::watch;

use crate::config::CopyConfig;
use crate::copy::{finish, CopyError};
use crate::milvus::{MilvusClient, MilvusError, PagerError};
use crate::plan::{CollectionPlan, Plan};
use crate::proto::common::LoadState;
use crate::proto::schema::DataType;
use crate::copy::CopyOptions;
use crate::sources::query::{snapshot_timestamp, unit};

pub use merge::{merge_step, Diff};
pub use report::{
    render, summary, CollectionReport, FullReport, KeyList, PartitionReport, PassReport,
    RepairReport, RepairedCollection, VerifyMode, VerifyReport,
};

/// Count queries in flight at once.
const COUNTS_AT_ONCE: usize = 8;

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
    shutdown: watch::Receiver<bool>,
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
    shutdown: watch::Receiver<bool>,
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
    shutdown: &watch::Receiver<bool>,
) -> Result<(PassReport, Option<RepairReport>), VerifyError> {
    let started = Instant::now();
    let ts = |side| move |source| VerifyError::Timestamp { side, source };
    let source_ts = snapshot_timestamp(source).await.map_err(ts("source"))?;
    let target_ts = snapshot_timestamp(target).await.map_err(ts("target"))?;
    let mut collections = Vec::new();
    let mut repaired = Vec::new();
    for c in &plan.collections {
        if *shutdown.borrow() {
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
    shutdown: &'a watch::Receiver<bool>,
}

async fn compare_collection(
    ctx: &Ctx<'_>,
    c: &CollectionPlan,
) -> Result<(CollectionReport, Option<RepairedCollection>), VerifyError> {
    let started = Instant::now();
    let on = |collection: &str, step: &'static str| {
        let collection = collection.to_string();
        move |source| VerifyError::Milvus {
            collection,
            step,
            source,
        }
    };
    let (src, dst) = (c.source_name.as_str(), c.target_name.as_str());
    let mut report = CollectionReport {
        source: src.into(),
        target: dst.into(),
        equal: false,
        target_exists: false,
        source_rows: 0,
        source_keys: None,
        target_keys: None,
        target_rows: 0,
        partition_key: c.partition_key,
        partitions: Vec::new(),
        full: None,
        share: c.shards.as_ref().map(|f| f.describe()),
        seconds: 0.0,
    };
    // A share of a split collection: count(*) would count other instances' keys, so the
    // share's keys are counted and compared by reading them.
    let shared = c.shards.is_some();
    report.target_exists = ctx
        .target
        .has_collection(dst)
        .await
        .map_err(on(dst, "has collection"))?;

    // Partitions of both sides, the source's first.
    let mut names: Vec<String> = Vec::new();
    let (mut on_source, mut on_target) = (Vec::new(), Vec::new());
    if !c.partition_key && report.target_exists {
        on_source = ctx
            .source
            .list_partitions(src)
            .await
            .map_err(on(src, "list partitions"))?;
        on_target = ctx
            .target
            .list_partitions(dst)
            .await
            .map_err(on(dst, "list partitions"))?;
        names = on_source.iter().map(|p| p.0.clone()).collect();
        names.extend(
            on_target
                .iter()
                .filter(|p| !names.contains(&p.0))
                .map(|p| p.0.clone())
                .collect::<Vec<_>>(),
        );
    }
    let on_source: Vec<String> = on_source.into_iter().map(|p| p.0).collect();
    let on_target: Vec<String> = on_target.into_iter().map(|p| p.0).collect();

    // Every count of both sides: a strongly consistent count waits for the server's next
    // time tick, so they run side by side rather than one after another.
    // (A share's counts come from reading its keys below: count(*) would be wasted.)
    let mut counts: Vec<(bool, Option<String>)> = Vec::new();
    if !(shared && report.target_exists) {
        counts.push((true, None));
    }
    if report.target_exists && !shared {
        counts.push((false, None));
    }
    for p in names.iter().filter(|_| !shared) {
        if on_source.contains(p) {
            counts.push((true, Some(p.clone())));
        }
        if on_target.contains(p) {
            counts.push((false, Some(p.clone())));
        }
    }
    let jobs: Vec<_> = counts
        .iter()
        .map(|(is_source, part)| {
            let (client, name) = if *is_source {
                (ctx.source, src)
            } else {
                (ctx.target, dst)
            };
            count(client, name, part.clone())
        })
        .collect();
    let counted: Vec<u64> = stream::iter(jobs)
        .buffered(COUNTS_AT_ONCE)
        .try_collect()
        .await?;
    let count_of = |is_source: bool, part: Option<&String>| {
        counts
            .iter()
            .position(|(s, p)| *s == is_source && p.as_ref() == part)
            .map(|i| counted[i])
    };
    report.source_rows = count_of(true, None).unwrap_or(0);
    if !report.target_exists {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok((report, None));
    }
    report.target_rows = count_of(false, None).unwrap_or(0);
    // A source key with several rows is one row on the target: counts compare distinct keys.
    let keys = |part: Option<String>, s: u64, t: u64| async move {
        finish::distinct_keys(ctx.source, ctx.target, c, part.as_deref(), s, t)
            .await
            .map_err(|e| VerifyError::scan(src, "count distinct keys", e))
    };
    // With every partition checked below, a repeated key or an extra one shows in its
    // partition, and the collection's count(*) is their sum: reading the collection's keys
    // again would only lengthen a cutover's verify (a key in two partitions, which Milvus
    // allows, is one key to a collection-wide query but two rows to count(*)).
    let by_partition = !names.is_empty();
    if !shared && !by_partition {
        let k = keys(None, report.source_rows, report.target_rows).await?;
        (report.source_keys, report.target_keys) = (k.source, k.target);
    }
    for p in names.iter().filter(|_| !shared) {
        let (s, t) = (count_of(true, Some(p)), count_of(false, Some(p)));
        let k = match (s, t) {
            (Some(s), Some(t)) => keys(Some(p.clone()), s, t).await?,
            _ => finish::DistinctKeys::default(),
        };
        report.partitions.push(PartitionReport {
            name: p.clone(),
            source_rows: s,
            source_keys: k.source,
            target_rows: t,
            target_keys: k.target,
            equal: s.is_some() && k.source.or(s) == k.target.or(t),
        });
    }
    if by_partition && report.partitions.iter().any(|p| p.source_keys.is_some()) {
        // The collection's keys are its partitions' (a key per partition it is in).
        let sum = |f: &dyn Fn(&PartitionReport) -> Option<u64>| report.partitions.iter().filter_map(f).sum::<u64>();
        report.source_keys = Some(sum(&|p| p.source_keys.or(p.source_rows)));
        report.target_keys = Some(sum(&|p| p.target_keys.or(p.target_rows)));
    }

    let mut fixed = None;
    if ctx.repair {
        // Rows re-copied go to their own partition, so it must exist. (Partitions only the
        // target has are emptied, not dropped.)
        for p in on_source.iter().filter(|p| !on_target.contains(p)) {
            tracing::info!(collection = %dst, partition = %p, "repair: creating the partition missing on the target");
            ctx.target
                .create_partition(dst, p)
                .await
                .map_err(on(dst, "repair create partition"))?;
        }
    }
    if ctx.mode == VerifyMode::Full || shared {
        let units = unit::units(
            &names,
            c.partition_key,
            c.pk_type == DataType::Int64,
            ctx.opts.scan.key_splits,
        );
        let outcomes: Vec<scan::UnitOutcome> = stream::iter(units.into_iter().map(|u| {
            let on_s = u.partition.as_ref().is_none_or(|p| on_source.contains(p));
            let on_t = u.partition.as_ref().is_none_or(|p| on_target.contains(p));
            scan::scan_unit(scan::UnitScan {
                source: ctx.source,
                target: ctx.target,
                plan: c,
                unit: u,
                on_source: on_s,
                on_target: on_t,
                source_ts: ctx.source_ts,
                target_ts: ctx.target_ts,
                opts: ctx.opts,
                repair: ctx.repair,
                shutdown: ctx.shutdown.clone(),
            })
        }))
        .buffer_unordered(ctx.opts.scan.parallelism.max(1))
        .try_collect()
        .await?;
        let mut full = FullReport::default();
        let mut rep = RepairedCollection {
            source: src.into(),
            target: dst.into(),
            upserted: 0,
            deleted: 0,
        };
        for o in outcomes {
            full.source_keys += o.full.source_keys;
            full.target_keys += o.full.target_keys;
            full.keys_compared += o.full.keys_compared;
            for (all, part) in [
                (&mut full.missing, o.full.missing),
                (&mut full.extra, o.full.extra),
                (&mut full.different, o.full.different),
            ] {
                all.count += part.count;
                all.keys.extend(part.keys);
            }
            rep.upserted += o.upserted;
            rep.deleted += o.deleted;
        }
        // Units run concurrently: list the smallest keys, whichever unit found them.
        for l in [&mut full.missing, &mut full.extra, &mut full.different] {
            l.keys.sort();
            l.keys.truncate(ctx.opts.sample);
        }
        if shared {
            (report.source_rows, report.target_rows) = (full.source_keys, full.target_keys);
        }
        report.full = Some(full);
        if ctx.repair {
            fixed = Some(rep);
        }
    }
    report.equal = report.expected_target_rows() == report.target_distinct()
        && report.partitions.iter().all(|p| p.equal)
        && report.full.as_ref().is_none_or(FullReport::is_clean);
    report.seconds = started.elapsed().as_secs_f64();
    Ok((report, fixed))
}

/// `count(*)` of a collection, or of one partition.
async fn count(
    client: &MilvusClient,
    collection: &str,
    partition: Option<String>,
) -> Result<u64, VerifyError> {
    let parts: Vec<String> = partition.into_iter().collect();
    client
        .count(collection, &parts)
        .await
        .map_err(|source| VerifyError::Milvus {
            collection: collection.to_string(),
            step: "count",
            source,
        })
}
