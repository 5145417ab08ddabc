//! Collections of Milvus 2.4-2.6 (issue 16), on the test environment's two Milvus Lite 3.2
//! servers and its Milvus 2.3.5: every type and schema feature Lite has (several vector
//! fields, sparse vectors, a BM25 function over an analyzed VarChar, nullable fields and
//! default values, geometry, timestamptz, arrays and JSON, dynamic keys, partitions, a
//! collection property) moves Lite -> Lite, and what Milvus 2.3 cannot hold is refused.
//!
//! The source is written, and both sides are read back, by pymilvus
//! (`tests/fixtures/modern_lite.py`), independently of ferry.

mod common;

use std::process::Command;

fn fixture() -> String {
    common::repo_root().join("tests/fixtures/modern_lite.py").display().to_string()
}

/// Runs the pymilvus fixture; its stdout.
fn pymilvus(args: &[&str]) -> String {
    let env = common::env();
    let out = Command::new(&env.lite_python).arg(fixture()).args(args).output().expect("run python");
    assert!(
        out.status.success(),
        "modern_lite.py {args:?} failed: {}",
        common::tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fixture's dump of a collection: schema, functions, indexes, partitions, properties
/// and every row (with the BM25 output each server computed), as JSON.
fn dump(uri: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&pymilvus(&["dump", uri, name])).expect("dump is JSON")
}

/// The first place two dumps differ, for a readable failure.
fn first_mismatch(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value::*;
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (x.get(k).unwrap_or(&Null), y.get(k).unwrap_or(&Null));
                if let Some(m) = first_mismatch(va, vb, &format!("{path}.{k}")) {
                    return Some(m);
                }
            }
            None
        }
        (Array(x), Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (va, vb))| first_mismatch(va, vb, &format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: source {a} / target {b}")),
    }
}

/// Every type and feature Lite has moves Lite -> Lite: `ferry migrate` (many pages, small
/// batches, parallel), `ferry verify --full` EQUAL, and pymilvus's dump of both sides (schema,
/// functions, indexes, partitions, properties, every row with its nulls and its BM25 output
/// as the target computed it) identical. A resumed run accepts the target's schema as Lite
/// reports it, and verify sees a null turned into a value.
#[tokio::test]
async fn every_lite_type_moves_lite_to_lite() {
    let env = common::env();
    let src = common::unique("modern_src");
    let dst = common::unique("modern_dst");
    let made: serde_json::Value = serde_json::from_str(&pymilvus(&["make", &env.lite_uri, &src, "3000"])).unwrap();
    let rows = made["rows"].as_u64().unwrap();
    assert!(rows > 2500, "{made}");

    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.lite_uri,
        &env.lite2_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 400\nbatch_bytes = 150000\nparallelism = 3\nkey_splits = 2",
    );
    let job = job.to_str().unwrap();
    let out = common::run_ferry(&["migrate", "--config", job, "--dry-run"], &[]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dry run: {plan}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "function text_bm25 Bm25(text) -> bm",
        "field  bm sparsefloatvector function-output (computed by the target)",
        "field  i16 int16 nullable default=IntData(16)",
        "field  geo geometry nullable",
        "property timezone = Asia/Shanghai",
    ] {
        assert!(plan.contains(want), "dry-run plan lacks {want:?}:\n{plan}");
    }

    common::migrate_ok(job, &[], rows);
    common::verify_full_equal(job);

    let (a, b) = (dump(&env.lite_uri, &src), dump(&env.lite2_uri, &dst));
    assert_eq!(a["rows"].as_array().unwrap().len() as u64, rows);
    assert_eq!(first_mismatch(&a, &b, ""), None, "pymilvus sees a difference");

    // A second run over the existing target accepts its schema as Lite reports it.
    let out = common::run_ferry(&["migrate", "--config", job, "--quiet", "--if-exists", "resume"], &[]);
    assert!(out.status.success(), "resume: {}", String::from_utf8_lossy(&out.stderr));

    // A null that became a value on the target is a difference.
    let lite2 = common::client(&env.lite2_uri).await;
    lite2.load(&dst, std::time::Duration::from_secs(60)).await.unwrap();
    let r = a["rows"].as_array().unwrap().iter().find(|r| r[1]["i32"].is_null()).unwrap();
    let pk = r[1]["pk"].as_str().unwrap().to_string();
    let mut row = lite2
        .query(&dst, &ferry::milvus::Query {
            expr: ferry::milvus::expr::pk_in("pk", &ferry::milvus::PrimaryKeys::Str(vec![pk.clone()])),
            output_fields: vec!["*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(row.len(), 1, "{pk}");
    let col = row.columns.iter_mut().find(|c| c.field_name == "i32").unwrap();
    assert_eq!(col.valid_data, vec![false], "the row's i32 is null: {col:?}");
    col.valid_data = vec![true];
    lite2.upsert(&dst, r[0].as_str().unwrap(), &row).await.unwrap();
    let out = common::run_ferry(&["verify", "--config", job, "--full"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("DIFFERENT"), "a null turned 0 must differ: {text}");
}

/// A Lite collection of 2.4+ features into Milvus 2.3.5 is refused at planning, naming the
/// collection, the field and the version it needs; nothing is created. The dry run says so too.
#[tokio::test]
async fn modern_collections_into_milvus_2_3_are_refused_by_field_and_version() {
    let env = common::env();
    let src = common::unique("modern_old");
    pymilvus(&["make", &env.lite_uri, &src, "50"]);
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.lite_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\n"),
        "",
    );
    let job = job.to_str().unwrap();
    let want = format!("collection {src:?}: field \"bm\" is SparseFloatVector, which the target (v2.3.5");
    common::migrate_refused(job, &[&want, "cannot hold: SparseFloatVector needs Milvus 2.4 or later"]);
    let target = common::client(&env.target_uri).await;
    assert!(!target.has_collection(&src).await.unwrap(), "nothing is created");
}

/// Tenants by partition key (isolation on), a clustering key, an autoID key kept as autoID
/// (Lite takes given keys with `allow_insert_auto_id`), mmap, a nullable field: Lite -> Lite,
/// each row in the same partition-key partition on both sides, verify --full EQUAL.
#[tokio::test]
async fn a_partition_key_collection_moves_lite_to_lite() {
    let env = common::env();
    let src = common::unique("tenants_src");
    let dst = common::unique("tenants_dst");
    let made: serde_json::Value = serde_json::from_str(&pymilvus(&["make-pk", &env.lite_uri, &src, "2000"])).unwrap();
    let rows = made["rows"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        dir.path(),
        &env.lite_uri,
        &env.lite2_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 300\nparallelism = 2",
    );
    let job = job.to_str().unwrap();
    common::migrate_ok(job, &[], rows);
    common::verify_full_equal(job);
    let (a, mut b) = (dump(&env.lite_uri, &src), dump(&env.lite2_uri, &dst));
    // The target keeps autoID by taking the source's keys as given.
    let props = b["properties"].as_object_mut().unwrap();
    assert_eq!(props.remove("allow_insert_auto_id"), Some(serde_json::json!("true")), "{props:?}");
    assert_eq!(a["rows"].as_array().unwrap().len() as u64, rows);
    assert_eq!(first_mismatch(&a, &b, ""), None, "pymilvus sees a difference");
}
