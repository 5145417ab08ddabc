//! milvus-backup folders as a source: collections, schemas and segments of a backup, read
//! into `Rows`.
//!
//! # Layout
//!
//! - [`meta`]: the meta JSON files (`full_meta.json` or the four level files), modelled with
//!   serde on milvus-backup's `backup.proto`.
//! - [`layout`]: where a segment's insert and delta logs are (with or without the group
//!   level), found by listing.
//! - [`testdata`]: writers for backup folders and a finder for a real Milvus data dir's
//!   binlogs, for tests.
//!
//! # Reading
//!
//! A backup folder is `<root>/<backup name>/{meta,binlogs}`. [`BackupSource::open`] takes the
//! root (or the backup folder itself) and a backup name, reads the meta and refuses
//! milvus-backup's `snapshot` format. [`BackupSource::read_segment`] reads every schema
//! field's insert logs in row order, plus system field 1 (row timestamps), checks that all
//! columns agree with each other and with the meta's `num_of_rows`, and reads the segment's
//! delta logs. A collection with dynamic fields stores them in a `$meta` JSON field that
//! Milvus 2.3's DescribeCollection (and so the backup's schema) omits; it is read anyway
//! ([`BackupCollection::hidden_dynamic_field`]) so no row loses its dynamic values.
//!
//! Deletes are not applied on read. A delete removes rows of its key inserted strictly
//! before it, in any segment of the collection (Milvus attaches a delete to the segments its
//! bloom filters point at, and L0 segments hold deletes for the whole collection), so a
//! migration gathers [`BackupSource::collection_deletes`] once and applies them to each
//! segment with [`SegmentData::apply_deletes`].
//!
//! A segment is held in memory whole while it is read; Milvus seals segments at about
//! 512 MB. Before decoding, a segment reserves what its files' page headers say they can
//! decode to from the source's [`DecodeBudget`] (shared by the segments read in parallel;
//! see [`BackupSource::with_budget`]), waiting while others hold it, and
//! [`BackupSource::read_segment_held`] hands the reservation on with the rows.

pub mod layout;
pub mod meta;
mod reader;
pub mod testdata;

pub use reader::BackupReader;

use bytes::Bytes;

use crate::milvus::data::append_column;
use crate::milvus::Rows;
use crate::proto::schema::{CollectionSchema, FieldData, FieldSchema};
use crate::sources::binlog::{self, BinlogError, DecodeBudget, Deletes, ReadLimits, Reservation};
use crate::sources::store::{Store, StoreError};
use meta::{BackupInfo, CollectionBackupInfo, Level, SegmentBackupInfo};

pub use layout::SegmentFiles;

/// The folder of a backup that holds the binlogs, laid out as a Milvus storage root.
pub const BINLOGS: &str = "binlogs";

/// Largest meta file read (segment_meta.json of a large backup runs to megabytes).
const MAX_META_BYTES: u64 = 512 << 20;

/// Errors of reading a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    #[error("{path}: {what}")]
    Meta { path: String, what: String },
    #[error("{location}: no milvus-backup backup here (no meta/backup_meta.json or meta/full_meta.json in it or its sub-folders)")]
    NoBackup { location: String },
    #[error("{location}: {} backups ({}); name the one to read", names.len(), names.join(", "))]
    Ambiguous {
        location: String,
        names: Vec<String>,
    },
    #[error("{location}: no backup named {name:?}; present: {}", present.join(", "))]
    NotFound {
        location: String,
        name: String,
        present: Vec<String>,
    },
    #[error(
        "{location}: backup {name:?} is in milvus-backup's snapshot format, which ferry cannot \
         read yet; make a binlog-format backup (milvus-backup create --format binlog)"
    )]
    SnapshotFormat { location: String, name: String },
    #[error("segment {segment} of collection {collection:?}: no insert logs under any of {}", tried.join(", "))]
    NoSegmentFiles {
        collection: String,
        segment: i64,
        tried: Vec<String>,
    },
    #[error("segment {segment} of collection {collection:?}: field {field:?} (id {field_id}) has no insert log in {dir}")]
    MissingFieldLog {
        collection: String,
        segment: i64,
        field: String,
        field_id: i64,
        /// The segment's insert-log folder, where `<field_id>/` was looked for.
        dir: String,
    },
    #[error("cannot apply deletes: {0}")]
    Deletes(String),
    #[error("segment {segment} of collection {collection:?}: {what}")]
    Segment {
        collection: String,
        segment: i64,
        what: String,
    },
}

impl BackupError {
    pub fn is_retryable(&self) -> bool {
        match self {
            BackupError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// A segment of a backup, as its meta describes it.
pub type BackupSegment = SegmentBackupInfo;

/// A collection of a backup.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupCollection {
    pub id: i64,
    pub db_name: String,
    pub name: String,
    pub schema: CollectionSchema,
    pub shards: i32,
    /// `common.ConsistencyLevel` number.
    pub consistency: i32,
    pub properties: Vec<(String, String)>,
    /// The backup's logical time for this collection (a Milvus TSO).
    pub backup_timestamp: u64,
    pub partitions: Vec<BackupPartition>,
    /// Delete-only segments covering the whole collection (Milvus 2.4+).
    pub l0_segments: Vec<BackupSegment>,
    /// The `$meta` JSON field of a collection with dynamic fields when the schema does not
    /// list it: Milvus 2.3's DescribeCollection, which milvus-backup copies the schema from,
    /// hides it, yet its binlogs are in the backup. Rows read carry it as a column with
    /// `is_dynamic` set.
    pub hidden_dynamic_field: Option<FieldSchema>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupPartition {
    pub id: i64,
    pub name: String,
    pub segments: Vec<BackupSegment>,
}

impl BackupCollection {
    fn from_meta(c: &CollectionBackupInfo, meta_path: &str) -> Result<Self, BackupError> {
        let schema = c.schema.as_ref().ok_or_else(|| BackupError::Meta {
            path: meta_path.to_string(),
            what: format!("collection {:?} has no schema", c.collection_name),
        })?;
        let schema = schema.to_proto().map_err(|what| BackupError::Meta {
            path: meta_path.to_string(),
            what: format!("collection {:?}: {what}", c.collection_name),
        })?;
        let hidden_dynamic_field = hidden_dynamic_field(&schema);
        Ok(BackupCollection {
            id: c.collection_id,
            db_name: c.db_name.clone(),
            name: c.collection_name.clone(),
            schema,
            shards: c.shards_num,
            consistency: c.consistency_level,
            properties: c
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            backup_timestamp: c.backup_timestamp,
            partitions: c
                .partition_backups
                .iter()
                .map(|p| BackupPartition {
                    id: p.partition_id,
                    name: p.partition_name.clone(),
                    segments: p.segment_backups.clone(),
                })
                .collect(),
            l0_segments: c.l0_segments.clone(),
            hidden_dynamic_field,
        })
    }

    /// The fields a segment's rows have: the schema's, plus a hidden `$meta`.
    pub fn row_fields(&self) -> impl Iterator<Item = &FieldSchema> {
        self.schema
            .fields
            .iter()
            .chain(self.hidden_dynamic_field.iter())
    }

    /// Every segment holding rows (L0 segments excluded), partition by partition.
    pub fn segments(&self) -> impl Iterator<Item = &BackupSegment> {
        self.partitions
            .iter()
            .flat_map(|p| p.segments.iter())
            .filter(|s| !s.is_l0)
    }

    /// Every segment that may hold deletes: all of them, L0 included.
    pub fn delete_segments(&self) -> impl Iterator<Item = &BackupSegment> {
        self.partitions
            .iter()
            .flat_map(|p| p.segments.iter())
            .chain(self.l0_segments.iter())
    }

    pub fn pk_field(&self) -> Option<&FieldSchema> {
        self.schema.fields.iter().find(|f| f.is_primary_key)
    }

    /// Rows the meta records, deletes not applied.
    pub fn num_rows(&self) -> i64 {
        self.segments().map(|s| s.num_of_rows).sum()
    }
}

/// The `$meta` field of a collection with dynamic fields when `schema` does not list it (see
/// [`BackupCollection::hidden_dynamic_field`]).
pub fn hidden_dynamic_field(schema: &CollectionSchema) -> Option<FieldSchema> {
    (schema.enable_dynamic_field && !schema.fields.iter().any(|f| f.is_dynamic)).then(|| dynamic_field(schema))
}

/// The `$meta` field Milvus adds to a collection with dynamic fields: JSON, after the user
/// fields, whose ids it assigns in order from 100 (rootcoord's `appendDynamicField`).
fn dynamic_field(schema: &CollectionSchema) -> FieldSchema {
    let last = schema.fields.iter().map(|f| f.field_id).max().unwrap_or(99);
    FieldSchema {
        field_id: last.max(99) + 1,
        name: "$meta".into(),
        description: "dynamic schema".into(),
        data_type: crate::proto::schema::DataType::Json as i32,
        is_dynamic: true,
        ..Default::default()
    }
}

/// One segment's rows, their insert timestamps, and the segment's own deletes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentData {
    pub rows: Rows,
    /// Insert timestamp of each row (system field 1), aligned with `rows`.
    pub timestamps: Vec<u64>,
    pub deletes: Deletes,
}

impl SegmentData {
    /// Drops the rows `deletes` remove (same key, delete timestamp above the row's);
    /// returns how many were dropped.
    pub fn apply_deletes(
        &mut self,
        deletes: &Deletes,
        pk_field: &str,
    ) -> Result<usize, BackupError> {
        let (rows, ts) = apply_deletes(&self.rows, &self.timestamps, pk_field, deletes)?;
        let dropped = self.rows.len() - rows.len();
        self.rows = rows;
        self.timestamps = ts;
        Ok(dropped)
    }
}

/// The rows of `rows` (inserted at `timestamps`) that survive `deletes`, with their
/// timestamps. Fails when the key column is missing or of the other key kind.
pub fn apply_deletes(
    rows: &Rows,
    timestamps: &[u64],
    pk_field: &str,
    deletes: &Deletes,
) -> Result<(Rows, Vec<u64>), BackupError> {
    if rows.is_empty() || deletes.is_empty() {
        return Ok((rows.clone(), timestamps.to_vec()));
    }
    let pks = rows.primary_keys(pk_field).ok_or_else(|| {
        BackupError::Deletes(format!("rows have no Int64 or VarChar column {pk_field:?}"))
    })?;
    if std::mem::discriminant(&pks) != std::mem::discriminant(&deletes.pks) {
        return Err(BackupError::Deletes(format!(
            "deletes and column {pk_field:?} have different key types"
        )));
    }
    if timestamps.len() != rows.len() {
        return Err(BackupError::Deletes(format!(
            "{} timestamps for {} rows",
            timestamps.len(),
            rows.len()
        )));
    }
    let keep = binlog::surviving_rows(&pks, timestamps, deletes);
    if keep.len() == rows.len() {
        return Ok((rows.clone(), timestamps.to_vec()));
    }
    Ok(select_rows(rows, timestamps, &keep))
}

/// Rows `keep` of `rows` with their timestamps.
fn select_rows(rows: &Rows, timestamps: &[u64], keep: &[usize]) -> (Rows, Vec<u64>) {
    (rows.select(keep), keep.iter().map(|&i| timestamps[i]).collect())
}

/// A milvus-backup backup, opened.
#[derive(Debug, Clone)]
pub struct BackupSource {
    /// Where the binlogs are: a backup's `binlogs` folder, or a Milvus server's storage root.
    store: Store,
    info: BackupInfo,
    collections: Vec<BackupCollection>,
    limits: ReadLimits,
    /// Shared by every clone: what all segments being read may decode to together.
    budget: DecodeBudget,
    /// Read as of this timestamp: rows inserted and deletes made after it are left out.
    as_of: Option<u64>,
}

impl BackupSource {
    /// Opens backup `name` under `location` (a local path or URL, see
    /// [`crate::sources::store`]). Without a name, `location` may be the backup folder
    /// itself, or a root holding exactly one backup.
    pub async fn open(location: &str, name: Option<&str>) -> Result<BackupSource, BackupError> {
        BackupSource::open_store(Store::open(location)?, name).await
    }

    /// As [`BackupSource::open`], on an already opened root folder.
    pub async fn open_store(root: Store, name: Option<&str>) -> Result<BackupSource, BackupError> {
        let store = match name {
            Some(n) => {
                let dir = root.sub(n);
                if !has_meta(&dir).await? {
                    return Err(BackupError::NotFound {
                        location: root.display(""),
                        name: n.to_string(),
                        present: list_backups(&root).await?,
                    });
                }
                dir
            }
            None if has_meta(&root).await? => root,
            None => {
                let names = list_backups(&root).await?;
                match names.as_slice() {
                    [] => {
                        return Err(BackupError::NoBackup {
                            location: root.display(""),
                        })
                    }
                    [one] => root.sub(one),
                    _ => {
                        return Err(BackupError::Ambiguous {
                            location: root.display(""),
                            names,
                        })
                    }
                }
            }
        };
        let info = read_meta(&store).await?;
        if info.format == "snapshot" {
            return Err(BackupError::SnapshotFormat {
                location: store.display(""),
                name: info.name.clone(),
            });
        }
        let meta_path = store.display("meta");
        BackupSource::new(store.sub(BINLOGS), info, &meta_path)
    }

    /// The segments `collections` list, read from a Milvus server's own storage root
    /// `storage` (see [`crate::sources::storage`]) as of timestamp `as_of`; `name` names
    /// the read in state keys.
    pub fn live(storage: Store, name: &str, collections: Vec<BackupCollection>, as_of: u64) -> BackupSource {
        BackupSource {
            store: storage,
            info: BackupInfo { name: name.to_string(), ..Default::default() },
            collections,
            limits: ReadLimits::default(),
            budget: DecodeBudget::default(),
            as_of: Some(as_of),
        }
    }

    fn new(store: Store, info: BackupInfo, meta_path: &str) -> Result<BackupSource, BackupError> {
        let collections = info
            .collection_backups
            .iter()
            .map(|c| BackupCollection::from_meta(c, meta_path))
            .collect::<Result<_, _>>()?;
        Ok(BackupSource {
            store,
            info,
            collections,
            limits: ReadLimits::default(),
            budget: DecodeBudget::default(),
            as_of: None,
        })
    }

    /// Replaces the decode budget (and with it the per-file limit: all of it).
    pub fn with_budget(mut self, budget: DecodeBudget) -> Self {
        self.limits = budget.limits();
        self.budget = budget;
        self
    }

    pub fn budget(&self) -> &DecodeBudget {
        &self.budget
    }

    /// Reserves `need` bytes of the budget for `what`, waiting while others hold it.
    async fn reserve(&self, need: u64, what: String) -> Result<Reservation, BackupError> {
        self.budget.reserve(need).await.ok_or_else(|| {
            BinlogError::OverBudget {
                file: what,
                need,
                budget: self.budget.usable(),
            }
            .into()
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The raw meta.
    pub fn info(&self) -> &BackupInfo {
        &self.info
    }

    pub fn collections(&self) -> &[BackupCollection] {
        &self.collections
    }

    pub fn collection(&self, name: &str) -> Option<&BackupCollection> {
        self.collections.iter().find(|c| c.name == name)
    }

    /// Where a segment's files are.
    pub async fn segment_files(
        &self,
        coll: &BackupCollection,
        seg: &BackupSegment,
    ) -> Result<SegmentFiles, BackupError> {
        layout::locate(&self.store, &coll.name, seg).await
    }

    async fn fetch(&self, path: &str) -> Result<(String, Bytes), BackupError> {
        let bytes = self.store.get(path, self.limits.max_decoded_bytes).await?;
        Ok((self.store.display(path), bytes))
    }

    /// Reads a segment: every schema field, row timestamps, and its own deletes.
    pub async fn read_segment(
        &self,
        coll: &BackupCollection,
        seg: &BackupSegment,
    ) -> Result<SegmentData, BackupError> {
        Ok(self.read_segment_held(coll, seg).await?.0)
    }

    /// As [`BackupSource::read_segment`], with the part of the decode budget the rows hold:
    /// keep it until the rows are dropped or handed on. All the segment's insert logs are
    /// fetched and their page headers checked first, then the budget they need is reserved
    /// at once (so segments read in parallel never hold part of it while waiting for more).
    pub async fn read_segment_held(
        &self,
        coll: &BackupCollection,
        seg: &BackupSegment,
    ) -> Result<(SegmentData, Reservation), BackupError> {
        let files = self.segment_files(coll, seg).await?;
        let seg_err = |what: String| BackupError::Segment {
            collection: coll.name.clone(),
            segment: seg.segment_id,
            what,
        };
        let deletes = self.read_delta_files(&files, &seg_err).await?;
        if files.fields.is_empty() {
            let data = SegmentData {
                deletes,
                ..Default::default()
            };
            return Ok((data, Reservation::default()));
        }
        let dir = self.store.display(&layout::insert_dir(
            seg.collection_id,
            seg.partition_id,
            files.group,
            seg.segment_id,
        ));
        let missing = |name: &str, field_id: i64| BackupError::MissingFieldLog {
            collection: coll.name.clone(),
            segment: seg.segment_id,
            field: name.to_string(),
            field_id,
            dir: dir.clone(),
        };
        let ts_field = binlog::timestamp_field();
        let mut fields = coll.row_fields().collect::<Vec<_>>();
        fields.push(&ts_field);
        let mut fetched = Vec::with_capacity(fields.len());
        let mut need = 0u64;
        // A field added after this segment was written (Milvus 2.6 AddCollectionField) has
        // no log in it: nullable or defaulted, its rows are null (the target then gives them
        // the default), as Milvus reads them.
        let mut added = Vec::new();
        fields.retain(|f| {
            let absent = !files.fields.contains_key(&f.field_id) && (f.nullable || f.default_value.is_some());
            if absent {
                added.push(*f);
            }
            !absent
        });
        for field in &fields {
            let logs = files
                .fields
                .get(&field.field_id)
                .ok_or_else(|| missing(&field.name, field.field_id))?;
            let mut parts = Vec::with_capacity(logs.len());
            for log in logs {
                let (label, bytes) = self.fetch(&log.path).await?;
                need = need.saturating_add(binlog::insert_log_reservation(
                    &label,
                    bytes.clone(),
                    field,
                    &self.limits,
                )?);
                parts.push((label, bytes));
            }
            fetched.push(parts);
        }
        let held = self
            .reserve(need, format!("{dir} (segment {})", seg.segment_id))
            .await?;
        let ts_parts = fetched.pop().unwrap_or_default();
        let mut columns = Vec::with_capacity(fields.len());
        for (field, parts) in fields.iter().zip(fetched) {
            let mut column = FieldData::default();
            for (label, bytes) in parts {
                let part = binlog::read_insert_log(&label, bytes, field, &self.limits)?;
                append_column(&mut column, &part).map_err(|e| seg_err(e.to_string()))?;
            }
            columns.push(column);
        }
        let mut timestamps = Vec::new();
        for (label, bytes) in ts_parts {
            timestamps.extend(binlog::read_timestamps(&label, bytes, &self.limits)?);
        }
        for field in added {
            let n = columns.first().map(crate::milvus::data::column_rows).unwrap_or(seg.num_of_rows as usize);
            columns.push(crate::milvus::data::null_column(field, n).ok_or_else(|| missing(&field.name, field.field_id))?);
        }
        let rows = Rows::new(columns).map_err(|e| seg_err(e.to_string()))?;
        if rows.len() as i64 != seg.num_of_rows || timestamps.len() != rows.len() {
            return Err(seg_err(format!(
                "the meta records {} rows, the insert logs hold {} rows and {} timestamps",
                seg.num_of_rows,
                rows.len(),
                timestamps.len()
            )));
        }
        let mut data = SegmentData {
            rows,
            timestamps,
            deletes,
        };
        if let Some(as_of) = self.as_of {
            if data.timestamps.iter().any(|&t| t > as_of) {
                let keep: Vec<usize> = (0..data.timestamps.len())
                    .filter(|&i| data.timestamps[i] <= as_of)
                    .collect();
                (data.rows, data.timestamps) = select_rows(&data.rows, &data.timestamps, &keep);
            }
        }
        Ok((data, held))
    }

    async fn read_delta_files(
        &self,
        files: &SegmentFiles,
        seg_err: &impl Fn(String) -> BackupError,
    ) -> Result<Deletes, BackupError> {
        let mut deletes = Deletes::default();
        for log in &files.deltas {
            let (label, bytes) = self.fetch(&log.path).await?;
            let need = binlog::delta_log_reservation(&label, bytes.clone(), &self.limits)?;
            let held = self.reserve(need, label.clone()).await?;
            let mut d = binlog::read_delta_log(&label, bytes, &self.limits)?;
            drop(held);
            if let Some(as_of) = self.as_of {
                d.retain_up_to(as_of);
            }
            if !deletes.extend(&d) {
                return Err(seg_err(format!(
                    "{label}: key type differs from other delta logs"
                )));
            }
        }
        Ok(deletes)
    }

    /// A segment's deletes only.
    pub async fn read_deletes(
        &self,
        coll: &BackupCollection,
        seg: &BackupSegment,
    ) -> Result<Deletes, BackupError> {
        let files = self.segment_files(coll, seg).await?;
        let seg_err = |what: String| BackupError::Segment {
            collection: coll.name.clone(),
            segment: seg.segment_id,
            what,
        };
        self.read_delta_files(&files, &seg_err).await
    }

    /// Every delete of the collection: all segments' delta logs, L0 segments included.
    pub async fn collection_deletes(
        &self,
        coll: &BackupCollection,
    ) -> Result<Deletes, BackupError> {
        Ok(self.collection_deletes_held(coll).await?.0)
    }

    /// As [`BackupSource::collection_deletes`], with the part of the decode budget they
    /// hold, pinned (see [`DecodeBudget::pin`]): keep it while the collection's segments
    /// are copied. Deletes that outgrow the budget are an error naming the collection.
    pub async fn collection_deletes_held(
        &self,
        coll: &BackupCollection,
    ) -> Result<(Deletes, Vec<Reservation>), BackupError> {
        let mut all = Deletes::default();
        let mut held = Vec::new();
        for seg in coll.delete_segments() {
            let err = |what: String| BackupError::Segment { collection: coll.name.clone(), segment: seg.segment_id, what };
            let so_far: u64 = held.iter().map(Reservation::bytes).sum();
            let d = match self.read_deletes(coll, seg).await {
                Ok(d) => d,
                // Decoding a delta log takes from the budget too, beside what is pinned.
                Err(e) if so_far > 0 => {
                    return Err(err(format!("{e} (the collection's deletes read so far hold {so_far} bytes of it)")))
                }
                Err(e) => return Err(e),
            };
            let more = d.heap_bytes();
            match self.budget.pin(more).await {
                Some(r) => held.push(r),
                None => {
                    return Err(err(format!(
                        "the collection's deletes need {} bytes with this segment's, more than the {} bytes of the decode budget left (copy.decode_budget_bytes = {})",
                        so_far + more,
                        self.budget.usable() + so_far,
                        self.budget.total()
                    )))
                }
            }
            if !all.extend(&d) {
                return Err(err("delete key type differs from the collection's other deletes".into()));
            }
        }
        Ok((all, held))
    }
}

async fn has_meta(dir: &Store) -> Result<bool, BackupError> {
    Ok(dir.size("meta/backup_meta.json").await?.is_some()
        || dir.size("meta/full_meta.json").await?.is_some())
}

/// Names of the backups directly under `root`.
pub async fn list_backups(root: &Store) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    for name in root.list_dirs("").await? {
        if has_meta(&root.sub(&name)).await? {
            out.push(name);
        }
    }
    Ok(out)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Store,
    rel: &str,
) -> Result<T, BackupError> {
    let bytes = dir.get(rel, MAX_META_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| BackupError::Meta {
        path: dir.display(rel),
        what: e.to_string(),
    })
}

/// Reads `meta/full_meta.json`, or the four level files when it is absent.
pub async fn read_meta(dir: &Store) -> Result<BackupInfo, BackupError> {
    if dir.size("meta/full_meta.json").await?.is_some() {
        return read_json(dir, "meta/full_meta.json").await;
    }
    let top: BackupInfo = read_json(dir, "meta/backup_meta.json").await?;
    let colls: Level<CollectionBackupInfo> = read_json(dir, "meta/collection_meta.json").await?;
    let parts: Level<meta::PartitionBackupInfo> =
        read_json(dir, "meta/partition_meta.json").await?;
    let segs: Level<SegmentBackupInfo> = read_json(dir, "meta/segment_meta.json").await?;
    Ok(BackupInfo::from_levels(
        top,
        colls.infos,
        parts.infos,
        segs.infos,
    ))
}

#[cfg(test)]
mod tests;
