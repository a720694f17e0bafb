//! The HTTP handlers: each checks the caller's scope for the path's
//! namespace, converts the request into core's types, calls the engine, and
//! converts the answer. Errors all go through [`AppError`].

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidemark_core::auth::Scope;
use tidemark_core::log::Tidemark;
use tidemark_core::model::{
    CollectionKey, CollectionName, CollectionSchema, Fields, Namespace, RecordId,
};
use tidemark_core::shard::ShardCount;
use tidemark_core::vector::{Filter, Metric, Query};
use tidemark_core::wire::{self, Message, WriteAck};
use tidemark_core::writer::{WriteBatch, WriteOp};

use crate::auth::{Caller, unix_now_ms};
use crate::error::AppError;
use crate::server::AppState;

pub const ENVELOPE_TYPE: &str = "application/x-tidemark";

/// `Json` whose rejections become [`AppError`]s with stable codes.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(AppJson(value))
    }
}

/// The collection of a `/v1/ns/{ns}/collections/{c}` path, after checking
/// that the caller may use `scope` in that namespace.
fn collection_for(
    caller: &Caller,
    ns: &str,
    name: &str,
    scope: Scope,
) -> Result<CollectionKey, AppError> {
    caller.0.require(ns, scope)?;
    let namespace =
        Namespace::new(ns).map_err(|e| AppError::bad_request("invalid_request", e.to_string()))?;
    let name = CollectionName::new(name)
        .map_err(|e| AppError::bad_request("invalid_request", e.to_string()))?;
    Ok(CollectionKey::new(namespace, name))
}

fn with_tidemark(mut response: Response, tidemark: &Tidemark) -> Response {
    let header = serde_json::to_string(tidemark)
        .ok()
        .and_then(|json| HeaderValue::try_from(json).ok());
    if let Some(value) = header {
        response.headers_mut().insert("x-tidemark", value);
    }
    response
}

fn envelope(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, ENVELOPE_TYPE)], bytes).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    dimension: usize,
    metric: Metric,
    shards: u32,
}

pub async fn create_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    AppJson(body): AppJson<CreateCollection>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Admin)?;
    let count = ShardCount::new(body.shards)
        .map_err(|e| AppError::bad_request("invalid_request", e.to_string()))?;
    let schema = CollectionSchema::new(body.dimension, body.metric, count, state.engine.limits())?;
    let created = state.engine.create_collection(key.clone(), schema).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let collection = state.engine.collection(&key)?;
    Ok((
        status,
        Json(describe(
            &collection.key,
            &collection.schema,
            &collection.tidemark(),
        )),
    )
        .into_response())
}

fn describe(key: &CollectionKey, schema: &CollectionSchema, tidemark: &Tidemark) -> Value {
    json!({
        "namespace": key.namespace.as_str(),
        "name": key.collection.as_str(),
        "dimension": schema.dimension,
        "metric": schema.metric,
        "shards": schema.shard_count.get(),
        "tidemark": tidemark,
    })
}

pub async fn describe_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    let collection = state.engine.collection(&key)?;
    let tidemark = collection.tidemark();
    Ok(with_tidemark(
        Json(describe(&key, &collection.schema, &tidemark)).into_response(),
        &tidemark,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonWrites {
    ops: Vec<JsonOp>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum JsonOp {
    Put {
        id: String,
        fields: Fields,
        vector: Option<Vec<f32>>,
    },
    Patch {
        id: String,
        fields: Fields,
        vector: Option<Vec<f32>>,
    },
    Delete {
        id: String,
    },
    Vector {
        id: String,
        vector: Vec<f32>,
    },
}

pub async fn write_json(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    AppJson(body): AppJson<JsonWrites>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Write)?;
    let limits = state.engine.limits();
    let id = |id: String| {
        RecordId::new(id, limits)
            .map_err(|e| AppError::bad_request("invalid_request", e.to_string()))
    };
    let ops = body
        .ops
        .into_iter()
        .map(|op| {
            Ok(match op {
                JsonOp::Put {
                    id: i,
                    fields,
                    vector,
                } => WriteOp::put(id(i)?, fields, vector),
                JsonOp::Patch {
                    id: i,
                    fields,
                    vector,
                } => WriteOp::patch(id(i)?, fields, vector),
                JsonOp::Delete { id: i } => WriteOp::delete(id(i)?),
                JsonOp::Vector { id: i, vector } => WriteOp::set_vector(id(i)?, vector),
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let batch = WriteBatch {
        collection: key,
        client_ref: 0,
        ops,
    };
    let token = state.engine.write(&batch, unix_now_ms()).await?;
    state.metrics.record_write(batch.ops.len());
    Ok(Json(json!({ "token": token })).into_response())
}

/// The binary write path of SDK clients: a `WriteBatch` envelope in, a
/// signed `WriteAck` envelope out.
pub async fn write_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Write)?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some(ENVELOPE_TYPE)
    {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send a write batch envelope with `content-type: {ENVELOPE_TYPE}`"),
        ));
    }
    let batch = match wire::decode(&body, state.engine.limits()) {
        Ok(Message::WriteBatch(batch)) => batch,
        Ok(_) => {
            return Err(AppError::bad_request(
                "invalid_envelope",
                "expected a WriteBatch message",
            ));
        }
        Err(err) => return Err(AppError::from_decode(err)),
    };
    if batch.collection != key {
        return Err(AppError::bad_request(
            "invalid_request",
            "the batch names another collection than the path",
        ));
    }
    let token = state.engine.write(&batch, unix_now_ms()).await?;
    state.metrics.record_write(batch.ops.len());
    let ack = Message::WriteAck(WriteAck {
        client_ref: batch.client_ref,
        token,
    });
    Ok(envelope(wire::encode_signed(&ack, &state.keys.writer)))
}

pub async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name, id)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    let id = RecordId::new(id, state.engine.limits())
        .map_err(|e| AppError::bad_request("invalid_request", e.to_string()))?;
    let (record, tidemark) = state.engine.get(&key, &id).await?;
    let record = record.ok_or_else(|| AppError::not_found(format!("no record {}", id.as_str())))?;
    let body = json!({
        "id": id.as_str(),
        "fields": record.state.fields,
        "vector": record.vector,
        "tidemark": tidemark,
    });
    Ok(with_tidemark(Json(body).into_response(), &tidemark))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    vector: Vec<f32>,
    #[serde(default = "default_k")]
    k: usize,
    filter: Option<Filter>,
    #[serde(default)]
    exact: bool,
    ef: Option<usize>,
}

fn default_k() -> usize {
    10
}

/// Largest `k` a search may ask for: the answer carries every hit's fields.
pub const MAX_K: usize = 1000;

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name)): Path<(String, String)>,
    AppJson(body): AppJson<SearchRequest>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    if body.k == 0 || body.k > MAX_K {
        return Err(AppError::bad_request(
            "invalid_request",
            format!("k must be between 1 and {MAX_K}"),
        ));
    }
    let mut query = Query::new(&body.vector, body.k);
    if let Some(filter) = &body.filter {
        query = query.filter(filter);
    }
    if body.exact {
        query = query.exact();
    } else if let Some(ef) = body.ef {
        query = query.ef(ef);
    }
    let (hits, tidemark) = state.engine.search(&key, &query).await?;
    let hits: Vec<Value> = hits
        .into_iter()
        .map(|(hit, fields)| json!({ "id": hit.id, "score": -hit.distance, "fields": fields }))
        .collect();
    Ok(with_tidemark(
        Json(json!({ "hits": hits, "tidemark": tidemark })).into_response(),
        &tidemark,
    ))
}

pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name, shard)): Path<(String, String, u32)>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    let head = state.engine.head(&key, shard)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "head": head })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: u64,
    to: u64,
}

pub async fn log_range(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name, shard)): Path<(String, String, u32)>,
    UrlQuery(range): UrlQuery<RangeQuery>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    let (bytes, immutable) = state
        .engine
        .log_range(&key, shard, range.from, range.to)
        .await?;
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    let mut response = envelope(bytes);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

pub async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name, shard)): Path<(String, String, u32)>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Read)?;
    let (bytes, offset) = state.engine.snapshot(&key, shard).await?;
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ENVELOPE_TYPE),
    );
    headers.insert("x-tidemark-offset", HeaderValue::from(offset));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Starts sealing a snapshot at the shard's head now (admin) and answers
/// 202 with that offset, which `GET .../snapshot` serves once the seal is
/// persisted: an operator preparing many new replicas, or a loader that
/// wants the latest snapshot at a known offset, need not wait for the
/// background policy.
pub async fn seal_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path((ns, name, shard)): Path<(String, String, u32)>,
) -> Result<Response, AppError> {
    let key = collection_for(&caller, &ns, &name, Scope::Admin)?;
    let offset = state.engine.seal_snapshot(&key, shard).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "offset": offset })),
    )
        .into_response())
}
