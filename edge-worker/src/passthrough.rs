//! Log ranges and snapshots for browsers, passed through from the writer.
//!
//! The edge holds no log entries (its replica keeps records), so it relays
//! the writer's signed frames, after checking them: a frame that does not
//! verify, or is not the collection, shard and range asked for, is refused
//! here rather than handed on. Full ranges below the head are immutable, so
//! they are kept in the Cache API under their URL (the token is not part of
//! the key: it was checked for this namespace before the cache is read).

use tidemark_core::auth::Scope;
use tidemark_core::limits::Limits;
use tidemark_core::log::Offset;
use tidemark_core::wire::{self, Message};
use worker::{Cache, Method, Request, Response, RouteContext};

use crate::error::{EdgeError, untrusted_decode};
use crate::holder;
use crate::reads::shard_param;
use crate::request::{authorize, set_tidemark};
use crate::upstream::{Upstream, relay_error, shard_path};

const BINARY: &str = "application/x-tidemark";

fn offset_param(url: &worker::Url, name: &str) -> Result<Option<Offset>, EdgeError> {
    match url.query_pairs().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(|n| Some(Offset(n)))
            .map_err(|_| EdgeError::invalid_request(format!("`{name}` must be a whole number"))),
    }
}

fn held_tidemark(
    caller: &crate::request::Caller,
    shard: tidemark_core::shard::ShardId,
) -> tidemark_core::log::Tidemark {
    holder::with(|h| {
        h.collections
            .get(&caller.key)
            .map(|c| c.tidemark_of(&[shard]))
            .unwrap_or_default()
    })
}

pub async fn log(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let shard = shard_param(&ctx)?;
    let url = req.url()?;
    let from = offset_param(&url, "from")?.unwrap_or_default();
    let to = offset_param(&url, "to")?;
    if to.is_some_and(|to| to < from) {
        return Err(EdgeError::invalid_request("`to` is before `from`"));
    }
    let cache = Cache::default();
    let cache_key = url.to_string();
    if let Some(mut hit) = cache.get(cache_key.as_str(), false).await? {
        // A cached response's headers are immutable: answer with a copy.
        let cache_control = hit.headers().get("cache-control")?.unwrap_or_default();
        let mut response = Response::from_bytes(hit.bytes().await?)?;
        response.headers_mut().set("content-type", BINARY)?;
        response
            .headers_mut()
            .set("cache-control", &cache_control)?;
        response.headers_mut().set("x-tidemark-cache", "hit")?;
        set_tidemark(&mut response, &held_tidemark(&caller, shard))?;
        return Ok(response);
    }
    let upstream = Upstream {
        base: &caller.config.writer_url,
        token: &caller.token,
    };
    let mut path = format!("{}/log?from={}", shard_path(&caller.key, shard), from);
    if let Some(to) = to {
        path.push_str(&format!("&to={to}"));
    }
    let answer = upstream.send(Method::Get, &path, None, None).await?;
    if answer.status != 200 {
        return Err(relay_error(&answer));
    }
    match wire::decode_verified(&answer.body, &caller.config.writer_key, &Limits::default())
        .map_err(|e| untrusted_decode("log range", e))?
    {
        Message::LogRange(range)
            if range.collection == caller.key && range.shard == shard && range.from == from => {}
        _ => {
            return Err(EdgeError::untrusted(
                "the writer's frame is not the log range asked for",
            ));
        }
    }
    let cache_control = answer.cache_control.unwrap_or_else(|| "no-store".into());
    let body = answer.body;
    let mut response = Response::from_bytes(body.clone())?;
    response.headers_mut().set("content-type", BINARY)?;
    response
        .headers_mut()
        .set("cache-control", &cache_control)?;
    response.headers_mut().set("x-tidemark-cache", "miss")?;
    if cache_control.contains("immutable") {
        let mut copy = Response::from_bytes(body.clone())?;
        copy.headers_mut().set("content-type", BINARY)?;
        copy.headers_mut().set("cache-control", &cache_control)?;
        // Caching is an optimisation: a failed put is not the caller's problem.
        if let Err(err) = cache.put(cache_key.as_str(), copy).await {
            worker::console_warn!("tidemark-edge: caching a log range failed: {err}");
        }
    }
    set_tidemark(&mut response, &held_tidemark(&caller, shard))?;
    Ok(response)
}

pub async fn snapshot(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let shard = shard_param(&ctx)?;
    let upstream = Upstream {
        base: &caller.config.writer_url,
        token: &caller.token,
    };
    let path = format!("{}/snapshot", shard_path(&caller.key, shard));
    let answer = upstream.send(Method::Get, &path, None, None).await?;
    if answer.status != 200 {
        return Err(relay_error(&answer));
    }
    let offset =
        match wire::decode_verified(&answer.body, &caller.config.writer_key, &Limits::default())
            .map_err(|e| untrusted_decode("snapshot", e))?
        {
            Message::Snapshot(s) if s.collection == caller.key && s.shard == shard => s.offset,
            _ => {
                return Err(EdgeError::untrusted(
                    "the writer's frame is not the snapshot asked for",
                ));
            }
        };
    let mut response = Response::from_bytes(answer.body)?;
    response.headers_mut().set("content-type", BINARY)?;
    response.headers_mut().set("cache-control", "no-store")?;
    response
        .headers_mut()
        .set("x-tidemark-offset", &offset.to_string())?;
    set_tidemark(&mut response, &held_tidemark(&caller, shard))?;
    Ok(response)
}
