//! Fuzzes the file-source parsers (binlogs, delta logs, Milvus 1.x files) with arbitrary
//! bytes and with mutations and truncations of valid files, under an allocator that records
//! the largest single allocation: the parsers must neither panic nor size an allocation from
//! a corrupt length field.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferry::proto::common::KeyValuePair;
use ferry::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, ArrayArray,
    DataType, FieldData, FieldSchema, FloatArray, JsonArray, LongArray, ScalarField, StringArray,
    VectorField,
};
use ferry::sources::binlog::{self, testdata, ReadLimits};
use ferry::sources::v1x;
use proptest::prelude::*;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Inputs here are at most a few KiB; anything past this came from a length field.
const MAX_ALLOCATION: usize = 64 << 20;

fn limits() -> ReadLimits {
    ReadLimits {
        max_decoded_bytes: 16 << 20,
    }
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
    };
    let s = |d| Field::Scalars(ScalarField { data: Some(d) });
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
    let c = col(
        &f,
        s(Scalar::StringData(StringArray {
            data: (0..64).map(|i| format!("value-{i}")).collect(),
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
        }),
    );
    out.push((f, c));
    out
}

/// Cases per property; `FERRY_FUZZ_CASES` raises it for a longer run.
fn fuzz_cases() -> u32 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn check_allocations() -> Result<(), TestCaseError> {
    let largest = LARGEST.load(Ordering::Relaxed);
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
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn binlog_mutations_and_truncations(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (f, col) = samples().swap_remove(which);
        let mut b = testdata::insert_log(&f, &col, Default::default(), (1, 2)).unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if truncate {
            b.truncate(cut.index(b.len()));
        }
        let _ = binlog::read_insert_log("fuzz", Bytes::from(b.clone()), &f, &limits());
        let _ = binlog::read_delta_log("fuzz", Bytes::from(b), &limits());
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
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        let _ = binlog::read_delta_log("fuzz", Bytes::from(b), &limits());
        check_allocations()?;
    }

    #[test]
    fn arbitrary_bytes(which in 0usize..5, bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
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
            for (i, v) in edits {
                let i = i.index(b.len());
                b[i] = v;
            }
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
