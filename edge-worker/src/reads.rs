//! The read half of the API, answered from the isolate's replicas: the
//! collection, a record, a vector search, a shard's head. Each brings the
//! shards it reads to the freshness the request asks for
//! ([`crate::catch_up`]) and says which tidemark it was read at.

use serde::Deserialize;
use serde_json::json;
use tidemark_core::auth::Scope;
use tidemark_core::limits::Limits;
use tidemark_core::log::Tidemark;
use tidemark_core::model::{CollectionSchema, RecordId};
use tidemark_core::shard::ShardId;
use tidemark_core::vector::{Filter, Hit, Metric, Query, merge_top_k, query::DEFAULT_EF};
use worker::{Request, Response, RouteContext};

use crate::catch_up::Fresh;
use crate::error::EdgeError;
use crate::holder;
use crate::request::{
    self, Caller, authorize, check_token_shards, consistency_token, json_with_tidemark,
};
use crate::upstream::Upstream;

/// A search body is a vector and a filter: 1 MiB holds 4096 dimensions as
/// JSON many times over.
const MAX_SEARCH_BODY: usize = 1 << 20;

fn fresh(caller: &Caller) -> Fresh<'_> {
    Fresh {
        config: &caller.config,
        upstream: Upstream {
            base: &caller.config.writer_url,
            token: &caller.token,
        },
        key: &caller.key,
    }
}

fn all_shards(schema: &CollectionSchema) -> Vec<ShardId> {
    schema.shard_count.shards().collect()
}

fn tidemark_of(caller: &Caller, shards: &[ShardId]) -> Tidemark {
    holder::with(|h| {
        h.collections
            .get(&caller.key)
            .map(|c| c.tidemark_of(shards))
            .unwrap_or_default()
    })
}

/// Reads `shards` (all when `None`) at the freshness the request asks for.
async fn prepare(
    req: &Request,
    caller: &Caller,
    shards: impl FnOnce(&CollectionSchema) -> Vec<ShardId>,
) -> Result<(CollectionSchema, Vec<ShardId>), EdgeError> {
    let token = consistency_token(req)?;
    let fresh = fresh(caller);
    let schema = fresh.schema().await?;
    check_token_shards(token.as_ref(), schema.shard_count.get())?;
    let shards = shards(&schema);
    fresh.read(&schema, &shards, token.as_ref()).await?;
    Ok((schema, shards))
}

pub async fn collection(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let (schema, shards) = prepare(&req, &caller, all_shards).await?;
    let tidemark = tidemark_of(&caller, &shards);
    json_with_tidemark(
        &json!({
            "namespace": caller.key.namespace,
            "name": caller.key.collection,
            "dimension": schema.dimension,
            "metric": schema.metric,
            "shards": schema.shard_count.get(),
            "tidemark": tidemark,
        }),
        &tidemark,
    )
}

pub async fn record(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let raw = request::param(&ctx, "id")?;
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| EdgeError::invalid_request("the record id is not UTF-8"))?;
    let id = RecordId::new(decoded.as_ref(), &Limits::default())
        .map_err(|e| EdgeError::invalid_request(e.to_string()))?;
    let (_, shards) = prepare(&req, &caller, |schema| {
        vec![caller.key.shard_of(&id, schema.shard_count)]
    })
    .await?;
    let tidemark = tidemark_of(&caller, &shards);
    let found = holder::with(|h| {
        h.collections
            .get(&caller.key)
            .and_then(|c| c.shard(shards[0]))
            .and_then(|s| s.record(&id))
    });
    match found {
        None => {
            let mut response = EdgeError::not_found(format!("no record {id:?}")).into_response();
            request::set_tidemark(&mut response, &tidemark)?;
            Ok(response)
        }
        Some(record) => json_with_tidemark(
            &json!({
                "id": id,
                "fields": record.fields,
                "vector": record.vector,
                "tidemark": tidemark,
            }),
            &tidemark,
        ),
    }
}

pub async fn head(req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let shard = shard_param(&ctx)?;
    let (_, shards) = prepare(&req, &caller, |schema| {
        if shard.0 < schema.shard_count.get() {
            vec![shard]
        } else {
            Vec::new()
        }
    })
    .await?;
    if shards.is_empty() {
        return Err(EdgeError::invalid_request(format!(
            "the collection has no shard {}",
            shard.0
        )));
    }
    let tidemark = tidemark_of(&caller, &shards);
    let mut response = json_with_tidemark(&json!({ "head": tidemark.get(shard) }), &tidemark)?;
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

pub fn shard_param(ctx: &RouteContext<()>) -> Result<ShardId, EdgeError> {
    request::param(ctx, "shard")?
        .parse()
        .map(ShardId)
        .map_err(|_| EdgeError::invalid_request("the shard must be a whole number"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    vector: Vec<f32>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    ef: Option<usize>,
}

fn default_k() -> usize {
    10
}

/// The API's score: the metric's similarity, higher is closer.
fn score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -distance,
        Metric::L2 => -distance,
    }
}

pub async fn search(mut req: Request, ctx: RouteContext<()>) -> Result<Response, EdgeError> {
    let caller = authorize(&req, &ctx, Scope::Read)?;
    let bytes = request::body(&mut req, MAX_SEARCH_BODY).await?;
    let body: SearchBody = serde_json::from_slice(&bytes)
        .map_err(|e| EdgeError::invalid_json(format!("the search body: {e}")))?;
    let query = Query::new(&body.vector, body.k);
    let query = match (body.exact, body.ef) {
        (true, _) => query.exact(),
        (false, ef) => query.ef(ef.unwrap_or(DEFAULT_EF)),
    };
    let query = match &body.filter {
        Some(filter) => query.filter(filter),
        None => query,
    };
    // Bad queries are refused before any shard is loaded for them.
    let schema = fresh(&caller).schema().await?;
    query.validate(schema.metric, schema.dimension)?;
    let (_, shards) = prepare(&req, &caller, all_shards).await?;
    let (tidemark, hits) = holder::with(|h| -> Result<_, EdgeError> {
        let collection = h.collections.get(&caller.key).ok_or_else(|| {
            EdgeError::new(503, "unavailable", "the collection was dropped; retry")
        })?;
        let mut lists: Vec<Vec<Hit>> = Vec::with_capacity(shards.len());
        for &shard in &shards {
            if let Some(held) = collection.shard(shard) {
                lists.push(held.search(&query)?);
            }
        }
        let hits: Vec<_> = merge_top_k(query.k, lists)
            .into_iter()
            .map(|hit| {
                let fields = RecordId::new(hit.id.as_str(), &Limits::default())
                    .ok()
                    .and_then(|id| {
                        collection
                            .shard(caller.key.shard_of(&id, schema.shard_count))
                            .and_then(|s| s.replica().get(&id))
                            .map(|r| r.fields.clone())
                    })
                    .unwrap_or_default();
                json!({ "id": hit.id, "score": score(schema.metric, hit.distance), "fields": fields })
            })
            .collect();
        Ok((collection.tidemark_of(&shards), hits))
    })?;
    json_with_tidemark(&json!({ "hits": hits, "tidemark": tidemark }), &tidemark)
}
