//! Decoding an event's Parquet payload into a Milvus column.
//!
//! Arrow types per Milvus type, as Milvus writes them: `milvusDataTypeToArrowType` in
//! `internal/storage/payload_writer.go` (`InsertCodec`; one column named `val`) and the
//! `serdeMap` of `internal/storage/serde.go` (`BinlogStreamWriter`, which compaction uses
//! from 2.4 on and later versions flush with; the column is named by the field id and
//! always declared nullable), both of milvus-io/milvus:
//! Bool → boolean; Int8/16/32/64 → int8/16/32/64; Float → float32; Double → float64;
//! VarChar/String → utf8; JSON → binary; Array → binary holding a serialized `ScalarField`;
//! FloatVector → fixed_size_binary(dim*4) of little-endian f32; BinaryVector →
//! fixed_size_binary(dim/8); Float16/BFloat16Vector (2.4) → fixed_size_binary(dim*2);
//! SparseFloatVector (2.4) → binary, each row the bytes of one `SparseFloatArray.contents`
//! entry as the gRPC API carries it (`AddSparseFloatVectorToPayload` appends them as they
//! are): little-endian (u32 index, f32 value) pairs, possibly none; Int8Vector (2.5) →
//! fixed_size_binary(dim); Timestamptz (2.6) → int64 (microseconds since the epoch, UTC);
//! Geometry (2.6) → binary holding WKB.
//! Readers may see the same Parquet column as a sibling Arrow type (large or view strings,
//! binary for unannotated strings), so each Milvus type accepts those siblings too; small
//! integers are range-checked because Int8/Int16 travel as IntData (i32).
//!
//! Nullable fields (2.4+): a null row is an Arrow null (Parquet definition level 0), the
//! writers' `AppendNull`. It becomes a row-aligned placeholder with `valid_data` false, the
//! way [`crate::milvus::Rows`] holds nullable columns: an empty value, or for bools and
//! numbers the slot the Parquet reader leaves (false, zero). Nothing downstream reads it:
//! digests hash null as null and writes drop null rows. A column of a nullable field always
//! carries `valid_data`, one entry per row. A null in a field the schema does not mark
//! nullable is an error naming the row. Nullable vector fields (newer Milvus stores them in
//! another layout) are refused.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{Array, ArrayRef};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Type as Physical;
use parquet::file::metadata::ParquetMetaData;
use prost::Message;

use super::{field_dim, pages, type_name, BinlogError, DataEvent};
use crate::milvus::data::sparse_dim;
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, ArrayArray,
    BoolArray, DataType, DoubleArray, FieldData, FieldSchema, FloatArray, GeometryArray, IntArray,
    JsonArray, LongArray, ScalarField, SparseFloatArray, StringArray, TimestamptzArray,
    VectorField,
};

const BATCH_ROWS: usize = 4096;
/// Bytes of one sparse vector entry: u32 index, f32 value.
const SPARSE_PAIR: usize = 8;

/// A column being assembled from one or more events, typed by the schema field.
pub(super) struct Column {
    field: FieldSchema,
    values: Values,
    /// Whether each row holds a value; kept for nullable fields only.
    valid: Option<Vec<bool>>,
    rows: usize,
}

enum Values {
    Bool(Vec<bool>),
    /// Int8/Int16/Int32, with the range the field's type allows.
    Int(Vec<i32>, i32, i32),
    /// Int64, and Timestamptz (microseconds since the epoch, UTC).
    Long(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Str(Vec<String>),
    /// JSON documents, and Geometry values (WKB): bytes as stored.
    Bytes(Vec<Vec<u8>>),
    Array(Vec<ScalarField>),
    /// Sparse rows: little-endian (u32 index, f32 value) pairs each.
    Sparse(Vec<Vec<u8>>),
    FloatVector(Vec<f32>),
    /// Binary, Float16, BFloat16 and Int8 vectors: raw bytes, `dim * num / den` bytes a row.
    ByteVector(Vec<u8>, i64, i64),
}

/// What decoding one payload needs, from its footer and page headers.
pub(super) struct Plan {
    /// Rows the footer declares.
    pub rows: u64,
    /// Bytes the decoded rows are kept in (an upper bound for plain pages, the dictionary's
    /// mean entry length for dictionary pages).
    pub kept: u64,
    /// The reader's own buffers: decompressed pages and the decoded dictionary.
    pub internal: u64,
    /// Most bytes one row of a decoded batch can take.
    pub row_bound: u64,
    /// Bytes of one fixed-width value (0 for variable-length ones).
    width: u64,
}

impl Plan {
    /// Bytes to set aside for decoding a payload: its kept values, the reader's buffers, and
    /// room for a batch as large as the kept values (at least one row).
    pub(super) fn reservation(&self) -> u64 {
        let batch = self
            .kept
            .min(self.row_bound.saturating_mul(2 * BATCH_ROWS as u64))
            .max(2 * self.row_bound);
        self.kept
            .saturating_add(self.internal)
            .saturating_add(batch)
    }
}

/// Bytes a decoded `String`/`Vec<u8>` row holds besides its value.
const ROW_OVERHEAD: u64 = std::mem::size_of::<Vec<u8>>() as u64;
/// An Array row: the `ScalarField` and its vector; values decode from varints of at least
/// one byte to at most 8 bytes each.
const ARRAY_ROW_OVERHEAD: u64 = 64;
const ARRAY_EXPANSION: u64 = 8;

impl Values {
    /// The Parquet physical type the field's values are stored as, and their width (bytes
    /// of one value; for fixed_len_byte_array, the exact length the field's dim requires).
    fn physical(&self, ctx: &Ctx<'_>) -> Result<(Physical, u64), BinlogError> {
        Ok(match self {
            Values::Bool(_) => (Physical::BOOLEAN, 1),
            Values::Int(..) => (Physical::INT32, 4),
            Values::Long(_) => (Physical::INT64, 8),
            Values::Float(_) => (Physical::FLOAT, 4),
            Values::Double(_) => (Physical::DOUBLE, 8),
            Values::Str(_) | Values::Bytes(_) | Values::Array(_) | Values::Sparse(_) => {
                (Physical::BYTE_ARRAY, 0)
            }
            Values::FloatVector(_) => (
                Physical::FIXED_LEN_BYTE_ARRAY,
                vector_bytes(ctx, 4, 1)? as u64,
            ),
            Values::ByteVector(_, num, den) => (
                Physical::FIXED_LEN_BYTE_ARRAY,
                vector_bytes(ctx, *num, *den)? as u64,
            ),
        })
    }

    /// Variable-length values: bytes per row besides the value, and the value's expansion.
    fn byte_costs(&self) -> (u64, u64) {
        match self {
            Values::Array(_) => (ARRAY_ROW_OVERHEAD, ARRAY_EXPANSION),
            _ => (ROW_OVERHEAD, 1),
        }
    }

    /// Sets aside room for `rows` more rows of `width` bytes (fixed-width values).
    fn reserve(&mut self, rows: usize, width: u64) {
        match self {
            Values::Bool(v) => v.reserve_exact(rows),
            Values::Int(v, ..) => v.reserve_exact(rows),
            Values::Long(v) => v.reserve_exact(rows),
            Values::Float(v) => v.reserve_exact(rows),
            Values::Double(v) => v.reserve_exact(rows),
            Values::Str(v) => v.reserve_exact(rows),
            Values::Bytes(v) | Values::Sparse(v) => v.reserve_exact(rows),
            Values::Array(v) => v.reserve_exact(rows),
            Values::FloatVector(v) => v.reserve_exact(rows.saturating_mul(width as usize / 4)),
            Values::ByteVector(v, ..) => v.reserve_exact(rows.saturating_mul(width as usize)),
        }
    }

    /// Bytes the rows of `col` take once kept, as [`Plan::kept`] counts them.
    fn cost(&self, col: &ArrayRef) -> u64 {
        let rows = col.len() as u64;
        let (per_row, factor) = self.byte_costs();
        match self {
            Values::Str(_) | Values::Bytes(_) | Values::Array(_) | Values::Sparse(_) => {
                let mut bytes = 0u64;
                let _ = for_each_bytes(col, |_, b| {
                    bytes += b.map_or(0, <[u8]>::len) as u64;
                    Ok(())
                });
                rows * per_row + bytes * factor
            }
            Values::Bool(_) => rows,
            Values::Int(..) | Values::Float(_) => rows * 4,
            Values::Long(_) | Values::Double(_) => rows * 8,
            Values::FloatVector(_) | Values::ByteVector(..) => col
                .as_fixed_size_binary_opt()
                .map_or(0, |a| rows * a.value_length().max(0) as u64),
        }
    }
}

/// What the decoder needs to name a problem: the file, the event payload's offset.
struct Ctx<'a> {
    file: &'a str,
    offset: usize,
    field: &'a FieldSchema,
}

impl Ctx<'_> {
    fn bad(&self, what: String) -> BinlogError {
        BinlogError::BadPayload {
            file: self.file.to_string(),
            offset: self.offset,
            what,
        }
    }
    fn mismatch(&self, got: &arrow_schema::DataType, want: &str) -> BinlogError {
        BinlogError::TypeMismatch {
            file: self.file.to_string(),
            offset: self.offset,
            field: self.field.name.clone(),
            field_id: self.field.field_id,
            got: format!("arrow {got}"),
            want: format!("{} ({want})", type_name(self.field.data_type)),
        }
    }
}

impl Column {
    /// An empty column for `field`; `file` names the binlog if the type is unsupported.
    pub(super) fn new(file: &str, field: &FieldSchema) -> Result<Column, BinlogError> {
        let refuse = |what: String| BinlogError::BadPayload {
            file: file.to_string(),
            offset: 0,
            what: format!(
                "field {:?} {what}, which ferry cannot read from binlogs",
                field.name
            ),
        };
        let dt = DataType::try_from(field.data_type).unwrap_or(DataType::None);
        let values = match dt {
            DataType::Bool => Values::Bool(Vec::new()),
            DataType::Int8 => Values::Int(Vec::new(), i8::MIN as i32, i8::MAX as i32),
            DataType::Int16 => Values::Int(Vec::new(), i16::MIN as i32, i16::MAX as i32),
            DataType::Int32 => Values::Int(Vec::new(), i32::MIN, i32::MAX),
            DataType::Int64 | DataType::Timestamptz => Values::Long(Vec::new()),
            DataType::Float => Values::Float(Vec::new()),
            DataType::Double => Values::Double(Vec::new()),
            DataType::String | DataType::VarChar => Values::Str(Vec::new()),
            DataType::Json | DataType::Geometry => Values::Bytes(Vec::new()),
            DataType::Array => Values::Array(Vec::new()),
            DataType::SparseFloatVector => Values::Sparse(Vec::new()),
            DataType::FloatVector => Values::FloatVector(Vec::new()),
            DataType::BinaryVector => Values::ByteVector(Vec::new(), 1, 8),
            DataType::Float16Vector | DataType::BFloat16Vector => {
                Values::ByteVector(Vec::new(), 2, 1)
            }
            DataType::Int8Vector => Values::ByteVector(Vec::new(), 1, 1),
            _ => return Err(refuse(format!("has type {}", type_name(field.data_type)))),
        };
        let vector = matches!(
            values,
            Values::Sparse(_) | Values::FloatVector(_) | Values::ByteVector(..)
        );
        if field.nullable && vector {
            return Err(refuse(format!(
                "is a nullable {}",
                type_name(field.data_type)
            )));
        }
        Ok(Column {
            field: field.clone(),
            values,
            valid: field.nullable.then(Vec::new),
            rows: 0,
        })
    }

    /// Decodes one event's payload and appends its rows. `budget` is the decoded bytes this
    /// file may still produce.
    ///
    /// The Parquet reader asserts on some malformed footers instead of returning an error;
    /// the footer is checked first for the cases known to do that, and a panic that still
    /// escapes the reader is turned into an error naming the payload (the column is then
    /// discarded by the caller).
    pub(super) fn decode(
        &mut self,
        file: &str,
        ev: &DataEvent,
        budget: &mut u64,
    ) -> Result<(), BinlogError> {
        catch_reader_panic(file, ev, || self.decode_checked(file, ev, budget))
    }

    fn decode_checked(
        &mut self,
        file: &str,
        ev: &DataEvent,
        budget: &mut u64,
    ) -> Result<(), BinlogError> {
        let field = self.field.clone();
        let ctx = Ctx {
            file,
            offset: ev.payload_offset,
            field: &field,
        };
        let pq = |source| BinlogError::Parquet {
            file: file.to_string(),
            offset: ev.payload_offset,
            source,
        };
        let builder = reader_builder(ev).map_err(pq)?;
        let plan = self.plan(&ctx, builder.metadata(), &ev.payload, *budget)?;
        let need = plan.kept + plan.internal + 2 * plan.row_bound;
        if need > *budget {
            return Err(ctx.bad(format!(
                "{} rows may decode to {need} bytes, more than the {} left for this file",
                plan.rows, *budget
            )));
        }
        // The batch is sized from what is left once the kept values and the reader's own
        // buffers are accounted for, so even values that all repeat the largest dictionary
        // entry stay within the budget; the columns are sized once, not grown by doubling.
        let batch = ((*budget - plan.kept - plan.internal) / (2 * plan.row_bound))
            .clamp(1, BATCH_ROWS as u64);
        self.values.reserve(plan.rows as usize, plan.width);
        if let Some(valid) = &mut self.valid {
            valid.reserve_exact(plan.rows as usize);
        }
        let reader = builder
            .with_batch_size(batch as usize)
            .build()
            .map_err(pq)?;
        for batch in reader {
            let batch = batch.map_err(|e| pq(e.into()))?;
            let col = batch.column(0);
            let cost = self.values.cost(col) + self.valid.as_ref().map_or(0, |_| col.len() as u64);
            if cost > *budget {
                return Err(ctx.bad(format!(
                    "decoded values exceed the limit for one binlog file ({} bytes left)",
                    *budget
                )));
            }
            *budget -= cost;
            match &mut self.valid {
                Some(valid) => valid.extend((0..col.len()).map(|i| col.is_valid(i))),
                None if col.null_count() > 0 => {
                    let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
                    return Err(ctx.bad(format!(
                        "row {}: null in field {:?}, which the schema does not mark nullable",
                        self.rows + row,
                        field.name
                    )));
                }
                None => {}
            }
            self.push(&ctx, col)?;
            self.rows += col.len();
        }
        Ok(())
    }

    /// What decoding `ev` needs, from its footer and page headers, checked before any value
    /// is decoded: the column's physical type and width against the field, and the chunks.
    pub(super) fn estimate(
        &self,
        file: &str,
        ev: &DataEvent,
        budget: u64,
    ) -> Result<Plan, BinlogError> {
        let ctx = Ctx {
            file,
            offset: ev.payload_offset,
            field: &self.field,
        };
        catch_reader_panic(file, ev, || {
            let builder = reader_builder(ev).map_err(|source| BinlogError::Parquet {
                file: file.to_string(),
                offset: ev.payload_offset,
                source,
            })?;
            self.plan(&ctx, builder.metadata(), &ev.payload, budget)
        })
    }

    fn plan(
        &self,
        ctx: &Ctx<'_>,
        meta: &ParquetMetaData,
        payload: &[u8],
        budget: u64,
    ) -> Result<Plan, BinlogError> {
        let schema = meta.file_metadata().schema_descr();
        let columns = schema.num_columns();
        if columns != 1 {
            return Err(ctx.bad(format!("Parquet payload has {columns} columns, want 1")));
        }
        let c = schema.column(0);
        let (want, width) = self.values.physical(ctx)?;
        let got = c.physical_type();
        let got_width = (got == Physical::FIXED_LEN_BYTE_ARRAY).then(|| c.type_length() as u64);
        if got != want || (want == Physical::FIXED_LEN_BYTE_ARRAY && got_width != Some(width)) {
            let show = |t: Physical, w: Option<u64>| match w {
                Some(w) => format!("{t}({w})"),
                None => t.to_string(),
            };
            let want_width = (want == Physical::FIXED_LEN_BYTE_ARRAY).then_some(width);
            return Err(BinlogError::TypeMismatch {
                file: ctx.file.to_string(),
                offset: ctx.offset,
                field: ctx.field.name.clone(),
                field_id: ctx.field.field_id,
                got: format!("parquet {}", show(got, got_width)),
                want: format!(
                    "{} (parquet {})",
                    type_name(ctx.field.data_type),
                    show(want, want_width)
                ),
            });
        }
        let d = check_footer(ctx, meta, payload, budget)?;
        let rows = d.rows;
        let (kept, row_bound) = if want == Physical::BYTE_ARRAY {
            // Plain pages hold each value once; dictionary pages let every row repeat an
            // entry, taken at the dictionary's mean entry length.
            let mean = d.dict_bytes.div_ceil(d.dict_values.max(1));
            let values = (d.total - d.dict_bytes).saturating_add(rows.saturating_mul(mean));
            let (per_row, factor) = self.values.byte_costs();
            (
                rows.saturating_mul(per_row)
                    .saturating_add(values.saturating_mul(factor)),
                d.max_page.saturating_add(8),
            )
        } else {
            (rows.saturating_mul(width), width.max(1).saturating_add(8))
        };
        // A nullable field keeps one validity entry a row.
        let kept = kept.saturating_add(self.valid.as_ref().map_or(0, |_| rows));
        let internal = d
            .max_page
            .saturating_mul(2)
            .saturating_add(d.dict_bytes)
            .saturating_add(d.dict_values.saturating_mul(8))
            .saturating_add(64 << 10);
        Ok(Plan {
            rows,
            kept,
            internal,
            row_bound,
            width,
        })
    }

    /// Appends the values of `col`. A null row (only in a nullable field, checked before)
    /// gets an empty value, or for a bool or number the slot the reader left (false, zero).
    fn push(&mut self, ctx: &Ctx<'_>, col: &ArrayRef) -> Result<(), BinlogError> {
        let dt = col.data_type();
        let first_row = self.rows;
        match &mut self.values {
            Values::Bool(v) => {
                let a = col
                    .as_boolean_opt()
                    .ok_or_else(|| ctx.mismatch(dt, "boolean"))?;
                v.extend(a.values().iter());
            }
            Values::Int(v, lo, hi) => {
                let (lo, hi) = (*lo, *hi);
                let start = v.len();
                if let Some(a) = col.as_primitive_opt::<Int8Type>() {
                    v.extend(a.values().iter().map(|&x| x as i32));
                } else if let Some(a) = col.as_primitive_opt::<Int16Type>() {
                    v.extend(a.values().iter().map(|&x| x as i32));
                } else if let Some(a) = col.as_primitive_opt::<Int32Type>() {
                    v.extend_from_slice(a.values());
                } else {
                    return Err(ctx.mismatch(dt, "int8/int16/int32"));
                }
                if let Some(i) = v[start..].iter().position(|x| *x < lo || *x > hi) {
                    return Err(ctx.bad(format!(
                        "value {} at row {} is out of range for {}",
                        v[start + i],
                        first_row + i,
                        type_name(ctx.field.data_type)
                    )));
                }
            }
            Values::Long(v) => {
                let a = col
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| ctx.mismatch(dt, "int64"))?;
                v.extend_from_slice(a.values());
            }
            Values::Float(v) => {
                let a = col
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(|| ctx.mismatch(dt, "float32"))?;
                v.extend_from_slice(a.values());
            }
            Values::Double(v) => {
                let a = col
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| ctx.mismatch(dt, "float64"))?;
                v.extend_from_slice(a.values());
            }
            Values::Str(v) => {
                for_each_bytes(col, |i, b| {
                    let s = std::str::from_utf8(b.unwrap_or_default()).map_err(|e| {
                        ctx.bad(format!("row {}: string is not UTF-8: {e}", first_row + i))
                    })?;
                    v.push(s.to_string());
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "utf8"))??;
            }
            Values::Bytes(v) => {
                for_each_bytes(col, |_, b| {
                    v.push(b.unwrap_or_default().to_vec());
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "binary"))??;
            }
            Values::Array(v) => {
                let elem = ctx.field.element_type;
                for_each_bytes(col, |i, b| {
                    let Some(b) = b else {
                        v.push(ScalarField::default());
                        return Ok(());
                    };
                    let sf = ScalarField::decode(b).map_err(|e| {
                        ctx.bad(format!(
                            "row {}: array value is not a ScalarField: {e}",
                            first_row + i
                        ))
                    })?;
                    v.push(check_element(ctx, sf, elem, first_row + i)?);
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "binary"))??;
            }
            Values::Sparse(v) => {
                for_each_bytes(col, |i, b| {
                    let b = b.unwrap_or_default();
                    if b.len() % SPARSE_PAIR != 0 {
                        return Err(ctx.bad(format!(
                            "row {}: a sparse vector of {} bytes is not whole (u32 index, f32 \
                             value) pairs",
                            first_row + i,
                            b.len()
                        )));
                    }
                    v.push(b.to_vec());
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "binary"))??;
            }
            Values::FloatVector(v) => {
                let a = col
                    .as_fixed_size_binary_opt()
                    .ok_or_else(|| ctx.mismatch(dt, "fixed_size_binary(dim*4)"))?;
                vector_width(ctx, a.value_length(), 4, 1, dt)?;
                for i in 0..a.len() {
                    v.extend(
                        a.value(i)
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
            }
            Values::ByteVector(v, num, den) => {
                let a = col
                    .as_fixed_size_binary_opt()
                    .ok_or_else(|| ctx.mismatch(dt, "fixed_size_binary"))?;
                vector_width(ctx, a.value_length(), *num, *den, dt)?;
                for i in 0..a.len() {
                    v.extend_from_slice(a.value(i));
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> FieldData {
        let f = &self.field;
        let dt = DataType::try_from(f.data_type).unwrap_or(DataType::None);
        let dim = field_dim(f).unwrap_or(0);
        let scalars = |data| Some(Field::Scalars(ScalarField { data: Some(data), ..Default::default() }));
        let vectors = |dim, data| {
            Some(Field::Vectors(VectorField {
                dim,
                data: Some(data),
                ..Default::default()
            }))
        };
        let field = match self.values {
            Values::Bool(data) => scalars(Scalar::BoolData(BoolArray { data })),
            Values::Int(data, ..) => scalars(Scalar::IntData(IntArray { data })),
            Values::Long(data) if dt == DataType::Timestamptz => {
                scalars(Scalar::TimestamptzData(TimestamptzArray { data }))
            }
            Values::Long(data) => scalars(Scalar::LongData(LongArray { data })),
            Values::Float(data) => scalars(Scalar::FloatData(FloatArray { data })),
            Values::Double(data) => scalars(Scalar::DoubleData(DoubleArray { data })),
            Values::Str(data) => scalars(Scalar::StringData(StringArray { data })),
            Values::Bytes(data) if dt == DataType::Geometry => {
                scalars(Scalar::GeometryData(GeometryArray { data }))
            }
            Values::Bytes(data) => scalars(Scalar::JsonData(JsonArray { data })),
            Values::Array(data) => scalars(Scalar::ArrayData(ArrayArray {
                data,
                element_type: f.element_type,
            })),
            Values::Sparse(contents) => {
                let dim = sparse_dim(&contents);
                vectors(
                    dim,
                    Vector::SparseFloatVector(SparseFloatArray { contents, dim }),
                )
            }
            Values::FloatVector(data) => vectors(dim, Vector::FloatVector(FloatArray { data })),
            Values::ByteVector(data, ..) => vectors(
                dim,
                match dt {
                    DataType::BinaryVector => Vector::BinaryVector(data),
                    DataType::Float16Vector => Vector::Float16Vector(data),
                    DataType::Int8Vector => Vector::Int8Vector(data),
                    _ => Vector::Bfloat16Vector(data),
                },
            ),
        };
        FieldData {
            r#type: f.data_type,
            field_name: f.name.clone(),
            field,
            field_id: f.field_id,
            is_dynamic: f.is_dynamic,
            valid_data: self.valid.unwrap_or_default(),
        }
    }
}

/// What a payload's footer and page headers declare, summed over its column chunks.
#[derive(Default)]
struct Footer {
    rows: u64,
    total: u64,
    max_page: u64,
    dict_bytes: u64,
    dict_values: u64,
}

/// Checks the footer's row counts and column chunk ranges: chunks must lie inside the
/// payload, and their declared uncompressed sizes, in the footer and in every page header,
/// within the decode budget.
fn check_footer(
    ctx: &Ctx<'_>,
    meta: &ParquetMetaData,
    payload: &[u8],
    budget: u64,
) -> Result<Footer, BinlogError> {
    let payload_len = payload.len() as u64;
    let mut out = Footer::default();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(ctx.bad(format!("row group {g} has {} rows", rg.num_rows())));
        }
        out.rows = out.rows.saturating_add(rg.num_rows() as u64);
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let (len, raw) = (c.compressed_size(), c.uncompressed_size());
            let end = start.checked_add(len);
            if start < 0 || len < 0 || end.is_none_or(|e| e as u64 > payload_len) {
                return Err(ctx.bad(format!(
                    "row group {g} column chunk at {start} (+{len}) lies outside the \
                     {payload_len}-byte payload"
                )));
            }
            if raw < 0 || raw as u64 > budget || c.num_values() < 0 {
                return Err(ctx.bad(format!(
                    "row group {g} declares {raw} uncompressed bytes and {} values, \
                     beyond the decode limit ({budget} bytes left)",
                    c.num_values()
                )));
            }
            // Both ends were checked against the payload above.
            let chunk = &payload[start as usize..(start + len) as usize];
            let d = pages::declared(chunk, budget.saturating_sub(out.total))
                .map_err(|e| ctx.bad(format!("row group {g}: {e}")))?;
            out.total = out.total.saturating_add(d.total);
            out.max_page = out.max_page.max(d.max_page);
            out.dict_bytes = out.dict_bytes.saturating_add(d.dict_bytes);
            out.dict_values = out.dict_values.saturating_add(d.dict_values);
        }
    }
    Ok(out)
}

thread_local! {
    /// Set while this thread runs the Parquet reader under [`catch_reader_panic`].
    static IN_READER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays quiet for panics [`catch_reader_panic`] turns
/// into errors and hands every other panic to the hook that was there before. Without it a
/// malformed payload prints a panic report, and with `RUST_BACKTRACE` set the report's
/// symbolized backtrace loads the binary's debug info (tens of MB, kept for the process:
/// what the fuzz tests saw as a 67 MB case under a 16 MiB decode limit).
fn quiet_reader_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_READER.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic of the Parquet reader into an error naming the payload.
fn catch_reader_panic<T>(
    file: &str,
    ev: &DataEvent,
    f: impl FnOnce() -> Result<T, BinlogError>,
) -> Result<T, BinlogError> {
    quiet_reader_panics();
    let was = IN_READER.with(|r| r.replace(true));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_READER.with(|r| r.set(was));
    caught.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        Err(BinlogError::BadPayload {
            file: file.to_string(),
            offset: ev.payload_offset,
            what: format!("the Parquet reader failed on a malformed payload: {msg}"),
        })
    })
}

/// Milvus's writer stores no Arrow schema; types come from the Parquet schema, and an
/// embedded (untrusted) IPC schema is never parsed.
fn reader_builder(
    ev: &DataEvent,
) -> Result<ParquetRecordBatchReaderBuilder<bytes::Bytes>, parquet::errors::ParquetError> {
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    ParquetRecordBatchReaderBuilder::try_new_with_options(ev.payload.clone(), options)
}

/// The bytes a vector field's rows take: `dim * num / den`.
fn vector_bytes(ctx: &Ctx<'_>, num: i64, den: i64) -> Result<i64, BinlogError> {
    let dim = field_dim(ctx.field).unwrap_or(0);
    // The dim comes from an untrusted schema: keep the arithmetic from overflowing.
    let bytes = dim
        .checked_mul(num)
        .filter(|_| dim > 0 && dim <= i64::from(i32::MAX));
    bytes
        .filter(|b| b % den == 0)
        .map(|b| b / den)
        .ok_or_else(|| {
            ctx.bad(format!(
                "vector field {:?} has no usable dim type parameter (got {dim})",
                ctx.field.name
            ))
        })
}

/// Checks a vector column's byte width against the field's dim: `width = dim * num / den`.
fn vector_width(
    ctx: &Ctx<'_>,
    width: i32,
    num: i64,
    den: i64,
    dt: &arrow_schema::DataType,
) -> Result<(), BinlogError> {
    let want = vector_bytes(ctx, num, den)?;
    if width as i64 != want {
        let dim = field_dim(ctx.field).unwrap_or(0);
        return Err(ctx.mismatch(dt, &format!("fixed_size_binary({want}) for dim {dim}")));
    }
    Ok(())
}

/// Calls `f(row, bytes)` for each value of a binary or string column, `None` for a null
/// row; `None` when the column holds neither.
fn for_each_bytes(
    col: &ArrayRef,
    mut f: impl FnMut(usize, Option<&[u8]>) -> Result<(), BinlogError>,
) -> Option<Result<(), BinlogError>> {
    fn each<'a>(
        col: &ArrayRef,
        get: impl Fn(usize) -> &'a [u8],
        f: &mut impl FnMut(usize, Option<&[u8]>) -> Result<(), BinlogError>,
    ) -> Result<(), BinlogError> {
        (0..col.len()).try_for_each(|i| f(i, col.is_valid(i).then(|| get(i))))
    }
    Some(if let Some(a) = col.as_binary_opt::<i32>() {
        each(col, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_binary_opt::<i64>() {
        each(col, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_string_opt::<i32>() {
        each(col, |i| a.value(i).as_bytes(), &mut f)
    } else if let Some(a) = col.as_string_opt::<i64>() {
        each(col, |i| a.value(i).as_bytes(), &mut f)
    } else if let Some(a) = col.as_binary_view_opt() {
        each(col, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_string_view_opt() {
        each(col, |i| a.value(i).as_bytes(), &mut f)
    } else {
        return None;
    })
}

/// An array value must hold the field's element type; an empty array may arrive without
/// any data and is given the element type's empty list.
fn check_element(
    ctx: &Ctx<'_>,
    sf: ScalarField,
    elem: i32,
    row: usize,
) -> Result<ScalarField, BinlogError> {
    let et = DataType::try_from(elem).unwrap_or(DataType::None);
    let ok = match (&sf.data, et) {
        (None, _) => {
            let data = match et {
                DataType::Bool => Scalar::BoolData(BoolArray::default()),
                DataType::Int8 | DataType::Int16 | DataType::Int32 => {
                    Scalar::IntData(IntArray::default())
                }
                DataType::Int64 => Scalar::LongData(LongArray::default()),
                DataType::Float => Scalar::FloatData(FloatArray::default()),
                DataType::Double => Scalar::DoubleData(DoubleArray::default()),
                DataType::String | DataType::VarChar => Scalar::StringData(StringArray::default()),
                _ => return Ok(sf),
            };
            return Ok(ScalarField { data: Some(data), ..Default::default() });
        }
        (Some(Scalar::BoolData(_)), DataType::Bool) => true,
        (Some(Scalar::IntData(_)), DataType::Int8 | DataType::Int16 | DataType::Int32) => true,
        (Some(Scalar::LongData(_)), DataType::Int64) => true,
        (Some(Scalar::FloatData(_)), DataType::Float) => true,
        (Some(Scalar::DoubleData(_)), DataType::Double) => true,
        (Some(Scalar::StringData(_)), DataType::String | DataType::VarChar) => true,
        _ => false,
    };
    if !ok {
        return Err(ctx.bad(format!(
            "row {row}: array value does not hold the field's element type {}",
            type_name(elem)
        )));
    }
    Ok(sf)
}
