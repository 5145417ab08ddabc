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
