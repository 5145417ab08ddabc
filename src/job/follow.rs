//! A job over a whole database (no `[[collections]]`) follows it: a collection created on
//! the source while the job runs is migrated too.
//!
//! Its CreateCollection record (on each of its channels, before any of its rows) reaches the
//! appliers; once every channel of it has (a barrier), one of them calls [`create`]. Milvus
//! 2.3.5's record names neither the database nor, outside the schema, the collection (seen
//! on the WAL), so the collection is looked up by its schema's name in the job's database:
//! only one with the record's ID is taken on (one in another database, or dropped since, is
//! passed over). Its target is created with the exact schema and given AUTOINDEX and loaded
//! (the source's own index may not exist yet), and it is recorded in the log, so a restart
//! routes it, status and metrics show it, and a cutover verifies it. No snapshot: every row
//! it has came after its creation, so all of them are on the WAL after the record.

use std::sync::Arc;
use std::time::Duration;

use crate::apply::{ApplyError, CollectionRoute, FollowFn, NewCollection};
use crate::log::DurableLog;
use crate::copy::{self, finish, IndexMode};
use crate::milvus::{MilvusClient, MilvusError};
use crate::plan::{self, IfExists, Plan, PlanOptions, SourceCollection};
use crate::state::StateStore;

use super::record::RecordedCollection;

/// What [`create`] needs, shared by every call.
pub struct Context {
    pub source: MilvusClient,
    pub target: MilvusClient,
    pub state: StateStore,
    pub log: DurableLog,
    pub opts: PlanOptions,
    pub index: IndexMode,
}

/// The job's [`FollowFn`].
pub fn hook(ctx: Context) -> FollowFn {
    let ctx = Arc::new(ctx);
    Arc::new(move |nc: NewCollection| {
        let ctx = ctx.clone();
        Box::pin(async move { create(&ctx, nc).await })
    })
}

/// Runs `op` until it succeeds or fails for good (a retryable error waits, as the apply
/// loop's target writes do: giving up would drop the collection's rows).
async fn patient<T, F, Fut>(what: &str, mut op: F) -> Result<T, MilvusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MilvusError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            r => return r,
        }
    }
}

async fn create(ctx: &Context, nc: NewCollection) -> Result<Option<CollectionRoute>, ApplyError> {
    let name = nc.name.clone();
    let fail = |reason: String| ApplyError::Follow { collection: name.clone(), reason };
    let source = &ctx.source;
    if !patient("HasCollection", || source.has_collection(&name)).await.map_err(|e| fail(e.to_string()))? {
        tracing::info!(collection = %name, id = nc.collection_id, "a collection created on the source is not in the job's database (or was dropped since): not followed");
        return Ok(None);
    }
    let desc = patient("DescribeCollection", || source.describe_collection(&name)).await.map_err(|e| fail(e.to_string()))?;
    if desc.collection_id != nc.collection_id {
        tracing::info!(collection = %name, id = nc.collection_id, found = desc.collection_id, "a collection created on the source is not in the job's database (or was re-created since): not followed");
        return Ok(None);
    }
    // Milvus puts a collection's DropCollection on the WAL from an asynchronous step of the
    // drop, so a collection dropped and re-created under its name can reach ferry before the
    // old one's drop. Its target (same name) would then still be the old collection's, and
    // continuing into it would mix the two: refused, naming it.
    let recorded = ctx.state.get::<Vec<RecordedCollection>>(crate::state::keys::JOB_COLLECTIONS).map_err(|e| fail(e.to_string()))?;
    let followed = super::record::followed(&ctx.log).map_err(|e| fail(e.to_string()))?;
    let dropped = ctx.log.dropped();
    if let Some(old) = recorded
        .iter()
        .flatten()
        .chain(followed.iter())
        .find(|r| r.target == name && r.collection_id != nc.collection_id && !dropped.contains(&r.collection_id))
    {
        return Err(fail(format!(
            "created again (ID {}) before ferry applied the drop of the collection it replaces (ID {}), whose target has the same name; start a new job (another state_dir) to move it",
            nc.collection_id, old.collection_id
        )));
    }
    let partitions = patient("ShowPartitions", || source.list_partitions(&name)).await.map_err(|e| fail(e.to_string()))?;
    let indexes = patient("DescribeIndex", || source.describe_indexes(&name)).await.map_err(|e| fail(e.to_string()))?;
    let target_version = ctx.target.server_version().await.unwrap_or_default();
    let sc = SourceCollection { name: name.clone(), desc, partitions, indexes, row_estimate: 0, load_source: false };
    let cp = plan::plan_described(sc, &name, None, &target_version, ctx.opts).map_err(|e| fail(e.to_string()))?;
    let one = Plan { collections: vec![cp.clone()], source_version: String::new(), target_version };
    // A target collection of that name with the same schema is continued into (a restart
    // after it was created); one with another schema is an error naming the difference.
    copy::prepare_targets(&ctx.target, &one, &ctx.state, IfExists::Resume).await.map_err(|e| fail(e.to_string()))?;
    if ctx.index != IndexMode::None {
        finish::create_indexes(&ctx.target, &cp, IndexMode::Autoindex).await.map_err(|e| fail(e.to_string()))?;
        ctx.target.load(&cp.target_name, Duration::from_secs(900)).await.map_err(|e| fail(format!("loading the target: {e}")))?;
    }
    let record = serde_json::to_vec(&RecordedCollection::of(&cp, None)).map_err(|e| fail(e.to_string()))?;
    ctx.log.put_followed(nc.collection_id, &record)?;
    tracing::info!(collection = %name, id = nc.collection_id, "a collection created on the source is followed: target created, its rows stream from its creation");
    Ok(Some(CollectionRoute {
        target_collection: cp.target_name.clone(),
        pk_field: cp.pk_field.clone(),
        partition_key: cp.partition_key,
        partitions: cp.partitions.clone(),
    }))
}
