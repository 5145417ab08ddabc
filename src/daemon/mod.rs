//! `ferry run`: the long-lived service around a job.
//!
//! One daemon runs the job of its job file (several jobs are several daemons, each with its
//! own `state_dir`: see deploy/README.md). It
//!
//! - keeps the job's state machine ([`crate::job::lifecycle`]) in sled and resumes in the
//!   state it was in;
//! - serves the gRPC control API ([`control`], `proto/ferry/control.proto`) on
//!   `[control] listen`, every call bearer-token protected (`[control] token`, or a token
//!   generated at start into `state_dir/control.token`, mode 0600), over TLS when
//!   `[control] tls_cert` is set;
//! - serves `/metrics`, `/healthz` and `/readyz` ([`http`]) on `[telemetry] listen`;
//! - refreshes the gauges every second from the job's positions ([`crate::job::handle`]);
//! - on SIGTERM/SIGINT stops reading, lets in-flight batches finish (up to
//!   `[job] shutdown_timeout_s`), flushes the log and returns.
//!
//! The addresses it bound are written to `state_dir/daemon.json`, so tools (and tests that
//! use port 0) can find it.

pub mod control;
pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::JobConfig;
use crate::job::{self, JobError, RunOptions};
use crate::state::StateStore;
use crate::job::handle::{self, JobHandle};
use crate::job::lifecycle::{Event, JobState};

/// Errors that keep the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Handle(#[from] handle::HandleError),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Where a running daemon listens (`state_dir/daemon.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    pub control: String,
    pub telemetry: String,
    pub pid: u32,
    /// The control API speaks TLS (`https://`).
    #[serde(default)]
    pub control_tls: bool,
}

async fn bind(key: &'static str, addr: &str) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { key, addr: addr.into(), source })
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Runs the daemon until `shutdown` turns true.
pub async fn serve(cfg: JobConfig, opts: RunOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = StateStore::open(&cfg.job.state_dir)?;
    let handle = JobHandle::open(&cfg.job.name, store)?;
    let prometheus = match crate::metrics::install(&cfg.job.name) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
            None
        }
    };

    // Every control call needs a token: the job file's, or one generated for this run and
    // left in state_dir (0600) for the local CLI.
    let token_path = cfg.job.state_dir.join(control::TOKEN_FILE);
    let token = match &cfg.control.token {
        Some(t) => {
            let _ = std::fs::remove_file(&token_path);
            t.value.clone()
        }
        None => {
            let t = control::generate_token()
                .map_err(|source| DaemonError::Write { path: "/dev/urandom".into(), source })?;
            control::write_token_file(&token_path, &t)
                .map_err(|source| DaemonError::Write { path: token_path.display().to_string(), source })?;
            t
        }
    };
    let tls = control::ServerTls::from_config(&cfg.control);
    let control_server = control::server(tls.as_ref())?;

    let telemetry = bind("telemetry.listen", &cfg.telemetry.listen).await?;
    let control = bind("control.listen", &cfg.control.listen).await?;
    let endpoints = Endpoints {
        control: local(&control).to_string(),
        telemetry: local(&telemetry).to_string(),
        pid: std::process::id(),
        control_tls: tls.is_some(),
    };
    let path = cfg.job.state_dir.join("daemon.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&endpoints)?)
        .map_err(|source| DaemonError::Write { path: path.display().to_string(), source })?;
    tracing::info!(job = %cfg.job.name, control = %endpoints.control, telemetry = %endpoints.telemetry, "ferry daemon listening");

    // Servers stop only after the job has drained: status stays visible while it does.
    let (servers, servers_stop) = (TaskTracker::new(), CancellationToken::new());
    servers.spawn(http::serve(telemetry, handle.clone(), prometheus, servers_stop.clone()));
    servers.spawn(control::serve(control_server, control, handle.clone(), token, servers_stop.clone()));
    servers.spawn(handle.clone().sample_until(Duration::from_secs(1), servers_stop.clone()));
    servers.close();

    // A cutover does not survive its process: undo its freeze and go back to streaming.
    crate::cutover::recover(&handle, &cfg).await;

    let deadline = Duration::from_secs(cfg.job.shutdown_timeout_s);
    let runner = run_job(cfg, opts, handle.clone(), shutdown.clone());
    tokio::pin!(runner);
    tokio::select! {
        _ = &mut runner => {}
        _ = shutdown.cancelled() => {
            // A pending or running cutover is aborted and, like in-flight batches, gets the
            // deadline to finish: it restores the source's writes, and a stopped daemon must
            // not leave the application frozen.
            if handle.abort_cutover() {
                tracing::warn!("shutting down: aborting the cutover in progress");
            }
            let cutover_done = handle.cutover_tasks_done();
            tracing::info!(seconds = deadline.as_secs(), "draining in-flight batches");
            if tokio::time::timeout(deadline, async { tokio::join!(&mut runner, cutover_done) }).await.is_err() {
                tracing::warn!("drain deadline passed: stopping with batches in flight (they repeat on restart, harmlessly)");
            }
        }
    }
    servers_stop.cancel();
    servers.wait().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Runs the job whenever its state says it should run, until shutdown.
async fn run_job(cfg: JobConfig, opts: RunOptions, handle: JobHandle, shutdown: CancellationToken) {
    let mut states = handle.subscribe();
    let mut retry = Duration::from_secs(1);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let state = handle.state();
        if matches!(state, JobState::Failed | JobState::Successful | JobState::Cancelled) {
            if state != JobState::Failed {
                tracing::info!(state = %state, "job finished; serving status until stopped");
            }
            tokio::select! {
                _ = states.wait_for(|r| r.state != state) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        match job::run(&cfg, &opts, &handle, shutdown.clone()).await {
            Ok(()) => retry = Duration::from_secs(1),
            Err(e) if e.is_retryable() => {
                handle.record_error(e.collection(), e.kind(), &e.to_string());
                tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "job interrupted; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = shutdown.cancelled() => return,
                }
                retry = (retry * 2).min(Duration::from_secs(60));
            }
            Err(e) => {
                handle.record_error(e.collection(), e.kind(), &e.to_string());
                tracing::error!(error = %e, "job failed; `ferry resume` retries it");
                if let Err(t) = handle.fire(Event::Fail) {
                    tracing::error!(error = %t, "cannot mark the job FAILED");
                }
            }
        }
    }
}

impl JobError {
    /// Errors worth retrying without an operator: the servers were unreachable.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Plan(e) => e.is_retryable(),
            JobError::Copy(e) => e.is_retryable(),
            JobError::Wal(e) => e.is_retryable(),
            JobError::Apply(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The error log's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::NoWal => "config",
            JobError::Plan(_) | JobError::Copy(_) => "setup",
            JobError::State(_) | JobError::Log(_) | JobError::Handle(_) => "state",
            JobError::Wal(_) => "wal",
            JobError::Apply(_) => "apply",
            JobError::Task(_) => "internal",
            JobError::Record(_) | JobError::Recreated { .. } => "source_changed",
        }
    }

    /// The collection the error is about, when it names one.
    pub fn collection(&self) -> &str {
        match self {
            JobError::Apply(crate::apply::ApplyError::Target { collection, .. }) => collection,
            JobError::Recreated { collection, .. } => collection,
            _ => "",
        }
    }
}

/// Reads `state_dir/daemon.json` of a job file's daemon.
pub fn endpoints(cfg: &JobConfig) -> Option<Endpoints> {
    let text = std::fs::read(cfg.job.state_dir.join("daemon.json")).ok()?;
    serde_json::from_slice(&text).ok()
}
