//! The worker's configuration, read from its vars (`wrangler.toml` `[vars]`,
//! secrets, or miniflare bindings in tests).
//!
//! | var | meaning | default |
//! |---|---|---|
//! | `WRITER_URL` | the regional writer's base URL | required |
//! | `WRITER_PUBLIC_KEY` | hex Ed25519 key that signs the writer's envelopes | required |
//! | `TOKEN_PUBLIC_KEY` | hex Ed25519 key of the access-token issuer | required |
//! | `MAX_STALENESS_MS` | how old a shard's last head check may be for a read without a token | 1000 |
//! | `CONSISTENCY_WAIT_MS` | how long a read with a consistency token waits for catch-up | 2000 |
//! | `MEMORY_BUDGET_MB` | replica memory (records + indexes) the isolate may hold | 96 |
//! | `VECTOR_PRECISION` | `f32`, `int8` or `int8-rerank` for loaded sealed segments | `f32` |
//!
//! The keys are configured, not fetched from the writer's `/v1/keys`: a key
//! learned over the same channel as the data would let whoever controls that
//! channel sign its own data.

use tidemark_core::VerifyingKey;
use tidemark_core::vector::Precision;
use worker::Env;

use crate::error::EdgeError;

/// 96 MB of replica data leaves room for the wasm heap's other users under
/// the isolate's 128 MB.
const DEFAULT_BUDGET_MB: u64 = 96;

#[derive(Clone, Debug)]
pub struct Config {
    pub writer_url: String,
    pub writer_key: VerifyingKey,
    pub token_key: VerifyingKey,
    pub max_staleness_ms: u64,
    pub consistency_wait_ms: u64,
    pub memory_budget_bytes: usize,
    pub precision: Precision,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, EdgeError> {
        let writer_url = required(env, "WRITER_URL")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            writer_url,
            writer_key: key(env, "WRITER_PUBLIC_KEY")?,
            token_key: key(env, "TOKEN_PUBLIC_KEY")?,
            max_staleness_ms: number(env, "MAX_STALENESS_MS", 1000)?,
            consistency_wait_ms: number(env, "CONSISTENCY_WAIT_MS", 2000)?,
            memory_budget_bytes: number(env, "MEMORY_BUDGET_MB", DEFAULT_BUDGET_MB)?
                .saturating_mul(1 << 20) as usize,
            precision: precision(env)?,
        })
    }
}

fn optional(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn required(env: &Env, name: &str) -> Result<String, EdgeError> {
    optional(env, name)
        .ok_or_else(|| EdgeError::misconfigured(format!("the var {name} is not set")))
}

fn number(env: &Env, name: &str, default: u64) -> Result<u64, EdgeError> {
    match optional(env, name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| EdgeError::misconfigured(format!("{name} must be a whole number"))),
    }
}

fn key(env: &Env, name: &str) -> Result<VerifyingKey, EdgeError> {
    let text = required(env, name)?;
    let bytes: [u8; 32] = unhex(text.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| EdgeError::misconfigured(format!("{name} must be 64 hex digits")))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| EdgeError::misconfigured(format!("{name} is not an Ed25519 public key")))
}

fn precision(env: &Env) -> Result<Precision, EdgeError> {
    match optional(env, "VECTOR_PRECISION").as_deref().map(str::trim) {
        None | Some("f32") => Ok(Precision::F32),
        Some("int8") => Ok(Precision::Int8),
        Some("int8-rerank") => Ok(Precision::Int8Rerank),
        Some(other) => Err(EdgeError::misconfigured(format!(
            "VECTOR_PRECISION {other:?} is not f32, int8 or int8-rerank"
        ))),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
