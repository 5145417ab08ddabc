//! `ferry import-1x` end to end: Milvus 1.x data files written here from known vectors (float
//! and binary, several segments, deleted offsets in no order) are imported by the `ferry`
//! binary into the target Milvus 2.3.5; every live vector must arrive bit for bit under its
//! id, deleted rows must not, and each collection gets AUTOINDEX with its metric mapped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry::milvus::{KeyPager, MilvusClient};
use ferry::proto::common::LoadState;
use ferry::proto::schema::{field_data::Field, scalar_field::Data as S, vector_field::Data as V};
use ferry::sources::v1x::testdata::{rv_bytes_binary, rv_bytes_f32, write_meta, write_segment};
use ferry::sources::v1x::{V1xCollection, V1xSegment};

/// One segment to write: ids, vectors (row-major; f32 bits or bytes), deleted offsets.
struct Seg {
    name: String,
    ids: Vec<i64>,
    vectors: Vectors,
    deleted: Option<Vec<i32>>,
}

#[derive(Clone)]
enum Vectors {
    Float(Vec<f32>),
    Binary(Vec<u8>),
}

/// Float values with awkward bit patterns (no NaN or infinity: Milvus refuses those).
fn float_value(row: i64, col: usize) -> f32 {
    const SPECIAL: [f32; 8] = [
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        -f32::MAX,
        std::f32::consts::PI,
        1.0 / 3.0,
        -7.25e-12,
    ];
    if (row as usize + col) % 5 == 0 {
        SPECIAL[(row as usize * 3 + col) % SPECIAL.len()]
    } else {
        ((row * 131 + col as i64 * 17) % 1000) as f32 / 7.0 - 60.0
    }
}

fn float_seg(name: &str, ids: std::ops::Range<i64>, dim: usize, deleted: Option<Vec<i32>>) -> Seg {
    let vectors = ids
        .clone()
        .flat_map(|r| (0..dim).map(move |c| float_value(r, c)))
        .collect();
    Seg {
        name: name.into(),
        ids: ids.map(|i| i * 1_000_003 - 7).collect(),
        vectors: Vectors::Float(vectors),
        deleted,
    }
}

fn binary_seg(name: &str, ids: std::ops::Range<i64>, dim: usize, deleted: Option<Vec<i32>>) -> Seg {
    let vectors = ids
        .clone()
        .flat_map(|r| {
            (0..dim / 8).map(move |c| (r as u8).wrapping_mul(37) ^ (c as u8).wrapping_mul(101))
        })
        .collect();
    Seg {
        name: name.into(),
        ids: ids.collect(),
        vectors: Vectors::Binary(vectors),
        deleted,
    }
}

/// Writes a collection's segments under `root` and returns its meta entry.
fn write_collection(
    root: &Path,
    table: &str,
    metric: i32,
    dim: i64,
    segs: &[Seg],
) -> V1xCollection {
    let mut segments: Vec<V1xSegment> = Vec::new();
    for s in segs {
        let rv = match &s.vectors {
            Vectors::Float(v) => rv_bytes_f32(v),
            Vectors::Binary(b) => rv_bytes_binary(b),
        };
        segments
            .push(write_segment(root, table, &s.name, &rv, &s.ids, s.deleted.as_deref()).unwrap());
    }
    V1xCollection {
        collection: table.into(),
        metric,
        rows: 0,
        dim,
        segments,
    }
}

/// The live rows of a collection's segments: id -> vector bytes (f32 little-endian bits).
fn expected(segs: &[Seg], dim: usize) -> BTreeMap<i64, Vec<u8>> {
    let mut out = BTreeMap::new();
    for s in segs {
        let dead: Vec<usize> = s.deleted.iter().flatten().map(|&o| o as usize).collect();
        for (row, id) in s.ids.iter().enumerate() {
            if dead.contains(&row) {
                continue;
            }
            let bytes = match &s.vectors {
                Vectors::Float(v) => v[row * dim..(row + 1) * dim]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                Vectors::Binary(b) => b[row * dim / 8..(row + 1) * dim / 8].to_vec(),
            };
            out.insert(*id, bytes);
        }
    }
    out
}

/// Every row of a target collection: id -> vector bytes.
async fn read_target(client: &MilvusClient, collection: &str) -> BTreeMap<i64, Vec<u8>> {
    let mut pager = KeyPager::new(collection, "id", vec!["id".into(), "vector".into()]);
    pager.page_rows = 16384;
    let mut out = BTreeMap::new();
    while let Some(page) = pager.next_page(client).await.expect("scan target") {
        let ids = match page.column("id").and_then(|c| c.field.as_ref()) {
            Some(Field::Scalars(s)) => match &s.data {
                Some(S::LongData(l)) => l.data.clone(),
                other => panic!("id column: {other:?}"),
            },
            other => panic!("id column: {other:?}"),
        };
        let (dim, data) = match page.column("vector").and_then(|c| c.field.as_ref()) {
            Some(Field::Vectors(v)) => (v.dim as usize, v.data.clone()),
            other => panic!("vector column: {other:?}"),
        };
        for (i, id) in ids.into_iter().enumerate() {
            let bytes = match &data {
                Some(V::FloatVector(f)) => f.data[i * dim..(i + 1) * dim]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                Some(V::BinaryVector(b)) => b[i * dim / 8..(i + 1) * dim / 8].to_vec(),
                other => panic!("vector data: {other:?}"),
            };
            assert!(
                out.insert(id, bytes).is_none(),
                "id {id} is on the target twice"
            );
        }
    }
    out
}

/// A job file without `[source]`; `collections` is raw `[[collections]]` TOML.
fn job(dir: &Path, collections: &str) -> PathBuf {
    let text = format!(
        "[target]\nuri = \"{}\"\n\n[job]\nname = \"import-1x-test\"\nstate_dir = \"{}\"\n\n[copy]\nbatch_bytes = 16384\n\n{collections}\n",
        common::env().target_uri,
        dir.join("state").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn import(job: &Path, path: &Path, extra: &[&str]) -> std::process::Output {
    import_with_env(job, path, extra, &[])
}

fn import_with_env(job: &Path, path: &Path, extra: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec![
        "import-1x",
        "--config",
        job.to_str().unwrap(),
        "--path",
        path.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    common::run_ferry(&args, envs)
}

fn metric_of(idx: &[ferry::proto::milvus::IndexDescription]) -> Option<String> {
    idx.iter()
        .find(|i| i.field_name == "vector")
        .and_then(|i| i.params.iter().find(|kv| kv.key == "metric_type"))
        .map(|kv| kv.value.clone())
}

#[tokio::test]
async fn float_and_binary_collections_arrive_bit_exact_with_their_metrics() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let root = tempfile::tempdir().unwrap();
    let l2 = common::unique("v1x_l2");
    let ip = common::unique("v1x_ip");
    let ham = common::unique("v1x_ham");
    let jac = common::unique("v1x_jac");
    let l2_segs = vec![
        float_seg("1700000000001", 0..700, 8, Some(vec![5, 0, 699, 17, 350])),
        float_seg("1700000000002", 700..900, 8, None),
    ];
    let ip_segs = vec![float_seg("1700000000003", 0..150, 4, Some(vec![]))];
    let ham_segs = vec![
        binary_seg("1700000000004", 0..120, 16, Some(vec![119, 3])),
        binary_seg("1700000000005", 120..200, 16, None),
    ];
    let jac_segs = vec![binary_seg("1700000000006", 0..64, 32, Some(vec![1]))];
    let meta = write_meta(
        root.path(),
        vec![
            write_collection(root.path(), &l2, 1, 8, &l2_segs),
            write_collection(root.path(), &ip, 2, 4, &ip_segs),
            write_collection(root.path(), &ham, 3, 16, &ham_segs),
            write_collection(root.path(), &jac, 4, 32, &jac_segs),
        ],
    )
    .unwrap();
    assert_eq!(meta.rows, 900 - 5 + 150 + 200 - 2 + 64 - 1);

    let dir = tempfile::tempdir().unwrap();
    // No [[collections]]: every collection of meta.json, under its 1.x name.
    let cfg = job(dir.path(), "");
    let started = std::time::Instant::now();
    let out = import(&cfg, root.path(), &["--load"]);
    eprintln!("import-1x took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, segs, dim, metric) in [
        (&l2, &l2_segs, 8, "L2"),
        (&ip, &ip_segs, 4, "IP"),
        (&ham, &ham_segs, 16, "HAMMING"),
        (&jac, &jac_segs, 32, "JACCARD"),
    ] {
        let want = expected(segs, dim);
        assert!(
            stdout.contains(&format!("ok {}", want.len())),
            "{name}: count check printed:\n{stdout}"
        );
        assert_eq!(target.load_state(name).await.unwrap(), LoadState::Loaded);
        let got = read_target(&target, name).await;
        assert_eq!(got.len(), want.len(), "{name}: row count");
        for (id, v) in &want {
            assert_eq!(got.get(id), Some(v), "{name}: vector of id {id}");
        }
        assert_eq!(
            metric_of(&target.describe_indexes(name).await.unwrap()).as_deref(),
            Some(metric),
            "{name}: index metric"
        );
        let schema = target
            .describe_collection(name)
            .await
            .unwrap()
            .schema
            .unwrap();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "vector"], "{name}");
        target.drop_collection(name).await.unwrap();
    }
}

#[tokio::test]
async fn unsupported_metric_and_bad_files_fail_clearly() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let root = tempfile::tempdir().unwrap();
    let good = common::unique("v1x_good");
    let tanimoto = common::unique("v1x_tanimoto");
    let good_segs = vec![
        float_seg("1800000000001", 0..50, 8, None),
        float_seg("1800000000002", 50..100, 8, Some(vec![2, 60])),
    ];
    let tan_segs = vec![binary_seg("1800000000003", 0..10, 16, None)];
    write_meta(
        root.path(),
        vec![
            write_collection(root.path(), &good, 1, 8, &good_segs),
            write_collection(root.path(), &tanimoto, 5, 16, &tan_segs),
        ],
    )
    .unwrap();
    let dst = common::unique("v1x_renamed");

    // TANIMOTO has no 2.x metric: the whole command fails before creating anything.
    let dir = tempfile::tempdir().unwrap();
    let out = import(&job(dir.path(), ""), root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(err.contains(&tanimoto) && err.contains("TANIMOTO"), "{err}");
    assert!(
        !target.has_collection(&good).await.unwrap()
            && !target.has_collection(&tanimoto).await.unwrap()
    );

    // The second segment's deleted_docs names row 60 of a 50-row segment: that segment fails,
    // naming the file and the byte offset, and none of its rows are written.
    let dir = tempfile::tempdir().unwrap();
    let sel = format!("[[collections]]\nsource = \"{good}\"\ntarget = \"{dst}\"\n");
    let out = import(&job(dir.path(), &sel), root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    let deleted_docs = root
        .path()
        .join(format!("tables/{good}/1800000000002/deleted_docs"));
    assert!(
        err.contains(&deleted_docs.display().to_string()) && err.contains("byte 12"),
        "{err}"
    );
    let params = [
        ferry::proto::common::KeyValuePair {
            key: "index_type".into(),
            value: "FLAT".into(),
        },
        ferry::proto::common::KeyValuePair {
            key: "metric_type".into(),
            value: "L2".into(),
        },
    ];
    target
        .create_index(&dst, "vector", "", &params)
        .await
        .unwrap();
    target.load(&dst, Duration::from_secs(120)).await.unwrap();
    let got = read_target(&target, &dst).await;
    assert!(
        got.keys()
            .all(|id| expected(&good_segs[..1], 8).contains_key(id)),
        "rows of the broken segment were written"
    );

    // A truncated .rv: its byte count no longer matches, named with the file. (The broken
    // deleted_docs goes first, so this is the only fault: segments may be read in any order.)
    std::fs::remove_file(&deleted_docs).unwrap();
    let rv = root
        .path()
        .join(format!("tables/{good}/1800000000001/1800000000001.rv"));
    let b = std::fs::read(&rv).unwrap();
    std::fs::write(&rv, &b[..b.len() - 3]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other = common::unique("v1x_trunc");
    let sel = format!("[[collections]]\nsource = \"{good}\"\ntarget = \"{other}\"\n");
    let out = import(&job(dir.path(), &sel), root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains(&rv.display().to_string()) && err.contains("byte 0"),
        "{err}"
    );

    // A NaN in row 40 of the first segment (Milvus refuses it). With 1 KiB batches the
    // segment is written in chunks of 25 rows, so the NaN sits in the second chunk: the
    // segment fails naming the file and the value's byte offset, and not even its first
    // chunk reaches the target.
    let mut fixed = b.clone();
    let at = 8 + 40 * 8 * 4 + 3 * 4;
    fixed[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&rv, &fixed).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nan_dst = common::unique("v1x_nan");
    let sel = format!("[[collections]]\nsource = \"{good}\"\ntarget = \"{nan_dst}\"\n");
    let path = job(dir.path(), &sel);
    let text = std::fs::read_to_string(&path).unwrap().replace("batch_bytes = 16384", "batch_bytes = 1024");
    std::fs::write(&path, text).unwrap();
    let out = import(&path, root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains(&rv.display().to_string()) && err.contains(&format!("byte {at}")) && err.contains("NaN"),
        "{err}"
    );
    if target.has_collection(&nan_dst).await.unwrap() {
        target.flush(&[nan_dst.clone()], Duration::from_secs(120)).await.unwrap();
        // The other segment (50 live rows) may have gone first; a chunk of the broken
        // one would add 25.
        let rows = target.statistics_row_count(&nan_dst).await.unwrap();
        assert!(rows == 0 || rows == 50, "{rows} rows: part of the segment with a NaN was written");
        target.drop_collection(&nan_dst).await.unwrap();
    }

    target.drop_collection(&dst).await.unwrap();
    if target.has_collection(&other).await.unwrap() {
        target.drop_collection(&other).await.unwrap();
    }
}

/// Killed right after a batch reached the target and before its progress was stored (the
/// `copy.after_target_write` failpoint aborts like kill -9): the re-run resumes the segment,
/// rewrites that batch as an upsert, and the target ends with every live row exactly once,
/// bit-exact.
#[tokio::test]
async fn import_killed_mid_segment_resumes_without_loss_or_duplicates() {
    let env = common::env();
    let target = common::client(&env.target_uri).await;
    let root = tempfile::tempdir().unwrap();
    let name = common::unique("v1x_crash");
    let segs = vec![
        float_seg("1900000000001", 0..300, 8, Some(vec![0, 42, 299])),
        float_seg("1900000000002", 300..400, 8, None),
    ];
    write_meta(root.path(), vec![write_collection(root.path(), &name, 1, 8, &segs)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = job(dir.path(), "");
    // 1 KiB batches: 25 rows each, so the crash lands early in the first segment.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("batch_bytes = 16384", "batch_bytes = 1024");
    std::fs::write(&cfg, text).unwrap();

    let crashed = import_with_env(&cfg, root.path(), &[], &[("FERRY_FAILPOINTS", "copy.after_target_write")]);
    assert!(!crashed.status.success(), "the failpoint aborts the import");
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("failpoint"), "{}", String::from_utf8_lossy(&crashed.stderr));
    assert!(target.has_collection(&name).await.unwrap(), "the first run created the target and wrote a batch");

    let out = import(&cfg, root.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "resumed import failed: {}", String::from_utf8_lossy(&out.stderr));
    let want = expected(&segs, 8);
    assert_eq!(want.len(), 397);
    assert!(stdout.contains(&format!("ok {}", want.len())), "the count check sees each row once:\n{stdout}");
    target.load(&name, Duration::from_secs(120)).await.unwrap();
    let got = read_target(&target, &name).await;
    assert_eq!(got, want, "every live row, bit-exact, once");
    target.drop_collection(&name).await.unwrap();
}
