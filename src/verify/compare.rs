//! One collection compared: its counts, its distinct keys, and (in `full` mode, or for a
//! share of a split collection) every key and row digest, unit by unit.

use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::copy::finish;
use crate::milvus::{MilvusClient, MilvusError};
use crate::plan::CollectionPlan;
use crate::proto::schema::DataType;
use crate::sources::query::{unit, usable_key_splits};

use super::{
    scan, CollectionReport, Ctx, FullReport, PartitionReport, RepairedCollection, VerifyError,
    VerifyMode,
};

/// Count queries in flight at once.
const COUNTS_AT_ONCE: usize = 8;

/// Compares one collection: its counts, then its distinct keys, then (in `full` mode, or for
/// a share) every key and row digest, repairing as it goes with `repair`.
pub(super) async fn compare_collection(
    ctx: &Ctx<'_>,
    c: &CollectionPlan,
) -> Result<(CollectionReport, Option<RepairedCollection>), VerifyError> {
    let mut cmp = Comparison::new(ctx, c);
    cmp.target_exists().await?;
    cmp.partitions().await?;
    cmp.counts().await?;
    if !cmp.report.target_exists {
        return Ok((cmp.done(), None));
    }
    cmp.keys().await?;
    if ctx.repair {
        cmp.create_missing_partitions().await?;
    }
    let mut fixed = None;
    if ctx.mode == VerifyMode::Full || cmp.shared {
        fixed = cmp.full().await?;
    }
    cmp.verdict();
    Ok((cmp.done(), fixed))
}

/// The steps of one collection's comparison, and the report they build.
struct Comparison<'a> {
    ctx: &'a Ctx<'a>,
    c: &'a CollectionPlan,
    src: &'a str,
    dst: &'a str,
    /// A share of a split collection: count(*) would count other instances' keys, so the
    /// share's keys are counted and compared by reading them.
    shared: bool,
    started: Instant,
    report: CollectionReport,
    /// Partitions of both sides, the source's first (none for a partition-key collection,
    /// or when the target does not exist).
    names: Vec<String>,
    on_source: Vec<String>,
    on_target: Vec<String>,
    /// Each `count(*)` asked (source or target, collection or partition) and its result.
    counts: Vec<(bool, Option<String>)>,
    counted: Vec<u64>,
}

impl<'a> Comparison<'a> {
    fn new(ctx: &'a Ctx<'a>, c: &'a CollectionPlan) -> Self {
        let started = Instant::now();
        let (src, dst) = (c.source_name.as_str(), c.target_name.as_str());
        let report = CollectionReport {
            source: src.into(),
            target: dst.into(),
            equal: false,
            target_exists: false,
            source_rows: 0,
            source_keys: None,
            target_keys: None,
            target_rows: 0,
            partition_key: c.partition_key,
            partitions: Vec::new(),
            full: None,
            share: c.shards.as_ref().map(|f| f.describe()),
            seconds: 0.0,
        };
        Comparison {
            ctx,
            c,
            src,
            dst,
            shared: c.shards.is_some(),
            started,
            report,
            names: Vec::new(),
            on_source: Vec::new(),
            on_target: Vec::new(),
            counts: Vec::new(),
            counted: Vec::new(),
        }
    }

    async fn target_exists(&mut self) -> Result<(), VerifyError> {
        self.report.target_exists = self
            .ctx
            .target
            .has_collection(self.dst)
            .await
            .map_err(on(self.dst, "has collection"))?;
        Ok(())
    }

    /// Partitions of both sides, the source's first.
    async fn partitions(&mut self) -> Result<(), VerifyError> {
        let (ctx, src, dst) = (self.ctx, self.src, self.dst);
        let (mut on_source, mut on_target) = (Vec::new(), Vec::new());
        if !self.c.partition_key && self.report.target_exists {
            on_source = ctx
                .source
                .list_partitions(src)
                .await
                .map_err(on(src, "list partitions"))?;
            on_target = ctx
                .target
                .list_partitions(dst)
                .await
                .map_err(on(dst, "list partitions"))?;
            let names = &mut self.names;
            *names = on_source.iter().map(|p| p.0.clone()).collect();
            names.extend(
                on_target
                    .iter()
                    .filter(|p| !names.contains(&p.0))
                    .map(|p| p.0.clone())
                    .collect::<Vec<_>>(),
            );
        }
        self.on_source = on_source.into_iter().map(|p| p.0).collect();
        self.on_target = on_target.into_iter().map(|p| p.0).collect();
        Ok(())
    }

    /// Every count of both sides: a strongly consistent count waits for the server's next
    /// time tick, so they run side by side rather than one after another.
    /// (A share's counts come from reading its keys below: count(*) would be wasted.)
    async fn counts(&mut self) -> Result<(), VerifyError> {
        let (ctx, src, dst, shared) = (self.ctx, self.src, self.dst, self.shared);
        let counts = &mut self.counts;
        if !(shared && self.report.target_exists) {
            counts.push((true, None));
        }
        if self.report.target_exists && !shared {
            counts.push((false, None));
        }
        for p in self.names.iter().filter(|_| !shared) {
            if self.on_source.contains(p) {
                counts.push((true, Some(p.clone())));
            }
            if self.on_target.contains(p) {
                counts.push((false, Some(p.clone())));
            }
        }
        let jobs: Vec<_> = counts
            .iter()
            .map(|(is_source, part)| {
                let (client, name) = if *is_source {
                    (ctx.source, src)
                } else {
                    (ctx.target, dst)
                };
                count(client, name, part.clone())
            })
            .collect();
        self.counted = stream::iter(jobs)
            .buffered(COUNTS_AT_ONCE)
            .try_collect()
            .await?;
        self.report.source_rows = self.count_of(true, None).unwrap_or(0);
        if self.report.target_exists {
            self.report.target_rows = self.count_of(false, None).unwrap_or(0);
        }
        Ok(())
    }

    fn count_of(&self, is_source: bool, part: Option<&String>) -> Option<u64> {
        self.counts
            .iter()
            .position(|(s, p)| *s == is_source && p.as_ref() == part)
            .map(|i| self.counted[i])
    }

    /// A source key with several rows is one row on the target: counts compare distinct keys.
    async fn distinct_keys(
        &self,
        part: Option<&str>,
        s: u64,
        t: u64,
    ) -> Result<finish::DistinctKeys, VerifyError> {
        finish::distinct_keys(self.ctx.source, self.ctx.target, self.c, part, s, t)
            .await
            .map_err(|e| VerifyError::scan(self.src, "count distinct keys", e))
    }

    /// Distinct keys of the collection, or of each partition, and the partitions' reports.
    async fn keys(&mut self) -> Result<(), VerifyError> {
        let shared = self.shared;
        // With every partition checked below, a repeated key or an extra one shows in its
        // partition, and the collection's count(*) is their sum: reading the collection's keys
        // again would only lengthen a cutover's verify (a key in two partitions, which Milvus
        // allows, is one key to a collection-wide query but two rows to count(*)).
        let by_partition = !self.names.is_empty();
        if !shared && !by_partition {
            let k = self
                .distinct_keys(None, self.report.source_rows, self.report.target_rows)
                .await?;
            (self.report.source_keys, self.report.target_keys) = (k.source, k.target);
        }
        for p in self.names.iter().filter(|_| !shared) {
            let (s, t) = (self.count_of(true, Some(p)), self.count_of(false, Some(p)));
            let k = match (s, t) {
                (Some(s), Some(t)) => self.distinct_keys(Some(p.as_str()), s, t).await?,
                _ => finish::DistinctKeys::default(),
            };
            self.report.partitions.push(PartitionReport {
                name: p.clone(),
                source_rows: s,
                source_keys: k.source,
                target_rows: t,
                target_keys: k.target,
                equal: s.is_some() && k.source.or(s) == k.target.or(t),
            });
        }
        let report = &mut self.report;
        if by_partition && report.partitions.iter().any(|p| p.source_keys.is_some()) {
            // The collection's keys are its partitions' (a key per partition it is in).
            let sum = |f: &dyn Fn(&PartitionReport) -> Option<u64>| report.partitions.iter().filter_map(f).sum::<u64>();
            report.source_keys = Some(sum(&|p| p.source_keys.or(p.source_rows)));
            report.target_keys = Some(sum(&|p| p.target_keys.or(p.target_rows)));
        }
        Ok(())
    }

    /// Repair: rows re-copied go to their own partition, so it must exist. (Partitions only
    /// the target has are emptied, not dropped.)
    async fn create_missing_partitions(&self) -> Result<(), VerifyError> {
        let dst = self.dst;
        for p in self.on_source.iter().filter(|p| !self.on_target.contains(p)) {
            tracing::info!(collection = %dst, partition = %p, "repair: creating the partition missing on the target");
            self.ctx
                .target
                .create_partition(dst, p)
                .await
                .map_err(on(dst, "repair create partition"))?;
        }
        Ok(())
    }

    /// Every key and row digest of both sides, unit by unit (repairing with `repair`): the
    /// `full` report, and what was repaired.
    async fn full(&mut self) -> Result<Option<RepairedCollection>, VerifyError> {
        let (ctx, c) = (self.ctx, self.c);
        let sides = [(ctx.source, c.source_name.as_str()), (ctx.target, c.target_name.as_str())];
        let splits = usable_key_splits(&sides, c, ctx.opts.scan.key_splits)
            .await
            .map_err(|source| VerifyError::Milvus { collection: c.source_name.clone(), step: "probe key splits", source })?;
        let units = unit::units(&self.names, c.partition_key, c.pk_type == DataType::Int64, splits);
        let (on_source, on_target) = (&self.on_source, &self.on_target);
        let outcomes: Vec<scan::UnitOutcome> = stream::iter(units.into_iter().map(|u| {
            let on_s = u.partition.as_ref().is_none_or(|p| on_source.contains(p));
            let on_t = u.partition.as_ref().is_none_or(|p| on_target.contains(p));
            scan::scan_unit(scan::UnitScan {
                source: ctx.source,
                target: ctx.target,
                plan: c,
                unit: u,
                on_source: on_s,
                on_target: on_t,
                source_ts: ctx.source_ts,
                target_ts: ctx.target_ts,
                opts: ctx.opts,
                repair: ctx.repair,
                shutdown: ctx.shutdown.clone(),
            })
        }))
        .buffer_unordered(ctx.opts.scan.parallelism.max(1))
        .try_collect()
        .await?;
        let mut full = FullReport::default();
        let mut rep = RepairedCollection {
            source: self.src.into(),
            target: self.dst.into(),
            upserted: 0,
            deleted: 0,
        };
        for o in outcomes {
            full.source_keys += o.full.source_keys;
            full.target_keys += o.full.target_keys;
            full.keys_compared += o.full.keys_compared;
            for (all, part) in [
                (&mut full.missing, o.full.missing),
                (&mut full.extra, o.full.extra),
                (&mut full.different, o.full.different),
            ] {
                all.count += part.count;
                all.keys.extend(part.keys);
            }
            rep.upserted += o.upserted;
            rep.deleted += o.deleted;
        }
        // Units run concurrently: list the smallest keys, whichever unit found them.
        for l in [&mut full.missing, &mut full.extra, &mut full.different] {
            l.keys.sort();
            l.keys.truncate(ctx.opts.sample);
        }
        if self.shared {
            (self.report.source_rows, self.report.target_rows) = (full.source_keys, full.target_keys);
        }
        self.report.full = Some(full);
        Ok(ctx.repair.then_some(rep))
    }

    fn verdict(&mut self) {
        let report = &mut self.report;
        report.equal = report.expected_target_rows() == report.target_distinct()
            && report.partitions.iter().all(|p| p.equal)
            && report.full.as_ref().is_none_or(FullReport::is_clean);
    }

    fn done(mut self) -> CollectionReport {
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.report
    }
}

/// The error of a failed `step` on `collection`.
fn on(collection: &str, step: &'static str) -> impl FnOnce(MilvusError) -> VerifyError {
    let collection = collection.to_string();
    move |source| VerifyError::Milvus {
        collection,
        step,
        source,
    }
}

/// `count(*)` of a collection, or of one partition.
async fn count(
    client: &MilvusClient,
    collection: &str,
    partition: Option<String>,
) -> Result<u64, VerifyError> {
    let parts: Vec<String> = partition.into_iter().collect();
    client
        .count(collection, &parts)
        .await
        .map_err(|source| VerifyError::Milvus {
            collection: collection.to_string(),
            step: "count",
            source,
        })
}
