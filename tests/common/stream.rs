//! Glue for zero-downtime tests: a live writer on the source, the job file, and `ferry run`
//! processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
pub fn job(dir: &Path, src: &str, dst: &str) -> String {
    let env = super::env();
    let wal = format!("brokers = \"{}\"\ntopic_prefix = \"{}\"", env.kafka_brokers, env.topic_prefix);
    job_between(dir, &env.source_uri, &env.target_uri, &wal, src, dst)
}

/// A job file for `ferry run` from `src` on `source_uri` to `dst` on `target_uri`, with
/// `wal` as the `[source.wal]` table's body.
pub fn job_between(dir: &Path, source_uri: &str, target_uri: &str, wal: &str, src: &str, dst: &str) -> String {
    let job = super::write_job(
        dir,
        source_uri,
        target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 500\nbatch_bytes = 100000\nparallelism = 2\nkey_splits = 2",
    );
    let text = std::fs::read_to_string(&job).unwrap().replacen("[target]", &format!("[source.wal]\n{wal}\n\n[target]"), 1)
        + "\n[control]\nlisten = \"127.0.0.1:0\"\n\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&job, text).unwrap();
    job.to_str().unwrap().to_string()
}

/// Inserts new ids, upserts existing ones and deletes some, in a loop, until `stop`.
///
/// With `tolerate_errors` (outage tests: the source itself fails writes while its broker is
/// down), a failed write is retried with the same rows until it succeeds, as an application
/// would. This matters for the comparison: Milvus 2.3 writes an upsert as an Insert and a
/// Delete message per channel, and a broker failure between them leaves the source holding
/// both the old and the new row of a key (its queries then show the old one) while the WAL
/// carries the new one. The retry's Delete removes both and its Insert writes the new row once.
/// Returns the next unused id.
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
        let gone = PrimaryKeys::Int((0..10).map(|k| int_key((round * 53 + k * 211) % next)).collect());
        let (new_rows, old_rows) = (data::rows(shape, &new, 0), data::rows(shape, &old, round));
        until_done(tolerate_errors, || c.insert(&name, "", &new_rows)).await;
        until_done(tolerate_errors, || c.upsert(&name, "", &old_rows)).await;
        until_done(tolerate_errors, || c.delete(&name, "", "pk", &gone)).await;
        next += 70;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next
}

/// Runs one write of the writer: once, or with `retry` until it succeeds (at most 5 minutes).
async fn until_done<T, F, Fut>(retry: bool, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ferry::milvus::MilvusError>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(_) => return,
            Err(e) if retry && start.elapsed() < Duration::from_secs(300) => {
                eprintln!("writer: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("writer: {e}"),
        }
    }
}

/// `ferry run --config cfg` with `failpoints` (may be empty), logging at info to
/// `dir/ferry.log`.
pub fn spawn_daemon(cfg: &str, dir: &Path, failpoints: &str) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--config", cfg, "--quiet"])
        .env("FERRY_LOG", "info")
        .env("FERRY_FAILPOINTS", failpoints);
    Daemon::spawn(cmd, &dir.join("ferry.log"))
}

/// Waits for a ferry process to abort at its failpoint.
pub fn expect_abort(daemon: Daemon, what: &str) {
    let start = Instant::now();
    let (status, err) = daemon.wait();
    assert!(
        !status.success(),
        "{what}: ferry should have aborted at its failpoint; log:\n{err}"
    );
    assert!(
        err.contains("failpoint"),
        "{what}: aborted, but not at the failpoint:\n{err}"
    );
    eprintln!("{what}: aborted after {:?}", start.elapsed());
}

fn sigterm(pid: u32) {
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
    loop {
        // A target that was just restarted may time out a query: that is retried, not a
        // difference.
        match data::try_dump(target, dst, "pk", fields.clone()).await {
            Ok(got) if got == expected || Instant::now() >= deadline => return (expected, got),
            Ok(_) => {}
            Err(e) if Instant::now() < deadline => eprintln!("converge: reading the target failed: {e} (retrying)"),
            Err(e) => panic!("converge: reading the target failed until the deadline: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The end of a streaming test: SIGTERM stops `daemon`, which must exit 0, and the target holds
/// exactly the source's rows. A failure shows the end of the daemon's log.
pub fn stop_and_assert_same(
    daemon: Daemon,
    expected: &std::collections::BTreeMap<PkValue, u64>,
    got: &std::collections::BTreeMap<PkValue, u64>,
) {
    let (status, log) = daemon.terminate();
    let tail = super::tail(&log, 80);
    if expected != got {
        eprintln!("ferry's log (last 80 lines):\n{tail}");
    }
    data::assert_same(expected, got);
    assert!(status.success(), "ferry run should exit 0 on SIGTERM ({status}); last 80 log lines:\n{tail}");
}

/// The job's status (`ferry status --json`, the daemon's generated control token).
pub fn status(cfg: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["status", "--json", "--config", cfg])
        .env_remove("FERRY_CONTROL")
        .env_remove("FERRY_CONTROL_TOKEN")
        .output()
        .expect("run ferry status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ferry status: {text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))["jobs"][0].clone()
}

/// `ferry ARGS --config cfg` (the daemon's generated control token, read through the job
/// file); prints the outcome and returns (success, stdout, stderr).
pub fn cli(args: &[&str], cfg: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--config", cfg])
        .env_remove("FERRY_CONTROL")
        .env_remove("FERRY_CONTROL_TOKEN")
        .output()
        .expect("run ferry");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    eprintln!("ferry {args:?} -> {}\n{stderr}{stdout}", out.status);
    (out.status.success(), stdout, stderr)
}

/// `ferry cutover` of the test job with `args` (120 s timeout): success and its JSON report.
pub fn cutover(cfg: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["cutover", "--job", "test-job", "--json", "--timeout", "120s"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(&all, cfg);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON report ({e}): {out}\n{err}"));
    (ok, report)
}

/// Polls [`status`] until the job is in state `want`; returns that status.
pub fn wait_state(cfg: &str, want: &str, within: Duration) -> serde_json::Value {
    endpoints(Path::new(cfg).parent().unwrap());
    let deadline = Instant::now() + within;
    loop {
        let st = status(cfg);
        if st["state"] == want {
            return st;
        }
        assert!(Instant::now() < deadline, "job never reached {want}; status: {st:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The addresses a running daemon of the job file in `dir` wrote (waits up to 60 s).
pub fn endpoints(dir: &Path) -> ferry::daemon::Endpoints {
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

/// A ferry process whose stderr goes to a log file (a pipe nobody reads would fill up and
/// stall it), killed if the test panics (no orphaned daemons).
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// Where this process's part of the log starts (restarts append to the same file).
    from: u64,
}

impl Daemon {
    /// Spawns `cmd` with stdout discarded and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let from = file.metadata().unwrap().len();
        let child = cmd.stdout(Stdio::null()).stderr(file).spawn().expect("spawn ferry");
        Daemon { child: Some(child), log: log.to_path_buf(), from }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// This process's log so far.
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(self.from as usize..).unwrap_or_default()).into_owned()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let mut c = self.child.take().expect("daemon already waited for");
        c.kill().unwrap();
        let _ = tokio::task::block_in_place(|| c.wait());
    }

    /// SIGTERM (a clean stop), then [`Daemon::wait`].
    pub fn terminate(self) -> (ExitStatus, String) {
        sigterm(self.id());
        self.wait()
    }

    /// Waits for the process to exit (without blocking other tasks of a multi-thread
    /// runtime); returns its status and its log.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let mut c = self.child.take().expect("daemon already waited for");
        let status = tokio::task::block_in_place(|| c.wait()).expect("wait ferry");
        (status, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `scripts/testenv restart NAME DOWN_SECONDS`: stops one server keeping its data, starts it
/// again after the pause (outage tests).
pub fn testenv_restart(name: &str, down_seconds: u32) {
    let script = super::repo_root().join("scripts/testenv");
    let ok = tokio::task::block_in_place(|| {
        std::process::Command::new(script).args(["restart", name, &down_seconds.to_string()]).status()
    })
    .map(|s| s.success())
    .unwrap_or(false);
    assert!(ok, "scripts/testenv restart {name} failed (see target/testenv/logs)");
}

/// A job file for `ferry run` from `src` on the test environment's RocksMQ Milvus (its
/// "target" server, here the source) to `dst` on the other one, reading the WAL from RocksMQ.
pub fn rocksmq_job(dir: &Path, src: &str, dst: &str) -> String {
    rocksmq_job_to(dir, &super::env().source_uri, src, dst)
}

/// [`rocksmq_job`] with the target at `target_uri` (a [`Gate`] in front of it, say).
pub fn rocksmq_job_to(dir: &Path, target_uri: &str, src: &str, dst: &str) -> String {
    let env = super::env();
    let wal = format!("rocksmq = \"{}\"\nrocksmq_catch_up_ms = 50\ntopic_prefix = \"{}\"", rocksmq_dir().display(), env.topic_prefix);
    job_between(dir, &env.target_uri, target_uri, &wal, src, dst)
}

/// `scripts/lib/bench_tcp_gate.py` in front of a server: a TCP forwarder that makes the server
/// unreachable for whoever connects through it (closed: connections refused and reset) while
/// it keeps serving everyone else. Stopped when dropped.
pub struct Gate {
    child: Child,
    /// `http://127.0.0.1:PORT`, to use instead of the server's URI.
    pub uri: String,
}

impl Gate {
    /// A gate to `upstream` (`http://host:port`).
    pub fn start(upstream: &str, dir: &Path) -> Gate {
        let port_file = dir.join("gate.port");
        let child = Command::new(&super::env().python)
            .arg(super::repo_root().join("scripts/lib/bench_tcp_gate.py"))
            .arg(upstream.trim_start_matches("http://"))
            .arg(&port_file)
            .stdout(Stdio::null())
            .spawn()
            .expect("start scripts/lib/bench_tcp_gate.py");
        // Built first, so a gate that never starts is killed when the assertion below panics.
        let mut gate = Gate { child, uri: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().filter(|p| !p.trim().is_empty()) {
                gate.uri = format!("http://127.0.0.1:{}", port.trim());
                return gate;
            }
            assert!(Instant::now() < deadline, "the gate did not start within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "could not signal the gate ({sig})");
    }

    /// The server becomes unreachable through the gate.
    pub fn close(&self) {
        self.signal("-USR1");
    }

    /// Reachable again, on the same port.
    pub fn open(&self) {
        self.signal("-USR2");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The RocksMQ directory of the test environment's RocksMQ Milvus.
pub fn rocksmq_dir() -> PathBuf {
    Path::new(&super::env().target_data_dir).join("rocksmq")
}

/// The crash drill of a zero-downtime job: while a writer changes `src` (which holds `rows`
/// rows), ferry is crashed during the snapshot, while applying and after a log append
/// (failpoints), then killed -9 a few seconds into streaming; a last run must then converge
/// the target to exactly the source. `ready` runs against that last run's endpoints first.
pub async fn crash_drill(
    source: &MilvusClient,
    target: &MilvusClient,
    (src, dst): (&str, &str),
    (cfg, dir): (&str, &Path),
    rows: i64,
    ready: impl FnOnce(&Path),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source.clone(), src.to_string(), rows, stop.clone(), false));
    tokio::time::sleep(Duration::from_secs(1)).await;
    expect_abort(spawn_daemon(cfg, dir, "copy.after_target_write"), "snapshot crash");
    expect_abort(spawn_daemon(cfg, dir, "apply.after_target_write"), "apply crash");
    expect_abort(spawn_daemon(cfg, dir, "log.after_append"), "log crash");
    let child = spawn_daemon(cfg, dir, "");
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill();

    let child = spawn_daemon(cfg, dir, "");
    tokio::time::sleep(Duration::from_secs(5)).await;
    ready(dir);
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    eprintln!("writer stopped after id {written}");
    let (expected, got) = converge(source, target, src, dst, Duration::from_secs(90)).await;
    stop_and_assert_same(child, &expected, &got);
    assert!(expected.len() as i64 > rows, "the writer added rows ({})", expected.len());
}
