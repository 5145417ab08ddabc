//! Delta logs: a segment's deletes.
//!
//! A delta log is a binlog whose events are Delete events (type 2) with a String payload;
//! each value is one delete. Milvus 2.3 (`internal/storage/data_codec.go`, `DeleteLog`)
//! writes JSON `{"pk":<int or string>,"ts":<u64>,"pkType":5|21}` (5 = Int64, 21 = VarChar);
//! older versions wrote `"<pk>,<ts>"` with an Int64 key. Like Milvus, the reader tries JSON
//! first and falls back to the legacy form.
//!
//! A delete with timestamp `t` removes every row with the same key whose insert timestamp is
//! strictly below `t`: an upsert writes its insert and its delete with one timestamp, and the
//! new row must survive ([`surviving_rows`]).

use std::collections::HashMap;

use bytes::Bytes;

use super::{parse, payload::Column, same_type, type_name, BinlogError, ReadLimits, DELETE_EVENT};
use crate::milvus::{PkValue, PrimaryKeys};
use crate::proto::schema::{field_data::Field, scalar_field::Data, DataType, FieldSchema};

/// Deletes in columnar form: key `pks[i]` deleted at timestamp `ts[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletes {
    pub pks: PrimaryKeys,
    pub ts: Vec<u64>,
}

impl Default for Deletes {
    fn default() -> Self {
        Deletes {
            pks: PrimaryKeys::Int(Vec::new()),
            ts: Vec::new(),
        }
    }
}

impl Deletes {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Bytes these deletes hold in memory (keys and timestamps).
    pub fn heap_bytes(&self) -> u64 {
        let keys: usize = match &self.pks {
            PrimaryKeys::Int(v) => v.len() * 8,
            PrimaryKeys::Str(v) => v.iter().map(|k| k.len() + std::mem::size_of::<String>()).sum(),
        };
        (keys + self.ts.len() * 8) as u64
    }

    /// Appends one delete; `false` when the key's kind differs from the keys already held.
    pub fn push(&mut self, pk: PkValue, ts: u64) -> bool {
        if self.is_empty() {
            self.pks = match pk {
                PkValue::Int(_) => PrimaryKeys::Int(Vec::new()),
                PkValue::Str(_) => PrimaryKeys::Str(Vec::new()),
            };
        }
        match (&mut self.pks, pk) {
            (PrimaryKeys::Int(v), PkValue::Int(k)) => v.push(k),
            (PrimaryKeys::Str(v), PkValue::Str(k)) => v.push(k),
            _ => return false,
        }
        self.ts.push(ts);
        true
    }

    /// Keeps only the deletes made at or before `ts`.
    pub fn retain_up_to(&mut self, ts: u64) {
        if self.ts.iter().all(|&t| t <= ts) {
            return;
        }
        // Keys and timestamps are aligned: walk the timestamps beside the keys.
        let mut kept = self.ts.iter().map(|&t| t <= ts);
        match &mut self.pks {
            PrimaryKeys::Int(v) => v.retain(|_| kept.next() == Some(true)),
            PrimaryKeys::Str(v) => v.retain(|_| kept.next() == Some(true)),
        }
        self.ts.retain(|&t| t <= ts);
    }

    /// Appends `other`; `false` (and nothing appended) when the key kinds differ.
    pub fn extend(&mut self, other: &Deletes) -> bool {
        if other.is_empty() {
            return true;
        }
        if self.is_empty() {
            *self = other.clone();
            return true;
        }
        if !self.pks.extend(&other.pks) {
            return false;
        }
        self.ts.extend_from_slice(&other.ts);
        true
    }
}

/// The pseudo-field delete records are read as.
fn delete_field() -> FieldSchema {
    FieldSchema {
        name: "delete records".into(),
        data_type: DataType::String as i32,
        ..Default::default()
    }
}

/// Parses a delta log and checks its descriptor and event types.
fn open_delta_log(label: &str, data: Bytes) -> Result<super::Binlog, BinlogError> {
    let log = parse(label, data)?;
    super::require_events(&log)?;
    let string_field = delete_field();
    if !same_type(log.descriptor.payload_type, string_field.data_type) {
        return Err(BinlogError::TypeMismatch {
            file: label.to_string(),
            offset: 4 + super::HEADER_LEN + 48,
            field: string_field.name,
            field_id: log.descriptor.field_id,
            got: type_name(log.descriptor.payload_type),
            want: "String".into(),
        });
    }
    for ev in &log.events {
        if ev.type_code != DELETE_EVENT {
            return Err(BinlogError::BadEvent {
                file: label.to_string(),
                offset: ev.offset,
                what: format!("event type {} in a delta log", ev.type_code),
            });
        }
    }
    Ok(log)
}

/// Bytes reading the delta log `data` may take (see [`super::DecodeBudget`]).
pub fn delta_log_reservation(
    label: &str,
    data: Bytes,
    limits: &ReadLimits,
) -> Result<u64, BinlogError> {
    super::reservation_of(&open_delta_log(label, data)?, &delete_field(), limits)
}

/// Reads a delta log. `label` names the file in errors.
pub fn read_delta_log(
    label: &str,
    data: Bytes,
    limits: &ReadLimits,
) -> Result<Deletes, BinlogError> {
    let log = open_delta_log(label, data)?;
    let string_field = delete_field();
    let limits = &ReadLimits {
        max_decoded_bytes: super::reservation_of(&log, &string_field, limits)?,
    };
    let mut out = Deletes::default();
    let mut budget = limits.max_decoded_bytes;
    for ev in &log.events {
        let mut column = Column::new(label, &string_field)?;
        column.decode(label, ev, &mut budget)?;
        let records = match column.finish().field {
            Some(Field::Scalars(s)) => match s.data {
                Some(Data::StringData(a)) => a.data,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for (row, record) in records.iter().enumerate() {
            let bad = |what: String| BinlogError::BadDelete {
                file: label.to_string(),
                offset: ev.payload_offset,
                row,
                what,
            };
            let (pk, ts) = parse_record(record).map_err(bad)?;
            if !out.push(pk, ts) {
                return Err(bad(
                    "key type differs from earlier records in the file".into()
                ));
            }
        }
    }
    Ok(out)
}

/// One delete record, JSON or legacy `pk,ts`.
fn parse_record(record: &str) -> Result<(PkValue, u64), String> {
    use serde_json::Value;
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(record) else {
        return parse_legacy(record);
    };
    let ts = m.get("ts").and_then(Value::as_u64).ok_or_else(|| {
        format!(
            "\"ts\" is missing or not an unsigned integer in {}",
            clip(record)
        )
    })?;
    let pk_type = match m.get("pkType") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| format!("\"pkType\" is not an integer in {}", clip(record)))?,
        ),
    };
    let int64 = DataType::Int64 as i64;
    let varchar = DataType::VarChar as i64;
    let pk = match (pk_type, m.get("pk")) {
        (Some(t), _) if t != int64 && t != varchar => {
            return Err(format!(
                "unsupported pkType {t} (want 5 Int64 or 21 VarChar)"
            ))
        }
        (Some(t), Some(Value::Number(n))) if t == int64 => n.as_i64().map(PkValue::Int),
        (None, Some(Value::Number(n))) => n.as_i64().map(PkValue::Int),
        (Some(t), Some(Value::String(s))) if t == varchar => Some(PkValue::Str(s.clone())),
        (None, Some(Value::String(s))) => Some(PkValue::Str(s.clone())),
        _ => None,
    };
    let pk = pk.ok_or_else(|| {
        format!(
            "\"pk\" is missing or does not match pkType in {}",
            clip(record)
        )
    })?;
    Ok((pk, ts))
}

fn parse_legacy(record: &str) -> Result<(PkValue, u64), String> {
    let fail = || {
        format!(
            "neither JSON {{\"pk\",\"ts\",\"pkType\"}} nor legacy \"<pk>,<ts>\": {}",
            clip(record)
        )
    };
    let (pk, ts) = record.split_once(',').ok_or_else(fail)?;
    let pk = pk.trim().parse::<i64>().map_err(|_| fail())?;
    let ts = ts.trim().parse::<u64>().map_err(|_| fail())?;
    Ok((PkValue::Int(pk), ts))
}

/// At most 80 characters of a record, for messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Indices of the rows that survive `deletes`: row `i` (key `pks[i]`, inserted at
/// `row_ts[i]`) is gone when some delete of the same key has a larger timestamp. Keys of a
/// different kind than the rows' never match.
pub fn surviving_rows(pks: &PrimaryKeys, row_ts: &[u64], deletes: &Deletes) -> Vec<usize> {
    fn keep<K: std::hash::Hash + Eq>(
        keys: &[K],
        row_ts: &[u64],
        del: impl Iterator<Item = (K, u64)>,
    ) -> Vec<usize> {
        let mut latest: HashMap<K, u64> = HashMap::new();
        for (k, t) in del {
            let e = latest.entry(k).or_insert(t);
            *e = (*e).max(t);
        }
        (0..keys.len())
            .filter(|&i| match latest.get(&keys[i]) {
                Some(&dt) => row_ts.get(i).is_some_and(|&rt| rt >= dt),
                None => true,
            })
            .collect()
    }
    match (pks, &deletes.pks) {
        (PrimaryKeys::Int(k), PrimaryKeys::Int(d)) => {
            keep(k, row_ts, d.iter().copied().zip(deletes.ts.iter().copied()))
        }
        (PrimaryKeys::Str(k), PrimaryKeys::Str(d)) => {
            keep(k, row_ts, d.iter().cloned().zip(deletes.ts.iter().copied()))
        }
        _ => (0..pks.len()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_in_both_forms() {
        assert_eq!(
            parse_record(r#"{"pk":42,"ts":449911858745360385,"pkType":5}"#).unwrap(),
            (PkValue::Int(42), 449911858745360385)
        );
        assert_eq!(
            parse_record(r#"{"pk":"a,b","ts":7,"pkType":21}"#).unwrap(),
            (PkValue::Str("a,b".into()), 7)
        );
        assert_eq!(
            parse_record("-5,18446744073709551615").unwrap(),
            (PkValue::Int(-5), u64::MAX)
        );
        assert!(parse_record(r#"{"pk":"x","ts":7,"pkType":5}"#).is_err());
        assert!(parse_record(r#"{"pk":1,"ts":7,"pkType":3}"#)
            .unwrap_err()
            .contains("pkType 3"));
        assert!(parse_record("1,2,3").is_err());
        assert!(parse_record("").is_err());
        assert!(parse_record(r#"{"pk":1}"#).unwrap_err().contains("ts"));
    }

    #[test]
    fn a_delete_removes_only_older_rows_of_its_key() {
        let pks = PrimaryKeys::Int(vec![1, 2, 1, 3]);
        let row_ts = [10, 10, 20, 10];
        let mut d = Deletes::default();
        assert!(d.push(PkValue::Int(1), 20)); // same ts as the upserted row: it survives
        assert!(d.push(PkValue::Int(3), 11));
        assert!(d.push(PkValue::Int(3), 5));
        assert!(!d.push(PkValue::Str("x".into()), 5));
        assert_eq!(surviving_rows(&pks, &row_ts, &d), vec![1, 2]);
        let strs = PrimaryKeys::Str(vec!["a".into()]);
        assert_eq!(surviving_rows(&strs, &[1], &d), vec![0]);
    }
}
