//! The gRPC control API (`proto/ferry/control.proto`): server side in the daemon, and the
//! client the CLI uses.
//!
//! Security model: every call must carry `authorization: Bearer <token>`, on every address,
//! loopback included. The token is `[control] token` (at least 32 bytes), or one the daemon
//! generates at start and writes to `state_dir/control.token` (mode 0600) for the local CLI.
//! The comparison is constant-time and a refusal never echoes what was sent. With
//! `[control] tls_cert`/`tls_key` the API speaks TLS (and, with `tls_client_ca`, requires
//! client certificates). No request carries command text: cutover commands come from the job
//! file only ([`crate::cutover`]).

use std::pin::Pin;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::job::handle::{HandleError, JobHandle};
use crate::job::lifecycle::{Event, JobState};
use crate::proto::control as api;
use crate::proto::control::control_server::{Control, ControlServer};
use crate::secret::Secret;

struct Service {
    job: JobHandle,
}

impl Service {
    fn job(&self, name: &str) -> Result<&JobHandle, Status> {
        if name.is_empty() || name == self.job.name() {
            Ok(&self.job)
        } else {
            Err(Status::not_found(format!(
                "no job {name:?} here (this daemon runs {:?})",
                self.job.name()
            )))
        }
    }
}

fn status_of(e: HandleError) -> Status {
    match e {
        HandleError::Transition(t) => Status::failed_precondition(t.to_string()),
        HandleError::State(s) => Status::internal(s.to_string()),
    }
}

fn snapshot_done(job: &JobHandle) -> bool {
    job.store().get::<bool>(crate::state::keys::SNAPSHOT_DONE).ok().flatten().unwrap_or(false)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<api::CutoverEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Control for Service {
    async fn list_jobs(&self, _: Request<api::ListJobsRequest>) -> Result<Response<api::ListJobsResponse>, Status> {
        Ok(Response::new(api::ListJobsResponse { jobs: vec![self.job.status()] }))
    }

    async fn get_job(&self, r: Request<api::JobRequest>) -> Result<Response<api::JobStatus>, Status> {
        Ok(Response::new(self.job(&r.get_ref().job)?.status()))
    }

    async fn pause_job(&self, r: Request<api::JobRequest>) -> Result<Response<api::JobStatus>, Status> {
        let job = self.job(&r.get_ref().job)?;
        job.fire(Event::Pause).map_err(status_of)?;
        Ok(Response::new(job.status()))
    }

    async fn resume_job(&self, r: Request<api::JobRequest>) -> Result<Response<api::JobStatus>, Status> {
        let job = self.job(&r.get_ref().job)?;
        job.fire(Event::Resume { snapshot_done: snapshot_done(job) }).map_err(status_of)?;
        Ok(Response::new(job.status()))
    }

    async fn cancel_job(&self, r: Request<api::JobRequest>) -> Result<Response<api::JobStatus>, Status> {
        let job = self.job(&r.get_ref().job)?;
        if job.state() == JobState::CuttingOver {
            return Err(Status::failed_precondition(
                "a cutover is running: abort it first (`ferry cutover --abort`)",
            ));
        }
        job.fire(Event::Cancel).map_err(status_of)?;
        Ok(Response::new(job.status()))
    }

    async fn get_errors(&self, r: Request<api::JobRequest>) -> Result<Response<api::ErrorLog>, Status> {
        let job = self.job(&r.get_ref().job)?;
        let errors = job.errors().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(api::ErrorLog { errors }))
    }

    type CutoverStream = EventStream;

    async fn cutover(&self, r: Request<api::CutoverRequest>) -> Result<Response<EventStream>, Status> {
        let job = self.job(&r.get_ref().job)?.clone();
        let rx = crate::cutover::start(job, r.into_inner()).map_err(|e| Status::failed_precondition(e.to_string()))?;
        let stream: EventStream = Box::pin(tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok));
        Ok(Response::new(stream))
    }

    async fn abort_cutover(&self, r: Request<api::JobRequest>) -> Result<Response<api::JobStatus>, Status> {
        let job = self.job(&r.get_ref().job)?;
        crate::cutover::abort(job).map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(job.status()))
    }

    async fn verify(&self, r: Request<api::VerifyRequest>) -> Result<Response<api::VerifyResponse>, Status> {
        let req = r.into_inner();
        let job = self.job(&req.job)?;
        let resp = crate::cutover::verify_now(job, req.full, req.sample)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(resp))
    }
}

fn bearer_check(token: Secret) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let got = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // An empty token never matches, whatever was configured.
        if !token.is_empty() && constant_time_eq(got.as_bytes(), token.expose().as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong control token (FERRY_CONTROL_TOKEN, or --config FILE to read the job's token)",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// TLS of the control listener, from `[control]`.
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
}

impl ServerTls {
    /// The listener's TLS settings, when `[control]` has a certificate.
    pub fn from_config(c: &crate::config::ControlConfig) -> Option<Self> {
        Some(ServerTls { cert: c.tls_cert.clone()?, key: c.tls_key.clone()?, client_ca: c.tls_client_ca.clone() })
    }

    fn load(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let read = |key: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("control.{key}: cannot read {}: {e}", p.display()))
        };
        let identity = tonic::transport::Identity::from_pem(read("tls_cert", &self.cert)?, read("tls_key", &self.key)?);
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read("tls_client_ca", ca)?));
        }
        Ok(tls)
    }
}

/// Builds the control server: its TLS (if any) is read and checked here, so a bad
/// certificate stops the daemon at start with an error naming the key.
pub fn server(tls: Option<&ServerTls>) -> anyhow::Result<tonic::transport::Server> {
    crate::install_tls_provider();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.load()?)
            .map_err(|e| anyhow::anyhow!("control TLS ({}): {e}", tls.cert.display()))?;
    }
    Ok(builder)
}

/// Serves the API on `listener` until `stop` is cancelled; every call needs `token`.
pub async fn serve(
    mut builder: tonic::transport::Server,
    listener: TcpListener,
    job: JobHandle,
    token: Secret,
    stop: CancellationToken,
) {
    let svc = ControlServer::with_interceptor(Service { job }, bearer_check(token));
    let shutdown = stop.cancelled_owned();
    if let Err(e) = builder
        .add_service(svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
    {
        tracing::error!(error = %e, "control API stopped");
    }
}

/// A token for a daemon whose job file sets none: 32 random bytes, hex.
pub fn generate_token() -> std::io::Result<Secret> {
    use std::io::Read;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(Secret::new(raw.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Writes a generated token where the local CLI finds it, readable by the owner only.
pub fn write_token_file(path: &std::path::Path, token: &Secret) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(token.expose().as_bytes())?;
    f.sync_all()
}

/// Name of the generated token's file in `state_dir`.
pub const TOKEN_FILE: &str = "control.token";

/// A client of a daemon's control API.
pub type Client = crate::proto::control::control_client::ControlClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// How the CLI reaches a daemon over TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA to trust besides the public roots (a self-signed daemon certificate itself).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key, for a daemon that requires them.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// Connects to the daemon at `addr` (`host:port`, `http://host:port` or `https://host:port`).
pub async fn connect(addr: &str, token: Option<&Secret>, tls: &ClientTls) -> anyhow::Result<Client> {
    crate::install_tls_provider();
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| anyhow::anyhow!("control address {addr:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if uri.starts_with("https://") {
        let mut cfg = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca).map_err(|e| anyhow::anyhow!("--control-ca {}: {e}", ca.display()))?;
            cfg = cfg.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        match (&tls.cert, &tls.key) {
            (Some(c), Some(k)) => {
                let cert = std::fs::read(c).map_err(|e| anyhow::anyhow!("--control-cert {}: {e}", c.display()))?;
                let key = std::fs::read(k).map_err(|e| anyhow::anyhow!("--control-key {}: {e}", k.display()))?;
                cfg = cfg.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => anyhow::bail!("--control-cert and --control-key go together"),
        }
        endpoint = endpoint.tls_config(cfg).map_err(|e| anyhow::anyhow!("control TLS: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the ferry daemon at {addr} ({}); is `ferry run` running? (--control / FERRY_CONTROL)", crate::milvus::error_chain(&e)))?;
    let bearer = match token {
        Some(t) => {
            let mut v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {}", t.expose())
                .parse()
                .map_err(|_| anyhow::anyhow!("the control token contains characters a header cannot carry"))?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    Ok(crate::proto::control::control_client::ControlClient::with_interceptor(channel, Bearer(bearer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check_accepts_only_the_token() {
        let check = bearer_check(Secret::new("s3cret-token".to_string()));
        let with = |v: Option<&str>| {
            let mut r = Request::new(());
            if let Some(v) = v {
                r.metadata_mut().insert("authorization", v.parse().unwrap());
            }
            check(r)
        };
        assert!(with(Some("Bearer s3cret-token")).is_ok());
        let refused = with(Some("Bearer s3cret-tokeN")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains("s3cret"), "{}", refused.message());
        assert!(with(None).is_err());
        assert!(with(Some("s3cret-token")).is_err());
        assert!(with(Some("Bearer ")).is_err());
        // An empty configured token lets nothing in (a missing header reads as empty).
        let empty = bearer_check(Secret::new(String::new()));
        assert!(empty(Request::new(())).is_err());
    }

    #[test]
    fn generated_tokens_are_long_random_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_ne!(a, b);
        assert!(crate::config::check_control_token(&a).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        write_token_file(&path, &a).unwrap();
        write_token_file(&path, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), b.expose());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
