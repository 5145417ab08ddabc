//! Test collections that use every Milvus 2.3 type, and deterministic rows for them.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ferry::milvus::{KeyPager, MilvusClient, PkValue, Rows};
use ferry::proto::common::KeyValuePair;
use ferry::proto::schema::{
    field_data::Field, scalar_field::Data as S, vector_field::Data as V, ArrayArray, BoolArray,
    CollectionSchema, DataType, DoubleArray, FieldData, FieldSchema, FloatArray, IntArray,
    JsonArray, LongArray, ScalarField, StringArray, VectorField,
};

pub const DIM: usize = 8;
pub const BIN_DIM: usize = 16;

fn kv(k: &str, v: &str) -> KeyValuePair {
    KeyValuePair {
        key: k.into(),
        value: v.into(),
    }
}

fn field(name: &str, t: DataType, params: &[(&str, &str)]) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        data_type: t as i32,
        type_params: params.iter().map(|(k, v)| kv(k, v)).collect(),
        description: format!("{name} field"),
        ..Default::default()
    }
}

/// Options of the all-types collection.
#[derive(Clone, Copy, Default)]
pub struct Shape {
    pub varchar_pk: bool,
    pub auto_id: bool,
    pub partition_key: bool,
    /// Milvus 2.3 allows one vector field: `v` is a BinaryVector(16) instead of FloatVector(8).
    pub binary_vector: bool,
}

/// A schema with every 2.3 type, a dynamic field, and an Int64 or VarChar key.
pub fn all_types_schema(name: &str, shape: Shape) -> CollectionSchema {
    let mut pk = if shape.varchar_pk {
        field("pk", DataType::VarChar, &[("max_length", "64")])
    } else {
        field("pk", DataType::Int64, &[])
    };
    pk.is_primary_key = true;
    pk.auto_id = shape.auto_id;
    let mut arr = field("arr", DataType::Array, &[("max_capacity", "8")]);
    arr.element_type = DataType::Int64 as i32;
    let mut arr_s = field(
        "arr_s",
        DataType::Array,
        &[("max_capacity", "4"), ("max_length", "16")],
    );
    arr_s.element_type = DataType::VarChar as i32;
    let i32f = field("i32", DataType::Int32, &[]);
    let mut i64f = field("i64", DataType::Int64, &[]);
    i64f.is_partition_key = shape.partition_key;
    CollectionSchema {
        name: name.into(),
        description: "every type".into(),
        fields: vec![
            pk,
            field("b", DataType::Bool, &[]),
            field("i8", DataType::Int8, &[]),
            field("i16", DataType::Int16, &[]),
            i32f,
            i64f,
            field("f", DataType::Float, &[]),
            field("d", DataType::Double, &[]),
            field("s", DataType::VarChar, &[("max_length", "128")]),
            field("j", DataType::Json, &[]),
            arr,
            arr_s,
            if shape.binary_vector {
                field("v", DataType::BinaryVector, &[("dim", "16")])
            } else {
                field("v", DataType::FloatVector, &[("dim", "8")])
            },
        ],
        enable_dynamic_field: true,
        ..Default::default()
    }
}

fn scalar(name: &str, t: DataType, d: S) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField { data: Some(d), ..Default::default() })),
        ..Default::default()
    }
}

/// The primary key value of row `i`. Int64 keys are mostly negative, with `i64::MIN` and
/// `i64::MAX - 1` among them (Milvus 2.3.5 stores and counts a row keyed `i64::MAX` but no
/// query returns it, not even `pk > 0`: ferry cannot read such a row by query, see the README's
/// Limitations); VarChar keys carry quotes, backslashes, spaces, control characters
/// and multi-byte UTF-8 (every key holds `i`, so keys stay distinct).
pub fn key(shape: Shape, i: i64) -> PkValue {
    if shape.varchar_pk {
        PkValue::Str(match i.rem_euclid(4) {
            0 => format!("k\"{i:08}\\é"),
            1 => format!(" {i} 'single' \"double\" \\\\ "),
            2 => format!("日本語-{i}-🚀\t\n"),
            _ => format!("{i:08}"),
        })
    } else {
        PkValue::Int(match i {
            7 => i64::MIN,
            11 => i64::MAX - 1,
            _ => i * 3 - 1000,
        })
    }
}

/// Which edge value row `i` (at `version`) carries: the corpus of shapes users' data has
/// and fixtures tend to miss (issue 14), spread over the rows so every test that writes
/// rows through any path also moves them.
fn edge(i: i64, version: i64) -> i64 {
    (i + version).rem_euclid(12)
}

/// The `j` (JSON) field for edge case `e`: every JSON kind as a value (Milvus 2.3.5 takes only
/// objects at the top level of a JSON field: "cannot unmarshal array into Go value of type
/// map[string]interface {}"), the empty object, escapes, unicode and odd keys, deep nesting,
/// numbers past f64 precision and at the ends of every range.
fn json_value(e: i64, n: i64) -> Vec<u8> {
    match e {
        0 => r#"{"v":null}"#.into(),
        1 => "{}".into(),
        2 => r#"{"v":[],"o":{}}"#.into(),
        3 => r#"{"a":{"b":{"c":{"d":{"e":[[[{"f":[1,[2,[3]]]}]]]}}}}}"#.into(),
        4 => format!(r#"{{"big":9007199254740993,"neg":-9223372036854775808,"f":-1.5e300,"tiny":5e-324,"n":{n}}}"#),
        5 => format!(r#"{{"esc":"q\"uote \\ back\/slash \n\t\u0001 \u00e9 ü 日本 🚀","n":{n}}}"#),
        6 => r#"{"s":"just a string","t":true,"f":false}"#.into(),
        7 => r#"{"z":-0.0,"e":1E+2}"#.into(),
        8 => format!(r#"{{"mixed":[1,"two",null,true,{{"k":[]}},{n}]}}"#),
        9 => format!(r#"{{"":"empty key","k with space":1,"ключ":"значение","q\"k":"\\","n":{n}}}"#),
        _ => format!("{{\"i\":{n},\"tag\":\"t{}\"}}", n % 5),
    }
    .into_bytes()
}

/// The dynamic field (`$meta`) of row `i`: every JSON kind under dynamic keys, and rows with
/// no dynamic key at all.
fn meta_value(e: i64, n: i64) -> Vec<u8> {
    match e {
        0 | 6 => "{}".into(),
        1 => r#"{"dn":null}"#.into(),
        2 => r#"{"db":false,"da":[]}"#.into(),
        3 => format!(r#"{{"dnum":-1.5e300,"dint":{n},"dneg":-9007199254740993}}"#),
        4 => r#"{"ds":"q\"\\ ü 🚀 \n","dobj":{"x":{},"y":[null]}}"#.into(),
        _ => format!("{{\"dyn\":{n},\"color\":\"c{}\"}}", n % 3),
    }
    .into_bytes()
}

/// Rows for ids `ids`; `version` changes every non-key value (for upserts).
pub fn rows(shape: Shape, ids: &[i64], version: i64) -> Rows {
    let n = |i: &i64| i + version * 1_000_003;
    let mut cols = Vec::new();
    if !shape.auto_id {
        cols.push(if shape.varchar_pk {
            scalar(
                "pk",
                DataType::VarChar,
                S::StringData(StringArray {
                    data: ids
                        .iter()
                        .map(|&i| match key(shape, i) {
                            PkValue::Str(s) => s,
                            PkValue::Int(_) => unreachable!(),
                        })
                        .collect(),
                }),
            )
        } else {
            scalar(
                "pk",
                DataType::Int64,
                S::LongData(LongArray {
                    data: ids
                        .iter()
                        .map(|&i| match key(shape, i) {
                            PkValue::Int(k) => k,
                            PkValue::Str(_) => unreachable!(),
                        })
                        .collect(),
                }),
            )
        });
    }
    let e = |i: &i64| edge(*i, version);
    cols.push(scalar(
        "b",
        DataType::Bool,
        S::BoolData(BoolArray {
            data: ids.iter().map(|i| n(i) % 2 == 0).collect(),
        }),
    ));
    // Integers at both ends of their range on some rows.
    let int = |i: &i64, lo: i32, hi: i32, v: i32| match e(i) {
        1 => lo,
        2 => hi,
        3 => 0,
        _ => v,
    };
    cols.push(scalar(
        "i8",
        DataType::Int8,
        S::IntData(IntArray {
            data: ids.iter().map(|i| int(i, -128, 127, (n(i) % 100) as i32 - 50)).collect(),
        }),
    ));
    cols.push(scalar(
        "i16",
        DataType::Int16,
        S::IntData(IntArray {
            data: ids.iter().map(|i| int(i, -32768, 32767, (n(i) % 3000) as i32 - 1500)).collect(),
        }),
    ));
    cols.push(scalar(
        "i32",
        DataType::Int32,
        S::IntData(IntArray {
            data: ids.iter().map(|i| int(i, i32::MIN, i32::MAX, (n(i) * 7 % 1_000_000) as i32)).collect(),
        }),
    ));
    cols.push(scalar(
        "i64",
        DataType::Int64,
        S::LongData(LongArray {
            data: ids
                .iter()
                .map(|i| match e(i) {
                    1 => i64::MIN,
                    2 => i64::MAX,
                    _ => n(i) * 1_000_000_007,
                })
                .collect(),
        }),
    ));
    // Floats: -0.0, subnormals, the extremes, the smallest normal.
    cols.push(scalar(
        "f",
        DataType::Float,
        S::FloatData(FloatArray {
            data: ids
                .iter()
                .map(|i| match e(i) {
                    4 => -0.0,
                    5 => f32::from_bits(1),
                    6 => f32::MAX,
                    7 => f32::MIN,
                    8 => f32::MIN_POSITIVE,
                    _ => n(i) as f32 * 0.37,
                })
                .collect(),
        }),
    ));
    cols.push(scalar(
        "d",
        DataType::Double,
        S::DoubleData(DoubleArray {
            data: ids
                .iter()
                .map(|i| match e(i) {
                    4 => -0.0,
                    5 => f64::from_bits(1),
                    6 => f64::MAX,
                    7 => f64::MIN,
                    8 => -f64::MIN_POSITIVE,
                    _ => n(i) as f64 / 3.0,
                })
                .collect(),
        }),
    ));
    // Strings: empty, exactly max_length (128) bytes of multi-byte UTF-8, quotes and escapes.
    cols.push(scalar(
        "s",
        DataType::VarChar,
        S::StringData(StringArray {
            data: ids
                .iter()
                .map(|i| match e(i) {
                    0 => String::new(),
                    1 => format!("{}{}", "🚀".repeat(31), "é".repeat(2)),
                    2 => format!("'\"\\\n\t\u{1} {}", n(i)),
                    3 => " ".into(),
                    _ => format!("row {} \"quoted\" ünïcode", n(i)),
                })
                .collect(),
        }),
    ));
    cols.push(scalar(
        "j",
        DataType::Json,
        S::JsonData(JsonArray {
            data: ids.iter().map(|i| json_value(e(i), n(i))).collect(),
        }),
    ));
    // Arrays: empty, at max_capacity (8 and 4), elements at the ends of their range.
    cols.push(scalar(
        "arr",
        DataType::Array,
        S::ArrayData(ArrayArray {
            data: ids
                .iter()
                .map(|i| ScalarField {
                    data: Some(S::LongData(LongArray {
                        data: match e(i) {
                            0 | 5 => vec![],
                            1 => vec![i64::MIN, i64::MAX, 0, -1, 1, n(i), -n(i), 42],
                            _ => vec![n(i), n(i) + 1, -n(i)],
                        },
                    })),
                    ..Default::default()
                })
                .collect(),
            element_type: DataType::Int64 as i32,
        }),
    ));
    cols.push(scalar(
        "arr_s",
        DataType::Array,
        S::ArrayData(ArrayArray {
            data: ids
                .iter()
                .map(|i| ScalarField {
                    data: Some(S::StringData(StringArray {
                        data: match e(i) {
                            0 | 3 => vec![],
                            1 => vec!["é".repeat(8), "🚀".repeat(4), String::new(), "\"\\'".into()],
                            2 => vec![String::new()],
                            _ => vec![format!("a{}", n(i) % 1000), "b".into()],
                        },
                    })),
                    ..Default::default()
                })
                .collect(),
            element_type: DataType::VarChar as i32,
        }),
    ));
    cols.push(if shape.binary_vector {
        FieldData {
            r#type: DataType::BinaryVector as i32,
            field_name: "v".into(),
            field: Some(Field::Vectors(VectorField {
                dim: BIN_DIM as i64,
                data: Some(V::BinaryVector(
                    ids.iter()
                        .flat_map(|i| match e(i) {
                            0 => [0u8, 0u8],
                            1 => [0xff, 0xff],
                            _ => [(n(i) & 0xff) as u8, ((n(i) >> 8) & 0xff) as u8],
                        })
                        .collect(),
                )),
                ..Default::default()
            })),
            ..Default::default()
        }
    } else {
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "v".into(),
            field: Some(Field::Vectors(VectorField {
                dim: DIM as i64,
                data: Some(V::FloatVector(FloatArray {
                    data: ids
                        .iter()
                        .flat_map(|i| {
                            let (i, e) = (*i, e(i));
                            (0..DIM).map(move |k| match (e, k) {
                                (4, _) => -0.0,
                                (5, 0) => f32::from_bits(1),
                                (6, 1) => 1e30,
                                _ => (n(&i) as f32).sin() * (k as f32 + 1.0) / 7.0,
                            })
                        })
                        .collect(),
                })),
                ..Default::default()
            })),
            ..Default::default()
        }
    });
    let mut meta = scalar(
        "$meta",
        DataType::Json,
        S::JsonData(JsonArray {
            data: ids.iter().map(|i| meta_value(e(i), n(i))).collect(),
        }),
    );
    meta.is_dynamic = true;
    cols.push(meta);
    Rows::new(cols).expect("test rows are aligned")
}

/// Every field name to read back (user fields and the dynamic field).
pub fn output_fields(schema: &CollectionSchema) -> Vec<String> {
    let mut f: Vec<String> = schema
        .fields
        .iter()
        .filter(|f| !f.is_dynamic)
        .map(|f| f.name.clone())
        .collect();
    if schema.enable_dynamic_field {
        f.push("$meta".into());
    }
    f
}

/// Every row of a collection as key -> digest of all its fields, read in key order.
pub async fn dump(
    client: &MilvusClient,
    collection: &str,
    pk: &str,
    fields: Vec<String>,
) -> BTreeMap<PkValue, u64> {
    try_dump(client, collection, pk, fields).await.expect("scan")
}

/// [`dump`], or why a query failed (a server just restarted may time out).
pub async fn try_dump(
    client: &MilvusClient,
    collection: &str,
    pk: &str,
    fields: Vec<String>,
) -> Result<BTreeMap<PkValue, u64>, String> {
    let mut pager = KeyPager::new(collection, pk, fields);
    pager.page_rows = 16384;
    let mut out = BTreeMap::new();
    while let Some(page) = pager.next_page(client).await.map_err(|e| e.to_string())? {
        let keys = page.primary_keys(pk).expect("pk column");
        for i in 0..page.len() {
            out.insert(keys.get(i).unwrap(), page.row_digest(i));
        }
    }
    Ok(out)
}

/// [`dump`] partition by partition: a key in two partitions is two rows.
pub async fn dump_partitions(
    client: &MilvusClient,
    collection: &str,
    pk: &str,
    fields: Vec<String>,
) -> BTreeMap<(String, PkValue), u64> {
    let mut out = BTreeMap::new();
    for (partition, _) in client.list_partitions(collection).await.expect("list partitions") {
        let mut pager = KeyPager::new(collection, pk, fields.clone());
        pager.page_rows = 16384;
        pager.partitions = vec![partition.clone()];
        while let Some(page) = pager.next_page(client).await.expect("scan") {
            let keys = page.primary_keys(pk).expect("pk column");
            for i in 0..page.len() {
                out.insert((partition.clone(), keys.get(i).unwrap()), page.row_digest(i));
            }
        }
    }
    out
}

/// Asserts two dumps are equal, listing the first differences.
pub fn assert_same(source: &BTreeMap<PkValue, u64>, target: &BTreeMap<PkValue, u64>) {
    let missing: Vec<_> = source
        .keys()
        .filter(|k| !target.contains_key(k))
        .take(5)
        .collect();
    let extra: Vec<_> = target
        .keys()
        .filter(|k| !source.contains_key(k))
        .take(5)
        .collect();
    let differ: Vec<_> = source
        .iter()
        .filter(|(k, v)| target.get(k).is_some_and(|t| t != *v))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "source ({} rows) and target ({} rows) differ: missing {missing:?}, extra {extra:?}, different {differ:?}",
        source.len(),
        target.len()
    );
}

/// Names of the fields whose values differ between row `i` of `a` and row `j` of `b`.
pub fn differing_fields(a: &Rows, i: usize, b: &Rows, j: usize) -> Vec<String> {
    let mut out = Vec::new();
    for ca in &a.columns {
        let one = |r: &Rows, c: &FieldData, k: usize| {
            Rows {
                columns: vec![c.clone()],
                num_rows: r.num_rows,
            }
            .row_digest(k)
        };
        match b.column(&ca.field_name) {
            Some(cb) if one(a, ca, i) == one(b, cb, j) => {}
            Some(cb) => out.push(format!(
                "{}: {:?} vs {:?}",
                ca.field_name,
                Rows {
                    columns: vec![ca.clone()],
                    num_rows: a.num_rows
                }
                .select(&[i])
                .columns[0]
                    .field,
                Rows {
                    columns: vec![cb.clone()],
                    num_rows: b.num_rows
                }
                .select(&[j])
                .columns[0]
                    .field
            )),
            None => out.push(format!("{}: missing", ca.field_name)),
        }
    }
    out
}
