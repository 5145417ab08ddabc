//! The daemon end to end: `ferry run` under a live writer, watched through `/metrics`,
//! `/healthz`, `/readyz` and the CLI over the control API; paused and resumed; stopped with
//! SIGTERM mid-stream and restarted (paused, it comes back paused); the target converges to
//! exactly the source; no secret ever shows in logs, CLI output or metrics.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stream;
use common::{http_get, metric_max, metric_sum};

const SOURCE_SECRET: &str = "root:Sup3r-S3cret-Pw";
const CONTROL_SECRET: &str = "ctl-T0ken-9f8e7d-0123456789abcdef-long-enough";

fn spawn_daemon(cfg: &str, log: &Path) -> stream::Daemon {
    spawn_daemon_with_failpoints(cfg, log, "")
}

fn spawn_daemon_with_failpoints(cfg: &str, log: &Path, failpoints: &str) -> stream::Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--config", cfg, "--quiet"])
        .env("FERRY_LOG", "debug")
        .env("FERRY_FAILPOINTS", failpoints)
        .env("FERRY_TEST_SOURCE_TOKEN", SOURCE_SECRET)
        .env("FERRY_CONTROL_TOKEN", CONTROL_SECRET);
    stream::Daemon::spawn(cmd, log)
}

/// Runs a CLI command against the daemon of `cfg`; returns (success, stdout + stderr).
fn cli(args: &[&str], cfg: &str, token: bool) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args).args(["--config", cfg]).env("FERRY_TEST_SOURCE_TOKEN", SOURCE_SECRET);
    cmd.env_remove("FERRY_CONTROL");
    let configured = std::fs::read_to_string(cfg).unwrap_or_default().contains("env:FERRY_CONTROL_TOKEN");
    if token && configured {
        cmd.env("FERRY_CONTROL_TOKEN", CONTROL_SECRET);
    } else {
        // Without a configured token the CLI reads the daemon's generated one (--config).
        cmd.env_remove("FERRY_CONTROL_TOKEN");
    }
    let out = cmd.output().expect("run ferry");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn status_json(cfg: &str) -> serde_json::Value {
    let (ok, text) = cli(&["status", "--json"], cfg, true);
    assert!(ok, "ferry status failed: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["jobs"][0].clone()
}

fn wait_state(cfg: &str, want: &str, within: Duration) -> serde_json::Value {
    // The daemon answers once it has written its addresses (stream::endpoints waits for them).
    stream::endpoints(Path::new(cfg).parent().unwrap());
    let deadline = Instant::now() + within;
    loop {
        let st = status_json(cfg);
        if st["state"] == want {
            return st;
        }
        assert!(Instant::now() < deadline, "job never reached {want}; status: {st:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn scrape(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "/metrics: {body}");
    body
}

/// Real RPCs against the running daemon: no token and a wrong token (of the right length)
/// are refused as Unauthenticated; a cutover request carrying command text, with the right
/// token, is refused and nothing runs (neither the freeze nor the unfreeze command, which
/// the abort path would have run), and the job goes on streaming.
async fn control_api_refuses_strangers_and_commands(addr: &str, dir: &Path) {
    use ferry::daemon::control;
    use ferry::proto::control::{CutoverRequest, JobRequest};
    use ferry::secret::Secret;
    let tls = control::ClientTls::default();
    let job = || JobRequest { job: "test-job".into() };
    let mut none = control::connect(addr, None, &tls).await.unwrap();
    let e = none.get_job(job()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let wrong = Secret::new(CONTROL_SECRET.replace('9', "8"));
    assert_eq!(wrong.expose().len(), CONTROL_SECRET.len());
    let mut wrong = control::connect(addr, Some(&wrong), &tls).await.unwrap();
    let e = wrong.pause_job(job()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(!e.message().contains(CONTROL_SECRET), "{e:?}");

    let mut ok = control::connect(addr, Some(&Secret::new(CONTROL_SECRET)), &tls).await.unwrap();
    let marker = dir.join("command-ran");
    let touch = format!("touch {}", marker.display());
    for (freeze, freeze_command, unfreeze_command) in
        [("command", touch.as_str(), ""), ("none", "", touch.as_str()), ("command", "false", touch.as_str())]
    {
        let req = CutoverRequest {
            job: "test-job".into(),
            freeze: freeze.into(),
            freeze_command: freeze_command.into(),
            unfreeze_command: unfreeze_command.into(),
            max_lag_ms: 60_000,
            ..Default::default()
        };
        let e = ok.cutover(req).await.map(|_| ()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("cannot carry freeze or unfreeze commands"), "{e:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!marker.exists(), "a command sent over the control API ran");
    let st = ok.get_job(job()).await.unwrap().into_inner();
    assert_eq!(st.state, "STREAMING");
    assert!(st.cutover.is_empty(), "no cutover may be pending: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_is_observable_controllable_and_restartable() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("dm_src");
    let dst = common::unique("dm_dst");
    stream::make_source(&source, &src, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    // Secrets come from the environment; the source accepts (and ignores) a token.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen(
        &format!("uri = \"{}\"", env.source_uri),
        &format!("uri = \"{}\"\ntoken = \"env:FERRY_TEST_SOURCE_TOKEN\"", env.source_uri),
        1,
    );
    let text = text.replace("[control]\n", "[control]\ntoken = \"env:FERRY_CONTROL_TOKEN\"\n");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("ferry.log");
    let mut outputs = String::new();

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 3000, stop.clone(), false));

    let child = spawn_daemon(&cfg, &log);
    let eps = stream::endpoints(dir.path());
    let (code, body) = http_get(&eps.telemetry, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let st = tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(180)));
    outputs += &st.to_string();
    assert_eq!(st["collections"][0]["target"], dst.as_str());
    assert!(st["collections"][0]["snapshot_rows_done"].as_u64().unwrap() >= 3000, "{st:#}");

    // Readiness names each dependency.
    let (code, body) = http_get(&eps.telemetry, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("source: ok") && body.contains("target: ok") && body.contains(&format!("wal (Kafka at {}): ok", common::env().kafka_brokers)), "{body}");

    // Metrics move while the writer writes.
    let m1 = scrape(&eps.telemetry);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m2 = scrape(&eps.telemetry);
    let rows = |m: &str| metric_sum(m, "ferry_apply_rows_total");
    assert!(rows(&m2) > rows(&m1), "applied rows did not move: {} -> {}", rows(&m1), rows(&m2));
    assert!(metric_sum(&m2, "ferry_stream_ingested_events_total") > 0.0);
    assert!(m2.contains("ferry_job_state{job=\"test-job\",phase=\"STREAMING\"} 1"), "{m2}");
    let lag_streaming = metric_max(&m2, "ferry_stream_lag_seconds").expect("lag gauge");
    assert!(lag_streaming < 30.0, "lag while streaming: {lag_streaming}");
    assert!(m2.contains("ferry_apply_batch_duration_seconds_bucket"), "batch histogram missing");
    outputs += &m2;

    // The control API refuses a client without the token, and says why.
    let (ok, text) = tokio::task::block_in_place(|| cli(&["status", "--control", &eps.control], &cfg, false));
    assert!(!ok && text.contains("token"), "{text}");
    outputs += &text;
    control_api_refuses_strangers_and_commands(&eps.control, dir.path()).await;

    // Pause: nothing more reaches the target, and lag rises honestly.
    let (ok, text) = tokio::task::block_in_place(|| cli(&["pause", "--job", "test-job"], &cfg, true));
    assert!(ok && text.contains("PAUSED"), "{text}");
    outputs += &text;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p1 = scrape(&eps.telemetry);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let p2 = scrape(&eps.telemetry);
    assert_eq!(rows(&p1), rows(&p2), "rows were applied while paused");
    let (l1, l2) = (metric_max(&p1, "ferry_stream_lag_seconds").unwrap(), metric_max(&p2, "ferry_stream_lag_seconds").unwrap());
    assert!(l2 >= l1 + 3.0, "lag must rise while paused: {l1} -> {l2}");
    assert!(metric_sum(&p2, "ferry_log_pending_events") > 0.0, "the WAL is still read while paused");

    // SIGTERM while paused: exits 0; the restarted daemon is still paused.
    let (status, text) = child.terminate();
    assert!(status.success(), "SIGTERM must exit 0: {text}");
    let child = spawn_daemon(&cfg, &log);
    let eps = stream::endpoints(dir.path());
    let st = tokio::task::block_in_place(|| wait_state(&cfg, "PAUSED", Duration::from_secs(60)));
    outputs += &st.to_string();
    let (ok, text) = tokio::task::block_in_place(|| cli(&["resume", "--job", "test-job"], &cfg, true));
    assert!(ok && text.contains("STREAMING"), "{text}");

    // Lag comes back down once apply catches up.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let m = scrape(&eps.telemetry);
        let lag = metric_max(&m, "ferry_stream_lag_seconds").unwrap_or(f64::MAX);
        if lag < 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag stayed at {lag}s after resume");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // SIGTERM mid-stream with the writer running, restart, then stop the writer.
    let (status, text) = child.terminate();
    assert!(status.success(), "SIGTERM mid-stream must exit 0: {text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let child = spawn_daemon(&cfg, &log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(90)).await;
    common::data::assert_same(&expected, &got);
    assert!(written > 3000 && expected.len() > 3000);

    // The human table and the error log answer; cancel is final.
    let (ok, text) = tokio::task::block_in_place(|| cli(&["status"], &cfg, true));
    assert!(ok && text.contains("STREAMING") && text.contains(&dst), "{text}");
    outputs += &text;
    let (ok, text) = tokio::task::block_in_place(|| cli(&["errors", "--job", "test-job"], &cfg, true));
    assert!(ok, "{text}");
    outputs += &text;
    let (ok, text) = tokio::task::block_in_place(|| cli(&["cancel", "--job", "test-job"], &cfg, true));
    assert!(ok && text.contains("CANCELLED"), "{text}");
    let (ok, text) = tokio::task::block_in_place(|| cli(&["resume", "--job", "test-job"], &cfg, true));
    assert!(!ok && text.contains("CANCELLED"), "a cancelled job cannot resume: {text}");
    outputs += &scrape(&stream::endpoints(dir.path()).telemetry);
    let (status, text) = child.terminate();
    assert!(status.success(), "{text}");

    // No secret anywhere.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("ferry daemon listening"), "the log file holds the daemon's lines");
    for secret in [SOURCE_SECRET, "Sup3r-S3cret-Pw", CONTROL_SECRET] {
        assert!(!logs.contains(secret), "secret in the daemon's log");
        assert!(!outputs.contains(secret), "secret in CLI output or metrics");
    }
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// A source collection dropped while streaming: with `on_source_drop = "stop"` (default) the
/// job goes FAILED with an error naming the collection; with `"drop"` the target collection
/// is dropped too and the job keeps streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_source_collection_stops_or_drops_as_configured() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    for mode in ["stop", "drop"] {
        let src = common::unique(&format!("dd_{mode}_src"));
        let dst = common::unique(&format!("dd_{mode}_dst"));
        stream::make_source(&source, &src, 500).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = stream::job(dir.path(), &src, &dst);
        let text = std::fs::read_to_string(&cfg).unwrap() + &format!("\n[stream]\non_source_drop = \"{mode}\"\n");
        std::fs::write(&cfg, text).unwrap();
        let log = dir.path().join("ferry.log");
        let daemon = spawn_daemon(&cfg, &log);
        tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(180)));
        source.drop_collection(&src).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        match mode {
            "stop" => {
                let st = tokio::task::block_in_place(|| wait_state(&cfg, "FAILED", Duration::from_secs(60)));
                let err = st["last_error"]["message"].as_str().unwrap_or("").to_string();
                assert!(err.contains(&src) && err.contains("dropped"), "{st:#}");
                assert!(target.has_collection(&dst).await.unwrap(), "stop leaves the target alone");
                target.drop_collection(&dst).await.unwrap();
            }
            _ => {
                while target.has_collection(&dst).await.unwrap() {
                    assert!(Instant::now() < deadline, "the target collection was not dropped");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                assert_eq!(tokio::task::block_in_place(|| status_json(&cfg))["state"], "STREAMING");
            }
        }
        assert!(daemon.terminate().0.success());
    }
}

/// A job that failed is resumed by `ferry resume` inside the same daemon process: the run
/// starts again over the durable log it already holds open (sled locks its directory, so a
/// second open would fail) and the target converges to the source, writes made while it was
/// FAILED included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_resumes_in_the_same_process() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("fr_src");
    let dst = common::unique("fr_dst");
    stream::make_source(&source, &src, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    let log = dir.path().join("ferry.log");
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 500, stop.clone(), false));

    // The first apply batch fails with a non-retryable error: the job goes FAILED.
    let daemon = spawn_daemon_with_failpoints(&cfg, &log, "apply.fail");
    let st = tokio::task::block_in_place(|| wait_state(&cfg, "FAILED", Duration::from_secs(180)));
    let err = st["last_error"]["message"].as_str().unwrap_or("").to_string();
    assert!(err.contains("apply.fail"), "the error log names the failure: {st:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (ok, text) = tokio::task::block_in_place(|| cli(&["resume", "--job", "test-job"], &cfg, true));
    assert!(ok, "{text}");
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Still streaming: the resumed run did not fail on its own log.
    let st = tokio::task::block_in_place(|| status_json(&cfg));
    assert_eq!(st["state"], "STREAMING", "{st:#}");

    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(90)).await;
    common::data::assert_same(&expected, &got);
    assert!(daemon.terminate().0.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

/// With `[control] tls_cert`/`tls_key` the control API speaks TLS only: the CLI reaches it with
/// the CA (`--control-ca`), a plaintext client and a client that does not trust the CA are
/// refused, and every call still needs the token. Without `[control] token` the daemon's
/// generated token sits in `state_dir/control.token`, mode 0600, where `--config` finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_over_tls_with_a_generated_token() {
    use std::os::unix::fs::PermissionsExt;
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let src = common::unique("tls_src");
    let dst = common::unique("tls_dst");
    stream::make_source(&source, &src, 200).await;
    let dir = tempfile::tempdir().unwrap();
    common::make_certs(dir.path());
    let cfg = stream::job(dir.path(), &src, &dst);
    let d = dir.path().display();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[control]\n",
        &format!("[control]\ntls_cert = \"{d}/server.pem\"\ntls_key = \"{d}/server.key\"\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("ferry.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--config", &cfg, "--quiet"]).env("FERRY_LOG", "info").env_remove("FERRY_CONTROL_TOKEN");
    let daemon = stream::Daemon::spawn(cmd, &log);
    let eps = stream::endpoints(dir.path());
    assert!(eps.control_tls, "daemon.json must say the control API speaks TLS");
    let token_file = dir.path().join("state/control.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(token.len() >= 32, "generated token: {} bytes", token.len());
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(dir.path().join("state")).unwrap().permissions().mode() & 0o777, 0o700);

    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(args).env_remove("FERRY_CONTROL").env_remove("FERRY_CONTROL_TOKEN").env_remove("FERRY_CONTROL_CA");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let https = format!("https://{}", eps.control);
    let ca = format!("{d}/ca.pem");
    // The local CLI: --config finds the address, the scheme, the token file; the CA is given.
    let (ok, text) = tokio::task::block_in_place(|| run(&["status", "--config", &cfg, "--control-ca", &ca], &[]));
    assert!(ok, "{text}");
    assert!(text.contains("test-job"), "{text}");
    // By address, with the token and the CA.
    let (ok, text) = tokio::task::block_in_place(|| run(&["status", "--control", &https, "--control-ca", &ca], &[("FERRY_CONTROL_TOKEN", token.trim())]));
    assert!(ok, "{text}");
    // Without the token: refused by the server.
    let (ok, text) = tokio::task::block_in_place(|| run(&["status", "--control", &https, "--control-ca", &ca], &[]));
    assert!(!ok && text.contains("token"), "{text}");
    // Not trusting the CA: the TLS handshake fails.
    let (ok, text) = tokio::task::block_in_place(|| run(&["status", "--control", &https], &[("FERRY_CONTROL_TOKEN", token.trim())]));
    assert!(!ok, "a client that does not trust the daemon's CA got through: {text}");
    // Plaintext to the TLS port: refused.
    let (ok, text) = tokio::task::block_in_place(|| run(&["status", "--control", &eps.control], &[("FERRY_CONTROL_TOKEN", token.trim())]));
    assert!(!ok, "plaintext reached the TLS control API: {text}");

    let (status, text) = daemon.terminate();
    assert!(status.success(), "{text}");
    assert!(!text.contains(token.trim()), "the generated token is in the daemon's log");
    let _ = source.drop_collection(&src).await;
    let target = common::client(&env.target_uri).await;
    let _ = target.drop_collection(&dst).await;
}

/// Lag is honest after a restart: the daemon is stopped for 40 s while the source takes
/// writes; restarted, its lag (status and metric) reads about those 40 s at once, although
/// every tick it reads from the backlog is fresh to it, and falls as the backlog drains.
/// The target then converges exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_after_a_restart_counts_the_unread_backlog() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let src = common::unique("lagr_src");
    let dst = common::unique("lagr_dst");
    stream::make_source(&source, &src, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream::job(dir.path(), &src, &dst);
    let log = dir.path().join("ferry.log");
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(stream::writer(source.clone(), src.clone(), 500, stop.clone(), false));

    let child = spawn_daemon(&cfg, &log);
    tokio::task::block_in_place(|| wait_state(&cfg, "STREAMING", Duration::from_secs(180)));
    // Fresh ticks for a few seconds: the clock offset is measured and kept.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, text) = child.terminate();
    assert!(status.success(), "{text}");
    let down = Duration::from_secs(40);
    tokio::time::sleep(down).await;

    let child = spawn_daemon(&cfg, &log);
    let eps = stream::endpoints(dir.path());
    let live = |st: &serde_json::Value| st["channels"].as_array().is_some_and(|c| !c.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let st = tokio::task::block_in_place(|| status_json(&cfg));
        if live(&st) {
            break st["lag_seconds"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "the restarted job never went live: {st:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let metric = metric_max(&scrape(&eps.telemetry), "ferry_stream_lag_seconds").unwrap_or(0.0);
    eprintln!("lag right after the restart: status {first:.1}s, metric {metric:.1}s (down {down:?})");
    assert!(first >= 30.0, "status lag after {down:?} down read {first:.1}s");
    assert!(metric >= 25.0, "metric lag after {down:?} down read {metric:.1}s");
    // It falls as the backlog drains.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lag = tokio::task::block_in_place(|| status_json(&cfg))["lag_seconds"].as_f64().unwrap();
        if lag < 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag never fell below 5 s (now {lag:.1}s)");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let (expected, got) = stream::converge(&source, &target, &src, &dst, Duration::from_secs(5)).await;
    common::data::assert_same(&expected, &got);
    assert!(child.terminate().0.success());
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
