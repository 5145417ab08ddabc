//! The runbook's steps, in the order the module doc lists them: [`Run::execute`] runs them
//! and, on any failure or abort, undoes the freeze and returns the job to STREAMING.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::job::handle::{JobHandle, Live};
use crate::job::lifecycle::{now_ms, Event, JobState};
use crate::log::FenceWatch;
use crate::copy::finish::{self, Finish, IndexMode};
use crate::milvus::Grant;
use crate::plan::Plan;
use crate::proto::control as api;
use crate::verify::{self, VerifyOptions};
use crate::wal::physical_ms;

use super::freeze::{restore_writes, run_command, Frozen, RBAC_SETTLE, WRITE_PRIVILEGES};
use crate::state::keys;
use super::{breach_summary, CutoverPlan, CutoverReport, Freeze, StepReport};

/// Why a step stopped the cutover.
struct Stop(String);

/// One cutover: the job, its live state, the client's events, the abort flag, and the report
/// being built.
pub(super) struct Run {
    job: JobHandle,
    live: Live,
    pub(super) tx: mpsc::Sender<api::CutoverEvent>,
    abort: CancellationToken,
    report: CutoverReport,
}

impl Run {
    pub(super) fn new(job: JobHandle, live: Live, tx: mpsc::Sender<api::CutoverEvent>, abort: CancellationToken) -> Self {
        let report = CutoverReport { job: job.name().to_string(), started_ms: now_ms(), ..Default::default() };
        Run { job, live, tx, abort, report }
    }

    pub(super) fn event(step: &str, status: &str, message: &str, seconds: f64, report: Option<&CutoverReport>) -> api::CutoverEvent {
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
        if self.abort.is_cancelled() {
            Err(Stop("aborted by the operator".into()))
        } else {
            Ok(())
        }
    }

    /// Sleeps up to `d`, returning early (with an error) on abort.
    async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.abort.cancelled() => {}
        }
        self.aborted()
    }

    pub(super) async fn execute(&mut self, plan: &CutoverPlan) -> CutoverReport {
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
        if self.job.store().get::<Frozen>(keys::FROZEN).ok().flatten().is_some() {
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
                self.job.store().put(keys::FROZEN, &f).map_err(|e| Stop(e.to_string()))?;
                run_command(freeze, "freeze", &self.live.context.cfg.cutover).await.map_err(Stop)?;
                self.step_done("freeze", "ok", "freeze command succeeded".into(), t);
            }
            Freeze::Rbac { roles } => {
                let revoke = self.write_grants(roles).await?;
                // Persisted before revoking: a crash between the two is undone on restart
                // (re-granting what is still granted is harmless).
                let f = Frozen { freeze: "rbac".into(), unfreeze_command: None, revoked: revoke.clone() };
                self.job.store().put(keys::FROZEN, &f).map_err(|e| Stop(e.to_string()))?;
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
        let plan_now = self.live.active_plan();
        let result = verify::verify(&ctx.source, &ctx.target, &plan_now, &opts, self.abort.child_token()).await;
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
        let f = Finish { index: IndexMode::Copy, flush: false, count: false, keep_loaded: plan.load };
        finish::finish_targets(&self.live.context.target, &plan_now.collections, f)
            .await
            .map_err(|e| Stop(e.to_string()))?;
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
        let _ = self.job.store().remove(keys::FROZEN);
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
