//! Milvus 0.9–1.x data files, read into `Rows` of `id` (Int64) and `vector`.
//!
//! # Layout (as zilliztech/milvus-migration's 1.x dumper reads it)
//!
//! ```text
//! <location>/meta.json                         from `milvus-migration export` (or written by hand)
//! <location>/tables/<collection>/<segment>/<segment>.rv    raw vectors
//!                                         /<segment>.uid   ids
//!                                         /deleted_docs    deleted row offsets (may be absent)
//! ```
//!
//! `meta.json` is `{"collections":[{"collection","metric","rows","dim","segments":[{"collection",
//! "segment","dim","rows","fileSize"}]}],"rows"}`; `collection` is the 1.x table id and
//! `segment` the segment id, both strings. Metric numbers follow 1.x: 1 L2, 2 IP, 3 HAMMING,
//! 4 JACCARD; 5 TANIMOTO, 6 SUBSTRUCTURE and 7 SUPERSTRUCTURE have no Milvus 2.x metric and
//! are refused with an error naming the collection.
//!
//! Each data file is a little-endian u64 byte count followed by that many bytes:
//! `.rv` holds rows × dim f32 (binary metrics: rows × dim/8 bytes), `.uid` rows i64 ids,
//! `deleted_docs` i32 row offsets in no particular order.
//!
//! # Invariants
//!
//! - The byte count must equal the file size minus 8 and be a whole number of rows; the
//!   `.rv` and `.uid` row counts must agree; every deleted offset must name a row. Sizes come
//!   from the store before any body is fetched and bound every read, so a corrupt header
//!   never sizes an allocation.
//! - Rows are read by range ([`V1xSource::read_rows`]) so a large segment can be moved in
//!   bounded batches; deleted rows are skipped, in file order otherwise.

mod reader;
pub mod testdata;

pub use reader::V1xReader;

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError};
use crate::milvus::Rows;
use crate::proto::common::KeyValuePair;
use crate::proto::schema::{
    field_data::Field, scalar_field::Data as Scalar, vector_field::Data as Vector,
    CollectionSchema, DataType, FieldData, FieldSchema, FloatArray, LongArray, ScalarField,
    VectorField,
};

/// Largest `meta.json` accepted.
const MAX_META_BYTES: u64 = 64 << 20;
/// Largest vector dim Milvus accepts.
const MAX_DIM: i64 = 32768;
/// Name of the primary key column produced.
pub const ID_FIELD: &str = "id";
/// Name of the vector column produced.
pub const VECTOR_FIELD: &str = "vector";

/// Errors of reading Milvus 1.x data.
#[derive(Debug, thiserror::Error)]
pub enum V1xError {
    #[error("{file}: byte {offset}: {what}")]
    Format {
        file: String,
        offset: u64,
        what: String,
    },
    #[error("{file}: {what}")]
    Meta { file: String, what: String },
    #[error(
        "collection {collection:?}: metric type {metric} ({name}) has no Milvus 2.x equivalent; \
         only L2 (1), IP (2), HAMMING (3) and JACCARD (4) collections can be migrated"
    )]
    UnsupportedMetric {
        collection: String,
        metric: i32,
        name: &'static str,
    },
    #[error("segment {segment} of collection {collection:?}: {ids} ids but {vectors} vectors")]
    RowMismatch {
        collection: String,
        segment: String,
        ids: usize,
        vectors: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl V1xError {
    pub fn is_retryable(&self) -> bool {
        match self {
            V1xError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Distance metrics of 1.x collections ferry can migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    L2,
    Ip,
    Hamming,
    Jaccard,
}

impl Metric {
    /// The Milvus 2.x metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "L2",
            Metric::Ip => "IP",
            Metric::Hamming => "HAMMING",
            Metric::Jaccard => "JACCARD",
        }
    }

    pub fn vector_kind(self) -> VectorKind {
        match self {
            Metric::L2 | Metric::Ip => VectorKind::Float,
            Metric::Hamming | Metric::Jaccard => VectorKind::Binary,
        }
    }
}

/// How a `.rv` row is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorKind {
    /// dim little-endian f32.
    Float,
    /// dim/8 bytes.
    Binary,
}

impl VectorKind {
    fn row_bytes(self, dim: usize) -> usize {
        match self {
            VectorKind::Float => dim * 4,
            VectorKind::Binary => dim / 8,
        }
    }
}

/// `meta.json`, as milvus-migration writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaJson {
    #[serde(default)]
    pub collections: Vec<V1xCollection>,
    #[serde(default)]
    pub rows: i64,
}

/// One 1.x collection (table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct V1xCollection {
    /// The table id, which is also its folder name under `tables/`.
    pub collection: String,
    /// 1.x metric number (see the module doc).
    pub metric: i32,
    #[serde(default)]
    pub rows: i64,
    pub dim: i64,
    #[serde(default)]
    pub segments: Vec<V1xSegment>,
}

/// One segment of a 1.x collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct V1xSegment {
    pub collection: String,
    pub segment: String,
    #[serde(default)]
    pub dim: i64,
    #[serde(default)]
    pub rows: i64,
    #[serde(rename = "fileSize", default)]
    pub file_size: i64,
}

impl V1xCollection {
    /// The metric, or an error naming the collection when 2.x has no equivalent.
    pub fn metric(&self) -> Result<Metric, V1xError> {
        let unsupported = |name| V1xError::UnsupportedMetric {
            collection: self.collection.clone(),
            metric: self.metric,
            name,
        };
        match self.metric {
            1 => Ok(Metric::L2),
            2 => Ok(Metric::Ip),
            3 => Ok(Metric::Hamming),
            4 => Ok(Metric::Jaccard),
            5 => Err(unsupported("TANIMOTO")),
            6 => Err(unsupported("SUBSTRUCTURE")),
            7 => Err(unsupported("SUPERSTRUCTURE")),
            _ => Err(unsupported("unknown")),
        }
    }

    /// The Milvus 2.x schema rows of this collection fit: `id` Int64 primary key and
    /// `vector` of the collection's dim.
    pub fn schema(&self) -> Result<CollectionSchema, V1xError> {
        let kind = self.metric()?.vector_kind();
        Ok(CollectionSchema {
            name: self.collection.clone(),
            fields: vec![
                FieldSchema {
                    field_id: 100,
                    name: ID_FIELD.into(),
                    is_primary_key: true,
                    data_type: DataType::Int64 as i32,
                    ..Default::default()
                },
                FieldSchema {
                    field_id: 101,
                    name: VECTOR_FIELD.into(),
                    data_type: match kind {
                        VectorKind::Float => DataType::FloatVector as i32,
                        VectorKind::Binary => DataType::BinaryVector as i32,
                    },
                    type_params: vec![KeyValuePair {
                        key: "dim".into(),
                        value: self.dim.to_string(),
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
    }
}

/// A folder of Milvus 1.x data plus its `meta.json`.
#[derive(Debug, Clone)]
pub struct V1xSource {
    tables: Store,
    meta: MetaJson,
}

impl V1xSource {
    /// Opens `<location>/meta.json` and `<location>/tables/` (a local path or URL).
    pub async fn open(location: &str) -> Result<V1xSource, V1xError> {
        let store = Store::open(location)?;
        let meta = store.get("meta.json", MAX_META_BYTES).await?;
        V1xSource::from_parts(store.sub("tables"), &meta, &store.display("meta.json"))
    }

    /// A source over a `tables` folder and the bytes of its `meta.json` (`meta_label`
    /// names it in errors).
    pub fn from_parts(tables: Store, meta: &[u8], meta_label: &str) -> Result<V1xSource, V1xError> {
        let meta: MetaJson = serde_json::from_slice(meta).map_err(|e| V1xError::Meta {
            file: meta_label.to_string(),
            what: e.to_string(),
        })?;
        for c in &meta.collections {
            let bad_dim = !(1..=MAX_DIM).contains(&c.dim)
                || (matches!(c.metric().map(Metric::vector_kind), Ok(VectorKind::Binary))
                    && c.dim % 8 != 0);
            if bad_dim {
                return Err(V1xError::Meta {
                    file: meta_label.to_string(),
                    what: format!("collection {:?} has unusable dim {}", c.collection, c.dim),
                });
            }
        }
        Ok(V1xSource { tables, meta })
    }

    pub fn meta(&self) -> &MetaJson {
        &self.meta
    }

    /// Every collection in `meta.json`, supported metric or not ([`V1xCollection::metric`]).
    pub fn collections(&self) -> &[V1xCollection] {
        &self.meta.collections
    }

    /// The number of rows stored in a segment's files (deleted rows included), from the
    /// `.uid` file's header.
    pub async fn stored_rows(&self, seg: &V1xSegment) -> Result<usize, V1xError> {
        self.header_rows(&uid_path(seg), 8).await
    }

    /// Checks a file's byte-count header against its size; returns its rows.
    async fn header_rows(&self, rel: &str, row_bytes: usize) -> Result<usize, V1xError> {
        let size = self.tables.size(rel).await?.ok_or_else(|| {
            V1xError::Store(StoreError::NotFound {
                path: self.tables.display(rel),
            })
        })?;
        let header = self.tables.get_range(rel, 0..8.min(size)).await?;
        let (_, rows) = check_header(&self.tables.display(rel), &header, size, row_bytes)?;
        Ok(rows)
    }

    /// Every live row of a segment.
    pub async fn read_segment(
        &self,
        coll: &V1xCollection,
        seg: &V1xSegment,
    ) -> Result<Rows, V1xError> {
        let rows = self.stored_rows(seg).await?;
        self.read_rows(coll, seg, 0..rows).await
    }

    /// How many of a segment's `rows` stored rows `deleted_docs` marks deleted.
    pub async fn deleted_rows(&self, seg: &V1xSegment, rows: usize) -> Result<usize, V1xError> {
        Ok(self.deleted(seg, rows, &(0..rows)).await?.iter().filter(|d| **d).count())
    }

    /// Which of the stored rows `range` (of `rows`) `deleted_docs` marks deleted.
    async fn deleted(&self, seg: &V1xSegment, rows: usize, range: &Range<usize>) -> Result<Vec<bool>, V1xError> {
        let deleted_path = format!("{}/deleted_docs", seg_dir(seg));
        let mut deleted = vec![false; range.len()];
        if let Some(size) = self.tables.size(&deleted_path).await? {
            let bytes = self.tables.get(&deleted_path, size).await?;
            for off in parse_deleted(&self.tables.display(&deleted_path), &bytes, rows)? {
                let off = off as usize;
                if range.contains(&off) {
                    deleted[off - range.start] = true;
                }
            }
        }
        Ok(deleted)
    }

    /// Checks that the live float vectors of a segment hold no NaN or infinity, which Milvus
    /// refuses; names the `.rv` file and the byte offset of the first such value. Reads
    /// `chunk_rows` rows at a time. ([`Self::read_rows`] itself returns whatever the file holds.)
    pub async fn check_finite(&self, coll: &V1xCollection, seg: &V1xSegment, chunk_rows: usize) -> Result<(), V1xError> {
        if coll.metric()?.vector_kind() != VectorKind::Float {
            return Ok(());
        }
        let row_bytes = VectorKind::Float.row_bytes(coll.dim as usize);
        let rv = format!("{}/{}.rv", seg_dir(seg), seg.segment);
        let rows = self.header_rows(&rv, row_bytes).await?;
        let deleted = self.deleted(seg, rows, &(0..rows)).await?;
        for first in (0..rows).step_by(chunk_rows.max(1)) {
            let end = (first + chunk_rows.max(1)).min(rows);
            let start = 8 + (first * row_bytes) as u64;
            let body = self.tables.get_range(&rv, start..8 + (end * row_bytes) as u64).await?;
            for (i, row) in body.chunks_exact(row_bytes).enumerate() {
                if deleted[first + i] {
                    continue;
                }
                if let Some(v) = row.chunks_exact(4).position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()) {
                    return Err(V1xError::Format {
                        file: self.tables.display(&rv),
                        offset: start + (i * row_bytes + v * 4) as u64,
                        what: format!(
                            "row {}, value {v}: NaN or infinity, which Milvus does not accept in a vector",
                            first + i
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    pub async fn read_rows(
        &self,
        coll: &V1xCollection,
        seg: &V1xSegment,
        range: Range<usize>,
    ) -> Result<Rows, V1xError> {
        let kind = coll.metric()?.vector_kind();
        let dim = coll.dim as usize;
        let row_bytes = kind.row_bytes(dim);

        let uid = uid_path(seg);
        let rows = self.header_rows(&uid, 8).await?;
        let rv = format!("{}/{}.rv", seg_dir(seg), seg.segment);
        let rv_label = self.tables.display(&rv);
        let vectors = self.header_rows(&rv, row_bytes).await?;
        if vectors != rows {
            return Err(V1xError::RowMismatch {
                collection: coll.collection.clone(),
                segment: seg.segment.clone(),
                ids: rows,
                vectors,
            });
        }
        let range = range.start.min(rows)..range.end.min(rows);

        let deleted = self.deleted(seg, rows, &range).await?;

        // Both ranges lie inside the files: their sizes were checked against `rows`.
        let slice =
            |width: usize| (8 + (range.start * width) as u64)..(8 + (range.end * width) as u64);
        let (body, id_bytes) = if range.is_empty() {
            (Bytes::new(), Bytes::new())
        } else {
            (
                self.tables.get_range(&rv, slice(row_bytes)).await?,
                self.tables.get_range(&uid, slice(8)).await?,
            )
        };
        for (bytes, width, file) in [
            (&body, row_bytes, &rv_label),
            (&id_bytes, 8, &self.tables.display(&uid)),
        ] {
            if bytes.len() != range.len() * width {
                return Err(V1xError::Format {
                    file: file.clone(),
                    offset: slice(width).start,
                    what: format!(
                        "read {} bytes for rows {range:?}, want {} (the file changed while read?)",
                        bytes.len(),
                        range.len() * width
                    ),
                });
            }
        }
        let keep: Vec<usize> = (0..range.len()).filter(|&i| !deleted[i]).collect();
        let ids: Vec<i64> = keep
            .iter()
            .map(|&i| {
                let b = &id_bytes[i * 8..i * 8 + 8];
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })
            .collect();
        let row = |i: usize| &body[i * row_bytes..(i + 1) * row_bytes];
        let vector = match kind {
            VectorKind::Float => Vector::FloatVector(FloatArray {
                data: keep
                    .iter()
                    .flat_map(|&i| {
                        row(i)
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    })
                    .collect(),
            }),
            VectorKind::Binary => {
                Vector::BinaryVector(keep.iter().flat_map(|&i| row(i).iter().copied()).collect())
            }
        };
        let schema = coll.schema()?;
        let columns = vec![
            FieldData {
                r#type: DataType::Int64 as i32,
                field_name: ID_FIELD.into(),
                field_id: schema.fields[0].field_id,
                field: Some(Field::Scalars(ScalarField {
                    data: Some(Scalar::LongData(LongArray { data: ids })),
                    ..Default::default()
                })),
                is_dynamic: false,
                valid_data: Vec::new(),
            },
            FieldData {
                r#type: schema.fields[1].data_type,
                field_name: VECTOR_FIELD.into(),
                field_id: schema.fields[1].field_id,
                field: Some(Field::Vectors(VectorField {
                    dim: coll.dim,
                    data: Some(vector),
                    ..Default::default()
                })),
                is_dynamic: false,
                valid_data: Vec::new(),
            },
        ];
        Rows::new(columns).map_err(|e| V1xError::Format {
            file: rv_label,
            offset: 8,
            what: e.to_string(),
        })
    }
}

fn seg_dir(seg: &V1xSegment) -> String {
    format!("{}/{}", seg.collection, seg.segment)
}

fn uid_path(seg: &V1xSegment) -> String {
    format!("{}/{}.uid", seg_dir(seg), seg.segment)
}

/// Checks a file's u64 byte count against its size and a row width; returns (byte count,
/// rows). `header` is the file's first bytes (at most 8 are read).
fn check_header(
    file: &str,
    header: &[u8],
    file_size: u64,
    row_bytes: usize,
) -> Result<(u64, usize), V1xError> {
    let bad = |offset: u64, what: String| V1xError::Format {
        file: file.to_string(),
        offset,
        what,
    };
    let count: [u8; 8] = header
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
            bad(
                0,
                format!("truncated: {file_size} bytes, the byte count needs 8"),
            )
        })?;
    let count = u64::from_le_bytes(count);
    if count != file_size.saturating_sub(8) {
        return Err(bad(
            0,
            format!(
                "byte count {count} does not match the {} bytes that follow it",
                file_size.saturating_sub(8)
            ),
        ));
    }
    if row_bytes == 0 || count % row_bytes as u64 != 0 {
        return Err(bad(
            0,
            format!("byte count {count} is not a whole number of {row_bytes}-byte rows"),
        ));
    }
    Ok((count, (count / row_bytes as u64) as usize))
}

/// Vectors of a whole `.rv` file.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorData {
    Float(Vec<f32>),
    Binary(Vec<u8>),
}

/// Parses a whole `.rv` file: checks the byte count against the size and `dim`.
pub fn parse_vectors(
    file: &str,
    bytes: &[u8],
    dim: usize,
    kind: VectorKind,
) -> Result<VectorData, V1xError> {
    check_header(file, bytes, bytes.len() as u64, kind.row_bytes(dim))?;
    let body = &bytes[8..];
    Ok(match kind {
        VectorKind::Float => VectorData::Float(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        VectorKind::Binary => VectorData::Binary(body.to_vec()),
    })
}

/// Parses a whole `.uid` file.
pub fn parse_ids(file: &str, bytes: &[u8]) -> Result<Vec<i64>, V1xError> {
    check_header(file, bytes, bytes.len() as u64, 8)?;
    Ok(bytes[8..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Parses a whole `deleted_docs` file; every offset must be below `rows`.
pub fn parse_deleted(file: &str, bytes: &[u8], rows: usize) -> Result<Vec<i32>, V1xError> {
    check_header(file, bytes, bytes.len() as u64, 4)?;
    let offsets: Vec<i32> = bytes[8..]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = offsets.iter().position(|&o| o < 0 || o as usize >= rows) {
        return Err(V1xError::Format {
            file: file.to_string(),
            offset: 8 + 4 * i as u64,
            what: format!(
                "deleted offset {} is outside the segment's {rows} rows",
                offsets[i]
            ),
        });
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests;
