//! `ferry import-backup`: a milvus-backup backup into the target.
//!
//! Schemas, partitions, shards, consistency level and properties come from the backup's
//! meta (the backup has no index definitions ferry reads, so `--index copy` creates none and
//! the default is AUTOINDEX). Deletes are gathered once per collection from every segment's
//! delta logs (L0 segments included) and applied to each segment as it is read: a delete
//! removes the rows of its key inserted before it, whichever segment holds them.

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
use crate::proto::common::KeyValuePair;
use crate::proto::milvus::DescribeCollectionResponse;
use crate::sources::backup::{BackupCollection, BackupSegment, BackupSource};
use crate::sources::binlog::{DecodeBudget, Deletes};
use crate::state::StateStore;

/// State key of one segment of one backup imported into `target`.
fn state_key(target: &str, backup: &str, segment: i64) -> String {
    format!("import/{target}/{backup}/{segment}")
}

/// What planning needs, from the backup's meta.
fn source_collection(c: &BackupCollection) -> SourceCollection {
    let partition_key = c.schema.fields.iter().any(|f| f.is_partition_key);
    SourceCollection {
        name: c.name.clone(),
        desc: DescribeCollectionResponse {
            schema: Some(c.schema.clone()),
            collection_id: c.id,
            shards_num: c.shards,
            consistency_level: c.consistency,
            collection_name: c.name.clone(),
            db_name: c.db_name.clone(),
            properties: c
                .properties
                .iter()
                .map(|(k, v)| KeyValuePair {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            num_partitions: if partition_key {
                c.partitions.len() as i64
            } else {
                0
            },
            ..Default::default()
        },
        partitions: c
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.id))
            .collect(),
        indexes: Vec::new(),
        row_estimate: c.num_rows().max(0) as u64,
        load_source: false,
    }
}

/// Plans the import of the selected collections of an opened backup.
fn plan_backup<'a>(
    cfg: &JobConfig,
    src: &'a BackupSource,
    target_version: &str,
    opts: &ImportOptions,
    location: &str,
) -> Result<(Plan, Vec<&'a BackupCollection>), ImportError> {
    let names: Vec<String> = src.collections().iter().map(|c| c.name.clone()).collect();
    let mut collections = Vec::new();
    let mut sources = Vec::new();
    for (name, dst, description) in select(cfg, &names, location)? {
        let coll = src
            .collection(&name)
            .expect("select returns names of the backup's collections");
        collections.push(plan::plan_described(
            source_collection(coll),
            &dst,
            description.as_deref(),
            target_version,
            PlanOptions {
                allow_autoid_off: opts.allow_autoid_off,
            },
        )?);
        sources.push(coll);
    }
    let version = &src.info().milvus_version;
    Ok((
        Plan {
            collections,
            source_version: format!(
                "{} (backup {:?} in {location})",
                if version.is_empty() {
                    "(version unknown)"
                } else {
                    version
                },
                src.name(),
            ),
            target_version: target_version.to_string(),
        },
        sources,
    ))
}

/// Imports a backup. Returns one summary per collection; the caller checks the counts
/// ([`super::check_counts`]) after printing them.
pub async fn import_backup(
    cfg: &JobConfig,
    opts: &ImportOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<ImportSummary>, ImportError> {
    let src = BackupSource::open(&opts.path, opts.backup.as_deref())
        .await?
        .with_budget(DecodeBudget::new(cfg.copy.decode_budget_bytes));
    let location = opts.path.trim_end_matches('/').to_string();
    let target = connect_target(cfg).await?;
    plan::check_database("target", &target).await?;
    let target_version = target.server_version().await.unwrap_or_default();
    let (plan, colls) = plan_backup(cfg, &src, &target_version, opts, &location)?;
    if opts.dry_run {
        print!("{}", plan::render(&plan));
        for (c, coll) in plan.collections.iter().zip(&colls) {
            println!(
                "{} -> {}: {} segments, {} rows in the backup meta (deletes not applied yet)",
                c.source_name,
                c.target_name,
                coll.segments().count(),
                coll.num_rows()
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
    Ok(summaries)
}

pub(super) async fn import_collection(
    importer: &Importer,
    src: &BackupSource,
    c: &CollectionPlan,
    coll: &BackupCollection,
    fresh: bool,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let segments: Vec<(&str, &BackupSegment)> = coll
        .partitions
        .iter()
        .flat_map(|p| {
            p.segments
                .iter()
                .filter(|s| !s.is_l0)
                .map(move |s| (p.name.as_str(), s))
        })
        .collect();
    let key = |seg: &BackupSegment| state_key(&c.target_name, src.name(), seg.segment_id);
    let mut done_before = 0;
    for (_, seg) in &segments {
        if let Some(st) = importer.state.get::<SegmentState>(&key(seg))? {
            done_before += st.rows_done;
        }
    }
    // Held (and counted in the decode budget) until every segment is copied.
    let (deletes, _deletes_held) = src.collection_deletes_held(coll).await?;
    let progress =
        importer
            .progress
            .collection(&c.target_name, coll.num_rows().max(0) as u64, done_before);
    let before = progress.done();
    stream::iter(segments.iter().map(Ok))
        .try_for_each_concurrent(importer.parallelism, |(partition, seg)| {
            let to = SegmentTarget {
                collection: &c.target_name,
                // Partition-key collections: Milvus routes each row by its key.
                partition: if c.partition_key { "" } else { partition },
                key: key(seg),
                fresh_target: fresh,
                progress: &progress,
            };
            let deletes = &deletes;
            async move { import_segment(importer, src, c, coll, seg, deletes, to).await }
        })
        .await?;
    progress.finish();
    let mut states = Vec::new();
    for (_, seg) in &segments {
        states.push(
            importer
                .state
                .get::<SegmentState>(&key(seg))?
                .unwrap_or_default(),
        );
    }
    Ok(summary(
        c,
        &progress,
        before,
        started,
        &states,
        coll.num_rows().max(0) as u64,
    ))
}

async fn import_segment(
    importer: &Importer,
    src: &BackupSource,
    c: &CollectionPlan,
    coll: &BackupCollection,
    seg: &BackupSegment,
    deletes: &Deletes,
    to: SegmentTarget<'_>,
) -> Result<(), ImportError> {
    let mut st: SegmentState = importer.state.get(&to.key)?.unwrap_or_default();
    if st.done {
        return Ok(());
    }
    if importer.stopping() {
        return Err(ImportError::Interrupted);
    }
    // Parsed and checked whole before anything of it is written; `_held` is the part of the
    // decode budget the rows take, returned once they are written.
    let (mut data, _held) = src.read_segment_held(coll, seg).await?;
    let deleted = data.apply_deletes(deletes, &c.pk_field)? as u64;
    let rows = data.rows.len() as u64;
    if st.rows_done > 0 && (st.rows, st.deleted) != (rows, deleted) {
        return Err(ImportError::Segment {
            collection: c.source_name.clone(),
            segment: seg.segment_id.to_string(),
            reason: format!(
                "an earlier run wrote {} of its rows, reading {} rows ({} deleted); now it \
                 reads {rows} rows ({deleted} deleted): the backup changed in between, so the \
                 rows on the target cannot be matched up. Import into a new target collection \
                 (or a new state_dir)",
                st.rows_done, st.rows, st.deleted
            ),
        });
    }
    st.rows = rows;
    st.deleted = deleted;
    importer.write(&to, &mut st, &data.rows, 0).await?;
    st.done = true;
    st.intent = None;
    importer.state.put(&to.key, &st)?;
    tracing::info!(
        collection = %c.target_name,
        segment = seg.segment_id,
        rows,
        deleted,
        "segment imported"
    );
    Ok(())
}
