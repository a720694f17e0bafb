//! The writer's state: collections and their shards, over the store.
//!
//! Each shard holds core's [`WriterShard`] (records, Automerge documents,
//! the log head) and a [`ShardIndex`] for authoritative search. A write
//! locks the shards it touches (in shard order), applies its part through
//! core, hands the new log rows to the committer and releases the locks; it
//! is acknowledged once the committer says the rows are durable.
//!
//! Commits are pipelined: the next batch applies while the previous one is
//! being made durable, so the committer finds several batches queued and
//! shares one fsync between them (holding the locks across the commit would
//! serialize batches that share a shard, which with ids spread over shards
//! is every batch). Log order stays offset order because rows are submitted
//! under the shard lock and committed in submission order. Nothing is shown
//! before it is durable: the per-shard durable head ([`Collection::tidemark`])
//! only moves after the commit, and a read that saw a shard's state waits
//! until that state's head is durable before it answers.
//!
//! On start the engine rebuilds every shard from its latest snapshot plus
//! the log after it (the same path after a clean stop or a SIGKILL).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tidemark_core::ActorId;
use tidemark_core::limits::Limits;
use tidemark_core::log::{ConsistencyToken, LogEntry, Offset, Tidemark};
use tidemark_core::model::{CollectionKey, CollectionSchema, RecordId, SchemaError};
use tidemark_core::record::RecordState;
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::snapshot::Snapshot;
use tidemark_core::vector::{
    BuildOptions, Hit, HnswSegment, Metric, Query, QueryError, ShardIndex, merge_top_k,
};
use tidemark_core::wire::{self, DecodeError, Invalidation, LogRange, Message};
use tidemark_core::writer::{WriteBatch, WriteError, WriterShard};
use tokio::sync::{broadcast, watch};

use crate::sealer::{Sealer, SealerError};
use crate::snapshot_cache::SnapshotCache;
use crate::store::{
    CollectionRow, CommitError, Committer, LogRow, ShardKey, SnapshotRow, SqliteStore, Store,
    StoreError, WriteSet,
};

/// Entries between the snapshots the writer keeps per shard: bounds restart
/// replay and how far a new replica reads the log after its snapshot.
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// A shard gets its first (sealed) snapshot once it holds this many entries.
const FIRST_SNAPSHOT_AT: u64 = 1024;

/// The seed of every sealed segment: the design fixes it so that a segment
/// built twice from the same records is the same graph.
const SEAL_SEED: u64 = 0x7469_6465_6d61_726b;

/// Bytes of entries one log-range answer carries at most.
const MAX_RANGE_BYTES: usize = 8 << 20;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("collection {0} does not exist")]
    NoCollection(String),
    #[error("collection {0} exists with another schema")]
    CollectionExists(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("shard {shard} does not exist (the collection has {count})")]
    NoShard { shard: u32, count: u32 },
    #[error("the log range is empty or inverted: [{from}, {to})")]
    BadRange { from: u64, to: u64 },
    #[error("the write could not be applied: {0}")]
    Rejected(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data does not decode: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sealer(#[from] SealerError),
}

impl From<DecodeError> for EngineError {
    fn from(err: DecodeError) -> Self {
        EngineError::Corrupt(err.to_string())
    }
}

/// A collection's schema as stored in its row (JSON).
#[derive(Serialize, Deserialize)]
struct StoredSchema {
    dimension: usize,
    metric: Metric,
    shards: u32,
}

pub struct Collection {
    pub key: CollectionKey,
    pub schema: CollectionSchema,
    shards: Vec<tokio::sync::Mutex<Shard>>,
    /// Durable head per shard, readable without the shard lock and waited
    /// on by reads of state not yet durable.
    heads: Vec<watch::Sender<Durable>>,
}

/// How far a shard is durable, and whether a commit of it failed (the
/// committer is then poisoned: nothing later becomes durable until the
/// writer restarts, so waiting readers are told rather than left waiting).
#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    head: u64,
    failed: bool,
}

struct Shard {
    writer: WriterShard,
    index: ShardIndex,
    /// This shard's Automerge actor for JSON edits: one per shard, derived
    /// from the writer's key, so no other process ever writes as it.
    actor: ActorId,
    /// Offset of the latest persisted snapshot that shipped a sealed
    /// segment: the seal schedule counts from it. An unsealed snapshot built
    /// on demand (a replica asked before the first seal) does not move it,
    /// or the shard would wait [`SNAPSHOT_EVERY`] more entries for a graph.
    sealed_at: Option<u64>,
}

impl Collection {
    pub fn tidemark(&self) -> Tidemark {
        let mut tidemark = Tidemark::default();
        for (i, head) in self.heads.iter().enumerate() {
            tidemark
                .shards
                .insert(ShardId(i as u32), Offset(head.borrow().head));
        }
        tidemark
    }

    fn durable_head(&self, shard: usize) -> u64 {
        self.heads[shard].borrow().head
    }

    /// Records that shard `shard` is durable up to `head` (commits of
    /// pipelined batches may report out of order; the head only grows).
    fn set_durable(&self, shard: usize, head: u64) {
        self.heads[shard].send_if_modified(|durable| {
            let grows = head > durable.head;
            if grows {
                durable.head = head;
            }
            grows
        });
    }

    fn commit_failed(&self, shard: usize) {
        self.heads[shard].send_modify(|durable| durable.failed = true);
    }

    /// Waits until shard `shard` is durable up to `head`: a read that saw
    /// state at `head` answers only then. Errors if a commit failed (that
    /// state will never become durable in this process).
    async fn wait_durable(&self, shard: usize, head: u64) -> Result<(), EngineError> {
        let mut durable = self.heads[shard].subscribe();
        let reached = durable
            .wait_for(|durable| durable.head >= head || durable.failed)
            .await
            .map_err(|_| EngineError::Commit(CommitError::Stopped))?
            .head
            >= head;
        if reached {
            Ok(())
        } else {
            Err(EngineError::Commit(CommitError::Poisoned))
        }
    }

    fn shard_index(&self, shard: u32) -> Result<usize, EngineError> {
        let count = self.schema.shard_count.get();
        if shard < count {
            Ok(shard as usize)
        } else {
            Err(EngineError::NoShard { shard, count })
        }
    }
}

/// A record as the API returns it.
pub struct RecordView {
    pub state: RecordState,
    pub vector: Option<Vec<f32>>,
}

pub struct Engine {
    collections: RwLock<HashMap<CollectionKey, Arc<Collection>>>,
    committer: Committer,
    readers: Mutex<Vec<SqliteStore>>,
    /// Opens more read connections when the pool is empty (behind a mutex:
    /// a SQLite connection may move between threads but not be shared).
    template: Mutex<SqliteStore>,
    signing: SigningKey,
    limits: Limits,
    invalidations: broadcast::Sender<Invalidation>,
    sealer: Sealer,
    snapshots: SnapshotCache,
}

impl Engine {
    /// Opens the store under `data_dir`, rebuilds every shard, starts the
    /// committer. Up to `snapshot_cache` bytes of recent snapshot bodies are
    /// kept in memory (see [`SnapshotCache`]).
    pub fn open(
        data_dir: &std::path::Path,
        signing: SigningKey,
        limits: Limits,
        snapshot_cache: usize,
    ) -> Result<Self, EngineError> {
        let store = SqliteStore::open(data_dir)?;
        let reader = store.reader()?;
        let mut collections = HashMap::new();
        for row in reader.collections()? {
            let collection = restore_collection(&reader, &row, &signing, &limits)?;
            collections.insert(collection.key.clone(), Arc::new(collection));
        }
        let committer = Committer::start(store).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (invalidations, _) = broadcast::channel(4096);
        Ok(Self {
            collections: RwLock::new(collections),
            committer,
            readers: Mutex::new(vec![reader.reader()?]),
            template: Mutex::new(reader),
            signing,
            limits,
            invalidations,
            sealer: Sealer::start()?,
            snapshots: SnapshotCache::new(snapshot_cache),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    pub fn seal_stats(&self) -> &crate::sealer::SealStats {
        self.sealer.stats()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.invalidations.subscribe()
    }

    pub fn collection(&self, key: &CollectionKey) -> Result<Arc<Collection>, EngineError> {
        self.collections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(|| EngineError::NoCollection(display(key)))
    }

    /// Creates a collection; `Ok(false)` if the same one already exists.
    pub async fn create_collection(
        &self,
        key: CollectionKey,
        schema: CollectionSchema,
    ) -> Result<bool, EngineError> {
        if let Ok(existing) = self.collection(&key) {
            return if existing.schema == schema {
                Ok(false)
            } else {
                Err(EngineError::CollectionExists(display(&key)))
            };
        }
        let stored = StoredSchema {
            dimension: schema.dimension,
            metric: schema.metric,
            shards: schema.shard_count.get(),
        };
        let row = CollectionRow {
            namespace: key.namespace.as_str().to_string(),
            name: key.collection.as_str().to_string(),
            schema: serde_json::to_vec(&stored).map_err(|e| EngineError::Corrupt(e.to_string()))?,
        };
        // Two concurrent creations may both get here; the second insert
        // replaces the row with the same schema, and the map keeps the first.
        self.committer
            .commit(WriteSet {
                collections: vec![row],
                ..WriteSet::default()
            })
            .await?;
        let collection = new_collection(key.clone(), schema, &self.signing, &self.limits, |_| {
            Ok(None)
        })?;
        let mut map = self
            .collections
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(collection));
        Ok(true)
    }

    /// Applies a batch, shard by shard, acknowledging only durable parts.
    ///
    /// Vectors of every op are validated before any shard is touched, so the
    /// common bad input changes nothing. Each shard's part is applied whole
    /// or not at all; a batch spanning shards whose later part fails (a bad
    /// Automerge change) leaves earlier parts applied, and re-sending it is
    /// safe because applying a change twice changes nothing.
    pub async fn write(
        &self,
        batch: &WriteBatch,
        time_ms: i64,
    ) -> Result<ConsistencyToken, EngineError> {
        batch.check_limits(&self.limits)?;
        let collection = self.collection(&batch.collection)?;
        for op in &batch.ops {
            if let Some(vector) = &op.vector {
                collection
                    .schema
                    .prepare_vector(vector)
                    .map_err(|error| WriteError::Vector {
                        id: op.id.clone(),
                        error,
                    })?;
            }
        }
        // Lock every shard the batch touches, in shard order (so two batches
        // never wait on each other crosswise), apply each part, and submit
        // all parts as one job: one transaction, shared with the batches
        // queued beside it.
        let parts = batch.split_by_shard(collection.schema.shard_count);
        let mut guards = Vec::with_capacity(parts.len());
        for (shard_id, _) in &parts {
            guards.push(collection.shards[shard_id.0 as usize].lock().await);
        }
        let mut token = ConsistencyToken::default();
        let mut set = WriteSet::default();
        let mut applied = Vec::with_capacity(parts.len());
        let mut failure = None;
        for ((shard_id, part), shard) in parts.iter().zip(guards.iter_mut()) {
            let shard = &mut **shard;
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                shard.writer.apply(part, &shard.actor, time_ms)
            }));
            let outcome = match outcome {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(err)) => {
                    failure = Some(EngineError::from(err));
                    break;
                }
                Err(_) => {
                    // A panic inside Automerge on crafted change bytes: the
                    // staged copies are dropped, but rebuild the shard from
                    // the log to be certain nothing half-applied survives.
                    tracing::error!(
                        shard = shard_id.0,
                        "applying a batch panicked; rebuilding the shard"
                    );
                    self.rebuild_shard(&collection, shard, *shard_id)?;
                    failure = Some(EngineError::Rejected(
                        "a change could not be applied".into(),
                    ));
                    break;
                }
            };
            let key = shard_key(&collection.key, *shard_id);
            set.log.extend(outcome.entries.iter().map(|entry| LogRow {
                shard: key.clone(),
                offset: entry.offset.0,
                entry: entry.to_bytes(),
            }));
            token.merge(&outcome.token);
            applied.push((*shard_id, outcome.entries));
        }
        // Parts applied before a failing one are committed all the same (the
        // documented per-shard atomicity): their shards already count them.
        // The index follows the shard under its lock, so it sees entries in
        // log order; reads wait for durability before showing either.
        let mut heads = Vec::with_capacity(applied.len());
        for ((shard_id, entries), shard) in applied.iter().zip(guards.iter_mut()) {
            for entry in entries {
                index_entry(&mut shard.index, entry);
            }
            heads.push((*shard_id, shard.writer.head().0, !entries.is_empty()));
        }
        let commit = (!set.log.is_empty()).then(|| self.committer.submit(set));
        drop(guards);
        if let Some(commit) = commit {
            let outcome = commit.await.unwrap_or(Err(CommitError::Stopped));
            if let Err(err) = outcome {
                // The shards counted entries the log does not hold (and a
                // failed commit poisons the committer, so later batches fail
                // too): rebuild each from what the store holds.
                for (shard_id, _, wrote) in &heads {
                    if *wrote {
                        let i = shard_id.0 as usize;
                        collection.commit_failed(i);
                        let mut shard = collection.shards[i].lock().await;
                        self.rebuild_shard(&collection, &mut shard, *shard_id)?;
                    }
                }
                return Err(err.into());
            }
        }
        for (shard_id, head, wrote) in heads {
            let i = shard_id.0 as usize;
            if wrote {
                collection.set_durable(i, head);
                let _ = self.invalidations.send(Invalidation {
                    collection: collection.key.clone(),
                    shard: shard_id,
                    head: Offset(collection.durable_head(i)),
                });
            } else {
                // Nothing new here, but the token names the shard's head,
                // which a concurrent batch may not have made durable yet.
                collection.wait_durable(i, head).await?;
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(token),
        }
    }

    /// Persists a sealed snapshot of every shard whose index asks for a
    /// reseal ([`tidemark_core::vector::ResealPolicy`]) or that has moved
    /// [`SNAPSHOT_EVERY`] entries past its last one. Run by
    /// [`spawn_maintenance`], off the request path: sealing takes seconds
    /// for large shards, one shard at a time.
    async fn snapshot_due_shards(&self) -> Result<(), EngineError> {
        let collections: Vec<Arc<Collection>> = self
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for collection in collections {
            for i in 0..collection.shards.len() {
                let head = collection.durable_head(i);
                let snapshot = {
                    let shard = collection.shards[i].lock().await;
                    // Resealed as the index's policy says (the fresh
                    // segment or the tombstones have grown enough that a
                    // new graph pays for itself), and at least every
                    // SNAPSHOT_EVERY entries, which bounds restart replay
                    // when only fields change.
                    let due = match shard.sealed_at {
                        Some(at) => head - at >= SNAPSHOT_EVERY || shard.index.needs_reseal(),
                        None => head >= FIRST_SNAPSHOT_AT,
                    };
                    if !due {
                        continue;
                    }
                    shard.writer.snapshot(None)
                };
                self.persist_snapshot(&collection, i, snapshot, true)
                    .await?;
            }
        }
        Ok(())
    }

    fn rebuild_shard(
        &self,
        collection: &Collection,
        shard: &mut Shard,
        id: ShardId,
    ) -> Result<(), EngineError> {
        let reader = self.reader()?;
        let rebuilt = restore_shard(
            &reader,
            &collection.key,
            collection.schema,
            id,
            &self.signing,
            &self.limits,
        )?;
        self.return_reader(reader);
        *shard = rebuilt;
        Ok(())
    }

    pub async fn get(
        &self,
        key: &CollectionKey,
        id: &RecordId,
    ) -> Result<(Option<RecordView>, Tidemark), EngineError> {
        let collection = self.collection(key)?;
        let i = key.shard_of(id, collection.schema.shard_count).0 as usize;
        let (view, seen) = {
            let shard = collection.shards[i].lock().await;
            let view = shard.writer.record(id).and_then(|(state, vector)| {
                (!state.deleted).then(|| RecordView {
                    state,
                    vector: vector.map(<[f32]>::to_vec),
                })
            });
            (view, shard.writer.head().0)
        };
        collection.wait_durable(i, seen).await?;
        Ok((view, collection.tidemark()))
    }

    /// Top-k over every shard, with each hit's fields.
    pub async fn search(
        &self,
        key: &CollectionKey,
        query: &Query<'_>,
    ) -> Result<(Vec<(Hit, Value)>, Tidemark), EngineError> {
        let collection = self.collection(key)?;
        let mut lists = Vec::with_capacity(collection.shards.len());
        let mut fields: HashMap<String, Value> = HashMap::new();
        let mut seen = Vec::with_capacity(collection.shards.len());
        for shard in &collection.shards {
            let shard = shard.lock().await;
            seen.push(shard.writer.head().0);
            let hits = shard.index.search(query)?;
            for hit in &hits {
                let record = RecordId::new(hit.id.clone(), &self.limits)
                    .ok()
                    .and_then(|id| shard.writer.record(&id));
                let value = record.map_or(Value::Null, |(state, _)| Value::Object(state.fields));
                fields.insert(hit.id.clone(), value);
            }
            lists.push(hits);
        }
        for (i, head) in seen.into_iter().enumerate() {
            collection.wait_durable(i, head).await?;
        }
        let hits = merge_top_k(query.k, lists)
            .into_iter()
            .map(|hit| {
                let value = fields.remove(&hit.id).unwrap_or(Value::Null);
                (hit, value)
            })
            .collect();
        Ok((hits, collection.tidemark()))
    }

    pub fn head(&self, key: &CollectionKey, shard: u32) -> Result<u64, EngineError> {
        let collection = self.collection(key)?;
        let i = collection.shard_index(shard)?;
        Ok(collection.durable_head(i))
    }

    /// A signed `LogRange` of `[from, min(to, head))`, bounded in entries and
    /// bytes; the flag says whether it is the complete, immutable `[from, to)`.
    pub async fn log_range(
        &self,
        key: &CollectionKey,
        shard: u32,
        from: u64,
        to: u64,
    ) -> Result<(Vec<u8>, bool), EngineError> {
        if to <= from {
            return Err(EngineError::BadRange { from, to });
        }
        let collection = self.collection(key)?;
        let i = collection.shard_index(shard)?;
        let head = collection.durable_head(i);
        let end = to
            .min(head)
            .min(from.saturating_add(self.limits.max_range_entries as u64));
        let skey = shard_key(key, ShardId(shard));
        let rows = if from < end {
            self.blocking_read(move |r| r.log_range(&skey, from, end, MAX_RANGE_BYTES))
                .await?
        } else {
            Vec::new()
        };
        let complete = to <= head && rows.len() as u64 == to - from;
        let entries = rows
            .iter()
            .map(|row| LogEntry::from_bytes(&row.entry, &self.limits))
            .collect::<Result<Vec<_>, _>>()?;
        let message = Message::LogRange(LogRange {
            collection: key.clone(),
            shard: ShardId(shard),
            from: Offset(from),
            entries,
        });
        Ok((wire::encode_signed(&message, &self.signing), complete))
    }

    /// The latest signed snapshot of a shard and its offset, built now if the
    /// shard has none yet.
    pub async fn snapshot(
        &self,
        key: &CollectionKey,
        shard: u32,
    ) -> Result<(Bytes, u64), EngineError> {
        let collection = self.collection(key)?;
        let i = collection.shard_index(shard)?;
        let skey = shard_key(key, ShardId(shard));
        if let Some(held) = self.snapshots.get(&skey) {
            return Ok(held);
        }
        let stored = {
            let skey = skey.clone();
            self.blocking_read(move |r| r.latest_snapshot(&skey))
                .await?
        };
        if let Some(row) = stored {
            let body = Bytes::from(row.body);
            self.snapshots.put(&skey, row.offset, body.clone());
            return Ok((body, row.offset));
        }
        // None yet: answer now with an unsealed snapshot (replicas then scan
        // exactly); the background task seals the shard once it is due.
        let snapshot = collection.shards[i].lock().await.writer.snapshot(None);
        self.persist_snapshot(&collection, i, snapshot, false).await
    }

    /// Starts sealing a snapshot of the shard at its head now, whatever the
    /// policy says, and returns that head: the snapshot's offset once it is
    /// persisted (a seal takes seconds to minutes, queued behind the
    /// background's on the sealing thread, so the caller polls for it).
    pub async fn seal_snapshot(
        self: &Arc<Self>,
        key: &CollectionKey,
        shard: u32,
    ) -> Result<u64, EngineError> {
        let collection = self.collection(key)?;
        let i = collection.shard_index(shard)?;
        let snapshot = collection.shards[i].lock().await.writer.snapshot(None);
        let offset = snapshot.offset.0;
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = engine
                .persist_snapshot(&collection, i, snapshot, true)
                .await
            {
                tracing::error!(%err, shard, "a requested seal failed");
            }
        });
        Ok(offset)
    }

    /// Signs and persists `snapshot` (taken under the shard's lock at offset
    /// `at`). With `seal`, first builds the HNSW segment of exactly those
    /// records, outside the lock (seconds for a large shard, during which
    /// writes go on), ships it in the snapshot, and installs it in the live
    /// index followed by the entries written since `at`.
    async fn persist_snapshot(
        &self,
        collection: &Collection,
        i: usize,
        mut snapshot: Snapshot,
        seal: bool,
    ) -> Result<(Bytes, u64), EngineError> {
        let at = snapshot.offset.0;
        let segment = if seal {
            self.seal(collection, &snapshot).await?
        } else {
            None
        };
        if let Some(segment) = &segment {
            snapshot.set_index_segment(segment);
        }
        let fields: HashMap<String, Value> = snapshot
            .records
            .iter()
            .map(|r| (r.id.as_str().to_string(), Value::Object(r.fields.clone())))
            .collect();
        let key = shard_key(&collection.key, snapshot.shard);
        let body = wire::encode_signed(&Message::Snapshot(snapshot), &self.signing);
        let row = SnapshotRow {
            shard: key.clone(),
            offset: at,
            body: body.clone(),
        };
        self.committer
            .commit(WriteSet {
                snapshots: vec![row],
                ..WriteSet::default()
            })
            .await?;
        let body = Bytes::from(body);
        self.snapshots.put(&key, at, body.clone());

        let mut shard = collection.shards[i].lock().await;
        if let Some(segment) = segment {
            let mut index = ShardIndex::from_sealed(segment, fields);
            // Entries after `at` are replayed in order from the store once
            // durable (the lock is held, so no new ones arrive meanwhile).
            let mut from = at;
            let head = shard.writer.head().0;
            collection.wait_durable(i, head).await?;
            while from < head {
                let skey = key.clone();
                let rows = self
                    .blocking_read(move |r| r.log_range(&skey, from, head, MAX_RANGE_BYTES))
                    .await?;
                let Some(last) = rows.last() else { break };
                from = last.offset + 1;
                for row in &rows {
                    index_entry(&mut index, &LogEntry::from_bytes(&row.entry, &self.limits)?);
                }
            }
            shard.index = index;
        }
        if seal {
            shard.sealed_at = Some(shard.sealed_at.map_or(at, |prev| prev.max(at)));
        }
        Ok((body, at))
    }

    /// The sealed segment of a snapshot's records, built on the sealing
    /// thread (see [`crate::sealer`]).
    async fn seal(
        &self,
        collection: &Collection,
        snapshot: &Snapshot,
    ) -> Result<Option<HnswSegment>, EngineError> {
        let points: Vec<(String, Vec<f32>)> = snapshot
            .records
            .iter()
            .filter_map(|r| r.vector.clone().map(|v| (r.id.as_str().to_string(), v)))
            .collect();
        if points.is_empty() {
            return Ok(None);
        }
        let (metric, dim) = (collection.schema.metric, collection.schema.dimension);
        let built = self
            .sealer
            .run(move || {
                HnswSegment::build(metric, dim, &points, BuildOptions::with_seed(SEAL_SEED))
            })
            .await?;
        match built {
            Ok(segment) => Ok(Some(segment)),
            Err(err) => {
                tracing::error!(%err, "sealing failed; the snapshot ships no sealed segment");
                Ok(None)
            }
        }
    }

    async fn blocking_read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let reader = self.reader()?;
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = read(&reader);
            (reader, result)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.return_reader(reader);
        Ok(result?)
    }

    fn reader(&self) -> Result<SqliteStore, EngineError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(reader) => Ok(reader),
            None => Ok(self
                .template
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reader()?),
        }
    }

    fn return_reader(&self, reader: SqliteStore) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        // Enough for the blocking pool's concurrency in practice; extras close.
        if pool.len() < 16 {
            pool.push(reader);
        }
    }
}

/// Runs the engine's background work (snapshots) until the engine is dropped.
pub fn spawn_maintenance(engine: &Arc<Engine>) {
    let engine = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            if let Err(err) = engine.snapshot_due_shards().await {
                tracing::error!(%err, "background snapshot failed");
            }
        }
    });
}

fn display(key: &CollectionKey) -> String {
    format!("{}/{}", key.namespace.as_str(), key.collection.as_str())
}

pub fn shard_key(key: &CollectionKey, shard: ShardId) -> ShardKey {
    ShardKey {
        namespace: key.namespace.as_str().to_string(),
        collection: key.collection.as_str().to_string(),
        shard: shard.0,
    }
}

fn index_entry(index: &mut ShardIndex, entry: &LogEntry) {
    let fields = Value::Object(entry.fields.clone());
    let vector = if entry.deleted {
        None
    } else {
        entry.vector.as_deref()
    };
    // The writer validated the vector before it entered the log; an error
    // here would mean the index and the log disagree, which is worth a log
    // line but not a failed write (the record stays readable by id).
    if let Err(err) = index.upsert(entry.id.as_str(), vector, fields) {
        tracing::error!(id = entry.id.as_str(), %err, "log entry not indexed");
    }
}

/// The shard's actor for JSON edits: the writer's public key, the
/// collection's routing hash and the shard number. Stable across restarts
/// (Automerge continues the actor's sequence from the restored documents)
/// and unique per shard, so no two shards or writers share an actor.
fn shard_actor(signing: &SigningKey, key: &CollectionKey, shard: ShardId) -> ActorId {
    let collection =
        tidemark_core::shard::route_hash(key.namespace.as_str(), key.collection.as_str(), "");
    let mut bytes = signing.verifying_key().to_bytes().to_vec();
    bytes.extend(collection.to_le_bytes());
    bytes.extend(shard.0.to_le_bytes());
    ActorId::from(bytes)
}

fn new_collection(
    key: CollectionKey,
    schema: CollectionSchema,
    signing: &SigningKey,
    limits: &Limits,
    mut shard: impl FnMut(ShardId) -> Result<Option<Shard>, EngineError>,
) -> Result<Collection, EngineError> {
    let mut shards = Vec::new();
    let mut heads = Vec::new();
    for id in schema.shard_count.shards() {
        let state = match shard(id)? {
            Some(state) => state,
            None => Shard {
                writer: WriterShard::new(key.clone(), schema, id, limits.clone()),
                index: ShardIndex::new(schema.metric, schema.dimension),
                actor: shard_actor(signing, &key, id),
                sealed_at: None,
            },
        };
        heads.push(watch::Sender::new(Durable {
            head: state.writer.head().0,
            failed: false,
        }));
        shards.push(tokio::sync::Mutex::new(state));
    }
    Ok(Collection {
        key,
        schema,
        shards,
        heads,
    })
}

fn restore_collection(
    reader: &SqliteStore,
    row: &CollectionRow,
    signing: &SigningKey,
    limits: &Limits,
) -> Result<Collection, EngineError> {
    let stored: StoredSchema = serde_json::from_slice(&row.schema)
        .map_err(|e| EngineError::Corrupt(format!("schema: {e}")))?;
    let count = ShardCount::new(stored.shards).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    let schema = CollectionSchema::new(stored.dimension, stored.metric, count, limits)?;
    let key = collection_key(&row.namespace, &row.name)?;
    new_collection(key.clone(), schema, signing, limits, |id| {
        restore_shard(reader, &key, schema, id, signing, limits).map(Some)
    })
}

pub fn collection_key(namespace: &str, name: &str) -> Result<CollectionKey, EngineError> {
    use tidemark_core::model::{CollectionName, Namespace};
    let namespace = Namespace::new(namespace).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    let name = CollectionName::new(name).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    Ok(CollectionKey::new(namespace, name))
}

/// One shard from the latest snapshot plus the log after it.
fn restore_shard(
    reader: &SqliteStore,
    key: &CollectionKey,
    schema: CollectionSchema,
    id: ShardId,
    signing: &SigningKey,
    limits: &Limits,
) -> Result<Shard, EngineError> {
    let skey = shard_key(key, id);
    let snapshot: Option<Snapshot> = match reader.latest_snapshot(&skey)? {
        None => None,
        Some(row) => match wire::decode_verified(&row.body, &signing.verifying_key(), limits)? {
            Message::Snapshot(snapshot) => Some(snapshot),
            _ => {
                return Err(EngineError::Corrupt(
                    "snapshot row holds another message".into(),
                ));
            }
        },
    };
    let mut from = snapshot.as_ref().map_or(0, |s| s.offset.0);
    let sealed_at = snapshot
        .as_ref()
        .filter(|s| s.index_segment.is_some())
        .map(|s| s.offset.0);
    let mut entries = Vec::new();
    loop {
        let rows = reader.log_range(&skey, from, u64::MAX >> 1, MAX_RANGE_BYTES)?;
        let Some(last) = rows.last() else { break };
        from = last.offset + 1;
        for row in &rows {
            entries.push(LogEntry::from_bytes(&row.entry, limits)?);
        }
    }
    let writer = WriterShard::restore(
        key.clone(),
        schema,
        id,
        limits.clone(),
        snapshot.as_ref(),
        &entries,
    )
    .map_err(|e| EngineError::Corrupt(e.to_string()))?;
    let mut index = match snapshot.as_ref().and_then(Snapshot::decode_index_segment) {
        Some(segment) => {
            let segment = segment.map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let fields = snapshot
                .iter()
                .flat_map(|s| &s.records)
                .map(|r| (r.id.as_str().to_string(), Value::Object(r.fields.clone())))
                .collect();
            ShardIndex::from_sealed(segment, fields)
        }
        None => {
            let mut index = ShardIndex::new(schema.metric, schema.dimension);
            for record in writer.live_records() {
                if let Err(err) = index.upsert(
                    record.id.as_str(),
                    record.vector.as_deref(),
                    Value::Object(record.fields),
                ) {
                    tracing::error!(id = record.id.as_str(), %err, "stored record not indexed");
                }
            }
            index
        }
    };
    if snapshot.as_ref().is_some_and(|s| s.index_segment.is_some()) {
        for entry in &entries {
            index_entry(&mut index, entry);
        }
    }
    Ok(Shard {
        writer,
        index,
        actor: shard_actor(signing, key, id),
        sealed_at,
    })
}
