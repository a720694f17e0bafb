//! An in-process writer for the sync state machine's tests: core's real
//! [`WriterShard`]s and signing behind the SDK's [`Transport`] port, with
//! switches to cut the network or spoil answers. (The Chromium suite also
//! runs against the real `tidemark-writer` over HTTP.)

use std::cell::{Cell, RefCell};

use tidemark_browser_sdk::error::SdkError;
use tidemark_browser_sdk::store::LocalFuture;
use tidemark_browser_sdk::transport::{SnapshotPieces, Transport};
use tidemark_core::limits::Limits;
use tidemark_core::log::{ConsistencyToken, LogEntry, Offset};
use tidemark_core::model::{CollectionKey, CollectionName, CollectionSchema, Namespace};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::vector::{BuildOptions, HnswSegment, Metric};
use tidemark_core::wire::{self, LogRange, Message, WriteAck};
use tidemark_core::writer::{WriteError, WriterShard};
use tidemark_core::{ActorId, SigningKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoil {
    None,
    /// Answers with bytes that are not a frame.
    Garbage,
    /// Signs with a key that is not the writer's.
    WrongKey,
}

pub struct LocalWriter {
    key: SigningKey,
    pub collection: CollectionKey,
    pub schema: CollectionSchema,
    shards: RefCell<Vec<WriterShard>>,
    logs: RefCell<Vec<Vec<LogEntry>>>,
    snapshots: RefCell<Vec<Option<Vec<u8>>>>,
    pub offline: Cell<bool>,
    pub spoil: Cell<Spoil>,
    pub requests: Cell<usize>,
}

pub const NAMESPACE: &str = "acme";
pub const COLLECTION: &str = "notes";
pub const DIM: usize = 4;

impl LocalWriter {
    pub fn new(shards: u32) -> Self {
        let collection = CollectionKey::new(
            Namespace::new(NAMESPACE).unwrap(),
            CollectionName::new(COLLECTION).unwrap(),
        );
        let count = ShardCount::new(shards).unwrap();
        let schema = CollectionSchema::new(DIM, Metric::Cosine, count, &Limits::default()).unwrap();
        Self {
            key: SigningKey::from_bytes(&[7; 32]),
            shards: RefCell::new(
                count
                    .shards()
                    .map(|s| WriterShard::new(collection.clone(), schema, s, Limits::default()))
                    .collect(),
            ),
            logs: RefCell::new(count.shards().map(|_| Vec::new()).collect()),
            snapshots: RefCell::new(count.shards().map(|_| None).collect()),
            collection,
            schema,
            offline: Cell::new(false),
            spoil: Cell::new(Spoil::None),
            requests: Cell::new(0),
        }
    }

    pub fn key_hex(&self) -> String {
        self.key
            .verifying_key()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The record as the writer holds it.
    pub fn fields(&self, id: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        let id = tidemark_core::model::RecordId::new(id, &Limits::default()).unwrap();
        let shard = self.collection.shard_of(&id, self.schema.shard_count);
        let shards = self.shards.borrow();
        let (state, _) = shards[shard.0 as usize].record(&id)?;
        (!state.deleted).then_some(state.fields)
    }

    pub fn head(&self, shard: u32) -> u64 {
        self.logs.borrow()[shard as usize].len() as u64
    }

    /// Takes a snapshot of every shard (with a sealed segment when it has
    /// vectors), served from now on.
    pub fn take_snapshots(&self) {
        let shards = self.shards.borrow();
        let mut snapshots = self.snapshots.borrow_mut();
        for (i, shard) in shards.iter().enumerate() {
            let records = shard.live_records();
            let with_vectors: Vec<(String, Vec<f32>)> = records
                .iter()
                .filter_map(|r| Some((r.id.as_str().to_string(), r.vector.clone()?)))
                .collect();
            let segment = (!with_vectors.is_empty()).then(|| {
                HnswSegment::build(
                    self.schema.metric,
                    DIM,
                    &with_vectors,
                    BuildOptions::with_seed(1),
                )
                .unwrap()
                .to_bytes()
            });
            let snapshot = shard.snapshot(segment);
            snapshots[i] = Some(wire::encode_signed(&Message::Snapshot(snapshot), &self.key));
        }
    }

    /// Applies a JSON-style write directly at the writer (another client).
    pub fn write_json(
        &self,
        id: &str,
        edit: tidemark_core::fields::JsonEdit,
        vector: Option<Vec<f32>>,
    ) {
        use tidemark_core::writer::{Edit, WriteBatch, WriteOp};
        let batch = WriteBatch {
            collection: self.collection.clone(),
            client_ref: 0,
            ops: vec![WriteOp {
                id: tidemark_core::model::RecordId::new(id, &Limits::default()).unwrap(),
                edit: Edit::Json(edit),
                vector,
            }],
        };
        self.apply(&batch).unwrap();
    }

    fn apply(
        &self,
        batch: &tidemark_core::writer::WriteBatch,
    ) -> Result<ConsistencyToken, WriteError> {
        let actor = ActorId::from(&[9u8; 16][..]);
        let mut token = ConsistencyToken::default();
        for (shard, part) in batch.split_by_shard(self.schema.shard_count) {
            let outcome = self.shards.borrow_mut()[shard.0 as usize].apply(
                &part,
                &actor,
                1_700_000_000_000,
            )?;
            self.logs.borrow_mut()[shard.0 as usize].extend(outcome.entries);
            token.merge(&outcome.token);
        }
        Ok(token)
    }

    fn sign(&self, message: &Message) -> Vec<u8> {
        match self.spoil.get() {
            Spoil::None => wire::encode_signed(message, &self.key),
            Spoil::Garbage => b"<html>bad gateway</html>".to_vec(),
            Spoil::WrongKey => wire::encode_signed(message, &SigningKey::from_bytes(&[8; 32])),
        }
    }

    fn reachable(&self) -> Result<(), SdkError> {
        self.requests.set(self.requests.get() + 1);
        if self.offline.get() {
            Err(SdkError::Offline("test network is down".into()))
        } else {
            Ok(())
        }
    }
}

fn bad_request(status: u16, code: &str, message: String) -> SdkError {
    SdkError::Http {
        status,
        code: code.into(),
        message,
    }
}

impl Transport for LocalWriter {
    fn writer_key(&self) -> LocalFuture<'_, Result<String, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(self.key_hex())
        })
    }

    fn schema<'a>(
        &'a self,
        _collection: &'a CollectionKey,
    ) -> LocalFuture<'a, Result<CollectionSchema, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(self.schema)
        })
    }

    fn push<'a>(
        &'a self,
        _collection: &'a CollectionKey,
        frame: Vec<u8>,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            let batch = match wire::decode(&frame, &Limits::default()) {
                Ok(Message::WriteBatch(batch)) => batch,
                other => {
                    return Err(bad_request(400, "invalid_envelope", format!("{other:?}")));
                }
            };
            let token = self.apply(&batch).map_err(|e| match e {
                WriteError::MissingDependencies { .. } => {
                    bad_request(409, "missing_dependencies", e.to_string())
                }
                e => bad_request(400, "invalid_write", e.to_string()),
            })?;
            Ok(self.sign(&Message::WriteAck(WriteAck {
                client_ref: batch.client_ref,
                token,
            })))
        })
    }

    fn head<'a>(
        &'a self,
        _collection: &'a CollectionKey,
        shard: ShardId,
    ) -> LocalFuture<'a, Result<Offset, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(Offset(self.head(shard.0)))
        })
    }

    fn log<'a>(
        &'a self,
        _collection: &'a CollectionKey,
        shard: ShardId,
        from: Offset,
        to: Offset,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            let logs = self.logs.borrow();
            let log = &logs[shard.0 as usize];
            let end = (to.0 as usize).min(log.len()).min(from.0 as usize + 3);
            let entries = log[(from.0 as usize).min(end)..end].to_vec();
            Ok(self.sign(&Message::LogRange(LogRange {
                collection: self.collection.clone(),
                shard,
                from,
                entries,
            })))
        })
    }

    fn snapshot<'a>(
        &'a self,
        _collection: &'a CollectionKey,
        shard: ShardId,
        piece: SnapshotPieces<'a>,
    ) -> LocalFuture<'a, Result<bool, SdkError>> {
        Box::pin(async move {
            self.reachable()?;
            let snapshot = self.snapshots.borrow()[shard.0 as usize].clone();
            let frame = match (snapshot, self.spoil.get()) {
                (None, _) => return Ok(false),
                (Some(_), Spoil::Garbage) => b"garbage".to_vec(),
                (Some(frame), _) => frame,
            };
            // In pieces of the size a network stream delivers.
            for bytes in frame.chunks(64 << 10) {
                piece(bytes)?;
            }
            Ok(true)
        })
    }
}
