//! Collection-wide DDL on a sharded collection, applied once, in order with every channel.
//!
//! Milvus broadcasts DropCollection (and DropPartition) to every DML channel of the
//! collection with one timestamp, and a new collection's CreateCollection to each of its
//! channels. Each channel's applier reaches its copy at its own pace. Applying a
//! collection's drop at the first copy would cut off rows a channel still behind has yet to
//! write (the source had them until the drop), and a new collection must exist on the
//! target before any of its channels writes to it.
//!
//! So such DDL is a barrier: the last channel of the collection to reach it applies it,
//! when every channel has applied everything stamped before it, and no channel passes it
//! before it is applied. The barrier is keyed by collection, message type, partition ID and
//! timestamp. A done marker, durable before any channel moves past, means a crash between
//! the apply and the cursors' advances neither waits for channels that already passed nor
//! applies it twice.
//!
//! Partition drops are not barriers: they are judged by partition ID (see
//! [`super::partitions`]), because Milvus puts a DropPartition on the WAL asynchronously,
//! possibly after writes to a partition re-created under the same name.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::ApplyError;
use crate::log::DurableLog;

/// One broadcast DDL record: the same on every channel of its collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BarrierKey {
    pub collection_id: i64,
    pub msg_type: i32,
    /// 0 for collection-wide records.
    pub partition_id: i64,
    pub ts: u64,
}

impl std::fmt::Display for BarrierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.collection_id, self.msg_type, self.partition_id, self.ts)
    }
}

#[derive(Default)]
struct Pending {
    arrived: BTreeSet<String>,
    /// A channel is applying it: the others wait even if they look again.
    applying: bool,
}

/// The barriers of one job's appliers (clones share them).
#[derive(Clone)]
pub struct Barriers {
    log: DurableLog,
    /// Source collection ID → the channels this job applies for it. A collection not listed
    /// has one channel: whichever reaches the record applies it.
    channels: Arc<HashMap<i64, BTreeSet<String>>>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    notify: Arc<Notify>,
    /// Per source collection: writes hold it shared, a partition drop or re-create
    /// exclusively (see [`super::partitions`]).
    partition_locks: Arc<Mutex<HashMap<i64, Arc<tokio::sync::RwLock<()>>>>>,
}

impl Barriers {
    pub fn new(log: DurableLog, channels: HashMap<i64, BTreeSet<String>>) -> Self {
        Barriers {
            log,
            channels: Arc::new(channels),
            pending: Arc::default(),
            notify: Arc::new(Notify::new()),
            partition_locks: Arc::default(),
        }
    }

    /// The lock that orders writes to `collection_id`'s partitions against their drops.
    pub fn partition_lock(&self, collection_id: i64) -> Arc<tokio::sync::RwLock<()>> {
        self.partition_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(collection_id)
            .or_default()
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every channel of the collection has reached `key`, then runs `apply` on
    /// exactly one of them; returns once it is applied (true on the channel that applied it).
    /// A barrier applied before (a restart) returns false at once.
    pub async fn pass<F, Fut>(&self, key: &BarrierKey, channel: &str, apply: F) -> Result<bool, ApplyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), ApplyError>>,
    {
        let all = self.channels.get(&key.collection_id).cloned().unwrap_or_default();
        self.pass_on(key, channel, &all, apply).await
    }

    /// [`Barriers::pass`] for a collection the job did not know: `all` are its channels
    /// (those of them this job reads); empty means `channel` alone.
    pub async fn pass_on<F, Fut>(&self, key: &BarrierKey, channel: &str, all: &BTreeSet<String>, apply: F) -> Result<bool, ApplyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), ApplyError>>,
    {
        let id = key.to_string();
        let mut said = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.log.ddl_done(&id)? {
                self.lock().remove(&id);
                return Ok(false);
            }
            let missing: Vec<String> = {
                let mut pending = self.lock();
                let p = pending.entry(id.clone()).or_default();
                p.arrived.insert(channel.to_string());
                if p.applying {
                    vec![String::from("(applying on another channel)")]
                } else {
                    let missing: Vec<String> = all.iter().filter(|c| !p.arrived.contains(*c)).cloned().collect();
                    p.applying = missing.is_empty();
                    missing
                }
            };
            if missing.is_empty() {
                if let Err(e) = apply().await {
                    if let Some(p) = self.lock().get_mut(&id) {
                        p.applying = false;
                    }
                    return Err(e);
                }
                // A crash here repeats the DDL on restart (every channel meets it again).
                crate::failpoint::hit("apply.after_ddl");
                self.log.mark_ddl_done(&id)?;
                self.lock().remove(&id);
                self.notify.notify_waiters();
                return Ok(true);
            }
            if !said {
                said = true;
                tracing::info!(%channel, barrier = %id, waiting_for = ?missing, "collection-wide DDL: waiting for the collection's other channels to reach it");
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn key() -> BarrierKey {
        BarrierKey { collection_id: 7, msg_type: 201, partition_id: 9, ts: 100 }
    }

    #[tokio::test]
    async fn the_last_channel_applies_once_and_the_others_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = DurableLog::open(&LogConfig::new(dir.path())).unwrap();
        let b = Barriers::new(log.clone(), HashMap::from([(7, BTreeSet::from(["a".to_string(), "b".to_string()]))]));
        let applied = Arc::new(AtomicUsize::new(0));
        let first = {
            let (b, applied) = (b.clone(), applied.clone());
            tokio::spawn(async move {
                b.pass(&key(), "a", || async move {
                    applied.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished(), "a passed before b reached the barrier");
        assert_eq!(applied.load(Ordering::SeqCst), 0);
        let second = b
            .pass(&key(), "b", || async {
                applied.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        assert!(second, "the last to arrive applies");
        assert!(!first.await.unwrap().unwrap());
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        // A restart that meets the record again (its cursor was not advanced) passes it.
        drop(b);
        let b = Barriers::new(log, HashMap::from([(7, BTreeSet::from(["a".to_string(), "b".to_string()]))]));
        let again = b.pass(&key(), "a", || async { panic!("applied twice") }).await.unwrap();
        assert!(!again);
    }

    #[tokio::test]
    async fn a_failed_apply_is_not_marked_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = DurableLog::open(&LogConfig::new(dir.path())).unwrap();
        let b = Barriers::new(log.clone(), HashMap::new());
        let err = b.pass(&key(), "a", || async { Err(ApplyError::Injected("x")) }).await.unwrap_err();
        assert!(matches!(err, ApplyError::Injected(_)));
        assert!(!log.ddl_done(&key().to_string()).unwrap());
        assert!(b.pass(&key(), "a", || async { Ok(()) }).await.unwrap());
    }
}
