//! The merge-join at the heart of full verification, as a pure function.
//!
//! Both sides arrive as runs of `(key, digest)` in ascending key order, one page at a time.
//! [`merge_step`] compares the two runs as far as both are known and says how much of each it
//! consumed; the caller refills whichever run is empty and calls it again. A key is only
//! called missing (or extra) once the other side has moved past it or has ended, so the
//! result does not depend on where pages happen to break.

/// One comparison outcome. Indices point into the runs given to [`merge_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diff {
    /// Same key, same digest.
    Same { source: usize, target: usize },
    /// Same key, different digest.
    Different { source: usize, target: usize },
    /// The key is on the source only.
    Missing { source: usize },
    /// The key is on the target only.
    Extra { target: usize },
}

/// Compares two key-ordered runs. `*_done`: that side has no rows after this run.
///
/// Returns how many entries of `source` and `target` were consumed; the unconsumed tails
/// must be passed again (with more rows appended, or with `done` set). When both runs are
/// non-empty, or one is empty and its side done, at least one entry is consumed.
pub fn merge_step<K: Ord>(
    source: &[(K, u64)],
    source_done: bool,
    target: &[(K, u64)],
    target_done: bool,
    mut on: impl FnMut(Diff),
) -> (usize, usize) {
    let (mut i, mut j) = (0, 0);
    while i < source.len() && j < target.len() {
        let (a, b) = (&source[i], &target[j]);
        match a.0.cmp(&b.0) {
            std::cmp::Ordering::Less => {
                on(Diff::Missing { source: i });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                on(Diff::Extra { target: j });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                on(if a.1 == b.1 {
                    Diff::Same {
                        source: i,
                        target: j,
                    }
                } else {
                    Diff::Different {
                        source: i,
                        target: j,
                    }
                });
                i += 1;
                j += 1;
            }
        }
    }
    // One run is used up. The other's rest is decided only if the used-up side has ended.
    if j == target.len() && target_done {
        while i < source.len() {
            on(Diff::Missing { source: i });
            i += 1;
        }
    }
    if i == source.len() && source_done {
        while j < target.len() {
            on(Diff::Extra { target: j });
            j += 1;
        }
    }
    (i, j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What the comparison found, by key.
    #[derive(Debug, Default, PartialEq)]
    struct Found {
        same: Vec<i64>,
        different: Vec<i64>,
        missing: Vec<i64>,
        extra: Vec<i64>,
    }

    /// Feeds both sides to `merge_step` in chunks of the given sizes (as pages would arrive),
    /// refilling a run only when it is used up, like the scanner does.
    fn drive(
        source: &[(i64, u64)],
        target: &[(i64, u64)],
        chunk_s: usize,
        chunk_t: usize,
    ) -> Found {
        let mut found = Found::default();
        let mut sbuf: Vec<(i64, u64)> = vec![];
        let mut tbuf: Vec<(i64, u64)> = vec![];
        let (mut s_next, mut t_next) = (0, 0);
        let mut rounds = 0;
        loop {
            if sbuf.is_empty() && s_next < source.len() {
                let end = (s_next + chunk_s).min(source.len());
                sbuf.extend_from_slice(&source[s_next..end]);
                s_next = end;
            }
            if tbuf.is_empty() && t_next < target.len() {
                let end = (t_next + chunk_t).min(target.len());
                tbuf.extend_from_slice(&target[t_next..end]);
                t_next = end;
            }
            let (s_done, t_done) = (s_next == source.len(), t_next == target.len());
            if sbuf.is_empty() && tbuf.is_empty() && s_done && t_done {
                return found;
            }
            let (i, j) = merge_step(&sbuf, s_done, &tbuf, t_done, |d| match d {
                Diff::Same { source, .. } => found.same.push(sbuf[source].0),
                Diff::Different { source, target } => {
                    assert_eq!(sbuf[source].0, tbuf[target].0);
                    found.different.push(sbuf[source].0)
                }
                Diff::Missing { source } => found.missing.push(sbuf[source].0),
                Diff::Extra { target } => found.extra.push(tbuf[target].0),
            });
            assert!(i + j > 0, "no progress");
            sbuf.drain(..i);
            tbuf.drain(..j);
            rounds += 1;
            assert!(rounds < 10_000);
        }
    }

    /// The same comparison with maps: the oracle.
    fn oracle(source: &[(i64, u64)], target: &[(i64, u64)]) -> Found {
        let s: BTreeMap<i64, u64> = source.iter().copied().collect();
        let t: BTreeMap<i64, u64> = target.iter().copied().collect();
        let mut f = Found::default();
        for (k, h) in &s {
            match t.get(k) {
                None => f.missing.push(*k),
                Some(x) if x == h => f.same.push(*k),
                Some(_) => f.different.push(*k),
            }
        }
        f.extra = t.keys().filter(|k| !s.contains_key(k)).copied().collect();
        f
    }

    fn run(source: &[(i64, u64)], target: &[(i64, u64)]) -> Found {
        let want = oracle(source, target);
        for cs in 1..=4 {
            for ct in 1..=4 {
                assert_eq!(drive(source, target, cs, ct), want, "chunks {cs}/{ct}");
            }
        }
        want
    }

    #[test]
    fn empty_sides() {
        assert_eq!(run(&[], &[]), Found::default());
        let f = run(&[], &[(1, 0), (2, 0)]);
        assert_eq!(f.extra, vec![1, 2]);
        assert!(f.same.is_empty() && f.missing.is_empty());
        let f = run(&[(1, 0), (2, 0)], &[]);
        assert_eq!(f.missing, vec![1, 2]);
        assert!(f.extra.is_empty());
    }

    #[test]
    fn all_extra_and_all_missing_disjoint_ranges() {
        let low: Vec<(i64, u64)> = (0..5).map(|k| (k, 7)).collect();
        let high: Vec<(i64, u64)> = (10..15).map(|k| (k, 7)).collect();
        let f = run(&low, &high);
        assert_eq!(f.missing, vec![0, 1, 2, 3, 4]);
        assert_eq!(f.extra, vec![10, 11, 12, 13, 14]);
        let f = run(&high, &low);
        assert_eq!(f.missing, vec![10, 11, 12, 13, 14]);
        assert_eq!(f.extra, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn interleaved_keys_and_changed_digests() {
        let s = [(1, 1), (3, 3), (5, 5), (7, 7), (9, 9)];
        let t = [(0, 0), (3, 3), (4, 4), (5, 50), (9, 9), (11, 11)];
        let f = run(&s, &t);
        assert_eq!(f.same, vec![3, 9]);
        assert_eq!(f.different, vec![5]);
        assert_eq!(f.missing, vec![1, 7]);
        assert_eq!(f.extra, vec![0, 4, 11]);
    }

    #[test]
    fn an_undecided_tail_waits_for_more_rows() {
        // The target run ends at 3 but the target has more pages: 5 may still come.
        let mut seen = vec![];
        let (i, j) = merge_step(&[(1, 0), (5, 0)], true, &[(1, 0), (3, 0)], false, |d| {
            seen.push(d)
        });
        assert_eq!((i, j), (1, 2));
        assert_eq!(
            seen,
            vec![
                Diff::Same {
                    source: 0,
                    target: 0
                },
                Diff::Extra { target: 1 }
            ]
        );
    }

    proptest! {
        #[test]
        fn any_pages_give_the_oracle_result(
            s in proptest::collection::btree_map(-50i64..50, 0u64..3, 0..40),
            t in proptest::collection::btree_map(-50i64..50, 0u64..3, 0..40),
            cs in 1usize..7,
            ct in 1usize..7,
        ) {
            let s: Vec<(i64, u64)> = s.into_iter().collect();
            let t: Vec<(i64, u64)> = t.into_iter().collect();
            prop_assert_eq!(drive(&s, &t, cs, ct), oracle(&s, &t));
        }
    }
}
