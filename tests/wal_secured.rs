//! `[source.wal]` against a secured Kafka: tansu brokers (the binary `scripts/testenv install`
//! built) with `--authentication` and a SCRAM-SHA-512 user, and behind TLS. The job file's
//! security settings reach librdkafka: the right password reads the topic's positions, a
//! wrong one and none are refused, and the password is in no error or Debug print.
//!
//! TLS: tansu 0.6 accepted `--cert` but no TLS client reached it here, so each TLS broker is
//! a tansu advertising the address of a TLS terminator this test runs in front of it
//! (rustls; optionally requiring client certificates). librdkafka then speaks TLS to every
//! address the broker gives it: `SSL` with the CA, with a client certificate where one is
//! required, and `SASL_SSL` with SCRAM.

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
        Self::advertising(dir, port, port, auth)
    }

    /// A broker listening on `port` that tells clients to reach it at `advertised`.
    fn advertising(dir: &Path, port: u16, advertised: u16, auth: bool) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let public = format!("tcp://127.0.0.1:{advertised}");
        let mut cmd = Command::new(tansu());
        cmd.current_dir(dir)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &public, "--storage-engine", "sqlite://auth.db"])
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
    WalReader::from_config(w, vec![TOPIC.to_string()], Path::new("unused: Kafka keeps no local files"))
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
        tansu_cli(&["user", "create", "--broker", &broker, "--mechanism", "scram256", "ferry256", PASSWORD]);
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

    // SCRAM-SHA-256. (PLAIN cannot be tried here: tansu 0.6.0 keeps SCRAM credentials
    // only, and refuses PLAIN for every user.)
    for mechanism in ["SCRAM-SHA-256"] {
        let text = format!("security_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"ferry256\"\nsasl_password = \"env:FERRY_TEST_WAL_SASL_PASSWORD\"");
        let r = reader(port, &text);
        match r.high_watermarks().await {
            Ok(marks) => assert_eq!(marks.get(TOPIC), Some(&0), "{mechanism}: {marks:?}"),
            Err(e) => panic!("{mechanism} with the right password: {e}"),
        }
        let wrong = reader(port, &text.replace("env:FERRY_TEST_WAL_SASL_PASSWORD", "not-the-password"));
        let e = wrong.high_watermarks().await.expect_err("a wrong password must be refused").to_string();
        assert!(!e.contains("not-the-password"), "{mechanism}: {e}");
    }
}

/// A TLS terminator on `port` forwarding to the plaintext broker on `upstream`; with
/// `client_ca`, it requires a client certificate signed by it. Runs until the test ends.
async fn tls_terminator(certs: &Path, port: u16, upstream: u16, client_ca: bool) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    ferry::install_tls_provider();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder();
    let cfg = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
        builder.with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth().with_single_cert(chain, key).unwrap()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
}

/// A broker behind a TLS terminator: returns the TLS port (the one clients use).
async fn tls_broker(dir: &Path, certs: &Path, auth_user: bool, client_ca: bool) -> (u16, Broker) {
    let (plain, tls) = (free_port(), free_port());
    let broker = format!("tcp://127.0.0.1:{plain}");
    if auth_user {
        let _open = Broker::advertising(dir, plain, tls, false);
        tansu_cli(&["user", "create", "--broker", &broker, "--mechanism", "scram512", USER, PASSWORD]);
        tansu_cli(&["topic", "create", TOPIC, "--partitions", "1", "--broker", &broker]);
    }
    let b = Broker::advertising(dir, plain, tls, auth_user);
    if !auth_user {
        tansu_cli(&["topic", "create", TOPIC, "--partitions", "1", "--broker", &broker]);
    }
    tls_terminator(certs, tls, plain, client_ca).await;
    (tls, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_and_sasl_ssl_reach_the_broker() {
    let certs = tempfile::tempdir().unwrap();
    common::make_certs(certs.path());
    let pem = |f: &str| certs.path().join(f).display().to_string();
    let ssl = format!("security_protocol = \"SSL\"\nssl_ca_location = \"{}\"", pem("ca.pem"));

    // SSL with the CA: reads; without it (system roots) or in plaintext: refused.
    let d1 = tempfile::tempdir().unwrap();
    let (port, _b1) = tls_broker(d1.path(), certs.path(), false, false).await;
    let marks = reader(port, &ssl).high_watermarks().await.unwrap_or_else(|e| panic!("SSL with the CA: {e}"));
    assert_eq!(marks.get(TOPIC), Some(&0), "{marks:?}");
    reader(port, "security_protocol = \"SSL\"").high_watermarks().await.expect_err("a CA the client does not trust");
    reader(port, "").high_watermarks().await.expect_err("plaintext to a TLS listener");

    // A broker that requires client certificates: with one, reads; without, refused.
    let d2 = tempfile::tempdir().unwrap();
    let (port, _b2) = tls_broker(d2.path(), certs.path(), false, true).await;
    let mtls = format!("{ssl}\nssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"", pem("client.pem"), pem("client.key"));
    reader(port, &mtls).high_watermarks().await.unwrap_or_else(|e| panic!("SSL with a client certificate: {e}"));
    reader(port, &ssl).high_watermarks().await.expect_err("no client certificate where one is required");

    // SASL_SSL with SCRAM-SHA-512.
    let d3 = tempfile::tempdir().unwrap();
    let (port, _b3) = tls_broker(d3.path(), certs.path(), true, false).await;
    let sasl_ssl = |password: &str| {
        format!("security_protocol = \"SASL_SSL\"\nssl_ca_location = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{USER}\"\nsasl_password = \"{password}\"", pem("ca.pem"))
    };
    reader(port, &sasl_ssl(PASSWORD)).high_watermarks().await.unwrap_or_else(|e| panic!("SASL_SSL: {e}"));
    let e = reader(port, &sasl_ssl("not-the-password")).high_watermarks().await.expect_err("a wrong password over TLS").to_string();
    assert!(!e.contains("not-the-password"), "{e}");
}
