//! `ferry import-backup` and `ferry import-1x`: thin shells over [`crate::import`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::JobConfig;
use crate::copy::IndexMode;
use crate::plan::IfExists;
use crate::import::{self, ImportOptions};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a milvus-backup backup (a local folder, s3://, gs://, or an S3/Azure https URL)
    /// into the target: schemas from the backup, rows from its binlogs, deletes applied.
    #[command(name = "import-backup")]
    ImportBackup(ImportBackupArgs),
    /// Import Milvus 0.9-1.x data files (`meta.json` + `tables/`) into the target: an Int64
    /// key `id` and a vector field `vector` per collection.
    #[command(name = "import-1x")]
    Import1x(ImportArgs),
}

/// Options both imports take.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The job file: `[target]`, `[job]`, optional `[[collections]]` and `[copy]`
    /// (`[source]` is not needed and ignored).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Where the files are: a local folder or an object-store URL.
    #[arg(long)]
    pub path: String,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do when a target collection exists (one this job created is always resumed).
    #[arg(long, value_enum, default_value_t = IfExists::Fail)]
    pub if_exists: IfExists,
    /// How to index the target after the import.
    #[arg(long, value_enum, default_value_t = IndexMode::Autoindex)]
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

#[derive(Debug, clap::Args)]
pub struct ImportBackupArgs {
    #[command(flatten)]
    pub common: ImportArgs,
    /// The backup to import when PATH holds several (PATH may also be the backup's folder).
    #[arg(long)]
    pub backup: Option<String>,
}

fn options(a: &ImportArgs, backup: Option<String>) -> ImportOptions {
    ImportOptions {
        path: a.path.clone(),
        backup,
        dry_run: a.dry_run,
        if_exists: a.if_exists,
        index: a.index,
        load: a.load,
        allow_autoid_off: a.autoid_off,
        quiet: a.quiet,
    }
}

/// Runs an import command; prints the summary, then fails when a count check failed.
pub async fn run(cmd: ImportCommand, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let (args, opts) = match &cmd {
        ImportCommand::ImportBackup(a) => (&a.common, options(&a.common, a.backup.clone())),
        ImportCommand::Import1x(a) => (a, options(a, None)),
    };
    let cfg = JobConfig::load_for_files(&args.config)?;
    let outcome = match cmd {
        ImportCommand::ImportBackup(_) => {
            import::backup::import_backup(&cfg, &opts, shutdown).await?
        }
        ImportCommand::Import1x(_) => import::v1x::import_1x(&cfg, &opts, shutdown).await?,
    };
    let Some(summaries) = super::print_outcome(outcome) else {
        return Ok(ExitCode::SUCCESS);
    };
    print!("{}", import::render_summary(&summaries));
    import::check_counts(&summaries)?;
    Ok(ExitCode::SUCCESS)
}
