//! `ferry run` end to end: a writer keeps inserting, upserting and deleting on the source
//! while ferry snapshots and streams; ferry is crashed at named failpoints and with kill -9,
//! restarted, and the target must converge to exactly the source.

mod common;

use common::stream;

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
    stream::crash_drill(&source, &target, (&src, &dst), (&cfg, dir.path()), 6000, |_| {}).await;
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
