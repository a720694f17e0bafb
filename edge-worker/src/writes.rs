//! Writes are forwarded to the writer with the caller's token; the edge
//! applies nothing itself. It checks the scope first (so a token without
//! `write` is refused at the edge, and the writer checks again), and reads
//! the consistency token of a successful JSON write so that its own next
//! read of those shards catches up at once.

use serde::Deserialize;
use tidemark_core::auth::Scope;
use tidemark_core::limits::Limits;
use tidemark_core::log::ConsistencyToken;
use worker::{Method, Request, Response, RouteContext};

use crate::error::EdgeError;
use crate::holder;
use crate::request::{self, authorize};
use crate::upstream::Upstream;

#[derive(Deserialize)]
struct WriteAnswer {
    token: ConsistencyToken,
}

async fn forward(
    mut req: Request,
    ctx: RouteContext<()>,
    scope: Scope,
    method: Method,
    suffix: &str,
) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, scope)?;
    let limit = Limits::default().max_frame_bytes;
    let body = request::body(&mut req, limit).await?;
    let content_type = req.headers().get("content-type")?;
    let upstream = Upstream {
        base: &caller.config.writer_url,
        token: &caller.token,
    };
    let path = format!("{}{suffix}", crate::upstream::collection_path(&caller.key));
    let answer = upstream
        .send(method, &path, content_type.as_deref(), Some(&body))
        .await?;
    if (200..300).contains(&answer.status)
        && let Ok(written) = serde_json::from_slice::<WriteAnswer>(&answer.body)
    {
        holder::with(|h| {
            for (&shard, &offset) in &written.token.shards {
                h.announce(&caller.key, shard, offset);
            }
        });
    }
    let mut response = Response::from_bytes(answer.body)?.with_status(answer.status);
    if let Some(content_type) = answer.content_type {
        response.headers_mut().set("content-type", &content_type)?;
    }
    Ok(response)
}

pub async fn records(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    forward(req, ctx, Scope::Write, Method::Post, "/records").await
}

pub async fn batch(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    forward(req, ctx, Scope::Write, Method::Post, "/batch").await
}

pub async fn create_collection(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    forward(req, ctx, Scope::Admin, Method::Put, "").await
}
