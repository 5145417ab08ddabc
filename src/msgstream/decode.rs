//! Decoding one WAL record (a Kafka record value) into a [`WalEvent`].
//!
//! A record value is the protobuf body of one Milvus `TsMsg`. Every body starts with
//! `MsgBase base = 1`, so decoding it as `commonpb.MsgHeader` yields the message type; the
//! body is then decoded as the matching `msgpb` message. Decoding is total: any byte string
//! gives an event or a [`DecodeError`], never a panic, and nothing here allocates from a
//! length read off the wire (prost bounds every length by the input it has).

use prost::Message;

use crate::milvus::data::DataError;
use crate::milvus::{PrimaryKeys, Rows};
use crate::proto::common::{MsgHeader, MsgType};
use crate::proto::msg;
use crate::proto::schema::{field_data::Field, vector_field::Data as Vector, FieldData};

/// Bits of a hybrid timestamp that hold the logical counter.
pub const LOGICAL_BITS: u32 = 18;

/// Largest vector dimension accepted from the wire. Milvus caps dims at 32768; the margin
/// keeps newer servers working while refusing absurd values that would overflow row-width
/// arithmetic.
const MAX_VECTOR_DIM: i64 = 1 << 20;

/// Largest sparse dim: every u32 index, plus one.
const MAX_SPARSE_DIM: i64 = 1 << 32;

/// Wall-clock milliseconds of a hybrid (TSO) timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// The hybrid timestamp of `physical_ms` with logical counter `logical`.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1))
}

/// Why a record could not be decoded. The reader adds the topic and offset.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Milvus message header: {0}")]
    Header(#[source] prost::DecodeError),
    #[error("message header has no base")]
    NoBase,
    #[error("{kind} body does not decode: {source}")]
    Body {
        kind: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("row-based insert not supported (collection {collection_id}); Milvus 2.3 writes column-based inserts")]
    RowBased { collection_id: i64 },
    #[error("insert into collection {collection_id}: {source}")]
    Columns {
        collection_id: i64,
        #[source]
        source: DataError,
    },
    #[error(
        "insert into collection {collection_id}: field {field:?} has invalid vector dim {dim}"
    )]
    VectorDim {
        collection_id: i64,
        field: String,
        dim: i64,
    },
    #[error("{kind} for collection {collection_id} declares {declared} rows but carries {actual}")]
    RowCount {
        kind: &'static str,
        collection_id: i64,
        declared: u64,
        actual: usize,
    },
    #[error("delete from collection {collection_id} carries no primary keys")]
    NoPrimaryKeys { collection_id: i64 },
}

impl DecodeError {
    /// Never: the same bytes decode the same way every time. A decode error stops the job
    /// rather than skipping a record, since skipping would silently lose writes.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum WalEvent {
    Insert(InsertEvent),
    Delete(DeleteEvent),
    /// Everything with a timestamp <= `ts` on this channel precedes this record.
    TimeTick {
        ts: u64,
    },
    CreateCollection {
        collection_id: i64,
        name: String,
        /// Encoded `schemapb.CollectionSchema`.
        schema: Vec<u8>,
        /// The physical DML channels of the new collection (the record is on each).
        channels: Vec<String>,
        ts: u64,
    },
    DropCollection {
        collection_id: i64,
        name: String,
        ts: u64,
    },
    CreatePartition {
        collection_id: i64,
        partition_name: String,
        partition_id: i64,
        ts: u64,
    },
    DropPartition {
        collection_id: i64,
        partition_name: String,
        /// The source partition dropped: a partition re-created under the same name has
        /// another ID.
        partition_id: i64,
        ts: u64,
    },
    /// A message type ferry does not replay (flush, segment stats, ...).
    Other {
        msg_type: i32,
        ts: u64,
    },
}

/// Rows written to one partition of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertEvent {
    pub collection_id: i64,
    pub collection_name: String,
    pub partition_id: i64,
    pub partition_name: String,
    /// The vchannel (`{pchannel}_{collectionID}v{shard}`).
    pub shard: String,
    /// Newest row timestamp (all rows of one request share it in practice).
    pub ts: u64,
    pub rows: Rows,
}

/// Primary keys deleted from a collection (or one partition of it).
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteEvent {
    pub collection_id: i64,
    pub collection_name: String,
    pub partition_id: i64,
    /// Empty when the delete applies to every partition.
    pub partition_name: String,
    pub shard: String,
    /// Removes versions of these keys with a timestamp strictly below `ts`.
    pub ts: u64,
    pub pks: PrimaryKeys,
}

impl WalEvent {
    /// The event's hybrid timestamp.
    pub fn ts(&self) -> u64 {
        match self {
            WalEvent::Insert(e) => e.ts,
            WalEvent::Delete(e) => e.ts,
            WalEvent::TimeTick { ts }
            | WalEvent::CreateCollection { ts, .. }
            | WalEvent::DropCollection { ts, .. }
            | WalEvent::CreatePartition { ts, .. }
            | WalEvent::DropPartition { ts, .. }
            | WalEvent::Other { ts, .. } => *ts,
        }
    }

    /// The collection the event belongs to; `None` for time ticks and ignored types.
    pub fn collection_id(&self) -> Option<i64> {
        match self {
            WalEvent::Insert(e) => Some(e.collection_id),
            WalEvent::Delete(e) => Some(e.collection_id),
            WalEvent::CreateCollection { collection_id, .. }
            | WalEvent::DropCollection { collection_id, .. }
            | WalEvent::CreatePartition { collection_id, .. }
            | WalEvent::DropPartition { collection_id, .. } => Some(*collection_id),
            WalEvent::TimeTick { .. } | WalEvent::Other { .. } => None,
        }
    }

    /// A short, bounded name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            WalEvent::Insert(_) => "insert",
            WalEvent::Delete(_) => "delete",
            WalEvent::TimeTick { .. } => "time_tick",
            WalEvent::CreateCollection { .. } => "create_collection",
            WalEvent::DropCollection { .. } => "drop_collection",
            WalEvent::CreatePartition { .. } => "create_partition",
            WalEvent::DropPartition { .. } => "drop_partition",
            WalEvent::Other { .. } => "other",
        }
    }
}

/// What [`peek`] learns without decoding a body's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub msg_type: i32,
    /// `base.timestamp` (for inserts and deletes the per-row timestamps are authoritative).
    pub base_ts: u64,
    pub collection_id: Option<i64>,
    /// Declared row count of an insert or delete (0 otherwise); for batch sizing only.
    pub rows: u64,
}

// Views of the bodies holding only their collection ID. prost skips the other fields
// without materialising them, so filtering another collection's 10 MB insert costs a scan,
// not a copy.
#[derive(Clone, PartialEq, Message)]
struct InsertHead {
    #[prost(int64, tag = "7")]
    collection_id: i64,
    #[prost(uint64, tag = "14")]
    num_rows: u64,
}
#[derive(Clone, PartialEq, Message)]
struct DeleteHead {
    #[prost(int64, tag = "7")]
    collection_id: i64,
    #[prost(int64, tag = "11")]
    num_rows: i64,
}
#[derive(Clone, PartialEq, Message)]
struct CollectionIdAt6 {
    #[prost(int64, tag = "6")]
    collection_id: i64,
}
#[derive(Clone, PartialEq, Message)]
struct CollectionIdAt5 {
    #[prost(int64, tag = "5")]
    collection_id: i64,
}

/// `schemapb.CollectionSchema` up to its name.
#[derive(Clone, PartialEq, Message)]
struct SchemaName {
    #[prost(string, tag = "1")]
    name: String,
}

fn header(value: &[u8]) -> Result<(i32, u64), DecodeError> {
    let h = MsgHeader::decode(value).map_err(DecodeError::Header)?;
    let base = h.base.ok_or(DecodeError::NoBase)?;
    Ok((base.msg_type, base.timestamp))
}

fn body<M: Message + Default>(kind: &'static str, value: &[u8]) -> Result<M, DecodeError> {
    M::decode(value).map_err(|source| DecodeError::Body { kind, source })
}

/// Reads the message type and collection ID only: used to drop other collections' records
/// before paying for a full decode.
pub fn peek(value: &[u8]) -> Result<Peek, DecodeError> {
    let (msg_type, base_ts) = header(value)?;
    let mut rows = 0;
    let collection_id = match MsgType::try_from(msg_type) {
        Ok(MsgType::Insert) => {
            let h = body::<InsertHead>("insert", value)?;
            rows = h.num_rows;
            Some(h.collection_id)
        }
        Ok(MsgType::Delete) => {
            let h = body::<DeleteHead>("delete", value)?;
            rows = h.num_rows.max(0) as u64;
            Some(h.collection_id)
        }
        Ok(MsgType::CreateCollection) => {
            Some(body::<CollectionIdAt6>("create collection", value)?.collection_id)
        }
        Ok(MsgType::CreatePartition) | Ok(MsgType::DropPartition) => {
            Some(body::<CollectionIdAt6>("partition", value)?.collection_id)
        }
        Ok(MsgType::DropCollection) => {
            Some(body::<CollectionIdAt5>("drop collection", value)?.collection_id)
        }
        _ => None,
    };
    Ok(Peek {
        msg_type,
        base_ts,
        collection_id,
        rows,
    })
}

/// Decodes one record value.
pub fn decode(value: &[u8]) -> Result<WalEvent, DecodeError> {
    let (msg_type, base_ts) = header(value)?;
    Ok(match MsgType::try_from(msg_type) {
        Ok(MsgType::Insert) => WalEvent::Insert(insert(body("insert", value)?, base_ts)?),
        Ok(MsgType::Delete) => WalEvent::Delete(delete(body("delete", value)?, base_ts)?),
        Ok(MsgType::TimeTick) => WalEvent::TimeTick { ts: base_ts },
        Ok(MsgType::CreateCollection) => {
            let m: msg::CreateCollectionRequest = body("create collection", value)?;
            // Milvus 2.3's root coordinator leaves `collectionName` empty on the WAL; the
            // name is in the schema.
            let name = if m.collection_name.is_empty() {
                SchemaName::decode(&m.schema[..])
                    .map(|s| s.name)
                    .unwrap_or_default()
            } else {
                m.collection_name
            };
            WalEvent::CreateCollection {
                collection_id: m.collection_id,
                name,
                schema: m.schema,
                channels: m.physical_channel_names,
                ts: base_ts,
            }
        }
        Ok(MsgType::DropCollection) => {
            let m: msg::DropCollectionRequest = body("drop collection", value)?;
            WalEvent::DropCollection {
                collection_id: m.collection_id,
                name: m.collection_name,
                ts: base_ts,
            }
        }
        Ok(MsgType::CreatePartition) => {
            let m: msg::CreatePartitionRequest = body("create partition", value)?;
            WalEvent::CreatePartition {
                collection_id: m.collection_id,
                partition_name: m.partition_name,
                partition_id: m.partition_id,
                ts: base_ts,
            }
        }
        Ok(MsgType::DropPartition) => {
            let m: msg::DropPartitionRequest = body("drop partition", value)?;
            WalEvent::DropPartition {
                collection_id: m.collection_id,
                partition_name: m.partition_name,
                partition_id: m.partition_id,
                ts: base_ts,
            }
        }
        _ => WalEvent::Other {
            msg_type,
            ts: base_ts,
        },
    })
}

/// Newest of the per-row timestamps, falling back to the header's.
fn newest(timestamps: &[u64], base_ts: u64) -> u64 {
    timestamps.iter().copied().max().unwrap_or(base_ts)
}

fn insert(m: msg::InsertRequest, base_ts: u64) -> Result<InsertEvent, DecodeError> {
    let collection_id = m.collection_id;
    // `version` defaults to RowBased (0) on the wire, so the payload decides: Milvus 2.3
    // proxies only write columns, and row blobs would need the schema to interpret.
    let row_based = !m.row_data.is_empty()
        || (m.fields_data.is_empty()
            && m.num_rows > 0
            && m.version == msg::InsertDataVersion::RowBased as i32);
    if row_based {
        return Err(DecodeError::RowBased { collection_id });
    }
    check_vector_dims(collection_id, &m.fields_data)?;
    let rows = Rows::new(m.fields_data).map_err(|source| DecodeError::Columns {
        collection_id,
        source,
    })?;
    if m.num_rows != rows.num_rows as u64 {
        return Err(DecodeError::RowCount {
            kind: "insert",
            collection_id,
            declared: m.num_rows,
            actual: rows.num_rows,
        });
    }
    Ok(InsertEvent {
        collection_id,
        collection_name: m.collection_name,
        partition_id: m.partition_id,
        partition_name: m.partition_name,
        shard: m.shard_name,
        ts: newest(&m.timestamps, base_ts),
        rows,
    })
}

/// Rejects dims that make no sense before [`Rows::new`] does arithmetic with them. A sparse
/// column's dim only describes it: the proxy copies the client batch's `SparseFloatArray.dim`
/// (its largest index plus one, indices being any u32; 0 when every row is empty), so it
/// may be anything in that range.
fn check_vector_dims(collection_id: i64, fields: &[FieldData]) -> Result<(), DecodeError> {
    for f in fields {
        if let Some(Field::Vectors(v)) = &f.field {
            let ok = match &v.data {
                None => true,
                Some(Vector::SparseFloatVector(_)) => (0..=MAX_SPARSE_DIM).contains(&v.dim),
                Some(Vector::BinaryVector(_)) => {
                    v.dim > 0 && v.dim <= MAX_VECTOR_DIM && v.dim % 8 == 0
                }
                Some(_) => v.dim > 0 && v.dim <= MAX_VECTOR_DIM,
            };
            if !ok {
                return Err(DecodeError::VectorDim {
                    collection_id,
                    field: f.field_name.clone(),
                    dim: v.dim,
                });
            }
        }
    }
    Ok(())
}

fn delete(m: msg::DeleteRequest, base_ts: u64) -> Result<DeleteEvent, DecodeError> {
    let collection_id = m.collection_id;
    // 2.3 fills `primary_keys`; 2.1-era writers only the deprecated int64 list.
    let pks = match m.primary_keys.as_ref().and_then(PrimaryKeys::from_ids) {
        Some(pks) => pks,
        None if !m.int64_primary_keys.is_empty() => PrimaryKeys::Int(m.int64_primary_keys),
        None if m.num_rows == 0 => PrimaryKeys::Int(Vec::new()),
        None => return Err(DecodeError::NoPrimaryKeys { collection_id }),
    };
    if m.num_rows != 0 && m.num_rows != pks.len() as i64 {
        return Err(DecodeError::RowCount {
            kind: "delete",
            collection_id,
            declared: m.num_rows.max(0) as u64,
            actual: pks.len(),
        });
    }
    Ok(DeleteEvent {
        collection_id,
        collection_name: m.collection_name,
        partition_id: m.partition_id,
        partition_name: m.partition_name,
        shard: m.shard_name,
        ts: newest(&m.timestamps, base_ts),
        pks,
    })
}

#[cfg(test)]
pub(crate) mod tests;
