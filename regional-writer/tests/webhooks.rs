//! Webhook targets receive the writer's signed invalidations.

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::time::Duration;

use serde_json::json;
use tidemark_core::auth::{self, Claims, Scope};
use tidemark_core::limits::Limits;
use tidemark_core::wire::{self, Message};
use tidemark_regional_writer::config::Config;
use tidemark_regional_writer::server::{self, AppState};

/// Reads one HTTP request from `listener` (headers and `Content-Length`
/// body), answers 204, and returns the body.
fn receive_one(listener: &StdListener) -> Vec<u8> {
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            return buf[end + 4..end + 4 + length].to_vec();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_push_signed_invalidations_to_webhooks() {
    let hook = StdListener::bind("127.0.0.1:0").unwrap();
    let dir = std::env::temp_dir().join(format!("tidemark-webhooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::for_data_dir(&dir);
    config.webhooks = vec![format!(
        "http://{}/v1/invalidate",
        hook.local_addr().unwrap()
    )];
    let state = AppState::open(config.clone()).unwrap();
    tidemark_regional_writer::webhooks::start(
        &state.engine,
        state.keys.writer.clone(),
        &config.webhooks,
    );
    let writer_key = state.keys.writer.verifying_key();
    let claims = Claims {
        namespace: "acme".into(),
        scopes: vec![Scope::Read, Scope::Write, Scope::Admin],
        expires_at: tidemark_regional_writer::auth::unix_now() + 600,
        not_before: None,
        subject: None,
    };
    let token = auth::issue(&claims, &state.keys.issuer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::run(listener, state, std::future::pending()));

    let received = tokio::task::spawn_blocking(move || receive_one(&hook));
    let client = tidemark_regional_writer::http_client::HttpClient::new(Duration::from_secs(10));
    let auth = [
        (axum::http::header::AUTHORIZATION, format!("Bearer {token}")),
        (
            axum::http::header::CONTENT_TYPE,
            "application/json".to_string(),
        ),
    ];
    let collection = format!("{base}/v1/ns/acme/collections/notes");
    let schema = json!({"dimension": 2, "metric": "l2", "shards": 1}).to_string();
    assert!(
        client
            .send(axum::http::Method::PUT, &collection, &auth, schema)
            .await
            .unwrap()
            .status
            .is_success()
    );
    let write =
        json!({"ops": [{"op": "put", "id": "n1", "fields": {"a": 1}, "vector": [1.0, 2.0]}]})
            .to_string();
    let answer = client
        .send(
            axum::http::Method::POST,
            &format!("{collection}/records"),
            &auth,
            write,
        )
        .await
        .unwrap();
    assert!(answer.status.is_success());

    let body = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .unwrap()
        .unwrap();
    match wire::decode_verified(&body, &writer_key, &Limits::default()).unwrap() {
        Message::Invalidation(hint) => {
            assert_eq!(hint.collection.collection.as_str(), "notes");
            assert_eq!((hint.shard.0, hint.head.0), (0, 1));
        }
        other => panic!("expected an invalidation, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
