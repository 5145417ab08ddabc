//! Shared glue for integration tests: where the real servers are, and clients to them.
//!
//! The servers are started by `scripts/testenv up`, which writes `target/testenv/env.sh`.
//! Variables already set in the environment win over the file. A test that needs a server
//! and finds none fails with a message saying how to start it: it never passes silently.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

pub mod data;
pub mod stream;
pub mod wal;

use ferry::milvus::{ConnectOptions, MilvusClient};

/// The test environment's addresses.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub source_uri: String,
    pub target_uri: String,
    pub lite_uri: String,
    /// A second Milvus Lite (the target of Lite -> Lite tests).
    pub lite2_uri: String,
    pub kafka_brokers: String,
    pub topic_prefix: String,
    pub python: String,
    pub lite_python: String,
    pub source_data_dir: String,
    /// The target Milvus's local storage root (its WAL is RocksMQ, under `rocksmq/`).
    pub target_data_dir: String,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_file() -> HashMap<String, String> {
    let path = repo_root().join("target/testenv/env.sh");
    let mut vars = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ").trim();
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(
                    k.to_string(),
                    v.trim_matches(|c| c == '"' || c == '\'').to_string(),
                );
            }
        }
    }
    vars
}

/// The environment, or a panic telling the developer how to start it.
pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let file = env_file();
        let get = |k: &str| -> String {
            std::env::var(k).ok().or_else(|| file.get(k).cloned()).unwrap_or_else(|| {
                panic!(
                    "integration test environment not found: {k} is not set and \
                     target/testenv/env.sh does not define it.\n\
                     Start the servers with `scripts/testenv up` (or run everything with `scripts/test`)."
                )
            })
        };
        TestEnv {
            source_uri: get("FERRY_TEST_SOURCE_URI"),
            target_uri: get("FERRY_TEST_TARGET_URI"),
            lite_uri: get("FERRY_TEST_LITE_URI"),
            lite2_uri: get("FERRY_TEST_LITE2_URI"),
            kafka_brokers: get("FERRY_TEST_KAFKA_BROKERS"),
            topic_prefix: std::env::var("FERRY_TEST_TOPIC_PREFIX")
                .ok()
                .or_else(|| file.get("FERRY_TEST_TOPIC_PREFIX").cloned())
                .unwrap_or_else(|| "by-dev".into()),
            python: get("FERRY_TEST_PYTHON"),
            lite_python: get("FERRY_TEST_LITE_PYTHON"),
            source_data_dir: get("FERRY_TEST_SOURCE_DATA_DIR"),
            target_data_dir: get("FERRY_TEST_TARGET_DATA_DIR"),
        }
    })
}

/// A client to `uri`, failing the test with a hint when the server does not answer.
pub async fn client(uri: &str) -> MilvusClient {
    let mut opts = ConnectOptions::new(uri);
    opts.retry_max_elapsed = std::time::Duration::from_secs(20);
    MilvusClient::connect(&opts).await.unwrap_or_else(|e| {
        panic!("Milvus at {uri} does not answer ({e}); is the test environment up? Run `scripts/testenv up`.")
    })
}

/// A collection name unique to this test run, so tests can share servers.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    format!("{prefix}_{}_{t}_{n}", std::process::id())
}

/// Writes a job file into `dir` and returns its path. `collections` is raw TOML appended
/// after the standard sections (e.g. `[[collections]]` tables); `extra` goes in `[copy]`.
pub fn write_job(
    dir: &std::path::Path,
    source_uri: &str,
    target_uri: &str,
    collections: &str,
    copy: &str,
) -> PathBuf {
    let text = format!(
        "[source]\nuri = \"{source_uri}\"\n\n[target]\nuri = \"{target_uri}\"\n\n[job]\nname = \"test-job\"\nstate_dir = \"{}\"\n\n[copy]\n{copy}\n\n{collections}\n",
        dir.join("state").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).expect("write job file");
    path
}

/// Runs the ferry binary to completion.
pub fn run_ferry(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args).env("FERRY_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ferry");
    eprintln!(
        "ferry {args:?} -> {:?}\n--- stdout\n{}\n--- stderr (tail)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    out
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain HTTP/1.1 GET (tests only): status code and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Every sample value of `metric` in a Prometheus text exposition.
fn samples<'a>(exposition: &'a str, metric: &'a str) -> impl Iterator<Item = f64> + 'a {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| l.starts_with(metric) && matches!(l.as_bytes().get(metric.len()), Some(b'{') | Some(b' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Sum of every sample of `metric`.
pub fn metric_sum(exposition: &str, metric: &str) -> f64 {
    samples(exposition, metric).sum()
}

/// Largest sample of `metric`.
pub fn metric_max(exposition: &str, metric: &str) -> Option<f64> {
    samples(exposition, metric).reduce(f64::max)
}

/// Runs openssl (the test machine's; no crate builds certificates here) and fails the test
/// with its output when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (install it to run this test)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// In `dir`: a CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`), both signed by it.
pub fn make_certs(dir: &std::path::Path) {
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ferry test CA"]);
    for (name, cn, ext) in [
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "ferry-client", "extendedKeyUsage=clientAuth\n"),
    ] {
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={cn}")]);
        std::fs::write(dir.join(format!("{name}.cnf")), format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{ext}")).unwrap();
        openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &format!("{name}.pem"), "-days", "2", "-extfile", &format!("{name}.cnf")]);
    }
}

/// `ferry migrate --config JOB --quiet ARGS`, which must succeed and report `rows` copied and
/// counted ("ok ROWS"); its output.
pub fn migrate_ok(job: &str, args: &[&str], rows: u64) -> String {
    let out = run_ferry(&[&["migrate", "--config", job, "--quiet"][..], args].concat(), &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate failed: {}", tail(&text, 30));
    assert!(text.contains(&format!("ok {rows}")), "migrate did not count {rows} rows: {text}");
    text
}

/// `ferry verify --config JOB --full`, which must say EQUAL.
pub fn verify_full_equal(job: &str) {
    let out = run_ferry(&["verify", "--config", job, "--full"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("EQUAL"), "verify --full: {text}{}", String::from_utf8_lossy(&out.stderr));
}

/// `ferry migrate --config JOB --quiet`, as a dry run and for real: both must fail, and
/// stderr must hold every one of `wants`.
pub fn migrate_refused(job: &str, wants: &[&str]) {
    for dry in [&["--dry-run"][..], &[][..]] {
        let out = run_ferry(&[&["migrate", "--config", job, "--quiet"][..], dry].concat(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dry:?}: migrate must fail");
        assert!(wants.iter().all(|w| err.contains(w)), "{dry:?}: want {wants:?} in: {err}");
    }
}
