//! The HTTP server: routes, state and the serve loop.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use ed25519_dalek::VerifyingKey;

use crate::config::Config;
use crate::keys::{self, Keys};
use crate::store::{Committer, SqliteStore};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    /// The key access tokens are verified with.
    pub token_key: VerifyingKey,
    pub committer: Committer,
}

impl AppState {
    /// Opens the data dir: keys, database, committer thread.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let keys = Keys::load_or_create(&config.data_dir)?;
        let token_key = match &config.token_public_key {
            Some(hex) => keys::parse_public(hex)?,
            None => keys.issuer.verifying_key(),
        };
        let store = SqliteStore::open(&config.data_dir)?;
        let committer = Committer::start(store)?;
        Ok(Self {
            config: Arc::new(config),
            keys: Arc::new(keys),
            token_key,
            committer,
        })
    }
}

/// The writer's routes; the unit of HTTP testing (`app(state).oneshot(..)`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/keys", get(public_keys))
        .fallback(not_found)
        .with_state(state)
}

/// Unknown routes get the same JSON error shape as every other 4xx.
async fn not_found(uri: Uri) -> (StatusCode, Json<Value>) {
    let message = format!("no route for {}", uri.path());
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "code": "not_found", "message": message } })),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "service": "tidemark-writer", "version": tidemark_core::VERSION }))
}

/// The public keys replicas and clients verify with.
async fn public_keys(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "writer": keys::hex(&state.keys.writer.verifying_key().to_bytes()),
        "token_issuer": keys::hex(&state.token_key.to_bytes()),
    }))
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> AppState {
        let dir = std::env::temp_dir().join(format!(
            "tidemark-server-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        AppState::open(Config::for_data_dir(dir)).unwrap()
    }

    #[tokio::test]
    async fn healthz_reports_version() {
        let response = app(state())
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], tidemark_core::VERSION);
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let response = app(state())
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}
