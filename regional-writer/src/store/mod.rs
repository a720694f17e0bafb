//! The writer's storage port: everything the writer persists, behind one
//! small trait, so that the embedded SQLite store and (for scale-out) a
//! PostgreSQL store are interchangeable.
//!
//! Records are not stored apart from the log: the writer rebuilds them from
//! the latest snapshot plus the log after it, so the log stays the one truth.
//!
//! The port is deliberately narrow and byte-oriented: the rules (offsets,
//! CRDT merges, validation) live in `tidemark-core`; a store only has to make
//! a [`WriteSet`] durable atomically and serve back what it holds. Log rows
//! are keyed by `(namespace, collection, shard, offset)` and that key is
//! unique, which is the fencing check when several writers share a database:
//! a writer that lost a shard's ownership fails on its next append instead of
//! forking the log.
//!
//! # Layout
//!
//! - `mod.rs`: the [`Store`] trait and its row types.
//! - `sqlite.rs`: the embedded default (bundled SQLite, WAL, `synchronous = FULL`).
//! - `group_commit.rs`: one committer thread that makes concurrent writers
//!   share a transaction and its fsync.

mod group_commit;
mod sqlite;

pub use group_commit::{CommitError, Committer};
pub use sqlite::SqliteStore;

use thiserror::Error;

/// A shard of one collection of one namespace: the unit that owns a log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub namespace: String,
    pub collection: String,
    pub shard: u32,
}

/// A collection's definition as stored: core's schema, encoded by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionRow {
    pub namespace: String,
    pub name: String,
    /// The encoded schema (JSON), opaque to the store.
    pub schema: Vec<u8>,
}

/// One log entry at `offset` of a shard's log, encoded by core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub shard: ShardKey,
    pub offset: u64,
    pub entry: Vec<u8>,
}

/// A snapshot of a shard at `offset`, encoded by core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    pub shard: ShardKey,
    pub offset: u64,
    pub body: Vec<u8>,
}

/// Everything one commit makes durable, all or nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteSet {
    pub collections: Vec<CollectionRow>,
    pub log: Vec<LogRow>,
    pub snapshots: Vec<SnapshotRow>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.log.is_empty() && self.snapshots.is_empty()
    }

    /// Appends `other`, keeping the order of log rows (the commit order).
    pub fn extend(&mut self, other: WriteSet) {
        self.collections.extend(other.collections);
        self.log.extend(other.log);
        self.snapshots.extend(other.snapshots);
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Backend(String),
    /// The `(shard, offset)` of a log row already exists: another writer owns
    /// this shard, or this writer's view of the log is stale.
    #[error("log offset {offset} of {shard:?} is already taken")]
    OffsetTaken { shard: ShardKey, offset: u64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The writer's storage port.
///
/// `commit` is the only mutation and is atomic and durable when it returns
/// `Ok`: the writer acknowledges a write only after its commit returned.
/// Reads see only committed data.
pub trait Store: Send + 'static {
    /// Makes `set` durable atomically.
    fn commit(&mut self, set: &WriteSet) -> Result<(), StoreError>;

    fn collections(&self) -> Result<Vec<CollectionRow>, StoreError>;

    /// The next offset to append at: one past the last entry (0 when empty).
    fn head(&self, shard: &ShardKey) -> Result<u64, StoreError>;

    /// Entries with `from <= offset < to`, in order, stopping before the
    /// total entry size would pass `max_bytes` (always at least one entry
    /// when any is in range, so a reader always makes progress).
    fn log_range(
        &self,
        shard: &ShardKey,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogRow>, StoreError>;

    fn latest_snapshot(&self, shard: &ShardKey) -> Result<Option<SnapshotRow>, StoreError>;
}
