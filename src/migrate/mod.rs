//! Offline migration (`ferry migrate`): plan, create targets, copy every row, flush, check
//! counts, build indexes, optionally load. The snapshot phase of a zero-downtime job runs the
//! same steps but the count check, which only holds once writes stop.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::JobConfig;
use crate::milvus::{MilvusClient, MilvusError};
use crate::plan::{self, IfExists, Plan, PlanError, PlanOptions, TargetState};
use crate::proto::common::KeyValuePair;
use crate::proto::schema::DataType;
use crate::snapshot::{self, progress::Progress, CopyOptions, CopyReport, Copier, SnapshotError};
use crate::sources::import::storage::StorageSnapshots;
use crate::state::{StateError, StateStore};

/// Errors of a migration run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{side}: {source}")]
    Connect {
        side: &'static str,
        source: MilvusError,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("collection {collection:?}: {step} failed: {source}")]
    Step {
        collection: String,
        step: &'static str,
        source: MilvusError,
    },
    #[error("row count check failed: {details}")]
    CountMismatch { details: String },
    #[error(transparent)]
    Storage(Box<crate::sources::import::ImportError>),
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

/// How indexes are made on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexMode {
    /// The source's index definitions, as they are.
    Copy,
    /// AUTOINDEX on every vector field (metric from the source index when it has one).
    Autoindex,
    /// No index.
    None,
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

/// What a run did, per collection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectionSummary {
    #[serde(flatten)]
    pub copy: CopyReport,
    pub source_count: u64,
    /// The source's distinct primary keys, when fewer than `source_count` (see
    /// [`distinct_keys`]); the count check then compares them to `target_keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_keys: Option<u64>,
    pub target_count: u64,
    /// The target's distinct primary keys, counted when `source_keys` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_keys: Option<u64>,
    /// False when the target could not be counted (no index to load it with).
    pub count_checked: bool,
}

impl CollectionSummary {
    /// The rows the target should hold: one per source primary key.
    pub fn expected_target_count(&self) -> u64 {
        self.source_keys.unwrap_or(self.source_count)
    }

    /// The target's rows (its distinct keys, when those were counted) equal the source's
    /// distinct keys.
    pub fn counts_match(&self) -> bool {
        self.expected_target_count() == self.target_keys.unwrap_or(self.target_count)
    }
}

/// Connects to both sides, failing with a message that says which side is unreachable.
pub async fn connect(cfg: &JobConfig) -> Result<(MilvusClient, MilvusClient), MigrateError> {
    let source = MilvusClient::connect(&cfg.source.connect_options())
        .await
        .map_err(|source| MigrateError::Connect { side: "source", source })?;
    let target = MilvusClient::connect(&cfg.target.connect_options())
        .await
        .map_err(|source| MigrateError::Connect { side: "target", source })?;
    Ok((source, target))
}

/// Key under which the job records that it created a target collection itself.
fn created_key(collection: &str) -> String {
    format!("created/{collection}")
}

/// Creates the targets, remembering which ones this job created (so a re-run after a crash
/// resumes into them without `--if-exists=resume`). Returns, per collection, whether the
/// target started empty under this job.
pub async fn prepare_targets(
    target: &MilvusClient,
    plan: &Plan,
    state: &StateStore,
    if_exists: IfExists,
) -> Result<Vec<bool>, MigrateError> {
    let mut mode = if_exists;
    let mut fresh = Vec::new();
    for c in &plan.collections {
        if state.get::<bool>(&created_key(&c.target_name))?.unwrap_or(false) {
            mode = IfExists::Resume;
        }
    }
    let states = plan::ensure_target(target, plan, mode).await?;
    for (c, s) in plan.collections.iter().zip(states) {
        let ours = state.get::<bool>(&created_key(&c.target_name))?.unwrap_or(false);
        if s == TargetState::Created {
            state.put(&created_key(&c.target_name), &true)?;
        }
        fresh.push(s == TargetState::Created || ours);
    }
    Ok(fresh)
}

/// Loads the source collections the plan found unloaded (Milvus 2.3 queries only loaded
/// collections); callers release them when done.
pub async fn load_sources(source: &MilvusClient, plan: &Plan) -> Result<(), MigrateError> {
    for c in plan.collections.iter().filter(|c| c.load_source) {
        tracing::info!(collection = %c.source_name, "loading the source collection to read it");
        source
            .load(&c.source_name, Duration::from_secs(900))
            .await
            .map_err(|e| MigrateError::Step { collection: c.source_name.clone(), step: "load source", source: e })?;
    }
    Ok(())
}

/// Runs an offline migration end to end.
pub async fn migrate(
    cfg: &JobConfig,
    opts: &MigrateOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<CollectionSummary>, MigrateError> {
    let (source, target) = connect(cfg).await?;
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
        print!("{}", plan::render(&plan));
        if let Some(st) = &cfg.source.storage {
            println!(
                "rows: read from the source's binlogs under {} after flushing each source collection ([source.storage])",
                st.location
            );
        }
        return Ok(Vec::new());
    }
    let state = StateStore::open(&cfg.job.state_dir)?;
    check_copy_mode(&state, &plan, cfg.source.storage.is_some())?;
    let storage_err = |e| MigrateError::Storage(Box::new(e));
    let storage = match cfg.source.storage {
        Some(_) => Some(StorageSnapshots::take(cfg, &source, &state, &plan).await.map_err(storage_err)?),
        None => None,
    };
    let fresh = prepare_targets(&target, &plan, &state, opts.if_exists).await?;
    load_sources(&source, &plan).await?;
    let mut summaries = if let Some(storage) = storage {
        storage
            .copy(target.clone(), &plan, fresh, opts.quiet, shutdown)
            .await
            .map_err(storage_err)?
        .into_iter()
        .map(|s| CollectionSummary { copy: s.copy.copy, ..unchecked() })
        .collect()
    } else {
        copy_by_query(cfg, &source, &target, &plan, fresh, state, opts.quiet, shutdown).await?
    };
    let names: Vec<String> = plan.collections.iter().map(|c| c.target_name.clone()).collect();
    target
        .flush(&names, Duration::from_secs(600))
        .await
        .map_err(|source| MigrateError::Step {
            collection: names.join(","),
            step: "flush",
            source,
        })?;
    // Counting needs a loaded target (Milvus 2.3), and loading needs an index: so indexes
    // come first, and the target is released again unless --load asked for it.
    let mut mismatches = Vec::new();
    for (c, s) in plan.collections.iter().zip(summaries.iter_mut()) {
        let Some(target_count) = index_and_count(&target, c, opts.index, opts.load).await? else {
            s.count_checked = false;
            continue;
        };
        if let Some(f) = &c.shards {
            tracing::info!(collection = %c.target_name, share = %f.describe(), "count check skipped: this instance moved a share of the collection ([source.wal] channels); ferry verify compares the share key by key");
            continue;
        }
        s.target_count = target_count;
        s.source_count = source.count(&c.source_name, &[]).await.map_err(|source| MigrateError::Step {
            collection: c.source_name.clone(),
            step: "count source",
            source,
        })?;
        let keys = distinct_keys(&source, &target, c, None, s.source_count, s.target_count)
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
        if !s.counts_match() {
            let keys = |k: Option<u64>| k.map(|k| format!(" ({k} distinct keys)")).unwrap_or_default();
            mismatches.push(format!(
                "{} has {} rows{} on the source, {} has {} rows{} on the target",
                c.source_name,
                s.source_count,
                keys(s.source_keys),
                c.target_name,
                s.target_count,
                keys(s.target_keys)
            ));
        }
    }
    for c in plan.collections.iter().filter(|c| c.load_source) {
        if let Err(e) = source.release(&c.source_name).await {
            tracing::warn!(collection = %c.source_name, error = %e, "could not release the source collection ferry loaded");
        }
    }
    if !mismatches.is_empty() {
        return Err(MigrateError::CountMismatch {
            details: mismatches.join("; "),
        });
    }
    Ok(summaries)
}

/// Records how the job copies each collection, and refuses a re-run that would copy it the
/// other way: query and storage copies keep separate progress, so switching could write rows
/// already on the target a second time.
fn check_copy_mode(state: &StateStore, plan: &Plan, storage: bool) -> Result<(), MigrateError> {
    let now = if storage { "from the source's binlogs ([source.storage])" } else { "by query" };
    for c in &plan.collections {
        let key = format!("copy-mode/{}", c.target_name);
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

/// A summary whose counts are still to be taken.
fn unchecked() -> CollectionSummary {
    CollectionSummary {
        copy: CopyReport::default(),
        source_count: 0,
        source_keys: None,
        target_keys: None,
        target_count: 0,
        count_checked: false,
    }
}

/// The snapshot copy by key-paged queries of the source, pinned to one timestamp.
#[allow(clippy::too_many_arguments)]
async fn copy_by_query(
    cfg: &JobConfig,
    source: &MilvusClient,
    target: &MilvusClient,
    plan: &Plan,
    fresh: Vec<bool>,
    state: StateStore,
    quiet: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<CollectionSummary>, MigrateError> {
    let progress = Progress::new(quiet);
    let copier = Copier {
        source: source.clone(),
        target: target.clone(),
        state,
        opts: CopyOptions::from(&cfg.copy),
        progress: progress.clone(),
        shutdown,
    };
    let snapshot_ts = snapshot::snapshot_timestamp(source)
        .await
        .map_err(|source| MigrateError::Connect { side: "source", source })?;
    progress
        .while_running(async {
            let mut summaries = Vec::new();
            for (c, fresh) in plan.collections.iter().zip(fresh) {
                let copy = copier.copy_collection(c, snapshot_ts, fresh).await?;
                summaries.push(CollectionSummary { copy, ..unchecked() });
            }
            Ok(summaries)
        })
        .await
}

/// Distinct primary keys of both sides of a count check, when `count(*)` cannot be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DistinctKeys {
    /// The source's distinct keys, when fewer than its `count(*)`.
    pub source: Option<u64>,
    /// The target's distinct keys, counted whenever the source's were fewer than its rows.
    pub target: Option<u64>,
}

/// The distinct primary keys of `collection` (or one `partition` of it) on both sides, when
/// the source's are fewer than its `source_rows` by `count(*)`; both `None` when every source
/// key has one row.
///
/// Milvus does not enforce key uniqueness: inserting an existing key, or an upsert interrupted
/// between its Delete and Insert messages (a broker failure), leaves two rows of one key in a
/// partition, and an upsert into another partition than the key's leaves the key in both
/// (the demo's writer does that: 53,505 rows by `count(*)`, 53,145 keys by a collection-wide
/// query, on source and target alike). A query sees one row per key. So when the source's
/// keys are fewer than its rows, the counts compared are the distinct keys of both sides. The source's
/// keys are read (keys only) whenever `source_rows` is at least `target_rows`: equal counts can
/// hide a repeated source key and an extra target key, which cancel out. Only a target with
/// more rows needs no look at the source: no repeated source key explains that.
pub async fn distinct_keys(
    source: &MilvusClient,
    target: &MilvusClient,
    c: &crate::plan::CollectionPlan,
    partition: Option<&str>,
    source_rows: u64,
    target_rows: u64,
) -> Result<DistinctKeys, crate::milvus::PagerError> {
    if source_rows < target_rows || source_rows == 0 {
        return Ok(DistinctKeys::default());
    }
    let count = |client: &MilvusClient, name: &str| {
        let mut pager = crate::milvus::KeyPager::new(name, &c.pk_field, Vec::new());
        pager.partitions = partition.into_iter().map(String::from).collect();
        let client = client.clone();
        async move { pager.count_keys(&client).await }
    };
    let source_keys = count(source, &c.source_name).await?;
    if source_keys >= source_rows {
        return Ok(DistinctKeys::default());
    }
    let target_keys = count(target, &c.target_name).await?;
    Ok(DistinctKeys { source: Some(source_keys), target: Some(target_keys) })
}

/// The end of every copy into a target collection: builds its indexes as `mode` says, loads
/// it (counting needs a loaded collection on Milvus 2.3, and loading needs an index), counts
/// its rows, and releases it again unless `keep_loaded`. `None` when the target has no index
/// (`--index none`), so it could not be counted.
pub async fn index_and_count(
    target: &MilvusClient,
    c: &crate::plan::CollectionPlan,
    mode: IndexMode,
    keep_loaded: bool,
) -> Result<Option<u64>, MigrateError> {
    let step = |step: &'static str| {
        let collection = c.target_name.clone();
        move |source| MigrateError::Step { collection, step, source }
    };
    create_indexes(target, c, mode).await?;
    let indexed = !target.describe_indexes(&c.target_name).await.map_err(step("describe index"))?.is_empty();
    if !indexed {
        tracing::warn!(collection = %c.target_name, "no index on the target (--index none): count check skipped");
        return Ok(None);
    }
    target.load(&c.target_name, Duration::from_secs(900)).await.map_err(step("load"))?;
    let count = target.count(&c.target_name, &[]).await.map_err(step("count target"))?;
    if !keep_loaded {
        target.release(&c.target_name).await.map_err(step("release"))?;
    }
    Ok(Some(count))
}

/// Index parameters Milvus takes back in `CreateIndex` (describe adds bookkeeping keys).
const INDEX_KEYS: [&str; 3] = ["index_type", "metric_type", "params"];

/// Creates the target's indexes as `mode` says; an index that already exists is kept.
pub async fn create_indexes(
    target: &MilvusClient,
    c: &crate::plan::CollectionPlan,
    mode: IndexMode,
) -> Result<(), MigrateError> {
    let step = |source| MigrateError::Step {
        collection: c.target_name.clone(),
        step: "create index",
        source,
    };
    let existing = target.describe_indexes(&c.target_name).await.map_err(step)?;
    let has = |field: &str| existing.iter().any(|i| i.field_name == field);
    match mode {
        IndexMode::None => {}
        IndexMode::Copy => {
            for i in &c.indexes {
                if has(&i.field_name) {
                    continue;
                }
                let params: Vec<KeyValuePair> = i
                    .params
                    .iter()
                    .filter(|kv| INDEX_KEYS.contains(&kv.key.as_str()))
                    .cloned()
                    .collect();
                target
                    .create_index(&c.target_name, &i.field_name, &i.index_name, &params)
                    .await
                    .map_err(step)?;
            }
        }
        IndexMode::Autoindex => {
            for f in c.schema().fields.iter() {
                let t = DataType::try_from(f.data_type).unwrap_or(DataType::None);
                if !matches!(t, DataType::FloatVector | DataType::BinaryVector) || has(&f.name) {
                    continue;
                }
                let metric = c
                    .indexes
                    .iter()
                    .find(|i| i.field_name == f.name)
                    .and_then(|i| i.params.iter().find(|kv| kv.key == "metric_type"))
                    .map(|kv| kv.value.clone())
                    .unwrap_or_else(|| {
                        if t == DataType::BinaryVector { "HAMMING" } else { "L2" }.to_string()
                    });
                let params = vec![
                    KeyValuePair { key: "index_type".into(), value: "AUTOINDEX".into() },
                    KeyValuePair { key: "metric_type".into(), value: metric },
                ];
                target
                    .create_index(&c.target_name, &f.name, "", &params)
                    .await
                    .map_err(step)?;
            }
        }
    }
    Ok(())
}

/// The end-of-run table.
pub fn render_summary(summaries: &[CollectionSummary]) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "{:<24} {:<24} {:>12} {:>12} {:>9} {:>10} {:>12}\n",
        "source", "target", "rows", "bytes", "seconds", "rows/s", "count check"
    );
    for c in summaries {
        let _ = writeln!(
            s,
            "{:<24} {:<24} {:>12} {:>12} {:>9.1} {:>10.0} {:>12}",
            c.copy.source,
            c.copy.target,
            c.copy.rows,
            c.copy.bytes,
            c.copy.seconds,
            c.copy.rows_per_s(),
            if !c.count_checked {
                "skipped".to_string()
            } else if !c.counts_match() {
                format!("{}!={}", c.expected_target_count(), c.target_keys.unwrap_or(c.target_count))
            } else if let Some(keys) = c.source_keys {
                format!("ok {} (+{} repeated keys)", c.target_keys.unwrap_or(c.target_count), c.source_count - keys)
            } else {
                format!("ok {}", c.target_count)
            }
        );
    }
    s
}
