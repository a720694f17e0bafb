//! SDK checks shared by the node and the browser suites (included by both).
//! They run the SDK against core's real writer state machine in-process
//! (`writer.rs`), through the same transport port the HTTP client uses.

pub mod writer;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Reflect};
use serde_json::{Value, json};
use tidemark_browser_sdk::client::Client;
use tidemark_browser_sdk::convert::{from_js, to_js};
use tidemark_browser_sdk::local::{LocalCollection, SearchOptions};
use tidemark_browser_sdk::store::{MemoryStore, Store};
use tidemark_browser_sdk::sync::backoff_ms;
use tidemark_browser_sdk::transport::Transport;
use tidemark_browser_sdk::{Tidemark, kernels, shard_for_record, version};
use tidemark_core::fields::JsonEdit;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use writer::{COLLECTION, LocalWriter, NAMESPACE, Spoil};

#[wasm_bindgen_test]
fn routes_like_every_other_platform() {
    // The same golden value as core's native tests.
    assert_eq!(shard_for_record("acme", "notes", "note-1", 16).unwrap(), 5);
}

#[wasm_bindgen_test]
fn rejects_bad_shard_counts() {
    assert!(shard_for_record("acme", "notes", "note-1", 3).is_err());
    assert!(shard_for_record("acme", "notes", "note-1", 0).is_err());
}

#[wasm_bindgen_test]
fn reports_simd_kernels_and_version() {
    assert_eq!(kernels(), "wasm32-simd128");
    assert_eq!(version(), env!("CARGO_PKG_VERSION"));
}

pub fn obj(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub struct Opened {
    pub client: Rc<Client>,
    pub notes: Rc<RefCell<LocalCollection>>,
}

pub async fn open(writer: &Rc<LocalWriter>, store: Rc<dyn Store>) -> Opened {
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(NAMESPACE, None, store, transport)
        .await
        .unwrap();
    let notes = client.collection(COLLECTION).await.unwrap();
    Opened { client, notes }
}

impl Opened {
    pub async fn put(&self, id: &str, fields: Value, vector: Option<Vec<f32>>) {
        self.client
            .write(&self.notes, id, Some(JsonEdit::Put(obj(fields))), vector)
            .await
            .unwrap();
    }

    pub async fn patch(&self, id: &str, fields: Value) {
        self.client
            .write(&self.notes, id, Some(JsonEdit::Patch(obj(fields))), None)
            .await
            .unwrap();
    }

    pub fn fields(&self, id: &str) -> Option<Value> {
        self.notes
            .borrow()
            .get(id)
            .unwrap()
            .map(|r| Value::Object(r.fields))
    }

    pub fn search(&self, vector: &[f32], k: usize) -> Vec<String> {
        let options = SearchOptions {
            k,
            exact: true,
            ..SearchOptions::default()
        };
        self.notes
            .borrow()
            .search(vector, &options)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    }
}

/// Collects the payloads of one event into a list.
pub fn record_events(client: &Client, event: &str) -> Rc<RefCell<Vec<Value>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
        sink.borrow_mut().push(from_js(&payload, "event").unwrap());
    });
    client.add_listener(event, listener.as_ref().unchecked_ref::<Function>().clone());
    listener.forget();
    seen
}

#[wasm_bindgen_test]
async fn a_pending_write_is_found_by_local_search_before_sync() {
    let writer = Rc::new(LocalWriter::new(4));
    let a = open(&writer, Rc::new(MemoryStore::new())).await;
    a.put("far", json!({"t": "far"}), Some(vec![-1.0, 0.0, 0.0, 0.0]))
        .await;
    a.put("near", json!({"t": "near"}), Some(vec![1.0, 0.1, 0.0, 0.0]))
        .await;
    assert_eq!(a.search(&[1.0, 0.0, 0.0, 0.0], 1), vec!["near"]);
    assert_eq!(a.notes.borrow().pending(), 2);
    assert_eq!(
        writer.head(0) + writer.head(1) + writer.head(2) + writer.head(3),
        0
    );
    // Filters apply to the pending fields too.
    let filtered = a
        .notes
        .borrow()
        .search(
            &[1.0, 0.0, 0.0, 0.0],
            &SearchOptions {
                k: 5,
                filter: Some(
                    serde_json::from_value(json!({"eq": {"field": "t", "value": "far"}})).unwrap(),
                ),
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, "far");
    // A pending delete hides the record from search and get at once.
    a.client
        .write(&a.notes, "near", Some(JsonEdit::Delete), None)
        .await
        .unwrap();
    assert_eq!(a.search(&[1.0, 0.0, 0.0, 0.0], 1), vec!["far"]);
    assert_eq!(a.fields("near"), None);
    // After sync the writer holds it and search still agrees.
    a.client.sync().await.unwrap();
    assert_eq!(a.notes.borrow().pending(), 0);
    assert_eq!(writer.fields("far"), Some(obj(json!({"t": "far"}))));
    assert_eq!(writer.fields("near"), None);
    assert_eq!(a.search(&[1.0, 0.0, 0.0, 0.0], 2), vec!["far"]);
}

#[wasm_bindgen_test]
async fn offline_edits_to_one_record_merge_field_by_field() {
    let writer = Rc::new(LocalWriter::new(2));
    let a = open(&writer, Rc::new(MemoryStore::new())).await;
    let b = open(&writer, Rc::new(MemoryStore::new())).await;
    a.put(
        "n1",
        json!({"title": "draft", "body": "", "tags": ["x"]}),
        None,
    )
    .await;
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();
    assert_eq!(b.fields("n1"), a.fields("n1"));

    // Both go offline and edit the same record: different fields, and one
    // field both change.
    writer.offline.set(true);
    a.patch("n1", json!({"title": "from a", "color": "red"}))
        .await;
    b.patch("n1", json!({"body": "from b", "color": "blue"}))
        .await;
    assert!(a.client.sync().await.is_err());
    assert!(!a.client.online());
    assert_eq!(a.notes.borrow().pending(), 1);

    writer.offline.set(false);
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();
    a.client.sync().await.unwrap();
    let merged = writer.fields("n1").unwrap();
    assert_eq!(merged["title"], "from a");
    assert_eq!(merged["body"], "from b");
    assert_eq!(merged["tags"], json!(["x"]));
    assert!(merged["color"] == "red" || merged["color"] == "blue");
    let merged = Value::Object(merged);
    assert_eq!(a.fields("n1"), Some(merged.clone()));
    assert_eq!(b.fields("n1"), Some(merged));
    assert_eq!(a.notes.borrow().pending(), 0);
    assert_eq!(b.notes.borrow().pending(), 0);
    assert!(a.notes.borrow().outbox().writes().is_empty(), "settled");
    assert!(a.client.online());
}

#[wasm_bindgen_test]
async fn reopening_keeps_the_outbox_and_the_replica() {
    let writer = Rc::new(LocalWriter::new(2));
    let store = MemoryStore::new();
    let first = open(&writer, Rc::new(store.clone())).await;
    first
        .put("synced", json!({"v": 1}), Some(vec![0.0, 1.0, 0.0, 0.0]))
        .await;
    first.client.sync().await.unwrap();
    first
        .put("pending", json!({"v": 2}), Some(vec![0.0, 0.0, 1.0, 0.0]))
        .await;
    let tidemark = first.notes.borrow().tidemark();
    first.client.close();
    drop(first);

    // Reopen with no network: everything is there, the key is pinned.
    writer.offline.set(true);
    let again = open(&writer, Rc::new(store.clone())).await;
    assert_eq!(again.notes.borrow().tidemark(), tidemark);
    assert_eq!(again.fields("synced"), Some(json!({"v": 1})));
    assert_eq!(again.fields("pending"), Some(json!({"v": 2})));
    assert_eq!(again.notes.borrow().pending(), 1);
    assert_eq!(again.search(&[0.0, 0.0, 1.0, 0.0], 1), vec!["pending"]);
    assert_eq!(again.search(&[0.0, 1.0, 0.0, 0.0], 1), vec!["synced"]);

    writer.offline.set(false);
    again.client.sync().await.unwrap();
    assert_eq!(writer.fields("pending"), Some(obj(json!({"v": 2}))));
    assert_eq!(again.notes.borrow().pending(), 0);
}

#[wasm_bindgen_test]
async fn bad_answers_leave_the_replica_unchanged_and_are_reported() {
    let writer = Rc::new(LocalWriter::new(1));
    let a = open(&writer, Rc::new(MemoryStore::new())).await;
    a.put("n1", json!({"v": 1}), None).await;
    a.client.sync().await.unwrap();
    let errors = record_events(&a.client, "error");
    writer.write_json("n1", JsonEdit::Patch(obj(json!({"v": 2}))), None);
    writer.write_json("n2", JsonEdit::Put(obj(json!({"v": 3}))), None);
    let before = a.notes.borrow().tidemark();

    for (spoil, expect) in [
        (Spoil::Garbage, "bad_response"),
        (Spoil::WrongKey, "bad_response"),
    ] {
        writer.spoil.set(spoil);
        let error = a.client.sync().await.unwrap_err();
        assert_eq!(error.code(), expect, "{spoil:?}: {error}");
        assert_eq!(a.notes.borrow().tidemark(), before, "{spoil:?}");
        assert_eq!(a.fields("n1"), Some(json!({"v": 1})));
        assert_eq!(a.fields("n2"), None);
        let status = a.client.status();
        assert_eq!(status["lastError"]["code"], expect);
    }
    assert!(
        errors.borrow()[1]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    // A spoiled ack leaves the write pending, to be sent again.
    writer.spoil.set(Spoil::WrongKey);
    a.patch("n1", json!({"w": true})).await;
    assert!(a.client.sync().await.is_err());
    assert_eq!(a.notes.borrow().pending(), 1);

    writer.spoil.set(Spoil::None);
    a.client.sync().await.unwrap();
    assert_eq!(a.fields("n2"), Some(json!({"v": 3})));
    assert_eq!(a.fields("n1"), Some(json!({"v": 2, "w": true})));
    assert_eq!(a.notes.borrow().pending(), 0);
}

#[wasm_bindgen_test]
async fn a_new_client_bootstraps_from_a_snapshot_and_reports_progress() {
    let writer = Rc::new(LocalWriter::new(2));
    for i in 0..40 {
        let angle = i as f32 / 10.0;
        writer.write_json(
            &format!("r{i}"),
            JsonEdit::Put(obj(json!({"i": i}))),
            Some(vec![angle.cos(), angle.sin(), 0.5, 0.0]),
        );
    }
    writer.take_snapshots();
    // Written after the snapshot: comes from the log.
    writer.write_json(
        "late",
        JsonEdit::Put(obj(json!({"late": true}))),
        Some(vec![0.0, 0.0, 0.0, 1.0]),
    );
    let store = MemoryStore::new();
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(NAMESPACE, None, Rc::new(store.clone()), transport)
        .await
        .unwrap();
    let progress = record_events(&client, "sync");
    let changes = record_events(&client, "change");
    let notes = client.collection(COLLECTION).await.unwrap();
    let report = client.sync().await.unwrap();
    assert_eq!(report.applied, 41);
    let progress = progress.borrow();
    assert!(progress.iter().any(|p| p["phase"] == "bootstrap"));
    for shard in 0..2 {
        let last = progress.iter().rev().find(|p| p["shard"] == shard).unwrap();
        assert_eq!(last["percent"], 100.0, "{last}");
        assert_eq!(last["done"], last["total"]);
    }
    let changed: usize = changes
        .borrow()
        .iter()
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(changed, 41);
    let hits = notes
        .borrow()
        .search(
            &[0.0, 0.0, 0.0, 1.0],
            &SearchOptions {
                k: 1,
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(hits[0].id, "late");
    let hits = notes
        .borrow()
        .search(
            &[1.0, 0.0, 0.5, 0.0],
            &SearchOptions {
                k: 1,
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(hits[0].id, "r0");
    assert_eq!(hits[0].fields, obj(json!({"i": 0})));
    assert!(hits[0].score > 0.99);
}

#[wasm_bindgen_test]
fn backoff_doubles_up_to_a_cap_with_jitter() {
    assert_eq!(backoff_ms(0, 500, 60_000, 1.0), 500);
    assert_eq!(backoff_ms(0, 500, 60_000, 0.0), 250);
    assert_eq!(backoff_ms(3, 500, 60_000, 1.0), 4_000);
    assert_eq!(backoff_ms(30, 500, 60_000, 1.0), 60_000);
    assert_eq!(backoff_ms(30, 500, 60_000, 0.0), 30_000);
    assert!(backoff_ms(4, 500, 60_000, 0.3) < backoff_ms(4, 500, 60_000, 0.7));
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let function: Function = Reflect::get(target, &method.into())
        .unwrap()
        .dyn_into()
        .unwrap_or_else(|_| panic!("{method} is not a method"));
    function
        .apply(target, &args.iter().collect::<Array>())
        .unwrap_or_else(|e| panic!("{method} threw {e:?}"))
}

async fn resolve(promise: JsValue) -> Result<JsValue, JsValue> {
    JsFuture::from(js_sys::Promise::from(promise)).await
}

/// The JS surface, called the way JavaScript calls it.
#[wasm_bindgen_test]
async fn the_js_api_writes_reads_searches_and_syncs() {
    let writer = Rc::new(LocalWriter::new(2));
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(NAMESPACE, None, Rc::new(MemoryStore::new()), transport)
        .await
        .unwrap();
    let db = JsValue::from(Tidemark::from_client(client, false, 60_000));
    let notes = resolve(call(&db, "collection", &[COLLECTION.into()]))
        .await
        .unwrap();
    assert_eq!(Reflect::get(&notes, &"name".into()).unwrap(), COLLECTION);
    let fields = to_js(&json!({"title": "hi", "n": 1}));
    let vector: JsValue = [1.0f64, 0.0, 0.0, 0.0]
        .iter()
        .map(|&x| JsValue::from(x))
        .collect::<Array>()
        .into();
    assert_eq!(
        resolve(call(
            &notes,
            "put",
            &[JsValue::from("a"), fields, vector.clone()]
        ))
        .await
        .unwrap(),
        true
    );
    let patch = to_js(&json!({"n": null, "extra": [1, 2]}));
    resolve(call(
        &notes,
        "update",
        &[JsValue::from("a"), patch, JsValue::UNDEFINED],
    ))
    .await
    .unwrap();
    let got = from_js(&call(&notes, "get", &["a".into()]), "record").unwrap();
    assert_eq!(got["fields"], json!({"title": "hi", "extra": [1, 2]}));
    assert_eq!(got["id"], "a");
    assert!(call(&notes, "get", &["missing".into()]).is_undefined());
    let options = to_js(&json!({"k": 3, "filter": {"eq": {"field": "title", "value": "hi"}}}));
    let hits = from_js(&call(&notes, "search", &[vector.clone(), options]), "hits").unwrap();
    assert_eq!(hits[0]["id"], "a");
    assert_eq!(hits[0]["fields"]["title"], "hi");
    let status = from_js(&call(&db, "status", &[]), "status").unwrap();
    assert_eq!(status["pending"], 2);

    let report = from_js(&resolve(call(&db, "sync", &[])).await.unwrap(), "report").unwrap();
    assert_eq!(report["acknowledged"], 2);
    let status = from_js(&call(&db, "status", &[]), "status").unwrap();
    assert_eq!(status["pending"], 0);
    assert_eq!(status["online"], true);
    assert_eq!(status["lastError"], Value::Null);
    let offsets: u64 = status["tidemark"][COLLECTION]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(offsets, 1, "one record, one shard, two writes in one batch");

    // Bad input is a rejected promise / thrown error with a stable code.
    let bad_vector = to_js(&json!([1.0, 2.0]));
    let error = resolve(call(
        &notes,
        "put",
        &["b".into(), to_js(&json!({})), bad_vector],
    ))
    .await
    .unwrap_err();
    assert_eq!(
        Reflect::get(&error, &"code".into()).unwrap(),
        "invalid_vector"
    );
    let error = resolve(call(
        &notes,
        "put",
        &["b".into(), to_js(&json!([1])), JsValue::NULL],
    ))
    .await
    .unwrap_err();
    assert_eq!(
        Reflect::get(&error, &"code".into()).unwrap(),
        "invalid_argument"
    );
    let open = Reflect::get(&db, &"constructor".into()).unwrap();
    let error = resolve(call(&open, "open", &[to_js(&json!({"url": "http://x"}))]))
        .await
        .unwrap_err();
    assert_eq!(
        Reflect::get(&error, &"code".into()).unwrap(),
        "invalid_argument"
    );
    call(&db, "close", &[]);
}

async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout: Function = Reflect::get(&global, &"setTimeout".into())
            .unwrap()
            .unchecked_into();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &ms.into())
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_background_loop_pushes_local_writes_and_retries_after_failures() {
    let writer = Rc::new(LocalWriter::new(2));
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(NAMESPACE, None, Rc::new(MemoryStore::new()), transport)
        .await
        .unwrap();
    let db = JsValue::from(Tidemark::from_client(client, true, 20));
    let notes = resolve(call(&db, "collection", &[COLLECTION.into()]))
        .await
        .unwrap();
    // The schema came while online; now the network goes.
    writer.offline.set(true);
    resolve(call(&notes, "put", &["x".into(), to_js(&json!({"v": 1}))]))
        .await
        .unwrap();
    sleep_ms(100).await;
    let status = from_js(&call(&db, "status", &[]), "status").unwrap();
    assert_eq!(status["pending"], 1);
    assert_eq!(status["online"], false);
    assert_eq!(status["lastError"]["code"], "offline");
    // The network comes back: the loop's backoff retry (≤ 1 s) pushes it.
    writer.offline.set(false);
    let mut waited = 0;
    while writer.fields("x").is_none() && waited < 3_000 {
        sleep_ms(50).await;
        waited += 50;
    }
    assert_eq!(writer.fields("x"), Some(obj(json!({"v": 1}))));
    sleep_ms(100).await;
    let status = from_js(&call(&db, "status", &[]), "status").unwrap();
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["online"], true);
    call(&db, "close", &[]);
    // Closed: no more requests.
    sleep_ms(60).await;
    let requests = writer.requests.get();
    sleep_ms(100).await;
    assert_eq!(writer.requests.get(), requests);
}

/// `fetch` stand-in: 401 unless the token is "fresh", then `/v1/keys`.
fn fetch_needing_fresh_token(writer_key: &str) -> Function {
    let make = Function::new_with_args(
        "key",
        "return (url, init) => Promise.resolve(init.headers.authorization === 'Bearer fresh'
            ? new Response(JSON.stringify({writer: key, token_issuer: key}), {status: 200})
            : new Response(JSON.stringify({error: {code: 'unauthenticated', message: 'expired'}}), {status: 401}));",
    );
    make.call1(&JsValue::NULL, &writer_key.into())
        .unwrap()
        .unchecked_into()
}

#[wasm_bindgen_test]
async fn a_401_asks_for_a_new_token_once_and_retries() {
    use tidemark_browser_sdk::transport::HttpTransport;
    let key = LocalWriter::new(1).key_hex();
    let fetch = fetch_needing_fresh_token(&key);

    let stale =
        HttpTransport::new("http://writer", "stale".into(), Some(fetch.clone()), None).unwrap();
    let error =
        match Client::open(NAMESPACE, None, Rc::new(MemoryStore::new()), Rc::new(stale)).await {
            Ok(_) => panic!("opened with an expired token"),
            Err(error) => error,
        };
    assert_eq!(error.code(), "unauthenticated");

    let asked = Rc::new(RefCell::new(0));
    let count = asked.clone();
    let refresh = Closure::<dyn FnMut() -> JsValue>::new(move || {
        *count.borrow_mut() += 1;
        js_sys::Promise::resolve(&JsValue::from("fresh")).into()
    });
    let refresh: Function = refresh.into_js_value().unchecked_into();
    let renewing =
        HttpTransport::new("http://writer", "stale".into(), Some(fetch), Some(refresh)).unwrap();
    let renewing = Rc::new(renewing);
    Client::open(
        NAMESPACE,
        None,
        Rc::new(MemoryStore::new()),
        renewing.clone(),
    )
    .await
    .unwrap();
    assert_eq!(*asked.borrow(), 1);
    // The new token is kept: no second refresh.
    let again = renewing.writer_key().await.unwrap();
    assert_eq!(again, key);
    assert_eq!(*asked.borrow(), 1);
}
