use super::meta::{CollectionBackupInfo, PartitionBackupInfo, SchemaJson};
use super::testdata::{write_meta, write_segment, SegmentSpec};
use super::*;
use crate::milvus::{PkValue, PrimaryKeys};
use crate::sources::binlog::tests::every_type;

/// A schema of every type with `i64` as the primary key, and its three rows.
fn schema_and_rows() -> (CollectionSchema, Rows) {
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (mut f, c) in every_type() {
        if f.name == "i64" {
            f.is_primary_key = true;
        }
        if f.name == "j" {
            f.name = "$meta".into();
            f.is_dynamic = true;
        }
        let mut c = c;
        c.field_name = f.name.clone();
        c.is_dynamic = f.is_dynamic;
        fields.push(f);
        cols.push(c);
    }
    let schema = CollectionSchema {
        name: "all_types".into(),
        fields,
        enable_dynamic_field: true,
        ..Default::default()
    };
    (schema, Rows::new(cols).unwrap())
}

/// Compares bit-exactly (the fixture holds NaN floats).
fn assert_same_rows(a: &Rows, b: &Rows) {
    use prost::Message;
    assert_eq!(a.len(), b.len());
    let enc = |r: &Rows| {
        r.columns
            .iter()
            .map(|c| c.encode_to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(enc(a), enc(b));
}

struct Fixture {
    dir: tempfile::TempDir,
    schema: CollectionSchema,
    rows: Rows,
}

/// Backup "bk1" (level files, two segments: one grouped with deletes, one in the old
/// layout) and "bk2" (full_meta.json only).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (schema, rows) = schema_and_rows();
    let bk1 = dir.path().join("bk1");
    let pk = |k| PkValue::Int(k);
    let s1 = write_segment(
        &bk1,
        &SegmentSpec {
            collection_id: 7,
            partition_id: 8,
            group: Some(1),
            segment_id: 9001,
            schema: &schema,
            rows: &rows,
            timestamps: &[100, 200, 300],
            // Key i64::MIN deleted after its insert; key 3 deleted at its own timestamp (an
            // upsert), so it survives; key i64::MAX is deleted by the other segment's log.
            deletes: &[(pk(i64::MIN), 150), (pk(3), 200)],
        },
    )
    .unwrap();
    let s2 = write_segment(
        &bk1,
        &SegmentSpec {
            collection_id: 7,
            partition_id: 8,
            group: None,
            segment_id: 9002,
            schema: &schema,
            rows: &rows,
            timestamps: &[400, 500, 600],
            // Deletes key i64::MAX of both segments; only this segment's row of it is newer
            // than the first segment's deletes of i64::MIN and 3.
            deletes: &[(pk(i64::MAX), 1000)],
        },
    )
    .unwrap();
    let info = BackupInfo {
        name: "bk1".into(),
        milvus_version: "v2.3.5".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            db_name: "default".into(),
            collection_name: "all_types".into(),
            schema: Some(SchemaJson::from_proto(&schema)),
            shards_num: 2,
            consistency_level: 2,
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                segment_backups: vec![s1, s2],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk1, &info, false).unwrap();
    let mut info2 = info.clone();
    info2.name = "bk2".into();
    std::fs::create_dir_all(dir.path().join("bk2")).unwrap();
    write_meta(&dir.path().join("bk2"), &info2, true).unwrap();
    std::fs::remove_file(dir.path().join("bk2/meta/segment_meta.json")).unwrap();
    Fixture { dir, schema, rows }
}

fn root(f: &Fixture) -> String {
    f.dir.path().to_str().unwrap().to_string()
}

#[tokio::test]
async fn segments_round_trip_in_both_layouts_and_deletes_apply_by_timestamp() {
    let f = fixture();
    let src = BackupSource::open(&root(&f), Some("bk1")).await.unwrap();
    assert_eq!(src.name(), "bk1");
    let coll = src.collection("all_types").unwrap().clone();
    assert_eq!(coll.schema, f.schema);
    assert_eq!((coll.id, coll.shards, coll.consistency), (7, 2, 2));
    assert_eq!(coll.num_rows(), 6);
    let segs: Vec<_> = coll.segments().cloned().collect();

    let files = src.segment_files(&coll, &segs[0]).await.unwrap();
    assert_eq!(files.group, Some(1));
    let files = src.segment_files(&coll, &segs[1]).await.unwrap();
    assert_eq!(files.group, None);

    let mut first = src.read_segment(&coll, &segs[0]).await.unwrap();
    assert_same_rows(&first.rows, &f.rows);
    assert_eq!(first.timestamps, vec![100, 200, 300]);
    assert_eq!(first.deletes.pks, PrimaryKeys::Int(vec![i64::MIN, 3]));

    let all = src.collection_deletes(&coll).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(first.apply_deletes(&all, "i64").unwrap(), 2);
    assert_eq!(
        first.rows.primary_keys("i64"),
        Some(PrimaryKeys::Int(vec![3]))
    );
    assert_eq!(first.timestamps, vec![200]);

    let mut second = src.read_segment(&coll, &segs[1]).await.unwrap();
    assert_eq!(second.apply_deletes(&all, "i64").unwrap(), 1);
    assert_eq!(
        second.rows.primary_keys("i64"),
        Some(PrimaryKeys::Int(vec![i64::MIN, 3]))
    );
}

#[tokio::test]
async fn full_meta_is_preferred_and_backups_are_listed() {
    let f = fixture();
    let store = Store::open(&root(&f)).unwrap();
    assert_eq!(list_backups(&store).await.unwrap(), vec!["bk1", "bk2"]);
    // bk2's segment_meta.json is gone: only full_meta.json can describe its segments.
    let src = BackupSource::open(&root(&f), Some("bk2")).await.unwrap();
    assert_eq!(src.collections()[0].segments().count(), 2);
    // The backup folder itself also opens without a name.
    let direct = BackupSource::open(&format!("{}/bk1", root(&f)), None)
        .await
        .unwrap();
    assert_eq!(direct.name(), "bk1");

    let e = BackupSource::open(&root(&f), None).await.unwrap_err();
    assert!(
        matches!(e, BackupError::Ambiguous { ref names, .. } if names.len() == 2),
        "{e}"
    );
    let e = BackupSource::open(&root(&f), Some("bk3"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no backup named \"bk3\"; present: bk1, bk2"),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let e = BackupSource::open(empty.path().to_str().unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::NoBackup { .. }), "{e}");
}

#[tokio::test]
async fn snapshot_backups_are_refused() {
    let f = fixture();
    let path = f.dir.path().join("bk2/meta/full_meta.json");
    let mut info: BackupInfo = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    info.format = "snapshot".into();
    std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
    let e = BackupSource::open(&root(&f), Some("bk2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("snapshot format") && e.contains("--format binlog"),
        "{e}"
    );
}

#[tokio::test]
async fn missing_logs_and_wrong_counts_name_the_segment() {
    let f = fixture();
    let src = BackupSource::open(&root(&f), Some("bk1")).await.unwrap();
    let coll = src.collections()[0].clone();
    let mut segs: Vec<_> = coll.segments().cloned().collect();

    // A log the meta lists is missing.
    let mut listed = segs[1].clone();
    listed.binlogs[0].binlogs.push(super::meta::BinlogInfo {
        log_path: "files/insert_log/7/8/9002/0/999".into(),
        ..Default::default()
    });
    let e = src
        .read_segment(&coll, &listed)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("segment 9002 of collection \"all_types\": field 0 log 999 is listed in the meta but missing"), "{e}");
    // A whole field is missing.
    let field_dir = f.dir.path().join("bk1/binlogs/insert_log/7/8/9002/110");
    std::fs::rename(&field_dir, field_dir.with_file_name("110-moved")).unwrap();
    let e = src
        .read_segment(&coll, &segs[1])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "segment 9002 of collection \"all_types\": field \"fv\" (id 110) has no insert log"
        ),
        "{e}"
    );

    segs[0].num_of_rows = 4;
    let e = src
        .read_segment(&coll, &segs[0])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the meta records 4 rows, the insert logs hold 3 rows"),
        "{e}"
    );

    let mut gone = segs[0].clone();
    gone.segment_id = 1;
    gone.binlogs.clear();
    let e = src
        .read_segment(&coll, &gone)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("segment 1 of collection \"all_types\": no insert logs under any of ") && e.contains("bk1/binlogs/insert_log/7/8/1/1"), "{e}");

    // A corrupt binlog names its path in the backup.
    let ts_dir = f.dir.path().join("bk1/binlogs/insert_log/7/8/1/9001/1");
    let log = std::fs::read_dir(&ts_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&log, b"\x00\x01").unwrap();
    segs[0].num_of_rows = 3;
    let e = src
        .read_segment(&coll, &segs[0])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bk1/binlogs/insert_log/7/8/1/9001/1/") && e.contains("truncated magic"),
        "{e}"
    );
}

/// A server's storage root read as of a timestamp: rows inserted and deletes made after it
/// are left out, and the segment's files are found without a meta listing them.
#[tokio::test]
async fn live_storage_reads_as_of_a_timestamp() {
    let f = fixture();
    let root = Store::local(f.dir.path().join("bk1").join(BINLOGS)).unwrap();
    let info = |as_of_rows: i64| BackupInfo {
        name: "live".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            collection_name: "all_types".into(),
            schema: Some(SchemaJson::from_proto(&f.schema)),
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                // As GetPersistentSegmentInfo gives it: ids and a row count, no file list.
                segment_backups: vec![SegmentBackupInfo {
                    segment_id: 9002,
                    collection_id: 7,
                    partition_id: 8,
                    num_of_rows: as_of_rows,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let live = |rows| BackupCollection::from_meta(&info(rows).collection_backups[0], "live").unwrap();
    // Rows at 400, 500 and 600; key i64::MAX (the third row) deleted at 1000.
    for (as_of, want_rows, want_deletes) in [(500, vec![0, 1], 0), (999, vec![0, 1, 2], 0), (1000, vec![0, 1], 1)] {
        let src = BackupSource::live(root.clone(), "live", vec![live(3)], as_of);
        let coll = &src.collections()[0];
        let seg = coll.segments().next().unwrap();
        let deletes = src.collection_deletes(coll).await.unwrap();
        assert_eq!(deletes.len(), want_deletes, "as of {as_of}");
        let mut data = src.read_segment(coll, seg).await.unwrap();
        data.apply_deletes(&deletes, "i64").unwrap();
        assert_same_rows(&data.rows, &f.rows.select(&want_rows));
    }
    // The row count is checked before the filter: it is the segment's, not the snapshot's.
    let src = BackupSource::live(root, "live", vec![live(2)], 500);
    let coll = &src.collections()[0];
    let e = src.read_segment(coll, coll.segments().next().unwrap()).await.unwrap_err().to_string();
    assert!(e.contains("the meta records 2 rows, the insert logs hold 3 rows"), "{e}");
}

/// A collection's deletes stay in memory while all its segments are copied: they are held
/// in the decode budget (pinned), an import whose deletes outgrow it fails naming the
/// collection, and a segment that needs more than what the deletes leave is refused at
/// once rather than waiting for bytes that come back only when the collection is done.
#[tokio::test]
async fn a_collections_deletes_are_held_in_the_decode_budget() {
    use crate::sources::binlog::DecodeBudget;
    const SEGMENTS: i64 = 100;
    const DELETES: i64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (schema, rows) = schema_and_rows();
    let bk = dir.path().join("bk");
    let segments: Vec<_> = (0..SEGMENTS)
        .map(|s| {
            let deletes: Vec<(PkValue, u64)> = (0..DELETES).map(|k| (PkValue::Int(s * DELETES + k), 1000)).collect();
            write_segment(
                &bk,
                &SegmentSpec {
                    collection_id: 7,
                    partition_id: 8,
                    group: Some(1),
                    segment_id: 9001 + s,
                    schema: &schema,
                    rows: &rows,
                    timestamps: &[100, 200, 300],
                    deletes: &deletes,
                },
            )
            .unwrap()
        })
        .collect();
    let info = BackupInfo {
        name: "bk".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            collection_name: "all_types".into(),
            schema: Some(SchemaJson::from_proto(&schema)),
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                segment_backups: segments,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, true).unwrap();
    let root = dir.path().to_str().unwrap();
    let open = |budget: &DecodeBudget| {
        let budget = budget.clone();
        async move { BackupSource::open(root, Some("bk")).await.unwrap().with_budget(budget) }
    };

    // Budgets (in 16 KiB steps) from too small for one delta log (about 300 KB: a bound
    // from its page headers and the reader's buffers) up: the first one that decodes a
    // delta log cannot hold the 100 segments' deletes (16,000 bytes each) beside it.
    let mut refused = None;
    for kib in (64u64..8192).step_by(16) {
        let src = open(&DecodeBudget::new(kib << 10)).await;
        let coll = src.collection("all_types").unwrap().clone();
        match src.collection_deletes_held(&coll).await {
            Err(e) if !e.to_string().contains("all_types") => continue,
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
            Ok(_) => panic!("{kib} KiB holds every delete: the test's sizes are off"),
        }
    }
    let err = refused.expect("no budget decoded a delta log");
    assert!(err.contains("all_types") && err.contains("copy.decode_budget_bytes"), "{err}");
    assert!(err.contains("deletes read so far hold") || err.contains("deletes need"), "{err}");

    let budget = DecodeBudget::new(16 << 20);
    let src = open(&budget).await;
    let coll = src.collection("all_types").unwrap().clone();
    let seg = coll.segments().next().unwrap().clone();
    let need = src.read_segment_held(&coll, &seg).await.unwrap().1.bytes();
    let (deletes, held) = src.collection_deletes_held(&coll).await.unwrap();
    assert_eq!(deletes.len(), (SEGMENTS * DELETES) as usize);
    let pinned = budget.total() - budget.usable();
    assert!(pinned >= deletes.heap_bytes() && budget.available() == budget.usable(), "{pinned}");
    drop(held);
    // A budget the deletes leave too little of: the segment is refused, promptly.
    let budget = DecodeBudget::new(pinned + need - 1);
    let src = open(&budget).await;
    let (_, held) = src.collection_deletes_held(&coll).await.unwrap();
    assert!(budget.usable() < need && budget.total() >= need, "{} < {need}", budget.usable());
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), src.read_segment_held(&coll, &seg))
        .await
        .expect("a segment that cannot fit beside the deletes waits forever");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("decode budget it may use"), "{err}");
    drop(held);
    assert_eq!(budget.usable(), budget.total());
    assert_eq!(budget.available(), budget.total());
}

#[tokio::test]
async fn a_collection_with_modern_types_functions_and_nulls_reads_back() {
    use crate::proto::schema::{
        value_field::Data as Value, DataType, FunctionSchema, FunctionType, ValueField,
    };
    use crate::sources::binlog::tests::{modern_types, MODERN_ROWS};
    let pk = FieldSchema {
        field_id: 100,
        name: "id".into(),
        is_primary_key: true,
        data_type: DataType::Int64 as i32,
        ..Default::default()
    };
    let keys = FieldData {
        r#type: DataType::Int64 as i32,
        field_name: "id".into(),
        field_id: 100,
        field: Some(crate::proto::schema::field_data::Field::Scalars(crate::proto::schema::ScalarField {
            data: Some(crate::proto::schema::scalar_field::Data::LongData(crate::proto::schema::LongArray {
                data: (1..=MODERN_ROWS as i64).collect(),
            })),
            ..Default::default()
        })),
        ..Default::default()
    };
    let (mut fields, mut cols): (Vec<_>, Vec<_>) = modern_types().into_iter().unzip();
    fields.insert(0, pk);
    cols.insert(0, keys);
    // A nullable field with a default value, and the sparse field a function's output.
    let n = fields.iter().position(|f| f.name == "n_i64").unwrap();
    fields[n].default_value = Some(ValueField { data: Some(Value::LongData(-1)) });
    let sp = fields.iter().position(|f| f.name == "sp").unwrap();
    fields[sp].is_function_output = true;
    let schema = CollectionSchema {
        name: "modern".into(),
        fields,
        functions: vec![FunctionSchema {
            name: "bm25".into(),
            id: 1,
            r#type: FunctionType::Bm25 as i32,
            input_field_names: vec!["n_s".into()],
            input_field_ids: vec![134],
            output_field_names: vec!["sp".into()],
            output_field_ids: vec![123],
            ..Default::default()
        }],
        ..Default::default()
    };
    let rows = Rows::new(cols).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bk = dir.path().join("bk");
    let timestamps: Vec<u64> = (1..=MODERN_ROWS as u64).collect();
    let seg = write_segment(
        &bk,
        &SegmentSpec {
            collection_id: 7,
            partition_id: 8,
            group: Some(1),
            segment_id: 9001,
            schema: &schema,
            rows: &rows,
            timestamps: &timestamps,
            deletes: &[],
        },
    )
    .unwrap();
    let info = BackupInfo {
        name: "bk".into(),
        milvus_version: "v2.5.4".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            collection_name: "modern".into(),
            schema: Some(SchemaJson::from_proto(&schema)),
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                segment_backups: vec![seg],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, false).unwrap();
    let src = BackupSource::open(dir.path().to_str().unwrap(), Some("bk")).await.unwrap();
    let coll = src.collection("modern").unwrap().clone();
    assert_eq!(coll.schema, schema);
    let seg = coll.segments().next().unwrap().clone();
    let data = src.read_segment(&coll, &seg).await.unwrap();
    assert_same_rows(&data.rows, &rows);
    assert_eq!(data.timestamps, timestamps);
}

/// A field added to the collection after a segment was written (Milvus 2.6
/// AddCollectionField: nullable, or with a default) has no log in that segment: its rows read
/// as null (the target then gives them the default), as Milvus reads them. A field that can
/// be neither is still an error naming it.
#[tokio::test]
async fn a_field_added_after_the_segment_reads_as_null() {
    use crate::proto::schema::{DataType, FieldSchema, ValueField, value_field};
    let dir = tempfile::tempdir().unwrap();
    let (schema, rows) = schema_and_rows();
    let bk = dir.path().join("bk");
    let seg = write_segment(
        &bk,
        &SegmentSpec {
            collection_id: 7,
            partition_id: 8,
            group: None,
            segment_id: 9001,
            schema: &schema,
            rows: &rows,
            timestamps: &[100, 200, 300],
            deletes: &[],
        },
    )
    .unwrap();
    let mut later = schema.clone();
    later.fields.push(FieldSchema { field_id: 190, name: "added_n".into(), data_type: DataType::Int32 as i32, nullable: true, ..Default::default() });
    later.fields.push(FieldSchema {
        field_id: 191,
        name: "added_d".into(),
        data_type: DataType::VarChar as i32,
        default_value: Some(ValueField { data: Some(value_field::Data::StringData("dflt".into())) }),
        type_params: vec![crate::proto::common::KeyValuePair { key: "max_length".into(), value: "8".into() }],
        ..Default::default()
    });
    let info = |s: &CollectionSchema| BackupInfo {
        name: "bk".into(),
        milvus_version: "v2.6.0".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: 7,
            db_name: "default".into(),
            collection_name: "all_types".into(),
            schema: Some(SchemaJson::from_proto(s)),
            shards_num: 1,
            partition_backups: vec![PartitionBackupInfo {
                partition_id: 8,
                partition_name: "_default".into(),
                collection_id: 7,
                segment_backups: vec![seg.clone()],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info(&later), false).unwrap();
    let src = BackupSource::open(&dir.path().to_str().unwrap().to_string(), Some("bk")).await.unwrap();
    let coll = src.collections()[0].clone();
    let seg0 = coll.segments().next().unwrap().clone();
    let data = src.read_segment(&coll, &seg0).await.unwrap();
    assert_eq!(data.rows.len(), 3);
    for name in ["added_n", "added_d"] {
        let c = data.rows.column(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(c.valid_data, vec![false; 3], "{name}");
    }
    // A field that can be neither nullable nor defaulted is still missing by name.
    let mut strict = later.clone();
    strict.fields.last_mut().unwrap().default_value = None;
    write_meta(&bk, &info(&strict), false).unwrap();
    let src = BackupSource::open(&dir.path().to_str().unwrap().to_string(), Some("bk")).await.unwrap();
    let coll = src.collections()[0].clone();
    let seg0 = coll.segments().next().unwrap().clone();
    let e = src.read_segment(&coll, &seg0).await.unwrap_err().to_string();
    assert!(e.contains("field \"added_d\" (id 191) has no insert log"), "{e}");
}
