//! Freezing and unfreezing the source's writes, and remembering how to undo a freeze.
//!
//! What undoes a freeze is written to sled ([`FROZEN_KEY`]) before the freeze, and removed
//! only once it has been undone (or the cutover succeeded: then the source stays frozen on
//! purpose). Undoing tries every part even when another fails and keeps what still fails,
//! so the abort path, the next cutover and the next daemon start can all try again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::milvus::{Grant, MilvusClient};
use crate::state::StateStore;

/// Key of what undoes the current freeze: present while a cutover that has not finished has
/// frozen the source, or while a freeze could not be undone yet.
pub(super) const FROZEN_KEY: &str = "cutover/frozen";
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

pub(super) async fn run_shell(cmd: &str, what: &str) -> Result<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("sh").arg("-c").arg(cmd).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| format!("{what} command did not finish within 300 s"))?
    .map_err(|e| format!("{what} command could not start: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    if out.status.success() {
        Ok(tail)
    } else {
        Err(format!("{what} command exited with {}: {tail}", out.status))
    }
}

/// Undoes a freeze: runs the unfreeze command and re-grants every revoked privilege, each
/// tried even when another failed. On failure, what is still to be undone comes back with
/// the reasons.
async fn unfreeze(source: &MilvusClient, f: &Frozen) -> Result<(), (Frozen, String)> {
    let mut left = Frozen { freeze: f.freeze.clone(), unfreeze_command: None, revoked: vec![] };
    let mut errors = Vec::new();
    if let Some(cmd) = &f.unfreeze_command {
        if let Err(e) = run_shell(cmd, "unfreeze").await {
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

/// Undoes the freeze recorded under [`FROZEN_KEY`], trying `attempts` times: `None` when
/// nothing was frozen, else `Ok` (undone) or `Err` (some of it still frozen), each saying
/// what happened. What could not be undone stays recorded, so the next cutover and the next
/// daemon start try again (and status shows it in the error log meanwhile).
pub(super) async fn restore_writes(store: &StateStore, source: &MilvusClient, attempts: u32) -> Option<Result<String, String>> {
    let mut f = store.get::<Frozen>(FROZEN_KEY).ok().flatten()?;
    let mut last = String::new();
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match unfreeze(source, &f).await {
            Ok(()) => {
                let _ = store.remove(FROZEN_KEY);
                return Some(Ok(if f.freeze == "command" && f.unfreeze_command.is_none() {
                    "source writes NOT restored: no unfreeze command was given; restart the writers by hand".into()
                } else {
                    "source writes restored".into()
                }));
            }
            Err((left, e)) => {
                let _ = store.put(FROZEN_KEY, &left);
                f = left;
                last = e;
            }
        }
    }
    Some(Err(format!("restoring source writes FAILED: {last} (ferry tries again at the next cutover and daemon start; or restore them by hand)")))
}
