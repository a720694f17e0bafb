//! The transport port: the few requests a client makes (docs/api.md), and
//! [`HttpTransport`], which makes them with `fetch` against a writer or an
//! edge (same paths, same bodies).
//!
//! Binary answers come back as raw bytes: verifying them is the sync loop's
//! job, with the writer's key, so a transport cannot vouch for data.

use std::cell::RefCell;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use serde::Deserialize;
use tidemark_core::log::Offset;
use tidemark_core::model::{CollectionKey, CollectionSchema};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::vector::Metric;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::{SdkError, describe};
use crate::store::LocalFuture;

pub const WIRE_CONTENT_TYPE: &str = "application/x-tidemark";

pub trait Transport {
    /// The writer's Ed25519 public key, hex (`GET /v1/keys`).
    fn writer_key(&self) -> LocalFuture<'_, Result<String, SdkError>>;
    fn schema<'a>(
        &'a self,
        collection: &'a CollectionKey,
    ) -> LocalFuture<'a, Result<CollectionSchema, SdkError>>;
    /// Sends an encoded `WriteBatch`; answers the signed `WriteAck` frame.
    fn push<'a>(
        &'a self,
        collection: &'a CollectionKey,
        frame: Vec<u8>,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>>;
    fn head<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
    ) -> LocalFuture<'a, Result<Offset, SdkError>>;
    /// A signed `LogRange` frame of `[from, to)` (possibly shorter).
    fn log<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
        from: Offset,
        to: Offset,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>>;
    /// The latest signed `Snapshot` frame, handed to `piece` as it arrives
    /// (in pieces of any size, in order), so that decoding overlaps the
    /// download and the frame is never held whole; `false` if the shard has
    /// no snapshot yet. An error from `piece` stops the download.
    fn snapshot<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
        piece: SnapshotPieces<'a>,
    ) -> LocalFuture<'a, Result<bool, SdkError>>;
}

/// The receiver of a snapshot's bytes ([`Transport::snapshot`]).
pub type SnapshotPieces<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), SdkError>;

#[wasm_bindgen]
extern "C" {
    /// The part of a fetch `Response` the SDK uses (structural, so any
    /// fetch-compatible function works, including an app's own wrapper).
    pub type FetchResponse;
    #[wasm_bindgen(method, getter)]
    fn status(this: &FetchResponse) -> u16;
    #[wasm_bindgen(method, catch, js_name = arrayBuffer)]
    fn array_buffer(this: &FetchResponse) -> Result<Promise, JsValue>;
    /// The body as a stream; absent in fetch wrappers that do not offer one.
    #[wasm_bindgen(method, getter)]
    fn body(this: &FetchResponse) -> Option<BodyStream>;

    /// A `ReadableStream` of the body's bytes.
    pub type BodyStream;
    #[wasm_bindgen(method, catch, js_name = getReader)]
    fn get_reader(this: &BodyStream) -> Result<BodyReader, JsValue>;

    pub type BodyReader;
    /// Resolves to `{ done, value }`, `value` a `Uint8Array`.
    #[wasm_bindgen(method, catch)]
    fn read(this: &BodyReader) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn cancel(this: &BodyReader) -> Result<Promise, JsValue>;
}

/// `fetch` against `url`, with a bearer token that a callback may renew.
pub struct HttpTransport {
    url: String,
    token: RefCell<String>,
    fetch: Function,
    /// Called on a 401; resolves to a new token (or null to give up).
    on_token_expired: Option<Function>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct Keys {
    writer: String,
}

#[derive(Deserialize)]
struct SchemaBody {
    dimension: usize,
    metric: Metric,
    shards: u32,
}

#[derive(Deserialize)]
struct HeadBody {
    head: u64,
}

enum Body {
    None,
    Wire(Vec<u8>),
}

impl HttpTransport {
    /// `fetch` defaults to the global one.
    pub fn new(
        url: &str,
        token: String,
        fetch: Option<Function>,
        on_token_expired: Option<Function>,
    ) -> Result<Self, SdkError> {
        let fetch = match fetch {
            Some(f) => f,
            None => Reflect::get(&js_sys::global(), &"fetch".into())
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
                .ok_or_else(|| SdkError::InvalidArgument("no global fetch; pass one".into()))?,
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            token: RefCell::new(token),
            fetch,
            on_token_expired,
        })
    }

    fn collection_url(&self, key: &CollectionKey) -> String {
        format!(
            "{}/v1/ns/{}/collections/{}",
            self.url, key.namespace, key.collection
        )
    }

    /// One request, its body read whole.
    async fn request(
        &self,
        method: &str,
        url: &str,
        body: Body,
    ) -> Result<(u16, Vec<u8>), SdkError> {
        let response = self.send(method, url, body).await?;
        Ok((response.status(), read_whole(&response).await?))
    }

    /// One request, answered before its body is read; on 401 asks for a
    /// new token once and retries.
    async fn send(&self, method: &str, url: &str, body: Body) -> Result<FetchResponse, SdkError> {
        let response = self.send_once(method, url, &body).await?;
        if response.status() != 401 {
            return Ok(response);
        }
        let Some(refresh) = &self.on_token_expired else {
            return Ok(response);
        };
        let renewed = refresh.call0(&JsValue::NULL).map_err(|e| {
            SdkError::InvalidArgument(format!("onTokenExpired threw: {}", describe(&e)))
        })?;
        let renewed = JsFuture::from(Promise::resolve(&renewed))
            .await
            .map_err(|e| {
                SdkError::InvalidArgument(format!("onTokenExpired failed: {}", describe(&e)))
            })?;
        match renewed.as_string() {
            Some(token) if !token.is_empty() => {
                *self.token.borrow_mut() = token;
                self.send_once(method, url, &body).await
            }
            _ => Ok(response),
        }
    }

    async fn send_once(
        &self,
        method: &str,
        url: &str,
        body: &Body,
    ) -> Result<FetchResponse, SdkError> {
        let init = Object::new();
        let headers = Object::new();
        let set = |o: &Object, k: &str, v: &JsValue| {
            // Plain objects: setting a property cannot fail.
            let _ = Reflect::set(o, &k.into(), v);
        };
        set(
            &headers,
            "authorization",
            &format!("Bearer {}", self.token.borrow()).into(),
        );
        set(&init, "method", &method.into());
        if let Body::Wire(bytes) = body {
            set(&headers, "content-type", &WIRE_CONTENT_TYPE.into());
            set(&init, "body", &Uint8Array::from(bytes.as_slice()).into());
        }
        set(&init, "headers", &headers.into());
        let promise = self
            .fetch
            .call2(&JsValue::NULL, &url.into(), &init.into())
            .map_err(|e| SdkError::Offline(describe(&e)))?;
        Ok(JsFuture::from(Promise::resolve(&promise))
            .await
            .map_err(|e| SdkError::Offline(describe(&e)))?
            .unchecked_into())
    }

    /// The body of a 2xx answer, or the server's error.
    async fn ok(&self, method: &str, url: &str, body: Body) -> Result<Vec<u8>, SdkError> {
        let (status, bytes) = self.request(method, url, body).await?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(http_error(status, &bytes))
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, SdkError> {
        let bytes = self.ok("GET", url, Body::None).await?;
        serde_json::from_slice(&bytes).map_err(|e| SdkError::BadResponse(format!("{url}: {e}")))
    }
}

async fn read_whole(response: &FetchResponse) -> Result<Vec<u8>, SdkError> {
    let buffer = response
        .array_buffer()
        .map_err(|e| SdkError::Offline(describe(&e)))?;
    let buffer = JsFuture::from(buffer)
        .await
        .map_err(|e| SdkError::Offline(describe(&e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Hands the body to `piece` as the network delivers it (whole, where the
/// response offers no stream). A failed `piece` cancels the download.
async fn read_streaming(
    response: &FetchResponse,
    piece: SnapshotPieces<'_>,
) -> Result<(), SdkError> {
    let offline = |e: JsValue| SdkError::Offline(describe(&e));
    let Some(stream) = response.body() else {
        return piece(&read_whole(response).await?);
    };
    let reader = stream.get_reader().map_err(offline)?;
    // One buffer in wasm memory for every piece the stream yields.
    let mut buffer = Vec::new();
    loop {
        let next = JsFuture::from(reader.read().map_err(offline)?)
            .await
            .map_err(offline)?;
        if Reflect::get(&next, &"done".into()).is_ok_and(|done| done.is_truthy()) {
            return Ok(());
        }
        let value: Uint8Array = Reflect::get(&next, &"value".into())
            .map_err(offline)?
            .dyn_into()
            .map_err(|_| SdkError::BadResponse("a body piece is not bytes".into()))?;
        buffer.resize(value.length() as usize, 0);
        value.copy_to(&mut buffer);
        if let Err(error) = piece(&buffer) {
            // Nothing more is read; the rest of the body is dropped.
            if let Ok(cancelled) = reader.cancel() {
                let _ = JsFuture::from(cancelled).await;
            }
            return Err(error);
        }
    }
}

/// The server's `{"error": {"code", "message"}}`, or a made-up code for a
/// body that is not one (a proxy's HTML page).
pub fn http_error(status: u16, body: &[u8]) -> SdkError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => SdkError::Http {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => SdkError::Http {
            status,
            code: format!("http_{status}"),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

impl Transport for HttpTransport {
    fn writer_key(&self) -> LocalFuture<'_, Result<String, SdkError>> {
        Box::pin(async move {
            let keys: Keys = self.json(&format!("{}/v1/keys", self.url)).await?;
            Ok(keys.writer)
        })
    }

    fn schema<'a>(
        &'a self,
        collection: &'a CollectionKey,
    ) -> LocalFuture<'a, Result<CollectionSchema, SdkError>> {
        Box::pin(async move {
            let body: SchemaBody = self.json(&self.collection_url(collection)).await?;
            let shards = ShardCount::new(body.shards)
                .map_err(|e| SdkError::BadResponse(format!("collection schema: {e}")))?;
            CollectionSchema::new(
                body.dimension,
                body.metric,
                shards,
                &tidemark_core::limits::Limits::default(),
            )
            .map_err(|e| SdkError::BadResponse(format!("collection schema: {e}")))
        })
    }

    fn push<'a>(
        &'a self,
        collection: &'a CollectionKey,
        frame: Vec<u8>,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>> {
        Box::pin(async move {
            let url = format!("{}/batch", self.collection_url(collection));
            self.ok("POST", &url, Body::Wire(frame)).await
        })
    }

    fn head<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
    ) -> LocalFuture<'a, Result<Offset, SdkError>> {
        Box::pin(async move {
            let url = format!(
                "{}/shards/{}/head",
                self.collection_url(collection),
                shard.0
            );
            let head: HeadBody = self.json(&url).await?;
            Ok(Offset(head.head))
        })
    }

    fn log<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
        from: Offset,
        to: Offset,
    ) -> LocalFuture<'a, Result<Vec<u8>, SdkError>> {
        Box::pin(async move {
            let url = format!(
                "{}/shards/{}/log?from={}&to={}",
                self.collection_url(collection),
                shard.0,
                from.0,
                to.0
            );
            self.ok("GET", &url, Body::None).await
        })
    }

    fn snapshot<'a>(
        &'a self,
        collection: &'a CollectionKey,
        shard: ShardId,
        piece: SnapshotPieces<'a>,
    ) -> LocalFuture<'a, Result<bool, SdkError>> {
        Box::pin(async move {
            let url = format!(
                "{}/shards/{}/snapshot",
                self.collection_url(collection),
                shard.0
            );
            let response = self.send("GET", &url, Body::None).await?;
            match response.status() {
                200..=299 => read_streaming(&response, piece).await.map(|()| true),
                404 => Ok(false),
                status => Err(http_error(status, &read_whole(&response).await?)),
            }
        })
    }
}
