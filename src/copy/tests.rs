//! The copy engine's resume protocol, in process: a fake target that can fail right after a
//! write landed (as a crash between the target write and the cursor would), and readers in
//! both orders. Every crash point of a run is tried; the resumed run must leave each key on
//! the target exactly once, never insert a key already there, and report the same counts.
//! (The real-server versions, with kill -9 and the `copy.after_target_write` failpoint, are
//! in tests/migrate_offline.rs, tests/import_backup.rs and tests/import_1x.rs.)

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::milvus::{MilvusError, PrimaryKeys};
use crate::plan::{PlanOptions, SourceCollection};
use crate::proto::milvus::DescribeCollectionResponse;
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, CollectionSchema, DataType,
    FieldData, FieldSchema, FloatArray, LongArray, ScalarField, VectorField,
};
use crate::proto::common::KeyValuePair;

/// A target collection as a map of key to how many rows hold it.
#[derive(Default)]
struct FakeTarget {
    st: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    rows: BTreeMap<i64, u32>,
    writes: usize,
    /// The write with this number lands, then fails (the cursor never hears of it).
    fail_after_landing: Option<usize>,
    inserted_existing: Vec<i64>,
    upserts: usize,
    inserts: usize,
}

fn keys(rows: &Rows) -> Vec<i64> {
    match rows.primary_keys("id") {
        Some(PrimaryKeys::Int(k)) => k,
        other => panic!("rows without Int64 keys: {other:?}"),
    }
}

impl FakeTarget {
    fn write(&self, rows: &Rows, upsert: bool) -> Result<(), MilvusError> {
        let mut st = self.st.lock().unwrap();
        st.writes += 1;
        for k in keys(rows) {
            let n = st.rows.entry(k).or_default();
            if upsert {
                *n = 1;
            } else {
                if *n > 0 {
                    st.inserted_existing.push(k);
                }
                *st.rows.get_mut(&k).unwrap() += 1;
            }
        }
        if upsert {
            st.upserts += 1;
        } else {
            st.inserts += 1;
        }
        if st.fail_after_landing == Some(st.writes) {
            return Err(MilvusError::Rpc {
                call: "Insert",
                target: "fake".into(),
                code: tonic::Code::Unavailable,
                message: "connection lost after the write landed".into(),
            });
        }
        Ok(())
    }
}

impl Target for FakeTarget {
    async fn insert(&self, _: &str, _: &str, rows: &Rows) -> Result<(), MilvusError> {
        self.write(rows, false)
    }
    async fn upsert(&self, _: &str, _: &str, rows: &Rows) -> Result<(), MilvusError> {
        self.write(rows, true)
    }
    async fn delete(&self, _: &str, _: &str, _: &str, _: &PrimaryKeys) -> Result<(), MilvusError> {
        unreachable!("copies do not delete")
    }
    async fn create_partition(&self, _: &str, _: &str) -> Result<(), MilvusError> {
        unreachable!()
    }
    async fn drop_partition(&self, _: &str, _: &str) -> Result<(), MilvusError> {
        unreachable!()
    }
    async fn drop_collection(&self, _: &str) -> Result<(), MilvusError> {
        unreachable!()
    }
}

fn rows_of(keys: &[i64]) -> Rows {
    Rows::new(vec![
        FieldData {
            r#type: DataType::Int64 as i32,
            field_name: "id".into(),
            field: Some(Field::Scalars(ScalarField { data: Some(Scalar::LongData(LongArray { data: keys.to_vec() })), ..Default::default() })),
            ..Default::default()
        },
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "v".into(),
            field: Some(Field::Vectors(VectorField {
                dim: 2,
                data: Some(Vector::FloatVector(FloatArray { data: keys.iter().flat_map(|k| [*k as f32, 0.5]).collect() })),
                ..Default::default()
            })),
            ..Default::default()
        },
    ])
    .unwrap()
}

/// Units of keys, sent in pages of `page` rows; row order (from the start, with a count
/// first) or key order (after the resume key).
struct FakeReader {
    units: Vec<Vec<i64>>,
    order_by_key: bool,
    page: usize,
    /// Rows reported as removed by deletes (row order).
    deleted: u64,
}

impl CollectionReader for FakeReader {
    fn units(&self) -> Vec<Unit> {
        (0..self.units.len())
            .map(|index| Unit {
                key: format!("test/u{index}"),
                name: format!("segment {index}"),
                partition: String::new(),
                order: if self.order_by_key { Order::Key { pk_field: "id".into() } } else { Order::Row },
                index,
            })
            .collect()
    }

    async fn expected_rows(&self) -> u64 {
        self.units.iter().map(|u| u.len() as u64).sum()
    }

    async fn read_unit(&self, unit: &Unit, from: Option<&Position>, out: &Pages) -> Result<(), CopyError> {
        let mut keys = self.units[unit.index].clone();
        if self.order_by_key {
            if let Some(Position::Key(PkValue::Int(k))) = from {
                keys.retain(|x| x > k);
            }
        } else if !out.send(Page::Counted { rows: keys.len() as u64, deleted: self.deleted }).await {
            return Ok(());
        }
        for page in keys.chunks(self.page) {
            if !out.send(Page::Rows(rows_of(page))).await {
                break;
            }
        }
        Ok(())
    }
}

fn plan() -> CollectionPlan {
    let schema = CollectionSchema {
        name: "c".into(),
        fields: vec![
            FieldSchema { field_id: 100, name: "id".into(), is_primary_key: true, data_type: DataType::Int64 as i32, ..Default::default() },
            FieldSchema {
                field_id: 101,
                name: "v".into(),
                data_type: DataType::FloatVector as i32,
                type_params: vec![KeyValuePair { key: "dim".into(), value: "2".into() }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let source = SourceCollection {
        name: "c".into(),
        desc: DescribeCollectionResponse { schema: Some(schema), shards_num: 1, ..Default::default() },
        partitions: vec![("_default".into(), 1)],
        indexes: Vec::new(),
        row_estimate: 0,
        load_source: false,
    };
    plan::plan_described(source, "c_copy", None, "v2.3.5", PlanOptions { allow_autoid_off: false }).unwrap()
}

fn copier<'a>(target: &'a FakeTarget, state: &StateStore, shutdown: CancellationToken) -> Copier<&'a FakeTarget> {
    Copier {
        target,
        state: state.clone(),
        // Batches of 5 rows: each row is an 8-byte key and two 4-byte floats.
        opts: CopyOptions { parallelism: 2, page_rows: 0, batch_bytes: 5 * 16, key_splits: 1 },
        progress: Progress::new(true),
        shutdown,
    }
}

impl<T: Target> Target for &T {
    async fn insert(&self, c: &str, p: &str, rows: &Rows) -> Result<(), MilvusError> {
        (*self).insert(c, p, rows).await
    }
    async fn upsert(&self, c: &str, p: &str, rows: &Rows) -> Result<(), MilvusError> {
        (*self).upsert(c, p, rows).await
    }
    async fn delete(&self, c: &str, p: &str, f: &str, k: &PrimaryKeys) -> Result<(), MilvusError> {
        (*self).delete(c, p, f, k).await
    }
    async fn create_partition(&self, c: &str, p: &str) -> Result<(), MilvusError> {
        (*self).create_partition(c, p).await
    }
    async fn drop_partition(&self, c: &str, p: &str) -> Result<(), MilvusError> {
        (*self).drop_partition(c, p).await
    }
    async fn drop_collection(&self, c: &str) -> Result<(), MilvusError> {
        (*self).drop_collection(c).await
    }
}

fn reader(order_by_key: bool) -> FakeReader {
    // Two units of uneven sizes, pages of 3 rows (batches of 5 cut across pages), keys
    // with gaps and negatives.
    FakeReader {
        units: vec![(0..23).map(|k| k * 3 - 20).collect(), (100..117).collect()],
        order_by_key,
        page: 3,
        deleted: 2,
    }
}

async fn run(target: &FakeTarget, state: &StateStore, r: &FakeReader, fresh: bool) -> Result<CopyReport, CopyError> {
    copier(target, state, CancellationToken::new()).copy_collection(r, &plan(), fresh).await
}

/// Crashes after every possible write in turn, resumes, and checks the target.
async fn every_crash_point_converges(order_by_key: bool) {
    let r = reader(order_by_key);
    let expected: Vec<i64> = r.units.concat();
    // The number of writes of an uninterrupted run.
    let clean = FakeTarget::default();
    let dir = tempfile::tempdir().unwrap();
    run(&clean, &StateStore::open(dir.path()).unwrap(), &r, true).await.unwrap();
    let writes = clean.st.lock().unwrap().writes;
    assert_eq!(writes, 5 + 4, "23 rows and 17 rows in batches of 5");
    for crash in 1..=writes {
        let target = FakeTarget::default();
        target.st.lock().unwrap().fail_after_landing = Some(crash);
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let e = run(&target, &state, &r, true).await.unwrap_err();
        assert!(matches!(e, CopyError::Write { .. }), "crash {crash}: {e}");
        let report = run(&target, &state, &r, true).await.unwrap();
        let st = target.st.lock().unwrap();
        let on_target: Vec<i64> = st.rows.keys().copied().collect();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(on_target, want, "crash after write {crash}: keys");
        assert!(st.rows.values().all(|n| *n == 1), "crash after write {crash}: a key holds two rows");
        assert!(st.inserted_existing.is_empty(), "crash after write {crash}: inserted again: {:?}", st.inserted_existing);
        // Only what may have landed is upserted: the crashed batch (and, with two units in
        // parallel, the other unit's batch in flight).
        assert!((1..=2).contains(&st.upserts), "crash after write {crash}: {} upserts", st.upserts);
        let units: Vec<UnitState> = (0..2).map(|i| state.get(&format!("test/u{i}")).unwrap().unwrap()).collect();
        assert!(units.iter().all(|u| u.done && u.intent.is_none()), "{units:?}");
        assert_eq!(units.iter().map(|u| u.rows_done).sum::<u64>(), 40, "rows written over both runs");
        if !order_by_key {
            assert_eq!((report.counted_rows, report.deleted, report.units), (40, 4, 2));
        }
    }
}

#[tokio::test]
async fn row_order_every_crash_point_converges_without_repeated_inserts() {
    every_crash_point_converges(false).await;
}

#[tokio::test]
async fn key_order_every_crash_point_converges_without_repeated_inserts() {
    every_crash_point_converges(true).await;
}

#[tokio::test]
async fn a_target_that_existed_before_the_job_is_only_upserted() {
    let target = FakeTarget::default();
    let dir = tempfile::tempdir().unwrap();
    run(&target, &StateStore::open(dir.path()).unwrap(), &reader(false), false).await.unwrap();
    let st = target.st.lock().unwrap();
    assert_eq!((st.inserts, st.upserts, st.rows.len()), (0, 9, 40));
}

#[tokio::test]
async fn a_unit_whose_rows_changed_since_an_earlier_run_fails_naming_it() {
    let target = FakeTarget::default();
    target.st.lock().unwrap().fail_after_landing = Some(2);
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(dir.path()).unwrap();
    let mut r = reader(false);
    r.units.truncate(1);
    run(&target, &state, &r, true).await.unwrap_err();
    r.deleted = 3;
    let e = run(&target, &state, &r, true).await.unwrap_err().to_string();
    assert!(
        e.contains("collection \"c\", segment 0: an earlier run wrote 5 of its rows (more may have landed), reading 23 rows (2 deleted); now it reads 23 rows (3 deleted)"),
        "{e}"
    );
}

#[tokio::test]
async fn shutdown_stops_between_pages_and_a_rerun_finishes() {
    let target = FakeTarget::default();
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(dir.path()).unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let e = copier(&target, &state, stop).copy_collection(&reader(true), &plan(), true).await.unwrap_err();
    assert!(matches!(e, CopyError::Interrupted), "{e}");
    run(&target, &state, &reader(true), true).await.unwrap();
    assert_eq!(target.st.lock().unwrap().rows.len(), 40);
}

/// The unit states earlier releases wrote are read, and what this one writes is readable by
/// them (a downgrade after a partial run must not lose its place).
#[test]
fn unit_states_of_earlier_releases_read_and_written() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldSnapshotUnit {
        cursor: Option<PkValue>,
        rows_done: u64,
        bytes_done: u64,
        done: bool,
        intent: Option<PkValue>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldSegment {
        done: bool,
        rows: u64,
        deleted: u64,
        rows_done: u64,
        intent: Option<u64>,
    }
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(dir.path()).unwrap();
    let unit = |order| Unit { key: "k".into(), name: "n".into(), partition: String::new(), order, index: 0 };
    let by_key = unit(Order::Key { pk_field: "id".into() });
    state.put("k", &serde_json::json!({"cursor": {"Int": -5}, "rows_done": 3, "bytes_done": 10, "done": false, "intent": {"Str": "é\"x"}})).unwrap();
    let st = UnitState::load(&state, &by_key).unwrap();
    assert_eq!(st.cursor, Some(Position::Key(PkValue::Int(-5))));
    assert_eq!(st.intent, Some(Position::Key(PkValue::Str("é\"x".into()))));
    state.put("k", &st).unwrap();
    let old: OldSnapshotUnit = state.get("k").unwrap().unwrap();
    assert_eq!((old.cursor, old.rows_done, old.intent), (Some(PkValue::Int(-5)), 3, Some(PkValue::Str("é\"x".into()))));

    let by_row = unit(Order::Row);
    state.put("k", &serde_json::json!({"done": false, "rows": 10, "deleted": 2, "rows_done": 4, "intent": 6})).unwrap();
    let st = UnitState::load(&state, &by_row).unwrap();
    assert_eq!((st.cursor.clone(), st.intent.clone()), (Some(Position::Row(4)), Some(Position::Row(6))));
    assert_eq!((st.rows, st.deleted, st.rows_done), (10, 2, 4));
    state.put("k", &st).unwrap();
    let old: OldSegment = state.get("k").unwrap().unwrap();
    assert_eq!((old.rows, old.deleted, old.rows_done, old.intent), (10, 2, 4, Some(6)));
}
