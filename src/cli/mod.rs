//! The `ferry` command line. The binary only calls [`main`]; each subcommand is a thin shell
//! over a library function, so everything it does is testable without a process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::copy::finish::render_summary;
use crate::copy::{IndexMode, Outcome};
use crate::migrate::{self, MigrateOptions};
use crate::plan::IfExists;

mod cutover;
mod daemon;

pub mod verify;

pub mod import;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Moves live Milvus collections from one cluster to another",
    long_about = "ferry copies Milvus collections between clusters: exact schema, a parallel \
                  resumable bulk copy, WAL streaming for zero downtime, a cutover runbook and \
                  verification."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline migration: plan, create target collections, copy every row, check counts,
    /// build indexes.
    Migrate(MigrateArgs),
    /// The daemon: runs a zero-downtime job (record WAL positions, snapshot, stream the
    /// source's writes to the target) with a control API and metrics, until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Show the daemon's jobs: state, lag, pending log, snapshot progress, last error.
    Status(daemon::StatusArgs),
    /// Pause a job: no target writes; the WAL is still read into the durable log.
    Pause(daemon::JobArgs),
    /// Resume a PAUSED or FAILED job.
    Resume(daemon::JobArgs),
    /// Cancel a job for good (target collections are left as they are).
    Cancel(daemon::JobArgs),
    /// Show a job's error log.
    Errors(daemon::JobArgs),
    /// Run the cutover runbook on a streaming job: wait for low lag, freeze source writes,
    /// drain, verify, report (or --abort it).
    Cutover(cutover::CutoverArgs),
    /// Compare source and target: row counts per collection and partition, or (--full) every
    /// key and a digest of every row; --repair fixes what differs. Exit 0 only when equal.
    Verify(verify::VerifyArgs),
    /// `import-backup` and `import-1x`: rows from files instead of a source Milvus.
    #[command(flatten)]
    Import(import::ImportCommand),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (needs `[source.wal]`).
    #[arg(long, short)]
    pub config: PathBuf,
    /// What to do when a target collection exists (one this job created is always resumed).
    #[arg(long, value_enum, default_value_t = IfExists::Fail)]
    pub if_exists: IfExists,
    /// How to index the target after the snapshot.
    #[arg(long, value_enum, default_value_t = IndexMode::Copy)]
    pub index: IndexMode,
    /// Accept turning autoID off on targets that cannot take given keys into an autoID field.
    #[arg(long)]
    pub autoid_off: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Check the job file, connect, print the plan, and exit without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The job file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do when a target collection exists (one this job created is always resumed).
    #[arg(long, value_enum, default_value_t = IfExists::Fail)]
    pub if_exists: IfExists,
    /// How to index the target: the source's definitions, AUTOINDEX, or none.
    #[arg(long, value_enum, default_value_t = IndexMode::Copy)]
    pub index: IndexMode,
    /// Load the target collections at the end.
    #[arg(long)]
    pub load: bool,
    /// Accept turning autoID off on targets that cannot take given keys into an autoID field.
    #[arg(long)]
    pub autoid_off: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A token cancelled on SIGINT or SIGTERM: the process's shutdown.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested: finishing in-flight batches");
        cancel.cancel();
    });
    token
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: error: {}", crate::milvus::error_chain(AsRef::<dyn std::error::Error>::as_ref(&e)));
            ExitCode::FAILURE
        }
    }
}

/// Prints a dry run's plan; returns the summaries of a run that copied.
fn print_outcome<S>(outcome: Outcome<S>) -> Option<Vec<S>> {
    match outcome {
        Outcome::Planned { plan, notes } => {
            print!("{}", crate::plan::render(&plan));
            for n in notes {
                println!("{n}");
            }
            None
        }
        Outcome::Done(summaries) => Some(summaries),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Migrate(a) => {
            let cfg = JobConfig::load(&a.config)?;
            let opts = MigrateOptions {
                dry_run: a.dry_run,
                if_exists: a.if_exists,
                index: a.index,
                load: a.load,
                allow_autoid_off: a.autoid_off,
                quiet: a.quiet,
            };
            let outcome = migrate::migrate(&cfg, &opts, shutdown_signal()).await?;
            if let Some(summaries) = print_outcome(outcome) {
                print!("{}", render_summary(&summaries));
                migrate::check_counts(&summaries)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => verify::run(a).await,
        Command::Import(c) => import::run(c, shutdown_signal()).await,
        Command::Run(a) => {
            let cfg = JobConfig::load(&a.config)?;
            if cfg.source.wal.is_none() {
                anyhow::bail!("{}: [source.wal] is required by `ferry run` (the brokers of the source's Kafka); use `ferry migrate` for an offline copy", a.config.display());
            }
            if a.dry_run {
                let opts = MigrateOptions {
                    dry_run: true,
                    if_exists: a.if_exists,
                    index: a.index,
                    load: false,
                    allow_autoid_off: a.autoid_off,
                    quiet: true,
                };
                print_outcome(migrate::migrate(&cfg, &opts, shutdown_signal()).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let opts = crate::job::RunOptions {
                if_exists: a.if_exists,
                index: a.index,
                allow_autoid_off: a.autoid_off,
                quiet: a.quiet,
            };
            crate::daemon::serve(cfg, opts, shutdown_signal()).await?;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => daemon::status(a).await,
        Command::Pause(a) => daemon::job_command(daemon::JobVerb::Pause, a).await,
        Command::Resume(a) => daemon::job_command(daemon::JobVerb::Resume, a).await,
        Command::Cancel(a) => daemon::job_command(daemon::JobVerb::Cancel, a).await,
        Command::Errors(a) => daemon::job_command(daemon::JobVerb::Errors, a).await,
        Command::Cutover(a) => cutover::run(a).await,
    }
}
