//! `ferry run` from a RocksMQ source through a restart of that source Milvus mid-stream (its
//! RocksDB is closed and reopened under ferry's secondary instance), while a writer keeps
//! changing it: ferry must not stop, and the target must converge to exactly the source.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_rocksmq_source_loses_nothing() {
    let env = common::env();
    // Roles swapped: the test environment's RocksMQ Milvus is the source.
    let source = common::client(&env.target_uri).await;
    let src = common::unique("rmqr_src");
    let dst = common::unique("rmqr_dst");
    stream::make_source(&source, &src, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::rocksmq_job(dir.path(), &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 3000, stop.clone(), true));
    let mut ferry = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(8)).await;

    stream::testenv_restart("target", 5);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(ferry.try_wait().is_none(), "ferry stopped during the source's restart:\n{}", ferry.log());

    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let source = common::client(&env.target_uri).await;
    let target = common::client(&env.source_uri).await;
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(120)).await;
    stream::stop_and_assert_same(ferry, &expected, &got);
    assert!(expected.len() > 3000, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
