//! `dashboards/` checked with the real tools: promtool runs the alert rules' unit tests,
//! every metric name the dashboard and the rules use must be one ferry exports
//! (`ferry::metrics::ALL`), and a real Prometheus server (Debian's `prometheus` package,
//! installed by `scripts/lib/prometheus.sh` when missing) scrapes a `ferry run` daemon under
//! load while every panel query of `dashboards/ferry.json` is evaluated through its HTTP API
//! and must return data.
//!
//! Panels of error counters end in `or on() ...vector(0)` so they show 0 rather than "no data"
//! before the first error (the counter has no series until then). That fallback may only hide
//! the series of [`RARE_COUNTERS`]; every other query must return data on its own.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::stream;

/// Counters of errors and anomalies, which have no series until their first event: the only
/// ones a panel may replace by a `vector(0)` fallback.
const RARE_COUNTERS: &[&str] = &[
    ferry::metrics::TARGET_ERRORS,
    ferry::metrics::JOB_ERRORS,
    ferry::metrics::WAL_READ_RETRIES,
    ferry::metrics::WAL_EMPTY_RECORDS,
    ferry::metrics::WAL_LATE_RECORDS,
];
/// What a panel query's fallback starts with.
const FALLBACK: &str = " or on() ";

fn dashboards() -> PathBuf {
    common::repo_root().join("dashboards")
}

// --- prometheus and promtool ----------------------------------------------------------------

struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

/// Runs `scripts/lib/prometheus.sh` once (it installs the package if needed) and reads the
/// paths it prints.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = common::repo_root().join("scripts/lib/prometheus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/lib/prometheus.sh");
        assert!(
            out.status.success(),
            "{} could not provide prometheus and promtool (its message is above)",
            script.display()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |key: &str| -> PathBuf {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("{} printed no {key} line:\n{text}", script.display()))
        };
        Tools {
            prometheus: get("PROMETHEUS="),
            promtool: get("PROMTOOL="),
        }
    })
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(&tools().promtool)
        .args(args)
        .current_dir(dashboards())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A Prometheus server on a free port with its own storage, killed on drop.
struct PromServer {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl PromServer {
    /// Starts Prometheus with the alert rules loaded, scraping `target` (host:port) every
    /// second with `honor_labels` (ferry sets `job` itself), or nothing.
    fn start(target: Option<&str>) -> PromServer {
        let dir = tempfile::tempdir().unwrap();
        let scrape = match target {
            Some(t) => format!(
                "scrape_configs:\n  - job_name: ferry-scrape\n    honor_labels: true\n    static_configs:\n      - targets: [\"{t}\"]\n"
            ),
            None => "scrape_configs: []\n".into(),
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n{scrape}",
            dashboards().join("alerts.yml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&tools().prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut server = PromServer { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Connect first: common::http_get panics on a refused connection.
            if std::net::TcpStream::connect(&server.addr).is_ok()
                && common::http_get(&server.addr, "/-/ready").0 == 200
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", server.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60 s:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        common::tail(
            &std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default(),
            20,
        )
    }

    /// `/api/v1/query` at the current time: `Ok(result array)` or `Err(error text)`.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let v = self.api(&format!("/api/v1/query?query={q}"))?;
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = common::http_get(&self.addr, path);
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: HTTP {code}, not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v)
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// --- reading the dashboard ------------------------------------------------------------------

/// One query of a panel.
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
}

fn dashboard() -> Value {
    let path = dashboards().join("ferry.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel target's expression, rows' nested panels included.
fn panel_queries(d: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &Value, out: &mut Vec<PanelQuery>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {:?}: a target without expr", p["title"]));
                out.push(PanelQuery {
                    panel: p["title"].as_str().unwrap_or("?").to_string(),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                    expr: expr.to_string(),
                });
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// The template variables' queries (`label_values(...)`).
fn variable_queries(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| {
            v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .or(v["definition"].as_str())
        })
        .map(str::to_string)
        .collect()
}

/// Grafana's variables replaced by concrete values, as Grafana would for a 1 s scrape interval.
fn concrete(expr: &str, job: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("${__rate_interval}", "10s")
        .replace("$__interval", "2s")
        .replace("${__interval}", "2s")
        .replace("$__range", "5m")
        .replace("${job}", job)
        .replace("$job", job)
}

/// Tokens starting with `ferry_`, histogram suffixes stripped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ferry_") {
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident(c) && c != '-');
        let token: String = rest[i..].chars().take_while(|&c| is_ident(c)).collect();
        rest = &rest[i + token.len()..];
        if !before_ok {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                token
                    .strip_suffix(s)
                    .filter(|b| ferry::metrics::ALL.contains(b))
            })
            .unwrap_or(&token);
        names.insert(base.to_string());
    }
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --- tests ----------------------------------------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(
        ok,
        "promtool check rules dashboards/alerts.yml failed:\n{out}"
    );
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(
        ok,
        "promtool test rules dashboards/alerts_test.yml failed:\n{out}"
    );

    // Every alert has at least one unit test.
    let rules: BTreeSet<String> = read(&dashboards().join("alerts.yml"))
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- alert:")
                .map(|n| n.trim().to_string())
        })
        .collect();
    let tested: BTreeSet<String> = read(&dashboards().join("alerts_test.yml"))
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("alertname:")
                .map(|n| n.trim().to_string())
        })
        .collect();
    assert!(
        rules.len() >= 4,
        "expected the alert rules in dashboards/alerts.yml, found {rules:?}"
    );
    let untested: Vec<_> = rules.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "alerts without a test in dashboards/alerts_test.yml: {untested:?}"
    );
}

#[test]
fn dashboard_and_rules_use_only_metrics_ferry_exports() {
    let all: BTreeSet<String> = ferry::metrics::ALL.iter().map(|s| s.to_string()).collect();
    let d = dashboard();
    let mut dash_text: String = panel_queries(&d)
        .iter()
        .map(|q| q.expr.clone() + "\n")
        .collect();
    dash_text += &variable_queries(&d).join("\n");
    for (file, text) in [
        ("dashboards/ferry.json", dash_text.clone()),
        (
            "dashboards/alerts.yml",
            read(&dashboards().join("alerts.yml")),
        ),
        (
            "dashboards/alerts_test.yml",
            read(&dashboards().join("alerts_test.yml")),
        ),
    ] {
        let used = metric_names(&text);
        assert!(
            used.len() >= 3,
            "{file}: found only {used:?}; is the metric name scan broken?"
        );
        let unknown: Vec<_> = used.difference(&all).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics ferry does not export (not in ferry::metrics::ALL): {unknown:?}"
        );
    }
    // And the dashboard shows everything ferry exports.
    let shown = metric_names(&dash_text);
    let missing: Vec<_> = all.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "metrics with no panel in dashboards/ferry.json: {missing:?}"
    );
    // The job variable lists jobs from a ferry metric.
    assert!(
        variable_queries(&d)
            .iter()
            .any(|q| q.contains("label_values(") && q.contains(", job)")),
        "dashboards/ferry.json needs a `job` template variable from label_values(..., job)"
    );
    assert!(
        d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["type"] == "datasource"),
        "dashboards/ferry.json needs a datasource template variable"
    );
}

#[test]
fn metric_name_scan_strips_histogram_suffixes_only_for_known_names() {
    let n = metric_names(
        "rate(ferry_apply_batch_duration_seconds_bucket[1m]) + ferry_x_count, my_ferry_y ferry-0",
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        vec![
            "ferry_apply_batch_duration_seconds".to_string(),
            "ferry_x_count".to_string()
        ]
    );
}

/// Without data every query must still parse and evaluate (Prometheus rejects a bad one).
#[test]
fn every_panel_query_is_valid_promql() {
    let prom = PromServer::start(None);
    let queries = panel_queries(&dashboard());
    assert!(
        queries.len() >= 10,
        "expected the dashboard's panel queries, found {}",
        queries.len()
    );
    let mut bad = Vec::new();
    for q in &queries {
        if let Err(e) = prom.query(&concrete(&q.expr, "some-job")) {
            bad.push(format!("{} [{}]: {}\n    {e}", q.panel, q.ref_id, q.expr));
        }
    }
    assert!(bad.is_empty(), "invalid panel queries:\n{}", bad.join("\n"));
}

/// A sample's value is a number (not NaN or infinite).
fn has_finite_value(result: &[Value]) -> bool {
    result.iter().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// Runs blocking HTTP calls without stalling the writer task on the other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Evaluates every panel query, the job variable and the alert rules on live data; returns
/// what failed.
fn check_dashboard(prom: &PromServer, job: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let queries = panel_queries(&dashboard());
    for q in &queries {
        let expr = concrete(&q.expr, job);
        let label = format!("panel {:?} [{}]: {expr}", q.panel, q.ref_id);
        match prom.query(&expr) {
            Err(e) => failures.push(format!("{label}\n    error: {e}")),
            Ok(r) if !has_finite_value(&r) => failures.push(format!("{label}\n    no data: {r:?}")),
            Ok(r) => eprintln!("ok  {label} -> {} series", r.len()),
        }
        // A fallback may only stand in for a rare counter that has no series yet.
        if let Some((own, _)) = expr.split_once(FALLBACK) {
            let names = metric_names(own);
            let only_rare =
                !names.is_empty() && names.iter().all(|n| RARE_COUNTERS.contains(&n.as_str()));
            if !only_rare {
                match prom.query(own) {
                    Ok(r) if has_finite_value(&r) => {}
                    other => failures.push(format!("{label}\n    without its fallback: {other:?}")),
                }
            }
        }
    }
    // The job variable offers this job.
    match prom.api("/api/v1/label/job/values?match[]=ferry_build_info") {
        Ok(v)
            if v["data"]
                .as_array()
                .is_some_and(|a| a.iter().any(|j| j == job)) => {}
        other => failures.push(format!(
            "variable job: label_values(ferry_build_info, job) lacks {job:?}: {other:?}"
        )),
    }
    // The alert rules evaluate on real series without errors, and the job has not failed.
    match prom.api("/api/v1/rules?type=alert") {
        Ok(v) => {
            let rules: Vec<&Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            if rules.len() < 4 {
                failures.push(format!(
                    "prometheus loaded only {} alert rules",
                    rules.len()
                ));
            }
            for r in rules {
                if r["health"] != "ok" {
                    failures.push(format!(
                        "alert {}: health {} {}",
                        r["name"], r["health"], r["lastError"]
                    ));
                }
                if r["name"] == "FerryJobFailed" && r["state"] != "inactive" {
                    failures.push(format!(
                        "FerryJobFailed is {} for a healthy job",
                        r["state"]
                    ));
                }
            }
        }
        Err(e) => failures.push(format!("/api/v1/rules: {e}")),
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_a_daemon_under_load() {
    let env = common::env();
    let dir = tempfile::tempdir().unwrap();
    let src = common::unique("dash_src");
    let dst = common::unique("dash_dst");
    let cfg = stream::job(dir.path(), &src, &dst);
    let job = match ferry::config::JobConfig::load(Path::new(&cfg)) {
        Ok(c) => c.job.name,
        Err(e) => panic!("the test job file does not load: {e}"),
    };

    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    stream::make_source(&source, &src, 3000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(stream::writer(
        source.clone(),
        src.clone(),
        3000,
        stop.clone(),
        false,
    ));

    let mut ferry = stream::spawn_daemon(&cfg, dir.path(), "");

    // The daemon says where it listens and serves /metrics there.
    let metrics_addr = blocking(|| stream::endpoints(dir.path())).telemetry;
    let (code, body) = blocking(|| common::http_get(&metrics_addr, "/metrics"));
    assert!(
        code == 200 && body.contains("ferry_build_info"),
        "ferry run serves no metrics on {metrics_addr}: HTTP {code}\n{body}\nferry:\n{}",
        common::tail(&ferry.log(), 30)
    );

    let prom = blocking(|| PromServer::start(Some(&metrics_addr)));

    // Data flows: the job streams and applies the writer's load.
    let flowing = [
        format!("ferry_job_state{{job=\"{job}\", phase=\"STREAMING\"}} == 1"),
        format!("sum(rate(ferry_apply_events_total{{job=\"{job}\"}}[10s])) > 0"),
        format!("sum(rate(ferry_stream_ingested_events_total{{job=\"{job}\"}}[10s])) > 0"),
    ];
    let started = Instant::now();
    'wait: loop {
        if let Some(status) = ferry.try_wait() {
            panic!(
                "ferry run exited with {status} while the test waited for data:\n{}",
                common::tail(&ferry.log(), 30)
            );
        }
        for q in &flowing {
            match blocking(|| prom.query(q)) {
                Ok(r) if !r.is_empty() => {}
                other => {
                    assert!(
                        started.elapsed() < Duration::from_secs(240),
                        "no data flow after 240 s: {q} -> {other:?}\nferry:\n{}\nprometheus:\n{}",
                        common::tail(&ferry.log(), 30),
                        prom.log_tail()
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'wait;
                }
            }
        }
        break;
    }
    eprintln!(
        "data flows after {:?}; letting the rate windows fill",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(12)).await;

    let failures = blocking(|| check_dashboard(&prom, &job));
    let queries = panel_queries(&dashboard()).len();

    // Clean up before judging.
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    let (status, log) = ferry.terminate();
    drop(prom);
    let _ = source.drop_collection(&src).await;
    let _ = target.drop_collection(&dst).await;

    assert!(
        failures.is_empty(),
        "{} checks of {queries} dashboard queries failed:\n{}\nferry log:\n{}",
        failures.len(),
        failures.join("\n"),
        common::tail(&log, 30)
    );
    assert!(
        status.success(),
        "ferry run should exit 0 on SIGTERM:\n{}",
        common::tail(&log, 30)
    );
}
