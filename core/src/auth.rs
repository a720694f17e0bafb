//! Access tokens: compact JWTs signed with Ed25519 (`alg: EdDSA`).
//!
//! A token says which namespace (tenant) its bearer may touch, with which
//! scopes, until when. The writer and the edge both verify tokens with this
//! module, so a request is judged the same wherever it lands; and the tenant
//! of a request comes only from verified claims, never from its path or
//! parameters ([`Claims::require`]).
//!
//! Claims, as JSON:
//!
//! ```json
//! { "ns": "acme", "scope": "read write", "exp": 1800000000, "sub": "user-42" }
//! ```
//!
//! `scope` is space-separated (as in OAuth 2.0); the scopes are `read`,
//! `write` and `admin` (collection management). `exp` and the optional `nbf`
//! are Unix seconds; the caller passes the current time, since core reads no
//! clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longer tokens are refused before any decoding: real ones are ~250 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Clock skew tolerated between the token's issuer and the verifier.
pub const LEEWAY_SECS: u64 = 30;

const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// What a verified token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub scopes: Vec<Scope>,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    pub not_before: Option<u64>,
    pub subject: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WireClaims {
    ns: String,
    scope: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
}

#[derive(Deserialize)]
struct WireHeader {
    alg: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("no access token was presented")]
    Missing,
    #[error("the access token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the access token uses algorithm {0:?}; only EdDSA is accepted")]
    UnsupportedAlgorithm(String),
    #[error("the access token's signature is invalid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token is for another namespace")]
    WrongNamespace,
    #[error("the access token lacks the {0:?} scope")]
    MissingScope(Scope),
}

impl AuthError {
    /// Whether this is about who the caller is (HTTP 401) rather than what
    /// they may do (HTTP 403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, AuthError::WrongNamespace | AuthError::MissingScope(_))
    }
}

impl Claims {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Allows the request only if it stays inside the token's namespace and
    /// the token carries `scope`.
    pub fn require(&self, namespace: &str, scope: Scope) -> Result<(), AuthError> {
        if self.namespace != namespace {
            return Err(AuthError::WrongNamespace);
        }
        if !self.has(scope) {
            return Err(AuthError::MissingScope(scope));
        }
        Ok(())
    }
}

/// Signs `claims` into a compact JWT.
pub fn issue(claims: &Claims, key: &SigningKey) -> String {
    let scope: Vec<&str> = claims.scopes.iter().map(|s| s.as_str()).collect();
    let wire = WireClaims {
        ns: claims.namespace.clone(),
        scope: scope.join(" "),
        exp: claims.expires_at,
        nbf: claims.not_before,
        sub: claims.subject.clone(),
    };
    // Serializing a struct of strings and integers cannot fail.
    let payload = serde_json::to_vec(&wire).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// Verifies `token` against the issuer's public key at time `now` (Unix
/// seconds) and returns its claims.
pub fn verify(token: &str, key: &VerifyingKey, now: u64) -> Result<Claims, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("longer than 4096 bytes"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let header: WireHeader = serde_json::from_slice(&decode(header)?)
        .map_err(|_| AuthError::Malformed("header is not JSON"))?;
    if header.alg != "EdDSA" {
        return Err(AuthError::UnsupportedAlgorithm(header.alg));
    }
    let signature: [u8; 64] = decode(signature)?
        .try_into()
        .map_err(|_| AuthError::Malformed("signature is not 64 bytes"))?;
    let signing_input = &token[..token.len() - signature_len(token)];
    key.verify(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| AuthError::BadSignature)?;
    // Only now, with the signature checked, are the claims worth reading.
    let wire: WireClaims = serde_json::from_slice(&decode(payload)?)
        .map_err(|_| AuthError::Malformed("claims are not the expected JSON"))?;
    if now > wire.exp.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    if wire
        .nbf
        .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
    {
        return Err(AuthError::NotYetValid);
    }
    let scopes = wire
        .scope
        .split_ascii_whitespace()
        .map(|name| Scope::parse(name).ok_or(AuthError::Malformed("unknown scope")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Claims {
        namespace: wire.ns,
        scopes,
        expires_at: wire.exp,
        not_before: wire.nbf,
        subject: wire.sub,
    })
}

/// Length of `.signature` at the end of a token already split into three.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_800_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims(scopes: &[Scope]) -> Claims {
        Claims {
            namespace: "acme".into(),
            scopes: scopes.to_vec(),
            expires_at: NOW + 3600,
            not_before: None,
            subject: Some("user-42".into()),
        }
    }

    #[test]
    fn issued_tokens_verify_and_scope_requests() {
        let token = issue(&claims(&[Scope::Read, Scope::Write]), &key(1));
        let verified = verify(&token, &key(1).verifying_key(), NOW).unwrap();
        assert_eq!(verified, claims(&[Scope::Read, Scope::Write]));
        assert_eq!(verified.require("acme", Scope::Write), Ok(()));
        assert_eq!(
            verified.require("other", Scope::Read),
            Err(AuthError::WrongNamespace)
        );
        assert_eq!(
            verified.require("acme", Scope::Admin),
            Err(AuthError::MissingScope(Scope::Admin))
        );
    }

    #[test]
    fn read_scope_cannot_write() {
        let token = issue(&claims(&[Scope::Read]), &key(1));
        let verified = verify(&token, &key(1).verifying_key(), NOW).unwrap();
        assert_eq!(
            verified.require("acme", Scope::Write),
            Err(AuthError::MissingScope(Scope::Write))
        );
    }

    #[test]
    fn another_issuers_token_is_rejected() {
        let token = issue(&claims(&[Scope::Read]), &key(2));
        assert_eq!(
            verify(&token, &key(1).verifying_key(), NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let token = issue(&claims(&[Scope::Read]), &key(1));
        let parts: Vec<&str> = token.split('.').collect();
        let forged =
            URL_SAFE_NO_PAD.encode(br#"{"ns":"acme","scope":"read write admin","exp":1900000000}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            verify(&tampered, &key(1).verifying_key(), NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn time_bounds_are_enforced_with_leeway() {
        let public = key(1).verifying_key();
        let token = issue(&claims(&[Scope::Read]), &key(1));
        assert!(verify(&token, &public, NOW + 3600 + LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(&token, &public, NOW + 3600 + LEEWAY_SECS + 1),
            Err(AuthError::Expired)
        );
        let mut early = claims(&[Scope::Read]);
        early.not_before = Some(NOW + 600);
        let token = issue(&early, &key(1));
        assert_eq!(verify(&token, &public, NOW), Err(AuthError::NotYetValid));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let public = key(1).verifying_key();
        let none = r#"{"alg":"none"}"#;
        let cases = [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!.??.**".into(),
            format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(none)),
            format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(HEADER)),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for case in &cases {
            let err = verify(case, &public, NOW).unwrap_err();
            assert!(err.is_unauthenticated(), "{case:?} -> {err:?}");
        }
        assert_eq!(
            verify(&cases[4], &public, NOW),
            Err(AuthError::UnsupportedAlgorithm("none".into()))
        );
    }
}
