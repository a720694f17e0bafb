//! The writer, as the edge talks to it: the same HTTP API as clients
//! (docs/api.md), with the caller's own token, so the writer judges every
//! fetch by the same claims the edge already checked.
//!
//! Nothing here trusts what comes back: binary answers are verified by the
//! caller ([`crate::catch_up`]) with the writer's configured key before
//! anything is applied.

use futures_util::StreamExt;
use serde::Deserialize;
use tidemark_core::limits::Limits;
use tidemark_core::log::Offset;
use tidemark_core::model::{CollectionKey, CollectionSchema};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::vector::Metric;
use worker::js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};

use crate::error::EdgeError;

pub struct Upstream<'a> {
    pub base: &'a str,
    pub token: &'a str,
}

/// A writer answer read whole.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
struct CollectionInfo {
    dimension: usize,
    metric: Metric,
    shards: u32,
}

#[derive(Deserialize)]
struct Head {
    head: u64,
}

#[derive(Deserialize)]
struct WriterError {
    error: WriterErrorBody,
}

#[derive(Deserialize)]
struct WriterErrorBody {
    code: String,
    message: String,
}

pub fn collection_path(key: &CollectionKey) -> String {
    format!("/v1/ns/{}/collections/{}", key.namespace, key.collection)
}

pub fn shard_path(key: &CollectionKey, shard: ShardId) -> String {
    format!("{}/shards/{}", collection_path(key), shard.0)
}

impl Upstream<'_> {
    /// Sends a request to the writer and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Answer, EdgeError> {
        let response = self
            .fetch(method, path_and_query, content_type, body)
            .await?;
        let headers = response.headers();
        let content_type = headers.get("content-type").ok().flatten();
        let cache_control = headers.get("cache-control").ok().flatten();
        let status = response.status_code();
        let body = read_body(response).await?;
        Ok(Answer {
            status,
            content_type,
            cache_control,
            body,
        })
    }

    /// Sends a request to the writer; the body is the caller's to read.
    async fn fetch(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response, EdgeError> {
        let headers = Headers::new();
        headers.set("authorization", &format!("Bearer {}", self.token))?;
        if let Some(content_type) = content_type {
            headers.set("content-type", content_type)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if let Some(body) = body {
            init.with_body(Some(Uint8Array::from(body).into()));
        }
        let url = format!("{}{}", self.base, path_and_query);
        let request = Request::new_with_init(&url, &init)?;
        Fetch::Request(request)
            .send()
            .await
            .map_err(|e| EdgeError::unreachable(format!("the writer at {}: {e}", self.base)))
    }

    async fn get_ok(&self, path: &str) -> Result<Answer, EdgeError> {
        let answer = self.send(Method::Get, path, None, None).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(relay_error(&answer))
        }
    }

    /// The collection's schema. It is not signed (the writer serves it as
    /// JSON); it only shapes the replica, and everything the replica then
    /// holds is signed data checked against it.
    pub async fn schema(&self, key: &CollectionKey) -> Result<CollectionSchema, EdgeError> {
        let answer = self.get_ok(&collection_path(key)).await?;
        let info: CollectionInfo = serde_json::from_slice(&answer.body)
            .map_err(|e| EdgeError::untrusted(format!("the writer's collection answer: {e}")))?;
        let shards = ShardCount::new(info.shards)
            .map_err(|e| EdgeError::untrusted(format!("the writer's collection answer: {e}")))?;
        CollectionSchema::new(info.dimension, info.metric, shards, &Limits::default())
            .map_err(|e| EdgeError::untrusted(format!("the writer's collection answer: {e}")))
    }

    pub async fn head(&self, key: &CollectionKey, shard: ShardId) -> Result<Offset, EdgeError> {
        let answer = self
            .get_ok(&format!("{}/head", shard_path(key, shard)))
            .await?;
        let head: Head = serde_json::from_slice(&answer.body)
            .map_err(|e| EdgeError::untrusted(format!("the writer's head answer: {e}")))?;
        Ok(Offset(head.head))
    }

    /// The signed frame of log entries `[from, to)` (or fewer, up to the head).
    pub async fn log(
        &self,
        key: &CollectionKey,
        shard: ShardId,
        from: Offset,
        to: Offset,
    ) -> Result<Vec<u8>, EdgeError> {
        let path = format!("{}/log?from={}&to={}", shard_path(key, shard), from, to);
        Ok(self.get_ok(&path).await?.body)
    }

    /// The latest signed snapshot, unread, `None` if the writer has none yet.
    pub async fn snapshot(
        &self,
        key: &CollectionKey,
        shard: ShardId,
    ) -> Result<Option<Body>, EdgeError> {
        let path = format!("{}/snapshot", shard_path(key, shard));
        let response = self.fetch(Method::Get, &path, None, None).await?;
        if response.status_code() == 200 {
            return Ok(Some(Body { response }));
        }
        let answer = Answer {
            status: response.status_code(),
            content_type: None,
            cache_control: None,
            body: read_body(response).await?,
        };
        match answer.status {
            404 if error_code(&answer).as_deref() == Some("not_found") => Ok(None),
            _ => Err(relay_error(&answer)),
        }
    }
}

/// A writer answer to be read in pieces (a snapshot, tens of megabytes).
pub struct Body {
    response: Response,
}

/// Bytes handed to the reader at a time: large enough that crossing into
/// wasm costs nothing next to decoding them, small next to a snapshot (the
/// piece and the stream's buffer are both transient heap).
const FEED_BYTES: usize = 256 << 10;

impl Body {
    /// The length the writer announced (its word, not yet verified).
    pub fn length(&self) -> Option<usize> {
        content_length(&self.response)
    }

    /// Hands the body to `take`, piece by piece, in order; stops at its
    /// first error. The wasm heap holds one piece at a time, never the body.
    ///
    /// With a `content-length` (the writer always sends one) the body is
    /// read with a BYOB reader's `readAtLeast` (a workerd extension) into
    /// one reused buffer, [`FEED_BYTES`] or more at a time: the pieces are
    /// decoded while the rest is still arriving, with few crossings into
    /// wasm (chunk by chunk through workers-rs's stream took ~190 ms for
    /// 16 MB on loopback; reading it all before decoding any of it left the
    /// transfer, ~20 ms of that, unoverlapped). A length above the frame
    /// limit is refused before reading.
    /// Without one, or where the runtime offers no `readAtLeast`, the
    /// stream's chunks are handed on as they come, bounded by the limit.
    pub async fn feed(
        mut self,
        mut take: impl FnMut(&[u8]) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        let limit = Limits::default().max_frame_bytes;
        if let Some(length) = self.length() {
            if length > limit {
                return Err(too_long(limit));
            }
            let raw = worker::web_sys::Response::from(self.response);
            if let Some(reader) = raw.body().and_then(|b| ByobReader::new(&b)) {
                return reader.feed(length, take).await;
            }
            self.response = Response::from(raw);
        }
        let mut stream = self.response.stream().map_err(|e| reading(e.to_string()))?;
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| reading(e.to_string()))?;
            total += chunk.len();
            if total > limit {
                return Err(too_long(limit));
            }
            take(&chunk)?;
        }
        Ok(())
    }
}

/// A BYOB reader with workerd's `readAtLeast`, reading into one buffer
/// that each read hands back (the runtime transfers it to fill it).
struct ByobReader {
    reader: JsValue,
    read_at_least: Function,
}

impl ByobReader {
    /// `None` where the stream offers no BYOB reader with `readAtLeast`.
    fn new(stream: &worker::web_sys::ReadableStream) -> Option<Self> {
        let options = Object::new();
        Reflect::set(&options, &"mode".into(), &"byob".into()).ok()?;
        let get_reader: Function = Reflect::get(stream, &"getReader".into())
            .ok()?
            .dyn_into()
            .ok()?;
        let reader = get_reader.call1(stream, &options).ok()?;
        let Some(read_at_least) = Reflect::get(&reader, &"readAtLeast".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
        else {
            // Leave the stream unlocked for the chunk-by-chunk path.
            if let Ok(release) = Reflect::get(&reader, &"releaseLock".into())
                && let Ok(release) = release.dyn_into::<Function>()
            {
                let _ = release.call0(&reader);
            }
            return None;
        };
        Some(Self {
            reader,
            read_at_least,
        })
    }

    /// Hands the `length` bytes the body announced to `take`; more or fewer
    /// is an error. Cancels the stream when stopping early.
    async fn feed(
        self,
        length: usize,
        mut take: impl FnMut(&[u8]) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        let result = self.read_all(length, &mut take).await;
        if result.is_err()
            && let Ok(cancel) = Reflect::get(&self.reader, &"cancel".into())
            && let Ok(cancel) = cancel.dyn_into::<Function>()
        {
            // Best effort: the answer is the error either way.
            let _ = cancel.call0(&self.reader);
        }
        result
    }

    async fn read_all(
        &self,
        length: usize,
        take: &mut impl FnMut(&[u8]) -> Result<(), EdgeError>,
    ) -> Result<(), EdgeError> {
        let capacity = (4 * FEED_BYTES).min(length.max(1)) as u32;
        let mut buffer = Uint8Array::new_with_length(capacity);
        let mut piece = Vec::new();
        let mut total = 0;
        loop {
            let at_least = FEED_BYTES.min(length - total.min(length)).max(1) as u32;
            let promise = self
                .read_at_least
                .call2(&self.reader, &at_least.into(), &buffer)
                .map_err(|e| reading(format!("{e:?}")))?;
            let result = JsFuture::from(Promise::from(promise))
                .await
                .map_err(|e| reading(format!("{e:?}")))?;
            let done = Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy());
            let value = Reflect::get(&result, &"value".into())
                .ok()
                .and_then(|v| v.dyn_into::<Uint8Array>().ok());
            if let Some(value) = &value {
                let n = value.length() as usize;
                total += n;
                if total > length {
                    return Err(EdgeError::untrusted(format!(
                        "the writer's answer is longer than the {length} bytes it announced"
                    )));
                }
                // Into wasm a piece at a time: the heap never holds a read.
                let mut at = 0;
                while at < n {
                    let end = (at + FEED_BYTES).min(n);
                    piece.resize(end - at, 0);
                    value.subarray(at as u32, end as u32).copy_to(&mut piece);
                    take(&piece)?;
                    at = end;
                }
            }
            if done {
                break;
            }
            // The filled view's buffer is the one to read into next.
            let Some(value) = value else {
                return Err(reading("a read gave no buffer back".into()));
            };
            buffer = Uint8Array::new_with_byte_offset_and_length(&value.buffer(), 0, capacity);
        }
        if total != length {
            return Err(EdgeError::untrusted(format!(
                "the writer's answer ended after {total} of the {length} bytes it announced"
            )));
        }
        Ok(())
    }
}

/// Reads a body of announced `length` natively, in one call, outside the
/// wasm heap; a length above the frame limit is refused before reading.
async fn read_native(response: Response, length: usize) -> Result<Uint8Array, EdgeError> {
    let limit = Limits::default().max_frame_bytes;
    if length > limit {
        return Err(too_long(limit));
    }
    let response: worker::web_sys::Response = response.into();
    let buffer = response
        .array_buffer()
        .map_err(|e| reading(format!("{e:?}")))?;
    let buffer = JsFuture::from(buffer)
        .await
        .map_err(|e| reading(format!("{e:?}")))?;
    Ok(Uint8Array::new(&buffer))
}

fn reading(e: String) -> EdgeError {
    EdgeError::unreachable(format!("reading the writer's answer: {e}"))
}

fn too_long(limit: usize) -> EdgeError {
    EdgeError::untrusted(format!(
        "the writer's answer is longer than the {} MB frame limit",
        limit >> 20
    ))
}

fn content_length(response: &Response) -> Option<usize> {
    response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|length| length.parse::<usize>().ok())
}

/// Reads a whole body (log ranges, JSON answers) into one allocation of
/// its length.
///
/// workers-rs's `Response::bytes` appends chunk after chunk to a growing
/// `Vec`, whose doubling leaves abandoned blocks in a wasm heap that never
/// shrinks. With a `content-length` (the writer always sends one) the
/// runtime reads the body natively in one call and it is copied once into a
/// buffer of exactly its size; a length above the frame limit is refused
/// before reading (the header is the writer's word, not yet verified).
/// Without a length, chunks are collected, bounded by the same limit.
async fn read_body(mut response: Response) -> Result<Vec<u8>, EdgeError> {
    let limit = Limits::default().max_frame_bytes;
    if let Some(length) = content_length(&response) {
        return Ok(read_native(response, length).await?.to_vec());
    }
    let Ok(mut stream) = response.stream() else {
        // Not a stream (an empty or in-memory body): nothing to grow.
        return response.bytes().await.map_err(|e| reading(e.to_string()));
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| reading(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(too_long(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn error_code(answer: &Answer) -> Option<String> {
    serde_json::from_slice::<WriterError>(&answer.body)
        .ok()
        .map(|e| e.error.code)
}

/// The writer's own error, passed on: its codes are the API's codes. An
/// answer that is not one (a proxy's page) becomes `upstream_unreachable`.
pub fn relay_error(answer: &Answer) -> EdgeError {
    match serde_json::from_slice::<WriterError>(&answer.body) {
        Ok(WriterError { error }) => {
            let code = STABLE_CODES
                .iter()
                .find(|&&c| c == error.code)
                .copied()
                .unwrap_or("unavailable");
            EdgeError::new(answer.status, code, error.message)
        }
        Err(_) => EdgeError::unreachable(format!(
            "the writer answered {} without a Tidemark error body",
            answer.status
        )),
    }
}

/// docs/api.md's codes; a code outside them is not relayed verbatim.
const STABLE_CODES: &[&str] = &[
    "invalid_json",
    "invalid_request",
    "invalid_vector",
    "invalid_write",
    "invalid_envelope",
    "unauthenticated",
    "forbidden",
    "not_found",
    "collection_exists",
    "missing_dependencies",
    "body_too_large",
    "batch_too_large",
    "record_too_large",
    "unsupported_media_type",
    "too_many_connections",
    "unavailable",
    "behind_consistency_token",
];
