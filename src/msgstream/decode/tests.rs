use super::*;
use crate::msgstream::testdata as td;
use proptest::prelude::*;

#[test]
fn hybrid_timestamps_split_and_compose() {
    let ts = compose(1_700_000_000_123, 5);
    assert_eq!(physical_ms(ts), 1_700_000_000_123);
    assert_eq!(ts & ((1 << LOGICAL_BITS) - 1), 5);
    // A logical part that overflows its bits must not leak into the physical part.
    assert_eq!(physical_ms(compose(10, 1 << LOGICAL_BITS)), 10);
}

#[test]
fn decodes_insert_columns_and_newest_timestamp() {
    let ev = decode(&td::insert(42, "_default", 1000, &[1, 2, 3], 0.5)).unwrap();
    let WalEvent::Insert(ins) = ev else {
        panic!("not an insert: {ev:?}")
    };
    assert_eq!(ins.collection_id, 42);
    assert_eq!(ins.partition_name, "_default");
    assert_eq!(ins.collection_name, "c42");
    assert_eq!(ins.shard, "by-dev-rootcoord-dml_0_42v0");
    assert_eq!(ins.ts, 1000);
    assert_eq!(ins.rows.len(), 3);
    assert_eq!(
        ins.rows.primary_keys("id"),
        Some(PrimaryKeys::Int(vec![1, 2, 3]))
    );
    let head = peek(&td::insert(42, "p", 1, &[1, 2], 0.0)).unwrap();
    assert_eq!((head.collection_id, head.rows), (Some(42), 2));
    assert_eq!(peek(&td::delete(42, "", 1, &[1, 2, 3])).unwrap().rows, 3);
}

#[test]
fn insert_ts_is_newest_row_timestamp_else_base() {
    let mut m = msg::InsertRequest::decode(&td::insert(1, "p", 50, &[1, 2], 0.0)[..]).unwrap();
    m.timestamps = vec![70, 60];
    assert_eq!(decode(&m.encode_to_vec()).unwrap().ts(), 70);
    m.timestamps.clear();
    assert_eq!(decode(&m.encode_to_vec()).unwrap().ts(), 50);
}

#[test]
fn row_based_and_inconsistent_inserts_are_errors() {
    let mut m = msg::InsertRequest::decode(&td::insert(9, "p", 5, &[1, 2], 0.0)[..]).unwrap();
    let mut row_based = m.clone();
    row_based.fields_data.clear();
    row_based.version = msg::InsertDataVersion::RowBased as i32;
    let err = decode(&row_based.encode_to_vec()).unwrap_err();
    assert!(
        err.to_string().contains("row-based insert not supported"),
        "{err}"
    );

    let mut short = m.clone();
    short.fields_data[0] = td::long_col("id", vec![1]);
    assert!(matches!(
        decode(&short.encode_to_vec()),
        Err(DecodeError::Columns {
            collection_id: 9,
            ..
        })
    ));

    m.num_rows = 3;
    assert!(matches!(
        decode(&m.encode_to_vec()),
        Err(DecodeError::RowCount {
            declared: 3,
            actual: 2,
            ..
        })
    ));
}

#[test]
fn absurd_vector_dims_are_errors_not_panics() {
    for dim in [0, -1, i64::MAX, i64::MIN] {
        let mut m = msg::InsertRequest::decode(&td::insert(3, "p", 5, &[1], 0.0)[..]).unwrap();
        if let Some(Field::Vectors(v)) = &mut m.fields_data[1].field {
            v.dim = dim;
        }
        assert!(
            matches!(
                decode(&m.encode_to_vec()),
                Err(DecodeError::VectorDim { .. })
            ),
            "dim {dim}"
        );
    }
}

#[test]
fn decodes_deletes_new_and_legacy() {
    let ev = decode(&td::delete(42, "", 77, &[5, 6])).unwrap();
    assert_eq!(ev.ts(), 77);
    let WalEvent::Delete(d) = ev else { panic!() };
    assert_eq!(d.pks, PrimaryKeys::Int(vec![5, 6]));
    assert_eq!(d.partition_name, "");

    let WalEvent::Delete(d) = decode(&td::delete_str(42, 78, &["a", "b\"c"])).unwrap() else {
        panic!()
    };
    assert_eq!(d.pks, PrimaryKeys::Str(vec!["a".into(), "b\"c".into()]));

    let mut legacy = msg::DeleteRequest::decode(&td::delete(42, "", 79, &[8])[..]).unwrap();
    legacy.primary_keys = None;
    legacy.int64_primary_keys = vec![8];
    let WalEvent::Delete(d) = decode(&legacy.encode_to_vec()).unwrap() else {
        panic!()
    };
    assert_eq!(d.pks, PrimaryKeys::Int(vec![8]));

    legacy.int64_primary_keys.clear();
    assert!(matches!(
        decode(&legacy.encode_to_vec()),
        Err(DecodeError::NoPrimaryKeys { collection_id: 42 })
    ));
}

#[test]
fn decodes_time_tick_and_ddl() {
    assert_eq!(
        decode(&td::time_tick(123)).unwrap(),
        WalEvent::TimeTick { ts: 123 }
    );
    assert_eq!(
        decode(&td::create_partition(4, "p1", 9)).unwrap(),
        WalEvent::CreatePartition {
            collection_id: 4,
            partition_name: "p1".into(),
            partition_id: td::partition_id("p1"),
            ts: 9
        }
    );
    assert_eq!(
        decode(&td::drop_partition(4, "p1", 10)).unwrap(),
        WalEvent::DropPartition {
            collection_id: 4,
            partition_name: "p1".into(),
            partition_id: td::partition_id("p1"),
            ts: 10
        }
    );
    let WalEvent::CreateCollection {
        collection_id,
        name,
        schema,
        ts,
        ..
    } = decode(&td::create_collection(4, "books", 11)).unwrap()
    else {
        panic!("not a create collection")
    };
    assert_eq!((collection_id, name.as_str(), ts), (4, "books", 11));
    let schema = crate::proto::schema::CollectionSchema::decode(&schema[..]).unwrap();
    assert_eq!(schema.fields[0].name, "id");
    assert_eq!(
        decode(&td::drop_collection(4, "books", 12)).unwrap(),
        WalEvent::DropCollection {
            collection_id: 4,
            name: "books".into(),
            ts: 12
        }
    );
    for (bytes, id) in [
        (td::create_partition(4, "p", 1), 4),
        (td::drop_partition(5, "p", 1), 5),
        (td::create_collection(6, "x", 1), 6),
        (td::drop_collection(7, "x", 1), 7),
        (td::delete(8, "", 1, &[1]), 8),
    ] {
        assert_eq!(peek(&bytes).unwrap().collection_id, Some(id));
    }
    assert_eq!(peek(&td::time_tick(5)).unwrap().collection_id, None);
}

#[test]
fn unknown_types_are_other_and_garbage_is_an_error() {
    let flush = MsgHeader {
        base: Some(crate::proto::common::MsgBase {
            msg_type: MsgType::Flush as i32,
            timestamp: 3,
            ..Default::default()
        }),
    }
    .encode_to_vec();
    assert_eq!(
        decode(&flush).unwrap(),
        WalEvent::Other {
            msg_type: MsgType::Flush as i32,
            ts: 3
        }
    );
    assert!(matches!(decode(&[]), Err(DecodeError::NoBase)));
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff]),
        Err(DecodeError::Header(_))
    ));
}

fn valid_messages() -> Vec<Vec<u8>> {
    vec![
        td::insert(1, "_default", 100, &[1, 2, 3], 1.0),
        td::delete(1, "", 100, &[1, 2]),
        td::delete_str(1, 100, &["x"]),
        td::time_tick(100),
        td::create_partition(1, "p", 100),
        td::drop_partition(1, "p", 100),
        td::create_collection(1, "c", 100),
        td::drop_collection(1, "c", 100),
        td::insert_columns(1, 100, modern_columns()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = peek(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..9,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_messages().swap_remove(which);
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(ev) = decode(&bytes) {
            // Whatever decodes must be internally consistent.
            if let WalEvent::Insert(ins) = &ev {
                prop_assert!(ins.rows.columns.iter().all(|c| crate::milvus::data::column_rows(c) == ins.rows.num_rows));
            }
            prop_assert_eq!(peek(&bytes).ok().and_then(|p| p.collection_id), ev.collection_id());
        }
    }
}

/// The columns of a 2.4-2.6 insert: the vector types added since 2.3, a binary vector, and
/// nullable scalars with null rows, five rows each (shared with the binlog reader's tests).
fn modern_columns() -> Vec<FieldData> {
    use crate::proto::schema::VectorField;
    use crate::sources::binlog::tests::{modern_types, MODERN_ROWS};
    let rows = MODERN_ROWS as i64;
    let binary = FieldData {
        r#type: crate::proto::schema::DataType::BinaryVector as i32,
        field_name: "bv".into(),
        field_id: 140,
        field: Some(Field::Vectors(VectorField {
            dim: 16,
            data: Some(Vector::BinaryVector((0..2 * rows as u8).collect())),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut cols = vec![td::long_col("id", (1..=rows).collect()), binary];
    // Geometry is left out: what the proxy turns WKT input into on the WAL is unchecked.
    cols.extend(
        modern_types()
            .into_iter()
            .filter(|(f, _)| !f.name.contains("geo"))
            .map(|(_, c)| c),
    );
    cols
}

#[test]
fn decodes_modern_vectors_and_nullable_columns_as_written() {
    let cols = modern_columns();
    for want in ["f16", "bf16", "i8v", "sp", "bv", "n_i64", "n_s", "n_tz"] {
        assert!(cols.iter().any(|c| c.field_name == want), "{want}");
    }
    let WalEvent::Insert(ins) = decode(&td::insert_columns(7, 900, cols.clone())).unwrap() else {
        panic!("not an insert")
    };
    assert_eq!(ins.rows.num_rows, 5);
    assert_eq!(ins.rows.columns.len(), cols.len());
    for (got, sent) in ins.rows.columns.iter().zip(&cols) {
        assert_eq!(
            got.encode_to_vec(),
            sent.encode_to_vec(),
            "{}",
            sent.field_name
        );
    }
    let written = Rows::new(cols).unwrap();
    for i in 0..ins.rows.num_rows {
        assert_eq!(ins.rows.row_digest(i), written.row_digest(i), "row {i}");
    }
    // Null stays null: the same row with the placeholder taken as a value digests apart.
    let n = ins.rows.column("n_i64").unwrap();
    assert_eq!(n.valid_data, vec![false, true, false, true, false]);
    let mut as_values = ins.rows.clone();
    for c in &mut as_values.columns {
        c.valid_data.clear();
    }
    for i in [0, 2, 4] {
        assert_ne!(as_values.row_digest(i), ins.rows.row_digest(i), "row {i}");
    }
}

#[test]
fn sparse_dims_are_the_batch_s_whatever_they_are() {
    use crate::proto::schema::{SparseFloatArray, VectorField};
    use crate::sources::binlog::tests::sparse_row;
    let sparse = |contents: Vec<Vec<u8>>, dim| FieldData {
        r#type: crate::proto::schema::DataType::SparseFloatVector as i32,
        field_name: "sp".into(),
        field_id: 101,
        field: Some(Field::Vectors(VectorField {
            dim,
            data: Some(Vector::SparseFloatVector(SparseFloatArray {
                contents,
                dim,
            })),
            ..Default::default()
        })),
        ..Default::default()
    };
    // Every row empty: the client batch's dim is 0.
    let cols = vec![
        td::long_col("id", vec![1, 2]),
        sparse(vec![vec![], vec![]], 0),
    ];
    let WalEvent::Insert(ins) = decode(&td::insert_columns(7, 1, cols)).unwrap() else {
        panic!("not an insert")
    };
    assert_eq!(ins.rows.num_rows, 2);
    // An index near the top of u32 (hashed token ids); the dim is the batch's, which may
    // exceed this message's own rows when the proxy split the batch across shards.
    let top = sparse(vec![sparse_row(&[(u32::MAX - 1, 1.0)])], 1 << 32);
    let cols = vec![td::long_col("id", vec![1]), top];
    assert!(decode(&td::insert_columns(7, 1, cols)).is_ok());
    let negative = sparse(vec![vec![]], -1);
    let cols = vec![td::long_col("id", vec![1]), negative];
    assert!(matches!(
        decode(&td::insert_columns(7, 1, cols)),
        Err(DecodeError::VectorDim { dim: -1, .. })
    ));
}
