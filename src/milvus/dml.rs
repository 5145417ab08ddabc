//! Milvus calls that move rows: insert, upsert, delete by key, query, counts.

use super::client::{stat_row_count, MilvusClient, Query};
use super::data::{PrimaryKeys, Rows};
use super::error::{MilvusError, Result};
use super::expr;
use crate::proto::common::{ConsistencyLevel, KeyValuePair};
use crate::proto::milvus as pb;
use crate::proto::schema::CollectionSchema;

impl MilvusClient {
    /// Inserts rows; returns the number the server accepted.
    pub async fn insert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<i64> {
        let num_rows = self.row_count_u32("Insert", collection, rows)?;
        let schema = self.write_schema(collection).await?;
        let r = self
            .call("Insert", collection, |mut c| {
                let req = self.write_request(collection, partition, rows, &schema, num_rows);
                async move { c.insert(req).await }
            })
            .await?;
        Ok(r.insert_cnt)
    }

    /// Upserts rows (insert or replace by primary key); returns the number upserted.
    pub async fn upsert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<i64> {
        let num_rows = self.row_count_u32("Upsert", collection, rows)?;
        let schema = self.write_schema(collection).await?;
        let r = self
            .call("Upsert", collection, |mut c| {
                // Insert and Upsert requests carry the same fields.
                let r = self.write_request(collection, partition, rows, &schema, num_rows);
                let req = pb::UpsertRequest {
                    base: r.base,
                    db_name: r.db_name,
                    collection_name: r.collection_name,
                    partition_name: r.partition_name,
                    fields_data: r.fields_data,
                    hash_keys: r.hash_keys,
                    num_rows: r.num_rows,
                };
                async move { c.upsert(req).await }
            })
            .await?;
        Ok(r.upsert_cnt)
    }

    /// The schema of a collection this client writes to, described once.
    async fn write_schema(&self, collection: &str) -> Result<std::sync::Arc<CollectionSchema>> {
        if let Some(s) = self.cached_schema(collection) {
            return Ok(s);
        }
        let d = self.describe_collection(collection).await?;
        let schema = std::sync::Arc::new(d.schema.unwrap_or_default());
        self.write_schemas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(collection.to_string(), schema.clone());
        Ok(schema)
    }

    fn cached_schema(&self, collection: &str) -> Option<std::sync::Arc<CollectionSchema>> {
        self.write_schemas.lock().unwrap_or_else(|p| p.into_inner()).get(collection).cloned()
    }

    /// Forgets a collection's schema (it was created or dropped through this client).
    pub(super) fn forget_schema(&self, collection: &str) {
        self.write_schemas.lock().unwrap_or_else(|p| p.into_inner()).remove(collection);
    }

    /// The request of one write attempt (tonic takes requests by value, so each attempt
    /// copies the columns once), its columns in the shape the target's own SDK would send
    /// ([`super::canonical`]): whatever path the rows came by, nothing else reaches a target.
    fn write_request(&self, collection: &str, partition: &str, rows: &Rows, schema: &CollectionSchema, num_rows: u32) -> pb::InsertRequest {
        let mut columns = Rows { columns: rows.columns.clone(), num_rows: rows.num_rows };
        super::canonical::canonicalize(&mut columns, schema);
        pb::InsertRequest {
            base: None,
            db_name: self.database.clone(),
            collection_name: collection.to_string(),
            partition_name: partition.to_string(),
            fields_data: columns.columns,
            hash_keys: Vec::new(),
            num_rows,
        }
    }

    fn row_count_u32(&self, call: &'static str, collection: &str, rows: &Rows) -> Result<u32> {
        u32::try_from(rows.num_rows).map_err(|_| MilvusError::Protocol {
            call,
            target: format!("{}/{collection}", self.database),
            reason: format!("batch of {} rows is too large", rows.num_rows),
        })
    }

    /// Deletes rows by primary key (`pk in [...]`, the only form 2.3 accepts).
    pub async fn delete(
        &self,
        collection: &str,
        partition: &str,
        pk_field: &str,
        keys: &PrimaryKeys,
    ) -> Result<i64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let expr = expr::pk_in(pk_field, keys);
        let r = self
            .call("Delete", collection, |mut c| {
                let expr = expr.clone();
                async move {
                    c.delete(pb::DeleteRequest {
                        base: None,
                        db_name: self.database.clone(),
                        collection_name: collection.to_string(),
                        partition_name: partition.to_string(),
                        expr,
                        hash_keys: Vec::new(),
                        consistency_level: 0,
                    })
                    .await
                }
            })
            .await?;
        Ok(r.delete_cnt)
    }

    /// Runs a query and returns its rows.
    pub async fn query(&self, collection: &str, q: &Query) -> Result<Rows> {
        let mut params = Vec::new();
        if let Some(limit) = q.limit {
            params.push(KeyValuePair {
                key: "limit".into(),
                value: limit.to_string(),
            });
        }
        if q.key_order {
            params.push(KeyValuePair { key: "iterator".into(), value: "True".into() });
        }
        let r = self
            .call_read("Query", collection, |mut c| {
                let params = params.clone();
                async move {
                    c.query(pb::QueryRequest {
                        base: None,
                        db_name: self.database.clone(),
                        collection_name: collection.to_string(),
                        expr: q.expr.clone(),
                        output_fields: q.output_fields.clone(),
                        partition_names: q.partition_names.clone(),
                        travel_timestamp: 0,
                        guarantee_timestamp: q.guarantee_timestamp,
                        query_params: params,
                        not_return_all_meta: false,
                        consistency_level: q.consistency.unwrap_or(ConsistencyLevel::Bounded)
                            as i32,
                        use_default_consistency: q.consistency.is_none(),
                    })
                    .await
                }
            })
            .await?;
        Rows::new(r.fields_data).map_err(|e| MilvusError::Protocol {
            call: "Query",
            target: format!("{}/{collection}", self.database),
            reason: e.to_string(),
        })
    }

    /// Exact number of rows visible now (`count(*)`, strong consistency), optionally in some
    /// partitions only.
    pub async fn count(&self, collection: &str, partitions: &[String]) -> Result<u64> {
        let rows = self
            .query(
                collection,
                &Query {
                    expr: String::new(),
                    output_fields: vec!["count(*)".into()],
                    partition_names: partitions.to_vec(),
                    consistency: Some(ConsistencyLevel::Strong),
                    ..Default::default()
                },
            )
            .await?;
        let n = rows
            .columns
            .first()
            .and_then(|c| PrimaryKeys::from_field(c))
            .and_then(|k| match k {
                PrimaryKeys::Int(v) => v.first().copied(),
                PrimaryKeys::Str(_) => None,
            });
        n.map(|n| n as u64).ok_or_else(|| MilvusError::Protocol {
            call: "Query",
            target: format!("{}/{collection}", self.database),
            reason: "count(*) returned no Int64 value".into(),
        })
    }

    /// Row count from the collection's statistics (fast; flushed segments, deletes not
    /// subtracted on 2.3): an estimate for plans and progress.
    pub async fn statistics_row_count(&self, collection: &str) -> Result<u64> {
        let r = self
            .call("GetCollectionStatistics", collection, |mut c| async move {
                c.get_collection_statistics(pb::GetCollectionStatisticsRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                })
                .await
            })
            .await?;
        Ok(stat_row_count(&r.stats))
    }

    /// Partition row count from statistics (estimate, like [`Self::statistics_row_count`]).
    pub async fn partition_statistics_row_count(&self, collection: &str, partition: &str) -> Result<u64> {
        let target = format!("{collection}/{partition}");
        let r = self
            .call("GetPartitionStatistics", &target, |mut c| async move {
                c.get_partition_statistics(pb::GetPartitionStatisticsRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                    partition_name: partition.to_string(),
                })
                .await
            })
            .await?;
        Ok(stat_row_count(&r.stats))
    }
}
