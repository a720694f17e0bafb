//! One record's CRDT document, with the rules for taking in changes.
//!
//! A record's fields are an Automerge document (see [`crate::fields`] for the
//! layout). Changes arrive from anywhere — the writer's JSON API, a browser
//! that was offline for a week, a log entry replayed twice — and in any order.
//! [`RecordDoc::apply`] makes that safe:
//!
//! - a change is known by its hash, so applying it again is a no-op;
//! - a change whose dependencies are not all applied waits in a per-record
//!   queue and is applied, in causal order, as soon as they are; the queue is
//!   bounded ([`Limits::max_pending_changes`]) and a full queue is an error
//!   the sender sees, never a silent drop.
//!
//! Automerge keeps a dependency queue of its own, but it is unbounded and
//! invisible; handing it only causally ready changes keeps it empty.
//!
//! Time and actor ids are parameters of [`RecordDoc::edit`]. (Automerge's
//! constructor draws a random actor id that core immediately replaces and
//! never uses; that is why automerge needs a `getrandom` backend on wasm32.)

use std::collections::HashSet;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use thiserror::Error;

use crate::fields::{self, JsonEdit};
use crate::limits::{LimitError, Limits, check};
use crate::model::Fields;

/// What a record looks like to a reader (by default, a record never written).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordState {
    /// The fields; empty when the record is deleted.
    pub fields: Fields,
    pub deleted: bool,
}

/// The result of offering a change to a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The change was applied, followed by these previously queued changes
    /// that it unblocked, in the order they were applied.
    Applied { released: Vec<ChangeHash> },
    /// The change was already applied or is already queued.
    Duplicate,
    /// The change waits for dependencies that are not applied yet.
    Queued,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ChangeError {
    #[error("not an Automerge change: {0}")]
    Malformed(String),
    /// E.g. a different change with the same actor and sequence number as one
    /// already applied: the sender reused an actor id.
    #[error("change conflicts with the record's history: {0}")]
    Rejected(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum EditError {
    #[error("field names starting with '$' are reserved, got {0:?}")]
    ReservedField(String),
    #[error("could not build the change: {0}")]
    Automerge(String),
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum LoadError {
    #[error("not a saved Automerge document: {0}")]
    Malformed(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// A record's Automerge document plus the changes waiting to join it.
#[derive(Clone, Debug)]
pub struct RecordDoc {
    doc: Automerge,
    /// Hashes of every applied change: the duplicate check runs on every
    /// incoming change, and automerge exposes no cheap lookup.
    applied: HashSet<ChangeHash>,
    /// Changes with missing dependencies, in arrival order.
    pending: Vec<Change>,
}

impl Default for RecordDoc {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordDoc {
    /// An empty document: the state of a record nobody has written yet.
    pub fn new() -> Self {
        Self {
            doc: Automerge::new(),
            applied: HashSet::new(),
            pending: Vec::new(),
        }
    }

    /// Loads a document saved with [`RecordDoc::save`] (queued changes are
    /// not saved: their senders re-send them).
    pub fn load(bytes: &[u8], limits: &Limits) -> Result<Self, LoadError> {
        check(bytes.len(), limits.max_doc_bytes, |actual, limit| {
            LimitError::DocTooLarge { actual, limit }
        })?;
        Self::load_own(bytes)
    }

    /// [`RecordDoc::load`] of bytes this process wrote itself (the writer's
    /// stored documents), which no size limit applies to: a record may grow
    /// past [`Limits::max_doc_bytes`] one accepted change at a time.
    pub(crate) fn load_own(bytes: &[u8]) -> Result<Self, LoadError> {
        let doc = Automerge::load(bytes).map_err(|e| LoadError::Malformed(e.to_string()))?;
        let applied = doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| m.hash)
            .collect();
        Ok(Self {
            doc,
            applied,
            pending: Vec::new(),
        })
    }

    /// Checks, without loading it, that `bytes` is one whole Automerge
    /// chunk within the limits that [`RecordDoc::load`] reads: a saved
    /// document ([`RecordDoc::save`]) or a single change (how the writer
    /// keeps a record that one change created; see
    /// [`crate::fields::first_change`]). The chunk header (magic, type,
    /// length) is checked, and that nothing follows it. Loading parses the
    /// columns; this is what a replica that loads documents only when they
    /// are edited checks up front.
    pub fn check_saved(bytes: &[u8], limits: &Limits) -> Result<(), LoadError> {
        check(bytes.len(), limits.max_doc_bytes, |actual, limit| {
            LimitError::DocTooLarge { actual, limit }
        })?;
        // Automerge's chunk: magic (4 bytes), checksum (4), type (1), then
        // the length of the rest as unsigned LEB128.
        const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
        // Chunk types: document, change, compressed change.
        const LOADABLE_CHUNKS: [u8; 3] = [0, 1, 2];
        let malformed = |why: &str| LoadError::Malformed(why.to_owned());
        let header = bytes.get(..9).ok_or_else(|| malformed("too short"))?;
        if header[..4] != MAGIC {
            return Err(malformed("no Automerge magic bytes"));
        }
        if !LOADABLE_CHUNKS.contains(&header[8]) {
            return Err(malformed("not a document or change chunk"));
        }
        let mut length: u64 = 0;
        let mut rest = &bytes[9..];
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = rest
                .split_first()
                .ok_or_else(|| malformed("truncated length"))?;
            rest = tail;
            length |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return if length == rest.len() as u64 {
                    Ok(())
                } else {
                    Err(malformed("length does not match the bytes"))
                };
            }
        }
        Err(malformed("length too long"))
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The record's current state.
    pub fn state(&self) -> RecordState {
        let deleted = fields::is_deleted(&self.doc);
        let fields = if deleted {
            Fields::new()
        } else {
            fields::materialize(&self.doc)
        };
        RecordState { fields, deleted }
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        self.applied.contains(hash)
    }

    /// How many changes wait for dependencies.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Every applied change, as bytes, in an order that respects dependencies.
    pub fn changes(&self) -> Vec<Vec<u8>> {
        self.doc
            .get_changes(&[])
            .into_iter()
            .map(|change| change.raw_bytes().to_vec())
            .collect()
    }

    /// The bytes of an applied change.
    pub fn change_bytes(&self, hash: &ChangeHash) -> Option<Vec<u8>> {
        self.doc
            .get_change_by_hash(hash)
            .map(|change| change.raw_bytes().to_vec())
    }

    /// Takes in one change (see the module docs for the rules).
    pub fn apply(&mut self, bytes: &[u8], limits: &Limits) -> Result<ApplyOutcome, ChangeError> {
        let change = Change::from_bytes(bytes.to_vec())
            .map_err(|e| ChangeError::Malformed(e.to_string()))?;
        let hash = change.hash();
        if self.applied.contains(&hash) || self.pending.iter().any(|c| c.hash() == hash) {
            return Ok(ApplyOutcome::Duplicate);
        }
        if !self.is_ready(&change) {
            check(
                self.pending.len() + 1,
                limits.max_pending_changes,
                |actual, limit| LimitError::TooManyPending { actual, limit },
            )?;
            self.pending.push(change);
            return Ok(ApplyOutcome::Queued);
        }
        self.apply_ready(change)?;
        Ok(ApplyOutcome::Applied {
            released: self.release_pending(),
        })
    }

    /// Applies every change of `other` that this document lacks (the CRDT
    /// merge: commutative, associative and idempotent).
    pub fn merge(&mut self, other: &RecordDoc, limits: &Limits) -> Result<(), ChangeError> {
        for change in other.doc.get_changes(&[]) {
            self.apply(change.raw_bytes(), limits)?;
        }
        Ok(())
    }

    /// Builds, applies and returns the change that performs `edit`, written
    /// by `actor` at `time_ms` (milliseconds since the Unix epoch; advisory,
    /// never used to order edits). `None` if the edit changes nothing, so a
    /// re-sent request adds no history.
    pub fn edit(
        &mut self,
        edit: &JsonEdit,
        actor: &ActorId,
        time_ms: i64,
    ) -> Result<Option<Vec<u8>>, EditError> {
        if let Some(name) = edit.reserved_field() {
            return Err(EditError::ReservedField(name.to_owned()));
        }
        // Deleting a record that was never written leaves nothing to delete.
        if *edit == JsonEdit::Delete && self.applied.is_empty() {
            return Ok(None);
        }
        let current = fields::materialize(&self.doc);
        let deleted = fields::is_deleted(&self.doc);
        let visible = if deleted {
            Fields::new()
        } else {
            current.clone()
        };
        if edit.outcome(&visible) == (visible, deleted) {
            return Ok(None);
        }
        self.doc.set_actor(actor.clone());
        let mut tx = self.doc.transaction();
        if let Err(e) = fields::write_edit(&mut tx, &current, deleted, edit) {
            tx.rollback();
            return Err(EditError::Automerge(e.to_string()));
        }
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(time_ms));
        let hash = hash.ok_or_else(|| EditError::Automerge("empty change".into()))?;
        self.applied.insert(hash);
        let change = self
            .doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| EditError::Automerge("committed change not found".into()))?;
        Ok(Some(change.raw_bytes().to_vec()))
    }

    fn is_ready(&self, change: &Change) -> bool {
        change.deps().iter().all(|dep| self.applied.contains(dep))
    }

    fn apply_ready(&mut self, change: Change) -> Result<(), ChangeError> {
        let hash = change.hash();
        self.doc
            .apply_changes([change])
            .map_err(|e| ChangeError::Rejected(e.to_string()))?;
        self.applied.insert(hash);
        Ok(())
    }

    /// Applies queued changes that have become ready until none is. A queued
    /// change that turns out to conflict is discarded: it can never apply.
    fn release_pending(&mut self) -> Vec<ChangeHash> {
        let mut released = Vec::new();
        while let Some(index) = self.pending.iter().position(|c| self.is_ready(c)) {
            let change = self.pending.remove(index);
            let hash = change.hash();
            if self.apply_ready(change).is_ok() {
                released.push(hash);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn actor(n: u8) -> ActorId {
        ActorId::from([n; 16])
    }

    fn patch(value: serde_json::Value) -> JsonEdit {
        match value {
            serde_json::Value::Object(map) => JsonEdit::Patch(map),
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn changes_apply_once_and_wait_for_dependencies() {
        let limits = Limits::default();
        let mut source = RecordDoc::new();
        let first = source
            .edit(&patch(json!({"a": 1})), &actor(1), 10)
            .unwrap()
            .unwrap();
        let second = source
            .edit(&patch(json!({"b": 2})), &actor(1), 20)
            .unwrap()
            .unwrap();

        let mut replica = RecordDoc::new();
        assert_eq!(replica.apply(&second, &limits), Ok(ApplyOutcome::Queued));
        assert_eq!(replica.apply(&second, &limits), Ok(ApplyOutcome::Duplicate));
        assert_eq!(replica.state().fields, Fields::new());
        let outcome = replica.apply(&first, &limits).unwrap();
        assert!(matches!(outcome, ApplyOutcome::Applied { released } if released.len() == 1));
        assert_eq!(replica.apply(&first, &limits), Ok(ApplyOutcome::Duplicate));
        assert_eq!(replica.state(), source.state());
        assert_eq!(replica.pending_len(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let limits = Limits {
            max_pending_changes: 2,
            ..Limits::default()
        };
        let mut source = RecordDoc::new();
        let changes: Vec<_> = (0..4)
            .map(|i| {
                source
                    .edit(&patch(json!({"n": i})), &actor(1), 0)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let mut replica = RecordDoc::new();
        assert_eq!(
            replica.apply(&changes[1], &limits),
            Ok(ApplyOutcome::Queued)
        );
        assert_eq!(
            replica.apply(&changes[2], &limits),
            Ok(ApplyOutcome::Queued)
        );
        assert_eq!(
            replica.apply(&changes[3], &limits),
            Err(ChangeError::Limit(LimitError::TooManyPending {
                actual: 3,
                limit: 2
            }))
        );
        replica.apply(&changes[0], &limits).unwrap();
        assert_eq!(replica.state().fields["n"], json!(2));
        replica.apply(&changes[3], &limits).unwrap();
        assert_eq!(replica.state(), source.state());
    }

    #[test]
    fn garbage_and_reused_actors_are_typed_errors() {
        let limits = Limits::default();
        let mut doc = RecordDoc::new();
        assert!(matches!(
            doc.apply(b"not a change", &limits),
            Err(ChangeError::Malformed(_))
        ));
        let mut a = RecordDoc::new();
        let mut b = RecordDoc::new();
        let from_a = a
            .edit(&patch(json!({"x": 1})), &actor(7), 0)
            .unwrap()
            .unwrap();
        let from_b = b
            .edit(&patch(json!({"x": 2})), &actor(7), 0)
            .unwrap()
            .unwrap();
        doc.apply(&from_a, &limits).unwrap();
        assert!(matches!(
            doc.apply(&from_b, &limits),
            Err(ChangeError::Rejected(_))
        ));
        assert_eq!(doc.state().fields["x"], json!(1));
    }

    #[test]
    fn edits_that_change_nothing_make_no_change() {
        let mut doc = RecordDoc::new();
        assert!(
            doc.edit(&patch(json!({"a": 1})), &actor(1), 0)
                .unwrap()
                .is_some()
        );
        assert_eq!(doc.edit(&patch(json!({"a": 1})), &actor(1), 0), Ok(None));
        assert!(doc.edit(&JsonEdit::Delete, &actor(1), 0).unwrap().is_some());
        assert_eq!(doc.edit(&JsonEdit::Delete, &actor(1), 0), Ok(None));
        assert_eq!(
            doc.edit(&patch(json!({"$deleted": false})), &actor(1), 0),
            Err(EditError::ReservedField("$deleted".into()))
        );
    }

    #[test]
    fn save_and_load_keep_history() {
        let limits = Limits::default();
        let mut doc = RecordDoc::new();
        let change = doc
            .edit(&patch(json!({"a": [1, 2]})), &actor(1), 0)
            .unwrap()
            .unwrap();
        let loaded = RecordDoc::load(&doc.save(), &limits).unwrap();
        assert_eq!(loaded.state(), doc.state());
        let mut loaded = loaded;
        assert_eq!(loaded.apply(&change, &limits), Ok(ApplyOutcome::Duplicate));
        assert!(matches!(
            RecordDoc::load(b"junk", &limits),
            Err(LoadError::Malformed(_))
        ));
    }

    #[test]
    fn saved_documents_are_checked_without_loading() {
        let limits = Limits::default();
        let mut doc = RecordDoc::new();
        doc.edit(&patch(json!({"text": "x".repeat(300)})), &actor(1), 0)
            .unwrap();
        let saved = doc.save();
        assert_eq!(RecordDoc::check_saved(&saved, &limits), Ok(()));
        assert_eq!(
            RecordDoc::check_saved(&RecordDoc::new().save(), &limits),
            Ok(())
        );
        for len in 0..saved.len() {
            assert!(
                RecordDoc::check_saved(&saved[..len], &limits).is_err(),
                "{len} bytes"
            );
        }
        let mut longer = saved.clone();
        longer.push(0);
        assert!(RecordDoc::check_saved(&longer, &limits).is_err());
        // A record that one change created is kept as that change.
        let change = doc.changes().remove(0);
        assert_eq!(RecordDoc::check_saved(&change, &limits), Ok(()));
        let loaded = RecordDoc::load(&change, &limits).unwrap();
        assert_eq!(loaded.state(), doc.state());
        assert_eq!(loaded.heads(), doc.heads());
        let mut bundle = change.clone();
        bundle[8] = 3;
        assert!(matches!(
            RecordDoc::check_saved(&bundle, &limits),
            Err(LoadError::Malformed(_))
        ));
        let small = Limits {
            max_doc_bytes: saved.len() - 1,
            ..Limits::default()
        };
        assert!(matches!(
            RecordDoc::check_saved(&saved, &small),
            Err(LoadError::Limit(LimitError::DocTooLarge { .. }))
        ));
    }

    /// One step of a random editing session: actor `who` applies an edit to
    /// its own copy, after first pulling everything actor `pull` has.
    #[derive(Clone, Debug)]
    struct Step {
        who: usize,
        pull: Option<usize>,
        key: u8,
        value: Option<i64>,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0..3usize,
            proptest::option::of(0..3usize),
            0..4u8,
            proptest::option::of(-3..3i64),
        )
            .prop_map(|(who, pull, key, value)| Step {
                who,
                pull,
                key,
                value,
            })
    }

    /// Three actors' documents after a random session of concurrent edits.
    fn session(steps: &[Step]) -> Vec<RecordDoc> {
        let limits = Limits::default();
        let mut docs = vec![RecordDoc::new(), RecordDoc::new(), RecordDoc::new()];
        for (time, step) in steps.iter().enumerate() {
            if let Some(pull) = step.pull.filter(|&p| p != step.who) {
                let other = docs[pull].clone();
                docs[step.who].merge(&other, &limits).unwrap();
            }
            let key = format!("k{}", step.key);
            let mut fields = Fields::new();
            fields.insert(key, step.value.map_or(serde_json::Value::Null, Into::into));
            let edit = if step.key == 3 && step.value.is_none() {
                JsonEdit::Delete
            } else {
                JsonEdit::Patch(fields)
            };
            docs[step.who]
                .edit(&edit, &actor(step.who as u8 + 1), time as i64)
                .unwrap();
        }
        docs
    }

    fn merged(a: &RecordDoc, b: &RecordDoc) -> RecordDoc {
        let mut out = a.clone();
        out.merge(b, &Limits::default()).unwrap();
        out
    }

    fn same(a: &RecordDoc, b: &RecordDoc) -> bool {
        let mut ha = a.heads();
        let mut hb = b.heads();
        ha.sort();
        hb.sort();
        a.state() == b.state() && ha == hb
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn merge_is_commutative_associative_idempotent(steps in prop::collection::vec(step(), 1..24)) {
            let docs = session(&steps);
            let (a, b, c) = (&docs[0], &docs[1], &docs[2]);
            prop_assert!(same(&merged(a, b), &merged(b, a)));
            prop_assert!(same(&merged(&merged(a, b), c), &merged(a, &merged(b, c))));
            prop_assert!(same(&merged(a, a), a));
            prop_assert!(same(&merged(&merged(a, b), b), &merged(a, b)));
        }

        #[test]
        fn any_delivery_order_converges(steps in prop::collection::vec(step(), 1..24), order in any::<u64>()) {
            let limits = Limits::default();
            let docs = session(&steps);
            let all = merged(&merged(&docs[0], &docs[1]), &docs[2]);
            let mut changes = all.changes();
            // A deterministic shuffle driven by `order`, with every change sent twice.
            let n = changes.len();
            changes.extend(changes.clone());
            let mut state = order | 1;
            for i in (1..changes.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                changes.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut replica = RecordDoc::new();
            for change in &changes {
                replica.apply(change, &limits).unwrap();
            }
            prop_assert_eq!(replica.pending_len(), 0);
            prop_assert!(same(&replica, &all), "{} changes", n);
        }
    }
}
