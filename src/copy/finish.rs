//! The end of every copy into a target, one sequence for `ferry migrate`, the imports,
//! `ferry run`'s snapshot and the cutover's post step: flush, indexes, load, count, release
//! ([`finish_targets`]); the distinct-keys count that makes a count check hold with repeated
//! source keys ([`distinct_keys`]); and the per-collection summary the commands print and
//! judge ([`CollectionSummary`], [`render_summary`]).

use std::time::Duration;

use super::{CopyError, CopyReport};
use crate::milvus::MilvusClient;
use crate::plan::{CollectionPlan, Plan};
use crate::proto::common::KeyValuePair;
use crate::proto::schema::DataType;

/// What the end of a copy does.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    pub index: IndexMode,
    /// Flush every target first (so counts see every row written).
    pub flush: bool,
    /// Count each indexed target (loading it to do so).
    pub count: bool,
    /// Leave indexed targets loaded (released after counting otherwise).
    pub keep_loaded: bool,
}

/// Finishes the targets of `collections`: flush (all at once), then per collection its
/// indexes as `f.index` says, and, when it has an index (counting needs a loaded collection
/// on Milvus 2.3, and loading needs an index), load, count, release unless `keep_loaded`.
/// Returns each target's count: `None` when not counted (not asked, or no index).
pub async fn finish_targets(
    target: &MilvusClient,
    collections: &[CollectionPlan],
    f: Finish,
) -> Result<Vec<Option<u64>>, CopyError> {
    if f.flush {
        let names: Vec<String> = collections.iter().map(|c| c.target_name.clone()).collect();
        target
            .flush(&names, Duration::from_secs(600))
            .await
            .map_err(CopyError::step(&names.join(","), "flush"))?;
    }
    let mut counts = Vec::new();
    for c in collections {
        let step = |step| CopyError::step(&c.target_name, step);
        create_indexes(target, c, f.index).await?;
        if !f.count && !f.keep_loaded {
            counts.push(None);
            continue;
        }
        if target.describe_indexes(&c.target_name).await.map_err(step("describe index"))?.is_empty() {
            if f.count {
                tracing::warn!(collection = %c.target_name, "no index on the target (--index none): count check skipped");
            }
            counts.push(None);
            continue;
        }
        target.load(&c.target_name, Duration::from_secs(900)).await.map_err(step("load"))?;
        let count = if f.count {
            Some(target.count(&c.target_name, &[]).await.map_err(step("count target"))?)
        } else {
            None
        };
        if !f.keep_loaded {
            target.release(&c.target_name).await.map_err(step("release"))?;
        }
        counts.push(count);
    }
    Ok(counts)
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
    /// A copy's summary whose counts are still to be taken.
    pub fn unchecked(copy: CopyReport) -> CollectionSummary {
        CollectionSummary {
            copy,
            source_count: 0,
            source_keys: None,
            target_count: 0,
            target_keys: None,
            count_checked: false,
        }
    }

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

/// Loads the source collections the plan found unloaded (Milvus 2.3 queries only loaded
/// collections); callers release them when done.
pub async fn load_sources(source: &MilvusClient, plan: &Plan) -> Result<(), CopyError> {
    for c in plan.collections.iter().filter(|c| c.load_source) {
        tracing::info!(collection = %c.source_name, "loading the source collection to read it");
        source
            .load(&c.source_name, Duration::from_secs(900))
            .await
            .map_err(CopyError::step(&c.source_name, "load source"))?;
    }
    Ok(())
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
    c: &CollectionPlan,
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

/// Index parameters Milvus takes back in `CreateIndex` (describe adds bookkeeping keys).
const INDEX_KEYS: [&str; 3] = ["index_type", "metric_type", "params"];

/// Creates the target's indexes as `mode` says; an index that already exists is kept.
pub async fn create_indexes(
    target: &MilvusClient,
    c: &CollectionPlan,
    mode: IndexMode,
) -> Result<(), CopyError> {
    let step = |source| CopyError::Step {
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
