//! The edge's one status mapping: every error a client sees is
//! `{"error": {"code", "message"}}` with a code from docs/api.md (plus the
//! edge-only codes below), never a panic or a JS exception.
//!
//! Edge-only codes:
//!
//! - `502 untrusted_upstream`: data from the writer failed verification
//!   (unsigned, forged, another shard's); nothing of it was applied.
//! - `502 upstream_unreachable`: the writer could not be asked.
//! - `507 memory_budget_exceeded`: loading the shard would pass
//!   `MEMORY_BUDGET_MB`; the isolate refuses rather than be killed.
//! - `500 misconfigured`: a var is missing or malformed.

use serde_json::json;
use tidemark_core::auth::AuthError;
use tidemark_core::replica::ApplyError;
use tidemark_core::vector::QueryError;
use tidemark_core::wire::DecodeError;
use worker::{Response, ResponseBuilder};

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl EdgeError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_json", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(500, "misconfigured", message)
    }

    pub fn untrusted(message: impl Into<String>) -> Self {
        Self::new(502, "untrusted_upstream", message)
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_unreachable", message)
    }

    pub fn behind(message: impl Into<String>) -> Self {
        Self::new(503, "behind_consistency_token", message)
    }

    /// Busy for now (another request is loading the shard); retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    pub fn over_budget(message: impl Into<String>) -> Self {
        Self::new(507, "memory_budget_exceeded", message)
    }

    /// Worth another attempt within a deadline: the writer was briefly away.
    pub fn retryable(&self) -> bool {
        matches!(self.code, "upstream_unreachable" | "unavailable")
    }

    pub fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        // Serializing a json! value cannot fail; the fallback keeps the status.
        Response::from_json(&body)
            .map(|response| response.with_status(self.status))
            .unwrap_or_else(|_| ResponseBuilder::new().with_status(self.status).empty())
    }
}

impl From<AuthError> for EdgeError {
    fn from(err: AuthError) -> Self {
        if err.is_unauthenticated() {
            Self::new(401, "unauthenticated", err.to_string())
        } else {
            Self::new(403, "forbidden", err.to_string())
        }
    }
}

impl From<QueryError> for EdgeError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::Vector(_) => Self::new(400, "invalid_vector", err.to_string()),
            _ => Self::invalid_request(err.to_string()),
        }
    }
}

/// Data from the writer that does not verify or does not fit the replica.
pub fn untrusted_decode(what: &str, err: DecodeError) -> EdgeError {
    EdgeError::untrusted(format!("the writer's {what} was rejected: {err}"))
}

pub fn untrusted_apply(what: &str, err: ApplyError) -> EdgeError {
    EdgeError::untrusted(format!(
        "the writer's {what} does not fit the replica: {err}"
    ))
}

impl From<worker::Error> for EdgeError {
    fn from(err: worker::Error) -> Self {
        Self::new(500, "internal", format!("the edge runtime failed: {err}"))
    }
}
