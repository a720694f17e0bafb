//! One shard as the edge holds it: core's read-only [`ReplicaShard`] (records
//! and tidemark) and a [`ShardIndex`] kept in step with it, plus what the
//! edge needs to decide when to ask the writer again.
//!
//! A shard is bootstrapped by a [`ShardLoader`] fed by the snapshot stream:
//! the index is built from the snapshot's own records (core's
//! [`IndexLoader`] keeps a record in the sealed graph only if its vector is
//! its point's, so the index is right even when the writer sealed at an
//! earlier offset than the snapshot's), and the replica takes the records.
//!
//! Fields live once, in the replica: the index holds `null` for them and
//! its filters read the replica's ([`ShardIndex::search_with_fields`]). A
//! record's fields as a map are a few hundred bytes; twice over 20k records
//! was a tenth of the isolate's memory.

use serde_json::Value;
use tidemark_core::limits::Limits;
use tidemark_core::log::{LogEntry, Offset};
use tidemark_core::model::{CollectionKey, CollectionSchema, Fields, RecordId};
use tidemark_core::replica::{ApplyError, Progress, ReadOnly, ReplicaRecord, ReplicaShard};
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot::{Snapshot, SnapshotRecord};
use tidemark_core::snapshot_stream::{SnapshotHead, SnapshotSink, SnapshotTail};
use tidemark_core::vector::{Hit, IndexLoader, Metric, Precision, Query, QueryError, ShardIndex};
use tidemark_core::wire::{DecodeError, LogRange};

use crate::error::EdgeError;

/// Bytes a record costs beyond its payload: map node, strings' headers.
const RECORD_OVERHEAD: usize = 96;

pub struct EdgeShard {
    replica: ReplicaShard<ReadOnly>,
    index: ShardIndex,
    /// Approximate heap bytes of the replica's records (the index reports its own).
    record_bytes: usize,
    /// When the writer's head was last compared with the tidemark (ms).
    pub checked_at_ms: f64,
    /// The highest head an invalidation announced; above the tidemark it
    /// makes the next read catch up regardless of staleness.
    pub announced_head: Offset,
}

fn record_cost(id: &str, record: &ReplicaRecord) -> usize {
    let fields: usize = record
        .fields
        .iter()
        .map(|(k, v)| k.len() + json_cost(v))
        .sum();
    RECORD_OVERHEAD + id.len() + fields + record.vector.as_ref().map_or(0, |v| 4 * v.len())
}

fn json_cost(value: &Value) -> usize {
    match value {
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(json_cost).sum::<usize>(),
        Value::Object(o) => 48 + o.iter().map(|(k, v)| k.len() + json_cost(v)).sum::<usize>(),
        _ => 16,
    }
}

/// Records keep their vectors only where the index will not hold them in
/// f32: under int8-only precision the sealed segment drops its f32 (the
/// fresh segment keeps f32 whatever the precision).
fn replica(key: CollectionKey, shard: ShardId, precision: Precision) -> ReplicaShard<ReadOnly> {
    let replica = ReplicaShard::new(key, shard, Limits::default());
    if precision == Precision::Int8 {
        replica
    } else {
        replica.without_vectors()
    }
}

impl EdgeShard {
    /// A shard with no records yet.
    pub fn empty(key: CollectionKey, shard: ShardId, schema: &CollectionSchema) -> Self {
        Self {
            replica: replica(key, shard, Precision::F32),
            index: ShardIndex::new(schema.metric, schema.dimension),
            record_bytes: 0,
            checked_at_ms: f64::NEG_INFINITY,
            announced_head: Offset(0),
        }
    }

    /// The loader of a shard bootstrapped from the writer's snapshot as it
    /// streams in (see [`ShardLoader`]).
    pub fn loader(
        key: CollectionKey,
        shard: ShardId,
        schema: &CollectionSchema,
        precision: Precision,
    ) -> ShardLoader {
        ShardLoader {
            key,
            shard,
            metric: schema.metric,
            dim: schema.dimension,
            precision,
            records: Vec::new(),
            index: IndexLoader::new(schema.metric, schema.dimension, 0),
        }
    }

    pub fn replica(&self) -> &ReplicaShard<ReadOnly> {
        &self.replica
    }

    /// A record with its vector, which the index holds when the replica
    /// does not.
    pub fn record(&self, id: &RecordId) -> Option<ReplicaRecord> {
        let mut record = self.replica.get(id)?.clone();
        if record.vector.is_none() {
            record.vector = self.index.vector(id.as_str()).map(<[f32]>::to_vec);
        }
        Some(record)
    }

    /// Makes room for `entries` log entries that may each be a new record
    /// with a vector, within `free` bytes (see `catch_up`).
    pub fn reserve_for_entries(&mut self, entries: usize, free: usize) {
        // f32 row, int8 code row and its scales, id and slot.
        let row = 5 * self.index.dim() + 96;
        self.index.reserve_fresh(entries.min(free / row));
    }

    pub fn tidemark(&self) -> Offset {
        self.replica.tidemark()
    }

    pub fn memory_bytes(&self) -> usize {
        self.record_bytes + self.index.memory_bytes()
    }

    /// Applies a verified log range to the replica and then to the index.
    /// A range the replica refuses changes nothing; an entry the index
    /// refuses (a vector the writer should never have accepted) leaves that
    /// record out of search, and is reported.
    pub fn apply(&mut self, range: &LogRange) -> Result<Progress, EdgeError> {
        let before = self.replica.tidemark();
        let new: Vec<&LogEntry> = range
            .entries
            .iter()
            .filter(|e| e.offset >= before)
            .collect();
        let old_cost: usize = new
            .iter()
            .filter_map(|e| {
                self.replica
                    .get(&e.id)
                    .map(|r| record_cost(e.id.as_str(), r))
            })
            .sum();
        let progress = self
            .replica
            .apply_range(range)
            .map_err(|e: ApplyError| crate::error::untrusted_apply("log range", e))?;
        if let Progress::Applied { .. } = progress {
            let mut bad = None;
            for entry in new {
                if entry.deleted {
                    self.index.delete(entry.id.as_str());
                } else if let Err(e) =
                    self.index
                        .upsert(entry.id.as_str(), entry.vector.as_deref(), Value::Null)
                {
                    self.index.delete(entry.id.as_str());
                    bad = Some(format!("entry {} ({}): {e}", entry.offset, entry.id));
                }
                if let Some(record) = self.replica.get(&entry.id) {
                    self.record_bytes += record_cost(entry.id.as_str(), record);
                }
            }
            self.record_bytes = self.record_bytes.saturating_sub(old_cost);
            if let Some(bad) = bad {
                worker::console_warn!("tidemark-edge: not indexed: {bad}");
            }
        }
        Ok(progress)
    }

    pub fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, QueryError> {
        self.index
            .search_with_fields(query, |id| self.replica.fields(id))
    }
}

/// A shard being bootstrapped from a snapshot stream: each record's vector
/// goes straight into the index's block and its fields to the replica's
/// records, so the isolate never holds the frame, nor a decoded snapshot
/// beside the index. Nothing it holds is used before the stream's
/// signature verified ([`ShardLoader::finish`] takes what `finish` returned).
pub struct ShardLoader {
    key: CollectionKey,
    shard: ShardId,
    metric: Metric,
    dim: usize,
    precision: Precision,
    records: Vec<SnapshotRecord>,
    index: IndexLoader,
}

impl SnapshotSink for ShardLoader {
    fn head(&mut self, head: &SnapshotHead) -> Result<(), DecodeError> {
        if head.collection != self.key || head.shard != self.shard {
            return Err(DecodeError::Malformed(format!(
                "asked for a snapshot of {}/{} shard {}, got one of {}/{} shard {}",
                self.key.namespace,
                self.key.collection,
                self.shard.0,
                head.collection.namespace,
                head.collection.collection,
                head.shard.0
            )));
        }
        // Reserved exactly (growth by doubling would leave abandoned blocks
        // in a heap that never shrinks), bounded by what the bytes can hold.
        let fits = head.body_len / std::mem::size_of::<SnapshotRecord>();
        self.records.reserve_exact(head.records.min(fits));
        self.index = IndexLoader::new(self.metric, self.dim, head.max_vectors(self.dim));
        Ok(())
    }

    fn record(
        &mut self,
        id: RecordId,
        fields: Fields,
        vector: Option<&[f32]>,
    ) -> Result<(), DecodeError> {
        if let Some(vector) = vector {
            // The index gets no fields: filters read the replica's.
            self.index
                .push(id.as_str(), vector, Value::Null)
                .map_err(|e| DecodeError::Malformed(format!("record {id}: {e}")))?;
        }
        // Under int8-only precision the index drops the f32 vectors, so the
        // record keeps its own (see `replica`).
        let keep = self.precision == Precision::Int8;
        self.records.push(SnapshotRecord {
            id,
            fields,
            vector: vector.filter(|_| keep).map(<[f32]>::to_vec),
        });
        Ok(())
    }

    fn wants_docs(&self) -> bool {
        false
    }
}

impl ShardLoader {
    /// The shard, from a stream whose signature verified.
    pub fn finish(self, head: SnapshotHead, tail: SnapshotTail) -> Result<EdgeShard, EdgeError> {
        let index = self
            .index
            .finish(tail.index_segment, self.precision)
            .map_err(|e| EdgeError::untrusted(format!("the snapshot's index segment: {e}")))?;
        let mut replica = replica(self.key, self.shard, self.precision);
        replica
            .load_snapshot_owned(Snapshot {
                collection: head.collection,
                shard: head.shard,
                offset: head.offset,
                records: self.records,
                docs: tail.docs,
                index_segment: None,
            })
            .map_err(|e| crate::error::untrusted_apply("snapshot", e))?;
        let record_bytes = replica
            .records()
            .map(|(id, record)| record_cost(id.as_str(), record))
            .sum();
        Ok(EdgeShard {
            replica,
            index,
            record_bytes,
            checked_at_ms: f64::NEG_INFINITY,
            announced_head: Offset(0),
        })
    }
}
