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
//! - [`http_client`]: the outbound HTTP/1 client (webhooks, import).
//! - [`import`]: `tidemark-writer import`, bulk loading through the API.
//! - [`keys`]: the writer's Ed25519 keys (signing, token issuer).
//! - [`metrics`]: Prometheus counters.
//! - [`server`]: the axum router and the serve loop with graceful shutdown.
//! - [`store`]: the storage port, the SQLite store and group commit.
//! - [`webhooks`]: signed invalidations pushed to edges, with backoff.

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod error;
pub mod http_client;
pub mod import;
pub mod keys;
pub mod metrics;
pub mod sealer;
pub mod server;
pub mod snapshot_cache;
pub mod store;
pub mod webhooks;
