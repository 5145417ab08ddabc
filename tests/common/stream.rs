//! Glue for zero-downtime tests: a live writer on the source, the job file, and `ferry run`
//! processes.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys};
use ferry::proto::common::{ConsistencyLevel, KeyValuePair};

fn int_key(i: i64) -> i64 {
    match data::key(Shape::default(), i) {
        PkValue::Int(k) => k,
        PkValue::Str(_) => unreachable!(),
    }
}

/// Creates an indexed, loaded source collection with `rows` rows (ids 0..rows).
pub async fn make_source(source: &MilvusClient, name: &str, rows: i64) {
    let shape = Shape::default();
    source
        .create_collection(&CreateCollection {
            name: name.into(),
            schema: data::all_types_schema(name, shape),
            shards_num: 2,
            consistency_level: ConsistencyLevel::Bounded,
            properties: vec![],
            num_partitions: 0,
        })
        .await
        .unwrap();
    let params = [
        KeyValuePair {
            key: "index_type".into(),
            value: "FLAT".into(),
        },
        KeyValuePair {
            key: "metric_type".into(),
            value: "L2".into(),
        },
    ];
    source.create_index(name, "v", "", &params).await.unwrap();
    source.load(name, Duration::from_secs(120)).await.unwrap();
    let ids: Vec<i64> = (0..rows).collect();
    for chunk in ids.chunks(1000) {
        source
            .insert(name, "", &data::rows(shape, chunk, 0))
            .await
            .unwrap();
    }
}

/// A job file for `ferry run` from `src` to `dst`, with the test broker as the WAL. The
/// daemon listens on free ports, written to `state/daemon.json` ([`endpoints`]).
pub fn job(dir: &std::path::Path, src: &str, dst: &str) -> String {
    let env = super::env();
    let job = super::write_job(
        dir,
        &env.source_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 500\nbatch_bytes = 100000\nparallelism = 2\nkey_splits = 2",
    );
    let text = std::fs::read_to_string(&job).unwrap().replacen(
        "[target]",
        &format!(
            "[source.wal]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[target]",
            env.kafka_brokers, env.topic_prefix
        ),
        1,
    )
        + "\n[control]\nlisten = \"127.0.0.1:0\"\n\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    job.to_str().unwrap().to_string()
}

/// Inserts new ids, upserts existing ones and deletes some, in a loop, until `stop`.
/// With `tolerate_errors`, a failed write is retried on the next round (outage tests: the
/// source itself stalls while its broker is down). Returns the next unused id.
pub async fn writer(
    c: MilvusClient,
    name: String,
    mut next: i64,
    stop: Arc<AtomicBool>,
    tolerate_errors: bool,
) -> i64 {
    let shape = Shape::default();
    let mut round = 0i64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let new: Vec<i64> = (next..next + 70).collect();
        let old: Vec<i64> = (0..20).map(|k| (round * 37 + k * 101) % next).collect();
        let gone: Vec<i64> = (0..10).map(|k| (round * 53 + k * 211) % next).collect();
        let step = async {
            c.insert(&name, "", &data::rows(shape, &new, 0)).await?;
            c.upsert(&name, "", &data::rows(shape, &old, round)).await?;
            c.delete(
                &name,
                "",
                "pk",
                &PrimaryKeys::Int(gone.iter().map(|&i| int_key(i)).collect()),
            )
            .await
        };
        match step.await {
            Ok(_) => next += 70,
            Err(e) if tolerate_errors => eprintln!("writer: {e} (retrying)"),
            Err(e) => panic!("writer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next
}

pub fn spawn_ferry(cfg: &str, failpoint: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--config", cfg, "--quiet"])
        .env("FERRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = failpoint {
        cmd.env("FERRY_FAILPOINTS", f);
    }
    cmd.spawn().expect("spawn ferry run")
}

/// `ferry run` as a long-lived daemon: its log is appended to `dir/ferry.log` (a pipe nobody
/// reads would fill up and stall it).
pub fn spawn_daemon(cfg: &str, dir: &std::path::Path, failpoints: &str) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ferry.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config", cfg, "--quiet"])
        .env("FERRY_LOG", "info")
        .env("FERRY_FAILPOINTS", failpoints)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Daemon::new)
        .expect("spawn ferry run")
}

/// Waits for a ferry process (without blocking other tasks of a multi-thread runtime).
pub fn wait(child: Child) -> (std::process::ExitStatus, String) {
    let out = tokio::task::block_in_place(|| child.wait_with_output()).expect("wait ferry");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a ferry process to abort at its failpoint.
pub fn expect_abort(child: Child, what: &str) {
    let start = Instant::now();
    let (status, err) = wait(child);
    assert!(
        !status.success(),
        "{what}: ferry should have aborted at its failpoint; stderr:\n{err}"
    );
    assert!(
        err.contains("failpoint"),
        "{what}: aborted, but not at the failpoint:\n{err}"
    );
    eprintln!("{what}: aborted after {:?}", start.elapsed());
}

pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "could not send SIGTERM to {pid}");
}

/// Loads the target once ferry has indexed it, then polls until it equals the source (or a
/// deadline); returns both dumps.
pub async fn converge(
    source: &MilvusClient,
    target: &MilvusClient,
    src: &str,
    dst: &str,
    within: Duration,
) -> (
    std::collections::BTreeMap<PkValue, u64>,
    std::collections::BTreeMap<PkValue, u64>,
) {
    for _ in 0..120 {
        if !target
            .describe_indexes(dst)
            .await
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    target.load(dst, Duration::from_secs(120)).await.unwrap();
    let fields = data::output_fields(&data::all_types_schema(src, Shape::default()));
    let expected = data::dump(source, src, "pk", fields.clone()).await;
    let deadline = Instant::now() + within;
    let mut got = data::dump(target, dst, "pk", fields.clone()).await;
    while got != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        got = data::dump(target, dst, "pk", fields.clone()).await;
    }
    (expected, got)
}

/// The addresses a running daemon of the job file in `dir` wrote (waits up to 60 s).
pub fn endpoints(dir: &std::path::Path) -> ferry::daemon::Endpoints {
    let path = dir.join("state").join("daemon.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "ferry run did not write {} within 60 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `ferry run` process that is killed if the test panics (no orphaned daemons).
pub struct Daemon(Option<Child>);

impl Daemon {
    pub fn new(child: Child) -> Self {
        Daemon(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        wait(self.0.take().expect("daemon already waited for"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
