//! `ferry run` from a standalone Milvus whose WAL is RocksMQ (the test environment's target
//! Milvus 2.3.5, here the source) into the other Milvus: the crash drill of the Kafka test
//! (`tests/stream_zero_downtime.rs`) with the WAL read from RocksMQ through a secondary
//! instance; the target must converge to exactly the source.

mod common;

use common::stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_converges_through_crashes_from_a_rocksmq_source() {
    let env = common::env();
    // Roles swapped: the RocksMQ Milvus is the source.
    let source = common::client(&env.target_uri).await;
    let target = common::client(&env.source_uri).await;
    let src = common::unique("rmq_src");
    let dst = common::unique("rmq_dst");
    stream::make_source(&source, &src, 4000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::rocksmq_job(dir.path(), &src, &dst);
    // Readiness names the RocksMQ reader and checks it reads.
    let ready = |dir: &std::path::Path| {
        let eps = stream::endpoints(dir);
        let (code, body) = tokio::task::block_in_place(|| common::http_get(&eps.telemetry, "/readyz"));
        let want = format!("wal (RocksMQ at {}): ok", stream::rocksmq_dir().display());
        assert!(code == 200 && body.contains(&want), "{code} {body}");
    };
    stream::crash_drill(&source, &target, (&src, &dst), (&cfg, dir.path()), 4000, ready).await;
    // ferry wrote nothing into Milvus's directory: its secondary instances live in state_dir.
    assert!(dir.path().join("state/rocksmq-secondary").is_dir());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// ferry never writes in Milvus's directory: run as a user that cannot write there (`setpriv`
/// to `nobody`; the directory is root's), it snapshots and streams all the same, its
/// secondary instance living under its own state_dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_with_milvus_directory_read_only_to_ferry() {
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let env = common::env();
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test runs ferry as the user nobody (setpriv), which needs root: run the tests as root (CI does)"
    );
    const AS_NOBODY: [&str; 4] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];
    let rmq = stream::rocksmq_dir();
    let probe = Command::new("setpriv")
        .args(AS_NOBODY)
        .args(["sh", "-c", &format!("touch '{}/ferry-write-probe' 2>/dev/null", rmq.display())])
        .status()
        .expect("run setpriv (util-linux)");
    assert!(!probe.success(), "nobody can write in {}: the test would prove nothing", rmq.display());

    let source = common::client(&env.target_uri).await;
    let target = common::client(&env.source_uri).await;
    let src = common::unique("rmqro_src");
    let dst = common::unique("rmqro_dst");
    stream::make_source(&source, &src, 500).await;
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).expect("chown the job's directory to nobody");
    let cfg = stream::rocksmq_job(dir.path(), &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 500, stop.clone(), false));
    let mut cmd = Command::new("setpriv");
    cmd.args(AS_NOBODY)
        .args([env!("CARGO_BIN_EXE_ferry"), "run", "--config", &cfg, "--quiet"])
        .env("FERRY_LOG", "info");
    let mut ferry = stream::Daemon::spawn(cmd, &dir.path().join("ferry.log"));
    stream::wait_state(&cfg, "STREAMING", Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ferry.try_wait().is_none(), "ferry (as nobody) stopped:\n{}", ferry.log());
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(90)).await;
    stream::stop_and_assert_same(ferry, &expected, &got);
    assert!(expected.len() > 500, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
