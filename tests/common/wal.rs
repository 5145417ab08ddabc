//! What the WAL reader tests share, whatever the transport: the writes they make with
//! pymilvus and column accessors.

use ferry::proto::schema::{field_data::Field, scalar_field::Data as S, vector_field::Data as V};

/// Creates `name` (id Int64 pk, x Int64, v FloatVector(4), one shard), inserts ids 1..=3,
/// upserts id 2, deletes id 3.
pub const WRITES: &str = r#"
import sys
from pymilvus import connections, FieldSchema, CollectionSchema, DataType, Collection
connections.connect(uri=sys.argv[1])
schema = CollectionSchema([
    FieldSchema("id", DataType.INT64, is_primary=True),
    FieldSchema("x", DataType.INT64),
    FieldSchema("v", DataType.FLOAT_VECTOR, dim=4),
])
c = Collection(sys.argv[2], schema, shards_num=1)
c.insert([[1, 2, 3], [10, 20, 30], [[1.0] * 4, [2.0] * 4, [3.0] * 4]])
c.upsert([[2], [21], [[2.5] * 4]])
c.delete("id in [3]")
print("ok")
"#;

/// Runs a Python script with pymilvus 2.3 (`FERRY_TEST_PYTHON`) and returns its stdout,
/// failing the test with its output when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let env = super::env();
    let out = std::process::Command::new(&env.python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run FERRY_TEST_PYTHON");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn longs(rows: &ferry::milvus::Rows, name: &str) -> Vec<i64> {
    match rows.column(name).and_then(|c| c.field.as_ref()) {
        Some(Field::Scalars(s)) => match &s.data {
            Some(S::LongData(a)) => a.data.clone(),
            other => panic!("{name} is not Int64: {other:?}"),
        },
        other => panic!("{name} missing: {other:?}"),
    }
}

pub fn floats(rows: &ferry::milvus::Rows, name: &str) -> Vec<f32> {
    match rows.column(name).and_then(|c| c.field.as_ref()) {
        Some(Field::Vectors(v)) => match &v.data {
            Some(V::FloatVector(a)) => a.data.clone(),
            other => panic!("{name} is not a float vector: {other:?}"),
        },
        other => panic!("{name} missing: {other:?}"),
    }
}

