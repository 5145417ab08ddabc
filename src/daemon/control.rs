//! The gRPC control API (`proto/ferry/control.proto`): server side in the daemon, and the
//! client the CLI uses.
//!
//! Authentication: with `[control] token` set, every call must carry
//! `authorization: Bearer <token>`; the comparison is constant-time and a refusal never
//! echoes what was sent.

use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::handle::{HandleError, JobHandle};
use super::lifecycle::{Event, JobState};
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
    job.store().get::<bool>(crate::job::SNAPSHOT_DONE).ok().flatten().unwrap_or(false)
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

fn bearer_check(token: Option<Secret>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(want) = &token else {
            return Ok(req);
        };
        let got = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(got.as_bytes(), want.expose().as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong control token (set FERRY_CONTROL_TOKEN)"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the API on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, job: JobHandle, token: Option<Secret>, mut stop: watch::Receiver<bool>) {
    let svc = ControlServer::with_interceptor(Service { job }, bearer_check(token));
    let shutdown = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
    {
        tracing::error!(error = %e, "control API stopped");
    }
}

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

/// Connects to the daemon at `addr` (`host:port` or `http://host:port`).
pub async fn connect(addr: &str, token: Option<&Secret>) -> anyhow::Result<Client> {
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let channel = tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| anyhow::anyhow!("control address {addr:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the ferry daemon at {addr} ({e}); is `ferry run` running? (--control / FERRY_CONTROL)"))?;
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
        let check = bearer_check(Some(Secret::new("s3cret-token".to_string())));
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
        assert!(bearer_check(None)(Request::new(())).is_ok());
    }
}
