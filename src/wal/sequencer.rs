//! Turns one channel's records, in Kafka order, into sealed time-tick windows.
//!
//! Kafka order is not timestamp order: Milvus proxies allocate a timestamp per request and
//! produce concurrently, so a record with a larger timestamp can land first. What Milvus
//! does guarantee is the time tick: once a tick with timestamp T is on a channel, every
//! message with a timestamp <= T is before it. Milvus's own consumers (`MqTtMsgStream`)
//! therefore buffer records until a tick, emit those with ts <= T sorted by ts, and carry
//! the rest over. The sequencer does the same, so the log holds whole windows in timestamp
//! order and the applier can rely on two properties:
//!
//! - an upsert's Insert and Delete (same ts) always land in the same window, so the applier
//!   never sees half of one because the other half has not arrived yet;
//! - later windows never hold a timestamp below an earlier window's tick.
//!
//! The resume position after a window is the first carried-over record (or the record
//! after the tick), plus the tick's timestamp: on restart, records up to that timestamp
//! were already appended and are dropped until the first tick — how `MqTtMsgStream.Seek`
//! resumes.

use super::{WalError, WalEvent, WalRecord};
use crate::log::ChannelPosition;

/// A sealed window: every record of the channel with `ts <= tick_ts` not in an earlier one.
#[derive(Debug)]
pub struct Window {
    /// Records sorted by timestamp (Kafka order among equal timestamps).
    pub entries: Vec<WalRecord>,
    /// Where reading resumes once the window is stored.
    pub position: ChannelPosition,
    /// The tick that sealed the window.
    pub tick_ts: u64,
}

/// Per-channel window builder.
#[derive(Debug)]
pub struct Sequencer {
    channel: String,
    /// Highest tick emitted (or the resume position's).
    sealed_ts: u64,
    /// True from a resume until the first tick at or past `sealed_ts`: records with
    /// ts <= `sealed_ts` in that stretch were appended before the restart (or, on a fresh
    /// start, are covered by the snapshot).
    resuming: bool,
    held: Vec<WalRecord>,
    held_bytes: usize,
    max_held_bytes: usize,
}

impl Sequencer {
    /// A sequencer starting at `start` (as stored in the log). `max_held_bytes` bounds the
    /// records buffered while waiting for a tick.
    pub fn new(channel: impl Into<String>, start: ChannelPosition, max_held_bytes: usize) -> Self {
        Sequencer {
            channel: channel.into(),
            sealed_ts: start.skip_through_ts,
            resuming: start.skip_through_ts > 0,
            held: Vec::new(),
            held_bytes: 0,
            max_held_bytes,
        }
    }

    /// Feeds the next record of the channel; returns a window when `rec` is a time tick.
    pub fn push(&mut self, rec: WalRecord) -> Result<Option<Window>, WalError> {
        if let WalEvent::TimeTick { ts } = rec.event {
            return Ok(self.seal(ts, rec.offset));
        }
        let ts = rec.event.ts();
        if ts <= self.sealed_ts {
            if self.resuming {
                return Ok(None);
            }
            // Milvus promised this cannot happen. Keep the record (losing it would be
            // worse than applying it one window late) and say so.
            tracing::warn!(
                channel = %self.channel,
                offset = rec.offset,
                ts,
                tick = self.sealed_ts,
                "WAL record older than an earlier time tick; applying it in the next window"
            );
            metrics::counter!(crate::metrics::WAL_LATE_RECORDS).increment(1);
        }
        self.held_bytes += rec.raw.len();
        self.held.push(rec);
        if self.held_bytes > self.max_held_bytes {
            return Err(WalError::NoTimeTick {
                channel: self.channel.clone(),
                bytes: self.held_bytes,
                max_bytes: self.max_held_bytes,
            });
        }
        Ok(None)
    }

    fn seal(&mut self, tick: u64, tick_offset: i64) -> Option<Window> {
        if self.resuming && tick < self.sealed_ts {
            // An older tick (read again after a resume, or before a fresh start's skip
            // timestamp): everything it covers was appended or is the snapshot's. Held records
            // all have later timestamps; they wait for a newer tick.
            return None;
        }
        self.resuming = false;
        // A tick never goes back; a repeated or older one seals nothing new.
        let tick = tick.max(self.sealed_ts);
        let (mut ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|r| r.event.ts() <= tick);
        // Stable: equal timestamps keep Kafka order (an upsert's Insert before its Delete).
        ready.sort_by_key(|r| r.event.ts());
        self.held_bytes = rest.iter().map(|r| r.raw.len()).sum();
        let next_offset = rest.first().map_or(tick_offset + 1, |r| r.offset);
        self.held = rest;
        self.sealed_ts = tick;
        Some(Window {
            entries: ready,
            position: ChannelPosition {
                next_offset,
                skip_through_ts: tick,
            },
            tick_ts: tick,
        })
    }

    /// Bytes of records waiting for a tick.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgstream::decode::decode;
    use crate::msgstream::testdata as td;

    fn rec(offset: i64, raw: Vec<u8>) -> WalRecord {
        let event = decode(&raw).unwrap();
        WalRecord {
            channel: "ch".into(),
            offset,
            msg_type: 0,
            event,
            raw,
        }
    }

    fn order(w: &Window) -> Vec<(i64, &'static str)> {
        w.entries
            .iter()
            .map(|r| (r.offset, r.event.kind()))
            .collect()
    }

    #[test]
    fn windows_sort_by_ts_and_carry_early_records_over() {
        let mut s = Sequencer::new("ch", ChannelPosition::default(), 1 << 20);
        assert!(s
            .push(rec(0, td::insert(1, "p", 30, &[1], 0.0)))
            .unwrap()
            .is_none());
        assert!(s
            .push(rec(1, td::insert(1, "p", 10, &[2], 0.0)))
            .unwrap()
            .is_none());
        // Upsert pair at ts 20: Insert then Delete, must stay in that order.
        s.push(rec(2, td::insert(1, "p", 20, &[3], 0.0))).unwrap();
        s.push(rec(3, td::delete(1, "", 20, &[3]))).unwrap();
        let w = s.push(rec(4, td::time_tick(25))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(1, "insert"), (2, "insert"), (3, "delete")]);
        assert_eq!(w.tick_ts, 25);
        // The ts-30 record was held back: resume from it, skipping what was appended.
        assert_eq!(
            w.position,
            ChannelPosition {
                next_offset: 0,
                skip_through_ts: 25
            }
        );
        let w = s.push(rec(5, td::time_tick(40))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(0, "insert")]);
        assert_eq!(w.position.next_offset, 6);
    }

    #[test]
    fn resume_drops_records_already_appended_until_the_first_tick() {
        // Replays the stream above from the position the first window stored.
        let mut s = Sequencer::new(
            "ch",
            ChannelPosition {
                next_offset: 0,
                skip_through_ts: 25,
            },
            1 << 20,
        );
        s.push(rec(0, td::insert(1, "p", 30, &[1], 0.0))).unwrap();
        s.push(rec(1, td::insert(1, "p", 10, &[2], 0.0))).unwrap();
        s.push(rec(2, td::insert(1, "p", 20, &[3], 0.0))).unwrap();
        s.push(rec(3, td::delete(1, "", 20, &[3]))).unwrap();
        let w = s.push(rec(4, td::time_tick(25))).unwrap().unwrap();
        assert!(w.entries.is_empty());
        let w = s.push(rec(5, td::time_tick(40))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(0, "insert")]);
    }

    #[test]
    fn a_fresh_start_drops_everything_up_to_its_skip_timestamp() {
        // Start at offset 100 with skip ts 30: the upsert at ts 20 had its Insert before
        // offset 100; its Delete, read here, must not be replayed alone.
        let mut s = Sequencer::new("ch", ChannelPosition { next_offset: 100, skip_through_ts: 30 }, 1 << 20);
        s.push(rec(100, td::delete(1, "", 20, &[3]))).unwrap();
        s.push(rec(101, td::insert(1, "p", 35, &[4], 0.0))).unwrap();
        assert!(s.push(rec(102, td::time_tick(25))).unwrap().is_none(), "a tick below the skip seals nothing");
        // Still before the first tick past 30: a record at ts 28 is dropped too.
        s.push(rec(103, td::insert(1, "p", 28, &[5], 0.0))).unwrap();
        let w = s.push(rec(104, td::time_tick(40))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(101, "insert")]);
        assert_eq!(w.position, ChannelPosition { next_offset: 105, skip_through_ts: 40 });
    }

    #[test]
    fn a_resume_ignores_older_ticks_before_its_own() {
        // Resume at a carried record (offset 0, ts 30) that sat before an older tick (15)
        // and the stored tick (25): records up to 25 were appended already.
        let mut s = Sequencer::new("ch", ChannelPosition { next_offset: 0, skip_through_ts: 25 }, 1 << 20);
        s.push(rec(0, td::insert(1, "p", 30, &[1], 0.0))).unwrap();
        assert!(s.push(rec(1, td::time_tick(15))).unwrap().is_none());
        s.push(rec(2, td::insert(1, "p", 22, &[2], 0.0))).unwrap();
        assert!(s.push(rec(3, td::time_tick(25))).unwrap().unwrap().entries.is_empty());
        let w = s.push(rec(4, td::time_tick(40))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(0, "insert")], "ts 22 was appended before the restart");
    }

    #[test]
    fn late_records_after_a_tick_are_kept_not_lost() {
        let mut s = Sequencer::new("ch", ChannelPosition::default(), 1 << 20);
        s.push(rec(0, td::time_tick(50))).unwrap();
        s.push(rec(1, td::insert(1, "p", 40, &[1], 0.0))).unwrap();
        let w = s.push(rec(2, td::time_tick(45))).unwrap().unwrap();
        assert_eq!(order(&w), vec![(1, "insert")]);
        assert_eq!(w.tick_ts, 50, "ticks never go back");
    }

    #[test]
    fn too_much_without_a_tick_is_an_error() {
        let mut s = Sequencer::new("ch", ChannelPosition::default(), 100);
        let err = (0..10)
            .find_map(|i| s.push(rec(i, td::insert(1, "p", 5, &[i], 0.0))).err())
            .unwrap();
        assert!(matches!(err, WalError::NoTimeTick { .. }), "{err}");
    }
}
