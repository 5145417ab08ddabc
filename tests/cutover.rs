//! `ferry cutover` end to end against a live writer on the source: each freeze mode ends
//! with a target equal to the source and a report; a forced failure during the drain
//! aborts, unfreezes the source and returns the job to STREAMING; a scheduled, postponed
//! cutover can be aborted before it starts; a dry run changes nothing; writes the freeze did
//! not stop (upserts, invisible to a count check) abort the cutover.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stream;
use ferry::milvus::{Grant, MilvusClient};

use stream::{cli as ferry, cutover, spawn_daemon};

use stream::status as state;

fn wait_state(cfg: &str, want: &str) {
    stream::wait_state(cfg, want, Duration::from_secs(180));
}

/// A writer the freeze command can stop: the command creates `freeze` and waits for
/// `stopped`, which appears once the writer has finished its last write.
struct Writer {
    dir: PathBuf,
    next: i64,
}

impl Writer {
    fn freeze_command(&self) -> String {
        let d = self.dir.display();
        format!("touch {d}/freeze && while [ ! -f {d}/stopped ]; do sleep 0.05; done")
    }

    fn unfreeze_command(&self) -> String {
        let d = self.dir.display();
        format!("rm -f {d}/freeze {d}/stopped && touch {d}/unfrozen")
    }

    /// Writes until the freeze file appears; returns the next unused id.
    fn start(&self, source: &MilvusClient, name: &str) -> tokio::task::JoinHandle<i64> {
        let (source, name, dir, next) = (source.clone(), name.to_string(), self.dir.clone(), self.next);
        tokio::spawn(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let w = tokio::spawn(stream::writer(source, name, next, stop.clone(), false));
            while !dir.join("freeze").exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Relaxed);
            let next = w.await.unwrap();
            std::fs::write(dir.join("stopped"), "").unwrap();
            next
        })
    }
}

async fn setup(prefix: &str, rows: i64) -> (MilvusClient, MilvusClient, String, String, tempfile::TempDir, String) {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique(&format!("{prefix}_src"));
    let dst = common::unique(&format!("{prefix}_dst"));
    stream::make_source(&source, &src, rows).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    (source, target, src, dst, dir, cfg)
}

/// Puts the freeze and unfreeze commands in the job file: the only place they come from.
fn set_commands(cfg: &str, freeze: &str, unfreeze: &str) {
    let text = std::fs::read_to_string(cfg).unwrap() + &format!("\n[cutover]\nfreeze_command = {freeze:?}\nunfreeze_command = {unfreeze:?}\n");
    std::fs::write(cfg, text).unwrap();
}

async fn assert_equal(source: &MilvusClient, target: &MilvusClient, src: &str, dst: &str) {
    let (expected, got) = stream::converge(source, target, src, dst, Duration::from_secs(5)).await;
    common::data::assert_same(&expected, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_freeze_cutover_aborts_on_a_drain_failure_then_succeeds() {
    let (source, target, src, dst, dir, cfg) = setup("co_cmd", 3000).await;
    let mut writer = Writer { dir: dir.path().to_path_buf(), next: 3000 };
    // The freeze command also records its environment: ferry's variables must not be in it.
    let d = dir.path().display();
    set_commands(&cfg, &format!("env > {d}/freeze.env && {}", writer.freeze_command()), &writer.unfreeze_command());
    let w = writer.start(&source, &src);
    // The first drain of this daemon fails (failpoint): the abort path.
    let daemon = spawn_daemon(&cfg, dir.path(), "cutover.drain");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));

    // A dry run checks and changes nothing: the writer keeps writing.
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--dry-run", "--freeze", "command"]));
    assert!(ok, "{report:#}");
    assert_eq!(report["outcome"], "dry_run");
    assert!(!dir.path().join("freeze").exists());
    assert_eq!(tokio::task::block_in_place(|| state(&cfg))["state"], "STREAMING");

    // Forced failure during the drain: aborted, unfrozen, back to STREAMING.
    let args = ["--freeze", "command", "--max-lag-ms", "5000"];
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &args));
    let env = std::fs::read_to_string(dir.path().join("freeze.env")).unwrap();
    assert!(!env.contains("FERRY_") && env.contains("PATH="), "the freeze command saw ferry's environment:\n{env}");
    assert!(!ok, "an aborted cutover exits non-zero");
    assert_eq!(report["outcome"], "aborted", "{report:#}");
    assert!(report["reason"].as_str().unwrap().contains("cutover.drain"), "{report:#}");
    assert!(dir.path().join("unfrozen").exists(), "the unfreeze command ran");
    let st = tokio::task::block_in_place(|| state(&cfg));
    assert_eq!(st["state"], "STREAMING");
    assert!(st["last_error"]["message"].as_str().unwrap().contains("source writes restored"), "{st:#}");

    // The application writes again; a real cutover, verifying every row.
    writer.next = w.await.unwrap();
    let w = writer.start(&source, &src);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let args = ["--freeze", "command", "--max-lag-ms", "5000", "--verify", "full"];
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &args));
    assert!(ok, "{report:#}");
    assert_eq!(report["outcome"], "successful");
    let window = report["write_unavailable_seconds"].as_f64().unwrap();
    eprintln!("write-unavailability window: {window:.3}s, drain {:.3}s", report["drain_seconds"].as_f64().unwrap());
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["preconditions", "wait", "freeze", "end_position", "drain", "verify", "post", "fence"]);
    assert_eq!(report["verify"]["equal"], true);
    let written = w.await.unwrap();
    assert!(written > writer.next, "the writer wrote between the two cutovers");
    let st = tokio::task::block_in_place(|| state(&cfg));
    assert_eq!(st["state"], "SUCCESSFUL");
    assert!(st["last_cutover_report"].as_str().unwrap().contains("successful"));
    assert_equal(&source, &target, &src, &dst).await;

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status:?}: {log}");
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_freeze_revokes_writes_and_restores_them_on_abort() {
    let (_, target, src, dst, dir, cfg) = setup("co_rbac", 2000).await;
    // Milvus wants a user behind grant and revoke calls, even with authorization off.
    let mut opts = ferry::milvus::ConnectOptions::new(common::env().source_uri.clone());
    opts.token = Some(ferry::secret::Secret::new("root:Milvus".to_string()));
    let source = MilvusClient::connect(&opts).await.unwrap();
    // One fixed name (Milvus caps the number of roles): left over from an earlier run, it is
    // emptied and dropped first.
    let role = "ferry_test_writer".to_string();
    for g in source.grants(&role).await.unwrap_or_default() {
        source.revoke(&g).await.unwrap();
    }
    let _ = source.drop_role(&role).await;
    source.create_role(&role).await.unwrap();
    let grant = |p: &str, obj: &str| Grant {
        role: role.clone(),
        object: "Collection".into(),
        object_name: obj.into(),
        privilege: p.into(),
        db_name: "default".into(),
    };
    let writes = [grant("Insert", &src), grant("Delete", &src), grant("Upsert", &src)];
    for g in writes.iter().chain([&grant("Query", &src)]) {
        source.grant(g).await.unwrap();
    }
    let held = || async {
        let mut g: Vec<String> = source.grants(&role).await.unwrap().into_iter().map(|g| g.privilege).collect();
        g.sort();
        g
    };
    assert_eq!(held().await, ["Delete", "Insert", "Query", "Upsert"]);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        &format!("uri = \"{}\"", common::env().source_uri),
        &format!("uri = \"{}\"\ntoken = \"root:Milvus\"", common::env().source_uri),
        1,
    ) + &format!("\n[cutover]\nrbac_roles = [\"{role}\"]\n");
    std::fs::write(&cfg, text).unwrap();

    // The test source runs without authorization, so a revoke does not block this writer:
    // it is stopped before each cutover, and the grants themselves are checked.
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 2000, stop.clone(), false));
    let daemon = spawn_daemon(&cfg, dir.path(), "cutover.drain");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();

    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--freeze", "rbac", "--max-lag-ms", "5000"]));
    assert!(!ok && report["outcome"] == "aborted", "{report:#}");
    assert!(report["steps"][2]["message"].as_str().unwrap().contains("revoked 3"), "{report:#}");
    assert_eq!(held().await, ["Delete", "Insert", "Query", "Upsert"], "abort restores the grants");

    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--freeze", "rbac", "--max-lag-ms", "5000", "--verify", "full"]));
    assert!(ok && report["outcome"] == "successful", "{report:#}");
    assert_eq!(held().await, ["Query"], "a successful cutover leaves the source frozen");
    assert_equal(&source, &target, &src, &dst).await;

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status:?}: {log}");
    for g in source.grants(&role).await.unwrap() {
        source.revoke(&g).await.unwrap();
    }
    source.drop_role(&role).await.unwrap();
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_postponed_cutover_can_be_aborted_then_runs_with_no_freeze() {
    let (source, target, src, dst, dir, cfg) = setup("co_none", 2000).await;
    let daemon = spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));

    // Postponed by a flag file: status shows it pending; --abort cancels it.
    let flag = dir.path().join("hold");
    std::fs::write(&flag, "").unwrap();
    let (cfg2, flag2) = (cfg.clone(), flag.display().to_string());
    let pending = std::thread::spawn(move || cutover(&cfg2, &["--postpone-flag", &flag2]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = tokio::task::block_in_place(|| state(&cfg));
        if st["cutover"].as_str().unwrap_or("").contains("postponed") {
            break;
        }
        assert!(Instant::now() < deadline, "status never showed the pending cutover: {st:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, _, err) = tokio::task::block_in_place(|| ferry(&["cutover", "--job", "test-job", "--abort"], &cfg));
    assert!(ok, "{err}");
    let (ok, report) = pending.join().unwrap();
    assert!(!ok && report["reason"] == "aborted by the operator", "{report:#}");
    assert_eq!(tokio::task::block_in_place(|| state(&cfg))["state"], "STREAMING");

    // Scheduled a few seconds ahead, writers already stopped (freeze none).
    let at = chrono_like_now_plus(3);
    let started = Instant::now();
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--at", &at, "--verify", "full"]));
    assert!(ok && report["outcome"] == "successful", "{report:#}");
    assert!(started.elapsed() >= Duration::from_secs(2), "the cutover waited for --at");
    assert_eq!(report["steps"][2]["status"], "skipped");
    assert_equal(&source, &target, &src, &dst).await;

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status:?}: {log}");
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// The source must never stay frozen by accident: an unfreeze that fails is kept and retried
/// by the next cutover (a dry run reports it and changes nothing), and SIGTERM during a
/// cutover aborts it and restores writes before the daemon exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unfreeze_is_retried_and_sigterm_unfreezes() {
    let (source, target, src, dst, dir, cfg) = setup("co_unfreeze", 1000).await;
    let d = dir.path().display().to_string();
    // The drain fails (failpoint) and the unfreeze command fails until `unfreeze_ok` exists.
    set_commands(&cfg, "true", &format!("test -f {d}/unfreeze_ok && touch {d}/unfrozen"));
    let daemon = spawn_daemon(&cfg, dir.path(), "cutover.drain");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));

    let args = ["--freeze", "command", "--max-lag-ms", "5000"];
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &args));
    assert!(!ok && report["outcome"] == "aborted", "{report:#}");
    let abort = report["steps"].as_array().unwrap().last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(abort.contains("restoring source writes FAILED") && abort.contains("unfreeze command exited"), "{report:#}");
    let st = tokio::task::block_in_place(|| state(&cfg));
    assert_eq!(st["state"], "STREAMING");
    assert!(st["last_error"]["message"].as_str().unwrap().contains("FAILED"), "{st:#}");

    // A dry run says so and changes nothing.
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--dry-run"]));
    assert!(!ok && report["reason"].as_str().unwrap().contains("left source writes frozen"), "{report:#}");
    assert!(!dir.path().join("unfrozen").exists());

    // Once the unfreeze can work, the next cutover undoes the old freeze first, then runs.
    std::fs::write(dir.path().join("unfreeze_ok"), "").unwrap();
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--max-lag-ms", "5000"]));
    assert!(ok && report["outcome"] == "successful", "{report:#}");
    assert!(dir.path().join("unfrozen").exists(), "the kept unfreeze command ran");
    assert_equal(&source, &target, &src, &dst).await;
    assert!(daemon.terminate().0.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();

    // SIGTERM while the freeze command runs: the cutover aborts, the unfreeze command runs,
    // the daemon exits 0, and after a restart the job streams again.
    let (source, target, src, dst, dir, cfg) = setup("co_sigterm", 1000).await;
    let d = dir.path().display().to_string();
    set_commands(&cfg, &format!("touch {d}/frozen && sleep 3"), &format!("touch {d}/unfrozen"));
    let daemon = spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));
    let cfg2 = cfg.clone();
    let pending = std::thread::spawn(move || cutover(&cfg2, &["--freeze", "command", "--max-lag-ms", "5000"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("frozen").exists() {
        assert!(Instant::now() < deadline, "the freeze command never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status:?}: {log}");
    assert!(dir.path().join("unfrozen").exists(), "SIGTERM left the source frozen");
    let (ok, report) = pending.join().unwrap();
    assert!(!ok && report["outcome"] == "aborted", "{report:#}");
    let daemon = spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));
    assert_equal(&source, &target, &src, &dst).await;
    assert!(daemon.terminate().0.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// Upserts existing keys (0..rows, 20 a call, new values each round) until `stop`: the row
/// count never changes. Returns how many upsert calls succeeded.
async fn upserter(c: MilvusClient, name: String, rows: i64, stop: Arc<AtomicBool>) -> u64 {
    let shape = common::data::Shape::default();
    let mut round = 0i64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let keys: Vec<i64> = (0..20).map(|k| (round * 37 + k * 101) % rows).collect();
        c.upsert(&name, "", &common::data::rows(shape, &keys, round)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    round as u64
}

/// The cutover proves the freeze held: a writer the freeze does not stop (a freeze command
/// that stops nothing), doing only upserts of existing keys, which a count check cannot see,
/// makes the cutover abort naming the collection and how many writes got through; the
/// source is unfrozen and the job streams again. Once the writer stops, a cutover succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_the_fence_abort_the_cutover() {
    let (source, target, src, dst, dir, cfg) = setup("co_fence", 1000).await;
    let d = dir.path().display().to_string();
    set_commands(&cfg, "true", &format!("touch {d}/unfrozen"));
    let daemon = spawn_daemon(&cfg, dir.path(), "");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING"));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(upserter(source.clone(), src.clone(), 1000, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let args = ["--freeze", "command", "--max-lag-ms", "5000"];
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &args));
    let took = started.elapsed();
    assert!(!ok && report["outcome"] == "aborted", "{report:#}");
    let reason = report["reason"].as_str().unwrap();
    assert!(reason.contains("writes got through the freeze") && reason.contains(&format!("collection {src}:")), "{report:#}");
    let breach = &report["fence_breaches"][&src];
    let count = |k: &str| breach[k].as_u64().unwrap_or_else(|| panic!("no {k} in {report:#}"));
    assert!(count("writes") > 0 && count("inserted_rows") > 0 && count("deleted_rows") > 0, "{report:#}");
    assert!(dir.path().join("unfrozen").exists(), "the abort ran the unfreeze command");
    assert_eq!(tokio::task::block_in_place(|| state(&cfg))["state"], "STREAMING");
    stop.store(true, Ordering::Relaxed);
    let upserts = w.await.unwrap();
    eprintln!(
        "aborted after {took:?}: {} writes got through ({} rows inserted, {} deleted); the writer made {upserts} upserts of 20 rows",
        count("writes"),
        count("inserted_rows"),
        count("deleted_rows")
    );

    // The writer stopped: the freeze now holds, and the cutover succeeds.
    let (ok, report) = tokio::task::block_in_place(|| cutover(&cfg, &["--freeze", "command", "--max-lag-ms", "5000", "--verify", "full"]));
    assert!(ok && report["outcome"] == "successful", "{report:#}");
    assert_eq!(report["fence_breaches"], serde_json::json!({}), "{report:#}");
    assert_eq!(report["steps"].as_array().unwrap().last().unwrap()["step"], "fence");
    assert_equal(&source, &target, &src, &dst).await;

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status:?}: {log}");
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// RFC 3339 UTC time `secs` from now, without a date crate in the tests.
fn chrono_like_now_plus(secs: u64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("+{secs} seconds"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
