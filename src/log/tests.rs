use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn entry(offset: i64, ts: u64, payload_len: usize) -> LogEntry {
    LogEntry {
        kafka_offset: offset,
        msg_type: 400,
        ts,
        collection_id: 7,
        payload: vec![offset as u8; payload_len],
    }
}

fn pos(next_offset: i64, skip: u64) -> ChannelPosition {
    ChannelPosition {
        next_offset,
        skip_through_ts: skip,
    }
}

/// Opens the log, waiting out the file lock of a just-dropped instance: sled's background
/// flusher releases it a moment after the last handle is dropped.
fn open(dir: &std::path::Path) -> DurableLog {
    let mut tries = 0;
    loop {
        match DurableLog::open(&LogConfig::new(dir)) {
            Ok(log) => return log,
            Err(e) if tries < 100 && e.to_string().contains("lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open log: {e}"),
        }
    }
}

#[test]
fn append_read_advance_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let entries: Vec<_> = (0..3).map(|i| entry(10 + i, 100 + i as u64, 5)).collect();
    log.append_now("ch", entries.clone(), pos(13, 102), 102)
        .unwrap();
    assert_eq!(log.pending_events(), 3);
    let size: u64 = entries.iter().map(LogEntry::stored_size).sum();
    assert_eq!(log.pending_bytes(), size);
    assert_eq!(log.source_ts("ch"), 102);
    assert_eq!(log.end_seq("ch"), 3);

    let read = log.read("ch", 0, 10, u64::MAX).unwrap();
    assert_eq!(
        read.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(read[1].entry, entries[1]);
    assert_eq!(log.read("ch", 1, 1, u64::MAX).unwrap()[0].seq, 1);
    // The byte bound stops after the entry that reaches it, but never returns nothing.
    assert_eq!(log.read("ch", 0, 10, 1).unwrap().len(), 1);
    let two = entries[0].stored_size() + 1;
    assert_eq!(log.read("ch", 0, 10, two).unwrap().len(), 2);
    assert!(log.read("other", 0, 10, u64::MAX).unwrap().is_empty());

    log.advance(
        "ch",
        Cursor {
            next_seq: 2,
            applied_ts: 101,
        },
    )
    .unwrap();
    assert_eq!(log.applied_ts("ch"), 101);
    assert_eq!(log.pending_events(), 1);
    assert_eq!(log.pending_bytes(), entries[2].stored_size());
    // GC: entries below the cursor are gone.
    let read = log.read("ch", 0, 10, u64::MAX).unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn nothing_moves_backward() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_now("ch", vec![entry(0, 5, 1), entry(1, 6, 1)], pos(2, 6), 6)
        .unwrap();
    log.advance(
        "ch",
        Cursor {
            next_seq: 1,
            applied_ts: 5,
        },
    )
    .unwrap();
    let err = log
        .advance(
            "ch",
            Cursor {
                next_seq: 0,
                applied_ts: 5,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Backward {
                what: "apply cursor",
                ..
            }
        ),
        "{err}"
    );
    let err = log
        .advance(
            "ch",
            Cursor {
                next_seq: 1,
                applied_ts: 4,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Backward {
                what: "applied ts",
                ..
            }
        ),
        "{err}"
    );
    let err = log
        .advance(
            "ch",
            Cursor {
                next_seq: 3,
                applied_ts: 9,
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, LogError::PastEnd { to: 3, end: 2, .. }),
        "{err}"
    );
    let err = log.append_now("ch", vec![], pos(1, 6), 6).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Backward {
                what: "WAL position",
                ..
            }
        ),
        "{err}"
    );
    let err = log.append_now("ch", vec![], pos(3, 5), 6).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Backward {
                what: "skip-through ts",
                ..
            }
        ),
        "{err}"
    );
    let err = log.append_now("ch", vec![], pos(3, 6), 5).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Backward {
                what: "source time tick",
                ..
            }
        ),
        "{err}"
    );
    // Rejected calls changed nothing.
    assert_eq!(
        log.cursor("ch"),
        Cursor {
            next_seq: 1,
            applied_ts: 5
        }
    );
    assert_eq!(log.position("ch"), Some(pos(2, 6)));
    assert_eq!(log.pending_events(), 1);
}

#[test]
fn init_position_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.init_position("ch", pos(5, 0)).unwrap(), pos(5, 0));
    assert_eq!(log.init_position("ch", pos(9, 0)).unwrap(), pos(5, 0));
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.init_position("ch", pos(9, 0)).unwrap(), pos(5, 0));
    assert_eq!(
        log.positions(),
        HashMap::from([("ch".to_string(), pos(5, 0))])
    );
}

#[test]
fn reopen_recovers_positions_cursors_ticks_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append_now(
            "a",
            (0..4).map(|i| entry(i, 10, 3)).collect(),
            pos(4, 10),
            10,
        )
        .unwrap();
        log.append_now("b", vec![entry(0, 20, 3)], pos(1, 20), 21)
            .unwrap();
        log.advance(
            "a",
            Cursor {
                next_seq: 3,
                applied_ts: 10,
            },
        )
        .unwrap();
        log.advance(
            "b",
            Cursor {
                next_seq: 1,
                applied_ts: 21,
            },
        )
        .unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.position("a"), Some(pos(4, 10)));
    assert_eq!(
        log.cursor("a"),
        Cursor {
            next_seq: 3,
            applied_ts: 10
        }
    );
    assert_eq!(log.source_ts("b"), 21);
    assert_eq!(log.pending_events(), 1);
    assert_eq!(log.pending_bytes(), entry(3, 10, 3).stored_size());
    // A fully applied channel keeps counting from its cursor, not from zero.
    assert_eq!(log.end_seq("b"), 1);
    log.append_now("b", vec![entry(1, 30, 3)], pos(2, 30), 30)
        .unwrap();
    assert_eq!(log.read("b", 0, 10, u64::MAX).unwrap()[0].seq, 1);
}

#[tokio::test]
async fn append_waits_while_over_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path());
    cfg.max_pending_bytes = 100;
    let log = DurableLog::open(&cfg).unwrap();
    // One window may overshoot the bound...
    log.append("ch", vec![entry(0, 1, 200)], pos(1, 1), 1)
        .await
        .unwrap();
    // ...but the next waits until the applier makes room.
    let blocked = {
        let log = log.clone();
        tokio::spawn(async move { log.append("ch", vec![entry(1, 2, 10)], pos(2, 2), 2).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!blocked.is_finished());
    assert_eq!(log.end_seq("ch"), 1);
    log.advance(
        "ch",
        Cursor {
            next_seq: 1,
            applied_ts: 1,
        },
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("append should resume once there is room")
        .unwrap()
        .unwrap();
    assert_eq!(log.end_seq("ch"), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Append { ch: usize, n: usize, size: usize },
    Advance { ch: usize, by: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..4usize, 0..50usize).prop_map(|(ch, n, size)| Op::Append { ch, n, size }),
        3 => (0..2usize, 0..5usize).prop_map(|(ch, by)| Op::Advance { ch, by }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Default, Clone)]
struct Model {
    /// (seq, entry) not yet applied.
    entries: Vec<(u64, LogEntry)>,
    next_seq: u64,
    cursor: Cursor,
    position: Option<ChannelPosition>,
    tick: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random appends, advances and reopens against a model: the log holds exactly the
    /// unapplied entries, counts agree, and nothing stored moves backward.
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let chans = ["by-dev-rootcoord-dml_1", "by-dev-rootcoord-dml_10"];
        let mut log = open(dir.path());
        let mut model = [Model::default(), Model::default()];
        let mut offset = 0i64;
        let mut ts = 0u64;
        for op in ops {
            match op {
                Op::Append { ch, n, size } => {
                    let mut batch = Vec::new();
                    for _ in 0..n {
                        offset += 1;
                        ts += 1;
                        batch.push(entry(offset, ts, size));
                    }
                    ts += 1;
                    let p = pos(offset + 1, ts);
                    log.append_now(chans[ch], batch.clone(), p, ts).unwrap();
                    let m = &mut model[ch];
                    for e in batch {
                        m.entries.push((m.next_seq, e));
                        m.next_seq += 1;
                    }
                    m.position = Some(p);
                    m.tick = ts;
                }
                Op::Advance { ch, by } => {
                    let m = &mut model[ch];
                    let by = by.min(m.entries.len());
                    let applied: Vec<_> = m.entries.drain(..by).collect();
                    let to = Cursor {
                        next_seq: applied.last().map_or(m.cursor.next_seq, |(s, _)| s + 1),
                        applied_ts: applied.last().map_or(m.cursor.applied_ts, |(_, e)| e.ts),
                    };
                    log.advance(chans[ch], to).unwrap();
                    m.cursor = to;
                    if to.next_seq > 0 {
                        let back = Cursor { next_seq: to.next_seq - 1, ..to };
                        prop_assert!(log.advance(chans[ch], back).is_err());
                    }
                }
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
            }
            let mut events = 0;
            let mut bytes = 0;
            for (ch, m) in chans.iter().zip(&model) {
                let read = log.read(ch, 0, 1000, u64::MAX).unwrap();
                let want: Vec<_> = m.entries.iter().map(|(s, e)| StoredEntry { seq: *s, entry: e.clone() }).collect();
                prop_assert_eq!(read, want);
                prop_assert_eq!(log.cursor(ch), m.cursor);
                prop_assert_eq!(log.position(ch), m.position);
                prop_assert_eq!(log.source_ts(ch), m.tick);
                prop_assert_eq!(log.end_seq(ch), m.next_seq);
                events += m.entries.len() as u64;
                bytes += m.entries.iter().map(|(_, e)| e.stored_size()).sum::<u64>();
            }
            prop_assert_eq!(log.pending_events(), events);
            prop_assert_eq!(log.pending_bytes(), bytes);
        }
    }
}

/// The cutover's fence watch counts writes of the watched collections stamped after the
/// fence: those appended before the fence was known (kept until it is set) and after, in
/// records and rows; not other collections, not other message types, not before arming,
/// not after the watch is dropped.
#[test]
fn fence_watch_counts_writes_after_the_fence() {
    use crate::msgstream::testdata as td;
    let dml = |offset: i64, coll: i64, ts: u64, insert: bool, pks: &[i64]| LogEntry {
        kafka_offset: offset,
        msg_type: if insert { 400 } else { 401 },
        ts,
        collection_id: coll,
        payload: if insert {
            td::insert(coll, "", ts, pks, 0.0)
        } else {
            td::delete(coll, "", ts, pks)
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Appended before arming: never counted, even stamped past the fence.
    log.append_now("a", vec![dml(0, 7, 150, true, &[1])], pos(1, 150), 150)
        .unwrap();

    let watch = log.watch_fence([7, 8]);
    assert!(
        watch.breaches().is_empty(),
        "nothing before the fence is set"
    );
    // Appended before the fence is known: an upsert stamped before it, one after, a write
    // of an unwatched collection, a time tick.
    log.append_now(
        "a",
        vec![
            dml(1, 7, 190, true, &[1, 2]),
            dml(2, 7, 190, false, &[1, 2]),
            dml(3, 7, 210, true, &[3, 4, 5]),
            dml(4, 7, 210, false, &[3, 4, 5]),
            dml(5, 9, 210, true, &[1]),
            LogEntry {
                msg_type: 1200,
                ..entry(6, 210, 4)
            },
        ],
        pos(7, 210),
        210,
    )
    .unwrap();
    watch.set_fence(200);
    watch.set_fence(100); // the fence never moves
    let b = watch.breaches();
    assert_eq!(b.keys().collect::<Vec<_>>(), [&7]);
    assert_eq!(
        b[&7],
        FenceBreach {
            writes: 2,
            inserted_rows: 3,
            deleted_rows: 3,
            first_ts: 210
        }
    );

    // After the fence is set: counted as appended, on any channel.
    log.append_now(
        "b",
        vec![dml(0, 8, 205, false, &[9]), dml(1, 8, 199, true, &[9])],
        pos(2, 205),
        205,
    )
    .unwrap();
    log.append_now("a", vec![dml(7, 7, 220, true, &[6])], pos(8, 220), 220)
        .unwrap();
    let b = watch.breaches();
    assert_eq!(
        b[&7],
        FenceBreach {
            writes: 3,
            inserted_rows: 4,
            deleted_rows: 3,
            first_ts: 210
        }
    );
    assert_eq!(
        b[&8],
        FenceBreach {
            writes: 1,
            inserted_rows: 0,
            deleted_rows: 1,
            first_ts: 205
        }
    );

    // Dropped: disarmed. A new watch starts from nothing, and an old one never disarms it.
    drop(watch);
    log.append_now("a", vec![dml(8, 7, 230, true, &[1])], pos(9, 230), 230)
        .unwrap();
    let first = log.watch_fence([7]);
    let second = log.watch_fence([7]);
    drop(first);
    second.set_fence(225);
    assert!(second.breaches().is_empty());
    log.append_now("a", vec![dml(9, 7, 240, true, &[1, 2])], pos(10, 240), 240)
        .unwrap();
    assert_eq!(second.breaches()[&7].inserted_rows, 2);
}
