//! SDK checks shared by the node and the browser suites (included by both).

use tidemark_browser_sdk::{kernels, shard_for_record, version};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn routes_like_every_other_platform() {
    // The same golden value as core's native tests.
    assert_eq!(shard_for_record("acme", "notes", "note-1", 16).unwrap(), 5);
}

#[wasm_bindgen_test]
fn rejects_bad_shard_counts() {
    assert!(shard_for_record("acme", "notes", "note-1", 3).is_err());
    assert!(shard_for_record("acme", "notes", "note-1", 0).is_err());
}

#[wasm_bindgen_test]
fn reports_simd_kernels_and_version() {
    assert_eq!(kernels(), "wasm32-simd128");
    assert_eq!(version(), env!("CARGO_PKG_VERSION"));
}
