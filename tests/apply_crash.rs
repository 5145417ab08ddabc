//! Crash tests of the apply loop. A child process (this binary's ignored `crash_child`
//! test) appends a scenario's windows to the durable log and applies them to a *file
//! target*, and dies like `kill -9` where the test says: at a failpoint
//! (`log.after_append`, `apply.after_target_write`) or right after the target's n-th write
//! (`FERRY_TEST_CRASH_AT`, a crash in the middle of a batch). The parent restarts it and
//! checks what the target holds.
//!
//! The file target records every write whole (each upserted row with all its fields, each
//! delete with its partition scope), so replaying the file gives the target's final state:
//! rows by (partition, key) with every field. The expected state is computed from the
//! source's requests by a model of Milvus's semantics written here, independently of the
//! applier's planner, and the two must be equal field for field.
//!
//! Two of the tests run a 2-shard collection whose channels are far apart in time (one
//! reader 10 minutes of TSO behind the other, one channel idle but ticking): each channel's
//! cursor and applied ts must follow its own log, and a crash anywhere must resume each
//! channel from its own durable cursor.
//!
//! Needs no servers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use ferry::apply::{Applier, ApplyConfig, CollectionRoute, Routes, Target};
use ferry::log::{ChannelPosition, Cursor, DurableLog, LogConfig, LogEntry};
use ferry::milvus::{MilvusError, PrimaryKeys, Rows};
use ferry::proto::common::{MsgBase, MsgType};
use ferry::proto::msg;
use ferry::proto::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as S, vector_field::Data as V, BoolArray,
    DataType, DoubleArray, FieldData, FloatArray, IDs, JsonArray, LongArray, ScalarField,
    StringArray, VectorField,
};
use ferry::msgstream::decode::{compose, physical_ms};
use prost::Message;
use serde_json::{json, Value};

/// The one channel of the single-channel scenarios.
const CH: &str = "by-dev-rootcoord-dml_3";
/// The two channels of a 2-shard collection (`Scenario::Two`): even keys hash to A, odd to B.
const CH_A: &str = "by-dev-rootcoord-dml_0";
const CH_B: &str = "by-dev-rootcoord-dml_1";

const DIR_VAR: &str = "FERRY_TEST_CRASH_DIR";
/// The scenario the child runs (`Scenario::name`).
const SCENARIO_VAR: &str = "FERRY_TEST_CRASH_SCENARIO";
/// How many of the scenario's windows (in ingestion order) the child appends.
const UPTO_VAR: &str = "FERRY_TEST_CRASH_UPTO";
/// The child aborts right after the target file's n-th record (1-based).
const CRASH_AT_VAR: &str = "FERRY_TEST_CRASH_AT";
/// `apply.max_batch_rows` of the child: small values cut the log into many batches.
const ROWS_VAR: &str = "FERRY_TEST_CRASH_ROWS";
/// Channel order the child applies in (`Scenario::Two`): "AB" or "BA".
const ORDER_VAR: &str = "FERRY_TEST_CRASH_ORDER";
/// The child's file target flushes the log before every k-th write, as sled's background
/// flush would at some point: what was applied before it survives a crash.
const FLUSH_VAR: &str = "FERRY_TEST_CRASH_FLUSH_EVERY";

const PARTITIONS: [&str; 3] = ["_default", "p1", "p2"];
/// One minute of TSO time, in physical milliseconds.
const MINUTE_MS: u64 = 60_000;

// ---------------------------------------------------------------------------------------
// The source: rows, requests, windows.
// ---------------------------------------------------------------------------------------

/// One row of the test collection: a field of each kind the applier passes through.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    v: [f32; 2],
    s: String,
    n: f64,
    b: bool,
    j: Value,
}

impl Row {
    /// Version `u` of key `id`: every field differs between versions (`b` in most).
    fn new(id: i64, u: u64) -> Row {
        Row {
            id,
            v: [id as f32 + 0.5, u as f32 / 8.0],
            s: format!("key{id}-v{u}"),
            n: u as f64 * 0.001 + id as f64,
            b: (id as u64 + u) % 3 == 0,
            j: json!({"id": id, "u": u, "tags": [u % 5, "t"]}),
        }
    }

    /// The row as the target must hold it, written from the struct (not from columns).
    fn expected(&self) -> Value {
        json!({
            "id": self.id,
            "v": [f64::from(self.v[0]), f64::from(self.v[1])],
            "s": self.s,
            "n": self.n,
            "b": self.b,
            "j": self.j,
        })
    }
}

/// One source message, as the source wrote it: an upsert is an Insert and a Delete of the
/// same keys in the same partition at the same ts.
#[derive(Debug, Clone)]
enum Op {
    Insert { ts: u64, partition: String, rows: Vec<Row> },
    /// `partition` empty: every partition.
    Delete { ts: u64, partition: String, keys: Vec<i64> },
    DropCollection { ts: u64 },
}

impl Op {
    fn ts(&self) -> u64 {
        match self {
            Op::Insert { ts, .. } | Op::Delete { ts, .. } | Op::DropCollection { ts } => *ts,
        }
    }

    /// The part of this message that lands on the channel of `keep` keys; None if empty.
    fn split(&self, keep: impl Fn(i64) -> bool) -> Option<Op> {
        match self {
            Op::Insert { ts, partition, rows } => {
                let rows: Vec<Row> = rows.iter().filter(|r| keep(r.id)).cloned().collect();
                (!rows.is_empty()).then(|| Op::Insert { ts: *ts, partition: partition.clone(), rows })
            }
            Op::Delete { ts, partition, keys } => {
                let keys: Vec<i64> = keys.iter().copied().filter(|&k| keep(k)).collect();
                (!keys.is_empty()).then(|| Op::Delete { ts: *ts, partition: partition.clone(), keys })
            }
            Op::DropCollection { .. } => Some(self.clone()),
        }
    }

    fn msg_type(&self) -> MsgType {
        match self {
            Op::Insert { .. } => MsgType::Insert,
            Op::Delete { .. } => MsgType::Delete,
            Op::DropCollection { .. } => MsgType::DropCollection,
        }
    }

    /// The WAL record Milvus 2.3 writes for it.
    fn encode(&self) -> Vec<u8> {
        let base = |t: MsgType, ts: u64| {
            Some(MsgBase {
                msg_type: t as i32,
                timestamp: ts,
                ..Default::default()
            })
        };
        match self {
            Op::Insert { ts, partition, rows } => msg::InsertRequest {
                base: base(MsgType::Insert, *ts),
                collection_id: 1,
                partition_name: partition.clone(),
                partition_id: partition_id(partition),
                timestamps: vec![*ts; rows.len()],
                fields_data: columns(rows),
                num_rows: rows.len() as u64,
                version: msg::InsertDataVersion::ColumnBased as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            Op::Delete { ts, partition, keys } => msg::DeleteRequest {
                base: base(MsgType::Delete, *ts),
                collection_id: 1,
                partition_name: partition.clone(),
                partition_id: partition_id(partition),
                timestamps: vec![*ts; keys.len()],
                num_rows: keys.len() as i64,
                primary_keys: Some(IDs {
                    id_field: Some(IdField::IntId(LongArray { data: keys.clone() })),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
            Op::DropCollection { ts } => msg::DropCollectionRequest {
                base: base(MsgType::DropCollection, *ts),
                collection_name: "books".into(),
                collection_id: 1,
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }
}

fn scalar(name: &str, t: DataType, data: S) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField { data: Some(data), ..Default::default() })),
        ..Default::default()
    }
}

/// Column-based fields of `rows`, as the proxy fills an InsertRequest.
fn columns(rows: &[Row]) -> Vec<FieldData> {
    vec![
        scalar("id", DataType::Int64, S::LongData(LongArray { data: rows.iter().map(|r| r.id).collect() })),
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "v".into(),
            field: Some(Field::Vectors(VectorField {
                dim: 2,
                data: Some(V::FloatVector(FloatArray { data: rows.iter().flat_map(|r| r.v).collect() })),
                ..Default::default()
            })),
            ..Default::default()
        },
        scalar("s", DataType::VarChar, S::StringData(StringArray { data: rows.iter().map(|r| r.s.clone()).collect() })),
        scalar("n", DataType::Double, S::DoubleData(DoubleArray { data: rows.iter().map(|r| r.n).collect() })),
        scalar("b", DataType::Bool, S::BoolData(BoolArray { data: rows.iter().map(|r| r.b).collect() })),
        scalar("j", DataType::Json, S::JsonData(JsonArray { data: rows.iter().map(|r| r.j.to_string().into_bytes()).collect() })),
    ]
}

/// A sealed window of one channel: its messages and the time tick that sealed it.
#[derive(Debug, Clone)]
struct Window {
    channel: &'static str,
    ops: Vec<Op>,
    tick: u64,
}

/// What the source did (`requests`, in ts order, each whole) and what the log receives
/// (`windows`, per channel, in the order ferry's readers append them).
struct Source {
    requests: Vec<Op>,
    windows: Vec<Window>,
    channels: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// One window: an insert, an upsert, deletes (one batch).
    One,
    /// A window of inserts, then a window with a DropCollection.
    Drop,
    /// Eight windows on one channel of random upserts, inserts and deletes over three
    /// partitions, partition-less deletes and keys living in two partitions.
    History,
    /// Two channels of one collection, 14 minutes of requests; A's keys stop being written
    /// after minute 8 (A idles, ticking); B's reader lags 10 minutes behind A's.
    Two,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::One => "one",
            Scenario::Drop => "drop",
            Scenario::History => "history",
            Scenario::Two => "two",
        }
    }

    fn from_name(s: &str) -> Scenario {
        [Scenario::One, Scenario::Drop, Scenario::History, Scenario::Two]
            .into_iter()
            .find(|sc| sc.name() == s)
            .unwrap_or_else(|| panic!("unknown scenario {s:?}"))
    }

    fn source(self) -> Source {
        let d = "_default".to_string();
        let rows = |ks: &[i64], u: u64| ks.iter().map(|&k| Row::new(k, u)).collect::<Vec<_>>();
        match self {
            Scenario::One => {
                let ops = vec![
                    Op::Insert { ts: 10, partition: d.clone(), rows: rows(&[1, 2], 1) },
                    Op::Insert { ts: 20, partition: d.clone(), rows: rows(&[2], 2) },
                    Op::Delete { ts: 20, partition: d.clone(), keys: vec![2] },
                    Op::Delete { ts: 30, partition: d, keys: vec![1] },
                ];
                let windows = vec![Window { channel: CH, ops: ops.clone(), tick: 40 }];
                Source { requests: ops, windows, channels: vec![CH] }
            }
            Scenario::Drop => {
                let insert = Op::Insert { ts: 10, partition: d, rows: rows(&[1, 2], 1) };
                let drop = Op::DropCollection { ts: 35 };
                let windows = vec![
                    Window { channel: CH, ops: vec![insert.clone()], tick: 20 },
                    Window { channel: CH, ops: vec![drop.clone()], tick: 40 },
                ];
                Source { requests: vec![insert, drop], windows, channels: vec![CH] }
            }
            Scenario::History => generated(0x5eed_0004, &[CH], 24, 10, |_, _| true, |_| 0),
            Scenario::Two => generated(
                0x5eed_0003,
                &[CH_A, CH_B],
                42,
                16,
                // After minute 8 only B's (odd) keys are written: A idles, ticking.
                |t_ms, k| t_ms < 8 * MINUTE_MS || k % 2 == 1,
                // B's reader is 10 minutes behind A's.
                |ch| if ch == CH_B { 10 * MINUTE_MS } else { 0 },
            ),
        }
    }
}

/// A small deterministic generator (an LCG: the test needs repeatability, not quality).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// TSO physical time of the generated scenarios' start.
const T0_MS: u64 = 1_750_000_000_000;

/// `n` requests 20 s apart, each on 1-3 of keys 1..=`keys` allowed by `allow(t_ms, key)`,
/// split over `channels` by key (key % channels), in 60 s windows; `lag(channel)` is how far
/// that channel's reader is behind (windows are appended in order of tick + lag).
fn generated(
    seed: u64,
    channels: &[&'static str],
    n: u64,
    keys: i64,
    allow: impl Fn(u64, i64) -> bool,
    lag: impl Fn(&str) -> u64,
) -> Source {
    let mut rng = Rng(seed);
    let mut version = 0u64;
    // (partition, key) holding a row, to insert only where the key is not (Milvus would
    // keep both versions: duplicates no query can tell apart).
    let mut live: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut requests = Vec::new();
    for i in 0..n {
        let t_ms = 1_000 + i * 20_000;
        let ts = compose(T0_MS + t_ms, 0);
        let mut ks = BTreeSet::new();
        for _ in 0..=rng.below(3) {
            let k = 1 + rng.below(keys as u64) as i64;
            if allow(t_ms, k) {
                ks.insert(k);
            }
        }
        if ks.is_empty() {
            continue;
        }
        let ks: Vec<i64> = ks.into_iter().collect();
        let p = PARTITIONS[rng.below(3) as usize].to_string();
        let fresh: Vec<i64> = ks.iter().copied().filter(|&k| !live.contains(&(p.clone(), k))).collect();
        let mut rows = |ks: &[i64]| {
            ks.iter()
                .map(|&k| {
                    version += 1;
                    Row::new(k, version)
                })
                .collect::<Vec<_>>()
        };
        match rng.below(10) {
            // Insert, where the key is not in the partition yet.
            5 | 6 if !fresh.is_empty() => {
                requests.push(Op::Insert { ts, partition: p.clone(), rows: rows(&fresh) });
                live.extend(fresh.iter().map(|&k| (p.clone(), k)));
            }
            7 | 8 => {
                requests.push(Op::Delete { ts, partition: p.clone(), keys: ks.clone() });
                for k in &ks {
                    live.remove(&(p.clone(), *k));
                }
            }
            9 => {
                requests.push(Op::Delete { ts, partition: String::new(), keys: ks.clone() });
                live.retain(|(_, k)| !ks.contains(k));
            }
            // Upsert: the key may live in another partition too; it then stays there.
            _ => {
                requests.push(Op::Insert { ts, partition: p.clone(), rows: rows(&ks) });
                requests.push(Op::Delete { ts, partition: p.clone(), keys: ks.clone() });
                live.extend(ks.iter().map(|&k| (p.clone(), k)));
            }
        }
    }
    // Up to just past the last request: no empty window at the end.
    let span_ms = 1_000 + (n - 1) * 20_000 + 1;
    let mut windows = Vec::new();
    for w in 0..span_ms.div_ceil(MINUTE_MS) {
        let (from, to) = (w * MINUTE_MS, (w + 1) * MINUTE_MS);
        // The tick sealing the window: every request before it is in it.
        let tick = compose(T0_MS + to - 1, 0);
        for (c, &channel) in channels.iter().enumerate() {
            let ops = requests
                .iter()
                .filter(|op| (compose(T0_MS + from, 0)..=tick).contains(&op.ts()))
                .filter_map(|op| op.split(|k| k as usize % channels.len() == c))
                .collect();
            windows.push(Window { channel, ops, tick });
        }
    }
    // Stable: at equal times, generation order (the earlier window first).
    windows.sort_by_key(|w| physical_ms(w.tick) + lag(w.channel));
    Source { requests, windows, channels: channels.to_vec() }
}

/// A model of the source's state after the requests stamped <= `upto`, restricted to keys
/// `keep` (one channel's): Milvus's rules, not the applier's planner. An insert adds a
/// version of each row to its partition; a delete at D removes the versions of its keys
/// stamped before D in the partition it names (in every one if it names none), so an
/// upsert's own delete spares the row it wrote; a dropped collection holds nothing.
/// Visible: the one surviving version per (partition, key).
fn source_state(requests: &[Op], upto: u64, keep: impl Fn(i64) -> bool) -> TargetState {
    let mut versions: Vec<(String, i64, u64, Value)> = Vec::new();
    let mut dropped = false;
    for op in requests.iter().filter(|op| op.ts() <= upto) {
        match op {
            Op::Insert { ts, partition, rows } => {
                for r in rows.iter().filter(|r| keep(r.id)) {
                    versions.push((partition.clone(), r.id, *ts, r.expected()));
                }
            }
            Op::Delete { ts, partition, keys } => versions.retain(|(p, k, t, _)| {
                !(keep(*k) && keys.contains(k) && *t < *ts && (partition.is_empty() || partition == p))
            }),
            Op::DropCollection { .. } => {
                versions.clear();
                dropped = true;
            }
        }
    }
    let mut rows = BTreeMap::new();
    for (p, k, _, row) in versions {
        let twice = rows.insert((p.clone(), k), row);
        assert!(twice.is_none(), "the scenario inserted key {k} twice into {p}");
    }
    TargetState { rows, dropped }
}

// ---------------------------------------------------------------------------------------
// The file target.
// ---------------------------------------------------------------------------------------

/// The target's state, as the file's writes leave it: each row with every field, by
/// (partition, key).
#[derive(Debug, Default, Clone, PartialEq)]
struct TargetState {
    rows: BTreeMap<(String, i64), Value>,
    dropped: bool,
}

/// A target that appends each write, whole, as a JSON line to a file, so the writes of a
/// process that then crashed are still there (written with one `write` call each; an abort
/// leaves them in the page cache). Each line carries `tag`: the channels' apply cursors
/// (`next_seq`) when it was written, which name the batch it belongs to (a cursor moves
/// only after its batch's writes).
#[derive(Clone)]
struct FileTarget {
    path: PathBuf,
    log: DurableLog,
    channels: Vec<&'static str>,
    /// Abort right after the file's n-th line.
    crash_at: Option<usize>,
    /// Flush the log before every k-th line.
    flush_every: Option<usize>,
}

impl FileTarget {
    fn new(dir: &Path, log: &DurableLog, channels: &[&'static str]) -> Self {
        FileTarget { path: target_file(dir), log: log.clone(), channels: channels.to_vec(), crash_at: None, flush_every: None }
    }

    async fn record(&self, mut line: Value) {
        use std::io::Write;
        let n = match std::fs::read_to_string(&self.path) {
            Ok(s) => s.lines().count() + 1,
            Err(_) => 1,
        };
        if self.flush_every.is_some_and(|k| n % k == 0) {
            self.log.flush().await.expect("flush");
        }
        line["tag"] = json!(self.channels.iter().map(|c| self.log.cursor(c).next_seq).collect::<Vec<_>>());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open target file");
        f.write_all(format!("{line}\n").as_bytes()).expect("write target file");
        if self.crash_at == Some(n) {
            eprintln!("crash_child: aborting after target write {n}");
            std::process::abort();
        }
    }
}

/// Every field of row `i`, by column name. A column kind this does not know fails the test
/// rather than going unchecked.
fn row_json(rows: &Rows, i: usize) -> Value {
    let mut out = serde_json::Map::new();
    for c in &rows.columns {
        let v = match &c.field {
            Some(Field::Scalars(s)) => match &s.data {
                Some(S::LongData(a)) => json!(a.data[i]),
                Some(S::IntData(a)) => json!(a.data[i]),
                Some(S::DoubleData(a)) => json!(a.data[i]),
                Some(S::FloatData(a)) => json!(f64::from(a.data[i])),
                Some(S::BoolData(a)) => json!(a.data[i]),
                Some(S::StringData(a)) => json!(a.data[i]),
                Some(S::JsonData(a)) => serde_json::from_slice(&a.data[i]).expect("JSON field holds JSON"),
                other => panic!("column {}: {other:?} not modelled", c.field_name),
            },
            Some(Field::Vectors(VectorField { dim, data: Some(V::FloatVector(a)), .. })) => {
                let w = *dim as usize;
                json!(a.data[i * w..(i + 1) * w].iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
            }
            other => panic!("column {}: {other:?} not modelled", c.field_name),
        };
        let again = out.insert(c.field_name.clone(), v);
        assert!(again.is_none(), "column {} twice", c.field_name);
    }
    Value::Object(out)
}

fn keys_json(keys: &PrimaryKeys) -> Value {
    match keys {
        PrimaryKeys::Int(v) => json!(v),
        PrimaryKeys::Str(v) => json!(v),
    }
}

impl Target for FileTarget {
    async fn insert(&self, _c: &str, _p: &str, _rows: &Rows) -> Result<(), MilvusError> {
        unreachable!("the applier only upserts")
    }
    async fn upsert(&self, c: &str, p: &str, rows: &Rows) -> Result<(), MilvusError> {
        let rows: Vec<Value> = (0..rows.len()).map(|i| row_json(rows, i)).collect();
        self.record(json!({"op": "upsert", "c": c, "p": p, "rows": rows})).await;
        Ok(())
    }
    async fn delete(&self, c: &str, p: &str, _f: &str, keys: &PrimaryKeys) -> Result<(), MilvusError> {
        self.record(json!({"op": "delete", "c": c, "p": p, "keys": keys_json(keys)})).await;
        Ok(())
    }
    async fn create_partition(&self, c: &str, p: &str) -> Result<(), MilvusError> {
        self.record(json!({"op": "create_partition", "c": c, "p": p})).await;
        Ok(())
    }
    async fn drop_partition(&self, c: &str, p: &str) -> Result<(), MilvusError> {
        self.record(json!({"op": "drop_partition", "c": c, "p": p})).await;
        Ok(())
    }
    async fn drop_collection(&self, c: &str) -> Result<(), MilvusError> {
        self.record(json!({"op": "drop_collection", "c": c})).await;
        Ok(())
    }
}

fn target_file(dir: &Path) -> PathBuf {
    dir.join("target.jsonl")
}

/// The file's writes, in order (none if the file does not exist).
fn writes(dir: &Path) -> Vec<Value> {
    match std::fs::read_to_string(target_file(dir)) {
        Ok(s) => s.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read target file: {e}"),
    }
}

/// Replays writes on a model of the target collection `t`. A write real Milvus would refuse
/// (into a partition never created, or after the collection was dropped) fails the test.
fn replay(writes: &[Value]) -> TargetState {
    let mut st = TargetState::default();
    let mut partitions: BTreeSet<String> = BTreeSet::from(["_default".to_string()]);
    for w in writes {
        assert_eq!(w["c"], "t", "write to another collection: {w}");
        let p = w["p"].as_str().unwrap_or_default().to_string();
        let op = w["op"].as_str().expect("op");
        assert!(!st.dropped, "{op} after the collection was dropped: {w}");
        assert!(
            p.is_empty() || partitions.contains(&p) || op == "create_partition",
            "{op} in partition {p:?}, which the target does not have: {w}"
        );
        match op {
            "upsert" => {
                for row in w["rows"].as_array().expect("rows") {
                    let k = row["id"].as_i64().expect("an int64 key");
                    st.rows.insert((p.clone(), k), row.clone());
                }
            }
            "delete" => {
                let keys: Vec<i64> = serde_json::from_value(w["keys"].clone()).expect("int keys");
                st.rows.retain(|(rp, k), _| !(keys.contains(k) && (p.is_empty() || *rp == p)));
            }
            "create_partition" => {
                partitions.insert(p);
            }
            "drop_partition" => {
                partitions.remove(&p);
                st.rows.retain(|(rp, _), _| *rp != p);
            }
            "drop_collection" => {
                st.rows.clear();
                st.dropped = true;
            }
            other => panic!("unknown write {other}"),
        }
    }
    st
}

fn ops(writes: &[Value]) -> Vec<&str> {
    writes.iter().map(|w| w["op"].as_str().expect("op")).collect()
}

/// Asserts the target equals `want`, naming the first difference (a whole-map diff of a few
/// hundred rows is unreadable).
#[track_caller]
fn assert_state(got: &TargetState, want: &TargetState, context: &str) {
    for (k, v) in &want.rows {
        match got.rows.get(k) {
            None => panic!("{context}: target lacks {k:?} = {v}"),
            Some(g) => assert_eq!(g, v, "{context}: row {k:?} differs"),
        }
    }
    for (k, v) in &got.rows {
        assert!(want.rows.contains_key(k), "{context}: target has {k:?} = {v}, the source does not");
    }
    assert_eq!(got.dropped, want.dropped, "{context}: collection dropped?");
    assert!(!want.rows.is_empty() || want.dropped, "{context}: a scenario that leaves nothing checks little");
}

// ---------------------------------------------------------------------------------------
// The log and the applier.
// ---------------------------------------------------------------------------------------

fn open(dir: &Path) -> DurableLog {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match DurableLog::open(&LogConfig::new(dir.join("log"))) {
            Ok(log) => return log,
            // sled lets go of its lock file when its background threads let go of the
            // database, a moment after the last handle is dropped (the parent checks the log
            // between the child's runs); and a child forked by a test running alongside may
            // hold the descriptor until it execs. Both pass.
            Err(e) if format!("{e:?}").contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open log: {e:?}"),
        }
    }
}

fn routes() -> Routes {
    Routes::from([(
        1,
        CollectionRoute {
            target_collection: "t".into(),
            pk_field: "id".into(),
            partition_key: false,
            partitions: Vec::new(),
        },
    )])
}

/// The source partition ID Milvus would give `name` (one per name here: these histories
/// never re-create a partition); -1, as Milvus says it, for a delete of every partition.
fn partition_id(name: &str) -> i64 {
    if name.is_empty() {
        -1
    } else {
        100 + name.bytes().map(i64::from).sum::<i64>()
    }
}

/// Each window's log entries and the channel position after it (its tick takes an offset).
fn entries(windows: &[Window]) -> Vec<(Vec<LogEntry>, ChannelPosition)> {
    let mut offsets: BTreeMap<&str, i64> = BTreeMap::new();
    windows
        .iter()
        .map(|w| {
            let o = offsets.entry(w.channel).or_default();
            let entries = w
                .ops
                .iter()
                .map(|op| {
                    *o += 1;
                    LogEntry {
                        kafka_offset: *o - 1,
                        msg_type: op.msg_type() as i32,
                        ts: op.ts(),
                        collection_id: 1,
                        payload: op.encode(),
                    }
                })
                .collect();
            *o += 1;
            (entries, ChannelPosition { next_offset: *o, skip_through_ts: w.tick })
        })
        .collect()
}

/// Appends the first `upto` windows, those the log does not have yet (as a restarted reader
/// does: its stored position says what it read).
fn append(log: &DurableLog, src: &Source, upto: usize) {
    for ch in &src.channels {
        log.init_position(ch, ChannelPosition::default()).expect("init position");
    }
    for (w, (entries, pos)) in src.windows.iter().zip(entries(&src.windows)).take(upto) {
        let at = log.position(w.channel).map_or(0, |p| p.next_offset);
        if at < pos.next_offset {
            log.append_now(w.channel, entries, pos, w.tick).expect("append");
        }
    }
}

fn config(rows: Option<usize>, drop: bool) -> ApplyConfig {
    let mut cfg = ApplyConfig { drop_on_source_drop: drop, ..ApplyConfig::default() };
    if let Some(r) = rows {
        cfg.max_batch_rows = r;
    }
    cfg
}

fn env<T: std::str::FromStr>(var: &str) -> Option<T> {
    std::env::var(var).ok().map(|v| v.parse().ok().unwrap_or_else(|| panic!("{var}={v:?}")))
}

/// The child: appends the scenario's windows the log lacks (up to `UPTO`), flushes, then
/// applies each channel in turn. Run only by the tests below (they set the directory).
#[tokio::test]
#[ignore = "run as a child process by the crash tests"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let scenario = Scenario::from_name(&std::env::var(SCENARIO_VAR).expect("scenario"));
    let src = scenario.source();
    let log = open(&dir);
    append(&log, &src, env(UPTO_VAR).unwrap_or(src.windows.len()));
    log.flush().await.expect("flush");
    let target = FileTarget {
        crash_at: env(CRASH_AT_VAR),
        flush_every: env(FLUSH_VAR),
        ..FileTarget::new(&dir, &log, &src.channels)
    };
    let mut order = src.channels.clone();
    if std::env::var(ORDER_VAR).as_deref() == Ok("BA") {
        order.reverse();
    }
    let cfg = config(env(ROWS_VAR), scenario == Scenario::Drop);
    for ch in order {
        let mut applier = Applier::new(ch, log.clone(), target.clone(), routes(), cfg.clone());
        applier.apply_available().await.expect("apply");
        log.flush().await.expect("flush");
    }
}

/// One run of the child.
struct Child<'a> {
    dir: &'a Path,
    scenario: Scenario,
    env: Vec<(&'static str, String)>,
}

impl<'a> Child<'a> {
    fn new(dir: &'a Path, scenario: Scenario) -> Self {
        Child { dir, scenario, env: vec![("FERRY_FAILPOINTS", String::new())] }
    }
    fn set(mut self, var: &'static str, value: impl ToString) -> Self {
        self.env.retain(|(v, _)| *v != var);
        self.env.push((var, value.to_string()));
        self
    }
    fn failpoint(self, name: &str) -> Self {
        self.set("FERRY_FAILPOINTS", name)
    }
    fn run(&self) -> ExitStatus {
        let exe = std::env::current_exe().expect("current exe");
        let out = Command::new(exe)
            .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, self.dir)
            .env(SCENARIO_VAR, self.scenario.name())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("spawn child");
        if !out.status.success() {
            eprintln!(
                "child {:?}: {:?}\n{}",
                self.env,
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.starts_with("  ")).collect::<Vec<_>>().join("\n")
            );
        }
        out.status
    }
    /// Runs the child and asserts it died at its crash point.
    #[track_caller]
    fn crash(&self) {
        let status = self.run();
        assert!(aborted(status), "the child should abort ({:?}): {status:?}", self.env);
    }
    /// Runs the child and asserts it finished.
    #[track_caller]
    fn finish(&self) {
        let status = self.run();
        assert!(status.success(), "the child should finish ({:?}): {status:?}", self.env);
    }
}

#[cfg(unix)]
fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

/// The state the whole source leaves.
fn final_state(src: &Source) -> TargetState {
    source_state(&src.requests, u64::MAX, |_| true)
}

/// Every channel applied everything, up to its own last tick.
#[track_caller]
fn assert_drained(log: &DurableLog, src: &Source, upto: usize) {
    for ch in &src.channels {
        let windows: Vec<&Window> = src.windows[..upto].iter().filter(|w| w.channel == *ch).collect();
        let tick = windows.last().map_or(0, |w| w.tick);
        let n: usize = windows.iter().map(|w| w.ops.len()).sum();
        assert_eq!(log.cursor(ch), Cursor { next_seq: n as u64, applied_ts: tick }, "{ch}");
        assert_eq!(log.source_ts(ch), tick, "{ch}");
    }
    assert_eq!(log.pending_events(), 0);
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn crash_after_target_write_replays_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Scenario::One.source();
    // The log is flushed before each write: a cursor moved too early would survive.
    Child::new(dir.path(), Scenario::One).set(FLUSH_VAR, 1).failpoint("apply.after_target_write").crash();

    // The whole window is one batch, written before the crash: key 2's upsert survives its
    // own delete, key 1 is deleted; the target already holds the source's state.
    let first = writes(dir.path());
    assert_eq!(ops(&first), ["create_partition", "delete", "upsert"], "{first:?}");
    assert_state(&replay(&first), &final_state(&src), "after the crash");
    {
        let log = open(dir.path());
        assert_eq!(log.cursor(CH), Cursor::default(), "cursor must not move past an unacknowledged batch");
        assert_eq!(log.pending_events(), 4);
    }

    // Restarted without the failpoint, the same batch is applied again and acknowledged.
    Child::new(dir.path(), Scenario::One).finish();
    let all = writes(dir.path());
    // The partition is not created again: the log recorded it (bound to its source ID).
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[3..], all[1..3], "the replay writes the same batch");
    assert_state(&replay(&all), &final_state(&src), "after the restart");
    let log = open(dir.path());
    assert_eq!(log.cursor(CH), Cursor { next_seq: 4, applied_ts: 40 });
    assert_eq!(log.pending_events(), 0);
}

#[test]
fn crash_after_append_keeps_entries_and_position_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Scenario::One.source();
    Child::new(dir.path(), Scenario::One).failpoint("log.after_append").crash();
    {
        let log = open(dir.path());
        // Aborted before the flush: sled may or may not have the batch, but never half of it.
        let entries = log.read(CH, 0, 100, u64::MAX).expect("read");
        let offset = log.position(CH).map(|p| p.next_offset);
        match (entries.len(), offset) {
            (0, None | Some(0)) | (4, Some(5)) => {}
            (n, o) => panic!("{n} entries survived with position {o:?}: the batch was split"),
        }
    }
    assert!(writes(dir.path()).is_empty(), "nothing applied before the crash");
    // The restart reads again what was lost and applies it all.
    Child::new(dir.path(), Scenario::One).finish();
    assert_state(&replay(&writes(dir.path())), &final_state(&src), "after the restart");
    assert_drained(&open(dir.path()), &src, src.windows.len());
}

/// `on_source_drop = "drop"`: a crash right after the target collection was dropped leaves
/// the DropCollection's cursor advance undone, but its done marker is durable (the barrier
/// applies it once): the restart passes it without dropping again, and the target holds
/// nothing.
#[test]
fn crash_after_dropping_the_target_collection_passes_the_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Scenario::Drop.source();
    Child::new(dir.path(), Scenario::Drop).set(UPTO_VAR, 1).finish();
    assert_state(&replay(&writes(dir.path())), &source_state(&src.requests, 20, |_| true), "before the drop");
    assert_drained(&open(dir.path()), &src, 1);

    Child::new(dir.path(), Scenario::Drop).failpoint("apply.after_target_write").crash();
    assert_eq!(ops(&writes(dir.path())), ["create_partition", "upsert", "drop_collection"]);
    {
        let log = open(dir.path());
        assert_eq!(log.cursor(CH), Cursor { next_seq: 1, applied_ts: 20 }, "the drop is not acknowledged yet");
        assert_eq!(log.dropped(), BTreeSet::from([1]), "the drop is recorded before the crash point");
    }
    Child::new(dir.path(), Scenario::Drop).finish();
    let all = writes(dir.path());
    assert_eq!(ops(&all), ["create_partition", "upsert", "drop_collection"], "dropped once");
    assert_state(&replay(&all), &final_state(&src), "after the restart");
    assert!(final_state(&src).dropped);
    assert_drained(&open(dir.path()), &src, src.windows.len());
}

/// Eight windows over three partitions, in batches of a few rows. At each window: a crash
/// after its append (before the flush), a crash after the first batch's target write
/// (before the cursor moves; the log flushed before each write, so a cursor moved too early
/// would show), then a clean run; the target must then hold exactly the
/// source's state as of that window's tick, every field of every row.
#[test]
fn crashes_at_every_window_leave_the_exact_source_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Scenario::History.source();
    assert_eq!(src.windows.len(), 8);
    let child = || Child::new(dir.path(), Scenario::History).set(ROWS_VAR, 3);
    for k in 1..=src.windows.len() {
        child().set(UPTO_VAR, k).failpoint("log.after_append").crash();
        let before = open(dir.path()).cursor(CH);
        let written = writes(dir.path()).len();
        child().set(UPTO_VAR, k).set(FLUSH_VAR, 1).failpoint("apply.after_target_write").crash();
        {
            let log = open(dir.path());
            assert_eq!(log.cursor(CH), before, "window {k}: the cursor moved past a batch not acknowledged");
            assert!(writes(dir.path()).len() > written, "window {k}: the crash came before any write");
        }
        child().set(UPTO_VAR, k).finish();
        let tick = src.windows[k - 1].tick;
        assert_state(&replay(&writes(dir.path())), &source_state(&src.requests, tick, |_| true), &format!("window {k}"));
        assert_drained(&open(dir.path()), &src, k);
    }
    assert_state(&replay(&writes(dir.path())), &final_state(&src), "the end");
}

/// The target state of a two-channel job: each channel's keys as the source had them at
/// that channel's applied position.
fn per_channel_state(src: &Source, log: &DurableLog) -> TargetState {
    let mut st = TargetState::default();
    for (c, ch) in src.channels.iter().enumerate() {
        let part = source_state(&src.requests, log.applied_ts(ch), |k| k as usize % src.channels.len() == c);
        st.rows.extend(part.rows);
    }
    st
}

/// Two channels of one collection far apart in time, in process: A's reader is current,
/// B's is 10 minutes (TSO) behind and its applier drains the backlog only every fourth
/// window. Each channel's cursor and applied ts follow its own windows, the job's applied
/// position (the minimum over channels) is B's, and at every step the target holds A's keys
/// as of A's position and B's as of B's: neither channel's progress moves the other's keys.
#[tokio::test]
async fn two_channels_far_apart_advance_independently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Scenario::Two.source();
    let log = open(dir.path());
    let target = FileTarget::new(dir.path(), &log, &src.channels);
    let cfg = config(Some(4), false);
    let mut a = Applier::new(CH_A, log.clone(), target.clone(), routes(), cfg.clone());
    let mut b = Applier::new(CH_B, log.clone(), target, routes(), cfg);
    let (mut a_tick, mut b_tick, mut b_applied, mut b_windows) = (0, 0, 0, 0);
    let mut widest = 0;
    for k in 1..=src.windows.len() {
        append(&log, &src, k);
        let w = &src.windows[k - 1];
        if w.channel == CH_A {
            a_tick = w.tick;
            a.apply_available().await.expect("apply A");
        } else {
            b_tick = w.tick;
            b_windows += 1;
            if b_windows % 4 == 0 {
                b.apply_available().await.expect("apply B");
                b_applied = w.tick;
            }
        }
        let ctx = format!("after window {k} ({})", w.channel);
        assert_eq!(log.cursor(CH_A).next_seq, log.end_seq(CH_A), "{ctx}: A is drained");
        assert_eq!(log.applied_ts(CH_A), a_tick, "{ctx}: A is applied to its last tick, idle or not");
        assert_eq!(log.source_ts(CH_B), b_tick, "{ctx}");
        assert_eq!(log.applied_ts(CH_B), b_applied, "{ctx}: B is applied to the last window it drained");
        let owed: usize = src.windows[..k]
            .iter()
            .filter(|w| w.channel == CH_B && w.tick > b_applied)
            .map(|w| w.ops.len())
            .sum();
        assert_eq!(log.channel_pending_events(CH_B), owed as u64, "{ctx}: B's backlog");
        assert_eq!(log.channel_pending_events(CH_A), 0, "{ctx}");
        // The job's applied position is its slowest channel's: B's, 10 minutes back.
        let applied = src.channels.iter().map(|c| log.applied_ts(c)).min().unwrap();
        assert_eq!(applied, b_applied, "{ctx}");
        // What the job's lag is made of: B owes its backlog, A nothing.
        assert_eq!(log.source_ts(CH_A), log.applied_ts(CH_A), "{ctx}");
        if b_applied > 0 {
            widest = widest.max(physical_ms(log.applied_ts(CH_A)) - physical_ms(b_applied));
        }
        assert_state(&replay(&writes(dir.path())), &per_channel_state(&src, &log), &ctx);
    }
    assert!(widest >= 10 * MINUTE_MS, "the channels were at most {widest} ms apart");
    assert!(
        src.windows.iter().rev().take(10).all(|w| w.channel == CH_B),
        "A's reader is ahead: its windows are all in before B's last ten"
    );
    b.apply_available().await.expect("apply B");
    assert_state(&replay(&writes(dir.path())), &final_state(&src), "the end");
    assert_drained(&log, &src, src.windows.len());
    let gap = physical_ms(log.applied_ts(CH_A)) as i64 - physical_ms(log.applied_ts(CH_B)) as i64;
    assert_eq!(gap, 0, "both channels end at the same last tick");
}

/// Two channels far apart in time (A current and idle after minute 8, B with a 10-minute
/// backlog), applied one after the other by a child that aborts right after the target's
/// n-th write, for every n, in both orders, in batches of a few rows. The log is flushed
/// before every third write (and between the channels), so a crash loses the last cursor
/// advances, not all of them. After each crash each channel's durable cursor is a batch
/// start between the last flush and the interrupted batch (a channel that finished stays
/// finished, one not started stays at zero); the restart resumes each channel from its own
/// cursor: it writes exactly what a run without the crash wrote for that channel from that
/// cursor on, and the target ends equal to the source, every field of every row.
#[test]
fn two_channels_far_apart_resume_from_their_own_cursors_after_a_crash_anywhere() {
    const FLUSH_EVERY: usize = 3;
    let src = Scenario::Two.source();
    let want = final_state(&src);
    let entries_of = |ch: &str| src.windows.iter().filter(|w| w.channel == ch).map(|w| w.ops.len()).sum::<usize>() as u64;
    let last_tick = |ch: &str| src.windows.iter().rev().find(|w| w.channel == ch).unwrap().tick;
    let tag = |w: &Value, i: usize| w["tag"][i].as_u64().expect("tag");
    let strip = |ws: &[&Value]| {
        ws.iter()
            .map(|w| {
                let mut w = (*w).clone();
                w.as_object_mut().unwrap().remove("tag");
                w
            })
            .collect::<Vec<_>>()
    };
    fn child<'a>(dir: &'a Path, order: &str) -> Child<'a> {
        Child::new(dir, Scenario::Two).set(ROWS_VAR, 4).set(ORDER_VAR, order).set(FLUSH_VAR, FLUSH_EVERY)
    }
    let mut crashes = 0;
    for order in ["AB", "BA"] {
        // Channels by their index in `tag`, in the order the child applies them.
        let (first, second) = if order == "AB" { (0, 1) } else { (1, 0) };
        let name = |i: usize| src.channels[i];
        let reference_dir = tempfile::tempdir().expect("tempdir");
        child(reference_dir.path(), order).finish();
        let reference = writes(reference_dir.path());
        assert_state(&replay(&reference), &want, &format!("{order}: without a crash"));
        assert_drained(&open(reference_dir.path()), &src, src.windows.len());
        // The first channel's writes are those made before its cursor reached its end.
        let first_writes = reference.iter().take_while(|w| tag(w, first) < entries_of(name(first))).count();
        assert!(first_writes > 0 && first_writes < reference.len());
        assert!(reference[first_writes..].iter().all(|w| tag(w, first) == entries_of(name(first))));
        // (channel, write) of the reference's data writes.
        let ref_data: Vec<(usize, &Value)> = reference
            .iter()
            .enumerate()
            .filter(|(_, w)| w["op"] != "create_partition")
            .map(|(i, w)| (if i < first_writes { first } else { second }, w))
            .collect();
        for n in 1..=reference.len() {
            crashes += 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let ctx = format!("{order}, crash after write {n}/{}", reference.len());
            child(dir.path(), order).set(CRASH_AT_VAR, n).crash();
            let crashed = writes(dir.path());
            assert_eq!(crashed[..], reference[..n], "{ctx}: the run before the crash");
            let interrupted = if n > first_writes { second } else { first };
            let cursors: Vec<Cursor> = {
                let log = open(dir.path());
                src.channels.iter().map(|c| log.cursor(c)).collect()
            };
            if n > first_writes {
                let done = Cursor { next_seq: entries_of(name(first)), applied_ts: last_tick(name(first)) };
                assert_eq!(cursors[first], done, "{ctx}: {} finished before the crash", name(first));
            } else {
                assert_eq!(cursors[second], Cursor::default(), "{ctx}: {} not started", name(second));
            }
            assert!(cursors[interrupted].applied_ts < last_tick(name(interrupted)), "{ctx}");
            // The interrupted channel's durable cursor: no later than the batch the crash
            // interrupted (its writes are not all acknowledged), no earlier than the last flush.
            let c = cursors[interrupted].next_seq;
            let flushed = (1..=n).rev().find(|i| i % FLUSH_EVERY == 0).map_or(0, |i| tag(&crashed[i - 1], interrupted));
            assert!(
                (flushed..=tag(&crashed[n - 1], interrupted)).contains(&c),
                "{ctx}: {} resumes at {c}, flushed at {flushed}",
                name(interrupted)
            );
            assert!(c == 0 || reference.iter().any(|w| tag(w, interrupted) == c), "{ctx}: cursor {c} is not a batch start");

            child(dir.path(), order).finish();
            let all = writes(dir.path());
            // Each channel from its own cursor on, as the reference wrote it.
            let expected: Vec<&Value> = [first, second]
                .into_iter()
                .flat_map(|ch| {
                    let from = cursors[ch].next_seq;
                    ref_data.iter().filter(move |(c, w)| *c == ch && tag(w, ch) >= from)
                })
                .map(|(_, w)| *w)
                .collect();
            let restart: Vec<&Value> = all[n..].iter().filter(|w| w["op"] != "create_partition").collect();
            assert_eq!(strip(&restart), strip(&expected), "{ctx}: the restart's writes");
            assert_state(&replay(&all), &want, &ctx);
            assert_drained(&open(dir.path()), &src, src.windows.len());
        }
    }
    eprintln!("{crashes} crashes");
}

/// The generated scenarios hold what the tests above rely on; a change of generator that
/// loses it fails here rather than making those tests check less.
#[test]
fn scenarios_exercise_what_the_crash_tests_rely_on() {
    for sc in [Scenario::History, Scenario::Two] {
        let src = sc.source();
        let end = final_state(&src);
        let in_partitions = |k: i64| end.rows.keys().filter(|(_, kk)| *kk == k).count();
        let keys: BTreeSet<i64> = end.rows.keys().map(|(_, k)| *k).collect();
        assert!(keys.iter().any(|&k| in_partitions(k) > 1), "{sc:?}: a key in two partitions");
        for p in PARTITIONS {
            assert!(end.rows.keys().any(|(pp, _)| pp == p), "{sc:?}: rows in {p}");
        }
        let deletes = |all: bool| {
            src.requests
                .iter()
                .filter(|o| matches!(o, Op::Delete { ts, partition, .. } if partition.is_empty() == all
                    && !src.requests.iter().any(|i| matches!(i, Op::Insert { ts: t, .. } if t == ts))))
                .count()
        };
        assert!(deletes(true) >= 2 && deletes(false) >= 5, "{sc:?}: deletes of one and of every partition");
        // Rows written, then deleted for good: what a bad replay would resurrect.
        let written: BTreeSet<(String, i64)> = src
            .requests
            .iter()
            .flat_map(|o| match o {
                Op::Insert { partition, rows, .. } => rows.iter().map(|r| (partition.clone(), r.id)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let gone = written.iter().filter(|pk| !end.rows.contains_key(*pk)).count();
        assert!(gone >= 3, "{sc:?}: rows written, then deleted for good: {gone}");
    }
    let two = Scenario::Two.source();
    let a_writes_end = two.windows.iter().filter(|w| w.channel == CH_A && !w.ops.is_empty()).map(|w| w.tick).max().unwrap();
    let a_end = two.windows.iter().filter(|w| w.channel == CH_A).map(|w| w.tick).max().unwrap();
    assert!(physical_ms(a_end) - physical_ms(a_writes_end) >= 5 * MINUTE_MS, "A idles, ticking, for minutes");
}
