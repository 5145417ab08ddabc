//! The verification report: what `ferry verify --json` prints and what the library returns.
//! Field names are a stable interface (README "Verifying a migration"); add fields, do not
//! rename them.

use std::fmt::Write;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::milvus::PkValue;

/// How deep a comparison goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Row counts per collection and per partition.
    Counts,
    /// Counts, plus every primary key and a digest of every row, on both sides.
    Full,
}

/// The whole verification: one pass, or two with repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub mode: VerifyMode,
    /// The verdict: the last pass found the target equal to the source.
    pub equal: bool,
    /// Keys listed per category (all are counted).
    pub sample: usize,
    pub seconds: f64,
    /// The first comparison, then (after a repair) the second.
    pub passes: Vec<PassReport>,
    /// What the repair wrote; `null` when no repair ran.
    pub repair: Option<RepairReport>,
}

impl VerifyReport {
    /// The pass the verdict comes from.
    pub fn last(&self) -> Option<&PassReport> {
        self.passes.last()
    }
}

/// One comparison of every planned collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    pub equal: bool,
    /// Hybrid timestamps both sides were read at (at least).
    pub source_ts: u64,
    pub target_ts: u64,
    pub seconds: f64,
    pub collections: Vec<CollectionReport>,
}

/// One collection compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionReport {
    pub source: String,
    pub target: String,
    pub equal: bool,
    /// False when the target collection does not exist (nothing else is compared).
    pub target_exists: bool,
    /// `count(*)` on each side (of a share: its keys, from the key-by-key comparison).
    pub source_rows: u64,
    /// The source's distinct primary keys, when fewer than `source_rows`: Milvus does not
    /// enforce key uniqueness, and a key with several rows is one row on the target, so the
    /// target's count is compared with this. Absent when every key has one row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_keys: Option<u64>,
    pub target_rows: u64,
    /// The target's distinct primary keys, counted when `source_keys` is (a key in two
    /// partitions is two rows to `count(*)`, one to a collection-wide query, on either side);
    /// the check then compares `source_keys` with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_keys: Option<u64>,
    /// The shards compared when this instance moves a share of the collection
    /// (`[source.wal] channels`): then only their keys are compared, always key by key
    /// (`count(*)` would count the other instances' keys too), and `partitions` stays empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// Partition-key collections are compared as a whole: their partitions are the server's
    /// hash buckets, and `partitions` stays empty.
    pub partition_key: bool,
    pub partitions: Vec<PartitionReport>,
    /// Key-by-key comparison; `null` in counts mode.
    pub full: Option<FullReport>,
    pub seconds: f64,
}

impl CollectionReport {
    /// The rows the target should hold: one per source primary key.
    pub fn expected_target_rows(&self) -> u64 {
        self.source_keys.unwrap_or(self.source_rows)
    }

    /// What the target holds, compared with [`Self::expected_target_rows`]: its distinct
    /// keys when they were counted, else its rows.
    pub fn target_distinct(&self) -> u64 {
        self.target_keys.unwrap_or(self.target_rows)
    }
}

/// One user partition. A count is `null` when the partition does not exist on that side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionReport {
    pub name: String,
    pub source_rows: Option<u64>,
    /// As [`CollectionReport::source_keys`], for this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_keys: Option<u64>,
    pub target_rows: Option<u64>,
    /// As [`CollectionReport::target_keys`], for this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_keys: Option<u64>,
    pub equal: bool,
}

/// The key-by-key comparison of one collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FullReport {
    /// Rows read from each side.
    pub source_keys: u64,
    pub target_keys: u64,
    /// Distinct keys seen on either side.
    pub keys_compared: u64,
    /// On the source, not on the target.
    pub missing: KeyList,
    /// On the target, not on the source.
    pub extra: KeyList,
    /// On both, with different content (some field's bits differ).
    pub different: KeyList,
}

impl FullReport {
    pub fn is_clean(&self) -> bool {
        self.missing.count == 0 && self.extra.count == 0 && self.different.count == 0
    }
}

/// Keys of one category: all counted, the first `sample` (in key order) listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    pub count: u64,
    /// Int64 keys as JSON numbers, VarChar keys as strings.
    #[serde(serialize_with = "keys_out", deserialize_with = "keys_in")]
    pub keys: Vec<PkValue>,
}

/// What the repair wrote to the target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairReport {
    pub seconds: f64,
    pub collections: Vec<RepairedCollection>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairedCollection {
    pub source: String,
    pub target: String,
    /// Rows re-copied from the source (missing and different keys).
    pub upserted: u64,
    /// Extra keys deleted from the target.
    pub deleted: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeyJson {
    Int(i64),
    Str(String),
}

fn keys_out<S: Serializer>(keys: &[PkValue], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(|k| match k {
        PkValue::Int(v) => KeyJson::Int(*v),
        PkValue::Str(v) => KeyJson::Str(v.clone()),
    }))
}

fn keys_in<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PkValue>, D::Error> {
    let v: Vec<KeyJson> = Vec::deserialize(d)?;
    Ok(v.into_iter()
        .map(|k| match k {
            KeyJson::Int(v) => PkValue::Int(v),
            KeyJson::Str(v) => PkValue::Str(v),
        })
        .collect())
}

fn key_text(k: &PkValue) -> String {
    match k {
        PkValue::Int(v) => v.to_string(),
        PkValue::Str(v) => format!("{v:?}"),
    }
}

fn key_list(l: &KeyList) -> String {
    let mut s = l.count.to_string();
    if !l.keys.is_empty() {
        let shown: Vec<String> = l.keys.iter().map(key_text).collect();
        let more = if (l.keys.len() as u64) < l.count {
            ", ..."
        } else {
            ""
        };
        let _ = write!(s, " [{}{more}]", shown.join(", "));
    }
    s
}

fn verdict(equal: bool) -> &'static str {
    if equal {
        "EQUAL"
    } else {
        "DIFFERENT"
    }
}

fn render_pass(s: &mut String, p: &PassReport) {
    for c in &p.collections {
        let _ = writeln!(
            s,
            "  {} -> {}: {}  (source {} rows, target {} rows, {:.1} s)",
            c.source,
            c.target,
            verdict(c.equal),
            c.source_rows,
            c.target_rows,
            c.seconds
        );
        if !c.target_exists {
            let _ = writeln!(
                s,
                "    the target collection does not exist (ferry migrate creates it)"
            );
            continue;
        }
        if let Some(share) = &c.share {
            let _ = writeln!(s, "    share: the keys of {share}, compared key by key");
        }
        if let Some(keys) = c.source_keys {
            let _ = writeln!(
                s,
                "    repeated keys: the source has {keys} distinct primary keys in its {} rows, the target {} in its {}; a key with several rows (Milvus does not enforce uniqueness) is one row on the target",
                c.source_rows,
                c.target_keys.map_or("?".to_string(), |k| k.to_string()),
                c.target_rows
            );
        }
        if c.partition_key {
            let _ = writeln!(s, "    partition key: compared as a whole");
        }
        for p in &c.partitions {
            let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
            let keys = p.source_keys.map(|k| format!(" ({k} keys)")).unwrap_or_default();
            let _ = writeln!(
                s,
                "    partition {:<20} source {:>10}{keys}  target {:>10}  {}",
                p.name,
                n(p.source_rows),
                n(p.target_rows),
                if p.equal { "ok" } else { "DIFFERENT" }
            );
        }
        if let Some(f) = &c.full {
            let _ = writeln!(
                s,
                "    keys compared {} (source {}, target {})",
                f.keys_compared, f.source_keys, f.target_keys
            );
            let _ = writeln!(s, "    missing on target:   {}", key_list(&f.missing));
            let _ = writeln!(s, "    extra on target:     {}", key_list(&f.extra));
            let _ = writeln!(s, "    different content:   {}", key_list(&f.different));
        }
    }
}

/// The report as an operator reads it.
pub fn render(r: &VerifyReport) -> String {
    let mut s = String::new();
    let mode = match r.mode {
        VerifyMode::Counts => "counts",
        VerifyMode::Full => "full",
    };
    for (i, p) in r.passes.iter().enumerate() {
        let title = if i == 0 {
            "verify"
        } else {
            "verify after repair"
        };
        let _ = writeln!(
            s,
            "{title} ({mode}): {}  ({:.1} s)",
            verdict(p.equal),
            p.seconds
        );
        render_pass(&mut s, p);
        if i == 0 {
            if let Some(rep) = &r.repair {
                let _ = writeln!(s, "repair ({:.1} s):", rep.seconds);
                for c in &rep.collections {
                    let _ = writeln!(
                        s,
                        "  {} -> {}: {} rows re-copied, {} extra keys deleted",
                        c.source, c.target, c.upserted, c.deleted
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "result: {}",
        if r.equal {
            "the target equals the source"
        } else {
            "the target DIFFERS from the source"
        }
    );
    s
}

/// One line naming what differs in the verdict's pass (for stderr and error messages).
pub fn summary(r: &VerifyReport) -> String {
    let Some(p) = r.last() else {
        return "nothing compared".into();
    };
    let mut parts = Vec::new();
    for c in p.collections.iter().filter(|c| !c.equal) {
        let mut what = Vec::new();
        if !c.target_exists {
            what.push("target collection missing".to_string());
        } else {
            let expected = c.expected_target_rows();
            if expected != c.target_distinct() {
                what.push(format!("{expected} vs {} rows", c.target_distinct()));
            }
            for p in c.partitions.iter().filter(|p| !p.equal) {
                let n =
                    |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
                what.push(format!(
                    "partition {} {} vs {}",
                    p.name,
                    n(p.source_keys.or(p.source_rows)),
                    n(p.target_keys.or(p.target_rows))
                ));
            }
            if let Some(f) = c.full.as_ref().filter(|f| !f.is_clean()) {
                what.push(format!(
                    "{} missing, {} extra, {} different",
                    f.missing.count, f.extra.count, f.different.count
                ));
            }
        }
        parts.push(format!("{} -> {}: {}", c.source, c.target, what.join(", ")));
    }
    if parts.is_empty() {
        "equal".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_json_values_and_round_trip() {
        let l = KeyList {
            count: 3,
            keys: vec![PkValue::Int(-5), PkValue::Str("a\"b".into())],
        };
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(j, r#"{"count":3,"keys":[-5,"a\"b"]}"#);
        assert_eq!(serde_json::from_str::<KeyList>(&j).unwrap(), l);
        assert_eq!(key_list(&l), "3 [-5, \"a\\\"b\", ...]");
    }
}
