//! The whole streaming path against the real servers: source Milvus 2.3 → Kafka WAL →
//! ingest (time-tick windows) → durable log → apply → target Milvus. Inserts, upserts
//! (the Insert+Delete-at-one-ts trap), deletes and a new partition must end up identical.
//!
//! Needs the test environment (`scripts/testenv up`).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ferry::apply::{Applier, ApplyConfig, CollectionRoute, Routes};
use ferry::log::{ChannelPosition, DurableLog, LogConfig};
use ferry::wal::{dml_channels, ingest, CollectionFilter, IngestConfig, WalReader};

const SCRIPT: &str = r#"
import sys, json
from pymilvus import connections, FieldSchema, CollectionSchema, DataType, Collection
mode, uri, name = sys.argv[1], sys.argv[2], sys.argv[3]
connections.connect(uri=uri)
def vec(i):
    return [float(i), 0.5, 0.25, 1.0]
if mode == "setup":
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("x", DataType.INT64),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=4),
    ])
    c = Collection(name, schema, shards_num=1)
    c.create_index("v", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
    c.load()
elif mode == "writes":
    c = Collection(name)
    ids = list(range(1, 51))
    c.insert([ids, [i * 10 for i in ids], [vec(i) for i in ids]])
    up = list(range(2, 11))
    c.upsert([up, [i * 10 + 1 for i in up], [vec(i + 100) for i in up]])
    c.delete("id in [%s]" % ",".join(str(i) for i in range(30, 41)))
    c.upsert([[5], [555], [vec(5)]])
    c.create_partition("p1")
    pids = list(range(100, 105))
    c.insert([pids, [i for i in pids], [vec(i) for i in pids]], partition_name="p1")
    c.delete("id in [100]")
    c.upsert([[30], [3030], [vec(30)]])
    c.delete("id in [7]")
    c.upsert([[7], [777], [vec(7)]])
    print("ok")
elif mode == "dump":
    c = Collection(name)
    out = {}
    for p in c.partitions:
        rows = c.query("id >= 0", output_fields=["id", "x", "v"], partition_names=[p.name],
                       consistency_level="Strong")
        out[p.name] = sorted([int(r["id"]), int(r["x"]), [round(float(f), 3) for f in r["v"]]] for r in rows)
    print(json.dumps(out, sort_keys=True))
"#;

fn python(args: &[&str]) -> String {
    common::wal::run_python(SCRIPT, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_source_writes_to_the_target() {
    let env = common::env();
    let name = common::unique("apply_repl");
    python(&["setup", &env.source_uri, &name]);
    python(&["setup", &env.target_uri, &name]);
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let desc = source.describe_collection(&name).await.expect("describe");
    let pchannel = desc.physical_channel_names[0].clone();

    let channels = dml_channels(&env.topic_prefix, 16);
    let reader = WalReader::new(env.kafka_brokers.as_str(), channels.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = DurableLog::open(&LogConfig::new(dir.path())).expect("open log");
    for (ch, offset) in reader.high_watermarks().await.expect("watermarks") {
        log.init_position(
            &ch,
            ChannelPosition {
                next_offset: offset,
                skip_through_ts: 0,
            },
        )
        .expect("init position");
    }

    python(&["writes", &env.source_uri, &name]);
    let want = python(&["dump", &env.source_uri, &name]);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ingest_task = {
        let log = log.clone();
        let rx = stop_rx.clone();
        let filter = CollectionFilter::Only(HashSet::from([desc.collection_id]));
        tokio::spawn(async move {
            ingest(&reader, &log, filter, &IngestConfig::default(), stopped(rx)).await
        })
    };
    let routes: Routes = HashMap::from([(
        desc.collection_id,
        CollectionRoute {
            target_collection: name.clone(),
            pk_field: "id".into(),
            partition_key: false,
            partitions: Vec::new(),
        },
    )]);
    let mut applier = Applier::new(
        pchannel.clone(),
        log.clone(),
        target.clone(),
        routes,
        ApplyConfig {
            // Small batches: many cuts, each of which must respect the ts boundary rule.
            max_batch_rows: 7,
            ..ApplyConfig::default()
        },
    );
    let apply_task = {
        let rx = stop_rx.clone();
        tokio::spawn(async move { applier.run(stopped(rx)).await })
    };

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = String::new();
    while Instant::now() < deadline {
        if ingest_task.is_finished() || apply_task.is_finished() {
            break;
        }
        got = python(&["dump", &env.target_uri, &name]);
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop_tx.send(true);
    let ingest_result = ingest_task.await.expect("ingest task");
    let apply_result = apply_task.await.expect("apply task");
    ingest_result.expect("ingest");
    apply_result.expect("apply");
    assert_eq!(got, want, "target differs from source");
    assert!(
        want.contains("\"p1\""),
        "the new partition is on the target: {want}"
    );

    // Lag is measured against the source's ticks, which keep coming while idle.
    assert!(log.source_ts(&pchannel) > 0);
    assert!(log.applied_ts(&pchannel) > 0);

    source.drop_collection(&name).await.expect("drop source");
    target.drop_collection(&name).await.expect("drop target");
}
