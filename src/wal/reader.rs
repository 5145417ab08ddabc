//! Reading Milvus DML channels from Kafka at positions ferry manages.
//!
//! Each channel is a topic `{prefix}-rootcoord-dml_{i}` with one partition (0). ferry
//! assigns partitions with explicit offsets (no consumer-group rebalancing) and never
//! commits to Kafka: its positions live in the durable log, written in the same batch as
//! the records they follow. librdkafka still requires a `group.id`; it is never used.
//! `auto.offset.reset=error` makes a position that retention already deleted an error
//! instead of a silent jump to the topic's start or end.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::decode::{decode, peek};
use super::error::{kafka_out_of_range, kafka_transient};
use super::{WalError, WalEvent};
use crate::proto::common::MsgType;
use crate::secret::Secret;

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// One WAL record that passed the filter.
#[derive(Debug, Clone)]
pub struct WalRecord {
    /// The channel (= Kafka topic).
    pub channel: String,
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

/// Connection settings for the source's Kafka.
#[derive(Debug, Clone)]
pub struct WalReader {
    brokers: String,
    channels: Vec<String>,
    /// Extra librdkafka settings (security.protocol, sasl.*, ...): values are [`Secret`]s,
    /// so a Debug print of the reader never shows a password.
    options: Vec<(String, Secret)>,
}

impl WalReader {
    pub fn new(brokers: impl Into<String>, channels: Vec<String>) -> Self {
        WalReader {
            brokers: brokers.into(),
            channels,
            options: Vec::new(),
        }
    }

    /// Adds a librdkafka setting (for example `security.protocol`).
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((key.into(), Secret::new(value.into())));
        self
    }

    /// Adds the connection's security settings (`[source.wal]` protocol, SASL, TLS files).
    pub fn with_security(mut self, wal: &crate::config::WalConfig) -> Self {
        self.options.extend(wal.security_options().into_iter().map(|(k, v)| (k.to_string(), v)));
        self
    }

    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("ferry-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            // Time ticks arrive every 200 ms per channel; librdkafka's default 500 ms fetch
            // wait would add up to half a second to lag and to the cutover's end position.
            .set("fetch.wait.max.ms", "50")
            // Milvus records can be tens of MB (one insert request).
            .set("fetch.message.max.bytes", "67108864")
            .set("receive.message.max.bytes", "134217728");
        for (k, v) in &self.options {
            c.set(k, v.expose());
        }
        c
    }

    fn client_error(&self, source: KafkaError) -> WalError {
        WalError::Client {
            brokers: self.brokers.clone(),
            source,
        }
    }

    /// The next offset of every channel: recorded before a snapshot, these are where
    /// streaming starts, so nothing written after the snapshot began is missed.
    pub async fn high_watermarks(&self) -> Result<HashMap<String, i64>, WalError> {
        let consumer: BaseConsumer = self.config().create().map_err(|e| self.client_error(e))?;
        let channels = self.channels.clone();
        // fetch_watermarks blocks on the network.
        tokio::task::spawn_blocking(move || {
            let mut out = HashMap::new();
            for ch in channels {
                let (_, high) = consumer
                    .fetch_watermarks(&ch, 0, WATERMARK_TIMEOUT)
                    .map_err(|source| WalError::Topic {
                        topic: ch.clone(),
                        source,
                    })?;
                out.insert(ch, high);
            }
            Ok(out)
        })
        .await
        .map_err(|join| WalError::Task {
            reason: join.to_string(),
        })?
    }

    /// Reads every channel in `from` starting at its offset.
    pub fn stream(
        &self,
        from: &HashMap<String, i64>,
        filter: CollectionFilter,
    ) -> Result<WalStream, WalError> {
        let consumer: StreamConsumer = self.config().create().map_err(|e| self.client_error(e))?;
        let mut tpl = TopicPartitionList::new();
        for (ch, &offset) in from {
            tpl.add_partition_offset(ch, 0, Offset::Offset(offset))
                .map_err(|source| WalError::Topic {
                    topic: ch.clone(),
                    source,
                })?;
        }
        consumer.assign(&tpl).map_err(|e| self.client_error(e))?;
        Ok(WalStream {
            consumer,
            brokers: self.brokers.clone(),
            filter,
            expected: from.clone(),
        })
    }
}

/// Records of the assigned channels, in Kafka order per channel.
pub struct WalStream {
    consumer: StreamConsumer,
    brokers: String,
    filter: CollectionFilter,
    /// Next offset expected per channel, to report where an out-of-range error happened.
    expected: HashMap<String, i64>,
}

impl WalStream {
    /// The next record that passes the filter. Transient Kafka errors (a broker restart)
    /// are logged and waited out; librdkafka reconnects and resumes at its fetch position.
    pub async fn next(&mut self) -> Result<WalRecord, WalError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let msg = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) if kafka_out_of_range(&e) => {
                    let (topic, offset) = self.out_of_range_where();
                    return Err(WalError::OffsetOutOfRange {
                        topic,
                        offset,
                        source: e,
                    });
                }
                Err(e) if kafka_transient(&e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Kafka read failed; retrying");
                    metrics::counter!(crate::metrics::WAL_READ_RETRIES).increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => {
                    return Err(WalError::Client {
                        brokers: self.brokers.clone(),
                        source: e,
                    })
                }
            };
            backoff = Duration::from_millis(100);
            let topic = msg.topic().to_string();
            let offset = msg.offset();
            if let Some(next) = self.expected.get_mut(&topic) {
                *next = offset + 1;
            }
            let Some(value) = msg.payload() else {
                // Milvus skips null records too; they carry nothing to replay.
                tracing::warn!(%topic, offset, "WAL record without a value; skipped");
                metrics::counter!(crate::metrics::WAL_EMPTY_RECORDS).increment(1);
                continue;
            };
            let decode_err = |source| WalError::Decode {
                topic: topic.clone(),
                offset,
                source,
            };
            let head = peek(value).map_err(decode_err)?;
            let keep = match head.collection_id {
                Some(id) => self.filter.keeps(id),
                None => head.msg_type == MsgType::TimeTick as i32,
            };
            if !keep {
                continue;
            }
            let event = decode(value).map_err(decode_err)?;
            return Ok(WalRecord {
                channel: topic,
                offset,
                msg_type: head.msg_type,
                event,
                raw: value.to_vec(),
            });
        }
    }

    /// Best guess at which assignment failed: librdkafka's error does not name it, so
    /// report the channel(s) and next offsets ferry expected.
    fn out_of_range_where(&self) -> (String, i64) {
        let mut all: Vec<_> = self.expected.iter().collect();
        all.sort();
        match all.as_slice() {
            [(topic, offset)] => ((*topic).clone(), **offset),
            _ => (
                all.iter()
                    .map(|(t, o)| format!("{t}@{o}"))
                    .collect::<Vec<_>>()
                    .join(","),
                -1,
            ),
        }
    }
}
