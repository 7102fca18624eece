//! Bearer-token extractors: [`User`] for any signed-in caller, [`Admin`] for admin routes.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tps_runtime::auth::{Claims, Verifier};

use crate::error::ApiError;
use crate::state::AppState;

/// A caller with a valid HS256 token.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

impl User {
    /// The user id (`sub`).
    pub fn id(&self) -> &str {
        &self.0.sub
    }
}

/// A caller whose token carries the `admin` scope.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

/// The claims of the request's bearer token; 401 when missing or invalid.
pub fn claims(parts: &Parts, tokens: &Verifier) -> Result<Claims, ApiError> {
    let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
    tokens.verify(token).map_err(|_| ApiError::Unauthorized)
}

/// The claims of the `Authorization` header's token or else of `query_token`
/// (`?token=`, for browsers, which cannot set headers on a WebSocket); 401 when
/// neither holds a valid one.
pub fn claims_from_header_or_query(
    headers: &HeaderMap,
    query_token: Option<&str>,
    tokens: &Verifier,
) -> Result<Claims, ApiError> {
    let token = bearer(headers).or(query_token.map(str::trim)).ok_or(ApiError::Unauthorized)?;
    tokens.verify(token).map_err(|_| ApiError::Unauthorized)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim)
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = claims(parts, &state.settings.tokens)?;
        // Limited after verifying, so nobody can spend another user's quota.
        state.protection.check_user(&claims.sub)?;
        Ok(User(claims))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = claims(parts, &state.settings.tokens)?;
        if !claims.is_admin() {
            return Err(ApiError::Forbidden);
        }
        state.protection.check_user(&claims.sub)?;
        Ok(Admin(claims))
    }
}
