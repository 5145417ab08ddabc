//! Decoding an event's Parquet payload into a Milvus column.
//!
//! Arrow types per Milvus type, as `milvusDataTypeToArrowType` in Milvus 2.3
//! `internal/storage/payload_writer.go` writes them (one column named `val`):
//! Bool → boolean; Int8/16/32/64 → int8/16/32/64; Float → float32; Double → float64;
//! VarChar/String → utf8; JSON → binary; Array → binary holding a serialized `ScalarField`;
//! FloatVector → fixed_size_binary(dim*4) of little-endian f32; BinaryVector →
//! fixed_size_binary(dim/8); Float16/BFloat16Vector (2.4) → fixed_size_binary(dim*2).
//! Readers may see the same Parquet column as a sibling Arrow type (large or view strings,
//! binary for unannotated strings), so each Milvus type accepts those siblings too; small
//! integers are range-checked because Int8/Int16 travel as IntData (i32).

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{Array, ArrayRef};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use prost::Message;

use super::{field_dim, pages, type_name, BinlogError, DataEvent};
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, ArrayArray,
    BoolArray, DataType, DoubleArray, FieldData, FieldSchema, FloatArray, IntArray, JsonArray,
    LongArray, ScalarField, StringArray, VectorField,
};

const BATCH_ROWS: usize = 4096;

/// A column being assembled from one or more events, typed by the schema field.
pub(super) struct Column {
    field: FieldSchema,
    values: Values,
    rows: usize,
}

enum Values {
    Bool(Vec<bool>),
    /// Int8/Int16/Int32, with the range the field's type allows.
    Int(Vec<i32>, i32, i32),
    Long(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Str(Vec<String>),
    Json(Vec<Vec<u8>>),
    Array(Vec<ScalarField>),
    FloatVector(Vec<f32>),
    /// Binary, Float16 and BFloat16 vectors: raw bytes, `dim * num / den` bytes a row.
    ByteVector(Vec<u8>, i64, i64),
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
        let dt = DataType::try_from(field.data_type).unwrap_or(DataType::None);
        let values = match dt {
            DataType::Bool => Values::Bool(Vec::new()),
            DataType::Int8 => Values::Int(Vec::new(), i8::MIN as i32, i8::MAX as i32),
            DataType::Int16 => Values::Int(Vec::new(), i16::MIN as i32, i16::MAX as i32),
            DataType::Int32 => Values::Int(Vec::new(), i32::MIN, i32::MAX),
            DataType::Int64 => Values::Long(Vec::new()),
            DataType::Float => Values::Float(Vec::new()),
            DataType::Double => Values::Double(Vec::new()),
            DataType::String | DataType::VarChar => Values::Str(Vec::new()),
            DataType::Json => Values::Json(Vec::new()),
            DataType::Array => Values::Array(Vec::new()),
            DataType::FloatVector => Values::FloatVector(Vec::new()),
            DataType::BinaryVector => Values::ByteVector(Vec::new(), 1, 8),
            DataType::Float16Vector | DataType::BFloat16Vector => {
                Values::ByteVector(Vec::new(), 2, 1)
            }
            DataType::None => {
                return Err(BinlogError::BadPayload {
                    file: file.to_string(),
                    offset: 0,
                    what: format!(
                        "field {:?} has type {}, which ferry cannot read from binlogs",
                        field.name,
                        type_name(field.data_type)
                    ),
                })
            }
        };
        Ok(Column {
            field: field.clone(),
            values,
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
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.decode_checked(file, ev, budget)
        }));
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
        // Milvus's writer stores no Arrow schema; types come from the Parquet schema, and an
        // embedded (untrusted) IPC schema is never parsed.
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(ev.payload.clone(), options)
                .map_err(pq)?;
        check_footer(&ctx, builder.metadata(), &ev.payload, *budget)?;
        let columns = builder.schema().fields().len();
        if columns != 1 {
            return Err(ctx.bad(format!("Parquet payload has {columns} columns, want 1")));
        }
        let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(pq)?;
        for batch in reader {
            let batch = batch.map_err(|e| pq(e.into()))?;
            let col = batch.column(0);
            let cost = col.get_array_memory_size() as u64;
            if cost > *budget {
                return Err(ctx.bad(format!(
                    "decoded values exceed the limit for one binlog file ({} bytes left)",
                    *budget
                )));
            }
            *budget -= cost;
            if col.null_count() > 0 {
                let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
                return Err(ctx.bad(format!(
                    "null value at row {} (nullable fields are not supported)",
                    self.rows + row
                )));
            }
            self.push(&ctx, col)?;
            self.rows += col.len();
        }
        Ok(())
    }

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
                    let s = std::str::from_utf8(b).map_err(|e| {
                        ctx.bad(format!("row {}: string is not UTF-8: {e}", first_row + i))
                    })?;
                    v.push(s.to_string());
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "utf8"))??;
            }
            Values::Json(v) => {
                for_each_bytes(col, |_, b| {
                    v.push(b.to_vec());
                    Ok(())
                })
                .ok_or_else(|| ctx.mismatch(dt, "binary"))??;
            }
            Values::Array(v) => {
                let elem = ctx.field.element_type;
                for_each_bytes(col, |i, b| {
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
        let dim = field_dim(f).unwrap_or(0);
        let scalars = |data| Some(Field::Scalars(ScalarField { data: Some(data) }));
        let vectors = |dim, data| {
            Some(Field::Vectors(VectorField {
                dim,
                data: Some(data),
            }))
        };
        let field = match self.values {
            Values::Bool(data) => scalars(Scalar::BoolData(BoolArray { data })),
            Values::Int(data, ..) => scalars(Scalar::IntData(IntArray { data })),
            Values::Long(data) => scalars(Scalar::LongData(LongArray { data })),
            Values::Float(data) => scalars(Scalar::FloatData(FloatArray { data })),
            Values::Double(data) => scalars(Scalar::DoubleData(DoubleArray { data })),
            Values::Str(data) => scalars(Scalar::StringData(StringArray { data })),
            Values::Json(data) => scalars(Scalar::JsonData(JsonArray { data })),
            Values::Array(data) => scalars(Scalar::ArrayData(ArrayArray {
                data,
                element_type: f.element_type,
            })),
            Values::FloatVector(data) => vectors(dim, Vector::FloatVector(FloatArray { data })),
            Values::ByteVector(data, ..) => {
                let v = if f.data_type == DataType::BinaryVector as i32 {
                    Vector::BinaryVector(data)
                } else if f.data_type == DataType::Float16Vector as i32 {
                    Vector::Float16Vector(data)
                } else {
                    Vector::Bfloat16Vector(data)
                };
                vectors(dim, v)
            }
        };
        FieldData {
            r#type: f.data_type,
            field_name: f.name.clone(),
            field,
            field_id: f.field_id,
            is_dynamic: f.is_dynamic,
        }
    }
}

/// Checks the footer's row counts and column chunk ranges: chunks must lie inside the
/// payload, and their declared uncompressed sizes, in the footer and in every page header,
/// within the decode budget.
fn check_footer(
    ctx: &Ctx<'_>,
    meta: &ParquetMetaData,
    payload: &[u8],
    budget: u64,
) -> Result<(), BinlogError> {
    let payload_len = payload.len() as u64;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(ctx.bad(format!("row group {g} has {} rows", rg.num_rows())));
        }
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
            pages::declared_uncompressed(chunk, budget)
                .map_err(|e| ctx.bad(format!("row group {g}: {e}")))?;
        }
    }
    Ok(())
}

/// Checks a vector column's byte width against the field's dim: `width = dim * num / den`.
fn vector_width(
    ctx: &Ctx<'_>,
    width: i32,
    num: i64,
    den: i64,
    dt: &arrow_schema::DataType,
) -> Result<(), BinlogError> {
    let dim = field_dim(ctx.field).unwrap_or(0);
    // The dim comes from an untrusted schema: keep the arithmetic from overflowing.
    let bytes = dim
        .checked_mul(num)
        .filter(|_| dim > 0 && dim <= i64::from(i32::MAX));
    let Some(want) = bytes.filter(|b| b % den == 0).map(|b| b / den) else {
        return Err(ctx.bad(format!(
            "vector field {:?} has no usable dim type parameter (got {dim})",
            ctx.field.name
        )));
    };
    if width as i64 != want {
        return Err(ctx.mismatch(dt, &format!("fixed_size_binary({want}) for dim {dim}")));
    }
    Ok(())
}

/// Calls `f(row, bytes)` for each value of a binary or string column; `None` when the column
/// holds neither.
fn for_each_bytes(
    col: &ArrayRef,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), BinlogError>,
) -> Option<Result<(), BinlogError>> {
    fn each<'a>(
        n: usize,
        get: impl Fn(usize) -> &'a [u8],
        f: &mut impl FnMut(usize, &[u8]) -> Result<(), BinlogError>,
    ) -> Result<(), BinlogError> {
        (0..n).try_for_each(|i| f(i, get(i)))
    }
    let n = col.len();
    Some(if let Some(a) = col.as_binary_opt::<i32>() {
        each(n, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_binary_opt::<i64>() {
        each(n, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_string_opt::<i32>() {
        each(n, |i| a.value(i).as_bytes(), &mut f)
    } else if let Some(a) = col.as_string_opt::<i64>() {
        each(n, |i| a.value(i).as_bytes(), &mut f)
    } else if let Some(a) = col.as_binary_view_opt() {
        each(n, |i| a.value(i), &mut f)
    } else if let Some(a) = col.as_string_view_opt() {
        each(n, |i| a.value(i).as_bytes(), &mut f)
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
            return Ok(ScalarField { data: Some(data) });
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
