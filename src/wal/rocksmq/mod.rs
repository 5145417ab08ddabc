//! The RocksMQ transport: the DML channels of a standalone Milvus whose WAL is its embedded
//! RocksMQ, read from a RocksDB secondary instance (read-only, beside the running Milvus,
//! catching up with it on a short interval).
//!
//! RocksMQ keeps a message under `<topic>/<message id>` in the `default` column family, the
//! value being the same msgstream payload Milvus puts on Kafka. Message ids come from one
//! allocator for all topics: they grow along a topic but are not contiguous, so a position
//! is a message id (the next one to read is any id at or above it) and a gap says nothing.
//! Milvus formats ids in decimal without padding and relies on them having one length (18
//! digits), as ferry does when it seeks.
//!
//! Retention deletes a topic's oldest messages (whole pages, a prefix of the topic). ferry's
//! position is the id after the last message it read, or the id of a message it read but
//! has not sealed yet; that message still being there proves nothing after it was deleted.
//! Before every read ferry checks it, and a missing one is an error naming the topic and the
//! position, never a silent jump. (RocksMQ's meta store
//! records pages and acknowledgements of Milvus's own consumers, not a reader it does not
//! know; the message itself is the record of what is left.)

mod ffi;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::transport::{BoxFuture, RawRecord, RawStream, Transport};
use super::WalError;

/// The column family RocksMQ keeps messages in.
const MESSAGES: &str = "default";
/// Records read from one channel per catch-up, at most (the rest follow at once).
const BATCH_RECORDS: usize = 2048;
/// Bytes read from one channel per catch-up, at most (one record may pass it).
const BATCH_BYTES: usize = 64 << 20;

/// A standalone Milvus's RocksMQ (`rocksmq.path`, e.g. `/var/lib/milvus/rdb_data`).
#[derive(Debug, Clone)]
pub struct RocksMqTransport {
    path: PathBuf,
    /// Where secondary instances keep their own files (under the job's state_dir).
    scratch: PathBuf,
    channels: Vec<String>,
    catch_up: Duration,
    /// How the running stream's catch-ups go (shared by clones: `/readyz` reads it).
    health: Arc<Mutex<Health>>,
}

/// The outcome of the stream's latest catch-up.
#[derive(Debug, Default)]
struct Health {
    ok_at: Option<Instant>,
    /// The latest failure, cleared by a success.
    failed: Option<(Instant, String)>,
}

/// A catch-up this recent (and within this many intervals) answers `/readyz` by itself.
const RECENT: Duration = Duration::from_secs(10);
const RECENT_INTERVALS: u32 = 20;

impl RocksMqTransport {
    pub fn new(path: impl Into<PathBuf>, scratch: impl Into<PathBuf>, channels: Vec<String>, catch_up: Duration) -> Self {
        RocksMqTransport { path: path.into(), scratch: scratch.into(), channels, catch_up, health: Arc::default() }
    }

    fn record(&self, outcome: Result<(), &WalError>) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(_) => *h = Health { ok_at: Some(Instant::now()), failed: None },
            Err(e) => h.failed = Some((Instant::now(), e.to_string())),
        }
    }

    fn err(&self, reason: String, retryable: bool) -> WalError {
        WalError::RocksMq { path: self.path.display().to_string(), reason, retryable }
    }

    /// A fresh secondary instance with a scratch directory of its own.
    fn open_instance(&self) -> Result<Instance, WalError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self.scratch.join(format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.err(format!("cannot create the secondary instance's directory {}: {e}", dir.display()), false))?;
        let current = self.path.join("CURRENT");
        let missing = match std::fs::File::open(&current) {
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                "cannot read {}: permission denied; the user ferry runs as must be able to read this directory and its files and enter every directory above it (mount it read-only: ferry never writes there)",
                current.display()
            )),
            Err(_) => Some(
                "no RocksDB here (no CURRENT file): [source.wal] rocksmq must be the standalone's rocksmq.path (for example /var/lib/milvus/rdb_data)".into(),
            ),
        };
        if let Some(reason) = missing {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(self.err(reason, false));
        }
        let path = self.path.display().to_string();
        match ffi::Secondary::open(&path, &dir.display().to_string()) {
            Ok(db) if db.column_families().iter().any(|c| c == MESSAGES) => Ok(Instance { db, dir }),
            Ok(db) => {
                let cfs = db.column_families().join(", ");
                drop(db);
                let _ = std::fs::remove_dir_all(&dir);
                Err(self.err(format!("not a RocksMQ: no {MESSAGES:?} column family (it has {cfs})"), false))
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(self.err(format!("cannot open it as a secondary instance: {e}"), false))
            }
        }
    }
}

/// A secondary instance and its scratch directory (removed with it).
struct Instance {
    db: ffi::Secondary,
    dir: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key(topic: &str, id: i64) -> Vec<u8> {
    format!("{topic}/{id}").into_bytes()
}

/// The end of a topic's keys (`/` + 1), exclusive.
fn topic_end(topic: &str) -> Vec<u8> {
    format!("{topic}0").into_bytes()
}

/// The message id of a key of `topic`.
fn message_id(topic: &str, k: &[u8]) -> Option<i64> {
    let rest = k.strip_prefix(topic.as_bytes())?.strip_prefix(b"/")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The id after a topic's last message (0 when it has none).
fn next_id(db: &ffi::Secondary, topic: &str) -> Result<i64, String> {
    let mut it = db.iter(MESSAGES, topic_end(topic))?;
    it.seek_for_prev(&topic_end(topic));
    let next = match it.current() {
        Some((k, _)) => message_id(topic, k).map_or(0, |id| id + 1),
        None => 0,
    };
    it.status()?;
    Ok(next)
}

impl Transport for RocksMqTransport {
    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn describe(&self) -> String {
        format!("RocksMQ at {}", self.path.display())
    }

    /// The running stream's state: when it last caught up with Milvus, or why it could not.
    /// A stream that has not caught up lately (not started yet, or not reading because the
    /// job is paused or its log is full) is checked by opening a secondary instance.
    fn probe(&self) -> BoxFuture<'_, Result<String, WalError>> {
        Box::pin(async move {
            let (ok_at, failed) = {
                let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
                (h.ok_at, h.failed.clone())
            };
            let fresh = RECENT.max(self.catch_up * RECENT_INTERVALS);
            match (ok_at, failed) {
                (_, Some((at, why))) => Err(self.err(format!("the reader's last catch-up, {:.1}s ago, failed: {why}", at.elapsed().as_secs_f64()), true)),
                (Some(at), None) if at.elapsed() <= fresh => {
                    Ok(format!("ok, caught up with Milvus {:.1}s ago", at.elapsed().as_secs_f64()))
                }
                (ok_at, None) => self.high_watermarks().await.map(|_| match ok_at {
                    Some(at) => format!("ok (readable; the stream last caught up {:.1}s ago)", at.elapsed().as_secs_f64()),
                    None => "ok (readable; not streaming yet)".to_string(),
                }),
            }
        })
    }

    fn high_watermarks(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, WalError>> {
        Box::pin(async move {
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let inst = this.open_instance()?;
                inst.db.catch_up().map_err(|e| this.err(format!("catching up with Milvus: {e}"), true))?;
                let mut out = HashMap::new();
                for ch in &this.channels {
                    let next = next_id(&inst.db, ch).map_err(|e| this.err(format!("topic {ch}: {e}"), true))?;
                    out.insert(ch.clone(), next);
                }
                Ok(out)
            })
            .await
            .map_err(|join| WalError::Task { reason: join.to_string() })?
        })
    }

    fn open(&self, from: &HashMap<String, i64>) -> Result<Box<dyn RawStream>, WalError> {
        let mut next: Vec<(String, i64)> = from.iter().map(|(c, p)| (c.clone(), *p)).collect();
        next.sort();
        Ok(Box::new(RocksMqStream {
            transport: self.clone(),
            instance: None,
            next,
            buf: VecDeque::new(),
            last_catch_up: None,
        }))
    }
}

/// Records of the opened topics, each in message-id order.
struct RocksMqStream {
    transport: RocksMqTransport,
    /// Opened on first read (off the runtime).
    instance: Option<Arc<Instance>>,
    /// Per topic, the next message id to read.
    next: Vec<(String, i64)>,
    buf: VecDeque<RawRecord>,
    last_catch_up: Option<Instant>,
}

impl RawStream for RocksMqStream {
    fn next(&mut self) -> BoxFuture<'_, Result<RawRecord, WalError>> {
        Box::pin(async move {
            loop {
                if let Some(r) = self.buf.pop_front() {
                    return Ok(r);
                }
                if let Some(at) = self.last_catch_up {
                    let due = at + self.transport.catch_up;
                    tokio::time::sleep_until(due.into()).await;
                }
                self.last_catch_up = Some(Instant::now());
                let transport = self.transport.clone();
                let instance = self.instance.clone();
                let mut next = self.next.clone();
                let (instance, records) = tokio::task::spawn_blocking(move || {
                    let read = || {
                        let instance = match instance {
                            Some(i) => i,
                            None => Arc::new(transport.open_instance()?),
                        };
                        let records = read_new(&transport, &instance.db, &mut next)?;
                        Ok::<_, WalError>((instance, records))
                    };
                    let read = read();
                    transport.record(read.as_ref().map(|_| ()));
                    read.map(|(instance, records)| (instance, (records, next)))
                })
                .await
                .map_err(|join| WalError::Task { reason: join.to_string() })??;
                self.instance = Some(instance);
                let (records, next) = records;
                self.next = next;
                self.buf.extend(records);
            }
        })
    }
}

/// Catches up with Milvus and reads what each topic gained past its position (a bounded
/// batch per topic), checking first that retention has not passed the position.
fn read_new(t: &RocksMqTransport, db: &ffi::Secondary, next: &mut [(String, i64)]) -> Result<Vec<RawRecord>, WalError> {
    db.catch_up().map_err(|e| t.err(format!("catching up with Milvus: {e}"), true))?;
    let mut out = Vec::new();
    for (topic, pos) in next.iter_mut() {
        let mut it = db.iter(MESSAGES, topic_end(topic)).map_err(|e| t.err(e, false))?;
        if *pos > 0 {
            // A position is the id after the last message read, or the id of a message read
            // but not yet sealed by a time tick (the sequencer carries it over): one of the two
            // was in the topic when the position was stored. Retention deletes a prefix, so
            // while that message is there nothing after it was deleted.
            let (last, at) = (key(topic, *pos - 1), key(topic, *pos));
            it.seek(&last);
            match it.current().map(|(k, _)| k.to_vec()) {
                Some(k) if k == last => it.next(),
                Some(k) if k == at => {}
                _ => {
                    it.status().map_err(|e| t.err(format!("topic {topic}: {e}"), true))?;
                    return Err(WalError::OffsetOutOfRange {
                        topic: topic.clone(),
                        offset: *pos,
                        reason: format!(
                            "neither message {} (read last) nor {} (to read next) is in RocksMQ any more: its retention (rocksmq.retentionTimeInMinutes, rocksmq.retentionSizeInMB) deleted them, and messages after them may be gone too",
                            *pos - 1,
                            *pos
                        ),
                    });
                }
            }
        } else {
            it.seek(format!("{topic}/").as_bytes());
        }
        let (mut n, mut bytes) = (0, 0);
        while let Some((k, v)) = it.current() {
            let Some(id) = message_id(topic, k) else {
                it.next();
                continue;
            };
            if id >= *pos {
                bytes += v.len();
                out.push(RawRecord { channel: topic.clone(), position: id, value: Some(v.to_vec()) });
                *pos = id + 1;
                n += 1;
                if n >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                    break;
                }
            }
            it.next();
        }
        it.status().map_err(|e| t.err(format!("topic {topic}: {e}"), true))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids() {
        let t = "by-dev-rootcoord-dml_1";
        assert_eq!(message_id(t, b"by-dev-rootcoord-dml_1/470912107410358273"), Some(470912107410358273));
        assert_eq!(message_id(t, b"by-dev-rootcoord-dml_10/470912107410358273"), None, "another topic");
        assert_eq!(message_id(t, b"by-dev-rootcoord-dml_1/x"), None);
        // Every key of the topic sorts below its end, and no key of dml_10 does.
        assert!(key(t, 999_999_999_999_999_999).as_slice() < topic_end(t).as_slice());
        assert!(b"by-dev-rootcoord-dml_10/1".as_slice() > topic_end(t).as_slice());
    }
}
