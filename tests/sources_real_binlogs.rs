//! The binlog reader against binlogs a real Milvus 2.3.5 wrote: a collection with every
//! 2.3 type is filled, partly deleted and flushed on the test environment's source Milvus;
//! its segments are copied out of the server's data dir into a milvus-backup layout, read
//! back through `BackupSource`, and compared field by field with what was inserted.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, PkValue, PrimaryKeys, Rows};
use ferry::proto::common::ConsistencyLevel;
use ferry::sources::backup::meta::{
    BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SchemaJson,
};
use ferry::sources::backup::testdata::{copy_milvus_segment, write_meta};
use ferry::sources::BackupSource;

async fn round_trip(shape: Shape) {
    let env = common::env();
    let client = common::client(&env.source_uri).await;
    let name = common::unique("sources_binlogs");
    client
        .create_collection(&CreateCollection {
            name: name.clone(),
            schema: data::all_types_schema(&name, shape),
            shards_num: 1,
            consistency_level: ConsistencyLevel::Strong,
            properties: vec![],
            num_partitions: 0,
        })
        .await
        .expect("create collection");
    let ids: Vec<i64> = (0..500).collect();
    let inserted = data::rows(shape, &ids, 0);
    client.insert(&name, "", &inserted).await.expect("insert");
    let deleted: Vec<i64> = vec![3, 77, 499];
    let keys = match data::key(shape, 0) {
        PkValue::Int(_) => PrimaryKeys::Int(
            deleted
                .iter()
                .map(|&i| match data::key(shape, i) {
                    PkValue::Int(k) => k,
                    PkValue::Str(_) => unreachable!(),
                })
                .collect(),
        ),
        PkValue::Str(_) => PrimaryKeys::Str(
            deleted
                .iter()
                .map(|&i| match data::key(shape, i) {
                    PkValue::Str(k) => k,
                    PkValue::Int(_) => unreachable!(),
                })
                .collect(),
        ),
    };
    client.delete(&name, "", "pk", &keys).await.expect("delete");
    client
        .flush(std::slice::from_ref(&name), Duration::from_secs(120))
        .await
        .expect("flush");

    let desc = client.describe_collection(&name).await.expect("describe");
    let schema = desc.schema.clone().expect("schema");
    let coll_id = desc.collection_id;
    let partitions = client.list_partitions(&name).await.expect("partitions");
    let (part_name, part_id) = partitions[0].clone();

    // Lay the flushed segments out as milvus-backup does, with a group level.
    let data_dir = PathBuf::from(&env.source_data_dir);
    let root = tempfile::tempdir().unwrap();
    let bk = root.path().join("bk");
    let seg_root = data_dir.join(format!("insert_log/{coll_id}/{part_id}"));
    let mut segments = Vec::new();
    for entry in
        std::fs::read_dir(&seg_root).unwrap_or_else(|e| panic!("{}: {e}", seg_root.display()))
    {
        let seg_id: i64 = entry
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        segments.push(
            copy_milvus_segment(&data_dir, &bk, coll_id, part_id, Some(1), seg_id)
                .expect("copy segment"),
        );
    }
    assert!(
        !segments.is_empty(),
        "no flushed segments under {}",
        seg_root.display()
    );
    let info = BackupInfo {
        name: "bk".into(),
        milvus_version: "v2.3.5".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: coll_id,
            collection_name: name.clone(),
            schema: Some(SchemaJson::from_proto(&schema)),
            shards_num: desc.shards_num,
            consistency_level: desc.consistency_level,
            partition_backups: vec![PartitionBackupInfo {
                partition_id: part_id,
                partition_name: part_name,
                collection_id: coll_id,
                segment_backups: segments,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, false).unwrap();

    let src = BackupSource::open(root.path().to_str().unwrap(), Some("bk"))
        .await
        .expect("open backup");
    let coll = src.collection(&name).expect("collection").clone();
    assert_eq!(coll.num_rows(), ids.len() as i64);
    let deletes = src.collection_deletes(&coll).await.expect("deletes");
    assert_eq!(deletes.pks, keys, "delta logs hold the deleted keys");
    let mut read = Rows::default();
    for seg in coll.segments() {
        let mut d = src.read_segment(&coll, seg).await.expect("read segment");
        assert!(d.timestamps.iter().all(|&t| t > 0 && deletes.ts[0] > t));
        d.apply_deletes(&deletes, "pk").expect("apply deletes");
        read.append(&d.rows).expect("segments share columns");
    }

    // Compare row by row, keyed by primary key.
    let index = |rows: &Rows| -> BTreeMap<PkValue, usize> {
        let pks = rows.primary_keys("pk").expect("pk column");
        (0..rows.len()).map(|i| (pks.get(i).unwrap(), i)).collect()
    };
    let want = index(&inserted);
    let got = index(&read);
    assert_eq!(got.len(), ids.len() - deleted.len());
    for i in &deleted {
        assert!(
            !got.contains_key(&data::key(shape, *i)),
            "row {i} was deleted"
        );
    }
    for (k, &j) in &got {
        let i = want[k];
        let diff = data::differing_fields(&inserted, i, &read, j);
        assert!(diff.is_empty(), "row {k:?}: {diff:?}");
    }
    client.drop_collection(&name).await.expect("drop");
}

#[tokio::test]
async fn float_vector_int64_key_collection_reads_back_exactly() {
    round_trip(Shape::default()).await;
}

#[tokio::test]
async fn binary_vector_varchar_key_collection_reads_back_exactly() {
    round_trip(Shape {
        varchar_pk: true,
        binary_vector: true,
        ..Default::default()
    })
    .await;
}
