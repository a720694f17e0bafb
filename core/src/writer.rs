//! The writer's state machine for one shard: batches in, log entries out.
//!
//! [`WriterShard::apply`] validates a batch completely, applies it to staged
//! copies of the records it touches, and only if every record succeeds
//! commits them and returns the new log entries (at consecutive offsets from
//! the shard's head) with the consistency token. A batch is therefore all or
//! nothing, and an error leaves the shard exactly as it was.
//!
//! The state machine is storage-agnostic: the host persists the returned
//! entries (the log is the source of truth) and, from time to time, a
//! [`Snapshot`]; after a crash [`WriterShard::restore`] rebuilds the shard
//! from the latest snapshot plus the log after it. It acknowledges a batch
//! only after persisting its entries — which is why a change whose
//! dependencies are missing is refused rather than queued: a queue in memory
//! would be lost in a crash after the client was told the write is done.
//!
//! Idempotence: changes are known by hash, JSON edits that change nothing
//! produce no change, and re-sending an identical vector is no change; a
//! batch that changes nothing produces no entry and the current head as token.

use std::collections::{BTreeMap, HashMap};

use automerge::ActorId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec;
use crate::fields::{self, JsonEdit};
use crate::limits::{LimitError, Limits, check};
use crate::log::{ConsistencyToken, LogEntry, Offset};
use crate::model::{CollectionKey, CollectionSchema, Fields, NameError, RecordId};
use crate::record::{ApplyOutcome, ChangeError, EditError, LoadError, RecordDoc, RecordState};
use crate::shard::{ShardCount, ShardId};
use crate::snapshot::{DocsSection, Snapshot, SnapshotRecord};
use crate::vector::VectorError;
use crate::wire::DecodeError;

/// A client's batch of writes to one collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub collection: CollectionKey,
    /// Chosen by the client and echoed in the ack (the outbox uses it).
    pub client_ref: u64,
    pub ops: Vec<WriteOp>,
}

/// A write to one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteOp {
    pub id: RecordId,
    pub edit: Edit,
    /// A new vector, as given by the client (validated and prepared by the
    /// writer). Vectors are last writer wins in log order.
    #[serde(with = "codec::opt_vector")]
    pub vector: Option<Vec<f32>>,
}

/// How a write changes a record's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Edit {
    /// Fields unchanged (a vector-only write).
    None,
    /// Automerge changes made by the client (offline-capable SDK writes).
    Changes(#[serde(with = "codec::bytes_list")] Vec<Vec<u8>>),
    /// Plain JSON that the writer turns into a change (the JSON API).
    Json(JsonEdit),
}

impl WriteOp {
    /// The JSON API's put: replace every field (and optionally the vector).
    pub fn put(id: RecordId, fields: Fields, vector: Option<Vec<f32>>) -> Self {
        Self {
            id,
            edit: Edit::Json(JsonEdit::Put(fields)),
            vector,
        }
    }

    /// The JSON API's patch: an RFC 7386 merge patch of the fields.
    pub fn patch(id: RecordId, patch: Fields, vector: Option<Vec<f32>>) -> Self {
        Self {
            id,
            edit: Edit::Json(JsonEdit::Patch(patch)),
            vector,
        }
    }

    /// The JSON API's delete.
    pub fn delete(id: RecordId) -> Self {
        Self {
            id,
            edit: Edit::Json(JsonEdit::Delete),
            vector: None,
        }
    }

    /// Only a new vector.
    pub fn set_vector(id: RecordId, vector: Vec<f32>) -> Self {
        Self {
            id,
            edit: Edit::None,
            vector: Some(vector),
        }
    }

    fn check_limits(&self, limits: &Limits) -> Result<(), WriteError> {
        self.id.validate(limits)?;
        let mut bytes = self.vector.as_ref().map_or(0, |v| v.len() * 4);
        match &self.edit {
            Edit::None => {}
            Edit::Changes(changes) => {
                check(changes.len(), limits.max_changes_per_op, |actual, limit| {
                    LimitError::TooManyChanges { actual, limit }
                })?;
                bytes += changes.iter().map(Vec::len).sum::<usize>();
            }
            Edit::Json(JsonEdit::Put(fields) | JsonEdit::Patch(fields)) => {
                let json = codec::json_len(fields);
                check(json, limits.max_fields_bytes, |actual, limit| {
                    LimitError::FieldsTooLarge { actual, limit }
                })?;
                bytes += json;
            }
            Edit::Json(JsonEdit::Delete) => {}
        }
        if let Some(vector) = &self.vector {
            check(vector.len(), limits.max_dimension, |actual, limit| {
                LimitError::DimensionTooLarge { actual, limit }
            })?;
        }
        check(bytes, limits.max_record_bytes, |actual, limit| {
            LimitError::RecordTooLarge { actual, limit }
        })?;
        Ok(())
    }
}

impl WriteBatch {
    /// Splits a batch into one batch per shard, in shard order, each keeping
    /// its ops' order and the `client_ref`. The writer applies each to its
    /// shard and merges the tokens; if one shard fails after another
    /// succeeded, not acknowledging is enough: the client re-sends the whole
    /// batch and the shard that succeeded sees only duplicates.
    pub fn split_by_shard(&self, count: ShardCount) -> Vec<(ShardId, WriteBatch)> {
        let mut split: BTreeMap<ShardId, WriteBatch> = BTreeMap::new();
        for op in &self.ops {
            let shard = self.collection.shard_of(&op.id, count);
            split
                .entry(shard)
                .or_insert_with(|| WriteBatch {
                    collection: self.collection.clone(),
                    client_ref: self.client_ref,
                    ops: Vec::new(),
                })
                .ops
                .push(op.clone());
        }
        split.into_iter().collect()
    }

    /// Checks sizes and names (not the schema, which only the writer knows).
    pub fn check_limits(&self, limits: &Limits) -> Result<(), WriteError> {
        self.collection.validate()?;
        check(self.ops.len(), limits.max_batch_ops, |actual, limit| {
            LimitError::BatchTooLarge { actual, limit }
        })?;
        self.ops.iter().try_for_each(|op| op.check_limits(limits))
    }
}

impl From<WriteError> for DecodeError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Limit(limit) => DecodeError::Limit(limit),
            WriteError::Name(name) => DecodeError::Name(name),
            other => DecodeError::Malformed(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum WriteError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("batch is for collection {0:?}, this shard belongs to another")]
    WrongCollection(CollectionKey),
    #[error("record {id} belongs to shard {owner}, not this one")]
    WrongShard { id: RecordId, owner: ShardId },
    #[error("record {id}: {error}")]
    Vector { id: RecordId, error: VectorError },
    #[error("record {id}: {error}")]
    Change { id: RecordId, error: ChangeError },
    #[error("record {id}: {error}")]
    Edit { id: RecordId, error: EditError },
    /// The client must first send the changes this one builds on.
    #[error("record {id}: a change depends on changes the writer does not have")]
    MissingDependencies { id: RecordId },
    /// The record's stored document does not load (a bug or corruption; the
    /// write is refused and nothing changes).
    #[error("record {id}: its stored document does not load: {error}")]
    StoredDocument { id: RecordId, error: LoadError },
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum RestoreError {
    #[error("snapshot is of {0:?} shard {1}, not this shard")]
    WrongSnapshot(CollectionKey, ShardId),
    #[error("snapshot documents: {0}")]
    Docs(DecodeError),
    #[error("log entry at offset {found} where {expected} was expected")]
    Gap { expected: Offset, found: Offset },
    #[error("log entry {offset}: {error}")]
    Change { offset: Offset, error: ChangeError },
    /// The documents do not reproduce the state the log recorded: the
    /// snapshot and log are not from the same history.
    #[error("log entry {offset}: replaying it does not give the state it recorded")]
    Diverged { offset: Offset },
}

/// What a successful batch produced.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    /// New entries, to persist before acknowledging.
    pub entries: Vec<LogEntry>,
    /// The shard's head after the batch.
    pub token: ConsistencyToken,
}

/// A record as the writer keeps it: its document as bytes rather than as a
/// live Automerge document, which holds about 17 KB of op-set structures
/// for a record of three fields (a shard of a million records could not),
/// and the state that document materializes to, cached beside them. An edit
/// of an existing record loads the document for as long as the batch needs it.
#[derive(Clone, Debug)]
struct WriterRecord {
    /// One Automerge chunk ([`RecordDoc::check_saved`]): the change that
    /// created the record, or the saved document once it has more.
    doc: Vec<u8>,
    state: RecordState,
    vector: Option<Vec<f32>>,
}

impl WriterRecord {
    /// The bytes a record keeps once `changes` made `doc` from `current`:
    /// the stored bytes when nothing changed, the one change that created a
    /// record, else the saved document. `apply` and `restore` both keep
    /// records by this rule, so a restored shard snapshots as it did before.
    fn kept_doc(current: Option<&WriterRecord>, changes: &[Vec<u8>], doc: &RecordDoc) -> Vec<u8> {
        match (current, changes) {
            (Some(current), []) => current.doc.clone(),
            (None, [only]) => only.clone(),
            _ => doc.save(),
        }
    }

    fn load(&self, id: &RecordId) -> Result<RecordDoc, WriteError> {
        load_stored(id, &self.doc)
    }
}

/// Loads a document the writer itself stored for `id` (a record's bytes,
/// or a change made earlier in the batch).
fn load_stored(id: &RecordId, bytes: &[u8]) -> Result<RecordDoc, WriteError> {
    RecordDoc::load_own(bytes).map_err(|error| WriteError::StoredDocument {
        id: id.clone(),
        error,
    })
}

/// One shard of one collection, as the writer holds it.
#[derive(Clone, Debug)]
pub struct WriterShard {
    collection: CollectionKey,
    schema: CollectionSchema,
    shard: ShardId,
    limits: Limits,
    head: Offset,
    records: BTreeMap<RecordId, WriterRecord>,
}

/// A record being changed by the current batch.
struct Staged {
    id: RecordId,
    /// The document, once an op of the batch needed it: loaded from the
    /// record's bytes, or new.
    doc: Option<RecordDoc>,
    /// A new record's first change and its state, when a put created it
    /// without a document ([`fields::first_change`]).
    created: Option<(Vec<u8>, RecordState)>,
    vector: Option<Vec<f32>>,
    changes: Vec<Vec<u8>>,
}

impl WriterShard {
    /// An empty shard.
    pub fn new(
        collection: CollectionKey,
        schema: CollectionSchema,
        shard: ShardId,
        limits: Limits,
    ) -> Self {
        Self {
            collection,
            schema,
            shard,
            limits,
            head: Offset(0),
            records: BTreeMap::new(),
        }
    }

    /// Rebuilds a shard from its latest snapshot (if any) and the log entries
    /// after it, in order. Every entry is replayed through the documents and
    /// checked against the state it recorded.
    pub fn restore<'a>(
        collection: CollectionKey,
        schema: CollectionSchema,
        shard: ShardId,
        limits: Limits,
        snapshot: Option<&Snapshot>,
        entries: impl IntoIterator<Item = &'a LogEntry>,
    ) -> Result<Self, RestoreError> {
        let mut writer = Self::new(collection, schema, shard, limits);
        if let Some(snapshot) = snapshot {
            if snapshot.collection != writer.collection || snapshot.shard != shard {
                return Err(RestoreError::WrongSnapshot(
                    snapshot.collection.clone(),
                    snapshot.shard,
                ));
            }
            // The documents stay bytes; each record's state is the one the
            // snapshot recorded (a document without a live record is deleted).
            let live: HashMap<&RecordId, &SnapshotRecord> =
                snapshot.records.iter().map(|r| (&r.id, r)).collect();
            for (id, doc) in snapshot
                .docs
                .decode_saved(&writer.limits)
                .map_err(RestoreError::Docs)?
            {
                let (state, vector) = match live.get(&id) {
                    Some(live) => (
                        RecordState {
                            fields: live.fields.clone(),
                            deleted: false,
                        },
                        live.vector.clone(),
                    ),
                    None => (
                        RecordState {
                            fields: Fields::new(),
                            deleted: true,
                        },
                        None,
                    ),
                };
                writer
                    .records
                    .insert(id, WriterRecord { doc, state, vector });
            }
            writer.head = snapshot.offset;
        }
        for entry in entries {
            if entry.offset < writer.head {
                continue;
            }
            if entry.offset != writer.head {
                return Err(RestoreError::Gap {
                    expected: writer.head,
                    found: entry.offset,
                });
            }
            let diverged = || RestoreError::Diverged {
                offset: entry.offset,
            };
            let existing = writer.records.remove(&entry.id);
            let (doc, state) = match (existing, entry.changes.as_slice()) {
                // A vector-only entry: the document is as it was.
                (Some(record), []) => (record.doc, record.state),
                (None, []) => (RecordDoc::new().save(), RecordState::default()),
                (existing, changes) => {
                    let mut doc = match &existing {
                        Some(record) => RecordDoc::load_own(&record.doc).map_err(|_| diverged())?,
                        None => RecordDoc::new(),
                    };
                    for change in changes {
                        doc.apply(change, &writer.limits).map_err(|error| {
                            RestoreError::Change {
                                offset: entry.offset,
                                error,
                            }
                        })?;
                    }
                    let bytes = WriterRecord::kept_doc(existing.as_ref(), changes, &doc);
                    (bytes, doc.state())
                }
            };
            if state.fields != entry.fields || state.deleted != entry.deleted {
                return Err(diverged());
            }
            writer.records.insert(
                entry.id.clone(),
                WriterRecord {
                    doc,
                    state,
                    vector: entry.vector.clone(),
                },
            );
            writer.head = entry.offset.next();
        }
        Ok(writer)
    }

    pub fn collection(&self) -> &CollectionKey {
        &self.collection
    }

    pub fn schema(&self) -> &CollectionSchema {
        &self.schema
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The offset the next entry will get (= entries so far).
    pub fn head(&self) -> Offset {
        self.head
    }

    /// A record's current state and vector.
    pub fn record(&self, id: &RecordId) -> Option<(RecordState, Option<&[f32]>)> {
        self.records
            .get(id)
            .map(|r| (r.state.clone(), r.vector.as_deref()))
    }

    /// A record's document, loaded (to build a change against, or to serve
    /// a client that merges); `None` if the record does not exist or its
    /// stored document does not load.
    pub fn doc(&self, id: &RecordId) -> Option<RecordDoc> {
        self.records.get(id)?.load(id).ok()
    }

    /// Live records: `(id, fields, vector)`, sorted by id.
    pub fn live_records(&self) -> Vec<SnapshotRecord> {
        self.records
            .iter()
            .filter(|(_, record)| !record.state.deleted)
            .map(|(id, record)| SnapshotRecord {
                id: id.clone(),
                fields: record.state.fields.clone(),
                vector: record.vector.clone(),
            })
            .collect()
    }

    /// The shard's state at its head, for persisting and for replicas.
    pub fn snapshot(&self, index_segment: Option<Vec<u8>>) -> Snapshot {
        Snapshot {
            collection: self.collection.clone(),
            shard: self.shard,
            offset: self.head,
            records: self.live_records(),
            docs: DocsSection::encode(self.records.iter().map(|(id, r)| (id, r.doc.clone()))),
            index_segment,
        }
    }

    /// Applies a batch (see the module docs). JSON edits become changes by
    /// `actor` at `time_ms`; the writer should use one actor id per shard
    /// that no other process uses.
    ///
    /// `self` is only modified after every record succeeded, so if a bug in
    /// Automerge panics on a crafted change (its apply path still has an
    /// `unwrap`), a native host that catches the unwind finds the shard
    /// unchanged and can refuse the batch.
    pub fn apply(
        &mut self,
        batch: &WriteBatch,
        actor: &ActorId,
        time_ms: i64,
    ) -> Result<WriteOutcome, WriteError> {
        if batch.collection != self.collection {
            return Err(WriteError::WrongCollection(batch.collection.clone()));
        }
        batch.check_limits(&self.limits)?;
        for op in &batch.ops {
            let owner = self.collection.shard_of(&op.id, self.schema.shard_count);
            if owner != self.shard {
                return Err(WriteError::WrongShard {
                    id: op.id.clone(),
                    owner,
                });
            }
        }

        let mut staged: Vec<Staged> = Vec::new();
        let mut index: HashMap<RecordId, usize> = HashMap::new();
        for op in &batch.ops {
            let slot = *index.entry(op.id.clone()).or_insert_with(|| {
                staged.push(Staged {
                    id: op.id.clone(),
                    doc: None,
                    created: None,
                    vector: self.records.get(&op.id).and_then(|r| r.vector.clone()),
                    changes: Vec::new(),
                });
                staged.len() - 1
            });
            self.stage(&mut staged[slot], op, actor, time_ms)?;
        }

        let mut entries = Vec::new();
        let mut commits = Vec::new();
        for record in staged {
            let current = self.records.get(&record.id);
            let (doc, state) = match (record.doc, record.created) {
                (Some(doc), _) => {
                    if doc.pending_len() > 0 {
                        return Err(WriteError::MissingDependencies { id: record.id });
                    }
                    (
                        WriterRecord::kept_doc(current, &record.changes, &doc),
                        doc.state(),
                    )
                }
                (None, Some(created)) => created,
                // Only the vector changes (or nothing does).
                (None, None) => match current {
                    Some(current) => (current.doc.clone(), current.state.clone()),
                    None => (RecordDoc::new().save(), RecordState::default()),
                },
            };
            let vector = if state.deleted { None } else { record.vector };
            let before = current.and_then(|r| r.vector.as_ref());
            if record.changes.is_empty() && vector.as_ref() == before {
                continue;
            }
            let entry = LogEntry {
                offset: Offset(self.head.0.saturating_add(entries.len() as u64)),
                id: record.id.clone(),
                changes: record.changes,
                fields: state.fields.clone(),
                vector: vector.clone(),
                deleted: state.deleted,
            };
            entry.check_limits(&self.limits)?;
            entries.push(entry);
            commits.push((record.id, WriterRecord { doc, state, vector }));
        }
        self.records.extend(commits);
        self.head = Offset(self.head.0.saturating_add(entries.len() as u64));
        Ok(WriteOutcome {
            entries,
            token: ConsistencyToken::single(self.shard, self.head),
        })
    }

    /// The staged record's document, loaded on first use: from the change
    /// that created it earlier in this batch, from its stored bytes, or new.
    fn staged_doc<'s>(&self, record: &'s mut Staged) -> Result<&'s mut RecordDoc, WriteError> {
        let doc = match (record.doc.take(), record.created.take()) {
            (Some(doc), _) => doc,
            (None, Some((change, _))) => load_stored(&record.id, &change)?,
            (None, None) => match self.records.get(&record.id) {
                Some(stored) => stored.load(&record.id)?,
                None => RecordDoc::new(),
            },
        };
        Ok(record.doc.insert(doc))
    }

    fn stage(
        &self,
        record: &mut Staged,
        op: &WriteOp,
        actor: &ActorId,
        time_ms: i64,
    ) -> Result<(), WriteError> {
        match &op.edit {
            Edit::None => {}
            // A put creating a record: its change without a document.
            Edit::Json(edit @ JsonEdit::Put(put))
                if record.doc.is_none()
                    && record.created.is_none()
                    && !self.records.contains_key(&op.id) =>
            {
                if let Some(name) = edit.reserved_field() {
                    return Err(WriteError::Edit {
                        id: op.id.clone(),
                        error: EditError::ReservedField(name.to_owned()),
                    });
                }
                if let Some(change) = fields::first_change(put, actor, time_ms) {
                    let state = RecordState {
                        fields: fields::materialized(put),
                        deleted: false,
                    };
                    record.changes.push(change.clone());
                    record.created = Some((change, state));
                }
            }
            Edit::Changes(changes) => {
                let doc = self.staged_doc(record)?;
                let mut applied = Vec::new();
                for bytes in changes {
                    let outcome =
                        doc.apply(bytes, &self.limits)
                            .map_err(|error| WriteError::Change {
                                id: op.id.clone(),
                                error,
                            })?;
                    if let ApplyOutcome::Applied { released } = outcome {
                        applied.push(bytes.clone());
                        applied.extend(released.iter().filter_map(|h| doc.change_bytes(h)));
                    }
                }
                record.changes.extend(applied);
            }
            Edit::Json(edit) => {
                let change = self
                    .staged_doc(record)?
                    .edit(edit, actor, time_ms)
                    .map_err(|error| WriteError::Edit {
                        id: op.id.clone(),
                        error,
                    })?;
                record.changes.extend(change);
            }
        }
        if let Some(vector) = &op.vector {
            let prepared =
                self.schema
                    .prepare_vector(vector)
                    .map_err(|error| WriteError::Vector {
                        id: op.id.clone(),
                        error,
                    })?;
            record.vector = Some(prepared);
        }
        Ok(())
    }
}
