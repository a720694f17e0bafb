//! The replicas this isolate holds, per (namespace, collection, shard), in
//! isolate memory: they live as long as the isolate and are shared by every
//! request it serves.
//!
//! A wasm isolate runs one thing at a time, so a `RefCell` in a
//! thread-local is the whole synchronization story; the one rule is that no
//! borrow is held across an `await` (requests interleave there). Every
//! access therefore goes through [`with`], which takes a closure.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use tidemark_core::log::{Offset, Tidemark};
use tidemark_core::model::{CollectionKey, CollectionSchema};
use tidemark_core::shard::ShardId;

use crate::edge_shard::EdgeShard;

pub struct HeldCollection {
    pub schema: CollectionSchema,
    /// One slot per shard; `None` until a read needs that shard.
    pub shards: Vec<Option<EdgeShard>>,
}

impl HeldCollection {
    pub fn new(schema: CollectionSchema) -> Self {
        Self {
            schema,
            shards: (0..schema.shard_count.get()).map(|_| None).collect(),
        }
    }

    pub fn shard(&self, shard: ShardId) -> Option<&EdgeShard> {
        self.shards.get(shard.0 as usize).and_then(Option::as_ref)
    }

    pub fn shard_mut(&mut self, shard: ShardId) -> Option<&mut EdgeShard> {
        self.shards
            .get_mut(shard.0 as usize)
            .and_then(Option::as_mut)
    }

    /// The tidemark of `shards` (those loaded).
    pub fn tidemark_of(&self, shards: &[ShardId]) -> Tidemark {
        Tidemark {
            shards: shards
                .iter()
                .filter_map(|&s| self.shard(s).map(|held| (s, held.tidemark())))
                .collect(),
        }
    }
}

/// A caller's token kept to fetch on behalf of a namespace when no request
/// is there to lend one (an invalidation). Only a token that passed the
/// read check for that namespace is kept, and only until it expires.
struct LentToken {
    token: String,
    expires_at: u64,
}

#[derive(Default)]
pub struct Holder {
    pub collections: HashMap<CollectionKey, HeldCollection>,
    tokens: HashMap<String, LentToken>,
    /// Shards a request is bootstrapping now: one load at a time per shard.
    loading: HashSet<(CollectionKey, ShardId)>,
}

impl Holder {
    /// Heap bytes of every loaded shard, against `MEMORY_BUDGET_MB`.
    pub fn memory_bytes(&self) -> usize {
        self.collections
            .values()
            .flat_map(|c| c.shards.iter().flatten())
            .map(EdgeShard::memory_bytes)
            .sum()
    }

    pub fn shard_count_loaded(&self) -> usize {
        self.collections
            .values()
            .map(|c| c.shards.iter().flatten().count())
            .sum()
    }

    pub fn remember_token(&mut self, namespace: &str, token: &str, expires_at: u64) {
        let keep = self
            .tokens
            .get(namespace)
            .is_none_or(|held| held.expires_at <= expires_at);
        if keep {
            self.tokens.insert(
                namespace.to_string(),
                LentToken {
                    token: token.to_string(),
                    expires_at,
                },
            );
        }
    }

    pub fn token_for(&self, namespace: &str, now_secs: u64) -> Option<String> {
        self.tokens
            .get(namespace)
            .filter(|held| held.expires_at > now_secs)
            .map(|held| held.token.clone())
    }

    /// Records that the writer's head of a held shard is at least `head`.
    pub fn announce(&mut self, key: &CollectionKey, shard: ShardId, head: Offset) -> bool {
        match self
            .collections
            .get_mut(key)
            .and_then(|c| c.shard_mut(shard))
        {
            Some(held) => {
                held.announced_head = held.announced_head.max(head);
                true
            }
            None => false,
        }
    }
}

/// A shard's bootstrap in progress, from [`Loading::begin`] until dropped
/// (also when the request that runs it is cancelled).
pub struct Loading {
    key: CollectionKey,
    shard: ShardId,
}

impl Loading {
    /// Claims the shard's bootstrap; `None` if another request runs it.
    pub fn begin(key: &CollectionKey, shard: ShardId) -> Option<Self> {
        with(|h| h.loading.insert((key.clone(), shard))).then(|| Self {
            key: key.clone(),
            shard,
        })
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        let entry = (self.key.clone(), self.shard);
        with(|h| h.loading.remove(&entry));
    }
}

thread_local! {
    static HOLDER: RefCell<Holder> = RefCell::new(Holder::default());
}

/// Runs `f` with the isolate's holder. `f` must not re-enter `with`.
pub fn with<R>(f: impl FnOnce(&mut Holder) -> R) -> R {
    HOLDER.with(|holder| f(&mut holder.borrow_mut()))
}
