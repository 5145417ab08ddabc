//! `ferry run` through outages: the source's broker restarts mid-stream, then the target is
//! down for 30 s, while a writer keeps changing the source. The target must converge to
//! exactly the source and ferry must never stop on its own.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_and_target_outage_lose_nothing() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let src = common::unique("out_src");
    let dst = common::unique("out_dst");
    stream::make_source(&source, &src, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 3000, stop.clone(), true));
    let mut ferry = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(8)).await;

    stream::testenv_restart("kafka", 5);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ferry.try_wait().is_none(), "ferry stopped during the broker restart:\n{}", ferry.log());

    stream::testenv_restart("target", 30);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ferry.try_wait().is_none(), "ferry stopped while the target was down:\n{}", ferry.log());

    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let target = common::client(&env.target_uri).await;
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(120)).await;
    stream::stop_and_assert_same(ferry, &expected, &got);
    assert!(expected.len() > 3000, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
