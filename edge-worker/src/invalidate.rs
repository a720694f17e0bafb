//! `POST /v1/invalidate`: the writer's webhook. The body is the writer's
//! signed `Invalidation` envelope; anything unsigned, signed by another key
//! or of another type is refused. A verified invalidation for a held shard
//! catches that shard up at once, with a read token a caller of that
//! namespace lent earlier (a replica exists only because such a caller
//! read it); without one, the next read catches up.

use serde_json::json;
use tidemark_core::limits::Limits;
use tidemark_core::wire::{self, DecodeError, Message};
use worker::{Request, Response, RouteContext};

use crate::catch_up::{Fresh, now_ms};
use crate::config::Config;
use crate::error::EdgeError;
use crate::holder;
use crate::request;
use crate::upstream::Upstream;

/// An invalidation is a few dozen bytes.
const MAX_BODY: usize = 4096;

pub async fn invalidate(mut req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let config = Config::from_env(&ctx.env)?;
    let body = request::body(&mut req, MAX_BODY).await?;
    let message =
        wire::decode_verified(&body, &config.writer_key, &Limits::default()).map_err(|err| {
            match err {
                DecodeError::Unsigned | DecodeError::BadSignature => {
                    EdgeError::new(401, "unauthenticated", format!("the invalidation: {err}"))
                }
                other => EdgeError::new(
                    400,
                    "invalid_envelope",
                    format!("the invalidation: {other}"),
                ),
            }
        })?;
    let Message::Invalidation(invalidation) = message else {
        return Err(EdgeError::new(
            400,
            "invalid_envelope",
            "the body is a signed frame but not an invalidation",
        ));
    };
    let key = invalidation.collection;
    let shard = invalidation.shard;
    if !holder::with(|h| h.announce(&key, shard, invalidation.head)) {
        // Nothing held: nothing to catch up; the first read bootstraps.
        let mut response = Response::from_json(&json!({ "held": false }))?.with_status(202);
        request::set_tidemark(&mut response, &Default::default())?;
        return Ok(response);
    }
    let now_secs = (now_ms() / 1000.0) as u64;
    let schema = holder::with(|h| h.collections.get(&key).map(|c| c.schema));
    let token = holder::with(|h| h.token_for(key.namespace.as_str(), now_secs));
    if let (Some(schema), Some(token)) = (schema, token) {
        let fresh = Fresh {
            config: &config,
            upstream: Upstream {
                base: &config.writer_url,
                token: &token,
            },
            key: &key,
        };
        if let Err(err) = fresh.shard(&schema, shard, invalidation.head).await {
            worker::console_warn!(
                "tidemark-edge: catching up after an invalidation failed: {}",
                err.message
            );
        }
    }
    let tidemark = holder::with(|h| {
        h.collections
            .get(&key)
            .map(|c| c.tidemark_of(&[shard]))
            .unwrap_or_default()
    });
    let mut response = Response::from_json(&json!({ "held": true, "tidemark": tidemark }))?;
    request::set_tidemark(&mut response, &tidemark)?;
    Ok(response)
}
