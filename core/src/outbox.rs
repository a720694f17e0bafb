//! The browser's outbox: local writes waiting for the writer.
//!
//! A local write becomes an Automerge change at once, built on the record as
//! the user sees it (the replica's document plus earlier local changes), and
//! joins the outbox. The outbox:
//!
//! - survives restarts as bytes ([`Outbox::to_bytes`] / [`Outbox::from_bytes`]);
//! - sends its unacknowledged writes, oldest first, as a [`WriteBatch`] whose
//!   `client_ref` is the sequence number of the last write in it; re-sending
//!   is always safe because the writer knows changes by hash;
//! - on a [`WriteAck`], marks every write up to `client_ref` acknowledged,
//!   and forgets it only once the replica's tidemark reaches the ack's token
//!   ([`Outbox::settle`]). Until then the write still counts in the local
//!   view — so a user never sees their write vanish and reappear — and in the
//!   document new changes are built on, so the outbox's actor never reuses
//!   a sequence number the writer has already seen.
//!
//! The local view of a record is the replica's state plus every write still
//! in the outbox ([`Outbox::local_view`]).
//!
//! Two rules for the host, both about the actor's sequence numbers: persist
//! the outbox *before* sending a batch (a change the writer has must never
//! be forgotten locally), and persist the replica together with the outbox
//! (settling assumes the replica's documents hold the settled changes).
//!
//! The actor id must be unique to this outbox (the SDK draws it once and it
//! is persisted here): two outboxes sharing one would write conflicting
//! changes that the writer refuses.

use automerge::ActorId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec;
use crate::fields::JsonEdit;
use crate::limits::{LimitError, Limits, check};
use crate::log::{ConsistencyToken, Tidemark};
use crate::model::{CollectionKey, CollectionSchema, NameError, RecordId};
use crate::record::{EditError, RecordDoc};
use crate::replica::{Merging, Replica, ReplicaRecord};
use crate::vector::VectorError;
use crate::wire::{DecodeError, WriteAck};
use crate::writer::{Edit, WriteBatch, WriteError, WriteOp};

/// Version of the outbox's persisted bytes.
const OUTBOX_VERSION: u16 = 1;

/// One local write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// Local sequence number, increasing.
    pub seq: u64,
    pub id: RecordId,
    /// Zero or one Automerge change.
    #[serde(with = "codec::bytes_list")]
    pub changes: Vec<Vec<u8>>,
    /// The vector as the user gave it (the writer validates and prepares it).
    #[serde(with = "codec::opt_vector")]
    pub vector: Option<Vec<f32>>,
    /// The writer's token once it acknowledged this write.
    pub acked: Option<ConsistencyToken>,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum OutboxError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Vector(#[from] VectorError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Local writes of one collection by one actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    version: u16,
    collection: CollectionKey,
    #[serde(with = "codec::bytes")]
    actor: Vec<u8>,
    next_seq: u64,
    writes: Vec<PendingWrite>,
}

impl Outbox {
    pub fn new(collection: CollectionKey, actor: &ActorId) -> Self {
        Self {
            version: OUTBOX_VERSION,
            collection,
            actor: actor.to_bytes().to_vec(),
            next_seq: 1,
            writes: Vec::new(),
        }
    }

    pub fn actor(&self) -> ActorId {
        ActorId::from(self.actor.as_slice())
    }

    /// Every write still held, oldest first.
    pub fn writes(&self) -> &[PendingWrite] {
        &self.writes
    }

    /// Writes not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.writes.iter().filter(|w| w.acked.is_none()).count()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data into a Vec: cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        check(bytes.len(), limits.max_frame_bytes, |actual, limit| {
            LimitError::FrameTooLarge { actual, limit }
        })?;
        let (version, _) = postcard::take_from_bytes::<u16>(bytes)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if version != OUTBOX_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let (outbox, rest) = postcard::take_from_bytes::<Outbox>(bytes)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: rest.len() });
        }
        outbox.collection.validate()?;
        check(
            outbox.writes.len(),
            limits.max_outbox_ops,
            |actual, limit| LimitError::OutboxFull { actual, limit },
        )?;
        for write in &outbox.writes {
            write.id.validate(limits)?;
        }
        Ok(outbox)
    }

    /// The document local edits of `id` build on: the replica's document
    /// plus every change still in the outbox.
    pub fn local_doc(
        &self,
        replica: &Replica<Merging>,
        id: &RecordId,
        limits: &Limits,
    ) -> RecordDoc {
        let mut doc = replica.doc(id).cloned().unwrap_or_default();
        for write in self.writes.iter().filter(|w| &w.id == id) {
            for change in &write.changes {
                // Our own changes, built on this very document: they apply. If
                // one cannot, the view shows the replica's state for it.
                let _ = doc.apply(change, limits);
            }
        }
        doc
    }

    /// `id` as the user sees it: `None` if it does not exist or is deleted.
    pub fn local_view(
        &self,
        replica: &Replica<Merging>,
        id: &RecordId,
        schema: &CollectionSchema,
        limits: &Limits,
    ) -> Option<ReplicaRecord> {
        let mut writes = self.writes.iter().filter(|w| &w.id == id).peekable();
        if writes.peek().is_none() {
            return replica.get(id).cloned();
        }
        let mut vector = replica.get(id).and_then(|r| r.vector.clone());
        for write in writes {
            if let Some(v) = &write.vector {
                vector = schema.prepare_vector(v).ok();
            }
        }
        let state = self.local_doc(replica, id, limits).state();
        (!state.deleted).then_some(ReplicaRecord {
            fields: state.fields,
            vector,
        })
    }

    /// Records a local write of `id`: a JSON edit and/or a new vector. Returns
    /// its sequence number, or `None` if it changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        replica: &Replica<Merging>,
        id: RecordId,
        edit: Option<&JsonEdit>,
        vector: Option<Vec<f32>>,
        schema: &CollectionSchema,
        limits: &Limits,
        time_ms: i64,
    ) -> Result<Option<u64>, OutboxError> {
        id.validate(limits)?;
        check(
            self.writes.len() + 1,
            limits.max_outbox_ops,
            |actual, limit| LimitError::OutboxFull { actual, limit },
        )?;
        if let Some(v) = &vector {
            schema.prepare_vector(v)?;
        }
        let change = match edit {
            Some(edit) => {
                self.local_doc(replica, &id, limits)
                    .edit(edit, &self.actor(), time_ms)?
            }
            None => None,
        };
        if change.is_none() && vector.is_none() {
            return Ok(None);
        }
        let write = PendingWrite {
            seq: self.next_seq,
            id,
            changes: change.into_iter().collect(),
            vector,
            acked: None,
        };
        let op = WriteOp {
            id: write.id.clone(),
            edit: Edit::Changes(write.changes.clone()),
            vector: write.vector.clone(),
        };
        WriteBatch {
            collection: self.collection.clone(),
            client_ref: 0,
            ops: vec![op],
        }
        .check_limits(limits)
        .map_err(|e| match e {
            WriteError::Limit(limit) => OutboxError::Limit(limit),
            WriteError::Name(name) => OutboxError::Name(name),
            other => OutboxError::Edit(EditError::Automerge(other.to_string())),
        })?;
        self.next_seq += 1;
        self.writes.push(write);
        Ok(Some(self.next_seq - 1))
    }

    /// The next batch to send: up to `max_ops` unacknowledged writes, oldest
    /// first. `None` when everything is acknowledged.
    pub fn next_batch(&self, max_ops: usize) -> Option<WriteBatch> {
        let ops: Vec<&PendingWrite> = self
            .writes
            .iter()
            .filter(|w| w.acked.is_none())
            .take(max_ops.max(1))
            .collect();
        let last = ops.last()?.seq;
        Some(WriteBatch {
            collection: self.collection.clone(),
            client_ref: last,
            ops: ops
                .into_iter()
                .map(|w| WriteOp {
                    id: w.id.clone(),
                    edit: if w.changes.is_empty() {
                        Edit::None
                    } else {
                        Edit::Changes(w.changes.clone())
                    },
                    vector: w.vector.clone(),
                })
                .collect(),
        })
    }

    /// Marks writes up to the ack's `client_ref` acknowledged; returns how
    /// many were newly acknowledged. Stale and repeated acks are harmless.
    pub fn ack(&mut self, ack: &WriteAck) -> usize {
        let mut count = 0;
        for write in &mut self.writes {
            if write.seq <= ack.client_ref && write.acked.is_none() {
                write.acked = Some(ack.token.clone());
                count += 1;
            }
        }
        count
    }

    /// Forgets acknowledged writes that the replica has caught up with.
    pub fn settle(&mut self, tidemark: &Tidemark) -> usize {
        let before = self.writes.len();
        self.writes.retain(|w| {
            !w.acked
                .as_ref()
                .is_some_and(|token| tidemark.satisfies(token))
        });
        before - self.writes.len()
    }

    /// Drops a write the writer refused for good (the host shows the error).
    pub fn discard(&mut self, seq: u64) -> bool {
        let before = self.writes.len();
        self.writes.retain(|w| w.seq != seq);
        before != self.writes.len()
    }
}
