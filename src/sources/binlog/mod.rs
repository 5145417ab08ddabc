//! Milvus 2.x binlog files (storage format v1), read from bytes.
//!
//! # Format (little-endian, as written by Milvus 2.3 `internal/storage`)
//!
//! ```text
//! i32 magic = 0xfffabc
//! descriptor event:
//!   header (17 bytes): u64 timestamp, i8 type_code = 0, i32 event_length, i32 next_position
//!   i64 collection_id, i64 partition_id, i64 segment_id, i64 field_id,
//!   u64 start_ts, u64 end_ts, i32 payload_data_type          (52 bytes)
//!   u8 post_header_lengths[N]   (N = 8 event types in 2.3: one fixed-part size per type)
//!   i32 extra_length, then extra_length bytes of JSON ({"original_size": "...", ...})
//! data events, from descriptor.next_position on, each:
//!   header (17 bytes), u64 start_ts, u64 end_ts,
//!   payload: one whole Parquet file with one column, up to event start + event_length
//! ```
//!
//! Insert logs hold one field's values (type code 1); delta logs hold deletes as strings
//! (type code 2, see [`delta`]). Event lengths count the header; `next_position` is an
//! absolute offset. The reader follows `next_position` rather than assuming events are
//! adjacent, and derives N from the descriptor's own length so a newer writer with more event
//! types still parses.
//!
//! Milvus 2.4+ also writes logs through `BinlogStreamWriter` (`internal/storage`: compaction,
//! and later versions' flushes), whose data event leaves `next_position` at -1 (unset) and
//! its timestamps at 1. Milvus's own reader never looks at `next_position` and reads events
//! back to back, so -1 is read as "the next event follows this one". Descriptor extras of
//! 2.4+ also carry `nullable` (a JSON bool); a descriptor of a collection in a 2.6
//! encryption zone carries `edek` and `encryption_zone`, and everything after it is
//! ciphertext: refused here.
//!
//! # Invariants
//!
//! - Input is untrusted. Every length read from the file is checked against the bytes that
//!   are actually there before it is used, so a corrupt file fails with an error naming the
//!   file, the byte offset and the problem; nothing is allocated from a length field.
//! - Payload slices share the input buffer ([`Bytes`]). Before a payload is decoded, its
//!   column's physical type and width are checked against the field, and what it can
//!   decode to is bounded from its page headers (a dictionary page lets a few bytes of
//!   indices repeat long values); that bound must fit [`ReadLimits`] (per file), batches
//!   are sized from what is left, and readers that hold decoded rows reserve it first from
//!   a process-wide [`DecodeBudget`].
//! - The descriptor's payload type must match the schema field the caller expects, and a
//!   Parquet column whose Arrow type cannot hold that Milvus type is rejected, never coerced.
//! - Payloads are decoded by the `parquet` crate, which is trusted less than the framing:
//!   its footer and page headers are checked first (chunk ranges inside the payload,
//!   declared uncompressed sizes within the limit, see `pages`), an embedded Arrow IPC
//!   schema is never parsed, and an assertion the crate hits on a corrupt page is caught
//!   and reported as a payload error.

pub mod delta;
mod pages;
mod payload;
pub mod testdata;

use bytes::Bytes;

use crate::proto::schema::{DataType, FieldData, FieldSchema};

pub use delta::{delta_log_reservation, read_delta_log, surviving_rows, Deletes};

/// First four bytes of every binlog.
pub const MAGIC: i32 = 0xfffabc;
/// Event header: u64 timestamp, i8 type code, i32 event length, i32 next position.
pub const HEADER_LEN: usize = 17;
/// Descriptor fixed part: four i64 ids, two u64 timestamps, i32 payload type.
pub const DESCRIPTOR_FIX_LEN: usize = 52;
/// Insert/Delete fixed part: u64 start_ts, u64 end_ts.
pub const DATA_FIX_LEN: usize = 16;
/// Post-header lengths Milvus 2.3 writes (Descriptor..IndexFile).
pub const POST_HEADER_COUNT: usize = 8;

/// System field holding each row's insert timestamp.
pub const TIMESTAMP_FIELD_ID: i64 = 1;
/// System field holding Milvus's internal row ids (not migrated).
pub const ROW_ID_FIELD_ID: i64 = 0;

/// A `next_position` the writer left unset (Milvus 2.4+ `BinlogStreamWriter`).
const UNSET_POSITION: i64 = -1;

/// Descriptor extras of an encrypted binlog (Milvus 2.6 encryption zones).
const ENCRYPTION_KEYS: [&str; 2] = ["edek", "encryption_zone"];

/// Event type codes.
pub const INSERT_EVENT: i8 = 1;
pub const DELETE_EVENT: i8 = 2;

/// Errors of reading a binlog; each names the file, the byte offset, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    #[error("{file}: byte 0: bad magic number {found:#x}, not a Milvus binlog (want 0xfffabc)")]
    BadMagic { file: String, found: i32 },
    #[error("{file}: byte {offset}: truncated {what}: needs {need} bytes, {have} left")]
    Truncated {
        file: String,
        offset: usize,
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error(
        "{file}: byte {offset}: event_length {length} reaches beyond the end of the file \
         ({file_len} bytes)"
    )]
    EventBeyondEnd {
        file: String,
        offset: usize,
        length: i64,
        file_len: usize,
    },
    #[error("{file}: byte {offset}: {what}")]
    BadEvent {
        file: String,
        offset: usize,
        what: String,
    },
    #[error(
        "{file}: byte {offset}: payload holds {got} but field {field:?} (id {field_id}) is {want}"
    )]
    TypeMismatch {
        file: String,
        offset: usize,
        field: String,
        field_id: i64,
        got: String,
        want: String,
    },
    #[error("{file}: byte {offset}: parquet payload: {source}")]
    Parquet {
        file: String,
        offset: usize,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{file}: byte {offset}: payload: {what}")]
    BadPayload {
        file: String,
        offset: usize,
        what: String,
    },
    #[error(
        "{file}: decoding may need {need} bytes, more than the {budget} bytes of the decode \
         budget it may use (copy.decode_budget_bytes, less what the collection's deletes hold \
         while it is copied)"
    )]
    OverBudget {
        file: String,
        need: u64,
        budget: u64,
    },
    #[error("{file}: byte {offset}: delete record {row}: {what}")]
    BadDelete {
        file: String,
        offset: usize,
        row: usize,
        what: String,
    },
}

impl BinlogError {
    /// A corrupt or mismatched file stays so: never retryable.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Bounds on what decoding one binlog may produce.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Most bytes one binlog file may decode to, kept values and the reader's buffers
    /// together (Parquet can expand a few compressed bytes into gigabytes). Decoding checks
    /// the page headers against it first and sizes its batches from what is left.
    pub max_decoded_bytes: u64,
}

/// Default decode budget: well under the 4 GiB the shipped deployment allows the process.
pub const DEFAULT_DECODE_BUDGET: u64 = 1 << 30;

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_decoded_bytes: DEFAULT_DECODE_BUDGET,
        }
    }
}

/// Bytes of decoded binlog data the whole process may hold at once, shared by every reader
/// that clones it (the segments an import reads in parallel). A reader reserves what a
/// segment's page headers say it can decode to before decoding it, and waits while others
/// hold the budget; the [`Reservation`] returns it when dropped. A collection's deletes,
/// held while all its segments are copied, are *pinned* ([`DecodeBudget::pin`]): a
/// segment that needs more than what is left beside them is refused at once instead of
/// waiting for bytes that will not come back before it is done.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    total: u64,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    pinned: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Budget accounting unit (a permit), so a u32 permit count covers terabytes.
const BUDGET_UNIT: u64 = 1024;

impl DecodeBudget {
    /// A budget of `total` bytes (rounded down to whole KiB, at least 1 KiB).
    pub fn new(total: u64) -> DecodeBudget {
        let units = (total / BUDGET_UNIT).clamp(1, u64::from(u32::MAX));
        DecodeBudget {
            total: units * BUDGET_UNIT,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(units as usize)),
            pinned: std::sync::Arc::default(),
        }
    }

    /// What one reservation may take: the total less what is pinned.
    pub fn usable(&self) -> u64 {
        self.total.saturating_sub(self.pinned.load(std::sync::atomic::Ordering::SeqCst))
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * BUDGET_UNIT
    }

    /// The per-file limits this budget implies: no file may need more than all of it.
    pub fn limits(&self) -> ReadLimits {
        ReadLimits {
            max_decoded_bytes: self.total,
        }
    }

    /// Reserves `bytes`, waiting until that much is free; `None` when `bytes` exceeds the
    /// budget less what is pinned (it could never be granted).
    pub async fn reserve(&self, bytes: u64) -> Option<Reservation> {
        if bytes > self.usable() {
            return None;
        }
        let units = bytes.div_ceil(BUDGET_UNIT) as u32;
        let permit = self.permits.clone().acquire_many_owned(units).await.ok()?;
        Some(Reservation {
            bytes,
            _permit: Some(permit),
            pinned: None,
        })
    }

    /// Reserves `bytes` for as long as the returned reservation lives, and takes them out of
    /// what later reservations may ask for ([`DecodeBudget::usable`]). `None` when they
    /// exceed what is usable now.
    pub async fn pin(&self, bytes: u64) -> Option<Reservation> {
        let mut r = self.reserve(bytes).await?;
        let units = bytes.div_ceil(BUDGET_UNIT) * BUDGET_UNIT;
        self.pinned.fetch_add(units, std::sync::atomic::Ordering::SeqCst);
        r.pinned = Some((self.pinned.clone(), units));
        Some(r)
    }
}

impl Default for DecodeBudget {
    fn default() -> Self {
        DecodeBudget::new(DEFAULT_DECODE_BUDGET)
    }
}

/// Part of a [`DecodeBudget`], held while the rows decoded under it are alive.
#[derive(Debug, Default)]
pub struct Reservation {
    bytes: u64,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Set by [`DecodeBudget::pin`]: given back to what reservations may ask for on drop.
    pinned: Option<(std::sync::Arc<std::sync::atomic::AtomicU64>, u64)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((pinned, units)) = self.pinned.take() {
            pinned.fetch_sub(units, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The descriptor event: which segment and field the file belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub timestamp: u64,
    pub collection_id: i64,
    pub partition_id: i64,
    pub segment_id: i64,
    pub field_id: i64,
    pub start_ts: u64,
    pub end_ts: u64,
    /// Milvus `DataType` number of the payload.
    pub payload_type: i32,
    pub post_header_lengths: Vec<u8>,
    /// The JSON extras (`original_size`, sometimes `nullable`).
    pub extras: serde_json::Map<String, serde_json::Value>,
}

/// One data event (Insert or Delete) and its Parquet payload.
#[derive(Debug, Clone)]
pub struct DataEvent {
    pub type_code: i8,
    pub timestamp: u64,
    pub start_ts: u64,
    pub end_ts: u64,
    /// Byte offset of the event header in the file.
    pub offset: usize,
    /// Byte offset of the payload in the file.
    pub payload_offset: usize,
    pub payload: Bytes,
}

/// A parsed binlog: its descriptor and data events, payloads still encoded.
#[derive(Debug, Clone)]
pub struct Binlog {
    pub label: String,
    pub descriptor: Descriptor,
    /// Where the data events start (the descriptor's next_position).
    pub events_offset: usize,
    pub events: Vec<DataEvent>,
}

/// Reads little-endian integers at checked offsets, naming the file in errors.
struct Cursor<'a> {
    file: &'a str,
    data: &'a [u8],
}

impl Cursor<'_> {
    fn bytes<const N: usize>(&self, at: usize, what: &'static str) -> Result<[u8; N], BinlogError> {
        let have = self.data.len().saturating_sub(at);
        self.data
            .get(at..at.saturating_add(N))
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| BinlogError::Truncated {
                file: self.file.to_string(),
                offset: at,
                what,
                need: N,
                have,
            })
    }
    fn u64(&self, at: usize, what: &'static str) -> Result<u64, BinlogError> {
        Ok(u64::from_le_bytes(self.bytes(at, what)?))
    }
    fn i64(&self, at: usize, what: &'static str) -> Result<i64, BinlogError> {
        Ok(i64::from_le_bytes(self.bytes(at, what)?))
    }
    fn i32(&self, at: usize, what: &'static str) -> Result<i32, BinlogError> {
        Ok(i32::from_le_bytes(self.bytes(at, what)?))
    }
    fn i8(&self, at: usize, what: &'static str) -> Result<i8, BinlogError> {
        Ok(i8::from_le_bytes(self.bytes(at, what)?))
    }
}

struct Header {
    timestamp: u64,
    type_code: i8,
    /// Event end (start + event_length), checked to lie within the file.
    end: usize,
    next: i32,
}

fn read_header(c: &Cursor<'_>, at: usize) -> Result<Header, BinlogError> {
    let timestamp = c.u64(at, "event header")?;
    let type_code = c.i8(at + 8, "event header")?;
    let length = c.i32(at + 9, "event header")?;
    let next = c.i32(at + 13, "event header")?;
    let end = at as i64 + length as i64;
    if (length as i64) < HEADER_LEN as i64 || end > c.data.len() as i64 {
        return Err(BinlogError::EventBeyondEnd {
            file: c.file.to_string(),
            offset: at,
            length: length as i64,
            file_len: c.data.len(),
        });
    }
    Ok(Header {
        timestamp,
        type_code,
        end: end as usize,
        next,
    })
}

/// Splits a binlog into its descriptor and data events. `label` names the file in errors.
pub fn parse(label: &str, data: Bytes) -> Result<Binlog, BinlogError> {
    let c = Cursor {
        file: label,
        data: &data,
    };
    let bad = |offset: usize, what: String| BinlogError::BadEvent {
        file: label.to_string(),
        offset,
        what,
    };
    let magic = c.i32(0, "magic number")?;
    if magic != MAGIC {
        return Err(BinlogError::BadMagic {
            file: label.to_string(),
            found: magic,
        });
    }
    let at = 4;
    let h = read_header(&c, at)?;
    if h.type_code != 0 {
        return Err(bad(
            at,
            format!(
                "first event has type {}, want the descriptor (0)",
                h.type_code
            ),
        ));
    }
    let fix = at + HEADER_LEN;
    let descriptor_end = h.end;
    let (post_header_lengths, extras) =
        descriptor_tail(&c, fix + DESCRIPTOR_FIX_LEN, descriptor_end)?;
    let descriptor = Descriptor {
        timestamp: h.timestamp,
        collection_id: c.i64(fix, "descriptor")?,
        partition_id: c.i64(fix + 8, "descriptor")?,
        segment_id: c.i64(fix + 16, "descriptor")?,
        field_id: c.i64(fix + 24, "descriptor")?,
        start_ts: c.u64(fix + 32, "descriptor")?,
        end_ts: c.u64(fix + 40, "descriptor")?,
        payload_type: c.i32(fix + 48, "descriptor")?,
        post_header_lengths,
        extras,
    };

    if let Some(key) = ENCRYPTION_KEYS
        .iter()
        .find(|k| descriptor.extras.contains_key(**k))
    {
        return Err(bad(
            at,
            format!(
                "the binlog is encrypted (descriptor extras carry {key:?}); ferry cannot read \
                 encrypted binlogs"
            ),
        ));
    }

    let mut events = Vec::new();
    let (mut from, mut min, mut next) = (at, descriptor_end, h.next as i64);
    loop {
        if next == UNSET_POSITION {
            next = min as i64;
        }
        // next_position must move past the previous event, or a loop could never end.
        if next < min as i64 {
            return Err(bad(
                from,
                format!("next_position {next} does not move forward (must be at least {min})"),
            ));
        }
        if next > data.len() as i64 {
            return Err(bad(
                from,
                format!(
                    "next_position {next} is past the end of the file ({} bytes)",
                    data.len()
                ),
            ));
        }
        if next == data.len() as i64 {
            break;
        }
        let at = next as usize;
        let h = read_header(&c, at)?;
        if h.type_code != INSERT_EVENT && h.type_code != DELETE_EVENT {
            return Err(bad(
                at,
                format!(
                    "event type {} is not an insert (1) or delete (2) event",
                    h.type_code
                ),
            ));
        }
        let payload_offset = at + HEADER_LEN + DATA_FIX_LEN;
        if payload_offset > h.end {
            return Err(BinlogError::Truncated {
                file: label.to_string(),
                offset: at + HEADER_LEN,
                what: "event timestamps",
                need: DATA_FIX_LEN,
                have: h.end - (at + HEADER_LEN),
            });
        }
        events.push(DataEvent {
            type_code: h.type_code,
            timestamp: h.timestamp,
            start_ts: c.u64(at + HEADER_LEN, "event timestamps")?,
            end_ts: c.u64(at + HEADER_LEN + 8, "event timestamps")?,
            offset: at,
            payload_offset,
            payload: data.slice(payload_offset..h.end),
        });
        (from, min, next) = (at, h.end, h.next as i64);
    }
    Ok(Binlog {
        label: label.to_string(),
        descriptor,
        events_offset: usize::try_from(h.next).map_or(descriptor_end, |n| n.max(descriptor_end)),
        events,
    })
}

/// Reads post-header lengths and the extras JSON, which end exactly at the event end. The
/// number of post-header lengths is 8 in Milvus 2.3; any count that makes the lengths add up
/// is accepted, preferring 8.
#[allow(clippy::type_complexity)]
fn descriptor_tail(
    c: &Cursor<'_>,
    at: usize,
    end: usize,
) -> Result<(Vec<u8>, serde_json::Map<String, serde_json::Value>), BinlogError> {
    if at + 4 > end {
        return Err(BinlogError::Truncated {
            file: c.file.to_string(),
            offset: at.min(end),
            what: "descriptor",
            need: DESCRIPTOR_FIX_LEN + 4,
            have: end.saturating_sub(at - DESCRIPTOR_FIX_LEN),
        });
    }
    let fits = |n: usize| -> Option<usize> {
        let len_at = at + n;
        let extra_len = c.i32(len_at, "descriptor").ok()?;
        (extra_len >= 0 && len_at + 4 + extra_len as usize == end).then_some(len_at)
    };
    let max_n = (end - at - 4).min(255);
    let n = std::iter::once(POST_HEADER_COUNT)
        .chain(0..=max_n)
        .find(|&n| n <= max_n && fits(n).is_some())
        .ok_or_else(|| BinlogError::BadEvent {
            file: c.file.to_string(),
            offset: at,
            what: format!(
                "descriptor lengths do not add up: no extra_length field makes it end at byte {end}"
            ),
        })?;
    let extras_at = at + n + 4;
    let raw = &c.data[extras_at..end];
    let extras = if raw.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_slice(raw).map_err(|e| BinlogError::BadEvent {
            file: c.file.to_string(),
            offset: extras_at,
            what: format!("descriptor extras are not a JSON object: {e}"),
        })?
    };
    Ok((c.data[at..at + n].to_vec(), extras))
}

/// Milvus data types a binlog payload and a schema field may both carry.
fn same_type(payload: i32, field: i32) -> bool {
    let norm = |t: i32| {
        if t == DataType::String as i32 {
            DataType::VarChar as i32
        } else {
            t
        }
    };
    norm(payload) == norm(field)
}

pub(crate) fn type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("unknown type {t}"))
}

/// Parses an insert log of `field`, checking the descriptor against the field (same field
/// id and type) and that it holds insert events.
fn open_insert_log(label: &str, data: Bytes, field: &FieldSchema) -> Result<Binlog, BinlogError> {
    let log = parse(label, data)?;
    let d = &log.descriptor;
    if d.field_id != field.field_id {
        return Err(BinlogError::BadEvent {
            file: label.to_string(),
            offset: 4 + HEADER_LEN + 24,
            what: format!(
                "descriptor is for field id {}, expected field {:?} (id {})",
                d.field_id, field.name, field.field_id
            ),
        });
    }
    if !same_type(d.payload_type, field.data_type) {
        return Err(BinlogError::TypeMismatch {
            file: label.to_string(),
            offset: 4 + HEADER_LEN + 48,
            field: field.name.clone(),
            field_id: field.field_id,
            got: type_name(d.payload_type),
            want: type_name(field.data_type),
        });
    }
    require_events(&log)?;
    for ev in &log.events {
        if ev.type_code != INSERT_EVENT {
            return Err(BinlogError::BadEvent {
                file: label.to_string(),
                offset: ev.offset,
                what: format!("event type {} in an insert log", ev.type_code),
            });
        }
    }
    Ok(log)
}

/// Bytes decoding `log` as `field` may take, from its footers and page headers (each
/// event's kept values, plus the largest event's reader buffers and batch); an error when
/// a column's type or width does not fit the field, or the total exceeds `limits`.
fn reservation_of(
    log: &Binlog,
    field: &FieldSchema,
    limits: &ReadLimits,
) -> Result<u64, BinlogError> {
    let column = payload::Column::new(&log.label, field)?;
    let (mut kept, mut extra) = (0u64, 0u64);
    for ev in &log.events {
        let plan = column.estimate(&log.label, ev, limits.max_decoded_bytes)?;
        kept = kept.saturating_add(plan.kept);
        extra = extra.max(plan.reservation() - plan.kept);
    }
    let need = kept.saturating_add(extra);
    if need > limits.max_decoded_bytes {
        return Err(BinlogError::OverBudget {
            file: log.label.clone(),
            need,
            budget: limits.max_decoded_bytes,
        });
    }
    Ok(need)
}

/// Bytes reading the insert log `data` of `field` may take (see [`DecodeBudget`]); checks
/// the framing, the descriptor and each payload's column type and width, decoding nothing.
pub fn insert_log_reservation(
    label: &str,
    data: Bytes,
    field: &FieldSchema,
    limits: &ReadLimits,
) -> Result<u64, BinlogError> {
    reservation_of(&open_insert_log(label, data, field)?, field, limits)
}

/// Reads an insert log of `field` into one column, checking the descriptor against the
/// field (same field id and type), each payload's column against the field's type and
/// width before decoding it, and every value against the field's type and dim. Decoding
/// stays within `limits`.
pub fn read_insert_log(
    label: &str,
    data: Bytes,
    field: &FieldSchema,
    limits: &ReadLimits,
) -> Result<FieldData, BinlogError> {
    let log = open_insert_log(label, data, field)?;
    let mut budget = reservation_of(&log, field, limits)?;
    let mut column = payload::Column::new(label, field)?;
    for ev in &log.events {
        column.decode(label, ev, &mut budget)?;
    }
    Ok(column.finish())
}

/// Milvus never writes a log without data; a file that ends after its descriptor has lost
/// its data (cut at an event boundary), so it is an error rather than zero rows.
fn require_events(log: &Binlog) -> Result<(), BinlogError> {
    if log.events.is_empty() {
        return Err(BinlogError::BadEvent {
            file: log.label.clone(),
            offset: log.events_offset,
            what: "no data events after the descriptor".into(),
        });
    }
    Ok(())
}

/// The schema of system field 1 (row timestamps), for reading its insert logs.
pub fn timestamp_field() -> FieldSchema {
    FieldSchema {
        field_id: TIMESTAMP_FIELD_ID,
        name: "Timestamp".into(),
        data_type: DataType::Int64 as i32,
        ..Default::default()
    }
}

/// Reads the row timestamps (system field 1) of a segment's insert log.
pub fn read_timestamps(
    label: &str,
    data: Bytes,
    limits: &ReadLimits,
) -> Result<Vec<u64>, BinlogError> {
    use crate::proto::schema::{field_data::Field, scalar_field::Data};
    let col = read_insert_log(label, data, &timestamp_field(), limits)?;
    match col.field {
        Some(Field::Scalars(s)) => match s.data {
            Some(Data::LongData(a)) => Ok(a.data.into_iter().map(|t| t as u64).collect()),
            _ => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

/// The `dim` type parameter of a vector field.
pub fn field_dim(field: &FieldSchema) -> Option<i64> {
    field
        .type_params
        .iter()
        .find(|kv| kv.key == "dim")
        .and_then(|kv| kv.value.trim().parse().ok())
}

#[cfg(test)]
pub(crate) mod tests;
