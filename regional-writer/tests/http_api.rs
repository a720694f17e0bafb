//! The writer's HTTP API through `app(state).oneshot`: every endpoint, the
//! 4xx answers with their stable codes, tenant isolation, and a restart.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidemark_core::auth::{self, Claims, Scope};
use tidemark_core::limits::Limits;
use tidemark_core::model::{CollectionKey, CollectionName, Namespace, RecordId};
use tidemark_core::wire::{self, Message};
use tidemark_core::writer::{WriteBatch, WriteOp};
use tidemark_regional_writer::config::Config;
use tidemark_regional_writer::server::{AppState, app};
use tower::ServiceExt;

struct Writer {
    state: AppState,
    dir: std::path::PathBuf,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl Writer {
    fn open(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tidemark-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = AppState::open(Config::for_data_dir(&dir)).unwrap();
        Self { state, dir }
    }

    /// Opens the same data dir again, as after a restart.
    fn reopen(&mut self) {
        let state = AppState::open(Config::for_data_dir(&self.dir)).unwrap();
        self.state = state;
    }

    fn token(&self, namespace: &str, scopes: &[Scope]) -> String {
        let claims = Claims {
            namespace: namespace.into(),
            scopes: scopes.to_vec(),
            expires_at: tidemark_regional_writer::auth::unix_now() + 600,
            not_before: None,
            subject: None,
        };
        auth::issue(&claims, &self.state.keys.issuer)
    }

    fn admin(&self, namespace: &str) -> String {
        self.token(namespace, &[Scope::Read, Scope::Write, Scope::Admin])
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// POSTs `body` as `content_type` with an admin token, for bodies that
    /// are not the JSON `call` sends.
    async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<Body>) -> Answer {
        let request = Request::post(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.admin("acme")),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    async fn create(&self, ns: &str, name: &str, dimension: usize, shards: u32) -> Answer {
        let body = json!({ "dimension": dimension, "metric": "cosine", "shards": shards });
        self.call(
            Method::PUT,
            &format!("/v1/ns/{ns}/collections/{name}"),
            Some(&self.admin(ns)),
            Some(body),
        )
        .await
    }

    async fn write(&self, ns: &str, name: &str, ops: Value) -> Answer {
        let path = format!("/v1/ns/{ns}/collections/{name}/records");
        self.call(
            Method::POST,
            &path,
            Some(&self.admin(ns)),
            Some(json!({ "ops": ops })),
        )
        .await
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn collections_are_created_once_and_described() {
    let w = Writer::open("collections");
    assert_eq!(
        w.create("acme", "notes", 3, 2).await.status,
        StatusCode::CREATED
    );
    assert_eq!(w.create("acme", "notes", 3, 2).await.status, StatusCode::OK);
    let clash = w.create("acme", "notes", 4, 2).await;
    assert_eq!(
        (clash.status, clash.code().as_str()),
        (StatusCode::CONFLICT, "collection_exists")
    );
    let bad_shards = w.create("acme", "other", 3, 3).await;
    assert_eq!(
        (bad_shards.status, bad_shards.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let bad_dim = w.create("acme", "other", 0, 2).await;
    assert_eq!(
        (bad_dim.status, bad_dim.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let bad_name = w.create("acme", "Not%20Valid", 3, 2).await;
    assert_eq!(bad_name.code(), "invalid_request");
    let bad_metric = w
        .call(
            Method::PUT,
            "/v1/ns/acme/collections/x",
            Some(&w.admin("acme")),
            Some(json!({"dimension": 3, "metric": "hamming", "shards": 1})),
        )
        .await;
    assert_eq!(
        (bad_metric.status, bad_metric.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );

    let read = w.token("acme", &[Scope::Read]);
    let described = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(described.status, StatusCode::OK);
    let body = described.json();
    assert_eq!(
        (body["dimension"].as_u64(), body["shards"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(body["metric"], "cosine");
    assert!(described.headers.contains_key("x-tidemark"));
    let missing = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/nope",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let not_admin = w
        .call(
            Method::PUT,
            "/v1/ns/acme/collections/y",
            Some(&read),
            Some(json!({"dimension": 3, "metric": "l2", "shards": 1})),
        )
        .await;
    assert_eq!(
        (not_admin.status, not_admin.code().as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
}

#[tokio::test]
async fn json_writes_then_reads_and_search() {
    let w = Writer::open("writes");
    w.create("acme", "notes", 3, 2).await;
    let ok = w
        .write(
            "acme",
            "notes",
            json!([
                {"op": "put", "id": "a", "fields": {"title": "alpha", "lang": "en"}, "vector": [1.0, 0.0, 0.0]},
                {"op": "put", "id": "b", "fields": {"title": "beta", "lang": "fr"}, "vector": [0.0, 1.0, 0.0]},
                {"op": "put", "id": "c", "fields": {"title": "gamma", "lang": "en"}, "vector": [0.9, 0.1, 0.0]},
            ]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    assert!(ok.json()["token"]["shards"].is_object());

    let patched = w
        .write(
            "acme",
            "notes",
            json!([{"op": "patch", "id": "a", "fields": {"title": "ALPHA", "lang": null}}]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let read = w.token("acme", &[Scope::Read]);
    let a = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes/records/a",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["fields"], json!({"title": "ALPHA"}));
    assert_eq!(a.json()["vector"], json!([1.0, 0.0, 0.0]));

    let search = |filter: Option<Value>| {
        let mut body = json!({"vector": [1.0, 0.05, 0.0], "k": 2});
        if let Some(filter) = filter {
            body["filter"] = filter;
        }
        body
    };
    let path = "/v1/ns/acme/collections/notes/search";
    let found = w
        .call(Method::POST, path, Some(&read), Some(search(None)))
        .await;
    assert_eq!(found.status, StatusCode::OK);
    let hits = found.json()["hits"].clone();
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a", "c"]);
    assert_eq!(found.json()["hits"][1]["fields"]["title"], "gamma");
    let filtered = w
        .call(
            Method::POST,
            path,
            Some(&read),
            Some(search(Some(
                json!({"eq": {"field": "lang", "value": "fr"}}),
            ))),
        )
        .await;
    assert_eq!(filtered.json()["hits"][0]["id"], "b");

    w.write("acme", "notes", json!([{"op": "delete", "id": "c"}]))
        .await;
    let gone = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes/records/c",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(
        (gone.status, gone.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let after = w
        .call(Method::POST, path, Some(&read), Some(search(None)))
        .await;
    assert_eq!(
        after.json()["hits"][1]["id"],
        "b",
        "a deleted record leaves the index"
    );

    let moved = w
        .write(
            "acme",
            "notes",
            json!([{"op": "vector", "id": "b", "vector": [1.0, 0.0, 0.0]}]),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_writes_and_searches_get_typed_4xx_and_change_nothing() {
    let w = Writer::open("bad");
    w.create("acme", "notes", 3, 1).await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!([{"op": "put", "id": "a", "fields": {}, "vector": [1.0, 2.0]}]),
            StatusCode::BAD_REQUEST,
            "invalid_vector",
        ),
        (
            json!([{"op": "put", "id": "a", "fields": {}, "vector": [0.0, 0.0, 0.0]}]),
            StatusCode::BAD_REQUEST,
            "invalid_vector",
        ),
        (
            json!([{"op": "put", "id": "a", "fields": {"$deleted": true}}]),
            StatusCode::BAD_REQUEST,
            "invalid_write",
        ),
        (
            json!([{"op": "put", "id": "", "fields": {}}]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!([{"op": "upsert", "id": "a"}]),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!([{"op": "put", "id": "a", "fields": {"blob": "x".repeat(300 * 1024)}}]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "record_too_large",
        ),
        (
            Value::Array(
                (0..501)
                    .map(|i| json!({"op": "delete", "id": format!("r{i}")}))
                    .collect(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
    ];
    for (ops, status, code) in cases {
        // A good op first: the batch must be refused whole.
        let mut all =
            vec![json!({"op": "put", "id": "good", "fields": {"x": 1}, "vector": [1.0, 0.0, 0.0]})];
        all.extend(ops.as_array().unwrap().iter().cloned());
        let answer = w.write("acme", "notes", Value::Array(all)).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (status, code),
            "{ops:.80}"
        );
        let read = w.token("acme", &[Scope::Read]);
        let head = w
            .call(
                Method::GET,
                "/v1/ns/acme/collections/notes/shards/0/head",
                Some(&read),
                None,
            )
            .await;
        assert_eq!(
            head.json()["head"],
            json!(0),
            "nothing was written for {code}"
        );
    }
    let records = "/v1/ns/acme/collections/notes/records";
    let not_json = w.post_raw(records, "text/plain", "hello").await;
    assert_eq!(
        (not_json.status, not_json.code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let broken = w.post_raw(records, "application/json", "{\"ops\": [").await;
    assert_eq!(
        (broken.status, broken.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );

    let read = w.token("acme", &[Scope::Read]);
    let path = "/v1/ns/acme/collections/notes/search";
    for (body, code) in [
        (json!({"vector": [1.0, 0.0], "k": 3}), "invalid_vector"),
        (
            json!({"vector": [1.0, 0.0, 0.0], "k": 0}),
            "invalid_request",
        ),
        (
            json!({"vector": [1.0, 0.0, 0.0], "k": 5, "ef": 0}),
            "invalid_request",
        ),
        (
            json!({"vector": [1.0, 0.0, 0.0], "filter": {"near": 1}}),
            "invalid_json",
        ),
    ] {
        let answer = w.call(Method::POST, path, Some(&read), Some(body)).await;
        assert_eq!(answer.code(), code);
        assert!(answer.status.is_client_error());
    }
    let no_such = w
        .write("acme", "missing", json!([{"op": "delete", "id": "a"}]))
        .await;
    assert_eq!(
        (no_such.status, no_such.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn tokens_scope_every_request_to_their_namespace() {
    let w = Writer::open("tenants");
    w.create("alpha", "notes", 3, 1).await;
    w.create("beta", "notes", 3, 1).await;
    w.write(
        "beta",
        "notes",
        json!([{"op": "put", "id": "secret", "fields": {"x": 1}, "vector": [1.0, 0.0, 0.0]}]),
    )
    .await;
    let alpha = w.admin("alpha");
    for (method, path, body) in [
        (Method::GET, "/v1/ns/beta/collections/notes", None),
        (
            Method::GET,
            "/v1/ns/beta/collections/notes/records/secret",
            None,
        ),
        (
            Method::POST,
            "/v1/ns/beta/collections/notes/search",
            Some(json!({"vector": [1.0, 0.0, 0.0]})),
        ),
        (
            Method::POST,
            "/v1/ns/beta/collections/notes/records",
            Some(json!({"ops": [{"op": "delete", "id": "secret"}]})),
        ),
        (
            Method::GET,
            "/v1/ns/beta/collections/notes/shards/0/head",
            None,
        ),
        (
            Method::GET,
            "/v1/ns/beta/collections/notes/shards/0/log?from=0&to=1",
            None,
        ),
        (
            Method::GET,
            "/v1/ns/beta/collections/notes/shards/0/snapshot",
            None,
        ),
        (Method::GET, "/v1/ns/beta/subscribe", None),
    ] {
        let answer = w.call(method.clone(), path, Some(&alpha), body).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
    }
    let reader = w.token("beta", &[Scope::Read]);
    let write = w
        .call(
            Method::POST,
            "/v1/ns/beta/collections/notes/records",
            Some(&reader),
            Some(json!({"ops": [{"op": "delete", "id": "secret"}]})),
        )
        .await;
    assert_eq!(
        (write.status, write.code().as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let anonymous = w
        .call(Method::GET, "/v1/ns/beta/collections/notes", None, None)
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let forged = w
        .call(
            Method::GET,
            "/v1/ns/beta/collections/notes",
            Some("e30.e30.e30"),
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let still = w
        .call(
            Method::GET,
            "/v1/ns/beta/collections/notes/records/secret",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "the refused delete changed nothing"
    );
}

#[tokio::test]
async fn logs_snapshots_and_binary_batches_are_signed() {
    let w = Writer::open("binary");
    w.create("acme", "notes", 3, 1).await;
    for i in 0..3 {
        w.write("acme", "notes", json!([{"op": "put", "id": format!("r{i}"), "fields": {"i": i}, "vector": [1.0, i as f32, 0.0]}]))
            .await;
    }
    let read = w.token("acme", &[Scope::Read]);
    let writer_key = w.state.keys.writer.verifying_key();
    let limits = Limits::default();

    let base = "/v1/ns/acme/collections/notes/shards/0";
    assert_eq!(
        w.call(Method::GET, &format!("{base}/head"), Some(&read), None)
            .await
            .json()["head"],
        3
    );
    let full = w
        .call(
            Method::GET,
            &format!("{base}/log?from=1&to=3"),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(
        full.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    match wire::decode_verified(&full.bytes, &writer_key, &limits).unwrap() {
        Message::LogRange(range) => {
            assert_eq!(range.from.0, 1);
            assert_eq!(
                range
                    .entries
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>(),
                vec!["r1", "r2"]
            );
        }
        other => panic!("expected a log range, got {other:?}"),
    }
    let open_ended = w
        .call(
            Method::GET,
            &format!("{base}/log?from=2&to=100"),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(open_ended.headers[header::CACHE_CONTROL], "no-store");
    for bad in ["log?from=3&to=3", "log?from=x&to=3", "log"] {
        let answer = w
            .call(Method::GET, &format!("{base}/{bad}"), Some(&read), None)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let no_shard = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes/shards/9/head",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(no_shard.code(), "invalid_request");

    let snapshot = w
        .call(Method::GET, &format!("{base}/snapshot"), Some(&read), None)
        .await;
    assert_eq!(snapshot.headers["x-tidemark-offset"], "3");
    match wire::decode_verified(&snapshot.bytes, &writer_key, &limits).unwrap() {
        Message::Snapshot(s) => assert_eq!(s.records.len(), 3),
        other => panic!("expected a snapshot, got {other:?}"),
    }

    let key = CollectionKey::new(
        Namespace::new("acme").unwrap(),
        CollectionName::new("notes").unwrap(),
    );
    let mut fields = serde_json::Map::new();
    fields.insert("via".into(), json!("binary"));
    let batch = WriteBatch {
        collection: key,
        client_ref: 77,
        ops: vec![WriteOp::put(
            RecordId::new("bin", &limits).unwrap(),
            fields,
            Some(vec![0.0, 0.0, 1.0]),
        )],
    };
    let batch_path = "/v1/ns/acme/collections/notes/batch";
    let acked = w
        .post_raw(
            batch_path,
            "application/x-tidemark",
            wire::encode(&Message::WriteBatch(batch)),
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{:?}", acked.json());
    match wire::decode_verified(&acked.bytes, &writer_key, &limits).unwrap() {
        Message::WriteAck(ack) => assert_eq!(ack.client_ref, 77),
        other => panic!("expected an ack, got {other:?}"),
    }
    let garbage = w
        .post_raw(batch_path, "application/x-tidemark", vec![1, 2, 3, 4])
        .await;
    assert_eq!(
        (garbage.status, garbage.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_envelope")
    );
    let wrong_type = w.post_raw(batch_path, "application/json", vec![]).await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // An admin seals a snapshot at the head now; a reader may not.
    let denied = w
        .call(Method::POST, &format!("{base}/snapshot"), Some(&read), None)
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let admin = w.token("acme", &[Scope::Admin]);
    let sealed = w
        .call(
            Method::POST,
            &format!("{base}/snapshot"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(sealed.status, StatusCode::ACCEPTED);
    assert_eq!(sealed.json()["offset"], 4);
    let mut latest = None;
    for _ in 0..200 {
        let answer = w
            .call(Method::GET, &format!("{base}/snapshot"), Some(&read), None)
            .await;
        if answer.headers["x-tidemark-offset"] == "4" {
            latest = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let latest = latest.expect("the sealed snapshot is served within 10 s");
    match wire::decode_verified(&latest.bytes, &writer_key, &limits).unwrap() {
        Message::Snapshot(s) => {
            assert_eq!(s.records.len(), 4);
            assert!(s.index_segment.is_some(), "sealed");
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn service_endpoints_and_restart() {
    let w = Writer::open("restart");
    assert_eq!(
        w.call(Method::GET, "/healthz", None, None).await.json()["status"],
        "ok"
    );
    let keys = w.call(Method::GET, "/v1/keys", None, None).await.json();
    assert_eq!(keys["writer"].as_str().map(str::len), Some(64));
    w.create("acme", "notes", 3, 2).await;
    w.write(
        "acme",
        "notes",
        json!([{"op": "put", "id": "kept", "fields": {"v": 1}, "vector": [0.0, 1.0, 0.0]}]),
    )
    .await;
    let metrics = w.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(metrics.bytes).unwrap();
    assert!(text.contains("tidemark_write_ops_total 1"), "{text}");
    assert!(text.contains("tidemark_commits_total "), "{text}");
    // One record is below the first seal: the sealing thread is idle.
    assert!(text.contains("tidemark_seals_queued_total 0"), "{text}");
    assert!(text.contains("tidemark_seals_finished_total 0"), "{text}");
    assert!(
        text.contains("tidemark_http_responses_total{class=\"2xx\"}"),
        "{text}"
    );

    let mut w = w;
    w.reopen();
    let read = w.token("acme", &[Scope::Read]);
    let kept = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes/records/kept",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(kept.json()["fields"], json!({"v": 1}));
    let more = w
        .write(
            "acme",
            "notes",
            json!([{"op": "patch", "id": "kept", "fields": {"w": 2}}]),
        )
        .await;
    assert_eq!(
        more.status,
        StatusCode::OK,
        "the shard's actor continues after a restart: {:?}",
        more.json()
    );
    let after = w
        .call(
            Method::GET,
            "/v1/ns/acme/collections/notes/records/kept",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(after.json()["fields"], json!({"v": 1, "w": 2}));
}
