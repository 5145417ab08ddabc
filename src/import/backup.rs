//! `ferry import-backup`: a milvus-backup backup into the target.
//!
//! Schemas, partitions, shards, consistency level and properties come from the backup's
//! meta (the backup has no index definitions ferry reads, so `--index copy` creates none and
//! the default is AUTOINDEX). Deletes are gathered once per collection from every segment's
//! delta logs (L0 segments included) and applied to each segment as it is read: a delete
//! removes the rows of its key inserted before it, whichever segment holds them.

use tokio_util::sync::CancellationToken;

use super::{connect_target, finish_and_summarize, prepare, select, ImportError, ImportOptions, ImportSummary, Prepared};
use crate::config::JobConfig;
use crate::copy::Outcome;
use crate::plan::{self, Plan, PlanOptions, SourceCollection};
use crate::proto::common::KeyValuePair;
use crate::proto::milvus::DescribeCollectionResponse;
use crate::sources::backup::{BackupCollection, BackupReader, BackupSource};
use crate::sources::binlog::DecodeBudget;

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

/// Imports a backup: the plan of a dry run, or one summary per collection (the caller
/// checks the counts with [`super::check_counts`] after printing them).
pub async fn import_backup(
    cfg: &JobConfig,
    opts: &ImportOptions,
    shutdown: CancellationToken,
) -> Result<Outcome<ImportSummary>, ImportError> {
    let src = BackupSource::open(&opts.path, opts.backup.as_deref())
        .await?
        .with_budget(DecodeBudget::new(cfg.copy.decode_budget_bytes));
    let location = opts.path.trim_end_matches('/').to_string();
    let target = connect_target(cfg).await?;
    plan::check_database("target", &target).await?;
    let target_version = target.server_version().await.unwrap_or_default();
    let (plan, colls) = plan_backup(cfg, &src, &target_version, opts, &location)?;
    if opts.dry_run {
        let notes = plan
            .collections
            .iter()
            .zip(&colls)
            .map(|(c, coll)| {
                format!(
                    "{} -> {}: {} segments, {} rows in the backup meta (deletes not applied yet)",
                    c.source_name,
                    c.target_name,
                    coll.segments().count(),
                    coll.num_rows()
                )
            })
            .collect();
        return Ok(Outcome::Planned { plan, notes });
    }
    let Prepared { copier, fresh } = prepare(cfg, opts, &target, &plan, shutdown).await?;
    let reports = copier
        .copy_all(&plan, &fresh, async |i| Ok(BackupReader::open(&src, colls[i], &plan.collections[i]).await?))
        .await?;
    let meta_rows: Vec<Option<u64>> = colls.iter().map(|c| Some(c.num_rows().max(0) as u64)).collect();
    Ok(Outcome::Done(finish_and_summarize(&target, &plan, opts, reports, &meta_rows).await?))
}
