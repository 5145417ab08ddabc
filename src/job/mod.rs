//! A zero-downtime job (`ferry run`): snapshot, then stream, until stopped.
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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::sync::watch;

use crate::apply::{Applier, ApplyConfig, ApplyError, CollectionRoute, Routes};
use crate::config::JobConfig;
use crate::log::{ChannelPosition, DurableLog, LogConfig, LogError};
use crate::migrate::{self, IndexMode, MigrateError};
use crate::plan::{self, IfExists, PlanOptions};
use crate::snapshot::{self, progress::Progress, CopyOptions, Copier};
use crate::state::{StateError, StateStore};
use crate::wal::{self, CollectionFilter, IngestConfig, WalError, WalReader};

/// Errors that stop a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job file: [source.wal] is required for zero-downtime mode (brokers of the source's Kafka)")]
    NoWal,
    #[error(transparent)]
    Migrate(#[from] MigrateError),
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
}

/// Options of `ferry run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub if_exists: IfExists,
    pub index: IndexMode,
    pub allow_autoid_off: bool,
    pub quiet: bool,
}

const STARTED: &str = "stream/started";
const SNAPSHOT_DONE: &str = "stream/snapshot_done";

fn stopped(mut rx: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> {
    async move {
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Runs a zero-downtime job until `shutdown` turns true or something fails.
pub async fn run(cfg: &JobConfig, opts: &RunOptions, shutdown: watch::Receiver<bool>) -> Result<(), JobError> {
    let wal_cfg = cfg.source.wal.clone().ok_or(JobError::NoWal)?;
    let (source, target) = migrate::connect(cfg).await?;
    let plan = plan::build(&source, &target, cfg, PlanOptions { allow_autoid_off: opts.allow_autoid_off })
        .await
        .map_err(MigrateError::from)?;
    let state = StateStore::open(&cfg.job.state_dir)?;
    let fresh = migrate::prepare_targets(&target, &plan, &state, opts.if_exists).await?;
    let mut log_cfg = LogConfig::new(cfg.job.state_dir.join("log"));
    log_cfg.max_pending_bytes = cfg.stream.log_max_bytes;
    let log = DurableLog::open(&log_cfg)?;

    let channels: Vec<String> = plan
        .collections
        .iter()
        .flat_map(|c| c.source.physical_channel_names.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reader = WalReader::new(wal_cfg.brokers.clone(), channels.clone());

    // 1. Start positions, before the snapshot reads anything.
    if !state.get::<bool>(STARTED)?.unwrap_or(false) {
        let marks = reader.high_watermarks().await?;
        for ch in &channels {
            let offset = marks.get(ch).copied().unwrap_or(0);
            log.init_position(ch, ChannelPosition { next_offset: offset, skip_through_ts: 0 })?;
            tracing::info!(channel = %ch, offset, "stream start position recorded");
        }
        log.flush().await?;
        state.put(STARTED, &true)?;
    }

    // 2. Ingest runs from now on, snapshot or not.
    let ids: HashSet<i64> = plan.collections.iter().map(|c| c.source_id()).collect();
    let ingest = {
        let (reader, log, stop) = (reader.clone(), log.clone(), stopped(shutdown.clone()));
        tokio::spawn(async move {
            wal::ingest(&reader, &log, CollectionFilter::Only(ids), &IngestConfig::default(), stop).await
        })
    };

    // 3. Snapshot (resumable; skipped once done).
    if !state.get::<bool>(SNAPSHOT_DONE)?.unwrap_or(false) {
        migrate::load_sources(&source, &plan).await?;
        let copier = Copier {
            source: source.clone(),
            target: target.clone(),
            state: state.clone(),
            opts: CopyOptions::from(&cfg.copy),
            progress: Progress::new(opts.quiet),
            shutdown: shutdown.clone(),
        };
        let ts = snapshot::snapshot_timestamp(&source).await;
        for (c, fresh) in plan.collections.iter().zip(&fresh) {
            let report = copier.copy_collection(c, ts, *fresh).await.map_err(MigrateError::from)?;
            tracing::info!(collection = %c.target_name, rows = report.rows, seconds = report.seconds, "snapshot copied");
        }
        for c in &plan.collections {
            migrate::create_indexes(&target, c, opts.index).await?;
        }
        state.put(SNAPSHOT_DONE, &true)?;
        tracing::info!("snapshot complete: streaming");
    }

    // 4. Apply, one loop per channel.
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
                },
            )
        })
        .collect();
    let apply_cfg = ApplyConfig { max_batch_bytes: cfg.stream.batch_bytes, ..Default::default() };
    let mut tasks = tokio::task::JoinSet::new();
    for ch in &channels {
        let mut applier = Applier::new(ch.clone(), log.clone(), target.clone(), routes.clone(), apply_cfg.clone());
        let stop = stopped(shutdown.clone());
        tasks.spawn(async move { applier.run(stop).await.map_err(JobError::from) });
    }
    let reporter = {
        let (log, channels, stop) = (log.clone(), channels.clone(), stopped(shutdown.clone()));
        tokio::spawn(report_lag(log, channels, stop))
    };

    let mut first_error = None;
    let mut ingest = ingest;
    loop {
        tokio::select! {
            r = &mut ingest => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => first_error = first_error.or(Some(JobError::Wal(e))),
                    Err(e) => first_error = first_error.or(Some(JobError::Task(e.to_string()))),
                }
                break;
            }
            Some(r) = tasks.join_next() => {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { first_error = Some(e); break; }
                    Err(e) => { first_error = Some(JobError::Task(e.to_string())); break; }
                }
            }
        }
    }
    if first_error.is_some() {
        ingest.abort();
        tasks.abort_all();
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            first_error = first_error.or(Some(e));
        }
    }
    reporter.abort();
    log.flush().await?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Logs each channel's lag every 10 s: how far the applied position trails the newest
/// source time tick, and how many events wait in the log.
async fn report_lag(log: DurableLog, channels: Vec<String>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let mut worst: HashMap<&str, f64> = HashMap::new();
        for ch in &channels {
            let (src, applied) = (log.source_ts(ch), log.applied_ts(ch));
            let lag_ms = wal::physical_ms(src).saturating_sub(wal::physical_ms(applied));
            worst.insert(ch, lag_ms as f64 / 1000.0);
        }
        let max = worst.values().cloned().fold(0.0, f64::max);
        tracing::info!(lag_s = max, pending_events = log.pending_events(), pending_bytes = log.pending_bytes(), "streaming");
    }
}
