//! `ferry import-1x`: Milvus 0.9–1.x data files into the target.
//!
//! Each 1.x collection (table) becomes a target collection with an Int64 primary key `id`
//! and a vector field `vector` of the table's dim: FloatVector for L2 and IP, BinaryVector
//! for HAMMING and JACCARD. Its planned index is AUTOINDEX with the 1.x metric mapped, so
//! both `--index autoindex` and `--index copy` create it. A selected table whose metric has
//! no 2.x equivalent fails the whole command before anything is created.
//!
//! A segment is checked before its first row is written (file headers against sizes, ids
//! against vectors, every `deleted_docs` offset), then read in row ranges of about
//! `copy.batch_bytes`, so a large segment never sits in memory whole. Deleted rows are
//! skipped; live rows keep file order, which is the segment's row order for resumption.

use tokio_util::sync::CancellationToken;

use super::{connect_target, finish_and_summarize, prepare, select, ImportError, ImportOptions, ImportSummary, Prepared};
use crate::config::JobConfig;
use crate::copy::Outcome;
use crate::plan::{self, Plan, PlanOptions, SourceCollection};
use crate::proto::common::{ConsistencyLevel, KeyValuePair};
use crate::proto::milvus::{DescribeCollectionResponse, IndexDescription};
use crate::sources::v1x::{V1xCollection, V1xReader, V1xSource, VECTOR_FIELD};

/// What planning needs, from `meta.json`; fails on a metric 2.x does not have.
fn source_collection(c: &V1xCollection) -> Result<SourceCollection, ImportError> {
    let metric = c.metric()?;
    let schema = c.schema()?;
    Ok(SourceCollection {
        name: c.collection.clone(),
        desc: DescribeCollectionResponse {
            schema: Some(schema),
            collection_name: c.collection.clone(),
            shards_num: 1,
            consistency_level: ConsistencyLevel::Bounded as i32,
            ..Default::default()
        },
        partitions: vec![("_default".into(), 0)],
        indexes: vec![IndexDescription {
            field_name: VECTOR_FIELD.into(),
            params: vec![
                KeyValuePair {
                    key: "index_type".into(),
                    value: "AUTOINDEX".into(),
                },
                KeyValuePair {
                    key: "metric_type".into(),
                    value: metric.as_str().into(),
                },
            ],
            ..Default::default()
        }],
        row_estimate: c.rows.max(0) as u64,
        load_source: false,
    })
}

/// Imports Milvus 1.x data: the plan of a dry run, or one summary per collection (the
/// caller checks the counts with [`super::check_counts`] after printing them).
pub async fn import_1x(
    cfg: &JobConfig,
    opts: &ImportOptions,
    shutdown: CancellationToken,
) -> Result<Outcome<ImportSummary>, ImportError> {
    let src = V1xSource::open(&opts.path).await?;
    let location = opts.path.trim_end_matches('/').to_string();
    let names: Vec<String> = src
        .collections()
        .iter()
        .map(|c| c.collection.clone())
        .collect();
    let selection = select(cfg, &names, &format!("{location}/meta.json"))?;
    // Every selected collection must be importable before a target is touched.
    let mut sources = Vec::new();
    for (name, dst, description) in &selection {
        let coll = src
            .collections()
            .iter()
            .find(|c| &c.collection == name)
            .expect("select returns names from meta.json");
        sources.push((source_collection(coll)?, coll, dst, description));
    }
    let target = connect_target(cfg).await?;
    plan::check_database("target", &target).await?;
    let target_version = target.server_version().await.unwrap_or_default();
    let mut collections = Vec::new();
    let mut colls = Vec::new();
    for (source, coll, dst, description) in sources {
        collections.push(plan::plan_described(
            source,
            dst,
            description.as_deref(),
            &target_version,
            PlanOptions {
                allow_autoid_off: opts.allow_autoid_off,
            },
        )?);
        colls.push(coll);
    }
    let plan = Plan {
        collections,
        source_version: format!("1.x (files in {location})"),
        target_version,
    };
    if opts.dry_run {
        let mut notes = Vec::new();
        for (c, coll) in plan.collections.iter().zip(&colls) {
            notes.push(format!(
                "{} -> {}: metric {}, {} segments, {} rows in meta.json",
                c.source_name,
                c.target_name,
                coll.metric()?.as_str(),
                coll.segments.len(),
                coll.rows
            ));
        }
        return Ok(Outcome::Planned { plan, notes });
    }
    let Prepared { copier, fresh } = prepare(cfg, opts, &target, &plan, shutdown).await?;
    let reports = copier
        .copy_all(&plan, &fresh, async |i| Ok(V1xReader { src: &src, coll: colls[i], c: &plan.collections[i] }))
        .await?;
    // The files decide what is expected: meta.json's count is only compared.
    let summaries = finish_and_summarize(&target, &plan, opts, reports, &vec![None; colls.len()]).await?;
    for (s, coll) in summaries.iter().zip(&colls) {
        if coll.rows > 0 && coll.rows as u64 != s.copy.source_count {
            tracing::warn!(
                collection = %coll.collection,
                meta_rows = coll.rows,
                live_rows = s.copy.source_count,
                "meta.json records a different row count than the files hold (the count check uses the files)"
            );
        }
    }
    Ok(Outcome::Done(summaries))
}
