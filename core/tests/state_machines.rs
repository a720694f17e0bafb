//! The writer, replica and outbox state machines, driven through their
//! public API the way the hosts drive them.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{Value, json};
use tidemark_core::ActorId;
use tidemark_core::fields::JsonEdit;
use tidemark_core::limits::{LimitError, Limits};
use tidemark_core::log::{ConsistencyToken, LogEntry, Offset};
use tidemark_core::model::{
    CollectionKey, CollectionName, CollectionSchema, Fields, Namespace, RecordId,
};
use tidemark_core::outbox::Outbox;
use tidemark_core::record::RecordDoc;
use tidemark_core::replica::{
    ApplyError, Merging, Progress, ReadOnly, Replica, ReplicaMode, ReplicaShard,
};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::snapshot::Snapshot;
use tidemark_core::vector::{Metric, VectorError};
use tidemark_core::wire::{LogRange, WriteAck};
use tidemark_core::writer::{Edit, RestoreError, WriteBatch, WriteError, WriteOp, WriterShard};

fn key() -> CollectionKey {
    CollectionKey::new(
        Namespace::new("acme").unwrap(),
        CollectionName::new("notes").unwrap(),
    )
}

/// One shard, so every id routes to shard 0.
fn schema() -> CollectionSchema {
    CollectionSchema::new(
        2,
        Metric::Cosine,
        ShardCount::new(1).unwrap(),
        &Limits::default(),
    )
    .unwrap()
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

fn json_op(record: &str, edit: JsonEdit, vector: Option<Vec<f32>>) -> WriteOp {
    let op = match edit {
        JsonEdit::Put(f) => WriteOp::put(id(record), f, None),
        JsonEdit::Patch(f) => WriteOp::patch(id(record), f, None),
        JsonEdit::Delete => WriteOp::delete(id(record)),
    };
    WriteOp { vector, ..op }
}

fn batch(ops: Vec<WriteOp>) -> WriteBatch {
    WriteBatch {
        collection: key(),
        client_ref: 0,
        ops,
    }
}

fn writer() -> WriterShard {
    WriterShard::new(key(), schema(), ShardId(0), Limits::default())
}

fn actor() -> ActorId {
    ActorId::from([0xAA; 16])
}

fn range(writer_log: &[tidemark_core::log::LogEntry], from: u64, to: u64) -> LogRange {
    LogRange {
        collection: key(),
        shard: ShardId(0),
        from: Offset(from),
        entries: writer_log[from as usize..to as usize].to_vec(),
    }
}

#[test]
fn writer_appends_consecutive_entries_and_ignores_duplicates() {
    let mut w = writer();
    let put = batch(vec![
        json_op(
            "a",
            JsonEdit::Put(fields(json!({"t": "x"}))),
            Some(vec![3.0, 4.0]),
        ),
        json_op("b", JsonEdit::Put(fields(json!({"t": "y"}))), None),
    ]);
    let out = w.apply(&put, &actor(), 1).unwrap();
    assert_eq!(
        out.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [Offset(0), Offset(1)]
    );
    assert_eq!(out.token, ConsistencyToken::single(ShardId(0), Offset(2)));
    assert_eq!(out.entries[0].vector, Some(vec![0.6, 0.8]));
    assert_eq!(out.entries[0].fields, fields(json!({"t": "x"})));

    // The same request again, and the entries' own changes again: no entry.
    let again = w.apply(&put, &actor(), 2).unwrap();
    assert!(again.entries.is_empty());
    assert_eq!(again.token, ConsistencyToken::single(ShardId(0), Offset(2)));
    let replay = batch(vec![WriteOp {
        id: id("a"),
        edit: Edit::Changes(out.entries[0].changes.clone()),
        vector: Some(vec![3.0, 4.0]),
    }]);
    assert!(w.apply(&replay, &actor(), 3).unwrap().entries.is_empty());

    // Two ops on one record in one batch make one entry.
    let two = batch(vec![
        json_op("a", JsonEdit::Patch(fields(json!({"n": 1}))), None),
        json_op("a", JsonEdit::Patch(fields(json!({"m": 2}))), None),
    ]);
    let out = w.apply(&two, &actor(), 4).unwrap();
    assert_eq!(out.entries.len(), 1);
    assert_eq!(out.entries[0].offset, Offset(2));
    assert_eq!(out.entries[0].changes.len(), 2);
    assert_eq!(
        out.entries[0].fields,
        fields(json!({"t": "x", "n": 1, "m": 2}))
    );

    let out = w
        .apply(
            &batch(vec![json_op("a", JsonEdit::Delete, None)]),
            &actor(),
            5,
        )
        .unwrap();
    assert!(out.entries[0].deleted);
    assert_eq!(out.entries[0].vector, None);
    assert_eq!(w.head(), Offset(4));
}

/// A put that creates a record writes its change without an Automerge
/// document; every later path (an edit in the same batch, a later edit, a
/// restore, a merging client) sees the same record as if it had.
#[test]
fn records_created_by_a_put_behave_as_documents_do() {
    let mut w = writer();
    let created = json!({"title": "t", "n": 3, "meta": {"z": [1, {"k": null}], "a": true}});
    let out = w
        .apply(
            &batch(vec![json_op(
                "a",
                JsonEdit::Put(fields(created.clone())),
                None,
            )]),
            &actor(),
            7,
        )
        .unwrap();
    // The change is the one a document makes, and its state is materialized.
    let mut doc = RecordDoc::new();
    let change = doc
        .edit(&JsonEdit::Put(fields(created.clone())), &actor(), 7)
        .unwrap()
        .unwrap();
    assert_eq!(out.entries[0].changes, vec![change]);
    assert_eq!(
        serde_json::to_string(&out.entries[0].fields).unwrap(),
        serde_json::to_string(&doc.state().fields).unwrap()
    );
    assert_eq!(w.doc(&id("a")).unwrap().heads(), doc.heads());

    // Created and edited in one batch: one entry with both changes.
    let out = w
        .apply(
            &batch(vec![
                json_op("b", JsonEdit::Put(fields(json!({"x": 1, "y": 2}))), None),
                json_op("b", JsonEdit::Patch(fields(json!({"y": null}))), None),
            ]),
            &actor(),
            8,
        )
        .unwrap();
    assert_eq!(out.entries[0].changes.len(), 2);
    assert_eq!(out.entries[0].fields, fields(json!({"x": 1})));

    // A later edit builds on the created change.
    let out = w
        .apply(
            &batch(vec![json_op(
                "a",
                JsonEdit::Patch(fields(json!({"n": 4}))),
                None,
            )]),
            &actor(),
            9,
        )
        .unwrap();
    assert_eq!(out.entries[0].fields["n"], json!(4));
    assert_eq!(out.entries[0].fields["meta"], created["meta"]);

    // Reserved names and empty puts, as through a document.
    let before = w.snapshot(None);
    let reserved = w.apply(
        &batch(vec![json_op(
            "c",
            JsonEdit::Put(fields(json!({"$deleted": true}))),
            None,
        )]),
        &actor(),
        10,
    );
    assert!(
        matches!(reserved, Err(WriteError::Edit { .. })),
        "{reserved:?}"
    );
    let empty = w
        .apply(
            &batch(vec![json_op("c", JsonEdit::Put(Fields::new()), None)]),
            &actor(),
            10,
        )
        .unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(w.snapshot(None), before);
}

#[test]
fn a_bad_batch_changes_nothing() {
    let limits = Limits::default();
    let mut w = writer();
    w.apply(
        &batch(vec![json_op(
            "a",
            JsonEdit::Put(fields(json!({"v": 1}))),
            None,
        )]),
        &actor(),
        0,
    )
    .unwrap();
    let before = w.snapshot(None);
    type Expect = fn(&WriteError) -> bool;
    let cases: Vec<(WriteBatch, Expect)> = vec![
        (
            batch(vec![
                json_op("a", JsonEdit::Patch(fields(json!({"v": 2}))), None),
                json_op("b", JsonEdit::Put(Fields::new()), Some(vec![f32::NAN, 1.0])),
            ]),
            |e| {
                matches!(
                    e,
                    WriteError::Vector {
                        error: VectorError::NonFinite { index: 0 },
                        ..
                    }
                )
            },
        ),
        (
            batch(vec![json_op(
                "a",
                JsonEdit::Patch(Fields::new()),
                Some(vec![1.0]),
            )]),
            |e| {
                matches!(
                    e,
                    WriteError::Vector {
                        error: VectorError::WrongDimension { .. },
                        ..
                    }
                )
            },
        ),
        (
            batch(vec![json_op(
                "a",
                JsonEdit::Patch(fields(json!({"$x": 1}))),
                None,
            )]),
            |e| matches!(e, WriteError::Edit { .. }),
        ),
        (
            batch(vec![WriteOp {
                id: id("a"),
                edit: Edit::Changes(vec![b"garbage".to_vec()]),
                vector: None,
            }]),
            |e| matches!(e, WriteError::Change { .. }),
        ),
        (
            batch(
                (0..=limits.max_batch_ops)
                    .map(|i| json_op(&format!("r{i}"), JsonEdit::Delete, None))
                    .collect(),
            ),
            |e| matches!(e, WriteError::Limit(LimitError::BatchTooLarge { .. })),
        ),
        (
            WriteBatch {
                collection: CollectionKey::new(
                    Namespace::new("other").unwrap(),
                    CollectionName::new("notes").unwrap(),
                ),
                client_ref: 0,
                ops: vec![],
            },
            |e| matches!(e, WriteError::WrongCollection(_)),
        ),
    ];
    for (bad, expected) in cases {
        let error = w.apply(&bad, &actor(), 9).unwrap_err();
        assert!(expected(&error), "{error:?}");
        assert_eq!(w.snapshot(None), before);
    }
}

#[test]
fn changes_must_arrive_with_their_dependencies() {
    let mut client = tidemark_core::record::RecordDoc::new();
    let first = client
        .edit(
            &JsonEdit::Patch(fields(json!({"a": 1}))),
            &ActorId::from([1; 16]),
            0,
        )
        .unwrap()
        .unwrap();
    let second = client
        .edit(
            &JsonEdit::Patch(fields(json!({"b": 1}))),
            &ActorId::from([1; 16]),
            0,
        )
        .unwrap()
        .unwrap();
    let mut w = writer();
    let only_second = batch(vec![WriteOp {
        id: id("x"),
        edit: Edit::Changes(vec![second.clone()]),
        vector: None,
    }]);
    assert!(matches!(
        w.apply(&only_second, &actor(), 0),
        Err(WriteError::MissingDependencies { .. })
    ));
    // Out of order within one batch is fine: the queue reorders them.
    let both = batch(vec![WriteOp {
        id: id("x"),
        edit: Edit::Changes(vec![second, first]),
        vector: None,
    }]);
    let out = w.apply(&both, &actor(), 0).unwrap();
    assert_eq!(out.entries[0].changes.len(), 2);
    assert_eq!(out.entries[0].fields, fields(json!({"a": 1, "b": 1})));
}

#[test]
fn writer_restores_from_snapshot_and_log() {
    let mut w = writer();
    let mut log = Vec::new();
    for i in 0..6 {
        let op = json_op(
            &format!("r{}", i % 3),
            if i == 4 {
                JsonEdit::Delete
            } else {
                JsonEdit::Patch(fields(json!({ "i": i })))
            },
            Some(vec![1.0, i as f32]),
        );
        log.extend(w.apply(&batch(vec![op]), &actor(), i).unwrap().entries);
    }
    let snapshot_at_3 = {
        let mut early = WriterShard::restore(
            key(),
            schema(),
            ShardId(0),
            Limits::default(),
            None,
            &log[..3],
        )
        .unwrap();
        assert_eq!(early.head(), Offset(3));
        let snap = early.snapshot(Some(vec![1, 2, 3]));
        // The restored writer keeps writing where the original would.
        let next = early
            .apply(
                &batch(vec![json_op("z", JsonEdit::Delete, None)]),
                &actor(),
                0,
            )
            .unwrap();
        assert!(next.entries.is_empty());
        snap
    };
    let restored = WriterShard::restore(
        key(),
        schema(),
        ShardId(0),
        Limits::default(),
        Some(&snapshot_at_3),
        &log[3..],
    )
    .unwrap();
    assert_eq!(restored.snapshot(None), w.snapshot(None));

    let gap = WriterShard::restore(
        key(),
        schema(),
        ShardId(0),
        Limits::default(),
        Some(&snapshot_at_3),
        &log[4..],
    );
    assert_eq!(
        gap.unwrap_err(),
        RestoreError::Gap {
            expected: Offset(3),
            found: Offset(4)
        }
    );
    let mut forged = log[3].clone();
    forged.fields.insert("forged".into(), json!(true));
    let diverged = WriterShard::restore(
        key(),
        schema(),
        ShardId(0),
        Limits::default(),
        Some(&snapshot_at_3),
        [&forged],
    );
    assert!(matches!(diverged, Err(RestoreError::Diverged { .. })));
}

#[test]
fn replica_applies_in_order_reports_gaps_and_satisfies_tokens() {
    let mut w = writer();
    let mut log = Vec::new();
    let mut token = ConsistencyToken::default();
    for i in 0..5 {
        let out = w
            .apply(
                &batch(vec![json_op(
                    &format!("r{i}"),
                    JsonEdit::Put(fields(json!({ "i": i }))),
                    None,
                )]),
                &actor(),
                i,
            )
            .unwrap();
        token.merge(&out.token);
        log.extend(out.entries);
    }
    follow_the_log::<ReadOnly>(&log, &token);
    let merging = follow_the_log::<Merging>(&log, &token);
    assert!(merging.doc(&id("r4")).is_some());
}

/// Applies `log` out of order, with overlaps and with bad ranges, checking
/// each step; returns the replica at the end of the log.
fn follow_the_log<M: ReplicaMode>(log: &[LogEntry], token: &ConsistencyToken) -> Replica<M> {
    let mut replica = Replica::<M>::new(key(), ShardCount::new(1).unwrap(), Limits::default());
    assert_eq!(
        replica.apply_range(&range(log, 2, 4)),
        Ok(Progress::Gap {
            missing: Offset(0)..Offset(2)
        })
    );
    assert_eq!(replica.tidemark().get(ShardId(0)), Offset(0));
    assert_eq!(
        replica.apply_range(&range(log, 0, 3)),
        Ok(Progress::Applied {
            applied: 3,
            tidemark: Offset(3)
        })
    );
    assert!(!replica.satisfies(token));
    // Overlapping range: the duplicates are skipped.
    assert_eq!(
        replica.apply_range(&range(log, 1, 5)),
        Ok(Progress::Applied {
            applied: 2,
            tidemark: Offset(5)
        })
    );
    assert!(replica.satisfies(token));
    assert_eq!(
        replica.get(&id("r4")).unwrap().fields,
        fields(json!({"i": 4}))
    );
    let mut jumbled = range(log, 0, 2);
    jumbled.entries.swap(0, 1);
    assert!(matches!(
        replica.apply_range(&jumbled),
        Err(ApplyError::NonConsecutive { .. })
    ));
    let mut foreign = range(log, 0, 1);
    foreign.shard = ShardId(3);
    assert_eq!(
        replica.apply_range(&foreign),
        Err(ApplyError::NoSuchShard(ShardId(3)))
    );
    let mut foreign = range(log, 0, 1);
    foreign.collection = CollectionKey::new(
        Namespace::new("acme").unwrap(),
        CollectionName::new("other").unwrap(),
    );
    assert!(matches!(
        replica.apply_range(&foreign),
        Err(ApplyError::WrongShard { .. })
    ));
    assert_eq!(replica.tidemark().get(ShardId(0)), Offset(5));
    replica
}

#[test]
fn replica_restarts_from_its_own_or_the_writers_snapshot() {
    let mut w = writer();
    let mut log = Vec::new();
    for i in 0..4 {
        let edit = if i == 3 {
            JsonEdit::Delete
        } else {
            JsonEdit::Put(fields(json!({ "i": i })))
        };
        log.extend(
            w.apply(
                &batch(vec![json_op(&format!("r{}", i % 3), edit, None)]),
                &actor(),
                i,
            )
            .unwrap()
            .entries,
        );
    }
    let mut replica = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    replica.apply_range(&range(&log, 0, 2)).unwrap();
    let saved = replica.to_snapshot();

    let mut restarted = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    assert_eq!(restarted.load_snapshot(&saved), Ok(true));
    assert_eq!(restarted.tidemark(), Offset(2));
    restarted.apply_range(&range(&log, 0, 4)).unwrap();
    assert_eq!(restarted.to_snapshot().records, w.snapshot(None).records);
    // An older snapshot never rolls a replica back.
    assert_eq!(restarted.load_snapshot(&saved), Ok(false));
    assert_eq!(restarted.tidemark(), Offset(4));

    let mut fresh = ReplicaShard::<ReadOnly>::new(key(), ShardId(0), Limits::default());
    fresh.load_snapshot(&w.snapshot(None)).unwrap();
    assert_eq!(fresh.tidemark(), Offset(4));
    assert!(fresh.get(&id("r0")).is_none());
    assert_eq!(
        fresh.get(&id("r1")).unwrap().fields,
        fields(json!({"i": 1}))
    );
}

#[test]
fn outbox_survives_restarts_and_retires_acked_writes() {
    let limits = Limits::default();
    let mut w = writer();
    let mut replica = Replica::<Merging>::new(key(), ShardCount::new(1).unwrap(), limits.clone());
    let mut outbox = Outbox::new(key(), &ActorId::from([5; 16]));
    let seq = outbox
        .write(
            &replica,
            id("n"),
            Some(&JsonEdit::Put(fields(json!({"a": 1})))),
            Some(vec![0.0, 2.0]),
            &schema(),
            &limits,
            7,
        )
        .unwrap();
    assert_eq!(seq, Some(1));
    outbox
        .write(
            &replica,
            id("n"),
            Some(&JsonEdit::Patch(fields(json!({"b": 2})))),
            None,
            &schema(),
            &limits,
            8,
        )
        .unwrap();
    // Nothing new: no write.
    assert_eq!(
        outbox.write(
            &replica,
            id("n"),
            Some(&JsonEdit::Patch(fields(json!({"b": 2})))),
            None,
            &schema(),
            &limits,
            9
        ),
        Ok(None)
    );
    let view = outbox
        .local_view(&replica, &id("n"), &schema(), &limits)
        .unwrap();
    assert_eq!(view.fields, fields(json!({"a": 1, "b": 2})));
    assert_eq!(view.vector, Some(vec![0.0, 1.0]));

    let mut outbox = Outbox::from_bytes(&outbox.to_bytes(), &limits).unwrap();
    let sent = outbox.next_batch(1).unwrap();
    assert_eq!((sent.ops.len(), sent.client_ref), (1, 1));
    let sent = outbox.next_batch(10).unwrap();
    assert_eq!((sent.ops.len(), sent.client_ref), (2, 2));

    // Sent twice (a retry): the second changes nothing.
    let out = w.apply(&sent, &actor(), 0).unwrap();
    assert!(w.apply(&sent, &actor(), 0).unwrap().entries.is_empty());
    let ack = WriteAck {
        client_ref: sent.client_ref,
        token: out.token.clone(),
    };
    assert_eq!(outbox.ack(&ack), 2);
    assert_eq!(outbox.ack(&ack), 0);
    assert!(outbox.next_batch(10).is_none());
    // Acked but not yet seen by the replica: still in the local view.
    assert_eq!(outbox.settle(&replica.tidemark()), 0);
    assert!(
        outbox
            .local_view(&replica, &id("n"), &schema(), &limits)
            .is_some()
    );

    replica.apply_range(&range(&out.entries, 0, 1)).unwrap();
    assert_eq!(outbox.settle(&replica.tidemark()), 2);
    assert!(outbox.writes().is_empty());
    let view = outbox
        .local_view(&replica, &id("n"), &schema(), &limits)
        .unwrap();
    assert_eq!(view.fields, fields(json!({"a": 1, "b": 2})));

    // A later local edit builds on the replica's document and applies cleanly.
    outbox
        .write(
            &replica,
            id("n"),
            Some(&JsonEdit::Delete),
            None,
            &schema(),
            &limits,
            10,
        )
        .unwrap();
    assert!(
        outbox
            .local_view(&replica, &id("n"), &schema(), &limits)
            .is_none()
    );
    let out = w
        .apply(&outbox.next_batch(10).unwrap(), &actor(), 0)
        .unwrap();
    assert!(out.entries[0].deleted);
}

#[test]
fn snapshot_documents_load_when_used_and_persist_unchanged() {
    let mut w = writer();
    for (i, record) in ["a", "b", "a"].into_iter().enumerate() {
        let edit = JsonEdit::Patch(fields(json!({ format!("k{i}"): i })));
        w.apply(&batch(vec![json_op(record, edit, None)]), &actor(), 0)
            .unwrap();
    }
    let snapshot = w.snapshot(None);
    let mut replica = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    replica.load_snapshot(&snapshot).unwrap();
    // Persisting before any document was used writes the writer's bytes back.
    assert_eq!(replica.to_snapshot().docs, snapshot.docs);
    assert_eq!(
        replica.doc(&id("a")).unwrap().state(),
        w.doc(&id("a")).unwrap().state()
    );

    // A log entry extends a document that was never loaded.
    let next = w
        .apply(
            &batch(vec![json_op(
                "b",
                JsonEdit::Patch(fields(json!({"k9": 9}))),
                None,
            )]),
            &actor(),
            0,
        )
        .unwrap()
        .entries;
    let range = LogRange {
        collection: key(),
        shard: ShardId(0),
        from: Offset(3),
        entries: next,
    };
    replica.apply_range(&range).unwrap();
    assert_eq!(
        replica.doc(&id("b")).unwrap().state(),
        w.doc(&id("b")).unwrap().state()
    );
    let mut restarted = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    restarted.load_snapshot(&replica.to_snapshot()).unwrap();
    for record in ["a", "b"] {
        assert_eq!(
            restarted.doc(&id(record)).unwrap().heads(),
            w.doc(&id(record)).unwrap().heads()
        );
    }

    // A document with a whole chunk header but a damaged body passes the
    // check and, once used, counts as absent: the record stays readable.
    let mut damaged = snapshot.clone();
    let mut bytes = w.doc(&id("a")).unwrap().save();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    damaged.docs = tidemark_core::snapshot::DocsSection::encode([(&id("a"), bytes)]);
    let mut replica = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    assert_eq!(replica.load_snapshot(&damaged), Ok(true));
    assert!(replica.doc(&id("a")).is_none());
    assert_eq!(
        replica.get(&id("a")).unwrap().fields,
        fields(json!({"k0": 0, "k2": 2}))
    );
}

#[test]
fn replicas_without_vectors_keep_fields_only() {
    let mut w = writer();
    let log = w
        .apply(
            &batch(vec![
                json_op(
                    "a",
                    JsonEdit::Put(fields(json!({"k": 1}))),
                    Some(vec![3.0, 4.0]),
                ),
                json_op(
                    "b",
                    JsonEdit::Put(fields(json!({"k": 2}))),
                    Some(vec![1.0, 0.0]),
                ),
            ]),
            &actor(),
            0,
        )
        .unwrap()
        .entries;
    let snapshot = w.snapshot(None);
    assert_eq!(snapshot.vector_of("a"), Some(&[0.6, 0.8][..]));
    let edge =
        || ReplicaShard::<ReadOnly>::new(key(), ShardId(0), Limits::default()).without_vectors();
    let mut from_snapshot = edge();
    from_snapshot.load_snapshot(&snapshot).unwrap();
    let mut from_log = edge();
    from_log.apply_range(&range(&log, 0, 2)).unwrap();
    for replica in [&from_snapshot, &from_log] {
        let a = replica.get(&id("a")).unwrap();
        assert_eq!((&a.fields, &a.vector), (&fields(json!({"k": 1})), &None));
    }
}

#[test]
fn read_only_replicas_skip_the_documents_section() {
    let mut w = writer();
    w.apply(
        &batch(vec![json_op(
            "a",
            JsonEdit::Put(fields(json!({"k": 1}))),
            None,
        )]),
        &actor(),
        0,
    )
    .unwrap();
    let mut snapshot = w.snapshot(None);
    // Garbage where the documents should be: a reader that skips the section
    // never notices, a reader that merges refuses the whole snapshot.
    snapshot.docs = tidemark_core::snapshot::DocsSection::encode([(&id("a"), b"junk".to_vec())]);

    let mut edge = ReplicaShard::<ReadOnly>::new(key(), ShardId(0), Limits::default());
    assert_eq!(edge.load_snapshot(&snapshot), Ok(true));
    assert_eq!(edge.get(&id("a")).unwrap().fields, fields(json!({"k": 1})));

    let mut browser = ReplicaShard::<Merging>::new(key(), ShardId(0), Limits::default());
    assert!(matches!(
        browser.load_snapshot(&snapshot),
        Err(ApplyError::Docs(_))
    ));
    assert_eq!(browser.tidemark(), Offset(0));
    assert!(browser.get(&id("a")).is_none());
}

#[test]
fn damaged_outbox_bytes_are_typed_errors() {
    use tidemark_core::wire::DecodeError;
    let limits = Limits::default();
    let replica = Replica::<Merging>::new(key(), ShardCount::new(1).unwrap(), limits.clone());
    let mut outbox = Outbox::new(key(), &ActorId::from([5; 16]));
    outbox
        .write(
            &replica,
            id("n"),
            Some(&JsonEdit::Put(fields(json!({"a": 1})))),
            None,
            &schema(),
            &limits,
            0,
        )
        .unwrap();
    let bytes = outbox.to_bytes();
    assert_eq!(Outbox::from_bytes(&bytes, &limits).as_ref(), Ok(&outbox));
    for len in 0..bytes.len() {
        assert!(
            Outbox::from_bytes(&bytes[..len], &limits).is_err(),
            "truncated to {len}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Outbox::from_bytes(&trailing, &limits),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    let mut future = bytes.clone();
    future[0] = 2;
    assert_eq!(
        Outbox::from_bytes(&future, &limits),
        Err(DecodeError::UnsupportedVersion { found: 2 })
    );
    let tiny = Limits {
        max_outbox_ops: 0,
        ..Limits::default()
    };
    assert!(matches!(
        Outbox::from_bytes(&bytes, &tiny),
        Err(DecodeError::Limit(LimitError::OutboxFull { .. }))
    ));
}

#[test]
fn a_snapshot_taken_whole_loads_as_a_borrowed_one_does() {
    let mut w = writer();
    w.apply(
        &batch(vec![
            json_op(
                "a",
                JsonEdit::Put(fields(json!({"k": 1}))),
                Some(vec![3.0, 4.0]),
            ),
            json_op("b", JsonEdit::Put(fields(json!({"k": 2}))), None),
        ]),
        &actor(),
        0,
    )
    .unwrap();
    let snapshot = w.snapshot(None);
    for keep in [true, false] {
        load_both_ways::<ReadOnly>(&snapshot, keep);
        let (owned, borrowed) = load_both_ways::<Merging>(&snapshot, keep);
        let state = |r: &ReplicaShard<Merging>| r.doc(&id("a")).map(|d| d.state());
        assert!(state(&owned).is_some());
        assert_eq!(state(&owned), state(&borrowed));
    }
}

/// Loads `snapshot` into two fresh replicas, one taking it whole and one
/// borrowing it, checks they hold the same records, and returns them.
fn load_both_ways<M: ReplicaMode>(
    snapshot: &Snapshot,
    keep_vectors: bool,
) -> (ReplicaShard<M>, ReplicaShard<M>) {
    let new = || {
        let replica = ReplicaShard::<M>::new(key(), ShardId(0), Limits::default());
        if keep_vectors {
            replica
        } else {
            replica.without_vectors()
        }
    };
    let (mut borrowed, mut owned) = (new(), new());
    assert_eq!(borrowed.load_snapshot(snapshot), Ok(true));
    assert_eq!(owned.load_snapshot_owned(snapshot.clone()), Ok(true));
    assert_eq!(owned.tidemark(), snapshot.offset);
    let all = |r: &ReplicaShard<M>| {
        r.records()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(all(&owned), all(&borrowed), "vectors kept: {keep_vectors}");
    // A snapshot behind the replica changes nothing, taken or not.
    let mut stale = snapshot.clone();
    stale.offset = Offset(0);
    stale.records.clear();
    assert_eq!(owned.load_snapshot_owned(stale), Ok(false));
    assert_eq!(all(&owned), all(&borrowed));
    (owned, borrowed)
}
