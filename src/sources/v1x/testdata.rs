//! Writes Milvus 1.x data files and `meta.json`, for tests and fixtures.

use std::path::Path;

use super::{MetaJson, V1xCollection, V1xSegment};

fn with_count(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A `.rv` file of float vectors (rows × dim values, row-major).
pub fn rv_bytes_f32(values: &[f32]) -> Vec<u8> {
    with_count(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// A `.rv` file of binary vectors (rows × dim/8 bytes).
pub fn rv_bytes_binary(bytes: &[u8]) -> Vec<u8> {
    with_count(bytes.to_vec())
}

/// A `.uid` file.
pub fn uid_bytes(ids: &[i64]) -> Vec<u8> {
    with_count(ids.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// A `deleted_docs` file.
pub fn deleted_bytes(offsets: &[i32]) -> Vec<u8> {
    with_count(offsets.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Writes one segment's files under `<root>/tables/<collection>/<segment>/`; `rv` is a whole
/// `.rv` file (see [`rv_bytes_f32`], [`rv_bytes_binary`]); `deleted` of `None` writes no
/// `deleted_docs` file.
pub fn write_segment(
    root: &Path,
    collection: &str,
    segment: &str,
    rv: &[u8],
    ids: &[i64],
    deleted: Option<&[i32]>,
) -> std::io::Result<V1xSegment> {
    let dir = root.join("tables").join(collection).join(segment);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{segment}.rv")), rv)?;
    std::fs::write(dir.join(format!("{segment}.uid")), uid_bytes(ids))?;
    if let Some(d) = deleted {
        std::fs::write(dir.join("deleted_docs"), deleted_bytes(d))?;
    }
    Ok(V1xSegment {
        collection: collection.into(),
        segment: segment.into(),
        dim: 0,
        rows: ids.len().saturating_sub(deleted.map_or(0, <[i32]>::len)) as i64,
        file_size: rv.len() as i64,
    })
}

/// Writes `<root>/meta.json` for `collections`, filling segment dims and row totals.
pub fn write_meta(root: &Path, collections: Vec<V1xCollection>) -> std::io::Result<MetaJson> {
    let mut meta = MetaJson {
        collections,
        rows: 0,
    };
    for c in &mut meta.collections {
        for s in &mut c.segments {
            s.dim = c.dim;
        }
        c.rows = c.segments.iter().map(|s| s.rows).sum();
        meta.rows += c.rows;
    }
    let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
    std::fs::write(root.join("meta.json"), json)?;
    Ok(meta)
}
