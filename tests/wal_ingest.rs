//! Ingest from the real WAL into the durable log, stopped and restarted in the middle:
//! every record of the collection lands in the log exactly once, in timestamp order.
//!
//! Needs the test environment (`scripts/testenv up`).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry::log::{ChannelPosition, DurableLog, LogConfig, StoredEntry};
use ferry::wal::{
    decode, dml_channels, ingest, CollectionFilter, IngestConfig, WalEvent, WalReader,
};

const SCRIPT: &str = r#"
import sys
from pymilvus import connections, FieldSchema, CollectionSchema, DataType, Collection
mode, uri, name = sys.argv[1], sys.argv[2], sys.argv[3]
connections.connect(uri=uri)
if mode == "first":
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
    ])
    c = Collection(name, schema, shards_num=1)
    c.insert([[1, 2, 3, 4, 5], [[float(i), 0.0] for i in range(5)]])
else:
    c = Collection(name)
    c.upsert([[3], [[3.5, 0.0]]])
    c.delete("id in [4]")
"#;

fn python(args: &[&str]) {
    common::wal::run_python(SCRIPT, args);
}

fn kinds(entries: &[StoredEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match decode(&e.entry.payload) {
            Ok(WalEvent::Insert(i)) => format!("insert {:?}", i.rows.primary_keys("id")),
            Ok(WalEvent::Delete(d)) => format!("delete {:?}", d.pks),
            Ok(ev) => ev.kind().to_string(),
            Err(err) => format!("undecodable: {err}"),
        })
        .collect()
}

/// Runs ingest until the log of `channel` holds `want` entries sealed by a tick at or past
/// the newest of them, then stops it.
async fn ingest_until(
    reader: &WalReader,
    log: &DurableLog,
    filter: &CollectionFilter,
    channel: &str,
    want: usize,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = IngestConfig::default();
    let run = ingest(reader, log, filter.clone(), &cfg, async {
        let _ = stopped.await;
    });
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let entries = log.read(channel, 0, 1000, u64::MAX).expect("read");
            let newest = entries.iter().map(|e| e.entry.ts).max().unwrap_or(0);
            if entries.len() >= want && log.source_ts(channel) >= newest {
                break;
            }
            assert!(Instant::now() < deadline, "log has {:?}", kinds(&entries));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(run, watch);
    result.expect("ingest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_resumes_without_loss_or_duplicates() {
    let env = common::env();
    let reader = WalReader::new(
        env.kafka_brokers.as_str(),
        dml_channels(&env.topic_prefix, 16),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DurableLog::open(&LogConfig::new(dir.path())).expect("open");
        for (ch, offset) in reader.high_watermarks().await.expect("watermarks") {
            log.init_position(
                &ch,
                ChannelPosition {
                    next_offset: offset,
                    skip_through_ts: 0,
                },
            )
            .expect("init");
        }
    }
    let name = common::unique("wal_ingest");
    python(&["first", &env.source_uri, &name]);
    let source = common::client(&env.source_uri).await;
    let desc = source.describe_collection(&name).await.expect("describe");
    let channel = desc.physical_channel_names[0].clone();
    let filter = CollectionFilter::Only(HashSet::from([desc.collection_id]));

    // First run: create + insert. Then the process "restarts": the log is reopened.
    {
        let log = DurableLog::open(&LogConfig::new(dir.path())).expect("open");
        ingest_until(&reader, &log, &filter, &channel, 2).await;
        log.flush().await.expect("flush");
    }
    python(&["second", &env.source_uri, &name]);
    let log = DurableLog::open(&LogConfig::new(dir.path())).expect("reopen");
    let before = log.position(&channel).expect("position");
    ingest_until(&reader, &log, &filter, &channel, 5).await;
    assert!(log.position(&channel).expect("position").next_offset > before.next_offset);

    let entries = log.read(&channel, 0, 1000, u64::MAX).expect("read");
    assert_eq!(
        kinds(&entries),
        vec![
            "create_collection",
            "insert Some(Int([1, 2, 3, 4, 5]))",
            "insert Some(Int([3]))",
            "delete Int([3])",
            "delete Int([4])",
        ]
    );
    let offsets: HashSet<i64> = entries.iter().map(|e| e.entry.kafka_offset).collect();
    assert_eq!(offsets.len(), entries.len(), "a record was appended twice");
    assert!(
        entries.windows(2).all(|w| w[0].entry.ts <= w[1].entry.ts),
        "log is in ts order"
    );
    assert_eq!(
        entries[2].entry.ts, entries[3].entry.ts,
        "upsert pair shares its ts"
    );
    assert!(log.source_ts(&channel) >= entries[4].entry.ts);

    source.drop_collection(&name).await.expect("drop");
}
