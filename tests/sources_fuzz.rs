//! Fuzzes the file-source parsers (binlogs, delta logs, whole backup segments, Milvus 1.x
//! files) with arbitrary bytes and with mutations and truncations of valid files (written by
//! the testdata writers, which `sources_real_binlogs` checks against what Milvus 2.3.5
//! writes, so mutations reach past the magic and header checks), under an allocator that
//! records the largest single allocation and, per thread, the live bytes and their peak:
//! the parsers must neither panic, nor size an allocation from a corrupt length field, nor
//! hold more memory than the decode budget they are given allows (dictionary and
//! run-length pages included).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use ferry::milvus::{PkValue, Rows};
use ferry::proto::common::KeyValuePair;
use ferry::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, ArrayArray,
    BoolArray, CollectionSchema, DataType, DoubleArray, FieldData, FieldSchema, FloatArray,
    IntArray, JsonArray, LongArray, ScalarField, StringArray, VectorField,
};
use ferry::sources::backup::meta::{
    BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SchemaJson,
};
use ferry::sources::backup::testdata::{write_meta, write_segment, SegmentSpec};
use ferry::sources::binlog::{self, testdata, DecodeBudget, ReadLimits};
use ferry::sources::v1x;
use proptest::prelude::*;

struct Tracking;

thread_local! {
    /// The largest single allocation this thread made (tests run on several threads, and
    /// the dictionary bombs build large inputs on theirs).
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes this thread has allocated and not freed, and their peak since [`reset_peak`].
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn largest(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        largest(layout.size());
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        largest(layout.size());
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        largest(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block arriving before the old one leaves (a moving realloc
            // holds both for a moment).
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Inputs here are at most a few KiB; anything past this came from a length field.
const MAX_ALLOCATION: usize = 64 << 20;

/// What the parsers here may decode one file to (and a segment read may reserve).
const DECODE_LIMIT: u64 = 16 << 20;

/// The most a case may hold over its baseline: the decode limit plus room for the inputs
/// and the reader's fixed costs. (A bound of 8x the limit stood here while mutated insert
/// logs were seen holding 67 MB: the Parquet reader panicked on them, and the panic report's
/// backtrace, with `RUST_BACKTRACE=1`, loaded the test binary's debug info. Such panics are
/// now errors without a report; `tests/binlog_reader_panics.rs` checks it.)
const MEMORY_BOUND: isize = DECODE_LIMIT as isize + (8 << 20);

fn limits() -> ReadLimits {
    ReadLimits {
        max_decoded_bytes: DECODE_LIMIT,
    }
}

/// Starts a case: the peak becomes this thread's live bytes now, returned as the baseline.
fn reset_peak() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    // The largest single allocation is per case too: a value left by an earlier case (or
    // by set-up outside any case) must not fail this one.
    LARGEST.with(|l| l.set(0));
    live
}

fn check_memory(baseline: isize) -> Result<(), TestCaseError> {
    let over = PEAK.with(Cell::get) - baseline;
    prop_assert!(
        over < MEMORY_BOUND,
        "the case held {over} bytes over its baseline, more than {MEMORY_BOUND} \
         (decode limit {DECODE_LIMIT})"
    );
    Ok(())
}

fn field(id: i64, name: &str, t: DataType, dim: Option<i64>) -> FieldSchema {
    FieldSchema {
        field_id: id,
        name: name.into(),
        data_type: t as i32,
        element_type: DataType::Int64 as i32,
        type_params: dim
            .map(|d| {
                vec![KeyValuePair {
                    key: "dim".into(),
                    value: d.to_string(),
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn samples() -> Vec<(FieldSchema, FieldData)> {
    let col = |f: &FieldSchema, field: Field| FieldData {
        r#type: f.data_type,
        field_name: f.name.clone(),
        field_id: f.field_id,
        field: Some(field),
        is_dynamic: false,
        valid_data: Vec::new(),
    };
    let s = |d| Field::Scalars(ScalarField { data: Some(d), ..Default::default() });
    let mut out = Vec::new();
    let f = field(100, "pk", DataType::Int64, None);
    let c = col(
        &f,
        s(Scalar::LongData(LongArray {
            data: (0..64).collect(),
        })),
    );
    out.push((f, c));
    let f = field(101, "s", DataType::VarChar, None);
    // Repeated values: the writer dictionary-encodes them (see `seeds_have_dictionary_pages`).
    let c = col(
        &f,
        s(Scalar::StringData(StringArray {
            data: (0..64).map(|i| format!("value-{}", i % 4)).collect(),
        })),
    );
    out.push((f, c));
    let f = field(102, "j", DataType::Json, None);
    let c = col(
        &f,
        s(Scalar::JsonData(JsonArray {
            data: (0..64)
                .map(|i| format!("{{\"k\":{i}}}").into_bytes())
                .collect(),
        })),
    );
    out.push((f, c));
    let f = field(103, "a", DataType::Array, None);
    let c = col(
        &f,
        s(Scalar::ArrayData(ArrayArray {
            data: (0..64)
                .map(|i| ScalarField {
                    data: Some(Scalar::LongData(LongArray {
                        data: vec![i, i + 1],
                    })),
                    ..Default::default()
                })
                .collect(),
            element_type: DataType::Int64 as i32,
        })),
    );
    out.push((f, c));
    let f = field(104, "v", DataType::FloatVector, Some(4));
    let c = col(
        &f,
        Field::Vectors(VectorField {
            dim: 4,
            data: Some(Vector::FloatVector(FloatArray {
                data: (0..256).map(|i| i as f32 * 0.5).collect(),
            })),
            ..Default::default()
        }),
    );
    out.push((f, c));
    let scalars: [(i64, &str, DataType, Scalar); 7] = [
        (
            105,
            "b",
            DataType::Bool,
            Scalar::BoolData(BoolArray {
                data: (0..64).map(|i| i % 3 == 0).collect(),
            }),
        ),
        (
            106,
            "i8",
            DataType::Int8,
            Scalar::IntData(IntArray {
                data: (0..64).map(|i| i % 5 - 2).collect(),
            }),
        ),
        (
            107,
            "i16",
            DataType::Int16,
            Scalar::IntData(IntArray {
                data: (0..64).map(|i| i * 300 - 9000).collect(),
            }),
        ),
        (
            108,
            "i32",
            DataType::Int32,
            Scalar::IntData(IntArray {
                data: (0..64).map(|i| i % 7).collect(),
            }),
        ),
        (
            109,
            "f",
            DataType::Float,
            Scalar::FloatData(FloatArray {
                data: (0..64).map(|i| (i % 3) as f32).collect(),
            }),
        ),
        (
            110,
            "d",
            DataType::Double,
            Scalar::DoubleData(DoubleArray {
                data: (0..64).map(|i| i as f64 / 3.0).collect(),
            }),
        ),
        (
            111,
            "str",
            DataType::String,
            Scalar::StringData(StringArray {
                data: (0..64).map(|i| "s".repeat(i % 9)).collect(),
            }),
        ),
    ];
    for (id, name, t, data) in scalars {
        let f = field(id, name, t, None);
        let c = col(&f, s(data));
        out.push((f, c));
    }
    let vectors: [(i64, &str, DataType, i64, Vector); 3] = [
        (
            112,
            "bv",
            DataType::BinaryVector,
            16,
            Vector::BinaryVector((0..128).map(|i| i as u8).collect()),
        ),
        (
            113,
            "hv",
            DataType::Float16Vector,
            2,
            Vector::Float16Vector((0..256).map(|i| (i % 4) as u8).collect()),
        ),
        (
            114,
            "bf",
            DataType::BFloat16Vector,
            2,
            Vector::Bfloat16Vector((0..256).map(|i| i as u8).collect()),
        ),
    ];
    for (id, name, t, dim, data) in vectors {
        let f = field(id, name, t, Some(dim));
        let c = col(
            &f,
            Field::Vectors(VectorField {
                dim,
                data: Some(data),
                ..Default::default()
            }),
        );
        out.push((f, c));
    }
    out
}

/// Number of [`samples`]: every type the binlog reader supports.
const SAMPLES: usize = 15;

/// A backup folder (one collection of every sample type, one segment with deletes, written
/// by the backup testdata writers) as (path, bytes) pairs, and the binlog paths among them.
fn backup_files() -> (Vec<(String, Vec<u8>)>, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let bk = dir.path().join("bk");
    let (mut fields, mut cols) = (Vec::new(), Vec::new());
    for (mut f, c) in samples() {
        f.is_primary_key = f.name == "pk";
        fields.push(f);
        cols.push(c);
    }
    let schema = CollectionSchema {
        name: "c".into(),
        fields,
        ..Default::default()
    };
    let rows = Rows::new(cols).unwrap();
    let ts: Vec<u64> = (100..164).collect();
    let seg = write_segment(
        &bk,
        &SegmentSpec {
            collection_id: 7,
            partition_id: 8,
            group: Some(1),
            segment_id: 9001,
            schema: &schema,
            rows: &rows,
            timestamps: &ts,
            deletes: &[(PkValue::Int(3), 500)],
        },
    )
    .unwrap();
    let info = BackupInfo {
        name: "bk".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            collection_name: "c".into(),
            schema: Some(SchemaJson::from_proto(&schema)),
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                segment_backups: vec![seg],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, true).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    let logs = (0..files.len())
        .filter(|&i| files[i].0.contains("/binlogs/"))
        .collect();
    (files, logs)
}

/// Files a real Milvus 2.3.5 wrote (`scripts/capture-binlog-fixtures`): every 2.3 field
/// type with odd values, with its manifest.
const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/milvus-2.3.5-binlogs");

fn real_manifest() -> serde_json::Value {
    let path = format!("{REAL}/manifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn data_type(name: &str) -> DataType {
    DataType::from_str_name(match name {
        "INT8" => "Int8",
        "INT16" => "Int16",
        "INT32" => "Int32",
        "INT64" => "Int64",
        "BOOL" => "Bool",
        "FLOAT" => "Float",
        "DOUBLE" => "Double",
        "VARCHAR" => "VarChar",
        "JSON" => "JSON",
        "ARRAY" => "Array",
        "FLOAT_VECTOR" => "FloatVector",
        "BINARY_VECTOR" => "BinaryVector",
        other => panic!("manifest type {other}"),
    })
    .unwrap()
}

/// (field, bytes) of each real insert log, timestamps and row IDs included.
fn real_insert_logs() -> Vec<(FieldSchema, Vec<u8>)> {
    let m = real_manifest();
    m["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut f = field(
                e["field_id"].as_i64().unwrap(),
                e["name"].as_str().unwrap(),
                data_type(e["type"].as_str().unwrap()),
                e["dim"].as_i64(),
            );
            if let Some(t) = e["element_type"].as_str() {
                f.element_type = data_type(t) as i32;
            }
            (f, std::fs::read(format!("{REAL}/{}", e["file"].as_str().unwrap())).unwrap())
        })
        .collect()
}

/// The real insert logs with their fields, and the real delta logs.
type RealLogs = (Vec<(FieldSchema, Vec<u8>)>, Vec<Vec<u8>>);

fn real_delta_logs() -> Vec<Vec<u8>> {
    real_manifest()["delta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| std::fs::read(format!("{REAL}/{}", f.as_str().unwrap())).unwrap())
        .collect()
}

/// The real files read whole, with the values the capture wrote: the seeds the real-file
/// mutations start from are valid.
#[test]
fn real_milvus_files_read_back_whole() {
    let m = real_manifest();
    let rows = m["rows"].as_u64().unwrap() as usize;
    let logs = real_insert_logs();
    assert!(logs.len() >= 14, "{}", logs.len());
    let mut types = std::collections::BTreeSet::new();
    for (f, b) in &logs {
        let col = binlog::read_insert_log(&f.name, Bytes::from(b.clone()), f, &limits())
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(Rows::new(vec![col.clone()]).unwrap().len(), rows, "{}", f.name);
        types.insert(f.data_type);
        match (f.name.as_str(), &col.field) {
            ("pk", Some(Field::Scalars(ScalarField { data: Some(Scalar::LongData(a)), .. }))) => {
                assert_eq!(a.data[..3], [i64::MIN, i64::MAX, -3]);
            }
            ("s", Some(Field::Scalars(ScalarField { data: Some(Scalar::StringData(a)), .. }))) => {
                assert_eq!(a.data[..5], ["", "é", "日本語", "a\"b\\c", "xxxxxxxxxxxxxxxx"]);
            }
            ("ai", Some(Field::Scalars(ScalarField { data: Some(Scalar::ArrayData(a)), .. }))) => {
                assert_eq!(a.data.len(), rows);
            }
            _ => {}
        }
    }
    assert!(types.len() >= 12, "every 2.3 type: {types:?}");
    for b in real_delta_logs() {
        let d = binlog::read_delta_log("delta", Bytes::from(b), &limits()).unwrap();
        assert_eq!(d.pks, ferry::milvus::PrimaryKeys::Int(vec![-3, 0, 5]));
    }
}

/// Cases per property; `FERRY_FUZZ_CASES` raises it for a longer run.
fn fuzz_cases() -> u32 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn seeds_cover_every_type_and_dictionary_pages() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let samples = samples();
    assert_eq!(samples.len(), SAMPLES);
    let mut dictionary = Vec::new();
    for (f, c) in &samples {
        let b = testdata::insert_log(f, c, Default::default(), (1, 2)).unwrap();
        binlog::read_insert_log("seed", Bytes::from(b.clone()), f, &limits()).unwrap();
        let log = binlog::parse("seed", Bytes::from(b)).unwrap();
        let r = SerializedFileReader::new(log.events[0].payload.clone()).unwrap();
        if r.metadata()
            .row_group(0)
            .column(0)
            .dictionary_page_offset()
            .is_some()
        {
            dictionary.push(f.name.clone());
        }
    }
    for name in ["s", "pk", "i32"] {
        assert!(
            dictionary.iter().any(|n| n == name),
            "{name} has no dictionary page: {dictionary:?}"
        );
    }
    let (files, logs) = backup_files();
    assert!(logs.len() > SAMPLES, "{}", logs.len());
    assert!(files.iter().any(|(p, _)| p.contains("delta_log")));
    // Unmutated, the backup reads back whole, holding part of the budget until dropped.
    let mem = std::sync::Arc::new(object_store::memory::InMemory::new());
    let budget = DecodeBudget::new(DECODE_LIMIT);
    block_on(async {
        use object_store::ObjectStoreExt;
        for (path, b) in files {
            mem.put(&object_store::path::Path::from(path), b.into())
                .await
                .unwrap();
        }
        let root = ferry::sources::Store::from_object_store(mem.clone(), "", "fuzz");
        let src = ferry::sources::BackupSource::open_store(root, Some("bk"))
            .await
            .unwrap();
        let src = src.with_budget(budget.clone());
        let coll = src.collections()[0].clone();
        let seg = coll.segments().next().unwrap();
        let (data, held) = src.read_segment_held(&coll, seg).await.unwrap();
        assert_eq!(data.rows.len(), 64);
        assert!(held.bytes() > 0 && budget.available() < budget.total());
        drop(held);
        assert_eq!(budget.available(), budget.total());
    });
}

/// Sets the bytes `edits` name and then cuts the file at `cut`, if given.
fn damage(b: &mut Vec<u8>, edits: &[(prop::sample::Index, u8)], cut: Option<prop::sample::Index>) {
    for (i, v) in edits {
        let i = i.index(b.len());
        b[i] = *v;
    }
    if let Some(c) = cut {
        b.truncate(c.index(b.len()));
    }
}

fn check_allocations() -> Result<(), TestCaseError> {
    let largest = LARGEST.with(Cell::get);
    prop_assert!(
        largest < MAX_ALLOCATION,
        "an allocation of {largest} bytes was made while parsing a small input"
    );
    Ok(())
}

/// A small valid backup meta (one collection, one partition, one segment).
const VALID_META: &str = r#"{"name":"bk","collection_backups":[{"collection_id":1,"collection_name":"c","schema":{"name":"c","fields":[{"fieldID":100,"name":"pk","is_primary_key":true,"data_type":5},{"fieldID":101,"name":"v","data_type":101,"type_params":[{"key":"dim","value":"4"}]}],"enable_dynamic_field":true},"partition_backups":[{"partition_id":2,"partition_name":"_default","collection_id":1,"segment_backups":[{"segment_id":3,"collection_id":1,"partition_id":2,"num_of_rows":5,"group_id":3}]}]}]}"#;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    // Each bomb writes its (large) uncompressed column first: fewer cases.
    #![proptest_config(ProptestConfig { cases: fuzz_cases() / 15, ..ProptestConfig::default() })]

    /// Dictionary bombs: one long entry repeated by every row (a few bytes of run-length
    /// indices), then mutated; whatever they claim, decoding stays within the limit.
    #[test]
    fn dictionary_bombs(
        entry in 1usize..(64 << 10),
        rows in 1usize..800,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let f = field(101, "s", DataType::VarChar, None);
        let big = "x".repeat(entry);
        let a = arrow_array::StringArray::from(vec![big.as_str(); rows]);
        let p = testdata::parquet_payload(std::sync::Arc::new(a)).unwrap();
        let mut b = testdata::binlog(1, DataType::VarChar as i32, 101, Default::default(), (1, 1), &[p]);
        damage(&mut b, &edits, None);
        let base = reset_peak();
        let r = binlog::read_insert_log("fuzz", Bytes::from(b), &f, &limits());
        check_memory(base)?;
        if (entry * rows) as u64 > DECODE_LIMIT {
            prop_assert!(r.is_err(), "{} bytes decoded within a {DECODE_LIMIT}-byte limit", entry * rows);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn binlog_mutations_and_truncations(
        which in 0usize..SAMPLES,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (f, col) = samples().swap_remove(which);
        let mut b = testdata::insert_log(&f, &col, Default::default(), (1, 2)).unwrap();
        damage(&mut b, &edits, truncate.then_some(cut));
        let base = reset_peak();
        let _ = binlog::read_insert_log("fuzz", Bytes::from(b.clone()), &f, &limits());
        let _ = binlog::read_delta_log("fuzz", Bytes::from(b), &limits());
        check_memory(base)?;
        check_allocations()?;
    }

    /// Files a real Milvus wrote, changed and cut: the parsers meet real headers, real
    /// parquet layouts and real delta records, damaged.
    #[test]
    fn real_binlog_mutations_and_truncations(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        thread_local! {
            static LOGS: RealLogs = (real_insert_logs(), real_delta_logs());
        }
        let (f, mut b, delta) = LOGS.with(|(logs, deltas)| {
            let i = which.index(logs.len() + deltas.len());
            match logs.get(i) {
                Some((f, b)) => (f.clone(), b.clone(), false),
                None => (field(100, "pk", DataType::Int64, None), deltas[i - logs.len()].clone(), true),
            }
        });
        damage(&mut b, &edits, truncate.then_some(cut));
        let base = reset_peak();
        if delta {
            let _ = binlog::read_delta_log("fuzz", Bytes::from(b), &limits());
        } else {
            let _ = binlog::read_insert_log("fuzz", Bytes::from(b), &f, &limits());
        }
        check_memory(base)?;
        check_allocations()?;
    }

    /// Whole segments through `BackupSource`: a backup of every type with one binlog (insert,
    /// timestamp or delta log) changed or cut, read under a shared decode budget.
    #[test]
    fn backup_segment_with_one_mutated_binlog(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        thread_local! {
            static FILES: (Vec<(String, Vec<u8>)>, Vec<usize>) = backup_files();
        }
        let mut files = FILES.with(|f| f.0.clone());
        let target = FILES.with(|f| f.1[which.index(f.1.len())]);
        let b = &mut files[target].1;
        damage(b, &edits, cut);
        let mem = std::sync::Arc::new(object_store::memory::InMemory::new());
        let budget = DecodeBudget::new(DECODE_LIMIT);
        let base = reset_peak();
        block_on(async {
            use object_store::ObjectStoreExt;
            for (path, b) in files {
                mem.put(&object_store::path::Path::from(path), b.into()).await.unwrap();
            }
            let root = ferry::sources::Store::from_object_store(mem.clone(), "", "fuzz");
            let src = ferry::sources::BackupSource::open_store(root, Some("bk")).await.unwrap();
            let src = src.with_budget(budget.clone());
            let coll = src.collections()[0].clone();
            for seg in coll.segments() {
                let _ = src.read_segment_held(&coll, seg).await;
            }
            let _ = src.collection_deletes(&coll).await;
        });
        check_memory(base)?;
        prop_assert_eq!(budget.available(), budget.total(), "a reservation outlived its rows");
        check_allocations()?;
    }

    #[test]
    fn delta_log_mutations(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let records: Vec<String> = (0..32)
            .map(|i| if i % 2 == 0 { format!("{{\"pk\":{i},\"ts\":{i},\"pkType\":5}}") } else { format!("{i},{i}") })
            .collect();
        let mut b = testdata::delta_log(&records, Default::default(), (1, 2)).unwrap();
        damage(&mut b, &edits, None);
        let _ = binlog::read_delta_log("fuzz", Bytes::from(b), &limits());
        check_allocations()?;
    }

    #[test]
    fn arbitrary_bytes(which in 0usize..SAMPLES, bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (f, _) = samples().swap_remove(which);
        let _ = binlog::read_insert_log("fuzz", Bytes::from(bytes.clone()), &f, &limits());
        let _ = binlog::read_delta_log("fuzz", Bytes::from(bytes.clone()), &limits());
        let _ = v1x::parse_vectors("fuzz", &bytes, 8, v1x::VectorKind::Float);
        let _ = v1x::parse_vectors("fuzz", &bytes, 64, v1x::VectorKind::Binary);
        let _ = v1x::parse_ids("fuzz", &bytes);
        let _ = v1x::parse_deleted("fuzz", &bytes, 100);
        check_allocations()?;
    }

    /// The store-backed 1.x reader `ferry import-1x` uses (headers checked against object
    /// sizes, row ranges fetched by range): well-formed segments of random content, then
    /// one file's bytes changed or cut, or a wrong byte count.
    #[test]
    fn v1x_source_reads_arbitrary_files(
        metric in 1i32..=5,
        dim in prop::sample::select(vec![0i64, 8, 16, 40000]),
        rows in 0usize..24,
        seed in any::<u8>(),
        deleted in proptest::option::of(proptest::collection::vec(-2i32..30, 0..8)),
        damage in proptest::option::of((0usize..3, any::<prop::sample::Index>(), any::<u8>(), any::<bool>())),
        range in (0usize..30, 0usize..30),
    ) {
        let row_bytes = if metric >= 3 { dim.max(0) as usize / 8 } else { dim.max(0) as usize * 4 };
        let body = |n: usize| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect() };
        let frame = |b: Vec<u8>| {
            let mut out = (b.len() as u64).to_le_bytes().to_vec();
            out.extend(b);
            out
        };
        let mut files = vec![
            ("t/s/s.rv", frame(body(rows * row_bytes.min(64)))),
            ("t/s/s.uid", frame(body(rows * 8))),
        ];
        let deleted_ok = deleted.as_ref().is_none_or(|d| d.iter().all(|&o| o >= 0 && (o as usize) < rows));
        if let Some(d) = &deleted {
            files.push(("t/s/deleted_docs", frame(d.iter().flat_map(|o| o.to_le_bytes()).collect())));
        }
        if let Some((which, at, value, cut)) = damage {
            let n = files.len();
            let f = &mut files[which % n].1;
            let i = at.index(f.len());
            if cut { f.truncate(i) } else { f[i] = value }
        }
        let meta = format!(
            "{{\"collections\":[{{\"collection\":\"t\",\"metric\":{metric},\"dim\":{dim},\"segments\":[{{\"collection\":\"t\",\"segment\":\"s\"}}]}}]}}"
        );
        let mem = std::sync::Arc::new(object_store::memory::InMemory::new());
        let read = block_on(async {
            use object_store::ObjectStoreExt;
            for (path, b) in files {
                mem.put(&object_store::path::Path::from(path), b.into()).await.unwrap();
            }
            let tables = ferry::sources::Store::from_object_store(mem.clone(), "", "fuzz");
            let Ok(src) = v1x::V1xSource::from_parts(tables, meta.as_bytes(), "meta.json") else { return None };
            let coll = src.collections()[0].clone();
            let seg = coll.segments[0].clone();
            let _ = src.stored_rows(&seg).await;
            let _ = src.read_rows(&coll, &seg, range.0..range.1).await;
            Some(src.read_segment(&coll, &seg).await)
        });
        // An undamaged segment of a supported metric and dim reads back whole.
        if damage.is_none() && metric <= 4 && (dim == 8 || dim == 16) {
            let rows_read = read.expect("valid meta").map(|r| r.len());
            prop_assert_eq!(rows_read.is_ok(), deleted_ok, "{:?}", rows_read);
        }
        check_allocations()?;
    }

    /// Backup meta (`full_meta.json`, or a level file) of arbitrary bytes, and of a valid
    /// meta with bytes changed: opening the backup fails cleanly or succeeds, never panics.
    #[test]
    fn backup_meta_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        full in any::<bool>(),
        mutate_valid in any::<bool>(),
    ) {
        let body = if mutate_valid {
            let mut b = VALID_META.as_bytes().to_vec();
            damage(&mut b, &edits, None);
            b
        } else {
            bytes
        };
        let mem = std::sync::Arc::new(object_store::memory::InMemory::new());
        block_on(async {
            use object_store::ObjectStoreExt;
            let put = |p: &str, b: Vec<u8>| {
                let mem = mem.clone();
                let p = object_store::path::Path::from(p);
                async move { mem.put(&p, b.into()).await.unwrap() }
            };
            if full {
                put("bk/meta/full_meta.json", body).await;
            } else {
                put("bk/meta/backup_meta.json", b"{\"name\":\"bk\"}".to_vec()).await;
                put("bk/meta/collection_meta.json", body).await;
                put("bk/meta/partition_meta.json", b"{\"infos\":[]}".to_vec()).await;
                put("bk/meta/segment_meta.json", b"{}".to_vec()).await;
            }
            let root = ferry::sources::Store::from_object_store(mem.clone(), "", "fuzz");
            let _ = ferry::sources::BackupSource::open_store(root, Some("bk")).await;
        });
        check_allocations()?;
    }

    #[test]
    fn v1x_mutations_and_truncations(
        rows in 0usize..40,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let vectors: Vec<f32> = (0..rows * 4).map(|i| i as f32).collect();
        let ids: Vec<i64> = (0..rows as i64).collect();
        let deleted: Vec<i32> = (0..rows as i32).step_by(3).collect();
        for mut b in [
            v1x::testdata::rv_bytes_f32(&vectors),
            v1x::testdata::uid_bytes(&ids),
            v1x::testdata::deleted_bytes(&deleted),
        ] {
            if !b.is_empty() {
                for (i, v) in &edits {
                    let i = i.index(b.len());
                    b[i] = *v;
                }
            }
            if truncate {
                b.truncate(cut.index(b.len() + 1));
            }
            let _ = v1x::parse_vectors("fuzz", &b, 4, v1x::VectorKind::Float);
            let _ = v1x::parse_ids("fuzz", &b);
            let _ = v1x::parse_deleted("fuzz", &b, rows);
        }
        check_allocations()?;
    }
}
