//! `ferry verify`: compares source and target as the job file describes them.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::JobConfig;
use crate::plan::{self, PlanOptions};
use crate::verify::{self, VerifyMode, VerifyOptions};

/// Exit code when the comparison completed and found differences (errors exit 1).
pub const EXIT_DIFFERENT: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The job file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Compare every primary key and a digest of every row, not only row counts.
    #[arg(long)]
    pub full: bool,
    /// Keys listed per category (missing, extra, different); all are counted.
    #[arg(long, default_value_t = 10)]
    pub sample: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Re-copy missing and different rows from the source, delete extra rows from the
    /// target, then verify again (implies --full).
    #[arg(long)]
    pub repair: bool,
}

/// Runs `ferry verify`: 0 when the target equals the source (after the repair, with
/// `--repair`), [`EXIT_DIFFERENT`] when it does not, 1 (an error) when it could not compare.
pub async fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let cfg = JobConfig::load(&a.config)?;
    let (source, target) = crate::plan::connect(&cfg).await?;
    // Verification compares keys as they are; the autoID policy only shapes new targets.
    let plan = plan::build(
        &source,
        &target,
        &cfg,
        PlanOptions {
            allow_autoid_off: true,
        },
    )
    .await?;
    let mode = if a.full || a.repair {
        VerifyMode::Full
    } else {
        VerifyMode::Counts
    };
    let mut opts = VerifyOptions::new(mode, &cfg.copy);
    opts.sample = a.sample;
    opts.repair = a.repair;
    let report = verify::verify(&source, &target, &plan, &opts, super::shutdown_signal()).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", verify::render(&report));
    }
    if report.equal {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ferry: verify: the target differs from the source: {}",
            verify::summary(&report)
        );
        Ok(ExitCode::from(EXIT_DIFFERENT))
    }
}
