//! Writes binlogs the way Milvus 2.3-2.6 does, for tests and fixtures.
//!
//! Mirrors `internal/storage` on the 2.3 branch: magic, a descriptor event whose extras hold
//! `{"original_size":"<n>"}` and whose post-header lengths are `[52,16,16,16,16,16,16,16]`,
//! then one data event whose payload is a zstd Parquet file with one column `val` of the
//! Arrow type `milvusDataTypeToArrowType` picks. [`Writer`] names the later variants (2.4's
//! `nullable` extra and nullable column, 2.4+'s `BinlogStreamWriter`). Tests decode these
//! with the real reader; the integration test compares the reader against binlogs a real
//! Milvus wrote.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, RecordBatch, StringArray,
};
use arrow_schema::{Field as ArrowField, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use prost::Message;

use super::{field_dim, DATA_FIX_LEN, DELETE_EVENT, HEADER_LEN, INSERT_EVENT, MAGIC};
use crate::milvus::PkValue;
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector, DataType,
    FieldData, FieldSchema,
};

/// Which segment a binlog belongs to.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentIds {
    pub collection_id: i64,
    pub partition_id: i64,
    pub segment_id: i64,
}

/// Which Milvus insert-log writer a binlog imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// 2.3's `InsertCodec`: column `val` declared non-null, extras `original_size` only.
    V23,
    /// 2.4's `InsertCodec` (`NewInsertBinlogWriter` with `WithNullable`): column `val`
    /// declared nullable when the field is, extras also `"nullable": <bool>`.
    V24,
    /// 2.4+ `BinlogStreamWriter` (`serde.go`, `binlog_record_writer.go`): the column
    /// named by the field id and always declared nullable, extras as 2.4, and a data event
    /// whose `next_position` is left at -1 and whose timestamps are both 1.
    Stream,
}

/// A whole binlog file: descriptor plus one data event per payload, as 2.3 writes it.
pub fn binlog(
    event_type: i8,
    payload_type: i32,
    field_id: i64,
    ids: SegmentIds,
    ts: (u64, u64),
    payloads: &[Vec<u8>],
) -> Vec<u8> {
    let original: usize = payloads.iter().map(Vec::len).sum();
    let extras = format!("{{\"original_size\":\"{original}\"}}");
    frame(
        event_type,
        payload_type,
        field_id,
        ids,
        ts,
        payloads,
        &extras,
        false,
    )
}

/// Descriptor extras as Go's `json.Marshal` writes the 2.4+ map (keys sorted).
fn extras_with_nullable(nullable: bool, original: usize) -> String {
    format!("{{\"nullable\":{nullable},\"original_size\":\"{original}\"}}")
}

/// Magic, descriptor (with `extras`), then one data event per payload; `stream` writes the
/// data events as `BinlogStreamWriter` does.
#[allow(clippy::too_many_arguments)]
pub fn frame(
    event_type: i8,
    payload_type: i32,
    field_id: i64,
    ids: SegmentIds,
    ts: (u64, u64),
    payloads: &[Vec<u8>],
    extras: &str,
    stream: bool,
) -> Vec<u8> {
    let post_headers: [u8; 8] = [52, 16, 16, 16, 16, 16, 16, 16];
    let descriptor_len = HEADER_LEN + 52 + post_headers.len() + 4 + extras.len();

    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    let next = 4 + descriptor_len;
    push_header(&mut out, ts.0, 0, descriptor_len, next as i32);
    for v in [
        ids.collection_id,
        ids.partition_id,
        ids.segment_id,
        field_id,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&ts.0.to_le_bytes());
    out.extend_from_slice(&ts.1.to_le_bytes());
    out.extend_from_slice(&payload_type.to_le_bytes());
    out.extend_from_slice(&post_headers);
    out.extend_from_slice(&(extras.len() as i32).to_le_bytes());
    out.extend_from_slice(extras.as_bytes());

    for p in payloads {
        let start = out.len();
        let len = HEADER_LEN + DATA_FIX_LEN + p.len();
        let (next, event_ts) = if stream {
            (-1, (1, 1))
        } else {
            ((start + len) as i32, ts)
        };
        push_header(&mut out, ts.1, event_type, len, next);
        out.extend_from_slice(&event_ts.0.to_le_bytes());
        out.extend_from_slice(&event_ts.1.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn push_header(out: &mut Vec<u8>, ts: u64, type_code: i8, len: usize, next: i32) {
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&type_code.to_le_bytes());
    out.extend_from_slice(&(len as i32).to_le_bytes());
    out.extend_from_slice(&next.to_le_bytes());
}

/// A Parquet file with one column `val`, zstd level 3, as Milvus's payload writer makes it.
pub fn parquet_payload(array: ArrayRef) -> anyhow::Result<Vec<u8>> {
    parquet_column("val", array, false)
}

/// A Parquet file with one column `name`, zstd level 3, declared nullable when `nullable`
/// (or when `array` holds a null).
pub fn parquet_column(name: &str, array: ArrayRef, nullable: bool) -> anyhow::Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![ArrowField::new(
        name,
        array.data_type().clone(),
        nullable || array.null_count() > 0,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![array])?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(buf)
}

/// The Arrow array Milvus writes for a column of `field`: a row-aligned nullable column
/// (`valid_data` one entry a row) has an Arrow null where `valid_data` is false, as the
/// writers' `AppendValues(data, validData)` / `AppendNull` make it; the value in such a
/// row is never written.
pub fn column_to_arrow(field: &FieldSchema, column: &FieldData) -> anyhow::Result<ArrayRef> {
    let dt = DataType::try_from(field.data_type).map_err(|_| anyhow!("unknown data type"))?;
    let valid = &column.valid_data;
    // Row `i` as Arrow sees it: `None` where it is null.
    fn rows<'a, T>(data: &'a [T], valid: &'a [bool]) -> impl Iterator<Item = Option<&'a T>> + 'a {
        data.iter()
            .enumerate()
            .map(move |(i, v)| valid.get(i).is_none_or(|ok| *ok).then_some(v))
    }
    let array: ArrayRef = match (&column.field, dt) {
        (Some(Field::Scalars(s)), _) => match (&s.data, dt) {
            (Some(Scalar::BoolData(a)), DataType::Bool) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<BooleanArray>(),
            ),
            (Some(Scalar::IntData(a)), DataType::Int8) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.map(|&x| x as i8))
                    .collect::<Int8Array>(),
            ),
            (Some(Scalar::IntData(a)), DataType::Int16) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.map(|&x| x as i16))
                    .collect::<Int16Array>(),
            ),
            (Some(Scalar::IntData(a)), DataType::Int32) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<Int32Array>(),
            ),
            (Some(Scalar::LongData(a)), DataType::Int64) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<Int64Array>(),
            ),
            (Some(Scalar::TimestamptzData(a)), DataType::Timestamptz) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<Int64Array>(),
            ),
            (Some(Scalar::FloatData(a)), DataType::Float) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<Float32Array>(),
            ),
            (Some(Scalar::DoubleData(a)), DataType::Double) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.copied())
                    .collect::<Float64Array>(),
            ),
            (Some(Scalar::StringData(a)), DataType::VarChar | DataType::String) => {
                Arc::new(rows(&a.data, valid).collect::<StringArray>())
            }
            (Some(Scalar::JsonData(a)), DataType::Json) => {
                Arc::new(rows(&a.data, valid).collect::<BinaryArray>())
            }
            (Some(Scalar::GeometryData(a)), DataType::Geometry) => {
                Arc::new(rows(&a.data, valid).collect::<BinaryArray>())
            }
            (Some(Scalar::ArrayData(a)), DataType::Array) => Arc::new(
                rows(&a.data, valid)
                    .map(|v| v.map(|v| v.encode_to_vec()))
                    .collect::<BinaryArray>(),
            ),
            _ => bail!("column {:?} does not hold {dt:?} values", column.field_name),
        },
        (Some(Field::Vectors(v)), DataType::SparseFloatVector) => match &v.data {
            // AddSparseFloatVectorToPayload: each row's contents, as they are.
            Some(Vector::SparseFloatVector(a)) => {
                Arc::new(BinaryArray::from_iter_values(a.contents.iter()))
            }
            _ => bail!("column {:?} does not hold {dt:?} values", column.field_name),
        },
        (Some(Field::Vectors(v)), _) => {
            let dim = field_dim(field).context("vector field without dim")?;
            let (width, bytes): (i64, Vec<u8>) = match (&v.data, dt) {
                (Some(Vector::FloatVector(a)), DataType::FloatVector) => (
                    dim * 4,
                    a.data.iter().flat_map(|f| f.to_le_bytes()).collect(),
                ),
                (Some(Vector::BinaryVector(b)), DataType::BinaryVector) => (dim / 8, b.clone()),
                (Some(Vector::Float16Vector(b)), DataType::Float16Vector)
                | (Some(Vector::Bfloat16Vector(b)), DataType::BFloat16Vector) => {
                    (dim * 2, b.clone())
                }
                (Some(Vector::Int8Vector(b)), DataType::Int8Vector) => (dim, b.clone()),
                _ => bail!("column {:?} does not hold {dt:?} values", column.field_name),
            };
            let mut builder = FixedSizeBinaryBuilder::new(width as i32);
            for row in bytes.chunks(width as usize) {
                builder.append_value(row)?;
            }
            Arc::new(builder.finish())
        }
        (None, _) => bail!("column {:?} is empty", column.field_name),
    };
    Ok(array)
}

/// An insert log of `column` (values of `field`), as 2.3 writes it.
pub fn insert_log(
    field: &FieldSchema,
    column: &FieldData,
    ids: SegmentIds,
    ts: (u64, u64),
) -> anyhow::Result<Vec<u8>> {
    insert_log_as(Writer::V23, field, column, ids, ts)
}

/// An insert log of `column` (values of `field`), as `writer` writes it.
pub fn insert_log_as(
    writer: Writer,
    field: &FieldSchema,
    column: &FieldData,
    ids: SegmentIds,
    ts: (u64, u64),
) -> anyhow::Result<Vec<u8>> {
    let array = column_to_arrow(field, column)?;
    let payload = match writer {
        Writer::V23 => parquet_column("val", array, false)?,
        Writer::V24 => parquet_column("val", array, field.nullable)?,
        Writer::Stream => parquet_column(&field.field_id.to_string(), array, true)?,
    };
    let extras = match writer {
        Writer::V23 => format!("{{\"original_size\":\"{}\"}}", payload.len()),
        Writer::V24 | Writer::Stream => extras_with_nullable(field.nullable, payload.len()),
    };
    Ok(frame(
        INSERT_EVENT,
        field.data_type,
        field.field_id,
        ids,
        ts,
        &[payload],
        &extras,
        writer == Writer::Stream,
    ))
}

/// The insert log of system field 1 (row timestamps).
pub fn timestamps_log(row_ts: &[u64], ids: SegmentIds) -> anyhow::Result<Vec<u8>> {
    let array: ArrayRef = Arc::new(Int64Array::from(
        row_ts.iter().map(|&t| t as i64).collect::<Vec<_>>(),
    ));
    let (lo, hi) = (
        row_ts.iter().copied().min().unwrap_or(1),
        row_ts.iter().copied().max().unwrap_or(1),
    );
    Ok(binlog(
        INSERT_EVENT,
        DataType::Int64 as i32,
        super::TIMESTAMP_FIELD_ID,
        ids,
        (lo, hi),
        &[parquet_payload(array)?],
    ))
}

/// A delete record as Milvus 2.3 marshals `DeleteLog`.
pub fn delete_record(pk: &PkValue, ts: u64) -> String {
    match pk {
        PkValue::Int(k) => format!("{{\"pk\":{k},\"ts\":{ts},\"pkType\":5}}"),
        PkValue::Str(k) => format!(
            "{{\"pk\":{},\"ts\":{ts},\"pkType\":21}}",
            serde_json::Value::String(k.clone())
        ),
    }
}

/// A delta log holding `records` (JSON or legacy strings) in one Delete event.
pub fn delta_log(records: &[String], ids: SegmentIds, ts: (u64, u64)) -> anyhow::Result<Vec<u8>> {
    let array: ArrayRef = Arc::new(StringArray::from(records.to_vec()));
    Ok(binlog(
        DELETE_EVENT,
        DataType::String as i32,
        // Milvus's delete binlog writer leaves the descriptor's field id at its default.
        -1,
        ids,
        ts,
        &[parquet_payload(array)?],
    ))
}
