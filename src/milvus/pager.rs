//! Reads a collection (or a slice of it) in primary-key order, one page at a time.
//!
//! Pagination is by key (`pk > last`, with a limit), never by offset, so every page costs the
//! same. It relies on Milvus returning a limited query's rows in ascending key order; the
//! pager checks that on every page instead of trusting it, because a violation would skip
//! rows silently.

use super::client::{MilvusClient, Query};
use super::data::Rows;
use super::error::MilvusError;
use super::expr::{pk_greater, PkValue};
use super::shard::ShardFilter;
use crate::proto::common::ConsistencyLevel;

/// The largest `limit` a Milvus query accepts.
pub const MAX_QUERY_ROWS: u64 = 16384;

/// Errors of a key-ordered scan.
#[derive(Debug, thiserror::Error)]
pub enum PagerError {
    #[error(transparent)]
    Milvus(#[from] MilvusError),
    #[error("collection {collection:?}: {reason}")]
    Order { collection: String, reason: String },
}

/// A key-ordered scan.
#[derive(Debug, Clone)]
pub struct KeyPager {
    pub collection: String,
    pub pk_field: String,
    pub output_fields: Vec<String>,
    pub partitions: Vec<String>,
    /// Extra filter ANDed to the key condition (for example a key split).
    pub filter: String,
    pub page_rows: u64,
    /// Read at least everything up to this hybrid timestamp (0: strong consistency).
    pub guarantee_ts: u64,
    /// Last key read; the next page starts after it.
    pub cursor: Option<PkValue>,
    /// Return only the keys of these shards (a source split by channel). Pages are then
    /// shorter than `page_rows`, and never empty: a page with none of them is skipped.
    pub shards: Option<ShardFilter>,
    finished: bool,
}

impl KeyPager {
    pub fn new(collection: &str, pk_field: &str, output_fields: Vec<String>) -> Self {
        KeyPager {
            collection: collection.into(),
            pk_field: pk_field.into(),
            output_fields,
            partitions: Vec::new(),
            filter: String::new(),
            page_rows: 4000,
            guarantee_ts: 0,
            cursor: None,
            shards: None,
            finished: false,
        }
    }

    /// Reads the scan to its end, keys only, and returns how many distinct keys it saw.
    /// Milvus answers a query with one row per key even when a key has several rows, so this
    /// is the number of rows a copy (one row per key) of the scanned slice holds.
    pub async fn count_keys(mut self, client: &MilvusClient) -> Result<u64, PagerError> {
        self.output_fields = vec![self.pk_field.clone()];
        self.page_rows = MAX_QUERY_ROWS;
        let mut n = 0;
        while let Some(page) = self.next_page(client).await? {
            n += page.len() as u64;
        }
        Ok(n)
    }

    /// The filter of the next page.
    pub fn expr(&self) -> String {
        let key = self.cursor.as_ref().map(|c| pk_greater(&self.pk_field, c));
        match (key, self.filter.is_empty()) {
            (Some(k), true) => k,
            (Some(k), false) => format!("{k} && {}", self.filter),
            (None, _) => self.filter.clone(),
        }
    }

    /// The next page, or `None` after the last row.
    pub async fn next_page(&mut self, client: &MilvusClient) -> Result<Option<Rows>, PagerError> {
        loop {
            match self.read_page(client).await? {
                // Every key of the page is another instance's: read on.
                Some(page) if page.is_empty() => continue,
                page => return Ok(page),
            }
        }
    }

    /// The next page read, with only the keys of `shards` (possibly none of them).
    async fn read_page(&mut self, client: &MilvusClient) -> Result<Option<Rows>, PagerError> {
        if self.finished {
            return Ok(None);
        }
        let (guarantee_timestamp, consistency) = if self.guarantee_ts > 0 {
            (self.guarantee_ts, ConsistencyLevel::Customized)
        } else {
            (0, ConsistencyLevel::Strong)
        };
        let q = Query {
            expr: self.expr(),
            output_fields: self.output_fields.clone(),
            partition_names: self.partitions.clone(),
            limit: Some(self.page_rows),
            guarantee_timestamp,
            consistency: Some(consistency),
            key_order: true,
        };
        let page = client.query(&self.collection, &q).await?;
        let n = page.len();
        if (n as u64) < self.page_rows {
            self.finished = true;
        }
        if n == 0 {
            return Ok(None);
        }
        let order = |reason: String| PagerError::Order {
            collection: self.collection.clone(),
            reason,
        };
        let mut page = page;
        let mut keys = page
            .primary_keys(&self.pk_field)
            .ok_or_else(|| order(format!("page has no primary key column {:?}", self.pk_field)))?;
        // A short page holds every remaining row, so its order does not matter: sort it.
        // (Milvus Lite returns rows unordered; with a full page that would be unsafe.)
        if self.finished {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by_key(|&i| keys.get(i));
            if idx.iter().enumerate().any(|(a, &b)| a != b) {
                page = page.select(&idx);
                keys = page.primary_keys(&self.pk_field).unwrap_or(keys);
            }
        }
        let mut prev = self.cursor.clone();
        // Rows of the page this instance keeps (with `shards`).
        let mut kept = Vec::new();
        for i in 0..n {
            let k = keys.get(i);
            if let (Some(p), Some(k)) = (&prev, &k) {
                if k <= p {
                    return Err(order(format!(
                        "key {k:?} came after {p:?}: the server does not return pages in key order, so key pagination is unsafe"
                    )));
                }
            }
            if let (Some(f), Some(k)) = (&self.shards, &k) {
                if f.keeps(k) {
                    kept.push(i);
                }
            }
            prev = k;
        }
        // The cursor passes the whole page, the other instances' keys included.
        self.cursor = prev;
        Ok(Some(match &self.shards {
            Some(_) if kept.len() < n => page.select(&kept),
            _ => page,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expression_combines_cursor_and_filter() {
        let mut p = KeyPager::new("c", "id", vec![]);
        assert_eq!(p.expr(), "");
        p.filter = "id % 2 == 0".into();
        assert_eq!(p.expr(), "id % 2 == 0");
        p.cursor = Some(PkValue::Int(9));
        assert_eq!(p.expr(), "id > 9 && id % 2 == 0");
    }
}
