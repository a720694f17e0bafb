//! The search module that `cargo xtask bench search` runs in node: core's
//! sealed segment, loaded from the bytes the native sealer wrote, behind a
//! few wasm-bindgen exports. Adapters only: every rule is in core.
//!
//! # Layout
//!
//! - `wasm.rs` (wasm32 only): the exports — a streaming loader, the segment's
//!   searches and scans, an exact fresh segment, and a streaming read of the
//!   vector bytes that measures the memory-bandwidth bound.
//! - `bin/seal.rs` (native): seals the dataset with a seed, writes the
//!   segment's bytes and the native results the wasm results must equal.
//! - [`dataset`]: reading the shared dataset's files.

pub mod dataset;
#[cfg(target_arch = "wasm32")]
mod wasm;
