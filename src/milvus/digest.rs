//! Row digests: a 64-bit hash of a row over every field, so two clusters can be compared row
//! by row without moving the rows themselves (verification, tests).

use super::data::{column_rows, is_null, vector_row_width, Rows};
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, FieldData,
};

/// Feeds row `i` of a column into a hasher: the field name, then the value's bytes
/// (vectors bit-exact, floats by their bit patterns, strings and JSON as stored).
fn hash_cell(h: &mut xxhash_rust::xxh3::Xxh3, f: &FieldData, i: usize) {
    h.update(f.field_name.as_bytes());
    if is_null(f, i) {
        // Null is not a value of any type (never the placeholder a server puts in its row).
        h.update(&[0xfe]);
        return;
    }
    h.update(&[0xff]);
    match &f.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Scalar::BoolData(a)) => h.update(&[a.data[i] as u8]),
            Some(Scalar::IntData(a)) => h.update(&a.data[i].to_le_bytes()),
            Some(Scalar::LongData(a)) => h.update(&a.data[i].to_le_bytes()),
            Some(Scalar::FloatData(a)) => h.update(&a.data[i].to_bits().to_le_bytes()),
            Some(Scalar::DoubleData(a)) => h.update(&a.data[i].to_bits().to_le_bytes()),
            Some(Scalar::StringData(a)) => h.update(a.data[i].as_bytes()),
            Some(Scalar::GeometryWktData(a)) => h.update(a.data[i].as_bytes()),
            Some(Scalar::GeometryData(a)) => h.update(&a.data[i]),
            Some(Scalar::TimestamptzData(a)) => h.update(&a.data[i].to_le_bytes()),
            Some(Scalar::BytesData(a)) => h.update(&a.data[i]),
            Some(Scalar::JsonData(a)) => hash_json(h, &a.data[i], f.is_dynamic || f.field_name == "$meta"),
            Some(Scalar::ArrayData(a)) => {
                let cell = FieldData {
                    field: Some(Field::Scalars(a.data[i].clone())),
                    ..Default::default()
                };
                for j in 0..column_rows(&cell) {
                    hash_cell(h, &cell, j);
                }
            }
            None => {}
        },
        Some(Field::Vectors(v)) => {
            let w = vector_row_width(v);
            match &v.data {
                Some(Vector::FloatVector(a)) => {
                    for x in &a.data[i * w..(i + 1) * w] {
                        h.update(&x.to_bits().to_le_bytes());
                    }
                }
                Some(Vector::BinaryVector(b))
                | Some(Vector::Float16Vector(b))
                | Some(Vector::Bfloat16Vector(b))
                | Some(Vector::Int8Vector(b)) => h.update(&b[i * w..(i + 1) * w]),
                Some(Vector::SparseFloatVector(s)) => hash_sparse(h, &s.contents[i]),
                None => {}
            }
        }
        None => {}
    }
}

/// A sparse row by its index/value pairs in index order (servers sort them on insert; a row
/// given out of order is the same vector), each value by its bits.
fn hash_sparse(h: &mut xxhash_rust::xxh3::Xxh3, row: &[u8]) {
    let index = |p: &[u8]| u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    let pairs: Vec<&[u8]> = row.chunks(8).collect();
    if pairs.windows(2).all(|w| w[1].len() < 8 || index(w[0]) <= index(w[1])) {
        h.update(row);
        return;
    }
    let mut sorted = pairs;
    sorted.sort_by_key(|p| if p.len() == 8 { index(p) } else { u32::MAX });
    for p in sorted {
        h.update(p);
    }
}

/// JSON is compared by meaning, not spelling: servers re-serialise documents (Milvus Lite
/// adds spaces and reorders the dynamic field's keys), so keys are sorted and whitespace
/// dropped before hashing. Bytes that are not JSON are hashed as they are.
///
/// In the dynamic field a key holding `null` counts as absent: Milvus Lite returns every
/// dynamic key of a batch on every row of it, `null` where the row had none (written
/// `{"db":false}` beside `{"dn":null}`, read back `{"db":false,"dn":null}`), and a filter
/// cannot tell the two apart either.
fn hash_json(h: &mut xxhash_rust::xxh3::Xxh3, raw: &[u8], dynamic: bool) {
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(mut v) => {
            if let (true, Some(m)) = (dynamic, v.as_object_mut()) {
                m.retain(|_, v| !v.is_null());
            }
            h.update(v.to_string().as_bytes())
        }
        Err(_) => h.update(raw),
    }
}

impl Rows {
    /// A 64-bit digest of row `i` over every column, independent of column order: two rows
    /// have the same digest when every field holds the same bits (JSON: the same document). Panics if `i` is out of
    /// range (a caller bug: `Rows::new` guarantees aligned columns).
    pub fn row_digest(&self, i: usize) -> u64 {
        let mut cols: Vec<&FieldData> = self.columns.iter().collect();
        cols.sort_by(|a, b| a.field_name.cmp(&b.field_name));
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for c in cols {
            hash_cell(&mut h, c, i);
        }
        h.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schema::{FloatArray, LongArray, ScalarField, VectorField};

    #[test]
    fn dynamic_field_nulls_count_as_absent_keys_and_json_by_meaning() {
        let json = |name: &str, dynamic: bool, v: &str| {
            Rows::new(vec![FieldData {
                field_name: name.into(),
                is_dynamic: dynamic,
                field: Some(Field::Scalars(ScalarField {
                    data: Some(Scalar::JsonData(crate::proto::schema::JsonArray { data: vec![v.as_bytes().to_vec()] })),
                    ..Default::default()
                })),
                ..Default::default()
            }])
            .unwrap()
            .row_digest(0)
        };
        assert_eq!(json("$meta", true, r#"{"db":false}"#), json("$meta", true, r#"{"dn": null, "db": false}"#));
        assert_ne!(json("$meta", true, r#"{"db":false}"#), json("$meta", true, r#"{"db":true}"#));
        // In a JSON field a null value is a value.
        assert_ne!(json("j", false, r#"{"a":1}"#), json("j", false, r#"{"a":1,"b":null}"#));
        assert_eq!(json("j", false, r#"{"b":2,"a":1}"#), json("j", false, r#"{ "a": 1, "b": 2 }"#));
    }

    #[test]
    fn digest_sees_every_bit_and_ignores_column_order() {
        let col = |name: &str, v: Vec<f32>| FieldData {
            field_name: name.into(),
            field: Some(Field::Vectors(VectorField {
                dim: 2,
                data: Some(Vector::FloatVector(FloatArray { data: v })),
                ..Default::default()
            })),
            ..Default::default()
        };
        let ids = |v: Vec<i64>| FieldData {
            field_name: "id".into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Scalar::LongData(LongArray { data: v })),
                ..Default::default()
            })),
            ..Default::default()
        };
        let a = Rows::new(vec![ids(vec![1, 2]), col("v", vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
        let b = Rows::new(vec![col("v", vec![1.0, 2.0, 3.0, 4.0]), ids(vec![1, 2])]).unwrap();
        assert_eq!(a.row_digest(0), b.row_digest(0));
        assert_ne!(a.row_digest(0), a.row_digest(1));
        let c = Rows::new(vec![ids(vec![1, 2]), col("v", vec![1.0, f32::from_bits(2.0f32.to_bits() ^ 1), 3.0, 4.0])]).unwrap();
        assert_ne!(a.row_digest(0), c.row_digest(0));
        assert_eq!(a.row_digest(1), c.row_digest(1));
    }

    /// A null row is not its placeholder: `0` stored and null differ, a null differs from
    /// every value, and validity all true is the same as none. Sparse rows by their pairs.
    #[test]
    fn null_is_not_a_value_and_sparse_rows_hash_their_pairs() {
        use crate::proto::schema::{IntArray, SparseFloatArray};
        let ints = |v: Vec<i32>, valid: Vec<bool>| {
            Rows::new(vec![FieldData {
                field_name: "n".into(),
                field: Some(Field::Scalars(ScalarField { data: Some(Scalar::IntData(IntArray { data: v })), ..Default::default() })),
                valid_data: valid,
                ..Default::default()
            }])
            .unwrap()
        };
        let a = ints(vec![0, 5], vec![false, true]);
        let b = ints(vec![0, 5], vec![true, true]);
        let c = ints(vec![9, 5], vec![false, true]);
        assert_ne!(a.row_digest(0), b.row_digest(0), "null vs 0");
        assert_eq!(a.row_digest(0), c.row_digest(0), "the placeholder under a null is not data");
        assert_eq!(b.row_digest(1), ints(vec![0, 5], vec![]).row_digest(1));
        let sp = |rows: Vec<Vec<u8>>| {
            Rows::new(vec![FieldData {
                field_name: "s".into(),
                field: Some(Field::Vectors(VectorField {
                    dim: 0,
                    data: Some(Vector::SparseFloatVector(SparseFloatArray { dim: 0, contents: rows })),
                    ..Default::default()
                })),
                ..Default::default()
            }])
            .unwrap()
        };
        let pair = |i: u32, v: f32| [i.to_le_bytes(), v.to_le_bytes()].concat();
        let x = sp(vec![pair(1, 0.5), [pair(1, 0.5), pair(7, 1.0)].concat()]);
        assert_ne!(x.row_digest(0), x.row_digest(1));
        assert_ne!(x.row_digest(0), sp(vec![pair(1, 0.25)]).row_digest(0));
        assert_eq!(x.row_digest(0), sp(vec![pair(1, 0.5)]).row_digest(0));
        // The same pairs in another order are the same vector.
        assert_eq!(x.row_digest(1), sp(vec![[pair(7, 1.0), pair(1, 0.5)].concat()]).row_digest(0));
        assert_ne!(x.row_digest(1), sp(vec![[pair(7, 0.5), pair(1, 1.0)].concat()]).row_digest(0));
    }
}
