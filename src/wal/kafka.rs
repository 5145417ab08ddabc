//! The Kafka transport: Milvus DML channels on Kafka, at positions ferry manages.
//!
//! Each channel is a topic `{prefix}-rootcoord-dml_{i}` with one partition (0). ferry
//! assigns partitions with explicit offsets (no consumer-group rebalancing) and never
//! commits to Kafka: its positions live in the durable log, written in the same batch as
//! the records they follow. librdkafka still requires a `group.id`; it is never used.
//! `auto.offset.reset=error` makes a position that retention already deleted an error
//! instead of a silent jump to the topic's start or end.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::error::{kafka_out_of_range, kafka_transient};
use super::transport::{BoxFuture, RawRecord, RawStream, Transport};
use super::WalError;
use crate::secret::Secret;

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection settings for the source's Kafka.
#[derive(Debug, Clone)]
pub struct KafkaTransport {
    brokers: String,
    channels: Vec<String>,
    /// Extra librdkafka settings (security.protocol, sasl.*, ...): values are [`Secret`]s,
    /// so a Debug print of the reader never shows a password.
    options: Vec<(String, Secret)>,
}

impl KafkaTransport {
    pub fn new(brokers: impl Into<String>, channels: Vec<String>) -> Self {
        KafkaTransport {
            brokers: brokers.into(),
            channels,
            options: Vec::new(),
        }
    }

    /// Adds a librdkafka setting (for example `security.protocol`).
    pub fn set_option(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.options.push((key.into(), Secret::new(value.into())));
    }

    /// Adds the connection's security settings (`[source.wal]` protocol, SASL, TLS files).
    pub fn set_security(&mut self, wal: &crate::config::WalConfig) {
        self.options.extend(wal.security_options().into_iter().map(|(k, v)| (k.to_string(), v)));
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

}

impl Transport for KafkaTransport {
    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn describe(&self) -> String {
        format!("Kafka at {}", self.brokers)
    }

    /// The next offset of every channel.
    fn high_watermarks(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, WalError>> {
        Box::pin(async move {
            let consumer: BaseConsumer = self.config().create().map_err(|e| self.client_error(e))?;
            let channels = self.channels.clone();
            // fetch_watermarks blocks on the network.
            tokio::task::spawn_blocking(move || {
                let mut out = HashMap::new();
                for ch in channels {
                    let (_, high) = consumer
                        .fetch_watermarks(&ch, 0, WATERMARK_TIMEOUT)
                        .map_err(|source| WalError::Topic { topic: ch.clone(), source })?;
                    out.insert(ch, high);
                }
                Ok(out)
            })
            .await
            .map_err(|join| WalError::Task { reason: join.to_string() })?
        })
    }

    fn open(&self, from: &HashMap<String, i64>) -> Result<Box<dyn RawStream>, WalError> {
        let consumer: StreamConsumer = self.config().create().map_err(|e| self.client_error(e))?;
        let mut tpl = TopicPartitionList::new();
        for (ch, &offset) in from {
            tpl.add_partition_offset(ch, 0, Offset::Offset(offset))
                .map_err(|source| WalError::Topic { topic: ch.clone(), source })?;
        }
        consumer.assign(&tpl).map_err(|e| self.client_error(e))?;
        Ok(Box::new(KafkaStream { consumer, brokers: self.brokers.clone(), expected: from.clone() }))
    }
}

/// Records of the assigned channels, in Kafka order per channel.
struct KafkaStream {
    consumer: StreamConsumer,
    brokers: String,
    /// Next offset expected per channel, to report where an out-of-range error happened.
    expected: HashMap<String, i64>,
}

impl RawStream for KafkaStream {
    /// Transient Kafka errors (a broker restart) are logged and waited out; librdkafka
    /// reconnects and resumes at its fetch position.
    fn next(&mut self) -> BoxFuture<'_, Result<RawRecord, WalError>> {
        Box::pin(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let msg = match self.consumer.recv().await {
                    Ok(m) => m,
                    Err(e) if kafka_out_of_range(&e) => {
                        let (topic, offset) = self.out_of_range_where();
                        return Err(WalError::OffsetOutOfRange { topic, offset, reason: e.to_string() });
                    }
                    Err(e) if kafka_transient(&e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Kafka read failed; retrying");
                        metrics::counter!(crate::metrics::WAL_READ_RETRIES).increment(1);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    Err(e) => return Err(WalError::Client { brokers: self.brokers.clone(), source: e }),
                };
                let topic = msg.topic().to_string();
                let offset = msg.offset();
                if let Some(next) = self.expected.get_mut(&topic) {
                    *next = offset + 1;
                }
                return Ok(RawRecord { channel: topic, position: offset, value: msg.payload().map(<[u8]>::to_vec) });
            }
        })
    }
}

impl KafkaStream {
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
