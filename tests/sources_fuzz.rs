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
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (f, _) = samples().swap_remove(0);
        let _ = binlog::read_insert_log("fuzz", Bytes::from(bytes.clone()), &f, &limits());
        let _ = binlog::read_delta_log("fuzz", Bytes::from(bytes.clone()), &limits());
        let _ = v1x::parse_vectors("fuzz", &bytes, 8, v1x::VectorKind::Float);
        let _ = v1x::parse_vectors("fuzz", &bytes, 64, v1x::VectorKind::Binary);
        let _ = v1x::parse_ids("fuzz", &bytes);
        let _ = v1x::parse_deleted("fuzz", &bytes, 100);
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
