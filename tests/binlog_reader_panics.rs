//! A malformed payload that panics the Parquet reader is an error naming the file, and the
//! panic is not reported: no panic hook runs for it (the report, with `RUST_BACKTRACE`
//! set, symbolizes a backtrace, which loads the binary's debug info: tens of MB held for
//! the rest of the process). Panics elsewhere still reach the hook. Its own test binary:
//! the panic hook is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry::proto::schema::{field_data::Field, scalar_field::Data as Scalar, DataType, FieldData, FieldSchema, ScalarField, StringArray};
use ferry::sources::binlog::{self, testdata, ReadLimits};

#[test]
fn a_caught_reader_panic_reaches_no_panic_hook() {
    let reports = Arc::new(AtomicUsize::new(0));
    let seen = reports.clone();
    let harness = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        harness(info);
    }));

    let f = FieldSchema { field_id: 101, name: "s".into(), data_type: DataType::VarChar as i32, ..Default::default() };
    let col = FieldData {
        r#type: f.data_type,
        field_name: "s".into(),
        field_id: 101,
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::StringData(StringArray { data: (0..64).map(|i| format!("value-{}", i % 4)).collect() })),
            ..Default::default()
        })),
        is_dynamic: false,
        valid_data: Vec::new(),
    };
    let good = testdata::insert_log(&f, &col, Default::default(), (1, 2)).unwrap();
    let limits = ReadLimits { max_decoded_bytes: 16 << 20 };
    // Single-byte changes of a dictionary-encoded string column: some make the reader
    // panic (a division by zero, an index out of bounds; parquet 5x).
    let mut panics = 0;
    for i in 0..good.len() {
        for v in [0u8, 0x10, good[i] ^ 1] {
            let mut b = good.clone();
            b[i] = v;
            if let Err(e) = binlog::read_insert_log("bad.binlog", Bytes::from(b), &f, &limits) {
                let e = e.to_string();
                if e.contains("the Parquet reader failed on a malformed payload") {
                    assert!(e.starts_with("bad.binlog: byte "), "{e}");
                    panics += 1;
                }
            }
        }
    }
    assert!(panics > 0, "no change made the reader panic: the test no longer reaches the case");
    assert_eq!(reports.load(Ordering::SeqCst), 0, "{panics} reader panics reached the panic hook");

    // Any other panic is still reported.
    let other = std::panic::catch_unwind(|| panic!("not the reader's"));
    assert!(other.is_err());
    assert_eq!(reports.load(Ordering::SeqCst), 1);
}
