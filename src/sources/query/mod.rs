//! Reading a live collection by query: the reader of `ferry migrate` and of `ferry run`'s
//! snapshot (and the units `ferry verify` compares).
//!
//! A unit ([`unit`]) is a partition and key split, paged by primary key (`pk > last`,
//! `limit = page_rows`) at one guarantee timestamp ([`snapshot_timestamp`]), so every unit
//! sees the collection as of the same moment and resumes after the last key written.

pub mod unit;

use crate::copy::{self, CollectionReader, CopyError, CopyOptions, Order, Page, Pages, Position};
use crate::milvus::{KeyPager, MilvusClient, MilvusError, PagerError, Query};
use crate::proto::common::ConsistencyLevel;
use crate::plan::CollectionPlan;
use crate::proto::schema::DataType;
use crate::state::keys;

/// One collection read by query, as of one timestamp.
pub struct QueryReader<'a> {
    source: &'a MilvusClient,
    c: &'a CollectionPlan,
    snapshot_ts: u64,
    page_rows: u64,
    units: Vec<unit::Unit>,
}

impl<'a> QueryReader<'a> {
    /// Reads `c` from `source` as of `snapshot_ts` (see [`snapshot_timestamp`]), in the key
    /// splits the source can filter by (see [`usable_key_splits`]).
    pub async fn new(
        source: &'a MilvusClient,
        c: &'a CollectionPlan,
        snapshot_ts: u64,
        opts: &CopyOptions,
    ) -> Result<QueryReader<'a>, CopyError> {
        let splits = usable_key_splits(&[(source, &c.source_name)], c, opts.key_splits)
            .await
            .map_err(|source| CopyError::Milvus { collection: c.source_name.clone(), source })?;
        let partitions: Vec<String> = c.partitions.iter().map(|(n, _)| n.clone()).collect();
        let units = unit::units(&partitions, c.partition_key, c.pk_type == DataType::Int64, splits);
        Ok(QueryReader { source, c, snapshot_ts, page_rows: opts.page_rows, units })
    }
}

/// The key splits (`pk % n == i`) a scan of `c` on every one of `sides` (server, collection)
/// can use: `wanted`, or 1 where a server refuses the modulo expression (Milvus Lite 3.2
/// parses no `%`). Asked with a one-row query; a transport failure is an error, not a "no".
pub async fn usable_key_splits(
    sides: &[(&MilvusClient, &str)],
    c: &CollectionPlan,
    wanted: u32,
) -> Result<u32, MilvusError> {
    if wanted <= 1 || c.pk_type != DataType::Int64 {
        return Ok(wanted);
    }
    for (server, collection) in sides {
        let probe = Query {
            expr: unit::Unit { partition: None, split: (0, 2) }.filter(&c.pk_field),
            output_fields: vec![c.pk_field.clone()],
            limit: Some(1),
            consistency: Some(ConsistencyLevel::Eventually),
            ..Default::default()
        };
        match server.query(collection, &probe).await {
            Ok(_) => {}
            Err(e @ MilvusError::Server { .. }) => {
                tracing::warn!(collection, error = %e, "the server refuses key-split expressions: the collection is read in one key range per partition (copy.key_splits = 1)");
                return Ok(1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(wanted)
}

impl CollectionReader for QueryReader<'_> {
    fn units(&self) -> Vec<copy::Unit> {
        self.units
            .iter()
            .enumerate()
            .map(|(index, u)| copy::Unit {
                key: keys::query_unit(&self.c.target_name, &u.key()),
                name: format!("unit {}", u.key()),
                partition: u.partition.clone().unwrap_or_default(),
                order: Order::Key { pk_field: self.c.pk_field.clone() },
                index,
            })
            .collect()
    }

    /// `count(*)` (the source is loaded to be read): the statistics estimate misses unflushed
    /// rows. A failure falls back to the estimate.
    async fn expected_rows(&self) -> u64 {
        let c = self.c;
        match self.source.count(&c.source_name, &[]).await {
            // A share of a split collection: its fraction of the shards (keys spread evenly).
            Ok(n) => match &c.shards {
                Some(f) => n * f.keep.len() as u64 / f.num_shards as u64,
                None => n,
            },
            Err(e) => {
                tracing::debug!(collection = %c.source_name, error = %e, "count(*) failed; progress uses the estimate");
                c.row_estimate
            }
        }
    }

    async fn read_unit(&self, unit: &copy::Unit, from: Option<&Position>, out: &Pages) -> Result<(), CopyError> {
        let (c, u) = (self.c, &self.units[unit.index]);
        let mut pager = KeyPager::new(&c.source_name, &c.pk_field, c.output_fields.clone());
        pager.partitions = u.partition.iter().cloned().collect();
        pager.filter = u.filter(&c.pk_field);
        pager.page_rows = self.page_rows;
        pager.guarantee_ts = self.snapshot_ts;
        pager.cursor = match from {
            Some(Position::Key(k)) => Some(k.clone()),
            Some(Position::Row(_)) => {
                return Err(CopyError::Data {
                    collection: c.source_name.clone(),
                    unit: unit.name.clone(),
                    reason: "its stored cursor is a row number, not a key: the state was written by another kind of copy".into(),
                })
            }
            None => None,
        };
        pager.shards = c.shards.clone();
        loop {
            let page = pager.next_page(self.source).await.map_err(|e| match e {
                PagerError::Milvus(source) => CopyError::Milvus { collection: c.source_name.clone(), source },
                PagerError::Order { reason, .. } => CopyError::Data {
                    collection: c.source_name.clone(),
                    unit: unit.name.clone(),
                    reason,
                },
            })?;
            let Some(page) = page else { return Ok(()) };
            if !out.send(Page::Rows(page)).await {
                return Ok(());
            }
        }
    }
}

/// The source's "now" for a consistent read: a timestamp from its own TSO. A server
/// without AllocTimestamp (Milvus Lite) gets 0, and every page is then read at Strong
/// consistency, which sees at least as much. Never ferry's own clock: one behind the
/// source's would read before writes a stream's start position already skips (lost rows),
/// one ahead would make every read wait for the source to reach it.
pub async fn snapshot_timestamp(source: &MilvusClient) -> Result<u64, crate::milvus::MilvusError> {
    match source.alloc_timestamp().await {
        Ok(ts) => Ok(ts),
        Err(crate::milvus::MilvusError::Rpc { code: tonic::Code::Unimplemented, .. }) => Ok(0),
        Err(e) => Err(e),
    }
}
