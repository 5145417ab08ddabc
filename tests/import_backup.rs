//! `ferry import-backup` end to end on real binlogs: a collection with every 2.3 type is
//! filled in two partitions (one segment each), partly deleted and flushed on the test
//! environment's source Milvus 2.3.5; its segments are copied out of the server's data dir
//! into a milvus-backup layout (with or without the group level, `full_meta.json` or the
//! four level files) with meta written here; the `ferry` binary imports it into the target
//! Milvus, from a local folder or from the test environment's S3 server (moto), and the
//! target must then hold exactly the source's rows.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys};
use ferry::proto::common::{ConsistencyLevel, KeyValuePair, LoadState};
use ferry::sources::backup::meta::{
    BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SchemaJson,
};
use ferry::sources::backup::testdata::{copy_milvus_segment, write_meta};

/// Rows per partition (one flushed segment each).
const ROWS: i64 = 300;

/// A source collection laid out as a backup named `bk` under `root`.
struct Fixture {
    name: String,
    fields: Vec<String>,
    /// The source's rows, deletes applied: key -> digest.
    rows: BTreeMap<PkValue, u64>,
    /// Rows of partition `extra` on the source.
    extra_rows: u64,
    root: tempfile::TempDir,
    /// (partition name, segment folder relative to the backup folder) per segment.
    segments: Vec<(String, String)>,
    source: MilvusClient,
}

impl Fixture {
    fn backup_dir(&self) -> PathBuf {
        self.root.path().join("bk")
    }

    /// The insert-log folder of the segment of partition `part`.
    fn segment_dir(&self, part: &str) -> PathBuf {
        let (_, rel) = self
            .segments
            .iter()
            .find(|(p, _)| p == part)
            .expect("a segment in that partition");
        self.backup_dir().join(rel)
    }

    async fn drop(self) {
        self.source
            .drop_collection(&self.name)
            .await
            .expect("drop source");
    }
}

fn keys(shape: Shape, ids: &[i64]) -> PrimaryKeys {
    let all: Vec<PkValue> = ids.iter().map(|&i| data::key(shape, i)).collect();
    if shape.varchar_pk {
        PrimaryKeys::Str(
            all.into_iter()
                .map(|k| match k {
                    PkValue::Str(s) => s,
                    PkValue::Int(_) => unreachable!(),
                })
                .collect(),
        )
    } else {
        PrimaryKeys::Int(
            all.into_iter()
                .map(|k| match k {
                    PkValue::Int(i) => i,
                    PkValue::Str(_) => unreachable!(),
                })
                .collect(),
        )
    }
}

/// Fills, deletes from and flushes a source collection, then lays its segments out as
/// milvus-backup does: `group` is the group level (`None`: the old layout), `full_meta`
/// writes `full_meta.json` besides the level files.
async fn fixture(shape: Shape, group: Option<i64>, full_meta: bool) -> Fixture {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let name = common::unique("import_bk");
    source
        .create_collection(&CreateCollection {
            name: name.clone(),
            schema: data::all_types_schema(&name, shape),
            shards_num: 1,
            consistency_level: ConsistencyLevel::Strong,
            properties: vec![],
            num_partitions: 0,
        })
        .await
        .expect("create source collection");
    source
        .create_partition(&name, "extra")
        .await
        .expect("create partition");
    let flush = || source.flush(std::slice::from_ref(&name), Duration::from_secs(120));
    let first: Vec<i64> = (0..ROWS).collect();
    source
        .insert(&name, "", &data::rows(shape, &first, 0))
        .await
        .expect("insert");
    flush().await.expect("flush 1");
    let second: Vec<i64> = (ROWS..2 * ROWS).collect();
    source
        .insert(&name, "extra", &data::rows(shape, &second, 0))
        .await
        .expect("insert");
    flush().await.expect("flush 2");
    // A few deletes in each segment (few enough that no compaction rewrites the segments).
    let victims: Vec<i64> = (0..2 * ROWS).filter(|i| i % 50 == 7).collect();
    source
        .delete(&name, "", "pk", &keys(shape, &victims))
        .await
        .expect("delete");
    flush().await.expect("flush 3");

    let (index, metric) = if shape.binary_vector {
        ("BIN_FLAT", "HAMMING")
    } else {
        ("FLAT", "L2")
    };
    let params = [
        KeyValuePair {
            key: "index_type".into(),
            value: index.into(),
        },
        KeyValuePair {
            key: "metric_type".into(),
            value: metric.into(),
        },
    ];
    source
        .create_index(&name, "v", "", &params)
        .await
        .expect("index");
    source
        .load(&name, Duration::from_secs(120))
        .await
        .expect("load");
    let desc = source.describe_collection(&name).await.expect("describe");
    let schema = desc.schema.clone().expect("schema");
    let fields = data::output_fields(&schema);
    let rows = data::dump(&source, &name, "pk", fields.clone()).await;
    assert_eq!(rows.len() as i64, 2 * ROWS - victims.len() as i64);
    let extra_rows = source
        .count(&name, &["extra".into()])
        .await
        .expect("count extra");
    source.release(&name).await.expect("release");

    let data_dir = PathBuf::from(&env.source_data_dir);
    let root = tempfile::tempdir().unwrap();
    let bk = root.path().join("bk");
    let mut partitions = Vec::new();
    let mut segments = Vec::new();
    for (part_name, part_id) in source.list_partitions(&name).await.expect("partitions") {
        let seg_root = data_dir.join(format!("insert_log/{}/{part_id}", desc.collection_id));
        let mut segs = Vec::new();
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
            let seg =
                copy_milvus_segment(&data_dir, &bk, desc.collection_id, part_id, group, seg_id)
                    .expect("copy segment");
            let rel = match group {
                Some(g) => format!(
                    "binlogs/insert_log/{}/{part_id}/{g}/{seg_id}",
                    desc.collection_id
                ),
                None => format!(
                    "binlogs/insert_log/{}/{part_id}/{seg_id}",
                    desc.collection_id
                ),
            };
            segments.push((part_name.clone(), rel));
            segs.push(seg);
        }
        assert_eq!(
            segs.len(),
            1,
            "one flushed segment in partition {part_name}"
        );
        assert_eq!(
            segs[0].num_of_rows, ROWS,
            "segment of {part_name} holds its inserts (no compaction)"
        );
        partitions.push(PartitionBackupInfo {
            partition_id: part_id,
            partition_name: part_name,
            collection_id: desc.collection_id,
            segment_backups: segs,
            ..Default::default()
        });
    }
    let info = BackupInfo {
        name: "bk".into(),
        milvus_version: "v2.3.5".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: desc.collection_id,
            db_name: "default".into(),
            collection_name: name.clone(),
            schema: Some(SchemaJson::from_proto(&schema)),
            shards_num: desc.shards_num,
            consistency_level: desc.consistency_level,
            partition_backups: partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, full_meta).expect("write meta");
    Fixture {
        name,
        fields,
        rows,
        extra_rows,
        root,
        segments,
        source,
    }
}

/// A job file without `[source]`: imports read no source Milvus.
fn job(dir: &Path, collections: &str, copy: &str) -> PathBuf {
    let text = format!(
        "[target]\nuri = \"{}\"\n\n[job]\nname = \"import-test\"\nstate_dir = \"{}\"\n\n[copy]\n{copy}\n\n{collections}\n",
        common::env().target_uri,
        dir.join("state").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn rename(src: &str, dst: &str) -> String {
    format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\ndescription = \"imported from a backup\"\n")
}

fn import(job: &Path, path: &str, extra: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec![
        "import-backup",
        "--config",
        job.to_str().unwrap(),
        "--path",
        path,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    common::run_ferry(&args, envs)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Loads the target (released by ferry unless --load) and checks it holds the source's rows.
async fn assert_imported(f: &Fixture, target: &MilvusClient, dst: &str) {
    if target.load_state(dst).await.unwrap() != LoadState::Loaded {
        target
            .load(dst, Duration::from_secs(120))
            .await
            .expect("load target");
    }
    let got = data::dump(target, dst, "pk", f.fields.clone()).await;
    data::assert_same(&f.rows, &got);
    assert_eq!(
        target.count(dst, &["extra".into()]).await.unwrap(),
        f.extra_rows,
        "rows of partition extra went to partition extra"
    );
}

#[tokio::test]
async fn backup_with_group_level_and_full_meta_imports_exactly() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let f = fixture(Shape::default(), Some(1), true).await;
    let dst = common::unique("import_bk_dst");
    let dir = tempfile::tempdir().unwrap();
    let cfg = job(dir.path(), &rename(&f.name, &dst), "batch_bytes = 65536");
    let started = std::time::Instant::now();
    // The root holding the backup, and the backup's name.
    let out = import(
        &cfg,
        f.root.path().to_str().unwrap(),
        &["--backup", "bk"],
        &[],
    );
    eprintln!("import took {:?}", started.elapsed());
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ok {}", f.rows.len())),
        "count check printed: {text}"
    );
    assert!(
        text.contains(&format!(
            "2 segments, {} rows in the source meta, {} deleted",
            2 * ROWS,
            2 * ROWS as usize - f.rows.len()
        )),
        "{text}"
    );
    // Without --load the target is left released, indexed with AUTOINDEX.
    assert_ne!(target.load_state(&dst).await.unwrap(), LoadState::Loaded);
    let idx = target.describe_indexes(&dst).await.unwrap();
    assert!(
        idx.iter().any(|i| i.field_name == "v"
            && i.params
                .iter()
                .any(|kv| kv.key == "index_type" && kv.value == "AUTOINDEX")),
        "AUTOINDEX on v: {idx:?}"
    );
    let t = target.describe_collection(&dst).await.unwrap();
    assert_eq!(t.schema.unwrap().description, "imported from a backup");
    assert_imported(&f, &target, &dst).await;

    // A second run finds every segment done and writes nothing more.
    let again = import(
        &cfg,
        f.backup_dir().to_str().unwrap(),
        &["--if-exists", "resume"],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains(&format!("ok {}", f.rows.len())),
        "{}",
        stdout(&again)
    );
    target.drop_collection(&dst).await.unwrap();
    f.drop().await;
}

#[tokio::test]
async fn backup_without_group_level_from_level_files_imports_exactly() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let shape = Shape {
        varchar_pk: true,
        binary_vector: true,
        ..Default::default()
    };
    let f = fixture(shape, None, false).await;
    assert!(!f.backup_dir().join("meta/full_meta.json").exists());
    let dst = common::unique("import_bk_nogroup");
    let dir = tempfile::tempdir().unwrap();
    let cfg = job(dir.path(), &rename(&f.name, &dst), "");
    // Dry run: the plan, nothing created.
    let dry = import(&cfg, f.backup_dir().to_str().unwrap(), &["--dry-run"], &[]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains(&format!("collection {} -> {dst}", f.name)),
        "{}",
        stdout(&dry)
    );
    assert!(!target.has_collection(&dst).await.unwrap());

    let out = import(&cfg, f.backup_dir().to_str().unwrap(), &["--load"], &[]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("ok {}", f.rows.len())),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        target.load_state(&dst).await.unwrap(),
        LoadState::Loaded,
        "--load leaves it loaded"
    );
    assert_imported(&f, &target, &dst).await;
    target.drop_collection(&dst).await.unwrap();
    f.drop().await;
}

/// Uploads a local folder to the test S3 server under `prefix`.
async fn upload(dir: &Path, prefix: &str) {
    use object_store::{ObjectStoreExt, PutPayload};
    let vars = s3_vars();
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(get("AWS_ENDPOINT"))
        .with_allow_http(true)
        .with_bucket_name(common_s3().bucket)
        .with_region(get("AWS_REGION"))
        .with_access_key_id(get("AWS_ACCESS_KEY_ID"))
        .with_secret_access_key(get("AWS_SECRET_ACCESS_KEY"))
        .build()
        .expect("S3 client");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .replace('\\', "/");
            let key = object_store::path::Path::from(format!("{prefix}/{rel}"));
            store
                .put(&key, PutPayload::from(std::fs::read(&p).unwrap()))
                .await
                .unwrap_or_else(|e| panic!("upload {rel} to the test S3 server ({}): {e}; is it up? Run `scripts/testenv up`.", get("AWS_ENDPOINT")));
        }
    }
}

struct S3 {
    endpoint: String,
    bucket: String,
    region: String,
    key_id: String,
    secret: String,
}

/// The test S3 server's settings from target/testenv/env.sh (or the environment).
fn common_s3() -> S3 {
    let file = std::fs::read_to_string(common::repo_root().join("target/testenv/env.sh"))
        .unwrap_or_default();
    let get = |k: &str| -> String {
        std::env::var(k).ok().or_else(|| {
            file.lines()
                .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("{k} is not set and target/testenv/env.sh does not define it: start the S3 server with `scripts/testenv up`"))
    };
    S3 {
        endpoint: get("FERRY_TEST_S3_ENDPOINT"),
        bucket: get("FERRY_TEST_S3_BUCKET"),
        region: get("FERRY_TEST_S3_REGION"),
        key_id: get("FERRY_TEST_S3_ACCESS_KEY_ID"),
        secret: get("FERRY_TEST_S3_SECRET_ACCESS_KEY"),
    }
}

/// The usual AWS variables ferry reads, pointing at the test S3 server.
fn s3_vars() -> Vec<(&'static str, String)> {
    let s = common_s3();
    vec![
        ("AWS_ENDPOINT", s.endpoint),
        ("AWS_REGION", s.region),
        ("AWS_ACCESS_KEY_ID", s.key_id),
        ("AWS_SECRET_ACCESS_KEY", s.secret),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

#[tokio::test]
async fn backup_in_s3_compatible_storage_imports_exactly() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let f = fixture(Shape::default(), Some(7), false).await;
    let prefix = format!("backups/{}", common::unique("root"));
    upload(&f.backup_dir(), &format!("{prefix}/bk")).await;
    let dst = common::unique("import_bk_s3");
    let dir = tempfile::tempdir().unwrap();
    let cfg = job(dir.path(), &rename(&f.name, &dst), "");
    let url = format!("s3://{}/{prefix}/", common_s3().bucket);
    let vars = s3_vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Wrong credentials: a clear error, nothing created.
    let mut bad = envs.clone();
    bad.retain(|(k, _)| *k != "AWS_ENDPOINT");
    bad.push(("AWS_ENDPOINT", "http://127.0.0.1:1"));
    let out = import(&cfg, &url, &[], &bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&url.trim_end_matches('/').to_string()),
        "the error names the location: {}",
        stderr(&out)
    );
    assert!(!target.has_collection(&dst).await.unwrap());

    let started = std::time::Instant::now();
    let out = import(&cfg, &url, &[], &envs);
    eprintln!("import from S3 took {:?}", started.elapsed());
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("ok {}", f.rows.len())),
        "{}",
        stdout(&out)
    );
    assert!(
        !stderr(&out).contains(&common_s3().secret),
        "the secret key is never printed"
    );
    assert_imported(&f, &target, &dst).await;
    target.drop_collection(&dst).await.unwrap();
    f.drop().await;
}

#[tokio::test]
async fn import_killed_mid_segment_resumes_without_loss_or_duplicates() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let f = fixture(Shape::default(), Some(1), true).await;
    let dst = common::unique("import_bk_crash");
    let dir = tempfile::tempdir().unwrap();
    // Small batches: each segment takes many writes.
    let cfg = job(
        dir.path(),
        &rename(&f.name, &dst),
        "batch_bytes = 4096\nparallelism = 1",
    );
    let path = f.backup_dir();
    let crashed = import(
        &cfg,
        path.to_str().unwrap(),
        &[],
        &[("FERRY_FAILPOINTS", "copy.after_target_write")],
    );
    assert!(!crashed.status.success(), "the failpoint aborts the import");
    assert!(
        stderr(&crashed).contains("failpoint"),
        "{}",
        stderr(&crashed)
    );
    // The batch written just before the crash is on the target but not in the state: the
    // second run must rewrite it as an upsert, or the count check finds duplicates.
    let out = import(&cfg, path.to_str().unwrap(), &[], &[]);
    assert!(
        out.status.success(),
        "resumed import failed: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("ok {}", f.rows.len())),
        "{}",
        stdout(&out)
    );
    assert_imported(&f, &target, &dst).await;
    target.drop_collection(&dst).await.unwrap();
    f.drop().await;
}

/// Copies the fixture's backup folder for one bad-input case.
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The only log file of field `field_id` in a segment folder.
fn field_log(seg_dir: &Path, field_id: i64) -> PathBuf {
    let dir = seg_dir.join(field_id.to_string());
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{}", dir.display());
    logs.pop().unwrap()
}

#[tokio::test]
async fn bad_input_fails_naming_file_and_offset_and_writes_nothing_of_that_segment() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let f = fixture(Shape::default(), Some(1), false).await;
    let schema = f
        .source
        .describe_collection(&f.name)
        .await
        .unwrap()
        .schema
        .unwrap();
    let fid = |n: &str| schema.fields.iter().find(|x| x.name == n).unwrap().field_id;
    type Corrupt = Box<dyn Fn(&Path, &Path) -> Vec<String>>;
    // Each case breaks the copy of the backup (bk) whose segment of partition `extra` is at
    // seg; returns what the error must mention.
    let (f_i8, f_f, f_s) = (fid("i8"), fid("f"), fid("s"));
    let cases: Vec<(&str, bool, Corrupt)> = vec![
        (
            "wrong magic",
            true,
            Box::new(move |_, seg| {
                let log = field_log(seg, f_s);
                let mut b = std::fs::read(&log).unwrap();
                b[..4].copy_from_slice(&[1, 2, 3, 4]);
                std::fs::write(&log, b).unwrap();
                vec![
                    log.display().to_string(),
                    "byte 0".into(),
                    "bad magic".into(),
                ]
            }),
        ),
        (
            "truncated event",
            true,
            Box::new(move |_, seg| {
                let log = field_log(seg, f_s);
                let b = std::fs::read(&log).unwrap();
                std::fs::write(&log, &b[..b.len() / 2]).unwrap();
                vec![log.display().to_string(), "byte ".into()]
            }),
        ),
        (
            "payload type not matching the schema",
            true,
            Box::new(move |_, seg| {
                // The Float field's log in the Int8 field's place, its descriptor's field id
                // (after magic, event header and three ids: byte 45) made the Int8 field's.
                let log = field_log(seg, f_i8);
                let mut b = std::fs::read(field_log(seg, f_f)).unwrap();
                b[45..53].copy_from_slice(&f_i8.to_le_bytes());
                std::fs::write(&log, b).unwrap();
                vec![
                    log.display().to_string(),
                    "byte ".into(),
                    "\"i8\"".into(),
                    "payload holds".into(),
                ]
            }),
        ),
        (
            "missing field log",
            true,
            Box::new(move |_, seg| {
                std::fs::remove_dir_all(seg.join(f_s.to_string())).unwrap();
                vec![
                    seg.display().to_string(),
                    "\"s\"".into(),
                    "no insert log".into(),
                ]
            }),
        ),
        (
            "unreadable meta",
            false,
            Box::new(|bk, _| {
                let meta = bk.join("meta/segment_meta.json");
                std::fs::write(&meta, b"{\"infos\": [ {\"segment_id\": 12,").unwrap();
                vec![meta.display().to_string(), "line 1".into()]
            }),
        ),
        (
            "snapshot format",
            false,
            Box::new(|bk, _| {
                let meta = bk.join("meta/backup_meta.json");
                let mut v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
                v["format"] = "snapshot".into();
                std::fs::write(&meta, serde_json::to_vec(&v).unwrap()).unwrap();
                vec![bk.display().to_string(), "snapshot format".into()]
            }),
        ),
    ];
    let seg_rel = f
        .segment_dir("extra")
        .strip_prefix(f.backup_dir())
        .unwrap()
        .to_path_buf();
    let mut dsts = Vec::new();
    for (what, creates_target, corrupt) in cases {
        let dir = tempfile::tempdir().unwrap();
        let bk = dir.path().join("bk");
        std::fs::create_dir_all(&bk).unwrap();
        copy_dir(&f.backup_dir(), &bk);
        let must_mention = corrupt(&bk, &bk.join(&seg_rel));
        let dst = common::unique("import_bk_bad");
        let cfg = job(dir.path(), &rename(&f.name, &dst), "");
        let out = import(&cfg, bk.to_str().unwrap(), &[], &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: must fail");
        for m in must_mention {
            assert!(
                err.contains(&m),
                "{what}: the error should mention {m:?}:\n{err}"
            );
        }
        if creates_target {
            // The other segment may have been written; of the broken one, nothing.
            let params = [
                KeyValuePair {
                    key: "index_type".into(),
                    value: "FLAT".into(),
                },
                KeyValuePair {
                    key: "metric_type".into(),
                    value: "L2".into(),
                },
            ];
            target.create_index(&dst, "v", "", &params).await.unwrap();
            target.load(&dst, Duration::from_secs(120)).await.unwrap();
            assert_eq!(
                target.count(&dst, &["extra".into()]).await.unwrap(),
                0,
                "{what}: rows of the broken segment were written"
            );
            dsts.push(dst);
        } else {
            assert!(
                !target.has_collection(&dst).await.unwrap(),
                "{what}: nothing is created"
            );
        }
    }
    for d in dsts {
        target.drop_collection(&d).await.unwrap();
    }
    f.drop().await;
}
