//! Which source partition each target partition holds, by source partition ID.
//!
//! A target partition has the name of its source partition, but a name is not an identity:
//! a partition dropped and re-created under the same name is a new partition (a new, larger
//! ID) and the WAL does not order the two the way the application did. Milvus 2.3 broadcasts
//! DropPartition from an *asynchronous* step of the drop (rootcoord's
//! `deletePartitionDataStep`, stamped when it runs), so "drop p1; create p1; insert into p1"
//! can reach the WAL as the inserts into the new p1 first and the drop of the old one after
//! them. Dropping the target's `p1` by name at that record would remove the refill.
//!
//! So every write and drop is judged by partition ID against the ID the target partition
//! is bound to (the job's record at first, then what the stream saw, kept in the durable
//! log):
//! - a write of the bound ID goes through;
//! - a write of a dropped ID, or of an ID older than the bound one, is skipped: the source
//!   dropped those rows (IDs only grow, so an older partition under a bound name is gone);
//! - a write of a newer ID means the bound one was dropped: the target partition is dropped,
//!   created again and bound to the new ID before the write;
//! - a DropPartition drops the target partition only while it is bound to that ID (or an
//!   older one).
//!
//! Rows of one key are on one channel in order, so a channel never needs to wait for the
//! others: whatever channel meets a partition's end first applies it, and the others then
//! skip that partition's rows. A per-collection lock keeps a channel's write from
//! interleaving with another's drop and re-create of the same partition. Each step is
//! durable and repeatable, so a crash anywhere converges on restart.

use std::collections::HashMap;

use crate::log::{DurableLog, LogError};

/// What to do with a write to one (partition name, partition ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Write,
    /// The source partition was dropped: its rows are gone on the source too.
    Skip,
    /// The target partition must be (re)made for this ID first; `drop_first` when it holds
    /// the rows of an older, dropped source partition.
    Bind { drop_first: Option<i64> },
}

/// The source partitions of a job's collections. The lock that orders a channel's writes
/// against another's partition drop is [`super::Barriers::partition_lock`].
#[derive(Clone)]
pub struct SourcePartitions {
    log: DurableLog,
    /// Source collection ID → (name, ID) of its partitions when the job started.
    recorded: HashMap<i64, HashMap<String, i64>>,
}

impl SourcePartitions {
    pub fn new(log: DurableLog, recorded: HashMap<i64, Vec<(String, i64)>>) -> Self {
        let recorded = recorded.into_iter().map(|(c, ps)| (c, ps.into_iter().collect())).collect();
        SourcePartitions { log, recorded }
    }

    /// Adds a collection taken on while the job runs.
    pub fn record(&mut self, collection_id: i64, partitions: &[(String, i64)]) {
        self.recorded.insert(collection_id, partitions.iter().cloned().collect());
    }

    /// The source partition the target partition `name` holds; 0 for none.
    pub fn bound(&self, collection_id: i64, name: &str) -> Result<i64, LogError> {
        Ok(match self.log.partition_bound(collection_id, name)? {
            Some(id) => id,
            None => self.recorded.get(&collection_id).and_then(|ps| ps.get(name)).copied().unwrap_or(0),
        })
    }

    pub fn verdict(&self, collection_id: i64, name: &str, id: i64) -> Result<Verdict, LogError> {
        if id <= 0 {
            // Not a partition ID (a delete of every partition says -1): nothing to judge.
            return Ok(Verdict::Write);
        }
        if self.log.partition_dropped(collection_id, id)? {
            return Ok(Verdict::Skip);
        }
        let bound = self.bound(collection_id, name)?;
        Ok(if bound == id {
            Verdict::Write
        } else if bound > id {
            Verdict::Skip
        } else if bound > 0 {
            Verdict::Bind { drop_first: Some(bound) }
        } else {
            Verdict::Bind { drop_first: None }
        })
    }

    pub fn bind(&self, collection_id: i64, name: &str, id: i64) -> Result<(), LogError> {
        self.log.bind_partition(collection_id, name, id)
    }

    pub fn mark_dropped(&self, collection_id: i64, id: i64) -> Result<(), LogError> {
        self.log.mark_partition_dropped(collection_id, id)
    }
}
