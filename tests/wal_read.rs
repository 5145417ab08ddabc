//! Reads the real source Milvus 2.3's WAL from Kafka: writes made with pymilvus 2.3 must
//! come back decoded, in order, including the upsert's Insert+Delete pair.
//!
//! Needs the test environment (`scripts/testenv up`).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry::milvus::PrimaryKeys;
use ferry::wal::{dml_channels, physical_ms, CollectionFilter, WalEvent, WalReader, WalRecord};

use common::wal::{floats, longs, run_python, WRITES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decodes_inserts_upserts_deletes_and_ticks_from_the_real_wal() {
    let env = common::env();
    let channels = dml_channels(&env.topic_prefix, 16);
    let reader = WalReader::new(env.kafka_brokers.as_str(), channels.clone());
    // The "start positions" a migration records before its snapshot.
    let start = reader.high_watermarks().await.expect("high watermarks");
    assert_eq!(start.len(), 16);

    let name = common::unique("wal_read");
    run_python(WRITES, &[&env.source_uri, &name]);
    let source = common::client(&env.source_uri).await;
    let desc = source.describe_collection(&name).await.expect("describe");
    let collection_id = desc.collection_id;
    let pchannels: HashSet<String> = desc.physical_channel_names.iter().cloned().collect();
    assert_eq!(pchannels.len(), 1, "one shard: {pchannels:?}");
    let pchannel = pchannels.iter().next().cloned().unwrap_or_default();

    let mut stream = reader
        .stream(
            &start,
            CollectionFilter::Only(HashSet::from([collection_id])),
        )
        .expect("stream");
    let mut ours: Vec<WalRecord> = Vec::new();
    // Until a tick seals the delete: ticks lag, records with a later ts come before them.
    let mut sealed = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !sealed {
        let left = deadline.saturating_duration_since(Instant::now());
        let rec = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out; records of our collection so far: {:#?}",
                    summary(&ours)
                )
            })
            .expect("WAL record");
        if rec.channel != pchannel {
            continue;
        }
        if let WalEvent::TimeTick { ts } = rec.event {
            sealed = ours.iter().any(|r| {
                matches!(&r.event, WalEvent::Delete(d) if d.pks == PrimaryKeys::Int(vec![3]) && d.ts <= ts)
            });
        }
        ours.push(rec);
    }
    eprintln!("records on {pchannel}: {:#?}", summary(&ours));

    let data: Vec<&WalRecord> = ours
        .iter()
        .filter(|r| !matches!(r.event, WalEvent::TimeTick { .. }))
        .collect();
    // Offsets strictly increase on the channel.
    assert!(ours.windows(2).all(|w| w[0].offset < w[1].offset));

    let create = data
        .iter()
        .find(|r| matches!(r.event, WalEvent::CreateCollection { .. }))
        .expect("CreateCollection record");
    if let WalEvent::CreateCollection {
        name: n,
        collection_id: id,
        schema,
        channels,
        ..
    } = &create.event
    {
        assert_eq!((n.as_str(), *id), (name.as_str(), collection_id));
        assert!(!schema.is_empty());
        assert!(channels.contains(&create.channel), "the record names its channels: {channels:?}");
    }

    let inserts: Vec<_> = data
        .iter()
        .filter_map(|r| match &r.event {
            WalEvent::Insert(i) => Some((r.offset, i)),
            _ => None,
        })
        .collect();
    let deletes: Vec<_> = data
        .iter()
        .filter_map(|r| match &r.event {
            WalEvent::Delete(d) => Some((r.offset, d)),
            _ => None,
        })
        .collect();
    assert_eq!(
        inserts.len(),
        2,
        "insert + upsert's insert: {:#?}",
        summary(&ours)
    );
    assert_eq!(
        deletes.len(),
        2,
        "upsert's delete + delete: {:#?}",
        summary(&ours)
    );

    let (ins_off, ins) = inserts[0];
    assert_eq!(ins.collection_id, collection_id);
    assert_eq!(ins.partition_name, "_default");
    assert_eq!(longs(&ins.rows, "id"), vec![1, 2, 3]);
    assert_eq!(longs(&ins.rows, "x"), vec![10, 20, 30]);
    let v = floats(&ins.rows, "v");
    assert_eq!(v.len(), 12);
    assert_eq!(&v[4..8], &[2.0; 4]);

    // The upsert: an Insert then a Delete of the same key at the same timestamp.
    let (up_off, up) = inserts[1];
    let (up_del_off, up_del) = deletes[0];
    assert_eq!(longs(&up.rows, "id"), vec![2]);
    assert_eq!(longs(&up.rows, "x"), vec![21]);
    assert_eq!(up_del.pks, PrimaryKeys::Int(vec![2]));
    assert_eq!(
        up.ts, up_del.ts,
        "upsert's insert and delete share a timestamp"
    );
    assert!(up_off < up_del_off, "insert is written before the delete");
    eprintln!(
        "upsert delete partition: {:?} (id {})",
        up_del.partition_name, up_del.partition_id
    );

    let (del_off, del) = deletes[1];
    assert_eq!(del.pks, PrimaryKeys::Int(vec![3]));
    assert!(ins_off < up_off && up_del_off < del_off);
    assert!(ins.ts < up.ts && up.ts < del.ts);

    // Timestamps are hybrid: their physical part is wall-clock time.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let age_ms = now_ms.saturating_sub(physical_ms(del.ts));
    assert!(age_ms < 600_000, "delete ts {} is {age_ms} ms old", del.ts);

    // Time ticks keep coming, increasing; a tick can come after records with a larger ts
    // (it only promises nothing <= its ts follows), which is why ferry seals windows.
    let ticks: Vec<u64> = ours
        .iter()
        .filter_map(|r| match r.event {
            WalEvent::TimeTick { ts } => Some(ts),
            _ => None,
        })
        .collect();
    assert!(ticks.windows(2).all(|w| w[0] <= w[1]), "{ticks:?}");
    assert!(ticks.last().is_some_and(|t| *t >= del.ts));

    source.drop_collection(&name).await.expect("drop");
}

fn summary(recs: &[WalRecord]) -> Vec<String> {
    recs.iter()
        .map(|r| {
            let detail = match &r.event {
                WalEvent::Insert(i) => format!("rows={} part={}", i.rows.len(), i.partition_name),
                WalEvent::Delete(d) => format!("pks={:?} part={:?}", d.pks, d.partition_name),
                _ => String::new(),
            };
            format!(
                "{} @{} {} ts={} {}",
                r.channel,
                r.offset,
                r.event.kind(),
                r.event.ts(),
                detail
            )
        })
        .collect()
}

/// `[source.wal] channels` splits a source by DML channel, trusting that ferry computes the
/// same shard for a key as Milvus's proxy does. Checked here against the real server: every
/// key of every Insert and Delete record, Int64 (negative ones too) and VarChar (quotes,
/// backslashes, non-ASCII), is on the shard `ferry::milvus::shard::shard_of` names, and that
/// shard's physical channel is the topic the record came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_routed_to_the_shards_ferry_computes() {
    use common::data::{self, Shape};
    use ferry::milvus::{shard::shard_of, CreateCollection, PkValue};
    use ferry::proto::common::ConsistencyLevel;

    // Three: with a power of two the top bit Milvus clears would not change the shard.
    const SHARDS: usize = 3;
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let reader = WalReader::new(
        env.kafka_brokers.as_str(),
        dml_channels(&env.topic_prefix, 16),
    );
    for shape in [
        Shape::default(),
        Shape {
            varchar_pk: true,
            ..Shape::default()
        },
    ] {
        let start = reader.high_watermarks().await.expect("high watermarks");
        let name = common::unique("wal_route");
        source
            .create_collection(&CreateCollection {
                name: name.clone(),
                schema: data::all_types_schema(&name, shape),
                shards_num: SHARDS as i32,
                consistency_level: ConsistencyLevel::Bounded,
                properties: vec![],
                num_partitions: 0,
            })
            .await
            .expect("create");
        let desc = source.describe_collection(&name).await.expect("describe");
        assert_eq!(desc.physical_channel_names.len(), SHARDS);
        let ids: Vec<i64> = (0..400).collect();
        for chunk in ids.chunks(200) {
            source
                .insert(&name, "", &data::rows(shape, chunk, 0))
                .await
                .expect("insert");
        }
        let gone: Vec<PkValue> = (0..400).step_by(7).map(|i| data::key(shape, i)).collect();
        let gone_keys = match &gone[0] {
            PkValue::Int(_) => PrimaryKeys::Int(
                gone.iter()
                    .map(|k| match k {
                        PkValue::Int(v) => *v,
                        PkValue::Str(_) => unreachable!(),
                    })
                    .collect(),
            ),
            PkValue::Str(_) => PrimaryKeys::Str(
                gone.iter()
                    .map(|k| match k {
                        PkValue::Str(s) => s.clone(),
                        PkValue::Int(_) => unreachable!(),
                    })
                    .collect(),
            ),
        };
        source
            .delete(&name, "", "pk", &gone_keys)
            .await
            .expect("delete");

        let mut stream = reader
            .stream(
                &start,
                CollectionFilter::Only(HashSet::from([desc.collection_id])),
            )
            .expect("stream");
        let (mut inserted, mut deleted) = (0usize, 0usize);
        let mut per_shard = [0usize; SHARDS];
        let deadline = Instant::now() + Duration::from_secs(90);
        while inserted < ids.len() || deleted < gone.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let rec = tokio::time::timeout(left, stream.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out: {inserted} keys inserted, {deleted} deleted seen")
                })
                .expect("WAL record");
            let (shard_name, keys) = match &rec.event {
                WalEvent::Insert(i) => (
                    i.shard.clone(),
                    i.rows.primary_keys("pk").expect("pk column"),
                ),
                WalEvent::Delete(d) => (d.shard.clone(), d.pks.clone()),
                _ => continue,
            };
            let shard: usize = shard_name
                .rsplit_once('v')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or_else(|| panic!("shard name {shard_name:?} does not end in v<N>"));
            assert_eq!(
                rec.channel, desc.physical_channel_names[shard],
                "shard {shard} ({shard_name}) came on topic {}",
                rec.channel
            );
            for i in 0..keys.len() {
                let k = keys.get(i).unwrap();
                assert_eq!(
                    shard_of(&k, SHARDS as u32) as usize,
                    shard,
                    "key {k:?} is on shard {shard} ({shard_name}), ferry computes another"
                );
            }
            per_shard[shard] += keys.len();
            match rec.event {
                WalEvent::Insert(_) => inserted += keys.len(),
                _ => deleted += keys.len(),
            }
        }
        assert_eq!((inserted, deleted), (ids.len(), gone.len()));
        assert!(
            per_shard.iter().all(|&n| n > 0),
            "keys spread over every shard: {per_shard:?}"
        );
        source.drop_collection(&name).await.expect("drop");
    }
}
