use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::schema::{field_data::Field, vector_field::Data as Vector};
use crate::msgstream::decode::decode;
use crate::msgstream::testdata as td;

const NO_LIMIT: BatchLimits = BatchLimits {
    max_bytes: usize::MAX,
    max_rows: usize::MAX,
};

fn ev(raw: Vec<u8>) -> WalEvent {
    decode(&raw).unwrap()
}

fn plan(events: &[WalEvent], partition_key: bool) -> Coalesced {
    let refs: Vec<&WalEvent> = events.iter().collect();
    coalesce(&refs, "target", "id", partition_key).unwrap()
}

/// (partition, pk, version) of every upserted row; the version is the vector's 2nd value.
fn upserted(c: &Coalesced) -> Vec<(String, i64, f32)> {
    let mut out = Vec::new();
    for (p, rows) in &c.upserts {
        let Some(PrimaryKeys::Int(pks)) = rows.primary_keys("id") else {
            panic!("no int keys")
        };
        let Some(Field::Vectors(v)) = rows.column("v").and_then(|c| c.field.as_ref()) else {
            panic!("no vectors")
        };
        let Some(Vector::FloatVector(f)) = &v.data else {
            panic!()
        };
        for (i, pk) in pks.iter().enumerate() {
            out.push((p.clone(), *pk, f.data[i * 2 + 1]));
        }
    }
    out
}

fn deleted(c: &Coalesced) -> Vec<(String, PrimaryKeys)> {
    c.deletes.clone()
}

fn ints(v: &[i64]) -> PrimaryKeys {
    PrimaryKeys::Int(v.to_vec())
}

#[test]
fn inserts_become_upserts_and_the_newest_version_wins() {
    let c = plan(
        &[
            ev(td::insert(1, "_default", 10, &[1, 2], 1.0)),
            ev(td::insert(1, "_default", 11, &[2, 3], 2.0)),
        ],
        false,
    );
    assert_eq!(
        upserted(&c),
        vec![
            ("_default".into(), 1, 1.0),
            ("_default".into(), 2, 2.0),
            ("_default".into(), 3, 2.0)
        ]
    );
    assert!(c.deletes.is_empty());
}

#[test]
fn a_later_delete_cancels_the_insert() {
    let c = plan(
        &[
            ev(td::insert(1, "_default", 10, &[1, 2], 1.0)),
            ev(td::delete(1, "", 11, &[1])),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("_default".into(), 2, 1.0)]);
    assert_eq!(deleted(&c), vec![("".into(), ints(&[1]))]);
}

#[test]
fn trap_an_upserts_own_delete_does_not_cancel_it() {
    // Milvus 2.3 writes upsert(k) as Insert(T) then Delete(T).
    let same_partition = plan(
        &[
            ev(td::insert(1, "_default", 10, &[1], 1.0)),
            ev(td::delete(1, "_default", 10, &[1])),
        ],
        false,
    );
    assert_eq!(upserted(&same_partition), vec![("_default".into(), 1, 1.0)]);
    assert!(
        same_partition.deletes.is_empty(),
        "the upsert replaces the row itself"
    );

    // A delete over every partition also removed older copies elsewhere: keep it, it runs
    // before the upsert.
    let all_partitions = plan(
        &[
            ev(td::insert(1, "_default", 10, &[1], 1.0)),
            ev(td::delete(1, "", 10, &[1])),
        ],
        false,
    );
    assert_eq!(upserted(&all_partitions), vec![("_default".into(), 1, 1.0)]);
    assert_eq!(deleted(&all_partitions), vec![("".into(), ints(&[1]))]);
}

#[test]
fn trap_a_delete_alone_deletes_which_is_why_batches_keep_equal_ts_together() {
    // What a replay would do if a batch had ended between Insert(T) and Delete(T).
    let c = plan(&[ev(td::delete(1, "_default", 10, &[1]))], false);
    assert!(c.upserts.is_empty());
    assert_eq!(deleted(&c), vec![("_default".into(), ints(&[1]))]);
}

#[test]
fn delete_then_reinsert_keeps_the_row() {
    let c = plan(
        &[
            ev(td::insert(1, "_default", 10, &[1], 1.0)),
            ev(td::delete(1, "_default", 11, &[1])),
            ev(td::insert(1, "_default", 12, &[1], 3.0)),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("_default".into(), 1, 3.0)]);
    assert!(c.deletes.is_empty());
}

#[test]
fn timestamps_not_log_order_decide() {
    // An insert that arrived after a newer delete stays deleted.
    let c = plan(
        &[
            ev(td::delete(1, "", 20, &[1])),
            ev(td::insert(1, "_default", 15, &[1], 1.0)),
        ],
        false,
    );
    assert!(c.upserts.is_empty());
    assert_eq!(deleted(&c), vec![("".into(), ints(&[1]))]);
    // An older insert arriving late does not overwrite a newer one.
    let c = plan(
        &[
            ev(td::insert(1, "_default", 20, &[1], 2.0)),
            ev(td::insert(1, "_default", 15, &[1], 1.0)),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("_default".into(), 1, 2.0)]);
}

#[test]
fn deletes_in_other_partitions_do_not_touch_an_upsert() {
    let c = plan(
        &[
            ev(td::insert(1, "p1", 10, &[1], 1.0)),
            ev(td::delete(1, "p2", 11, &[1])),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("p1".into(), 1, 1.0)]);
    assert_eq!(deleted(&c), vec![("p2".into(), ints(&[1]))]);
}

#[test]
fn partition_key_collections_ignore_partition_names() {
    let c = plan(
        &[
            ev(td::insert(1, "_default_3", 10, &[1, 2], 1.0)),
            ev(td::delete(1, "_default_5", 11, &[1])),
        ],
        true,
    );
    assert_eq!(upserted(&c), vec![("".into(), 2, 1.0)]);
    assert_eq!(deleted(&c), vec![("".into(), ints(&[1]))]);
}

#[test]
fn string_keys_and_missing_key_column() {
    let events = [
        ev(td::insert_str(1, 10, &["a", "b"], 1.0)),
        ev(td::delete_str(1, 11, &["a"])),
    ];
    let refs: Vec<&WalEvent> = events.iter().collect();
    let c = coalesce(&refs, "t", "pk", false).unwrap();
    assert_eq!(
        c.deletes,
        vec![("".into(), PrimaryKeys::Str(vec!["a".into()]))]
    );
    assert_eq!(
        c.upserts[0].1.primary_keys("pk"),
        Some(PrimaryKeys::Str(vec!["b".into()]))
    );
    let err = coalesce(&refs, "t", "nope", false).unwrap_err();
    assert!(matches!(err, ApplyError::MissingPrimaryKey { .. }), "{err}");
}

fn meta(collection_id: i64, ts: u64, kind: MetaKind, rows: usize) -> EventMeta {
    EventMeta {
        collection_id,
        ts,
        kind,
        bytes: rows * 10,
        rows,
    }
}

fn dml(ts: u64, rows: usize) -> EventMeta {
    meta(1, ts, MetaKind::Dml, rows)
}

#[test]
fn cut_table() {
    let rows = |max_rows| BatchLimits {
        max_bytes: usize::MAX,
        max_rows,
    };
    let cases: Vec<(&str, Vec<EventMeta>, bool, BatchLimits, Cut)> = vec![
        (
            "all fits, log end",
            vec![dml(1, 1), dml(2, 1)],
            true,
            NO_LIMIT,
            Cut::Take(2),
        ),
        (
            "all fits, more may follow: stop before the last ts group",
            vec![dml(1, 1), dml(2, 1), dml(2, 1)],
            false,
            NO_LIMIT,
            Cut::Take(1),
        ),
        (
            "one ts group and more may follow",
            vec![dml(1, 1), dml(1, 1)],
            false,
            NO_LIMIT,
            Cut::NeedMore,
        ),
        (
            "limit between different ts",
            vec![dml(1, 2), dml(2, 2), dml(3, 2)],
            true,
            rows(4),
            Cut::Take(2),
        ),
        (
            "limit inside an upsert pair: end before the pair",
            vec![dml(1, 1), dml(2, 1), dml(2, 1)],
            true,
            rows(2),
            Cut::Take(1),
        ),
        (
            "first ts group alone over the limit: take it whole",
            vec![dml(1, 3), dml(1, 3), dml(2, 1)],
            true,
            rows(2),
            Cut::Take(2),
        ),
        (
            "collection change ends the batch",
            vec![dml(1, 1), meta(2, 2, MetaKind::Dml, 1)],
            false,
            NO_LIMIT,
            Cut::Take(1),
        ),
        (
            "DDL ends the batch",
            vec![dml(1, 1), meta(1, 2, MetaKind::Barrier, 0), dml(3, 1)],
            true,
            NO_LIMIT,
            Cut::Take(1),
        ),
        (
            "DDL goes alone",
            vec![meta(1, 2, MetaKind::Barrier, 0), dml(3, 1)],
            true,
            NO_LIMIT,
            Cut::Take(1),
        ),
        (
            "skips go together, never with DML",
            vec![meta(9, 2, MetaKind::Skip, 1), meta(8, 2, MetaKind::Skip, 1), dml(3, 1)],
            false,
            NO_LIMIT,
            Cut::Take(2),
        ),
        (
            "a skip before DDL",
            vec![meta(9, 2, MetaKind::Skip, 1), meta(1, 2, MetaKind::Barrier, 0)],
            false,
            NO_LIMIT,
            Cut::Take(1),
        ),
        ("nothing", vec![], true, NO_LIMIT, Cut::NeedMore),
    ];
    for (name, events, at_end, limits, want) in cases {
        assert_eq!(cut(&events, at_end, &limits), want, "{name}");
    }
}

#[test]
fn a_key_in_two_partitions_keeps_a_row_in_each() {
    // Seen on Milvus 2.3.5: an insert of a key present in p1 into p2 leaves two rows; an
    // upsert into p2 writes a Delete naming p2 only, so p1's row stays; a delete without a
    // partition removes both.
    let c = plan(
        &[
            ev(td::insert(1, "p1", 10, &[1], 1.0)),
            ev(td::insert(1, "p2", 11, &[1], 2.0)),
            ev(td::insert(1, "p2", 12, &[1], 3.0)),
            ev(td::delete(1, "p2", 12, &[1])),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("p1".into(), 1, 1.0), ("p2".into(), 1, 3.0)]);
    assert!(c.deletes.is_empty(), "{:?}", c.deletes);
    let c = plan(
        &[
            ev(td::insert(1, "p1", 10, &[1], 1.0)),
            ev(td::insert(1, "p2", 11, &[1], 2.0)),
            ev(td::delete(1, "", 12, &[1])),
            ev(td::insert(1, "p1", 13, &[1], 4.0)),
        ],
        false,
    );
    assert_eq!(upserted(&c), vec![("p1".into(), 1, 4.0)]);
    assert_eq!(deleted(&c), vec![("".into(), ints(&[1]))], "p2's row goes, before p1's is written");
}

const PARTS: [&str; 2] = ["p0", "p1"];

/// One source request: its ts is its index + 1; ops share it (an upsert is two ops). The
/// partition is an index into [`PARTS`]; `all`: the delete names no partition.
#[derive(Debug, Clone)]
enum Req {
    Insert(Vec<i64>, usize),
    Delete(Vec<i64>, usize, bool),
    Upsert(Vec<i64>, usize, bool),
}

fn req() -> impl Strategy<Value = Req> {
    let keys = proptest::collection::btree_set(0i64..6, 1..4)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    prop_oneof![
        (keys.clone(), 0..PARTS.len()).prop_map(|(k, p)| Req::Insert(k, p)),
        (keys.clone(), 0..PARTS.len(), any::<bool>()).prop_map(|(k, p, all)| Req::Delete(k, p, all)),
        (keys, 0..PARTS.len(), any::<bool>()).prop_map(|(k, p, all)| Req::Upsert(k, p, all)),
    ]
}

/// The log Milvus writes for `reqs`, each insert's version = its ts.
fn wal_of(reqs: &[Req]) -> Vec<WalEvent> {
    let mut out = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let ts = i as u64 + 1;
        let scope = |p: usize, all: bool| if all { "" } else { PARTS[p] };
        match r {
            Req::Insert(k, p) => out.push(ev(td::insert(1, PARTS[*p], ts, k, ts as f32))),
            Req::Delete(k, p, all) => out.push(ev(td::delete(1, scope(*p, *all), ts, k))),
            Req::Upsert(k, p, all) => {
                out.push(ev(td::insert(1, PARTS[*p], ts, k, ts as f32)));
                out.push(ev(td::delete(1, scope(*p, *all), ts, k)));
            }
        }
    }
    out
}

/// Rows by (partition, key).
type State = BTreeMap<(String, i64), f32>;

fn initial_state() -> impl Strategy<Value = State> {
    proptest::collection::btree_map((0..PARTS.len(), 0i64..6).prop_map(|(p, k)| (PARTS[p].to_string(), k)), Just(0.5f32), 0..8)
}

/// What a Milvus query returns after `events` on a collection holding `initial` (ts 0):
/// a version survives unless a delete with a greater ts names its key in its partition (or
/// in every partition); per partition, the newest survivor wins.
fn source_state(initial: &State, events: &[WalEvent]) -> State {
    let mut versions: Vec<(String, i64, u64, f32)> = initial.iter().map(|((p, k), v)| (p.clone(), *k, 0, *v)).collect();
    let mut deletes: Vec<(String, i64, u64)> = Vec::new();
    for e in events {
        match e {
            WalEvent::Insert(i) => {
                let Some(PrimaryKeys::Int(pks)) = i.rows.primary_keys("id") else {
                    panic!()
                };
                for k in pks {
                    versions.push((i.partition_name.clone(), k, i.ts, i.ts as f32));
                }
            }
            WalEvent::Delete(d) => {
                let PrimaryKeys::Int(pks) = &d.pks else {
                    panic!()
                };
                deletes.extend(pks.iter().map(|k| (d.partition_name.clone(), *k, d.ts)));
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (p, k, ts, v) in versions {
        if deletes.iter().any(|(dp, dk, dts)| *dk == k && *dts > ts && (dp.is_empty() || *dp == p)) {
            continue;
        }
        out.insert((p, k), v); // versions are in ts order: the newest survivor wins
    }
    out
}

/// Applies a batch as the target Milvus does: deletes first (an empty partition: every
/// partition), then upserts (each replaces the key in its own partition only).
fn apply_to(target: &mut State, c: &Coalesced) {
    for (p, keys) in &c.deletes {
        let PrimaryKeys::Int(ks) = keys else { panic!() };
        target.retain(|(tp, tk), _| !(ks.contains(tk) && (p.is_empty() || p == tp)));
    }
    for (p, pk, v) in upserted(c) {
        target.insert((p, pk), v);
    }
}

fn metas_of(events: &[WalEvent]) -> Vec<EventMeta> {
    events
        .iter()
        .map(|e| {
            let rows = match e {
                WalEvent::Insert(i) => i.rows.len(),
                WalEvent::Delete(d) => d.pks.len(),
                _ => 0,
            };
            meta(1, e.ts(), MetaKind::Dml, rows)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Replaying the WAL in batches chosen by `cut`, with crashes that lose cursor advances
    /// (the replay restarts from an older cursor, with other batch limits, so it cuts the
    /// log differently), leaves the target equal to the source, partition by partition.
    #[test]
    fn batched_replay_with_crashes_matches_the_source(
        initial in initial_state(),
        reqs in proptest::collection::vec(req(), 1..25),
        limits in proptest::collection::vec((1usize..6, 1usize..8), 1..4),
        crash_mask in any::<u64>(),
        rewinds in proptest::collection::vec(0usize..4, 4),
    ) {
        let events = wal_of(&reqs);
        let metas = metas_of(&events);
        let mut target = initial.clone();
        // Cursor positions the log held after each batch; a crash goes back to one of them.
        let mut cursors = vec![0usize];
        let (mut pos, mut batch_no, mut crashes, mut run) = (0, 0u32, 0usize, 0usize);
        let (mut max_rows, mut read_ahead) = limits[0];
        let mut window = read_ahead;
        while pos < events.len() {
            let end = (pos + window).min(events.len());
            let n = match cut(&metas[pos..end], end == events.len(), &BatchLimits { max_bytes: usize::MAX, max_rows }) {
                Cut::Take(n) => n,
                Cut::NeedMore => {
                    window *= 2;
                    continue;
                }
            };
            window = read_ahead;
            prop_assert!(n >= 1 && pos + n <= end);
            if pos + n < events.len() {
                prop_assert_ne!(events[pos + n - 1].ts(), events[pos + n].ts(), "cut inside a ts group");
            }
            let refs: Vec<&WalEvent> = events[pos..pos + n].iter().collect();
            apply_to(&mut target, &coalesce(&refs, "t", "id", false).unwrap());
            pos += n;
            if crash_mask >> (batch_no % 64) & 1 == 1 && crashes < rewinds.len() {
                // The batch is on the target; the last `rewinds[crashes]` cursor advances
                // were lost. The restarted applier runs with the next limits.
                let back = rewinds[crashes].min(cursors.len() - 1);
                pos = cursors[cursors.len() - 1 - back];
                cursors.truncate(cursors.len() - back);
                crashes += 1;
                run += 1;
                (max_rows, read_ahead) = limits[run % limits.len()];
                window = read_ahead;
            } else {
                cursors.push(pos);
            }
            batch_no += 1;
        }
        prop_assert_eq!(target, source_state(&initial, &events));
    }

    /// Coalescing does not depend on arrival order within a batch (only on timestamps,
    /// and log order among equal timestamps).
    #[test]
    fn coalescing_follows_timestamps_not_arrival(
        initial in initial_state(),
        reqs in proptest::collection::vec(req(), 1..12),
        seed in any::<u64>(),
    ) {
        let events = wal_of(&reqs);
        // Shuffle whole requests (an upsert's pair stays in order), as concurrent proxies
        // would interleave them between two ticks.
        let mut groups: Vec<Vec<&WalEvent>> = Vec::new();
        for e in &events {
            match groups.last_mut() {
                Some(g) if g[0].ts() == e.ts() => g.push(e),
                _ => groups.push(vec![e]),
            }
        }
        let mut s = seed;
        for i in (1..groups.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            groups.swap(i, (s >> 33) as usize % (i + 1));
        }
        let shuffled: Vec<&WalEvent> = groups.into_iter().flatten().collect();
        let mut target = initial.clone();
        apply_to(&mut target, &coalesce(&shuffled, "t", "id", false).unwrap());
        prop_assert_eq!(target, source_state(&initial, &events));
    }
}
