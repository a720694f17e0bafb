//! Request authentication: the bearer token, verified by core's rules.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tidemark_core::auth::{self, AuthError, Claims};

use crate::error::AppError;
use crate::server::AppState;

/// The verified claims of the request's `Authorization: Bearer` token.
/// Handlers then call [`Claims::require`] with the namespace of the path.
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(AuthError::Malformed(
                "expected `Authorization: Bearer <token>`",
            ))?;
        Ok(Caller(auth::verify(
            token.trim(),
            &state.token_key,
            unix_now(),
        )?))
    }
}

/// Milliseconds since the Unix epoch, the advisory time of Automerge changes.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch; core takes time as a parameter, the
/// adapters read the clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
