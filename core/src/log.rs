//! A shard's log: entries, offsets, tidemarks and consistency tokens.
//!
//! Each shard has one totally ordered log, written only by the writer.
//! Offsets count entries from 0, and a position in the log is the number of
//! entries before it: a tidemark of `n` for a shard means entries `[0, n)`
//! are applied, and a consistency token `{shard: n}` asks for exactly that.
//! With this one convention a write's token, a replica's tidemark and a log
//! range `[from, to)` compare directly, and "nothing yet" is 0.
//!
//! An entry carries the record's *state* after the change (fields, vector,
//! deleted flag) besides the change itself, so read-only replicas apply it by
//! overwriting, without Automerge, and applying it twice changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::limits::{LimitError, Limits, check};
use crate::model::{Fields, RecordId};
use crate::shard::ShardId;

/// A position in a shard's log (see the module docs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    pub fn next(self) -> Offset {
        Offset(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One record's change at one offset of its shard's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub offset: Offset,
    pub id: RecordId,
    /// The Automerge changes this write added to the record (none for a
    /// vector-only write), for replicas that keep documents and merge.
    #[serde(with = "codec::bytes_list")]
    pub changes: Vec<Vec<u8>>,
    /// The record's fields after the change; empty if deleted.
    #[serde(with = "codec::json_object")]
    pub fields: Fields,
    /// The record's vector after the change, as stored (unit length under
    /// cosine); `None` if it has none or is deleted.
    #[serde(with = "codec::opt_vector")]
    pub vector: Option<Vec<f32>>,
    pub deleted: bool,
}

impl LogEntry {
    /// The entry alone, for a host's storage (the writer keeps one row per
    /// entry and assembles [`crate::wire::LogRange`] messages from them).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing owned values into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes [`Self::to_bytes`], bounded by `limits` like a wire message.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, crate::wire::DecodeError> {
        use crate::wire::DecodeError;
        check(bytes.len(), limits.max_frame_bytes, |actual, limit| {
            LimitError::FrameTooLarge { actual, limit }
        })?;
        let (entry, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: rest.len() });
        }
        entry.id.validate(limits)?;
        entry.check_limits(limits)?;
        Ok(entry)
    }

    /// Bytes the entry's record accounts for against
    /// [`Limits::max_record_bytes`].
    pub fn record_bytes(&self) -> usize {
        let changes: usize = self.changes.iter().map(Vec::len).sum();
        changes + codec::json_len(&self.fields) + self.vector.as_ref().map_or(0, |v| v.len() * 4)
    }

    pub(crate) fn check_limits(&self, limits: &Limits) -> Result<(), LimitError> {
        check(
            self.changes.len(),
            limits.max_changes_per_op,
            |actual, limit| LimitError::TooManyChanges { actual, limit },
        )?;
        check(
            codec::json_len(&self.fields),
            limits.max_fields_bytes,
            |actual, limit| LimitError::FieldsTooLarge { actual, limit },
        )?;
        if let Some(vector) = &self.vector {
            check(vector.len(), limits.max_dimension, |actual, limit| {
                LimitError::DimensionTooLarge { actual, limit }
            })?;
        }
        check(
            self.record_bytes(),
            limits.max_record_bytes,
            |actual, limit| LimitError::RecordTooLarge { actual, limit },
        )
    }
}

/// Returned by the writer for a durable write: for every shard the write
/// touched, the log position that includes it. A reader that presents it is
/// answered only by a replica whose tidemark has reached it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyToken {
    pub shards: BTreeMap<ShardId, Offset>,
}

impl ConsistencyToken {
    pub fn single(shard: ShardId, offset: Offset) -> Self {
        Self {
            shards: BTreeMap::from([(shard, offset)]),
        }
    }

    /// Combines two tokens (a client that wrote twice needs both): the
    /// larger offset per shard.
    pub fn merge(&mut self, other: &ConsistencyToken) {
        for (&shard, &offset) in &other.shards {
            let slot = self.shards.entry(shard).or_default();
            *slot = (*slot).max(offset);
        }
    }
}

/// The log position a replica has applied, per shard: every answer carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tidemark {
    pub shards: BTreeMap<ShardId, Offset>,
}

impl Tidemark {
    pub fn get(&self, shard: ShardId) -> Offset {
        self.shards.get(&shard).copied().unwrap_or_default()
    }

    /// Whether every shard has reached the token's offset.
    pub fn satisfies(&self, token: &ConsistencyToken) -> bool {
        token
            .shards
            .iter()
            .all(|(&shard, &offset)| self.get(shard) >= offset)
    }

    /// The shards still behind `token`, with the offset each must reach.
    pub fn behind(&self, token: &ConsistencyToken) -> Vec<(ShardId, Offset)> {
        token
            .shards
            .iter()
            .filter(|&(&shard, &offset)| self.get(shard) < offset)
            .map(|(&shard, &offset)| (shard, offset))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn tokens_merge_upwards_and_tidemarks_satisfy_them() {
        let mut token = ConsistencyToken::single(ShardId(0), Offset(3));
        token.merge(&ConsistencyToken::single(ShardId(0), Offset(2)));
        token.merge(&ConsistencyToken::single(ShardId(2), Offset(5)));
        assert_eq!(
            token.shards,
            BTreeMap::from([(ShardId(0), Offset(3)), (ShardId(2), Offset(5))])
        );
        let mut tidemark = Tidemark::default();
        tidemark.shards.insert(ShardId(0), Offset(3));
        assert!(!tidemark.satisfies(&token));
        assert_eq!(tidemark.behind(&token), vec![(ShardId(2), Offset(5))]);
        tidemark.shards.insert(ShardId(2), Offset(9));
        assert!(tidemark.satisfies(&token));
        assert!(tidemark.satisfies(&ConsistencyToken::default()));
    }

    #[test]
    fn entries_round_trip_through_storage_bytes_and_reject_garbage() {
        let mut fields = Fields::new();
        fields.insert("title".into(), serde_json::json!("hello"));
        let entry = LogEntry {
            offset: Offset(7),
            id: RecordId::new("n1", &Limits::default()).unwrap(),
            changes: vec![vec![1, 2, 3]],
            fields,
            vector: Some(vec![0.25, -1.0]),
            deleted: false,
        };
        let bytes = entry.to_bytes();
        assert_eq!(LogEntry::from_bytes(&bytes, &Limits::default()), Ok(entry));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(LogEntry::from_bytes(&trailing, &Limits::default()).is_err());
        assert!(LogEntry::from_bytes(&bytes[..bytes.len() - 1], &Limits::default()).is_err());
        assert!(LogEntry::from_bytes(&[0xff; 12], &Limits::default()).is_err());
    }

    #[test]
    fn limits_cover_every_part_of_an_entry() {
        let limits = Limits {
            max_record_bytes: 20,
            ..Limits::default()
        };
        let mut entry = LogEntry {
            offset: Offset(0),
            id: RecordId::new("r", &limits).unwrap(),
            changes: vec![vec![0; 8]],
            fields: Fields::new(),
            vector: Some(vec![0.0; 2]),
            deleted: false,
        };
        assert_eq!(entry.record_bytes(), 8 + 2 + 8);
        assert_eq!(entry.check_limits(&limits), Ok(()));
        entry.vector = Some(vec![0.0; 3]);
        assert_eq!(
            entry.check_limits(&limits),
            Err(LimitError::RecordTooLarge {
                actual: 22,
                limit: 20
            })
        );
    }
}
