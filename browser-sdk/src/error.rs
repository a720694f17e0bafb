//! The SDK's errors and their one translation to JavaScript.
//!
//! Every failure a JS caller can see is an `Error` whose `code` is one of a
//! small, stable set (the server's own codes pass through unchanged), so apps
//! branch on `err.code`, never on message text.

use thiserror::Error;
use tidemark_core::outbox::OutboxError;
use tidemark_core::replica::ApplyError;
use tidemark_core::vector::QueryError;
use tidemark_core::wire::DecodeError;
use wasm_bindgen::JsValue;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SdkError {
    /// The request never got an HTTP answer (no network, DNS, CORS refusal).
    #[error("network unavailable: {0}")]
    Offline(String),
    /// The server answered with an error status and its JSON error body.
    #[error("server answered {status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// A body that does not decode, or whose signature is not the writer's.
    #[error("bad response from the server: {0}")]
    BadResponse(String),
    /// Signed data that decodes but cannot be applied (another shard, a gap
    /// inside the range).
    #[error("bad response from the server: {0}")]
    Apply(#[from] ApplyError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Write(#[from] OutboxError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("local storage failed: {0}")]
    Storage(String),
    #[error("the client is closed")]
    Closed,
}

impl SdkError {
    /// The stable code JS sees as `err.code`.
    pub fn code(&self) -> &str {
        match self {
            SdkError::Offline(_) => "offline",
            SdkError::Http { code, .. } => code,
            SdkError::BadResponse(_) | SdkError::Apply(_) => "bad_response",
            SdkError::InvalidArgument(_) => "invalid_argument",
            SdkError::Write(OutboxError::Vector(_)) | SdkError::Query(QueryError::Vector(_)) => {
                "invalid_vector"
            }
            SdkError::Write(_) => "invalid_write",
            SdkError::Query(_) => "invalid_query",
            SdkError::Storage(_) => "storage",
            SdkError::Closed => "closed",
        }
    }

    /// Whether trying again later may succeed (the sync loop backs off and
    /// retries these; the others are reported and wait for a change).
    pub fn is_retryable(&self) -> bool {
        match self {
            SdkError::Offline(_) | SdkError::Storage(_) => true,
            SdkError::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    pub fn from_decode(error: DecodeError) -> Self {
        SdkError::BadResponse(error.to_string())
    }

    pub(crate) fn storage(error: JsValue) -> Self {
        SdkError::Storage(describe(&error))
    }
}

/// A short description of a thrown JS value.
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

use wasm_bindgen::JsCast;

impl From<SdkError> for JsValue {
    fn from(error: SdkError) -> Self {
        let js = js_sys::Error::new(&error.to_string());
        js.set_name("TidemarkError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code().into());
        js.into()
    }
}
