use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::*;
use crate::log::{ChannelPosition, LogConfig, LogEntry};
use crate::milvus::PkValue;
use crate::proto::schema::{field_data::Field, vector_field::Data as Vector};
use crate::msgstream::testdata as td;

const CH: &str = "by-dev-rootcoord-dml_0";

/// An in-memory target: rows by (collection, pk) → version, plus a call log and scripted
/// failures.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    rows: BTreeMap<(String, PkValue), f32>,
    /// The same rows by (collection, partition, key): what partition DDL acts on.
    by_partition: BTreeMap<(String, String, PkValue), f32>,
    partitions: BTreeSet<String>,
    calls: Vec<String>,
    fail: VecDeque<MilvusError>,
}

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }
    fn rows(&self) -> BTreeMap<(String, PkValue), f32> {
        self.lock().rows.clone()
    }
    fn partition_rows(&self) -> BTreeMap<(String, String, PkValue), f32> {
        self.lock().by_partition.clone()
    }
    fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
    fn fail_next(&self, e: MilvusError) {
        self.lock().fail.push_back(e);
    }
    /// Records a call; scripted failures hit data writes (upsert, delete) only.
    fn call(&self, what: String) -> Result<(), MilvusError> {
        let mut st = self.lock();
        let data_write = what.starts_with("upsert") || what.starts_with("delete");
        st.calls.push(what);
        match st.fail.pop_front() {
            Some(e) if data_write => Err(e),
            Some(e) => {
                st.fail.push_front(e);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn versions(rows: &Rows) -> Vec<f32> {
    let Some(Field::Vectors(v)) = rows.column("v").and_then(|c| c.field.as_ref()) else {
        return vec![0.0; rows.len()];
    };
    let Some(Vector::FloatVector(f)) = &v.data else {
        return vec![];
    };
    f.data.chunks(2).map(|c| c[1]).collect()
}

impl Target for Fake {
    async fn insert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<(), MilvusError> {
        self.call(format!("insert {collection}/{partition} {}", rows.len()))?;
        panic!("the applier only upserts");
    }

    async fn upsert(
        &self,
        collection: &str,
        partition: &str,
        rows: &Rows,
    ) -> Result<(), MilvusError> {
        self.call(format!("upsert {collection}/{partition} {}", rows.len()))?;
        let pks = rows
            .primary_keys("id")
            .or_else(|| rows.primary_keys("pk"))
            .unwrap();
        let mut st = self.lock();
        for (i, v) in versions(rows).into_iter().enumerate() {
            st.rows
                .insert((collection.to_string(), pks.get(i).unwrap()), v);
            st.by_partition
                .insert((collection.to_string(), partition.to_string(), pks.get(i).unwrap()), v);
        }
        Ok(())
    }
    async fn delete(
        &self,
        collection: &str,
        partition: &str,
        _pk: &str,
        keys: &PrimaryKeys,
    ) -> Result<(), MilvusError> {
        self.call(format!("delete {collection}/{partition} {}", keys.len()))?;
        let mut st = self.lock();
        for i in 0..keys.len() {
            let k = keys.get(i).unwrap();
            st.rows.remove(&(collection.to_string(), k.clone()));
            st.by_partition
                .retain(|(c, p, pk), _| !(c == collection && (partition.is_empty() || p == partition) && *pk == k));
        }
        Ok(())
    }
    async fn create_partition(&self, collection: &str, partition: &str) -> Result<(), MilvusError> {
        self.call(format!("create_partition {collection}/{partition}"))?;
        self.lock().partitions.insert(partition.to_string());
        Ok(())
    }
    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), MilvusError> {
        self.call(format!("drop_partition {collection}/{partition}"))?;
        let mut st = self.lock();
        st.partitions.remove(partition);
        st.by_partition.retain(|(c, p, _), _| !(c == collection && p == partition));
        Ok(())
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), MilvusError> {
        self.call(format!("drop_collection {collection}"))?;
        self.lock().rows.retain(|(c, _), _| c != collection);
        Ok(())
    }
}

fn unavailable() -> MilvusError {
    MilvusError::Rpc {
        call: "Upsert",
        target: "default/t".into(),
        code: tonic::Code::Unavailable,
        message: "connection refused".into(),
    }
}

fn schema_mismatch() -> MilvusError {
    MilvusError::Server {
        call: "Upsert",
        target: "default/t".into(),
        code: 1100,
        error_code: crate::proto::common::ErrorCode::IllegalArgument,
        reason: "field v: dim mismatch".into(),
        retriable: false,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    log: DurableLog,
    fake: Fake,
    offset: i64,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = DurableLog::open(&LogConfig::new(dir.path())).unwrap();
        log.init_position(CH, ChannelPosition::default()).unwrap();
        Setup {
            _dir: dir,
            log,
            fake: Fake::default(),
            offset: 0,
        }
    }

    /// Appends one sealed window (records already in ts order) ending at tick `tick`.
    fn window(&mut self, records: Vec<Vec<u8>>, tick: u64) {
        self.window_on(CH, records, tick)
    }

    /// [`Setup::window`] on channel `ch`.
    fn window_on(&mut self, ch: &str, records: Vec<Vec<u8>>, tick: u64) {
        let entries = records
            .into_iter()
            .map(|raw| {
                let ev = crate::msgstream::decode(&raw).unwrap();
                self.offset += 1;
                LogEntry {
                    kafka_offset: self.offset,
                    msg_type: crate::msgstream::decode::peek(&raw).unwrap().msg_type,
                    ts: ev.ts(),
                    collection_id: ev.collection_id().unwrap_or(0),
                    payload: raw,
                }
            })
            .collect();
        self.offset += 1;
        let pos = ChannelPosition {
            next_offset: self.offset + 1,
            skip_through_ts: tick,
        };
        self.log.append_now(ch, entries, pos, tick).unwrap();
    }

    fn applier(&self, cfg: ApplyConfig) -> Applier<Fake> {
        let routes = Routes::from([(1, route("t1", false)), (2, route("t2", true))]);
        Applier::new(CH, self.log.clone(), self.fake.clone(), routes, cfg)
    }
}

fn route(name: &str, partition_key: bool) -> CollectionRoute {
    CollectionRoute {
        target_collection: name.into(),
        pk_field: "id".into(),
        partition_key,
        partitions: Vec::new(),
    }
}

fn fast() -> ApplyConfig {
    ApplyConfig {
        retry_initial_ms: 1,
        retry_max_ms: 2,
        ..ApplyConfig::default()
    }
}

fn key(c: &str, k: i64) -> (String, PkValue) {
    (c.to_string(), PkValue::Int(k))
}

#[tokio::test]
async fn upsert_pair_survives_and_cursor_reaches_the_tick() {
    let mut s = Setup::new();
    s.window(vec![td::insert(1, "_default", 10, &[1, 2], 1.0)], 15);
    s.window(
        vec![
            td::insert(1, "_default", 20, &[1], 2.0),
            td::delete(1, "_default", 20, &[1]),
            td::delete(1, "", 21, &[2]),
        ],
        25,
    );
    let mut a = s.applier(fast());
    a.apply_available().await.unwrap();
    assert_eq!(s.fake.rows(), BTreeMap::from([(key("t1", 1), 2.0)]));
    assert_eq!(
        s.log.cursor(CH),
        Cursor {
            next_seq: 4,
            applied_ts: 25
        }
    );
    assert_eq!(s.log.pending_events(), 0);
}

#[tokio::test]
async fn small_batches_never_split_equal_timestamps() {
    let mut s = Setup::new();
    let mut recs = Vec::new();
    for ts in 1..=6u64 {
        recs.push(td::insert(1, "_default", ts * 10, &[ts as i64], ts as f32));
        recs.push(td::delete(1, "_default", ts * 10, &[ts as i64]));
    }
    s.window(recs, 100);
    let mut a = s.applier(ApplyConfig {
        max_batch_rows: 1,
        ..fast()
    });
    let mut cuts = Vec::new();
    while a.step().await.unwrap() {
        cuts.push(s.log.cursor(CH).next_seq);
    }
    assert_eq!(
        cuts,
        vec![2, 4, 6, 8, 10, 12],
        "every batch ends after a pair"
    );
    assert_eq!(
        s.fake.rows().len(),
        6,
        "no upsert was deleted by its own delete"
    );
}

#[tokio::test]
async fn retryable_target_errors_are_retried_not_skipped() {
    let mut s = Setup::new();
    s.window(vec![td::insert(1, "_default", 10, &[1], 1.0)], 15);
    s.fake.fail_next(unavailable());
    s.fake.fail_next(unavailable());
    s.applier(fast()).apply_available().await.unwrap();
    let upserts = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("upsert"))
        .count();
    assert_eq!(upserts, 3);
    assert_eq!(s.fake.rows(), BTreeMap::from([(key("t1", 1), 1.0)]));
    assert_eq!(s.log.cursor(CH).next_seq, 1);
}

#[tokio::test]
async fn a_rejected_write_stops_the_channel_without_moving_the_cursor() {
    let mut s = Setup::new();
    s.window(vec![td::insert(1, "_default", 10, &[1], 1.0)], 15);
    s.fake.fail_next(schema_mismatch());
    let err = s.applier(fast()).apply_available().await.unwrap_err();
    assert!(
        matches!(&err, ApplyError::Target { collection, op: "upsert", .. } if collection == "t1"),
        "{err}"
    );
    assert!(err.to_string().contains("dim mismatch"), "{err}");
    assert_eq!(s.log.cursor(CH), Cursor::default());
    // Fixed and restarted, the same batch goes through.
    s.applier(fast()).apply_available().await.unwrap();
    assert_eq!(s.fake.rows().len(), 1);
}

#[tokio::test]
async fn partitions_follow_and_partition_key_collections_ignore_names() {
    let mut s = Setup::new();
    s.window(
        vec![
            td::create_partition(1, "p1", 10),
            td::insert(1, "p1", 11, &[1], 1.0),
            td::create_partition(2, "_default_9", 12),
            td::insert(2, "_default_3", 13, &[5], 1.0),
            td::drop_partition(1, "p1", 14),
            td::insert(99, "_default", 15, &[7], 1.0),
        ],
        20,
    );
    s.applier(fast()).apply_available().await.unwrap();
    assert_eq!(
        s.fake.calls(),
        vec![
            "create_partition t1/p1",
            "upsert t1/p1 1",
            "upsert t2/ 1",
            "drop_partition t1/p1",
        ]
    );
    assert_eq!(
        s.log.cursor(CH),
        Cursor {
            next_seq: 6,
            applied_ts: 20
        }
    );
}

#[tokio::test]
async fn partitions_missing_from_the_wal_are_created_on_first_use() {
    // Milvus 2.3 writes no CreatePartition record: the first insert names the partition.
    let mut s = Setup::new();
    s.window(
        vec![
            td::insert(1, "p2", 11, &[1], 1.0),
            td::insert(1, "p2", 12, &[2], 1.0),
            td::delete(1, "p3", 13, &[9]),
        ],
        20,
    );
    s.window(vec![td::insert(1, "p2", 21, &[3], 1.0)], 25);
    s.applier(fast()).apply_available().await.unwrap();
    let calls = s.fake.calls();
    let mut created: Vec<&String> = calls.iter().filter(|c| c.starts_with("create_partition")).collect();
    created.sort();
    assert_eq!(created, vec!["create_partition t1/p2", "create_partition t1/p3"], "{calls:?}");
    assert!(
        calls.iter().position(|c| c == "create_partition t1/p2")
            < calls.iter().position(|c| c.starts_with("upsert t1/p2"))
    );
}

#[tokio::test]
async fn a_dropped_source_collection_stops_the_channel() {
    let mut s = Setup::new();
    s.window(vec![td::drop_collection(1, "books", 10)], 15);
    let err = s.applier(fast()).apply_available().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::SourceCollectionDropped {
                collection_id: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.log.cursor(CH).next_seq, 0);
}

#[tokio::test]
async fn on_source_drop_drop_drops_the_target_and_streams_on() {
    let mut s = Setup::new();
    s.window(vec![td::insert(1, "_default", 10, &[1, 2], 1.0)], 12);
    s.window(vec![td::drop_collection(1, "books", 14)], 15);
    // A record of the dropped collection after its drop goes nowhere (Milvus writes none,
    // but a replay must not recreate rows).
    s.window(vec![td::insert(1, "_default", 16, &[3], 1.0)], 17);
    let cfg = ApplyConfig { drop_on_source_drop: true, ..fast() };
    s.applier(cfg).apply_available().await.unwrap();
    let calls = s.fake.calls();
    assert!(calls.contains(&"drop_collection t1".to_string()), "{calls:?}");
    assert!(s.fake.rows().is_empty(), "{:?}", s.fake.rows());
    assert_eq!(s.log.cursor(CH).next_seq, s.log.end_seq(CH), "the channel went on");
}

#[tokio::test]
async fn corrupt_entries_are_errors_naming_channel_and_offset() {
    let mut s = Setup::new();
    s.window(vec![td::insert(1, "_default", 10, &[1], 1.0)], 15);
    s.log
        .append_now(
            CH,
            vec![LogEntry {
                kafka_offset: 77,
                msg_type: 400,
                ts: 16,
                collection_id: 1,
                payload: vec![0xff, 0xff],
            }],
            ChannelPosition {
                next_offset: 78,
                skip_through_ts: 16,
            },
            16,
        )
        .unwrap();
    let err = s.applier(fast()).apply_available().await.unwrap_err();
    assert!(
        matches!(err, ApplyError::Decode { offset: 77, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(CH), "{err}");
}

#[tokio::test]
async fn run_follows_appends_until_shutdown() {
    let mut s = Setup::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut a = s.applier(fast());
    let task = tokio::spawn(async move {
        a.run(async {
            let _ = stopped.await;
        })
        .await
    });
    for i in 0..5 {
        s.window(
            vec![td::insert(1, "_default", 10 + i * 10, &[i as i64], 1.0)],
            15 + i * 10,
        );
        tokio::task::yield_now().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.log.applied_ts(CH) < 55 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "applier did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.fake.rows().len(), 5);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn requests_are_split_within_both_bounds() {
    let raw = td::insert(1, "_default", 10, &(0..10).collect::<Vec<_>>(), 1.0);
    let WalEvent::Insert(ins) = crate::msgstream::decode(&raw).unwrap() else {
        panic!()
    };
    let parts = split_rows(
        &ins.rows,
        &BatchLimits {
            max_bytes: usize::MAX,
            max_rows: 3,
        },
    );
    assert_eq!(
        parts.iter().map(Rows::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    let parts = split_rows(
        &ins.rows,
        &BatchLimits {
            max_bytes: 40,
            max_rows: 100,
        },
    );
    assert!(parts.len() > 1 && parts.iter().map(Rows::len).sum::<usize>() == 10);
    let keys = chunk_keys(&PrimaryKeys::Int((0..5).collect()), 2);
    assert_eq!(
        keys.iter().map(PrimaryKeys::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
}

fn partition_rows(s: &Setup) -> Vec<(String, i64, f32)> {
    s.fake
        .partition_rows()
        .into_iter()
        .map(|((_, p, k), v)| (p, if let PkValue::Int(k) = k { k } else { unreachable!() }, v))
        .collect()
}

/// Milvus 2.3 puts DropPartition on the WAL from an asynchronous step of the drop, stamped
/// when that step runs: "drop p1; create p1; insert" can reach the WAL as the insert into
/// the new p1 (ID 12) before the drop of the old one (ID 11). Seen on the CI machine: the
/// drop applied by name removed the refill.
#[tokio::test]
async fn a_drop_that_reaches_the_wal_after_the_recreated_partitions_rows_leaves_them() {
    let mut s = Setup::new();
    s.window(vec![td::insert_into(1, "p1", 11, 10, &[1, 2], 1.0)], 12);
    s.window(vec![td::insert_into(1, "p1", 12, 20, &[2, 3], 2.0)], 21);
    s.window(vec![td::drop_partition_id(1, "p1", 11, 25)], 26);
    s.window(vec![td::insert_into(1, "p1", 12, 30, &[4], 3.0)], 31);
    s.applier(fast()).apply_available().await.unwrap();
    assert_eq!(
        partition_rows(&s),
        vec![("p1".into(), 2, 2.0), ("p1".into(), 3, 2.0), ("p1".into(), 4, 3.0)],
        "{:?}",
        s.fake.calls()
    );
    // The replacement dropped the old partition once; the late drop record did nothing.
    let drops = s.fake.calls().iter().filter(|c| c.starts_with("drop_partition")).count();
    assert_eq!(drops, 1, "{:?}", s.fake.calls());
    assert_eq!(s.log.cursor(CH).next_seq, s.log.end_seq(CH));
}

/// A 2-shard collection drops partition p1 (broadcast to both channels at ts 20) and
/// re-creates and refills it (ts 30). Channel A is ahead; B, applied later (and by a new
/// applier, as after a restart), still holds an insert into the old p1 (ts 15): that row
/// must not come back, and B's copy of the drop must not remove the refill.
#[tokio::test]
async fn a_lagging_channel_neither_resurrects_a_dropped_partition_nor_drops_its_refill() {
    const B: &str = "by-dev-rootcoord-dml_1";
    let mut s = Setup::new();
    s.log.init_position(B, ChannelPosition::default()).unwrap();
    s.window(vec![td::insert_into(1, "p1", 11, 10, &[1], 1.0)], 12);
    s.window(vec![td::drop_partition_id(1, "p1", 11, 20)], 21);
    s.window(vec![td::insert_into(1, "p1", 12, 30, &[2], 3.0)], 31);
    let barriers = Barriers::new(
        s.log.clone(),
        HashMap::from([(1, BTreeSet::from([CH.to_string(), B.to_string()]))]),
    );
    let mut a = s.applier(fast()).with_barriers(barriers.clone());
    tokio::time::timeout(Duration::from_secs(10), a.apply_available())
        .await
        .expect("a channel does not wait for the others at a partition drop")
        .unwrap();
    assert_eq!(partition_rows(&s), vec![("p1".into(), 2, 3.0)]);

    s.window_on(B, vec![td::insert_into(1, "p1", 11, 15, &[3], 1.5)], 16);
    s.window_on(B, vec![td::drop_partition_id(1, "p1", 11, 20)], 21);
    let routes = Routes::from([(1, route("t1", false)), (2, route("t2", true))]);
    let mut b = Applier::new(B, s.log.clone(), s.fake.clone(), routes, fast()).with_barriers(barriers);
    b.apply_available().await.unwrap();

    let drops = s.fake.calls().iter().filter(|c| c.starts_with("drop_partition")).count();
    assert_eq!(drops, 1, "applied once: {:?}", s.fake.calls());
    assert_eq!(partition_rows(&s), vec![("p1".into(), 2, 3.0)], "only the refill is left in p1");
    assert_eq!(s.log.cursor(CH).next_seq, s.log.end_seq(CH));
    assert_eq!(s.log.cursor(B).next_seq, s.log.end_seq(B));
}

/// The snapshot filled the target's p1 from source partition 11 (the job's record). The
/// stream then meets rows of a p1 re-created as 12 before 11's drop: the snapshot's rows
/// go, the new rows stay, and a restarted applier (new instance, same log) agrees.
#[tokio::test]
async fn recorded_partitions_are_replaced_by_a_recreated_one_and_the_choice_survives_a_restart() {
    let mut s = Setup::new();
    let mut r = route("t1", false);
    r.partitions = vec![("_default".into(), td::partition_id("_default")), ("p1".into(), 11)];
    let routes = Routes::from([(1, r)]);
    {
        let mut st = s.fake.lock();
        st.partitions.insert("p1".into());
        st.by_partition.insert(("t1".into(), "p1".into(), PkValue::Int(100)), 0.5);
    }
    s.window(vec![td::insert_into(1, "p1", 11, 10, &[1], 1.0), td::insert(1, "_default", 10, &[9], 1.0)], 12);
    Applier::new(CH, s.log.clone(), s.fake.clone(), routes.clone(), fast()).apply_available().await.unwrap();
    assert_eq!(
        partition_rows(&s),
        vec![("_default".into(), 9, 1.0), ("p1".into(), 1, 1.0), ("p1".into(), 100, 0.5)],
        "writes of the recorded partitions go straight in: {:?}",
        s.fake.calls()
    );
    s.window(vec![td::insert_into(1, "p1", 12, 20, &[2], 2.0)], 21);
    Applier::new(CH, s.log.clone(), s.fake.clone(), routes.clone(), fast()).apply_available().await.unwrap();
    // Restarted: a late row of 11 is skipped and 11's drop leaves 12's rows.
    s.window(vec![td::insert_into(1, "p1", 11, 22, &[3], 1.0), td::drop_partition_id(1, "p1", 11, 25)], 26);
    Applier::new(CH, s.log.clone(), s.fake.clone(), routes, fast()).apply_available().await.unwrap();
    assert_eq!(partition_rows(&s), vec![("_default".into(), 9, 1.0), ("p1".into(), 2, 2.0)], "{:?}", s.fake.calls());
}
