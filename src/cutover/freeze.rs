//! Freezing and unfreezing the source's writes, and remembering how to undo a freeze.
//!
//! What undoes a freeze is written to sled ([`keys::FROZEN`]) before the freeze, and removed
//! only once it has been undone (or the cutover succeeded: then the source stays frozen on
//! purpose). Undoing tries every part even when another fails and keeps what still fails,
//! so the abort path, the next cutover and the next daemon start can all try again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::CutoverConfig;
use crate::milvus::{Grant, MilvusClient};
use crate::state::{keys, StateStore};

/// Privileges the `rbac` freeze revokes.
pub(super) const WRITE_PRIVILEGES: [&str; 3] = ["Insert", "Delete", "Upsert"];
/// How long the `rbac` freeze waits after revoking before it takes the fence timestamp.
pub(super) const RBAC_SETTLE: Duration = Duration::from_millis(500);

/// What undoes a freeze; persisted before freezing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Frozen {
    pub freeze: String,
    pub unfreeze_command: Option<String>,
    pub revoked: Vec<Grant>,
}

/// Most bytes of a command's stderr kept for an error message (the tail).
const OUTPUT_LIMIT: usize = 2048;
/// How long a freeze or unfreeze command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// `PATH` of a command when `[cutover] command_env` does not pass the daemon's own.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a freeze or unfreeze command of the job file (`sh -c`), never text from a request.
///
/// The command gets a cleared environment: `PATH` (the default above unless passed) and the
/// variables `[cutover] command_env` names, so ferry's own secrets (tokens, passwords, the
/// variables they were read from) never reach it. Its stdout is discarded and only the last
/// [`OUTPUT_LIMIT`] bytes of its stderr are kept, for the error message of a failure; a
/// success reports nothing of its output.
pub(super) async fn run_command(cmd: &str, what: &str, cfg: &CutoverConfig) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for name in &cfg.command_env {
        if let Ok(v) = std::env::var(name) {
            command.env(name, v);
        }
    }
    let mut child = command.spawn().map_err(|e| format!("{what} command could not start: {e}"))?;
    let mut stderr = child.stderr.take();
    let run = async {
        let mut tail: Vec<u8> = Vec::new();
        if let Some(err) = &mut stderr {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > OUTPUT_LIMIT {
                            tail.drain(..tail.len() - OUTPUT_LIMIT);
                        }
                    }
                }
            }
        }
        (child.wait().await, tail)
    };
    let (status, tail) = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| format!("{what} command did not finish within {} s", COMMAND_TIMEOUT.as_secs()))?;
    let status = status.map_err(|e| format!("{what} command: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&tail);
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
    Err(format!("{what} command exited with {status}: {tail}"))
}

/// Runs a recorded unfreeze command, but only while it is still the job file's own: a stored
/// command that differs (an older job file, or state written by an older ferry that took
/// commands from control requests) is never executed.
async fn run_recorded_unfreeze(cmd: &str, cfg: &CutoverConfig) -> Result<(), String> {
    if cfg.unfreeze_command.as_deref() == Some(cmd) {
        run_command(cmd, "unfreeze", cfg).await
    } else {
        Err("the recorded unfreeze command is not the job file's [cutover] unfreeze_command, so ferry does not run it: restore the writers by hand, or put that command back in the job file".into())
    }
}

/// Undoes a freeze: runs the unfreeze command and re-grants every revoked privilege, each
/// tried even when another failed. On failure, what is still to be undone comes back with
/// the reasons.
async fn unfreeze(source: &MilvusClient, f: &Frozen, cfg: &CutoverConfig) -> Result<(), (Frozen, String)> {
    let mut left = Frozen { freeze: f.freeze.clone(), unfreeze_command: None, revoked: vec![] };
    let mut errors = Vec::new();
    if let Some(cmd) = &f.unfreeze_command {
        if let Err(e) = run_recorded_unfreeze(cmd, cfg).await {
            errors.push(e);
            left.unfreeze_command = Some(cmd.clone());
        }
    }
    for g in &f.revoked {
        if let Err(e) = source.grant(g).await {
            errors.push(format!("re-granting {} {} on {}: {e}", g.role, g.privilege, g.object_name));
            left.revoked.push(g.clone());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err((left, errors.join("; ")))
    }
}

/// Undoes the freeze recorded under [`keys::FROZEN`], trying `attempts` times: `None` when
/// nothing was frozen, else `Ok` (undone) or `Err` (some of it still frozen), each saying
/// what happened. What could not be undone stays recorded, so the next cutover and the next
/// daemon start try again (and status shows it in the error log meanwhile).
pub(super) async fn restore_writes(
    store: &StateStore,
    source: &MilvusClient,
    cfg: &CutoverConfig,
    attempts: u32,
) -> Option<Result<String, String>> {
    let mut f = store.get::<Frozen>(keys::FROZEN).ok().flatten()?;
    let mut last = String::new();
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match unfreeze(source, &f, cfg).await {
            Ok(()) => {
                let _ = store.remove(keys::FROZEN);
                return Some(Ok(if f.freeze == "command" && f.unfreeze_command.is_none() {
                    "source writes NOT restored: no unfreeze command was given; restart the writers by hand".into()
                } else {
                    "source writes restored".into()
                }));
            }
            Err((left, e)) => {
                let _ = store.put(keys::FROZEN, &left);
                f = left;
                last = e;
            }
        }
    }
    Some(Err(format!("restoring source writes FAILED: {last} (ferry tries again at the next cutover and daemon start; or restore them by hand)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(unfreeze: Option<&str>, env: &[&str]) -> CutoverConfig {
        CutoverConfig {
            unfreeze_command: unfreeze.map(String::from),
            command_env: env.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A recorded unfreeze that is not the job file's command never runs.
    #[tokio::test]
    async fn only_the_job_files_unfreeze_command_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let cmd = format!("touch {}", marker.display());
        let e = run_recorded_unfreeze(&cmd, &cfg(Some("true"), &[])).await.unwrap_err();
        assert!(e.contains("not the job file's"), "{e}");
        let e = run_recorded_unfreeze(&cmd, &cfg(None, &[])).await.unwrap_err();
        assert!(e.contains("not the job file's"), "{e}");
        assert!(!marker.exists(), "a command the job file does not name ran");
        run_recorded_unfreeze(&cmd, &cfg(Some(&cmd), &[])).await.unwrap();
        assert!(marker.exists());
    }

    /// Commands see PATH and what command_env names, nothing else of ferry's environment;
    /// their output is bounded and only a failure reports (the tail of) it.
    #[tokio::test]
    async fn commands_get_a_cleared_environment_and_bounded_output() {
        std::env::set_var("FERRY_TEST_FREEZE_SECRET", "s3cret-value");
        std::env::set_var("FERRY_TEST_FREEZE_PASSED", "passed-value");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let c = cfg(None, &["FERRY_TEST_FREEZE_PASSED"]);
        run_command(&format!("env > {}", out.display()), "freeze", &c).await.unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(!env.contains("s3cret-value") && !env.contains("FERRY_TEST_FREEZE_SECRET"), "{env}");
        assert!(env.contains("FERRY_TEST_FREEZE_PASSED=passed-value") && env.contains("PATH="), "{env}");
        // A success reports nothing of its output.
        run_command("echo loud; echo louder >&2", "freeze", &c).await.unwrap();
        // A failure reports the tail of stderr, bounded however much the command wrote.
        let e = run_command("head -c 10000000 /dev/zero | tr '\\0' x >&2; echo; echo the-last-line >&2; exit 3", "freeze", &c)
            .await
            .unwrap_err();
        assert!(e.contains("the-last-line") && e.contains("exit status: 3"), "{}", &e[..e.len().min(300)]);
        assert!(e.len() < 4 * OUTPUT_LIMIT, "{} bytes of error", e.len());
    }
}
