//! The SDK under node (`wasm-pack test --node`).

#![cfg(target_arch = "wasm32")]

mod common;
