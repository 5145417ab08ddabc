use super::testdata::*;
use super::*;
use proptest::prelude::*;

fn coll(name: &str, metric: i32, dim: i64, segments: Vec<V1xSegment>) -> V1xCollection {
    V1xCollection {
        collection: name.into(),
        metric,
        rows: 0,
        dim,
        segments,
    }
}

fn vectors_of(rows: &Rows) -> (Vec<i64>, Vector) {
    let ids = match rows.primary_keys(ID_FIELD) {
        Some(crate::milvus::PrimaryKeys::Int(v)) => v,
        other => panic!("ids: {other:?}"),
    };
    let v = match &rows.column(VECTOR_FIELD).unwrap().field {
        Some(Field::Vectors(v)) => v.data.clone().unwrap(),
        other => panic!("vectors: {other:?}"),
    };
    (ids, v)
}

fn float_bits(v: &Vector) -> Vec<u32> {
    match v {
        Vector::FloatVector(a) => a.data.iter().map(|f| f.to_bits()).collect(),
        other => panic!("{other:?}"),
    }
}

async fn open(dir: &std::path::Path) -> V1xSource {
    V1xSource::open(dir.to_str().unwrap()).await.unwrap()
}

/// Writes a float segment of `rows` rows, dim 3, with distinctive bit patterns.
fn float_rows(rows: usize) -> (Vec<f32>, Vec<i64>) {
    let specials = [
        f32::NAN,
        -0.0,
        f32::INFINITY,
        f32::MIN_POSITIVE / 2.0,
        -1.5e-30,
    ];
    let values = (0..rows * 3)
        .map(|i| {
            if i % 7 == 0 {
                specials[i % specials.len()]
            } else {
                i as f32 * 0.37 - 9.0
            }
        })
        .collect();
    let ids = (0..rows as i64).map(|i| i * 1000 + 7).collect();
    (values, ids)
}

#[tokio::test]
async fn float_vectors_round_trip_bit_exact_and_deleted_rows_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (values, ids) = float_rows(10);
    let deleted = [7, 0, 3, 7];
    let s1 = write_segment(
        dir.path(),
        "t1",
        "1610000000000",
        &rv_bytes_f32(&values),
        &ids,
        Some(&deleted),
    )
    .unwrap();
    let (values2, ids2) = float_rows(4);
    let s2 = write_segment(
        dir.path(),
        "t1",
        "1610000000001",
        &rv_bytes_f32(&values2),
        &ids2,
        None,
    )
    .unwrap();
    write_meta(dir.path(), vec![coll("t1", 1, 3, vec![s1, s2])]).unwrap();

    let src = open(dir.path()).await;
    let c = &src.collections()[0];
    assert_eq!(c.metric().unwrap(), Metric::L2);
    let rows = src.read_segment(c, &c.segments[0]).await.unwrap();
    let (got_ids, got) = vectors_of(&rows);
    let live: Vec<usize> = (0..10).filter(|i| ![0, 3, 7].contains(i)).collect();
    assert_eq!(got_ids, live.iter().map(|&i| ids[i]).collect::<Vec<_>>());
    let want: Vec<u32> = live
        .iter()
        .flat_map(|&i| values[i * 3..i * 3 + 3].iter().map(|f| f.to_bits()))
        .collect();
    assert_eq!(float_bits(&got), want);

    // Reading in ranges yields the same rows.
    let mut joined = Rows::default();
    for r in [0..4, 4..9, 9..100] {
        joined
            .append(&src.read_rows(c, &c.segments[0], r).await.unwrap())
            .unwrap();
    }
    assert_eq!(joined, rows);

    let rows2 = src.read_segment(c, &c.segments[1]).await.unwrap();
    let (got_ids, got) = vectors_of(&rows2);
    assert_eq!(got_ids, ids2);
    assert_eq!(
        float_bits(&got),
        values2.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn binary_vectors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..6 * 2).map(|i| (i * 37) as u8).collect();
    let ids: Vec<i64> = vec![5, -1, 9, 11, 2, 0];
    let s = write_segment(
        dir.path(),
        "bin",
        "42",
        &rv_bytes_binary(&bytes),
        &ids,
        Some(&[5, 1]),
    )
    .unwrap();
    write_meta(dir.path(), vec![coll("bin", 3, 16, vec![s])]).unwrap();
    let src = open(dir.path()).await;
    let c = &src.collections()[0];
    let rows = src.read_segment(c, &c.segments[0]).await.unwrap();
    let (got_ids, got) = vectors_of(&rows);
    assert_eq!(got_ids, vec![5, 9, 11, 2]);
    let want: Vec<u8> = [0, 2, 3, 4]
        .iter()
        .flat_map(|&i| bytes[i * 2..i * 2 + 2].to_vec())
        .collect();
    assert_eq!(got, Vector::BinaryVector(want));
    assert_eq!(
        c.schema().unwrap().fields[1].data_type,
        DataType::BinaryVector as i32
    );
}

#[tokio::test]
async fn unsupported_metrics_name_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_segment(dir.path(), "tani", "1", &rv_bytes_binary(&[1]), &[1], None).unwrap();
    write_meta(dir.path(), vec![coll("tani", 5, 8, vec![s])]).unwrap();
    let src = open(dir.path()).await;
    let c = &src.collections()[0];
    let e = src
        .read_segment(c, &c.segments[0])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("collection \"tani\"") && e.contains("TANIMOTO"),
        "{e}"
    );
}

#[tokio::test]
async fn bad_files_name_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (values, ids) = float_rows(4);
    // .rv byte count one row short of the body.
    let mut rv = rv_bytes_f32(&values);
    rv[..8].copy_from_slice(&((values.len() * 4 - 12) as u64).to_le_bytes());
    let a = write_segment(dir.path(), "c", "a", &rv, &ids, None).unwrap();
    // Body not a whole number of rows for dim 3.
    let mut rv = rv_bytes_f32(&values);
    rv.extend_from_slice(&[0; 4]);
    rv[..8].copy_from_slice(&((values.len() * 4 + 4) as u64).to_le_bytes());
    let b = write_segment(dir.path(), "c", "b", &rv, &ids, None).unwrap();
    // Deleted offset past the last row.
    let d = write_segment(
        dir.path(),
        "c",
        "d",
        &rv_bytes_f32(&values),
        &ids,
        Some(&[1, 4]),
    )
    .unwrap();
    // Fewer ids than vectors.
    let e = write_segment(
        dir.path(),
        "c",
        "e",
        &rv_bytes_f32(&values),
        &ids[..3],
        None,
    )
    .unwrap();
    // Truncated .rv header.
    let t = write_segment(dir.path(), "c", "t", &[1, 2, 3], &ids, None).unwrap();
    let mut missing = t.clone();
    missing.segment = "nope".into();
    write_meta(
        dir.path(),
        vec![coll("c", 2, 3, vec![a, b, d, e, t, missing])],
    )
    .unwrap();
    let src = open(dir.path()).await;
    let c = &src.collections()[0];
    let err = |i: usize| {
        let c = c.clone();
        let src = src.clone();
        async move {
            src.read_segment(&c, &c.segments[i])
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let m = err(0).await;
    assert!(
        m.contains("c/a/a.rv: byte 0: byte count 36 does not match the 48 bytes"),
        "{m}"
    );
    let m = err(1).await;
    assert!(
        m.contains("c/b/b.rv: byte 0: byte count 52 is not a whole number of 12-byte rows"),
        "{m}"
    );
    let m = err(2).await;
    assert!(
        m.contains("c/d/deleted_docs: byte 12: deleted offset 4 is outside the segment's 4 rows"),
        "{m}"
    );
    let m = err(3).await;
    assert!(
        m.contains("segment e of collection \"c\": 3 ids but 4 vectors"),
        "{m}"
    );
    let m = err(4).await;
    assert!(m.contains("c/t/t.rv: byte 0: truncated"), "{m}");
    let m = err(5).await;
    assert!(m.contains("c/nope/nope.uid: not found"), "{m}");
}

#[test]
fn meta_json_parses_milvus_migration_output() {
    let json = br#"{"collections":[{"collection":"demo","metric":2,"rows":3,"dim":4,
        "segments":[{"collection":"demo","segment":"1611111","dim":4,"rows":3,"fileSize":56}]}],"rows":3}"#;
    let store = Store::local(std::env::temp_dir()).unwrap();
    let src = V1xSource::from_parts(store.clone(), json, "meta.json").unwrap();
    assert_eq!(src.collections()[0].segments[0].segment, "1611111");
    assert_eq!(src.collections()[0].metric().unwrap(), Metric::Ip);
    let e = V1xSource::from_parts(
        store.clone(),
        br#"{"collections":[{"collection":"x","metric":3,"dim":12}]}"#,
        "m.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unusable dim 12"), "{e}");
    let e = V1xSource::from_parts(store, b"[", "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.json: "), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_segments_round_trip(
        rows in 0usize..30,
        dim in 1usize..6,
        bits in proptest::collection::vec(any::<u32>(), 0..180),
        deleted in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let values: Vec<f32> = (0..rows * dim).map(|i| f32::from_bits(bits.get(i).copied().unwrap_or(i as u32))).collect();
        let ids: Vec<i64> = (0..rows as i64).map(|i| i * 3 - 40).collect();
        let deleted: Vec<i32> = if rows == 0 { vec![] } else { deleted.iter().map(|d| d.index(rows) as i32).collect() };
        let dir = tempfile::tempdir().unwrap();
        let s = write_segment(dir.path(), "p", "9", &rv_bytes_f32(&values), &ids, Some(&deleted)).unwrap();
        write_meta(dir.path(), vec![coll("p", 1, dim as i64, vec![s])]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rows_read = rt.block_on(async {
            let src = open(dir.path()).await;
            let c = src.collections()[0].clone();
            src.read_segment(&c, &c.segments[0]).await.unwrap()
        });
        let (got_ids, got) = vectors_of(&rows_read);
        let live: Vec<usize> = (0..rows).filter(|i| !deleted.contains(&(*i as i32))).collect();
        prop_assert_eq!(got_ids, live.iter().map(|&i| ids[i]).collect::<Vec<_>>());
        let want: Vec<u32> = live.iter().flat_map(|&i| values[i * dim..(i + 1) * dim].iter().map(|f| f.to_bits())).collect();
        prop_assert_eq!(float_bits(&got), want);
    }
}
