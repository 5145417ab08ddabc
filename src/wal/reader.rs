//! Reading Milvus DML channels at positions ferry manages, whatever the transport: the
//! records a [`Transport`] hands over are decoded and filtered here, once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::decode::{decode, peek};
use super::kafka::KafkaTransport;
use super::transport::{RawStream, Transport};
use super::{WalError, WalEvent};
use crate::proto::common::MsgType;

/// One WAL record that passed the filter.
#[derive(Debug, Clone)]
pub struct WalRecord {
    /// The channel (a Kafka or RocksMQ topic).
    pub channel: String,
    /// Its position in the channel (Kafka offset, RocksMQ message id).
    pub offset: i64,
    /// `base.msg_type` as on the wire.
    pub msg_type: i32,
    pub event: WalEvent,
    /// The record value, kept so the log stores exactly what was read.
    pub raw: Vec<u8>,
}

/// Which collections a stream keeps. Time ticks always pass.
#[derive(Debug, Clone)]
pub enum CollectionFilter {
    All,
    Only(HashSet<i64>),
}

impl CollectionFilter {
    fn keeps(&self, collection_id: i64) -> bool {
        match self {
            CollectionFilter::All => true,
            CollectionFilter::Only(ids) => ids.contains(&collection_id),
        }
    }
}

/// The source's WAL: a transport and the channels it reads.
#[derive(Debug, Clone)]
pub struct WalReader {
    transport: Arc<dyn Transport>,
}

impl WalReader {
    /// Channels on Kafka.
    pub fn new(brokers: impl Into<String>, channels: Vec<String>) -> Self {
        WalReader { transport: Arc::new(KafkaTransport::new(brokers, channels)) }
    }

    /// Channels from any transport.
    pub fn with_transport(transport: impl Transport + 'static) -> Self {
        WalReader { transport: Arc::new(transport) }
    }

    /// The reader `[source.wal]` describes: its Kafka (with the connection's security), or a
    /// standalone's RocksMQ (read through a secondary instance under `state_dir`).
    pub fn from_config(wal: &crate::config::WalConfig, channels: Vec<String>, state_dir: &std::path::Path) -> Self {
        match &wal.rocksmq {
            Some(path) => WalReader::with_transport(super::rocksmq::RocksMqTransport::new(
                path,
                state_dir.join("rocksmq-secondary"),
                channels,
                std::time::Duration::from_millis(wal.rocksmq_catch_up_ms),
            )),
            None => {
                let mut kafka = KafkaTransport::new(wal.brokers.clone(), channels);
                kafka.set_security(wal);
                WalReader::with_transport(kafka)
            }
        }
    }

    pub fn channels(&self) -> &[String] {
        self.transport.channels()
    }

    /// What the reader reads ("Kafka at host:9092", "RocksMQ at /var/lib/milvus/rdb_data").
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Whether the transport can read now (`/readyz`): a short detail when it can.
    pub async fn probe(&self) -> Result<String, WalError> {
        self.transport.probe().await
    }

    /// The next position of every channel: recorded before a snapshot, these are where
    /// streaming starts, so nothing written after the snapshot began is missed.
    pub async fn high_watermarks(&self) -> Result<HashMap<String, i64>, WalError> {
        self.transport.high_watermarks().await
    }

    /// Reads every channel in `from` starting at its position.
    pub fn stream(&self, from: &HashMap<String, i64>, filter: CollectionFilter) -> Result<WalStream, WalError> {
        Ok(WalStream { raw: self.transport.open(from)?, filter })
    }
}

/// Records of the opened channels, in order per channel, decoded and filtered.
pub struct WalStream {
    raw: Box<dyn RawStream>,
    filter: CollectionFilter,
}

impl WalStream {
    /// The next record that passes the filter.
    pub async fn next(&mut self) -> Result<WalRecord, WalError> {
        loop {
            let rec = self.raw.next().await?;
            let (topic, offset) = (rec.channel, rec.position);
            let Some(value) = rec.value else {
                // Milvus skips null records too; they carry nothing to replay.
                tracing::warn!(%topic, offset, "WAL record without a value; skipped");
                metrics::counter!(crate::metrics::WAL_EMPTY_RECORDS).increment(1);
                continue;
            };
            let decode_err = |source| WalError::Decode { topic: topic.clone(), offset, source };
            let head = peek(&value).map_err(decode_err)?;
            let keep = match head.collection_id {
                Some(id) => self.filter.keeps(id),
                None => head.msg_type == MsgType::TimeTick as i32,
            };
            if !keep {
                continue;
            }
            let event = decode(&value).map_err(decode_err)?;
            return Ok(WalRecord { channel: topic, offset, msg_type: head.msg_type, event, raw: value });
        }
    }
}
