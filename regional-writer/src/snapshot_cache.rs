//! The latest signed snapshot of recently used shards, kept in memory.
//!
//! Every new replica (an edge isolate, a browser) starts from a shard's
//! snapshot, and reading one back from SQLite walks thousands of overflow
//! pages: about 12 ms for a shard of 10k 384-d records, paid again by every
//! bootstrap, while the bytes never change until the next seal. The cache
//! holds the bodies the engine persists or reads, bounded by bytes, the least
//! recently used leaving first. It only ever moves a shard's entry forward
//! (a later offset), as the store does.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::store::ShardKey;

pub struct SnapshotCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ShardKey, Entry>,
    bytes: usize,
    /// Counts uses: an entry's `used` is the count at its last use.
    clock: u64,
}

struct Entry {
    offset: u64,
    body: Bytes,
    used: u64,
}

impl SnapshotCache {
    /// A cache of at most `budget` bytes of bodies (0 keeps none).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The shard's latest snapshot and its offset, if held.
    pub fn get(&self, shard: &ShardKey) -> Option<(Bytes, u64)> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(shard)?;
        entry.used = now;
        Some((entry.body.clone(), entry.offset))
    }

    /// Holds `body` as the shard's snapshot at `offset`, unless one at a
    /// later offset is held or it alone exceeds the budget.
    pub fn put(&self, shard: &ShardKey, offset: u64, body: Bytes) {
        if body.len() > self.budget {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.get(shard).is_some_and(|e| e.offset > offset) {
            return;
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.bytes += body.len();
        let entry = Entry { offset, body, used };
        if let Some(old) = inner.entries.insert(shard.clone(), entry) {
            inner.bytes -= old.body.len();
        }
        while inner.bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.body.len();
            }
        }
    }

    /// Bytes of bodies held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panicking holder could break
        // halfway that matters more than serving: take it back.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(n: u32) -> ShardKey {
        ShardKey {
            namespace: "ns".into(),
            collection: "c".into(),
            shard: n,
        }
    }

    fn body(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn keeps_the_latest_offset_per_shard() {
        let cache = SnapshotCache::new(100);
        cache.put(&shard(0), 5, body(10));
        cache.put(&shard(0), 3, body(20));
        assert_eq!(
            cache.get(&shard(0)).map(|(b, o)| (b.len(), o)),
            Some((10, 5))
        );
        cache.put(&shard(0), 9, body(30));
        assert_eq!(
            cache.get(&shard(0)).map(|(b, o)| (b.len(), o)),
            Some((30, 9))
        );
        assert_eq!(cache.bytes(), 30);
        assert!(cache.get(&shard(1)).is_none());
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_budget() {
        let cache = SnapshotCache::new(100);
        cache.put(&shard(0), 1, body(40));
        cache.put(&shard(1), 1, body(40));
        // Shard 0 is used after shard 1 was put: shard 1 is the older.
        assert!(cache.get(&shard(0)).is_some());
        cache.put(&shard(2), 1, body(40));
        assert!(cache.get(&shard(1)).is_none());
        assert!(cache.get(&shard(0)).is_some() && cache.get(&shard(2)).is_some());
        assert_eq!(cache.bytes(), 80);
        // A body larger than the whole budget is not held, and evicts nothing.
        cache.put(&shard(3), 1, body(101));
        assert!(cache.get(&shard(3)).is_none());
        assert_eq!(cache.bytes(), 80);
    }
}
