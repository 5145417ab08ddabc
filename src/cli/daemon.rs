//! Commands that talk to a running daemon over the control API: `status`, `pause`, `resume`,
//! `cancel`, `errors` (and `cutover`, in its own file).
//!
//! The daemon is found by `--control ADDR`, else `FERRY_CONTROL`, else `--config FILE` (the
//! address the daemon of that job file wrote to `state_dir/daemon.json`), else
//! `127.0.0.1:7070`. The token comes from `FERRY_CONTROL_TOKEN` (or the job file's
//! `[control] token` with `--config`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::JobConfig;
use crate::daemon::control::{self, Client};
use crate::proto::control as api;
use crate::secret::Secret;

/// How to reach the daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Control API address (`host:port`, or `https://host:port` for a TLS listener); default
    /// `FERRY_CONTROL` or 127.0.0.1:7070.
    #[arg(long, env = "FERRY_CONTROL")]
    pub control: Option<String>,
    /// Find the daemon of this job file (its `state_dir/daemon.json`) instead; its token is
    /// the job file's `[control] token` or the daemon's generated `state_dir/control.token`.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// PEM CA that signed the daemon's TLS certificate (or that certificate itself).
    #[arg(long, env = "FERRY_CONTROL_CA")]
    pub control_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a daemon that requires one (`[control] tls_client_ca`).
    #[arg(long, env = "FERRY_CONTROL_CERT")]
    pub control_cert: Option<PathBuf>,
    /// Key of `--control-cert`.
    #[arg(long, env = "FERRY_CONTROL_KEY")]
    pub control_key: Option<PathBuf>,
}

impl ControlArgs {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let mut token = std::env::var("FERRY_CONTROL_TOKEN").ok().filter(|t| !t.is_empty()).map(Secret::new);
        let mut tls = control::ClientTls {
            ca: self.control_ca.clone(),
            cert: self.control_cert.clone(),
            key: self.control_key.clone(),
        };
        let addr = match (&self.control, &self.config) {
            (Some(a), _) => a.clone(),
            (None, Some(path)) => {
                let cfg = JobConfig::load(path)?;
                let endpoints = match crate::daemon::endpoints(&cfg) {
                    Some(e) => e,
                    None => anyhow::bail!(
                        "no daemon of {} is running ({} has no daemon.json); start it with `ferry run --config {}`",
                        path.display(),
                        cfg.job.state_dir.display(),
                        path.display()
                    ),
                };
                if token.is_none() {
                    token = match &cfg.control.token {
                        Some(t) => Some(t.value.clone()),
                        None => {
                            let file = cfg.job.state_dir.join(control::TOKEN_FILE);
                            let t = std::fs::read_to_string(&file).map_err(|e| {
                                anyhow::anyhow!("cannot read the daemon's control token {}: {e} (run as the daemon's user, or set FERRY_CONTROL_TOKEN)", file.display())
                            })?;
                            Some(Secret::new(t.trim().to_string()))
                        }
                    };
                }
                if endpoints.control_tls {
                    // A self-signed daemon certificate is its own CA.
                    if tls.ca.is_none() {
                        tls.ca = cfg.control.tls_cert.clone();
                    }
                    format!("https://{}", endpoints.control)
                } else {
                    endpoints.control
                }
            }
            (None, None) => "127.0.0.1:7070".into(),
        };
        control::connect(&addr, token.as_ref(), &tls).await
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Only this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Machine-readable output (the control API's JobStatus messages, snake_case fields).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// The job's name (`[job] name`).
    #[arg(long)]
    pub job: String,
    #[arg(long)]
    pub json: bool,
}

/// What a job command asks for.
#[derive(Debug, Clone, Copy)]
pub enum JobVerb {
    Pause,
    Resume,
    Cancel,
    Errors,
}

fn rpc_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut c = a.control.connect().await?;
    let jobs = match &a.job {
        Some(job) => vec![c.get_job(api::JobRequest { job: job.clone() }).await.map_err(rpc_error)?.into_inner()],
        None => c.list_jobs(api::ListJobsRequest {}).await.map_err(rpc_error)?.into_inner().jobs,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "jobs": jobs }))?);
    } else {
        print!("{}", render_status(&jobs, crate::job::lifecycle::now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn job_command(verb: JobVerb, a: JobArgs) -> anyhow::Result<ExitCode> {
    let mut c = a.control.connect().await?;
    let req = api::JobRequest { job: a.job.clone() };
    if let JobVerb::Errors = verb {
        let log = c.get_errors(req).await.map_err(rpc_error)?.into_inner();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&log)?);
        } else {
            print!("{}", render_errors(&log.errors));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let st = match verb {
        JobVerb::Pause => c.pause_job(req).await,
        JobVerb::Resume => c.resume_job(req).await,
        _ => c.cancel_job(req).await,
    }
    .map_err(rpc_error)?
    .into_inner();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        println!("job {}: {}", st.name, st.state);
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(now_ms: i64, then_ms: i64) -> String {
    if then_ms <= 0 {
        return "-".into();
    }
    let s = ((now_ms - then_ms).max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The compact table of `ferry status`.
pub fn render_status(jobs: &[api::JobStatus], now_ms: i64) -> String {
    let mut out = format!(
        "{:<20} {:<13} {:>8} {:>9} {:>10} {:>12} {:>6}\n",
        "JOB", "STATE", "SINCE", "LAG", "PENDING", "PENDING_MB", "ERRORS"
    );
    for j in jobs {
        out += &format!(
            "{:<20} {:<13} {:>8} {:>8.1}s {:>10} {:>12.1} {:>6}\n",
            j.name,
            j.state,
            ago(now_ms, j.state_since_ms),
            j.lag_seconds,
            j.log_pending_events,
            j.log_pending_bytes as f64 / 1e6,
            j.error_count
        );
        if !j.collections.is_empty() {
            out += &format!("  {:<28} {:<28} {:<10} {}\n", "SOURCE", "TARGET", "PHASE", "SNAPSHOT ROWS");
            for c in &j.collections {
                out += &format!(
                    "  {:<28} {:<28} {:<10} {}/{}\n",
                    c.source, c.target, c.phase, c.snapshot_rows_done, c.snapshot_rows_expected
                );
            }
        }
        if !j.cutover.is_empty() {
            out += &format!("  cutover: {}\n", j.cutover);
        }
        if let Some(e) = &j.last_error {
            out += &format!("  last error ({} ago, {}): {}\n", ago(now_ms, e.time_ms), e.kind, e.message);
        }
    }
    out
}

fn render_errors(errors: &[api::JobError]) -> String {
    if errors.is_empty() {
        return "no errors\n".into();
    }
    let now = crate::job::lifecycle::now_ms();
    errors
        .iter()
        .map(|e| {
            let coll = if e.collection.is_empty() { "-" } else { &e.collection };
            format!("{:>8} ago  {:<10} {:<20} {}\n", ago(now, e.time_ms), e.kind, coll, e.message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_state_lag_and_collections() {
        let j = api::JobStatus {
            name: "move".into(),
            state: "STREAMING".into(),
            state_since_ms: 1_000,
            lag_seconds: 1.5,
            log_pending_events: 7,
            collections: vec![api::CollectionStatus {
                source: "a".into(),
                target: "b".into(),
                phase: "stream".into(),
                snapshot_rows_done: 10,
                snapshot_rows_expected: 10,
            }],
            ..Default::default()
        };
        let t = render_status(&[j], 126_000);
        assert!(t.contains("STREAMING") && t.contains("2m05s") && t.contains("1.5s"), "{t}");
        assert!(t.contains("10/10"), "{t}");
    }

    #[test]
    fn json_uses_the_proto_field_names() {
        let j = api::JobStatus { name: "x".into(), state: "PAUSED".into(), ..Default::default() };
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["state"], "PAUSED");
        assert!(v.get("lag_seconds").is_some() && v.get("log_pending_bytes").is_some(), "{v}");
    }
}
