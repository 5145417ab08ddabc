//! The ingest loop: WAL records → time-tick windows → durable log.

use std::collections::HashMap;
use std::future::Future;

use super::reader::{CollectionFilter, WalReader, WalRecord};
use super::sequencer::Sequencer;
use super::WalError;
use crate::log::{DurableLog, LogEntry};

/// Limits of the ingest loop.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Bytes of records one channel may buffer while waiting for a time tick (ticks come
    /// every ~200 ms; running past this means the source stopped sending them).
    #[serde(default = "default_max_window_bytes")]
    pub max_window_bytes: usize,
}

fn default_max_window_bytes() -> usize {
    512 << 20
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_window_bytes: default_max_window_bytes(),
        }
    }
}

fn to_entry(r: WalRecord) -> LogEntry {
    LogEntry {
        kafka_offset: r.offset,
        msg_type: r.msg_type,
        ts: r.event.ts(),
        collection_id: r.event.collection_id().unwrap_or(0),
        payload: r.raw,
    }
}

/// Reads every channel of `reader` from the positions stored in `log` and appends sealed
/// windows until `shutdown` resolves or an error stops it. Every channel must have a
/// position ([`DurableLog::init_position`], normally with the high watermarks recorded
/// before the snapshot).
///
/// Stopping is safe at any await point: a window is either appended with its position or
/// not at all, and the next run resumes from the stored positions.
pub async fn ingest(
    reader: &WalReader,
    log: &DurableLog,
    filter: CollectionFilter,
    cfg: &IngestConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WalError> {
    let mut from = HashMap::new();
    let mut sequencers = HashMap::new();
    for ch in reader.channels() {
        let pos = log.position(ch).ok_or_else(|| WalError::NoPosition {
            channel: ch.clone(),
        })?;
        from.insert(ch.clone(), pos.next_offset);
        sequencers.insert(ch.clone(), Sequencer::new(ch, pos, cfg.max_window_bytes));
    }
    let mut stream = reader.stream(&from, filter)?;
    tokio::pin!(shutdown);
    loop {
        let step = async {
            let rec = stream.next().await?;
            let channel = rec.channel.clone();
            let seq = sequencers
                .get_mut(&channel)
                .ok_or_else(|| WalError::UnknownChannel {
                    channel: channel.clone(),
                })?;
            if let Some(w) = seq.push(rec)? {
                let count = w.entries.len();
                let entries = w.entries.into_iter().map(to_entry).collect();
                log.append(&channel, entries, w.position, w.tick_ts).await?;
                if count > 0 {
                    metrics::counter!(crate::metrics::EVENTS_INGESTED).increment(count as u64);
                }
            }
            Ok::<_, WalError>(())
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(()),
            r = step => r?,
        }
    }
}
