//! The storage port: where a client keeps its replica and outbox.
//!
//! A store is a small key → bytes map with one property that matters: a
//! batch of puts is atomic. The outbox and the replica shards it settles
//! against are written in one batch (core's outbox rule: persist them
//! together), and the outbox is written before a batch is sent.
//!
//! Two implementations: [`MemoryStore`] (node, tests, `persist: "memory"`)
//! and [`crate::idb_store::IdbStore`] (browsers, `persist: "indexeddb"`).
//! The futures are `!Send`: the SDK runs on one JS thread, and that is
//! decided here, once, for every port.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::error::SdkError;

/// A boxed future on the JS thread.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One write of a batch: `None` deletes the key.
pub type StoreWrite = (String, Option<Vec<u8>>);

pub trait Store {
    fn get<'a>(&'a self, key: &'a str) -> LocalFuture<'a, Result<Option<Vec<u8>>, SdkError>>;

    /// Applies every write or none.
    fn write_all(&self, writes: Vec<StoreWrite>) -> LocalFuture<'_, Result<(), SdkError>>;
}

/// Keys of one client's data. Collections are separate key ranges.
pub mod keys {
    pub const META: &str = "meta";

    pub fn schema(collection: &str) -> String {
        format!("collection/{collection}/schema")
    }

    pub fn outbox(collection: &str) -> String {
        format!("collection/{collection}/outbox")
    }

    pub fn shard(collection: &str, shard: u32) -> String {
        format!("collection/{collection}/shard/{shard}")
    }

    pub fn segment(collection: &str, shard: u32) -> String {
        format!("collection/{collection}/segment/{shard}")
    }
}

/// A store in memory. Clones share the same map, so a test can "reopen" a
/// client on the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    map: Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> LocalFuture<'a, Result<Option<Vec<u8>>, SdkError>> {
        let value = self.map.borrow().get(key).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn write_all(&self, writes: Vec<StoreWrite>) -> LocalFuture<'_, Result<(), SdkError>> {
        let mut map = self.map.borrow_mut();
        for (key, value) in writes {
            match value {
                Some(bytes) => map.insert(key, bytes),
                None => map.remove(&key),
            };
        }
        Box::pin(async { Ok(()) })
    }
}
