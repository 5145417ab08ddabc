//! `ferry migrate` end to end: Milvus 2.3.5 -> Milvus 2.3.5 and -> Milvus Lite, every type,
//! deletes before the copy, exact schema, crash and resume, bad input; the same with the rows
//! read from the source's storage (`[source.storage]`: the source server's local storage
//! folder here).

mod common;

use std::time::Duration;

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys};
use ferry::plan::schema::first_difference;
use ferry::proto::common::{ConsistencyLevel, KeyValuePair};

/// Creates a source collection with every type, user partitions, a TTL property and an index,
/// loads `n` rows across partitions and deletes every 7th row.
async fn make_source(c: &MilvusClient, name: &str, shape: Shape, n: i64) -> usize {
    make_source_on(c, name, shape, n, false).await
}

/// [`make_source`]; on Milvus Lite (`lite`) without the TTL property and with AUTOINDEX.
async fn make_source_on(c: &MilvusClient, name: &str, shape: Shape, n: i64, lite: bool) -> usize {
    let mut schema = data::all_types_schema(name, shape);
    if shape.partition_key {
        schema.fields.iter_mut().for_each(|f| f.is_partition_key = f.name == "i64");
    }
    c.create_collection(&CreateCollection {
        name: name.into(),
        schema,
        shards_num: 2,
        consistency_level: ConsistencyLevel::Session,
        properties: vec![],
        num_partitions: if shape.partition_key { 4 } else { 0 },
    })
    .await
    .unwrap();
    if !lite {
        c.alter_collection(name, &[KeyValuePair { key: "collection.ttl.seconds".into(), value: "31536000".into() }])
            .await
            .unwrap();
    }
    if !shape.partition_key {
        c.create_partition(name, "p_a").await.unwrap();
        c.create_partition(name, "p_b").await.unwrap();
    }
    let ids: Vec<i64> = (0..n).collect();
    for (i, chunk) in ids.chunks(1000).enumerate() {
        let part = if shape.partition_key { "" } else { ["", "p_a", "p_b"][i % 3] };
        c.insert(name, part, &data::rows(shape, chunk, 0)).await.unwrap();
    }
    if !shape.auto_id {
        let victims: Vec<i64> = ids.iter().copied().filter(|i| i % 7 == 3).collect();
        let keys = if shape.varchar_pk {
            PrimaryKeys::Str(victims.iter().map(|&i| match data::key(shape, i) { PkValue::Str(s) => s, _ => unreachable!() }).collect())
        } else {
            PrimaryKeys::Int(victims.iter().map(|&i| match data::key(shape, i) { PkValue::Int(k) => k, _ => unreachable!() }).collect())
        };
        c.delete(name, "", "pk", &keys).await.unwrap();
    }
    let params = [
        KeyValuePair { key: "index_type".into(), value: "IVF_FLAT".into() },
        KeyValuePair { key: "metric_type".into(), value: "IP".into() },
        KeyValuePair { key: "params".into(), value: "{\"nlist\":16}".into() },
    ];
    let bin_params = [
        KeyValuePair { key: "index_type".into(), value: "BIN_IVF_FLAT".into() },
        KeyValuePair { key: "metric_type".into(), value: "HAMMING".into() },
        KeyValuePair { key: "params".into(), value: "{\"nlist\":16}".into() },
    ];
    let auto = [
        KeyValuePair { key: "index_type".into(), value: "AUTOINDEX".into() },
        KeyValuePair { key: "metric_type".into(), value: "IP".into() },
    ];
    let index: &[KeyValuePair] = match (lite, shape.binary_vector) {
        (true, _) => &auto,
        (false, true) => &bin_params,
        (false, false) => &params,
    };
    c.create_index(name, "v", "v_ivf", index).await.unwrap();
    c.load(name, Duration::from_secs(120)).await.unwrap();
    c.count(name, &[]).await.unwrap() as usize
}

async fn assert_migrated(source: &MilvusClient, target: &MilvusClient, src: &str, dst: &str, full_checks: bool) {
    let s = source.describe_collection(src).await.unwrap();
    let t = target.describe_collection(dst).await.unwrap();
    let (ss, ts) = (s.schema.clone().unwrap(), t.schema.clone().unwrap());
    assert_eq!(first_difference(&ts, &ss), None, "schema differs");
    let fields = data::output_fields(&ss);
    let a = data::dump(source, src, "pk", fields.clone()).await;
    let b = data::dump(target, dst, "pk", fields).await;
    data::assert_same(&a, &b);
    if full_checks {
        assert_eq!(t.consistency_level, s.consistency_level);
        assert_eq!(t.shards_num, s.shards_num);
        assert!(t.properties.iter().any(|kv| kv.key == "collection.ttl.seconds"), "{:?}", t.properties);
        let mut sp: Vec<String> = source.list_partitions(src).await.unwrap().into_iter().map(|p| p.0).collect();
        let mut tp: Vec<String> = target.list_partitions(dst).await.unwrap().into_iter().map(|p| p.0).collect();
        sp.sort();
        tp.sort();
        assert_eq!(sp, tp);
        let idx = target.describe_indexes(dst).await.unwrap();
        assert!(idx.iter().any(|i| i.field_name == "v" && i.params.iter().any(|kv| kv.value.ends_with("IVF_FLAT"))), "{idx:?}");
    }
}

/// `release_source`: leave the source unloaded, so ferry must load it to read (and release it
/// again after).
async fn migrate_roundtrip(target_uri: &str, shape: Shape, full_checks: bool, release_source: bool) {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(target_uri).await;
    let src = common::unique("mig_src");
    let dst = common::unique("mig_dst");
    let rows = make_source(&source, &src, shape, 5000).await;
    if release_source {
        source.release(&src).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.source_uri,
        target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\ndescription = \"moved by ferry\"\n"),
        "page_rows = 700\nbatch_bytes = 200000\nparallelism = 3\nkey_splits = 2",
    );
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--quiet"], &[]);
    assert!(out.status.success(), "migrate failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&dst) && stdout.contains(&format!("ok {rows}")), "{stdout}");
    if release_source {
        assert_eq!(source.load_state(&src).await.unwrap(), ferry::proto::common::LoadState::NotLoad, "ferry must release what it loaded");
        source.load(&src, Duration::from_secs(120)).await.unwrap();
    }
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    if full_checks {
        // Milvus Lite 3.2.2 does not keep collection descriptions.
        let t = target.describe_collection(&dst).await.unwrap();
        assert_eq!(t.schema.unwrap().description, "moved by ferry");
    }
    assert_migrated(&source, &target, &src, &dst, full_checks).await;
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test]
async fn every_type_to_milvus() {
    migrate_roundtrip(&common::env().target_uri, Shape::default(), true, false).await;
}

#[tokio::test]
async fn varchar_keys_and_binary_vectors_to_milvus() {
    migrate_roundtrip(&common::env().target_uri, Shape { varchar_pk: true, binary_vector: true, ..Default::default() }, true, false).await;
}

#[tokio::test]
async fn partition_key_to_milvus() {
    migrate_roundtrip(&common::env().target_uri, Shape { partition_key: true, ..Default::default() }, true, false).await;
}

#[tokio::test]
async fn every_type_to_milvus_lite() {
    migrate_roundtrip(&common::env().lite_uri, Shape::default(), false, true).await;
}

/// Milvus Lite as the source, over many pages (its rows come in key order only when asked:
/// without that the copy stopped at the first full page): 5,000 rows of every type Lite and
/// Milvus 2.3 share, in three partitions, every 7th deleted; `ferry migrate` then `ferry
/// verify --full` (key order on both sides), and an independent dump compared row by row.
#[tokio::test]
async fn every_type_from_milvus_lite_over_many_pages() {
    let env = common::env();
    let source = common::client(&env.lite_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("lite_src");
    let dst = common::unique("lite_dst");
    let shape = Shape::default();
    let rows = make_source_on(&source, &src, shape, 5000, true).await;
    assert_eq!(rows, 5000 - (0..5000).filter(|i| i % 7 == 3).count());
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.lite_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 700\nbatch_bytes = 200000\nparallelism = 3\nkey_splits = 2",
    );
    let job = job.to_str().unwrap();
    common::migrate_ok(job, &[], rows as u64);
    common::verify_full_equal(job);
    // The schema as Lite reports it (it leaves out max_length of arrays of VarChar, which the
    // target got as 65535), then every row by an independent key-ordered dump.
    let ss = source.describe_collection(&src).await.unwrap().schema.unwrap();
    let ts = target.describe_collection(&dst).await.unwrap().schema.unwrap();
    assert_eq!(first_difference(&ss, &ts), None, "schema differs");
    let arr_s = ts.fields.iter().find(|f| f.name == "arr_s").unwrap();
    assert!(arr_s.type_params.iter().any(|kv| kv.key == "max_length" && kv.value == "65535"), "{arr_s:?}");
    let fields = data::output_fields(&ss);
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    data::assert_same(&data::dump(&source, &src, "pk", fields.clone()).await, &data::dump(&target, &dst, "pk", fields).await);
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// A collection the target cannot hold (a BinaryVector field into Milvus Lite) is refused at
/// planning, naming the collection, the field and the target; no collection of the job is
/// created, also not the one before it that Lite could hold. The dry run says the same.
#[tokio::test]
async fn what_the_target_cannot_hold_is_refused_before_anything_is_created() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let lite = common::client(&env.lite_uri).await;
    let (fine, binary) = (common::unique("hold_f"), common::unique("hold_b"));
    make_source(&source, &fine, Shape::default(), 100).await;
    make_source(&source, &binary, Shape { binary_vector: true, ..Default::default() }, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.source_uri,
        &env.lite_uri,
        &format!("[[collections]]\nsource = \"{fine}\"\n\n[[collections]]\nsource = \"{binary}\"\n"),
        "",
    );
    let job = job.to_str().unwrap();
    let want = format!("collection {binary:?}: field \"v\" is BinaryVector, which the target (milvus_lite-");
    common::migrate_refused(job, &[&want, "Milvus Lite has no BinaryVector"]);
    assert!(!lite.has_collection(&fine).await.unwrap(), "nothing of the job is created");
    assert!(!lite.has_collection(&binary).await.unwrap());
    source.drop_collection(&fine).await.unwrap();
    source.drop_collection(&binary).await.unwrap();
}

/// Milvus does not enforce key uniqueness: inserting an existing key adds a second row, which
/// `count(*)` counts and queries do not return. The target holds one row per key, and the
/// count checks of migrate and verify compare it with the source's distinct keys, saying so;
/// a row really missing on the target is still a difference.
#[tokio::test]
async fn repeated_source_keys_are_one_row_on_the_target() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("dupkey_src");
    let dst = common::unique("dupkey_dst");
    let shape = Shape::default();
    let keys = make_source(&source, &src, shape, 3000).await;
    // make_source put ids 0..1000 in _default and 1000..2000 in p_a, and deleted i % 7 == 3.
    let again = |r: std::ops::Range<i64>| r.filter(|i| i % 7 != 3).collect::<Vec<i64>>();
    let (in_default, in_p_a) = (again(0..40), again(1000..1030));
    source.insert(&src, "", &data::rows(shape, &in_default, 0)).await.unwrap();
    source.insert(&src, "p_a", &data::rows(shape, &in_p_a, 0)).await.unwrap();
    let repeated = in_default.len() + in_p_a.len();
    let rows = source.count(&src, &[]).await.unwrap() as usize;
    assert_eq!(rows, keys + repeated, "Milvus 2.3.5 counts a repeated key's rows");

    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.source_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 500",
    );
    let job = job.to_str().unwrap();
    let out = common::run_ferry(&["migrate", "--config", job, "--quiet", "--load"], &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate failed: {text}");
    assert!(text.contains(&format!("ok {keys} (+{repeated} repeated keys)")), "{text}");
    assert_eq!(target.count(&dst, &[]).await.unwrap() as usize, keys);
    assert_migrated(&source, &target, &src, &dst, false).await;

    let p_a_keys = (1000..2000).filter(|i| i % 7 != 3).count();
    for full in [&[][..], &["--full"][..]] {
        let out = common::run_ferry(&[&["verify", "--config", job][..], full].concat(), &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "verify {full:?}: {text}");
        assert!(text.contains(&format!("the source has {keys} distinct primary keys in its {rows} rows")), "{text}");
        let p_a = text.lines().find(|l| l.contains("partition p_a")).unwrap_or_default();
        assert!(p_a.contains(&format!("({p_a_keys} keys)")) && p_a.ends_with("ok"), "{text}");
    }

    // A row missing on the target is found all the same.
    let gone = PrimaryKeys::Int(vec![match data::key(shape, 5) { PkValue::Int(k) => k, _ => unreachable!() }]);
    target.delete(&dst, "", "pk", &gone).await.unwrap();
    let out = common::run_ferry(&["verify", "--config", job], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("DIFFERENT"), "{text}");

    // Equal counts can hide a difference: each target partition now gets keys the source never
    // had, as many as the source's repeated rows there (plus the one deleted above in
    // _default), so `count(*)` is the same on both sides, per partition and in all. Counts
    // mode must still compare distinct keys and say DIFFERENT.
    let extra: Vec<i64> = (100_000..100_000 + in_default.len() as i64 + 1).collect();
    target.insert(&dst, "", &data::rows(shape, &extra, 0)).await.unwrap();
    let extra: Vec<i64> = (200_000..200_000 + in_p_a.len() as i64).collect();
    target.insert(&dst, "p_a", &data::rows(shape, &extra, 0)).await.unwrap();
    target.flush(&[dst.clone()], Duration::from_secs(60)).await.unwrap();
    assert_eq!(target.count(&dst, &[]).await.unwrap() as usize, rows, "the counts are equal now");
    let out = common::run_ferry(&["verify", "--config", job], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("DIFFERENT"), "equal counts with repeated source keys: {text}");
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// The job's `[source.storage]` (the source server's storage folder, unless `location`) and
/// `[[collections]]` tables.
fn storage_collections(src: &str, dst: &str, location: Option<&str>) -> String {
    let location = location.unwrap_or(&common::env().source_data_dir);
    format!("[source.storage]\nlocation = \"{location}\"\n\n[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n")
}

/// From the source's storage: ferry flushes the source (`make_source` leaves its inserts and
/// deletes unflushed), lists its segments and reads their binlogs; the target must equal the
/// source, schema and rows.
async fn storage_roundtrip(shape: Shape) {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("stor_src");
    let dst = common::unique("stor_dst");
    let rows = make_source(&source, &src, shape, 5000).await;
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.source_uri,
        &env.target_uri,
        &storage_collections(&src, &dst, None),
        "batch_bytes = 200000\nparallelism = 3",
    );
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--quiet", "--load"], &[]);
    assert!(out.status.success(), "migrate failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&dst) && stdout.contains(&format!("ok {rows}")), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("snapshot of the source's storage taken"), "the rows must come from the binlogs: {}", common::tail(&stderr, 20));
    assert_migrated(&source, &target, &src, &dst, true).await;
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// Crash and resume: a failpoint aborts the copy right after a batch reached the target
/// (before its progress was stored), then a real kill -9 lands in the middle of the copy, then
/// the same command again must end with exactly the source's rows. `storage`: rows from the
/// source's binlogs (`[source.storage]`) instead of queries.
async fn crash_then_kill_9_then_resume_converges(storage: bool) {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("crash_src");
    let dst = common::unique("crash_dst");
    make_source(&source, &src, Shape::default(), 20000).await;
    let dir = tempfile::tempdir().unwrap();
    let (collections, copy, failpoint) = if storage {
        (storage_collections(&src, &dst, None), "batch_bytes = 20000\nparallelism = 2", "copy.after_target_write")
    } else {
        (
            format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
            "page_rows = 300\nbatch_bytes = 60000\nparallelism = 2\nkey_splits = 2",
            "copy.after_target_write",
        )
    };
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, &collections, copy);
    let cfg = job.to_str().unwrap();
    // 1. Abort right after a batch reached the target, before its progress was stored.
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet"], &[("FERRY_FAILPOINTS", failpoint)]);
    assert!(!out.status.success(), "the failpoint must abort the run");
    assert!(target.has_collection(&dst).await.unwrap(), "the target was created before the crash");
    // Index and load the target now so the test can watch rows arrive (ferry keeps an index
    // that already exists on a field).
    let params = [
        KeyValuePair { key: "index_type".into(), value: "IVF_FLAT".into() },
        KeyValuePair { key: "metric_type".into(), value: "IP".into() },
        KeyValuePair { key: "params".into(), value: "{\"nlist\":16}".into() },
    ];
    target.create_index(&dst, "v", "v_ivf", &params).await.unwrap();
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    let after_failpoint = target.count(&dst, &[]).await.unwrap();
    assert!(after_failpoint > 0, "the failpoint fires after a batch reached the target");
    // 2. A real kill -9 in the middle of the copy.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["migrate", "--config", cfg, "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut copied = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        copied = target.count(&dst, &[]).await.unwrap_or(0);
        if copied > after_failpoint + 1000 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(copied > after_failpoint, "nothing was copied before the kill");
    eprintln!("killed after {copied} rows, status {status:?}");
    // 3. The same command again finishes with exactly the source's rows.
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet", "--load"], &[]);
    assert!(out.status.success(), "resume failed");
    assert_migrated(&source, &target, &src, &dst, true).await;
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test]
async fn crash_at_failpoint_then_kill_9_then_resume_converges() {
    crash_then_kill_9_then_resume_converges(false).await;
}

#[tokio::test]
async fn every_type_from_source_storage() {
    storage_roundtrip(Shape::default()).await;
}

#[tokio::test]
async fn varchar_keys_binary_vectors_and_partition_key_from_source_storage() {
    storage_roundtrip(Shape { varchar_pk: true, binary_vector: true, partition_key: true, ..Shape::default() }).await;
}

#[tokio::test]
async fn source_storage_in_the_wrong_place_fails_before_the_target_is_created() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("swrong_src");
    let dst = common::unique("swrong_dst");
    make_source(&source, &src, Shape::default(), 300).await;
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let collections = storage_collections(&src, &dst, empty.path().to_str());
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, &collections, "");
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--quiet"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let coll_id = source.describe_collection(&src).await.unwrap().collection_id;
    assert!(
        err.contains(&format!("of collection \"{src}\": no insert logs under any of"))
            && err.contains(&format!("{}/insert_log/{coll_id}/", empty.path().display())),
        "{err}"
    );
    assert!(!target.has_collection(&dst).await.unwrap(), "nothing may be created when the binlogs are not found");
    source.drop_collection(&src).await.unwrap();
}

#[tokio::test]
async fn a_resume_must_copy_the_way_the_interrupted_run_did() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("smode_src");
    let dst = common::unique("smode_dst");
    make_source(&source, &src, Shape::default(), 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let by_query = format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n");
    let copy = "page_rows = 300\nbatch_bytes = 60000\nparallelism = 2";
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, &by_query, copy);
    let cfg = job.to_str().unwrap();
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet"], &[("FERRY_FAILPOINTS", "copy.after_target_write")]);
    assert!(!out.status.success(), "the failpoint must abort the run");
    // The same job, now reading the binlogs: refused before anything is read or written.
    common::write_job(dir.path(), &env.source_uri, &env.target_uri, &storage_collections(&src, &dst, None), copy);
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("collection \"{dst}\": an earlier run of this job copied it by query")), "{err}");
    // Back to queries: the copy resumes and ends with exactly the source's rows.
    common::write_job(dir.path(), &env.source_uri, &env.target_uri, &by_query, copy);
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet", "--load"], &[]);
    assert!(out.status.success(), "resume failed");
    assert_migrated(&source, &target, &src, &dst, true).await;
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test]
async fn from_source_storage_crash_at_failpoint_then_kill_9_then_resume_converges() {
    crash_then_kill_9_then_resume_converges(true).await;
}

#[tokio::test]
async fn autoid_source_needs_an_explicit_flag_on_a_2_3_target() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("auto_src");
    let shape = Shape { auto_id: true, ..Default::default() };
    make_source(&source, &src, shape, 1500).await;
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, &format!("[[collections]]\nsource = \"{src}\"\n"), "");
    let cfg = job.to_str().unwrap();
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("autoID") && err.contains("--autoid-off") && err.contains(&src), "{err}");
    assert!(!target.has_collection(&src).await.unwrap(), "nothing may be created on refusal");
    let out = common::run_ferry(&["migrate", "--config", cfg, "--quiet", "--autoid-off", "--load"], &[]);
    assert!(out.status.success());
    // Keys are preserved even though the source generated them.
    let fields = data::output_fields(&source.describe_collection(&src).await.unwrap().schema.unwrap());
    let a = data::dump(&source, &src, "pk", fields.clone()).await;
    let b = data::dump(&target, &src, "pk", fields).await;
    data::assert_same(&a, &b);
    let t = target.describe_collection(&src).await.unwrap().schema.unwrap();
    assert!(!t.fields.iter().any(|f| f.auto_id));
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&src).await.unwrap();
}

#[tokio::test]
async fn bad_input_fails_clearly_and_creates_nothing() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let dir = tempfile::tempdir().unwrap();

    // Unreachable endpoint.
    let job = common::write_job(dir.path(), "http://127.0.0.1:1", &env.target_uri, "", "");
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("source") && err.contains("127.0.0.1:1"), "{err}");

    // Unknown collection.
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, "[[collections]]\nsource = \"no_such_collection_x\"\n", "");
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_collection_x"));

    // Unknown database.
    let text = std::fs::read_to_string(&job).unwrap().replacen("[target]", "[target]\ndatabase = \"nodb_here\"", 1);
    std::fs::write(&job, text).unwrap();
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodb_here"));

    // Unknown key in the job file.
    let text = std::fs::read_to_string(&job).unwrap().replacen("[job]", "[job]\nstat_dir = \"x\"", 1);
    std::fs::write(&job, text).unwrap();
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stat_dir"));

    // Target name clash with a different schema: the error names the difference.
    let src = common::unique("clash_src");
    make_source(&source, &src, Shape::default(), 100).await;
    let mut other = data::all_types_schema(&src, Shape::default());
    other.fields.retain(|f| f.name != "arr_s");
    target
        .create_collection(&CreateCollection { name: src.clone(), schema: other, shards_num: 1, consistency_level: ConsistencyLevel::Bounded, properties: vec![], num_partitions: 0 })
        .await
        .unwrap();
    let job = common::write_job(dir.path(), &env.source_uri, &env.target_uri, &format!("[[collections]]\nsource = \"{src}\"\n"), "");
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--if-exists", "resume"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different schema") && err.contains("arr_s"), "{err}");
    // Dry run prints the plan and touches nothing.
    target.drop_collection(&src).await.unwrap();
    let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--dry-run"], &[]);
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains(&src) && plan.contains("v floatvector dim=8"), "{plan}");
    assert!(!target.has_collection(&src).await.unwrap());
    source.drop_collection(&src).await.unwrap();
}
