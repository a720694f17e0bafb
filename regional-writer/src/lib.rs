//! Tidemark's regional writer: the authoritative, sharded store.
//!
//! The binary (`src/main.rs`) only parses its configuration and calls
//! [`server::run`]; everything else is a library so tests can run the server
//! on port 0, or drive [`server::app`] without a socket.
//!
//! # Layout
//!
//! - [`config`]: command line and environment configuration.
//! - [`server`]: the axum router and the serve loop with graceful shutdown.
//! - [`store`]: the storage port, the SQLite store and group commit.

pub mod config;
pub mod server;
pub mod store;
