use super::testdata::{self, SegmentIds};
use super::*;
use crate::milvus::PkValue;
use crate::proto::common::KeyValuePair;
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, BoolArray,
    DoubleArray, FloatArray, IntArray, JsonArray, LongArray, ScalarField, StringArray, VectorField,
};
use proptest::prelude::*;

mod modern;
pub(crate) use modern::{modern_types, sparse_row, MODERN_ROWS};

const IDS: SegmentIds = SegmentIds {
    collection_id: 100,
    partition_id: 101,
    segment_id: 102,
};

pub(crate) fn field(id: i64, name: &str, t: DataType, dim: Option<i64>) -> FieldSchema {
    FieldSchema {
        field_id: id,
        name: name.into(),
        data_type: t as i32,
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

fn scalar(f: &FieldSchema, data: Scalar) -> FieldData {
    FieldData {
        r#type: f.data_type,
        field_name: f.name.clone(),
        field_id: f.field_id,
        field: Some(Field::Scalars(ScalarField { data: Some(data), ..Default::default() })),
        is_dynamic: f.is_dynamic,
        valid_data: Vec::new(),
    }
}

fn vector(f: &FieldSchema, dim: i64, data: Vector) -> FieldData {
    FieldData {
        r#type: f.data_type,
        field_name: f.name.clone(),
        field_id: f.field_id,
        field: Some(Field::Vectors(VectorField {
            dim,
            data: Some(data),
            ..Default::default()
        })),
        is_dynamic: false,
        valid_data: Vec::new(),
    }
}

/// One field of every type Milvus 2.3 stores, with three rows each.
pub(crate) fn every_type() -> Vec<(FieldSchema, FieldData)> {
    let mut out = Vec::new();
    let mut add = |f: FieldSchema, d: Scalar| {
        let c = scalar(&f, d);
        out.push((f, c));
    };
    add(
        field(100, "b", DataType::Bool, None),
        Scalar::BoolData(BoolArray {
            data: vec![true, false, true],
        }),
    );
    add(
        field(101, "i8", DataType::Int8, None),
        Scalar::IntData(IntArray {
            data: vec![-128, 0, 127],
        }),
    );
    add(
        field(102, "i16", DataType::Int16, None),
        Scalar::IntData(IntArray {
            data: vec![-32768, 1, 32767],
        }),
    );
    add(
        field(103, "i32", DataType::Int32, None),
        Scalar::IntData(IntArray {
            data: vec![i32::MIN, 2, i32::MAX],
        }),
    );
    add(
        field(104, "i64", DataType::Int64, None),
        Scalar::LongData(LongArray {
            data: vec![i64::MIN, 3, i64::MAX],
        }),
    );
    add(
        field(105, "f", DataType::Float, None),
        Scalar::FloatData(FloatArray {
            data: vec![-1.5, f32::MIN_POSITIVE, f32::MAX],
        }),
    );
    add(
        field(106, "d", DataType::Double, None),
        Scalar::DoubleData(DoubleArray {
            data: vec![-2.25, 0.0, f64::MAX],
        }),
    );
    add(
        field(107, "s", DataType::VarChar, None),
        Scalar::StringData(StringArray {
            data: vec!["".into(), "héllo".into(), "a,b\"c".into()],
        }),
    );
    add(
        field(108, "j", DataType::Json, None),
        Scalar::JsonData(JsonArray {
            data: vec![b"{}".to_vec(), br#"{"a":[1,2]}"#.to_vec(), b"null".to_vec()],
        }),
    );
    let mut arr = field(109, "arr", DataType::Array, None);
    arr.element_type = DataType::Int64 as i32;
    let long = |v: Vec<i64>| ScalarField {
        data: Some(Scalar::LongData(LongArray { data: v })),
        ..Default::default()
    };
    add(
        arr,
        Scalar::ArrayData(crate::proto::schema::ArrayArray {
            data: vec![long(vec![1, 2]), long(vec![]), long(vec![-7])],
            element_type: DataType::Int64 as i32,
        }),
    );
    let fv = field(110, "fv", DataType::FloatVector, Some(2));
    let c = vector(
        &fv,
        2,
        Vector::FloatVector(FloatArray {
            data: vec![0.5, -0.0, f32::NAN, 1e-38, 3.0, f32::INFINITY],
        }),
    );
    out.push((fv, c));
    let bv = field(111, "bv", DataType::BinaryVector, Some(16));
    let c = vector(&bv, 16, Vector::BinaryVector(vec![1, 2, 3, 4, 0xff, 0]));
    out.push((bv, c));
    out
}

/// Compares columns bit-exactly (NaN floats included).
fn assert_same(a: &FieldData, b: &FieldData) {
    use prost::Message;
    assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "{a:?} != {b:?}");
}

#[test]
fn every_type_round_trips_through_an_insert_log() {
    for (f, col) in every_type() {
        let bytes = testdata::insert_log(&f, &col, IDS, (5, 6)).unwrap();
        let log = parse("t", Bytes::from(bytes.clone())).unwrap();
        assert_eq!(log.descriptor.field_id, f.field_id);
        assert_eq!(log.descriptor.segment_id, 102);
        assert_eq!(
            log.descriptor.post_header_lengths,
            vec![52, 16, 16, 16, 16, 16, 16, 16]
        );
        assert!(log.descriptor.extras.contains_key("original_size"));
        assert_eq!(log.events.len(), 1);
        let back = read_insert_log("t", Bytes::from(bytes), &f, &ReadLimits::default()).unwrap();
        assert_same(&back, &col);
    }
}

#[test]
fn several_events_concatenate_in_order() {
    let f = field(104, "i64", DataType::Int64, None);
    let p = |v: Vec<i64>| {
        testdata::parquet_payload(std::sync::Arc::new(arrow_array::Int64Array::from(v))).unwrap()
    };
    let bytes = testdata::binlog(
        1,
        DataType::Int64 as i32,
        104,
        IDS,
        (1, 2),
        &[p(vec![1, 2]), p(vec![3])],
    );
    let col = read_insert_log("t", Bytes::from(bytes), &f, &ReadLimits::default()).unwrap();
    assert_same(
        &col,
        &scalar(
            &f,
            Scalar::LongData(LongArray {
                data: vec![1, 2, 3],
            }),
        ),
    );
}

#[test]
fn timestamps_and_deletes_read_back() {
    let ts = testdata::timestamps_log(&[7, 8, 9], IDS).unwrap();
    assert_eq!(
        read_timestamps("ts", Bytes::from(ts), &ReadLimits::default()).unwrap(),
        vec![7, 8, 9]
    );
    let records = vec![
        testdata::delete_record(&PkValue::Int(4), 10),
        "5,11".to_string(),
        testdata::delete_record(&PkValue::Int(-6), u64::MAX),
    ];
    let d = testdata::delta_log(&records, IDS, (10, 11)).unwrap();
    let got = read_delta_log("d", Bytes::from(d), &ReadLimits::default()).unwrap();
    assert_eq!(got.pks, crate::milvus::PrimaryKeys::Int(vec![4, 5, -6]));
    assert_eq!(got.ts, vec![10, 11, u64::MAX]);
    let records = vec![testdata::delete_record(&PkValue::Str("k\"1".into()), 3)];
    let d = testdata::delta_log(&records, IDS, (3, 3)).unwrap();
    let got = read_delta_log("d", Bytes::from(d), &ReadLimits::default()).unwrap();
    assert_eq!(
        got.pks,
        crate::milvus::PrimaryKeys::Str(vec!["k\"1".into()])
    );
}

fn valid() -> (FieldSchema, Vec<u8>) {
    let (f, col) = every_type().swap_remove(10);
    let bytes = testdata::insert_log(&f, &col, IDS, (5, 6)).unwrap();
    (f, bytes)
}

fn read(f: &FieldSchema, bytes: Vec<u8>) -> Result<FieldData, BinlogError> {
    read_insert_log(
        "seg/102/110/7",
        Bytes::from(bytes),
        f,
        &ReadLimits::default(),
    )
}

#[test]
fn bad_inputs_name_file_offset_and_problem() {
    let (f, good) = valid();
    let check = |r: Result<FieldData, BinlogError>, want: &str| {
        let e = r.unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("seg/102/110/7: byte "), "{msg}");
        assert!(msg.contains(want), "{msg} lacks {want:?}");
    };

    let mut b = good.clone();
    b[0] = 0;
    check(read(&f, b), "bad magic");
    check(read(&f, good[..3].to_vec()), "truncated magic number");
    check(read(&f, good[..10].to_vec()), "truncated event header");

    // Descriptor event_length beyond the file.
    let mut b = good.clone();
    b[4 + 9..4 + 13].copy_from_slice(&i32::MAX.to_le_bytes());
    check(read(&f, b), "beyond the end of the file");
    // The data event cut short: its event_length no longer fits.
    check(
        read(&f, good[..good.len() - 1].to_vec()),
        "beyond the end of the file",
    );

    // Payload type differs from the schema's.
    let other = field(110, "fv", DataType::Float, None);
    check(
        read(&other, good.clone()),
        "payload holds FloatVector but field \"fv\"",
    );

    // Payload type agrees but the Parquet column is not what that type needs.
    let f32f = field(105, "f", DataType::Float, None);
    let p = testdata::parquet_payload(std::sync::Arc::new(arrow_array::Int64Array::from(vec![1])))
        .unwrap();
    let b = testdata::binlog(1, DataType::Float as i32, 105, IDS, (1, 1), &[p]);
    check(
        read(&f32f, b),
        "payload holds parquet INT64 but field \"f\" (id 105) is Float (parquet FLOAT)",
    );

    // A vector column whose width is not the field's dim: found before any value decodes.
    let fv = field(106, "v", DataType::FloatVector, Some(4));
    let mut w = arrow_array::builder::FixedSizeBinaryBuilder::new(12);
    w.append_value([0u8; 12]).unwrap();
    let p = testdata::parquet_payload(std::sync::Arc::new(w.finish())).unwrap();
    let b = testdata::binlog(1, DataType::FloatVector as i32, 106, IDS, (1, 1), &[p]);
    check(
        read(&fv, b),
        "payload holds parquet FIXED_LEN_BYTE_ARRAY(12) but field \"v\" (id 106) is \
         FloatVector (parquet FIXED_LEN_BYTE_ARRAY(16))",
    );

    // Garbage where the Parquet file should be.
    let b = testdata::binlog(
        1,
        DataType::FloatVector as i32,
        110,
        IDS,
        (1, 1),
        &[vec![7; 40]],
    );
    check(read(&f, b), "parquet payload");

    // A vector width that does not match the schema's dim.
    let wide = field(110, "fv", DataType::FloatVector, Some(3));
    check(
        read(&wide, good.clone()),
        "FloatVector (parquet FIXED_LEN_BYTE_ARRAY(12))",
    );

    // next_position pointing backwards.
    let mut b = good.clone();
    let desc_len = i32::from_le_bytes(b[13..17].try_into().unwrap()) as usize;
    let ev = 4 + desc_len;
    b[ev + 13..ev + 17].copy_from_slice(&5i32.to_le_bytes());
    check(read(&f, b), "does not move forward");

    // Out-of-range small integers.
    let i8f = field(101, "i8", DataType::Int8, None);
    let p = testdata::parquet_payload(std::sync::Arc::new(arrow_array::Int32Array::from(vec![
        1, 300,
    ])))
    .unwrap();
    let b = testdata::binlog(1, DataType::Int8 as i32, 101, IDS, (1, 1), &[p]);
    check(read(&i8f, b), "value 300 at row 1 is out of range for Int8");
}

#[test]
fn delta_errors_name_the_record() {
    let d = testdata::delta_log(&["1,2".into(), "oops".into()], IDS, (1, 1)).unwrap();
    let e = read_delta_log("dl", Bytes::from(d), &ReadLimits::default()).unwrap_err();
    assert!(e.to_string().contains("delete record 1"), "{e}");
    let records = vec![
        testdata::delete_record(&PkValue::Int(1), 1),
        testdata::delete_record(&PkValue::Str("a".into()), 1),
    ];
    let d = testdata::delta_log(&records, IDS, (1, 1)).unwrap();
    let e = read_delta_log("dl", Bytes::from(d), &ReadLimits::default()).unwrap_err();
    assert!(e.to_string().contains("key type differs"), "{e}");
}

#[test]
fn decoded_size_is_bounded() {
    let (f, good) = valid();
    let limits = ReadLimits {
        max_decoded_bytes: 8,
    };
    let e = read_insert_log("t", Bytes::from(good), &f, &limits).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
}

/// A VarChar log whose dictionary holds one `entry`-byte string that all `rows` rows
/// repeat: a few bytes of run-length indices that decode to `rows * entry` bytes.
pub(crate) fn dictionary_bomb(entry: usize, rows: usize) -> (FieldSchema, Vec<u8>) {
    let f = field(101, "s", DataType::VarChar, None);
    let big = "x".repeat(entry);
    let a = arrow_array::StringArray::from(vec![big.as_str(); rows]);
    let p = testdata::parquet_payload(std::sync::Arc::new(a)).unwrap();
    let b = testdata::binlog(1, DataType::VarChar as i32, 101, IDS, (1, 1), &[p]);
    (f, b)
}

#[test]
fn dictionary_expansion_is_refused_before_decoding() {
    // 2000 rows of one 64 KiB string: 128 MiB decoded from a payload of a few KiB.
    let (f, b) = dictionary_bomb(64 << 10, 2000);
    assert!(b.len() < 64 << 10, "{}", b.len());
    let limits = ReadLimits {
        max_decoded_bytes: 16 << 20,
    };
    let e = read_insert_log("t", Bytes::from(b.clone()), &f, &limits).unwrap_err();
    assert!(
        e.to_string().contains("of the decode budget it may use"),
        "{e}"
    );
    // Within a budget that holds it, it reads back.
    let limits = ReadLimits {
        max_decoded_bytes: 1 << 30,
    };
    let need = insert_log_reservation("t", Bytes::from(b.clone()), &f, &limits).unwrap();
    assert!((128 << 20..300 << 20).contains(&need), "{need}");
    let col = read_insert_log("t", Bytes::from(b), &f, &limits).unwrap();
    let Some(Field::Scalars(ScalarField {
        data: Some(Scalar::StringData(a)),
        ..
    })) = col.field
    else {
        panic!("{col:?}")
    };
    assert_eq!(a.data.len(), 2000);
}

#[tokio::test]
async fn budget_waits_while_held_and_refuses_what_never_fits() {
    let budget = DecodeBudget::new(1 << 20);
    assert!(budget.reserve(2 << 20).await.is_none());
    let a = budget.reserve(700 << 10).await.unwrap();
    assert_eq!(budget.available(), 324 << 10);
    let b2 = budget.clone();
    let waiting = tokio::spawn(async move { b2.reserve(500 << 10).await.map(|r| r.bytes()) });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "granted while the budget was held");
    drop(a);
    assert_eq!(waiting.await.unwrap(), Some(500 << 10));
    assert_eq!(budget.available(), 1 << 20);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (f, _) = valid();
        let _ = read(&f, bytes.clone());
        let _ = read_delta_log("x", Bytes::from(bytes), &ReadLimits::default());
    }

    #[test]
    fn mutated_files_never_panic(
        which in 0usize..12 + 16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (f, col) = every_type().into_iter().chain(modern_types()).nth(which).unwrap();
        let writer = if which < 12 { testdata::Writer::V23 } else { testdata::Writer::Stream };
        let mut b = testdata::insert_log_as(writer, &f, &col, IDS, (5, 6)).unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if truncate {
            b.truncate(cut.index(b.len()));
        }
        let limits = ReadLimits { max_decoded_bytes: 1 << 20 };
        let _ = read_insert_log("x", Bytes::from(b), &f, &limits);
    }

    #[test]
    fn every_truncation_is_an_error(cut in any::<prop::sample::Index>()) {
        let (f, good) = valid();
        let cut = cut.index(good.len());
        prop_assert!(read(&f, good[..cut].to_vec()).is_err());
    }
}
