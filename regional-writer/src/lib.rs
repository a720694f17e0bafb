//! Tidemark's regional writer: the authoritative, sharded store.
//!
//! The binary (`src/main.rs`) only parses its configuration and calls
//! [`server::run`]; everything else is a library so tests can run the server
//! on port 0, or drive [`server::app`] without a socket.
//!
//! # Layout
//!
//! - [`auth`]: the bearer-token extractor (rules in `tidemark_core::auth`).
//! - [`config`]: command line and environment configuration.
//! - [`error`]: [`error::AppError`], the one mapping of errors to HTTP responses.
//! - [`keys`]: the writer's Ed25519 keys (signing, token issuer).
//! - [`server`]: the axum router and the serve loop with graceful shutdown.
//! - [`store`]: the storage port, the SQLite store and group commit.

pub mod auth;
pub mod config;
pub mod error;
pub mod keys;
pub mod server;
pub mod store;
