//! [`DurableLog`]: the sled-backed store behind the design note in `log/mod.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::codec::{self, ChannelPosition, Cursor, LogEntry, StoredEntry};
use super::fence::{FenceState, FenceWatch};
use super::LogError;
use crate::failpoint;

/// Where the log lives and how much it may hold.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Directory of the sled database (created if missing).
    pub path: PathBuf,
    /// `append` waits while more than this many bytes of entries are not yet applied.
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: u64,
    /// How often sled writes buffered changes to disk; a crash loses at most this window.
    #[serde(default = "default_flush_every_ms")]
    pub flush_every_ms: u64,
}

fn default_max_pending_bytes() -> u64 {
    2 << 30
}

fn default_flush_every_ms() -> u64 {
    200
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogConfig {
            path: path.into(),
            max_pending_bytes: default_max_pending_bytes(),
            flush_every_ms: default_flush_every_ms(),
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        if self.max_pending_bytes == 0 {
            return Err(LogError::Config {
                field: "max_pending_bytes",
                reason: "must be greater than 0".into(),
            });
        }
        if self.flush_every_ms == 0 {
            return Err(LogError::Config {
                field: "flush_every_ms",
                reason: "must be greater than 0 (sled would never flush on its own)".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
struct ChannelState {
    /// Seq the next appended entry gets.
    next_seq: u64,
    cursor: Cursor,
    position: Option<ChannelPosition>,
    source_ts: u64,
    pending_events: u64,
    pending_bytes: u64,
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    /// Collection-wide DDL applied (`done/{key}`) and source collections dropped by the
    /// stream (`dropped/{id}`): see `apply::barrier`.
    ddl: sled::Tree,
    dropped: Mutex<BTreeSet<i64>>,
    path: String,
    max_pending_bytes: u64,
    /// Held across each sled batch so memory and disk change together.
    state: Mutex<HashMap<String, ChannelState>>,
    pending_events: AtomicU64,
    pending_bytes: AtomicU64,
    /// Bumped after every append: appliers wait on it.
    appended: watch::Sender<u64>,
    /// Bumped after every advance: a blocked append waits on it.
    advanced: watch::Sender<u64>,
    /// The cutover's watch for writes stamped after its fence.
    fence: Arc<FenceState>,
}

const DONE: &str = "done/";
const FOLLOWED: &str = "followed/";
const DROPPED: &str = "dropped/";
const PARTITION: &str = "partition/";

/// Key of the source partition ID target partition `name` holds ([`DurableLog::bind_partition`]).
fn bound_key(collection_id: i64, name: &str) -> String {
    format!("{PARTITION}{collection_id}/bound/{name}")
}

/// Key of a dropped source partition ([`DurableLog::mark_partition_dropped`]).
fn dropped_partition_key(collection_id: i64, partition_id: i64) -> String {
    format!("{PARTITION}{collection_id}/dropped/{partition_id}")
}

/// The durable log. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct DurableLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DurableLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableLog")
            .field("path", &self.inner.path)
            .field("pending_events", &self.pending_events())
            .field("pending_bytes", &self.pending_bytes())
            .finish()
    }
}

impl DurableLog {
    /// Opens (or creates) the log and recovers its state; see "recovery" in the design note.
    pub fn open(cfg: &LogConfig) -> Result<Self, LogError> {
        cfg.validate()?;
        let path = cfg.path.display().to_string();
        let storage = |source| LogError::Storage {
            path: path.clone(),
            source,
        };
        let db = sled::Config::new()
            .path(&cfg.path)
            .flush_every_ms(Some(cfg.flush_every_ms))
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("ferry_log").map_err(storage)?;
        let ddl = db.open_tree("ferry_ddl").map_err(storage)?;
        let mut dropped = BTreeSet::new();
        for kv in ddl.scan_prefix(DROPPED) {
            let (k, _) = kv.map_err(storage)?;
            let id = std::str::from_utf8(&k[DROPPED.len()..]).ok().and_then(|s| s.parse::<i64>().ok());
            dropped.insert(id.ok_or_else(|| LogError::Corrupt {
                channel: String::new(),
                seq: 0,
                reason: format!("bad dropped-collection key {:?}", String::from_utf8_lossy(&k)),
            })?);
        }

        let mut channels: HashMap<String, ChannelState> = HashMap::new();
        let mut last_seq: HashMap<String, u64> = HashMap::new();
        let mut entry_sizes: Vec<(String, u64, u64)> = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(storage)?;
            let corrupt = |reason: &str| LogError::Corrupt {
                channel: String::from_utf8_lossy(&k).into_owned(),
                seq: 0,
                reason: reason.to_string(),
            };
            let (tag, channel, rest) = codec::split_key(&k).ok_or_else(|| corrupt("bad key"))?;
            let st = channels.entry(channel.clone()).or_default();
            match tag {
                codec::ENTRY => {
                    let seq = codec::seq_of(rest).ok_or_else(|| corrupt("bad entry key"))?;
                    last_seq.insert(channel.clone(), seq);
                    entry_sizes.push((channel, seq, v.len() as u64));
                }
                codec::POSITION => {
                    st.position =
                        Some(ChannelPosition::decode(&v).ok_or_else(|| corrupt("bad position"))?)
                }
                codec::CURSOR => {
                    st.cursor = Cursor::decode(&v).ok_or_else(|| corrupt("bad cursor"))?
                }
                codec::TICK => {
                    st.source_ts = codec::decode_u64(&v).ok_or_else(|| corrupt("bad tick"))?
                }
                _ => return Err(corrupt("unknown key tag")),
            }
        }
        // Entries below a cursor cannot exist (GC shares the cursor's batch); if an older
        // version left some, drop them rather than count them as pending.
        let mut stale = sled::Batch::default();
        for (channel, seq, size) in entry_sizes {
            let st = channels.entry(channel.clone()).or_default();
            if seq < st.cursor.next_seq {
                stale.remove(codec::entry_key(&channel, seq)?);
            } else {
                st.pending_events += 1;
                st.pending_bytes += size;
            }
        }
        tree.apply_batch(stale).map_err(storage)?;
        for (channel, st) in channels.iter_mut() {
            let after_last = last_seq.get(channel).map_or(0, |s| s + 1);
            st.next_seq = after_last.max(st.cursor.next_seq);
        }

        let log = DurableLog {
            inner: Arc::new(Inner {
                db,
                tree,
                ddl,
                dropped: Mutex::new(dropped),
                path,
                max_pending_bytes: cfg.max_pending_bytes,
                pending_events: AtomicU64::new(channels.values().map(|c| c.pending_events).sum()),
                pending_bytes: AtomicU64::new(channels.values().map(|c| c.pending_bytes).sum()),
                state: Mutex::new(channels),
                appended: watch::Sender::new(0),
                advanced: watch::Sender::new(0),
                fence: Arc::default(),
            }),
        };
        log.publish_gauges();
        Ok(log)
    }

    fn state(&self) -> MutexGuard<'_, HashMap<String, ChannelState>> {
        // A panic while holding the lock happens before the sled batch or after both
        // memory and disk changed; the map is still consistent, so poisoning is ignored.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn storage(&self, source: sled::Error) -> LogError {
        LogError::Storage {
            path: self.inner.path.clone(),
            source,
        }
    }

    fn publish_gauges(&self) {
        metrics::gauge!(crate::metrics::LOG_PENDING_BYTES).set(self.pending_bytes() as f64);
        metrics::gauge!(crate::metrics::LOG_PENDING_EVENTS).set(self.pending_events() as f64);
    }

    /// Records where reading `channel` starts, unless a position is already stored (a
    /// restarted job resumes where it was). Returns the position in effect.
    pub fn init_position(
        &self,
        channel: &str,
        position: ChannelPosition,
    ) -> Result<ChannelPosition, LogError> {
        let mut state = self.state();
        let st = state.entry(channel.to_string()).or_default();
        if let Some(existing) = st.position {
            return Ok(existing);
        }
        self.inner
            .tree
            .insert(
                codec::channel_key(codec::POSITION, channel)?,
                &position.encode(),
            )
            .map_err(|e| self.storage(e))?;
        st.position = Some(position);
        Ok(position)
    }

    /// Where reading `channel` resumes, if it was ever started.
    pub fn position(&self, channel: &str) -> Option<ChannelPosition> {
        self.state().get(channel).and_then(|c| c.position)
    }

    /// All channels with a position, and their positions.
    pub fn positions(&self) -> HashMap<String, ChannelPosition> {
        self.state()
            .iter()
            .filter_map(|(ch, st)| Some((ch.clone(), st.position?)))
            .collect()
    }

    /// Appends a sealed window of entries, the channel's new read position and the time
    /// tick that sealed it, atomically. Waits first while the log is over its size bound.
    pub async fn append(
        &self,
        channel: &str,
        entries: Vec<LogEntry>,
        position: ChannelPosition,
        tick_ts: u64,
    ) -> Result<(), LogError> {
        self.wait_for_room().await;
        self.append_now(channel, entries, position, tick_ts)
    }

    /// Waits until pending bytes are at or below the bound.
    pub async fn wait_for_room(&self) {
        let mut advanced = self.inner.advanced.subscribe();
        while self.pending_bytes() > self.inner.max_pending_bytes {
            // The sender lives in `inner`, which `self` keeps alive: this never errors.
            if advanced.changed().await.is_err() {
                return;
            }
        }
    }

    /// [`append`](Self::append) without the back-pressure wait.
    pub fn append_now(
        &self,
        channel: &str,
        entries: Vec<LogEntry>,
        position: ChannelPosition,
        tick_ts: u64,
    ) -> Result<(), LogError> {
        {
            let mut state = self.state();
            let st = state.entry(channel.to_string()).or_default();
            let backward = |what: &'static str, from: String, to: String| LogError::Backward {
                channel: channel.to_string(),
                what,
                from,
                to,
            };
            if let Some(old) = st.position {
                if position.next_offset < old.next_offset {
                    return Err(backward(
                        "WAL position",
                        old.next_offset.to_string(),
                        position.next_offset.to_string(),
                    ));
                }
                if position.skip_through_ts < old.skip_through_ts {
                    return Err(backward(
                        "skip-through ts",
                        old.skip_through_ts.to_string(),
                        position.skip_through_ts.to_string(),
                    ));
                }
            }
            if tick_ts < st.source_ts {
                return Err(backward(
                    "source time tick",
                    st.source_ts.to_string(),
                    tick_ts.to_string(),
                ));
            }
            let mut batch = sled::Batch::default();
            let mut seq = st.next_seq;
            let mut bytes = 0;
            for e in &entries {
                let value = codec::encode_entry(e);
                bytes += value.len() as u64;
                batch.insert(codec::entry_key(channel, seq)?, value);
                seq += 1;
            }
            batch.insert(
                codec::channel_key(codec::POSITION, channel)?,
                &position.encode()[..],
            );
            batch.insert(
                codec::channel_key(codec::TICK, channel)?,
                &tick_ts.to_be_bytes()[..],
            );
            self.inner
                .tree
                .apply_batch(batch)
                .map_err(|e| self.storage(e))?;
            // Before the tick is visible: a reader who sees the tick sees these counted.
            self.inner.fence.observe(&entries);
            let count = entries.len() as u64;
            st.next_seq = seq;
            st.position = Some(position);
            st.source_ts = tick_ts;
            st.pending_events += count;
            st.pending_bytes += bytes;
            self.inner
                .pending_events
                .fetch_add(count, Ordering::Relaxed);
            self.inner.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        self.publish_gauges();
        self.inner.appended.send_modify(|g| *g = g.wrapping_add(1));
        failpoint::hit("log.after_append");
        Ok(())
    }

    /// Entries of `channel` from `from_seq` on, in seq order: at most `max_entries`, and
    /// no more once `max_bytes` are reached (at least one entry is returned if any exists).
    pub fn read(
        &self,
        channel: &str,
        from_seq: u64,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<StoredEntry>, LogError> {
        let start = codec::entry_key(channel, from_seq)?;
        let end = codec::entry_key(channel, u64::MAX)?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for kv in self.inner.tree.range(start..=end) {
            if out.len() >= max_entries || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            bytes += v.len() as u64;
            let seq = codec::split_key(&k)
                .and_then(|(_, _, rest)| codec::seq_of(rest))
                .ok_or_else(|| LogError::Corrupt {
                    channel: channel.to_string(),
                    seq: from_seq,
                    reason: "bad entry key".into(),
                })?;
            out.push(StoredEntry {
                seq,
                entry: codec::decode_entry(channel, seq, &v)?,
            });
        }
        Ok(out)
    }

    /// The apply cursor of `channel` (zero when nothing was applied).
    pub fn cursor(&self, channel: &str) -> Cursor {
        self.state()
            .get(channel)
            .map(|c| c.cursor)
            .unwrap_or_default()
    }

    /// Seq the next appended entry of `channel` will get.
    pub fn end_seq(&self, channel: &str) -> u64 {
        self.state().get(channel).map_or(0, |c| c.next_seq)
    }

    /// Moves the apply cursor of `channel` to `to` and drops the entries it passed, in one
    /// batch. Call only after the target accepted every entry below `to.next_seq`.
    pub fn advance(&self, channel: &str, to: Cursor) -> Result<(), LogError> {
        {
            let mut state = self.state();
            let st = state.entry(channel.to_string()).or_default();
            let from = st.cursor;
            let backward = |what: &'static str, a: u64, b: u64| LogError::Backward {
                channel: channel.to_string(),
                what,
                from: a.to_string(),
                to: b.to_string(),
            };
            if to.next_seq < from.next_seq {
                return Err(backward("apply cursor", from.next_seq, to.next_seq));
            }
            if to.applied_ts < from.applied_ts {
                return Err(backward("applied ts", from.applied_ts, to.applied_ts));
            }
            if to.next_seq > st.next_seq {
                return Err(LogError::PastEnd {
                    channel: channel.to_string(),
                    to: to.next_seq,
                    end: st.next_seq,
                });
            }
            if to == from {
                return Ok(());
            }
            let mut batch = sled::Batch::default();
            let (mut count, mut bytes) = (0u64, 0u64);
            let start = codec::entry_key(channel, from.next_seq)?;
            let end = codec::entry_key(channel, to.next_seq)?;
            for kv in self.inner.tree.range(start..end) {
                let (k, v) = kv.map_err(|e| self.storage(e))?;
                count += 1;
                bytes += v.len() as u64;
                batch.remove(k);
            }
            batch.insert(
                codec::channel_key(codec::CURSOR, channel)?,
                &to.encode()[..],
            );
            self.inner
                .tree
                .apply_batch(batch)
                .map_err(|e| self.storage(e))?;
            st.cursor = to;
            st.pending_events -= count.min(st.pending_events);
            st.pending_bytes -= bytes.min(st.pending_bytes);
            self.inner
                .pending_events
                .fetch_sub(count, Ordering::Relaxed);
            self.inner.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        self.publish_gauges();
        self.inner.advanced.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// A receiver that changes after every append (to any channel).
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    /// Entries stored and not yet applied, over all channels.
    pub fn pending_events(&self) -> u64 {
        self.inner.pending_events.load(Ordering::Relaxed)
    }

    /// Bytes of entries stored and not yet applied, over all channels.
    pub fn pending_bytes(&self) -> u64 {
        self.inner.pending_bytes.load(Ordering::Relaxed)
    }

    /// Entries of one channel not yet applied.
    pub fn channel_pending_events(&self, channel: &str) -> u64 {
        self.state().get(channel).map_or(0, |c| c.pending_events)
    }

    /// Every source write on `channel` with a timestamp <= this is on the target.
    pub fn applied_ts(&self, channel: &str) -> u64 {
        self.cursor(channel).applied_ts
    }

    /// The newest source time tick appended for `channel`; `source_ts - applied_ts` is the
    /// replication lag, honest even when nothing is written (ticks keep coming).
    pub fn source_ts(&self, channel: &str) -> u64 {
        self.state().get(channel).map_or(0, |c| c.source_ts)
    }

    /// Whether the collection-wide DDL `key` was applied (by any channel).
    pub fn ddl_done(&self, key: &str) -> Result<bool, LogError> {
        self.inner
            .ddl
            .contains_key(format!("{DONE}{key}"))
            .map_err(|e| self.storage(e))
    }

    /// Writes `key` in the DDL tree and flushes: durable before it returns.
    fn put_ddl(&self, key: String, value: &[u8]) -> Result<(), LogError> {
        self.inner.ddl.insert(key, value).map_err(|e| self.storage(e))?;
        self.inner.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Records that the collection-wide DDL `key` is applied, and flushes: channels that
    /// pass it afterwards must never see it undone by a crash (their cursors would be past
    /// it, the others' not).
    pub fn mark_ddl_done(&self, key: &str) -> Result<(), LogError> {
        self.put_ddl(format!("{DONE}{key}"), &[1u8][..])
    }

    /// Records that the stream dropped source collection `id`'s target (`on_source_drop =
    /// "drop"`); durable before it returns.
    pub fn mark_dropped(&self, id: i64) -> Result<(), LogError> {
        self.put_ddl(format!("{DROPPED}{id}"), &[1u8][..])?;
        self.inner
            .dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        Ok(())
    }

    /// The source partition ID the target partition `name` of source collection
    /// `collection_id` holds the rows of: `Some(0)` when it holds none (its source partition
    /// was dropped), `None` when the stream never said (the job's record does).
    pub fn partition_bound(&self, collection_id: i64, name: &str) -> Result<Option<i64>, LogError> {
        let v = self
            .inner
            .ddl
            .get(bound_key(collection_id, name))
            .map_err(|e| self.storage(e))?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok()).map(i64::from_be_bytes))
    }

    /// Records what [`DurableLog::partition_bound`] returns; durable before it returns.
    pub fn bind_partition(&self, collection_id: i64, name: &str, partition_id: i64) -> Result<(), LogError> {
        self.put_ddl(bound_key(collection_id, name), &partition_id.to_be_bytes()[..])
    }

    /// Whether source partition `partition_id` is known dropped.
    pub fn partition_dropped(&self, collection_id: i64, partition_id: i64) -> Result<bool, LogError> {
        self.inner
            .ddl
            .contains_key(dropped_partition_key(collection_id, partition_id))
            .map_err(|e| self.storage(e))
    }

    /// Records that source partition `partition_id` was dropped; durable before it returns.
    pub fn mark_partition_dropped(&self, collection_id: i64, partition_id: i64) -> Result<(), LogError> {
        self.put_ddl(dropped_partition_key(collection_id, partition_id), &[1u8][..])
    }

    /// Records a collection the stream took on while running (a job over a whole
    /// database); `record` is the caller's description of it. Durable before it returns.
    pub fn put_followed(&self, id: i64, record: &[u8]) -> Result<(), LogError> {
        self.put_ddl(format!("{FOLLOWED}{id:020}"), record)
    }

    /// The records of [`DurableLog::put_followed`], in ID order.
    pub fn followed(&self) -> Result<Vec<Vec<u8>>, LogError> {
        self.inner
            .ddl
            .scan_prefix(FOLLOWED)
            .map(|kv| kv.map(|(_, v)| v.to_vec()).map_err(|e| self.storage(e)))
            .collect()
    }

    /// Source collections whose drop the stream applied.
    pub fn dropped(&self) -> BTreeSet<i64> {
        self.inner
            .dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Arms the cutover's watch for writes of `collection_ids` stamped after a fence set
    /// later ([`FenceWatch::set_fence`]); disarmed when the watch is dropped.
    pub fn watch_fence(&self, collection_ids: impl IntoIterator<Item = i64>) -> FenceWatch {
        FenceWatch::arm(self.inner.fence.clone(), collection_ids)
    }

    /// Writes everything buffered to disk (shutdown, tests).
    pub async fn flush(&self) -> Result<(), LogError> {
        self.inner
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }
}
