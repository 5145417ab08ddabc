//! `ferry run` end to end: a writer keeps inserting, upserting and deleting on the source
//! while ferry snapshots and streams; ferry is crashed at named failpoints and with kill -9,
//! restarted, and the target must converge to exactly the source.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stream::{self, expect_abort, spawn_daemon};

// Multi-threaded: the writer task must keep running while the test blocks on ferry processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_converges_through_crashes_while_the_source_is_written() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("zd_src");
    let dst = common::unique("zd_dst");
    stream::make_source(&source, &src, 6000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 6000, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Crash during the snapshot, between a target write and its cursor.
    expect_abort(spawn_daemon(&cfg, dir.path(), "copy.after_target_write"), "snapshot crash");
    // Crash while streaming, between a target write and the cursor advance.
    expect_abort(spawn_daemon(&cfg, dir.path(), "apply.after_target_write"), "apply crash");
    // Crash between a log append and moving on.
    expect_abort(spawn_daemon(&cfg, dir.path(), "log.after_append"), "log crash");
    // A real kill -9 a few seconds into streaming.
    let child = spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill();

    // Final run: stop the writer while it streams, wait for convergence.
    let child = spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(90)).await;
    stream::stop_and_assert_same(child, &expected, &got);
    assert!(expected.len() > 6000, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
