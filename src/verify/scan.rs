//! Full comparison of one work unit: both sides paged in key order, digested, merge-joined,
//! and (with repair) fixed as differences are found.
//!
//! Memory per unit: one page of `(key, digest)` per side, the source page's rows when
//! repairing, and one repair batch of at most `batch_bytes`.
//!
//! Repairing while scanning is safe because every write lands at or behind both cursors:
//! a key is called missing only once the target has moved past it, different or extra only
//! once the target has returned it; the target's later pages (`pk > cursor`) never see a
//! repaired key. The rows re-copied are the source rows just read (at the pass's guarantee
//! timestamp), so nothing is read twice.

use tokio_util::sync::CancellationToken;

use super::merge::{merge_step, Diff};
use super::report::{FullReport, KeyList};
use super::{VerifyError, VerifyOptions};
use crate::milvus::{KeyPager, MilvusClient, PkValue, PrimaryKeys, Rows};
use crate::plan::CollectionPlan;
use crate::copy::Target;
use crate::sources::query::unit::Unit;

/// One unit to compare: a partition (or the whole partition-key collection) and key split.
pub(super) struct UnitScan<'a> {
    pub source: &'a MilvusClient,
    pub target: &'a MilvusClient,
    pub plan: &'a CollectionPlan,
    pub unit: Unit,
    /// The partition exists on that side (an absent one reads as empty).
    pub on_source: bool,
    pub on_target: bool,
    pub source_ts: u64,
    pub target_ts: u64,
    pub opts: &'a VerifyOptions,
    pub repair: bool,
    pub shutdown: CancellationToken,
}

/// What one unit found (samples: its first `sample` keys per category) and repaired.
#[derive(Debug, Default)]
pub(super) struct UnitOutcome {
    pub full: FullReport,
    pub upserted: u64,
    pub deleted: u64,
}

/// One side's scan: the current page's keys and digests, and a position in it.
struct Side {
    pager: Option<KeyPager>,
    entries: Vec<(PkValue, u64)>,
    pos: usize,
    /// The current page's rows, kept only when they may be re-copied.
    rows: Rows,
    keep_rows: bool,
    /// No rows after `entries`.
    done: bool,
    read: u64,
}

impl Side {
    fn new(pager: Option<KeyPager>, keep_rows: bool) -> Self {
        Side {
            done: pager.is_none(),
            pager,
            entries: Vec::new(),
            pos: 0,
            rows: Rows::default(),
            keep_rows,
            read: 0,
        }
    }

    fn pending(&self) -> &[(PkValue, u64)] {
        &self.entries[self.pos..]
    }

    /// Reads the next page once the current one is used up.
    async fn fill(&mut self, client: &MilvusClient, step: &'static str) -> Result<(), VerifyError> {
        if self.pos < self.entries.len() || self.done {
            return Ok(());
        }
        let Some(pager) = self.pager.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let collection = pager.collection.clone();
        let page = pager
            .next_page(client)
            .await
            .map_err(|e| VerifyError::scan(&collection, step, e))?;
        self.entries.clear();
        self.pos = 0;
        self.rows = Rows::default();
        let Some(page) = page else {
            self.done = true;
            return Ok(());
        };
        let keys = page
            .primary_keys(&pager.pk_field)
            .ok_or_else(|| VerifyError::Data {
                collection: collection.clone(),
                reason: format!("page has no primary key column {:?}", pager.pk_field),
            })?;
        for i in 0..page.len() {
            let key = keys.get(i).ok_or_else(|| VerifyError::Data {
                collection: collection.clone(),
                reason: format!(
                    "primary key column has fewer rows than the page ({i} of {})",
                    page.len()
                ),
            })?;
            self.entries.push((key, page.row_digest(i)));
        }
        self.read += page.len() as u64;
        if self.keep_rows {
            self.rows = page;
        }
        Ok(())
    }
}

fn note(list: &mut KeyList, key: &PkValue, sample: usize) {
    list.count += 1;
    if list.keys.len() < sample {
        list.keys.push(key.clone());
    }
}

/// Keys of one collection as the list type deletes take.
fn primary_keys(keys: &[PkValue]) -> PrimaryKeys {
    if keys.iter().all(|k| matches!(k, PkValue::Int(_))) {
        PrimaryKeys::Int(
            keys.iter()
                .filter_map(|k| match k {
                    PkValue::Int(v) => Some(*v),
                    _ => None,
                })
                .collect(),
        )
    } else {
        PrimaryKeys::Str(
            keys.iter()
                .filter_map(|k| match k {
                    PkValue::Str(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// Pending repair writes of one unit.
struct Repair<'a> {
    scan: &'a UnitScan<'a>,
    rows: Rows,
    extra: Vec<PkValue>,
    upserted: u64,
    deleted: u64,
}

impl Repair<'_> {
    fn partition(&self) -> &str {
        self.scan.unit.partition.as_deref().unwrap_or("")
    }

    async fn add_rows(&mut self, rows: &Rows) -> Result<(), VerifyError> {
        let c = &self.scan.plan;
        self.rows.append(rows).map_err(|e| VerifyError::Data {
            collection: c.source_name.clone(),
            reason: e.to_string(),
        })?;
        if self.rows.byte_size() >= self.scan.opts.scan.batch_bytes {
            self.flush_rows().await?;
        }
        Ok(())
    }

    async fn flush_rows(&mut self) -> Result<(), VerifyError> {
        let c = &self.scan.plan;
        for part in std::mem::take(&mut self.rows).split_by_bytes(self.scan.opts.scan.batch_bytes) {
            if part.is_empty() {
                continue;
            }
            Target::upsert(self.scan.target, &c.target_name, self.partition(), &part)
                .await
                .map_err(|source| VerifyError::Milvus {
                    collection: c.target_name.clone(),
                    step: "repair upsert",
                    source,
                })?;
            self.upserted += part.len() as u64;
        }
        Ok(())
    }

    async fn add_extra(&mut self, keys: Vec<PkValue>) -> Result<(), VerifyError> {
        self.extra.extend(keys);
        if self.extra.len() as u64 >= self.scan.opts.scan.page_rows {
            self.flush_extra().await?;
        }
        Ok(())
    }

    async fn flush_extra(&mut self) -> Result<(), VerifyError> {
        if self.extra.is_empty() {
            return Ok(());
        }
        let c = &self.scan.plan;
        let keys = primary_keys(&std::mem::take(&mut self.extra));
        Target::delete(self.scan.target, &c.target_name, self.partition(), &c.pk_field, &keys)
            .await
            .map_err(|source| VerifyError::Milvus {
                collection: c.target_name.clone(),
                step: "repair delete",
                source,
            })?;
        self.deleted += keys.len() as u64;
        Ok(())
    }
}

fn pager(collection: &str, scan: &UnitScan<'_>, ts: u64) -> KeyPager {
    let c = scan.plan;
    let mut p = KeyPager::new(collection, &c.pk_field, c.output_fields.clone());
    p.partitions = scan.unit.partition.iter().cloned().collect();
    p.filter = scan.unit.filter(&c.pk_field);
    p.page_rows = scan.opts.scan.page_rows;
    p.guarantee_ts = ts;
    p.shards = c.shards.clone();
    p
}

/// Compares (and with `repair`, fixes) one unit.
pub(super) async fn scan_unit(scan: UnitScan<'_>) -> Result<UnitOutcome, VerifyError> {
    let c = scan.plan;
    let sample = scan.opts.sample;
    let mut src = Side::new(
        scan.on_source
            .then(|| pager(&c.source_name, &scan, scan.source_ts)),
        scan.repair,
    );
    let mut tgt = Side::new(
        scan.on_target
            .then(|| pager(&c.target_name, &scan, scan.target_ts)),
        false,
    );
    let mut full = FullReport::default();
    let mut repair = Repair {
        scan: &scan,
        rows: Rows::default(),
        extra: Vec::new(),
        upserted: 0,
        deleted: 0,
    };
    loop {
        if scan.shutdown.is_cancelled() {
            return Err(VerifyError::Interrupted);
        }
        let (a, b) = tokio::join!(
            src.fill(scan.source, "query source"),
            tgt.fill(scan.target, "query target")
        );
        a?;
        b?;
        if src.pending().is_empty() && src.done && tgt.pending().is_empty() && tgt.done {
            break;
        }
        let (s, t) = (src.pending(), tgt.pending());
        let mut recopy: Vec<usize> = Vec::new();
        let mut extra: Vec<PkValue> = Vec::new();
        let (i, j) = merge_step(s, src.done, t, tgt.done, |d| {
            full.keys_compared += 1;
            match d {
                Diff::Same { .. } => {}
                Diff::Different { source, .. } => {
                    note(&mut full.different, &s[source].0, sample);
                    recopy.push(source);
                }
                Diff::Missing { source } => {
                    note(&mut full.missing, &s[source].0, sample);
                    recopy.push(source);
                }
                Diff::Extra { target } => {
                    note(&mut full.extra, &t[target].0, sample);
                    extra.push(t[target].0.clone());
                }
            }
        });
        if scan.repair {
            if !recopy.is_empty() {
                let idx: Vec<usize> = recopy.iter().map(|r| src.pos + r).collect();
                let rows = src.rows.select(&idx);
                repair.add_rows(&rows).await?;
            }
            if !extra.is_empty() {
                repair.add_extra(extra).await?;
            }
        }
        src.pos += i;
        tgt.pos += j;
    }
    if scan.repair {
        repair.flush_rows().await?;
        repair.flush_extra().await?;
    }
    full.source_keys = src.read;
    full.target_keys = tgt.read;
    Ok(UnitOutcome {
        full,
        upserted: repair.upserted,
        deleted: repair.deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_keys_keep_their_kind() {
        assert_eq!(
            primary_keys(&[PkValue::Int(3), PkValue::Int(-1)]),
            PrimaryKeys::Int(vec![3, -1])
        );
        assert_eq!(
            primary_keys(&[PkValue::Str("a".into())]),
            PrimaryKeys::Str(vec!["a".into()])
        );
    }
}
