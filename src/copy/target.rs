//! What every path writes to: the target Milvus, behind one trait so the copy writer's
//! and the apply loop's cursor and retry rules are tested without a server.

use std::future::Future;

use crate::milvus::{MilvusClient, MilvusError, PrimaryKeys, Rows};

/// The writes ferry makes to a target: the copy writer (`insert`, `upsert`), `verify
/// --repair` (`upsert`, `delete`) and the apply loop. Every method but `insert` must be
/// idempotent: after a crash a writer repeats the batch whose cursor advance was lost, and
/// the copy writer inserts only rows past any batch that may have landed.
pub trait Target: Send + Sync {
    /// Inserts rows none of which the target holds (a repeated key would be a second row).
    fn insert(
        &self,
        collection: &str,
        partition: &str,
        rows: &Rows,
    ) -> impl Future<Output = Result<(), MilvusError>> + Send;

    fn upsert(
        &self,
        collection: &str,
        partition: &str,
        rows: &Rows,
    ) -> impl Future<Output = Result<(), MilvusError>> + Send;

    fn delete(
        &self,
        collection: &str,
        partition: &str,
        pk_field: &str,
        keys: &PrimaryKeys,
    ) -> impl Future<Output = Result<(), MilvusError>> + Send;

    /// Creates the partition unless it exists.
    fn create_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> impl Future<Output = Result<(), MilvusError>> + Send;

    /// Drops the partition if it exists (released first if loaded).
    fn drop_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> impl Future<Output = Result<(), MilvusError>> + Send;

    /// Drops the collection if it exists (`stream.on_source_drop = "drop"`).
    fn drop_collection(&self, collection: &str) -> impl Future<Output = Result<(), MilvusError>> + Send;
}

impl Target for MilvusClient {
    async fn insert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<(), MilvusError> {
        MilvusClient::insert(self, collection, partition, rows).await.map(|_| ())
    }

    async fn upsert(
        &self,
        collection: &str,
        partition: &str,
        rows: &Rows,
    ) -> Result<(), MilvusError> {
        MilvusClient::upsert(self, collection, partition, rows)
            .await
            .map(|_| ())
    }

    async fn delete(
        &self,
        collection: &str,
        partition: &str,
        pk_field: &str,
        keys: &PrimaryKeys,
    ) -> Result<(), MilvusError> {
        MilvusClient::delete(self, collection, partition, pk_field, keys)
            .await
            .map(|_| ())
    }

    async fn create_partition(&self, collection: &str, partition: &str) -> Result<(), MilvusError> {
        // Checked first so a replayed create is not an "already exists" error.
        if self.has_partition(collection, partition).await? {
            return Ok(());
        }
        MilvusClient::create_partition(self, collection, partition).await
    }

    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), MilvusError> {
        if !self.has_partition(collection, partition).await? {
            return Ok(());
        }
        // Milvus refuses to drop a loaded partition; the target is loaded while streaming.
        // Releasing one that is not loaded is a no-op.
        self.release_partition(collection, partition).await?;
        MilvusClient::drop_partition(self, collection, partition).await
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), MilvusError> {
        if !self.has_collection(collection).await? {
            return Ok(());
        }
        MilvusClient::drop_collection(self, collection).await
    }
}
