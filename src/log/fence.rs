//! The cutover's fence watch: counts writes of the job's collections that reach the log
//! stamped after the cutover's fence timestamp, i.e. writes the freeze did not stop.
//!
//! The watch is armed before the fence is allocated, so every write stamped after the fence
//! is appended after arming (a timestamp allocated after the fence was allocated after the
//! watch was armed, and a write reaches the log only after it is stamped). Until the fence
//! is known, the watched writes appended are kept; once it is set they are sorted and from
//! then on writes are only counted. [`DurableLog::append_now`](super::DurableLog) reports
//! every appended window before its time tick becomes visible, so once a channel's source
//! tick passes a timestamp, every write of that channel stamped up to it has been counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::codec::LogEntry;
use crate::proto::common::MsgType;

/// Writes of one collection stamped after the fence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FenceBreach {
    /// WAL write records (Insert or Delete; a Milvus 2.3 upsert is one of each).
    pub writes: u64,
    /// Rows the Insert records carry.
    pub inserted_rows: u64,
    /// Keys the Delete records carry.
    pub deleted_rows: u64,
    /// Hybrid timestamp of the earliest of them.
    pub first_ts: u64,
}

impl FenceBreach {
    fn add(&mut self, w: &Write) {
        if self.writes == 0 || w.ts < self.first_ts {
            self.first_ts = w.ts;
        }
        self.writes += 1;
        if w.insert {
            self.inserted_rows += w.rows;
        } else {
            self.deleted_rows += w.rows;
        }
    }
}

/// One watched write.
#[derive(Debug, Clone, Copy)]
struct Write {
    collection_id: i64,
    ts: u64,
    insert: bool,
    rows: u64,
}

struct Armed {
    generation: u64,
    collections: HashSet<i64>,
    /// `None` until the fence timestamp is known.
    fence: Option<u64>,
    /// Watched writes appended before the fence was known.
    early: Vec<Write>,
    breaches: BTreeMap<i64, FenceBreach>,
}

/// The log's side of the watch (one per log; at most one watch armed at a time).
#[derive(Default)]
pub(super) struct FenceState {
    armed: Mutex<Option<Armed>>,
    generations: std::sync::atomic::AtomicU64,
}

impl FenceState {
    fn lock(&self) -> MutexGuard<'_, Option<Armed>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the watched writes among `entries`; cheap when no watch is armed.
    pub(super) fn observe(&self, entries: &[LogEntry]) {
        let mut armed = self.lock();
        let Some(a) = armed.as_mut() else { return };
        for e in entries {
            let insert = match MsgType::try_from(e.msg_type) {
                Ok(MsgType::Insert) => true,
                Ok(MsgType::Delete) => false,
                _ => continue,
            };
            if !a.collections.contains(&e.collection_id) || a.fence.is_some_and(|f| e.ts <= f) {
                continue;
            }
            // A record that cannot be decoded still counts as a write, of unknown size.
            let rows = crate::msgstream::decode::peek(&e.payload).map_or(0, |p| p.rows);
            let w = Write {
                collection_id: e.collection_id,
                ts: e.ts,
                insert,
                rows,
            };
            match a.fence {
                Some(_) => a.breaches.entry(w.collection_id).or_default().add(&w),
                None => a.early.push(w),
            }
        }
    }

    fn arm(&self, collections: HashSet<i64>) -> u64 {
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        *self.lock() = Some(Armed {
            generation,
            collections,
            fence: None,
            early: Vec::new(),
            breaches: BTreeMap::new(),
        });
        generation
    }
}

/// An armed fence watch (from [`DurableLog::watch_fence`](super::DurableLog::watch_fence)):
/// disarmed when dropped.
pub struct FenceWatch {
    state: Arc<FenceState>,
    generation: u64,
}

impl FenceWatch {
    pub(super) fn arm(state: Arc<FenceState>, collections: impl IntoIterator<Item = i64>) -> Self {
        let generation = state.arm(collections.into_iter().collect());
        FenceWatch { state, generation }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Armed) -> T) -> Option<T> {
        let mut armed = self.state.lock();
        armed
            .as_mut()
            .filter(|a| a.generation == self.generation)
            .map(f)
    }

    /// Sets the fence: writes stamped after `ts` are breaches, those appended since arming
    /// included. Only the first call counts (the fence never moves).
    pub fn set_fence(&self, ts: u64) {
        self.with(|a| {
            if a.fence.is_some() {
                return;
            }
            a.fence = Some(ts);
            for w in std::mem::take(&mut a.early) {
                if w.ts > ts {
                    a.breaches.entry(w.collection_id).or_default().add(&w);
                }
            }
        });
    }

    /// The watched collections (by ID) with writes stamped after the fence, so far.
    pub fn breaches(&self) -> BTreeMap<i64, FenceBreach> {
        self.with(|a| {
            if a.fence.is_some() {
                a.breaches.clone()
            } else {
                BTreeMap::new()
            }
        })
        .unwrap_or_default()
    }
}

impl Drop for FenceWatch {
    fn drop(&mut self) {
        let mut armed = self.state.lock();
        if armed
            .as_ref()
            .is_some_and(|a| a.generation == self.generation)
        {
            *armed = None;
        }
    }
}
