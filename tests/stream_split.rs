//! One source collection split across two ferry instances by DML channel
//! (`[source.wal] channels`): each snapshots and streams only the keys of its own shard,
//! both write into the same target collection, one is killed with kill -9 and the other
//! crashes at a failpoint, and the target must still converge to exactly the source while
//! a writer inserts, upserts and deletes. Then each instance verifies its share and both cut
//! over together with the writes stopped once, outside ferry.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stream::{self, expect_abort, spawn_daemon};

/// The job file of `dir` for `src` -> `dst` reading only channel `dml_{channel}`.
fn split_job(dir: &Path, src: &str, dst: &str, channel: u32) -> String {
    let cfg = stream::job(dir, src, dst);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replacen("\n\n[target]", &format!("\nchannels = [{channel}]\n\n[target]"), 1);
    assert!(text.contains(&format!("channels = [{channel}]")), "{text}");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn ferry(args: &[&str]) -> (bool, String) {
    let out = common::run_ferry(args, &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ferry {args:?} -> {}\n{text}", out.status);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_by_channel_converge_through_crashes_and_cut_over_together() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("split_src");
    let dst = common::unique("split_dst");
    stream::make_source(&source, &src, 4000).await;
    let desc = source.describe_collection(&src).await.unwrap();
    let numbers: Vec<u32> = desc
        .physical_channel_names
        .iter()
        .map(|c| c.rsplit('_').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 2, "two shards: {:?}", desc.physical_channel_names);
    assert_ne!(numbers[0], numbers[1], "two channels: {:?}", desc.physical_channel_names);
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let cfg_a = split_job(dir_a.path(), &src, &dst, numbers[0]);
    let cfg_b = split_job(dir_b.path(), &src, &dst, numbers[1]);

    // The plan names each instance's share; channels that carry none of the collection's
    // shards are refused before anything is created.
    let (ok, out) = ferry(&["migrate", "--dry-run", "--config", &cfg_a]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("share: this instance moves the keys of shards 0 of 2 ({})", desc.physical_channel_names[0])), "{out}");
    let other = (0..16).find(|n| !numbers.contains(n)).unwrap();
    let cfg_c = split_job(dir_c.path(), &src, &dst, other);
    let (ok, out) = ferry(&["migrate", "--dry-run", "--config", &cfg_c]);
    assert!(!ok && out.contains("carry no shard of the job's collections"), "{out}");

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 4000, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A runs; B crashes at its first apply (after a target write, before its position
    // advances), then runs again; A is killed with kill -9 a few seconds in, then runs again.
    let a = spawn_daemon(&cfg_a, dir_a.path(), "");
    expect_abort(spawn_daemon(&cfg_b, dir_b.path(), "apply.after_target_write"), "instance B apply crash");
    let b = spawn_daemon(&cfg_b, dir_b.path(), "");
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(a); // SIGKILL
    let a = spawn_daemon(&cfg_a, dir_a.path(), "");
    tokio::time::sleep(Duration::from_secs(6)).await;

    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(120)).await;
    common::data::assert_same(&expected, &got);
    assert!(expected.len() > 4000, "the writer added rows ({})", expected.len());

    // Each instance compares only its share, key by key.
    for (cfg, shard) in [(&cfg_a, 0), (&cfg_b, 1)] {
        let (ok, out) = ferry(&["verify", "--config", cfg]);
        assert!(ok, "{out}");
        assert!(out.contains(&format!("share: the keys of shards {shard} of 2")), "{out}");
    }

    // The cutover of a split job: writes are stopped once (here: the writer is done), then
    // every instance cuts over with --freeze none, at the same time; each must succeed.
    let cutovers: Vec<_> = [cfg_a.clone(), cfg_b.clone()]
        .into_iter()
        .map(|cfg| {
            std::thread::spawn(move || {
                ferry(&[
                    "cutover", "--config", &cfg, "--job", "test-job", "--freeze", "none",
                    "--timeout", "120s", "--max-lag-ms", "5000",
                ])
            })
        })
        .collect();
    for c in cutovers {
        let (ok, out) = c.join().unwrap();
        assert!(ok && out.to_lowercase().contains("successful"), "{out}");
    }
    for d in [a, b] {
        let (status, log) = d.terminate();
        assert!(status.success(), "ferry run should exit 0 on SIGTERM:\n{log}");
    }
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
