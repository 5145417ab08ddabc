//! `ferry cutover`: asks the daemon to run the cutover runbook and prints each step as it
//! goes, then the report. The cutover runs in the daemon: if this command is interrupted,
//! it goes on (`ferry status` shows it; `ferry cutover --abort` stops it).

use std::process::ExitCode;
use std::time::Duration;

use super::daemon::ControlArgs;
use crate::cutover::{render, CutoverReport};
use crate::proto::control as api;

#[derive(Debug, clap::Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// The job's name (`[job] name`).
    #[arg(long)]
    pub job: String,
    /// Lag bound before freezing the source.
    #[arg(long, default_value_t = 1000)]
    pub max_lag_ms: u64,
    /// How long to wait for the lag bound, and for the drain (e.g. 90s, 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: Duration,
    /// How to stop the source's writers: none (already stopped), command (the daemon's job
    /// file `[cutover] freeze_command`, undone by its `unfreeze_command`), rbac (revoke the
    /// write privileges of `[cutover] rbac_roles`). Commands are never sent from here.
    #[arg(long, default_value = "none", value_parser = ["none", "command", "rbac"])]
    pub freeze: String,
    /// Start at this time (RFC 3339, e.g. 2026-11-23T03:00:00Z); the daemon holds until then.
    #[arg(long)]
    pub at: Option<String>,
    /// Hold while this file exists (remove it to proceed).
    #[arg(long)]
    pub postpone_flag: Option<String>,
    /// counts: row counts per collection and partition; full: every key and row digest.
    #[arg(long, default_value = "counts", value_parser = ["counts", "full"])]
    pub verify: String,
    /// Load the target collections after verification.
    #[arg(long)]
    pub load: bool,
    /// Check preconditions and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Abort the job's pending or running cutover instead.
    #[arg(long, conflicts_with = "dry_run")]
    pub abort: bool,
    /// Print the report as JSON (steps still go to stderr).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: CutoverArgs) -> anyhow::Result<ExitCode> {
    let mut c = a.control.connect().await?;
    if a.abort {
        let st = c
            .abort_cutover(api::JobRequest { job: a.job.clone() })
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?
            .into_inner();
        println!("cutover of job {} aborting (job is {})", st.name, st.state);
        return Ok(ExitCode::SUCCESS);
    }
    let req = api::CutoverRequest {
        job: a.job.clone(),
        max_lag_ms: a.max_lag_ms,
        timeout_s: a.timeout.as_secs().clamp(1, 86_400),
        freeze: a.freeze.clone(),
        freeze_command: String::new(),
        unfreeze_command: String::new(),
        at: a.at.clone().unwrap_or_default(),
        postpone_flag: a.postpone_flag.clone().unwrap_or_default(),
        verify: a.verify.clone(),
        dry_run: a.dry_run,
        load: a.load,
    };
    let mut events = c.cutover(req).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?.into_inner();
    let mut report: Option<CutoverReport> = None;
    while let Some(ev) = events.message().await.map_err(|e| anyhow::anyhow!("cutover stream: {}", e.message()))? {
        if !ev.report_json.is_empty() {
            report = Some(serde_json::from_str(&ev.report_json)?);
            continue;
        }
        eprintln!("[{:<13}] {:<8} {:>8.3}s {}", ev.step, ev.status, ev.seconds, ev.message);
    }
    let Some(report) = report else {
        anyhow::bail!("the daemon closed the cutover stream without a report; see `ferry status` and `ferry errors`");
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.outcome == "aborted" { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
