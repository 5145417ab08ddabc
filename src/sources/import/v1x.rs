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

use std::time::Instant;

use futures::stream::{self, TryStreamExt};
use tokio::sync::watch;

use super::{
    connect_target, select, summary, ImportError, ImportOptions, ImportSummary,
    Importer, SegmentState, SegmentTarget,
};
use crate::config::JobConfig;
use crate::migrate;
use crate::plan::{self, CollectionPlan, Plan, PlanOptions, SourceCollection};
use crate::proto::common::{ConsistencyLevel, KeyValuePair};
use crate::proto::milvus::{DescribeCollectionResponse, IndexDescription};
use crate::sources::v1x::{V1xCollection, V1xSegment, V1xSource, VECTOR_FIELD};
use crate::state::StateStore;

fn state_key(target: &str, segment: &str) -> String {
    format!("import-1x/{target}/{segment}")
}

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

/// Imports Milvus 1.x data. Returns one summary per collection; the caller checks the
/// counts ([`super::check_counts`]) after printing them.
pub async fn import_1x(
    cfg: &JobConfig,
    opts: &ImportOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<ImportSummary>, ImportError> {
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
        print!("{}", plan::render(&plan));
        for (c, coll) in plan.collections.iter().zip(&colls) {
            println!(
                "{} -> {}: metric {}, {} segments, {} rows in meta.json",
                c.source_name,
                c.target_name,
                coll.metric()?.as_str(),
                coll.segments.len(),
                coll.rows
            );
        }
        return Ok(Vec::new());
    }
    let state = StateStore::open(&cfg.job.state_dir)?;
    let fresh = migrate::prepare_targets(&target, &plan, &state, opts.if_exists).await?;
    let importer = Importer::new(target, state, &cfg.copy, opts.quiet, shutdown);
    let mut summaries = importer
        .progress
        .while_running(async {
            let mut summaries = Vec::new();
            for ((c, coll), fresh) in plan.collections.iter().zip(&colls).zip(fresh) {
                summaries.push(import_collection(&importer, &src, c, coll, fresh).await?);
            }
            Ok::<_, ImportError>(summaries)
        })
        .await?;
    importer
        .finish(&plan, opts.index, opts.load, &mut summaries)
        .await?;
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
    Ok(summaries)
}

async fn import_collection(
    importer: &Importer,
    src: &V1xSource,
    c: &CollectionPlan,
    coll: &V1xCollection,
    fresh: bool,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let key = |seg: &V1xSegment| state_key(&c.target_name, &seg.segment);
    let mut done_before = 0;
    for seg in &coll.segments {
        if let Some(st) = importer.state.get::<SegmentState>(&key(seg))? {
            done_before += st.rows_done;
        }
    }
    let progress =
        importer
            .progress
            .collection(&c.target_name, coll.rows.max(0) as u64, done_before);
    let before = progress.done();
    stream::iter(coll.segments.iter().map(Ok))
        .try_for_each_concurrent(importer.parallelism, |seg| {
            let to = SegmentTarget {
                collection: &c.target_name,
                partition: "",
                key: key(seg),
                fresh_target: fresh,
                progress: &progress,
            };
            async move { import_segment(importer, src, c, coll, seg, to).await }
        })
        .await?;
    progress.finish();
    let mut states = Vec::new();
    for seg in &coll.segments {
        states.push(
            importer
                .state
                .get::<SegmentState>(&key(seg))?
                .unwrap_or_default(),
        );
    }
    let meta_rows = states.iter().map(|s| s.rows + s.deleted).sum();
    Ok(summary(
        c,
        &progress,
        before,
        started,
        &states,
        meta_rows,
    ))
}

async fn import_segment(
    importer: &Importer,
    src: &V1xSource,
    c: &CollectionPlan,
    coll: &V1xCollection,
    seg: &V1xSegment,
    to: SegmentTarget<'_>,
) -> Result<(), ImportError> {
    let mut st: SegmentState = importer.state.get(&to.key)?.unwrap_or_default();
    if st.done {
        return Ok(());
    }
    if importer.stopping() {
        return Err(ImportError::Interrupted);
    }
    let stored = src.stored_rows(seg).await?;
    // An empty range checks every header, the id/vector row counts and `deleted_docs`.
    src.read_rows(coll, seg, 0..0).await?;
    let row_bytes = match coll.metric()?.vector_kind() {
        crate::sources::v1x::VectorKind::Float => coll.dim as usize * 4,
        crate::sources::v1x::VectorKind::Binary => coll.dim as usize / 8,
    } + 8;
    let chunk = (importer.batch_bytes / row_bytes.max(1)).max(1);
    // Every vector is checked once before the first write (local files: cheap next to the
    // writes), so a value Milvus refuses fails the segment with nothing of it written.
    src.check_finite(coll, seg, chunk).await?;
    let mut live = 0u64;
    let mut start = 0;
    while start < stored {
        let end = (start + chunk).min(stored);
        let rows = src.read_rows(coll, seg, start..end).await?;
        importer.write(&to, &mut st, &rows, live).await?;
        live += rows.len() as u64;
        start = end;
    }
    if st.rows_done > live {
        return Err(ImportError::Segment {
            collection: coll.collection.clone(),
            segment: seg.segment.clone(),
            reason: format!(
                "an earlier run wrote {} rows of it, it now holds {live} live rows: the files \
                 changed in between. Import into a new target collection (or a new state_dir)",
                st.rows_done
            ),
        });
    }
    st.rows = live;
    st.deleted = stored as u64 - live;
    st.done = true;
    st.intent = None;
    importer.state.put(&to.key, &st)?;
    tracing::info!(
        collection = %c.target_name,
        segment = %seg.segment,
        rows = live,
        deleted = st.deleted,
        "segment imported"
    );
    Ok(())
}
