//! Every Prometheus metric ferry exports, named in one place.
//!
//! Names follow `ferry_<subsystem>_<name>_<unit>`. Labels are bounded: `job` (added to every
//! series by the exporter, one per process), `collection` (target collection names of the
//! job), `op` (`insert`, `upsert`, `delete`, `ddl`), `phase` (job state), `kind` (error kinds). No
//! label ever carries a key, a value, an address or a secret.
//!
//! Recording sites call the `metrics` macros with these constants; [`describe`] registers
//! help texts, and [`install`] the Prometheus recorder. The README's metrics reference and
//! `dashboards/` use exactly these names (a test checks the dashboards against [`ALL`]).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Seconds the target trails the source: newest source time tick minus the timestamp up to
/// which everything is applied, plus the age of that newest tick. Rises while apply or the
/// WAL reader is stalled; after a restart it starts from the persisted positions.
pub const LAG_SECONDS: &str = "ferry_stream_lag_seconds";
/// Newest source time tick seen (Unix seconds), oldest over the job's channels.
pub const SOURCE_POSITION: &str = "ferry_stream_source_position_timestamp_seconds";
/// Timestamp up to which every write is applied (Unix seconds), oldest over the channels.
pub const APPLIED_POSITION: &str = "ferry_stream_applied_position_timestamp_seconds";
/// Wall-clock seconds since the reader last saw a source time tick, oldest channel (stall
/// detector: Milvus ticks every channel about five times a second).
pub const SOURCE_TICK_AGE: &str = "ferry_stream_source_tick_age_seconds";
/// WAL records written to the durable log.
pub const EVENTS_INGESTED: &str = "ferry_stream_ingested_events_total";
/// WAL records applied to the target, by collection and op (`insert`, `delete`, `ddl`;
/// an upsert is an insert and a delete record on the WAL).
pub const EVENTS_APPLIED: &str = "ferry_apply_events_total";
/// Rows written to the target by the apply loops, by collection and op (`upsert`, `delete`).
pub const ROWS_APPLIED: &str = "ferry_apply_rows_total";
/// Kafka reads retried after a transient error (broker restart, leader move).
pub const WAL_READ_RETRIES: &str = "ferry_wal_read_retries_total";
/// WAL records without a value, skipped.
pub const WAL_EMPTY_RECORDS: &str = "ferry_wal_empty_records_total";
/// WAL records older than a time tick already seen (Milvus promises none).
pub const WAL_LATE_RECORDS: &str = "ferry_wal_late_records_total";
/// Duration of one apply batch (target writes included).
pub const APPLY_BATCH_SECONDS: &str = "ferry_apply_batch_duration_seconds";
/// Target write failures of the apply loops, by op and kind (retried ones included).
pub const TARGET_ERRORS: &str = "ferry_apply_target_errors_total";
/// Events in the durable log not yet applied.
pub const LOG_PENDING_EVENTS: &str = "ferry_log_pending_events";
/// Bytes in the durable log not yet applied.
pub const LOG_PENDING_BYTES: &str = "ferry_log_pending_bytes";
/// The log's configured bound (`[stream] log_max_bytes`); ingest waits above it.
pub const LOG_MAX_BYTES: &str = "ferry_log_max_bytes";
/// Rows copied by the snapshot so far, by collection.
pub const SNAPSHOT_ROWS_DONE: &str = "ferry_snapshot_done_rows";
/// Rows the snapshot expects to copy, by collection (the source's count at its start).
pub const SNAPSHOT_ROWS_EXPECTED: &str = "ferry_snapshot_expected_rows";
/// 1 for the job's current state (label `phase`), 0 for the others.
pub const JOB_STATE: &str = "ferry_job_state";
/// Errors recorded in the job's error log, by kind.
pub const JOB_ERRORS: &str = "ferry_job_errors_total";
/// Build information (label `version`), always 1.
pub const BUILD_INFO: &str = "ferry_build_info";

/// Every metric name, for documentation and dashboard checks.
pub const ALL: &[&str] = &[
    LAG_SECONDS,
    SOURCE_POSITION,
    APPLIED_POSITION,
    SOURCE_TICK_AGE,
    EVENTS_INGESTED,
    EVENTS_APPLIED,
    ROWS_APPLIED,
    WAL_READ_RETRIES,
    WAL_EMPTY_RECORDS,
    WAL_LATE_RECORDS,
    APPLY_BATCH_SECONDS,
    TARGET_ERRORS,
    LOG_PENDING_EVENTS,
    LOG_PENDING_BYTES,
    LOG_MAX_BYTES,
    SNAPSHOT_ROWS_DONE,
    SNAPSHOT_ROWS_EXPECTED,
    JOB_STATE,
    JOB_ERRORS,
    BUILD_INFO,
];

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    describe_gauge!(LAG_SECONDS, Unit::Seconds, "Seconds the target trails the source (newest source time tick minus applied position, plus that tick's age)");
    describe_gauge!(SOURCE_POSITION, Unit::Seconds, "Newest source time tick seen, Unix seconds (oldest channel)");
    describe_gauge!(APPLIED_POSITION, Unit::Seconds, "Timestamp up to which every write is applied, Unix seconds (oldest channel)");
    describe_gauge!(SOURCE_TICK_AGE, Unit::Seconds, "Seconds since the WAL reader last saw a source time tick (oldest channel)");
    describe_counter!(EVENTS_INGESTED, "WAL records written to the durable log");
    describe_counter!(EVENTS_APPLIED, "WAL records applied to the target, by collection and op (insert, delete, ddl)");
    describe_counter!(ROWS_APPLIED, "Rows written to the target by the apply loops, by collection and op (upsert, delete)");
    describe_counter!(WAL_READ_RETRIES, "Kafka reads retried after a transient error");
    describe_counter!(WAL_EMPTY_RECORDS, "WAL records without a value, skipped");
    describe_counter!(WAL_LATE_RECORDS, "WAL records older than an earlier time tick");
    describe_histogram!(APPLY_BATCH_SECONDS, Unit::Seconds, "Duration of one apply batch");
    describe_counter!(TARGET_ERRORS, "Target write failures, by kind (retried ones included)");
    describe_gauge!(LOG_PENDING_EVENTS, "Events in the durable log not yet applied");
    describe_gauge!(LOG_PENDING_BYTES, Unit::Bytes, "Bytes in the durable log not yet applied");
    describe_gauge!(LOG_MAX_BYTES, Unit::Bytes, "Configured bound of the durable log");
    describe_gauge!(SNAPSHOT_ROWS_DONE, "Rows copied by the snapshot, by collection");
    describe_gauge!(SNAPSHOT_ROWS_EXPECTED, "Rows the snapshot expects to copy, by collection");
    describe_gauge!(JOB_STATE, "1 for the job's current state (label phase)");
    describe_counter!(JOB_ERRORS, "Errors recorded in the job's error log, by kind");
    describe_gauge!(BUILD_INFO, "Build information");
}

/// Buckets of [`APPLY_BATCH_SECONDS`]: 1 ms to about 30 s.
const BATCH_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the Prometheus recorder with `job` as a label on every series and returns the
/// handle that renders the exposition text. Call once per process.
pub fn install(job: &str) -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .add_global_label("job", job)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(APPLY_BATCH_SECONDS.into()),
            BATCH_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}
