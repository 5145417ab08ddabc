//! `ferry run` from a RocksMQ source through outages, while a writer keeps changing it: the
//! source Milvus restarts mid-stream (its RocksDB is closed and reopened under ferry's
//! secondary instance), then the target is unreachable for ferry for 30 s (a TCP gate in
//! front of it refuses and resets ferry's connections; restarting the test environment's
//! Kafka-backed Milvus left some of its channels' queries hanging). ferry must not stop, its lag must
//! rise while the target is down and fall back once nothing is owed (also while the source is
//! idle, when RocksMQ gets no writes), the target must converge to exactly the source, and a
//! cutover must then go through from the RocksMQ source (lag gate, end position, drain, full
//! verification).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stream;

/// `ferry status`'s lag for the job, in seconds.
fn lag(cfg: &str) -> f64 {
    let st = stream::status(cfg);
    st["lag_seconds"].as_f64().unwrap_or_else(|| panic!("no lag_seconds in {st:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_and_a_target_outage_lose_nothing_and_lag_stays_honest() {
    let env = common::env();
    // Roles swapped: the test environment's RocksMQ Milvus is the source.
    let source = common::client(&env.target_uri).await;
    let src = common::unique("rmqr_src");
    let dst = common::unique("rmqr_dst");
    stream::make_source(&source, &src, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let gate = stream::Gate::start(&env.source_uri, dir.path());
    let cfg = stream::rocksmq_job_to(dir.path(), &gate.uri, &src, &dst);

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 3000, stop.clone(), true));
    let mut ferry = stream::spawn_daemon(&cfg, dir.path(), "");
    tokio::time::sleep(Duration::from_secs(8)).await;

    stream::testenv_restart("target", 5);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(ferry.try_wait().is_none(), "ferry stopped during the source's restart:\n{}", ferry.log());

    // The target unreachable for ferry for 30 s under the writer: the lag must rise.
    stream::wait_state(&cfg, "STREAMING", Duration::from_secs(120));
    gate.close();
    let down = Instant::now();
    let mut worst = 0.0f64;
    while down.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        worst = worst.max(tokio::task::block_in_place(|| lag(&cfg)));
    }
    gate.open();
    assert!(worst >= 15.0, "the lag should rise while the target is unreachable for 30 s; the highest seen was {worst:.1}s");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ferry.try_wait().is_none(), "ferry stopped while the target was down:\n{}", ferry.log());

    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}; highest lag during the outage {worst:.1}s");
    let source = common::client(&env.target_uri).await;
    let target = common::client(&env.source_uri).await;
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(120)).await;
    if expected != got {
        stream::stop_and_assert_same(ferry, &expected, &got);
        unreachable!("stop_and_assert_same fails on a difference");
    }

    // Nothing is owed and the source gets no writes: the lag must come down and stay down
    // (from RocksMQ, no matter how long ago the source last wrote).
    let deadline = Instant::now() + Duration::from_secs(60);
    let low = loop {
        let l = tokio::task::block_in_place(|| lag(&cfg));
        if l < 2.0 || Instant::now() >= deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(low < 2.0, "the lag should come down once the target holds the source; it is {low:.1}s");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let idle = tokio::task::block_in_place(|| lag(&cfg));
    assert!(idle < 2.0, "the lag should stay down while the source is idle; after 15 s it is {idle:.1}s");

    // A cutover from the RocksMQ source (writers already stopped): lag gate, end position,
    // drain and a full verification.
    let (ok, report) = tokio::task::block_in_place(|| stream::cutover(&cfg, &["--max-lag-ms", "2000", "--verify", "full"]));
    assert!(
        ok && report["outcome"] == "successful",
        "the cutover from RocksMQ should succeed:\n{report:#}\nferry's log:\n{}",
        common::tail(&ferry.log(), 60)
    );
    stream::stop_and_assert_same(ferry, &expected, &got);
    assert!(expected.len() > 3000, "the writer added rows ({})", expected.len());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
