//! The one normalisation step every row batch passes before it is written to a target.
//!
//! Servers hand back columns in shapes their own write path does not accept, and files carry
//! what their writer left: Milvus 2.3.5 returns an empty array element as a `ScalarField`
//! with no `data` at all, a serialised empty array in a binlog decodes the same way, and
//! some servers leave `ArrayArray.element_type` unset. Milvus 2.3.5's proxy dereferences that
//! missing `data` while it validates an insert and dies with SIGSEGV (issue 14), so such a
//! batch must never reach a target as it came.
//!
//! [`canonicalize`] rewrites a batch, against the target collection's schema, into what the
//! target's own SDK (pymilvus) would send:
//!
//! - every column carries its schema `type`; the dynamic field (`$meta`) is marked
//!   `is_dynamic`;
//! - an array column carries its `element_type`, and every element holds the typed list of
//!   that element type (an empty array is an empty typed list, never a missing one);
//! - a row of the dynamic field that holds no bytes is `{}` (no dynamic keys);
//! - a nullable column carries values for its valid rows only, beside a validity entry for
//!   every row (Milvus refuses a value in a null row); a column of a field that is neither
//!   nullable nor has a default carries no validity entries when every row is valid;
//! - a function's output column (a BM25 sparse vector, an embedding) is dropped: the target
//!   computes it from the function's input fields, and refuses it given.
//!
//! Values are never changed: a canonical batch has the same row digests
//! ([`Rows::row_digest`] hashes a missing and an empty list alike), except that a dynamic-field
//! row holding no bytes becomes `{}`, which is what such a row means.

use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, BoolArray, CollectionSchema, DataType, DoubleArray,
    FieldData, FloatArray, IntArray, LongArray, ScalarField, StringArray,
};

use super::data::{compact_nulls, Rows};

/// Name Milvus gives the dynamic field's column.
const DYNAMIC_FIELD: &str = "$meta";

/// Rewrites `rows` in place into the canonical shape for a collection of `schema`.
/// Columns the schema does not name are left as they are (the server then says which).
pub fn canonicalize(rows: &mut Rows, schema: &CollectionSchema) {
    rows.columns.retain(|c| !schema.fields.iter().any(|f| f.name == c.field_name && f.is_function_output));
    for col in &mut rows.columns {
        let field = schema.fields.iter().find(|f| f.name == col.field_name);
        let dynamic = col.field_name == DYNAMIC_FIELD || field.is_some_and(|f| f.is_dynamic);
        if dynamic && schema.enable_dynamic_field {
            col.is_dynamic = true;
            if col.r#type == 0 {
                col.r#type = DataType::Json as i32;
            }
            fill_empty_json(col);
            continue;
        }
        let Some(field) = field else { continue };
        if col.r#type == 0 {
            col.r#type = field.data_type;
        }
        if field.data_type == DataType::Array as i32 {
            let elem = DataType::try_from(field.element_type).unwrap_or(DataType::None);
            canonical_array(col, elem);
        }
        if field.nullable || field.default_value.is_some() {
            if col.valid_data.is_empty() && field.nullable {
                col.valid_data = vec![true; rows.num_rows];
            }
            compact_nulls(col);
        } else if col.valid_data.iter().all(|v| *v) {
            col.valid_data.clear();
        }
    }
}

/// `{}` for dynamic-field rows that hold no bytes (a row without dynamic keys).
fn fill_empty_json(col: &mut FieldData) {
    if let Some(Field::Scalars(ScalarField { data: Some(Scalar::JsonData(j)), .. })) = &mut col.field {
        for v in j.data.iter_mut().filter(|v| v.is_empty()) {
            *v = b"{}".to_vec();
        }
    }
}

fn canonical_array(col: &mut FieldData, elem: DataType) {
    let Some(Field::Scalars(ScalarField { data: Some(Scalar::ArrayData(arr)), .. })) = &mut col.field else {
        return;
    };
    if elem != DataType::None {
        arr.element_type = elem as i32;
    }
    let elem = DataType::try_from(arr.element_type).unwrap_or(DataType::None);
    for row in &mut arr.data {
        if row.data.is_none() {
            row.data = empty_list(elem);
        }
    }
}

/// The empty typed list of an array element type (what pymilvus sends for `[]`).
fn empty_list(elem: DataType) -> Option<Scalar> {
    Some(match elem {
        DataType::Bool => Scalar::BoolData(BoolArray::default()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => Scalar::IntData(IntArray::default()),
        DataType::Int64 => Scalar::LongData(LongArray::default()),
        DataType::Float => Scalar::FloatData(FloatArray::default()),
        DataType::Double => Scalar::DoubleData(DoubleArray::default()),
        DataType::VarChar | DataType::String => Scalar::StringData(StringArray::default()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schema::{ArrayArray, FieldSchema, JsonArray};

    fn array_field(name: &str, elem: DataType) -> FieldSchema {
        FieldSchema {
            name: name.into(),
            data_type: DataType::Array as i32,
            element_type: elem as i32,
            ..Default::default()
        }
    }

    fn array_column(name: &str, element_type: i32, rows: Vec<Option<Scalar>>) -> FieldData {
        FieldData {
            r#type: DataType::Array as i32,
            field_name: name.into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Scalar::ArrayData(ArrayArray {
                    data: rows.into_iter().map(|data| ScalarField { data, ..Default::default() }).collect(),
                    element_type,
                })),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn elements(col: &FieldData) -> &ArrayArray {
        match &col.field {
            Some(Field::Scalars(ScalarField { data: Some(Scalar::ArrayData(a)), .. })) => a,
            other => panic!("not an array column: {other:?}"),
        }
    }

    /// What Milvus 2.3.5 returns for `[]` (no `data`, and here no element type either) becomes
    /// the typed empty list of the schema's element type, for every element type; full
    /// elements are untouched, and the row digests do not change.
    #[test]
    fn empty_array_elements_become_typed_empty_lists() {
        let cases = [
            (DataType::Bool, Scalar::BoolData(BoolArray { data: vec![true] })),
            (DataType::Int8, Scalar::IntData(IntArray { data: vec![-128, 127] })),
            (DataType::Int16, Scalar::IntData(IntArray { data: vec![7] })),
            (DataType::Int32, Scalar::IntData(IntArray { data: vec![i32::MIN] })),
            (DataType::Int64, Scalar::LongData(LongArray { data: vec![i64::MAX] })),
            (DataType::Float, Scalar::FloatData(FloatArray { data: vec![-0.0] })),
            (DataType::Double, Scalar::DoubleData(DoubleArray { data: vec![f64::MIN_POSITIVE] })),
            (DataType::VarChar, Scalar::StringData(StringArray { data: vec!["é\"".into()] })),
        ];
        for (elem, full) in cases {
            let schema = CollectionSchema { fields: vec![array_field("a", elem)], ..Default::default() };
            let mut rows = Rows::new(vec![array_column("a", 0, vec![None, Some(full.clone()), None])]).unwrap();
            let before: Vec<u64> = (0..3).map(|i| rows.row_digest(i)).collect();
            canonicalize(&mut rows, &schema);
            let a = elements(&rows.columns[0]);
            assert_eq!(a.element_type, elem as i32, "{elem:?}");
            let want_empty = empty_list(elem).unwrap();
            assert_eq!(a.data[0].data.as_ref(), Some(&want_empty), "{elem:?}");
            assert_eq!(a.data[1].data.as_ref(), Some(&full), "{elem:?}");
            assert_eq!(a.data[2].data.as_ref(), Some(&want_empty), "{elem:?}");
            let after: Vec<u64> = (0..3).map(|i| rows.row_digest(i)).collect();
            assert_eq!(before, after, "{elem:?}: canonical form must read back the same");
        }
    }

    #[test]
    fn column_type_and_dynamic_flag_come_from_the_schema() {
        let schema = CollectionSchema {
            fields: vec![FieldSchema { name: "x".into(), data_type: DataType::Int64 as i32, ..Default::default() }],
            enable_dynamic_field: true,
            ..Default::default()
        };
        let x = FieldData {
            field_name: "x".into(),
            field: Some(Field::Scalars(ScalarField { data: Some(Scalar::LongData(LongArray { data: vec![1, 2] })), ..Default::default() })),
            ..Default::default()
        };
        let meta = FieldData {
            field_name: DYNAMIC_FIELD.into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Scalar::JsonData(JsonArray { data: vec![vec![], b"{\"k\":null}".to_vec()] })),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut rows = Rows::new(vec![x, meta]).unwrap();
        canonicalize(&mut rows, &schema);
        assert_eq!(rows.columns[0].r#type, DataType::Int64 as i32);
        assert!(!rows.columns[0].is_dynamic);
        let m = &rows.columns[1];
        assert!(m.is_dynamic);
        assert_eq!(m.r#type, DataType::Json as i32);
        match &m.field {
            Some(Field::Scalars(ScalarField { data: Some(Scalar::JsonData(j)), .. })) => {
                assert_eq!(j.data, vec![b"{}".to_vec(), b"{\"k\":null}".to_vec()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_columns_and_unknown_element_types_are_left_alone() {
        let schema = CollectionSchema { fields: vec![array_field("a", DataType::None)], ..Default::default() };
        let mut rows = Rows::new(vec![
            array_column("a", 0, vec![None]),
            array_column("not_in_schema", 0, vec![None]),
        ])
        .unwrap();
        let before = rows.clone();
        canonicalize(&mut rows, &schema);
        assert_eq!(rows, before);
    }

    /// A nullable column goes out as pymilvus sends it (values of valid rows, validity of
    /// all); a non-nullable column drops an all-valid validity; a function's output column is
    /// not sent at all.
    #[test]
    fn nulls_are_compacted_and_function_outputs_dropped() {
        let int_field = |name: &str, nullable: bool| FieldSchema {
            name: name.into(),
            data_type: DataType::Int32 as i32,
            nullable,
            ..Default::default()
        };
        let mut bm = FieldSchema { name: "bm".into(), data_type: DataType::SparseFloatVector as i32, ..Default::default() };
        bm.is_function_output = true;
        let schema = CollectionSchema { fields: vec![int_field("n", true), int_field("m", false), int_field("all", true), bm], ..Default::default() };
        let col = |name: &str, v: Vec<i32>, valid: Vec<bool>| FieldData {
            field_name: name.into(),
            field: Some(Field::Scalars(ScalarField { data: Some(Scalar::IntData(IntArray { data: v })), ..Default::default() })),
            valid_data: valid,
            ..Default::default()
        };
        let mut rows = Rows::new(vec![
            col("n", vec![1, 0, 3], vec![true, false, true]),
            col("m", vec![4, 5, 6], vec![true, true, true]),
            col("all", vec![7, 8, 9], vec![]),
            col("bm", vec![0, 0, 0], vec![]),
        ])
        .unwrap();
        canonicalize(&mut rows, &schema);
        let get = |name: &str| rows.columns.iter().find(|c| c.field_name == name);
        assert!(get("bm").is_none(), "function output is computed by the target");
        let ints = |c: &FieldData| match &c.field {
            Some(Field::Scalars(ScalarField { data: Some(Scalar::IntData(a)), .. })) => (a.data.clone(), c.valid_data.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(ints(get("n").unwrap()), (vec![1, 3], vec![true, false, true]));
        assert_eq!(ints(get("m").unwrap()), (vec![4, 5, 6], vec![]));
        assert_eq!(ints(get("all").unwrap()), (vec![7, 8, 9], vec![true, true, true]), "a nullable field always says");
    }
}
