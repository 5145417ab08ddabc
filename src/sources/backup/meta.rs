//! The backup meta files, modelled on `core/proto/backup.proto` of zilliztech/milvus-backup.
//!
//! milvus-backup writes its protobuf structs with Go's `encoding/json`, not protojson: keys
//! are the proto field names as declared (snake_case, with the odd camelCase `fieldID`,
//! `autoID`, `errorMessage`), enums are integers, 64-bit numbers are plain JSON numbers, and
//! empty values are omitted, so every field here defaults. Unknown keys are ignored: newer
//! milvus-backup versions keep adding fields (v0.5 added `format`, `storage_version`,
//! `log_id`, ...) and a reader must not break on them.
//!
//! `full_meta.json` holds the whole [`BackupInfo`] tree. The four level files hold the same
//! tree flattened: `backup_meta.json` (a `BackupInfo` without collections),
//! `collection_meta.json`, `partition_meta.json` and `segment_meta.json` (each `{"infos":
//! [...]}`), joined back by collection and partition ids ([`BackupInfo::from_levels`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::proto::common::KeyValuePair as ProtoKv;
use crate::proto::schema::{CollectionSchema, FieldSchema};

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
}

fn kvs(v: &[KeyValue]) -> Vec<ProtoKv> {
    v.iter()
        .map(|kv| ProtoKv {
            key: kv.key.clone(),
            value: kv.value.clone(),
        })
        .collect()
}

impl SchemaJson {
    /// The schema as ferry's proto type. Default values are not carried over: Go's JSON
    /// encoding of their protobuf oneof cannot be read back faithfully, and Milvus 2.3
    /// collections rarely have them.
    pub fn to_proto(&self) -> CollectionSchema {
        CollectionSchema {
            name: self.name.clone(),
            description: self.description.clone(),
            auto_id: self.auto_id,
            enable_dynamic_field: self.enable_dynamic_field,
            fields: self
                .fields
                .iter()
                .map(|f| FieldSchema {
                    field_id: f.field_id,
                    name: f.name.clone(),
                    is_primary_key: f.is_primary_key,
                    description: f.description.clone(),
                    data_type: f.data_type,
                    type_params: kvs(&f.type_params),
                    index_params: kvs(&f.index_params),
                    auto_id: f.auto_id,
                    state: f.state,
                    element_type: f.element_type,
                    default_value: None,
                    is_dynamic: f.is_dynamic,
                    is_partition_key: f.is_partition_key,
                    nullable: f.nullable,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The backup form of a proto schema (for writing fixtures).
    pub fn from_proto(s: &CollectionSchema) -> SchemaJson {
        let back = |v: &[ProtoKv]| {
            v.iter()
                .map(|kv| KeyValue {
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                })
                .collect()
        };
        SchemaJson {
            name: s.name.clone(),
            description: s.description.clone(),
            auto_id: s.auto_id,
            enable_dynamic_field: s.enable_dynamic_field,
            fields: s
                .fields
                .iter()
                .map(|f| FieldSchemaJson {
                    field_id: f.field_id,
                    name: f.name.clone(),
                    is_primary_key: f.is_primary_key,
                    description: f.description.clone(),
                    data_type: f.data_type,
                    type_params: back(&f.type_params),
                    index_params: back(&f.index_params),
                    auto_id: f.auto_id,
                    state: f.state,
                    element_type: f.element_type,
                    is_dynamic: f.is_dynamic,
                    is_partition_key: f.is_partition_key,
                    nullable: f.nullable,
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
        let schema = c.schema.as_ref().unwrap().to_proto();
        assert!(schema.enable_dynamic_field);
        assert!(schema.fields[0].auto_id && schema.fields[0].is_primary_key);
        assert_eq!(schema.fields[1].type_params[0].value, "4");
        let s = &c.partition_backups[0].segment_backups[0];
        assert_eq!((s.num_of_rows, s.group_id, s.is_l0), (3, 1, false));
        assert_eq!(s.binlogs[0].binlogs[0].id(), Some(4455));
        assert_eq!(b.format, "");
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
