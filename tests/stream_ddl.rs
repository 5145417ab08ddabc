//! DDL while a job streams, against the real servers (`ferry run` on Milvus 2.3.5 with its
//! WAL on the tansu broker):
//! - a partition dropped, re-created and refilled while the application writes, with keys
//!   in two partitions at once, converges partition by partition (the drop is a barrier
//!   across the collection's two channels, and the loaded target partition is released
//!   before it is dropped);
//! - a collection dropped with `on_source_drop = "drop"` stops counting (status, lag), a
//!   restart after it works, and a name re-created on the source while ferry was down is
//!   refused with an error naming it.
//!
//! Needs the test environment (`scripts/testenv up`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::data::{self, Shape};
use common::stream::{self, status, wait_state};
use ferry::milvus::{MilvusClient, PkValue};

/// Inserts into a partition just created: Milvus 2.3.5's proxy can answer "partition not
/// found" for a moment after CreatePartition returned (seen in a CI run), as an application
/// would see it too; retried for up to 10 s.
async fn insert_new(source: &MilvusClient, collection: &str, partition: &str, rows: &ferry::milvus::Rows) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match source.insert(collection, partition, rows).await {
            Ok(_) => return,
            Err(e) if e.to_string().contains("partition not found") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("insert into {collection}/{partition}: {e}"),
        }
    }
}

fn ids(r: std::ops::Range<i64>) -> Vec<i64> {
    r.collect()
}

async fn loaded_target(target: &MilvusClient, dst: &str) {
    for _ in 0..240 {
        if !target.describe_indexes(dst).await.unwrap_or_default().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    target.load(dst, Duration::from_secs(120)).await.unwrap();
}

/// Polls until the target holds, partition by partition, exactly the source's rows.
async fn converge_partitions(
    source: &MilvusClient,
    target: &MilvusClient,
    src: &str,
    dst: &str,
    within: Duration,
) -> (BTreeMap<(String, PkValue), u64>, BTreeMap<(String, PkValue), u64>) {
    loaded_target(target, dst).await;
    let fields = data::output_fields(&data::all_types_schema(src, Shape::default()));
    let want = data::dump_partitions(source, src, "pk", fields.clone()).await;
    let deadline = Instant::now() + within;
    loop {
        let got = data::dump_partitions(target, dst, "pk", fields.clone()).await;
        if got == want || Instant::now() >= deadline {
            return (want, got);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn differences(want: &BTreeMap<(String, PkValue), u64>, got: &BTreeMap<(String, PkValue), u64>) -> String {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    let differ: Vec<_> = want.iter().filter(|(k, v)| got.get(k).is_some_and(|g| g != *v)).map(|(k, _)| k).take(5).collect();
    format!(
        "source {} rows, target {}; missing {missing:?}; extra {extra:?}; different {differ:?}",
        want.len(),
        got.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_drop_recreate_refill_and_keys_in_two_partitions_converge_under_load() {
    let env = common::env();
    let shape = Shape::default();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("ddl_part_src");
    let dst = common::unique("ddl_part_dst");
    stream::make_source(&source, &src, 600).await;
    for p in ["p1", "p2"] {
        source.create_partition(&src, p).await.unwrap();
    }
    insert_new(&source, &src, "p1", &data::rows(shape, &ids(1000..1100), 0)).await;
    // Keys already in _default: in two partitions before the job starts.
    insert_new(&source, &src, "p2", &data::rows(shape, &ids(0..50), 1)).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(240)));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(stream::writer(source.clone(), src.clone(), 600, stop.clone(), false));
    for round in 0..3i64 {
        let base = 2000 + round * 200;
        // The same keys into p1 and p2 back to back (one window, so one batch), then an
        // upsert of some in p1, which leaves their p2 rows alone.
        let keys = ids(base..base + 40);
        source.insert(&src, "p1", &data::rows(shape, &keys, round)).await.unwrap();
        source.insert(&src, "p2", &data::rows(shape, &keys, round + 10)).await.unwrap();
        source.upsert(&src, "p1", &data::rows(shape, &keys[..10], round + 20)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Milvus refuses to drop a loaded partition.
        source.release_partition(&src, "p1").await.unwrap();
        source.drop_partition(&src, "p1").await.unwrap();
        source.create_partition(&src, "p1").await.unwrap();
        // The refill: keys the dropped partition held, with other contents, and new ones.
        insert_new(&source, &src, "p1", &data::rows(shape, &ids(base..base + 20), round + 30)).await;
        source.insert(&src, "p1", &data::rows(shape, &ids(base + 100..base + 130), round + 40)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let (want, got) = converge_partitions(&source, &target, &src, &dst, Duration::from_secs(180)).await;
    let two: usize = {
        let mut by_key: BTreeMap<&PkValue, usize> = BTreeMap::new();
        for (_, k) in want.keys() {
            *by_key.entry(k).or_default() += 1;
        }
        by_key.values().filter(|n| **n > 1).count()
    };
    eprintln!("source: {} rows in {} partitions, {two} keys in more than one", want.len(), {
        let mut p: Vec<&String> = want.keys().map(|(p, _)| p).collect();
        p.dedup();
        p.len()
    });
    assert!(two >= 20, "the test meant to hold keys in two partitions: {two}");
    // ferry's own verification agrees, partition by partition, in both modes.
    for full in [&[][..], &["--full"][..]] {
        let out = common::run_ferry(&[&["verify", "--config", cfg.as_str()][..], full].concat(), &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "verify {full:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("partition p2"), "{text}");
    }
    let st = tokio::task::block_in_place(|| status(&cfg));
    let (exit, log) = daemon.terminate();
    if want != got {
        eprintln!("ferry's log (last 60 lines):\n{}", common::tail(&log, 60));
    }
    assert!(want == got, "target differs from source by partition: {}", differences(&want, &got));
    assert_eq!(st["state"], "STREAMING", "{st:#}");
    assert!(exit.success(), "{exit}");
    let mut parts_src: Vec<String> = source.list_partitions(&src).await.unwrap().into_iter().map(|p| p.0).collect();
    let mut parts_dst: Vec<String> = target.list_partitions(&dst).await.unwrap().into_iter().map(|p| p.0).collect();
    parts_src.sort();
    parts_dst.sort();
    assert_eq!(parts_src, parts_dst);
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// kill -9 (failpoint `apply.after_ddl`) right after the target partition was dropped and
/// before the barrier was marked done: the restarted daemon meets the drop again on both
/// channels, repeats it harmlessly, and the target converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_partition_drop_converges() {
    let env = common::env();
    let shape = Shape::default();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("ddl_crash_src");
    let dst = common::unique("ddl_crash_dst");
    stream::make_source(&source, &src, 300).await;
    source.create_partition(&src, "p1").await.unwrap();
    insert_new(&source, &src, "p1", &data::rows(shape, &ids(1000..1100), 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "apply.after_ddl");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(240)));
    source.insert(&src, "p1", &data::rows(shape, &ids(1100..1150), 1)).await.unwrap();
    source.release_partition(&src, "p1").await.unwrap();
    source.drop_partition(&src, "p1").await.unwrap();
    source.create_partition(&src, "p1").await.unwrap();
    insert_new(&source, &src, "p1", &data::rows(shape, &ids(1000..1030), 2)).await;
    tokio::task::block_in_place(|| stream::expect_abort(daemon, "apply.after_ddl"));
    // Written while ferry is down.
    source.insert(&src, "p1", &data::rows(shape, &ids(1200..1220), 3)).await.unwrap();
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    let (want, got) = converge_partitions(&source, &target, &src, &dst, Duration::from_secs(180)).await;
    let (exit, log) = daemon.terminate();
    if want != got {
        eprintln!("ferry's log (last 60 lines):\n{}", common::tail(&log, 60));
    }
    assert!(want == got, "{}", differences(&want, &got));
    assert!(exit.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// The job records its collections (p1 with its first ID), then its stream start positions.
/// A crash in between (failpoint `job.after_record`), and while ferry is down p1 is dropped,
/// re-created and filled, and p9 is created and filled: those rows are before the stream's
/// start, so only the snapshot can copy them. The restarted job looks at the partitions again
/// after its start positions, copies both, and the stream's later writes to the new p1 (a
/// newer ID than the record's) keep what the snapshot copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_changed_before_the_start_positions_are_copied_by_the_snapshot() {
    let env = common::env();
    let shape = Shape::default();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("ddl_window_src");
    let dst = common::unique("ddl_window_dst");
    stream::make_source(&source, &src, 200).await;
    source.create_partition(&src, "p1").await.unwrap();
    insert_new(&source, &src, "p1", &data::rows(shape, &ids(1000..1050), 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "job.after_record");
    tokio::task::block_in_place(|| stream::expect_abort(daemon, "job.after_record"));

    source.release_partition(&src, "p1").await.unwrap();
    source.drop_partition(&src, "p1").await.unwrap();
    source.create_partition(&src, "p1").await.unwrap();
    insert_new(&source, &src, "p1", &data::rows(shape, &ids(1000..1020), 1)).await;
    source.insert(&src, "p1", &data::rows(shape, &ids(2000..2030), 1)).await.unwrap();
    source.create_partition(&src, "p9").await.unwrap();
    insert_new(&source, &src, "p9", &data::rows(shape, &ids(3000..3040), 2)).await;

    // The aborted daemon's address file would point status at a dead port.
    let _ = std::fs::remove_file(dir.path().join("state").join("daemon.json"));
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(240)));
    source.insert(&src, "p1", &data::rows(shape, &ids(4000..4010), 3)).await.unwrap();
    let (want, got) = converge_partitions(&source, &target, &src, &dst, Duration::from_secs(120)).await;
    let (exit, log) = daemon.terminate();
    if want != got {
        eprintln!("ferry's log (last 60 lines):\n{}", common::tail(&log, 60));
    }
    assert!(want == got, "{}", differences(&want, &got));
    assert!(want.keys().any(|(p, _)| p == "p9") && want.keys().filter(|(p, _)| p == "p1").count() == 60);
    assert!(exit.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_collection_stops_counting_a_restart_works_and_a_recreated_name_is_refused() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let (a_src, a_dst) = (common::unique("ddl_drop_a_src"), common::unique("ddl_drop_a_dst"));
    let (b_src, b_dst) = (common::unique("ddl_drop_b_src"), common::unique("ddl_drop_b_dst"));
    stream::make_source(&source, &a_src, 300).await;
    stream::make_source(&source, &b_src, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &a_src, &a_dst);
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!("\n[[collections]]\nsource = \"{b_src}\"\ntarget = \"{b_dst}\"\n\n[stream]\non_source_drop = \"drop\"\n");
    std::fs::write(&cfg, text).unwrap();

    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(240)));
    source.drop_collection(&a_src).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while target.has_collection(&a_dst).await.unwrap() {
        assert!(Instant::now() < deadline, "the target of the dropped collection was not dropped");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(stream::writer(source.clone(), b_src.clone(), 300, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let next = writer.await.unwrap();
    let st = tokio::task::block_in_place(|| status(&cfg));
    let phases: Vec<(String, String)> = st["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["source"].as_str().unwrap().to_string(), c["phase"].as_str().unwrap().to_string()))
        .collect();
    assert!(phases.contains(&(a_src.clone(), "dropped".into())), "{phases:?}");
    assert!(phases.contains(&(b_src.clone(), "stream".into())), "{phases:?}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());

    // A restart plans from the job's record: the dropped collection is not looked up.
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(120)));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(stream::writer(source.clone(), b_src.clone(), next, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (want, got) = converge_partitions(&source, &target, &b_src, &b_dst, Duration::from_secs(120)).await;
    assert!(want == got, "{}", differences(&want, &got));
    // Lag: only the remaining collection's channels count, and they are caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = tokio::task::block_in_place(|| status(&cfg));
        let lag = st["lag_seconds"].as_f64().unwrap_or(f64::MAX);
        if lag < 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag stays {lag}s after catching up: {st:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (exit, _) = daemon.terminate();
    assert!(exit.success());

    // While ferry is down, B is dropped and another collection created under its name.
    source.drop_collection(&b_src).await.unwrap();
    stream::make_source(&source, &b_src, 10).await;
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    let st = tokio::task::block_in_place(|| wait_state(&cfg, "FAILED", Duration::from_secs(120)));
    let err = st["last_error"]["message"].as_str().unwrap_or("").to_string();
    assert!(err.contains(&b_src) && err.contains("not the one this job started with"), "{st:#}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
    source.drop_collection(&b_src).await.unwrap();
    target.drop_collection(&b_dst).await.unwrap();
}

async fn client_in(uri: &str, database: &str) -> MilvusClient {
    let mut opts = ferry::milvus::ConnectOptions::new(uri);
    opts.database = database.to_string();
    opts.retry_max_elapsed = Duration::from_secs(20);
    MilvusClient::connect(&opts).await.expect("connect")
}

/// A job over a whole database (no `[[collections]]`) takes on a collection created in that
/// database while it streams: created on the target from its CreateCollection record, its
/// rows (the first ones written right after its creation) streamed, partitions included, and
/// still routed after a restart. A collection of the same name created in another database
/// is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_database_job_follows_collections_created_while_it_runs() {
    let env = common::env();
    let shape = Shape::default();
    let db = common::unique("ferrydb");
    let (source_default, target_default) = (common::client(&env.source_uri).await, common::client(&env.target_uri).await);
    source_default.create_database(&db).await.unwrap();
    target_default.create_database(&db).await.unwrap();
    let source = client_in(&env.source_uri, &db).await;
    let target = client_in(&env.target_uri, &db).await;
    let old = common::unique("fold");
    let new = common::unique("fnew");
    stream::make_source(&source, &old, 300).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &old, &old);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(&format!("[[collections]]\nsource = \"{old}\"\ntarget = \"{old}\"\n"), "")
        .replacen("[source]\n", &format!("[source]\ndatabase = \"{db}\"\n"), 1)
        .replacen("[target]\n", &format!("[target]\ndatabase = \"{db}\"\n"), 1)
        + "\n[stream]\non_source_drop = \"drop\"\n";
    assert!(!text.contains("[[collections]]"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(240)));

    let stop = Arc::new(AtomicBool::new(false));
    let writer_old = tokio::spawn(stream::writer(source.clone(), old.clone(), 300, stop.clone(), false));
    // Created, filled at once, then written to like any collection.
    stream::make_source(&source, &new, 200).await;
    source.create_partition(&new, "p1").await.unwrap();
    insert_new(&source, &new, "p1", &data::rows(shape, &ids(0..30), 5)).await;
    let writer_new = tokio::spawn(stream::writer(source.clone(), new.clone(), 200, stop.clone(), false));
    // The same name in another database: not this job's.
    stream::make_source(&source_default, &new, 20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    writer_old.await.unwrap();
    let next_new = writer_new.await.unwrap();

    for name in [&old, &new] {
        let (want, got) = converge_partitions(&source, &target, name, name, Duration::from_secs(180)).await;
        assert!(want == got, "{name}: {}", differences(&want, &got));
    }
    assert!(!target_default.has_collection(&new).await.unwrap(), "the other database's collection was followed");
    let st = tokio::task::block_in_place(|| status(&cfg));
    let followed = st["collections"].as_array().unwrap().iter().any(|c| c["source"] == new.as_str() && c["phase"] == "stream");
    assert!(followed, "status shows the followed collection: {st:#}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());

    // After a restart the followed collection is still routed.
    let daemon = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(120)));
    source.insert(&new, "p1", &data::rows(shape, &ids(next_new..next_new + 50), 7)).await.unwrap();
    source.delete(&new, "", "pk", &ferry::milvus::PrimaryKeys::Int(vec![match data::key(shape, 3) {
        PkValue::Int(k) => k,
        PkValue::Str(_) => unreachable!(),
    }])).await.unwrap();
    let (want, got) = converge_partitions(&source, &target, &new, &new, Duration::from_secs(120)).await;
    if want != got {
        let (_, log) = daemon.terminate();
        panic!("after a restart: {}\nferry's log:\n{}", differences(&want, &got), common::tail(&log, 60));
    }

    // Dropped and created again under its name at once. Milvus puts the drop on the WAL from
    // an asynchronous step, so ferry meets either the drop first (then it drops the target
    // and follows the new collection) or the new creation first (then the job fails naming
    // it); never the two collections mixed in one target.
    source.drop_collection(&new).await.unwrap();
    stream::make_source(&source, &new, 40).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let failed = loop {
        let st = tokio::task::block_in_place(|| status(&cfg));
        if st["state"] == "FAILED" {
            break Some(st);
        }
        let phases: Vec<&str> =
            st["collections"].as_array().unwrap().iter().filter(|c| c["source"] == new.as_str()).filter_map(|c| c["phase"].as_str()).collect();
        if phases.contains(&"dropped") && phases.contains(&"stream") {
            break None;
        }
        assert!(Instant::now() < deadline, "neither followed again nor failed: {st:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (exit, log) = daemon.terminate();
    match failed {
        Some(st) => {
            let err = st.to_string();
            assert!(err.contains(new.as_str()) && err.contains("created again"), "{st:#}");
            eprintln!("the re-creation reached ferry before the drop: the job failed naming it");
        }
        None => {
            let (want, got) = converge_partitions(&source, &target, &new, &new, Duration::from_secs(120)).await;
            if want != got {
                eprintln!("ferry's log (last 60 lines):\n{}", common::tail(&log, 60));
            }
            assert!(want == got, "the re-created collection: {}", differences(&want, &got));
            assert_eq!(want.len(), 40, "only the new collection's rows");
            assert!(exit.success());
        }
    }

    for (c, name) in [(&source, &old), (&source, &new), (&target, &old), (&target, &new)] {
        c.drop_collection(name).await.unwrap();
    }
    source_default.drop_collection(&new).await.unwrap();
    source_default.drop_database(&db).await.unwrap();
    target_default.drop_database(&db).await.unwrap();
}
