//! Tidemark's browser SDK, published to npm as `tidemark`.
//!
//! A thin wasm-bindgen adapter over `tidemark-core`: a local replica that
//! keeps working offline (core's merging [`tidemark_core::replica::Replica`]
//! and [`tidemark_core::outbox::Outbox`]), persisted in IndexedDB, synced
//! with the writer by a loop that verifies everything it receives, and
//! searched locally with core's SIMD index — pending writes included.
//! The crate is empty on non-wasm targets.
//!
//! # Layout
//!
//! - `lib.rs`: module start-up and small exported functions.
//! - [`api`]: the JS classes `Tidemark` and `Collection`, TypeScript types,
//!   the background sync loop and online/offline handling.
//! - [`client`]: one namespace's client: collections, status, events.
//! - [`local`]: one collection in memory: replica, outbox, local index.
//! - [`sync`]: one sync pass (push, pull, verify, settle, persist) and the
//!   retry schedule.
//! - [`transport`]: the transport port and its `fetch` implementation.
//! - [`store`]: the storage port and the memory store;
//!   [`idb_store`]: the IndexedDB store.
//! - [`convert`]: JSON and vectors across the JS boundary.
//! - [`error`]: errors and their one translation to JS.

#![cfg(target_arch = "wasm32")]

pub mod api;
pub mod client;
pub mod convert;
pub mod error;
pub mod idb_store;
pub mod local;
pub mod store;
pub mod sync;
pub mod transport;

use tidemark_core::shard::{ShardCount, shard_for};
use wasm_bindgen::prelude::*;

pub use api::{Collection, Tidemark};

#[wasm_bindgen(start)]
fn start() {
    #[cfg(feature = "console_error_panic_hook")]
    console_error_panic_hook::set_once();
}

/// The SDK's version.
#[wasm_bindgen]
pub fn version() -> String {
    tidemark_core::VERSION.to_string()
}

/// The distance kernels in use (`"wasm32-simd128"` in every supported runtime).
#[wasm_bindgen]
pub fn kernels() -> String {
    tidemark_core::vector::kernels::implementation().to_string()
}

/// The shard that owns a record; the same on every platform, forever.
#[wasm_bindgen(js_name = shardFor)]
pub fn shard_for_record(
    namespace: &str,
    collection: &str,
    id: &str,
    shard_count: u32,
) -> Result<u32, JsError> {
    let count = ShardCount::new(shard_count)?;
    Ok(shard_for(namespace, collection, id, count).0)
}
