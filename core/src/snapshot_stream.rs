//! Reading a signed snapshot frame as it arrives, without ever holding it.
//!
//! [`crate::wire::decode_verified`] needs the whole frame in memory and then
//! decodes it into a [`Snapshot`] beside it: for a 20k-record shard that is
//! two copies of every vector at once, and in a wasm heap, which never
//! shrinks, the peak is what the replica keeps for its whole life.
//! [`SnapshotStream`] takes the frame in chunks of any size, hashes the body
//! as it passes (version 2 signs the body's BLAKE3 digest, so the signature
//! can be checked at the end without the body), and hands each record to a
//! [`SnapshotSink`] as soon as its last byte arrives. The sink puts the
//! record straight where it will live (a vector into its index's block), so
//! the peak is the replica itself plus one chunk.
//!
//! Nothing is trusted before [`SnapshotStream::finish`] has verified the
//! signature: a sink builds a new replica beside the live one and installs
//! it only after `finish` succeeds; on any error it drops what it built.
//! Every count and length is checked against the bytes the frame declares
//! before anything is reserved, and every record meets the same limits as in
//! [`crate::wire::decode_verified`] (ids, fields size, dimension).
//!
//! Version 1 frames sign the whole body, so for them the stream keeps a
//! copy of the body until `finish`: they still load, as before, with the
//! memory of a whole-frame decode.

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::limits::{LimitError, Limits, check};
use crate::log::Offset;
use crate::model::{CollectionKey, Fields, RecordId};
use crate::shard::ShardId;
use crate::snapshot::{DocsSection, Snapshot, SnapshotRecord};
use crate::wire::{self, DecodeError, OLDEST_READABLE_VERSION, WIRE_VERSION};

/// [`crate::wire::Message::Snapshot`]'s variant index: postcard writes an
/// enum's variant as its index (pinned by a test against the encoder).
const SNAPSHOT_VARIANT: u32 = 3;

/// The fewest body bytes one record takes: an id (length and one byte),
/// fields (length and `{}`), the vector's option tag.
const MIN_RECORD_BYTES: usize = 6;

/// What a snapshot says about itself before its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHead {
    pub collection: CollectionKey,
    pub shard: ShardId,
    pub offset: Offset,
    /// How many records follow, as the frame claims (bounded by its bytes,
    /// but not yet verified: size reservations by it, not trust).
    pub records: usize,
    /// Bytes of the message, to bound reservations derived from it.
    pub body_len: usize,
}

impl SnapshotHead {
    /// The most vectors of `dim` components the records can carry: what a
    /// sink may reserve for them before the signature is checked.
    pub fn max_vectors(&self, dim: usize) -> usize {
        self.records.min(self.body_len / (4 * dim.max(1)))
    }
}

/// The snapshot's sections after its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotTail {
    /// The saved documents; empty if the sink did not want them.
    pub docs: DocsSection,
    pub index_segment: Option<Vec<u8>>,
}

/// Where a [`SnapshotStream`] puts what it reads. Everything a sink receives
/// is unverified until [`SnapshotStream::finish`] succeeds. An error from the
/// sink stops the stream and is returned by `push` as it is.
pub trait SnapshotSink {
    /// Called once, before any record.
    fn head(&mut self, head: &SnapshotHead) -> Result<(), DecodeError>;

    /// One live record, in the snapshot's order (sorted by id). `vector` is
    /// the stream's buffer, valid for this call.
    fn record(
        &mut self,
        id: RecordId,
        fields: Fields,
        vector: Option<&[f32]>,
    ) -> Result<(), DecodeError>;

    /// Whether to keep the saved documents: a read-only replica does not
    /// merge, and skipping them saves a copy of every document.
    fn wants_docs(&self) -> bool {
        true
    }
}

/// A record as the body holds it, borrowed from the stream's buffer.
#[derive(Deserialize)]
struct RecordWire<'a> {
    id: RecordId,
    fields: &'a str,
    vector: Option<&'a [u8]>,
}

#[derive(Debug)]
enum Stage {
    /// Version and body length.
    Envelope,
    /// Variant, collection, shard, offset and record count.
    Head,
    Records {
        left: usize,
    },
    DocsLen,
    SegmentTag,
    SegmentLen,
    /// The signature's option tag and length.
    SignatureLen,
    /// `left` more bytes of a length-prefixed section, copied as they come.
    Blob {
        section: Section,
        left: usize,
    },
    Done,
}

/// The byte strings the stream copies whole rather than parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Docs,
    Segment,
    Signature,
}

/// A snapshot frame being read; see the module docs.
pub struct SnapshotStream {
    writer: VerifyingKey,
    limits: Limits,
    stage: Stage,
    /// Bytes taken in; those from `pos` on are not parsed yet (at most one
    /// chunk plus one record). Parsed bytes are dropped when more arrive,
    /// not one record at a time.
    buf: Vec<u8>,
    pos: usize,
    /// Frame bytes taken in so far.
    frame_len: usize,
    version: u16,
    body_len: usize,
    /// Body bytes not yet taken in.
    body_left: usize,
    hasher: blake3::Hasher,
    /// Version 1 only: the body, which its signature covers.
    body_v1: Option<Vec<u8>>,
    head: Option<SnapshotHead>,
    keep_docs: bool,
    docs: Vec<u8>,
    segment: Option<Vec<u8>>,
    signature: Vec<u8>,
    vector: Vec<f32>,
}

fn malformed(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(why.into())
}

/// Outcome of parsing one item from the front of a buffer.
enum Parsed<T> {
    Item(T, usize),
    NeedMore,
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<Parsed<T>, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((item, rest)) => Ok(Parsed::Item(item, bytes.len() - rest.len())),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Ok(Parsed::NeedMore),
        Err(e) => Err(malformed(e.to_string())),
    }
}

fn to_usize(value: u64, what: &str) -> Result<usize, DecodeError> {
    usize::try_from(value).map_err(|_| malformed(format!("{what} does not fit this platform")))
}

impl SnapshotStream {
    /// A stream whose signature must verify with `writer`.
    pub fn new(writer: VerifyingKey, limits: Limits) -> Self {
        Self {
            writer,
            limits,
            stage: Stage::Envelope,
            buf: Vec::new(),
            pos: 0,
            frame_len: 0,
            version: 0,
            body_len: 0,
            body_left: 0,
            hasher: blake3::Hasher::new(),
            body_v1: None,
            head: None,
            keep_docs: true,
            docs: Vec::new(),
            segment: None,
            signature: Vec::new(),
            vector: Vec::new(),
        }
    }

    /// The head, once its bytes have arrived.
    pub fn head(&self) -> Option<&SnapshotHead> {
        self.head.as_ref()
    }

    /// Takes in the frame's next bytes, handing complete records to `sink`.
    pub fn push(&mut self, chunk: &[u8], sink: &mut impl SnapshotSink) -> Result<(), DecodeError> {
        self.frame_len = self.frame_len.saturating_add(chunk.len());
        check(
            self.frame_len,
            self.limits.max_frame_bytes,
            |actual, limit| LimitError::FrameTooLarge { actual, limit },
        )?;
        let mut chunk = chunk;
        loop {
            if self.step(sink)? {
                continue;
            }
            if chunk.is_empty() {
                return Ok(());
            }
            chunk = self.take_in(chunk)?;
        }
    }

    /// Moves bytes of `chunk` to where the current stage reads them: blobs
    /// straight into their section, the rest into `buf`. Body bytes are
    /// hashed on the way. Returns what is left of the chunk.
    fn take_in<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8], DecodeError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let in_body = !matches!(
            self.stage,
            Stage::Envelope
                | Stage::SignatureLen
                | Stage::Blob {
                    section: Section::Signature,
                    ..
                }
                | Stage::Done
        );
        let n = if in_body {
            if self.body_left == 0 {
                return Err(malformed("the snapshot ends before its last section"));
            }
            chunk.len().min(self.body_left)
        } else if matches!(self.stage, Stage::Done) {
            return Err(DecodeError::TrailingBytes { count: chunk.len() });
        } else if matches!(self.stage, Stage::Envelope) {
            1
        } else {
            chunk.len()
        };
        let (taken, rest) = chunk.split_at(n);
        if in_body {
            self.body_left -= n;
            self.hasher.update(taken);
            if let Some(body) = &mut self.body_v1 {
                body.extend_from_slice(taken);
            }
        }
        match self.stage {
            Stage::Blob { section, left } => {
                let m = n.min(left);
                self.stage = Stage::Blob {
                    section,
                    left: left - m,
                };
                if let Some(blob) = self.blob(section) {
                    blob.extend_from_slice(&taken[..m]);
                }
                self.buf.extend_from_slice(&taken[m..]);
            }
            _ => self.buf.extend_from_slice(taken),
        }
        Ok(rest)
    }

    /// Advances by one stage or record from what `buf` holds; false when it
    /// needs more bytes.
    fn step(&mut self, sink: &mut impl SnapshotSink) -> Result<bool, DecodeError> {
        match self.stage {
            Stage::Envelope => {
                let Parsed::Item(version, used) = parse::<u16>(&self.buf[self.pos..])? else {
                    return Ok(false);
                };
                if !(OLDEST_READABLE_VERSION..=WIRE_VERSION).contains(&version) {
                    return Err(DecodeError::UnsupportedVersion { found: version });
                }
                let Parsed::Item(len, _) = parse::<u64>(&self.buf[self.pos + used..])? else {
                    return Ok(false);
                };
                let len = to_usize(len, "the body length")?;
                check(len, self.limits.max_frame_bytes, |actual, limit| {
                    LimitError::FrameTooLarge { actual, limit }
                })?;
                self.version = version;
                self.body_len = len;
                self.body_left = len;
                if version < 2 {
                    self.body_v1 = Some(Vec::with_capacity(len));
                }
                // `take_in` feeds the prefix a byte at a time, so `buf` holds
                // exactly the prefix and the body starts with the next byte.
                self.buf.clear();
                self.pos = 0;
                self.stage = Stage::Head;
                Ok(true)
            }
            Stage::Head => {
                type Head = (u32, CollectionKey, ShardId, Offset, u64);
                let Parsed::Item((variant, collection, shard, offset, records), used) =
                    parse::<Head>(&self.buf[self.pos..])?
                else {
                    return self.need_body("the snapshot's head");
                };
                if variant != SNAPSHOT_VARIANT {
                    return Err(malformed("the frame is not a snapshot"));
                }
                collection.validate()?;
                let body_len = self.body_len;
                let records = to_usize(records, "the record count")?;
                if records > body_len / MIN_RECORD_BYTES {
                    return Err(malformed("more records than the snapshot has bytes for"));
                }
                let head = SnapshotHead {
                    collection,
                    shard,
                    offset,
                    records,
                    body_len,
                };
                sink.head(&head)?;
                self.keep_docs = sink.wants_docs();
                self.head = Some(head);
                self.consume(used);
                self.stage = Stage::Records { left: records };
                Ok(true)
            }
            Stage::Records { left: 0 } => {
                self.stage = Stage::DocsLen;
                Ok(true)
            }
            Stage::Records { left } => {
                let used = {
                    let Parsed::Item(record, used) =
                        parse::<RecordWire<'_>>(&self.buf[self.pos..])?
                    else {
                        return self.need_body("a record");
                    };
                    record.id.validate(&self.limits)?;
                    check(
                        record.fields.len(),
                        self.limits.max_fields_bytes,
                        |actual, limit| LimitError::FieldsTooLarge { actual, limit },
                    )?;
                    let fields: Fields = serde_json::from_str(record.fields)
                        .map_err(|e| malformed(format!("record {}: {e}", record.id)))?;
                    let vector = match record.vector {
                        None => None,
                        Some(bytes) => {
                            if bytes.len() % 4 != 0 {
                                return Err(malformed("vector bytes are not a multiple of 4"));
                            }
                            check(
                                bytes.len() / 4,
                                self.limits.max_dimension,
                                |actual, limit| LimitError::DimensionTooLarge { actual, limit },
                            )?;
                            self.vector.clear();
                            self.vector.extend(
                                bytes
                                    .chunks_exact(4)
                                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                            );
                            Some(self.vector.as_slice())
                        }
                    };
                    sink.record(record.id, fields, vector)?;
                    used
                };
                self.consume(used);
                self.stage = Stage::Records { left: left - 1 };
                Ok(true)
            }
            Stage::DocsLen => {
                let Parsed::Item(len, used) = parse::<u64>(&self.buf[self.pos..])? else {
                    return self.need_body("the documents' length");
                };
                let len = self.blob_len(len, "the documents")?;
                self.consume(used);
                if self.keep_docs {
                    self.docs.reserve_exact(len);
                }
                self.stage = Stage::Blob {
                    section: Section::Docs,
                    left: len,
                };
                Ok(true)
            }
            Stage::SegmentTag => {
                let Parsed::Item(tag, used) = parse::<u8>(&self.buf[self.pos..])? else {
                    return self.need_body("the index segment");
                };
                self.consume(used);
                self.stage = match tag {
                    0 => {
                        self.end_body()?;
                        Stage::SignatureLen
                    }
                    1 => Stage::SegmentLen,
                    _ => return Err(malformed("bad option tag for the index segment")),
                };
                Ok(true)
            }
            Stage::SegmentLen => {
                let Parsed::Item(len, used) = parse::<u64>(&self.buf[self.pos..])? else {
                    return self.need_body("the index segment's length");
                };
                let len = self.blob_len(len, "the index segment")?;
                self.consume(used);
                self.segment = Some(Vec::with_capacity(len));
                self.stage = Stage::Blob {
                    section: Section::Segment,
                    left: len,
                };
                Ok(true)
            }
            Stage::SignatureLen => {
                let Parsed::Item(tag, used) = parse::<u8>(&self.buf[self.pos..])? else {
                    return Ok(false);
                };
                match tag {
                    0 => return Err(DecodeError::Unsigned),
                    1 => {}
                    _ => return Err(malformed("bad option tag for the signature")),
                }
                let Parsed::Item(len, more) = parse::<u64>(&self.buf[self.pos + used..])? else {
                    return Ok(false);
                };
                // A signature is 64 bytes; anything else cannot verify.
                if len != 64 {
                    return Err(DecodeError::BadSignature);
                }
                self.consume(used + more);
                self.stage = Stage::Blob {
                    section: Section::Signature,
                    left: 64,
                };
                Ok(true)
            }
            Stage::Blob { section, left } => {
                let m = left.min(self.buf.len() - self.pos);
                // `blob` borrows `self` whole: move `buf` out while copying.
                let (buf, pos) = (std::mem::take(&mut self.buf), self.pos);
                if let Some(blob) = self.blob(section) {
                    blob.extend_from_slice(&buf[pos..pos + m]);
                }
                self.buf = buf;
                self.consume(m);
                if left > m {
                    self.stage = Stage::Blob {
                        section,
                        left: left - m,
                    };
                    return match section {
                        Section::Signature => Ok(m > 0),
                        Section::Docs => self.need_body("the documents").map(|_| m > 0),
                        Section::Segment => self.need_body("the index segment").map(|_| m > 0),
                    };
                }
                self.stage = match section {
                    Section::Docs => Stage::SegmentTag,
                    Section::Segment => {
                        self.end_body()?;
                        Stage::SignatureLen
                    }
                    Section::Signature => Stage::Done,
                };
                Ok(true)
            }
            Stage::Done => match self.buf.len() - self.pos {
                0 => Ok(false),
                count => Err(DecodeError::TrailingBytes { count }),
            },
        }
    }

    /// Where a section's bytes go; `None` for documents the sink skips.
    fn blob(&mut self, section: Section) -> Option<&mut Vec<u8>> {
        match section {
            Section::Docs => self.keep_docs.then_some(&mut self.docs),
            Section::Segment => Some(self.segment.get_or_insert_with(Vec::new)),
            Section::Signature => Some(&mut self.signature),
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// A parse ran out of bytes: wait for more if the body has more.
    fn need_body(&self, what: &str) -> Result<bool, DecodeError> {
        if self.body_left == 0 {
            Err(malformed(format!("the snapshot ends inside {what}")))
        } else {
            Ok(false)
        }
    }

    /// A section's declared length, which must fit in the body.
    fn blob_len(&self, len: u64, what: &str) -> Result<usize, DecodeError> {
        let len = to_usize(len, what)?;
        if len > self.buf.len() - self.pos + self.body_left {
            return Err(malformed(format!("{what} are longer than the snapshot")));
        }
        Ok(len)
    }

    /// The body's last section is read: nothing of the body may remain.
    fn end_body(&self) -> Result<(), DecodeError> {
        let left = self.buf.len() - self.pos + self.body_left;
        if left > 0 {
            return Err(DecodeError::TrailingBytes { count: left });
        }
        Ok(())
    }

    /// Checks that the whole frame arrived and its signature verifies; only
    /// then is what the sink received trustworthy.
    pub fn finish(self) -> Result<(SnapshotHead, SnapshotTail), DecodeError> {
        if !matches!(self.stage, Stage::Done) {
            return Err(malformed("the snapshot frame ended early"));
        }
        let message = match self.body_v1 {
            Some(body) => wire::signed_bytes(self.version, &body),
            None => wire::signed_digest(self.version, self.hasher.finalize().as_bytes()),
        };
        wire::verify_signature(&self.writer, &message, &self.signature)?;
        let head = self
            .head
            .ok_or_else(|| malformed("the snapshot has no head"))?;
        Ok((
            head,
            SnapshotTail {
                docs: DocsSection::from_bytes(self.docs),
                index_segment: self.segment,
            },
        ))
    }
}

/// A sink that gathers the whole snapshot: for a host that wants a
/// [`Snapshot`] value, without the frame beside it.
#[derive(Debug, Default)]
pub struct SnapshotCollector {
    records: Vec<SnapshotRecord>,
    keep_docs: bool,
}

impl SnapshotCollector {
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            keep_docs: true,
        }
    }

    /// A collector that skips the saved documents.
    pub fn without_docs() -> Self {
        Self {
            records: Vec::new(),
            keep_docs: false,
        }
    }

    /// The snapshot, from what [`SnapshotStream::finish`] returned.
    pub fn into_snapshot(self, head: SnapshotHead, tail: SnapshotTail) -> Snapshot {
        Snapshot {
            collection: head.collection,
            shard: head.shard,
            offset: head.offset,
            records: self.records,
            docs: tail.docs,
            index_segment: tail.index_segment,
        }
    }
}

impl SnapshotSink for SnapshotCollector {
    fn head(&mut self, head: &SnapshotHead) -> Result<(), DecodeError> {
        // Exactly the claimed count, unless the records as values would
        // outweigh the whole body (a forged count, found out at `finish`).
        let fits = head.body_len / std::mem::size_of::<SnapshotRecord>();
        self.records.reserve_exact(head.records.min(fits));
        Ok(())
    }

    fn record(
        &mut self,
        id: RecordId,
        fields: Fields,
        vector: Option<&[f32]>,
    ) -> Result<(), DecodeError> {
        self.records.push(SnapshotRecord {
            id,
            fields,
            vector: vector.map(<[f32]>::to_vec),
        });
        Ok(())
    }

    fn wants_docs(&self) -> bool {
        self.keep_docs
    }
}

/// Reads a signed snapshot frame from `chunks` into a [`Snapshot`].
pub fn read_snapshot<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    writer: VerifyingKey,
    limits: Limits,
) -> Result<Snapshot, DecodeError> {
    let mut stream = SnapshotStream::new(writer, limits);
    let mut collector = SnapshotCollector::new();
    for chunk in chunks {
        stream.push(chunk, &mut collector)?;
    }
    let (head, tail) = stream.finish()?;
    Ok(collector.into_snapshot(head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_snapshot_variant_is_the_encoders() {
        let snapshot = Snapshot {
            collection: CollectionKey::new(
                crate::model::Namespace::new("ns").expect("valid"),
                crate::model::CollectionName::new("c").expect("valid"),
            ),
            shard: ShardId(0),
            offset: Offset(0),
            records: Vec::new(),
            docs: DocsSection::default(),
            index_segment: None,
        };
        let body = postcard::to_allocvec(&Message::Snapshot(snapshot)).expect("encodes");
        let (variant, _) = postcard::take_from_bytes::<u32>(&body).expect("a variant");
        assert_eq!(variant, SNAPSHOT_VARIANT);
    }
}
