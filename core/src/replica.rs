//! Read replicas (the edge, the browser): follow a shard's log in order.
//!
//! A [`ReplicaShard`] applies log ranges strictly in offset order. Entries
//! below its tidemark are duplicates and are skipped; a range that starts
//! above it leaves a gap, which is reported as the range to fetch and nothing
//! is applied (the fetch brings those entries again, so nothing is lost by
//! not buffering them). Because entries carry the record's state, applying
//! one is an overwrite, and a replica's state is a function of its tidemark.
//!
//! [`ReadOnly`] replicas (the edge) keep only materialized fields and
//! vectors and never decode Automerge. [`Merging`] replicas (the browser)
//! also keep each record's document, so the outbox can build offline changes
//! on top of it. The mode is a type parameter rather than a flag so that a
//! read-only host does not link Automerge at all: nothing it can call
//! reaches a document (for the edge's worker, that is most of its wasm and
//! of the time a fresh isolate spends compiling it).
//!
//! Documents from a snapshot stay saved bytes (checked, not parsed) until a
//! record is edited or a log entry extends it: a new client bootstrapping
//! tens of thousands of records loads none of them, and persisting the
//! replica writes the bytes back unchanged.
//!
//! A [`Replica`] groups the shards of one collection and answers the
//! questions that span shards: its tidemark and whether it satisfies a
//! consistency token.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::OnceLock;

use thiserror::Error;

use crate::limits::Limits;
use crate::log::{ConsistencyToken, LogEntry, Offset, Tidemark};
use crate::model::{CollectionKey, Fields, RecordId};
use crate::record::RecordDoc;
use crate::shard::{ShardCount, ShardId};
use crate::snapshot::{DocsSection, Snapshot, SnapshotRecord};
use crate::wire::{DecodeError, LogRange};

/// What a replica keeps besides its records: nothing ([`ReadOnly`]) or
/// every record's Automerge document ([`Merging`]). Sealed: core's two
/// modes are the only ones.
pub trait ReplicaMode: Clone + Debug + Default + sealed::Sealed {
    /// Takes a log entry's changes into its record's document.
    fn apply_changes(&mut self, entry: &LogEntry, limits: &Limits);

    /// The documents of a snapshot's section, checked as this mode keeps
    /// them (a mode without documents skips the section unread).
    fn from_section(docs: &DocsSection, limits: &Limits) -> Result<Self, DecodeError>;

    /// The documents as a snapshot's section.
    fn to_section(&self) -> DocsSection;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ReadOnly {}
    impl Sealed for super::Merging {}
}

/// Records and vectors only (the edge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOnly;

impl ReplicaMode for ReadOnly {
    fn apply_changes(&mut self, _: &LogEntry, _: &Limits) {}

    fn from_section(_: &DocsSection, _: &Limits) -> Result<Self, DecodeError> {
        Ok(Self)
    }

    fn to_section(&self) -> DocsSection {
        DocsSection::encode(std::iter::empty())
    }
}

/// Records, vectors and every record's document (the browser).
#[derive(Clone, Debug, Default)]
pub struct Merging {
    docs: BTreeMap<RecordId, DocSlot>,
}

impl ReplicaMode for Merging {
    fn apply_changes(&mut self, entry: &LogEntry, limits: &Limits) {
        let mut doc = self
            .docs
            .remove(&entry.id)
            .and_then(|slot| slot.into_doc(limits))
            .unwrap_or_default();
        let mut intact = true;
        for change in &entry.changes {
            intact &= doc.apply(change, limits).is_ok();
        }
        // The entry's materialized state is authoritative. A document that
        // cannot take the writer's changes (or must queue them: it lacks
        // history the writer had) would mislead local edits, so it is
        // dropped; the next snapshot brings a whole one, and until then
        // local edits start from an empty document, which still merges
        // (fields are root keys). A document that took every change holds
        // the writer's history, so it has the writer's state (comparing
        // would cost a materialization per entry).
        if intact && doc.pending_len() == 0 {
            self.docs.insert(entry.id.clone(), DocSlot::Live(doc));
        }
    }

    fn from_section(docs: &DocsSection, limits: &Limits) -> Result<Self, DecodeError> {
        Ok(Self {
            docs: docs
                .decode_saved(limits)?
                .into_iter()
                .map(|(id, bytes)| (id, DocSlot::saved(bytes)))
                .collect(),
        })
    }

    fn to_section(&self) -> DocsSection {
        DocsSection::encode(self.docs.iter().map(|(id, slot)| (id, slot.save())))
    }
}

/// A live record as a replica serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRecord {
    pub fields: Fields,
    pub vector: Option<Vec<f32>>,
}

/// What applying a log range did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Entries were applied (possibly none, if all were duplicates); the
    /// tidemark is now `tidemark`.
    Applied { applied: usize, tidemark: Offset },
    /// The range starts after the tidemark: fetch `missing` first.
    Gap { missing: Range<Offset> },
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ApplyError {
    #[error(
        "data is for {found:?} shard {found_shard}, this replica holds {expected:?} shard {expected_shard}"
    )]
    WrongShard {
        expected: CollectionKey,
        expected_shard: ShardId,
        found: CollectionKey,
        found_shard: ShardId,
    },
    #[error("log entry at offset {found} where {expected} was expected")]
    NonConsecutive { expected: Offset, found: Offset },
    #[error("the collection has no shard {0}")]
    NoSuchShard(ShardId),
    #[error("snapshot documents: {0}")]
    Docs(DecodeError),
}

/// A record's document in a merging replica.
#[derive(Clone, Debug)]
enum DocSlot {
    /// As a snapshot brought it: checked with [`RecordDoc::check_saved`],
    /// loaded on first read. A document that then fails to load counts as
    /// absent, as a dropped one does (see [`ReplicaShard::apply_range`]).
    Saved {
        bytes: Vec<u8>,
        loaded: OnceLock<Option<RecordDoc>>,
    },
    Live(RecordDoc),
}

impl DocSlot {
    fn saved(bytes: Vec<u8>) -> Self {
        Self::Saved {
            bytes,
            loaded: OnceLock::new(),
        }
    }

    fn get(&self, limits: &Limits) -> Option<&RecordDoc> {
        match self {
            Self::Saved { bytes, loaded } => loaded
                .get_or_init(|| RecordDoc::load(bytes, limits).ok())
                .as_ref(),
            Self::Live(doc) => Some(doc),
        }
    }

    fn into_doc(self, limits: &Limits) -> Option<RecordDoc> {
        match self {
            Self::Saved { bytes, loaded } => loaded
                .into_inner()
                .unwrap_or_else(|| RecordDoc::load(&bytes, limits).ok()),
            Self::Live(doc) => Some(doc),
        }
    }

    fn save(&self) -> Vec<u8> {
        match self {
            Self::Saved { bytes, .. } => bytes.clone(),
            Self::Live(doc) => doc.save(),
        }
    }
}

/// One shard of a replica.
#[derive(Clone, Debug)]
pub struct ReplicaShard<M: ReplicaMode> {
    collection: CollectionKey,
    shard: ShardId,
    limits: Limits,
    /// Whether records keep their vectors (see [`ReplicaShard::without_vectors`]).
    keep_vectors: bool,
    tidemark: Offset,
    records: BTreeMap<RecordId, ReplicaRecord>,
    docs: M,
}

impl<M: ReplicaMode> ReplicaShard<M> {
    pub fn new(collection: CollectionKey, shard: ShardId, limits: Limits) -> Self {
        Self {
            collection,
            shard,
            limits,
            keep_vectors: true,
            tidemark: Offset(0),
            records: BTreeMap::new(),
            docs: M::default(),
        }
    }

    /// A replica whose records do not keep their vectors (they read as
    /// `None`): for a host whose vector index holds every vector already
    /// (the edge, where a second copy would double a shard's memory). Such
    /// a host answers a record's vector from its index.
    pub fn without_vectors(mut self) -> Self {
        self.keep_vectors = false;
        self
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Entries `[0, tidemark)` are applied.
    pub fn tidemark(&self) -> Offset {
        self.tidemark
    }

    pub fn get(&self, id: &RecordId) -> Option<&ReplicaRecord> {
        self.records.get(id)
    }

    /// A live record's fields, by id as a string (a search hit's id).
    pub fn fields(&self, id: &str) -> Option<&Fields> {
        self.records.get(id).map(|r| &r.fields)
    }

    /// Live records in id order.
    pub fn records(&self) -> impl Iterator<Item = (&RecordId, &ReplicaRecord)> {
        self.records.iter()
    }

    fn check_origin(&self, collection: &CollectionKey, shard: ShardId) -> Result<(), ApplyError> {
        if *collection == self.collection && shard == self.shard {
            Ok(())
        } else {
            Err(ApplyError::WrongShard {
                expected: self.collection.clone(),
                expected_shard: self.shard,
                found: collection.clone(),
                found_shard: shard,
            })
        }
    }

    /// Applies a range of the log (see the module docs). On error nothing
    /// has changed.
    pub fn apply_range(&mut self, range: &LogRange) -> Result<Progress, ApplyError> {
        self.check_origin(&range.collection, range.shard)?;
        for (i, entry) in range.entries.iter().enumerate() {
            let expected = Offset(range.from.0.wrapping_add(i as u64));
            if entry.offset != expected {
                return Err(ApplyError::NonConsecutive {
                    expected,
                    found: entry.offset,
                });
            }
        }
        if range.from > self.tidemark && !range.entries.is_empty() {
            return Ok(Progress::Gap {
                missing: self.tidemark..range.from,
            });
        }
        let mut applied = 0;
        for entry in &range.entries {
            if entry.offset >= self.tidemark {
                self.apply_entry(entry);
                applied += 1;
            }
        }
        Ok(Progress::Applied {
            applied,
            tidemark: self.tidemark,
        })
    }

    fn apply_entry(&mut self, entry: &LogEntry) {
        if entry.deleted {
            self.records.remove(&entry.id);
        } else {
            self.records.insert(
                entry.id.clone(),
                ReplicaRecord {
                    fields: entry.fields.clone(),
                    vector: self.keep_vectors.then(|| entry.vector.clone()).flatten(),
                },
            );
        }
        self.docs.apply_changes(entry, &self.limits);
        self.tidemark = entry.offset.next();
    }

    /// Replaces this shard's state with `snapshot`'s, unless the replica is
    /// already past it (then nothing changes and `false` is returned).
    pub fn load_snapshot(&mut self, snapshot: &Snapshot) -> Result<bool, ApplyError> {
        let keep_vectors = self.keep_vectors;
        let records = snapshot.records.iter().map(|r| SnapshotRecord {
            id: r.id.clone(),
            fields: r.fields.clone(),
            vector: keep_vectors.then(|| r.vector.clone()).flatten(),
        });
        self.install(snapshot, records)
    }

    /// [`Self::load_snapshot`], taking the records' fields and vectors
    /// instead of copying them: for a caller done with the snapshot (a
    /// bootstrap), it saves a copy of every record, which for a large shard
    /// is tens of megabytes of a wasm heap that never shrinks. Refused or
    /// stale, it changes nothing.
    pub fn load_snapshot_owned(&mut self, mut snapshot: Snapshot) -> Result<bool, ApplyError> {
        let records = std::mem::take(&mut snapshot.records);
        self.install(&snapshot, records.into_iter())
    }

    /// Checks `snapshot` (its origin, its offset, its documents as this
    /// replica keeps them) and, if it is not behind, installs it with
    /// `records` (its records, copied or taken, read only after the checks).
    fn install(
        &mut self,
        snapshot: &Snapshot,
        records: impl Iterator<Item = SnapshotRecord>,
    ) -> Result<bool, ApplyError> {
        self.check_origin(&snapshot.collection, snapshot.shard)?;
        if snapshot.offset < self.tidemark {
            return Ok(false);
        }
        let docs = M::from_section(&snapshot.docs, &self.limits).map_err(ApplyError::Docs)?;
        let keep_vectors = self.keep_vectors;
        self.records = records
            .map(|r| {
                let vector = r.vector.filter(|_| keep_vectors);
                (
                    r.id,
                    ReplicaRecord {
                        fields: r.fields,
                        vector,
                    },
                )
            })
            .collect();
        self.docs = docs;
        self.tidemark = snapshot.offset;
        Ok(true)
    }

    /// This replica's state as a snapshot, for persisting it (the browser's
    /// IndexedDB) and restarting from it.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            collection: self.collection.clone(),
            shard: self.shard,
            offset: self.tidemark,
            records: self
                .records
                .iter()
                .map(|(id, r)| SnapshotRecord {
                    id: id.clone(),
                    fields: r.fields.clone(),
                    vector: r.vector.clone(),
                })
                .collect(),
            docs: self.docs.to_section(),
            index_segment: None,
        }
    }
}

impl ReplicaShard<Merging> {
    /// A record's document, loaded on first use.
    pub fn doc(&self, id: &RecordId) -> Option<&RecordDoc> {
        self.docs
            .docs
            .get(id)
            .and_then(|slot| slot.get(&self.limits))
    }
}

/// All shards of one collection.
#[derive(Clone, Debug)]
pub struct Replica<M: ReplicaMode> {
    collection: CollectionKey,
    shard_count: ShardCount,
    shards: Vec<ReplicaShard<M>>,
}

impl<M: ReplicaMode> Replica<M> {
    pub fn new(collection: CollectionKey, shard_count: ShardCount, limits: Limits) -> Self {
        let shards = shard_count
            .shards()
            .map(|shard| ReplicaShard::new(collection.clone(), shard, limits.clone()))
            .collect();
        Self {
            collection,
            shard_count,
            shards,
        }
    }

    pub fn collection(&self) -> &CollectionKey {
        &self.collection
    }

    pub fn shard_of(&self, id: &RecordId) -> ShardId {
        self.collection.shard_of(id, self.shard_count)
    }

    /// `None` if `shard` is not a shard of this collection.
    pub fn shard(&self, shard: ShardId) -> Option<&ReplicaShard<M>> {
        self.shards.get(shard.0 as usize)
    }

    pub fn shard_mut(&mut self, shard: ShardId) -> Option<&mut ReplicaShard<M>> {
        self.shards.get_mut(shard.0 as usize)
    }

    pub fn shards(&self) -> &[ReplicaShard<M>] {
        &self.shards
    }

    /// Applies a range to the shard it names.
    pub fn apply_range(&mut self, range: &LogRange) -> Result<Progress, ApplyError> {
        match self.shards.get_mut(range.shard.0 as usize) {
            Some(shard) => shard.apply_range(range),
            None => Err(ApplyError::NoSuchShard(range.shard)),
        }
    }

    /// Loads a snapshot into the shard it names.
    pub fn load_snapshot(&mut self, snapshot: &Snapshot) -> Result<bool, ApplyError> {
        match self.shards.get_mut(snapshot.shard.0 as usize) {
            Some(shard) => shard.load_snapshot(snapshot),
            None => Err(ApplyError::NoSuchShard(snapshot.shard)),
        }
    }

    /// [`ReplicaShard::load_snapshot_owned`] on the snapshot's shard.
    pub fn load_snapshot_owned(&mut self, snapshot: Snapshot) -> Result<bool, ApplyError> {
        match self.shards.get_mut(snapshot.shard.0 as usize) {
            Some(shard) => shard.load_snapshot_owned(snapshot),
            None => Err(ApplyError::NoSuchShard(snapshot.shard)),
        }
    }

    pub fn get(&self, id: &RecordId) -> Option<&ReplicaRecord> {
        self.shard(self.shard_of(id)).and_then(|s| s.get(id))
    }

    pub fn tidemark(&self) -> Tidemark {
        Tidemark {
            shards: self.shards.iter().map(|s| (s.shard, s.tidemark)).collect(),
        }
    }

    pub fn satisfies(&self, token: &ConsistencyToken) -> bool {
        self.tidemark().satisfies(token)
    }
}

impl Replica<Merging> {
    /// A record's document, loaded on first use.
    pub fn doc(&self, id: &RecordId) -> Option<&RecordDoc> {
        self.shard(self.shard_of(id)).and_then(|s| s.doc(id))
    }
}
