//! The shared handle of one job: its persisted state, its error log, and a live view of its
//! positions for status and metrics.
//!
//! The runner, the control API, the cutover and the metrics sampler all hold a [`JobHandle`].
//! Every state change goes through [`JobHandle::fire`] (the transition table, then sled, then
//! the watch that phases listen to, then the `ferry_job_state` gauge), so what status shows,
//! what is persisted and what runs never disagree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lifecycle::{now_ms, transition, Event, JobRecord, JobState, TransitionError};
use crate::log::DurableLog;
use crate::metrics as m;
use crate::proto::control as api;
use crate::copy::progress::Progress;
use crate::state::{keys, StateError, StateStore};
use crate::wal::physical_ms;

/// Entries kept in the error log; older ones are dropped.
const MAX_ERRORS: u64 = 1000;

/// Errors of state changes.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// One collection of the running job, for status.
#[derive(Debug, Clone)]
pub struct LiveCollection {
    /// Source collection ID (what the WAL names).
    pub source_id: i64,
    pub source: String,
    pub target: String,
    /// Physical DML channels the collection writes to.
    pub channels: Vec<String>,
}

/// What the job exposes once it runs: its log and snapshot progress.
#[derive(Clone)]
pub struct Live {
    pub log: DurableLog,
    pub channels: Vec<String>,
    pub collections: Vec<LiveCollection>,
    pub progress: Arc<Progress>,
    /// Clients, plan and WAL reader, for the cutover, verification and readiness probes.
    pub context: crate::job::JobContext,
    /// Wall-clock ms when the stream's start positions were recorded: until a channel has
    /// applied anything, the target trails the source by at least the time since then.
    pub started_ms: u64,
}

impl Live {
    /// Every collection of the job: planned at its start, then those followed since (a job
    /// over a whole database), dropped ones included.
    pub fn all_collections(&self) -> Vec<LiveCollection> {
        use prost::Message;
        let mut all = self.collections.clone();
        let followed = crate::job::record::followed(&self.log).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the followed collections");
            Vec::new()
        });
        for r in followed {
            if all.iter().any(|c| c.source_id == r.collection_id) {
                continue;
            }
            let channels = crate::proto::milvus::DescribeCollectionResponse::decode(&r.describe[..])
                .map(|d| d.physical_channel_names)
                .unwrap_or_default();
            all.push(LiveCollection { source_id: r.collection_id, source: r.source, target: r.target, channels });
        }
        all
    }

    /// Collections still moving: those whose source drop the stream applied
    /// (`on_source_drop = "drop"`) are done.
    pub fn active_collections(&self) -> Vec<LiveCollection> {
        let dropped = self.log.dropped();
        let mut all = self.all_collections();
        all.retain(|c| !dropped.contains(&c.source_id));
        all
    }

    /// The job's plan as it is now: less the collections the stream dropped, plus those it
    /// followed. What verification checks.
    pub fn active_plan(&self) -> crate::plan::Plan {
        let dropped = self.log.dropped();
        let mut plan = (*self.context.plan).clone();
        for r in crate::job::record::followed(&self.log).unwrap_or_default() {
            if plan.collections.iter().any(|c| c.source_id() == r.collection_id) {
                continue;
            }
            // The autoID policy does not matter to verification.
            match r.plan(&plan.target_version, crate::plan::PlanOptions { allow_autoid_off: true }) {
                Ok(c) => plan.collections.push(c),
                Err(e) => tracing::warn!(collection = %r.source, error = %e, "a followed collection's record does not plan"),
            }
        }
        plan.collections.retain(|c| !dropped.contains(&c.source_id()));
        plan
    }

    /// Channels of the collections still moving. A channel no such collection uses gets no
    /// time ticks (Milvus ticks only channels in use): it must not hold back the lag, the
    /// stall gauge or a cutover's end position.
    pub fn active_channels(&self) -> Vec<String> {
        let active = self.active_collections();
        let used: std::collections::BTreeSet<&String> = active.iter().flat_map(|c| c.channels.iter()).collect();
        self.channels.iter().filter(|ch| used.contains(ch)).cloned().collect()
    }
}

/// Positions of one channel at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelView {
    source_ms: u64,
    applied_ms: u64,
    tick_age_s: f64,
    lag_s: f64,
}

struct ActiveCutover {
    what: String,
    abort: CancellationToken,
}

struct Inner {
    name: String,
    store: StateStore,
    state: watch::Sender<JobRecord>,
    live: Mutex<Option<Live>>,
    cutover: Mutex<Option<ActiveCutover>>,
    /// The cutover's task (tracked so a shutdown waits for it to restore the source).
    cutover_tasks: TaskTracker,
    next_error: AtomicU64,
    /// Per channel: the newest source tick seen and when ferry first saw it.
    ticks: Mutex<HashMap<String, (u64, Instant)>>,
    /// How far ferry's clock is ahead of the source's TSO, as seen on fresh ticks.
    clock: Mutex<ClockOffset>,
}

/// Offsets are kept as the minimum over a window and the window before it, so a drifting
/// clock is followed within two windows (the previous run's is persisted at each window's
/// end).
const CLOCK_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a restarted daemon trusts the offset its previous run measured: long enough to
/// drain a backlog (every tick of which is old, and so says nothing about the clocks).
const PERSISTED_OFFSET_TRUST: std::time::Duration = std::time::Duration::from_secs(600);

/// The offset between ferry's wall clock and the source's time ticks: the smallest
/// `now - tick` seen, which is the source's clock difference plus the least time a tick takes
/// to reach ferry.
struct ClockOffset {
    started: Instant,
    window_start: Instant,
    current: Option<i64>,
    previous: Option<i64>,
    /// From the previous run; trusted for [`PERSISTED_OFFSET_TRUST`].
    persisted: Option<i64>,
}

impl ClockOffset {
    fn new(persisted: Option<i64>) -> Self {
        let now = Instant::now();
        ClockOffset { started: now, window_start: now, current: None, previous: None, persisted }
    }

    /// Records one observation; returns the offset to persist when it changed (a lower
    /// one, or a window's end).
    fn observe(&mut self, offset_ms: i64, now: Instant) -> Option<i64> {
        let before = self.get(now);
        if now.duration_since(self.window_start) >= CLOCK_WINDOW {
            self.previous = self.current.take();
            self.window_start = now;
            self.current = Some(offset_ms);
            return self.get(now);
        }
        self.current = Some(self.current.map_or(offset_ms, |c| c.min(offset_ms)));
        let after = self.get(now);
        (after != before).then_some(after).flatten()
    }

    /// The offset now: the smallest of this window's, the last window's and, early in a run,
    /// the previous run's.
    fn get(&self, now: Instant) -> Option<i64> {
        let persisted = self.persisted.filter(|_| now.duration_since(self.started) < PERSISTED_OFFSET_TRUST);
        [self.current, self.previous, persisted].into_iter().flatten().min()
    }
}

/// Shared handle of one job (cheap to clone).
#[derive(Clone)]
pub struct JobHandle {
    inner: Arc<Inner>,
}

impl JobHandle {
    /// Loads the job's state from `store` (PENDING when new).
    pub fn open(name: &str, store: StateStore) -> Result<Self, HandleError> {
        let record = store.get::<JobRecord>(keys::JOB_STATE)?.unwrap_or(JobRecord {
            state: JobState::Pending,
            since_ms: now_ms(),
        });
        let next_error = store
            .scan::<api::JobError>(keys::JOB_ERRORS)?
            .last()
            .and_then(|(k, _)| k[keys::JOB_ERRORS.len()..].parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let (state, _) = watch::channel(record);
        let h = JobHandle {
            inner: Arc::new(Inner {
                name: name.to_string(),
                state,
                live: Mutex::new(None),
                cutover: Mutex::new(None),
                cutover_tasks: TaskTracker::new(),
                next_error: AtomicU64::new(next_error),
                ticks: Mutex::new(HashMap::new()),
                clock: Mutex::new(ClockOffset::new(store.get::<i64>(keys::CLOCK_OFFSET).ok().flatten())),
                store,
            }),
        };
        h.publish_state(record.state);
        Ok(h)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn store(&self) -> &StateStore {
        &self.inner.store
    }

    /// Keeps `report` as the last cutover's, for status.
    pub fn save_cutover_report<T: serde::Serialize>(&self, report: &T) -> Result<(), StateError> {
        self.inner.store.put(keys::CUTOVER_REPORT, report)
    }

    pub fn state(&self) -> JobState {
        self.inner.state.borrow().state
    }

    /// Changes with every transition.
    pub fn subscribe(&self) -> watch::Receiver<JobRecord> {
        self.inner.state.subscribe()
    }

    /// Applies `event`: checks the table, persists, then tells every phase.
    pub fn fire(&self, event: Event) -> Result<JobState, HandleError> {
        let mut result = Ok(JobState::Pending);
        self.inner.state.send_if_modified(|rec| {
            match transition(rec.state, event) {
                Ok(to) => {
                    let next = JobRecord { state: to, since_ms: now_ms() };
                    if let Err(e) = self.inner.store.put(keys::JOB_STATE, &next) {
                        result = Err(HandleError::State(e));
                        return false;
                    }
                    tracing::info!(job = %self.inner.name, from = %rec.state, to = %to, "job state");
                    *rec = next;
                    result = Ok(to);
                    true
                }
                Err(e) => {
                    result = Err(HandleError::Transition(e));
                    false
                }
            }
        });
        if let Ok(to) = result {
            self.publish_state(to);
        }
        result
    }

    fn publish_state(&self, current: JobState) {
        for s in JobState::ALL {
            metrics::gauge!(m::JOB_STATE, "phase" => s.as_str()).set(if s == current { 1.0 } else { 0.0 });
        }
    }

    /// Appends to the job's error log (kept in sled; the newest [`MAX_ERRORS`]).
    pub fn record_error(&self, collection: &str, kind: &str, message: &str) {
        let seq = self.inner.next_error.fetch_add(1, Ordering::Relaxed);
        let entry = api::JobError {
            time_ms: now_ms(),
            collection: collection.to_string(),
            kind: kind.to_string(),
            message: message.to_string(),
        };
        metrics::counter!(m::JOB_ERRORS, "kind" => kind.to_string()).increment(1);
        let store = &self.inner.store;
        if let Err(e) = store.put(&keys::job_error(seq), &entry) {
            tracing::error!(error = %e, "cannot persist the job's error log");
        }
        if seq >= MAX_ERRORS {
            let _ = store.remove(&keys::job_error(seq - MAX_ERRORS));
        }
    }

    /// The error log, oldest first.
    pub fn errors(&self) -> Result<Vec<api::JobError>, StateError> {
        Ok(self.inner.store.scan::<api::JobError>(keys::JOB_ERRORS)?.into_iter().map(|(_, e)| e).collect())
    }

    /// Publishes the running job's log and progress (status and metrics read them).
    pub fn set_live(&self, live: Live) {
        if let Ok(mut l) = self.inner.live.lock() {
            *l = Some(live);
        }
    }

    pub fn live(&self) -> Option<Live> {
        self.inner.live.lock().ok().and_then(|l| l.clone())
    }

    /// Registers a cutover; `None` when one is already pending or running. The token is
    /// cancelled when the cutover is aborted.
    pub fn begin_cutover(&self, what: &str) -> Option<CancellationToken> {
        let mut c = self.inner.cutover.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_some() {
            return None;
        }
        let abort = CancellationToken::new();
        *c = Some(ActiveCutover { what: what.to_string(), abort: abort.clone() });
        Some(abort)
    }

    /// Updates what status shows about the running cutover.
    pub fn update_cutover(&self, what: &str) {
        if let Some(c) = self.inner.cutover.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            c.what = what.to_string();
        }
    }

    pub fn end_cutover(&self) {
        *self.inner.cutover.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Where a cutover's task runs: [`JobHandle::cutover_tasks_done`] waits for it.
    pub fn cutover_tasks(&self) -> &TaskTracker {
        &self.inner.cutover_tasks
    }

    /// Resolves once no cutover task runs (for a shutdown; later cutovers are not waited for).
    pub async fn cutover_tasks_done(&self) {
        self.inner.cutover_tasks.close();
        self.inner.cutover_tasks.wait().await;
    }

    /// Asks the running cutover to abort; false when there is none.
    pub fn abort_cutover(&self) -> bool {
        match self.inner.cutover.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(c) => {
                c.abort.cancel();
                true
            }
            None => false,
        }
    }

    fn channel_view(&self, live: &Live, ch: &str, now: Instant) -> ChannelView {
        let log = &live.log;
        let (src, applied) = (log.source_ts(ch), log.applied_ts(ch));
        let wall_ms = now_ms();
        let tick_age_s = {
            let mut ticks = self.inner.ticks.lock().unwrap_or_else(|p| p.into_inner());
            let seen = ticks.entry(ch.to_string()).or_insert((src, now));
            if seen.0 != src {
                *seen = (src, now);
                if src != 0 {
                    let mut clock = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(best) = clock.observe(wall_ms - physical_ms(src) as i64, now) {
                        let _ = self.inner.store.put(keys::CLOCK_OFFSET, &best);
                    }
                }
            }
            now.duration_since(seen.1).as_secs_f64()
        };
        let source_ms = physical_ms(src).max(live.started_ms);
        let applied_ms = physical_ms(applied).max(live.started_ms.min(source_ms));
        // Everything below the newest tick is owed; the tick's own age is time the reader
        // has not heard from the source, so it is owed too. Both parts are monotone while
        // stalled, and after a restart they start from the persisted positions.
        let read_lag_s = source_ms.saturating_sub(applied_ms) as f64 / 1000.0 + tick_age_s;
        // What the broker holds unread is owed too, and no tick read says how much: after a
        // restart the reader races through minutes of backlog with every tick fresh to it.
        // The source's "now" is ferry's clock less the measured offset, so the applied
        // position's distance from it counts, unread backlog included.
        let clock_lag_s = self
            .inner
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(now)
            .map_or(0.0, |offset| (wall_ms - offset - applied_ms as i64).max(0) as f64 / 1000.0);
        let lag_s = read_lag_s.max(clock_lag_s);
        ChannelView { source_ms, applied_ms, tick_age_s, lag_s }
    }

    /// The job's status now (also refreshes the metrics it is made of).
    pub fn status(&self) -> api::JobStatus {
        let rec = *self.inner.state.borrow();
        let errors = self.errors().unwrap_or_default();
        let mut st = api::JobStatus {
            name: self.inner.name.clone(),
            state: rec.state.as_str().into(),
            state_since_ms: rec.since_ms,
            error_count: errors.len() as u64,
            last_error: errors.last().cloned(),
            cutover: self
                .inner
                .cutover
                .lock()
                .map(|c| c.as_ref().map(|c| c.what.clone()).unwrap_or_default())
                .unwrap_or_default(),
            last_cutover_report: self
                .inner
                .store
                .get::<serde_json::Value>(keys::CUTOVER_REPORT)
                .ok()
                .flatten()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let Some(live) = self.live() else {
            return st;
        };
        let now = Instant::now();
        let channels = live.active_channels();
        let views: HashMap<&str, ChannelView> =
            channels.iter().map(|ch| (ch.as_str(), self.channel_view(&live, ch, now))).collect();
        let positions = live.log.positions();
        for ch in &channels {
            let v = views[ch.as_str()];
            st.channels.push(api::ChannelStatus {
                channel: ch.clone(),
                source_position_ms: v.source_ms as i64,
                applied_position_ms: v.applied_ms as i64,
                lag_seconds: v.lag_s,
                pending_events: live.log.channel_pending_events(ch),
                next_offset: positions.get(ch).map_or(0, |p| p.next_offset),
            });
        }
        let worst = |f: fn(&ChannelView) -> f64| views.values().map(f).fold(0.0, f64::max);
        st.lag_seconds = worst(|v| v.lag_s);
        st.applied_position_ms = views.values().map(|v| v.applied_ms).min().unwrap_or(0) as i64;
        st.source_position_ms = views.values().map(|v| v.source_ms).min().unwrap_or(0) as i64;
        st.log_pending_events = live.log.pending_events();
        st.log_pending_bytes = live.log.pending_bytes();
        let progress: HashMap<String, (u64, u64)> = live
            .progress
            .list()
            .into_iter()
            .map(|c| (c.collection.clone(), (c.rows(), c.expected.load(Ordering::Relaxed))))
            .collect();
        let phase = match rec.state {
            JobState::Snapshotting => "snapshot",
            s if s.applies() => "stream",
            s => s.as_str(),
        };
        let dropped = live.log.dropped();
        let all = live.all_collections();
        for c in &all {
            let (done, expected) = progress.get(&c.target).copied().unwrap_or_default();
            let phase = if dropped.contains(&c.source_id) { "dropped" } else { phase };
            st.collections.push(api::CollectionStatus {
                source: c.source.clone(),
                target: c.target.clone(),
                phase: phase.to_lowercase(),
                snapshot_rows_done: done,
                snapshot_rows_expected: expected,
            });
        }

        // The same numbers as metrics.
        metrics::gauge!(m::SOURCE_TICK_AGE).set(worst(|v| v.tick_age_s));
        metrics::gauge!(m::SOURCE_POSITION).set(st.source_position_ms as f64 / 1000.0);
        metrics::gauge!(m::APPLIED_POSITION).set(st.applied_position_ms as f64 / 1000.0);
        metrics::gauge!(m::LOG_PENDING_EVENTS).set(st.log_pending_events as f64);
        metrics::gauge!(m::LOG_PENDING_BYTES).set(st.log_pending_bytes as f64);
        for c in all.iter().filter(|c| dropped.contains(&c.source_id)) {
            // Nothing is owed for a dropped collection: its last value must not linger.
            metrics::gauge!(m::LAG_SECONDS, "collection" => c.target.clone()).set(0.0);
        }
        for c in all.iter().filter(|c| !dropped.contains(&c.source_id)) {
            let lag = c.channels.iter().filter_map(|ch| views.get(ch.as_str())).map(|v| v.lag_s).fold(0.0, f64::max);
            metrics::gauge!(m::LAG_SECONDS, "collection" => c.target.clone()).set(lag);
            let (done, expected) = progress.get(&c.target).copied().unwrap_or_default();
            metrics::gauge!(m::SNAPSHOT_ROWS_DONE, "collection" => c.target.clone()).set(done as f64);
            metrics::gauge!(m::SNAPSHOT_ROWS_EXPECTED, "collection" => c.target.clone()).set(expected as f64);
        }
        st
    }

    /// Refreshes the metrics every `every` until `stop` is cancelled.
    pub async fn sample_until(self, every: std::time::Duration, stop: CancellationToken) {
        loop {
            let _ = self.status();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_offset_is_the_least_seen_and_follows_drift() {
        let mut c = ClockOffset::new(None);
        let t0 = c.window_start;
        assert_eq!(c.get(t0), None);
        assert_eq!(c.observe(300, t0), Some(300));
        assert_eq!(c.observe(120, t0), Some(120));
        assert_eq!(c.observe(500, t0), None, "a slower tick changes nothing");
        // Two windows later only what was seen since counts: the clocks drifted.
        let t1 = t0 + CLOCK_WINDOW;
        c.observe(900, t1);
        assert_eq!(c.get(t1), Some(120), "the last window still counts");
        let t2 = t1 + CLOCK_WINDOW;
        c.observe(950, t2);
        assert_eq!(c.get(t2), Some(900));
    }

    /// A restarted daemon reading a backlog sees only old ticks (huge offsets): the previous
    /// run's offset stands until it has caught up, for a while, not forever.
    #[test]
    fn the_previous_runs_offset_covers_a_backlog_for_a_while() {
        let mut c = ClockOffset::new(Some(150));
        let t0 = c.started;
        assert_eq!(c.get(t0), Some(150));
        c.observe(120_000, t0);
        assert_eq!(c.get(t0), Some(150));
        let later = t0 + PERSISTED_OFFSET_TRUST + Duration::from_secs(1);
        c.observe(200, later);
        assert_eq!(c.get(later), Some(200));
    }
}
