//! Extractors whose rejections are problem documents rather than axum's plain text.
//!
//! Bodies, paths and queries all fail as [`ApiError`], so a malformed request
//! gets the same problem+json shape as every other error.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`), limited to 64 KiB.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// A path parameter.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The `Idempotency-Key` header: 1–128 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?;
        parse_key(value.as_bytes()).map(|k| IdempotencyKey(k.to_owned()))
    }
}

/// Visible ASCII is 0x21..=0x7E: no spaces, no control characters, nothing beyond ASCII.
fn parse_key(bytes: &[u8]) -> Result<&str, ApiError> {
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    // Visible ASCII is always valid UTF-8.
    std::str::from_utf8(bytes).map_err(|_| ApiError::BadRequest("Idempotency-Key is not ASCII".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_128() {
        assert!(parse_key(b"abc-123_~!").is_ok());
        assert!(parse_key(&[b'k'; 128]).is_ok());
        assert!(parse_key(&[b'k'; 129]).is_err());
        assert!(parse_key(b"").is_err());
        assert!(parse_key(b"a b").is_err());
        assert!(parse_key("é".as_bytes()).is_err());
        assert!(parse_key(b"a\tb").is_err());
    }
}
