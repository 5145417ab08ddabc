//! Pure batch planning: where a batch may end ([`cut`]) and what it writes ([`coalesce`]).
//! No I/O here, so every rule is table- and property-tested.
//!
//! Milvus semantics the rules follow (see MILVUS_NOTES "ordering trap"): every write
//! carries a hybrid timestamp; a delete at `D` removes versions of its keys with `ts < D`;
//! an upsert is an Insert at `T` followed by a Delete at `T` of the same keys, so the new
//! version survives its own delete. Replaying in log order with plain calls would delete
//! what the upsert wrote; coalescing by timestamp does not.

use std::collections::BTreeMap;

use super::ApplyError;
use crate::milvus::{PkValue, PrimaryKeys, Rows};
use crate::wal::WalEvent;

/// Bounds of one batch. A batch may exceed them only to keep equal timestamps together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
}

/// What the cut needs to know of a log entry (read from its header, without decoding rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    pub collection_id: i64,
    pub ts: u64,
    pub kind: MetaKind,
    pub bytes: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// Insert or delete of a routed collection: batched.
    Dml,
    /// DDL of a routed collection: applied alone, in order.
    Barrier,
    /// Nothing to apply (unrouted collection, ignored type): passed over alone.
    Skip,
}

/// Where the next batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Apply the first `n` entries (n >= 1).
    Take(usize),
    /// No safe end inside the entries read: read more and ask again.
    NeedMore,
}

/// Picks the longest prefix of `events` that is one batch: entries of one collection's
/// DML, within `limits`, and ending at a timestamp boundary. `at_end` says the slice ends
/// where the log ends (the end of a sealed window, so a valid boundary).
///
/// Why the boundary rule: if a batch ended between an upsert's Insert(T) and Delete(T) and
/// ferry crashed after applying it, the replay would start at the lone Delete(T) and remove
/// the row the upsert wrote.
pub fn cut(events: &[EventMeta], at_end: bool, limits: &BatchLimits) -> Cut {
    let Some(first) = events.first() else {
        return Cut::NeedMore;
    };
    if first.kind == MetaKind::Skip {
        // Records of collections the job does not move (a job over a whole database keeps
        // every record of its channels): passed over together, one cursor move.
        let n = events.iter().take_while(|e| e.kind == MetaKind::Skip).count();
        return Cut::Take(n);
    }
    if first.kind != MetaKind::Dml {
        return Cut::Take(1);
    }
    let same_group =
        |e: &EventMeta| e.kind == MetaKind::Dml && e.collection_id == first.collection_id;
    let group_end = events
        .iter()
        .position(|e| !same_group(e))
        .unwrap_or(events.len());
    // A boundary b (entries [0, b)) is valid if it ends the group or splits different ts.
    let valid = |b: usize| {
        if b == events.len() {
            at_end
        } else {
            b == group_end || events[b - 1].ts != events[b].ts
        }
    };
    let (mut bytes, mut rows) = (0usize, 0usize);
    let mut limit_end = group_end;
    for (i, e) in events[..group_end].iter().enumerate() {
        bytes = bytes.saturating_add(e.bytes);
        rows = rows.saturating_add(e.rows);
        if i > 0 && (bytes > limits.max_bytes || rows > limits.max_rows) {
            limit_end = i;
            break;
        }
    }
    if let Some(b) = (1..=limit_end).rev().find(|&b| valid(b)) {
        return Cut::Take(b);
    }
    // The first timestamp group alone is over the limits: take it whole.
    match (limit_end + 1..=group_end).find(|&b| valid(b)) {
        Some(b) => Cut::Take(b),
        None => Cut::NeedMore,
    }
}

/// The writes one batch makes on the target. Run every delete before any upsert: a key can
/// be in both (a delete of other partitions, or of all, before the upsert) and that order
/// is the one that matches the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coalesced {
    /// (partition, keys); an empty partition means every partition.
    pub deletes: Vec<(String, PrimaryKeys)>,
    /// (partition, rows); empty partition for partition-key collections.
    pub upserts: Vec<(String, Rows)>,
}

impl Coalesced {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.upserts.is_empty()
    }
}

/// None: every partition.
type Scope = Option<String>;

fn covers(delete: &Scope, partition: &Scope) -> bool {
    delete.is_none() || delete == partition
}

/// The surviving version of a key: which row of which insert.
#[derive(Debug, Clone)]
struct Version {
    ts: u64,
    event: usize,
    row: usize,
    partition: Scope,
}

/// What a batch leaves of one key. Milvus lets a key live in several partitions at once (an
/// insert does not look for the key elsewhere, and an upsert's Delete names only its own
/// partition), so the surviving versions are kept per partition: the target then holds the
/// key in the same partitions as the source.
#[derive(Debug, Default)]
struct KeyState {
    /// The surviving version per partition scope (at most one each).
    upserts: Vec<Version>,
    /// Deletes still needed on the target, newest ts per scope.
    deletes: Vec<(Scope, u64)>,
}

impl KeyState {
    fn insert(&mut self, v: Version) {
        // A newer delete covering this partition already removed this version.
        if self
            .deletes
            .iter()
            .any(|(s, d)| *d > v.ts && covers(s, &v.partition))
        {
            return;
        }
        let same = self.upserts.iter().position(|u| u.partition == v.partition);
        if same.is_some_and(|i| self.upserts[i].ts > v.ts) {
            return;
        }
        // An upsert replaces the key in its own partition: an older delete there is moot.
        self.deletes
            .retain(|(s, d)| !(*d <= v.ts && *s == v.partition));
        match same {
            Some(i) => self.upserts[i] = v,
            None => self.upserts.push(v),
        }
    }

    fn delete(&mut self, scope: Scope, ts: u64) {
        let mut replaced = false;
        self.upserts.retain(|u| {
            if u.ts < ts && covers(&scope, &u.partition) {
                return false;
            }
            // The trap: an upsert's own delete (same ts) or an older one in the same
            // partition; the upsert replaces that row on the target anyway.
            replaced |= u.ts >= ts && scope == u.partition;
            true
        });
        if replaced {
            return;
        }
        match self.deletes.iter_mut().find(|(s, _)| *s == scope) {
            Some(e) => e.1 = e.1.max(ts),
            None => self.deletes.push((scope, ts)),
        }
    }
}

fn keys_of(collection: &str, vals: Vec<PkValue>) -> Result<PrimaryKeys, ApplyError> {
    let mixed = || ApplyError::MixedKeyTypes {
        collection: collection.to_string(),
    };
    match vals.first() {
        Some(PkValue::Str(_)) => vals
            .into_iter()
            .map(|v| match v {
                PkValue::Str(s) => Ok(s),
                PkValue::Int(_) => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(PrimaryKeys::Str),
        _ => vals
            .into_iter()
            .map(|v| match v {
                PkValue::Int(i) => Ok(i),
                PkValue::Str(_) => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(PrimaryKeys::Int),
    }
}

/// Reduces one batch of a collection's inserts and deletes to the final writes: per
/// primary key and partition, the newest version by timestamp wins (ties: later in the
/// log; a key in two partitions keeps a version in each), and a delete
/// at `D` cancels only versions with `ts < D` (so an upsert's own delete cancels nothing).
/// `collection` names the target in errors; `partition_key` collections ignore partition
/// names (Milvus routes by key). Events other than inserts and deletes are ignored.
pub fn coalesce(
    events: &[&WalEvent],
    collection: &str,
    pk_field: &str,
    partition_key: bool,
) -> Result<Coalesced, ApplyError> {
    let scope_of =
        |name: &str| -> Scope { (!partition_key && !name.is_empty()).then(|| name.to_string()) };
    let mut keys: BTreeMap<PkValue, KeyState> = BTreeMap::new();
    for (event, ev) in events.iter().enumerate() {
        match ev {
            WalEvent::Insert(ins) => {
                let pks = ins.rows.primary_keys(pk_field).ok_or_else(|| {
                    ApplyError::MissingPrimaryKey {
                        collection: collection.to_string(),
                        field: pk_field.to_string(),
                    }
                })?;
                let partition = scope_of(&ins.partition_name);
                for row in 0..pks.len() {
                    if let Some(pk) = pks.get(row) {
                        keys.entry(pk).or_default().insert(Version {
                            ts: ins.ts,
                            event,
                            row,
                            partition: partition.clone(),
                        });
                    }
                }
            }
            WalEvent::Delete(del) => {
                let scope = scope_of(&del.partition_name);
                for i in 0..del.pks.len() {
                    if let Some(pk) = del.pks.get(i) {
                        keys.entry(pk).or_default().delete(scope.clone(), del.ts);
                    }
                }
            }
            _ => {}
        }
    }

    let mut deletes: BTreeMap<String, Vec<PkValue>> = BTreeMap::new();
    let mut upserts: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (pk, st) in keys {
        for (scope, _) in st.deletes {
            deletes
                .entry(scope.unwrap_or_default())
                .or_default()
                .push(pk.clone());
        }
        for v in st.upserts {
            upserts
                .entry(v.partition.unwrap_or_default())
                .or_default()
                .push((v.event, v.row));
        }
    }

    let mut out = Coalesced::default();
    for (partition, vals) in deletes {
        out.deletes.push((partition, keys_of(collection, vals)?));
    }
    for (partition, mut refs) in upserts {
        // Source order keeps batches deterministic and close to how they were written.
        refs.sort_unstable();
        let mut rows = Rows::default();
        for chunk in refs.chunk_by(|a, b| a.0 == b.0) {
            let WalEvent::Insert(ins) = events[chunk[0].0] else {
                continue;
            };
            let idx: Vec<usize> = chunk.iter().map(|&(_, r)| r).collect();
            rows.append(&ins.rows.select(&idx))
                .map_err(|source| ApplyError::Columns {
                    collection: collection.to_string(),
                    source,
                })?;
        }
        out.upserts.push((partition, rows));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
