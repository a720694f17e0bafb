//! Sans-IO core of Tidemark, the edge-replicated document + vector store.
//!
//! Every rule of the system lives here, and nothing here does I/O, reads a
//! clock or draws entropy: time, seeds and ids are parameters. The regional
//! writer (native), the edge worker (workerd) and the browser SDK (wasm) are
//! thin adapters over this crate, and the simulation tests drive it directly.
//!
//! # Layout
//!
//! The data model and its bounds:
//!
//! - [`model`]: namespace, collection and record names, collection schema.
//! - [`limits`]: every size limit, shared by decoders, writer and outbox.
//! - [`shard`]: the stable, documented routing of a record to its shard.
//!
//! Records as CRDTs:
//!
//! - [`fields`]: how JSON fields and the deleted flag live in a record's
//!   Automerge document; JSON edits (put / patch / delete); materializing.
//! - [`record`]: one record's document: idempotent, causally ordered
//!   application of changes with a bounded queue for missing dependencies.
//!
//! The log and the wire:
//!
//! - [`log`]: log entries, offsets, tidemarks and consistency tokens.
//! - [`snapshot`]: a shard's state at an offset, with skippable sections.
//! - [`snapshot_stream`]: reading a signed snapshot chunk by chunk, for
//!   replicas that must not hold the frame and its decoding at once.
//! - [`wire`]: the versioned, signed envelope and every message type.
//! - `codec` (private): how byte strings, vectors and JSON go into postcard.
//!
//! Access:
//!
//! - [`auth`]: access tokens (EdDSA JWTs): namespace, scopes, expiry.
//!
//! The state machines (sans-IO: bytes and values in, bytes and values out):
//!
//! - [`writer`]: a writer's shard: batches in, log entries and tokens out.
//! - [`log_store`]: the writer's storage port (logs and snapshots), with an
//!   in-memory version; opening a shard from it.
//! - [`replica`]: edge and browser replicas following the log.
//! - [`outbox`]: the browser's persisted queue of offline writes.
//!
//! Search:
//!
//! - [`vector`]: vector search; [`vector::kernels`] holds the distance
//!   kernels (scalar reference, `wasm32` SIMD128, `x86_64` AVX2+FMA).

pub mod auth;
mod codec;
pub mod fields;
pub mod limits;
pub mod log;
pub mod log_store;
pub mod model;
pub mod outbox;
pub mod record;
pub mod replica;
pub mod shard;
pub mod snapshot;
pub mod snapshot_stream;
pub mod vector;
pub mod wire;
pub mod writer;

/// Automerge types that appear in core's API (actor ids, change hashes), so
/// hosts use the exact version core was built with.
pub use automerge::{ActorId, ChangeHash};
/// Ed25519 key types used to sign and verify envelopes.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The version of this crate, reported by every host (`/healthz`, SDK `version()`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
