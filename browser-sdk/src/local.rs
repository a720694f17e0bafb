//! One collection as the client holds it: core's merging [`Replica`], the
//! [`Outbox`] of local writes, and a vector index per shard over the *local
//! view* (replica plus pending writes), so search sees unsynced edits.
//!
//! Everything here is synchronous and in memory; the sync loop feeds it
//! verified log ranges and snapshots, the API feeds it local writes, and
//! [`LocalCollection::take_persist`] says which bytes must reach the store.
//! The rules (merging, settling, limits, search) are core's.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use tidemark_core::ActorId;
use tidemark_core::fields::JsonEdit;
use tidemark_core::limits::Limits;
use tidemark_core::log::Tidemark;
use tidemark_core::model::{CollectionKey, CollectionSchema, Fields, RecordId};
use tidemark_core::outbox::Outbox;
use tidemark_core::replica::{Merging, Progress, Replica, ReplicaRecord};
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot::Snapshot;
use tidemark_core::snapshot_stream::{SnapshotCollector, SnapshotHead, SnapshotSink, SnapshotTail};
use tidemark_core::vector::{
    Filter, HnswSegment, IndexLoader, Metric, Precision, Query, ShardIndex, merge_top_k,
};
use tidemark_core::wire::DecodeError;
use tidemark_core::wire::{self, LogRange, Message, WriteAck};

use crate::error::SdkError;
use crate::store::{StoreWrite, keys};

/// A search result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub id: String,
    /// The metric's similarity: higher is closer.
    pub score: f32,
    pub fields: Fields,
}

/// What a search asks for.
#[derive(Clone, Debug, Default)]
pub struct SearchOptions {
    pub k: usize,
    pub filter: Option<Filter>,
    pub exact: bool,
    pub ef: Option<usize>,
}

/// A shard as persisted: its snapshot frame and its sealed segment, if any.
pub type SavedShard = (Option<Vec<u8>>, Option<Vec<u8>>);

pub struct LocalCollection {
    key: CollectionKey,
    schema: CollectionSchema,
    limits: Limits,
    replica: Replica<Merging>,
    outbox: Outbox,
    /// One index per shard over the local view.
    indexes: Vec<ShardIndex>,
    dirty_shards: BTreeSet<ShardId>,
    dirty_segments: BTreeSet<ShardId>,
    outbox_dirty: bool,
}

impl LocalCollection {
    /// A collection nobody has synced yet, writing as `actor`.
    pub fn new(key: CollectionKey, schema: CollectionSchema, actor: &ActorId) -> Self {
        let limits = Limits::default();
        let replica = Replica::new(key.clone(), schema.shard_count, limits.clone());
        let indexes = schema
            .shard_count
            .shards()
            .map(|_| ShardIndex::new(schema.metric, schema.dimension))
            .collect();
        let outbox = Outbox::new(key.clone(), actor);
        Self {
            key,
            schema,
            limits,
            replica,
            outbox,
            indexes,
            dirty_shards: BTreeSet::new(),
            dirty_segments: BTreeSet::new(),
            outbox_dirty: true,
        }
    }

    /// A collection from persisted bytes: the outbox and, per shard, a saved
    /// snapshot and sealed segment (either may be missing).
    pub fn restore(
        key: CollectionKey,
        schema: CollectionSchema,
        outbox: &[u8],
        shards: Vec<SavedShard>,
    ) -> Result<Self, SdkError> {
        let limits = Limits::default();
        let outbox = Outbox::from_bytes(outbox, &limits)
            .map_err(|e| SdkError::Storage(format!("saved outbox: {e}")))?;
        let mut local = Self::new(key, schema, &outbox.actor());
        local.outbox = outbox;
        local.outbox_dirty = false;
        for (shard, (snapshot, segment)) in shards.into_iter().enumerate() {
            let Some(bytes) = snapshot else { continue };
            let snapshot = match wire::decode(&bytes, &local.limits) {
                Ok(Message::Snapshot(snapshot)) => snapshot,
                Ok(_) => return Err(SdkError::Storage(format!("shard {shard}: not a snapshot"))),
                Err(e) => return Err(SdkError::Storage(format!("shard {shard}: {e}"))),
            };
            drop(bytes);
            let shard = snapshot.shard;
            local.replica.load_snapshot_owned(snapshot)?;
            let segment = segment.and_then(|b| HnswSegment::from_bytes(&b).ok());
            local.rebuild_index(shard, segment);
        }
        // Pending writes of shards that had no snapshot yet.
        let pending: BTreeSet<RecordId> =
            local.outbox.writes().iter().map(|w| w.id.clone()).collect();
        for id in pending {
            local.reindex(&id);
        }
        Ok(local)
    }

    pub fn key(&self) -> &CollectionKey {
        &self.key
    }

    pub fn schema(&self) -> &CollectionSchema {
        &self.schema
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn tidemark(&self) -> Tidemark {
        self.replica.tidemark()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Writes not yet acknowledged by the writer.
    pub fn pending(&self) -> usize {
        self.outbox.unacked()
    }

    pub fn record_id(&self, id: &str) -> Result<RecordId, SdkError> {
        RecordId::new(id, &self.limits).map_err(|e| SdkError::InvalidArgument(e.to_string()))
    }

    /// A local write (see [`Outbox::write`]); `false` if it changed nothing.
    pub fn write(
        &mut self,
        id: &str,
        edit: Option<JsonEdit>,
        vector: Option<Vec<f32>>,
        time_ms: i64,
    ) -> Result<bool, SdkError> {
        let id = self.record_id(id)?;
        let written = self.outbox.write(
            &self.replica,
            id.clone(),
            edit.as_ref(),
            vector,
            &self.schema,
            &self.limits,
            time_ms,
        )?;
        if written.is_some() {
            self.outbox_dirty = true;
            self.reindex(&id);
        }
        Ok(written.is_some())
    }

    /// `id` as the user sees it, pending writes included.
    pub fn get(&self, id: &str) -> Result<Option<ReplicaRecord>, SdkError> {
        let id = self.record_id(id)?;
        Ok(self
            .outbox
            .local_view(&self.replica, &id, &self.schema, &self.limits))
    }

    /// Top-k over every shard's local view.
    pub fn search(
        &self,
        vector: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>, SdkError> {
        let mut query = Query::new(vector, options.k);
        if options.exact {
            query = query.exact();
        } else if let Some(ef) = options.ef {
            query = query.ef(ef);
        }
        if let Some(filter) = &options.filter {
            query = query.filter(filter);
        }
        query.validate(self.schema.metric, self.schema.dimension)?;
        let lists = self
            .indexes
            .iter()
            .map(|index| index.search(&query))
            .collect::<Result<Vec<_>, _>>()?;
        let hits = merge_top_k(options.k, lists);
        Ok(hits
            .into_iter()
            .filter_map(|hit| {
                let id = RecordId::new(hit.id.as_str(), &self.limits).ok()?;
                let record =
                    self.outbox
                        .local_view(&self.replica, &id, &self.schema, &self.limits)?;
                Some(SearchHit {
                    id: hit.id,
                    score: -hit.distance,
                    fields: record.fields,
                })
            })
            .collect())
    }

    /// Applies a verified log range; returns the ids it changed. On error
    /// nothing changed.
    pub fn apply_range(&mut self, range: &LogRange) -> Result<(Progress, Vec<String>), SdkError> {
        let before = self
            .replica
            .shard(range.shard)
            .map(|s| s.tidemark())
            .ok_or(SdkError::Apply(
                tidemark_core::replica::ApplyError::NoSuchShard(range.shard),
            ))?;
        let progress = self.replica.apply_range(range)?;
        let mut changed = Vec::new();
        if let Progress::Applied { applied, .. } = progress
            && applied > 0
        {
            let ids: BTreeSet<RecordId> = range
                .entries
                .iter()
                .filter(|e| e.offset >= before)
                .map(|e| e.id.clone())
                .collect();
            for id in ids {
                self.reindex(&id);
                changed.push(id.as_str().to_string());
            }
            self.dirty_shards.insert(range.shard);
        }
        Ok((progress, changed))
    }

    /// A sink for a snapshot stream of this collection: it gathers the
    /// snapshot and builds its shard's index as the records arrive.
    pub fn snapshot_loader(&self) -> SnapshotLoader {
        SnapshotLoader {
            collector: SnapshotCollector::new(),
            metric: self.schema.metric,
            dim: self.schema.dimension,
            index: IndexLoader::new(self.schema.metric, self.schema.dimension, 0),
        }
    }

    /// Loads a verified snapshot into its shard, taking its records (see
    /// [`tidemark_core::replica::ReplicaShard::load_snapshot_owned`]), with
    /// the index built while it streamed in; `false` if the replica was
    /// already past it.
    pub fn load_snapshot(&mut self, loaded: LoadedSnapshot) -> Result<bool, SdkError> {
        let LoadedSnapshot { snapshot, index } = loaded;
        let shard = snapshot.shard;
        if !self.replica.load_snapshot_owned(snapshot)? {
            return Ok(false);
        }
        match index {
            Some(index) => {
                self.indexes[shard.0 as usize] = index;
                self.reindex_pending(shard);
            }
            None => self.rebuild_index(shard, None),
        }
        self.dirty_shards.insert(shard);
        self.dirty_segments.insert(shard);
        Ok(true)
    }

    /// Marks writes up to the ack acknowledged.
    pub fn ack(&mut self, ack: &WriteAck) -> usize {
        let count = self.outbox.ack(ack);
        if count > 0 {
            self.outbox_dirty = true;
        }
        count
    }

    /// Forgets acknowledged writes the replica has caught up with.
    pub fn settle(&mut self) -> usize {
        let settled = self.outbox.settle(&self.replica.tidemark());
        if settled > 0 {
            self.outbox_dirty = true;
        }
        settled
    }

    /// Drops a write the writer refused for good.
    pub fn discard(&mut self, seq: u64) {
        let id = self
            .outbox
            .writes()
            .iter()
            .find(|w| w.seq == seq)
            .map(|w| w.id.clone());
        if self.outbox.discard(seq) {
            self.outbox_dirty = true;
            if let Some(id) = id {
                self.reindex(&id);
            }
        }
    }

    /// The bytes that changed since the last call, to write in one batch.
    /// The outbox is always part of a batch that carries replica shards,
    /// because settling depends on both.
    pub fn take_persist(&mut self) -> Vec<StoreWrite> {
        let name = self.key.collection.as_str().to_string();
        let mut writes = Vec::new();
        for shard in std::mem::take(&mut self.dirty_shards) {
            if let Some(replica) = self.replica.shard(shard) {
                let snapshot = replica.to_snapshot();
                writes.push((
                    keys::shard(&name, shard.0),
                    Some(wire::encode(&Message::Snapshot(snapshot))),
                ));
            }
        }
        for shard in std::mem::take(&mut self.dirty_segments) {
            let segment = self.indexes[shard.0 as usize]
                .sealed()
                .map(HnswSegment::to_bytes);
            writes.push((keys::segment(&name, shard.0), segment));
        }
        if self.outbox_dirty || !writes.is_empty() {
            self.outbox_dirty = false;
            writes.push((keys::outbox(&name), Some(self.outbox.to_bytes())));
        }
        writes
    }

    /// Puts `id`'s local view into its shard's index (or takes it out).
    fn reindex(&mut self, id: &RecordId) {
        let shard = self.replica.shard_of(id).0 as usize;
        let view = self
            .outbox
            .local_view(&self.replica, id, &self.schema, &self.limits);
        let index = &mut self.indexes[shard];
        match view {
            Some(ReplicaRecord {
                fields,
                vector: Some(vector),
            }) => {
                // Vectors reaching here passed the schema's validation.
                let _ = index.upsert(id.as_str(), Some(&vector), Value::Object(fields));
            }
            _ => {
                index.delete(id.as_str());
            }
        }
    }

    /// Rebuilds a shard's index from the replica (and a sealed segment that
    /// covers most of it), then lays the pending writes over it.
    fn rebuild_index(&mut self, shard: ShardId, segment: Option<HnswSegment>) {
        let Some(replica) = self.replica.shard(shard) else {
            return;
        };
        let mut index = match segment {
            Some(segment) => {
                let fields: HashMap<String, Value> = replica
                    .records()
                    .map(|(id, r)| (id.as_str().to_string(), Value::Object(r.fields.clone())))
                    .collect();
                let stale: Vec<String> = segment
                    .ids()
                    .iter()
                    .filter(|id| !fields.contains_key(*id))
                    .map(str::to_owned)
                    .collect();
                let mut index = ShardIndex::from_sealed(segment, fields);
                for id in stale {
                    index.delete(&id);
                }
                index
            }
            None => ShardIndex::new(self.schema.metric, self.schema.dimension),
        };
        for (id, record) in replica.records() {
            match &record.vector {
                // A record the segment holds with this very vector keeps its
                // place in the graph, and from_sealed gave it its fields.
                Some(vector) if index.holds(id.as_str(), vector) => {}
                Some(vector) => {
                    let _ = index.upsert(
                        id.as_str(),
                        Some(vector),
                        Value::Object(record.fields.clone()),
                    );
                }
                None => {
                    index.delete(id.as_str());
                }
            }
        }
        self.indexes[shard.0 as usize] = index;
        self.reindex_pending(shard);
    }

    /// Lays the pending writes of `shard` over its index.
    fn reindex_pending(&mut self, shard: ShardId) {
        let pending: BTreeSet<RecordId> = self
            .outbox
            .writes()
            .iter()
            .filter(|w| self.replica.shard_of(&w.id) == shard)
            .map(|w| w.id.clone())
            .collect();
        for id in pending {
            self.reindex(&id);
        }
    }
}

/// A snapshot read from a stream, with its shard's index.
pub struct LoadedSnapshot {
    snapshot: Snapshot,
    /// `None` when the sealed segment did not fit (another metric or
    /// dimension, a point without its record): the index is then rebuilt
    /// from the records alone.
    index: Option<ShardIndex>,
}

/// Gathers a snapshot as it streams in and, beside it, its shard's index:
/// each vector is copied into the index's block as it arrives, and the
/// sealed segment takes that block, instead of a second pass over the
/// records after the snapshot is whole.
pub struct SnapshotLoader {
    collector: SnapshotCollector,
    metric: Metric,
    dim: usize,
    index: IndexLoader,
}

impl SnapshotSink for SnapshotLoader {
    fn head(&mut self, head: &SnapshotHead) -> Result<(), DecodeError> {
        self.collector.head(head)?;
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
            // A vector the schema refuses stays out of search, as a log
            // entry's would; the record itself is kept.
            let _ = self
                .index
                .push(id.as_str(), vector, Value::Object(fields.clone()));
        }
        self.collector.record(id, fields, vector)
    }
}

impl LoadedSnapshot {
    pub fn offset(&self) -> tidemark_core::log::Offset {
        self.snapshot.offset
    }

    /// The ids of its records (for change events).
    pub fn ids(&self) -> Vec<String> {
        self.snapshot
            .records
            .iter()
            .map(|r| r.id.as_str().to_string())
            .collect()
    }
}

impl SnapshotLoader {
    /// The snapshot and index, from what the verified stream returned.
    pub fn finish(self, head: SnapshotHead, mut tail: SnapshotTail) -> LoadedSnapshot {
        // The replica does not keep the segment's bytes; the index decodes
        // them and lets them go.
        let index = self
            .index
            .finish(tail.index_segment.take(), Precision::F32)
            .ok();
        LoadedSnapshot {
            snapshot: self.collector.into_snapshot(head, tail),
            index,
        }
    }
}
