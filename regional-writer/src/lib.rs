//! Tidemark's regional writer: the authoritative, sharded store.
//!
//! The binary (`src/main.rs`) only parses its configuration and calls
//! [`server::run`]; everything else is a library so tests can run the server
//! on port 0, or drive [`server::app`] without a socket.
//!
//! # Layout
//!
//! - [`api`]: the HTTP handlers, thin adapters over the engine.
//! - [`auth`]: the bearer-token extractor (rules in `tidemark_core::auth`).
//! - [`config`]: command line and environment configuration.
//! - [`engine`]: collections and shards (core's writer state + index) over the store.
//! - [`error`]: [`error::AppError`], the one mapping of errors to HTTP responses.
//! - [`keys`]: the writer's Ed25519 keys (signing, token issuer).
//! - [`metrics`]: Prometheus counters.
//! - [`server`]: the axum router and the serve loop with graceful shutdown.
//! - [`store`]: the storage port, the SQLite store and group commit.

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod server;
pub mod store;
