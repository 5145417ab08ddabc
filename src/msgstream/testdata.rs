//! Real-shaped WAL records for unit tests: built with the same protobuf types Milvus 2.3
//! writes, filled the way its proxy fills them (column-based, per-row timestamps,
//! `primary_keys` as `IDs`).

use prost::Message;

use crate::proto::common::{MsgBase, MsgType};
use crate::proto::msg;
use crate::proto::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as Scalar, vector_field::Data as Vector,
    DataType, FieldData, FloatArray, IDs as Ids, LongArray, ScalarField, StringArray, VectorField,
};

pub const DIM: i64 = 2;

fn base(t: MsgType, ts: u64) -> Option<MsgBase> {
    Some(MsgBase {
        msg_type: t as i32,
        msg_id: ts as i64,
        timestamp: ts,
        source_id: 1,
        ..Default::default()
    })
}

pub fn long_col(name: &str, v: Vec<i64>) -> FieldData {
    FieldData {
        r#type: DataType::Int64 as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::LongData(LongArray { data: v })),
            ..Default::default()
        })),
        field_id: 100,
        ..Default::default()
    }
}

pub fn str_col(name: &str, v: Vec<String>) -> FieldData {
    FieldData {
        r#type: DataType::VarChar as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::StringData(StringArray { data: v })),
            ..Default::default()
        })),
        field_id: 100,
        ..Default::default()
    }
}

pub fn vec_col(name: &str, v: Vec<f32>) -> FieldData {
    FieldData {
        r#type: DataType::FloatVector as i32,
        field_name: name.into(),
        field: Some(Field::Vectors(VectorField {
            dim: DIM,
            data: Some(Vector::FloatVector(FloatArray { data: v })),
            ..Default::default()
        })),
        field_id: 101,
        ..Default::default()
    }
}

/// The source partition ID the helpers give partition `name` (one per name, stable); a
/// partition re-created under a name needs another ([`insert_into`], [`drop_partition_id`]).
pub fn partition_id(name: &str) -> i64 {
    1000 + name.bytes().fold(0i64, |h, b| (h * 31 + i64::from(b)) % 1_000_000)
}

/// An insert of rows `id = pks[i]`, `v = [pks[i], version]`, all at `ts`.
pub fn insert(collection_id: i64, partition: &str, ts: u64, pks: &[i64], version: f32) -> Vec<u8> {
    insert_into(collection_id, partition, partition_id(partition), ts, pks, version)
}

/// [`insert`] into the source partition with ID `partition_id`.
pub fn insert_into(collection_id: i64, partition: &str, partition_id: i64, ts: u64, pks: &[i64], version: f32) -> Vec<u8> {
    let vectors = pks.iter().flat_map(|&k| [k as f32, version]).collect();
    msg::InsertRequest {
        base: base(MsgType::Insert, ts),
        shard_name: format!("by-dev-rootcoord-dml_0_{collection_id}v0"),
        db_name: "default".into(),
        collection_name: format!("c{collection_id}"),
        partition_name: partition.into(),
        db_id: 1,
        collection_id,
        partition_id,
        segment_id: 9,
        timestamps: vec![ts; pks.len()],
        row_i_ds: pks.to_vec(),
        row_data: Vec::new(),
        fields_data: vec![long_col("id", pks.to_vec()), vec_col("v", vectors)],
        num_rows: pks.len() as u64,
        version: msg::InsertDataVersion::ColumnBased as i32,
    }
    .encode_to_vec()
}

pub fn delete(collection_id: i64, partition: &str, ts: u64, pks: &[i64]) -> Vec<u8> {
    msg::DeleteRequest {
        base: base(MsgType::Delete, ts),
        shard_name: format!("by-dev-rootcoord-dml_0_{collection_id}v0"),
        collection_name: format!("c{collection_id}"),
        partition_name: partition.into(),
        collection_id,
        // Milvus names the ID of a partition it is given; -1 is every partition.
        partition_id: if partition.is_empty() { -1 } else { partition_id(partition) },
        timestamps: vec![ts; pks.len()],
        num_rows: pks.len() as i64,
        primary_keys: Some(Ids {
            id_field: Some(IdField::IntId(LongArray { data: pks.to_vec() })),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn delete_str(collection_id: i64, ts: u64, pks: &[&str]) -> Vec<u8> {
    msg::DeleteRequest {
        base: base(MsgType::Delete, ts),
        collection_id,
        timestamps: vec![ts; pks.len()],
        num_rows: pks.len() as i64,
        primary_keys: Some(Ids {
            id_field: Some(IdField::StrId(StringArray {
                data: pks.iter().map(|s| s.to_string()).collect(),
            })),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn time_tick(ts: u64) -> Vec<u8> {
    msg::TimeTickMsg {
        base: base(MsgType::TimeTick, ts),
    }
    .encode_to_vec()
}

pub fn create_partition(collection_id: i64, name: &str, ts: u64) -> Vec<u8> {
    msg::CreatePartitionRequest {
        base: base(MsgType::CreatePartition, ts),
        collection_name: format!("c{collection_id}"),
        partition_name: name.into(),
        collection_id,
        partition_id: partition_id(name),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn drop_partition(collection_id: i64, name: &str, ts: u64) -> Vec<u8> {
    drop_partition_id(collection_id, name, partition_id(name), ts)
}

/// The drop of source partition `partition_id`, named `name`.
pub fn drop_partition_id(collection_id: i64, name: &str, partition_id: i64, ts: u64) -> Vec<u8> {
    msg::DropPartitionRequest {
        base: base(MsgType::DropPartition, ts),
        collection_name: format!("c{collection_id}"),
        partition_name: name.into(),
        collection_id,
        partition_id,
        ..Default::default()
    }
    .encode_to_vec()
}

/// As Milvus 2.3 writes it: no `collectionName`, the name only inside the schema.
pub fn create_collection(collection_id: i64, name: &str, ts: u64) -> Vec<u8> {
    let schema = crate::proto::schema::CollectionSchema {
        name: name.into(),
        fields: vec![crate::proto::schema::FieldSchema {
            name: "id".into(),
            is_primary_key: true,
            data_type: DataType::Int64 as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    msg::CreateCollectionRequest {
        base: base(MsgType::CreateCollection, ts),
        collection_id,
        schema: schema.encode_to_vec(),
        physical_channel_names: vec!["by-dev-rootcoord-dml_0".into()],
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn drop_collection(collection_id: i64, name: &str, ts: u64) -> Vec<u8> {
    msg::DropCollectionRequest {
        base: base(MsgType::DropCollection, ts),
        collection_name: name.into(),
        collection_id,
        ..Default::default()
    }
    .encode_to_vec()
}

/// An insert of `columns`, as a 2.4+ proxy writes one: column-based, per-row timestamps,
/// nullable columns already filled to one value a row beside their `valid_data`
/// (`fillWithValue` in `internal/proxy/validate_util.go` runs before the message is built).
pub fn insert_columns(collection_id: i64, ts: u64, columns: Vec<FieldData>) -> Vec<u8> {
    let rows = columns.first().map_or(0, crate::milvus::data::column_rows);
    msg::InsertRequest {
        base: base(MsgType::Insert, ts),
        shard_name: format!("by-dev-rootcoord-dml_0_{collection_id}v0"),
        collection_name: format!("c{collection_id}"),
        partition_name: "_default".into(),
        collection_id,
        timestamps: vec![ts; rows],
        row_i_ds: (0..rows as i64).collect(),
        fields_data: columns,
        num_rows: rows as u64,
        version: msg::InsertDataVersion::ColumnBased as i32,
        ..Default::default()
    }
    .encode_to_vec()
}

/// An insert with VarChar keys `pk = pks[i]`, `v = [i, version]`.
pub fn insert_str(collection_id: i64, ts: u64, pks: &[&str], version: f32) -> Vec<u8> {
    let vectors = (0..pks.len()).flat_map(|i| [i as f32, version]).collect();
    msg::InsertRequest {
        base: base(MsgType::Insert, ts),
        collection_name: format!("c{collection_id}"),
        partition_name: "_default".into(),
        collection_id,
        timestamps: vec![ts; pks.len()],
        fields_data: vec![
            str_col("pk", pks.iter().map(|s| s.to_string()).collect()),
            vec_col("v", vectors),
        ],
        num_rows: pks.len() as u64,
        version: msg::InsertDataVersion::ColumnBased as i32,
        ..Default::default()
    }
    .encode_to_vec()
}
