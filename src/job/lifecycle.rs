//! The job state machine: one enum, one transition function, persisted in sled.
//!
//! ```text
//!   PENDING ──start──▶ SNAPSHOTTING ──snapshot_done──▶ STREAMING ──cutover_start──▶ CUTTING_OVER
//!                          │  ▲                          │  ▲          ◀──cutover_abort──┘   │
//!                        pause│resume                 pause│resume                  cutover_done
//!                          ▼  │                          ▼  │                              ▼
//!                          PAUSED ◀──────────────────────┘  │                          SUCCESSFUL
//!   any non-final ──fail──▶ FAILED ──resume──▶ SNAPSHOTTING or STREAMING
//!   any non-final ──cancel──▶ CANCELLED
//! ```
//!
//! `resume` returns to SNAPSHOTTING until the snapshot is complete, then to STREAMING: the
//! event carries that fact, so the table stays a pure function. SUCCESSFUL and CANCELLED are
//! final. A daemon restart puts the job back in the state it was in, except CUTTING_OVER:
//! the cutover died with the process, so it is aborted (back to STREAMING, source unfrozen)
//! by the cutover module on start.

use serde::{Deserialize, Serialize};

/// States of a job. Names are the API's and the metrics' (`phase` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Created, nothing done yet.
    Pending,
    /// Copying existing rows (the WAL is buffered in the log meanwhile).
    Snapshotting,
    /// Replaying the WAL to the target.
    Streaming,
    /// Operator paused: no target writes; the WAL is still read into the log.
    Paused,
    /// A cutover runs (apply continues; the source is or will be frozen).
    CuttingOver,
    /// Cut over and verified. Final.
    Successful,
    /// Stopped by an error that retrying cannot fix; `resume` retries.
    Failed,
    /// Stopped by the operator. Final.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Snapshotting,
        JobState::Streaming,
        JobState::Paused,
        JobState::CuttingOver,
        JobState::Successful,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Snapshotting => "SNAPSHOTTING",
            JobState::Streaming => "STREAMING",
            JobState::Paused => "PAUSED",
            JobState::CuttingOver => "CUTTING_OVER",
            JobState::Successful => "SUCCESSFUL",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// No event leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Successful | JobState::Cancelled)
    }

    /// States in which the apply loops write to the target.
    pub fn applies(self) -> bool {
        matches!(self, JobState::Streaming | JobState::CuttingOver)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    SnapshotDone,
    Pause,
    Resume { snapshot_done: bool },
    CutoverStart,
    CutoverDone,
    CutoverAbort,
    Fail,
    Cancel,
}

/// An event that does not apply in a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job is {from}: cannot {event}")]
pub struct TransitionError {
    pub from: JobState,
    pub event: String,
}

fn event_name(e: Event) -> &'static str {
    match e {
        Event::Start => "start",
        Event::SnapshotDone => "finish the snapshot",
        Event::Pause => "pause",
        Event::Resume { .. } => "resume",
        Event::CutoverStart => "start a cutover (the job must be STREAMING)",
        Event::CutoverDone => "complete a cutover",
        Event::CutoverAbort => "abort a cutover",
        Event::Fail => "fail",
        Event::Cancel => "cancel",
    }
}

/// The transition table. Every state change of a job goes through here.
pub fn transition(from: JobState, event: Event) -> Result<JobState, TransitionError> {
    use Event as E;
    use JobState as S;
    let resumed = |snapshot_done| if snapshot_done { S::Streaming } else { S::Snapshotting };
    let to = match (from, event) {
        (S::Pending, E::Start) => Some(S::Snapshotting),
        (S::Snapshotting, E::SnapshotDone) => Some(S::Streaming),
        (S::Snapshotting | S::Streaming, E::Pause) => Some(S::Paused),
        (S::Paused | S::Failed, E::Resume { snapshot_done }) => Some(resumed(snapshot_done)),
        (S::Streaming, E::CutoverStart) => Some(S::CuttingOver),
        (S::CuttingOver, E::CutoverDone) => Some(S::Successful),
        (S::CuttingOver, E::CutoverAbort) => Some(S::Streaming),
        (s, E::Fail) if !s.is_final() && s != S::Failed => Some(S::Failed),
        (s, E::Cancel) if !s.is_final() => Some(S::Cancelled),
        _ => None,
    };
    to.ok_or_else(|| TransitionError { from, event: event_name(event).into() })
}

/// What sled holds under [`crate::state::keys::JOB_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub state: JobState,
    /// Unix ms when `state` was entered.
    pub since_ms: i64,
}


pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use JobState as S;

    /// Every (state, event) pair and its expected outcome (`None`: rejected).
    #[test]
    fn transition_table() {
        let events = [
            E::Start,
            E::SnapshotDone,
            E::Pause,
            E::Resume { snapshot_done: false },
            E::Resume { snapshot_done: true },
            E::CutoverStart,
            E::CutoverDone,
            E::CutoverAbort,
            E::Fail,
            E::Cancel,
        ];
        #[rustfmt::skip]
        let table: &[(S, [Option<S>; 10])] = &[
            //                 Start              SnapDone           Pause         Resume(no)             Resume(yes)         CutStart              CutDone             CutAbort            Fail           Cancel
            (S::Pending,      [Some(S::Snapshotting), None,          None,         None,                  None,               None,                 None,               None,               Some(S::Failed), Some(S::Cancelled)]),
            (S::Snapshotting, [None,             Some(S::Streaming), Some(S::Paused), None,               None,               None,                 None,               None,               Some(S::Failed), Some(S::Cancelled)]),
            (S::Streaming,    [None,             None,               Some(S::Paused), None,               None,               Some(S::CuttingOver), None,               None,               Some(S::Failed), Some(S::Cancelled)]),
            (S::Paused,       [None,             None,               None,         Some(S::Snapshotting), Some(S::Streaming), None,                 None,               None,               Some(S::Failed), Some(S::Cancelled)]),
            (S::CuttingOver,  [None,             None,               None,         None,                  None,               None,                 Some(S::Successful), Some(S::Streaming), Some(S::Failed), Some(S::Cancelled)]),
            (S::Successful,   [None,             None,               None,         None,                  None,               None,                 None,               None,               None,          None]),
            (S::Failed,       [None,             None,               None,         Some(S::Snapshotting), Some(S::Streaming), None,                 None,               None,               None,          Some(S::Cancelled)]),
            (S::Cancelled,    [None,             None,               None,         None,                  None,               None,                 None,               None,               None,          None]),
        ];
        assert_eq!(table.len(), S::ALL.len());
        for (from, row) in table {
            for (event, want) in events.iter().zip(row) {
                let got = transition(*from, *event).ok();
                assert_eq!(got, *want, "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn rejection_names_state_and_event() {
        let e = transition(S::Snapshotting, E::CutoverStart).unwrap_err().to_string();
        assert!(e.contains("SNAPSHOTTING") && e.contains("cutover"), "{e}");
    }

    #[test]
    fn names_round_trip_through_json() {
        for s in S::ALL {
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<S>(&j).unwrap(), s);
        }
    }
}
