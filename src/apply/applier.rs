//! The apply loop of one DML channel: log → batches → target → cursor.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::barrier::{BarrierKey, Barriers};
use super::partitions::{SourcePartitions, Verdict};
use super::plan::{coalesce, cut, BatchLimits, Cut, EventMeta, MetaKind};
use super::{ApplyError, Target};
use crate::failpoint;
use crate::log::{Cursor, DurableLog, StoredEntry};
use crate::milvus::{MilvusError, PrimaryKeys, Rows};
use crate::proto::common::MsgType;
use crate::msgstream::{decode, WalEvent};

/// Where one source collection's writes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRoute {
    /// Target collection name.
    pub target_collection: String,
    /// Primary-key field name (same on both sides).
    pub pk_field: String,
    /// Partition-key collection: partitions are Milvus's business, names are ignored.
    pub partition_key: bool,
    /// (name, source ID) of its partitions when the job recorded it: what the target
    /// partitions hold until the stream says otherwise (see [`super::partitions`]).
    pub partitions: Vec<(String, i64)>,
}

/// Source collection ID → route. Entries of other collections are passed over.
pub type Routes = HashMap<i64, CollectionRoute>;

/// A collection created on the source while the job runs (its CreateCollection record).
#[derive(Debug, Clone)]
pub struct NewCollection {
    pub collection_id: i64,
    pub name: String,
    /// Encoded `schemapb.CollectionSchema`.
    pub schema: Vec<u8>,
    pub ts: u64,
}

/// Decides whether the job takes on a new collection and, if so, creates its target and
/// records it (so a restart routes it too); returns its route, or `None` to pass it over.
pub type FollowFn = Arc<
    dyn Fn(NewCollection) -> Pin<Box<dyn Future<Output = Result<Option<CollectionRoute>, ApplyError>> + Send>>
        + Send
        + Sync,
>;

/// How a job over a whole database follows collections created while it runs.
#[derive(Clone)]
pub struct Follow {
    /// The channels the job reads: a new collection's CreateCollection barrier waits for
    /// those of its channels among them.
    pub channels: BTreeSet<String>,
    pub create: FollowFn,
    /// What the channel that ran `create` decided, for the collection's other channels.
    decided: Arc<Mutex<HashMap<i64, Option<CollectionRoute>>>>,
}

impl Follow {
    pub fn new(channels: BTreeSet<String>, create: FollowFn) -> Self {
        Follow { channels, create, decided: Arc::default() }
    }
}

/// Batch bounds and retry policy of the apply loop.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// Payload bytes a batch aims to stay under; exceeded only to keep one timestamp's
    /// writes together. Requests to the target are split to this size too.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Rows (inserted plus deleted) a batch aims to stay under, like `max_batch_bytes`.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// Log entries read ahead to plan a batch.
    #[serde(default = "default_read_ahead_entries")]
    pub read_ahead_entries: usize,
    /// First wait after a retryable target error; doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait between retries. Retries never give up: skipping would lose writes.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// When a source collection is dropped: false stops the channel with
    /// [`ApplyError::SourceCollectionDropped`]; true drops the target collection too and
    /// streams on for the others (`stream.on_source_drop`).
    #[serde(default)]
    pub drop_on_source_drop: bool,
}

fn default_max_batch_bytes() -> usize {
    16 << 20
}
fn default_max_batch_rows() -> usize {
    50_000
}
fn default_read_ahead_entries() -> usize {
    4096
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    10_000
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            max_batch_bytes: default_max_batch_bytes(),
            max_batch_rows: default_max_batch_rows(),
            read_ahead_entries: default_read_ahead_entries(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            drop_on_source_drop: false,
        }
    }
}

/// Applies one channel's log to the target.
pub struct Applier<T: Target> {
    channel: String,
    log: DurableLog,
    target: T,
    routes: Routes,
    cfg: ApplyConfig,
    /// Which source partition each target partition holds.
    partitions: SourcePartitions,
    /// Shared with the job's other channels: DDL Milvus broadcasts to every channel of a
    /// collection is applied once, when all of them reach it.
    barriers: Barriers,
    /// Set for a job over a whole database: new collections are followed.
    follow: Option<Follow>,
}

impl<T: Target> Applier<T> {
    pub fn new(
        channel: impl Into<String>,
        log: DurableLog,
        target: T,
        routes: Routes,
        cfg: ApplyConfig,
    ) -> Self {
        let mut routes = routes;
        // Collections whose drop the stream already applied (`on_source_drop = "drop"`)
        // have nowhere to go, whatever the caller planned.
        for id in log.dropped() {
            routes.remove(&id);
        }
        let recorded = routes.iter().map(|(id, r)| (*id, r.partitions.clone())).collect();
        Applier {
            channel: channel.into(),
            barriers: Barriers::new(log.clone(), HashMap::new()),
            partitions: SourcePartitions::new(log.clone(), recorded),
            log,
            target,
            routes,
            cfg,
            follow: None,
        }
    }

    /// Follows collections created on the source while the job runs (see [`Follow`]).
    pub fn with_follow(mut self, follow: Follow) -> Self {
        self.follow = Some(follow);
        self
    }

    /// Shares `barriers` with the job's other channels. Without it every collection is
    /// taken to have this one channel.
    pub fn with_barriers(mut self, barriers: Barriers) -> Self {
        self.barriers = barriers;
        self
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_bytes: self.cfg.max_batch_bytes.max(1),
            max_rows: self.cfg.max_batch_rows.max(1),
        }
    }

    /// Applies batches as they are appended until `shutdown` resolves or an error stops
    /// the channel. Stopping mid-batch is safe: the cursor moves only after a batch is on
    /// the target, and a repeated batch is idempotent.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), ApplyError> {
        tokio::pin!(shutdown);
        // Subscribed before the first look at the log, so no append goes unnoticed.
        let mut appends = self.log.subscribe_appends();
        loop {
            let progressed = tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                r = self.step() => r?,
            };
            if progressed {
                continue;
            }
            self.advance_to_tick()?;
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                r = appends.changed() => if r.is_err() { return Ok(()) },
            }
        }
    }

    /// Applies everything in the log now; returns the number of batches. For tests and
    /// draining at shutdown.
    pub async fn apply_available(&mut self) -> Result<usize, ApplyError> {
        let mut n = 0;
        while self.step().await? {
            n += 1;
        }
        self.advance_to_tick()?;
        Ok(n)
    }

    /// When everything appended is applied, everything up to the newest time tick is too:
    /// the tick's window was appended with (before) it. The tick is read before checking
    /// the end, so a window appended in between cannot be claimed.
    fn advance_to_tick(&self) -> Result<(), ApplyError> {
        let tick = self.log.source_ts(&self.channel);
        let cur = self.log.cursor(&self.channel);
        if cur.next_seq == self.log.end_seq(&self.channel) && tick > cur.applied_ts {
            self.log.advance(
                &self.channel,
                Cursor {
                    next_seq: cur.next_seq,
                    applied_ts: tick,
                },
            )?;
        }
        Ok(())
    }

    fn meta(&self, e: &StoredEntry) -> Result<EventMeta, ApplyError> {
        let head = decode::peek(&e.entry.payload).map_err(|source| ApplyError::Decode {
            channel: self.channel.clone(),
            seq: e.seq,
            offset: e.entry.kafka_offset,
            source,
        })?;
        let routed = head
            .collection_id
            .is_some_and(|id| self.routes.contains_key(&id));
        let kind = match MsgType::try_from(head.msg_type) {
            Ok(MsgType::Insert | MsgType::Delete) if routed => MetaKind::Dml,
            Ok(MsgType::CreatePartition | MsgType::DropPartition | MsgType::DropCollection)
                if routed =>
            {
                MetaKind::Barrier
            }
            // A collection created while the job runs: a job over a whole database decides.
            Ok(MsgType::CreateCollection) if !routed && self.follow.is_some() => MetaKind::Barrier,
            _ => MetaKind::Skip,
        };
        Ok(EventMeta {
            collection_id: head.collection_id.unwrap_or(0),
            ts: e.entry.ts,
            kind,
            bytes: e.entry.payload.len(),
            rows: usize::try_from(head.rows).unwrap_or(usize::MAX),
        })
    }

    /// Applies one batch; false when the log has nothing past the cursor.
    async fn step(&mut self) -> Result<bool, ApplyError> {
        let cursor = self.log.cursor(&self.channel);
        let mut max_entries = self.cfg.read_ahead_entries.max(1);
        // Room for a full batch plus the look-ahead needed to find where it ends.
        let mut max_bytes = (self.cfg.max_batch_bytes as u64).saturating_mul(2).max(1);
        loop {
            let entries = self
                .log
                .read(&self.channel, cursor.next_seq, max_entries, max_bytes)?;
            let Some(last) = entries.last() else {
                return Ok(false);
            };
            // Read after the entries: if it moved, more may share the last timestamp.
            let at_end = last.seq + 1 >= self.log.end_seq(&self.channel);
            let metas = entries
                .iter()
                .map(|e| self.meta(e))
                .collect::<Result<Vec<_>, _>>()?;
            let n = match cut(&metas, at_end, &self.limits()) {
                Cut::Take(n) => n,
                Cut::NeedMore => {
                    max_entries = max_entries.saturating_mul(2);
                    max_bytes = max_bytes.saturating_mul(2);
                    continue;
                }
            };
            if failpoint::fail_once("apply.fail") {
                return Err(ApplyError::Injected("apply.fail"));
            }
            let started = std::time::Instant::now();
            self.apply(&entries[..n], &metas[..n]).await?;
            metrics::histogram!(crate::metrics::APPLY_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
            failpoint::hit("apply.after_target_write");
            let last = &entries[n - 1];
            self.log.advance(
                &self.channel,
                Cursor {
                    next_seq: last.seq + 1,
                    applied_ts: cursor.applied_ts.max(last.entry.ts),
                },
            )?;
            return Ok(true);
        }
    }

    fn decode(&self, e: &StoredEntry) -> Result<WalEvent, ApplyError> {
        decode::decode(&e.entry.payload).map_err(|source| ApplyError::Decode {
            channel: self.channel.clone(),
            seq: e.seq,
            offset: e.entry.kafka_offset,
            source,
        })
    }

    async fn apply(
        &mut self,
        entries: &[StoredEntry],
        metas: &[EventMeta],
    ) -> Result<(), ApplyError> {
        let Some(first) = metas.first() else {
            return Ok(());
        };
        if first.kind == MetaKind::Barrier && !self.routes.contains_key(&first.collection_id) {
            return self.follow_new(&entries[0]).await;
        }
        let Some(route) = self.routes.get(&first.collection_id).cloned() else {
            return Ok(());
        };
        let coll = route.target_collection.as_str();
        let events_applied = |op, n: usize| {
            metrics::counter!(crate::metrics::EVENTS_APPLIED, "collection" => coll.to_string(), "op" => op)
                .increment(n as u64)
        };
        if first.kind == MetaKind::Barrier {
            events_applied("ddl", entries.len());
        }
        match first.kind {
            MetaKind::Skip => Ok(()),
            MetaKind::Barrier => {
                let event = self.decode(&entries[0])?;
                let barriers = self.barriers.clone();
                let msg_type = entries[0].entry.msg_type;
                match event {
                    WalEvent::CreatePartition { collection_id, partition_name, partition_id, .. } if !route.partition_key => {
                        let pairs = BTreeSet::from([(partition_name, partition_id)]);
                        self.admit(collection_id, coll, &pairs).await.map(|_| ())
                    }
                    WalEvent::DropPartition { collection_id, partition_name, partition_id, .. } if !route.partition_key => {
                        self.drop_partition(collection_id, coll, &partition_name, partition_id).await
                    }
                    WalEvent::DropCollection { collection_id, ts, .. } if self.cfg.drop_on_source_drop => {
                        let key = BarrierKey { collection_id, msg_type, partition_id: 0, ts };
                        barriers
                            .pass(&key, &self.channel, || async {
                                self.retry("drop_collection", coll, || self.target.drop_collection(coll)).await?;
                                self.log.mark_dropped(collection_id)?;
                                tracing::warn!(channel = %self.channel, collection = coll, "source collection dropped: target collection dropped too");
                                Ok(())
                            })
                            .await?;
                        // Later records of the dropped collection have nowhere to go.
                        self.routes.remove(&collection_id);
                        Ok(())
                    }
                    WalEvent::DropCollection { collection_id, name, .. } => {
                        Err(ApplyError::SourceCollectionDropped { collection_id, name })
                    }
                    _ => Ok(()),
                }
            }
            MetaKind::Dml => {
                let events = entries
                    .iter()
                    .map(|e| self.decode(e))
                    .collect::<Result<Vec<_>, _>>()?;
                let inserts = events.iter().filter(|e| matches!(e, WalEvent::Insert(_))).count();
                events_applied("insert", inserts);
                events_applied("delete", events.len() - inserts);
                // Held shared until the batch is written: no other channel drops or
                // re-creates a partition of the collection meanwhile. Milvus 2.3 does not put
                // CreatePartition on the WAL (only 2.5's streaming service does): a
                // partition the target lacks is created on first use.
                let (_writing, skipped) = if route.partition_key {
                    (None, HashSet::new())
                } else {
                    let pairs: BTreeSet<(String, i64)> = events
                        .iter()
                        .filter_map(|e| match e {
                            WalEvent::Insert(i) => Some((i.partition_name.clone(), i.partition_id)),
                            WalEvent::Delete(d) if !d.partition_name.is_empty() => {
                                Some((d.partition_name.clone(), d.partition_id))
                            }
                            _ => None,
                        })
                        .collect();
                    let (guard, skipped) = self.admit(first.collection_id, coll, &pairs).await?;
                    (Some(guard), skipped)
                };
                let refs: Vec<&WalEvent> = events
                    .iter()
                    .filter(|e| match e {
                        WalEvent::Insert(i) => !skipped.contains(&i.partition_id),
                        WalEvent::Delete(d) => d.partition_name.is_empty() || !skipped.contains(&d.partition_id),
                        _ => true,
                    })
                    .collect();
                if refs.len() < events.len() {
                    tracing::debug!(channel = %self.channel, collection = coll, skipped = events.len() - refs.len(), partitions = ?skipped, "writes to dropped source partitions skipped");
                }
                let plan = coalesce(&refs, coll, &route.pk_field, route.partition_key)?;
                let (mut deleted, mut upserted) = (0usize, 0usize);
                // Deletes first: see `Coalesced`.
                for (partition, keys) in &plan.deletes {
                    for chunk in chunk_keys(keys, self.limits().max_rows) {
                        self.retry("delete", coll, || {
                            self.target.delete(coll, partition, &route.pk_field, &chunk)
                        })
                        .await?;
                        deleted += chunk.len();
                    }
                }
                for (partition, rows) in &plan.upserts {
                    for part in split_rows(rows, &self.limits()) {
                        self.retry("upsert", coll, || {
                            self.target.upsert(coll, partition, &part)
                        })
                        .await?;
                        upserted += part.len();
                    }
                }
                let rows = |op| metrics::counter!(crate::metrics::ROWS_APPLIED, "collection" => coll.to_string(), "op" => op);
                rows("upsert").increment(upserted as u64);
                rows("delete").increment(deleted as u64);
                tracing::debug!(
                    channel = %self.channel,
                    collection = coll,
                    events = entries.len(),
                    upserted,
                    deleted,
                    "applied batch"
                );
                Ok(())
            }
        }
    }

    /// A CreateCollection record of a collection the job does not route: once every channel
    /// of the new collection this job reads has reached it, one of them asks the job's
    /// [`Follow`] whether to take it on (creating its target); all of them then route it.
    /// All its rows come after this record on those channels, so no snapshot is needed.
    async fn follow_new(&mut self, e: &StoredEntry) -> Result<(), ApplyError> {
        let Some(follow) = self.follow.clone() else {
            return Ok(());
        };
        let WalEvent::CreateCollection { collection_id, name, schema, channels, ts } = self.decode(e)? else {
            return Ok(());
        };
        let key = BarrierKey { collection_id, msg_type: e.entry.msg_type, partition_id: 0, ts };
        let all: BTreeSet<String> = channels.into_iter().filter(|c| follow.channels.contains(c)).collect();
        let barriers = self.barriers.clone();
        barriers
            .pass_on(&key, &self.channel, &all, || async {
                let route = (follow.create)(NewCollection { collection_id, name: name.clone(), schema, ts }).await?;
                follow.decided.lock().unwrap_or_else(|p| p.into_inner()).insert(collection_id, route);
                Ok(())
            })
            .await?;
        let decided = follow.decided.lock().unwrap_or_else(|p| p.into_inner()).get(&collection_id).cloned().flatten();
        if let Some(route) = decided {
            tracing::info!(channel = %self.channel, collection = %name, target = %route.target_collection, "following a collection created on the source");
            self.partitions.record(collection_id, &route.partitions);
            self.routes.insert(collection_id, route);
        }
        Ok(())
    }

    /// Makes the target ready for writes to the source partitions `pairs` (name, ID) of
    /// `collection_id` (target `coll`): binds, and if need be drops and re-creates, target
    /// partitions (see [`super::partitions`]). Returns the shared lock to hold while
    /// writing, and the source partition IDs whose writes are to be skipped (dropped).
    async fn admit(
        &self,
        collection_id: i64,
        coll: &str,
        pairs: &BTreeSet<(String, i64)>,
    ) -> Result<(tokio::sync::OwnedRwLockReadGuard<()>, HashSet<i64>), ApplyError> {
        let lock = self.barriers.partition_lock(collection_id);
        loop {
            let shared = lock.clone().read_owned().await;
            let mut skipped = HashSet::new();
            let mut rebind = false;
            for (name, id) in pairs {
                match self.partitions.verdict(collection_id, name, *id)? {
                    Verdict::Write => {}
                    Verdict::Skip => {
                        skipped.insert(*id);
                    }
                    Verdict::Bind { .. } => rebind = true,
                }
            }
            if !rebind {
                return Ok((shared, skipped));
            }
            drop(shared);
            let _exclusive = lock.write().await;
            // Judged again: another channel may have done it meanwhile.
            for (name, id) in pairs {
                let Verdict::Bind { drop_first } = self.partitions.verdict(collection_id, name, *id)? else {
                    continue;
                };
                if let Some(old) = drop_first {
                    // A newer source partition under the name: the old one was dropped,
                    // even if its DropPartition record is still to come.
                    tracing::info!(channel = %self.channel, collection = coll, partition = %name, old_id = old, new_id = id, "source partition re-created: replacing it on the target");
                    self.partitions.mark_dropped(collection_id, old)?;
                    self.retry("drop_partition", coll, || self.target.drop_partition(coll, name)).await?;
                }
                self.retry("create_partition", coll, || self.target.create_partition(coll, name)).await?;
                self.partitions.bind(collection_id, name, *id)?;
            }
        }
    }

    /// A source partition dropped: the target partition goes too while it holds that
    /// partition's rows (or an older one's); later writes of it are skipped. Applied by the
    /// first channel to meet it; repeated harmlessly by the others and after a crash.
    async fn drop_partition(&self, collection_id: i64, coll: &str, name: &str, id: i64) -> Result<(), ApplyError> {
        let lock = self.barriers.partition_lock(collection_id);
        let _exclusive = lock.write().await;
        self.partitions.mark_dropped(collection_id, id)?;
        let bound = self.partitions.bound(collection_id, name)?;
        if bound == 0 || bound > id {
            // Already gone, or the target holds a newer partition under the name.
            return Ok(());
        }
        tracing::info!(channel = %self.channel, collection = coll, partition = %name, partition_id = id, "source partition dropped: dropping it on the target");
        self.partitions.mark_dropped(collection_id, bound)?;
        self.retry("drop_partition", coll, || self.target.drop_partition(coll, name)).await?;
        // A crash here repeats the drop on restart (the binding still names it).
        crate::failpoint::hit("apply.after_ddl");
        self.partitions.bind(collection_id, name, 0)?;
        Ok(())
    }

    /// Runs `op` until it succeeds or fails for good. Retryable failures (target down,
    /// throttled, restarting) wait and retry forever: giving up would mean skipping writes.
    async fn retry<F, Fut>(
        &self,
        op: &'static str,
        collection: &str,
        mut f: F,
    ) -> Result<(), ApplyError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), MilvusError>>,
    {
        let max = Duration::from_millis(self.cfg.retry_max_ms.max(1));
        let mut delay = Duration::from_millis(self.cfg.retry_initial_ms.max(1)).min(max);
        loop {
            match f().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(
                        channel = %self.channel,
                        collection,
                        op,
                        error = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        "target write failed; retrying"
                    );
                    metrics::counter!(crate::metrics::TARGET_ERRORS, "op" => op, "kind" => e.kind())
                        .increment(1);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
                Err(source) => {
                    metrics::counter!(crate::metrics::TARGET_ERRORS, "op" => op, "kind" => source.kind())
                        .increment(1);
                    return Err(ApplyError::Target {
                        collection: collection.to_string(),
                        op,
                        source,
                    })
                }
            }
        }
    }
}

fn chunk_keys(keys: &PrimaryKeys, max: usize) -> Vec<PrimaryKeys> {
    match keys {
        PrimaryKeys::Int(v) => v
            .chunks(max)
            .map(|c| PrimaryKeys::Int(c.to_vec()))
            .collect(),
        PrimaryKeys::Str(v) => v
            .chunks(max)
            .map(|c| PrimaryKeys::Str(c.to_vec()))
            .collect(),
    }
}

/// Splits rows into requests within both bounds.
fn split_rows(rows: &Rows, limits: &BatchLimits) -> Vec<Rows> {
    rows.clone()
        .split_by_bytes(limits.max_bytes)
        .into_iter()
        .flat_map(|part| {
            if part.len() <= limits.max_rows {
                return vec![part];
            }
            (0..part.len())
                .step_by(limits.max_rows)
                .map(|s| {
                    let idx: Vec<usize> = (s..(s + limits.max_rows).min(part.len())).collect();
                    part.select(&idx)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests;
