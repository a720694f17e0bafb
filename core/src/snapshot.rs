//! A shard's state at one log position, for replicas that are new or far
//! behind: load the snapshot at `offset`, then apply the log from `offset`.
//!
//! Three sections, because readers differ in what they need:
//!
//! - `records`: every live record's id, fields and vector — all a read-only
//!   replica (the edge) needs.
//! - `docs`: the saved Automerge document of every record that has one,
//!   deleted records included (a browser that merges must keep extending
//!   their history). It is one opaque byte string, so a reader that does not
//!   merge skips it without decoding; [`DocsSection::decode_saved`] opens it.
//! - `index_segment`: the sealed vector index segment the writer built for
//!   this shard (the vector search module defines its bytes). When its
//!   points' vectors are exactly the records' vectors, it ships without them
//!   ([`Snapshot::set_index_segment`]) and [`Snapshot::decode_index_segment`]
//!   takes them from the records: each vector crosses the wire once.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::limits::{LimitError, Limits, check};
use crate::log::Offset;
use crate::model::{CollectionKey, Fields, RecordId};
use crate::record::{LoadError, RecordDoc};
use crate::shard::ShardId;
use crate::vector::HnswSegment;
use crate::vector::segment_codec::DecodeError as SegmentDecodeError;
use crate::wire::DecodeError;

/// A live record as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: RecordId,
    #[serde(with = "codec::json_object")]
    pub fields: Fields,
    #[serde(with = "codec::opt_vector")]
    pub vector: Option<Vec<f32>>,
}

/// The saved Automerge documents of a shard, encoded lazily.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocsSection(#[serde(with = "codec::bytes")] Vec<u8>);

#[derive(Serialize, Deserialize)]
struct SavedDoc {
    id: RecordId,
    #[serde(with = "codec::bytes")]
    doc: Vec<u8>,
}

impl DocsSection {
    /// Encodes `(id, saved document)` pairs.
    pub fn encode<'a>(docs: impl IntoIterator<Item = (&'a RecordId, Vec<u8>)>) -> Self {
        let docs: Vec<SavedDoc> = docs
            .into_iter()
            .map(|(id, doc)| SavedDoc {
                id: id.clone(),
                doc,
            })
            .collect();
        // Serializing owned strings and bytes into a Vec cannot fail.
        Self(postcard::to_allocvec(&docs).unwrap_or_default())
    }

    /// The section as its encoded bytes (read from a stream; decoded when
    /// opened, like any other).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Size of the section in bytes; a reader that skips it skips this many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the section into `(id, saved document)` pairs without
    /// loading the documents: ids are validated and each document is checked
    /// with [`RecordDoc::check_saved`], so a replica can keep the bytes and
    /// load a document when it is first used.
    pub fn decode_saved(&self, limits: &Limits) -> Result<Vec<(RecordId, Vec<u8>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let (docs, rest): (Vec<SavedDoc>, _) = postcard::take_from_bytes(&self.0)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: rest.len() });
        }
        docs.into_iter()
            .map(|saved| {
                saved.id.validate(limits)?;
                RecordDoc::check_saved(&saved.doc, limits)?;
                Ok((saved.id, saved.doc))
            })
            .collect()
    }

    /// Decodes and loads every document (the writer restoring a shard).
    pub fn decode(&self, limits: &Limits) -> Result<Vec<(RecordId, RecordDoc)>, DecodeError> {
        self.decode_saved(limits)?
            .into_iter()
            .map(|(id, bytes)| Ok((id, RecordDoc::load(&bytes, limits)?)))
            .collect()
    }
}

impl From<LoadError> for DecodeError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Limit(limit) => DecodeError::Limit(limit),
            LoadError::Malformed(why) => DecodeError::Malformed(why),
        }
    }
}

/// A shard's live records at `offset` (entries `[0, offset)` applied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub collection: CollectionKey,
    pub shard: ShardId,
    pub offset: Offset,
    /// Live records, sorted by id.
    pub records: Vec<SnapshotRecord>,
    pub docs: DocsSection,
    #[serde(with = "codec::opt_bytes")]
    pub index_segment: Option<Vec<u8>>,
}

impl Snapshot {
    /// A live record's vector, by id.
    pub fn vector_of(&self, id: &str) -> Option<&[f32]> {
        self.records
            .binary_search_by(|r| r.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.records[i].vector.as_deref())
    }

    /// Ships `segment` in the snapshot: without its vectors when every
    /// point's vector equals its record's (the writer seals the
    /// snapshot's own records, whose vectors are prepared, and preparing is
    /// idempotent), else whole.
    pub fn set_index_segment(&mut self, segment: &HnswSegment) {
        let shared = !segment.vectors().is_empty()
            && segment
                .ids()
                .iter()
                .enumerate()
                .all(|(point, id)| segment.vector(point as u32) == self.vector_of(id));
        self.index_segment = Some(if shared {
            segment.to_bytes_without_vectors()
        } else {
            segment.to_bytes()
        });
    }

    /// The sealed segment the snapshot carries, if any, with its vectors.
    pub fn decode_index_segment(&self) -> Option<Result<HnswSegment, SegmentDecodeError>> {
        self.index_segment
            .as_deref()
            .map(|bytes| HnswSegment::from_bytes_with_vectors(bytes, |id| self.vector_of(id)))
    }

    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), DecodeError> {
        self.collection.validate()?;
        for record in &self.records {
            record.id.validate(limits)?;
            check(
                codec::json_len(&record.fields),
                limits.max_fields_bytes,
                |actual, limit| LimitError::FieldsTooLarge { actual, limit },
            )?;
            if let Some(vector) = &record.vector {
                check(vector.len(), limits.max_dimension, |actual, limit| {
                    LimitError::DimensionTooLarge { actual, limit }
                })?;
            }
        }
        Ok(())
    }
}
