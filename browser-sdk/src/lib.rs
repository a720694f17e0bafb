//! Tidemark's browser SDK, published to npm as `tidemark`.
//!
//! A thin wasm-bindgen adapter over `tidemark-core`: exported functions
//! convert their arguments, call core, and map core's errors to JS errors.
//! The crate is empty on non-wasm targets.
//!
//! # Layout
//!
//! - `lib.rs`: module start-up and the exported functions.

#![cfg(target_arch = "wasm32")]

use tidemark_core::shard::{ShardCount, shard_for};
use wasm_bindgen::prelude::*;

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
