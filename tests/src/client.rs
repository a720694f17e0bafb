//! An authenticated client of one writer over its HTTP API (`docs/api.md`).

use std::time::Duration;

use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

/// Calls the writer's `/v1` API with one bearer token. Cheap to clone: the
/// agent's connection pool is shared.
#[derive(Clone)]
pub struct WriterClient {
    base_url: String,
    namespace: String,
    token: String,
    agent: ureq::Agent,
}

impl WriterClient {
    pub fn new(base_url: &str, namespace: &str, token: &str, timeout: Duration) -> Self {
        Self {
            base_url: base_url.to_string(),
            namespace: namespace.to_string(),
            token: token.to_string(),
            agent: crate::agent(timeout),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/ns/{}{path}", self.base_url, self.namespace)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The writer's Ed25519 public key, which signs every envelope it serves.
    pub fn writer_key(&self) -> anyhow::Result<VerifyingKey> {
        let (status, body) = crate::get_json(&format!("{}/v1/keys", self.base_url))?;
        if status != 200 {
            bail!("GET /v1/keys: {status} {body}");
        }
        let hex = body["writer"].as_str().context("no writer key")?;
        let bytes: [u8; 32] = decode_hex(hex)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the writer key is not 32 bytes"))?;
        Ok(VerifyingKey::from_bytes(&bytes)?)
    }

    /// Creates the collection (or finds the same one).
    pub fn create_collection(
        &self,
        name: &str,
        dimension: usize,
        shards: u32,
    ) -> anyhow::Result<()> {
        let mut response = self
            .agent
            .put(self.url(&format!("/collections/{name}")))
            .header("authorization", self.bearer())
            .send_json(json!({"dimension": dimension, "metric": "cosine", "shards": shards}))?;
        let status = response.status().as_u16();
        if status != 200 && status != 201 {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            bail!("creating {name}: {status} {body}");
        }
        Ok(())
    }

    /// POSTs JSON write ops. `Ok` carries the consistency token's shards
    /// (`{"0": 14}`) and means the writer acknowledged: the batch is durable.
    /// Any error, including a dropped connection, means "not acknowledged".
    pub fn write_json(&self, collection: &str, ops: &Value) -> anyhow::Result<Value> {
        let mut response = self
            .agent
            .post(self.url(&format!("/collections/{collection}/records")))
            .header("authorization", self.bearer())
            .send_json(json!({ "ops": ops }))?;
        let status = response.status().as_u16();
        let body: Value = response.body_mut().read_json()?;
        if status != 200 {
            bail!("write: {status} {body}");
        }
        Ok(body["token"]["shards"].clone())
    }

    /// POSTs a binary `WriteBatch` envelope; `Ok` is the signed ack envelope.
    pub fn write_batch(&self, collection: &str, envelope: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .agent
            .post(self.url(&format!("/collections/{collection}/batch")))
            .header("authorization", self.bearer())
            .header("content-type", "application/x-tidemark")
            .send(envelope)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec()?;
        if status != 200 {
            bail!("batch: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// `GET .../records/{id}`: the status and JSON body.
    pub fn get_record(&self, collection: &str, id: &str) -> anyhow::Result<(u16, Value)> {
        let mut response = self
            .agent
            .get(self.url(&format!("/collections/{collection}/records/{id}")))
            .header("authorization", self.bearer())
            .call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_json()?))
    }

    pub fn head(&self, collection: &str, shard: u32) -> anyhow::Result<u64> {
        let mut response = self
            .agent
            .get(self.url(&format!("/collections/{collection}/shards/{shard}/head")))
            .header("authorization", self.bearer())
            .call()?;
        let status = response.status().as_u16();
        let body: Value = response.body_mut().read_json()?;
        if status != 200 {
            bail!("head: {status} {body}");
        }
        body["head"].as_u64().context("head is not a number")
    }

    /// The raw signed `LogRange` envelope for `[from, to)`.
    pub fn log_range(
        &self,
        collection: &str,
        shard: u32,
        from: u64,
        to: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .agent
            .get(self.url(&format!(
                "/collections/{collection}/shards/{shard}/log?from={from}&to={to}"
            )))
            .header("authorization", self.bearer())
            .call()?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()?;
        if status != 200 {
            bail!("log: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

fn decode_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        bail!("odd-length hex");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("bad hex"))
        .collect()
}
