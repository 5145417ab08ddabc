//! Every key format of the job's state store, in one place: what each holds and who writes
//! it. The formats are stored on disk: a change needs a migration on open and a test that a
//! state written by the previous release still reads.
//!
//! | key | value | written by |
//! |---|---|---|
//! | `job/state` | the lifecycle record (`job::lifecycle::JobRecord`) | `job::handle` |
//! | `job/errors/<seq, 20 digits>` | the last errors (`proto::control::JobError`) | `job::handle` |
//! | `job/collections` | the job's collections as recorded (`job::record`) | `job::record` |
//! | `job/partitions_pending` | bool: the partitions are to be looked at again after the start positions | `job` |
//! | `stream/started`, `stream/started_ms` | bool, ms: start positions recorded, and when | `job` |
//! | `stream/snapshot_done` | bool | `job` |
//! | `stream/clock_offset_ms` | the source's clock offset (ms) | `job::handle` |
//! | `cutover/report` | the last cutover's report (JSON) | `job::handle` for `cutover` |
//! | `cutover/frozen` | the source freeze to undo (`cutover::freeze::Frozen`) | `cutover` |
//! | `created/<target>` | bool: this job created the target collection | `copy` |
//! | `copy-mode/<target>` | how `ferry migrate` copies it (query or storage) | `migrate` |
//! | `storage/<target>` | a `[source.storage]` snapshot (`sources::storage`) | `sources::storage` |
//! | `snapshot/<target>/<unit>` | a query unit's `copy::UnitState` | `copy` for `sources::query` |
//! | `import/<target>/<backup>/<segment>` | a segment's `copy::UnitState` (`[source.storage]`: backup `source-storage`) | `copy` for `sources::backup` |
//! | `import-1x/<target>/<segment>` | a 1.x segment's `copy::UnitState` | `copy` for `sources::v1x` |

pub const JOB_STATE: &str = "job/state";
pub const JOB_COLLECTIONS: &str = "job/collections";
pub const PARTITIONS_PENDING: &str = "job/partitions_pending";
pub const STARTED: &str = "stream/started";
pub const STARTED_MS: &str = "stream/started_ms";
pub const SNAPSHOT_DONE: &str = "stream/snapshot_done";
pub const CLOCK_OFFSET: &str = "stream/clock_offset_ms";
pub const CUTOVER_REPORT: &str = "cutover/report";
pub const FROZEN: &str = "cutover/frozen";

/// Prefix of the error log's keys.
pub const JOB_ERRORS: &str = "job/errors/";

/// The error log's entry `seq` (zero-padded, so keys sort by number).
pub fn job_error(seq: u64) -> String {
    format!("{JOB_ERRORS}{seq:020}")
}

pub fn created(target: &str) -> String {
    format!("created/{target}")
}

pub fn copy_mode(target: &str) -> String {
    format!("copy-mode/{target}")
}

pub fn storage_snapshot(target: &str) -> String {
    format!("storage/{target}")
}

pub fn query_unit(target: &str, unit: &str) -> String {
    format!("snapshot/{target}/{unit}")
}

pub fn backup_segment(target: &str, backup: &str, segment: i64) -> String {
    format!("import/{target}/{backup}/{segment}")
}

pub fn v1x_segment(target: &str, segment: &str) -> String {
    format!("import-1x/{target}/{segment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formats on disk: a change here breaks every state an earlier release wrote.
    #[test]
    fn formats_are_the_ones_on_disk() {
        assert_eq!(job_error(7), "job/errors/00000000000000000007");
        assert_eq!(created("t"), "created/t");
        assert_eq!(copy_mode("t"), "copy-mode/t");
        assert_eq!(storage_snapshot("t"), "storage/t");
        assert_eq!(query_unit("t", "_default#0of4"), "snapshot/t/_default#0of4");
        assert_eq!(backup_segment("t", "bk", 42), "import/t/bk/42");
        assert_eq!(v1x_segment("t", "1589"), "import-1x/t/1589");
    }
}
