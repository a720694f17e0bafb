//! Pushing signed invalidations to configured targets (edges).
//!
//! An invalidation only says "shard S of collection C reached head H"; a
//! receiver verifies the writer's signature and then reads the log itself.
//! Since it is only a hint, delivery is best effort: each target has its own
//! task that retries with exponential backoff and, while a target is slow or
//! down, keeps only the newest head per shard rather than a growing queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, header};
use ed25519_dalek::SigningKey;
use tidemark_core::log::Offset;
use tidemark_core::model::CollectionKey;
use tidemark_core::shard::ShardId;
use tidemark_core::wire::{self, Invalidation, Message};
use tokio::sync::broadcast::error::RecvError;

use crate::api::ENVELOPE_TYPE;
use crate::engine::Engine;
use crate::http_client::HttpClient;

/// Attempts per invalidation: 0.1 s, 0.2 s, ... 3.2 s apart (~6 s in all).
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Starts one delivery task per target URL.
pub fn start(engine: &Arc<Engine>, signing: SigningKey, targets: &[String]) {
    let client = HttpClient::new(Duration::from_secs(5));
    for target in targets {
        let mut invalidations = engine.subscribe();
        let (client, signing, target) = (client.clone(), signing.clone(), target.clone());
        tokio::spawn(async move {
            let mut pending: BTreeMap<(CollectionKey, ShardId), Offset> = BTreeMap::new();
            loop {
                match invalidations.recv().await {
                    Ok(hint) => {
                        pending.insert((hint.collection, hint.shard), hint.head);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(%target, missed, "webhook fell behind; newer hints follow");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                }
                // Take whatever else queued up meanwhile, newest head wins.
                while let Ok(hint) = invalidations.try_recv() {
                    pending.insert((hint.collection, hint.shard), hint.head);
                }
                for ((collection, shard), head) in std::mem::take(&mut pending) {
                    let message = Message::Invalidation(Invalidation {
                        collection,
                        shard,
                        head,
                    });
                    deliver(&client, &target, wire::encode_signed(&message, &signing)).await;
                }
            }
        });
    }
}

async fn deliver(client: &HttpClient, target: &str, body: Vec<u8>) {
    let headers = [(header::CONTENT_TYPE, ENVELOPE_TYPE.to_string())];
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match client
            .send(Method::POST, target, &headers, body.clone())
            .await
        {
            Ok(answer) if answer.status.is_success() => return,
            Ok(answer) if answer.status.is_client_error() => {
                // The target refused the hint itself (bad signature for its
                // configured key, say): retrying the same bytes cannot help.
                tracing::warn!(%target, status = %answer.status, "webhook refused an invalidation");
                return;
            }
            Ok(answer) => {
                tracing::debug!(%target, attempt, status = %answer.status, "webhook failed")
            }
            Err(err) => tracing::debug!(%target, attempt, %err, "webhook failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    tracing::warn!(%target, "webhook unreachable; dropping an invalidation (replicas still poll)");
}
