//! Where a segment's files sit inside a backup's `binlogs` folder (or, without the group
//! level, a Milvus server's own storage root):
//!
//! ```text
//! insert_log/<collID>/<partID>/<groupID>/<segID>/<fieldID>/<logID>
//! delta_log/<collID>/<partID>/<groupID>/<segID>/<logID>
//! ```
//!
//! Backups made before milvus-backup grouped segments have no `<groupID>` level; some v0.4
//! versions used the segment id as the group; L0 delta logs (partition -1) never have one.
//! The meta's `log_path` values point into the source bucket, so paths are built from the
//! ids, and the layout is found by listing the candidate folders in that order: the meta's
//! `group_id`, the segment id, no group.

use std::collections::BTreeMap;

use super::meta::{FieldBinlog, SegmentBackupInfo};
use super::BackupError;
use crate::sources::store::Store;

/// The insert-log folder of a segment, with or without a group level.
pub fn insert_dir(coll: i64, part: i64, group: Option<i64>, seg: i64) -> String {
    match group {
        Some(g) => format!("insert_log/{coll}/{part}/{g}/{seg}"),
        None => format!("insert_log/{coll}/{part}/{seg}"),
    }
}

/// The delta-log folder of a segment, with or without a group level.
pub fn delta_dir(coll: i64, part: i64, group: Option<i64>, seg: i64) -> String {
    match group {
        Some(g) => format!("delta_log/{coll}/{part}/{g}/{seg}"),
        None => format!("delta_log/{coll}/{part}/{seg}"),
    }
}

/// Group levels to try for a segment, most likely first.
pub fn group_candidates(seg: &SegmentBackupInfo) -> Vec<Option<i64>> {
    let mut out = Vec::with_capacity(3);
    for g in [Some(seg.group_id), Some(seg.segment_id), None] {
        if g != Some(0) && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// One log file: its path relative to the backup folder, size and log id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: String,
    pub size: u64,
    pub log_id: i64,
}

/// A segment's files, in row order per field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentFiles {
    /// The group level the files were found under (`None`: the old layout).
    pub group: Option<i64>,
    /// Insert logs by field id (system fields 0 and 1 included).
    pub fields: BTreeMap<i64, Vec<LogFile>>,
    pub deltas: Vec<LogFile>,
}

/// Finds a segment's insert and delta logs under `store` (a backup's `binlogs` folder).
pub async fn locate(
    store: &Store,
    collection: &str,
    seg: &SegmentBackupInfo,
) -> Result<SegmentFiles, BackupError> {
    let (c, p, s) = (seg.collection_id, seg.partition_id, seg.segment_id);
    let mut candidates = group_candidates(seg);
    let mut out = SegmentFiles::default();
    let mut tried = Vec::new();
    for &g in &candidates {
        let dir = insert_dir(c, p, g, s);
        for (rel, size) in store.list_files(&dir).await? {
            let mut parts = rel.split('/');
            let (Some(f), Some(l), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(field), Ok(log_id)) = (f.parse::<i64>(), l.parse::<i64>()) else {
                continue;
            };
            out.fields.entry(field).or_default().push(LogFile {
                path: format!("{dir}/{rel}"),
                size,
                log_id,
            });
        }
        tried.push(store.display(&dir));
        if !out.fields.is_empty() {
            out.group = g;
            break;
        }
    }
    if out.fields.is_empty() && seg.num_of_rows > 0 && !seg.is_l0 {
        return Err(BackupError::NoSegmentFiles {
            collection: collection.to_string(),
            segment: s,
            tried,
        });
    }
    // Deltas sit beside the inserts when those were found; try that level first.
    if !out.fields.is_empty() {
        candidates.retain(|g| *g != out.group);
        candidates.insert(0, out.group);
    }
    for &g in &candidates {
        let dir = delta_dir(c, p, g, s);
        for (rel, size) in store.list_files(&dir).await? {
            if let Ok(log_id) = rel.parse::<i64>() {
                out.deltas.push(LogFile {
                    path: format!("{dir}/{rel}"),
                    size,
                    log_id,
                });
            }
        }
        if !out.deltas.is_empty() {
            break;
        }
    }

    for (field, logs) in out.fields.iter_mut() {
        let listed = seg.binlogs.iter().filter(|b| b.field_id == *field);
        order(collection, s, &format!("field {field}"), logs, listed)?;
    }
    order(
        collection,
        s,
        "delta",
        &mut out.deltas,
        seg.deltalogs.iter(),
    )?;
    Ok(out)
}

/// Puts `logs` in the order the meta lists them (that order is row order); logs the meta
/// does not list keep log-id order after them. A log the meta lists must be present.
fn order<'a>(
    collection: &str,
    segment: i64,
    what: &str,
    logs: &mut Vec<LogFile>,
    listed: impl Iterator<Item = &'a FieldBinlog>,
) -> Result<(), BackupError> {
    logs.sort_by_key(|l| l.log_id);
    let ids: Vec<i64> = listed
        .flat_map(|fb| fb.binlogs.iter().filter_map(|b| b.id()))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut ordered = Vec::with_capacity(logs.len());
    for id in &ids {
        let i = logs
            .iter()
            .position(|l| l.log_id == *id)
            .ok_or_else(|| BackupError::Segment {
                collection: collection.to_string(),
                segment,
                what: format!("{what} log {id} is listed in the meta but missing from the backup"),
            })?;
        ordered.push(logs.remove(i));
    }
    ordered.append(logs);
    *logs = ordered;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_put_the_meta_group_first_and_skip_zero() {
        let seg = |g| SegmentBackupInfo {
            segment_id: 9,
            group_id: g,
            ..Default::default()
        };
        assert_eq!(group_candidates(&seg(3)), vec![Some(3), Some(9), None]);
        assert_eq!(group_candidates(&seg(0)), vec![Some(9), None]);
        assert_eq!(group_candidates(&seg(9)), vec![Some(9), None]);
        assert_eq!(insert_dir(1, 2, Some(3), 4), "insert_log/1/2/3/4");
        assert_eq!(delta_dir(1, -1, None, 4), "delta_log/1/-1/4");
    }
}
