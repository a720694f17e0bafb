//! One shard as the edge holds it: core's read-only [`ReplicaShard`] (records
//! and tidemark) and a [`ShardIndex`] kept in step with it, plus what the
//! edge needs to decide when to ask the writer again.
//!
//! The index is rebuilt from what the replica holds, never from anything
//! else: a snapshot's sealed segment is installed, then every record of the
//! snapshot is upserted (a record whose vector equals its sealed point keeps
//! its place, others go to the fresh segment) and sealed points the snapshot
//! no longer lists are deleted. So the index is right even when the writer
//! sealed the segment at an earlier offset than the snapshot's.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tidemark_core::limits::Limits;
use tidemark_core::log::{LogEntry, Offset};
use tidemark_core::model::{CollectionKey, CollectionSchema, RecordId};
use tidemark_core::replica::{ApplyError, Progress, ReplicaMode, ReplicaRecord, ReplicaShard};
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot::Snapshot;
use tidemark_core::vector::{Hit, Precision, Query, QueryError, ShardIndex};
use tidemark_core::wire::LogRange;

use crate::error::EdgeError;

/// Bytes a record costs beyond its payload: map node, strings' headers.
const RECORD_OVERHEAD: usize = 96;

pub struct EdgeShard {
    replica: ReplicaShard,
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

impl EdgeShard {
    /// A shard with no records yet.
    pub fn empty(key: CollectionKey, shard: ShardId, schema: &CollectionSchema) -> Self {
        Self::new(key, shard, schema, Precision::F32)
    }

    /// Records keep their vectors only where the index will not hold them in
    /// f32: under int8-only precision the sealed segment drops its f32 (the
    /// fresh segment keeps f32 whatever the precision).
    fn new(
        key: CollectionKey,
        shard: ShardId,
        schema: &CollectionSchema,
        precision: Precision,
    ) -> Self {
        let replica = ReplicaShard::new(key, shard, ReplicaMode::ReadOnly, Limits::default());
        Self {
            replica: if precision == Precision::Int8 {
                replica
            } else {
                replica.without_vectors()
            },
            index: ShardIndex::new(schema.metric, schema.dimension),
            record_bytes: 0,
            checked_at_ms: f64::NEG_INFINITY,
            announced_head: Offset(0),
        }
    }

    /// A shard bootstrapped from a verified snapshot. The index is built
    /// first, from the snapshot's vectors; then the replica takes the
    /// records, so that their fields are copied once (into the index), not
    /// twice.
    pub fn from_snapshot(
        key: CollectionKey,
        schema: &CollectionSchema,
        snapshot: Snapshot,
        precision: Precision,
    ) -> Result<Self, EdgeError> {
        let mut shard = Self::new(key, snapshot.shard, schema, precision);
        let mut in_segment: HashSet<String> = HashSet::new();
        if let Some(segment) = snapshot.decode_index_segment() {
            let mut segment = segment
                .map_err(|e| EdgeError::untrusted(format!("the snapshot's index segment: {e}")))?;
            if segment.metric() != schema.metric || segment.dim() != schema.dimension {
                return Err(EdgeError::untrusted(
                    "the snapshot's index segment does not match the collection's schema",
                ));
            }
            // Records whose vector is their sealed point's keep it, compared
            // before quantizing drops the f32 vectors. Stored vectors are
            // prepared and preparing is idempotent, so equality is the test.
            for (point, id) in segment.ids().iter().enumerate() {
                let sealed = segment.vector(point as u32);
                if let (Some(sealed), Some(vector)) = (sealed, snapshot.vector_of(id))
                    && vector == sealed
                {
                    in_segment.insert(id.clone());
                }
            }
            segment.set_precision(precision);
            let sealed_ids: Vec<String> = segment.ids().to_vec();
            let fields: HashMap<String, Value> = snapshot
                .records
                .iter()
                .filter(|r| in_segment.contains(r.id.as_str()))
                .map(|r| (r.id.as_str().to_string(), Value::Object(r.fields.clone())))
                .collect();
            shard.index = ShardIndex::from_sealed(segment, fields);
            for id in sealed_ids
                .iter()
                .filter(|id| !in_segment.contains(id.as_str()))
            {
                shard.index.delete(id);
            }
        }
        let fresh = snapshot
            .records
            .iter()
            .filter(|r| r.vector.is_some() && !in_segment.contains(r.id.as_str()))
            .count();
        shard.index.reserve_fresh(fresh);
        for record in &snapshot.records {
            if in_segment.contains(record.id.as_str()) {
                continue;
            }
            shard
                .index
                .upsert(
                    record.id.as_str(),
                    record.vector.as_deref(),
                    Value::Object(record.fields.clone()),
                )
                .map_err(|e| EdgeError::untrusted(format!("a snapshot record's vector: {e}")))?;
        }
        shard
            .replica
            .load_snapshot_owned(snapshot)
            .map_err(|e| crate::error::untrusted_apply("snapshot", e))?;
        shard.record_bytes = shard
            .replica
            .records()
            .map(|(id, record)| record_cost(id.as_str(), record))
            .sum();
        Ok(shard)
    }

    pub fn replica(&self) -> &ReplicaShard {
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
                } else if let Err(e) = self.index.upsert(
                    entry.id.as_str(),
                    entry.vector.as_deref(),
                    Value::Object(entry.fields.clone()),
                ) {
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
        self.index.search(query)
    }
}
