//! The HTTP server: state, routes and the serve loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use tidemark_core::auth::Scope;
use tidemark_core::limits::Limits;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tower::ServiceBuilder;
use tower_http::cors::{Any, CorsLayer};

use crate::api;
use crate::auth::Caller;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::AppError;
use crate::keys::{self, Keys};
use crate::metrics::{self, Metrics};

/// Request bodies above this are refused before they are read: the largest
/// legitimate body is a full write batch (500 records of up to 1 MiB is more
/// than anyone should send in one request; 64 MiB bounds the damage).
const MAX_BODY_BYTES: usize = 64 << 20;

/// A request that takes longer is answered 408 (slow clients, stuck disks).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests served at once; beyond it the writer sheds load with a 429
/// rather than queueing without bound (a queue would only add latency to
/// requests whose clients have likely given up).
const MAX_IN_FLIGHT: usize = 1024;

/// Open WebSocket subscriptions at once.
const MAX_SUBSCRIBERS: usize = 10_000;

/// A subscriber that neither reads nor pings for this long is dropped.
const SUBSCRIBER_IDLE: Duration = Duration::from_secs(120);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    /// The key access tokens are verified with.
    pub token_key: VerifyingKey,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Open WebSocket subscriptions.
    pub subscribers: Arc<AtomicUsize>,
}

impl AppState {
    /// Opens the data dir: keys, database (rebuilding every shard), committer.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let keys = Keys::load_or_create(&config.data_dir)?;
        let token_key = match &config.token_public_key {
            Some(hex) => keys::parse_public(hex)?,
            None => keys.issuer.verifying_key(),
        };
        let engine = Engine::open(
            &config.data_dir,
            keys.writer.clone(),
            Limits::default(),
            config.snapshot_cache_mb << 20,
        )?;
        Ok(Self {
            config: Arc::new(config),
            keys: Arc::new(keys),
            token_key,
            engine: Arc::new(engine),
            metrics: Arc::new(Metrics::default()),
            subscribers: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// The writer's routes; the unit of HTTP testing (`app(state).oneshot(..)`).
pub fn app(state: AppState) -> Router {
    let collection = "/v1/ns/{ns}/collections/{collection}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/v1/keys", get(public_keys))
        .route(
            collection,
            get(api::describe_collection).put(api::create_collection),
        )
        .route(&format!("{collection}/records"), post(api::write_json))
        .route(&format!("{collection}/batch"), post(api::write_batch))
        .route(
            &format!("{collection}/records/{{id}}"),
            get(api::get_record),
        )
        .route(&format!("{collection}/search"), post(api::search))
        .route(
            &format!("{collection}/shards/{{shard}}/head"),
            get(api::head),
        )
        .route(
            &format!("{collection}/shards/{{shard}}/log"),
            get(api::log_range),
        )
        .route(
            &format!("{collection}/shards/{{shard}}/snapshot"),
            get(api::snapshot).post(api::seal_snapshot),
        )
        .route("/v1/ns/{ns}/subscribe", get(subscribe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async { too_busy() }))
                .load_shed()
                .concurrency_limit(MAX_IN_FLIGHT),
        )
        .layer(cors())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Browsers call the writer from app origins: tokens travel in the
/// `Authorization` header, never in cookies, so any origin may call and
/// nothing ambient is exposed to it.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-tidemark-consistency"),
        ])
        .expose_headers([
            HeaderName::from_static("x-tidemark"),
            HeaderName::from_static("x-tidemark-offset"),
        ])
        .max_age(Duration::from_secs(3600))
}

fn too_busy() -> AppError {
    AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        "the writer is at capacity; retry shortly",
    )
}

/// Unknown routes get the same JSON error shape as every other 4xx.
async fn not_found(uri: Uri) -> AppError {
    AppError::not_found(format!("no route for {}", uri.path()))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "service": "tidemark-writer", "version": tidemark_core::VERSION }))
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let stats = state.engine.committer().stats();
    let seals = state.engine.seal_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let body = state.metrics.render(&[
        (
            "tidemark_commits_total",
            "Durable transactions (one fsync each).",
            load(&stats.commits),
        ),
        (
            "tidemark_committed_jobs_total",
            "Jobs made durable; jobs/commits is the group size.",
            load(&stats.jobs),
        ),
        (
            "tidemark_seals_queued_total",
            "Index seals handed to the sealing thread.",
            load(&seals.queued),
        ),
        (
            "tidemark_seals_finished_total",
            "Index seals finished (built or failed).",
            load(&seals.finished),
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The public keys replicas and clients verify with.
async fn public_keys(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "writer": keys::hex(&state.keys.writer.verifying_key().to_bytes()),
        "token_issuer": keys::hex(&state.token_key.to_bytes()),
    }))
}

/// Invalidations of the namespace's shards, as JSON text messages.
async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    caller.0.require(&ns, Scope::Read)?;
    let Some(slot) = SubscriberSlot::take(&state.subscribers) else {
        return Err(too_busy());
    };
    let upgrade = upgrade.map_err(|_| {
        AppError::bad_request("invalid_request", "subscribe with a WebSocket upgrade")
    })?;
    let engine = Arc::clone(&state.engine);
    Ok(upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| async move {
            forward_invalidations(socket, engine, ns).await;
            drop(slot);
        }))
}

/// One of the [`MAX_SUBSCRIBERS`] places, given back when dropped.
struct SubscriberSlot(Arc<AtomicUsize>);

impl SubscriberSlot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(count)))
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn forward_invalidations(mut socket: WebSocket, engine: Arc<Engine>, namespace: String) {
    let mut invalidations = engine.subscribe();
    loop {
        tokio::select! {
            received = invalidations.recv() => {
                let invalidation = match received {
                    Ok(invalidation) => invalidation,
                    // A slow subscriber missed some hints; the next one still
                    // tells it to read the log, which is all a hint is for.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if invalidation.collection.namespace.as_str() != namespace {
                    continue;
                }
                let text = json!({
                    "collection": invalidation.collection.collection.as_str(),
                    "shard": invalidation.shard.0,
                    "head": invalidation.head.0,
                })
                .to_string();
                if socket.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = tokio::time::timeout(SUBSCRIBER_IDLE, socket.recv()) => {
                match incoming {
                    Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
                    Ok(Some(Ok(_))) => {}
                }
            }
        }
    }
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Answers are small and latency matters more than packet count: without
    // TCP_NODELAY a keep-alive client can wait on Nagle + delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_slots_are_bounded_and_given_back() {
        let count = Arc::new(AtomicUsize::new(MAX_SUBSCRIBERS - 1));
        let last = SubscriberSlot::take(&count).expect("one place is left");
        assert!(SubscriberSlot::take(&count).is_none(), "the limit holds");
        drop(last);
        assert!(
            SubscriberSlot::take(&count).is_some(),
            "a closed subscription frees its place"
        );
    }
}
