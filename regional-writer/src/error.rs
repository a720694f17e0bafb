//! The one place where errors become HTTP responses.
//!
//! Every error a client can see is JSON `{"error": {"code", "message"}}`
//! with a stable, documented `code` (docs/api.md) and a message meant for a
//! person. Internal details (SQL errors, paths) are logged, never returned.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidemark_core::auth::AuthError;

use tidemark_core::limits::LimitError;
use tidemark_core::model::SchemaError;
use tidemark_core::vector::QueryError;
use tidemark_core::wire::DecodeError;
use tidemark_core::writer::WriteError;

use crate::engine::EngineError;
use crate::store::{CommitError, StoreError};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// Storage trouble: the client may retry; the details go to the log.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed on storage");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the writer cannot serve this now; retry later",
        )
    }
}

impl AppError {
    /// A binary body that does not decode (client input, so a 4xx).
    pub fn from_decode(err: DecodeError) -> Self {
        match err {
            DecodeError::Limit(limit) => Self::from(limit),
            other => Self::bad_request("invalid_envelope", other.to_string()),
        }
    }
}

impl From<LimitError> for AppError {
    fn from(err: LimitError) -> Self {
        let code = match err {
            LimitError::BatchTooLarge { .. } => "batch_too_large",
            LimitError::FrameTooLarge { .. } => "body_too_large",
            _ => "record_too_large",
        };
        Self::too_large(code, err.to_string())
    }
}

impl From<SchemaError> for AppError {
    fn from(err: SchemaError) -> Self {
        Self::bad_request("invalid_request", err.to_string())
    }
}

impl From<EngineError> for AppError {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        match err {
            EngineError::NoCollection(_) => Self::not_found(message),
            EngineError::CollectionExists(_) => Self::conflict("collection_exists", message),
            EngineError::Schema(_) | EngineError::NoShard { .. } | EngineError::BadRange { .. } => {
                Self::bad_request("invalid_request", message)
            }
            EngineError::Write(WriteError::Limit(limit)) => Self::from(limit),
            EngineError::Write(WriteError::Vector { .. }) => {
                Self::bad_request("invalid_vector", message)
            }
            EngineError::Write(WriteError::MissingDependencies { .. }) => {
                Self::conflict("missing_dependencies", message)
            }
            EngineError::Write(WriteError::Name(_)) => {
                Self::bad_request("invalid_request", message)
            }
            EngineError::Write(_) | EngineError::Rejected(_) => {
                Self::bad_request("invalid_write", message)
            }
            EngineError::Query(QueryError::Vector(_)) => {
                Self::bad_request("invalid_vector", message)
            }
            EngineError::Query(_) => Self::bad_request("invalid_request", message),
            EngineError::Commit(_)
            | EngineError::Store(_)
            | EngineError::Corrupt(_)
            | EngineError::Sealer(_) => Self::unavailable(message),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        if err.is_unauthenticated() {
            Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", err.to_string())
        } else {
            Self::new(StatusCode::FORBIDDEN, "forbidden", err.to_string())
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with `content-type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(
                "body_too_large",
                "the request body is larger than the writer accepts",
            ),
            other => Self::bad_request("invalid_json", other.body_text()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        Self::unavailable(err)
    }
}

impl From<CommitError> for AppError {
    fn from(err: CommitError) -> Self {
        Self::unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_are_json_with_a_code_and_no_internals() {
        let response = AppError::from(StoreError::Backend("disk I/O error at /secret/path".into()))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"code\":\"unavailable\""), "{text}");
        assert!(!text.contains("/secret/path"), "{text}");
    }

    #[test]
    fn auth_errors_split_into_401_and_403() {
        assert_eq!(
            AppError::from(AuthError::Expired).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            AppError::from(AuthError::WrongNamespace).status,
            StatusCode::FORBIDDEN
        );
    }
}
