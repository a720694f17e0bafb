//! Tidemark's edge replica, a Cloudflare Worker (workers-rs).
//!
//! A thin adapter: requests are routed here, every rule lives in
//! `tidemark-core`. The crate is empty on non-wasm targets.
//!
//! # Layout
//!
//! - `lib.rs`: the fetch event and [`router`].

#![cfg(target_arch = "wasm32")]

use serde_json::json;
use worker::{Context, Env, Request, Response, Result, RouteContext, Router, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    #[cfg(feature = "console_error_panic_hook")]
    console_error_panic_hook::set_once();
    router().run(req, env).await
}

/// Every route of the edge.
pub fn router() -> Router<'static, ()> {
    Router::new()
        .get("/healthz", healthz)
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

fn not_found(req: Request, _ctx: RouteContext<()>) -> Result<Response> {
    let body = json!({ "error": { "code": "not_found", "message": format!("no route for {}", req.path()) } });
    Ok(Response::from_json(&body)?.with_status(404))
}
