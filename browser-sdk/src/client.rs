//! A client: one namespace at one server, its store, its open collections,
//! its status and its listeners. The JS classes in [`crate::api`] wrap it;
//! tests drive it directly with any [`Store`] and [`Transport`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::Function;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidemark_core::fields::JsonEdit;
use tidemark_core::model::{CollectionKey, CollectionName, CollectionSchema, Namespace};
use tidemark_core::shard::ShardCount;
use tidemark_core::vector::Metric;
use tidemark_core::{ActorId, VerifyingKey};
use wasm_bindgen::JsValue;

use crate::error::SdkError;
use crate::local::LocalCollection;
use crate::store::{Store, keys};
use crate::sync::{SyncEvent, SyncPass, SyncReport};
use crate::transport::Transport;

/// What a client remembers between sessions besides its collections.
#[derive(Serialize, Deserialize, Default)]
struct Meta {
    /// The writer's public key, hex: pinned on first contact (or given by
    /// the app), so a client that reopens offline still verifies.
    writer_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SavedSchema {
    dimension: usize,
    metric: Metric,
    shards: u32,
}

/// The last error, as JS sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    pub code: String,
    pub message: String,
}

impl From<&SdkError> for LastError {
    fn from(error: &SdkError) -> Self {
        Self {
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

pub struct Client {
    namespace: Namespace,
    store: Rc<dyn Store>,
    transport: Rc<dyn Transport>,
    writer_key: RefCell<Option<VerifyingKey>>,
    collections: RefCell<BTreeMap<String, Rc<RefCell<LocalCollection>>>>,
    listeners: RefCell<Vec<(String, Function)>>,
    online: Cell<bool>,
    syncing: Cell<bool>,
    last_error: RefCell<Option<LastError>>,
    closed: Cell<bool>,
}

pub fn parse_writer_key(hex: &str) -> Result<VerifyingKey, SdkError> {
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| SdkError::InvalidArgument("writer key is not hex".into()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SdkError::InvalidArgument("writer key must be 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| SdkError::InvalidArgument("writer key is not an Ed25519 key".into()))
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

impl Client {
    /// Opens a client. The writer key comes from `writer_key`, else from the
    /// store, else from the server; a client that is offline on first open
    /// fetches it on its first sync.
    pub async fn open(
        namespace: &str,
        writer_key: Option<&str>,
        store: Rc<dyn Store>,
        transport: Rc<dyn Transport>,
    ) -> Result<Rc<Client>, SdkError> {
        let namespace =
            Namespace::new(namespace).map_err(|e| SdkError::InvalidArgument(e.to_string()))?;
        let client = Rc::new(Client {
            namespace,
            store,
            transport,
            writer_key: RefCell::new(None),
            collections: RefCell::new(BTreeMap::new()),
            listeners: RefCell::new(Vec::new()),
            online: Cell::new(true),
            syncing: Cell::new(false),
            last_error: RefCell::new(None),
            closed: Cell::new(false),
        });
        let meta: Meta = match client.store.get(keys::META).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => Meta::default(),
        };
        let key = match (writer_key, meta.writer_key) {
            (Some(given), _) => Some(given.to_string()),
            (None, Some(saved)) => Some(saved),
            (None, None) => match client.transport.writer_key().await {
                Ok(key) => Some(key),
                Err(SdkError::Offline(_)) => {
                    client.online.set(false);
                    None
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(key) = key {
            client.set_writer_key(&key).await?;
        }
        Ok(client)
    }

    async fn set_writer_key(&self, hex: &str) -> Result<VerifyingKey, SdkError> {
        let key = parse_writer_key(hex)?;
        *self.writer_key.borrow_mut() = Some(key);
        let meta = Meta {
            writer_key: Some(hex.to_string()),
        };
        let bytes = serde_json::to_vec(&meta).unwrap_or_default();
        self.store
            .write_all(vec![(keys::META.to_string(), Some(bytes))])
            .await?;
        Ok(key)
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Opens a collection: from the store if this client has seen it, else
    /// its schema comes from the server.
    pub async fn collection(&self, name: &str) -> Result<Rc<RefCell<LocalCollection>>, SdkError> {
        self.check_open()?;
        if let Some(open) = self.collections.borrow().get(name) {
            return Ok(open.clone());
        }
        let collection =
            CollectionName::new(name).map_err(|e| SdkError::InvalidArgument(e.to_string()))?;
        let key = CollectionKey::new(self.namespace.clone(), collection);
        let local = match self.store.get(&keys::schema(name)).await? {
            Some(bytes) => {
                let saved: SavedSchema = serde_json::from_slice(&bytes)
                    .map_err(|e| SdkError::Storage(format!("saved schema: {e}")))?;
                let shards = ShardCount::new(saved.shards)
                    .map_err(|e| SdkError::Storage(format!("saved schema: {e}")))?;
                let schema = CollectionSchema::new(
                    saved.dimension,
                    saved.metric,
                    shards,
                    &Default::default(),
                )
                .map_err(|e| SdkError::Storage(format!("saved schema: {e}")))?;
                let outbox = self
                    .store
                    .get(&keys::outbox(name))
                    .await?
                    .ok_or_else(|| SdkError::Storage(format!("{name}: outbox missing")))?;
                let mut shards = Vec::new();
                for shard in schema.shard_count.shards() {
                    let snapshot = self.store.get(&keys::shard(name, shard.0)).await?;
                    let segment = self.store.get(&keys::segment(name, shard.0)).await?;
                    shards.push((snapshot, segment));
                }
                LocalCollection::restore(key, schema, &outbox, shards)?
            }
            None => {
                let schema = self.transport.schema(&key).await?;
                // Registered before persisting, so a concurrent call that
                // also waited for the schema takes this one (one actor, one
                // outbox) instead of persisting a second.
                if let Some(open) = self.collections.borrow().get(name) {
                    return Ok(open.clone());
                }
                let local = Rc::new(RefCell::new(LocalCollection::new(
                    key,
                    schema,
                    &random_actor()?,
                )));
                self.collections
                    .borrow_mut()
                    .insert(name.to_string(), local.clone());
                let saved = SavedSchema {
                    dimension: schema.dimension,
                    metric: schema.metric,
                    shards: schema.shard_count.get(),
                };
                let mut writes = local.borrow_mut().take_persist();
                writes.push((
                    keys::schema(name),
                    Some(serde_json::to_vec(&saved).unwrap_or_default()),
                ));
                if let Err(error) = self.store.write_all(writes).await {
                    self.collections.borrow_mut().remove(name);
                    return Err(error);
                }
                return Ok(local);
            }
        };
        // Another call may have restored it while this one awaited.
        let local = self
            .collections
            .borrow_mut()
            .entry(name.to_string())
            .or_insert_with(|| Rc::new(RefCell::new(local)))
            .clone();
        Ok(local)
    }

    fn check_open(&self) -> Result<(), SdkError> {
        if self.closed.get() {
            Err(SdkError::Closed)
        } else {
            Ok(())
        }
    }

    /// A local write, durable in the store before this returns.
    pub async fn write(
        &self,
        local: &RefCell<LocalCollection>,
        id: &str,
        edit: Option<JsonEdit>,
        vector: Option<Vec<f32>>,
    ) -> Result<bool, SdkError> {
        self.check_open()?;
        let (changed, writes, collection) = {
            let mut local = local.borrow_mut();
            let changed = local.write(id, edit, vector, now_ms())?;
            (
                changed,
                local.take_persist(),
                local.key().collection.to_string(),
            )
        };
        if !writes.is_empty() {
            self.store.write_all(writes).await?;
        }
        if changed {
            self.emit(
                "change",
                json!({"collection": collection, "ids": [id], "source": "local"}),
            );
            self.emit_status();
        }
        Ok(changed)
    }

    /// One sync pass over every open collection. Errors are also kept as
    /// the status's `lastError` and emitted as an `error` event.
    pub async fn sync(&self) -> Result<SyncReport, SdkError> {
        self.check_open()?;
        self.syncing.set(true);
        self.emit_status();
        let result = self.sync_all().await;
        self.syncing.set(false);
        match &result {
            Ok(_) => {
                self.online.set(true);
            }
            Err(error) => {
                if matches!(error, SdkError::Offline(_)) {
                    self.online.set(false);
                }
                self.report(error);
            }
        }
        self.emit_status();
        result
    }

    async fn sync_all(&self) -> Result<SyncReport, SdkError> {
        let saved = *self.writer_key.borrow();
        let writer = match saved {
            Some(key) => key,
            None => {
                let hex = self.transport.writer_key().await?;
                self.set_writer_key(&hex).await?
            }
        };
        let collections: Vec<Rc<RefCell<LocalCollection>>> =
            self.collections.borrow().values().cloned().collect();
        let mut total = SyncReport::default();
        for local in collections {
            let name = local.borrow().key().collection.to_string();
            let emit = |event: SyncEvent| self.on_sync_event(&name, event);
            let pass = SyncPass {
                transport: self.transport.as_ref(),
                store: self.store.as_ref(),
                writer: &writer,
                emit: &emit,
            };
            let report = pass.run(&local).await?;
            total.acknowledged += report.acknowledged;
            total.applied += report.applied;
            total.settled += report.settled;
        }
        Ok(total)
    }

    fn on_sync_event(&self, collection: &str, event: SyncEvent) {
        match event {
            SyncEvent::Progress {
                shard,
                phase,
                done,
                total,
            } => {
                let percent = if total == 0 {
                    100.0
                } else {
                    (done as f64 * 100.0 / total as f64).min(100.0)
                };
                self.emit(
                    "sync",
                    json!({"collection": collection, "shard": shard.0, "phase": phase.as_str(),
                           "done": done, "total": total, "percent": percent}),
                );
            }
            SyncEvent::Changed { ids } => self.emit(
                "change",
                json!({"collection": collection, "ids": ids, "source": "remote"}),
            ),
            SyncEvent::Rejected { id, error } => {
                self.report(&error);
                self.emit(
                    "rejected",
                    json!({"collection": collection, "id": id, "code": error.code(),
                           "message": error.to_string()}),
                );
            }
        }
    }

    fn report(&self, error: &SdkError) {
        let last = LastError::from(error);
        self.emit("error", json!({"code": last.code, "message": last.message}));
        *self.last_error.borrow_mut() = Some(last);
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.borrow().clone()
    }

    pub fn online(&self) -> bool {
        self.online.get()
    }

    pub fn set_online(&self, online: bool) {
        if self.online.replace(online) != online {
            self.emit_status();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.listeners.borrow_mut().clear();
    }

    /// `{online, syncing, pending, tidemark: {collection: {shard: offset}}, lastError}`.
    pub fn status(&self) -> Value {
        let mut pending = 0;
        let mut tidemarks = serde_json::Map::new();
        for (name, local) in self.collections.borrow().iter() {
            let local = local.borrow();
            pending += local.pending();
            let shards: serde_json::Map<String, Value> = local
                .tidemark()
                .shards
                .iter()
                .map(|(s, o)| (s.0.to_string(), Value::from(o.0)))
                .collect();
            tidemarks.insert(name.clone(), Value::Object(shards));
        }
        let last_error = self
            .last_error
            .borrow()
            .as_ref()
            .map(|e| json!({"code": e.code, "message": e.message}))
            .unwrap_or(Value::Null);
        json!({
            "online": self.online.get(),
            "syncing": self.syncing.get(),
            "pending": pending,
            "tidemark": tidemarks,
            "lastError": last_error,
        })
    }

    fn emit_status(&self) {
        self.emit("status", self.status());
    }

    pub fn add_listener(&self, event: &str, listener: Function) {
        self.listeners
            .borrow_mut()
            .push((event.to_string(), listener));
    }

    pub fn remove_listener(&self, event: &str, listener: &Function) {
        self.listeners
            .borrow_mut()
            .retain(|(e, l)| !(e == event && l == listener));
    }

    fn emit(&self, event: &str, payload: Value) {
        let listeners: Vec<Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, l)| l.clone())
            .collect();
        if listeners.is_empty() {
            return;
        }
        let payload = crate::convert::to_js(&payload);
        for listener in listeners {
            // A listener that throws must not break the SDK; the error
            // still reaches the console through the host's reporting.
            if let Err(error) = listener.call1(&JsValue::NULL, &payload) {
                web_log(&error);
            }
        }
    }
}

fn web_log(error: &JsValue) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(error_fn) = console
        .and_then(|c| js_sys::Reflect::get(&c, &"error".into()).ok())
        .and_then(|f| wasm_bindgen::JsCast::dyn_into::<Function>(f).ok())
    {
        let _ = error_fn.call1(&JsValue::NULL, error);
    }
}

/// A fresh actor id for a new outbox: 16 random bytes, drawn once and then
/// persisted with the outbox.
fn random_actor() -> Result<ActorId, SdkError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| SdkError::Storage(format!("no random source for the actor id: {e}")))?;
    Ok(ActorId::from(bytes.as_slice()))
}
