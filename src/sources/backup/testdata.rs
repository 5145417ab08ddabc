//! Builds milvus-backup folders on local disk, for tests: meta files, segments written from
//! `Rows`, and segments copied from the binlogs a real Milvus wrote into its data dir.
//!
//! An integration test against a real Milvus 2.3 flushes a collection, then lays it out as
//! milvus-backup would: for each segment [`copy_milvus_segment`] (found with
//! [`find_milvus_segment`]) and finally [`write_meta`] with the collection's schema.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;

use super::layout::{delta_dir, insert_dir};
use super::BINLOGS;
use super::meta::{BackupInfo, BinlogInfo, FieldBinlog, SegmentBackupInfo};
use crate::milvus::{PkValue, Rows};
use crate::proto::schema::{CollectionSchema, DataType, FieldSchema};
use crate::sources::binlog::testdata::{self as bt, SegmentIds};
use crate::sources::binlog::{self, ReadLimits};

/// Writes `<dir>/meta/`: the four level files, plus `full_meta.json` when `full`.
pub fn write_meta(dir: &Path, info: &BackupInfo, full: bool) -> anyhow::Result<()> {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta)?;
    let (top, colls, parts, segs) = info.to_levels();
    std::fs::write(meta.join("backup_meta.json"), serde_json::to_vec(&top)?)?;
    std::fs::write(
        meta.join("collection_meta.json"),
        serde_json::to_vec(&colls)?,
    )?;
    std::fs::write(
        meta.join("partition_meta.json"),
        serde_json::to_vec(&parts)?,
    )?;
    std::fs::write(meta.join("segment_meta.json"), serde_json::to_vec(&segs)?)?;
    if full {
        std::fs::write(meta.join("full_meta.json"), serde_json::to_vec(info)?)?;
    }
    Ok(())
}

/// What to write for one segment.
pub struct SegmentSpec<'a> {
    pub collection_id: i64,
    pub partition_id: i64,
    /// `None` writes the old layout without a group level.
    pub group: Option<i64>,
    pub segment_id: i64,
    pub schema: &'a CollectionSchema,
    /// One column per schema field.
    pub rows: &'a Rows,
    pub timestamps: &'a [u64],
    pub deletes: &'a [(PkValue, u64)],
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

/// Writes a segment's insert logs (every schema field, RowID and Timestamp) and, when there
/// are deletes, a delta log; returns the segment's meta entry with source-style log paths.
pub fn write_segment(dir: &Path, spec: &SegmentSpec<'_>) -> anyhow::Result<SegmentBackupInfo> {
    let (c, p, s) = (spec.collection_id, spec.partition_id, spec.segment_id);
    let ids = SegmentIds {
        collection_id: c,
        partition_id: p,
        segment_id: s,
    };
    let lo = spec.timestamps.iter().copied().min().unwrap_or(1);
    let hi = spec.timestamps.iter().copied().max().unwrap_or(1);
    let idir = dir.join(BINLOGS).join(insert_dir(c, p, spec.group, s));
    let mut binlogs = Vec::new();
    let mut log_id = 440_000_000_000_000_000 + s * 1000;
    let mut add = |field_id: i64, bytes: Vec<u8>| -> anyhow::Result<()> {
        log_id += 1;
        write_file(&idir.join(format!("{field_id}/{log_id}")), &bytes)?;
        binlogs.push(FieldBinlog {
            field_id,
            binlogs: vec![BinlogInfo {
                entries_num: spec.rows.len() as i64,
                timestamp_from: lo,
                timestamp_to: hi,
                log_path: format!("files/insert_log/{c}/{p}/{s}/{field_id}/{log_id}"),
                log_size: bytes.len() as i64,
                log_id: 0,
            }],
        });
        Ok(())
    };
    let row_ids = FieldSchema {
        field_id: binlog::ROW_ID_FIELD_ID,
        name: "RowID".into(),
        data_type: DataType::Int64 as i32,
        ..Default::default()
    };
    let row_id_col = crate::proto::schema::FieldData {
        r#type: DataType::Int64 as i32,
        field: Some(crate::proto::schema::field_data::Field::Scalars(
            crate::proto::schema::ScalarField {
                data: Some(crate::proto::schema::scalar_field::Data::LongData(
                    crate::proto::schema::LongArray {
                        data: (0..spec.rows.len() as i64).collect(),
                    },
                )),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    add(0, bt::insert_log(&row_ids, &row_id_col, ids, (lo, hi))?)?;
    add(1, bt::timestamps_log(spec.timestamps, ids)?)?;
    for f in &spec.schema.fields {
        let Some(col) = spec.rows.column(&f.name) else {
            bail!("rows have no column {:?}", f.name);
        };
        add(f.field_id, bt::insert_log(f, col, ids, (lo, hi))?)?;
    }
    let mut deltalogs = Vec::new();
    if !spec.deletes.is_empty() {
        let records: Vec<String> = spec
            .deletes
            .iter()
            .map(|(pk, ts)| bt::delete_record(pk, *ts))
            .collect();
        let bytes = bt::delta_log(&records, ids, (lo, hi))?;
        let log_id = 450_000_000_000_000_000 + s;
        write_file(
            &dir.join(BINLOGS).join(delta_dir(c, p, spec.group, s))
                .join(log_id.to_string()),
            &bytes,
        )?;
        deltalogs.push(FieldBinlog {
            field_id: 0,
            binlogs: vec![BinlogInfo {
                entries_num: records.len() as i64,
                log_path: format!("files/delta_log/{c}/{p}/{s}/{log_id}"),
                log_size: bytes.len() as i64,
                ..Default::default()
            }],
        });
    }
    Ok(SegmentBackupInfo {
        segment_id: s,
        collection_id: c,
        partition_id: p,
        num_of_rows: spec.rows.len() as i64,
        binlogs,
        deltalogs,
        group_id: spec.group.unwrap_or(0),
        backuped: true,
        ..Default::default()
    })
}

/// A segment's folders in a Milvus data dir.
#[derive(Debug, Clone, PartialEq)]
pub struct MilvusSegmentDirs {
    /// `.../insert_log/<coll>/<part>/<seg>` (holds `<field>/<log>` files).
    pub insert: PathBuf,
    /// `.../delta_log/<coll>/<part>/<seg>` when the segment has deletes.
    pub delta: Option<PathBuf>,
}

/// Finds a segment's binlog folders under a Milvus data dir (local storage writes them
/// under `<localStorage.path>[/<rootPath>]/insert_log/...`; the `insert_log` folder is
/// searched for a few levels down).
pub fn find_milvus_segment(
    data_dir: &Path,
    collection_id: i64,
    partition_id: i64,
    segment_id: i64,
) -> std::io::Result<Option<MilvusSegmentDirs>> {
    let rel = format!("{collection_id}/{partition_id}/{segment_id}");
    let mut stack = vec![(data_dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let candidate = dir.join("insert_log").join(&rel);
        if candidate.is_dir() {
            let delta = dir.join("delta_log").join(&rel);
            return Ok(Some(MilvusSegmentDirs {
                insert: candidate,
                delta: delta.is_dir().then_some(delta),
            }));
        }
        if depth < 4 {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
    }
    Ok(None)
}

fn numeric_children(dir: &Path) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Copies a segment a real Milvus flushed into `backup_dir` with milvus-backup's layout and
/// returns its meta entry (row count read from the timestamp logs).
pub fn copy_milvus_segment(
    data_dir: &Path,
    backup_dir: &Path,
    collection_id: i64,
    partition_id: i64,
    group: Option<i64>,
    segment_id: i64,
) -> anyhow::Result<SegmentBackupInfo> {
    let Some(src) = find_milvus_segment(data_dir, collection_id, partition_id, segment_id)? else {
        bail!(
            "no insert_log/{collection_id}/{partition_id}/{segment_id} under {}",
            data_dir.display()
        );
    };
    let (c, p, s) = (collection_id, partition_id, segment_id);
    let mut seg = SegmentBackupInfo {
        segment_id: s,
        collection_id: c,
        partition_id: p,
        group_id: group.unwrap_or(0),
        backuped: true,
        ..Default::default()
    };
    for (field_id, field_dir) in numeric_children(&src.insert)? {
        let mut fb = FieldBinlog {
            field_id,
            binlogs: Vec::new(),
        };
        for (log_id, file) in numeric_children(&field_dir)? {
            let bytes = std::fs::read(&file)?;
            if field_id == binlog::TIMESTAMP_FIELD_ID {
                let ts = binlog::read_timestamps(
                    &file.display().to_string(),
                    Bytes::from(bytes.clone()),
                    &ReadLimits::default(),
                )?;
                seg.num_of_rows += ts.len() as i64;
            }
            let dest = backup_dir
                .join(BINLOGS)
                .join(insert_dir(c, p, group, s))
                .join(format!("{field_id}/{log_id}"));
            write_file(&dest, &bytes)?;
            seg.size += bytes.len() as i64;
            fb.binlogs.push(BinlogInfo {
                log_path: format!("files/insert_log/{c}/{p}/{s}/{field_id}/{log_id}"),
                log_size: bytes.len() as i64,
                ..Default::default()
            });
        }
        seg.binlogs.push(fb);
    }
    if let Some(delta) = &src.delta {
        let mut fb = FieldBinlog::default();
        for (log_id, file) in numeric_children(delta)? {
            let bytes = std::fs::read(&file)?;
            write_file(
                &backup_dir
                    .join(BINLOGS)
                    .join(delta_dir(c, p, group, s))
                    .join(log_id.to_string()),
                &bytes,
            )?;
            seg.size += bytes.len() as i64;
            fb.binlogs.push(BinlogInfo {
                log_path: format!("files/delta_log/{c}/{p}/{s}/{log_id}"),
                log_size: bytes.len() as i64,
                ..Default::default()
            });
        }
        seg.deltalogs.push(fb);
    }
    Ok(seg)
}
