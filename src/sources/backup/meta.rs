//! The backup meta files, modelled on `core/proto/backup.proto` of zilliztech/milvus-backup.
//!
//! milvus-backup writes its protobuf structs with Go's `encoding/json`, not protojson: keys
//! are the proto field names as declared (snake_case, with the odd camelCase `fieldID`,
//! `autoID`, `errorMessage`), enums are integers, 64-bit numbers are plain JSON numbers, and
//! empty values are omitted, so every field here defaults. Unknown keys are ignored: newer
//! milvus-backup versions keep adding fields (v0.5 added `format`, `storage_version`,
//! `log_id`, ...) and a reader must not break on them.
//!
//! Schema attributes of Milvus 2.4+ (checked against milvus-backup `core/proto/backup.proto`
//! and `core/backup/coll_ddl_task.go` `convFields`/`convFunctions`/`convSchema`): field
//! `nullable`, `is_function_output` and the default value, collection `functions` and
//! `struct_array_fields`. milvus-backup writes a default value as `default_value_base64`
//! (base64 of the protobuf `ValueField`, v0.5+); v0.4.2x wrote `default_value_proto`, the
//! same protobuf bytes as a Go string, which `encoding/json` stores with every byte that is
//! not UTF-8 replaced by U+FFFD. `default_value` itself (a Go oneof) is never written. It
//! does not write `is_clustering_key`, so a backup cannot say which field was the
//! clustering key.
//!
//! `full_meta.json` holds the whole [`BackupInfo`] tree. The four level files hold the same
//! tree flattened: `backup_meta.json` (a `BackupInfo` without collections),
//! `collection_meta.json`, `partition_meta.json` and `segment_meta.json` (each `{"infos":
//! [...]}`), joined back by collection and partition ids ([`BackupInfo::from_levels`]).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::common::KeyValuePair as ProtoKv;
use crate::proto::schema::{
    CollectionSchema, FieldSchema, FunctionSchema, StructArrayFieldSchema, ValueField,
};

/// Root of a backup (`BackupInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupInfo {
    pub id: String,
    pub state_code: i32,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    pub start_time: i64,
    pub end_time: i64,
    pub progress: i32,
    pub name: String,
    pub backup_timestamp: u64,
    pub collection_backups: Vec<CollectionBackupInfo>,
    pub size: i64,
    pub milvus_version: String,
    /// Empty for the binlog format; `"snapshot"` for exported snapshot bundles (v0.5+).
    pub format: String,
}

/// One collection of a backup (`CollectionBackupInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionBackupInfo {
    pub id: String,
    pub collection_id: i64,
    pub db_name: String,
    pub collection_name: String,
    pub schema: Option<SchemaJson>,
    pub shards_num: i32,
    /// `common.ConsistencyLevel` number.
    pub consistency_level: i32,
    pub partition_backups: Vec<PartitionBackupInfo>,
    pub backup_timestamp: u64,
    pub size: i64,
    pub has_index: bool,
    pub load_state: String,
    pub backup_physical_timestamp: u64,
    pub channel_checkpoints: HashMap<String, String>,
    pub l0_segments: Vec<SegmentBackupInfo>,
    pub properties: Vec<KeyValue>,
}

/// One partition (`PartitionBackupInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionBackupInfo {
    pub partition_id: i64,
    pub partition_name: String,
    pub collection_id: i64,
    pub segment_backups: Vec<SegmentBackupInfo>,
    pub size: i64,
    pub load_state: String,
}

/// One segment (`SegmentBackupInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentBackupInfo {
    pub segment_id: i64,
    pub collection_id: i64,
    pub partition_id: i64,
    pub num_of_rows: i64,
    pub binlogs: Vec<FieldBinlog>,
    pub deltalogs: Vec<FieldBinlog>,
    pub size: i64,
    /// The folder level between partition and segment in the backup; 0 in backups made
    /// before it existed.
    pub group_id: i64,
    pub backuped: bool,
    pub is_l0: bool,
    pub v_channel: String,
    pub storage_version: i64,
}

/// Logs of one field (`FieldBinlog`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldBinlog {
    #[serde(rename = "fieldID")]
    pub field_id: i64,
    pub binlogs: Vec<BinlogInfo>,
}

/// One log file (`Binlog`). `log_path` points into the source bucket, not the backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BinlogInfo {
    pub entries_num: i64,
    pub timestamp_from: u64,
    pub timestamp_to: u64,
    pub log_path: String,
    pub log_size: i64,
    pub log_id: i64,
}

impl BinlogInfo {
    /// The log id: `log_id` when written (v0.5+), else the last element of `log_path`.
    pub fn id(&self) -> Option<i64> {
        if self.log_id != 0 {
            return Some(self.log_id);
        }
        self.log_path.rsplit('/').next()?.parse().ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `CollectionSchema` as the backup stores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaJson {
    pub name: String,
    pub description: String,
    #[serde(rename = "autoID")]
    pub auto_id: bool,
    pub fields: Vec<FieldSchemaJson>,
    pub enable_dynamic_field: bool,
    pub functions: Vec<FunctionSchemaJson>,
    pub struct_array_fields: Vec<StructArrayFieldSchemaJson>,
}

/// `FieldSchema` as the backup stores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldSchemaJson {
    #[serde(rename = "fieldID")]
    pub field_id: i64,
    pub name: String,
    pub is_primary_key: bool,
    pub description: String,
    pub data_type: i32,
    pub type_params: Vec<KeyValue>,
    pub index_params: Vec<KeyValue>,
    #[serde(rename = "autoID")]
    pub auto_id: bool,
    pub state: i32,
    pub element_type: i32,
    pub is_dynamic: bool,
    pub is_partition_key: bool,
    pub nullable: bool,
    pub is_function_output: bool,
    /// Base64 of the protobuf `ValueField` (milvus-backup v0.5+).
    pub default_value_base64: String,
    /// The protobuf `ValueField` as a Go string (milvus-backup v0.4.2x; deprecated).
    pub default_value_proto: String,
}

/// `FunctionSchema` as the backup stores it (`type` is the `FunctionType` number).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionSchemaJson {
    pub name: String,
    pub id: i64,
    pub description: String,
    #[serde(rename = "type")]
    pub function_type: i32,
    pub input_field_names: Vec<String>,
    pub input_field_ids: Vec<i64>,
    pub output_field_names: Vec<String>,
    pub output_field_ids: Vec<i64>,
    pub params: Vec<KeyValue>,
}

/// `StructArrayFieldSchema` as the backup stores it: read so that a collection having one
/// is refused at planning rather than imported without it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StructArrayFieldSchemaJson {
    #[serde(rename = "fieldID")]
    pub field_id: i64,
    pub name: String,
    pub description: String,
    pub fields: Vec<FieldSchemaJson>,
}

fn kvs(v: &[KeyValue]) -> Vec<ProtoKv> {
    v.iter()
        .map(|kv| ProtoKv {
            key: kv.key.clone(),
            value: kv.value.clone(),
        })
        .collect()
}

fn back_kvs(v: &[ProtoKv]) -> Vec<KeyValue> {
    v.iter()
        .map(|kv| KeyValue {
            key: kv.key.clone(),
            value: kv.value.clone(),
        })
        .collect()
}

impl FieldSchemaJson {
    /// The field as ferry's proto type; an error names a default value that cannot be read.
    fn to_proto(&self) -> Result<FieldSchema, String> {
        Ok(FieldSchema {
            field_id: self.field_id,
            name: self.name.clone(),
            is_primary_key: self.is_primary_key,
            description: self.description.clone(),
            data_type: self.data_type,
            type_params: kvs(&self.type_params),
            index_params: kvs(&self.index_params),
            auto_id: self.auto_id,
            state: self.state,
            element_type: self.element_type,
            default_value: self.default_value()?,
            is_dynamic: self.is_dynamic,
            is_partition_key: self.is_partition_key,
            nullable: self.nullable,
            is_function_output: self.is_function_output,
            ..Default::default()
        })
    }

    /// The default value, from `default_value_base64`, else the older `default_value_proto`
    /// when `encoding/json` kept its bytes (no U+FFFD stands in for one).
    fn default_value(&self) -> Result<Option<ValueField>, String> {
        let bytes = if !self.default_value_base64.is_empty() {
            base64::engine::general_purpose::STANDARD
                .decode(&self.default_value_base64)
                .map_err(|e| {
                    format!(
                        "field {:?}: default_value_base64 is not base64: {e}",
                        self.name
                    )
                })?
        } else if self.default_value_proto.is_empty() {
            return Ok(None);
        } else if self.default_value_proto.contains('\u{FFFD}') {
            return Err(format!(
                "field {:?}: default_value_proto lost bytes in milvus-backup's JSON (a Go \
                 string of protobuf bytes that are not UTF-8); the default value cannot be \
                 read back",
                self.name
            ));
        } else {
            self.default_value_proto.as_bytes().to_vec()
        };
        ValueField::decode(&bytes[..]).map(Some).map_err(|e| {
            format!(
                "field {:?}: default value is not a ValueField: {e}",
                self.name
            )
        })
    }

    fn from_proto(f: &FieldSchema) -> FieldSchemaJson {
        FieldSchemaJson {
            field_id: f.field_id,
            name: f.name.clone(),
            is_primary_key: f.is_primary_key,
            description: f.description.clone(),
            data_type: f.data_type,
            type_params: back_kvs(&f.type_params),
            index_params: back_kvs(&f.index_params),
            auto_id: f.auto_id,
            state: f.state,
            element_type: f.element_type,
            is_dynamic: f.is_dynamic,
            is_partition_key: f.is_partition_key,
            nullable: f.nullable,
            is_function_output: f.is_function_output,
            default_value_base64: f
                .default_value
                .as_ref()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v.encode_to_vec()))
                .unwrap_or_default(),
            default_value_proto: String::new(),
        }
    }
}

impl SchemaJson {
    /// The schema as ferry's proto type; an error names what cannot be read (a default
    /// value milvus-backup did not keep intact).
    pub fn to_proto(&self) -> Result<CollectionSchema, String> {
        Ok(CollectionSchema {
            name: self.name.clone(),
            description: self.description.clone(),
            auto_id: self.auto_id,
            enable_dynamic_field: self.enable_dynamic_field,
            fields: self
                .fields
                .iter()
                .map(FieldSchemaJson::to_proto)
                .collect::<Result<_, _>>()?,
            functions: self
                .functions
                .iter()
                .map(|f| FunctionSchema {
                    name: f.name.clone(),
                    id: f.id,
                    description: f.description.clone(),
                    r#type: f.function_type,
                    input_field_names: f.input_field_names.clone(),
                    input_field_ids: f.input_field_ids.clone(),
                    output_field_names: f.output_field_names.clone(),
                    output_field_ids: f.output_field_ids.clone(),
                    params: kvs(&f.params),
                })
                .collect(),
            struct_array_fields: self
                .struct_array_fields
                .iter()
                .map(|s| {
                    Ok(StructArrayFieldSchema {
                        field_id: s.field_id,
                        name: s.name.clone(),
                        description: s.description.clone(),
                        fields: s
                            .fields
                            .iter()
                            .map(FieldSchemaJson::to_proto)
                            .collect::<Result<_, String>>()?,
                        ..Default::default()
                    })
                })
                .collect::<Result<_, String>>()?,
            ..Default::default()
        })
    }

    /// The backup form of a proto schema (for writing fixtures), as milvus-backup v0.5+
    /// writes it.
    pub fn from_proto(s: &CollectionSchema) -> SchemaJson {
        SchemaJson {
            name: s.name.clone(),
            description: s.description.clone(),
            auto_id: s.auto_id,
            enable_dynamic_field: s.enable_dynamic_field,
            fields: s.fields.iter().map(FieldSchemaJson::from_proto).collect(),
            functions: s
                .functions
                .iter()
                .map(|f| FunctionSchemaJson {
                    name: f.name.clone(),
                    id: f.id,
                    description: f.description.clone(),
                    function_type: f.r#type,
                    input_field_names: f.input_field_names.clone(),
                    input_field_ids: f.input_field_ids.clone(),
                    output_field_names: f.output_field_names.clone(),
                    output_field_ids: f.output_field_ids.clone(),
                    params: back_kvs(&f.params),
                })
                .collect(),
            struct_array_fields: s
                .struct_array_fields
                .iter()
                .map(|sa| StructArrayFieldSchemaJson {
                    field_id: sa.field_id,
                    name: sa.name.clone(),
                    description: sa.description.clone(),
                    fields: sa.fields.iter().map(FieldSchemaJson::from_proto).collect(),
                })
                .collect(),
        }
    }
}

/// `{"infos": [...]}`, the shape of the three lower level files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Level<T> {
    #[serde(default = "Vec::new")]
    pub infos: Vec<T>,
}

impl BackupInfo {
    /// Rebuilds the tree from the four level files, as milvus-backup's `levelToTree` does:
    /// segments join partitions by (collection id, partition id), partitions join
    /// collections by collection id.
    pub fn from_levels(
        mut backup: BackupInfo,
        collections: Vec<CollectionBackupInfo>,
        partitions: Vec<PartitionBackupInfo>,
        segments: Vec<SegmentBackupInfo>,
    ) -> BackupInfo {
        let mut segs: BTreeMap<(i64, i64), Vec<SegmentBackupInfo>> = BTreeMap::new();
        for s in segments {
            segs.entry((s.collection_id, s.partition_id))
                .or_default()
                .push(s);
        }
        let mut parts: BTreeMap<i64, Vec<PartitionBackupInfo>> = BTreeMap::new();
        for mut p in partitions {
            p.segment_backups = segs
                .remove(&(p.collection_id, p.partition_id))
                .unwrap_or_default();
            parts.entry(p.collection_id).or_default().push(p);
        }
        backup.collection_backups = collections
            .into_iter()
            .map(|mut c| {
                c.partition_backups = parts.remove(&c.collection_id).unwrap_or_default();
                c
            })
            .collect();
        backup
    }

    /// The four level files' contents (the inverse of [`BackupInfo::from_levels`]).
    pub fn to_levels(
        &self,
    ) -> (
        BackupInfo,
        Level<CollectionBackupInfo>,
        Level<PartitionBackupInfo>,
        Level<SegmentBackupInfo>,
    ) {
        let mut top = self.clone();
        top.collection_backups = Vec::new();
        let mut colls = Vec::new();
        let mut parts = Vec::new();
        let mut segs = Vec::new();
        for c in &self.collection_backups {
            let mut c = c.clone();
            for p in std::mem::take(&mut c.partition_backups) {
                let mut p = p.clone();
                segs.extend(std::mem::take(&mut p.segment_backups));
                parts.push(p);
            }
            colls.push(c);
        }
        (
            top,
            Level { infos: colls },
            Level { infos: parts },
            Level { infos: segs },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_field_names_and_omitted_values_parse() {
        // Shaped like milvus-backup v0.4 output: omitted zero values, integer enums.
        let json = r#"{"id":"x","state_code":2,"name":"bk","backup_timestamp":449911858745360385,
          "collection_backups":[{"collection_id":7,"db_name":"default","collection_name":"c",
            "schema":{"name":"c","fields":[{"fieldID":100,"name":"pk","is_primary_key":true,
              "data_type":5,"autoID":true},{"fieldID":101,"name":"v","data_type":101,
              "type_params":[{"key":"dim","value":"4"}]}],"enable_dynamic_field":true},
            "shards_num":2,"consistency_level":1,
            "partition_backups":[{"partition_id":8,"partition_name":"_default","collection_id":7,
              "segment_backups":[{"segment_id":9,"collection_id":7,"partition_id":8,
                "num_of_rows":3,"binlogs":[{"fieldID":100,"binlogs":[{"log_path":
                "files/insert_log/7/8/9/100/4455","log_size":10}]}],"group_id":1,
                "future_field":{"ignored":true}}]}],
            "has_index":true,"index_infos":[{"field_name":"v","index_name":"i","params":{"a":"b"}}]}],
          "milvus_version":"v2.3.5"}"#;
        let b: BackupInfo = serde_json::from_str(json).unwrap();
        let c = &b.collection_backups[0];
        let schema = c.schema.as_ref().unwrap().to_proto().unwrap();
        assert!(schema.enable_dynamic_field);
        assert!(schema.fields[0].auto_id && schema.fields[0].is_primary_key);
        assert_eq!(schema.fields[1].type_params[0].value, "4");
        let s = &c.partition_backups[0].segment_backups[0];
        assert_eq!((s.num_of_rows, s.group_id, s.is_l0), (3, 1, false));
        assert_eq!(s.binlogs[0].binlogs[0].id(), Some(4455));
        assert_eq!(b.format, "");
    }

    #[test]
    fn functions_defaults_and_function_outputs_parse() {
        use crate::proto::schema::{value_field::Data, FunctionType};
        // Shaped like milvus-backup v0.5 output for a Milvus 2.5 collection with a BM25
        // function: Go encoding/json of backuppb structs, zero values omitted.
        let json = r#"{"name":"docs","fields":[
            {"fieldID":100,"name":"id","is_primary_key":true,"data_type":5},
            {"fieldID":101,"name":"text","data_type":21,"type_params":[{"key":"max_length","value":"512"},{"key":"enable_analyzer","value":"true"}]},
            {"fieldID":102,"name":"sparse","data_type":104,"is_function_output":true},
            {"fieldID":103,"name":"year","data_type":5,"nullable":true,"default_value_base64":"GAc="},
            {"fieldID":104,"name":"tag","data_type":21,"nullable":true,"default_value_base64":"MgNuL2E="},
            {"fieldID":105,"name":"old","data_type":5,"default_value_proto":"\u0018\u0007"}],
          "enable_dynamic_field":true,
          "functions":[{"name":"bm25","id":1,"type":1,"input_field_names":["text"],
            "input_field_ids":[101],"output_field_names":["sparse"],"output_field_ids":[102],
            "params":[{"key":"k","value":"v"}]}]}"#;
        let schema: SchemaJson = serde_json::from_str(json).unwrap();
        let s = schema.to_proto().unwrap();
        assert!(s.fields[2].is_function_output);
        assert!(!s.fields[1].is_function_output);
        // ValueField{long_data: 7} and {string_data: "n/a"}, protobuf-encoded.
        let value = |i: usize| {
            s.fields[i]
                .default_value
                .as_ref()
                .and_then(|v| v.data.clone())
        };
        assert_eq!(value(3), Some(Data::LongData(7)));
        assert!(s.fields[3].nullable);
        assert_eq!(value(4), Some(Data::StringData("n/a".into())));
        assert_eq!(value(5), Some(Data::LongData(7)));
        assert_eq!(value(0), None);
        let f = &s.functions[0];
        assert_eq!(
            (f.name.as_str(), f.id, f.r#type),
            ("bm25", 1, FunctionType::Bm25 as i32)
        );
        assert_eq!(
            (f.input_field_names.clone(), f.input_field_ids.clone()),
            (vec!["text".to_string()], vec![101])
        );
        assert_eq!(
            (f.output_field_names.clone(), f.output_field_ids.clone()),
            (vec!["sparse".to_string()], vec![102])
        );
        assert_eq!(
            (f.params[0].key.as_str(), f.params[0].value.as_str()),
            ("k", "v")
        );
        // What the fixtures write reads back as the same schema.
        assert_eq!(SchemaJson::from_proto(&s).to_proto().unwrap(), s);
    }

    #[test]
    fn unreadable_default_values_and_struct_arrays_are_not_dropped() {
        // ValueField{float_data: 1.5} is 25 00 00 c0 3f: as a Go string in encoding/json the
        // 0xc0 became U+FFFD, so the value is gone.
        let json = r#"{"name":"c","fields":[{"fieldID":100,"name":"f","data_type":10,
            "default_value_proto":"%\u0000\u0000\ufffd?"}]}"#;
        let schema: SchemaJson = serde_json::from_str(json).unwrap();
        let e = schema.to_proto().unwrap_err();
        assert!(
            e.contains("field \"f\": default_value_proto lost bytes"),
            "{e}"
        );
        let json = r#"{"name":"c","fields":[{"fieldID":100,"name":"f","data_type":5,
            "default_value_base64":"not base64!"}]}"#;
        let schema: SchemaJson = serde_json::from_str(json).unwrap();
        assert!(schema.to_proto().unwrap_err().contains("is not base64"));
        // A struct-array field reaches the schema, where planning refuses it.
        let json = r#"{"name":"c","fields":[{"fieldID":100,"name":"id","data_type":5}],
            "struct_array_fields":[{"fieldID":101,"name":"clips","fields":[
              {"fieldID":102,"name":"clips[frame]","data_type":22,"element_type":5}]}]}"#;
        let schema: SchemaJson = serde_json::from_str(json).unwrap();
        let s = schema.to_proto().unwrap();
        assert_eq!(s.struct_array_fields[0].name, "clips");
        assert_eq!(s.struct_array_fields[0].fields[0].field_id, 102);
    }

    #[test]
    fn levels_round_trip_to_the_tree() {
        let seg = |id, p| SegmentBackupInfo {
            segment_id: id,
            collection_id: 1,
            partition_id: p,
            num_of_rows: 5,
            ..Default::default()
        };
        let tree = BackupInfo {
            name: "b".into(),
            collection_backups: vec![CollectionBackupInfo {
                collection_id: 1,
                collection_name: "c".into(),
                partition_backups: vec![
                    PartitionBackupInfo {
                        partition_id: 2,
                        collection_id: 1,
                        segment_backups: vec![seg(10, 2), seg(11, 2)],
                        ..Default::default()
                    },
                    PartitionBackupInfo {
                        partition_id: 3,
                        collection_id: 1,
                        segment_backups: vec![seg(12, 3)],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (top, c, p, s) = tree.to_levels();
        assert_eq!(
            BackupInfo::from_levels(top, c.infos, p.infos, s.infos),
            tree
        );
    }
}
