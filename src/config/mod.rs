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
    /// Shell command of the `command` freeze (for example scaling writers to zero).
    pub freeze_command: Option<String>,
    /// Shell command that undoes `freeze_command` when a cutover aborts.
    pub unfreeze_command: Option<String>,
}

/// Where the control API listens and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `host:port`; port 0 picks a free port (the daemon writes the address it bound to
    /// `state_dir/daemon.json`).
    #[serde(default = "default_control_listen")]
    pub listen: String,
    /// Bearer token clients must send; required when `listen` is not a loopback address.
    #[serde(default, deserialize_with = "secret_field")]
    pub token: Option<SecretSpec>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { listen: default_control_listen(), token: None }
    }
}

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
    /// Kafka bootstrap servers, comma-separated.
    pub brokers: String,
    /// Milvus's `msgChannel.chanNamePrefix.cluster` (topics `{prefix}-rootcoord-dml_N`).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Splits one source across instances by DML channel: this instance reads only these
    /// physical channels (`{prefix}-rootcoord-dml_N`, given as the numbers N) and moves only
    /// the keys of the collection shards they carry. Absent: every channel the job's
    /// collections use.
    pub channels: Option<Vec<u32>>,
}

impl WalConfig {
    /// The topics `channels` selects (`None`: no selection, every channel).
    pub fn selected_channels(&self) -> Option<Vec<String>> {
        self.channels.as_ref().map(|c| {
            c.iter().map(|n| crate::wal::dml_channel(&self.topic_prefix, n)).collect()
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
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig {
            parallelism: default_parallelism(),
            page_rows: default_page_rows(),
            batch_bytes: default_batch_bytes(),
            key_splits: default_key_splits(),
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
            message: e.to_string(),
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
            crate::milvus::normalize_uri(&ep.uri).map_err(|e| invalid(&format!("{field}.uri"), e.to_string()))?;
            if let Some(spec) = &mut ep.token {
                spec.resolve().map_err(|m| invalid(&format!("{field}.token"), m))?;
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
            if field == "control.listen" && !parsed.ip().is_loopback() && cfg.control.token.is_none() {
                return Err(invalid(
                    "control.token",
                    format!("required when control.listen ({addr}) is not a loopback address"),
                ));
            }
        }
        if let Some(spec) = &mut cfg.control.token {
            spec.resolve().map_err(|m| invalid("control.token", m))?;
            // An empty token would let every request in (a missing header reads as empty).
            if spec.value.expose().trim().is_empty() {
                return Err(invalid("control.token", "is empty: set a token, or remove the key on a loopback listen address".into()));
            }
        }
        if !["stop", "drop"].contains(&cfg.stream.on_source_drop.as_str()) {
            return Err(invalid("stream.on_source_drop", "must be \"stop\" or \"drop\"".into()));
        }
        Ok(cfg)
    }
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
    fn control_off_loopback_needs_a_non_empty_token() {
        let open = format!("{MINIMAL}\n[control]\nlisten = \"0.0.0.0:7070\"\n");
        let e = JobConfig::parse(&open, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("loopback"), "{e}");
        let empty = open.replace("[control]\n", "[control]\ntoken = \"\"\n");
        let e = JobConfig::parse(&empty, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("empty"), "{e}");
        std::env::set_var("FERRY_TEST_CFG_EMPTY_TOKEN", "");
        let empty_env = open.replace("[control]\n", "[control]\ntoken = \"env:FERRY_TEST_CFG_EMPTY_TOKEN\"\n");
        let e = JobConfig::parse(&empty_env, Path::new("j.toml")).unwrap_err().to_string();
        assert!(e.contains("control.token") && e.contains("empty"), "{e}");
        let ok = open.replace("[control]\n", "[control]\ntoken = \"s3cret\"\n");
        assert!(JobConfig::parse(&ok, Path::new("j.toml")).is_ok());
        // Loopback needs none.
        let local = format!("{MINIMAL}\n[control]\nlisten = \"127.0.0.1:7070\"\n");
        assert!(JobConfig::parse(&local, Path::new("j.toml")).is_ok());
    }
}
