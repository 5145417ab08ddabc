//! Columnar rows: Milvus moves rows as one `FieldData` column per field, and so does ferry.
//!
//! [`Rows`] is the one batch type used by every path that moves data (snapshot copy, WAL
//! replay, backup import, verification): it appends, selects and measures columns without
//! ever turning them into per-row objects.

use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, FieldData,
    ScalarField, VectorField,
};
use crate::proto::schema::{i_ds::IdField, IDs as Ids, LongArray, StringArray};

/// Primary keys of a batch, in row order.
#[derive(Debug, Clone, PartialEq)]
pub enum PrimaryKeys {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl PrimaryKeys {
    pub fn len(&self) -> usize {
        match self {
            PrimaryKeys::Int(v) => v.len(),
            PrimaryKeys::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the keys of a WAL delete or a mutation result.
    pub fn from_ids(ids: &Ids) -> Option<Self> {
        match ids.id_field.as_ref()? {
            IdField::IntId(a) => Some(PrimaryKeys::Int(a.data.clone())),
            IdField::StrId(a) => Some(PrimaryKeys::Str(a.data.clone())),
        }
    }

    pub fn to_ids(&self) -> Ids {
        Ids {
            id_field: Some(match self {
                PrimaryKeys::Int(v) => IdField::IntId(LongArray { data: v.clone() }),
                PrimaryKeys::Str(v) => IdField::StrId(StringArray { data: v.clone() }),
            }),
        }
    }

    /// Reads the keys from a primary-key column (Int64 or VarChar).
    pub fn from_field(field: &FieldData) -> Option<Self> {
        match field.field.as_ref()? {
            Field::Scalars(ScalarField {
                data: Some(Scalar::LongData(a)),
            }) => Some(PrimaryKeys::Int(a.data.clone())),
            Field::Scalars(ScalarField {
                data: Some(Scalar::StringData(a)),
            }) => Some(PrimaryKeys::Str(a.data.clone())),
            _ => None,
        }
    }

    /// Appends another key list of the same kind; a kind mismatch is a caller bug upstream
    /// (one collection has one primary key type) and reported as `false`.
    pub fn extend(&mut self, other: &PrimaryKeys) -> bool {
        match (self, other) {
            (PrimaryKeys::Int(a), PrimaryKeys::Int(b)) => a.extend_from_slice(b),
            (PrimaryKeys::Str(a), PrimaryKeys::Str(b)) => a.extend(b.iter().cloned()),
            _ => return false,
        }
        true
    }

    /// An empty list of the same kind.
    pub fn empty_like(&self) -> Self {
        match self {
            PrimaryKeys::Int(_) => PrimaryKeys::Int(Vec::new()),
            PrimaryKeys::Str(_) => PrimaryKeys::Str(Vec::new()),
        }
    }

    /// Approximate wire size, for batch bounds.
    pub fn byte_size(&self) -> usize {
        match self {
            PrimaryKeys::Int(v) => v.len() * 8,
            PrimaryKeys::Str(v) => v.iter().map(|s| s.len() + 4).sum(),
        }
    }
}

/// Errors of column handling: a column that does not fit the batch it joins.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("field {field:?}: column has {got} rows, the batch has {want}")]
    RowCount {
        field: String,
        got: usize,
        want: usize,
    },
    #[error("field {field:?}: cannot append a {got} column to a {want} column")]
    TypeMismatch {
        field: String,
        got: &'static str,
        want: &'static str,
    },
    #[error("field {field:?} is missing from a batch that has it elsewhere")]
    MissingField { field: String },
    #[error("field {field:?}: vector column has dim {dim} but {len} values")]
    BadVector { field: String, dim: i64, len: usize },
}

/// Number of rows a column holds.
pub fn column_rows(f: &FieldData) -> usize {
    match &f.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Scalar::BoolData(a)) => a.data.len(),
            Some(Scalar::IntData(a)) => a.data.len(),
            Some(Scalar::LongData(a)) => a.data.len(),
            Some(Scalar::FloatData(a)) => a.data.len(),
            Some(Scalar::DoubleData(a)) => a.data.len(),
            Some(Scalar::StringData(a)) => a.data.len(),
            Some(Scalar::BytesData(a)) => a.data.len(),
            Some(Scalar::ArrayData(a)) => a.data.len(),
            Some(Scalar::JsonData(a)) => a.data.len(),
            None => 0,
        },
        Some(Field::Vectors(v)) => {
            let width = vector_row_width(v);
            if width == 0 {
                return 0;
            }
            match &v.data {
                Some(Vector::FloatVector(a)) => a.data.len() / width,
                Some(Vector::BinaryVector(b))
                | Some(Vector::Float16Vector(b))
                | Some(Vector::Bfloat16Vector(b)) => b.len() / width,
                None => 0,
            }
        }
        None => 0,
    }
}

/// Elements (floats) or bytes one row of a vector column takes.
pub(super) fn vector_row_width(v: &VectorField) -> usize {
    let dim = v.dim.max(0) as usize;
    match &v.data {
        Some(Vector::FloatVector(_)) => dim,
        Some(Vector::BinaryVector(_)) => dim / 8,
        Some(Vector::Float16Vector(_)) | Some(Vector::Bfloat16Vector(_)) => dim * 2,
        None => 0,
    }
}

fn kind_name(f: &FieldData) -> &'static str {
    match &f.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Scalar::BoolData(_)) => "bool",
            Some(Scalar::IntData(_)) => "int",
            Some(Scalar::LongData(_)) => "long",
            Some(Scalar::FloatData(_)) => "float",
            Some(Scalar::DoubleData(_)) => "double",
            Some(Scalar::StringData(_)) => "string",
            Some(Scalar::BytesData(_)) => "bytes",
            Some(Scalar::ArrayData(_)) => "array",
            Some(Scalar::JsonData(_)) => "json",
            None => "empty scalar",
        },
        Some(Field::Vectors(v)) => match &v.data {
            Some(Vector::FloatVector(_)) => "float vector",
            Some(Vector::BinaryVector(_)) => "binary vector",
            Some(Vector::Float16Vector(_)) => "float16 vector",
            Some(Vector::Bfloat16Vector(_)) => "bfloat16 vector",
            None => "empty vector",
        },
        None => "empty",
    }
}

/// Approximate payload bytes of a column (what it costs on the wire), for batch bounds.
pub fn column_bytes(f: &FieldData) -> usize {
    match &f.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Scalar::BoolData(a)) => a.data.len(),
            Some(Scalar::IntData(a)) => a.data.len() * 4,
            Some(Scalar::LongData(a)) => a.data.len() * 8,
            Some(Scalar::FloatData(a)) => a.data.len() * 4,
            Some(Scalar::DoubleData(a)) => a.data.len() * 8,
            Some(Scalar::StringData(a)) => a.data.iter().map(|s| s.len() + 2).sum(),
            Some(Scalar::BytesData(a)) => a.data.iter().map(|s| s.len() + 2).sum(),
            Some(Scalar::JsonData(a)) => a.data.iter().map(|s| s.len() + 2).sum(),
            Some(Scalar::ArrayData(a)) => a
                .data
                .iter()
                .map(|s| {
                    column_bytes(&FieldData {
                        field: Some(Field::Scalars(s.clone())),
                        ..Default::default()
                    }) + 4
                })
                .sum(),
            None => 0,
        },
        Some(Field::Vectors(v)) => match &v.data {
            Some(Vector::FloatVector(a)) => a.data.len() * 4,
            Some(Vector::BinaryVector(b))
            | Some(Vector::Float16Vector(b))
            | Some(Vector::Bfloat16Vector(b)) => b.len(),
            None => 0,
        },
        None => 0,
    }
}

/// Appends `src`'s rows to `dst` (same field, same type).
pub fn append_column(dst: &mut FieldData, src: &FieldData) -> Result<(), DataError> {
    let want = kind_name(dst);
    let mismatch = || DataError::TypeMismatch {
        field: src.field_name.clone(),
        got: kind_name(src),
        want,
    };
    match (&mut dst.field, &src.field) {
        (None, _) => {
            *dst = src.clone();
            Ok(())
        }
        (_, None) => Ok(()),
        (Some(Field::Scalars(d)), Some(Field::Scalars(s))) => {
            match (&mut d.data, &s.data) {
            (Some(Scalar::BoolData(d)), Some(Scalar::BoolData(s))) => {
                d.data.extend_from_slice(&s.data)
            }
            (Some(Scalar::IntData(d)), Some(Scalar::IntData(s))) => {
                d.data.extend_from_slice(&s.data)
            }
            (Some(Scalar::LongData(d)), Some(Scalar::LongData(s))) => {
                d.data.extend_from_slice(&s.data)
            }
            (Some(Scalar::FloatData(d)), Some(Scalar::FloatData(s))) => {
                d.data.extend_from_slice(&s.data)
            }
            (Some(Scalar::DoubleData(d)), Some(Scalar::DoubleData(s))) => {
                d.data.extend_from_slice(&s.data)
            }
            (Some(Scalar::StringData(d)), Some(Scalar::StringData(s))) => {
                d.data.extend(s.data.iter().cloned())
            }
            (Some(Scalar::BytesData(d)), Some(Scalar::BytesData(s))) => {
                d.data.extend(s.data.iter().cloned())
            }
            (Some(Scalar::JsonData(d)), Some(Scalar::JsonData(s))) => {
                d.data.extend(s.data.iter().cloned())
            }
            (Some(Scalar::ArrayData(d)), Some(Scalar::ArrayData(s))) => {
                d.data.extend(s.data.iter().cloned())
            }
            (None, Some(s)) => d.data = Some(s.clone()),
            _ => return Err(mismatch()),
            }
            Ok(())
        }
        (Some(Field::Vectors(d)), Some(Field::Vectors(s))) => {
            if d.dim == 0 {
                d.dim = s.dim;
            }
            match (&mut d.data, &s.data) {
                (Some(Vector::FloatVector(d)), Some(Vector::FloatVector(s))) => {
                    d.data.extend_from_slice(&s.data)
                }
                (Some(Vector::BinaryVector(d)), Some(Vector::BinaryVector(s)))
                | (Some(Vector::Float16Vector(d)), Some(Vector::Float16Vector(s)))
                | (Some(Vector::Bfloat16Vector(d)), Some(Vector::Bfloat16Vector(s))) => {
                    d.extend_from_slice(s)
                }
                (None, Some(s)) => d.data = Some(s.clone()),
                _ => return Err(mismatch()),
            }
            Ok(())
        }
        _ => Err(mismatch()),
    }
}

/// A copy of `f` holding only the rows at `idx` (in that order).
pub fn select_column(f: &FieldData, idx: &[usize]) -> FieldData {
    fn pick<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter().map(|&i| v[i].clone()).collect()
    }
    fn pick_chunks<T: Clone>(v: &[T], width: usize, idx: &[usize]) -> Vec<T> {
        let mut out = Vec::with_capacity(idx.len() * width);
        for &i in idx {
            out.extend_from_slice(&v[i * width..(i + 1) * width]);
        }
        out
    }
    let field = f.field.as_ref().map(|field| match field {
        Field::Scalars(s) => Field::Scalars(ScalarField {
            data: s.data.as_ref().map(|d| match d {
                Scalar::BoolData(a) => Scalar::BoolData(crate::proto::schema::BoolArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::IntData(a) => Scalar::IntData(crate::proto::schema::IntArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::LongData(a) => Scalar::LongData(LongArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::FloatData(a) => Scalar::FloatData(crate::proto::schema::FloatArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::DoubleData(a) => Scalar::DoubleData(crate::proto::schema::DoubleArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::StringData(a) => Scalar::StringData(StringArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::BytesData(a) => Scalar::BytesData(crate::proto::schema::BytesArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::JsonData(a) => Scalar::JsonData(crate::proto::schema::JsonArray {
                    data: pick(&a.data, idx),
                }),
                Scalar::ArrayData(a) => Scalar::ArrayData(crate::proto::schema::ArrayArray {
                    data: pick(&a.data, idx),
                    element_type: a.element_type,
                }),
            }),
        }),
        Field::Vectors(v) => {
            let w = vector_row_width(v);
            Field::Vectors(VectorField {
                dim: v.dim,
                data: v.data.as_ref().map(|d| match d {
                    Vector::FloatVector(a) => {
                        Vector::FloatVector(crate::proto::schema::FloatArray {
                            data: pick_chunks(&a.data, w, idx),
                        })
                    }
                    Vector::BinaryVector(b) => Vector::BinaryVector(pick_chunks(b, w, idx)),
                    Vector::Float16Vector(b) => Vector::Float16Vector(pick_chunks(b, w, idx)),
                    Vector::Bfloat16Vector(b) => Vector::Bfloat16Vector(pick_chunks(b, w, idx)),
                }),
            })
        }
    });
    FieldData {
        r#type: f.r#type,
        field_name: f.field_name.clone(),
        field,
        field_id: f.field_id,
        is_dynamic: f.is_dynamic,
    }
}

/// A batch of rows of one collection, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<FieldData>,
    pub num_rows: usize,
}

impl Rows {
    /// Wraps columns read from Milvus (a query result, a WAL insert), checking they agree on
    /// the row count.
    pub fn new(columns: Vec<FieldData>) -> Result<Self, DataError> {
        let num_rows = columns.first().map(column_rows).unwrap_or(0);
        for c in &columns {
            if let Some(Field::Vectors(v)) = &c.field {
                let w = vector_row_width(v);
                let len = match &v.data {
                    Some(Vector::FloatVector(a)) => a.data.len(),
                    Some(Vector::BinaryVector(b))
                    | Some(Vector::Float16Vector(b))
                    | Some(Vector::Bfloat16Vector(b)) => b.len(),
                    None => 0,
                };
                if w == 0 && len > 0 || w > 0 && len % w != 0 {
                    return Err(DataError::BadVector {
                        field: c.field_name.clone(),
                        dim: v.dim,
                        len,
                    });
                }
            }
            let got = column_rows(c);
            if got != num_rows {
                return Err(DataError::RowCount {
                    field: c.field_name.clone(),
                    got,
                    want: num_rows,
                });
            }
        }
        Ok(Rows { columns, num_rows })
    }

    pub fn len(&self) -> usize {
        self.num_rows
    }

    pub fn is_empty(&self) -> bool {
        self.num_rows == 0
    }

    /// Approximate payload bytes.
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(column_bytes).sum()
    }

    pub fn column(&self, name: &str) -> Option<&FieldData> {
        self.columns.iter().find(|c| c.field_name == name)
    }

    /// The primary keys, read from the column named `pk_field`.
    pub fn primary_keys(&self, pk_field: &str) -> Option<PrimaryKeys> {
        PrimaryKeys::from_field(self.column(pk_field)?)
    }

    /// Appends `other`'s rows; columns are matched by field name.
    pub fn append(&mut self, other: &Rows) -> Result<(), DataError> {
        if self.columns.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        if other.columns.len() != self.columns.len() {
            let missing = self
                .columns
                .iter()
                .map(|c| &c.field_name)
                .chain(other.columns.iter().map(|c| &c.field_name))
                .find(|n| self.column(n).is_none() || other.column(n).is_none())
                .cloned()
                .unwrap_or_default();
            return Err(DataError::MissingField { field: missing });
        }
        for dst in &mut self.columns {
            let src = other
                .columns
                .iter()
                .find(|c| c.field_name == dst.field_name)
                .ok_or_else(|| DataError::MissingField {
                    field: dst.field_name.clone(),
                })?;
            append_column(dst, src)?;
        }
        self.num_rows += other.num_rows;
        Ok(())
    }

    /// A batch holding only the rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Rows {
        Rows {
            columns: self.columns.iter().map(|c| select_column(c, idx)).collect(),
            num_rows: idx.len(),
        }
    }

    /// Splits into consecutive batches of at most `max_bytes` (at least one row each).
    pub fn split_by_bytes(self, max_bytes: usize) -> Vec<Rows> {
        let total = self.byte_size();
        if total <= max_bytes || self.num_rows <= 1 {
            return vec![self];
        }
        let per_row = total.div_ceil(self.num_rows).max(1);
        let rows_per = (max_bytes / per_row).max(1);
        (0..self.num_rows)
            .step_by(rows_per)
            .map(|start| {
                let idx: Vec<usize> = (start..(start + rows_per).min(self.num_rows)).collect();
                self.select(&idx)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schema::{DataType, FloatArray};

    fn long_col(name: &str, v: Vec<i64>) -> FieldData {
        FieldData {
            r#type: DataType::Int64 as i32,
            field_name: name.into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Scalar::LongData(LongArray { data: v })),
            })),
            ..Default::default()
        }
    }

    fn vec_col(name: &str, dim: i64, v: Vec<f32>) -> FieldData {
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: name.into(),
            field: Some(Field::Vectors(VectorField {
                dim,
                data: Some(Vector::FloatVector(FloatArray { data: v })),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn append_select_and_split_keep_rows_aligned() {
        let a = Rows::new(vec![
            long_col("id", vec![1, 2]),
            vec_col("v", 2, vec![1.0, 1.5, 2.0, 2.5]),
        ])
        .unwrap();
        let b = Rows::new(vec![
            vec_col("v", 2, vec![3.0, 3.5]),
            long_col("id", vec![3]),
        ])
        .unwrap();
        let mut all = a.clone();
        all.append(&b).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.primary_keys("id"), Some(PrimaryKeys::Int(vec![1, 2, 3])));
        let picked = all.select(&[2, 0]);
        assert_eq!(picked.primary_keys("id"), Some(PrimaryKeys::Int(vec![3, 1])));
        assert_eq!(
            picked.column("v"),
            Some(&vec_col("v", 2, vec![3.0, 3.5, 1.0, 1.5]))
        );
        let parts = all.clone().split_by_bytes(16);
        assert!(parts.len() > 1);
        let mut joined = Rows::default();
        for p in &parts {
            joined.append(p).unwrap();
        }
        assert_eq!(joined, all);
    }

    #[test]
    fn mismatched_columns_are_errors_naming_the_field() {
        let bad = Rows::new(vec![long_col("id", vec![1, 2]), vec_col("v", 2, vec![1.0, 2.0])]);
        assert!(matches!(bad, Err(DataError::RowCount { ref field, .. }) if field == "v"));
        let bad = Rows::new(vec![vec_col("v", 3, vec![1.0, 2.0])]);
        assert!(matches!(bad, Err(DataError::BadVector { .. })));
        let mut a = Rows::new(vec![long_col("id", vec![1])]).unwrap();
        let b = Rows::new(vec![vec_col("id", 1, vec![1.0])]).unwrap();
        assert!(matches!(a.append(&b), Err(DataError::TypeMismatch { .. })));
    }
}
