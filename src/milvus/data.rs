//! Columnar rows: Milvus moves rows as one `FieldData` column per field, and so does ferry.
//!
//! [`Rows`] is the one batch type used by every path that moves data (snapshot copy, WAL
//! replay, backup import, verification): it appends, selects and measures columns without
//! ever turning them into per-row objects.

use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, ArrayArray, BoolArray,
    BytesArray, DoubleArray, FieldData, FloatArray, GeometryArray, GeometryWktArray, IntArray, JsonArray,
    ScalarField, SparseFloatArray, TimestamptzArray, VectorField,
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
                ..
            }) => Some(PrimaryKeys::Int(a.data.clone())),
            Field::Scalars(ScalarField {
                data: Some(Scalar::StringData(a)),
                ..
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

/// Runs `$e` on the typed array inside any scalar data variant, bound as `$a`.
macro_rules! on_scalar {
    ($d:expr, $a:ident => $e:expr) => {
        match $d {
            Scalar::BoolData($a) => $e,
            Scalar::IntData($a) => $e,
            Scalar::LongData($a) => $e,
            Scalar::FloatData($a) => $e,
            Scalar::DoubleData($a) => $e,
            Scalar::StringData($a) => $e,
            Scalar::BytesData($a) => $e,
            Scalar::ArrayData($a) => $e,
            Scalar::JsonData($a) => $e,
            Scalar::GeometryData($a) => $e,
            Scalar::TimestamptzData($a) => $e,
            Scalar::GeometryWktData($a) => $e,
        }
    };
}

/// The same scalar variant, its rows given by `$e` (with the variant's array bound as `$a`).
macro_rules! map_scalar {
    ($d:expr, $a:ident => $e:expr) => {
        match $d {
            Scalar::BoolData($a) => Scalar::BoolData(BoolArray { data: $e }),
            Scalar::IntData($a) => Scalar::IntData(IntArray { data: $e }),
            Scalar::LongData($a) => Scalar::LongData(LongArray { data: $e }),
            Scalar::FloatData($a) => Scalar::FloatData(FloatArray { data: $e }),
            Scalar::DoubleData($a) => Scalar::DoubleData(DoubleArray { data: $e }),
            Scalar::StringData($a) => Scalar::StringData(StringArray { data: $e }),
            Scalar::BytesData($a) => Scalar::BytesData(BytesArray { data: $e }),
            Scalar::JsonData($a) => Scalar::JsonData(JsonArray { data: $e }),
            Scalar::GeometryData($a) => Scalar::GeometryData(GeometryArray { data: $e }),
            Scalar::TimestamptzData($a) => Scalar::TimestamptzData(TimestamptzArray { data: $e }),
            Scalar::GeometryWktData($a) => Scalar::GeometryWktData(GeometryWktArray { data: $e }),
            Scalar::ArrayData($a) => {
                let element_type = $a.element_type;
                Scalar::ArrayData(ArrayArray { data: $e, element_type })
            }
        }
    };
}

/// Number of rows a column holds.
pub fn column_rows(f: &FieldData) -> usize {
    match &f.field {
        Some(Field::Scalars(s)) => s.data.as_ref().map_or(0, |d| on_scalar!(d, a => a.data.len())),
        Some(Field::Vectors(v)) => match &v.data {
            Some(Vector::SparseFloatVector(s)) => s.contents.len(),
            Some(d) => {
                let width = vector_row_width(v);
                if width == 0 {
                    return 0;
                }
                vector_values(d) / width
            }
            None => 0,
        },
        None => 0,
    }
}

/// Values (floats, or bytes) of a fixed-width vector column; rows of a sparse one.
fn vector_values(d: &Vector) -> usize {
    match d {
        Vector::FloatVector(a) => a.data.len(),
        Vector::BinaryVector(b) | Vector::Float16Vector(b) | Vector::Bfloat16Vector(b) | Vector::Int8Vector(b) => b.len(),
        Vector::SparseFloatVector(s) => s.contents.len(),
    }
}

/// Elements (floats) or bytes one row of a fixed-width vector column takes (0 for sparse
/// vectors, whose rows differ in length).
pub(super) fn vector_row_width(v: &VectorField) -> usize {
    let dim = v.dim.max(0) as usize;
    match &v.data {
        Some(Vector::FloatVector(_)) => dim,
        Some(Vector::BinaryVector(_)) => dim / 8,
        Some(Vector::Float16Vector(_)) | Some(Vector::Bfloat16Vector(_)) => dim * 2,
        Some(Vector::Int8Vector(_)) => dim,
        Some(Vector::SparseFloatVector(_)) | None => 0,
    }
}

/// The dimension a batch of sparse rows declares: its largest index plus one (each row is
/// little-endian `(u32 index, f32 value)` pairs).
pub fn sparse_dim(contents: &[Vec<u8>]) -> i64 {
    contents
        .iter()
        .flat_map(|row| row.chunks_exact(8).map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as i64 + 1))
        .max()
        .unwrap_or(0)
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
            Some(Scalar::GeometryData(_)) => "geometry (WKB)",
            Some(Scalar::TimestamptzData(_)) => "timestamptz",
            Some(Scalar::GeometryWktData(_)) => "geometry (WKT)",
            None => "empty scalar",
        },
        Some(Field::Vectors(v)) => match &v.data {
            Some(Vector::FloatVector(_)) => "float vector",
            Some(Vector::BinaryVector(_)) => "binary vector",
            Some(Vector::Float16Vector(_)) => "float16 vector",
            Some(Vector::Bfloat16Vector(_)) => "bfloat16 vector",
            Some(Vector::Int8Vector(_)) => "int8 vector",
            Some(Vector::SparseFloatVector(_)) => "sparse float vector",
            None => "empty vector",
        },
        None => "empty",
    }
}

/// Approximate payload bytes of a column (what it costs on the wire), for batch bounds.
pub fn column_bytes(f: &FieldData) -> usize {
    f.valid_data.len()
        + match &f.field {
            Some(Field::Scalars(s)) => scalar_bytes(s),
            Some(Field::Vectors(v)) => match &v.data {
                Some(Vector::FloatVector(a)) => a.data.len() * 4,
                Some(Vector::SparseFloatVector(s)) => s.contents.iter().map(|r| r.len() + 2).sum(),
                Some(d) => vector_values(d),
                None => 0,
            },
            None => 0,
        }
}

/// Wire bytes of one value of a scalar array (an element of `Scalar::*.data`).
trait CellBytes {
    fn cell_bytes(&self) -> usize;
}
macro_rules! fixed_cell {
    ($($t:ty => $n:expr),*) => { $(impl CellBytes for $t { fn cell_bytes(&self) -> usize { $n } })* };
}
fixed_cell!(bool => 1, i32 => 4, i64 => 8, f32 => 4, f64 => 8);
impl CellBytes for String {
    fn cell_bytes(&self) -> usize {
        self.len() + 2
    }
}
impl CellBytes for Vec<u8> {
    fn cell_bytes(&self) -> usize {
        self.len() + 2
    }
}
impl CellBytes for ScalarField {
    fn cell_bytes(&self) -> usize {
        scalar_bytes(self) + 4
    }
}

/// [`column_bytes`] of a scalar column (also of one array cell).
fn scalar_bytes(s: &ScalarField) -> usize {
    s.data.as_ref().map_or(0, |d| on_scalar!(d, a => a.data.iter().map(CellBytes::cell_bytes).sum()))
}

/// Adds each row's share of [`column_bytes`] to `out[row]` (the shares sum to it exactly).
fn add_row_bytes(f: &FieldData, out: &mut [usize]) {
    fn each<T>(out: &mut [usize], v: &[T], size: impl Fn(&T) -> usize) {
        out.iter_mut().zip(v).for_each(|(o, x)| *o += size(x));
    }
    out.iter_mut().take(f.valid_data.len()).for_each(|o| *o += 1);
    match &f.field {
        Some(Field::Scalars(s)) => {
            if let Some(d) = &s.data {
                on_scalar!(d, a => each(out, &a.data, CellBytes::cell_bytes))
            }
        }
        Some(Field::Vectors(v)) => match &v.data {
            Some(Vector::SparseFloatVector(s)) => each(out, &s.contents, |r| r.len() + 2),
            Some(d) => {
                let per_row = match d {
                    Vector::FloatVector(_) => vector_row_width(v) * 4,
                    _ => vector_row_width(v),
                };
                out.iter_mut().take(column_rows(f)).for_each(|o| *o += per_row);
            }
            None => {}
        },
        None => {}
    }
}

/// Moves the rows from `at` on out of `f` into a new column with room for `reserve` more
/// rows; `f` keeps rows `..at` in place (nothing before `at` is copied).
pub fn split_column_off(f: &mut FieldData, at: usize, reserve: usize) -> FieldData {
    fn tail<T>(v: &mut Vec<T>, at: usize, reserve: usize) -> Vec<T> {
        let at = at.min(v.len());
        let mut t = Vec::with_capacity(v.len() - at + reserve);
        t.extend(v.drain(at..));
        t
    }
    let field = f.field.as_mut().map(|field| match field {
        Field::Scalars(s) => Field::Scalars(ScalarField {
            data: s.data.as_mut().map(|d| map_scalar!(d, a => tail(&mut a.data, at, reserve))),
            ..Default::default()
        }),
        Field::Vectors(v) => {
            let w = vector_row_width(v);
            let mut dim = v.dim;
            let data = v.data.as_mut().map(|d| match d {
                Vector::FloatVector(a) => Vector::FloatVector(FloatArray { data: tail(&mut a.data, at * w, reserve * w) }),
                Vector::BinaryVector(b) => Vector::BinaryVector(tail(b, at * w, reserve * w)),
                Vector::Float16Vector(b) => Vector::Float16Vector(tail(b, at * w, reserve * w)),
                Vector::Bfloat16Vector(b) => Vector::Bfloat16Vector(tail(b, at * w, reserve * w)),
                Vector::Int8Vector(b) => Vector::Int8Vector(tail(b, at * w, reserve * w)),
                Vector::SparseFloatVector(s) => {
                    let contents = tail(&mut s.contents, at, reserve);
                    s.dim = sparse_dim(&s.contents);
                    dim = sparse_dim(&contents);
                    Vector::SparseFloatVector(SparseFloatArray { dim, contents })
                }
            });
            if let Some(Vector::SparseFloatVector(s)) = &v.data {
                v.dim = s.dim;
            }
            Field::Vectors(VectorField { dim, data, ..Default::default() })
        }
    });
    let valid_data = if f.valid_data.is_empty() { Vec::new() } else { tail(&mut f.valid_data, at, reserve) };
    FieldData { field, valid_data, ..header(f) }
}

/// `f`'s name, type and flags, with no rows.
fn header(f: &FieldData) -> FieldData {
    FieldData {
        r#type: f.r#type,
        field_name: f.field_name.clone(),
        field: None,
        field_id: f.field_id,
        is_dynamic: f.is_dynamic,
        valid_data: Vec::new(),
    }
}

/// Where to cut rows of these byte sizes into consecutive parts of at most `max_bytes` each
/// (a single row larger than that goes alone): as few parts as possible, as even as possible.
/// 9.8 MB under an 8 MiB bound becomes two ~4.9 MB parts, not 8 MiB and 1.8 MB. Returns the
/// first row of every part (`[0, ...]`; empty for no rows).
///
/// The number of parts is what filling each part up to the bound gives (the fewest); the
/// bound is then lowered to the smallest one that still needs no more parts (binary search),
/// and each part aims at an equal share of the bytes left within it. Should row granularity
/// make the equal shares need a part more, the parts are filled up to the lowered bound.
pub fn even_cuts(sizes: &[usize], max_bytes: usize) -> Vec<usize> {
    if sizes.is_empty() {
        return Vec::new();
    }
    let max = max_bytes.max(1);
    let parts = fill_cuts(sizes, max).len();
    let total: usize = sizes.iter().sum();
    // (Not from total / parts: rows over the bound go alone and do not share.)
    let (mut lo, mut hi) = (1, max);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fill_cuts(sizes, mid).len() <= parts {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let shares = share_cuts(sizes, lo, parts, total);
    if shares.len() <= parts {
        shares
    } else {
        fill_cuts(sizes, lo)
    }
}

/// Parts filled up to `cap` in turn (at least one row each).
fn fill_cuts(sizes: &[usize], cap: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        starts.push(i);
        let mut part = sizes[i];
        i += 1;
        while i < sizes.len() && part + sizes[i] <= cap {
            part += sizes[i];
            i += 1;
        }
    }
    starts
}

/// Parts of an equal share of the bytes left each (at least one row, at most `cap`).
fn share_cuts(sizes: &[usize], cap: usize, parts: usize, total: usize) -> Vec<usize> {
    let mut left = total;
    let mut starts = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        let share = left.div_ceil(parts.saturating_sub(starts.len()).max(1));
        starts.push(i);
        let mut part = sizes[i];
        i += 1;
        while i < sizes.len() && (part < share || sizes[i] == 0) && part + sizes[i] <= cap {
            part += sizes[i];
            i += 1;
        }
        left -= part;
    }
    starts
}

/// Appends `src`'s rows to `dst` (same field, same type).
pub fn append_column(dst: &mut FieldData, src: &FieldData) -> Result<(), DataError> {
    let want = kind_name(dst);
    let mismatch = || DataError::TypeMismatch {
        field: src.field_name.clone(),
        got: kind_name(src),
        want,
    };
    if dst.field.is_none() {
        *dst = src.clone();
        return Ok(());
    }
    if src.field.is_none() {
        return Ok(());
    }
    let (dst_rows, src_rows) = (column_rows(dst), column_rows(src));
    match (&mut dst.field, &src.field) {
        (Some(Field::Scalars(d)), Some(Field::Scalars(s))) => match (&mut d.data, &s.data) {
            (Some(d), Some(s)) => {
                // The same variant on both sides: its rows appended.
                macro_rules! extend_same {
                    ($($v:ident),*) => {
                        match (d, s) {
                            $((Scalar::$v(d), Scalar::$v(s)) => d.data.extend_from_slice(&s.data),)*
                            _ => return Err(mismatch()),
                        }
                    };
                }
                extend_same!(
                    BoolData, IntData, LongData, FloatData, DoubleData, TimestamptzData, StringData,
                    GeometryWktData, BytesData, JsonData, GeometryData, ArrayData
                )
            }
            (None, Some(s)) => d.data = Some(s.clone()),
            _ => return Err(mismatch()),
        },
        (Some(Field::Vectors(d)), Some(Field::Vectors(s))) => {
            if d.dim == 0 {
                d.dim = s.dim;
            }
            match (&mut d.data, &s.data) {
                (Some(Vector::FloatVector(d)), Some(Vector::FloatVector(s))) => d.data.extend_from_slice(&s.data),
                (Some(Vector::BinaryVector(d)), Some(Vector::BinaryVector(s)))
                | (Some(Vector::Float16Vector(d)), Some(Vector::Float16Vector(s)))
                | (Some(Vector::Bfloat16Vector(d)), Some(Vector::Bfloat16Vector(s)))
                | (Some(Vector::Int8Vector(d)), Some(Vector::Int8Vector(s))) => d.extend_from_slice(s),
                (Some(Vector::SparseFloatVector(ds)), Some(Vector::SparseFloatVector(ss))) => {
                    ds.contents.extend(ss.contents.iter().cloned());
                    ds.dim = ds.dim.max(ss.dim);
                    d.dim = ds.dim;
                }
                (None, Some(s)) => d.data = Some(s.clone()),
                _ => return Err(mismatch()),
            }
        }
        _ => return Err(mismatch()),
    }
    // Validity: a column without any is all valid.
    if !dst.valid_data.is_empty() || !src.valid_data.is_empty() {
        if dst.valid_data.is_empty() {
            dst.valid_data = vec![true; dst_rows];
        }
        if src.valid_data.is_empty() {
            dst.valid_data.extend(std::iter::repeat_n(true, src_rows));
        } else {
            dst.valid_data.extend_from_slice(&src.valid_data);
        }
    }
    Ok(())
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
            data: s.data.as_ref().map(|d| map_scalar!(d, a => pick(&a.data, idx))),
            ..Default::default()
        }),
        Field::Vectors(v) => {
            let w = vector_row_width(v);
            let mut dim = v.dim;
            let data = v.data.as_ref().map(|d| match d {
                Vector::FloatVector(a) => Vector::FloatVector(FloatArray { data: pick_chunks(&a.data, w, idx) }),
                Vector::BinaryVector(b) => Vector::BinaryVector(pick_chunks(b, w, idx)),
                Vector::Float16Vector(b) => Vector::Float16Vector(pick_chunks(b, w, idx)),
                Vector::Bfloat16Vector(b) => Vector::Bfloat16Vector(pick_chunks(b, w, idx)),
                Vector::Int8Vector(b) => Vector::Int8Vector(pick_chunks(b, w, idx)),
                Vector::SparseFloatVector(s) => {
                    let contents = pick(&s.contents, idx);
                    dim = sparse_dim(&contents);
                    Vector::SparseFloatVector(SparseFloatArray { dim, contents })
                }
            });
            Field::Vectors(VectorField { dim, data, ..Default::default() })
        }
    });
    let valid_data = if f.valid_data.is_empty() { Vec::new() } else { pick(&f.valid_data, idx) };
    FieldData { field, valid_data, ..header(f) }
}

/// A column of `rows` nulls for a nullable or defaulted scalar field (a placeholder per row,
/// every row invalid): what a segment written before the field was added holds (Milvus 2.6
/// `AddCollectionField`). Written, the target gives each row the field's default, or null.
/// `None` for fields that can be neither (vectors, or no default and not nullable).
pub fn null_column(field: &crate::proto::schema::FieldSchema, rows: usize) -> Option<FieldData> {
    use crate::proto::schema::DataType as T;
    if !(field.nullable || field.default_value.is_some()) {
        return None;
    }
    let t = T::try_from(field.data_type).ok()?;
    let data = match t {
        T::Bool => Scalar::BoolData(BoolArray { data: vec![false; rows] }),
        T::Int8 | T::Int16 | T::Int32 => Scalar::IntData(IntArray { data: vec![0; rows] }),
        T::Int64 => Scalar::LongData(LongArray { data: vec![0; rows] }),
        T::Float => Scalar::FloatData(FloatArray { data: vec![0.0; rows] }),
        T::Double => Scalar::DoubleData(DoubleArray { data: vec![0.0; rows] }),
        T::VarChar | T::String => Scalar::StringData(StringArray { data: vec![String::new(); rows] }),
        T::Json => Scalar::JsonData(JsonArray { data: vec![b"null".to_vec(); rows] }),
        T::Geometry => Scalar::GeometryData(GeometryArray { data: vec![Vec::new(); rows] }),
        T::Timestamptz => Scalar::TimestamptzData(TimestamptzArray { data: vec![0; rows] }),
        T::Array => Scalar::ArrayData(ArrayArray { data: vec![ScalarField::default(); rows], element_type: field.element_type }),
        _ => return None,
    };
    Some(FieldData {
        r#type: field.data_type,
        field_name: field.name.clone(),
        field: Some(Field::Scalars(ScalarField { data: Some(data), ..Default::default() })),
        field_id: field.field_id,
        is_dynamic: field.is_dynamic,
        valid_data: vec![false; rows],
    })
}

/// Whether row `i` of `f` holds null (its field is nullable and the row has no value).
pub fn is_null(f: &FieldData, i: usize) -> bool {
    f.valid_data.get(i).is_some_and(|v| !v)
}

/// Rewrites a nullable column that carries values for its valid rows only (as SDKs send
/// them) into one value per row, a placeholder (the type's zero) where the row is null, so
/// every column of a batch is indexed by row. Columns already one value per row are kept.
///
/// Validity is read where the server put it: `FieldData.valid_data` (Milvus 2.4-2.6), or the
/// scalar's or vector's own `valid_data` (servers from late 2026, which prefer it); ferry
/// keeps it in `FieldData.valid_data`.
fn expand_nulls(f: &mut FieldData) {
    let inner = match &mut f.field {
        Some(Field::Scalars(s)) => std::mem::take(&mut s.valid_data),
        Some(Field::Vectors(v)) => std::mem::take(&mut v.valid_data),
        None => Vec::new(),
    };
    if !inner.is_empty() {
        f.valid_data = inner;
    }
    let rows = f.valid_data.len();
    let valid = f.valid_data.iter().filter(|v| **v).count();
    if rows == 0 || valid == rows {
        return;
    }
    fn expand<T: Default>(v: &mut Vec<T>, valid_data: &[bool]) {
        let mut values = std::mem::take(v).into_iter();
        *v = valid_data.iter().map(|ok| if *ok { values.next().unwrap_or_default() } else { T::default() }).collect();
    }
    let valid_data = &f.valid_data;
    if let Some(Field::Scalars(ScalarField { data: Some(d), .. })) = &mut f.field {
        if on_scalar!(&*d, a => a.data.len()) == valid {
            on_scalar!(d, a => expand(&mut a.data, valid_data));
        }
    }
}

/// The column as a server takes it: a nullable column's values for its valid rows only,
/// beside a validity entry for every row (what pymilvus sends; Milvus refuses a value in a
/// null row). Only for a column about to be written: its rows no longer line up.
pub(super) fn compact_nulls(f: &mut FieldData) {
    if f.valid_data.iter().all(|v| *v) {
        return;
    }
    let valid: Vec<usize> = (0..f.valid_data.len()).filter(|&i| f.valid_data[i]).collect();
    let valid_data = std::mem::take(&mut f.valid_data);
    *f = FieldData { valid_data, ..select_column(f, &valid) };
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
    pub fn new(mut columns: Vec<FieldData>) -> Result<Self, DataError> {
        columns.iter_mut().for_each(expand_nulls);
        let num_rows = columns.first().map(column_rows).unwrap_or(0);
        for c in &columns {
            if let Some(Field::Vectors(v)) = &c.field {
                let w = vector_row_width(v);
                let len = match &v.data {
                    Some(Vector::SparseFloatVector(_)) | None => 0,
                    Some(d) => vector_values(d),
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
            if got != num_rows || !c.valid_data.is_empty() && c.valid_data.len() != num_rows {
                return Err(DataError::RowCount {
                    field: c.field_name.clone(),
                    got: if got != num_rows { got } else { c.valid_data.len() },
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

    /// Bytes of each row, as [`Self::byte_size`] counts them (they sum to it).
    pub fn row_bytes(&self) -> Vec<usize> {
        let mut out = vec![0; self.num_rows];
        for c in &self.columns {
            add_row_bytes(c, &mut out);
        }
        out
    }

    /// Like [`Self::append`], taking `other` by value: into an empty batch it is moved, not
    /// copied (the first page of a batch costs nothing).
    pub fn append_owned(&mut self, other: Rows) -> Result<(), DataError> {
        if self.columns.is_empty() {
            *self = other;
            return Ok(());
        }
        self.append(&other)
    }

    /// Makes room for `additional` more rows in every column (so appending pages up to a
    /// batch bound does not reallocate and copy the batch as it grows).
    pub fn reserve(&mut self, additional: usize) {
        for c in &mut self.columns {
            if !c.valid_data.is_empty() {
                c.valid_data.reserve(additional);
            }
            match &mut c.field {
                Some(Field::Scalars(s)) => {
                    if let Some(d) = &mut s.data {
                        on_scalar!(d, a => a.data.reserve(additional))
                    }
                }
                Some(Field::Vectors(v)) => {
                    let w = vector_row_width(v);
                    match &mut v.data {
                        Some(Vector::FloatVector(a)) => a.data.reserve(additional * w),
                        Some(Vector::BinaryVector(b))
                        | Some(Vector::Float16Vector(b))
                        | Some(Vector::Bfloat16Vector(b))
                        | Some(Vector::Int8Vector(b)) => b.reserve(additional * w),
                        Some(Vector::SparseFloatVector(s)) => s.contents.reserve(additional),
                        None => {}
                    }
                }
                None => {}
            }
        }
    }

    /// Moves rows `at..` out into a new batch whose columns have room for `reserve_rows` more
    /// rows; this batch keeps rows `..at` where they are.
    pub fn split_off(&mut self, at: usize, reserve_rows: usize) -> Rows {
        let at = at.min(self.num_rows);
        let columns = self
            .columns
            .iter_mut()
            .map(|c| split_column_off(c, at, reserve_rows))
            .collect();
        let tail = Rows {
            columns,
            num_rows: self.num_rows - at,
        };
        self.num_rows = at;
        tail
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

    /// Splits into consecutive batches of at most `max_bytes` each (a single larger row goes
    /// alone), of even size (see [`even_cuts`]). Columns are moved apart from the back, so
    /// the first batch is not copied at all and every other row once.
    pub fn split_by_bytes(mut self, max_bytes: usize) -> Vec<Rows> {
        if self.num_rows <= 1 || self.byte_size() <= max_bytes {
            return vec![self];
        }
        let starts = even_cuts(&self.row_bytes(), max_bytes);
        let mut parts: Vec<Rows> = starts[1..]
            .iter()
            .rev()
            .map(|&at| self.split_off(at, 0))
            .collect();
        parts.push(self);
        parts.reverse();
        parts
    }

    /// Keeps the longest prefix of at most `max_bytes` (at least one row) and moves the rest
    /// out (with room for `reserve_rows` more rows), returning it and its byte size. For a
    /// writer that sends full batches and carries the rest over to the next page.
    pub fn split_after_bytes(&mut self, max_bytes: usize, reserve_rows: usize) -> (Rows, usize) {
        let sizes = self.row_bytes();
        let mut n = 0;
        let mut kept = 0;
        while n < sizes.len() && (n == 0 || kept + sizes[n] <= max_bytes) {
            kept += sizes[n];
            n += 1;
        }
        let rest_bytes = sizes[n..].iter().sum();
        (self.split_off(n, reserve_rows), rest_bytes)
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
                ..Default::default()
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
                ..Default::default()
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
        assert_eq!(
            all.primary_keys("id"),
            Some(PrimaryKeys::Int(vec![1, 2, 3]))
        );
        let picked = all.select(&[2, 0]);
        assert_eq!(
            picked.primary_keys("id"),
            Some(PrimaryKeys::Int(vec![3, 1]))
        );
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

    fn str_col(name: &str, v: Vec<String>) -> FieldData {
        FieldData {
            r#type: DataType::VarChar as i32,
            field_name: name.into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Scalar::StringData(StringArray { data: v })),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// `n` rows (ids `first..`) of an Int64 key, a 4-d float vector, a string of varying
    /// length (`len(i)`), a binary vector and an Int32 array: every kind of per-row size.
    fn mixed_rows(first: i64, n: usize, len: impl Fn(usize) -> usize) -> Rows {
        use crate::proto::schema::{ArrayArray, IntArray};
        let ids: Vec<i64> = (0..n as i64).map(|i| first + i).collect();
        let vecs: Vec<f32> = (0..n * 4).map(|i| i as f32).collect();
        let strs: Vec<String> = (0..n).map(|i| "x".repeat(len(i))).collect();
        let bins: Vec<u8> = (0..n * 2).map(|i| i as u8).collect();
        let arrays: Vec<ScalarField> = (0..n)
            .map(|i| ScalarField {
                data: Some(Scalar::IntData(IntArray {
                    data: vec![i as i32; i % 3],
                })),
                ..Default::default()
            })
            .collect();
        let scalar = |name: &str, d: Scalar| FieldData {
            field_name: name.into(),
            field: Some(Field::Scalars(ScalarField { data: Some(d), ..Default::default() })),
            ..Default::default()
        };
        Rows::new(vec![
            long_col("id", ids),
            vec_col("v", 4, vecs),
            str_col("s", strs),
            FieldData {
                field_name: "b".into(),
                field: Some(Field::Vectors(VectorField {
                    dim: 16,
                    data: Some(Vector::BinaryVector(bins)),
                    ..Default::default()
                })),
                ..Default::default()
            },
            scalar(
                "a",
                Scalar::ArrayData(ArrayArray {
                    data: arrays,
                    element_type: DataType::Int32 as i32,
                }),
            ),
        ])
        .unwrap()
    }

    fn joined(parts: &[Rows]) -> Rows {
        let mut all = Rows::default();
        for p in parts {
            all.append(p).unwrap();
        }
        all
    }

    /// A small deterministic generator (splitmix64) for table-free randomized cases.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn row_bytes_sum_to_byte_size() {
        let rows = mixed_rows(0, 7, |i| i * 5);
        let sizes = rows.row_bytes();
        assert_eq!(sizes.len(), 7);
        assert_eq!(sizes.iter().sum::<usize>(), rows.byte_size());
        // id 8 + vector 16 + string len+2 + binary 2 + array 4*(i%3)+4
        assert_eq!(sizes[4], 8 + 16 + (20 + 2) + 2 + (4 * 1 + 4));
    }

    #[test]
    fn even_cuts_are_even_bounded_and_cover_every_row() {
        // Equal rows: the fewest parts, row counts differing by at most one.
        assert_eq!(even_cuts(&[], 10), Vec::<usize>::new());
        assert_eq!(even_cuts(&[500; 16000], 8 << 20), vec![0]);
        let starts = even_cuts(&[615; 16000], 8 << 20);
        assert_eq!(starts, vec![0, 8000], "9.8 MB under 8 MiB: two halves");
        for (n, max) in [(10, 3), (100, 7), (1000, 33), (17, 16), (5, 1)] {
            let starts = even_cuts(&vec![1; n], max);
            assert_eq!(starts.len(), n.div_ceil(max), "n={n} max={max}");
            let mut lens: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
            lens.push(n - starts.last().unwrap());
            let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(hi - lo <= 1 && *hi <= max, "n={n} max={max}: {lens:?}");
        }
        // Random sizes (some rows over the bound): every part within the bound unless it is
        // a single larger row, parts consecutive from row 0, no more parts than filling each
        // up to the bound makes, and no bound below the largest part of several rows would
        // do with that many parts.
        let mut next = rng(3);
        for case in 0..3000 {
            let n = (next() % 300) as usize;
            let max = 1 + (next() % 500) as usize;
            let row_max = if case % 2 == 0 {
                max * 3 / 2
            } else {
                (max / 8).max(1)
            };
            let sizes: Vec<usize> = (0..n)
                .map(|_| (next() % (row_max as u64 + 1)) as usize)
                .collect();
            let starts = even_cuts(&sizes, max);
            if n == 0 {
                assert!(starts.is_empty());
                continue;
            }
            assert_eq!(starts[0], 0);
            assert!(starts.windows(2).all(|w| w[0] < w[1]), "case {case}");
            assert_eq!(
                starts.len(),
                fill_cuts(&sizes, max).len(),
                "case {case}: not the fewest parts"
            );
            let ends: Vec<usize> = starts[1..].iter().copied().chain([n]).collect();
            let mut largest = 0;
            for (&a, &b) in starts.iter().zip(&ends) {
                let part: usize = sizes[a..b].iter().sum();
                assert!(
                    part <= max || b - a == 1,
                    "case {case}: rows {a}..{b} = {part} > {max}"
                );
                if b - a > 1 {
                    largest = largest.max(part);
                }
            }
            if largest > 1 {
                assert!(
                    fill_cuts(&sizes, largest - 1).len() > starts.len(),
                    "case {case}: parts of at most {} bytes would do",
                    largest - 1
                );
            }
        }
    }

    #[test]
    fn split_by_bytes_keeps_every_row_in_order_within_the_bound() {
        let mut next = rng(11);
        for case in 0..200 {
            let n = 1 + (next() % 60) as usize;
            let lens: Vec<usize> = (0..n).map(|_| (next() % 40) as usize).collect();
            let rows = mixed_rows(100, n, |i| lens[i]);
            let max = 30 + (next() % 400) as usize;
            let parts = rows.clone().split_by_bytes(max);
            assert_eq!(joined(&parts), rows, "case {case}");
            for p in &parts {
                assert!(!p.is_empty());
                assert!(p.byte_size() <= max || p.len() == 1, "case {case}");
                assert_eq!(Rows::new(p.columns.clone()).unwrap().len(), p.len());
            }
            if rows.byte_size() <= max {
                assert_eq!(parts.len(), 1);
            }
        }
        // The case the copy used to hit: 16000 rows of ~600 bytes under 8 MiB: two halves
        // (by bytes; rows differ by up to 8 bytes here), not 8 MiB and a 1.3 MB remainder.
        let rows = mixed_rows(0, 16000, |_| 555);
        let parts = rows.clone().split_by_bytes(8 << 20);
        assert_eq!(parts.len(), 2);
        let (a, b) = (parts[0].byte_size(), parts[1].byte_size());
        assert!(
            a.abs_diff(b) <= 2 * 600,
            "{a} vs {b}: more than two rows apart"
        );
        assert_eq!(parts[0].len() + parts[1].len(), 16000);
    }

    #[test]
    fn split_after_bytes_keeps_the_longest_prefix_and_moves_the_rest() {
        let rows = mixed_rows(0, 40, |i| i % 7);
        let sizes = rows.row_bytes();
        for max in [
            1,
            50,
            100,
            333,
            1000,
            rows.byte_size(),
            rows.byte_size() + 1,
        ] {
            let mut head = rows.clone();
            let (rest, rest_bytes) = head.split_after_bytes(max, 25);
            let n = head.len();
            assert!(n >= 1);
            let kept: usize = sizes[..n].iter().sum();
            assert!(kept <= max || n == 1, "max {max}");
            assert!(
                n == rows.len() || kept + sizes[n] > max,
                "max {max}: prefix not longest"
            );
            assert_eq!(head.byte_size(), kept);
            assert_eq!(rest.byte_size(), rest_bytes);
            assert_eq!(joined(&[head, rest.clone()]), rows, "max {max}");
            // The rest has room for 25 more rows: appending them does not reallocate.
            let mut grown = rest;
            let cap = |r: &Rows| match &r.column("v").unwrap().field {
                Some(Field::Vectors(VectorField {
                    data: Some(Vector::FloatVector(a)),
                    ..
                })) => a.data.capacity(),
                _ => unreachable!(),
            };
            assert!(cap(&grown) >= (grown.len() + 25) * 4);
            let before = cap(&grown);
            grown.append(&mixed_rows(40, 25, |_| 1)).unwrap();
            assert_eq!(cap(&grown), before);
        }
    }

    #[test]
    fn append_owned_moves_into_an_empty_batch_and_appends_otherwise() {
        let a = mixed_rows(0, 3, |i| i);
        let b = mixed_rows(3, 2, |i| i + 1);
        let mut batch = Rows::default();
        batch.append_owned(a.clone()).unwrap();
        assert_eq!(batch, a);
        batch.reserve(100);
        assert_eq!(batch, a, "reserve keeps the rows");
        batch.append_owned(b.clone()).unwrap();
        let mut want = a.clone();
        want.append(&b).unwrap();
        assert_eq!(batch, want);
        assert_eq!(
            batch.primary_keys("id"),
            Some(PrimaryKeys::Int(vec![0, 1, 2, 3, 4]))
        );
        let wrong = Rows::new(vec![long_col("other", vec![9])]).unwrap();
        assert!(batch.append_owned(wrong).is_err());
    }

    #[test]
    fn mismatched_columns_are_errors_naming_the_field() {
        let bad = Rows::new(vec![
            long_col("id", vec![1, 2]),
            vec_col("v", 2, vec![1.0, 2.0]),
        ]);
        assert!(matches!(bad, Err(DataError::RowCount { ref field, .. }) if field == "v"));
        let bad = Rows::new(vec![vec_col("v", 3, vec![1.0, 2.0])]);
        assert!(matches!(bad, Err(DataError::BadVector { .. })));
        let mut a = Rows::new(vec![long_col("id", vec![1])]).unwrap();
        let b = Rows::new(vec![vec_col("id", 1, vec![1.0])]).unwrap();
        assert!(matches!(a.append(&b), Err(DataError::TypeMismatch { .. })));
    }
}

#[cfg(test)]
mod modern_tests {
    use super::*;
    use crate::proto::schema::DataType;

    fn nullable_ints(v: Vec<i32>, valid: Vec<bool>) -> FieldData {
        FieldData {
            r#type: DataType::Int32 as i32,
            field_name: "n".into(),
            field: Some(Field::Scalars(ScalarField { data: Some(Scalar::IntData(IntArray { data: v })), ..Default::default() })),
            valid_data: valid,
            ..Default::default()
        }
    }

    fn sparse(rows: &[&[(u32, f32)]]) -> FieldData {
        let contents: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| r.iter().flat_map(|(i, v)| [i.to_le_bytes(), v.to_le_bytes()].concat()).collect())
            .collect();
        FieldData {
            r#type: DataType::SparseFloatVector as i32,
            field_name: "sp".into(),
            field: Some(Field::Vectors(VectorField {
                dim: sparse_dim(&contents),
                data: Some(Vector::SparseFloatVector(SparseFloatArray { dim: sparse_dim(&contents), contents })),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn ints(f: &FieldData) -> (&[i32], &[bool]) {
        match &f.field {
            Some(Field::Scalars(ScalarField { data: Some(Scalar::IntData(a)), .. })) => (&a.data, &f.valid_data),
            other => panic!("{other:?}"),
        }
    }

    /// A compact nullable column (values of valid rows only, as SDKs send it) is expanded to
    /// one value per row; selecting, splitting and appending keep each row's validity with
    /// its value; compacting for a write gives the SDK's shape back.
    #[test]
    fn nullable_columns_keep_validity_row_by_row() {
        let rows = Rows::new(vec![nullable_ints(vec![5, 7], vec![false, true, false, true]), sparse(&[&[(1, 0.5)], &[], &[(9, 1.0), (100_000, 2.0)], &[(3, 0.25)]])]).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(ints(&rows.columns[0]), (&[0, 5, 0, 7][..], &[false, true, false, true][..]));
        let picked = rows.select(&[3, 0]);
        assert_eq!(ints(&picked.columns[0]), (&[7, 0][..], &[true, false][..]));
        match &picked.columns[1].field {
            Some(Field::Vectors(v)) => assert_eq!(v.dim, 4, "dim follows the rows kept"),
            other => panic!("{other:?}"),
        }
        let mut head = rows.clone();
        let tail = head.split_off(1, 0);
        assert_eq!(ints(&head.columns[0]), (&[0][..], &[false][..]));
        assert_eq!(ints(&tail.columns[0]), (&[5, 0, 7][..], &[true, false, true][..]));
        let mut joined = head.clone();
        joined.append(&tail).unwrap();
        assert_eq!(joined, rows);
        // A column without validity joining one with: all its rows are valid.
        let mut mixed = Rows::new(vec![nullable_ints(vec![1], vec![])]).unwrap();
        mixed.append(&Rows::new(vec![nullable_ints(vec![0, 2], vec![false, true])]).unwrap()).unwrap();
        assert_eq!(ints(&mixed.columns[0]), (&[1, 0, 2][..], &[true, false, true][..]));
        let mut c = rows.columns[0].clone();
        compact_nulls(&mut c);
        assert_eq!(ints(&c), (&[5, 7][..], &[false, true, false, true][..]));
        assert_eq!(rows.row_bytes().iter().sum::<usize>(), rows.byte_size());
        // Validity where newer servers put it (the scalar's own) is read the same.
        let mut inner = nullable_ints(vec![5, 7], vec![]);
        if let Some(Field::Scalars(s)) = &mut inner.field {
            s.valid_data = vec![false, true, false, true];
        }
        let rows2 = Rows::new(vec![inner]).unwrap();
        assert_eq!(ints(&rows2.columns[0]), (&[0, 5, 0, 7][..], &[false, true, false, true][..]));
    }
}
