//! Every Milvus client call, against the real Milvus 2.3.5 target and against Milvus Lite.

mod common;

use std::time::Duration;

use common::data::{self, Shape};
use ferry::milvus::{CreateCollection, MilvusClient, PkValue, PrimaryKeys, Query};
use ferry::plan::schema::first_difference;
use ferry::proto::common::{ConsistencyLevel, KeyValuePair};


fn create_req(name: &str, shape: Shape) -> CreateCollection {
    CreateCollection {
        name: name.into(),
        schema: data::all_types_schema(name, shape),
        shards_num: 2,
        consistency_level: ConsistencyLevel::Bounded,
        properties: vec![],
        num_partitions: 0,
    }
}

fn int_keys(ids: &[i64]) -> PrimaryKeys {
    PrimaryKeys::Int(ids.iter().map(|&i| match data::key(Shape::default(), i) { PkValue::Int(k) => k, _ => unreachable!() }).collect())
}

/// Runs every call against one server. `full` is false for Milvus Lite, which implements no
/// databases, partitions statistics or load progress: those calls are checked on Milvus only.
async fn exercise(uri: &str, full: bool) {
    let c = common::client(uri).await;
    let name = common::unique("client");
    let shape = Shape::default();

    if full {
        let dbs = c.list_databases().await.expect("list databases");
        assert!(dbs.iter().any(|d| d == "default"), "{dbs:?}");
        let db = common::unique("db");
        c.create_database(&db).await.expect("create database");
        assert!(c.list_databases().await.unwrap().contains(&db));
        c.drop_database(&db).await.expect("drop database");
        assert!(!c.server_version().await.unwrap().is_empty());
    }

    // Create, describe: the schema comes back structurally identical.
    c.create_collection(&create_req(&name, shape)).await.expect("create collection");
    assert!(c.has_collection(&name).await.unwrap());
    assert!(c.list_collections().await.unwrap().contains(&name));
    let d = c.describe_collection(&name).await.expect("describe");
    let planned = data::all_types_schema(&name, shape);
    let mut expected = planned.clone();
    if !full {
        // Milvus Lite drops max_length from VarChar arrays (seen with milvus-lite 3.2.2).
        for f in expected.fields.iter_mut().filter(|f| f.data_type == ferry::proto::schema::DataType::Array as i32) {
            f.type_params.retain(|kv| kv.key != "max_length");
        }
    }
    assert_eq!(first_difference(d.schema.as_ref().unwrap(), &expected), None);
    if full {
        assert_eq!(d.shards_num, 2);
        assert_eq!(d.consistency_level, ConsistencyLevel::Bounded as i32);
        let ttl = [KeyValuePair { key: "collection.ttl.seconds".into(), value: "86400".into() }];
        c.alter_collection(&name, &ttl).await.expect("alter");
        let d = c.describe_collection(&name).await.unwrap();
        assert!(d.properties.iter().any(|kv| kv.key == "collection.ttl.seconds" && kv.value == "86400"), "{:?}", d.properties);
    }

    // Partitions.
    c.create_partition(&name, "p1").await.expect("create partition");
    assert!(c.has_partition(&name, "p1").await.unwrap());
    let parts: Vec<String> = c.list_partitions(&name).await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(parts.contains(&"p1".to_string()) && parts.contains(&"_default".to_string()), "{parts:?}");

    // Index and load (Milvus 2.3 queries only loaded collections, and loads only indexed ones).
    assert!(c.describe_indexes(&name).await.expect("describe no index").is_empty());
    let params = [
        KeyValuePair { key: "index_type".into(), value: "AUTOINDEX".into() },
        KeyValuePair { key: "metric_type".into(), value: "L2".into() },
    ];
    c.create_index(&name, "v", "v_idx", &params).await.expect("create index");
    c.load(&name, Duration::from_secs(120)).await.expect("load");
    if full {
        assert_eq!(c.load_state(&name).await.unwrap(), ferry::proto::common::LoadState::Loaded);
    }

    // Insert (default partition and p1), upsert, delete, query, count.
    let ids: Vec<i64> = (0..300).collect();
    assert_eq!(c.insert(&name, "", &data::rows(shape, &ids[..200], 0)).await.expect("insert"), 200);
    assert_eq!(c.insert(&name, "p1", &data::rows(shape, &ids[200..], 0)).await.expect("insert p1"), 100);
    c.upsert(&name, "", &data::rows(shape, &ids[..10], 1)).await.expect("upsert");
    c.delete(&name, "", "pk", &int_keys(&ids[290..])).await.expect("delete");
    assert_eq!(c.count(&name, &[]).await.expect("count"), 290);
    if full {
        assert_eq!(c.count(&name, &["p1".to_string()]).await.unwrap(), 90);
    }
    let fields = data::output_fields(&planned);
    let got = c
        .query(&name, &Query {
            expr: "pk in [-1000, -997, -970]".into(),
            output_fields: fields.clone(),
            limit: Some(10),
            consistency: Some(ConsistencyLevel::Strong),
            ..Default::default()
        })
        .await
        .expect("query");
    assert_eq!(got.len(), 3);
    // Row contents round-trip bit-exact (rows 0..10 were upserted to version 1).
    let expect = data::rows(shape, &[0, 1], 1);
    let keys = got.primary_keys("pk").unwrap();
    let v0 = data::rows(shape, &[10], 0);
    for i in 0..3 {
        let want = match keys.get(i) {
            Some(PkValue::Int(-1000)) => expect.row_digest(0),
            Some(PkValue::Int(-997)) => expect.row_digest(1),
            _ => v0.row_digest(0),
        };
        let (src, j) = match keys.get(i) {
            Some(PkValue::Int(-1000)) => (&expect, 0),
            Some(PkValue::Int(-997)) => (&expect, 1),
            _ => (&v0, 0),
        };
        assert_eq!(got.row_digest(i), want, "row {i} differs from what was written: {:?}", data::differing_fields(&got, i, src, j));
    }
    // The key-ordered dump sees every row once.
    let all = data::dump(&c, &name, "pk", fields).await;
    assert_eq!(all.len(), 290);

    // Flush, statistics, index, load, release.
    c.flush(&[name.clone()], Duration::from_secs(120)).await.expect("flush");
    if full {
        assert!(c.statistics_row_count(&name).await.unwrap() >= 290);
        assert!(c.partition_statistics_row_count(&name, "p1").await.unwrap() >= 90);
    }
    let idx = c.describe_indexes(&name).await.expect("describe index");
    assert!(idx.iter().any(|i| i.field_name == "v"), "{idx:?}");
    c.release(&name).await.expect("release");
    c.drop_partition(&name, "p1").await.expect("drop partition");
    c.drop_collection(&name).await.expect("drop collection");
    assert!(!c.has_collection(&name).await.unwrap());
}

#[tokio::test]
async fn every_call_against_milvus_2_3_5() {
    exercise(&common::env().target_uri, true).await;
}

#[tokio::test]
async fn every_call_against_milvus_lite() {
    exercise(&common::env().lite_uri, false).await;
}

#[tokio::test]
async fn varchar_keys_with_quotes_delete_exactly() {
    let c = common::client(&common::env().target_uri).await;
    let name = common::unique("vkeys");
    let shape = Shape { varchar_pk: true, binary_vector: true, ..Default::default() };
    c.create_collection(&create_req(&name, shape)).await.unwrap();
    let params = [
        KeyValuePair { key: "index_type".into(), value: "BIN_FLAT".into() },
        KeyValuePair { key: "metric_type".into(), value: "HAMMING".into() },
    ];
    c.create_index(&name, "v", "", &params).await.unwrap();
    c.load(&name, Duration::from_secs(120)).await.unwrap();
    let ids: Vec<i64> = (0..50).collect();
    c.insert(&name, "", &data::rows(shape, &ids, 0)).await.unwrap();
    let victims: Vec<String> = ids[..5].iter().map(|&i| match data::key(shape, i) { PkValue::Str(s) => s, _ => unreachable!() }).collect();
    c.delete(&name, "", "pk", &PrimaryKeys::Str(victims.clone())).await.unwrap();
    let left = data::dump(&c, &name, "pk", vec!["pk".into()]).await;
    assert_eq!(left.len(), 45);
    assert!(victims.iter().all(|v| !left.contains_key(&PkValue::Str(v.clone()))));
    c.drop_collection(&name).await.unwrap();
}

#[tokio::test]
async fn errors_name_the_call_and_collection() {
    let c = common::client(&common::env().target_uri).await;
    let e = c.describe_collection("surely_not_there_42").await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("DescribeCollection") && msg.contains("surely_not_there_42"), "{msg}");
    assert!(!e.is_retryable());

    let mut opts = ferry::milvus::ConnectOptions::new("http://127.0.0.1:1");
    opts.connect_timeout = Duration::from_millis(300);
    opts.retry_max_elapsed = Duration::from_millis(0);
    let e = MilvusClient::connect(&opts).await.unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");

    let mut opts = ferry::milvus::ConnectOptions::new(common::env().target_uri.clone());
    opts.database = "no_such_db_ferry".into();
    let e = MilvusClient::connect(&opts).await.unwrap_err();
    assert!(e.to_string().contains("no_such_db_ferry") || e.to_string().to_lowercase().contains("database"), "{e}");
}

/// Endpoints that are not Milvus (the broker's Kafka port, an HTTP/1 server, TLS against a
/// plaintext Milvus) make a one-shot command fail fast, naming the endpoint and what it
/// answered, in a message that never repeats its own causes.
#[test]
fn bad_endpoints_fail_fast_and_say_what_answered() {
    let env = common::env();
    let s3 = std::env::var("FERRY_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:19900".into());
    let kafka = format!("http://{}", env.kafka_brokers.split(',').next().unwrap());
    let tls_to_plain = env.target_uri.replace("http://", "https://");
    for (what, uri) in [("kafka", kafka.as_str()), ("http server", s3.as_str()), ("tls to plaintext", tls_to_plain.as_str())] {
        let dir = tempfile::tempdir().unwrap();
        let job = common::write_job(dir.path(), &env.source_uri, uri, "", "");
        let started = std::time::Instant::now();
        let out = common::run_ferry(&["migrate", "--config", job.to_str().unwrap(), "--dry-run"], &[]);
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let last = err.lines().rev().find(|l| l.contains("error")).unwrap_or_default().to_string();
        assert!(!out.status.success(), "{what}: migrate against {uri} succeeded");
        assert!(took < Duration::from_secs(40), "{what}: took {took:?} to fail: {last}");
        let host_port = uri.split("://").nth(1).unwrap();
        assert!(last.contains(host_port), "{what}: the error does not name {host_port}: {last}");
        let parts: Vec<&str> = last.split(": ").map(str::trim).filter(|p| p.len() > 12).collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(p), "{what}: the error repeats {p:?}: {last}");
        }
        if what == "tls to plaintext" {
            assert!(last.contains("does not speak TLS: use http://"), "{last}");
        }
        eprintln!("{what}: failed in {took:?}: {last}");
    }
}

/// The snapshot's read timestamp comes from the source's own clock (its TSO), never from
/// ferry's: Milvus 2.3.5 allocates one; Milvus Lite has no AllocTimestamp, and gets 0 (every
/// page read at Strong consistency). A source that fails the call is an error, not a guess.
#[tokio::test]
async fn the_snapshot_timestamp_is_the_sources_or_strong_never_the_local_clock() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let ts = ferry::sources::query::snapshot_timestamp(&source).await.expect("Milvus 2.3.5 allocates");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(((ts >> 18) as i64 - now_ms).abs() < 60_000, "a TSO timestamp: {ts}");
    let lite = common::client(&env.lite_uri).await;
    assert_eq!(ferry::sources::query::snapshot_timestamp(&lite).await.expect("Lite: Strong"), 0);
}

/// Key paging on both servers, over many pages of keys inserted out of order (and over
/// several inserts, so Lite holds them in several segments): every key once, in ascending
/// order. Milvus Lite returns a limited query's rows in key order only when the query asks
/// for it (the `iterator` parameter); without it the pager stops at the first full page
/// ("the server does not return pages in key order").
#[tokio::test]
async fn key_paging_returns_every_key_in_order_on_milvus_and_lite() {
    let env = common::env();
    for uri in [&env.lite_uri, &env.target_uri] {
        let c = common::client(uri).await;
        let name = common::unique("paging");
        let shape = Shape::default();
        c.create_collection(&create_req(&name, shape)).await.expect("create");
        let index = [
            KeyValuePair { key: "index_type".into(), value: "AUTOINDEX".into() },
            KeyValuePair { key: "metric_type".into(), value: "L2".into() },
        ];
        c.create_index(&name, "v", "", &index).await.expect("index");
        c.load(&name, Duration::from_secs(120)).await.expect("load");
        // 3,000 keys, inserted in 6 batches of a scrambled order.
        let mut ids: Vec<i64> = (0..3000).map(|i| (i * 7919) % 3000).collect();
        ids.rotate_left(1234);
        for chunk in ids.chunks(500) {
            c.insert(&name, "", &data::rows(shape, chunk, 0)).await.expect("insert");
        }
        let mut pager = ferry::milvus::KeyPager::new(&name, "pk", vec!["pk".into()]);
        pager.page_rows = 250;
        let mut keys = Vec::new();
        while let Some(page) = pager.next_page(&c).await.unwrap_or_else(|e| panic!("{uri}: {e}")) {
            match page.primary_keys("pk") {
                Some(PrimaryKeys::Int(k)) => keys.extend(k),
                other => panic!("{other:?}"),
            }
        }
        let mut want: Vec<i64> = match int_keys(&ids) {
            PrimaryKeys::Int(k) => k,
            _ => unreachable!(),
        };
        want.sort();
        assert_eq!(keys.len(), 3000, "{uri}");
        assert_eq!(keys, want, "{uri}: every key once, ascending");
        c.drop_collection(&name).await.expect("drop");
    }
}
