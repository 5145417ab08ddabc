//! Milvus calls about structure and lifecycle: databases, collections, partitions, indexes,
//! flush, load and release.

use std::time::Duration;

use super::client::{CreateCollection, MilvusClient};
use super::error::{MilvusError, Result};
use crate::proto::common::KeyValuePair;
use crate::proto::milvus as pb;

impl MilvusClient {
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        let r = self
            .call("ListDatabases", "", |mut c| async move {
                c.list_databases(pb::ListDatabasesRequest { base: None }).await
            })
            .await?;
        Ok(r.db_names)
    }

    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.call("CreateDatabase", name, |mut c| async move {
            c.create_database(pb::CreateDatabaseRequest {
                base: None,
                db_name: name.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.call("DropDatabase", name, |mut c| async move {
            c.drop_database(pb::DropDatabaseRequest {
                base: None,
                db_name: name.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Names of the collections of the client's database.
    pub async fn list_collections(&self) -> Result<Vec<String>> {
        let r = self
            .call("ShowCollections", "", |mut c| async move {
                c.show_collections(pb::ShowCollectionsRequest {
                    base: self.base(),
                    db_name: self.database.clone(),
                    ..Default::default()
                })
                .await
            })
            .await?;
        Ok(r.collection_names)
    }

    pub async fn has_collection(&self, name: &str) -> Result<bool> {
        let r = self
            .call("HasCollection", name, |mut c| async move {
                c.has_collection(pb::HasCollectionRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: name.to_string(),
                    time_stamp: 0,
                })
                .await
            })
            .await?;
        Ok(r.value)
    }

    /// Schema, shards, consistency level, properties, aliases and channels of a collection.
    pub async fn describe_collection(&self, name: &str) -> Result<pb::DescribeCollectionResponse> {
        self.call("DescribeCollection", name, |mut c| async move {
            c.describe_collection(pb::DescribeCollectionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: name.to_string(),
                ..Default::default()
            })
            .await
        })
        .await
    }

    pub async fn create_collection(&self, req: &CreateCollection) -> Result<()> {
        self.forget_schema(&req.name);
        let schema = prost::Message::encode_to_vec(&req.schema);
        self.call("CreateCollection", &req.name, |mut c| {
            let schema = schema.clone();
            async move {
                c.create_collection(pb::CreateCollectionRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: req.name.clone(),
                    schema,
                    shards_num: req.shards_num,
                    consistency_level: req.consistency_level as i32,
                    properties: req.properties.clone(),
                    num_partitions: req.num_partitions,
                })
                .await
            }
        })
        .await?;
        Ok(())
    }

    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.forget_schema(name);
        self.call("DropCollection", name, |mut c| async move {
            c.drop_collection(pb::DropCollectionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: name.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Sets collection properties (for example `collection.ttl.seconds`).
    pub async fn alter_collection(&self, name: &str, properties: &[KeyValuePair]) -> Result<()> {
        self.call("AlterCollection", name, |mut c| async move {
            c.alter_collection(pb::AlterCollectionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: name.to_string(),
                collection_id: 0,
                properties: properties.to_vec(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// The collection's segments as DataCoord records them (growing, sealed, flushed; not
    /// dropped or compacted away).
    pub async fn persistent_segments(
        &self,
        collection: &str,
    ) -> Result<Vec<pb::PersistentSegmentInfo>> {
        let r = self
            .call("GetPersistentSegmentInfo", collection, |mut c| async move {
                c.get_persistent_segment_info(pb::GetPersistentSegmentInfoRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                })
                .await
            })
            .await?;
        Ok(r.infos)
    }

    /// Partition names and IDs, in creation order.
    pub async fn list_partitions(&self, collection: &str) -> Result<Vec<(String, i64)>> {
        let r = self
            .call("ShowPartitions", collection, |mut c| async move {
                c.show_partitions(pb::ShowPartitionsRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                    ..Default::default()
                })
                .await
            })
            .await?;
        let ids = r.partition_i_ds;
        Ok(r.partition_names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, ids.get(i).copied().unwrap_or_default()))
            .collect())
    }

    pub async fn create_partition(&self, collection: &str, partition: &str) -> Result<()> {
        let target = format!("{collection}/{partition}");
        self.call("CreatePartition", &target, |mut c| async move {
            c.create_partition(pb::CreatePartitionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
                partition_name: partition.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    pub async fn drop_partition(&self, collection: &str, partition: &str) -> Result<()> {
        let target = format!("{collection}/{partition}");
        self.call("DropPartition", &target, |mut c| async move {
            c.drop_partition(pb::DropPartitionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
                partition_name: partition.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Releases `partition` from memory (Milvus refuses to drop a loaded partition).
    pub async fn release_partition(&self, collection: &str, partition: &str) -> Result<()> {
        let target = format!("{collection}/{partition}");
        self.call("ReleasePartitions", &target, |mut c| async move {
            c.release_partitions(pb::ReleasePartitionsRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
                partition_names: vec![partition.to_string()],
            })
            .await
        })
        .await?;
        Ok(())
    }

    pub async fn has_partition(&self, collection: &str, partition: &str) -> Result<bool> {
        let target = format!("{collection}/{partition}");
        let r = self
            .call("HasPartition", &target, |mut c| async move {
                c.has_partition(pb::HasPartitionRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                    partition_name: partition.to_string(),
                })
                .await
            })
            .await?;
        Ok(r.value)
    }

    /// Index definitions of a collection (empty when it has none).
    pub async fn describe_indexes(&self, collection: &str) -> Result<Vec<pb::IndexDescription>> {
        let r = self
            .call("DescribeIndex", collection, |mut c| async move {
                c.describe_index(pb::DescribeIndexRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_name: collection.to_string(),
                    ..Default::default()
                })
                .await
            })
            .await;
        match r {
            Ok(r) => Ok(r.index_descriptions),
            // 2.3 answers "index not found" (IndexNotExist, new-style code 700) for a
            // collection without index; Milvus Lite says "no index on collection".
            Err(MilvusError::Server {
                error_code, reason, code, ..
            }) if error_code == crate::proto::common::ErrorCode::IndexNotExist
                || code == 700
                || reason.contains("no index")
                || reason.contains("index not found")
                || reason.contains("index doesn't exist") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates an index on `field`; `params` are Milvus's `extra_params` (index_type,
    /// metric_type, params JSON, ...).
    pub async fn create_index(
        &self,
        collection: &str,
        field: &str,
        index_name: &str,
        params: &[KeyValuePair],
    ) -> Result<()> {
        let target = format!("{collection}.{field}");
        self.call("CreateIndex", &target, |mut c| async move {
            c.create_index(pb::CreateIndexRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
                field_name: field.to_string(),
                extra_params: params.to_vec(),
                index_name: index_name.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Seals and persists the collections' growing segments and waits until they are flushed.
    pub async fn flush(&self, collections: &[String], wait: Duration) -> Result<()> {
        let r = self
            .call("Flush", &collections.join(","), |mut c| async move {
                c.flush(pb::FlushRequest {
                    base: None,
                    db_name: self.database.clone(),
                    collection_names: collections.to_vec(),
                })
                .await
            })
            .await?;
        let deadline = tokio::time::Instant::now() + wait;
        for name in collections {
            let segment_i_ds = r
                .coll_seg_i_ds
                .get(name)
                .map(|a| a.data.clone())
                .unwrap_or_default();
            let flush_ts = r.coll_flush_ts.get(name).copied().unwrap_or_default();
            loop {
                let state = self
                    .call("GetFlushState", name, |mut c| {
                        let segment_i_ds = segment_i_ds.clone();
                        async move {
                            c.get_flush_state(pb::GetFlushStateRequest {
                                segment_i_ds,
                                flush_ts,
                                db_name: self.database.clone(),
                                collection_name: name.clone(),
                            })
                            .await
                        }
                    })
                    .await;
                match state {
                    Ok(s) if s.flushed => break,
                    Ok(_) => {}
                    // Servers without flush state (Milvus Lite) persist synchronously.
                    Err(MilvusError::Rpc { code: tonic::Code::Unimplemented, .. }) => break,
                    Err(e) => return Err(e),
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(MilvusError::Timeout {
                        call: "Flush",
                        target: format!("{}/{name}", self.database),
                        seconds: wait.as_secs(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Loads a collection into memory and waits until it is fully loaded.
    pub async fn load(&self, collection: &str, wait: Duration) -> Result<()> {
        self.call("LoadCollection", collection, |mut c| async move {
            c.load_collection(pb::LoadCollectionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
                replica_number: 0,
                resource_groups: Vec::new(),
                refresh: false,
            })
            .await
        })
        .await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let r = self
                .call("GetLoadingProgress", collection, |mut c| async move {
                    c.get_loading_progress(pb::GetLoadingProgressRequest {
                        base: None,
                        collection_name: collection.to_string(),
                        partition_names: Vec::new(),
                        db_name: self.database.clone(),
                    })
                    .await
                })
                .await;
            match r {
                Ok(p) if p.progress >= 100 => return Ok(()),
                Ok(_) => {}
                Err(MilvusError::Rpc { code: tonic::Code::Unimplemented, .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MilvusError::Timeout {
                    call: "LoadCollection",
                    target: format!("{}/{collection}", self.database),
                    seconds: wait.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn release(&self, collection: &str) -> Result<()> {
        self.call("ReleaseCollection", collection, |mut c| async move {
            c.release_collection(pb::ReleaseCollectionRequest {
                base: None,
                db_name: self.database.clone(),
                collection_name: collection.to_string(),
            })
            .await
        })
        .await?;
        Ok(())
    }

    /// Whether the collection is loaded.
    pub async fn load_state(&self, collection: &str) -> Result<crate::proto::common::LoadState> {
        let r = self
            .call("GetLoadState", collection, |mut c| async move {
                c.get_load_state(pb::GetLoadStateRequest {
                    base: None,
                    collection_name: collection.to_string(),
                    partition_names: Vec::new(),
                    db_name: self.database.clone(),
                })
                .await
            })
            .await?;
        Ok(crate::proto::common::LoadState::try_from(r.state)
            .unwrap_or(crate::proto::common::LoadState::NotExist))
    }
}
