//! Writes binlogs the way Milvus 2.3 does, for tests and fixtures.
//!
//! Mirrors `internal/storage` on the 2.3 branch: magic, a descriptor event whose extras hold
//! `{"original_size":"<n>"}` and whose post-header lengths are `[52,16,16,16,16,16,16,16]`,
//! then one data event whose payload is a zstd Parquet file with one column `val` of the
//! Arrow type `milvusDataTypeToArrowType` picks. Tests decode these with the real reader;
//! the integration test compares the reader against binlogs a real Milvus wrote.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
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

/// A whole binlog file: descriptor plus one data event per payload.
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
    let post_headers: [u8; 8] = [52, 16, 16, 16, 16, 16, 16, 16];
    let descriptor_len = HEADER_LEN + 52 + post_headers.len() + 4 + extras.len();

    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    let next = 4 + descriptor_len;
    push_header(&mut out, ts.0, 0, descriptor_len, next);
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
        push_header(&mut out, ts.1, event_type, len, start + len);
        out.extend_from_slice(&ts.0.to_le_bytes());
        out.extend_from_slice(&ts.1.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn push_header(out: &mut Vec<u8>, ts: u64, type_code: i8, len: usize, next: usize) {
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&type_code.to_le_bytes());
    out.extend_from_slice(&(len as i32).to_le_bytes());
    out.extend_from_slice(&(next as i32).to_le_bytes());
}

/// A Parquet file with one column `val`, zstd level 3, as Milvus's payload writer makes it.
pub fn parquet_payload(array: ArrayRef) -> anyhow::Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![ArrowField::new(
        "val",
        array.data_type().clone(),
        false,
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

/// The Arrow array Milvus 2.3 writes for a column of `field`.
pub fn column_to_arrow(field: &FieldSchema, column: &FieldData) -> anyhow::Result<ArrayRef> {
    let dt = DataType::try_from(field.data_type).map_err(|_| anyhow!("unknown data type"))?;
    let array: ArrayRef = match (&column.field, dt) {
        (Some(Field::Scalars(s)), _) => match (&s.data, dt) {
            (Some(Scalar::BoolData(a)), DataType::Bool) => {
                Arc::new(BooleanArray::from(a.data.clone()))
            }
            (Some(Scalar::IntData(a)), DataType::Int8) => Arc::new(Int8Array::from(
                a.data.iter().map(|&v| v as i8).collect::<Vec<_>>(),
            )),
            (Some(Scalar::IntData(a)), DataType::Int16) => Arc::new(Int16Array::from(
                a.data.iter().map(|&v| v as i16).collect::<Vec<_>>(),
            )),
            (Some(Scalar::IntData(a)), DataType::Int32) => {
                Arc::new(Int32Array::from(a.data.clone()))
            }
            (Some(Scalar::LongData(a)), DataType::Int64) => {
                Arc::new(Int64Array::from(a.data.clone()))
            }
            (Some(Scalar::FloatData(a)), DataType::Float) => {
                Arc::new(Float32Array::from(a.data.clone()))
            }
            (Some(Scalar::DoubleData(a)), DataType::Double) => {
                Arc::new(Float64Array::from(a.data.clone()))
            }
            (Some(Scalar::StringData(a)), DataType::VarChar | DataType::String) => {
                Arc::new(StringArray::from(a.data.clone()))
            }
            (Some(Scalar::JsonData(a)), DataType::Json) => Arc::new(BinaryArray::from_iter_values(
                a.data.iter().map(|v| v.as_slice()),
            )),
            (Some(Scalar::ArrayData(a)), DataType::Array) => Arc::new(
                BinaryArray::from_iter_values(a.data.iter().map(|v| v.encode_to_vec())),
            ),
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

/// An insert log of `column` (values of `field`).
pub fn insert_log(
    field: &FieldSchema,
    column: &FieldData,
    ids: SegmentIds,
    ts: (u64, u64),
) -> anyhow::Result<Vec<u8>> {
    let payload = parquet_payload(column_to_arrow(field, column)?)?;
    Ok(binlog(
        INSERT_EVENT,
        field.data_type,
        field.field_id,
        ids,
        ts,
        &[payload],
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
