//! The job file: a TOML document describing one migration.
//!
//! Every section is a serde struct with `deny_unknown_fields`, so a misspelt key is an error
//! that names it. Secrets (`token`) may be written as `env:VAR_NAME` and are read from the
//! environment at load; they are held as [`Secret`] and never printed.
//!
//! ```toml
//! [source]
//! uri = "http://127.0.0.1:19530"
//! token = "env:FERRY_SOURCE_TOKEN"
//! database = "default"
//!
//! [source.wal]
//! brokers = "127.0.0.1:9092"
//! topic_prefix = "by-dev"
//!
//! [target]
//! uri = "http://127.0.0.1:19630"
//!
//! [[collections]]
//! source = "products"
//! target = "products_v2"
//!
//! [job]
//! name = "products-move"
//! state_dir = "./ferry-state"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::milvus::ConnectOptions;
use crate::secret::Secret;

/// Errors loading a job file. Each names the file and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("job file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("job file {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The cluster collections are read from. File imports (`import-backup`, `import-1x`)
    /// read no cluster: there it may be left out, and is ignored ([`JobConfig::load_for_files`]).
    #[serde(default = "EndpointConfig::absent")]
    pub source: EndpointConfig,
    /// The cluster collections are written to.
    pub target: EndpointConfig,
    /// Collections to move; empty or absent means every collection of the source database.
    #[serde(default)]
    pub collections: Vec<CollectionConfig>,
    /// Name and state directory of the job.
    pub job: JobSection,
    /// Tuning of the bulk copy.
    #[serde(default)]
    pub copy: CopyConfig,
    /// Tuning of WAL streaming.
    #[serde(default)]
    pub stream: StreamConfig,
    /// The daemon's gRPC control API (`ferry run`).
    #[serde(default)]
    pub control: ControlConfig,
    /// The daemon's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Defaults of `ferry cutover` (its flags override them).
    #[serde(default)]
    pub cutover: CutoverConfig,
}

/// How the cutover freezes the source's writers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverConfig {
    /// Source roles whose Insert, Delete and Upsert privileges the `rbac` freeze revokes
    /// (on the job's collections and on `*`), restored if the cutover aborts.
    #[serde(default)]
    pub rbac_roles: Vec<String>,
    /// Shell command of the `command` freeze (for example scaling writers to zero). Only the
    /// job file sets it: a control API request picks the freeze mode, never the command.
    pub freeze_command: Option<String>,
    /// Shell command that undoes `freeze_command` when a cutover aborts.
    pub unfreeze_command: Option<String>,
    /// Names of environment variables the freeze and unfreeze commands get from the daemon's
    /// environment (for example `KUBECONFIG`, `PATH`). Commands run with a cleared
    /// environment otherwise; the variables ferry's own secrets come from are refused here.
    #[serde(default)]
    pub command_env: Vec<String>,
}

/// Where the control API listens and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `host:port`; port 0 picks a free port (the daemon writes the address it bound to
    /// `state_dir/daemon.json`).
    #[serde(default = "default_control_listen")]
    pub listen: String,
    /// Bearer token every client must send, at least 32 bytes (`env:VAR` recommended).
    /// Without it the daemon generates one at each start and writes it to
    /// `state_dir/control.token` (mode 0600), where the local CLI (`--config`) reads it.
    #[serde(default, deserialize_with = "secret_field")]
    pub token: Option<SecretSpec>,
    /// PEM certificate chain of the control API's TLS listener (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Allows a plaintext listener on a non-loopback address (tokens then cross the network
    /// unencrypted: only behind a TLS-terminating proxy or a private link).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: default_control_listen(),
            token: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            allow_plaintext: false,
        }
    }
}

/// Least length, in bytes, of a control token.
pub const MIN_CONTROL_TOKEN_BYTES: usize = 32;
/// The placeholder the shipped manifests carry; never accepted as a token.
const TOKEN_PLACEHOLDER: &str = "CHANGE-ME";

/// Where the HTTP telemetry endpoint listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `host:port`; port 0 picks a free port (written to `state_dir/daemon.json`).
    #[serde(default = "default_telemetry_listen")]
    pub listen: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { listen: default_telemetry_listen() }
    }
}

/// How to reach one Milvus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `http://host:port` or `https://host:port`.
    pub uri: String,
    /// `user:password` or an API key; `env:VAR` reads it from the environment.
    #[serde(default, deserialize_with = "secret_field")]
    pub token: Option<SecretSpec>,
    /// Database to use.
    #[serde(default = "default_database")]
    pub database: String,
    /// PEM file of an extra CA to trust for https.
    pub tls_ca_cert: Option<PathBuf>,
    /// Server name to verify instead of the URI's host.
    pub tls_server_name: Option<String>,
    /// Deadline of one call, in seconds.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
    /// Source only: the Kafka the source writes its WAL to (zero-downtime mode).
    pub wal: Option<WalConfig>,
    /// Source only: the object storage the source writes its binlogs to. `ferry migrate`
    /// then reads the snapshot from the binlogs instead of querying the source.
    pub storage: Option<StorageConfig>,
}

/// Where the source Milvus keeps its binlogs (`minio`/`localStorage` and `rootPath` in
/// milvus.yaml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The storage root, the folder holding `insert_log/` and `delta_log/`: a local path
    /// (`localStorage.path`) or an object-store URL such as `s3://bucket/files` (credentials
    /// and endpoint from the environment, as for `ferry import-backup`).
    pub location: String,
}

/// A secret as written in the file: literal or `env:VAR`, resolved at load.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// `Some(var)` when the file said `env:VAR`.
    pub env_var: Option<String>,
    pub value: Secret,
}

impl SecretSpec {
    /// Reads an `env:VAR` secret from the environment (a literal is left as is).
    fn resolve(&mut self) -> Result<(), String> {
        if let Some(var) = &self.env_var {
            let v = std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
            self.value = Secret::new(v);
        }
        Ok(())
    }
}

fn secret_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretSpec>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.map(|s| match s.strip_prefix("env:") {
        Some(var) => SecretSpec {
            env_var: Some(var.to_string()),
            value: Secret::default(),
        },
        None => SecretSpec {
            env_var: None,
            value: Secret::new(s),
        },
    }))
}

/// Where the source's WAL lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// Kafka bootstrap servers, comma-separated (a WAL on Kafka).
    #[serde(default)]
    pub brokers: String,
    /// A standalone Milvus's RocksMQ directory (its `rocksmq.path`, for example
    /// `/var/lib/milvus/rdb_data`): the WAL is read from there, read-only, beside the running
    /// Milvus. Exclusive with `brokers`.
    pub rocksmq: Option<PathBuf>,
    /// How often the RocksMQ reader catches up with Milvus, in milliseconds (a bound on the
    /// lag it adds).
    #[serde(default = "default_rocksmq_catch_up_ms")]
    pub rocksmq_catch_up_ms: u64,
    /// Milvus's `msgChannel.chanNamePrefix.cluster` (topics `{prefix}-rootcoord-dml_N`).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Splits one source across instances by DML channel: this instance reads only these
    /// physical channels (`{prefix}-rootcoord-dml_N`, given as the numbers N) and moves only
    /// the keys of the collection shards they carry. Absent: every channel the job's
    /// collections use.
    pub channels: Option<Vec<u32>>,
    /// Milvus's `rootCoord.dmlChannelNum`: how many DML channels the source has. A job over
    /// a whole database (no `[[collections]]`) reads them all, to follow collections created
    /// while it runs.
    #[serde(default = "default_dml_channel_count")]
    pub dml_channel_count: u32,
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (librdkafka's
    /// `security.protocol`).
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with a `SASL_*` protocol.
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password; `env:VAR` reads it from the environment. Never logged or printed.
    #[serde(default, deserialize_with = "secret_field")]
    pub sasl_password: Option<SecretSpec>,
    /// PEM file of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`).
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate, for brokers that require one (with `ssl_key_location`).
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM private key of `ssl_certificate_location`.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of an encrypted `ssl_key_location`; `env:VAR` reads it from the environment.
    #[serde(default, deserialize_with = "secret_field")]
    pub ssl_key_password: Option<SecretSpec>,
}

fn default_rocksmq_catch_up_ms() -> u64 {
    100
}

impl WalConfig {
    /// The librdkafka settings of the connection's security (protocol, SASL, TLS files), as
    /// checked at load. Secret values stay [`Secret`]s until handed to librdkafka.
    pub fn security_options(&self) -> Vec<(&'static str, Secret)> {
        let mut o = Vec::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                o.push((k, Secret::new(v)));
            }
        };
        put("security.protocol", self.security_protocol.clone());
        put("sasl.mechanism", self.sasl_mechanism.clone());
        put("sasl.username", self.sasl_username.clone());
        put("sasl.password", self.sasl_password.as_ref().map(|s| s.value.expose().to_string()));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        put("ssl.ca.location", path(&self.ssl_ca_location));
        put("ssl.certificate.location", path(&self.ssl_certificate_location));
        put("ssl.key.location", path(&self.ssl_key_location));
        put("ssl.key.password", self.ssl_key_password.as_ref().map(|s| s.value.expose().to_string()));
        o
    }

    /// Resolves `env:` secrets and checks the security settings fit together.
    fn check_security(&mut self) -> Result<(), (&'static str, String)> {
        for (field, spec) in [("source.wal.sasl_password", &mut self.sasl_password), ("source.wal.ssl_key_password", &mut self.ssl_key_password)] {
            if let Some(spec) = spec {
                spec.resolve().map_err(|m| (field, m))?;
                if spec.value.expose().is_empty() {
                    return Err((field, "is empty".into()));
                }
            }
        }
        let protocol = self.security_protocol.clone().unwrap_or_else(|| "PLAINTEXT".into()).to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str()) {
            return Err(("source.wal.security_protocol", format!("{protocol:?} must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")));
        }
        let sasl = protocol.starts_with("SASL_");
        let tls = protocol.ends_with("SSL");
        if sasl {
            let mech = self.sasl_mechanism.clone().unwrap_or_default().to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mech.as_str()) {
                return Err(("source.wal.sasl_mechanism", format!("{protocol} needs PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got {mech:?})")));
            }
            if self.sasl_username.as_deref().unwrap_or("").is_empty() || self.sasl_password.is_none() {
                return Err(("source.wal.sasl_username", format!("{protocol} needs sasl_username and sasl_password")));
            }
            if protocol == "SASL_PLAINTEXT" && mech == "PLAIN" {
                tracing::warn!("[source.wal] SASL PLAIN over SASL_PLAINTEXT sends the Kafka password in clear: use SASL_SSL or SCRAM");
            }
        } else if self.sasl_mechanism.is_some() || self.sasl_username.is_some() || self.sasl_password.is_some() {
            return Err(("source.wal.security_protocol", format!("SASL settings are given but security_protocol is {protocol}: use SASL_SSL (or SASL_PLAINTEXT)")));
        }
        let files = [
            ("source.wal.ssl_ca_location", &self.ssl_ca_location),
            ("source.wal.ssl_certificate_location", &self.ssl_certificate_location),
            ("source.wal.ssl_key_location", &self.ssl_key_location),
        ];
        for (field, f) in files {
            if let Some(p) = f {
                if !tls {
                    return Err((field, format!("is set but security_protocol is {protocol} (no TLS): use SSL or SASL_SSL")));
                }
                std::fs::metadata(p).map_err(|e| (field, format!("{}: {e}", p.display())))?;
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(("source.wal.ssl_key_location", "ssl_certificate_location and ssl_key_location go together".into()));
        }
        self.security_protocol = Some(protocol);
        self.sasl_mechanism = self.sasl_mechanism.as_ref().map(|m| m.to_ascii_uppercase());
        Ok(())
    }

    /// Every DML channel of the source, or those `channels` selects.
    pub fn all_channels(&self) -> Vec<String> {
        self.selected_channels()
            .unwrap_or_else(|| crate::msgstream::dml_channels(&self.topic_prefix, self.dml_channel_count as usize))
    }

    /// The topics `channels` selects (`None`: no selection, every channel).
    pub fn selected_channels(&self) -> Option<Vec<String>> {
        self.channels.as_ref().map(|c| {
            c.iter().map(|n| crate::msgstream::dml_channel(&self.topic_prefix, n)).collect()
        })
    }
}

/// One collection to move.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Name on the source.
    pub source: String,
    /// Name on the target (default: the source name).
    pub target: Option<String>,
    /// Description of the target collection (default: the source's).
    pub description: Option<String>,
}

/// Identity of the job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Name, unique per state directory; labels metrics.
    pub name: String,
    /// Directory of the job's durable state (sled).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// On SIGTERM/SIGINT, how long in-flight batches (and the abort of a running cutover,
    /// which restores source writes) may take before the daemon exits anyway (batches are
    /// repeated, harmlessly, on restart; a freeze left behind is undone at the next start).
    #[serde(default = "default_shutdown_timeout_s")]
    pub shutdown_timeout_s: u64,
}

fn default_shutdown_timeout_s() -> u64 {
    30
}

/// Bulk-copy tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// Work units (partitions or key ranges) copied at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Rows read per query page (Milvus 2.3 caps a page at 16384).
    #[serde(default = "default_page_rows")]
    pub page_rows: u64,
    /// Upper bound of one write request, in bytes.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Int64 primary-key ranges each partition is split into for parallel reads.
    #[serde(default = "default_key_splits")]
    pub key_splits: u32,
    /// Bytes of decoded binlog data that imports and binlog reads (`import-backup`,
    /// `[source.storage]`) may hold at once, over all segments read in parallel.
    #[serde(default = "default_decode_budget_bytes")]
    pub decode_budget_bytes: u64,
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig {
            parallelism: default_parallelism(),
            page_rows: default_page_rows(),
            batch_bytes: default_batch_bytes(),
            key_splits: default_key_splits(),
            decode_budget_bytes: default_decode_budget_bytes(),
        }
    }
}

/// WAL streaming tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Bytes of not-yet-applied events the local log may hold before reading pauses.
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
    /// Upper bound of one apply request, in bytes.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// What to do when a source collection is dropped: `stop` or `drop`.
    #[serde(default = "default_on_drop")]
    pub on_source_drop: String,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            log_max_bytes: default_log_max_bytes(),
            batch_bytes: default_batch_bytes(),
            on_source_drop: default_on_drop(),
        }
    }
}

fn default_database() -> String {
    "default".into()
}
fn default_request_timeout_s() -> u64 {
    120
}
fn default_dml_channel_count() -> u32 {
    16
}
fn default_topic_prefix() -> String {
    "by-dev".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("./ferry-state")
}
fn default_parallelism() -> usize {
    4
}
fn default_page_rows() -> u64 {
    4000
}
fn default_decode_budget_bytes() -> u64 {
    crate::sources::binlog::DEFAULT_DECODE_BUDGET
}
fn default_batch_bytes() -> usize {
    8 << 20
}
fn default_key_splits() -> u32 {
    4
}
fn default_log_max_bytes() -> u64 {
    2 << 30
}
fn default_control_listen() -> String {
    "127.0.0.1:7070".into()
}
fn default_telemetry_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_on_drop() -> String {
    "stop".into()
}

impl JobConfig {
    /// Reads, parses, resolves `env:` secrets and validates a job file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// As [`Self::load`], for commands whose rows come from files rather than a source
    /// Milvus: `[source]` may be absent and is not validated (nothing connects to it).
    pub fn load_for_files(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_inner(&text, path, false)
    }

    /// Like [`Self::load`] from a string; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_inner(text, path, true)
    }

    fn parse_inner(text: &str, path: &Path, needs_source: bool) -> Result<Self, ConfigError> {
        let mut cfg: JobConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_error(&e, text),
        })?;
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        for (field, ep) in [
            ("source", &mut cfg.source),
            ("target", &mut cfg.target),
        ] {
            if field == "source" && !needs_source {
                continue;
            }
            if ep.uri.trim().is_empty() {
                return Err(invalid(&format!("{field}.uri"), "must not be empty".into()));
            }
            let uri = crate::milvus::normalize_uri(&ep.uri).map_err(|e| invalid(&format!("{field}.uri"), e.to_string()))?;
            if let Some(spec) = &mut ep.token {
                spec.resolve().map_err(|m| invalid(&format!("{field}.token"), m))?;
                if spec.value.expose().trim().is_empty() {
                    return Err(invalid(&format!("{field}.token"), "is empty: set the token, or remove the key for a server without authentication".into()));
                }
            }
            let plain = uri.starts_with("http://");
            for (key, set) in [("tls_ca_cert", ep.tls_ca_cert.is_some()), ("tls_server_name", ep.tls_server_name.is_some())] {
                if set && plain {
                    return Err(invalid(&format!("{field}.{key}"), format!("is set but {field}.uri is not https:// ({uri}): the connection would not use TLS")));
                }
            }
            if !(1..=86_400).contains(&ep.request_timeout_s) {
                return Err(invalid(&format!("{field}.request_timeout_s"), "must be 1..=86400".into()));
            }
            if ep.database.trim().is_empty() {
                return Err(invalid(&format!("{field}.database"), "must not be empty".into()));
            }
        }
        if cfg.target.wal.is_some() {
            return Err(invalid("target.wal", "only the source has a WAL to read".into()));
        }
        if cfg.target.storage.is_some() {
            return Err(invalid("target.storage", "only the source's binlogs are read".into()));
        }
        if let Some(st) = &cfg.source.storage {
            if st.location.trim().is_empty() {
                return Err(invalid("source.storage.location", "must not be empty".into()));
            }
            if cfg.source.wal.as_ref().is_some_and(|w| w.channels.is_some()) {
                return Err(invalid("source.storage", "cannot be combined with [source.wal] channels (binlogs are not split by channel); leave one of them out".into()));
            }
        }
        if let Some(wal) = &mut cfg.source.wal {
            match (wal.brokers.trim().is_empty(), &wal.rocksmq) {
                (true, None) => return Err(invalid("source.wal", "needs brokers (a WAL on Kafka) or rocksmq (a standalone's RocksMQ directory)".into())),
                (false, Some(_)) => return Err(invalid("source.wal", "brokers and rocksmq exclude each other: the WAL is on Kafka or in RocksMQ".into())),
                _ => {}
            }
            if wal.rocksmq.is_some() && (wal.security_protocol.is_some() || wal.sasl_mechanism.is_some() || wal.ssl_ca_location.is_some()) {
                return Err(invalid("source.wal", "security settings are Kafka's; a RocksMQ source has none".into()));
            }
            if wal.rocksmq.is_some() && !(10..=60_000).contains(&wal.rocksmq_catch_up_ms) {
                return Err(invalid("source.wal.rocksmq_catch_up_ms", format!("{} is out of range 10..=60000", wal.rocksmq_catch_up_ms)));
            }
            wal.check_security().map_err(|(field, m)| invalid(field, m))?;
        }
        if let Some(w) = cfg.source.wal.as_ref().filter(|w| !(1..=1024).contains(&w.dml_channel_count)) {
            return Err(invalid("source.wal.dml_channel_count", format!("{} is out of range 1..=1024 (Milvus's rootCoord.dmlChannelNum, 16 by default)", w.dml_channel_count)));
        }
        if let Some(channels) = cfg.source.wal.as_ref().and_then(|w| w.channels.as_ref()) {
            if channels.is_empty() {
                return Err(invalid("source.wal.channels", "must name at least one channel number (or be left out: every channel)".into()));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = channels.iter().find(|n| !seen.insert(**n)) {
                return Err(invalid("source.wal.channels", format!("channel {dup} is named twice")));
            }
        }
        if cfg.job.name.trim().is_empty()
            || !cfg
                .job
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "job.name",
                format!("{:?} must be non-empty letters, digits, '-', '_' or '.'", cfg.job.name),
            ));
        }
        let mut targets = std::collections::HashSet::new();
        for (i, c) in cfg.collections.iter().enumerate() {
            if c.source.trim().is_empty() {
                return Err(invalid(&format!("collections[{i}].source"), "must not be empty".into()));
            }
            if !targets.insert(c.target_name().to_string()) {
                return Err(invalid(
                    &format!("collections[{i}].target"),
                    format!("target collection {:?} is named twice", c.target_name()),
                ));
            }
        }
        if cfg.copy.parallelism == 0 {
            return Err(invalid("copy.parallelism", "must be at least 1".into()));
        }
        if cfg.copy.page_rows == 0 || cfg.copy.page_rows > crate::milvus::MAX_QUERY_ROWS {
            return Err(invalid("copy.page_rows", format!("must be 1..={}", crate::milvus::MAX_QUERY_ROWS)));
        }
        if cfg.copy.decode_budget_bytes < 1 << 20 {
            return Err(invalid("copy.decode_budget_bytes", "must be at least 1 MiB".into()));
        }
        if cfg.copy.batch_bytes < 1024 || cfg.copy.batch_bytes > 60 << 20 {
            return Err(invalid("copy.batch_bytes", "must be 1 KiB..=60 MiB (Milvus caps a request at 64 MiB)".into()));
        }
        if cfg.copy.key_splits == 0 {
            return Err(invalid("copy.key_splits", "must be at least 1".into()));
        }
        for (field, addr) in [("control.listen", &cfg.control.listen), ("telemetry.listen", &cfg.telemetry.listen)] {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| invalid(field, format!("{addr:?} is not host:port with an IP address ({e})")))?;
            if field == "control.listen" && !parsed.ip().is_loopback() {
                if cfg.control.token.is_none() {
                    return Err(invalid(
                        "control.token",
                        format!("required when control.listen ({addr}) is not a loopback address (the generated token is for the local CLI)"),
                    ));
                }
                if cfg.control.tls_cert.is_none() && !cfg.control.allow_plaintext {
                    return Err(invalid(
                        "control.tls_cert",
                        format!("required when control.listen ({addr}) is not a loopback address: the token would cross the network in clear (or set allow_plaintext = true behind a TLS proxy)"),
                    ));
                }
            }
        }
        if cfg.control.tls_cert.is_some() != cfg.control.tls_key.is_some() {
            return Err(invalid("control.tls_key", "tls_cert and tls_key go together".into()));
        }
        if cfg.control.tls_client_ca.is_some() && cfg.control.tls_cert.is_none() {
            return Err(invalid("control.tls_client_ca", "needs tls_cert and tls_key (client certificates are checked over TLS)".into()));
        }
        if let Some(spec) = &mut cfg.control.token {
            spec.resolve().map_err(|m| invalid("control.token", m))?;
            check_control_token(&spec.value).map_err(|m| invalid("control.token", m))?;
        }
        let secret_vars: Vec<&str> = [&cfg.source.token, &cfg.target.token, &cfg.control.token]
            .into_iter()
            .flatten()
            .filter_map(|s| s.env_var.as_deref())
            .collect();
        for name in &cfg.cutover.command_env {
            if name.is_empty() || name.contains('=') {
                return Err(invalid("cutover.command_env", format!("{name:?} is not an environment variable name")));
            }
            if secret_vars.contains(&name.as_str()) || name.starts_with("FERRY_") {
                return Err(invalid("cutover.command_env", format!("{name} holds one of ferry's secrets (or is ferry's own setting) and is never passed to commands")));
            }
        }
        if cfg.job.shutdown_timeout_s > 86_400 {
            return Err(invalid("job.shutdown_timeout_s", "must be at most 86400".into()));
        }
        if cfg.stream.batch_bytes < 1024 || cfg.stream.batch_bytes > 60 << 20 {
            return Err(invalid("stream.batch_bytes", "must be 1 KiB..=60 MiB (Milvus caps a request at 64 MiB)".into()));
        }
        if cfg.stream.log_max_bytes < 1 << 20 {
            return Err(invalid("stream.log_max_bytes", "must be at least 1 MiB".into()));
        }
        if !["stop", "drop"].contains(&cfg.stream.on_source_drop.as_str()) {
            return Err(invalid("stream.on_source_drop", "must be \"stop\" or \"drop\"".into()));
        }
        Ok(cfg)
    }
}

/// A TOML error without the quoted source line (which may hold a secret): the message and
/// where it is.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" (line {line}, column {column})")
    });
    format!("{}{}", e.message().trim_end(), at.unwrap_or_default())
}

/// Why a control token is not acceptable, if it is not.
pub fn check_control_token(token: &crate::secret::Secret) -> Result<(), String> {
    let t = token.expose();
    if t.trim().is_empty() {
        return Err("is empty".into());
    }
    if t.to_ascii_uppercase().contains(TOKEN_PLACEHOLDER) {
        return Err(format!("is the shipped placeholder ({TOKEN_PLACEHOLDER}): generate one, e.g. `openssl rand -hex 32`"));
    }
    if t.len() < MIN_CONTROL_TOKEN_BYTES {
        return Err(format!("is {} bytes; at least {MIN_CONTROL_TOKEN_BYTES} are required (e.g. `openssl rand -hex 32`)", t.len()));
    }
    if t.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces (it travels in an HTTP header)".into());
    }
    Ok(())
}

impl CollectionConfig {
    pub fn target_name(&self) -> &str {
        self.target.as_deref().unwrap_or(&self.source)
    }
}

impl EndpointConfig {
    /// The value of a left-out `[source]`: an empty URI, which [`JobConfig::parse`] rejects
    /// as `source.uri: must not be empty`.
    fn absent() -> Self {
        EndpointConfig {
            uri: String::new(),
            token: None,
            database: default_database(),
            tls_ca_cert: None,
            tls_server_name: None,
            request_timeout_s: default_request_timeout_s(),
            wal: None,
            storage: None,
        }
    }

    /// Client options for this endpoint.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new(self.uri.clone());
        o.token = self.token.as_ref().map(|t| t.value.clone());
        o.database = self.database.clone();
        o.tls_ca_cert = self.tls_ca_cert.clone();
        o.tls_server_name = self.tls_server_name.clone();
        o.request_timeout = Duration::from_secs(self.request_timeout_s.max(1));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[source]
uri = "http://127.0.0.1:19530"
[target]
uri = "http://127.0.0.1:19630"
[job]
name = "j1"
"#;

    #[test]
    fn minimal_file_gets_defaults() {
        let c = JobConfig::parse(MINIMAL, Path::new("job.toml")).unwrap();
        assert_eq!(c.source.database, "default");
        assert!(c.collections.is_empty());
        assert_eq!(c.copy.parallelism, 4);
        assert!(c.source.wal.is_none());
    }

    #[test]
    fn source_may_be_left_out_only_for_file_imports() {
        let text = MINIMAL.replace("[source]\nuri = \"http://127.0.0.1:19530\"\n", "");
        assert!(!text.contains("[source]"));
        let e = JobConfig::parse(&text, Path::new("job.toml")).unwrap_err().to_string();
        assert!(e.contains("source.uri"), "{e}");
        let c = JobConfig::parse_inner(&text, Path::new("job.toml"), false).unwrap();
        assert!(c.source.uri.is_empty());
        assert_eq!(c.target.uri, "http://127.0.0.1:19630");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[job]", "[job]\nstate_dri = \"x\"");
        let e = JobConfig::parse(&text, Path::new("job.toml")).unwrap_err().to_string();
        assert!(e.contains("state_dri"), "{e}");
        assert!(e.contains("job.toml"), "{e}");
    }

    #[test]
    fn env_secret_is_resolved_and_never_printed() {
        std::env::set_var("FERRY_TEST_CFG_TOKEN", "root:VerySecret1");
        let text = MINIMAL.replace(
            "uri = \"http://127.0.0.1:19530\"",
            "uri = \"http://127.0.0.1:19530\"\ntoken = \"env:FERRY_TEST_CFG_TOKEN\"",
        );
        let c = JobConfig::parse(&text, Path::new("job.toml")).unwrap();
        let tok = c.source.token.as_ref().unwrap();
        assert_eq!(tok.value.expose(), "root:VerySecret1");
        assert!(!format!("{c:?}").contains("VerySecret1"));
    }

    #[test]
    fn missing_env_secret_names_the_variable() {
        let text = MINIMAL.replace(
            "uri = \"http://127.0.0.1:19630\"",
            "uri = \"http://127.0.0.1:19630\"\ntoken = \"env:FERRY_TEST_SURELY_UNSET\"",
        );
        let e = JobConfig::parse(&text, Path::new("job.toml")).unwrap_err().to_string();
        assert!(e.contains("target.token") && e.contains("FERRY_TEST_SURELY_UNSET"), "{e}");
    }

    /// The WAL is on Kafka or in RocksMQ, never both nor neither; RocksMQ takes no Kafka
    /// security; its catch-up interval is bounded.
    #[test]
    fn wal_on_kafka_or_in_rocksmq() {
        let with = |wal: &str| {
            let text = MINIMAL.replace("[target]", &format!("[source.wal]\n{wal}\n[target]"));
            JobConfig::parse(&text, Path::new("j.toml"))
        };
        let c = with("rocksmq = \"/var/lib/milvus/rdb_data\"").unwrap();
        let w = c.source.wal.unwrap();
        assert_eq!((w.rocksmq.unwrap(), w.rocksmq_catch_up_ms, w.brokers.as_str()), (PathBuf::from("/var/lib/milvus/rdb_data"), 100, ""));
        for (wal, want) in [
            ("brokers = \"k:9092\"\nrocksmq = \"/d\"", "brokers and rocksmq exclude each other"),
            ("topic_prefix = \"p\"", "needs brokers (a WAL on Kafka) or rocksmq"),
            ("rocksmq = \"/d\"\nsecurity_protocol = \"SSL\"", "security settings are Kafka's"),
            ("rocksmq = \"/d\"\nrocksmq_catch_up_ms = 5", "source.wal.rocksmq_catch_up_ms"),
        ] {
            let e = with(wal).unwrap_err().to_string();
            assert!(e.contains(want), "{wal}: {e}");
        }
    }

    #[test]
    fn source_storage() {
        let with = |extra: &str| {
            let text = MINIMAL.replace("[target]", &format!("{extra}\n[target]"));
            JobConfig::parse(&text, Path::new("j.toml"))
        };
        let c = with("[source.storage]\nlocation = \"s3://b/files\"").unwrap();
        assert_eq!(c.source.storage.unwrap().location, "s3://b/files");
        let e = with("[source.storage]\nlocation = \" \"").unwrap_err().to_string();
        assert!(e.contains("source.storage.location") && e.contains("must not be empty"), "{e}");
        let e = with("[source.storage]\nlocaton = \"x\"").unwrap_err().to_string();
        assert!(e.contains("locaton"), "{e}");
        let e = with("[source.wal]\nbrokers = \"k:9092\"\nchannels = [1]\n[source.storage]\nlocation = \"/d\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.storage") && e.contains("channels"), "{e}");
        let text = MINIMAL.replace("[job]", "[target.storage]\nlocation = \"/d\"\n[job]");
        let e = JobConfig::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("target.storage"), "{e}");
    }

    #[test]
    fn wal_channel_selection() {
        let with = |channels: &str| {
            let text = MINIMAL.replace(
                "[target]",
                &format!("[source.wal]\nbrokers = \"k:9092\"\ntopic_prefix = \"p\"\n{channels}\n[target]"),
            );
            JobConfig::parse(&text, Path::new("j.toml"))
        };
        let all = with("").unwrap();
        assert_eq!(all.source.wal.unwrap().selected_channels(), None);
        let some = with("channels = [3, 0]").unwrap();
        assert_eq!(
            some.source.wal.unwrap().selected_channels(),
            Some(vec!["p-rootcoord-dml_3".to_string(), "p-rootcoord-dml_0".to_string()])
        );
        let e = with("channels = []").unwrap_err().to_string();
        assert!(e.contains("source.wal.channels") && e.contains("at least one"), "{e}");
        let e = with("channels = [1, 2, 1]").unwrap_err().to_string();
        assert!(e.contains("source.wal.channels") && e.contains("channel 1 is named twice"), "{e}");
    }

    #[test]
    fn duplicate_targets_are_rejected() {
        let text = format!(
            "{MINIMAL}\n[[collections]]\nsource = \"a\"\ntarget = \"x\"\n[[collections]]\nsource = \"b\"\ntarget = \"x\"\n"
        );
        let e = JobConfig::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("collections[1].target"), "{e}");
    }

    #[test]
    fn control_off_loopback_needs_a_strong_token_and_tls() {
        let open = format!("{MINIMAL}\n[control]\nlisten = \"0.0.0.0:7070\"\n");
        let e = JobConfig::parse(&open, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("loopback"), "{e}");
        let with_token = |t: &str| open.replace("[control]\n", &format!("[control]\ntoken = \"{t}\"\nallow_plaintext = true\n"));
        let e = JobConfig::parse(&with_token(""), Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("empty"), "{e}");
        std::env::set_var("FERRY_TEST_CFG_EMPTY_TOKEN", "");
        let e = JobConfig::parse(&with_token("env:FERRY_TEST_CFG_EMPTY_TOKEN"), Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("empty"), "{e}");
        let e = JobConfig::parse(&with_token("s3cret"), Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("at least 32"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = JobConfig::parse(&with_token("CHANGE-ME-CHANGE-ME-CHANGE-ME-CHANGE-ME"), Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("placeholder"), "{e}");
        let strong = "0123456789abcdef0123456789abcdef";
        assert!(JobConfig::parse(&with_token(strong), Path::new("j.toml")).is_ok());
        // Off loopback without TLS is refused unless plaintext is explicitly allowed.
        let no_tls = open.replace("[control]\n", &format!("[control]\ntoken = \"{strong}\"\n"));
        let e = JobConfig::parse(&no_tls, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.tls_cert"), "{e}");
        let tls = no_tls.replace("[control]\n", "[control]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
        assert!(JobConfig::parse(&tls, Path::new("j.toml")).is_ok());
        let half = no_tls.replace("[control]\n", "[control]\ntls_cert = \"c.pem\"\n");
        let e = JobConfig::parse(&half, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.tls_key"), "{e}");
        // Loopback needs no configured token (the daemon generates one).
        let local = format!("{MINIMAL}\n[control]\nlisten = \"127.0.0.1:7070\"\n");
        assert!(JobConfig::parse(&local, Path::new("j.toml")).is_ok());
        // A short token is refused on loopback too.
        let short = local.replace("[control]\n", "[control]\ntoken = \"short\"\n");
        assert!(JobConfig::parse(&short, Path::new("j.toml")).is_err());
    }

    /// Settings that would weaken a connection without saying so are errors.
    #[test]
    fn weak_endpoint_settings_fail_closed() {
        std::env::set_var("FERRY_TEST_CFG_EMPTY_MILVUS_TOKEN", "");
        let text = MINIMAL.replace(
            "uri = \"http://127.0.0.1:19630\"",
            "uri = \"http://127.0.0.1:19630\"\ntoken = \"env:FERRY_TEST_CFG_EMPTY_MILVUS_TOKEN\"",
        );
        let e = JobConfig::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("target.token") && e.contains("empty"), "{e}");
        for key in ["tls_ca_cert = \"ca.pem\"", "tls_server_name = \"milvus.internal\""] {
            let text = MINIMAL.replace("uri = \"http://127.0.0.1:19530\"", &format!("uri = \"http://127.0.0.1:19530\"\n{key}"));
            let e = JobConfig::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
            assert!(e.contains("source.tls_") && e.contains("not https://"), "{e}");
            let https = text.replace("http://127.0.0.1:19530", "https://127.0.0.1:19530");
            assert!(JobConfig::parse(&https, Path::new("j.toml")).is_ok());
        }
    }

    /// A TOML syntax error names the line, never quotes it: the line may hold a secret.
    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let text = MINIMAL.replace("[job]", "[job]\ntoken = \"Sup3rSecret-unterminated\n");
        let e = JobConfig::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(!e.contains("Sup3rSecret"), "{e}");
        assert!(e.contains("line 7") || e.contains("line 8"), "{e}");
    }

    #[test]
    fn secured_kafka_settings_are_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let with = |extra: &str| {
            let text = MINIMAL.replace("[target]", &format!("[source.wal]\nbrokers = \"k:9093\"\n{extra}\n[target]"));
            JobConfig::parse(&text, Path::new("j.toml"))
        };
        std::env::set_var("FERRY_TEST_KAFKA_PW", "Kafka-Pa55word");
        let ok = format!(
            "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"ferry\"\nsasl_password = \"env:FERRY_TEST_KAFKA_PW\"\nssl_ca_location = \"{}\"",
            ca.display()
        );
        let c = with(&ok).unwrap();
        let wal = c.source.wal.as_ref().unwrap();
        let opts: Vec<(&str, String)> = wal.security_options().into_iter().map(|(k, v)| (k, v.expose().to_string())).collect();
        assert!(opts.contains(&("security.protocol", "SASL_SSL".into())), "{opts:?}");
        assert!(opts.contains(&("sasl.mechanism", "SCRAM-SHA-512".into())), "{opts:?}");
        assert!(opts.contains(&("sasl.password", "Kafka-Pa55word".into())), "{opts:?}");
        assert!(opts.contains(&("ssl.ca.location", ca.display().to_string())), "{opts:?}");
        assert!(!format!("{c:?}").contains("Kafka-Pa55word"));
        // The reader built from it hides it too: tests/wal_secured.rs.

        let e = with("security_protocol = \"SASL_SSL\"").unwrap_err().to_string();
        assert!(e.contains("source.wal.sasl_mechanism"), "{e}");
        let e = with("security_protocol = \"SASL_SSL\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"").unwrap_err().to_string();
        assert!(e.contains("sasl_password"), "{e}");
        let e = with("sasl_username = \"u\"\nsasl_password = \"p\"").unwrap_err().to_string();
        assert!(e.contains("source.wal.security_protocol"), "{e}");
        let e = with("security_protocol = \"TLS\"").unwrap_err().to_string();
        assert!(e.contains("must be PLAINTEXT, SSL"), "{e}");
        let e = with(&format!("ssl_ca_location = \"{}\"", ca.display())).unwrap_err().to_string();
        assert!(e.contains("source.wal.ssl_ca_location") && e.contains("no TLS"), "{e}");
        let e = with("security_protocol = \"SSL\"\nssl_ca_location = \"/nonexistent/ca.pem\"").unwrap_err().to_string();
        assert!(e.contains("source.wal.ssl_ca_location") && e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(with("").unwrap().source.wal.unwrap().security_options().iter().all(|(k, _)| *k == "security.protocol"));
    }

    #[test]
    fn command_env_never_carries_secrets() {
        let with = |names: &str| {
            let text = MINIMAL.replace(
                "uri = \"http://127.0.0.1:19530\"",
                "uri = \"http://127.0.0.1:19530\"\ntoken = \"env:MY_MILVUS_PW\"",
            ) + &format!("\n[cutover]\ncommand_env = [{names}]\n");
            JobConfig::parse(&text, Path::new("j.toml"))
        };
        std::env::set_var("MY_MILVUS_PW", "root:pw");
        assert!(with("\"KUBECONFIG\", \"HOME\"").is_ok());
        let e = with("\"MY_MILVUS_PW\"").unwrap_err().to_string();
        assert!(e.contains("cutover.command_env") && e.contains("MY_MILVUS_PW"), "{e}");
        assert!(with("\"FERRY_CONTROL_TOKEN\"").is_err());
    }
}
