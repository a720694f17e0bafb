//! The writer's storage port: where a collection's shard logs and snapshots
//! live.
//!
//! Core decides what to store and when; a host decides how. The regional
//! writer implements [`LogStore`] once over SQLite (and PostgreSQL), tests
//! and the simulation use [`MemoryLogStore`]. The trait is synchronous and
//! has no `Send` bound: SQLite is synchronous (the writer calls it from a
//! blocking task), and a bound here would be a promise for every host.
//!
//! The log is the source of truth: [`LogStore::append`] must be durable when
//! it returns, and must refuse entries that do not continue the shard's log
//! exactly (the `(shard, offset)` uniqueness that fences two writer
//! processes that both believe they own a shard). Snapshots only shorten
//! recovery and catch-up: losing one loses nothing.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::limits::Limits;
use crate::log::{LogEntry, Offset};
use crate::model::{CollectionKey, CollectionSchema};
use crate::shard::ShardId;
use crate::snapshot::Snapshot;
use crate::wire::LogRange;
use crate::writer::{RestoreError, WriterShard};

/// Durable storage of one collection's shard logs and latest snapshots.
pub trait LogStore {
    type Error: std::error::Error;

    /// Appends entries that continue `shard`'s log; durable on `Ok`.
    fn append(&mut self, shard: ShardId, entries: &[LogEntry]) -> Result<(), Self::Error>;

    /// Up to `max` entries of `shard` from offset `from` (fewer at the head).
    fn read(&self, shard: ShardId, from: Offset, max: usize) -> Result<Vec<LogEntry>, Self::Error>;

    /// Replaces the shard's latest snapshot.
    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Self::Error>;

    fn latest_snapshot(&self, shard: ShardId) -> Result<Option<Snapshot>, Self::Error>;
}

#[derive(Debug, Error)]
pub enum OpenError<E: std::error::Error> {
    #[error("reading the store: {0}")]
    Store(E),
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// Entries read per call while restoring.
const RESTORE_PAGE: usize = 1024;

impl WriterShard {
    /// Opens a shard from its store: the latest snapshot plus the log after
    /// it (the writer's start-up and crash recovery).
    pub fn open<S: LogStore>(
        store: &S,
        collection: CollectionKey,
        schema: CollectionSchema,
        shard: ShardId,
        limits: Limits,
    ) -> Result<Self, OpenError<S::Error>> {
        let snapshot = store.latest_snapshot(shard).map_err(OpenError::Store)?;
        let mut from = snapshot.as_ref().map_or(Offset(0), |s| s.offset);
        let mut entries = Vec::new();
        loop {
            let page = store
                .read(shard, from, RESTORE_PAGE)
                .map_err(OpenError::Store)?;
            let Some(last) = page.last() else { break };
            from = last.offset.next();
            entries.extend(page);
        }
        Ok(Self::restore(
            collection,
            schema,
            shard,
            limits,
            snapshot.as_ref(),
            &entries,
        )?)
    }
}

/// The log range a replica asked for: entries from `from`, at most `max`.
pub fn read_range<S: LogStore>(
    store: &S,
    collection: &CollectionKey,
    shard: ShardId,
    from: Offset,
    max: usize,
) -> Result<LogRange, S::Error> {
    Ok(LogRange {
        collection: collection.clone(),
        shard,
        from,
        entries: store.read(shard, from, max)?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryStoreError {
    #[error("shard {shard}: entry at offset {found} does not continue the log at {expected}")]
    NotNext {
        shard: ShardId,
        expected: Offset,
        found: Offset,
    },
}

/// A [`LogStore`] in memory, for tests and simulations.
#[derive(Clone, Debug, Default)]
pub struct MemoryLogStore {
    logs: BTreeMap<ShardId, Vec<LogEntry>>,
    snapshots: BTreeMap<ShardId, Snapshot>,
}

impl MemoryLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shard's whole log.
    pub fn log(&self, shard: ShardId) -> &[LogEntry] {
        self.logs.get(&shard).map_or(&[], Vec::as_slice)
    }
}

impl LogStore for MemoryLogStore {
    type Error = MemoryStoreError;

    fn append(&mut self, shard: ShardId, entries: &[LogEntry]) -> Result<(), Self::Error> {
        let log = self.logs.entry(shard).or_default();
        for (i, entry) in entries.iter().enumerate() {
            let expected = Offset((log.len() + i) as u64);
            if entry.offset != expected {
                return Err(MemoryStoreError::NotNext {
                    shard,
                    expected,
                    found: entry.offset,
                });
            }
        }
        log.extend_from_slice(entries);
        Ok(())
    }

    fn read(&self, shard: ShardId, from: Offset, max: usize) -> Result<Vec<LogEntry>, Self::Error> {
        let log = self.log(shard);
        let start = usize::try_from(from.0).unwrap_or(usize::MAX).min(log.len());
        let end = start.saturating_add(max).min(log.len());
        Ok(log[start..end].to_vec())
    }

    fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Self::Error> {
        self.snapshots.insert(snapshot.shard, snapshot.clone());
        Ok(())
    }

    fn latest_snapshot(&self, shard: ShardId) -> Result<Option<Snapshot>, Self::Error> {
        Ok(self.snapshots.get(&shard).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActorId;
    use crate::fields::JsonEdit;
    use crate::model::{CollectionName, Fields, Namespace, RecordId};
    use crate::shard::ShardCount;
    use crate::vector::Metric;
    use crate::writer::{Edit, WriteBatch, WriteOp};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key() -> CollectionKey {
        CollectionKey::new(
            Namespace::new("acme").unwrap(),
            CollectionName::new("notes").unwrap(),
        )
    }

    fn write(writer: &mut WriterShard, store: &mut MemoryLogStore, n: usize) {
        let mut fields = Fields::new();
        fields.insert("n".into(), n.into());
        let batch = WriteBatch {
            collection: key(),
            client_ref: 0,
            ops: vec![WriteOp {
                id: RecordId::new(format!("r{}", n % 3), &Limits::default()).unwrap(),
                edit: Edit::Json(JsonEdit::Put(fields)),
                vector: None,
            }],
        };
        let out = writer.apply(&batch, &ActorId::from([1; 16]), 0).unwrap();
        store.append(ShardId(0), &out.entries).unwrap();
    }

    #[test]
    fn a_writer_reopens_from_its_store() {
        let limits = Limits::default();
        let schema =
            CollectionSchema::new(2, Metric::Dot, ShardCount::new(1).unwrap(), &limits).unwrap();
        let mut store = MemoryLogStore::new();
        let mut writer = WriterShard::new(key(), schema, ShardId(0), limits.clone());
        for n in 0..5 {
            write(&mut writer, &mut store, n);
        }
        store.put_snapshot(&writer.snapshot(None)).unwrap();
        for n in 5..1_100 {
            write(&mut writer, &mut store, n);
        }
        let reopened = WriterShard::open(&store, key(), schema, ShardId(0), limits).unwrap();
        assert_eq!(reopened.head(), Offset(1_100));
        assert_eq!(reopened.snapshot(None), writer.snapshot(None));

        let range = read_range(&store, &key(), ShardId(0), Offset(1_098), 10).unwrap();
        assert_eq!(range.to(), Offset(1_100));
        // A second writer that missed the last entry cannot append behind it.
        let stale = store.log(ShardId(0))[5].clone();
        assert_eq!(
            store.append(ShardId(0), &[stale]),
            Err(MemoryStoreError::NotNext {
                shard: ShardId(0),
                expected: Offset(1_100),
                found: Offset(5)
            })
        );
    }
}
