//! The Milvus gRPC client: one connection per endpoint, auth and database headers on every
//! call, retries with `backoff` for what [`MilvusError::is_retryable`] says can heal, and a
//! typed error naming the call and collection for everything else.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use backoff::ExponentialBackoff;
use base64::Engine;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::error::{MilvusError, Result};
use crate::proto::common::{ConsistencyLevel, KeyValuePair, MsgBase, Status};
use crate::proto::milvus as pb;
use crate::proto::milvus::milvus_service_client::MilvusServiceClient;
use crate::proto::schema::CollectionSchema;
use crate::secret::Secret;

/// How to reach one Milvus server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `http://host:port`, `https://host:port`, or `host:port` (plain).
    pub uri: String,
    /// `user:password` or an API key. Sent base64-encoded as the `authorization` header.
    pub token: Option<Secret>,
    /// Database every call addresses (`default` when empty).
    pub database: String,
    /// PEM file of a CA to trust for `https://` besides the public roots.
    pub tls_ca_cert: Option<PathBuf>,
    /// TLS server name to verify instead of the URI's host.
    pub tls_server_name: Option<String>,
    pub connect_timeout: Duration,
    /// Deadline of one call (one attempt).
    pub request_timeout: Duration,
    /// How long retryable failures are retried before the call fails.
    pub retry_max_elapsed: Duration,
}

impl ConnectOptions {
    pub fn new(uri: impl Into<String>) -> Self {
        ConnectOptions {
            uri: uri.into(),
            token: None,
            database: "default".into(),
            tls_ca_cert: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry_max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Adds `authorization` and `dbname` to every request.
#[derive(Clone)]
pub struct Headers {
    authorization: Option<AsciiMetadataValue>,
    dbname: AsciiMetadataValue,
}

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let md = req.metadata_mut();
        if let Some(a) = &self.authorization {
            md.insert("authorization", a.clone());
        }
        md.insert("dbname", self.dbname.clone());
        Ok(req)
    }
}

pub(super) type Svc = MilvusServiceClient<InterceptedService<Channel, Headers>>;

/// Replies that carry a `common.Status`.
pub trait Reply {
    fn status(&self) -> Option<&Status>;
}

impl Reply for Status {
    fn status(&self) -> Option<&Status> {
        Some(self)
    }
}

macro_rules! reply_with_status {
    ($($t:ty),* $(,)?) => {$(
        impl Reply for $t {
            fn status(&self) -> Option<&Status> {
                self.status.as_ref()
            }
        }
    )*};
}

reply_with_status!(
    pb::BoolResponse,
    pb::DescribeCollectionResponse,
    pb::GetCollectionStatisticsResponse,
    pb::ShowCollectionsResponse,
    pb::GetPartitionStatisticsResponse,
    pb::ShowPartitionsResponse,
    pb::GetLoadingProgressResponse,
    pb::GetLoadStateResponse,
    pb::DescribeIndexResponse,
    pb::MutationResult,
    pb::FlushResponse,
    pb::GetFlushStateResponse,
    pb::GetPersistentSegmentInfoResponse,
    pb::QueryResults,
    pb::ListDatabasesResponse,
    pb::SelectGrantResponse,
    pb::GetVersionResponse,
    pb::CheckHealthResponse,
    pb::AllocTimestampResponse,
);

/// What a query asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub expr: String,
    pub output_fields: Vec<String>,
    pub partition_names: Vec<String>,
    pub limit: Option<u64>,
    /// Read at least everything up to this hybrid timestamp (0: the collection's default).
    pub guarantee_timestamp: u64,
    pub consistency: Option<ConsistencyLevel>,
    /// Ask for rows in ascending key order (the `iterator` query parameter of query
    /// iterators): Milvus Lite and Milvus 2.5+ return a limited query's rows in key order
    /// only then; Milvus 2.3 orders them anyway.
    pub key_order: bool,
}

/// Parameters of `CreateCollection`.
#[derive(Debug, Clone)]
pub struct CreateCollection {
    pub name: String,
    pub schema: CollectionSchema,
    pub shards_num: i32,
    pub consistency_level: ConsistencyLevel,
    pub properties: Vec<KeyValuePair>,
    /// Partitions of a partition-key collection (0: server default).
    pub num_partitions: i64,
}

/// A connected client. Cheap to clone: clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct MilvusClient {
    pub(super) svc: Svc,
    pub(super) database: String,
    endpoint: String,
    retry_max_elapsed: Duration,
    /// Schemas of the collections this client wrote to, for [`super::canonical`]: described
    /// once per collection, forgotten when this client creates or drops it.
    pub(super) write_schemas: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<CollectionSchema>>>>,
}

impl std::fmt::Debug for MilvusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusClient")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .finish()
    }
}

impl MilvusClient {
    /// Connects and checks that the server answers and the database exists.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        crate::install_tls_provider();
        let uri = normalize_uri(&opts.uri)?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(32 << 20));
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(path) = &opts.tls_ca_cert {
                let pem = std::fs::read(path).map_err(|e| MilvusError::InvalidUri {
                    uri: opts.uri.clone(),
                    reason: format!("cannot read tls_ca_cert {}: {e}", path.display()),
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(name) = &opts.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: format!("TLS setup: {e}"),
            })?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let chain = error_chain(&e);
            let reason = match endpoint_hint(&chain, uri.starts_with("https://")) {
                Some(h) => format!("{h}; it answered: {chain}"),
                None => chain,
            };
            MilvusError::Connect { endpoint: uri.clone(), reason }
        })?;
        let database = if opts.database.is_empty() {
            "default".to_string()
        } else {
            opts.database.clone()
        };
        let authorization = match &opts.token {
            Some(t) if !t.is_empty() => {
                if uri.starts_with("http://") {
                    tracing::warn!(endpoint = %uri, "the Milvus token is sent over plaintext http:// (use https:// where the network is not trusted)");
                }
                let enc = base64::engine::general_purpose::STANDARD.encode(t.expose());
                let mut v: AsciiMetadataValue =
                    MetadataValue::try_from(enc).map_err(|_| MilvusError::InvalidUri {
                        uri: opts.uri.clone(),
                        reason: "token is not valid header text".into(),
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        let dbname = MetadataValue::try_from(database.as_str()).map_err(|_| {
            MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: format!("database name {database:?} is not valid header text"),
            }
        })?;
        let svc = MilvusServiceClient::with_interceptor(
            channel,
            Headers {
                authorization,
                dbname,
            },
        )
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);
        let client = MilvusClient {
            svc,
            database,
            endpoint: uri,
            retry_max_elapsed: opts.retry_max_elapsed,
            write_schemas: Default::default(),
        };
        // One authenticated call proves the server, the credentials and the database. It gets
        // a short budget: an endpoint that is not a Milvus (a Kafka or HTTP port, TLS against
        // plaintext) must fail in seconds with what it answered, not retry for minutes.
        let tls = client.endpoint.starts_with("https://");
        let mut probe = client.clone();
        probe.retry_max_elapsed = opts.retry_max_elapsed.min(PROBE_RETRY);
        let not_milvus = |reason: String| MilvusError::Connect { endpoint: client.endpoint.clone(), reason };
        match tokio::time::timeout(PROBE_TIMEOUT, probe.list_collections()).await {
            Ok(Ok(_)) => Ok(client),
            // Milvus answered (credentials, database, a server-side refusal): its own words.
            Ok(Err(e @ MilvusError::Server { .. })) => Err(e),
            Ok(Err(MilvusError::Rpc { code, message, .. })) => Err(not_milvus(answer_hint(code, &message, tls))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(not_milvus(format!(
                "it accepted the connection but gave no gRPC answer within {} s: is this a Milvus port{}?",
                PROBE_TIMEOUT.as_secs(),
                if tls { "" } else { " (or one that needs https://)" }
            ))),
        }
    }

    /// The database this client addresses.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The endpoint (URI without credentials), for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) fn base(&self) -> Option<MsgBase> {
        None
    }

    /// Runs one call with retries. `f` builds the request anew per attempt.
    pub(super) async fn call<R, F, Fut>(&self, call: &'static str, target: &str, f: F) -> Result<R>
    where
        R: Reply,
        F: Fn(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        self.call_retrying(call, target, MilvusError::is_retryable, f).await
    }

    /// Like [`Self::call`] for calls that change nothing (queries): these may also retry the
    /// server's internal failures, which writes may not (an insert that failed that way may
    /// still have landed).
    pub(super) async fn call_read<R, F, Fut>(&self, call: &'static str, target: &str, f: F) -> Result<R>
    where
        R: Reply,
        F: Fn(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        self.call_retrying(call, target, |e| e.is_retryable() || e.is_internal(), f).await
    }

    async fn call_retrying<R, F, Fut>(
        &self,
        call: &'static str,
        target: &str,
        retryable: fn(&MilvusError) -> bool,
        f: F,
    ) -> Result<R>
    where
        R: Reply,
        F: Fn(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let target = format!("{}/{}", self.database, target);
        let policy = ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: Some(self.retry_max_elapsed),
            ..Default::default()
        };
        backoff::future::retry(policy, || async {
            let outcome = match f(self.svc.clone()).await {
                Err(s) => Err(MilvusError::from_grpc(call, &target, s)),
                Ok(resp) => {
                    let resp = resp.into_inner();
                    match resp.status().and_then(|s| MilvusError::from_status(call, &target, s)) {
                        Some(e) => Err(e),
                        None => Ok(resp),
                    }
                }
            };
            outcome.map_err(|e| {
                if retryable(&e) {
                    tracing::debug!(error = %e, "retrying Milvus call");
                    backoff::Error::transient(e)
                } else {
                    backoff::Error::permanent(e)
                }
            })
        })
        .await
    }

    /// A fresh hybrid timestamp from the server's TSO.
    pub async fn alloc_timestamp(&self) -> Result<u64> {
        let r = self
            .call("AllocTimestamp", "", |mut c| async move {
                c.alloc_timestamp(pb::AllocTimestampRequest { base: None }).await
            })
            .await?;
        Ok(r.timestamp)
    }

    /// Server version string, for plans and reports.
    pub async fn server_version(&self) -> Result<String> {
        let r = self
            .call("GetVersion", "", |mut c| async move {
                c.get_version(pb::GetVersionRequest {}).await
            })
            .await?;
        Ok(r.version)
    }
}

pub(super) fn stat_row_count(stats: &[KeyValuePair]) -> u64 {
    stats
        .iter()
        .find(|kv| kv.key == "row_count")
        .and_then(|kv| kv.value.parse().ok())
        .unwrap_or(0)
}

/// How long [`MilvusClient::connect`] retries its first call, and how long it may take.
const PROBE_RETRY: Duration = Duration::from_secs(15);
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

/// What an endpoint's answer to the first call says, in words an operator can act on.
fn answer_hint(code: tonic::Code, message: &str, tls: bool) -> String {
    let hint = endpoint_hint(message, tls).or((code == tonic::Code::Unimplemented).then_some("it speaks gRPC but is not Milvus"));
    match hint {
        Some(h) => format!("{h}; it answered: {code:?}: {message}"),
        None => format!("{code:?}: {message}"),
    }
}

/// What a transport or protocol error's text says about the endpoint, if it says anything an
/// operator can act on: used for the connection's errors and the first call's alike.
fn endpoint_hint(text: &str, tls: bool) -> Option<&'static str> {
    let m = text.to_ascii_lowercase();
    if m.contains("invalidcontenttype") || m.contains("corrupt message") || m.contains("wrong version number") {
        Some("it does not speak TLS: use http://")
    } else if tls && (m.contains("certificate") || m.contains("unknownissuer") || m.contains("invalid peer")) {
        Some("its TLS certificate is not trusted for this name (tls_ca_cert, tls_server_name)")
    } else if m.contains("frame with invalid size") || m.contains("invalid http version") || m.contains("http2 error") || m.contains("protocol error") || m.contains("content-type") {
        Some(if tls { "it is not a Milvus gRPC endpoint (wrong port?)" } else { "it is not a Milvus gRPC endpoint (wrong port, or a TLS port that needs https://?)" })
    } else {
        None
    }
}

/// `host:port` means plain HTTP/2; `tcp://` is pymilvus's spelling of the same.
/// The URI as tonic takes it (`http://` added to a bare `host:port`), or why it is refused.
pub fn normalize_uri(uri: &str) -> Result<String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(MilvusError::InvalidUri {
            uri: uri.into(),
            reason: "empty".into(),
        });
    }
    // Credentials belong in `token` (a Secret); in the URI they would be echoed by every
    // error that names the endpoint. Refuse them without repeating them.
    let authority = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((_, host)) = authority.rsplit_once('@') {
        let scheme = uri.split_once("://").map_or("http", |(s, _)| s);
        return Err(MilvusError::InvalidUri {
            uri: format!("{scheme}://***@{host}"),
            reason: "credentials in the URI are not accepted: give them as token (\"user:password\" or \"env:VAR\")".into(),
        });
    }
    if let Some(rest) = uri.strip_prefix("tcp://") {
        return Ok(format!("http://{rest}"));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(uri.trim_end_matches('/').to_string());
    }
    if uri.contains("://") {
        return Err(MilvusError::InvalidUri {
            uri: uri.into(),
            reason: "scheme must be http:// or https://".into(),
        });
    }
    Ok(format!("http://{uri}"))
}

/// The cause chain of an error as one line (tonic's top level says only "transport error"),
/// each cause once: a cause whose text the line already holds is left out, so a message never
/// repeats itself.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("ShowCollections failed: http2 error", Some(Box::new(E("http2 error", Some(Box::new(E("connection reset", None)))))));
        assert_eq!(error_chain(&e), "ShowCollections failed: http2 error: connection reset");
    }

    #[test]
    fn uris() {
        assert_eq!(normalize_uri("127.0.0.1:19530").unwrap(), "http://127.0.0.1:19530");
        assert_eq!(normalize_uri("tcp://h:1").unwrap(), "http://h:1");
        assert_eq!(normalize_uri("https://h/").unwrap(), "https://h");
        assert!(normalize_uri("ftp://h").is_err());
        assert!(normalize_uri("  ").is_err());
    }

    #[test]
    fn credentials_in_the_uri_are_refused_without_being_repeated() {
        for uri in ["http://root:Pw-123@h:19530", "root:Pw-123@h:19530", "https://u:Pw-123@h/db"] {
            let e = normalize_uri(uri).unwrap_err().to_string();
            assert!(!e.contains("Pw-123") && e.contains("***@h") && e.contains("token"), "{e}");
        }
    }
}
