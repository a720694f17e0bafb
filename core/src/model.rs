//! The data model: namespace → collection → record.
//!
//! Names appear in URLs, storage keys and log messages, so namespace and
//! collection names are restricted to a small, case-stable alphabet. Record
//! ids are the application's own keys and may be any printable UTF-8, only
//! bounded in length ([`Limits::max_id_bytes`]).
//!
//! Every type here deserializes without validation (postcard hands us plain
//! strings); the wire decoders call the `validate` methods before a message
//! leaves them, so no unchecked name reaches a state machine.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::Limits;
use crate::shard::{ShardCount, ShardId, shard_for};
use crate::vector::{Metric, VectorError};

/// Longest namespace or collection name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// A record's fields as a JSON object.
pub type Fields = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error(
        "name {0:?} must be 1 to {MAX_NAME_BYTES} characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("record id must be 1 to {limit} bytes without control characters")]
    InvalidRecordId { limit: usize },
}

/// A tenant. Tokens name it; every record belongs to exactly one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Namespace(String);

/// A collection within a namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CollectionName(String);

/// A record's id within its collection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(String);

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_BYTES
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

macro_rules! name_type {
    ($ty:ident) => {
        impl $ty {
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = Self(name.into());
                name.validate()?;
                Ok(name)
            }

            pub fn validate(&self) -> Result<(), NameError> {
                if valid_name(&self.0) {
                    Ok(())
                } else {
                    Err(NameError::InvalidName(self.0.clone()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(Namespace);
name_type!(CollectionName);

impl RecordId {
    pub fn new(id: impl Into<String>, limits: &Limits) -> Result<Self, NameError> {
        let id = Self(id.into());
        id.validate(limits)?;
        Ok(id)
    }

    /// Control characters are refused because ids end up in logs and HTTP
    /// headers, where they would forge lines.
    pub fn validate(&self, limits: &Limits) -> Result<(), NameError> {
        let ok = !self.0.is_empty()
            && self.0.len() <= limits.max_id_bytes
            && !self.0.chars().any(char::is_control);
        if ok {
            Ok(())
        } else {
            Err(NameError::InvalidRecordId {
                limit: limits.max_id_bytes,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by record id can be read with a plain `&str` (a search hit's
/// id); the derived order is the string's, so lookups agree.
impl std::borrow::Borrow<str> for RecordId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names one collection of one tenant. Log ranges and snapshots carry it,
/// under the writer's signature, so a replica cannot be fed another
/// collection's data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CollectionKey {
    pub namespace: Namespace,
    pub collection: CollectionName,
}

impl CollectionKey {
    pub fn new(namespace: Namespace, collection: CollectionName) -> Self {
        Self {
            namespace,
            collection,
        }
    }

    pub fn validate(&self) -> Result<(), NameError> {
        self.namespace.validate()?;
        self.collection.validate()
    }

    /// The shard that owns `id` in this collection (see [`crate::shard`]).
    pub fn shard_of(&self, id: &RecordId, count: ShardCount) -> ShardId {
        shard_for(
            self.namespace.as_str(),
            self.collection.as_str(),
            id.as_str(),
            count,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SchemaError {
    #[error("dimension must be between 1 and {limit}, got {actual}")]
    Dimension { actual: usize, limit: usize },
}

/// A collection's schema, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSchema {
    pub dimension: usize,
    pub metric: Metric,
    pub shard_count: ShardCount,
}

impl CollectionSchema {
    pub fn new(
        dimension: usize,
        metric: Metric,
        shard_count: ShardCount,
        limits: &Limits,
    ) -> Result<Self, SchemaError> {
        if dimension == 0 || dimension > limits.max_dimension {
            return Err(SchemaError::Dimension {
                actual: dimension,
                limit: limits.max_dimension,
            });
        }
        Ok(Self {
            dimension,
            metric,
            shard_count,
        })
    }

    /// Validates a vector for this collection and returns it in stored form
    /// (unit length under cosine).
    pub fn prepare_vector(&self, vector: &[f32]) -> Result<Vec<f32>, VectorError> {
        self.metric.validate(vector, self.dimension)?;
        Ok(self.metric.prepare(vector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_use_a_small_alphabet() {
        for ok in ["acme", "notes-2", "a", "9lives", "x_y"] {
            assert!(Namespace::new(ok).is_ok(), "{ok}");
            assert!(CollectionName::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in ["", "Acme", "-x", "_x", "a b", "a/b", "é", long.as_str()] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn record_ids_are_bounded_and_printable() {
        let limits = Limits::default();
        assert!(RecordId::new("note 1 / ünïcode", &limits).is_ok());
        assert!(RecordId::new("x".repeat(limits.max_id_bytes), &limits).is_ok());
        for bad in [
            String::new(),
            "x".repeat(limits.max_id_bytes + 1),
            "a\nb".into(),
        ] {
            assert_eq!(
                RecordId::new(bad, &limits),
                Err(NameError::InvalidRecordId {
                    limit: limits.max_id_bytes
                })
            );
        }
    }

    #[test]
    fn schema_bounds_the_dimension_and_prepares_vectors() {
        let limits = Limits::default();
        let shards = ShardCount::new(4).unwrap();
        assert!(CollectionSchema::new(0, Metric::Dot, shards, &limits).is_err());
        assert!(
            CollectionSchema::new(limits.max_dimension + 1, Metric::Dot, shards, &limits).is_err()
        );
        let schema = CollectionSchema::new(2, Metric::Cosine, shards, &limits).unwrap();
        assert_eq!(schema.prepare_vector(&[3.0, 4.0]).unwrap(), vec![0.6, 0.8]);
        assert!(schema.prepare_vector(&[f32::NAN, 1.0]).is_err());
    }
}
