//! Sans-IO core of Tidemark, the edge-replicated document + vector store.
//!
//! Every rule of the system lives here, and nothing here does I/O, reads a
//! clock or draws entropy: time, seeds and ids are parameters. The regional
//! writer (native), the edge worker (workerd) and the browser SDK (wasm) are
//! thin adapters over this crate, and the simulation tests drive it directly.
//!
//! # Layout
//!
//! - [`auth`]: access tokens (EdDSA JWTs): namespace, scopes, expiry.
//! - [`shard`]: the stable, documented routing of a record to its shard.
//! - [`vector`]: vector search; [`vector::kernels`] holds the distance
//!   kernels (scalar reference, `wasm32` SIMD128, `x86_64` AVX2+FMA).

pub mod auth;
pub mod shard;
pub mod vector;

/// The version of this crate, reported by every host (`/healthz`, SDK `version()`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
