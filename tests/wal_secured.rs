//! `[source.wal]` against a Kafka that requires SASL/SCRAM: a second tansu broker (the binary
//! `scripts/testenv install` built) with `--authentication` and a SCRAM-SHA-512 user. The
//! job file's security settings reach librdkafka: the right password reads the topic's
//! positions, a wrong one and none are refused, and the password is in no error or Debug
//! print. (tansu 0.6 accepted `--cert` but no TLS client reached it here; TLS to Kafka is
//! configured the same way and not tested against a broker.)

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::config::JobConfig;
use ferry::wal::WalReader;

const USER: &str = "ferry-wal";
const PASSWORD: &str = "Scram-Pa55-word";
const TOPIC: &str = "by-dev-rootcoord-dml_0";

fn tansu() -> String {
    std::env::var("FERRY_TEST_TANSU").unwrap_or_else(|_| {
        let file = common::repo_root().join("target/testenv/env.sh");
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("export FERRY_TEST_TANSU=").map(str::to_string)))
            .unwrap_or_else(|| panic!("FERRY_TEST_TANSU is not set and {} does not define it: run `scripts/testenv up`", file.display()))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker on `port` with its sqlite store in `dir`; killed when dropped.
struct Broker(Child);

impl Broker {
    fn start(dir: &Path, port: u16, auth: bool) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu());
        cmd.current_dir(dir)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://auth.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            cmd.arg("--authentication");
        }
        let child = cmd.spawn().expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Broker(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu_cli(args: &[&str]) {
    let out = Command::new(tansu()).args(args).output().expect("run tansu");
    assert!(out.status.success(), "tansu {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn reader(port: u16, wal: &str) -> WalReader {
    let text = format!(
        "[source]\nuri = \"http://127.0.0.1:1\"\n[source.wal]\nbrokers = \"127.0.0.1:{port}\"\n{wal}\n[target]\nuri = \"http://127.0.0.1:2\"\n[job]\nname = \"j\"\n"
    );
    let cfg = JobConfig::parse(&text, Path::new("job.toml")).unwrap_or_else(|e| panic!("{e}"));
    let w = cfg.source.wal.as_ref().unwrap();
    WalReader::new(w.brokers.clone(), vec![TOPIC.to_string()]).with_security(w)
}

#[tokio::test]
async fn sasl_scram_settings_reach_the_broker_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = format!("tcp://127.0.0.1:{port}");
    // Users and topics are created while the broker needs no authentication, then it is
    // restarted on the same store with authentication required.
    {
        let _open = Broker::start(dir.path(), port, false);
        tansu_cli(&["user", "create", "--broker", &broker, "--mechanism", "scram512", USER, PASSWORD]);
        tansu_cli(&["topic", "create", TOPIC, "--partitions", "1", "--broker", &broker]);
    }
    let _secured = Broker::start(dir.path(), port, true);

    std::env::set_var("FERRY_TEST_WAL_SASL_PASSWORD", PASSWORD);
    let sasl = |password: &str| {
        format!("security_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{USER}\"\nsasl_password = \"{password}\"")
    };
    let good = reader(port, &sasl("env:FERRY_TEST_WAL_SASL_PASSWORD"));
    assert!(!format!("{good:?}").contains(PASSWORD), "{good:?}");
    let marks = good.high_watermarks().await.unwrap_or_else(|e| panic!("SCRAM with the right password: {e}"));
    assert_eq!(marks.get(TOPIC), Some(&0), "{marks:?}");

    let wrong = reader(port, &sasl("not-the-password"));
    let e = wrong.high_watermarks().await.expect_err("a wrong password must be refused").to_string();
    assert!(!e.contains("not-the-password") && !e.contains(PASSWORD), "{e}");
    let none = reader(port, "");
    none.high_watermarks().await.expect_err("no authentication must be refused");
}
