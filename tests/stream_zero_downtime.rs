//! `ferry run` end to end: a writer keeps inserting, upserting and deleting on the source
//! while ferry snapshots and streams; ferry is crashed at named failpoints and with kill -9,
//! restarted, and the target must converge to exactly the source.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys};
use ferry::proto::common::{ConsistencyLevel, KeyValuePair};

fn int_key(i: i64) -> i64 {
    match data::key(Shape::default(), i) {
        PkValue::Int(k) => k,
        PkValue::Str(_) => unreachable!(),
    }
}

/// Inserts new ids, upserts existing ones and deletes some, in a loop, until `stop`.
async fn writer(c: MilvusClient, name: String, mut next: i64, stop: Arc<AtomicBool>) -> i64 {
    let shape = Shape::default();
    let mut round = 0i64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let new: Vec<i64> = (next..next + 70).collect();
        next += 70;
        c.insert(&name, "", &data::rows(shape, &new, 0)).await.expect("writer insert");
        let old: Vec<i64> = (0..20).map(|k| (round * 37 + k * 101) % next).collect();
        c.upsert(&name, "", &data::rows(shape, &old, round)).await.expect("writer upsert");
        let gone: Vec<i64> = (0..10).map(|k| (round * 53 + k * 211) % next).collect();
        c.delete(&name, "", "pk", &PrimaryKeys::Int(gone.iter().map(|&i| int_key(i)).collect()))
            .await
            .expect("writer delete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next
}

fn spawn_ferry(cfg: &str, failpoint: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--config", cfg, "--quiet"]).env("FERRY_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(f) = failpoint {
        cmd.env("FERRY_FAILPOINTS", f);
    }
    cmd.spawn().expect("spawn ferry run")
}

fn stderr_of(child: Child) -> (std::process::ExitStatus, String) {
    let out = tokio::task::block_in_place(|| child.wait_with_output()).expect("wait ferry");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits for a ferry process to abort at its failpoint.
fn expect_abort(child: Child, what: &str) {
    let start = Instant::now();
    let (status, err) = stderr_of(child);
    assert!(!status.success(), "{what}: ferry should have aborted at its failpoint; stderr:\n{err}");
    assert!(err.contains("failpoint"), "{what}: aborted, but not at the failpoint:\n{err}");
    eprintln!("{what}: aborted after {:?}", start.elapsed());
}

// Multi-threaded: the writer task must keep running while the test blocks on ferry processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_converges_through_crashes_while_the_source_is_written() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("zd_src");
    let dst = common::unique("zd_dst");
    let shape = Shape::default();
    source
        .create_collection(&CreateCollection {
            name: src.clone(),
            schema: data::all_types_schema(&src, shape),
            shards_num: 2,
            consistency_level: ConsistencyLevel::Bounded,
            properties: vec![],
            num_partitions: 0,
        })
        .await
        .unwrap();
    let params = [
        KeyValuePair { key: "index_type".into(), value: "FLAT".into() },
        KeyValuePair { key: "metric_type".into(), value: "L2".into() },
    ];
    source.create_index(&src, "v", "", &params).await.unwrap();
    source.load(&src, Duration::from_secs(120)).await.unwrap();
    let initial: Vec<i64> = (0..6000).collect();
    for chunk in initial.chunks(1000) {
        source.insert(&src, "", &data::rows(shape, chunk, 0)).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.source_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 500\nbatch_bytes = 100000\nparallelism = 2\nkey_splits = 2",
    );
    let job_text = std::fs::read_to_string(&job).unwrap().replacen(
        "[target]",
        &format!("[source.wal]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[target]", env.kafka_brokers, env.topic_prefix),
        1,
    );
    std::fs::write(&job, job_text).unwrap();
    let cfg = job.to_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source.clone(), src.clone(), 6000, stop.clone()));

    // Crash during the snapshot, between a target write and its cursor.
    tokio::time::sleep(Duration::from_secs(1)).await;
    expect_abort(spawn_ferry(&cfg, Some("snapshot.after_target_write")), "snapshot crash");
    // Crash while streaming, between a target write and the cursor advance.
    expect_abort(spawn_ferry(&cfg, Some("apply.after_target_write")), "apply crash");
    // Crash between a log append and moving on.
    expect_abort(spawn_ferry(&cfg, Some("log.after_append")), "log crash");
    // A real kill -9 a few seconds into streaming.
    let mut child = spawn_ferry(&cfg, None);
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill().unwrap();
    let _ = tokio::task::block_in_place(|| child.wait());

    // Final run: stop the writer while it streams, wait for convergence.
    let child = spawn_ferry(&cfg, None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");

    // The target is indexed after the snapshot; load it to read it.
    for _ in 0..60 {
        if !target.describe_indexes(&dst).await.unwrap_or_default().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    let fields = data::output_fields(&data::all_types_schema(&src, shape));
    let expected = data::dump(&source, &src, "pk", fields.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = data::dump(&target, &dst, "pk", fields.clone()).await;
    while got != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        got = data::dump(&target, &dst, "pk", fields.clone()).await;
    }
    // SIGTERM: a clean stop exits 0.
    unsafe_sigterm(child.id());
    let (status, err) = stderr_of(child);
    data::assert_same(&expected, &got);
    assert!(status.success(), "ferry run should exit 0 on SIGTERM:\n{err}");
    assert!(expected.len() > 6000, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

fn unsafe_sigterm(pid: u32) {
    let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "could not send SIGTERM to {pid}");
}
