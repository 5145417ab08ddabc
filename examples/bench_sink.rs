//! Helper of `scripts/bench-snapshot`: loads the benchmark collection into the source and
//! measures the sink limit (a plain sequential insert loop into the target).
//!
//! ```text
//! bench_sink load  --uri U --collection C [--rows N] [--dim D] [--batch-bytes B]
//! bench_sink sink  --uri U --collection C [--rows N] [--dim D] [--batch-bytes B] [--seed S]
//! bench_sink read  --uri U --collection C [--page-rows P]  # source-read limit (one scan)
//! bench_sink rows  --uri U --collection C     # flushes, prints the statistics row count
//! bench_sink backup --uri U --collection C --data-dir D --out DIR
//!                                             # the source's flushed segments as a backup
//! bench_sink drop  --uri U --collection C     # drops C if it exists
//! ```
//!
//! Schema of every benchmark collection: `id` Int64 primary key (no autoID), `vec`
//! FloatVector(D), `s` VarChar(256), `j` JSON; Strong consistency is not needed (reads go
//! through ferry's guarantee timestamp or pymilvus's iterator), so the default (Bounded).
//!
//! `sink` creates its own empty collection, generates every row in memory first and then
//! times only a sequential loop of `MilvusClient::insert` calls, each batch cut to the size
//! ferry's writer sends (`batch_bytes` by `Rows::byte_size`). It prints one machine-readable
//! line: `SINK rows=N seconds=S rows_per_s=R batches=B batch_rows=K flush_seconds=F`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry::milvus::{ConnectOptions, CreateCollection, MilvusClient, Rows};
use ferry::proto::common::{ConsistencyLevel, KeyValuePair};
use ferry::proto::schema::{
    field_data::Field, scalar_field::Data as S, vector_field::Data as V, CollectionSchema,
    DataType, FieldData, FieldSchema, FloatArray, JsonArray, LongArray, ScalarField, StringArray,
    VectorField,
};

struct Args {
    mode: String,
    uri: String,
    collection: String,
    rows: u64,
    dim: usize,
    batch_bytes: usize,
    seed: u64,
    page_rows: u64,
    data_dir: String,
    out: String,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .context("usage: bench_sink load|sink|rows|drop --uri U --collection C ...")?;
    let mut a = Args {
        mode,
        uri: String::new(),
        collection: String::new(),
        rows: 200_000,
        dim: 128,
        batch_bytes: 8 << 20,
        seed: 1,
        page_rows: 4000,
        data_dir: String::new(),
        out: String::new(),
    };
    while let Some(flag) = it.next() {
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--uri" => a.uri = val,
            "--collection" => a.collection = val,
            "--rows" => a.rows = val.parse().context("--rows")?,
            "--dim" => a.dim = val.parse().context("--dim")?,
            "--batch-bytes" => a.batch_bytes = val.parse().context("--batch-bytes")?,
            "--seed" => a.seed = val.parse().context("--seed")?,
            "--page-rows" => a.page_rows = val.parse().context("--page-rows")?,
            "--data-dir" => a.data_dir = val,
            "--out" => a.out = val,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.uri.is_empty() || a.collection.is_empty() {
        bail!("--uri and --collection are required");
    }
    Ok(a)
}

fn field(name: &str, t: DataType, params: &[(&str, String)]) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        data_type: t as i32,
        type_params: params
            .iter()
            .map(|(k, v)| KeyValuePair {
                key: (*k).into(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

fn schema(name: &str, dim: usize) -> CollectionSchema {
    let mut id = field("id", DataType::Int64, &[]);
    id.is_primary_key = true;
    CollectionSchema {
        name: name.into(),
        description: "ferry snapshot benchmark".into(),
        fields: vec![
            id,
            field("vec", DataType::FloatVector, &[("dim", dim.to_string())]),
            field("s", DataType::VarChar, &[("max_length", "256".into())]),
            field("j", DataType::Json, &[]),
        ],
        ..Default::default()
    }
}

async fn create(c: &MilvusClient, name: &str, dim: usize) -> Result<()> {
    if c.has_collection(name).await? {
        c.drop_collection(name).await?;
    }
    c.create_collection(&CreateCollection {
        name: name.into(),
        schema: schema(name, dim),
        shards_num: 1,
        consistency_level: ConsistencyLevel::Bounded,
        properties: vec![],
        num_partitions: 0,
    })
    .await?;
    Ok(())
}

/// splitmix64: deterministic, dependency-free data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

const WORDS: [&str; 8] = [
    "red", "green", "blue", "amber", "violet", "teal", "ochre", "slate",
];

/// Rows `start..end` of the benchmark data set.
fn make_rows(start: u64, end: u64, dim: usize, rng: &mut Rng) -> Rows {
    let n = (end - start) as usize;
    let mut ids = Vec::with_capacity(n);
    let mut vecs = Vec::with_capacity(n * dim);
    let mut strs = Vec::with_capacity(n);
    let mut jsons = Vec::with_capacity(n);
    for i in start..end {
        ids.push(i as i64);
        for _ in 0..dim {
            vecs.push(rng.f32());
        }
        let w = WORDS[(i % 8) as usize];
        strs.push(format!("item-{i:09}-{w}-{:016x}", rng.next()));
        jsons.push(
            format!(
                "{{\"i\":{i},\"tag\":\"{w}\",\"price\":{:.2},\"flags\":[{},{}]}}",
                rng.f32() * 1000.0,
                i % 3,
                i % 5
            )
            .into_bytes(),
        );
    }
    let scalar = |name: &str, t: DataType, d: S| FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField { data: Some(d), ..Default::default() })),
        ..Default::default()
    };
    Rows::new(vec![
        scalar("id", DataType::Int64, S::LongData(LongArray { data: ids })),
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "vec".into(),
            field: Some(Field::Vectors(VectorField {
                dim: dim as i64,
                data: Some(V::FloatVector(FloatArray { data: vecs })),
                ..Default::default()
            })),
            ..Default::default()
        },
        scalar(
            "s",
            DataType::VarChar,
            S::StringData(StringArray { data: strs }),
        ),
        scalar("j", DataType::Json, S::JsonData(JsonArray { data: jsons })),
    ])
    .expect("aligned columns")
}

/// Rows per batch so that a batch stays within `batch_bytes` as ferry measures it.
fn batch_rows(dim: usize, batch_bytes: usize) -> u64 {
    let sample = make_rows(0, 1000, dim, &mut Rng(7));
    let per_row = sample.byte_size().div_ceil(sample.len()).max(1);
    (batch_bytes / per_row).max(1) as u64
}

/// Every row, pre-generated, cut into insert batches.
fn generate(a: &Args) -> (Vec<Rows>, u64) {
    let per = batch_rows(a.dim, a.batch_bytes);
    let mut rng = Rng(a.seed);
    let mut out = Vec::new();
    let mut start = 0;
    while start < a.rows {
        let end = (start + per).min(a.rows);
        out.push(make_rows(start, end, a.dim, &mut rng));
        start = end;
    }
    (out, per)
}

async fn connect(uri: &str) -> Result<MilvusClient> {
    let mut o = ConnectOptions::new(uri);
    o.request_timeout = Duration::from_secs(300);
    Ok(MilvusClient::connect(&o).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let c = connect(&a.uri).await?;
    match a.mode.as_str() {
        "drop" => {
            if c.has_collection(&a.collection).await? {
                c.drop_collection(&a.collection).await?;
            }
        }
        "rows" => {
            c.flush(
                std::slice::from_ref(&a.collection),
                Duration::from_secs(600),
            )
            .await?;
            println!("{}", c.statistics_row_count(&a.collection).await?);
        }
        "load" => {
            create(&c, &a.collection, a.dim).await?;
            let (batches, _) = generate(&a);
            let t = Instant::now();
            for b in &batches {
                c.insert(&a.collection, "", b).await?;
            }
            let name = std::slice::from_ref(&a.collection);
            c.flush(name, Duration::from_secs(900)).await?;
            let params = [
                KeyValuePair {
                    key: "index_type".into(),
                    value: "IVF_FLAT".into(),
                },
                KeyValuePair {
                    key: "metric_type".into(),
                    value: "L2".into(),
                },
                KeyValuePair {
                    key: "params".into(),
                    value: "{\"nlist\":128}".into(),
                },
            ];
            c.create_index(&a.collection, "vec", "vec_idx", &params)
                .await?;
            c.load(&a.collection, Duration::from_secs(900)).await?;
            let n = c.count(&a.collection, &[]).await?;
            if n != a.rows {
                bail!(
                    "source {} has {n} rows after loading, expected {}",
                    a.collection,
                    a.rows
                );
            }
            println!(
                "LOAD rows={n} seconds={:.1} (inserted, flushed, indexed, loaded)",
                t.elapsed().as_secs_f64()
            );
        }
        "sink" => {
            create(&c, &a.collection, a.dim).await?;
            let (batches, per) = generate(&a);
            let t = Instant::now();
            let mut accepted = 0i64;
            for b in &batches {
                accepted += c.insert(&a.collection, "", b).await?;
            }
            let secs = t.elapsed().as_secs_f64();
            if accepted as u64 != a.rows {
                bail!("target accepted {accepted} rows, expected {}", a.rows);
            }
            let f = Instant::now();
            c.flush(
                std::slice::from_ref(&a.collection),
                Duration::from_secs(600),
            )
            .await?;
            let flush_secs = f.elapsed().as_secs_f64();
            println!(
                "SINK rows={} seconds={secs:.3} rows_per_s={:.0} batches={} batch_rows={per} flush_seconds={flush_secs:.3}",
                a.rows,
                a.rows as f64 / secs,
                batches.len()
            );
        }
        "read" => {
            // The source-read limit: one sequential key-ordered scan, pages dropped.
            let mut pager = ferry::milvus::KeyPager::new(
                &a.collection,
                "id",
                vec!["id".into(), "vec".into(), "s".into(), "j".into()],
            );
            pager.page_rows = a.page_rows;
            // As ferry does: one snapshot timestamp (Strong per page waits for the tsafe).
            pager.guarantee_ts = c.alloc_timestamp().await?;
            let t = Instant::now();
            let mut n = 0u64;
            while let Some(p) = pager.next_page(&c).await? {
                n += p.len() as u64;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "READ rows={n} seconds={secs:.3} rows_per_s={:.0} page_rows={}",
                n as f64 / secs,
                a.page_rows
            );
        }
        "backup" => backup(&c, &a).await?,
        m => bail!("unknown mode {m}"),
    }
    Ok(())
}

/// Lays the source collection's flushed segments out as milvus-backup backup `bk` under
/// `--out` (files copied from the source's local storage `--data-dir`), so that `ferry
/// import-backup` can copy the same rows with no query load on the source. Fails when the
/// segments found do not hold exactly the collection's rows (e.g. leftovers of a
/// compaction not yet garbage-collected).
async fn backup(c: &MilvusClient, a: &Args) -> Result<()> {
    use ferry::sources::backup::meta::{
        BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SchemaJson,
    };
    use ferry::sources::backup::testdata::{copy_milvus_segment, write_meta};
    if a.data_dir.is_empty() || a.out.is_empty() {
        bail!("backup needs --data-dir and --out");
    }
    let name = std::slice::from_ref(&a.collection);
    c.flush(name, Duration::from_secs(600)).await?;
    let desc = c.describe_collection(&a.collection).await?;
    let schema = desc.schema.clone().context("no schema")?;
    let data_dir = std::path::Path::new(&a.data_dir);
    let bk = std::path::Path::new(&a.out).join("bk");
    let mut partitions = Vec::new();
    let mut total = 0i64;
    for (part_name, part_id) in c.list_partitions(&a.collection).await? {
        let dir = data_dir.join(format!("insert_log/{}/{part_id}", desc.collection_id));
        let mut segs = Vec::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir)? {
                let Some(seg_id) = entry?.file_name().to_str().and_then(|n| n.parse().ok())
                else {
                    continue;
                };
                let seg =
                    copy_milvus_segment(data_dir, &bk, desc.collection_id, part_id, None, seg_id)?;
                total += seg.num_of_rows;
                segs.push(seg);
            }
        }
        partitions.push(PartitionBackupInfo {
            partition_id: part_id,
            partition_name: part_name,
            collection_id: desc.collection_id,
            segment_backups: segs,
            ..Default::default()
        });
    }
    let want = c.statistics_row_count(&a.collection).await?;
    if total as u64 != want {
        bail!("segments under {} hold {total} rows, the collection {want}", data_dir.display());
    }
    let segments: usize = partitions.iter().map(|p| p.segment_backups.len()).sum();
    let info = BackupInfo {
        name: "bk".into(),
        milvus_version: "v2.3.5".into(),
        collection_backups: vec![CollectionBackupInfo {
            collection_id: desc.collection_id,
            db_name: "default".into(),
            collection_name: a.collection.clone(),
            schema: Some(SchemaJson::from_proto(&schema)),
            shards_num: desc.shards_num,
            consistency_level: desc.consistency_level,
            partition_backups: partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    write_meta(&bk, &info, true)?;
    println!("BACKUP rows={total} segments={segments} dir={}", bk.display());
    Ok(())
}
