//! The job's collections, fixed when it starts.
//!
//! The WAL names collections by ID, and a name can change what it points to while a job
//! runs: a collection dropped and re-created under its name, or another one renamed to it.
//! So the first run records each source collection's ID, name, schema, partitions (by ID)
//! and indexes in the job's state, and every later run plans from that record, never from a
//! fresh lookup by name. It then checks the names still point to the recorded IDs: a name
//! that points elsewhere is an error naming it, not a silent re-route of the job.

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::config::JobConfig;
use crate::milvus::MilvusClient;
use crate::plan::{self, Plan, PlanError, PlanOptions, SourceCollection};
use crate::proto::milvus::{DescribeCollectionResponse, IndexDescription};
use crate::state::keys::JOB_COLLECTIONS;
use crate::state::StateStore;

use super::JobError;


/// One source collection as the job first saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedCollection {
    pub source: String,
    pub target: String,
    pub description: Option<String>,
    pub collection_id: i64,
    /// `DescribeCollectionResponse`, protobuf-encoded.
    pub describe: Vec<u8>,
    /// (name, ID) of each partition at the start.
    pub partitions: Vec<(String, i64)>,
    /// `IndexDescription`s, protobuf-encoded.
    pub indexes: Vec<Vec<u8>>,
    pub row_estimate: u64,
    pub load_source: bool,
}

impl RecordedCollection {
    pub fn of(c: &plan::CollectionPlan, description: Option<String>) -> Self {
        RecordedCollection {
            source: c.source_name.clone(),
            target: c.target_name.clone(),
            description,
            collection_id: c.source_id(),
            describe: c.source.encode_to_vec(),
            partitions: c.partitions.clone(),
            indexes: c.indexes.iter().map(Message::encode_to_vec).collect(),
            row_estimate: c.row_estimate,
            load_source: c.load_source,
        }
    }

    /// The collection's plan, as recorded.
    pub fn plan(&self, target_version: &str, opts: PlanOptions) -> Result<plan::CollectionPlan, JobError> {
        plan::plan_described(self.source_collection()?, &self.target, self.description.as_deref(), target_version, opts)
            .map_err(JobError::Plan)
    }

    fn source_collection(&self) -> Result<SourceCollection, JobError> {
        let corrupt = |e: prost::DecodeError| JobError::Record(format!("collection {:?}: {e}", self.source));
        Ok(SourceCollection {
            name: self.source.clone(),
            desc: DescribeCollectionResponse::decode(&self.describe[..]).map_err(corrupt)?,
            partitions: self.partitions.clone(),
            indexes: self
                .indexes
                .iter()
                .map(|b| IndexDescription::decode(&b[..]))
                .collect::<Result<_, _>>()
                .map_err(corrupt)?,
            row_estimate: self.row_estimate,
            load_source: self.load_source,
        })
    }
}

/// Collections the stream took on while the job ran (a job over a whole database), from the
/// log's records.
pub fn followed(log: &crate::log::DurableLog) -> Result<Vec<RecordedCollection>, JobError> {
    log.followed()?
        .iter()
        .map(|b| serde_json::from_slice(b).map_err(|e| JobError::Record(format!("a followed collection's record: {e}"))))
        .collect()
}

/// The job's plan: built from the source and recorded on the first run; from the record on
/// every later one, after checking the source's names still point to the recorded IDs.
/// `dropped`: collections whose drop the stream applied (they are not checked).
pub async fn plan(
    source: &MilvusClient,
    target: &MilvusClient,
    cfg: &JobConfig,
    opts: PlanOptions,
    state: &StateStore,
    log: &crate::log::DurableLog,
    snapshot_done: bool,
) -> Result<Plan, JobError> {
    let dropped = log.dropped();
    let Some(recorded) = state.get::<Vec<RecordedCollection>>(JOB_COLLECTIONS)? else {
        let plan = plan::build(source, target, cfg, opts).await?;
        let description = |name: &str| cfg.collections.iter().find(|c| c.source == name).and_then(|c| c.description.clone());
        let record: Vec<RecordedCollection> =
            plan.collections.iter().map(|c| RecordedCollection::of(c, description(&c.source_name))).collect();
        state.put(JOB_COLLECTIONS, &record)?;
        for c in &record {
            tracing::info!(collection = %c.source, id = c.collection_id, partitions = ?c.partitions, "job collection recorded");
        }
        return Ok(plan);
    };
    check_selection(cfg, &recorded)?;
    let plan_err = JobError::Plan;
    let target_version = target.server_version().await.unwrap_or_default();
    let mut collections = Vec::new();
    // Collections followed since the start need no snapshot: their rows are on the WAL.
    let followed = followed(log)?;
    for (r, snapshotted) in recorded.iter().map(|r| (r, true)).chain(followed.iter().map(|r| (r, false))) {
        if !dropped.contains(&r.collection_id) {
            check_source(source, r, snapshot_done || !snapshotted).await?;
        }
        collections.push(r.plan(&target_version, opts)?);
    }
    if let Some(selected) = cfg.source.wal.as_ref().and_then(|w| w.selected_channels()) {
        plan::select_shards(&mut collections, &selected).map_err(plan_err)?;
    }
    Ok(Plan { collections, source_version: source.server_version().await.unwrap_or_default(), target_version })
}

/// On the job's first run only, once the stream's start positions are recorded: each
/// collection's partitions as they are now, in the plan and the record. A partition dropped
/// and re-created (a new ID), or created, between the record and the start positions has
/// rows before the start that only the snapshot can copy: the snapshot must copy it under
/// its new ID, which the stream then knows the target partition holds. Any later change is
/// on the WAL after the start. Never after the first run: a snapshot may have begun.
pub async fn refresh_partitions(source: &MilvusClient, plan: &mut Plan, state: &StateStore) -> Result<(), JobError> {
    let Some(mut recorded) = state.get::<Vec<RecordedCollection>>(JOB_COLLECTIONS)? else {
        return Ok(());
    };
    let mut changed = false;
    for c in plan.collections.iter_mut() {
        let mut now = source.list_partitions(&c.source_name).await.map_err(|e| {
            JobError::Copy(crate::copy::CopyError::Step { collection: c.source_name.clone(), step: "list partitions", source: e })
        })?;
        let mut was = c.partitions.clone();
        now.sort();
        was.sort();
        if now == was {
            continue;
        }
        tracing::info!(collection = %c.source_name, was = ?was, now = ?now, "partitions changed between the job's record and its start positions: the snapshot copies them as they are now");
        c.partitions = now.clone();
        if let Some(r) = recorded.iter_mut().find(|r| r.collection_id == c.source_id()) {
            r.partitions = now;
        }
        changed = true;
    }
    if changed {
        state.put(JOB_COLLECTIONS, &recorded)?;
    }
    Ok(())
}

/// A job file's `[[collections]]` must name what the job started with.
fn check_selection(cfg: &JobConfig, recorded: &[RecordedCollection]) -> Result<(), JobError> {
    if cfg.collections.is_empty() {
        return Ok(());
    }
    let mut now: Vec<(String, String)> =
        cfg.collections.iter().map(|c| (c.source.clone(), c.target_name().to_string())).collect();
    let mut then: Vec<(String, String)> = recorded.iter().map(|r| (r.source.clone(), r.target.clone())).collect();
    now.sort();
    then.sort();
    if now != then {
        let show = |v: &[(String, String)]| v.iter().map(|(s, t)| format!("{s} -> {t}")).collect::<Vec<_>>().join(", ");
        return Err(JobError::Record(format!(
            "the job file's [[collections]] ({}) differ from those the job started with ({}); a job's collections are fixed at its start: start a new job (another state_dir) for other collections",
            show(&now),
            show(&then)
        )));
    }
    Ok(())
}

/// The recorded collection's name must still point to its ID on the source.
async fn check_source(source: &MilvusClient, r: &RecordedCollection, snapshot_done: bool) -> Result<(), JobError> {
    let io = |e| JobError::Plan(PlanError::Milvus(e));
    if !source.has_collection(&r.source).await.map_err(io)? {
        if !snapshot_done {
            return Err(JobError::Record(format!(
                "source collection {:?} (ID {}) no longer exists under that name, and its snapshot is not complete",
                r.source, r.collection_id
            )));
        }
        // Its records still carry its ID: a rename changes nothing for the stream, and a
        // drop arrives as a DropCollection record (`stream.on_source_drop`).
        tracing::warn!(collection = %r.source, id = r.collection_id, "source collection no longer exists under its name: streaming what the WAL holds for its ID");
        return Ok(());
    }
    let now = source.describe_collection(&r.source).await.map_err(io)?.collection_id;
    if now != r.collection_id {
        return Err(JobError::Recreated { collection: r.source.clone(), was: r.collection_id, now });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(source: &str, target: &str) -> RecordedCollection {
        RecordedCollection {
            source: source.into(),
            target: target.into(),
            description: None,
            collection_id: 1,
            describe: DescribeCollectionResponse { collection_id: 1, ..Default::default() }.encode_to_vec(),
            partitions: vec![("_default".into(), 2)],
            indexes: vec![],
            row_estimate: 0,
            load_source: false,
        }
    }

    fn cfg(collections: &str) -> JobConfig {
        JobConfig::parse(
            &format!(
                "[job]\nname = \"j\"\nstate_dir = \"/tmp/x\"\n[source]\nuri = \"http://a:19530\"\n[target]\nuri = \"http://b:19530\"\n{collections}"
            ),
            std::path::Path::new("job.toml"),
        )
        .unwrap()
    }

    #[test]
    fn the_job_files_collections_must_match_the_record() {
        let recorded = [rec("a", "a2")];
        check_selection(&cfg("[[collections]]\nsource = \"a\"\ntarget = \"a2\"\n"), &recorded).unwrap();
        check_selection(&cfg(""), &recorded).unwrap();
        let err = check_selection(&cfg("[[collections]]\nsource = \"b\"\n"), &recorded).unwrap_err().to_string();
        assert!(err.contains("b -> b") && err.contains("a -> a2"), "{err}");
    }

    #[test]
    fn a_record_round_trips() {
        let r = rec("a", "a");
        let back: RecordedCollection = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        let sc = back.source_collection().unwrap();
        assert_eq!(sc.desc.collection_id, 1);
        assert_eq!(sc.partitions, vec![("_default".to_string(), 2)]);
    }
}
