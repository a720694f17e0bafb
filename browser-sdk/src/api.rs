//! The JavaScript API: `Tidemark.open(...)`, `db.collection(name)`, the
//! collection's reads and writes, `sync()`, `status()` and events, plus the
//! background sync loop. Each method converts its arguments, calls
//! [`Client`] / [`LocalCollection`], and converts the result back.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Float32Array, Function, Object, Promise, Reflect};
use serde_json::{Value, json};
use tidemark_core::fields::JsonEdit;
use tidemark_core::vector::Filter;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise, spawn_local};

use crate::client::Client;
use crate::convert::{fields_from_js, from_js, to_js, vector_from_js};
use crate::error::SdkError;
use crate::idb_store::IdbStore;
use crate::local::{LocalCollection, SearchOptions};
use crate::store::{MemoryStore, Store};
use crate::sync::backoff_ms;
use crate::transport::{HttpTransport, Transport};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Where a client keeps its replica and outbox. */
export type Persist = "indexeddb" | "memory";

export interface OpenOptions {
  /** The writer's or an edge's base URL, e.g. "https://db.example.com". */
  url: string;
  namespace: string;
  /** A bearer token (EdDSA JWT) with the `read` and `write` scopes. */
  token: string;
  /** Default: "indexeddb" where it exists, else "memory". */
  persist?: Persist;
  /** IndexedDB database name; default `tidemark:<url>:<namespace>`. */
  name?: string;
  /** The writer's Ed25519 public key (hex). Default: fetched once from `/v1/keys` and pinned. */
  writerKey?: string;
  /** Run the sync loop in the background (default true). */
  autoSync?: boolean;
  /** Pull interval of the sync loop when idle, ms (default 5000). */
  pollIntervalMs?: number;
  /** A fetch-compatible function (default: the global fetch). */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** Called on a 401: resolve to a new token, or null to give up. */
  onTokenExpired?: () => string | null | Promise<string | null>;
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type Fields = { [key: string]: JsonValue };
export type Vector = Float32Array | number[];

export interface StoredRecord {
  id: string;
  fields: Fields;
  vector: Float32Array | null;
}

export type Filter =
  | { eq: { field: string; value: JsonValue } }
  | { in: { field: string; values: JsonValue[] } }
  | { range: { field: string; gt?: number; gte?: number; lt?: number; lte?: number } }
  | { and: Filter[] };

export interface SearchOptions {
  /** Results to return (default 10, at most 1000). */
  k?: number;
  filter?: Filter;
  /** Compare every record instead of walking the HNSW graph. */
  exact?: boolean;
  /** HNSW beam width (default 64). */
  ef?: number;
}

export interface SearchHit {
  id: string;
  /** The metric's similarity: higher is closer. */
  score: number;
  fields: Fields;
}

export interface TidemarkError {
  code: string;
  message: string;
}

export interface TidemarkStatus {
  online: boolean;
  syncing: boolean;
  /** Local writes not yet acknowledged by the writer. */
  pending: number;
  /** Per collection, per shard: log entries applied. */
  tidemark: { [collection: string]: { [shard: string]: number } };
  lastError: TidemarkError | null;
}

export interface ChangeEvent {
  collection: string;
  ids: string[];
  source: "local" | "remote";
}

export interface SyncProgressEvent {
  collection: string;
  shard: number;
  phase: "bootstrap" | "catchup";
  done: number;
  total: number;
  percent: number;
}

export interface RejectedEvent {
  collection: string;
  id: string;
  code: string;
  message: string;
}

export interface SyncReport {
  acknowledged: number;
  applied: number;
  settled: number;
}

export interface TidemarkEvents {
  change: ChangeEvent;
  sync: SyncProgressEvent;
  status: TidemarkStatus;
  error: TidemarkError;
  rejected: RejectedEvent;
}

export type TidemarkEventName = keyof TidemarkEvents;
export type TidemarkListener = (event: TidemarkEvents[TidemarkEventName]) => void;
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

const DEFAULT_POLL_MS: u32 = 5_000;
const BACKOFF_BASE_MS: u32 = 500;
const BACKOFF_MAX_MS: u32 = 60_000;

/// An `online` / `offline` handler installed on the global object.
type NetListener = (&'static str, Closure<dyn FnMut()>);

/// Serializes sync passes and runs the background loop.
struct Runner {
    client: Rc<Client>,
    /// The last pass started; the next one starts after it.
    tail: RefCell<Option<Promise>>,
    /// Cuts the loop's current sleep short: (resolve, timer id).
    wake: RefCell<Option<(Function, JsValue)>>,
    poll_ms: u32,
    attempt: Cell<u32>,
    /// The network as the host's `online` / `offline` events last reported
    /// it (initially `navigator.onLine`); the loop does not try while false.
    net_up: Cell<bool>,
    /// online/offline listeners on the global object, removed on close.
    net_listeners: RefCell<Vec<NetListener>>,
}

impl Runner {
    /// A pass that starts after every pass already asked for.
    fn sync(self: &Rc<Self>) -> Promise {
        let previous = self.tail.borrow_mut().take();
        let client = self.client.clone();
        let promise = future_to_promise(async move {
            if let Some(previous) = previous {
                let _ = JsFuture::from(previous).await;
            }
            let report = client.sync().await?;
            Ok(to_js(&json!({
                "acknowledged": report.acknowledged,
                "applied": report.applied,
                "settled": report.settled,
            })))
        });
        *self.tail.borrow_mut() = Some(promise.clone());
        promise
    }

    fn wake(&self) {
        if let Some((resolve, timer)) = self.wake.borrow_mut().take() {
            clear_timeout(&timer);
            let _ = resolve.call0(&JsValue::NULL);
        }
    }

    async fn sleep(&self, ms: u32) {
        let promise = Promise::new(&mut |resolve, _reject| {
            let timer = set_timeout(&resolve, ms.min(i32::MAX as u32) as i32);
            *self.wake.borrow_mut() = Some((resolve, timer));
        });
        let _ = JsFuture::from(promise).await;
        self.wake.borrow_mut().take();
    }

    /// Syncs, then waits for the poll interval, a local write or the
    /// network coming back; after a retryable failure waits with backoff.
    async fn run_loop(self: Rc<Self>) {
        while !self.client.is_closed() {
            let delay = if self.net_up.get() {
                match JsFuture::from(self.sync()).await {
                    Ok(_) => {
                        self.attempt.set(0);
                        self.poll_ms
                    }
                    Err(_) => {
                        let attempt = self.attempt.get();
                        self.attempt.set(attempt.saturating_add(1));
                        backoff_ms(
                            attempt,
                            BACKOFF_BASE_MS,
                            BACKOFF_MAX_MS,
                            js_sys::Math::random(),
                        )
                    }
                }
            } else {
                // Offline: only the `online` event (or a close) wakes us.
                u32::MAX / 2
            };
            if self.client.is_closed() {
                break;
            }
            self.sleep(delay).await;
        }
    }

    fn listen_to_network(self: &Rc<Self>) {
        let global = js_sys::global();
        let Ok(add) = Reflect::get(&global, &"addEventListener".into()) else {
            return;
        };
        let Ok(add) = add.dyn_into::<Function>() else {
            return;
        };
        for (event, online) in [("online", true), ("offline", false)] {
            let weak = Rc::downgrade(self);
            let handler = Closure::<dyn FnMut()>::new(move || {
                if let Some(runner) = weak.upgrade() {
                    runner.net_up.set(online);
                    runner.client.set_online(online);
                    if online {
                        runner.attempt.set(0);
                        runner.wake();
                    }
                }
            });
            let _ = add.call2(&global, &event.into(), handler.as_ref().unchecked_ref());
            self.net_listeners.borrow_mut().push((event, handler));
        }
    }

    fn close(&self) {
        self.client.close();
        let global = js_sys::global();
        if let Ok(remove) = Reflect::get(&global, &"removeEventListener".into())
            .and_then(|f| f.dyn_into::<Function>())
        {
            for (event, handler) in self.net_listeners.borrow_mut().drain(..) {
                let _ = remove.call2(&global, &event.into(), handler.as_ref().unchecked_ref());
            }
        }
        self.wake();
    }
}

/// `navigator.onLine` where there is one; node has no notion of it.
fn navigator_online() -> bool {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .filter(|n| n.is_object())
        .and_then(|n| Reflect::get(&n, &"onLine".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// A connection to one namespace: `await Tidemark.open({ url, namespace, token })`.
#[wasm_bindgen]
pub struct Tidemark {
    runner: Rc<Runner>,
}

struct Options {
    url: String,
    namespace: String,
    token: String,
    persist: Option<String>,
    name: Option<String>,
    writer_key: Option<String>,
    auto_sync: bool,
    poll_ms: u32,
    fetch: Option<Function>,
    on_token_expired: Option<Function>,
}

fn get(options: &JsValue, key: &str) -> JsValue {
    Reflect::get(options, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn opt_string(options: &JsValue, key: &str) -> Result<Option<String>, SdkError> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| SdkError::InvalidArgument(format!("{key} must be a string")))
}

fn opt_function(options: &JsValue, key: &str) -> Result<Option<Function>, SdkError> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_into::<Function>()
        .map(Some)
        .map_err(|_| SdkError::InvalidArgument(format!("{key} must be a function")))
}

impl Options {
    fn parse(options: &JsValue) -> Result<Self, SdkError> {
        if !options.is_object() {
            return Err(SdkError::InvalidArgument(
                "Tidemark.open takes { url, namespace, token }".into(),
            ));
        }
        let required = |key: &str| {
            opt_string(options, key)?
                .ok_or_else(|| SdkError::InvalidArgument(format!("{key} is required")))
        };
        let poll = get(options, "pollIntervalMs");
        Ok(Self {
            url: required("url")?,
            namespace: required("namespace")?,
            token: required("token")?,
            persist: opt_string(options, "persist")?,
            name: opt_string(options, "name")?,
            writer_key: opt_string(options, "writerKey")?,
            auto_sync: get(options, "autoSync").as_bool().unwrap_or(true),
            poll_ms: poll
                .as_f64()
                .filter(|ms| *ms >= 1.0)
                .map_or(DEFAULT_POLL_MS, |ms| ms.min(86_400_000.0) as u32),
            fetch: opt_function(options, "fetch")?,
            on_token_expired: opt_function(options, "onTokenExpired")?,
        })
    }
}

fn has_indexed_db() -> bool {
    Reflect::get(&js_sys::global(), &"indexedDB".into()).is_ok_and(|f| f.is_object())
}

impl Tidemark {
    /// A client over any store and transport (tests, other hosts).
    pub fn from_client(client: Rc<Client>, auto_sync: bool, poll_ms: u32) -> Tidemark {
        let runner = Rc::new(Runner {
            client,
            tail: RefCell::new(None),
            wake: RefCell::new(None),
            poll_ms,
            attempt: Cell::new(0),
            net_up: Cell::new(navigator_online()),
            net_listeners: RefCell::new(Vec::new()),
        });
        runner.listen_to_network();
        if auto_sync {
            spawn_local(runner.clone().run_loop());
        }
        Tidemark { runner }
    }

    pub fn client(&self) -> &Rc<Client> {
        &self.runner.client
    }

    async fn open_inner(options: JsValue) -> Result<Tidemark, SdkError> {
        let options = Options::parse(&options)?;
        let persist = options.persist.clone().unwrap_or_else(|| {
            if has_indexed_db() {
                "indexeddb".into()
            } else {
                "memory".into()
            }
        });
        let store: Rc<dyn Store> = match persist.as_str() {
            "memory" => Rc::new(MemoryStore::new()),
            "indexeddb" => {
                let name = options
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("tidemark:{}:{}", options.url, options.namespace));
                Rc::new(IdbStore::open(&name).await?)
            }
            other => {
                return Err(SdkError::InvalidArgument(format!(
                    "persist must be \"indexeddb\" or \"memory\", not {other:?}"
                )));
            }
        };
        let transport: Rc<dyn Transport> = Rc::new(HttpTransport::new(
            &options.url,
            options.token.clone(),
            options.fetch.clone(),
            options.on_token_expired.clone(),
        )?);
        let client = Client::open(
            &options.namespace,
            options.writer_key.as_deref(),
            store,
            transport,
        )
        .await?;
        Ok(Tidemark::from_client(
            client,
            options.auto_sync,
            options.poll_ms,
        ))
    }
}

#[wasm_bindgen]
impl Tidemark {
    /// Opens a client: loads what it persisted, pins the writer's key, and
    /// (unless `autoSync: false`) starts syncing in the background.
    #[wasm_bindgen(unchecked_return_type = "Promise<Tidemark>")]
    pub fn open(#[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue) -> Promise {
        future_to_promise(async move { Ok(JsValue::from(Tidemark::open_inner(options).await?)) })
    }

    /// A collection, from local storage if this client has it, else its
    /// schema comes from the server (once).
    #[wasm_bindgen(unchecked_return_type = "Promise<Collection>")]
    pub fn collection(&self, name: String) -> Promise {
        let runner = self.runner.clone();
        future_to_promise(async move {
            let local = runner.client.collection(&name).await?;
            runner.wake();
            Ok(JsValue::from(Collection {
                runner,
                local,
                name,
            }))
        })
    }

    /// Runs one sync pass now (after any pass already running): push the
    /// outbox, pull every shard, settle, persist.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncReport>")]
    pub fn sync(&self) -> Promise {
        self.runner.sync()
    }

    #[wasm_bindgen(unchecked_return_type = "TidemarkStatus")]
    pub fn status(&self) -> JsValue {
        to_js(&self.runner.client.status())
    }

    /// Listens to `change`, `sync` (progress), `status`, `error` or `rejected`.
    pub fn on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TidemarkEventName")] event: String,
        #[wasm_bindgen(unchecked_param_type = "TidemarkListener")] listener: Function,
    ) {
        self.runner.client.add_listener(&event, listener);
    }

    pub fn off(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TidemarkEventName")] event: String,
        #[wasm_bindgen(unchecked_param_type = "TidemarkListener")] listener: Function,
    ) {
        self.runner.client.remove_listener(&event, &listener);
    }

    /// Stops the sync loop and listeners; the data stays persisted.
    pub fn close(&self) {
        self.runner.close();
    }
}

/// One collection: reads and searches are local and immediate; writes are
/// durable locally when their promise resolves and reach the writer on sync.
#[wasm_bindgen]
pub struct Collection {
    runner: Rc<Runner>,
    local: Rc<RefCell<LocalCollection>>,
    name: String,
}

impl Collection {
    fn write(&self, id: String, edit: Option<JsonEdit>, vector: Option<Vec<f32>>) -> Promise {
        let runner = self.runner.clone();
        let local = self.local.clone();
        future_to_promise(async move {
            let changed = runner.client.write(&local, &id, edit, vector).await?;
            if changed {
                runner.wake();
            }
            Ok(JsValue::from_bool(changed))
        })
    }

    fn rejected(error: SdkError) -> Promise {
        Promise::reject(&error.into())
    }
}

#[wasm_bindgen]
impl Collection {
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Replaces the record's fields (and vector, if given). Resolves to
    /// `false` if nothing changed.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn put(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Vector | null")] vector: Option<JsValue>,
    ) -> Promise {
        let vector = vector.unwrap_or(JsValue::UNDEFINED);
        match (fields_from_js(&fields, "fields"), vector_from_js(&vector)) {
            (Ok(fields), Ok(vector)) => self.write(id, Some(JsonEdit::Put(fields)), vector),
            (Err(e), _) | (_, Err(e)) => Self::rejected(e),
        }
    }

    /// Merges `patch` into the fields (RFC 7386: `null` removes a key).
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn update(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] patch: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Vector | null")] vector: Option<JsValue>,
    ) -> Promise {
        let vector = vector.unwrap_or(JsValue::UNDEFINED);
        match (fields_from_js(&patch, "patch"), vector_from_js(&vector)) {
            (Ok(patch), Ok(vector)) => self.write(id, Some(JsonEdit::Patch(patch)), vector),
            (Err(e), _) | (_, Err(e)) => Self::rejected(e),
        }
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn delete(&self, id: String) -> Promise {
        self.write(id, Some(JsonEdit::Delete), None)
    }

    /// The record as this client sees it (pending writes included).
    #[wasm_bindgen(unchecked_return_type = "StoredRecord | undefined")]
    pub fn get(&self, id: String) -> Result<JsValue, JsValue> {
        let record = self.local.borrow().get(&id)?;
        let Some(record) = record else {
            return Ok(JsValue::UNDEFINED);
        };
        let out = Object::new();
        let _ = Reflect::set(&out, &"id".into(), &id.into());
        let _ = Reflect::set(
            &out,
            &"fields".into(),
            &to_js(&Value::Object(record.fields)),
        );
        let vector = record
            .vector
            .map_or(JsValue::NULL, |v| Float32Array::from(v.as_slice()).into());
        let _ = Reflect::set(&out, &"vector".into(), &vector);
        Ok(out.into())
    }

    /// Top-k by the collection's metric over the local replica and pending
    /// writes.
    #[wasm_bindgen(unchecked_return_type = "SearchHit[]")]
    pub fn search(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Vector")] vector: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SearchOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let vector = vector_from_js(&vector)?
            .ok_or_else(|| SdkError::InvalidArgument("search needs a vector".into()))?;
        let options = search_options(&options)?;
        let hits = self.local.borrow().search(&vector, &options)?;
        let hits: Vec<Value> = hits
            .into_iter()
            .map(|h| json!({"id": h.id, "score": h.score, "fields": h.fields}))
            .collect();
        Ok(to_js(&Value::Array(hits)))
    }

    /// Local writes not yet acknowledged by the writer.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> usize {
        self.local.borrow().pending()
    }
}

fn search_options(options: &JsValue) -> Result<SearchOptions, SdkError> {
    let mut out = SearchOptions {
        k: 10,
        ..SearchOptions::default()
    };
    if options.is_undefined() || options.is_null() {
        return Ok(out);
    }
    if let Some(k) = get(options, "k").as_f64() {
        out.k = k.max(0.0) as usize;
    }
    out.exact = get(options, "exact").as_bool().unwrap_or(false);
    out.ef = get(options, "ef").as_f64().map(|ef| ef.max(0.0) as usize);
    let filter = get(options, "filter");
    if !filter.is_undefined() && !filter.is_null() {
        let value = from_js(&filter, "filter")?;
        let filter: Filter = serde_json::from_value(value)
            .map_err(|e| SdkError::InvalidArgument(format!("filter: {e}")))?;
        out.filter = Some(filter);
    }
    Ok(out)
}
