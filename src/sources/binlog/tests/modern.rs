//! The types Milvus 2.4-2.6 added to insert logs (half-precision, int8 and sparse vectors,
//! Geometry, Timestamptz, nullable fields), written as each writer lays them out.

use super::*;
use crate::proto::schema::{ArrayArray, GeometryArray, SparseFloatArray, TimestamptzArray};
use testdata::Writer;

/// Rows of every column below; nullable ones hold null at the first, a middle and the last.
pub(crate) const MODERN_ROWS: usize = 5;
const VALID: [bool; MODERN_ROWS] = [false, true, false, true, false];

/// A sparse row as the gRPC API carries it: little-endian (u32 index, f32 value) pairs.
pub(crate) fn sparse_row(pairs: &[(u32, f32)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(i, v)| i.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect()
}

/// WKB (little-endian) of POINT(x y).
fn wkb_point(x: f64, y: f64) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&x.to_le_bytes());
    b.extend_from_slice(&y.to_le_bytes());
    b
}

fn nullable(mut f: FieldSchema) -> FieldSchema {
    f.nullable = true;
    f
}

fn with_valid(mut c: FieldData, valid: &[bool]) -> FieldData {
    c.valid_data = valid.to_vec();
    c
}

/// One field of each type Milvus 2.4-2.6 added, and nullable fields of the older scalar
/// types, `MODERN_ROWS` rows each: what the reader must return. Nullable columns are
/// row-aligned, the type's zero or empty value in null rows.
pub(crate) fn modern_types() -> Vec<(FieldSchema, FieldData)> {
    let mut out = Vec::new();
    let f16 = field(120, "f16", DataType::Float16Vector, Some(2));
    // 1.0, -2.0, 0.5, 65504 (max), ... as IEEE half-precision little-endian pairs.
    let half: Vec<u8> = [
        0x3c00u16, 0xc000, 0x3800, 0x7bff, 0, 0x8000, 0x7c00, 0x0001, 1, 2,
    ]
    .iter()
    .flat_map(|h| h.to_le_bytes())
    .collect();
    out.push((
        f16.clone(),
        vector(&f16, 2, Vector::Float16Vector(half.clone())),
    ));
    let bf16 = field(121, "bf16", DataType::BFloat16Vector, Some(2));
    let mut brain = half.clone();
    brain.reverse();
    out.push((
        bf16.clone(),
        vector(&bf16, 2, Vector::Bfloat16Vector(brain)),
    ));
    let i8v = field(122, "i8v", DataType::Int8Vector, Some(3));
    let int8s: Vec<u8> = [-128i8, 0, 127, 1, -1, 2, 3, 4, 5, -5, -4, -3, 9, 8, 7]
        .iter()
        .map(|v| *v as u8)
        .collect();
    out.push((i8v.clone(), vector(&i8v, 3, Vector::Int8Vector(int8s))));
    let sp = field(123, "sp", DataType::SparseFloatVector, None);
    let contents = vec![
        sparse_row(&[(3, 0.5), (17, -1.25)]),
        // Milvus accepts a sparse row with no entries.
        Vec::new(),
        sparse_row(&[(1000, 2.0)]),
        sparse_row(&[(0, f32::MIN_POSITIVE)]),
        sparse_row(&[(5, 1.0), (6, 1.0), (7, 1.0)]),
    ];
    // The dim the gRPC API gives a batch of sparse rows: the largest index plus one.
    let sparse = Vector::SparseFloatVector(SparseFloatArray {
        contents,
        dim: 1001,
    });
    out.push((sp.clone(), vector(&sp, 1001, sparse)));
    let geo = field(124, "geo", DataType::Geometry, None);
    let points: Vec<Vec<u8>> = (0..MODERN_ROWS)
        .map(|i| wkb_point(i as f64, -(i as f64) / 2.0))
        .collect();
    out.push((
        geo.clone(),
        scalar(&geo, Scalar::GeometryData(GeometryArray { data: points })),
    ));
    let tz = field(125, "tz", DataType::Timestamptz, None);
    // Microseconds since the epoch, UTC.
    let micros = vec![-1, 0, 1_700_000_000_123_456, i64::MIN, i64::MAX];
    out.push((
        tz.clone(),
        scalar(
            &tz,
            Scalar::TimestamptzData(TimestamptzArray { data: micros }),
        ),
    ));

    let mut add_nullable = |f: FieldSchema, d: Scalar, valid: &[bool]| {
        let f = nullable(f);
        let c = with_valid(scalar(&f, d), valid);
        out.push((f, c));
    };
    add_nullable(
        field(130, "n_i64", DataType::Int64, None),
        Scalar::LongData(LongArray {
            data: vec![0, -7, 0, i64::MAX, 0],
        }),
        &VALID,
    );
    add_nullable(
        field(131, "n_i8", DataType::Int8, None),
        Scalar::IntData(IntArray {
            data: vec![0, -128, 0, 127, 0],
        }),
        &VALID,
    );
    add_nullable(
        field(132, "n_b", DataType::Bool, None),
        Scalar::BoolData(BoolArray {
            data: vec![false, true, false, true, false],
        }),
        &VALID,
    );
    add_nullable(
        field(133, "n_f", DataType::Float, None),
        Scalar::FloatData(FloatArray {
            data: vec![0.0, -1.5, 0.0, f32::MAX, 0.0],
        }),
        &VALID,
    );
    add_nullable(
        field(134, "n_s", DataType::VarChar, None),
        Scalar::StringData(StringArray {
            data: vec!["".into(), "a".into(), "".into(), "".into(), "".into()],
        }),
        &VALID,
    );
    add_nullable(
        field(135, "n_j", DataType::Json, None),
        Scalar::JsonData(JsonArray {
            data: vec![
                vec![],
                br#"{"k":1}"#.to_vec(),
                vec![],
                b"null".to_vec(),
                vec![],
            ],
        }),
        &VALID,
    );
    let mut arr = field(136, "n_arr", DataType::Array, None);
    arr.element_type = DataType::VarChar as i32;
    let strings = |v: &[&str]| ScalarField {
        data: Some(Scalar::StringData(StringArray {
            data: v.iter().map(|s| s.to_string()).collect(),
        })),
        ..Default::default()
    };
    add_nullable(
        arr,
        Scalar::ArrayData(ArrayArray {
            data: vec![
                ScalarField::default(),
                strings(&["x", "y"]),
                ScalarField::default(),
                strings(&[]),
                ScalarField::default(),
            ],
            element_type: DataType::VarChar as i32,
        }),
        &VALID,
    );
    add_nullable(
        field(137, "n_geo", DataType::Geometry, None),
        Scalar::GeometryData(GeometryArray {
            data: vec![
                vec![],
                wkb_point(1.0, 2.0),
                vec![],
                wkb_point(0.0, 0.0),
                vec![],
            ],
        }),
        &VALID,
    );
    add_nullable(
        field(138, "n_tz", DataType::Timestamptz, None),
        Scalar::TimestamptzData(TimestamptzArray {
            data: vec![0, 42, 0, -42, 0],
        }),
        &VALID,
    );
    // Nullable, every row holding a value: still one validity entry a row.
    add_nullable(
        field(139, "n_d", DataType::Double, None),
        Scalar::DoubleData(DoubleArray {
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        }),
        &[true; MODERN_ROWS],
    );
    out
}

fn read_as(f: &FieldSchema, bytes: Vec<u8>) -> Result<FieldData, BinlogError> {
    read_insert_log(
        "seg/102/130/7",
        Bytes::from(bytes),
        f,
        &ReadLimits::default(),
    )
}

#[test]
fn modern_types_read_back_as_each_writer_writes_them() {
    for writer in [Writer::V24, Writer::Stream] {
        for (f, col) in modern_types() {
            let bytes = testdata::insert_log_as(writer, &f, &col, IDS, (5, 6)).unwrap();
            let log = parse("t", Bytes::from(bytes.clone())).unwrap();
            assert_eq!(
                log.descriptor.extras.get("nullable"),
                Some(&serde_json::Value::Bool(f.nullable)),
                "{writer:?} {}",
                f.name
            );
            assert_eq!(log.events.len(), 1);
            let back = read_as(&f, bytes).unwrap_or_else(|e| panic!("{writer:?} {}: {e}", f.name));
            assert_same(&back, &col);
        }
    }
}

#[test]
fn stream_writer_framing_is_read() {
    // BinlogStreamWriter leaves the data event's next_position at -1 and its timestamps at 1.
    let (f, col) = modern_types().swap_remove(0);
    let bytes = testdata::insert_log_as(Writer::Stream, &f, &col, IDS, (5, 6)).unwrap();
    let desc_len = i32::from_le_bytes(bytes[13..17].try_into().unwrap()) as usize;
    let ev = 4 + desc_len;
    assert_eq!(
        i32::from_le_bytes(bytes[ev + 13..ev + 17].try_into().unwrap()),
        -1
    );
    let log = parse("t", Bytes::from(bytes)).unwrap();
    assert_eq!((log.events[0].start_ts, log.events[0].end_ts), (1, 1));
    assert_eq!(log.events[0].offset, ev);
}

#[test]
fn nulls_read_as_placeholders_with_valid_data() {
    // The values in null rows never reach the file: whatever the writer held there, the
    // reader gives the type's zero and marks the row invalid.
    let (f, expected) = modern_types()
        .into_iter()
        .find(|(f, _)| f.name == "n_i64")
        .unwrap();
    let mut written = expected.clone();
    if let Some(Field::Scalars(ScalarField {
        data: Some(Scalar::LongData(a)),
        ..
    })) = &mut written.field
    {
        a.data = vec![11, -7, 22, i64::MAX, 33];
    }
    let bytes = testdata::insert_log_as(Writer::V24, &f, &written, IDS, (5, 6)).unwrap();
    let back = read_as(&f, bytes).unwrap();
    assert_eq!(back.valid_data, vec![false, true, false, true, false]);
    assert_same(&back, &expected);
}

#[test]
fn a_null_where_the_schema_allows_none_is_refused() {
    let (f, col) = modern_types()
        .into_iter()
        .find(|(f, _)| f.name == "n_s")
        .unwrap();
    let bytes = testdata::insert_log_as(Writer::V24, &f, &col, IDS, (5, 6)).unwrap();
    let mut strict = f.clone();
    strict.nullable = false;
    let e = read_as(&strict, bytes).unwrap_err().to_string();
    assert!(e.starts_with("seg/102/130/7: byte "), "{e}");
    assert!(
        e.contains("row 0: null in field \"n_s\", which the schema does not mark nullable"),
        "{e}"
    );
}

#[test]
fn wrong_payloads_for_modern_types_name_the_problem() {
    let check = |r: Result<FieldData, BinlogError>, want: &str| {
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("seg/102/130/7: byte "), "{e}");
        assert!(e.contains(want), "{e} lacks {want:?}");
    };
    let log = |f: &FieldSchema, array: arrow_array::ArrayRef| {
        let p = testdata::parquet_payload(array).unwrap();
        testdata::binlog(1, f.data_type, f.field_id, IDS, (1, 1), &[p])
    };

    // Timestamptz as the import path's ISO strings instead of int64 microseconds.
    let tz = field(125, "tz", DataType::Timestamptz, None);
    let b = log(
        &tz,
        std::sync::Arc::new(arrow_array::StringArray::from(vec!["2024-01-01T00:00:00Z"])),
    );
    check(
        read_as(&tz, b),
        "payload holds parquet BYTE_ARRAY but field \"tz\" (id 125) is Timestamptz (parquet INT64)",
    );

    // Geometry as WKT text is still bytes; as numbers it is not.
    let geo = field(124, "geo", DataType::Geometry, None);
    let b = log(
        &geo,
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1])),
    );
    check(read_as(&geo, b), "is Geometry (parquet BYTE_ARRAY)");

    // An int8 vector of dim 3 takes 3 bytes a row.
    let i8v = field(122, "i8v", DataType::Int8Vector, Some(3));
    let mut w = arrow_array::builder::FixedSizeBinaryBuilder::new(4);
    w.append_value([1u8, 2, 3, 4]).unwrap();
    let b = log(&i8v, std::sync::Arc::new(w.finish()));
    check(
        read_as(&i8v, b),
        "payload holds parquet FIXED_LEN_BYTE_ARRAY(4) but field \"i8v\" (id 122) is \
         Int8Vector (parquet FIXED_LEN_BYTE_ARRAY(3))",
    );

    // A sparse row must be whole (index, value) pairs.
    let sp = field(123, "sp", DataType::SparseFloatVector, None);
    let rows = [sparse_row(&[(1, 1.0)]), vec![0u8; 12]];
    let b = log(
        &sp,
        std::sync::Arc::new(arrow_array::BinaryArray::from_iter_values(rows.iter())),
    );
    check(
        read_as(&sp, b),
        "row 1: a sparse vector of 12 bytes is not whole (u32 index, f32 value) pairs",
    );
    // A sparse vector stored as a dense one.
    let mut w = arrow_array::builder::FixedSizeBinaryBuilder::new(8);
    w.append_value([0u8; 8]).unwrap();
    let b = log(&sp, std::sync::Arc::new(w.finish()));
    check(
        read_as(&sp, b),
        "payload holds parquet FIXED_LEN_BYTE_ARRAY(8) but field \"sp\" (id 123) is \
         SparseFloatVector (parquet BYTE_ARRAY)",
    );
}

#[test]
fn nullable_vectors_and_encrypted_binlogs_are_refused() {
    let (mut sp, col) = modern_types().swap_remove(3);
    let bytes = testdata::insert_log_as(Writer::Stream, &sp, &col, IDS, (5, 6)).unwrap();
    sp.nullable = true;
    let e = read_as(&sp, bytes).unwrap_err().to_string();
    assert!(
        e.contains("field \"sp\" is a nullable SparseFloatVector, which ferry cannot read"),
        "{e}"
    );

    // A 2.6 encryption zone: the descriptor names the key, the rest is ciphertext.
    let (f, col) = modern_types().swap_remove(0);
    let p = testdata::parquet_payload(testdata::column_to_arrow(&f, &col).unwrap()).unwrap();
    let extras = r#"{"edek":"c2VjcmV0","encryption_zone":7,"nullable":false,"original_size":"9"}"#;
    let b = testdata::frame(1, f.data_type, f.field_id, IDS, (1, 1), &[p], extras, true);
    let e = read_as(&f, b).unwrap_err().to_string();
    assert!(e.contains("the binlog is encrypted"), "{e}");
}
