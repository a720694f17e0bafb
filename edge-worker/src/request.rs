//! What every `/v1/ns/...` handler does first and last: verify the caller's
//! token for the path's namespace and a scope, read the path's names and
//! the consistency token, bound the body, and put the tidemark on the answer.

use serde::Serialize;
use tidemark_core::auth::{self, Scope};
use tidemark_core::log::{ConsistencyToken, Tidemark};
use tidemark_core::model::{CollectionKey, CollectionName, Namespace};
use tidemark_core::shard::ShardId;
use worker::{Request, Response, RouteContext};

use crate::catch_up::now_ms;
use crate::config::Config;
use crate::error::EdgeError;
use crate::holder;

/// A request that passed the edge's checks.
pub struct Caller {
    pub config: Config,
    pub token: String,
    pub key: CollectionKey,
}

fn bearer(req: &Request) -> Result<String, EdgeError> {
    let header = req
        .headers()
        .get("authorization")?
        .ok_or(auth::AuthError::Missing)?;
    header
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            auth::AuthError::Malformed("expected `Authorization: Bearer <token>`").into()
        })
}

pub fn param<'a>(ctx: &'a RouteContext<()>, name: &str) -> Result<&'a str, EdgeError> {
    ctx.param(name)
        .map(String::as_str)
        .ok_or_else(|| EdgeError::invalid_request(format!("missing path parameter {name}")))
}

/// Verifies the caller for `scope` on the path's namespace and collection.
/// The namespace is judged only by the token's verified claims.
pub fn authorize(req: &Request, ctx: &RouteContext<()>, scope: Scope) -> Result<Caller, EdgeError> {
    let config = Config::from_env(&ctx.env)?;
    let token = bearer(req)?;
    let now_secs = (now_ms() / 1000.0) as u64;
    let claims = auth::verify(&token, &config.token_key, now_secs)?;
    let namespace = param(ctx, "ns")?;
    claims.require(namespace, scope)?;
    let namespace =
        Namespace::new(namespace).map_err(|e| EdgeError::invalid_request(e.to_string()))?;
    let collection = CollectionName::new(param(ctx, "collection")?)
        .map_err(|e| EdgeError::invalid_request(e.to_string()))?;
    if scope == Scope::Read {
        holder::with(|h| h.remember_token(namespace.as_str(), &token, claims.expires_at));
    }
    Ok(Caller {
        config,
        token,
        key: CollectionKey::new(namespace, collection),
    })
}

/// The `x-tidemark-consistency` header, if any.
pub fn consistency_token(req: &Request) -> Result<Option<ConsistencyToken>, EdgeError> {
    match req.headers().get("x-tidemark-consistency")? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            EdgeError::invalid_request(format!(
                "x-tidemark-consistency must be {{\"shards\": {{\"<shard>\": <offset>}}}}: {e}"
            ))
        }),
    }
}

/// Refuses a token naming shards the collection does not have.
pub fn check_token_shards(
    token: Option<&ConsistencyToken>,
    shard_count: u32,
) -> Result<(), EdgeError> {
    match token.and_then(|t| t.shards.keys().find(|s| s.0 >= shard_count)) {
        Some(ShardId(s)) => Err(EdgeError::invalid_request(format!(
            "the consistency token names shard {s}; the collection has {shard_count}"
        ))),
        None => Ok(()),
    }
}

/// The request body, refused past `limit` bytes before it is all read when
/// the length is declared.
pub async fn body(req: &mut Request, limit: usize) -> Result<Vec<u8>, EdgeError> {
    let too_large = || {
        EdgeError::new(
            413,
            "body_too_large",
            format!("the request body is larger than the {limit} bytes the edge accepts here"),
        )
    };
    if let Some(length) = req.headers().get("content-length")?
        && length.trim().parse::<usize>().map_or(true, |n| n > limit)
    {
        return Err(too_large());
    }
    let bytes = req.bytes().await?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A JSON answer with the tidemark header.
pub fn json_with_tidemark<T: Serialize>(
    value: &T,
    tidemark: &Tidemark,
) -> Result<Response, EdgeError> {
    let mut response = Response::from_json(value)?;
    set_tidemark(&mut response, tidemark)?;
    Ok(response)
}

pub fn set_tidemark(response: &mut Response, tidemark: &Tidemark) -> Result<(), EdgeError> {
    let text = serde_json::to_string(tidemark).unwrap_or_default();
    response.headers_mut().set("x-tidemark", &text)?;
    Ok(())
}
