//! The wire format: every message in a versioned, optionally signed envelope.
//!
//! A frame is the postcard encoding of
//!
//! ```text
//! Envelope { version: u16, body: bytes, signature: Option<bytes(64)> }
//! ```
//!
//! where `body` is the postcard encoding of a [`Message`]. The version comes
//! first and is read alone, so a frame from a newer writer fails with
//! [`DecodeError::UnsupportedVersion`] rather than as garbage. The body is a
//! byte string so that the signature covers the exact bytes received, not a
//! re-encoding: postcard is not self-describing and re-encoding would tie
//! verification to this build's serializer.
//!
//! The writer signs everything it sends (log ranges, snapshots, acks,
//! invalidations) with Ed25519 over
//!
//! ```text
//! "tidemark/envelope/blake3\0" || version (u16 LE) || BLAKE3(body) (32 bytes)
//! ```
//!
//! and replicas verify with the writer's public key only. Clients' writes
//! travel unsigned: their authority is the caller's token.
//!
//! Why a digest: Ed25519 hashes what it signs with SHA-512, twice when
//! signing and once when verifying, and a snapshot body is tens of megabytes.
//! In wasm SHA-512 runs at ~200–350 MB/s and was the largest single cost of
//! bootstrapping a replica; BLAKE3 with SIMD128 runs at ~900 MB/s, and the
//! signed message no longer needs a copy of the body. BLAKE3's 256-bit
//! output keeps the 128-bit security level of Ed25519 itself.
//!
//! Versions: this build writes version 2 and reads 1 and 2. Version 1 is
//! the same envelope with the signature over `"tidemark/envelope\0" ||
//! version || body` (the whole body). Frames a writer stored before the
//! change (its snapshots) keep verifying until they are replaced.
//!
//! Decoding checks, in order: frame length against [`Limits::max_frame_bytes`]
//! (before any allocation), version, postcard structure (byte strings are
//! bounded by the frame, see [`crate::codec`]), no trailing bytes, the
//! signature when required, and finally every size and name in the message
//! against [`Limits`]. Each failure is a [`DecodeError`].
//!
//! Compatibility: postcard encodes enum variants by index and struct fields
//! by position. Append new variants at the end; any other change to a type
//! here needs a new [`WIRE_VERSION`]. The golden-bytes test pins the format.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec;
use crate::limits::{LimitError, Limits, check};
use crate::log::{ConsistencyToken, LogEntry, Offset};
use crate::model::{CollectionKey, NameError};
use crate::shard::ShardId;
use crate::snapshot::Snapshot;
use crate::writer::WriteBatch;

/// The version this build writes.
pub const WIRE_VERSION: u16 = 2;

/// The oldest version this build reads: version 1 differs only in what the
/// signature covers (the whole body rather than its digest).
pub const OLDEST_READABLE_VERSION: u16 = 1;

/// Version 2's signing context: the signature covers the body's BLAKE3 digest.
const DIGEST_CONTEXT: &[u8] = b"tidemark/envelope/blake3\0";

/// Version 1's signing context: the signature covers the body itself.
const BODY_CONTEXT_V1: &[u8] = b"tidemark/envelope\0";

/// Everything Tidemark components say to each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Client → writer: changes to apply.
    WriteBatch(WriteBatch),
    /// Writer → client: the batch is durable.
    WriteAck(WriteAck),
    /// Writer (or an edge relaying it) → replica: consecutive log entries.
    LogRange(LogRange),
    /// Writer → replica: a shard's state at an offset.
    Snapshot(Snapshot),
    /// Writer → subscribers: a shard's head moved. Only a hint; replicas
    /// still read the log.
    Invalidation(Invalidation),
}

/// The writer's answer to a durable [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// The batch's `client_ref`, echoed so an outbox knows what to retire.
    pub client_ref: u64,
    pub token: ConsistencyToken,
}

/// Entries `[from, from + entries.len())` of one shard's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRange {
    pub collection: CollectionKey,
    pub shard: ShardId,
    pub from: Offset,
    pub entries: Vec<LogEntry>,
}

impl LogRange {
    /// The end of the range (exclusive).
    pub fn to(&self) -> Offset {
        Offset(self.from.0.saturating_add(self.entries.len() as u64))
    }

    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), DecodeError> {
        self.collection.validate()?;
        check(
            self.entries.len(),
            limits.max_range_entries,
            |actual, limit| LimitError::RangeTooLong { actual, limit },
        )?;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.offset.0 != self.from.0.wrapping_add(i as u64) {
                return Err(DecodeError::NonConsecutive {
                    expected: Offset(self.from.0.wrapping_add(i as u64)),
                    found: entry.offset,
                });
            }
            entry.id.validate(limits)?;
            entry.check_limits(limits)?;
        }
        Ok(())
    }
}

/// A shard's head moved to `head`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub collection: CollectionKey,
    pub shard: ShardId,
    pub head: Offset,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(
        "wire version {found} is not supported; this build reads versions {OLDEST_READABLE_VERSION} to {WIRE_VERSION}"
    )]
    UnsupportedVersion { found: u16 },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{count} unexpected bytes after the message")]
    TrailingBytes { count: usize },
    #[error("the message is not signed")]
    Unsigned,
    #[error("the signature does not verify with the writer's key")]
    BadSignature,
    #[error("log entry at offset {found} where {expected} was expected")]
    NonConsecutive { expected: Offset, found: Offset },
    #[error(transparent)]
    Name(#[from] NameError),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u16,
    #[serde(with = "codec::bytes")]
    body: Vec<u8>,
    #[serde(with = "codec::opt_bytes")]
    signature: Option<Vec<u8>>,
}

/// An envelope as read: its byte strings borrowed from the frame, which for
/// a snapshot is tens of megabytes not to copy.
#[derive(Deserialize)]
struct EnvelopeRef<'a> {
    version: u16,
    body: &'a [u8],
    signature: Option<&'a [u8]>,
}

/// What the signature of a frame of `version` covers: the body's digest
/// (version 2) or the body itself (version 1). Versions other than the
/// readable ones never get here ([`open_envelope`] refuses them).
pub(crate) fn signed_bytes(version: u16, body: &[u8]) -> Vec<u8> {
    if version >= 2 {
        signed_digest(version, blake3::hash(body).as_bytes())
    } else {
        signed_message(BODY_CONTEXT_V1, version, body)
    }
}

/// The signed message of a version 2 frame whose body hashes to `digest`:
/// what a reader that hashed the body as it arrived verifies.
pub(crate) fn signed_digest(version: u16, digest: &[u8; 32]) -> Vec<u8> {
    signed_message(DIGEST_CONTEXT, version, digest)
}

fn signed_message(context: &[u8], version: u16, covered: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(context.len() + 2 + covered.len());
    bytes.extend_from_slice(context);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(covered);
    bytes
}

/// Checks `signature` (as the frame carried it) over `message` with the
/// writer's key.
pub(crate) fn verify_signature(
    writer: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), DecodeError> {
    let signature = Signature::from_slice(signature).map_err(|_| DecodeError::BadSignature)?;
    writer
        .verify(message, &signature)
        .map_err(|_| DecodeError::BadSignature)
}

fn encode_envelope(message: &Message, key: Option<&SigningKey>) -> Vec<u8> {
    // Serializing in-memory values into a Vec cannot fail: every type here
    // is plain data and the JSON fields are already valid JSON.
    let body = postcard::to_allocvec(message).unwrap_or_default();
    let signature = key.map(|key| {
        key.sign(&signed_bytes(WIRE_VERSION, &body))
            .to_bytes()
            .to_vec()
    });
    let envelope = Envelope {
        version: WIRE_VERSION,
        body,
        signature,
    };
    postcard::to_allocvec(&envelope).unwrap_or_default()
}

/// Encodes an unsigned frame (clients' writes).
pub fn encode(message: &Message) -> Vec<u8> {
    encode_envelope(message, None)
}

/// Encodes a frame signed with the writer's key.
pub fn encode_signed(message: &Message, key: &SigningKey) -> Vec<u8> {
    encode_envelope(message, Some(key))
}

/// Decodes a frame without looking at its signature: for the writer reading
/// clients' requests, whose authority is their token.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    let envelope = open_envelope(frame, limits)?;
    decode_body(envelope.body, limits)
}

/// Decodes a frame that must carry a valid signature by `writer`: for
/// replicas and clients reading anything the writer sent.
pub fn decode_verified(
    frame: &[u8],
    writer: &VerifyingKey,
    limits: &Limits,
) -> Result<Message, DecodeError> {
    let envelope = open_envelope(frame, limits)?;
    let signature = envelope.signature.ok_or(DecodeError::Unsigned)?;
    verify_signature(
        writer,
        &signed_bytes(envelope.version, envelope.body),
        signature,
    )?;
    decode_body(envelope.body, limits)
}

fn open_envelope<'a>(frame: &'a [u8], limits: &Limits) -> Result<EnvelopeRef<'a>, DecodeError> {
    check(frame.len(), limits.max_frame_bytes, |actual, limit| {
        LimitError::FrameTooLarge { actual, limit }
    })?;
    let (version, _) = postcard::take_from_bytes::<u16>(frame)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !(OLDEST_READABLE_VERSION..=WIRE_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let (envelope, rest) = postcard::take_from_bytes::<EnvelopeRef<'a>>(frame)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    Ok(envelope)
}

fn decode_body(body: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    let (message, rest) = postcard::take_from_bytes::<Message>(body)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    match &message {
        Message::WriteBatch(batch) => batch.check_limits(limits)?,
        Message::WriteAck(_) => {}
        Message::LogRange(range) => range.validate(limits)?,
        Message::Snapshot(snapshot) => snapshot.validate(limits)?,
        Message::Invalidation(invalidation) => invalidation.collection.validate()?,
    }
    Ok(message)
}
