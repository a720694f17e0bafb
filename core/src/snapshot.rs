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
//!   merge skips it without decoding; [`DocsSection::decode`] opens it.
//! - `index_segment`: the sealed vector index segment the writer built for
//!   this shard, opaque here (the vector search module defines its bytes).

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::limits::{LimitError, Limits, check};
use crate::log::Offset;
use crate::model::{CollectionKey, Fields, RecordId};
use crate::record::{LoadError, RecordDoc};
use crate::shard::ShardId;
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

    /// Size of the section in bytes; a reader that skips it skips this many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes and loads every document. Ids are validated; each document
    /// is bounded by [`Limits::max_doc_bytes`].
    pub fn decode(&self, limits: &Limits) -> Result<Vec<(RecordId, RecordDoc)>, DecodeError> {
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
                let doc = RecordDoc::load(&saved.doc, limits).map_err(|e| match e {
                    LoadError::Limit(limit) => DecodeError::Limit(limit),
                    LoadError::Malformed(why) => DecodeError::Malformed(why),
                })?;
                Ok((saved.id, doc))
            })
            .collect()
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
