//! The Milvus gRPC client: one connection per endpoint, auth and database headers on every
//! call, retries with `backoff` for what [`MilvusError::is_retryable`] says can heal, and a
//! typed error naming the call and collection for everything else.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use backoff::ExponentialBackoff;
use base64::Engine;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::data::{PrimaryKeys, Rows};
use super::error::{MilvusError, Result};
use super::expr;
use crate::proto::common::{ConsistencyLevel, KeyValuePair, MsgBase, Status};
use crate::proto::milvus as pb;
use crate::proto::milvus::milvus_service_client::MilvusServiceClient;
use crate::proto::schema::CollectionSchema;
use crate::secret::Secret;

/// How to reach one Milvus server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `http://host:port`, `https://host:port`, or `host:port` (plain).
    pub uri: String,
    /// `user:password` or an API key. Sent base64-encoded as the `authorization` header.
    pub token: Option<Secret>,
    /// Database every call addresses (`default` when empty).
    pub database: String,
    /// PEM file of a CA to trust for `https://` besides the public roots.
    pub tls_ca_cert: Option<PathBuf>,
    /// TLS server name to verify instead of the URI's host.
    pub tls_server_name: Option<String>,
    pub connect_timeout: Duration,
    /// Deadline of one call (one attempt).
    pub request_timeout: Duration,
    /// How long retryable failures are retried before the call fails.
    pub retry_max_elapsed: Duration,
}

impl ConnectOptions {
    pub fn new(uri: impl Into<String>) -> Self {
        ConnectOptions {
            uri: uri.into(),
            token: None,
            database: "default".into(),
            tls_ca_cert: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry_max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Adds `authorization` and `dbname` to every request.
#[derive(Clone)]
pub struct Headers {
    authorization: Option<AsciiMetadataValue>,
    dbname: AsciiMetadataValue,
}

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let md = req.metadata_mut();
        if let Some(a) = &self.authorization {
            md.insert("authorization", a.clone());
        }
        md.insert("dbname", self.dbname.clone());
        Ok(req)
    }
}

type Svc = MilvusServiceClient<InterceptedService<Channel, Headers>>;

/// Replies that carry a `common.Status`.
pub trait Reply {
    fn status(&self) -> Option<&Status>;
}

impl Reply for Status {
    fn status(&self) -> Option<&Status> {
        Some(self)
    }
}

macro_rules! reply_with_status {
    ($($t:ty),* $(,)?) => {$(
        impl Reply for $t {
            fn status(&self) -> Option<&Status> {
                self.status.as_ref()
            }
        }
    )*};
}

reply_with_status!(
    pb::BoolResponse,
    pb::DescribeCollectionResponse,
    pb::GetCollectionStatisticsResponse,
    pb::ShowCollectionsResponse,
    pb::GetPartitionStatisticsResponse,
    pb::ShowPartitionsResponse,
    pb::GetLoadingProgressResponse,
    pb::GetLoadStateResponse,
    pb::DescribeIndexResponse,
    pb::MutationResult,
    pb::FlushResponse,
    pb::GetFlushStateResponse,
    pb::QueryResults,
    pb::ListDatabasesResponse,
    pb::SelectGrantResponse,
    pb::GetVersionResponse,
    pb::CheckHealthResponse,
    pb::AllocTimestampResponse,
);

/// What a query asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub expr: String,
    pub output_fields: Vec<String>,
    pub partition_names: Vec<String>,
    pub limit: Option<u64>,
    /// Read at least everything up to this hybrid timestamp (0: the collection's default).
    pub guarantee_timestamp: u64,
    pub consistency: Option<ConsistencyLevel>,
}

/// Parameters of `CreateCollection`.
#[derive(Debug, Clone)]
pub struct CreateCollection {
    pub name: String,
    pub schema: CollectionSchema,
    pub shards_num: i32,
    pub consistency_level: ConsistencyLevel,
    pub properties: Vec<KeyValuePair>,
    /// Partitions of a partition-key collection (0: server default).
    pub num_partitions: i64,
}

/// A connected client. Cheap to clone: clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct MilvusClient {
    svc: Svc,
    database: String,
    endpoint: String,
    retry_max_elapsed: Duration,
}

impl std::fmt::Debug for MilvusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusClient")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .finish()
    }
}

impl MilvusClient {
    /// Connects and checks that the server answers and the database exists.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        let uri = normalize_uri(&opts.uri)?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(32 << 20));
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(path) = &opts.tls_ca_cert {
                let pem = std::fs::read(path).map_err(|e| MilvusError::InvalidUri {
                    uri: opts.uri.clone(),
                    reason: format!("cannot read tls_ca_cert {}: {e}", path.display()),
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(name) = &opts.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: format!("TLS setup: {e}"),
            })?;
        }
        let channel = endpoint.connect().await.map_err(|e| MilvusError::Connect {
            endpoint: uri.clone(),
            reason: error_chain(&e),
        })?;
        let database = if opts.database.is_empty() {
            "default".to_string()
        } else {
            opts.database.clone()
        };
        let authorization = match &opts.token {
            Some(t) if !t.is_empty() => {
                let enc = base64::engine::general_purpose::STANDARD.encode(t.expose());
                let mut v: AsciiMetadataValue =
                    MetadataValue::try_from(enc).map_err(|_| MilvusError::InvalidUri {
                        uri: opts.uri.clone(),
                        reason: "token is not valid header text".into(),
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        let dbname = MetadataValue::try_from(database.as_str()).map_err(|_| {
            MilvusError::InvalidUri {
                uri: opts.uri.clone(),
                reason: format!("database name {database:?} is not valid header text"),
            }
        })?;
        let svc = MilvusServiceClient::with_interceptor(
            channel,
            Headers {
                authorization,
                dbname,
            },
        )
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);
        let client = MilvusClient {
            svc,
            database,
            endpoint: uri,
            retry_max_elapsed: opts.retry_max_elapsed,
        };
        // One authenticated call proves the server, the credentials and the database.
        client.list_collections().await?;
        Ok(client)
    }

    /// The database this client addresses.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The endpoint (URI without credentials), for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn base(&self) -> Option<MsgBase> {
        None
    }

    /// Runs one call with retries. `f` builds the request anew per attempt.
    async fn call<R, F, Fut>(&self, call: &'static str, target: &str, f: F) -> Result<R>
    where
        R: Reply,
        F: Fn(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let target = format!("{}/{}", self.database, target);
        let policy = ExponentialBackoff {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: Some(self.retry_max_elapsed),
            ..Default::default()
        };
        backoff::future::retry(policy, || async {
            let outcome = match f(self.svc.clone()).await {
                Err(s) => Err(MilvusError::from_grpc(call, &target, s)),
                Ok(resp) => {
                    let resp = resp.into_inner();
                    match resp.status().and_then(|s| MilvusError::from_status(call, &target, s)) {
                        Some(e) => Err(e),
                        None => Ok(resp),
                    }
                }
            };
            outcome.map_err(|e| {
                if e.is_retryable() {
                    tracing::debug!(error = %e, "retrying Milvus call");
                    backoff::Error::transient(e)
                } else {
                    backoff::Error::permanent(e)
                }
            })
        })
        .await
    }

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

    /// Inserts rows; returns the number the server accepted.
    pub async fn insert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<i64> {
        let num_rows = self.row_count_u32("Insert", collection, rows)?;
        let r = self
            .call("Insert", collection, |mut c| {
                let req = self.write_request(collection, partition, rows, num_rows);
                async move { c.insert(req).await }
            })
            .await?;
        Ok(r.insert_cnt)
    }

    /// Upserts rows (insert or replace by primary key); returns the number upserted.
    pub async fn upsert(&self, collection: &str, partition: &str, rows: &Rows) -> Result<i64> {
        let num_rows = self.row_count_u32("Upsert", collection, rows)?;
        let r = self
            .call("Upsert", collection, |mut c| {
                // Insert and Upsert requests carry the same fields.
                let r = self.write_request(collection, partition, rows, num_rows);
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

    /// The request of one write attempt (tonic takes requests by value, so each attempt
    /// copies the columns once).
    fn write_request(&self, collection: &str, partition: &str, rows: &Rows, num_rows: u32) -> pb::InsertRequest {
        pb::InsertRequest {
            base: None,
            db_name: self.database.clone(),
            collection_name: collection.to_string(),
            partition_name: partition.to_string(),
            fields_data: rows.columns.clone(),
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
        let r = self
            .call("Query", collection, |mut c| {
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

    /// A fresh hybrid timestamp from the server's TSO.
    pub async fn alloc_timestamp(&self) -> Result<u64> {
        let r = self
            .call("AllocTimestamp", "", |mut c| async move {
                c.alloc_timestamp(pb::AllocTimestampRequest { base: None }).await
            })
            .await?;
        Ok(r.timestamp)
    }

    /// Server version string, for plans and reports.
    pub async fn server_version(&self) -> Result<String> {
        let r = self
            .call("GetVersion", "", |mut c| async move {
                c.get_version(pb::GetVersionRequest {}).await
            })
            .await?;
        Ok(r.version)
    }
}

fn stat_row_count(stats: &[KeyValuePair]) -> u64 {
    stats
        .iter()
        .find(|kv| kv.key == "row_count")
        .and_then(|kv| kv.value.parse().ok())
        .unwrap_or(0)
}

/// `host:port` means plain HTTP/2; `tcp://` is pymilvus's spelling of the same.
fn normalize_uri(uri: &str) -> Result<String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(MilvusError::InvalidUri {
            uri: uri.into(),
            reason: "empty".into(),
        });
    }
    if let Some(rest) = uri.strip_prefix("tcp://") {
        return Ok(format!("http://{rest}"));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(uri.trim_end_matches('/').to_string());
    }
    if uri.contains("://") {
        return Err(MilvusError::InvalidUri {
            uri: uri.into(),
            reason: "scheme must be http:// or https://".into(),
        });
    }
    Ok(format!("http://{uri}"))
}

/// The full cause chain of a transport error (tonic's top level says only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(normalize_uri("127.0.0.1:19530").unwrap(), "http://127.0.0.1:19530");
        assert_eq!(normalize_uri("tcp://h:1").unwrap(), "http://h:1");
        assert_eq!(normalize_uri("https://h/").unwrap(), "https://h");
        assert!(normalize_uri("ftp://h").is_err());
        assert!(normalize_uri("  ").is_err());
    }
}
