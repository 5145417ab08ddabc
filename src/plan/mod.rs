//! Planning: which source collections move where, with which schema, and creating them on
//! the target. The same plan serves offline migration, zero-downtime jobs and imports.
//!
//! # Layout
//! - `schema`: target schema from source schema; structural comparison of two schemas.
//! - `target`: what a target server can hold, by its version.
//! - this file: [`Plan`] building (describe, validate, autoID policy) and [`ensure_target`].

pub mod schema;
pub mod target;

use std::fmt::Write;

use crate::config::JobConfig;
use crate::milvus::{CreateCollection, MilvusClient, MilvusError};
use crate::proto::common::{ConsistencyLevel, KeyValuePair};
use crate::proto::milvus::{DescribeCollectionResponse, IndexDescription};
use crate::proto::schema::{CollectionSchema, DataType, FieldSchema};

/// Errors of planning and target creation.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Milvus(#[from] MilvusError),
    /// A side could not be reached (`side`: "source" or "target").
    #[error("{side}: {source}")]
    Connect {
        side: &'static str,
        source: MilvusError,
    },
    #[error("collection {collection:?} does not exist in source database {database:?} (it has: {available})")]
    UnknownCollection {
        collection: String,
        database: String,
        available: String,
    },
    #[error("database {database:?} does not exist on the {side} ({uri}); it has: {available}")]
    UnknownDatabase {
        side: &'static str,
        database: String,
        uri: String,
        available: String,
    },
    #[error("collection {collection:?}: field {field:?} has type {data_type}, which ferry cannot migrate")]
    UnsupportedType {
        collection: String,
        field: String,
        data_type: String,
    },
    #[error("collection {collection:?}: field {field:?} is {data_type}, which the target ({target}) cannot hold: {reason}; nothing was created")]
    TargetCannotHold {
        collection: String,
        field: String,
        data_type: String,
        target: String,
        reason: String,
    },
    #[error("collection {collection:?} has autoID primary key {field:?}: {reason}")]
    AutoId {
        collection: String,
        field: String,
        reason: String,
    },
    #[error("target collection {collection:?} already exists with a different schema: {difference}")]
    SchemaMismatch { collection: String, difference: String },
    #[error("target collection {collection:?} already exists; pass --if-exists=resume to continue into it (its schema is identical)")]
    TargetExists { collection: String },
    #[error("collection {collection:?}: {reason}")]
    Invalid { collection: String, reason: String },
    #[error("[source.wal] channels selects {channels}, which carry no shard of the job's collections: {collections}")]
    NoShare { channels: String, collections: String },
}

impl PlanError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PlanError::Milvus(e) | PlanError::Connect { source: e, .. } if e.is_retryable())
    }
}

/// What to do when a target collection already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IfExists {
    /// Refuse to touch it.
    Fail,
    /// Continue into it when its schema is identical.
    Resume,
}

/// What the target's primary key gets when the source's is autoID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AutoIdPlan {
    /// The source key is not autoID.
    NotAutoId,
    /// The target keeps autoID and accepts given keys (`allow_insert_auto_id`).
    KeepAllowInsert,
    /// The target key is a plain key (operator passed `--autoid-off`).
    TurnedOff,
}

/// Planning options from the command line.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// The operator accepts turning autoID off on targets that cannot take given keys.
    pub allow_autoid_off: bool,
}

/// One collection's move.
#[derive(Debug, Clone)]
pub struct CollectionPlan {
    pub source_name: String,
    pub target_name: String,
    pub source: DescribeCollectionResponse,
    pub pk_field: String,
    pub pk_type: DataType,
    /// Source partitions (name, id).
    pub partitions: Vec<(String, i64)>,
    pub partition_key: bool,
    pub indexes: Vec<IndexDescription>,
    pub create: CreateCollection,
    pub autoid: AutoIdPlan,
    /// Fields read from the source (user fields, plus `$meta` with a dynamic field).
    pub output_fields: Vec<String>,
    /// Estimate from statistics (exact counts come from `count(*)`).
    pub row_estimate: u64,
    /// The source collection is not loaded: ferry loads it to read it, and releases it after.
    pub load_source: bool,
    /// This instance moves only these shards (`[source.wal] channels`); `None`: all of them.
    pub shards: Option<crate::milvus::ShardFilter>,
}

impl CollectionPlan {
    pub fn source_id(&self) -> i64 {
        self.source.collection_id
    }

    /// The source's physical DML channels this instance reads for the collection.
    pub fn channels(&self) -> Vec<String> {
        match &self.shards {
            Some(s) => s.channels.clone(),
            None => self.source.physical_channel_names.clone(),
        }
    }

    pub fn schema(&self) -> &CollectionSchema {
        &self.create.schema
    }

    /// Partitions to create on the target (user partitions; none for partition-key
    /// collections, whose partitions Milvus makes).
    pub fn user_partitions(&self) -> Vec<String> {
        if self.partition_key {
            return Vec::new();
        }
        self.partitions
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != "_default")
            .collect()
    }
}

/// The whole move.
#[derive(Debug, Clone)]
pub struct Plan {
    pub collections: Vec<CollectionPlan>,
    pub source_version: String,
    pub target_version: String,
}

/// Fails when the client's database does not exist on that side (`side` names it).
pub async fn check_database(
    side: &'static str,
    client: &MilvusClient,
) -> Result<(), PlanError> {
    match client.list_databases().await {
        Ok(dbs) if !dbs.iter().any(|d| d == client.database()) => Err(PlanError::UnknownDatabase {
            side,
            database: client.database().to_string(),
            uri: client.endpoint().to_string(),
            available: dbs.join(", "),
        }),
        // Servers without databases (Milvus Lite, < 2.2.9) answer Unimplemented.
        _ => Ok(()),
    }
}

/// Describes the selected source collections and plans their targets.
/// Connects to both sides, failing with a message that says which side is unreachable.
pub async fn connect(cfg: &JobConfig) -> Result<(MilvusClient, MilvusClient), PlanError> {
    let source = MilvusClient::connect(&cfg.source.connect_options())
        .await
        .map_err(|source| PlanError::Connect { side: "source", source })?;
    let target = MilvusClient::connect(&cfg.target.connect_options())
        .await
        .map_err(|source| PlanError::Connect { side: "target", source })?;
    Ok((source, target))
}

pub async fn build(
    source: &MilvusClient,
    target: &MilvusClient,
    cfg: &JobConfig,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    check_database("source", source).await?;
    check_database("target", target).await?;
    let source_version = source.server_version().await.unwrap_or_default();
    let target_version = target.server_version().await.unwrap_or_default();
    let existing = source.list_collections().await?;
    let selection: Vec<(String, String, Option<String>)> = if cfg.collections.is_empty() {
        let mut names = existing.clone();
        names.sort();
        names.into_iter().map(|n| (n.clone(), n, None)).collect()
    } else {
        cfg.collections
            .iter()
            .map(|c| (c.source.clone(), c.target_name().to_string(), c.description.clone()))
            .collect()
    };
    let mut collections = Vec::new();
    for (src, dst, description) in selection {
        if !existing.contains(&src) {
            let mut available = existing.clone();
            available.sort();
            return Err(PlanError::UnknownCollection {
                collection: src,
                database: source.database().to_string(),
                available: available.join(", "),
            });
        }
        collections.push(
            plan_collection(source, &src, &dst, description.as_deref(), &target_version, opts).await?,
        );
    }
    if let Some(selected) = cfg.source.wal.as_ref().and_then(|w| w.selected_channels()) {
        select_shards(&mut collections, &selected)?;
    }
    Ok(Plan {
        collections,
        source_version,
        target_version,
    })
}

/// Keeps the collections, and of each the shards, whose physical channels are `selected`
/// (`[source.wal] channels`): the share of a source split across instances by channel.
pub fn select_shards(collections: &mut Vec<CollectionPlan>, selected: &[String]) -> Result<(), PlanError> {
    let mut skipped = Vec::new();
    collections.retain_mut(|c| match crate::milvus::shard::share(&c.source.physical_channel_names, selected) {
        Err(()) => {
            tracing::info!(
                collection = %c.source_name,
                channels = ?c.source.physical_channel_names,
                "none of the collection's shards is on this instance's channels ([source.wal] channels): another instance moves it"
            );
            skipped.push(format!("{} ({})", c.source_name, c.source.physical_channel_names.join(", ")));
            false
        }
        Ok(filter) => {
            c.shards = filter;
            true
        }
    });
    if collections.is_empty() {
        return Err(PlanError::NoShare {
            channels: selected.join(", "),
            collections: skipped.join("; "),
        });
    }
    Ok(())
}

async fn plan_collection(
    source: &MilvusClient,
    src: &str,
    dst: &str,
    description: Option<&str>,
    target_version: &str,
    opts: PlanOptions,
) -> Result<CollectionPlan, PlanError> {
    let desc = source.describe_collection(src).await?;
    let partitions = source.list_partitions(src).await?;
    let indexes = source.describe_indexes(src).await?;
    let row_estimate = source.statistics_row_count(src).await.unwrap_or(0);
    // Milvus 2.3 answers queries only on loaded collections, and loads only indexed ones.
    let load_source = match source.load_state(src).await {
        Ok(crate::proto::common::LoadState::Loaded) | Ok(crate::proto::common::LoadState::Loading) => false,
        Ok(_) => {
            if indexes.is_empty() {
                return Err(PlanError::Invalid {
                    collection: src.into(),
                    reason: "the source collection is not loaded and has no index, so Milvus cannot \
                             query it: create an index on its vector field (or load it) first"
                        .into(),
                });
            }
            true
        }
        Err(_) => false,
    };
    plan_described(
        SourceCollection {
            name: src.into(),
            desc,
            partitions,
            indexes,
            row_estimate,
            load_source,
        },
        dst,
        description,
        target_version,
        opts,
    )
}

/// What planning needs to know about one source collection, however it was learnt: from a
/// live source (DescribeCollection and friends) or from files (a backup's meta).
#[derive(Debug, Clone)]
pub struct SourceCollection {
    pub name: String,
    /// Schema, shards, consistency level and properties.
    pub desc: DescribeCollectionResponse,
    /// Partitions (name, id).
    pub partitions: Vec<(String, i64)>,
    pub indexes: Vec<IndexDescription>,
    pub row_estimate: u64,
    /// ferry must load the source to read it (live sources only).
    pub load_source: bool,
}

/// Plans one collection's target from what is known of the source: checks every type is
/// movable and the primary key's autoID policy, and derives the target schema.
pub fn plan_described(
    source: SourceCollection,
    dst: &str,
    description: Option<&str>,
    target_version: &str,
    opts: PlanOptions,
) -> Result<CollectionPlan, PlanError> {
    let SourceCollection {
        name,
        desc,
        partitions,
        indexes,
        row_estimate,
        load_source,
    } = source;
    let src = name.as_str();
    let schema = desc.schema.clone().ok_or_else(|| PlanError::Invalid {
        collection: src.into(),
        reason: "DescribeCollection returned no schema".into(),
    })?;
    for f in schema::user_fields(&schema) {
        let t = DataType::try_from(f.data_type).unwrap_or(DataType::None);
        let elem_ok = t != DataType::Array
            || schema::supported(DataType::try_from(f.element_type).unwrap_or(DataType::None));
        let unsupported = if !schema::supported(t) || !elem_ok {
            Some(format!("{t:?}"))
        } else if f.nullable && schema::is_vector(f.data_type) {
            Some(format!("a nullable {t:?}"))
        } else if f.element_nullable {
            Some("an array with null elements".into())
        } else if !f.external_field.is_empty() {
            Some("an external field".into())
        } else {
            None
        };
        if let Some(data_type) = unsupported {
            return Err(PlanError::UnsupportedType { collection: src.into(), field: f.name.clone(), data_type });
        }
    }
    if let Some(s) = schema.struct_array_fields.first() {
        return Err(PlanError::UnsupportedType {
            collection: src.into(),
            field: s.name.clone(),
            data_type: "an array of structs".into(),
        });
    }
    let server = target::Server::parse(target_version);
    if let Some((field, data_type, reason)) = target::cannot_hold(&schema, server) {
        return Err(PlanError::TargetCannotHold {
            collection: src.into(),
            field,
            data_type,
            target: target_version.to_string(),
            reason,
        });
    }
    let pk: &FieldSchema = schema
        .fields
        .iter()
        .find(|f| f.is_primary_key)
        .ok_or_else(|| PlanError::Invalid {
            collection: src.into(),
            reason: "schema has no primary key".into(),
        })?;
    let mut properties = desc.properties.clone();
    let autoid = if !pk.auto_id {
        AutoIdPlan::NotAutoId
    } else if server.accepts_keys_into_autoid() {
        properties.push(KeyValuePair {
            key: "allow_insert_auto_id".into(),
            value: "true".into(),
        });
        AutoIdPlan::KeepAllowInsert
    } else if opts.allow_autoid_off {
        AutoIdPlan::TurnedOff
    } else {
        return Err(PlanError::AutoId {
            collection: src.into(),
            field: pk.name.clone(),
            reason: format!(
                "the target (Milvus {}) rejects given keys in an autoID field, and ferry must keep \
                 the source's keys for streaming and verification. Pass --autoid-off to create the \
                 target key without autoID (the application must then supply keys for new rows \
                 after cutover)",
                if target_version.is_empty() { "version unknown" } else { target_version }
            ),
        });
    };
    let partition_key = schema.fields.iter().any(|f| f.is_partition_key);
    let target_schema = schema::target_schema(
        &schema,
        dst,
        description,
        autoid == AutoIdPlan::KeepAllowInsert,
    );
    // A function's output is computed by each server from its inputs: neither copied nor
    // compared (Milvus 2.5 does not return BM25 output in a query).
    let mut output_fields: Vec<String> =
        schema::user_fields(&schema).filter(|f| !f.is_function_output).map(|f| f.name.clone()).collect();
    if schema.enable_dynamic_field {
        output_fields.push("$meta".into());
    }
    Ok(CollectionPlan {
        source_name: src.into(),
        target_name: dst.into(),
        pk_field: pk.name.clone(),
        pk_type: DataType::try_from(pk.data_type).unwrap_or(DataType::Int64),
        partitions,
        partition_key,
        indexes,
        create: CreateCollection {
            name: dst.into(),
            schema: target_schema,
            shards_num: desc.shards_num.max(1),
            consistency_level: ConsistencyLevel::try_from(desc.consistency_level)
                .unwrap_or(ConsistencyLevel::Bounded),
            properties,
            num_partitions: if partition_key { desc.num_partitions } else { 0 },
        },
        autoid,
        output_fields,
        row_estimate,
        load_source,
        shards: None,
        source: desc,
    })
}

/// What [`ensure_target`] did per collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Created,
    Resumed,
}

/// Creates every planned collection (with partitions and properties) on the target, or checks
/// an existing one. If creating one fails, the collections this call created are dropped again
/// so nothing is left half-made, and the error says so.
pub async fn ensure_target(
    target: &MilvusClient,
    plan: &Plan,
    if_exists: IfExists,
) -> Result<Vec<TargetState>, PlanError> {
    let mut states = Vec::new();
    let mut created: Vec<&str> = Vec::new();
    for c in &plan.collections {
        match ensure_one(target, c, if_exists).await {
            Ok(s) => {
                // (A share of a split collection is never dropped: other instances use it.)
                if s == TargetState::Created && c.shards.is_none() {
                    created.push(&c.target_name);
                }
                states.push(s);
            }
            Err(e) => {
                for name in &created {
                    if let Err(drop_err) = target.drop_collection(name).await {
                        tracing::error!(collection = %name, error = %drop_err, "could not drop a collection created by this run");
                    }
                }
                if !created.is_empty() {
                    tracing::warn!(dropped = ?created, "dropped the target collections this run had created");
                }
                return Err(e);
            }
        }
    }
    Ok(states)
}

async fn ensure_one(
    target: &MilvusClient,
    c: &CollectionPlan,
    if_exists: IfExists,
) -> Result<TargetState, PlanError> {
    if target.has_collection(&c.target_name).await? {
        let existing = target.describe_collection(&c.target_name).await?;
        let schema = existing.schema.unwrap_or_default();
        if let Some(difference) = schema::first_difference(&schema, c.schema()) {
            return Err(PlanError::SchemaMismatch {
                collection: c.target_name.clone(),
                difference,
            });
        }
        // A share of a collection split by channel continues into the collection another
        // instance of the split created (their keys are disjoint).
        if if_exists == IfExists::Fail && c.shards.is_none() {
            return Err(PlanError::TargetExists {
                collection: c.target_name.clone(),
            });
        }
        for p in c.user_partitions() {
            if !target.has_partition(&c.target_name, &p).await? {
                target.create_partition(&c.target_name, &p).await?;
            }
        }
        return Ok(TargetState::Resumed);
    }
    if let Err(e) = target.create_collection(&c.create).await {
        // Another instance of a channel split may have created it a moment ago.
        if c.shards.is_some() && target.has_collection(&c.target_name).await.unwrap_or(false) {
            return Box::pin(ensure_one(target, c, if_exists)).await;
        }
        return Err(e.into());
    }
    let rest = async {
        for p in c.user_partitions() {
            target.create_partition(&c.target_name, &p).await?;
        }
        if !c.create.properties.is_empty() {
            target.alter_collection(&c.target_name, &c.create.properties).await?;
        }
        Ok::<_, MilvusError>(())
    };
    if let Err(e) = rest.await {
        // Never drop a collection other instances of a channel split may already write to.
        if c.shards.is_none() {
            let _ = target.drop_collection(&c.target_name).await;
        }
        return Err(e.into());
    }
    Ok(TargetState::Created)
}

/// The plan as an operator reads it (`--dry-run`).
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "source Milvus {} -> target Milvus {}",
        or_unknown(&plan.source_version),
        or_unknown(&plan.target_version)
    );
    for c in &plan.collections {
        let _ = writeln!(
            s,
            "\ncollection {} -> {}  (~{} rows, {} shards, consistency {:?}, dynamic field {})",
            c.source_name,
            c.target_name,
            c.row_estimate,
            c.create.shards_num,
            c.create.consistency_level,
            if c.schema().enable_dynamic_field { "on" } else { "off" }
        );
        let _ = writeln!(s, "  channels: {}", c.source.physical_channel_names.join(", "));
        for f in &c.schema().fields {
            let _ = writeln!(s, "  field  {}", schema::describe_field(f));
        }
        for f in &c.schema().functions {
            let _ = writeln!(s, "  function {}", schema::describe_function(f));
        }
        if c.partition_key {
            let _ = writeln!(s, "  partitions: partition key, {} partitions", c.create.num_partitions);
        } else {
            let names: Vec<&str> = c.partitions.iter().map(|(n, _)| n.as_str()).collect();
            let _ = writeln!(s, "  partitions: {}", names.join(", "));
        }
        for kv in &c.create.properties {
            let _ = writeln!(s, "  property {} = {}", kv.key, kv.value);
        }
        for i in &c.indexes {
            let _ = writeln!(s, "  index  {} on {}", i.index_name, i.field_name);
        }
        if let Some(f) = &c.shards {
            let _ = writeln!(s, "  share: this instance moves the keys of {} ([source.wal] channels); other instances move the rest", f.describe());
        }
        if c.load_source {
            let _ = writeln!(s, "  source is not loaded: ferry loads it to read it and releases it afterwards");
        }
        match c.autoid {
            AutoIdPlan::NotAutoId => {}
            AutoIdPlan::KeepAllowInsert => {
                let _ = writeln!(s, "  autoID: kept on the target; source keys are inserted as given (allow_insert_auto_id=true)");
            }
            AutoIdPlan::TurnedOff => {
                let _ = writeln!(s, "  autoID: OFF on the target (--autoid-off): source keys are kept, new rows after cutover need keys from the application");
            }
        }
    }
    s
}

fn or_unknown(v: &str) -> &str {
    if v.is_empty() {
        "(version unknown)"
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_source() -> SourceCollection {
        let field = |id, name: &str, t: DataType, pk| FieldSchema {
            field_id: id,
            name: name.into(),
            data_type: t as i32,
            is_primary_key: pk,
            type_params: if pk { vec![] } else { vec![KeyValuePair { key: "dim".into(), value: "16".into() }] },
            ..Default::default()
        };
        let schema = CollectionSchema {
            name: "bin".into(),
            fields: vec![field(100, "id", DataType::Int64, true), field(101, "bv", DataType::BinaryVector, false)],
            ..Default::default()
        };
        SourceCollection {
            name: "bin".into(),
            desc: DescribeCollectionResponse { schema: Some(schema), shards_num: 1, ..Default::default() },
            partitions: vec![("_default".into(), 1)],
            indexes: Vec::new(),
            row_estimate: 0,
            load_source: false,
        }
    }

    /// A target that cannot hold a field is refused at planning, naming the collection, the
    /// field and the target, before anything is created.
    #[test]
    fn a_field_the_target_cannot_hold_is_refused_by_name() {
        let opts = PlanOptions { allow_autoid_off: false };
        let e = plan_described(binary_source(), "dst", None, "milvus_lite-3.2.2", opts).unwrap_err().to_string();
        assert!(
            e.contains("collection \"bin\": field \"bv\" is BinaryVector, which the target (milvus_lite-3.2.2) cannot hold: Milvus Lite has no BinaryVector"),
            "{e}"
        );
        assert!(plan_described(binary_source(), "dst", None, "v2.3.5", opts).is_ok());
    }
}
