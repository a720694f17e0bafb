//! The SDK in headless Chromium (`wasm-pack test --headless --chrome`):
//! the shared suite, IndexedDB persistence, and — when `cargo xtask test`
//! started a real `tidemark-writer` and passed its address at compile time
//! (`TIDEMARK_TEST_WRITER_URL`, `TIDEMARK_TEST_WRITER_TOKEN`) — convergence
//! and bad answers over HTTP against that writer.

#![cfg(target_arch = "wasm32")]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;

use std::rc::Rc;

use common::writer::{LocalWriter, NAMESPACE};
use common::{Opened, obj};
use js_sys::{Function, Reflect};
use serde_json::{Value, json};
use tidemark_browser_sdk::client::Client;
use tidemark_browser_sdk::convert::{from_js, to_js};
use tidemark_browser_sdk::idb_store::{IdbStore, delete_database};
use tidemark_browser_sdk::transport::Transport;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e12) as u64)
}

async fn open_idb(writer: &Rc<LocalWriter>, name: &str) -> (Rc<IdbStore>, Opened) {
    let store = Rc::new(IdbStore::open(name).await.unwrap());
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(NAMESPACE, None, store.clone(), transport)
        .await
        .unwrap();
    let notes = client.collection("notes").await.unwrap();
    (store, Opened { client, notes })
}

#[wasm_bindgen_test]
async fn indexeddb_keeps_the_outbox_and_the_replica_across_a_reload() {
    let name = unique("tidemark-test-reload");
    let writer = Rc::new(LocalWriter::new(2));
    writer.write_json(
        "theirs",
        tidemark_core::fields::JsonEdit::Put(obj(json!({"by": "someone else"}))),
        Some(vec![0.0, 0.0, 0.0, 1.0]),
    );
    let (store, first) = open_idb(&writer, &name).await;
    first
        .put("synced", json!({"v": 1}), Some(vec![1.0, 0.0, 0.0, 0.0]))
        .await;
    first.client.sync().await.unwrap();
    first
        .put("pending", json!({"v": 2}), Some(vec![0.0, 1.0, 0.0, 0.0]))
        .await;
    let tidemark = first.notes.borrow().tidemark();
    first.client.close();
    drop(first);
    store.close();
    drop(store);

    // "Reload the page" with the network down.
    writer.offline.set(true);
    let (store, again) = open_idb(&writer, &name).await;
    assert_eq!(again.notes.borrow().tidemark(), tidemark);
    assert_eq!(again.fields("synced"), Some(json!({"v": 1})));
    assert_eq!(again.fields("theirs"), Some(json!({"by": "someone else"})));
    assert_eq!(again.fields("pending"), Some(json!({"v": 2})));
    assert_eq!(again.notes.borrow().pending(), 1);
    assert_eq!(again.search(&[0.0, 1.0, 0.0, 0.0], 1), vec!["pending"]);
    assert_eq!(again.search(&[0.0, 0.0, 0.0, 1.0], 1), vec!["theirs"]);

    writer.offline.set(false);
    again.client.sync().await.unwrap();
    assert_eq!(writer.fields("pending"), Some(obj(json!({"v": 2}))));
    again.client.close();
    drop(again);
    store.close();
    drop(store);
    delete_database(&name).await.unwrap();
}

// ---- Against the real writer (started by `cargo xtask test`). ----

struct RealWriter {
    url: &'static str,
    token: &'static str,
}

fn real_writer() -> Option<RealWriter> {
    let url = option_env!("TIDEMARK_TEST_WRITER_URL")?;
    let token = option_env!("TIDEMARK_TEST_WRITER_TOKEN")?;
    Some(RealWriter { url, token })
}

fn skipped(test: &str) {
    web_sys_console(&format!(
        "{test}: skipped, no writer (run it through `cargo xtask test`)"
    ));
}

fn web_sys_console(message: &str) {
    let console = Reflect::get(&js_sys::global(), &"console".into()).unwrap();
    let log: Function = Reflect::get(&console, &"log".into())
        .unwrap()
        .unchecked_into();
    let _ = log.call1(&JsValue::NULL, &message.into());
}

async fn fetch_json(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let init = to_js(&json!({
        "method": method,
        "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
    }));
    if let Some(body) = body {
        Reflect::set(&init, &"body".into(), &body.to_string().into()).unwrap();
    }
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into())
        .unwrap()
        .unchecked_into();
    let response = JsFuture::from(js_sys::Promise::from(
        fetch.call2(&JsValue::NULL, &url.into(), &init).unwrap(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{method} {url}: {e:?} (is CORS enabled on the writer?)"));
    let status = Reflect::get(&response, &"status".into())
        .unwrap()
        .as_f64()
        .unwrap() as u16;
    let text: Function = Reflect::get(&response, &"text".into())
        .unwrap()
        .unchecked_into();
    let text = JsFuture::from(js_sys::Promise::from(text.call0(&response).unwrap()))
        .await
        .unwrap()
        .as_string()
        .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A fresh collection on the real writer.
async fn create_collection(writer: &RealWriter) -> String {
    let name = unique("c");
    let (status, body) = fetch_json(
        "PUT",
        &format!("{}/v1/ns/{NAMESPACE}/collections/{name}", writer.url),
        writer.token,
        Some(json!({"dimension": 4, "metric": "cosine", "shards": 2})),
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {body}");
    name
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let function: Function = Reflect::get(target, &method.into())
        .unwrap()
        .unchecked_into();
    function
        .apply(target, &args.iter().collect::<js_sys::Array>())
        .unwrap()
}

async fn resolve(value: JsValue) -> Result<JsValue, JsValue> {
    JsFuture::from(js_sys::Promise::from(value)).await
}

/// `Tidemark.open` in IndexedDB, driven by hand (`autoSync: false`).
async fn open_real(writer: &RealWriter, options: Value, extra: &[(&str, JsValue)]) -> JsValue {
    let mut all = json!({
        "url": writer.url, "namespace": NAMESPACE, "token": writer.token,
        "persist": "indexeddb", "autoSync": false,
    });
    for (k, v) in obj(options) {
        all[k] = v;
    }
    let options = to_js(&all);
    for (key, value) in extra {
        Reflect::set(&options, &(*key).into(), value).unwrap();
    }
    resolve(tidemark_browser_sdk::Tidemark::open(options).into())
        .await
        .unwrap_or_else(|e| panic!("Tidemark.open: {:?}", Reflect::get(&e, &"message".into())))
}

fn get_fields(collection: &JsValue, id: &str) -> Value {
    from_js(&call(collection, "get", &[id.into()]), "record").unwrap()["fields"].clone()
}

#[wasm_bindgen_test]
async fn two_offline_clients_converge_to_the_writers_merged_value() {
    let Some(writer) = real_writer() else {
        return skipped("two_offline_clients_converge_to_the_writers_merged_value");
    };
    let collection = create_collection(&writer).await;
    let a = open_real(&writer, json!({"name": unique("a")}), &[]).await;
    let b = open_real(&writer, json!({"name": unique("b")}), &[]).await;
    let notes_a = resolve(call(&a, "collection", &[collection.as_str().into()]))
        .await
        .unwrap();
    let notes_b = resolve(call(&b, "collection", &[collection.as_str().into()]))
        .await
        .unwrap();
    let vector = to_js(&json!([1.0, 0.0, 0.0, 0.0]));
    resolve(call(
        &notes_a,
        "put",
        &[
            "n1".into(),
            to_js(&json!({"title": "draft", "body": "", "n": 1})),
            vector,
        ],
    ))
    .await
    .unwrap();
    resolve(call(&a, "sync", &[])).await.unwrap();
    resolve(call(&b, "sync", &[])).await.unwrap();
    assert_eq!(get_fields(&notes_b, "n1")["title"], "draft");

    // Offline (no sync): both edit the same record.
    resolve(call(
        &notes_a,
        "update",
        &[
            "n1".into(),
            to_js(&json!({"title": "from a", "n": 2})),
            JsValue::UNDEFINED,
        ],
    ))
    .await
    .unwrap();
    resolve(call(
        &notes_b,
        "update",
        &[
            "n1".into(),
            to_js(&json!({"body": "from b", "n": 3})),
            JsValue::UNDEFINED,
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        from_js(&call(&a, "status", &[]), "s").unwrap()["pending"],
        1
    );

    // Reconnect.
    for client in [&a, &b, &a] {
        resolve(call(client, "sync", &[])).await.unwrap();
    }
    let (status, record) = fetch_json(
        "GET",
        &format!(
            "{}/v1/ns/{NAMESPACE}/collections/{collection}/records/n1",
            writer.url
        ),
        writer.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{record}");
    let merged = record["fields"].clone();
    assert_eq!(merged["title"], "from a");
    assert_eq!(merged["body"], "from b");
    assert!(merged["n"] == 2 || merged["n"] == 3);
    assert_eq!(get_fields(&notes_a, "n1"), merged);
    assert_eq!(get_fields(&notes_b, "n1"), merged);
    for client in [&a, &b] {
        let status = from_js(&call(client, "status", &[]), "s").unwrap();
        assert_eq!(status["pending"], 0, "{status}");
        assert_eq!(status["lastError"], Value::Null);
        call(client, "close", &[]);
    }
}

#[wasm_bindgen_test]
async fn bad_answers_from_the_server_leave_the_replica_unchanged() {
    let Some(writer) = real_writer() else {
        return skipped("bad_answers_from_the_server_leave_the_replica_unchanged");
    };
    let collection = create_collection(&writer).await;
    // A fetch that passes through, or answers log requests with garbage.
    let mode = to_js(&json!({"garbage": false}));
    let make: Function = Function::new_with_args(
        "mode",
        "return (url, init) => (mode.garbage && url.includes('/log?'))
            ? Promise.resolve(new Response(new Uint8Array([222, 173, 190, 239]), {status: 200}))
            : fetch(url, init);",
    );
    let spoiling_fetch = make.call1(&JsValue::NULL, &mode).unwrap();
    let db = open_real(
        &writer,
        json!({"name": unique("bad")}),
        &[("fetch", spoiling_fetch)],
    )
    .await;
    let notes = resolve(call(&db, "collection", &[collection.as_str().into()]))
        .await
        .unwrap();
    resolve(call(
        &notes,
        "put",
        &["r".into(), to_js(&json!({"v": 1})), JsValue::NULL],
    ))
    .await
    .unwrap();
    resolve(call(&db, "sync", &[])).await.unwrap();
    let before = from_js(&call(&db, "status", &[]), "s").unwrap()["tidemark"].clone();

    // Someone else writes; our client then gets garbage for the log.
    let (status, body) = fetch_json(
        "POST",
        &format!(
            "{}/v1/ns/{NAMESPACE}/collections/{collection}/records",
            writer.url
        ),
        writer.token,
        Some(json!({"ops": [{"op": "patch", "id": "r", "fields": {"v": 2}}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Reflect::set(&mode, &"garbage".into(), &true.into()).unwrap();
    let error = resolve(call(&db, "sync", &[])).await.unwrap_err();
    assert_eq!(
        Reflect::get(&error, &"code".into()).unwrap(),
        "bad_response"
    );
    let status = from_js(&call(&db, "status", &[]), "s").unwrap();
    assert_eq!(status["tidemark"], before);
    assert_eq!(status["lastError"]["code"], "bad_response");
    assert_eq!(get_fields(&notes, "r"), json!({"v": 1}));
    call(&db, "close", &[]);

    // A client that pinned another writer key refuses the real writer's
    // signatures.
    let other_key: String = tidemark_core::SigningKey::from_bytes(&[8; 32])
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let db = open_real(
        &writer,
        json!({"name": unique("wrongkey"), "writerKey": other_key}),
        &[],
    )
    .await;
    let notes = resolve(call(&db, "collection", &[collection.as_str().into()]))
        .await
        .unwrap();
    let error = resolve(call(&db, "sync", &[])).await.unwrap_err();
    assert_eq!(
        Reflect::get(&error, &"code".into()).unwrap(),
        "bad_response"
    );
    let message = Reflect::get(&error, &"message".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("signature"), "{message}");
    assert!(call(&notes, "get", &["r".into()]).is_undefined());
    let status = from_js(&call(&db, "status", &[]), "s").unwrap();
    let applied: u64 = status["tidemark"][collection.as_str()]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(applied, 0);
    call(&db, "close", &[]);
}

async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .unwrap()
            .unchecked_into();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &ms.into())
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

fn dispatch(event: &str) {
    let window = js_sys::global();
    let make: Function = Function::new_with_args("name", "return new Event(name);");
    let event = make.call1(&JsValue::NULL, &event.into()).unwrap();
    call(&window, "dispatchEvent", &[event]);
}

#[wasm_bindgen_test]
async fn the_loop_pauses_offline_and_syncs_as_soon_as_the_browser_is_online() {
    let writer = Rc::new(LocalWriter::new(2));
    let transport: Rc<dyn Transport> = writer.clone();
    let client = Client::open(
        NAMESPACE,
        None,
        Rc::new(tidemark_browser_sdk::store::MemoryStore::new()),
        transport,
    )
    .await
    .unwrap();
    // A long poll interval: only the `online` event can make it sync soon.
    let db = JsValue::from(tidemark_browser_sdk::Tidemark::from_client(
        client, true, 600_000,
    ));
    let notes = resolve(call(&db, "collection", &["notes".into()]))
        .await
        .unwrap();
    sleep_ms(50).await;
    dispatch("offline");
    sleep_ms(20).await;
    let status = from_js(&call(&db, "status", &[]), "s").unwrap();
    assert_eq!(status["online"], false);
    let requests = writer.requests.get();
    resolve(call(&notes, "put", &["x".into(), to_js(&json!({"v": 1}))]))
        .await
        .unwrap();
    sleep_ms(100).await;
    assert_eq!(writer.requests.get(), requests, "no request while offline");
    dispatch("online");
    let mut waited = 0;
    while writer.fields("x").is_none() && waited < 2_000 {
        sleep_ms(20).await;
        waited += 20;
    }
    assert_eq!(writer.fields("x"), Some(obj(json!({"v": 1}))));
    let status = from_js(&call(&db, "status", &[]), "s").unwrap();
    assert_eq!(status["online"], true);
    call(&db, "close", &[]);
}
