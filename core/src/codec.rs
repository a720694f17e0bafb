//! How the wire types' awkward fields are written in postcard.
//!
//! - Byte strings (change bytes, saved documents, sections) use serde's
//!   `bytes` form: postcard reads the length prefix, checks that many bytes
//!   remain in the frame, and only then copies them. A forged length can
//!   therefore never allocate more than the frame that carries it. (As a
//!   plain `Vec<u8>` they would be a sequence of `u8`, one varint each.)
//! - Vectors are their `f32`s as little-endian bytes, for the same bound and
//!   because it is 4 bytes a component instead of postcard's 4 plus a tag.
//! - Materialized fields are JSON text: postcard is not self-describing and
//!   cannot carry `serde_json::Value` (which deserializes with `any`).
//!   serde_json's `float_roundtrip` feature makes the text exact for `f64`.
//!
//! These are `#[serde(with = "...")]` modules, so the public types keep
//! plain `Vec<u8>`, `Vec<f32>` and [`Fields`] fields.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::model::Fields;

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }
}

/// One byte string (`Vec<u8>`).
pub(crate) mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// An optional byte string (`Option<Vec<u8>>`).
pub(crate) mod opt_bytes {
    use super::*;

    #[derive(Serialize)]
    struct Borrowed<'a>(#[serde(with = "bytes")] &'a [u8]);

    #[derive(Deserialize)]
    struct Owned(#[serde(with = "bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&Borrowed(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Owned>::deserialize(d)?.map(|w| w.0))
    }
}

/// A list of byte strings (`Vec<Vec<u8>>`).
pub(crate) mod bytes_list {
    use super::*;

    struct One<'a>(&'a [u8]);

    impl Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(BytesVisitor).map(Owned)
        }
    }

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for bytes in list {
            seq.serialize_element(&One(bytes))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<Vec<u8>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Every element takes at least one byte of the frame, so growing
                // as elements arrive is bounded by the frame; trusting the
                // claimed length up front would not be.
                let mut list = Vec::new();
                while let Some(Owned(bytes)) = seq.next_element()? {
                    list.push(bytes);
                }
                Ok(list)
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}

/// An optional vector (`Option<Vec<f32>>`) as little-endian bytes.
pub(crate) mod opt_vector {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Vec<f32>>, s: S) -> Result<S::Ok, S::Error> {
        let bytes = value
            .as_ref()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        opt_bytes::serialize(&bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
        let Some(bytes) = opt_bytes::deserialize(d)? else {
            return Ok(None);
        };
        if bytes.len() % 4 != 0 {
            return Err(de::Error::custom("vector bytes are not a multiple of 4"));
        }
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

/// Materialized fields as JSON text.
pub(crate) mod json_object {
    use super::*;

    pub fn serialize<S: Serializer>(fields: &Fields, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(fields).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(de::Error::custom)
    }
}

/// Bytes of `fields` as JSON text, as [`json_object`] writes them.
pub(crate) fn json_len(fields: &Fields) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, fields);
    count.0
}
