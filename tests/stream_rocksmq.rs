//! `ferry run` from a standalone Milvus whose WAL is RocksMQ (the test environment's target
//! Milvus 2.3.5, here the source) into the other Milvus: a writer keeps inserting, upserting
//! and deleting while ferry snapshots and streams from RocksMQ through a secondary instance;
//! ferry is crashed at named failpoints and with kill -9, restarted, and the target must
//! converge to exactly the source, as the Kafka test (`tests/stream_zero_downtime.rs`) does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stream::{self, expect_abort, spawn_daemon};

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
    let rocksmq = std::path::Path::new(&env.target_data_dir).join("rocksmq");
    let wal = format!("rocksmq = \"{}\"\nrocksmq_catch_up_ms = 50\ntopic_prefix = \"{}\"", rocksmq.display(), env.topic_prefix);
    let cfg = stream::job_between(dir.path(), &env.target_uri, &env.source_uri, &wal, &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 4000, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(1)).await;

    expect_abort(spawn_daemon(&cfg, dir.path(), "copy.after_target_write"), "snapshot crash");
    expect_abort(spawn_daemon(&cfg, dir.path(), "apply.after_target_write"), "apply crash");
    expect_abort(spawn_daemon(&cfg, dir.path(), "log.after_append"), "log crash");
    let child = spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill();

    let child = spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Readiness names the RocksMQ reader and checks it reads.
    let eps = stream::endpoints(dir.path());
    let (code, body) = tokio::task::block_in_place(|| common::http_get(&eps.telemetry, "/readyz"));
    assert!(code == 200 && body.contains(&format!("wal (RocksMQ at {}): ok", rocksmq.display())), "{code} {body}");
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(90)).await;
    stream::stop_and_assert_same(child, &expected, &got);
    assert!(expected.len() > 4000, "the writer added rows ({})", expected.len());
    // ferry wrote nothing into Milvus's directory: its secondary instances live in state_dir.
    assert!(dir.path().join("state/rocksmq-secondary").is_dir());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
