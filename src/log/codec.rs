//! Byte layout of the log's keys and values (see the design note in `log/mod.rs`).

use super::LogError;

pub(super) const ENTRY: u8 = b'e';
pub(super) const POSITION: u8 = b'p';
pub(super) const CURSOR: u8 = b'c';
pub(super) const TICK: u8 = b't';

const ENTRY_VERSION: u8 = 1;
/// version + offset + msg type + ts + collection ID.
const ENTRY_HEADER: usize = 1 + 8 + 4 + 8 + 8;

/// One WAL record kept in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Where the record is in its Kafka topic.
    pub kafka_offset: i64,
    /// `base.msg_type` of the record (`common::MsgType`).
    pub msg_type: i32,
    /// The record's hybrid timestamp.
    pub ts: u64,
    /// The record's collection (0 when it has none).
    pub collection_id: i64,
    /// The Kafka record value as read: decoding it again is the one decode path.
    pub payload: Vec<u8>,
}

impl LogEntry {
    /// Bytes the entry takes in the log, for the pending-bytes bound.
    pub fn stored_size(&self) -> u64 {
        (ENTRY_HEADER + self.payload.len()) as u64
    }
}

/// An entry with its sequence number in its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub entry: LogEntry,
}

/// Where reading a channel resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelPosition {
    /// Next Kafka offset to read.
    pub next_offset: i64,
    /// Records read from `next_offset` on with a timestamp <= this were already appended
    /// (they sat before the last time tick); the reader drops them. This is how Milvus's own
    /// consumers resume mid-window (`MqTtMsgStream.Seek`).
    pub skip_through_ts: u64,
}

/// How far a channel has been applied to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// First seq not yet applied.
    pub next_seq: u64,
    /// Every source write on the channel with a timestamp <= this is on the target.
    pub applied_ts: u64,
}

fn channel_part(key: &mut Vec<u8>, channel: &str) -> Result<(), LogError> {
    let len = u16::try_from(channel.len()).map_err(|_| LogError::ChannelName {
        channel: channel.to_string(),
    })?;
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(channel.as_bytes());
    Ok(())
}

/// `tag {channel}`: the key of a per-channel record, or the prefix of a channel's entries.
pub(super) fn channel_key(tag: u8, channel: &str) -> Result<Vec<u8>, LogError> {
    let mut key = Vec::with_capacity(3 + channel.len() + 8);
    key.push(tag);
    channel_part(&mut key, channel)?;
    Ok(key)
}

pub(super) fn entry_key(channel: &str, seq: u64) -> Result<Vec<u8>, LogError> {
    let mut key = channel_key(ENTRY, channel)?;
    key.extend_from_slice(&seq.to_be_bytes());
    Ok(key)
}

/// Splits any key into (tag, channel, rest).
pub(super) fn split_key(key: &[u8]) -> Option<(u8, String, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let channel = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
    Some((tag, channel, &rest[2 + len..]))
}

pub(super) fn seq_of(rest: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

pub(super) fn encode_entry(e: &LogEntry) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENTRY_HEADER + e.payload.len());
    v.push(ENTRY_VERSION);
    v.extend_from_slice(&e.kafka_offset.to_be_bytes());
    v.extend_from_slice(&e.msg_type.to_be_bytes());
    v.extend_from_slice(&e.ts.to_be_bytes());
    v.extend_from_slice(&e.collection_id.to_be_bytes());
    v.extend_from_slice(&e.payload);
    v
}

fn be8(b: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&b[at..at + 8]);
    out
}

pub(super) fn decode_entry(channel: &str, seq: u64, v: &[u8]) -> Result<LogEntry, LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        channel: channel.to_string(),
        seq,
        reason,
    };
    if v.len() < ENTRY_HEADER {
        return Err(corrupt(format!(
            "{} bytes, shorter than the header",
            v.len()
        )));
    }
    if v[0] != ENTRY_VERSION {
        return Err(corrupt(format!("unknown entry version {}", v[0])));
    }
    let mut msg_type = [0; 4];
    msg_type.copy_from_slice(&v[9..13]);
    Ok(LogEntry {
        kafka_offset: i64::from_be_bytes(be8(v, 1)),
        msg_type: i32::from_be_bytes(msg_type),
        ts: u64::from_be_bytes(be8(v, 13)),
        collection_id: i64::from_be_bytes(be8(v, 21)),
        payload: v[ENTRY_HEADER..].to_vec(),
    })
}

/// Two big-endian u64-sized fields.
pub(super) fn encode_pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

pub(super) fn decode_pair(v: &[u8]) -> Option<(u64, u64)> {
    if v.len() != 16 {
        return None;
    }
    Some((u64::from_be_bytes(be8(v, 0)), u64::from_be_bytes(be8(v, 8))))
}

pub(super) fn decode_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

impl ChannelPosition {
    pub(super) fn encode(&self) -> [u8; 16] {
        encode_pair(self.next_offset as u64, self.skip_through_ts)
    }
    pub(super) fn decode(v: &[u8]) -> Option<Self> {
        let (o, s) = decode_pair(v)?;
        Some(ChannelPosition {
            next_offset: o as i64,
            skip_through_ts: s,
        })
    }
}

impl Cursor {
    pub(super) fn encode(&self) -> [u8; 16] {
        encode_pair(self.next_seq, self.applied_ts)
    }
    pub(super) fn decode(v: &[u8]) -> Option<Self> {
        let (n, a) = decode_pair(v)?;
        Some(Cursor {
            next_seq: n,
            applied_ts: a,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_truncation_is_corrupt() {
        let e = LogEntry {
            kafka_offset: -1,
            msg_type: 400,
            ts: u64::MAX,
            collection_id: 42,
            payload: vec![1, 2, 3],
        };
        let v = encode_entry(&e);
        assert_eq!(v.len() as u64, e.stored_size());
        assert_eq!(decode_entry("c", 0, &v).unwrap(), e);
        assert!(matches!(
            decode_entry("c", 0, &v[..5]),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn channel_keys_do_not_prefix_each_other() {
        let a = channel_key(ENTRY, "dml_1").unwrap();
        let b = entry_key("dml_10", 0).unwrap();
        assert!(!b.starts_with(&a));
        let k = entry_key("dml_1", 258).unwrap();
        let (tag, ch, rest) = split_key(&k).unwrap();
        assert_eq!(
            (tag, ch.as_str(), seq_of(rest)),
            (ENTRY, "dml_1", Some(258))
        );
        // Seq order is key order.
        assert!(entry_key("x", 255).unwrap() < entry_key("x", 256).unwrap());
    }
}
