//! `ferry migrate`, the offline migration: plan, create targets, copy every row (by query, or
//! from the source's storage), flush, build indexes, count, optionally load. A command: it
//! composes `plan`, `sources` and `copy`, and no other module imports it but `cli`.

use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::copy::finish::{self, CollectionSummary, Finish, IndexMode};
use crate::copy::progress::Progress;
use crate::copy::{self, CopyError, CopyOptions, Copier, Outcome};
use crate::milvus::MilvusClient;
use crate::plan::{self, CollectionPlan, IfExists, Plan, PlanError, PlanOptions};
use crate::sources::{self, query::QueryReader, storage::StorageSnapshots, DecodeBudget};
use crate::state::{keys, StateError, StateStore};

/// Errors of a migration run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("row count check failed: {details}")]
    CountMismatch { details: String },
    #[error(transparent)]
    Storage(#[from] sources::storage::StorageError),
    #[error("collection {collection:?}: an earlier run of this job copied it {was}, this run would copy it {now}, and the two do not know each other's progress; run with the [source.storage] setting of the earlier run, or start over with a new state_dir and target collection")]
    CopyModeChanged {
        collection: String,
        was: String,
        now: &'static str,
    },
    #[error("collection {collection:?}: counting the source's distinct primary keys failed: {source}")]
    KeyCount {
        collection: String,
        source: crate::milvus::PagerError,
    },
}

/// Options of `ferry migrate`.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub dry_run: bool,
    pub if_exists: IfExists,
    pub index: IndexMode,
    pub load: bool,
    pub allow_autoid_off: bool,
    pub quiet: bool,
}


/// Runs an offline migration end to end: plan, snapshot of the source's storage (with
/// `[source.storage]`), create the targets, copy, finish (flush, indexes, count), count the
/// source. Counts are compared by [`check_counts`].
pub async fn migrate(
    cfg: &JobConfig,
    opts: &MigrateOptions,
    shutdown: CancellationToken,
) -> Result<Outcome<CollectionSummary>, MigrateError> {
    let (source, target) = plan::connect(cfg).await?;
    let plan = plan::build(
        &source,
        &target,
        cfg,
        PlanOptions {
            allow_autoid_off: opts.allow_autoid_off,
        },
    )
    .await?;
    if opts.dry_run {
        let notes = cfg.source.storage.iter().map(|st| format!(
            "rows: read from the source's binlogs under {} after flushing each source collection ([source.storage])",
            st.location
        )).collect();
        return Ok(Outcome::Planned { plan, notes });
    }
    let state = StateStore::open(&cfg.job.state_dir)?;
    check_copy_mode(&state, &plan, cfg.source.storage.is_some())?;
    let storage = match &cfg.source.storage {
        Some(st) => {
            let budget = DecodeBudget::new(cfg.copy.decode_budget_bytes);
            Some(StorageSnapshots::take(&st.location, &cfg.source.database, budget, &source, &state, &plan).await?)
        }
        None => None,
    };
    let fresh = copy::prepare_targets(&target, &plan, &state, opts.if_exists).await?;
    finish::load_sources(&source, &plan).await?;
    let copier = Copier {
        target: target.clone(),
        state,
        opts: CopyOptions::from(&cfg.copy),
        progress: Progress::new(opts.quiet),
        shutdown,
    };
    let snapshot_ts = match storage {
        Some(_) => 0,
        None => sources::query::snapshot_timestamp(&source)
            .await
            .map_err(|source| PlanError::Connect { side: "source", source })?,
    };
    let reports = match &storage {
        Some(s) => copier.copy_all(&plan, &fresh, async |i| Ok(s.reader(i).await?)).await?,
        None => {
            let query = async |i: usize| QueryReader::new(&source, &plan.collections[i], snapshot_ts, &copier.opts).await;
            copier.copy_all(&plan, &fresh, query).await?
        }
    };
    let counts = finish::finish_targets(
        &target,
        &plan.collections,
        Finish { index: opts.index, flush: true, count: true, keep_loaded: opts.load },
    )
    .await?;
    let mut summaries = Vec::new();
    for ((c, copy), target_count) in plan.collections.iter().zip(reports).zip(counts) {
        let mut s = CollectionSummary::unchecked(copy);
        if let Some(target_count) = target_count {
            count_source(&source, &target, c, target_count, &mut s).await?;
        }
        summaries.push(s);
    }
    for c in plan.collections.iter().filter(|c| c.load_source) {
        if let Err(e) = source.release(&c.source_name).await {
            tracing::warn!(collection = %c.source_name, error = %e, "could not release the source collection ferry loaded");
        }
    }
    Ok(Outcome::Done(summaries))
}

/// Fills in the count check of `s`: the target's count, the source's, and both sides'
/// distinct keys when the source repeats keys. A share of a split collection is not counted.
async fn count_source(
    source: &MilvusClient,
    target: &MilvusClient,
    c: &CollectionPlan,
    target_count: u64,
    s: &mut CollectionSummary,
) -> Result<(), MigrateError> {
    if let Some(f) = &c.shards {
        tracing::info!(collection = %c.target_name, share = %f.describe(), "count check skipped: this instance moved a share of the collection ([source.wal] channels); ferry verify compares the share key by key");
        return Ok(());
    }
    s.target_count = target_count;
    s.source_count = source.count(&c.source_name, &[]).await.map_err(CopyError::step(&c.source_name, "count source"))?;
    let keys = finish::distinct_keys(source, target, c, None, s.source_count, s.target_count)
        .await
        .map_err(|source| MigrateError::KeyCount { collection: c.source_name.clone(), source })?;
    (s.source_keys, s.target_keys) = (keys.source, keys.target);
    s.count_checked = true;
    if let Some(keys) = s.source_keys {
        tracing::warn!(
            collection = %c.source_name,
            rows = s.source_count,
            keys,
            "the source holds {} rows more than distinct primary keys (Milvus does not enforce key uniqueness); the target holds one row per key",
            s.source_count - keys
        );
    }
    Ok(())
}

/// Fails when a checked collection's target does not hold one row per source key.
pub fn check_counts(summaries: &[CollectionSummary]) -> Result<(), MigrateError> {
    let keys = |k: Option<u64>| k.map(|k| format!(" ({k} distinct keys)")).unwrap_or_default();
    let mismatches: Vec<String> = summaries
        .iter()
        .filter(|s| s.count_checked && !s.counts_match())
        .map(|s| {
            format!(
                "{} has {} rows{} on the source, {} has {} rows{} on the target",
                s.copy.source,
                s.source_count,
                keys(s.source_keys),
                s.copy.target,
                s.target_count,
                keys(s.target_keys)
            )
        })
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::CountMismatch { details: mismatches.join("; ") })
    }
}

/// Records how the job copies each collection, and refuses a re-run that would copy it the
/// other way: query and storage copies keep separate progress, so switching could write rows
/// already on the target a second time.
fn check_copy_mode(state: &StateStore, plan: &Plan, storage: bool) -> Result<(), MigrateError> {
    let now = if storage { "from the source's binlogs ([source.storage])" } else { "by query" };
    for c in &plan.collections {
        let key = keys::copy_mode(&c.target_name);
        match state.get::<String>(&key)? {
            Some(was) if was != now => {
                return Err(MigrateError::CopyModeChanged { collection: c.target_name.clone(), was, now })
            }
            Some(_) => {}
            None => state.put(&key, &now.to_string())?,
        }
    }
    Ok(())
}

