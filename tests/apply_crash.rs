//! Crash tests: a child process runs the apply loop with a failpoint that aborts it
//! between the target write and the cursor advance (`apply.after_target_write`); the parent
//! reopens the log and checks the batch is still pending, then replays it.
//!
//! Needs no servers: the target is a file that records each write.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::apply::{Applier, ApplyConfig, CollectionRoute, Routes, Target};
use ferry::log::{ChannelPosition, Cursor, DurableLog, LogConfig, LogEntry};
use ferry::milvus::{MilvusError, PrimaryKeys, Rows};
use ferry::proto::common::{MsgBase, MsgType};
use ferry::proto::msg;
use ferry::proto::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as S, vector_field::Data as V, DataType,
    FieldData, FloatArray, IDs, LongArray, ScalarField, VectorField,
};
use prost::Message;

const CH: &str = "by-dev-rootcoord-dml_3";
const DIR_VAR: &str = "FERRY_TEST_CRASH_DIR";
/// Set by the drop test: the child's window ends with a DropCollection and the applier
/// runs with `stream.on_source_drop = "drop"`.
const DROP_VAR: &str = "FERRY_TEST_CRASH_DROP";

/// A target that appends one line per write to a file, so a write made by a process that
/// then crashed is still visible.
struct FileTarget(PathBuf);

impl FileTarget {
    fn record(&self, line: String) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .expect("open target file");
        writeln!(f, "{line}").expect("write target file");
        f.sync_all().expect("sync target file");
    }
}

impl Target for FileTarget {
    async fn upsert(&self, c: &str, p: &str, rows: &Rows) -> Result<(), MilvusError> {
        let pks = rows.primary_keys("id");
        self.record(format!("upsert {c}/{p} {pks:?}"));
        Ok(())
    }
    async fn delete(
        &self,
        c: &str,
        p: &str,
        _f: &str,
        keys: &PrimaryKeys,
    ) -> Result<(), MilvusError> {
        self.record(format!("delete {c}/{p} {keys:?}"));
        Ok(())
    }
    async fn create_partition(&self, _c: &str, _p: &str) -> Result<(), MilvusError> {
        Ok(())
    }
    async fn drop_partition(&self, _c: &str, _p: &str) -> Result<(), MilvusError> {
        Ok(())
    }
    async fn drop_collection(&self, c: &str) -> Result<(), MilvusError> {
        self.record(format!("drop_collection {c}"));
        Ok(())
    }
}

fn base(t: MsgType, ts: u64) -> Option<MsgBase> {
    Some(MsgBase {
        msg_type: t as i32,
        timestamp: ts,
        ..Default::default()
    })
}

fn insert(ts: u64, pks: &[i64]) -> Vec<u8> {
    msg::InsertRequest {
        base: base(MsgType::Insert, ts),
        collection_id: 1,
        partition_name: "_default".into(),
        timestamps: vec![ts; pks.len()],
        fields_data: vec![
            FieldData {
                r#type: DataType::Int64 as i32,
                field_name: "id".into(),
                field: Some(Field::Scalars(ScalarField {
                    data: Some(S::LongData(LongArray { data: pks.to_vec() })),
                })),
                ..Default::default()
            },
            FieldData {
                r#type: DataType::FloatVector as i32,
                field_name: "v".into(),
                field: Some(Field::Vectors(VectorField {
                    dim: 1,
                    data: Some(V::FloatVector(FloatArray {
                        data: pks.iter().map(|&k| k as f32).collect(),
                    })),
                })),
                ..Default::default()
            },
        ],
        num_rows: pks.len() as u64,
        version: msg::InsertDataVersion::ColumnBased as i32,
        ..Default::default()
    }
    .encode_to_vec()
}

fn delete(ts: u64, pks: &[i64]) -> Vec<u8> {
    msg::DeleteRequest {
        base: base(MsgType::Delete, ts),
        collection_id: 1,
        partition_name: "_default".into(),
        timestamps: vec![ts; pks.len()],
        num_rows: pks.len() as i64,
        primary_keys: Some(IDs {
            id_field: Some(IdField::IntId(LongArray { data: pks.to_vec() })),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn drop_collection(ts: u64) -> Vec<u8> {
    msg::DropCollectionRequest {
        base: base(MsgType::DropCollection, ts),
        collection_name: "books".into(),
        collection_id: 1,
        ..Default::default()
    }
    .encode_to_vec()
}

fn entry(offset: i64, msg_type: MsgType, ts: u64, payload: Vec<u8>) -> LogEntry {
    LogEntry {
        kafka_offset: offset,
        msg_type: msg_type as i32,
        ts,
        collection_id: 1,
        payload,
    }
}

fn routes() -> Routes {
    Routes::from([(
        1,
        CollectionRoute {
            target_collection: "t".into(),
            pk_field: "id".into(),
            partition_key: false,
        },
    )])
}

fn open(dir: &Path) -> DurableLog {
    DurableLog::open(&LogConfig::new(dir.join("log"))).expect("open log")
}

/// Runs this test binary's `crash_child` test with `failpoint` enabled; returns whether
/// it aborted.
fn run_child(dir: &Path, failpoint: &str) -> std::process::ExitStatus {
    run_child_with(dir, failpoint, false)
}

fn run_child_with(dir: &Path, failpoint: &str, drop: bool) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    if drop {
        cmd.env(DROP_VAR, "1");
    }
    let out = cmd
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env("FERRY_FAILPOINTS", failpoint)
        .output()
        .expect("spawn child");
    eprintln!(
        "child: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
}

#[cfg(unix)]
fn aborted(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

/// The child: appends one window (upsert pair + a delete) unless the log has it, flushes,
/// then applies. Run only by the tests below (they set the directory).
#[tokio::test]
#[ignore = "run as a child process by the crash tests"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let log = open(&dir);
    let drop = std::env::var_os(DROP_VAR).is_some();
    if log.position(CH).is_none() {
        log.init_position(CH, ChannelPosition::default())
            .expect("init");
        let mut window = vec![
            entry(0, MsgType::Insert, 10, insert(10, &[1, 2])),
            entry(1, MsgType::Insert, 20, insert(20, &[2])),
            entry(2, MsgType::Delete, 20, delete(20, &[2])),
            entry(3, MsgType::Delete, 30, delete(30, &[1])),
        ];
        if drop {
            window = vec![entry(0, MsgType::DropCollection, 35, drop_collection(35))];
        }
        log.append_now(
            CH,
            window,
            ChannelPosition {
                next_offset: 5,
                skip_through_ts: 40,
            },
            40,
        )
        .expect("append");
        log.flush().await.expect("flush");
    }
    let target = FileTarget(dir.join("target.txt"));
    let cfg = ApplyConfig { drop_on_source_drop: drop, ..ApplyConfig::default() };
    let mut applier = Applier::new(CH, log.clone(), target, routes(), cfg);
    applier.apply_available().await.expect("apply");
    log.flush().await.expect("flush");
}

#[test]
fn crash_after_target_write_replays_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = run_child(dir.path(), "apply.after_target_write");
    assert!(
        aborted(status),
        "child should abort at the failpoint: {status:?}"
    );

    let writes = std::fs::read_to_string(dir.path().join("target.txt")).expect("target file");
    // The whole window is one batch: key 2's upsert survives its own delete, key 1 is deleted.
    assert_eq!(
        writes.lines().collect::<Vec<_>>(),
        vec![
            "delete t/_default Int([1])",
            "upsert t/_default Some(Int([2]))"
        ],
    );
    {
        let log = open(dir.path());
        assert_eq!(
            log.cursor(CH),
            Cursor::default(),
            "cursor must not move past an unacknowledged batch"
        );
        assert_eq!(log.pending_events(), 4);
    }

    // Restarted without the failpoint, the same batch is applied again and acknowledged.
    let status = run_child(dir.path(), "");
    assert!(status.success(), "{status:?}");
    let writes = std::fs::read_to_string(dir.path().join("target.txt")).expect("target file");
    assert_eq!(writes.lines().count(), 4, "{writes}");
    assert_eq!(
        writes.lines().skip(2).collect::<Vec<_>>(),
        writes.lines().take(2).collect::<Vec<_>>()
    );
    let log = open(dir.path());
    assert_eq!(
        log.cursor(CH),
        Cursor {
            next_seq: 4,
            applied_ts: 40
        }
    );
    assert_eq!(log.pending_events(), 0);
}

#[test]
fn crash_after_append_keeps_entries_and_position_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = run_child(dir.path(), "log.after_append");
    assert!(
        aborted(status),
        "child should abort at the failpoint: {status:?}"
    );
    let log = open(dir.path());
    // Aborted before the flush: sled may or may not have the batch, but never half of it.
    let entries = log.read(CH, 0, 100, u64::MAX).expect("read");
    let offset = log.position(CH).map(|p| p.next_offset);
    match (entries.len(), offset) {
        (0, None | Some(0)) | (4, Some(5)) => {}
        (n, o) => panic!("{n} entries survived with position {o:?}: the batch was split"),
    }
    assert!(
        !dir.path().join("target.txt").exists(),
        "nothing applied before the crash"
    );
}

/// `on_source_drop = "drop"`: a crash right after the target collection was dropped leaves
/// the DropCollection pending; the restart drops again (harmless: drop if it exists) and
/// moves on.
#[test]
fn crash_after_dropping_the_target_collection_repeats_the_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = run_child_with(dir.path(), "apply.after_target_write", true);
    assert!(aborted(status), "{status:?}");
    let writes = std::fs::read_to_string(dir.path().join("target.txt")).expect("target file");
    assert_eq!(writes.lines().collect::<Vec<_>>(), ["drop_collection t"]);
    {
        let log = open(dir.path());
        assert_eq!(log.cursor(CH), Cursor::default(), "the drop is not acknowledged yet");
    }
    let status = run_child_with(dir.path(), "", true);
    assert!(status.success(), "{status:?}");
    let writes = std::fs::read_to_string(dir.path().join("target.txt")).expect("target file");
    assert_eq!(writes.lines().collect::<Vec<_>>(), ["drop_collection t", "drop_collection t"]);
    let log = open(dir.path());
    assert_eq!(log.cursor(CH), Cursor { next_seq: 1, applied_ts: 40 });
    assert_eq!(log.pending_events(), 0);
}
