//! `ferry verify` against the real servers: a migrated collection is changed behind ferry's
//! back on the target (one row's content, one row deleted, rows added); counts and full
//! verification must report exactly that, `--repair` must fix it.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys, Rows};
use ferry::proto::common::{ConsistencyLevel, KeyValuePair, LoadState};
use ferry::proto::schema::{field_data::Field, scalar_field::Data as S, vector_field::Data as V};
use ferry::verify::{self, VerifyError, VerifyMode, VerifyOptions, VerifyReport};

/// User partitions rows are spread over (chunks of 500 ids, round robin).
const PARTS: [&str; 3] = ["_default", "p_a", "p_b"];

fn partition_of(i: i64) -> &'static str {
    PARTS[(i / 500) as usize % 3]
}

/// An indexed, loaded all-types source collection with ids `0..n`: over user partitions, or
/// with `i64` as the partition key.
async fn make_source(c: &MilvusClient, name: &str, shape: Shape, n: i64) {
    c.create_collection(&CreateCollection {
        name: name.into(),
        schema: data::all_types_schema(name, shape),
        shards_num: 2,
        consistency_level: ConsistencyLevel::Bounded,
        properties: vec![],
        num_partitions: if shape.partition_key { 4 } else { 0 },
    })
    .await
    .unwrap();
    if !shape.partition_key {
        for p in &PARTS[1..] {
            c.create_partition(name, p).await.unwrap();
        }
    }
    let ids: Vec<i64> = (0..n).collect();
    for chunk in ids.chunks(500) {
        let part = if shape.partition_key {
            ""
        } else {
            partition_of(chunk[0])
        };
        c.insert(name, part, &data::rows(shape, chunk, 0))
            .await
            .unwrap();
    }
    c.create_index(name, "v", "", &index_params(shape))
        .await
        .unwrap();
    c.load(name, Duration::from_secs(120)).await.unwrap();
}

fn index_params(shape: Shape) -> Vec<KeyValuePair> {
    let kv = |k: &str, v: &str| KeyValuePair {
        key: k.into(),
        value: v.into(),
    };
    if shape.binary_vector {
        vec![kv("index_type", "BIN_FLAT"), kv("metric_type", "HAMMING")]
    } else {
        vec![kv("index_type", "FLAT"), kv("metric_type", "L2")]
    }
}

fn keys(shape: Shape, ids: &[i64]) -> PrimaryKeys {
    let k: Vec<PkValue> = ids.iter().map(|&i| data::key(shape, i)).collect();
    if shape.varchar_pk {
        PrimaryKeys::Str(
            k.into_iter()
                .map(|k| match k {
                    PkValue::Str(s) => s,
                    _ => unreachable!(),
                })
                .collect(),
        )
    } else {
        PrimaryKeys::Int(
            k.into_iter()
                .map(|k| match k {
                    PkValue::Int(v) => v,
                    _ => unreachable!(),
                })
                .collect(),
        )
    }
}

/// Row `i` as the source holds it, with one bit of its vector flipped.
fn vector_bit_flipped(shape: Shape, i: i64) -> Rows {
    let mut r = data::rows(shape, &[i], 0);
    let v = r.columns.iter_mut().find(|c| c.field_name == "v").unwrap();
    match &mut v.field {
        Some(Field::Vectors(vf)) => match &mut vf.data {
            Some(V::FloatVector(a)) => a.data[3] = f32::from_bits(a.data[3].to_bits() ^ 1),
            Some(V::BinaryVector(b)) => b[1] ^= 0x10,
            _ => unreachable!(),
        },
        _ => unreachable!(),
    }
    r
}

/// Row `i` as the source holds it, with its float field nudged.
fn float_changed(shape: Shape, i: i64) -> Rows {
    let mut r = data::rows(shape, &[i], 0);
    let f = r.columns.iter_mut().find(|c| c.field_name == "f").unwrap();
    match &mut f.field {
        Some(Field::Scalars(s)) => match &mut s.data {
            Some(S::FloatData(a)) => a.data[0] += 0.5,
            _ => unreachable!(),
        },
        _ => unreachable!(),
    }
    r
}

fn job(dir: &std::path::Path, src: &str, dst: &str) -> String {
    let env = common::env();
    common::write_job(
        dir,
        &env.source_uri,
        &env.target_uri,
        &format!("[[collections]]\nsource = \"{src}\"\ntarget = \"{dst}\"\n"),
        "page_rows = 400\nbatch_bytes = 100000\nparallelism = 2\nkey_splits = 2",
    )
    .to_str()
    .unwrap()
    .to_string()
}

/// Runs `ferry verify --config JOB ARGS...`, timing it.
fn ferry_verify(job: &str, args: &[&str]) -> Output {
    let mut all = vec!["verify", "--config", job];
    all.extend_from_slice(args);
    let t = Instant::now();
    let out = common::run_ferry(&all, &[]);
    eprintln!("ferry verify {args:?}: {:.1} s", t.elapsed().as_secs_f64());
    out
}

/// `ferry verify --json ARGS...`: exit code and the parsed report.
fn verify_json(job: &str, args: &[&str]) -> (i32, VerifyReport, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ferry_verify(job, &all);
    let raw: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON report");
    let report: VerifyReport =
        serde_json::from_value(raw.clone()).expect("report JSON has the documented shape");
    (out.status.code().unwrap_or(-1), report, raw)
}

#[tokio::test]
async fn int_keys_user_partitions_changed_missing_extra_found_and_repaired() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let shape = Shape::default();
    let (src, dst) = (common::unique("ver_src"), common::unique("ver_dst"));
    let n = 3000;
    make_source(&source, &src, shape, n).await;
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &src, &dst);
    let out = common::run_ferry(&["migrate", "--config", &job, "--quiet"], &[]);
    assert!(out.status.success(), "migrate failed");
    assert_eq!(
        target.load_state(&dst).await.unwrap(),
        LoadState::NotLoad,
        "migrate leaves the target released"
    );

    // 1. Right after the migration: equal, and verify releases the target it had to load.
    let (code, r, _) = verify_json(&job, &["--full"]);
    assert_eq!(code, 0, "{r:?}");
    assert!(r.equal && r.passes.len() == 1 && r.repair.is_none());
    let c = &r.passes[0].collections[0];
    assert_eq!((c.source_rows, c.target_rows), (n as u64, n as u64));
    assert_eq!(c.full.as_ref().unwrap().keys_compared, n as u64);
    assert_eq!(c.partitions.len(), 3);
    assert_eq!(
        target.load_state(&dst).await.unwrap(),
        LoadState::NotLoad,
        "verify must release what it loaded"
    );
    assert_eq!(
        source.load_state(&src).await.unwrap(),
        LoadState::Loaded,
        "verify must not release what it did not load"
    );

    // 2. Behind ferry's back: two rows changed (one vector bit; the float field), one row
    //    deleted from p_b, one row added to p_a. Totals stay equal; partitions do not.
    let (changed_a, changed_b, deleted, added) = (10, 700, 1200, 5000);
    assert_eq!(
        (
            partition_of(changed_a),
            partition_of(changed_b),
            partition_of(deleted)
        ),
        ("_default", "p_a", "p_b")
    );
    target
        .upsert(&dst, "_default", &vector_bit_flipped(shape, changed_a))
        .await
        .unwrap();
    target
        .upsert(&dst, "p_a", &float_changed(shape, changed_b))
        .await
        .unwrap();
    target
        .delete(&dst, "", "pk", &keys(shape, &[deleted]))
        .await
        .unwrap();
    target
        .insert(&dst, "p_a", &data::rows(shape, &[added], 0))
        .await
        .unwrap();
    let k = |i: i64| data::key(shape, i);

    // 3. Counts: totals agree, the partition counts say where rows went.
    let (code, r, raw) = verify_json(&job, &[]);
    assert_eq!(code, 2, "differences exit 2");
    assert_eq!(r.mode, VerifyMode::Counts);
    let c = &r.passes[0].collections[0];
    assert!(
        !r.equal
            && !c.equal
            && c.full.is_none()
            && raw["passes"][0]["collections"][0]["full"].is_null()
    );
    assert_eq!((c.source_rows, c.target_rows), (n as u64, n as u64));
    let part = |name: &str| {
        c.partitions
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .clone()
    };
    assert!(part("_default").equal);
    assert_eq!(
        (
            part("p_a").source_rows,
            part("p_a").target_rows,
            part("p_a").equal
        ),
        (Some(1000), Some(1001), false)
    );
    assert_eq!(
        (
            part("p_b").source_rows,
            part("p_b").target_rows,
            part("p_b").equal
        ),
        (Some(1000), Some(999), false)
    );

    // 4. Full: exactly those keys, in the right categories; keys are plain JSON numbers.
    let (code, r, raw) = verify_json(&job, &["--full"]);
    assert_eq!(code, 2);
    let f = r.passes[0].collections[0].full.clone().unwrap();
    assert_eq!(
        (f.missing.count, f.missing.keys.clone()),
        (1, vec![k(deleted)])
    );
    assert_eq!((f.extra.count, f.extra.keys.clone()), (1, vec![k(added)]));
    assert_eq!(
        (f.different.count, f.different.keys.clone()),
        (2, vec![k(changed_a), k(changed_b)])
    );
    assert_eq!(
        (f.source_keys, f.target_keys, f.keys_compared),
        (n as u64, n as u64, n as u64 + 1)
    );
    let full_json = &raw["passes"][0]["collections"][0]["full"];
    assert_eq!(
        full_json["extra"]["keys"],
        serde_json::json!([data::key(shape, added).int()])
    );
    assert_eq!(target.load_state(&dst).await.unwrap(), LoadState::NotLoad);

    // All counted, the first N listed; the human report and the stderr summary say so.
    let out = ferry_verify(&job, &["--full", "--sample", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "different content:   2 [{}, ...]",
            k(changed_a).int()
        )),
        "{text}"
    );
    assert!(text.contains("result: the target DIFFERS"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dst)
            && err.contains("1 missing, 1 extra, 2 different")
            && err.contains("partition p_a 1000 vs 1001"),
        "{err}"
    );

    // 5. Repair: re-copies 3 rows, deletes 1, and the second pass is equal.
    let (code, r, _) = verify_json(&job, &["--full", "--repair"]);
    assert_eq!(code, 0, "{r:?}");
    assert!(r.equal && r.passes.len() == 2 && !r.passes[0].equal && r.passes[1].equal);
    assert_eq!(
        r.passes[0].collections[0]
            .full
            .as_ref()
            .unwrap()
            .different
            .keys,
        vec![k(changed_a), k(changed_b)]
    );
    let rep = &r.repair.as_ref().unwrap().collections[0];
    assert_eq!((rep.upserted, rep.deleted), (3, 1));

    // 6. A fresh verify agrees, and so does an independent row-by-row dump.
    let (code, r, _) = verify_json(&job, &["--full"]);
    assert_eq!(code, 0, "{r:?}");
    assert!(r.passes[0].collections[0]
        .partitions
        .iter()
        .all(|p| p.equal));
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    let fields = data::output_fields(
        &source
            .describe_collection(&src)
            .await
            .unwrap()
            .schema
            .unwrap(),
    );
    let a = data::dump(&source, &src, "pk", fields.clone()).await;
    let b = data::dump(&target, &dst, "pk", fields).await;
    data::assert_same(&a, &b);
    assert_eq!(target.count(&dst, &["p_a".into()]).await.unwrap(), 1000);
    assert_eq!(target.count(&dst, &["p_b".into()]).await.unwrap(), 1000);
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}

trait IntKey {
    fn int(&self) -> i64;
}

impl IntKey for PkValue {
    fn int(&self) -> i64 {
        match self {
            PkValue::Int(v) => *v,
            PkValue::Str(_) => panic!("not an Int64 key"),
        }
    }
}

#[tokio::test]
async fn varchar_keys_partition_key_through_the_library() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let target = common::client(&env.target_uri).await;
    let shape = Shape {
        varchar_pk: true,
        partition_key: true,
        binary_vector: true,
        ..Default::default()
    };
    let (src, dst) = (common::unique("verk_src"), common::unique("verk_dst"));
    let n = 2000;
    make_source(&source, &src, shape, n).await;
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &src, &dst);
    let out = common::run_ferry(
        &["migrate", "--config", &job, "--quiet", "--index", "none"],
        &[],
    );
    assert!(out.status.success(), "migrate failed");

    // An unloaded target without an index cannot be queried: a clear error, exit 1.
    let out = ferry_verify(&job, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&dst) && err.contains("no index"), "{err}");
    target
        .create_index(&dst, "v", "", &index_params(shape))
        .await
        .unwrap();

    // Behind ferry's back: one row's binary vector changed, one row deleted, two added.
    let (changed, deleted, added) = (17, 1999, [2500, 2501]);
    target
        .upsert(&dst, "", &vector_bit_flipped(shape, changed))
        .await
        .unwrap();
    target
        .delete(&dst, "", "pk", &keys(shape, &[deleted]))
        .await
        .unwrap();
    target
        .insert(&dst, "", &data::rows(shape, &added, 0))
        .await
        .unwrap();

    // The library, as the cutover calls it.
    let cfg = ferry::config::JobConfig::load(std::path::Path::new(&job)).unwrap();
    let plan = ferry::plan::build(
        &source,
        &target,
        &cfg,
        ferry::plan::PlanOptions {
            allow_autoid_off: true,
        },
    )
    .await
    .unwrap();
    let rx = tokio_util::sync::CancellationToken::new();
    let t = Instant::now();
    let r = verify::verify(
        &source,
        &target,
        &plan,
        &VerifyOptions::new(VerifyMode::Counts, &cfg.copy),
        rx.clone(),
    )
    .await
    .unwrap();
    eprintln!("library counts verify: {:.1} s", t.elapsed().as_secs_f64());
    let c = &r.passes[0].collections[0];
    assert!(!r.equal && c.partition_key && c.partitions.is_empty());
    assert_eq!((c.source_rows, c.target_rows), (n as u64, n as u64 + 1));

    let t = Instant::now();
    let r = verify::verify(
        &source,
        &target,
        &plan,
        &VerifyOptions::new(VerifyMode::Full, &cfg.copy),
        rx.clone(),
    )
    .await
    .unwrap();
    eprintln!("library full verify: {:.1} s", t.elapsed().as_secs_f64());
    let f = r.passes[0].collections[0].full.clone().unwrap();
    let k = |i: i64| data::key(shape, i);
    assert_eq!(f.different.keys, vec![k(changed)]);
    assert_eq!(f.missing.keys, vec![k(deleted)]);
    let mut extra = vec![k(added[0]), k(added[1])];
    extra.sort();
    assert_eq!((f.extra.count, f.extra.keys.clone()), (2, extra));
    assert_eq!(f.keys_compared, n as u64 + 2);
    assert_eq!(
        target.load_state(&dst).await.unwrap(),
        LoadState::NotLoad,
        "verify must release what it loaded"
    );

    // Shutdown stops it with an error, and what it loaded is released all the same.
    let stop_rx = tokio_util::sync::CancellationToken::new();
    stop_rx.cancel();
    let e = verify::verify(
        &source,
        &target,
        &plan,
        &VerifyOptions::new(VerifyMode::Full, &cfg.copy),
        stop_rx,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, VerifyError::Interrupted), "{e}");
    assert_eq!(target.load_state(&dst).await.unwrap(), LoadState::NotLoad);

    // Repair through the command line, then a clean verify.
    let (code, r, raw) = verify_json(&job, &["--repair"]);
    assert_eq!(code, 0, "{r:?}");
    assert_eq!(r.mode, VerifyMode::Full, "--repair implies --full");
    assert!(raw["passes"][0]["collections"][0]["full"]["missing"]["keys"][0].is_string());
    let rep = &r.repair.as_ref().unwrap().collections[0];
    assert_eq!((rep.upserted, rep.deleted), (2, 2));
    let out = ferry_verify(&job, &["--full"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("result: the target equals the source"));
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    let fields = data::output_fields(
        &source
            .describe_collection(&src)
            .await
            .unwrap()
            .schema
            .unwrap(),
    );
    data::assert_same(
        &data::dump(&source, &src, "pk", fields.clone()).await,
        &data::dump(&target, &dst, "pk", fields).await,
    );
    source.drop_collection(&src).await.unwrap();
    target.drop_collection(&dst).await.unwrap();
}
