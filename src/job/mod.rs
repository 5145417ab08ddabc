//! A zero-downtime job (`ferry run`): snapshot, then stream, until stopped.
//!
//! The job owns its [`handle`] (persisted state, error log, live positions, shared by the
//! runner, the control API, the cutover and the metrics sampler) and its state machine
//! ([`lifecycle`]); [`record`] fixes its collections by ID at the start and [`follow`] takes
//! on collections created while a whole-database job runs. `crate::daemon` serves them.
//!
//! # The handoff
//! 1. Before any row is copied, the Kafka high watermark of every DML channel the job's
//!    collections use is stored as the log's start position (once; a restart keeps it).
//! 2. Ingest starts at once: WAL records from those positions go into the durable log while
//!    the snapshot copies (the log buffers them; nothing is applied yet).
//! 3. The snapshot copies every row, reading at a guarantee timestamp taken after step 1, so
//!    it sees at least everything before the start positions (and maybe later writes).
//! 4. Only when the snapshot is complete do the appliers replay the log from the start
//!    positions, in order. A key's final state is its last write in the WAL after the start
//!    position, or, if there is none, its state at the start: which the snapshot copied.
//!    Replaying a write the snapshot already saw is harmless (upserts and deletes by key), so
//!    the target converges to the source however writes interleave with the copy.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::apply::{Applier, ApplyConfig, ApplyError, Barriers, CollectionRoute, Follow, Routes};
use crate::config::{JobConfig, WalConfig};
use handle::{HandleError, JobHandle, Live, LiveCollection};
use lifecycle::{Event, JobRecord, JobState};
use crate::milvus::MilvusClient;
use crate::log::{ChannelPosition, DurableLog, LogConfig, LogError};
use crate::copy::finish::{self, Finish, IndexMode};
use crate::copy::progress::Progress;
use crate::copy::{self, CopyError, CopyOptions, Copier};
use crate::plan::{self, IfExists, Plan, PlanError, PlanOptions};
use crate::sources::query::{self, QueryReader};
use crate::state::keys::{PARTITIONS_PENDING, SNAPSHOT_DONE, STARTED, STARTED_MS};
use crate::state::{StateError, StateStore};
use crate::wal::{self, CollectionFilter, IngestConfig, WalError, WalReader};

pub mod follow;
pub mod handle;
pub mod lifecycle;
pub mod record;

/// Errors that stop a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job file: [source.wal] is required for zero-downtime mode (brokers of the source's Kafka)")]
    NoWal,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("reading the source WAL: {0}")]
    Wal(#[from] WalError),
    #[error("applying to the target: {0}")]
    Apply(#[from] ApplyError),
    #[error("task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error("job record: {0}")]
    Record(String),
    #[error("source collection {collection:?} is not the one this job started with (ID {was}, now ID {now}): it was dropped and re-created, or another collection was renamed to it. ferry does not follow it; start a new job (another state_dir) to move it")]
    Recreated { collection: String, was: i64, now: i64 },
}

/// Options of `ferry run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub if_exists: IfExists,
    pub index: IndexMode,
    pub allow_autoid_off: bool,
    pub quiet: bool,
}


/// What a running job shares with the cutover and the control API.
#[derive(Clone)]
pub struct JobContext {
    pub cfg: JobConfig,
    pub source: MilvusClient,
    pub target: MilvusClient,
    pub plan: Arc<Plan>,
    pub reader: WalReader,
}

/// The stop of one phase: a child of the shutdown token, cancelled too once the job's state
/// leaves the phase's states. Dropping it ends the watch on the state.
struct PhaseStop {
    token: CancellationToken,
    _watch: DropGuard,
}

fn phase_stop(handle: &JobHandle, shutdown: &CancellationToken, keep: fn(JobState) -> bool) -> PhaseStop {
    let token = shutdown.child_token();
    let (mut states, watched) = (handle.subscribe(), token.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = watched.cancelled() => {}
            _ = states.wait_for(|r| !keep(r.state)) => watched.cancel(),
        }
    });
    PhaseStop { _watch: token.clone().drop_guard(), token }
}

/// Runs a zero-downtime job in whatever state `handle` says, until `shutdown` turns true,
/// the job reaches a state where nothing runs (FAILED, SUCCESSFUL, CANCELLED), or
/// something fails (the caller records the error and fails the job).
pub async fn run(cfg: &JobConfig, opts: &RunOptions, handle: &JobHandle, shutdown: CancellationToken) -> Result<(), JobError> {
    let job = Job::open(cfg, opts, handle, shutdown).await?;
    let (mut plan, channels) = job.record().await?;
    let reader = job.start_positions(&mut plan, &channels).await?;
    let job = job.prepare_targets(plan, channels, reader).await?;
    job.go_live()?;
    job.stream().await
}

/// What the steps of one run share, from the connections on.
struct Job<'a> {
    cfg: &'a JobConfig,
    opts: &'a RunOptions,
    handle: &'a JobHandle,
    shutdown: CancellationToken,
    wal_cfg: WalConfig,
    source: MilvusClient,
    target: MilvusClient,
    state: StateStore,
    log: DurableLog,
    plan_opts: PlanOptions,
    progress: Arc<Progress>,
    whole_database: bool,
}

impl<'a> Job<'a> {
    /// Checks the job file, starts a PENDING job, connects and opens the log.
    async fn open(cfg: &'a JobConfig, opts: &'a RunOptions, handle: &'a JobHandle, shutdown: CancellationToken) -> Result<Job<'a>, JobError> {
        let wal_cfg = cfg.source.wal.clone().ok_or(JobError::NoWal)?;
        if cfg.source.storage.is_some() {
            tracing::warn!("[source.storage] is used by `ferry migrate` only: this job's snapshot reads the source by query");
        }
        if handle.state() == JobState::Pending {
            handle.fire(Event::Start)?;
        }
        let (source, target) = plan::connect(cfg).await?;
        let state = handle.store().clone();
        let mut log_cfg = LogConfig::new(cfg.job.state_dir.join("log"));
        log_cfg.max_pending_bytes = cfg.stream.log_max_bytes;
        // sled locks its directory for as long as the process holds the log: a run retried in
        // this process (after a retryable error, or `ferry resume` of a FAILED job) reuses the
        // log the previous run opened instead of failing to open it again.
        let log = match handle.live() {
            Some(live) => live.log,
            None => DurableLog::open(&log_cfg)?,
        };
        Ok(Job {
            cfg,
            opts,
            handle,
            shutdown,
            wal_cfg,
            source,
            target,
            state,
            log,
            plan_opts: PlanOptions { allow_autoid_off: opts.allow_autoid_off },
            progress: Progress::new(opts.quiet),
            whole_database: cfg.collections.is_empty(),
        })
    }

    /// Fixes the job's collections (by ID, see the [`record`] module) and the channels it reads.
    async fn record(&self) -> Result<(Plan, Vec<String>), JobError> {
        let (cfg, state) = (self.cfg, &self.state);
        // Until the start positions are recorded and the partitions looked at again after them
        // (`record::refresh_partitions`), that look is pending: a crash in between repeats it.
        if !state.get::<bool>(STARTED)?.unwrap_or(false) {
            state.put(PARTITIONS_PENDING, &true)?;
        }
        // A job over a whole database reads every DML channel (a collection created while it
        // runs may use any) and records its start positions before it lists the collections:
        // one created after the listing has its CreateCollection on the WAL past them.
        let every_channel = self.whole_database.then(|| self.wal_cfg.all_channels());
        if let Some(channels) = &every_channel {
            let reader = WalReader::from_config(&self.wal_cfg, channels.clone(), &cfg.job.state_dir);
            record_start(&reader, &self.source, &self.log, state, channels).await?;
        }
        let snapshot_done = state.get::<bool>(SNAPSHOT_DONE)?.unwrap_or(false);
        let plan = record::plan(&self.source, &self.target, cfg, self.plan_opts, state, &self.log, snapshot_done).await?;
        crate::failpoint::hit("job.after_record");
        metrics::gauge!(crate::metrics::LOG_MAX_BYTES).set(cfg.stream.log_max_bytes as f64);
        let channels: Vec<String> = every_channel.unwrap_or_else(|| {
            plan.collections.iter().flat_map(|c| c.channels()).collect::<BTreeSet<_>>().into_iter().collect()
        });
        Ok((plan, channels))
    }

    /// Start positions, before the snapshot reads anything (a whole database's are recorded
    /// already: this finds them); then, on the first run, the partitions as they are at the
    /// start (see `record::refresh_partitions`).
    async fn start_positions(&self, plan: &mut Plan, channels: &[String]) -> Result<WalReader, JobError> {
        let state = &self.state;
        let reader = WalReader::from_config(&self.wal_cfg, channels.to_vec(), &self.cfg.job.state_dir);
        record_start(&reader, &self.source, &self.log, state, channels).await?;
        if state.get::<bool>(PARTITIONS_PENDING)?.unwrap_or(false) {
            record::refresh_partitions(&self.source, plan, state).await?;
            state.put(PARTITIONS_PENDING, &false)?;
        }
        Ok(reader)
    }

    /// Creates (or checks) the target collections; from here on the plan is fixed.
    async fn prepare_targets(self, plan: Plan, channels: Vec<String>, reader: WalReader) -> Result<Prepared<'a>, JobError> {
        let fresh = copy::prepare_targets(&self.target, &plan, &self.state, self.opts.if_exists).await?;
        let plan = Arc::new(plan);
        let routes: Routes = plan
            .collections
            .iter()
            .map(|c| {
                (
                    c.source_id(),
                    CollectionRoute {
                        target_collection: c.target_name.clone(),
                        pk_field: c.pk_field.clone(),
                        partition_key: c.partition_key,
                        partitions: c.partitions.clone(),
                    },
                )
            })
            .collect();
        let apply_cfg = ApplyConfig {
            max_batch_bytes: self.cfg.stream.batch_bytes,
            drop_on_source_drop: self.cfg.stream.on_source_drop == "drop",
            ..Default::default()
        };
        let follow = self.whole_database.then(|| {
            Follow::new(
                channels.iter().cloned().collect(),
                follow::hook(follow::Context {
                    source: self.source.clone(),
                    target: self.target.clone(),
                    state: self.state.clone(),
                    log: self.log.clone(),
                    opts: self.plan_opts,
                    index: self.opts.index,
                }),
            )
        });
        Ok(Prepared { job: self, plan, channels, reader, fresh, routes, apply_cfg, follow })
    }
}

/// The job once its targets are prepared: what it copies, reads and applies.
struct Prepared<'a> {
    job: Job<'a>,
    plan: Arc<Plan>,
    channels: Vec<String>,
    reader: WalReader,
    /// Per collection of the plan: whether its target started empty under this job.
    fresh: Vec<bool>,
    routes: Routes,
    apply_cfg: ApplyConfig,
    /// A whole database's job takes on collections created while it runs.
    follow: Option<Follow>,
}

impl Prepared<'_> {
    /// Shows the job to the control API, the cutover and the metrics sampler.
    fn go_live(&self) -> Result<(), JobError> {
        let (job, plan) = (&self.job, &self.plan);
        let (handle, state) = (job.handle, &job.state);
        handle.set_live(Live {
            log: job.log.clone(),
            channels: self.channels.clone(),
            collections: plan
                .collections
                .iter()
                .map(|c| LiveCollection {
                    source_id: c.source_id(),
                    source: c.source_name.clone(),
                    target: c.target_name.clone(),
                    channels: c.channels(),
                })
                .collect(),
            progress: job.progress.clone(),
            started_ms: state.get::<u64>(STARTED_MS)?.unwrap_or(0),
            context: JobContext {
                cfg: job.cfg.clone(),
                source: job.source.clone(),
                target: job.target.clone(),
                plan: plan.clone(),
                reader: self.reader.clone(),
            },
        });

        // A job whose snapshot finished before a crash picks up in STREAMING.
        if handle.state() == JobState::Snapshotting && state.get::<bool>(SNAPSHOT_DONE)?.unwrap_or(false) {
            handle.fire(Event::SnapshotDone)?;
        }
        Ok(())
    }

    /// Ingest, and the phases as the state says, until shutdown or a state where nothing runs.
    async fn stream(&self) -> Result<(), JobError> {
        let mut ingest = self.ingest();
        let reporter = tokio::spawn(report_lag(self.job.handle.clone(), self.job.shutdown.clone().cancelled_owned()));
        let phases = self.phases();
        tokio::pin!(phases);
        let mut ingest_done = false;
        let result = tokio::select! {
            r = &mut phases => r,
            r = &mut ingest => {
                ingest_done = true;
                match r {
                    // Ingest stops by itself only when the job reached a state where nothing
                    // runs; the phases see the same state and return.
                    Ok(Ok(())) => phases.await,
                    Ok(Err(e)) => Err(JobError::Wal(e)),
                    Err(e) => Err(JobError::Task(e.to_string())),
                }
            }
        };
        if !ingest_done {
            ingest.abort();
            let _ = ingest.await;
        }
        reporter.abort();
        self.job.log.flush().await?;
        result
    }

    /// Ingest runs from now on, whatever the phase (paused included: the log buffers up to
    /// its bound), until the job stops for good or the daemon shuts down.
    fn ingest(&self) -> tokio::task::JoinHandle<Result<(), WalError>> {
        // A job over a whole database keeps every record: which collections are its own is
        // decided at apply time (a CreateCollection record names no database).
        let filter = if self.job.whole_database {
            CollectionFilter::All
        } else {
            CollectionFilter::Only(self.plan.collections.iter().map(|c| c.source_id()).collect::<HashSet<i64>>())
        };
        let ingest_stop = phase_stop(self.job.handle, &self.job.shutdown, |s| !matches!(s, JobState::Failed | JobState::Successful | JobState::Cancelled));
        let (reader, log) = (self.reader.clone(), self.job.log.clone());
        tokio::spawn(async move {
            let stop = ingest_stop.token.clone().cancelled_owned();
            let r = wal::ingest(&reader, &log, filter, &IngestConfig::default(), stop).await;
            drop(ingest_stop);
            r
        })
    }

    /// The phases, as the state says, until shutdown or a state where nothing runs.
    async fn phases(&self) -> Result<(), JobError> {
        let handle = self.job.handle;
        let mut states = handle.subscribe();
        loop {
            if self.job.shutdown.is_cancelled() {
                return Ok(());
            }
            match handle.state() {
                JobState::Pending => {
                    handle.fire(Event::Start)?;
                }
                JobState::Snapshotting => self.snapshot().await?,
                s if s.applies() => self.apply().await?,
                JobState::Paused => self.paused(&mut states).await,
                _ => return Ok(()),
            }
        }
    }

    /// Copies every row (see [`snapshot_all`]) until done or the job leaves SNAPSHOTTING.
    async fn snapshot(&self) -> Result<(), JobError> {
        let Job { cfg, handle, shutdown, source, target, state, progress, opts, .. } = &self.job;
        let stop = phase_stop(handle, shutdown, |s| s == JobState::Snapshotting);
        let copier = Copier {
            target: target.clone(),
            state: state.clone(),
            opts: CopyOptions::from(&cfg.copy),
            progress: progress.clone(),
            shutdown: stop.token.clone(),
        };
        match snapshot_all(&copier, source, &self.plan, &self.fresh, opts.index).await {
            Ok(()) => {
                state.put(SNAPSHOT_DONE, &true)?;
                tracing::info!("snapshot complete: streaming");
                handle.fire(Event::SnapshotDone)?;
            }
            Err(JobError::Copy(CopyError::Interrupted)) if stop.token.is_cancelled() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Replays the log onto the target, an applier per channel, until the job leaves the
    /// states that apply.
    async fn apply(&self) -> Result<(), JobError> {
        let Job { handle, shutdown, target, log, .. } = &self.job;
        let stop = phase_stop(handle, shutdown, JobState::applies);
        let mut tasks = tokio::task::JoinSet::new();
        let barriers = Barriers::new(
            log.clone(),
            self.plan.collections.iter().map(|c| (c.source_id(), c.channels().into_iter().collect())).collect(),
        );
        for ch in &self.channels {
            let mut applier = Applier::new(ch.clone(), log.clone(), target.clone(), self.routes.clone(), self.apply_cfg.clone())
                .with_barriers(barriers.clone());
            if let Some(f) = &self.follow {
                applier = applier.with_follow(f.clone());
            }
            let stop = stop.token.clone().cancelled_owned();
            tasks.spawn(async move { applier.run(stop).await });
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tasks.abort_all();
                    return Err(JobError::from(e));
                }
                Err(e) => {
                    tasks.abort_all();
                    return Err(JobError::Task(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Waits while PAUSED (or until shutdown).
    async fn paused(&self, states: &mut watch::Receiver<JobRecord>) {
        tracing::info!("paused: the WAL is still read into the log; nothing is written to the target");
        tokio::select! {
            _ = states.wait_for(|r| r.state != JobState::Paused) => {}
            _ = self.job.shutdown.cancelled() => {}
        }
    }
}

/// Records where reading each channel starts (once; a restart keeps the positions, and a
/// channel that has none yet starts at its end).
async fn record_start(
    reader: &WalReader,
    source: &MilvusClient,
    log: &DurableLog,
    state: &crate::state::StateStore,
    channels: &[String],
) -> Result<(), JobError> {
    let started = state.get::<bool>(STARTED)?.unwrap_or(false);
    if started && channels.iter().all(|ch| log.position(ch).is_some()) {
        return Ok(());
    }
    // The end of each topic may fall inside an upsert whose Insert is already there and
    // whose Delete is not (Milvus produces them one after the other, same timestamp):
    // replaying that Delete alone would delete the row the snapshot copies. Every record
    // before these offsets got its timestamp before `skip` is allocated, so dropping all
    // records with a timestamp <= `skip` drops every such half, and the snapshot, which
    // reads at a timestamp allocated later still, holds their effect. Records with a
    // later timestamp were produced after the offsets were read: all of them are read.
    let marks = reader.high_watermarks().await?;
    let skip = source.alloc_timestamp().await.map_err(|e| PlanError::Connect { side: "source", source: e })?;
    for ch in channels {
        let offset = marks.get(ch).copied().unwrap_or(0);
        // init_position keeps a position already recorded.
        let pos = log.init_position(ch, ChannelPosition { next_offset: offset, skip_through_ts: skip })?;
        tracing::info!(channel = %ch, offset = pos.next_offset, skip_through_ts = pos.skip_through_ts, "stream start position");
    }
    log.flush().await?;
    if !started {
        state.put(STARTED_MS, &(lifecycle::now_ms() as u64))?;
        state.put(STARTED, &true)?;
    }
    Ok(())
}

/// Copies every collection by query as of one source timestamp, then builds the indexes
/// the snapshot defers.
async fn snapshot_all(
    copier: &Copier<MilvusClient>,
    source: &MilvusClient,
    plan: &Plan,
    fresh: &[bool],
    index: IndexMode,
) -> Result<(), JobError> {
    finish::load_sources(source, plan).await?;
    let ts = query::snapshot_timestamp(source)
        .await
        .map_err(|source| PlanError::Connect { side: "source", source })?;
    let query = async |i: usize| QueryReader::new(source, &plan.collections[i], ts, &copier.opts).await;
    for report in copier.copy_all(plan, fresh, query).await? {
        tracing::info!(collection = %report.target, rows = report.rows, seconds = report.seconds, "snapshot copied");
    }
    // Loaded while streaming: the cutover's verification reads it at once, and the
    // application can search it the moment it switches.
    let f = Finish { index, flush: false, count: false, keep_loaded: index != IndexMode::None };
    finish::finish_targets(&copier.target, &plan.collections, f).await?;
    Ok(())
}

/// Logs the job's lag every 10 s (the metrics sampler refreshes the gauges every second).
async fn report_lag(handle: JobHandle, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let st = handle.status();
        tracing::info!(
            state = %st.state,
            lag_s = st.lag_seconds,
            pending_events = st.log_pending_events,
            pending_bytes = st.log_pending_bytes,
            "streaming"
        );
    }
}
