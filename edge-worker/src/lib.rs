//! Tidemark's edge replica, a Cloudflare Worker (workers-rs).
//!
//! A thin adapter: replicas of the writer's shards held in isolate memory
//! (core's read-only [`tidemark_core::replica::ReplicaShard`] and
//! [`tidemark_core::vector::ShardIndex`]), bootstrapped from the writer's
//! signed snapshots and caught up from its signed log, answering the read
//! half of docs/api.md and forwarding writes. Every rule (tokens, wire
//! format, replica state, search) is core's. The crate is empty on non-wasm
//! targets.
//!
//! # Layout
//!
//! - `lib.rs`: the fetch event and [`router`].
//! - `cors`: cross-origin access for apps calling from the browser.
//! - `config`: the worker's vars (writer URL and keys, staleness, budget).
//! - `error`: the one mapping of errors to JSON answers and status codes.
//! - `request`: token checks, path names, consistency tokens, tidemark headers.
//! - `holder`: the replicas held in isolate memory and the memory budget's account.
//! - `edge_shard`: one held shard: replica, index, freshness bookkeeping.
//! - `upstream`: the writer's HTTP API as the edge calls it.
//! - `catch_up`: bootstrap, catch-up, staleness and consistency-token waits.
//! - `reads`: collection, record, search and head answers.
//! - `passthrough`: log ranges (cached when immutable) and snapshots for browsers.
//! - `writes`: forwarding writes to the writer.
//! - `invalidate`: the writer's signed invalidation webhook.

#![cfg(target_arch = "wasm32")]

mod catch_up;
mod config;
mod cors;
mod edge_shard;
mod error;
mod holder;
mod invalidate;
mod passthrough;
mod reads;
mod request;
mod upstream;
mod writes;

use std::future::Future;

use serde_json::json;
use worker::{Context, Env, Request, Response, Result, RouteContext, Router, event};

use crate::error::EdgeError;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    #[cfg(feature = "console_error_panic_hook")]
    console_error_panic_hook::set_once();
    if let Some(preflight) = cors::preflight(&req)? {
        return Ok(preflight);
    }
    let response = router().run(req, env).await?;
    cors::expose(json_errors(response))
}

/// Handlers return `EdgeError`s; this turns them into answers, so the
/// router never sees an `Err` (which workerd would make an opaque 500).
async fn answer(
    handler: impl Future<Output = std::result::Result<Response, EdgeError>>,
) -> Result<Response> {
    Ok(handler.await.unwrap_or_else(EdgeError::into_response))
}

/// The router's own refusals (a known path with another method) are plain
/// text; the API promises JSON errors everywhere.
fn json_errors(response: Response) -> Response {
    if response.status_code() == 405 {
        return EdgeError::new(
            405,
            "method_not_allowed",
            "this path does not take that method",
        )
        .into_response();
    }
    response
}

const COLLECTION: &str = "/v1/ns/:ns/collections/:collection";

/// Every route of the edge.
pub fn router() -> Router<'static, ()> {
    let at = |suffix: &str| format!("{COLLECTION}{suffix}");
    Router::new()
        .get("/healthz", healthz)
        .post_async("/v1/invalidate", |req, ctx| {
            answer(invalidate::invalidate(req, ctx))
        })
        .get_async(COLLECTION, |req, ctx| answer(reads::collection(req, ctx)))
        .put_async(COLLECTION, |req, ctx| {
            answer(writes::create_collection(req, ctx))
        })
        .post_async(&at("/records"), |req, ctx| {
            answer(writes::records(req, ctx))
        })
        .post_async(&at("/batch"), |req, ctx| answer(writes::batch(req, ctx)))
        .get_async(&at("/records/:id"), |req, ctx| {
            answer(reads::record(req, ctx))
        })
        .post_async(&at("/search"), |req, ctx| answer(reads::search(req, ctx)))
        .get_async(&at("/shards/:shard/head"), |req, ctx| {
            answer(reads::head(req, ctx))
        })
        .get_async(&at("/shards/:shard/log"), |req, ctx| {
            answer(passthrough::log(req, ctx))
        })
        .get_async(&at("/shards/:shard/snapshot"), |req, ctx| {
            answer(passthrough::snapshot(req, ctx))
        })
        .get("/v1/edge/memory", memory)
        .or_else_any_method("/*path", not_found)
}

fn healthz(_req: Request, _ctx: RouteContext<()>) -> Result<Response> {
    Response::from_json(&json!({
        "status": "ok",
        "service": "tidemark-edge",
        "version": tidemark_core::VERSION,
        "kernels": tidemark_core::vector::kernels::implementation(),
    }))
}

/// What the replicas cost, for operators and the memory benchmark.
fn memory(_req: Request, _ctx: RouteContext<()>) -> Result<Response> {
    use worker::wasm_bindgen::JsCast;
    let (bytes, shards) = holder::with(|h| (h.memory_bytes(), h.shard_count_loaded()));
    // The isolate's whole wasm heap, which is what the 128 MB limit sees.
    let wasm = worker::wasm_bindgen::memory()
        .dyn_into::<worker::js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .unchecked_into::<worker::js_sys::ArrayBuffer>()
                .byte_length()
        })
        .unwrap_or(0);
    Response::from_json(&json!({
        "replica_bytes": bytes,
        "shards_loaded": shards,
        "wasm_memory_bytes": wasm,
    }))
}

fn not_found(req: Request, _ctx: RouteContext<()>) -> Result<Response> {
    Ok(EdgeError::not_found(format!("no route for {}", req.path())).into_response())
}
