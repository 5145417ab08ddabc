//! Reads a standalone Milvus 2.3's WAL from its RocksMQ, beside the running Milvus, through a
//! RocksDB secondary instance: the test environment's target Milvus 2.3.5 keeps its WAL in
//! RocksMQ. Writes made with pymilvus must come back decoded and in order, exactly as the
//! Kafka transport reads them from the source (`tests/wal_read.rs`), and a position that is
//! gone is an error naming the topic and the position.
//!
//! Needs the test environment (`scripts/testenv up`) and the RocksDB library
//! (`apt-get install librocksdb7.8`; `scripts/test` installs it).

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry::milvus::PrimaryKeys;
use common::wal::{longs, run_python, WRITES};
use ferry::wal::rocksmq::RocksMqTransport;
use ferry::wal::{dml_channels, CollectionFilter, WalError, WalEvent, WalReader, WalRecord};

fn rocksmq_dir() -> PathBuf {
    let dir = common::stream::rocksmq_dir();
    assert!(dir.join("CURRENT").is_file(), "the target Milvus has no RocksMQ at {} (is the test environment up? `scripts/testenv up`)", dir.display());
    dir
}

fn reader(scratch: &std::path::Path, channels: Vec<String>) -> WalReader {
    WalReader::with_transport(RocksMqTransport::new(rocksmq_dir(), scratch, channels, Duration::from_millis(50)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_inserts_upserts_deletes_and_ticks_from_rocksmq_beside_milvus() {
    let env = common::env();
    let scratch = tempfile::tempdir().unwrap();
    let channels = dml_channels(&env.topic_prefix, 16);
    let reader = reader(scratch.path(), channels.clone());
    let start = reader.high_watermarks().await.expect("high watermarks");
    assert_eq!(start.len(), 16);

    let name = common::unique("wal_rmq");
    run_python(WRITES, &[&env.target_uri, &name]);
    let milvus = common::client(&env.target_uri).await;
    let desc = milvus.describe_collection(&name).await.expect("describe");
    let pchannel = desc.physical_channel_names[0].clone();

    let mut stream = reader.stream(&start, CollectionFilter::Only(HashSet::from([desc.collection_id]))).expect("stream");
    let mut ours: Vec<WalRecord> = Vec::new();
    let mut sealed = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !sealed {
        let left = deadline.saturating_duration_since(Instant::now());
        let rec = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; {} records of ours so far", ours.len()))
            .expect("WAL record");
        if rec.channel != pchannel {
            continue;
        }
        if let WalEvent::TimeTick { ts } = rec.event {
            sealed = ours.iter().any(|r| matches!(&r.event, WalEvent::Delete(d) if d.pks == PrimaryKeys::Int(vec![3]) && d.ts <= ts));
        }
        ours.push(rec);
    }
    // Message ids grow along the channel, and the stream started past the start positions.
    assert!(ours.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(ours[0].offset >= start[&pchannel]);
    let create = ours.iter().find(|r| matches!(r.event, WalEvent::CreateCollection { .. })).expect("CreateCollection");
    if let WalEvent::CreateCollection { name: n, .. } = &create.event {
        assert_eq!(n, &name);
    }
    let inserts: Vec<_> = ours.iter().filter_map(|r| if let WalEvent::Insert(i) = &r.event { Some(i) } else { None }).collect();
    let deletes: Vec<_> = ours.iter().filter_map(|r| if let WalEvent::Delete(d) = &r.event { Some(d) } else { None }).collect();
    assert_eq!(inserts.len(), 2, "insert + upsert's insert");
    assert_eq!(deletes.len(), 2, "upsert's delete + delete");
    assert_eq!(longs(&inserts[0].rows, "id"), vec![1, 2, 3]);
    assert_eq!(longs(&inserts[0].rows, "x"), vec![10, 20, 30]);
    assert_eq!((longs(&inserts[1].rows, "id"), longs(&inserts[1].rows, "x")), (vec![2], vec![21]));
    assert_eq!(deletes[0].pks, PrimaryKeys::Int(vec![2]));
    assert_eq!(inserts[1].ts, deletes[0].ts, "the upsert's halves share a timestamp");
    assert_eq!(deletes[1].pks, PrimaryKeys::Int(vec![3]));
    drop(stream);
    // The secondary instances kept their files in the scratch directory, and removed them.
    assert_eq!(std::fs::read_dir(scratch.path().join("")).map(|d| d.count()).unwrap_or(0), 0, "scratch left behind");
    milvus.drop_collection(&name).await.unwrap();
}

/// A position whose preceding message is gone (what retention does to a reader that fell
/// behind) is an error naming the topic and the position: never a silent jump to what is
/// left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_whose_message_is_gone_is_an_error_not_a_jump() {
    let env = common::env();
    let scratch = tempfile::tempdir().unwrap();
    let channel = dml_channels(&env.topic_prefix, 1).remove(0);
    let reader = reader(scratch.path(), vec![channel.clone()]);
    let hw = reader.high_watermarks().await.unwrap()[&channel];
    assert!(hw > 1, "the channel has messages (time ticks at least): {hw}");
    // Message 0 never existed: a reader whose last message was 0 finds it gone.
    let mut stream = reader.stream(&[(channel.clone(), 1)].into(), CollectionFilter::All).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap_err();
    assert!(matches!(e, WalError::OffsetOutOfRange { ref topic, offset: 1, .. } if topic == &channel), "{e}");
    let text = e.to_string();
    assert!(text.contains(&channel) && text.contains("position 1") && text.contains("retention"), "{text}");
}

/// A path that is not a RocksMQ is refused with a message saying what to give.
#[tokio::test]
async fn a_wrong_path_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let reader = WalReader::with_transport(RocksMqTransport::new(dir.path(), dir.path().join("s"), vec!["t".into()], Duration::from_millis(50)));
    let e = reader.high_watermarks().await.unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()) && e.contains("rocksmq.path"), "{e}");
}
