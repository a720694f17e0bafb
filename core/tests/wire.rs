//! The wire format: golden bytes, round trips, and a corpus of bad inputs
//! that must each be a typed error and leave every state machine untouched.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use proptest::prelude::*;
use serde_json::{Value, json};
use tidemark_core::fields::JsonEdit;
use tidemark_core::limits::{LimitError, Limits};
use tidemark_core::log::{ConsistencyToken, LogEntry, Offset};
use tidemark_core::model::{
    CollectionKey, CollectionName, CollectionSchema, Fields, Namespace, RecordId,
};
use tidemark_core::replica::{Merging, Replica};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::snapshot::{DocsSection, Snapshot, SnapshotRecord};
use tidemark_core::snapshot_stream::{
    self, SnapshotCollector, SnapshotHead, SnapshotSink, SnapshotStream,
};
use tidemark_core::vector::Metric;
use tidemark_core::wire::{
    self, DecodeError, Invalidation, LogRange, Message, WIRE_VERSION, WriteAck,
};
use tidemark_core::writer::{Edit, WriteBatch, WriteOp, WriterShard};
use tidemark_core::{ActorId, SigningKey, VerifyingKey};

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn verifying_key() -> VerifyingKey {
    signing_key().verifying_key()
}

fn key() -> CollectionKey {
    CollectionKey::new(
        Namespace::new("acme").unwrap(),
        CollectionName::new("notes").unwrap(),
    )
}

fn id(s: &str) -> RecordId {
    RecordId::new(s, &Limits::default()).unwrap()
}

fn fields(value: Value) -> Fields {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test input is an object"),
    }
}

fn entry(offset: u64) -> LogEntry {
    LogEntry {
        offset: Offset(offset),
        id: id("note-1"),
        changes: vec![vec![1, 2, 3]],
        // Keys in the order the writer writes them: materialized from a
        // record's document, whose keys iterate sorted (a map keeps its
        // keys' order, so the JSON text follows it).
        fields: fields(json!({"n": 1.5, "title": "hi"})),
        vector: Some(vec![0.6, 0.8]),
        deleted: false,
    }
}

/// One message of every kind, with fixed contents.
fn samples() -> Vec<Message> {
    vec![
        Message::WriteBatch(WriteBatch {
            collection: key(),
            client_ref: 42,
            ops: vec![
                WriteOp {
                    id: id("a"),
                    edit: Edit::Json(JsonEdit::Put(fields(json!({"t": "x"})))),
                    vector: Some(vec![1.0, -0.5]),
                },
                WriteOp {
                    id: id("b"),
                    edit: Edit::Changes(vec![vec![0xde, 0xad]]),
                    vector: None,
                },
                WriteOp {
                    id: id("c"),
                    edit: Edit::Json(JsonEdit::Delete),
                    vector: None,
                },
            ],
        }),
        Message::WriteAck(WriteAck {
            client_ref: 42,
            token: ConsistencyToken::single(ShardId(3), Offset(300)),
        }),
        Message::LogRange(LogRange {
            collection: key(),
            shard: ShardId(0),
            from: Offset(5),
            entries: vec![entry(5)],
        }),
        Message::Snapshot(Snapshot {
            collection: key(),
            shard: ShardId(1),
            offset: Offset(9),
            records: vec![SnapshotRecord {
                id: id("r"),
                fields: fields(json!({"k": [true, null]})),
                vector: None,
            }],
            docs: DocsSection::encode([(&id("r"), vec![4, 5])]),
            index_segment: Some(vec![9, 9]),
        }),
        Message::Invalidation(Invalidation {
            collection: key(),
            shard: ShardId(2),
            head: Offset(77),
        }),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const FIXTURE_NAMES: [&str; 5] = [
    "write_batch",
    "write_ack",
    "log_range",
    "snapshot",
    "invalidation",
];

/// The signed frames of [`samples`], byte for byte, as this build writes
/// them (version 2). These pin the format: a change here breaks every
/// deployed replica, so it needs a new `WIRE_VERSION`, never an edit of
/// these strings. `TIDEMARK_BLESS=1` writes them, for a new version only.
const GOLDEN: [&str; 5] = [
    include_str!("fixtures/write_batch.hex"),
    include_str!("fixtures/write_ack.hex"),
    include_str!("fixtures/log_range.hex"),
    include_str!("fixtures/snapshot.hex"),
    include_str!("fixtures/invalidation.hex"),
];

/// The same messages as version 1 wrote them (the signature over the whole
/// body): still read, since writers keep snapshots they signed then.
const GOLDEN_V1: [&str; 5] = [
    include_str!("fixtures/v1/write_batch.hex"),
    include_str!("fixtures/v1/write_ack.hex"),
    include_str!("fixtures/v1/log_range.hex"),
    include_str!("fixtures/v1/snapshot.hex"),
    include_str!("fixtures/v1/invalidation.hex"),
];

#[test]
fn golden_frames() {
    let limits = Limits::default();
    for ((message, golden), name) in samples().iter().zip(GOLDEN).zip(FIXTURE_NAMES) {
        let frame = wire::encode_signed(message, &signing_key());
        #[cfg(not(target_arch = "wasm32"))]
        if std::env::var_os("TIDEMARK_BLESS").is_some() {
            let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
            std::fs::write(path, format!("{}\n", hex(&frame))).unwrap();
            continue;
        }
        assert_eq!(hex(&frame), golden.trim(), "{name}: {message:?}");
        assert_eq!(
            wire::decode_verified(&frame, &verifying_key(), &limits).as_ref(),
            Ok(message)
        );
    }
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn version_1_frames_still_verify() {
    let limits = Limits::default();
    for (message, golden) in samples().iter().zip(GOLDEN_V1) {
        let frame = unhex(golden);
        assert_eq!(frame[0], 1, "a version 1 frame");
        assert_eq!(
            wire::decode_verified(&frame, &verifying_key(), &limits).as_ref(),
            Ok(message)
        );
    }
}

/// A signature is over its version: relabelling a frame as the other
/// version (the same body and signature) does not verify.
#[test]
fn signatures_do_not_carry_across_versions() {
    let limits = Limits::default();
    let body = body_of(&samples()[2]);
    let v2 = sign(&body);
    let v1 = sign_v1(&body);
    assert_eq!(
        wire::decode_verified(&envelope(1, &body, Some(&v2)), &verifying_key(), &limits),
        Err(DecodeError::BadSignature)
    );
    assert_eq!(
        wire::decode_verified(&envelope(2, &body, Some(&v1)), &verifying_key(), &limits),
        Err(DecodeError::BadSignature)
    );
    assert!(
        wire::decode_verified(&envelope(1, &body, Some(&v1)), &verifying_key(), &limits).is_ok()
    );
}

#[test]
fn unsigned_frames_decode_but_do_not_verify() {
    let limits = Limits::default();
    for message in samples() {
        let frame = wire::encode(&message);
        assert_eq!(wire::decode(&frame, &limits), Ok(message.clone()));
        assert_eq!(
            wire::decode_verified(&frame, &verifying_key(), &limits),
            Err(DecodeError::Unsigned)
        );
    }
}

// --- the bad-input corpus -----------------------------------------------

/// A writer and a replica that receive every frame of the corpus: a frame
/// that decodes is applied, so "no state change" is checked end to end.
struct Receivers {
    writer: WriterShard,
    replica: Replica<Merging>,
}

impl Receivers {
    fn new() -> Self {
        let limits = Limits::default();
        let count = ShardCount::new(1).unwrap();
        let schema = CollectionSchema::new(2, Metric::Cosine, count, &limits).unwrap();
        let mut writer = WriterShard::new(key(), schema, ShardId(0), limits.clone());
        let put = WriteBatch {
            collection: key(),
            client_ref: 0,
            ops: vec![WriteOp {
                id: id("seed"),
                edit: Edit::Json(JsonEdit::Put(fields(json!({"x": 1})))),
                vector: Some(vec![1.0, 0.0]),
            }],
        };
        let out = writer.apply(&put, &ActorId::from([1; 16]), 0).unwrap();
        let mut replica = Replica::<Merging>::new(key(), count, limits);
        replica
            .apply_range(&LogRange {
                collection: key(),
                shard: ShardId(0),
                from: Offset(0),
                entries: out.entries,
            })
            .unwrap();
        Self { writer, replica }
    }

    fn state(&self) -> (Snapshot, Snapshot) {
        (
            self.writer.snapshot(None),
            self.replica.shards()[0].to_snapshot(),
        )
    }

    /// Feeds a frame to both; returns the two decode results.
    fn receive(&mut self, frame: &[u8], limits: &Limits) -> [Result<Message, DecodeError>; 2] {
        let to_writer = wire::decode(frame, limits);
        if let Ok(Message::WriteBatch(batch)) = &to_writer {
            let _ = self.writer.apply(batch, &ActorId::from([1; 16]), 0);
        }
        let to_replica = wire::decode_verified(frame, &verifying_key(), limits);
        match &to_replica {
            Ok(Message::LogRange(range)) => {
                let _ = self.replica.apply_range(range);
            }
            Ok(Message::Snapshot(snapshot)) => {
                let _ = self.replica.load_snapshot(snapshot);
            }
            _ => {}
        }
        [to_writer, to_replica]
    }
}

/// Frames built by hand: an envelope with any version, body and signature.
fn envelope(version: u16, body: &[u8], signature: Option<&[u8]>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        version: u16,
        #[serde(with = "serde_bytes_like")]
        body: &'a [u8],
        signature: Option<Sig<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Sig<'a>(#[serde(with = "serde_bytes_like")] &'a [u8]);
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b)
        }
    }
    postcard::to_allocvec(&Raw {
        version,
        body,
        signature: signature.map(Sig),
    })
    .unwrap()
}

/// A version 2 signature, computed here from the format's description.
fn sign(body: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let mut signed = b"tidemark/envelope/blake3\0".to_vec();
    signed.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    signed.extend_from_slice(blake3::hash(body).as_bytes());
    signing_key().sign(&signed).to_bytes().to_vec()
}

/// A version 1 signature: over the whole body.
fn sign_v1(body: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let mut signed = b"tidemark/envelope\0".to_vec();
    signed.extend_from_slice(&1u16.to_le_bytes());
    signed.extend_from_slice(body);
    signing_key().sign(&signed).to_bytes().to_vec()
}

/// A signed frame around a hand-made body.
fn signed_body(body: &[u8]) -> Vec<u8> {
    envelope(WIRE_VERSION, body, Some(&sign(body)))
}

fn body_of(message: &Message) -> Vec<u8> {
    postcard::to_allocvec(message).unwrap()
}

#[test]
fn bad_inputs_are_typed_errors_and_change_nothing() {
    let limits = Limits::default();
    let mut receivers = Receivers::new();
    let before = receivers.state();
    let good = wire::encode_signed(&samples()[2], &signing_key());

    type Expect = fn(&DecodeError) -> bool;
    let mut corpus: Vec<(String, Vec<u8>, Expect)> = Vec::new();
    let malformed: fn(&DecodeError) -> bool = |e| matches!(e, DecodeError::Malformed(_));
    let any: fn(&DecodeError) -> bool = |_| true;

    for len in 0..good.len() {
        corpus.push((format!("truncated to {len}"), good[..len].to_vec(), any));
    }
    let mut trailing = good.clone();
    trailing.push(0);
    corpus.push(("trailing byte".into(), trailing, |e| {
        matches!(e, DecodeError::TrailingBytes { count: 1 })
    }));
    let body = body_of(&samples()[2]);
    corpus.push((
        "future version".into(),
        envelope(3, &body, Some(&sign(&body))),
        |e| matches!(e, DecodeError::UnsupportedVersion { found: 3 }),
    ));
    corpus.push(("version 0".into(), envelope(0, &body, None), |e| {
        matches!(e, DecodeError::UnsupportedVersion { found: 0 })
    }));
    // The body's length prefix claims 2^35 bytes in a frame of a few dozen.
    let mut huge = vec![1];
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
    huge.extend_from_slice(&body);
    corpus.push(("oversized body length".into(), huge, malformed));
    // A varint that never ends.
    corpus.push(("endless varint".into(), vec![0xff; 64], malformed));
    let mut body_trailing = body.clone();
    body_trailing.push(0);
    corpus.push((
        "trailing bytes in body".into(),
        signed_body(&body_trailing),
        |e| matches!(e, DecodeError::TrailingBytes { count: 1 }),
    ));
    corpus.push((
        "unknown message kind".into(),
        signed_body(&[200, 0]),
        malformed,
    ));
    corpus.push(("empty body".into(), signed_body(&[]), malformed));
    corpus.push((
        "no signature".into(),
        envelope(WIRE_VERSION, &body, None),
        |e| matches!(e, DecodeError::Unsigned | DecodeError::Malformed(_)),
    ));
    corpus.push((
        "short signature".into(),
        envelope(WIRE_VERSION, &body, Some(&[0; 10])),
        |e| matches!(e, DecodeError::BadSignature),
    ));
    let mut flipped = body.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    corpus.push((
        "body altered after signing".into(),
        envelope(WIRE_VERSION, &flipped, Some(&sign(&body))),
        |e| matches!(e, DecodeError::BadSignature | DecodeError::Malformed(_)),
    ));

    // Bodies that are valid postcard but break the message's rules.
    let mut bad_range = LogRange {
        collection: key(),
        shard: ShardId(0),
        from: Offset(1),
        entries: vec![entry(1), entry(3)],
    };
    corpus.push((
        "non-consecutive entries".into(),
        signed_body(&body_of(&Message::LogRange(bad_range.clone()))),
        |e| matches!(e, DecodeError::NonConsecutive { .. }),
    ));
    bad_range.entries = vec![entry(1)];
    bad_range.collection = CollectionKey::new(
        serde_json::from_value(json!("Not Valid")).unwrap(),
        CollectionName::new("notes").unwrap(),
    );
    corpus.push((
        "invalid namespace".into(),
        signed_body(&body_of(&Message::LogRange(bad_range))),
        |e| matches!(e, DecodeError::Name(_)),
    ));
    let mut long_id = entry(1);
    long_id.id = serde_json::from_value(json!("x".repeat(limits.max_id_bytes + 1))).unwrap();
    let long_range = Message::LogRange(LogRange {
        collection: key(),
        shard: ShardId(0),
        from: Offset(1),
        entries: vec![long_id],
    });
    corpus.push((
        "record id too long".into(),
        signed_body(&body_of(&long_range)),
        |e| matches!(e, DecodeError::Name(_)),
    ));
    let mut big = entry(1);
    big.fields = fields(json!({"blob": "x".repeat(limits.max_fields_bytes)}));
    let big_range = Message::LogRange(LogRange {
        collection: key(),
        shard: ShardId(0),
        from: Offset(1),
        entries: vec![big],
    });
    corpus.push((
        "fields too large".into(),
        signed_body(&body_of(&big_range)),
        |e| matches!(e, DecodeError::Limit(LimitError::FieldsTooLarge { .. })),
    ));
    let ops = (0..=limits.max_batch_ops)
        .map(|i| WriteOp {
            id: id(&format!("r{i}")),
            edit: Edit::None,
            vector: None,
        })
        .collect();
    let too_many = Message::WriteBatch(WriteBatch {
        collection: key(),
        client_ref: 0,
        ops,
    });
    corpus.push((
        "batch too large".into(),
        signed_body(&body_of(&too_many)),
        |e| matches!(e, DecodeError::Limit(LimitError::BatchTooLarge { .. })),
    ));
    // Hand-edited bodies: a vector of 3 bytes and fields that are not an object.
    let mut odd_vector = body_of(&Message::Invalidation(Invalidation {
        collection: key(),
        shard: ShardId(0),
        head: Offset(77),
    }));
    odd_vector[0] = 0; // now claims to be a WriteBatch of 77 ops
    corpus.push((
        "wrong kind for its fields".into(),
        signed_body(&odd_vector),
        any,
    ));
    let json_array = {
        let text = "[1,2]";
        let mut b = body_of(&Message::LogRange(LogRange {
            collection: key(),
            shard: ShardId(0),
            from: Offset(1),
            entries: vec![LogEntry {
                fields: Fields::new(),
                ..entry(1)
            }],
        }));
        let pos = b.windows(3).position(|w| w == [2, b'{', b'}']).unwrap();
        b.splice(
            pos..pos + 3,
            [text.len() as u8].into_iter().chain(text.bytes()),
        );
        b
    };
    corpus.push((
        "fields not an object".into(),
        signed_body(&json_array),
        malformed,
    ));
    let three_byte_vector = {
        let mut b = body_of(&Message::LogRange(LogRange {
            collection: key(),
            shard: ShardId(0),
            from: Offset(1),
            entries: vec![LogEntry {
                vector: Some(vec![1.0]),
                ..entry(1)
            }],
        }));
        let pos = b
            .windows(6)
            .position(|w| w == [1, 4, 0, 0, 0x80, 0x3f])
            .unwrap();
        b.splice(pos..pos + 6, [1, 3, 0, 0, 0x80]);
        b
    };
    corpus.push((
        "vector bytes not a multiple of 4".into(),
        signed_body(&three_byte_vector),
        malformed,
    ));

    let small = Limits {
        max_frame_bytes: 16,
        ..Limits::default()
    };
    let results = receivers.receive(&good, &small);
    for result in results {
        assert!(
            matches!(
                result,
                Err(DecodeError::Limit(LimitError::FrameTooLarge { .. }))
            ),
            "{result:?}"
        );
    }

    for (name, frame, expected) in &corpus {
        let [_, to_replica] = receivers.receive(frame, &limits);
        match &to_replica {
            Err(error) => assert!(expected(error), "{name}: {error:?}"),
            Ok(message) => panic!("{name}: decoded to {message:?}"),
        }
        assert_eq!(receivers.state(), before, "{name} changed state");
    }

    // Random bytes, and random mutations of valid frames.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let frames: Vec<Vec<u8>> = samples()
        .iter()
        .map(|m| wire::encode_signed(m, &signing_key()))
        .collect();
    for i in 0..2_000 {
        let frame = if i % 2 == 0 {
            let len = (next() % 200) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut frame = frames[i % frames.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % frame.len();
                frame[at] ^= (next() as u8) | 1;
            }
            frame
        };
        let [_, to_replica] = receivers.receive(&frame, &limits);
        assert!(to_replica.is_err(), "random frame {i} verified");
        assert_eq!(receivers.state(), before, "random frame {i} changed state");
    }
}

// --- round trips ----------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ]
}

fn json_fields() -> impl Strategy<Value = Fields> {
    let value = json_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z$]{1,6}", value, 0..4).prop_map(|m| m.into_iter().collect())
}

fn record_id() -> impl Strategy<Value = RecordId> {
    "[a-zA-Z0-9 ._é-]{1,20}".prop_map(|s| id(&s))
}

fn vector() -> impl Strategy<Value = Option<Vec<f32>>> {
    proptest::option::of(prop::collection::vec(
        any::<f32>().prop_filter("finite", |x| x.is_finite()),
        0..8,
    ))
}

fn bytes_list() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3)
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    (
        record_id(),
        bytes_list(),
        json_fields(),
        vector(),
        any::<bool>(),
    )
        .prop_map(|(id, changes, fields, vector, deleted)| LogEntry {
            offset: Offset(0),
            id,
            changes,
            fields,
            vector,
            deleted,
        })
}

fn message() -> impl Strategy<Value = Message> {
    let edit = prop_oneof![
        Just(Edit::None),
        bytes_list().prop_map(Edit::Changes),
        json_fields().prop_map(|f| Edit::Json(JsonEdit::Put(f))),
        json_fields().prop_map(|f| Edit::Json(JsonEdit::Patch(f))),
        Just(Edit::Json(JsonEdit::Delete)),
    ];
    let op =
        (record_id(), edit, vector()).prop_map(|(id, edit, vector)| WriteOp { id, edit, vector });
    let token = prop::collection::btree_map(
        any::<u32>().prop_map(ShardId),
        any::<u64>().prop_map(Offset),
        0..4,
    )
    .prop_map(|shards| ConsistencyToken { shards });
    prop_oneof![
        (any::<u64>(), prop::collection::vec(op, 0..4)).prop_map(|(client_ref, ops)| {
            Message::WriteBatch(WriteBatch {
                collection: key(),
                client_ref,
                ops,
            })
        }),
        (any::<u64>(), token)
            .prop_map(|(client_ref, token)| Message::WriteAck(WriteAck { client_ref, token })),
        (
            any::<u32>(),
            0..u64::MAX / 2,
            prop::collection::vec(log_entry(), 0..4)
        )
            .prop_map(|(shard, from, mut entries)| {
                for (i, entry) in entries.iter_mut().enumerate() {
                    entry.offset = Offset(from + i as u64);
                }
                Message::LogRange(LogRange {
                    collection: key(),
                    shard: ShardId(shard),
                    from: Offset(from),
                    entries,
                })
            }),
        (
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec((record_id(), json_fields(), vector()), 0..4),
            prop::collection::vec(any::<u8>(), 0..30),
            proptest::option::of(prop::collection::vec(any::<u8>(), 0..30)),
        )
            .prop_map(|(shard, offset, records, docs, index_segment)| {
                Message::Snapshot(Snapshot {
                    collection: key(),
                    shard: ShardId(shard),
                    offset: Offset(offset),
                    records: records
                        .into_iter()
                        .map(|(id, fields, vector)| SnapshotRecord { id, fields, vector })
                        .collect(),
                    docs: DocsSection::encode([(&id("d"), docs)]),
                    index_segment,
                })
            }),
        (any::<u32>(), any::<u64>()).prop_map(|(shard, head)| Message::Invalidation(
            Invalidation {
                collection: key(),
                shard: ShardId(shard),
                head: Offset(head),
            }
        )),
    ]
}

proptest! {
    #[test]
    fn envelopes_round_trip(message in message()) {
        let limits = Limits::default();
        let signed = wire::encode_signed(&message, &signing_key());
        prop_assert_eq!(wire::decode_verified(&signed, &verifying_key(), &limits), Ok(message.clone()));
        prop_assert_eq!(wire::decode(&wire::encode(&message), &limits), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let limits = Limits::default();
        let _ = wire::decode(&bytes, &limits);
        prop_assert!(wire::decode_verified(&bytes, &verifying_key(), &limits).is_err());
        prop_assert!(stream(&bytes, &[7]).is_err());
    }

    /// However the frame is cut, the stream reads what the whole-frame
    /// decoder reads.
    #[test]
    fn streamed_snapshots_equal_whole_ones(
        message in message().prop_filter("a snapshot", |m| matches!(m, Message::Snapshot(_))),
        cuts in prop::collection::vec(1usize..97, 1..12),
    ) {
        let frame = wire::encode_signed(&message, &signing_key());
        let Message::Snapshot(whole) = message else { unreachable!("filtered") };
        prop_assert_eq!(stream(&frame, &cuts), Ok(whole));
    }
}

// --- reading snapshots as a stream ----------------------------------------

/// Streams `frame` in chunks of the sizes in `cuts`, cycling.
fn stream(frame: &[u8], cuts: &[usize]) -> Result<Snapshot, DecodeError> {
    let mut chunks = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < frame.len() {
        let end = (at + cuts[i % cuts.len()]).min(frame.len());
        chunks.push(&frame[at..end]);
        (at, i) = (end, i + 1);
    }
    snapshot_stream::read_snapshot(chunks, verifying_key(), Limits::default())
}

fn big_snapshot(records: usize, dim: usize) -> Snapshot {
    let ids: Vec<RecordId> = (0..records).map(|i| id(&format!("r{i:05}"))).collect();
    Snapshot {
        collection: key(),
        shard: ShardId(3),
        offset: Offset(records as u64 + 5),
        records: ids
            .iter()
            .enumerate()
            .map(|(i, rid)| SnapshotRecord {
                id: rid.clone(),
                fields: fields(json!({"row": i, "text": "x".repeat(i % 50)})),
                vector: (i % 7 != 0).then(|| (0..dim).map(|d| (i * dim + d) as f32).collect()),
            })
            .collect(),
        docs: DocsSection::encode(ids.iter().map(|rid| (rid, vec![1, 2, 3]))),
        index_segment: Some((0..5000).map(|i| i as u8).collect()),
    }
}

#[test]
fn a_snapshot_streams_in_chunks_of_any_size() {
    let snapshot = big_snapshot(300, 16);
    let frame = wire::encode_signed(&Message::Snapshot(snapshot.clone()), &signing_key());
    for cuts in [&[1][..], &[3, 1000, 17], &[64 << 10], &[frame.len()]] {
        assert_eq!(
            stream(&frame, cuts).as_ref(),
            Ok(&snapshot),
            "cuts {cuts:?}"
        );
    }
}

#[test]
fn version_1_snapshots_stream_too() {
    let frame = unhex(GOLDEN_V1[3]);
    let Message::Snapshot(snapshot) = samples()[3].clone() else {
        unreachable!("sample 3 is the snapshot")
    };
    assert_eq!(stream(&frame, &[5]), Ok(snapshot));
}

#[test]
fn a_sink_may_skip_the_documents() {
    let snapshot = big_snapshot(20, 4);
    let frame = wire::encode_signed(&Message::Snapshot(snapshot.clone()), &signing_key());
    let mut stream = SnapshotStream::new(verifying_key(), Limits::default());
    let mut sink = SnapshotCollector::without_docs();
    for chunk in frame.chunks(100) {
        stream.push(chunk, &mut sink).unwrap();
    }
    let (head, tail) = stream.finish().unwrap();
    assert_eq!(head.records, 20);
    let read = sink.into_snapshot(head, tail);
    assert!(read.docs.is_empty());
    assert_eq!(read.records, snapshot.records);
    assert_eq!(read.index_segment, snapshot.index_segment);
}

/// Every way a snapshot frame can be wrong is a typed error, found while
/// streaming or at the latest by `finish`, before anything is trusted.
#[test]
fn bad_snapshot_streams_are_typed_errors() {
    let snapshot = big_snapshot(40, 8);
    let message = Message::Snapshot(snapshot.clone());
    let good = wire::encode_signed(&message, &signing_key());
    let body = body_of(&message);
    let cut = |frame: &[u8]| stream(frame, &[13]);

    let mut tampered = good.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert_eq!(
        cut(&tampered),
        Err(DecodeError::BadSignature),
        "a flipped vector bit"
    );

    let other = SigningKey::from_bytes(&[9; 32]);
    let forged = wire::encode_signed(&message, &other);
    assert_eq!(cut(&forged), Err(DecodeError::BadSignature), "another key");
    assert_eq!(cut(&wire::encode(&message)), Err(DecodeError::Unsigned));
    assert_eq!(
        cut(&envelope(2, &body, Some(&[0; 63]))),
        Err(DecodeError::BadSignature),
        "a short signature"
    );
    assert!(matches!(
        cut(&good[..good.len() - 1]),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        cut(&good[..good.len() / 3]),
        Err(DecodeError::Malformed(_))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(cut(&trailing), Err(DecodeError::TrailingBytes { count: 1 }));
    let mut longer = body.clone();
    longer.push(0);
    assert_eq!(
        cut(&signed_body(&longer)),
        Err(DecodeError::TrailingBytes { count: 1 }),
        "bytes after the body's last section"
    );
    assert!(matches!(
        cut(&envelope(3, &body, None)),
        Err(DecodeError::UnsupportedVersion { found: 3 })
    ));
    let range = wire::encode_signed(&samples()[2], &signing_key());
    assert!(matches!(cut(&range), Err(DecodeError::Malformed(m)) if m.contains("not a snapshot")));

    // A forged record count is refused at the head, before any reservation.
    let head_len = postcard::to_allocvec(&(3u32, key(), ShardId(3), Offset(45)))
        .unwrap()
        .len();
    let mut counted = body[..head_len].to_vec();
    counted.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    counted.extend_from_slice(&body[head_len + 1..]);
    assert!(
        matches!(cut(&signed_body(&counted)), Err(DecodeError::Malformed(m)) if m.contains("more records"))
    );

    let small = Limits {
        max_frame_bytes: good.len() - 1,
        ..Limits::default()
    };
    let mut limited = SnapshotStream::new(verifying_key(), small);
    assert!(matches!(
        limited.push(&good, &mut SnapshotCollector::new()),
        Err(DecodeError::Limit(LimitError::FrameTooLarge { .. }))
    ));
    let narrow = Limits {
        max_dimension: 4,
        ..Limits::default()
    };
    let mut limited = SnapshotStream::new(verifying_key(), narrow);
    assert!(matches!(
        limited.push(&good, &mut SnapshotCollector::new()),
        Err(DecodeError::Limit(LimitError::DimensionTooLarge { .. }))
    ));
}

/// A sink's refusal stops the stream and comes back as it was.
#[test]
fn a_sink_error_stops_the_stream() {
    struct Refuse(usize);
    impl SnapshotSink for Refuse {
        fn head(&mut self, _: &SnapshotHead) -> Result<(), DecodeError> {
            Ok(())
        }
        fn record(&mut self, _: RecordId, _: Fields, _: Option<&[f32]>) -> Result<(), DecodeError> {
            self.0 += 1;
            if self.0 == 2 {
                return Err(DecodeError::Malformed("no second record".into()));
            }
            Ok(())
        }
    }
    let frame = wire::encode_signed(&Message::Snapshot(big_snapshot(5, 2)), &signing_key());
    let mut stream = SnapshotStream::new(verifying_key(), Limits::default());
    let mut sink = Refuse(0);
    assert_eq!(
        stream.push(&frame, &mut sink),
        Err(DecodeError::Malformed("no second record".into()))
    );
    assert_eq!(sink.0, 2);
}
