//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Each variant maps to one status and one problem `type`; internal causes are
//! logged here and never sent to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Base of the problem `type` URIs; the slug after it names the problem.
pub const PROBLEM_BASE: &str = "https://throughput.dev/problems/";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: body, header, query or path.
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token, or one that does not verify.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token is valid but lacks the `admin` scope.
    #[error("this route needs the admin scope")]
    Forbidden,
    /// The resource does not exist, or belongs to someone else.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is over the limit.
    #[error("the body is larger than 64 KiB")]
    PayloadTooLarge,
    /// The body is not `application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The Idempotency-Key was used before with a different body.
    #[error("this Idempotency-Key was already used with a different body")]
    IdempotencyConflict,
    /// The sign-up id was used before with a different body.
    #[error("this id was already signed up with a different body")]
    SignupConflict,
    /// A dead letter's command is already settled: a replay would change nothing.
    #[error("{0}")]
    AlreadySettled(String),
    /// The caller (a user or a client IP) is over its rate limit.
    #[error("too many requests from this {whom}; retry after {retry_after_secs} s")]
    TooManyRequests {
        /// `user` or `ip`.
        whom: &'static str,
        /// When the caller may try again.
        retry_after_secs: u64,
    },
    /// The caller already holds as many live `/v1/events` connections as allowed
    /// (its own share, or the pod's).
    #[error("too many live connections {per}; retry after {retry_after_secs} s")]
    TooManyConnections {
        /// `for this user` or `on this server`.
        per: &'static str,
        /// When the caller may try again.
        retry_after_secs: u64,
    },
    /// The request (its body) did not arrive within the deadline.
    #[error("the request body did not arrive within {0} ms")]
    RequestTimeout(u64),
    /// A dependency could not take the request; the client should retry (same key).
    #[error("{0}")]
    Unavailable(String),
    /// A database error; logged, never shown.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Anything else unexpected; logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

/// The problem document of RFC 9457.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
}

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    /// Status, problem slug and title.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            Self::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large")
            }
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            Self::IdempotencyConflict => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused")
            }
            Self::SignupConflict => (StatusCode::CONFLICT, "id-reused", "Id reused"),
            Self::AlreadySettled(_) => (StatusCode::CONFLICT, "already-settled", "Already settled"),
            Self::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            }
            Self::TooManyConnections { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-connections", "Too many connections")
            }
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request-timeout", "Request timeout"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Database(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
            }
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let detail = match self {
            // Never leak SQL, hostnames or driver messages.
            Self::Database(_) | Self::Internal(_) => "something went wrong on our side".to_owned(),
            other => other.to_string(),
        };
        Problem { kind: format!("{PROBLEM_BASE}{slug}"), title, status: status.as_u16(), detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Database(_) | Self::Internal(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let problem = self.problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, problem_json(&problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            Self::TooManyRequests { retry_after_secs, .. }
            | Self::TooManyConnections { retry_after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // The rest of the body may still be on its way: the connection cannot be reused.
            Self::RequestTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

fn problem_json(problem: &Problem) -> String {
    serde_json::to_string(problem).unwrap_or_else(|_| String::from("{}"))
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            // Postgres unreachable or saturated: transient, so the client may retry.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            // Or Postgres said so: its connection ended (a restart, a failover, a terminated
            // backend), or it takes no connections now.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
            _ => false,
        };
        if transient {
            tracing::warn!(error = %e, "postgres unavailable");
            return Self::Unavailable("the database is unavailable; retry shortly".into());
        }
        Self::Database(e)
    }
}

/// SQLSTATEs that mean "not now" rather than "wrong": class 08 (connection exception) but
/// 08P01 (a protocol violation is a bug), 57P01–57P03 (admin shutdown, crash shutdown, cannot
/// connect now) and 53300 (too many connections). A request that met one is answered 503 +
/// `Retry-After`, not 500.
pub fn is_transient_sqlstate(code: &str) -> bool {
    (code.starts_with("08") && code != "08P01") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            // axum says 422 for a well-formed body of the wrong shape; the contract says 400.
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_do_not_leak() {
        let p = ApiError::Database(sqlx::Error::Protocol("secret host db-7".into())).problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("db-7"));
    }

    #[test]
    fn unavailable_carries_retry_after_and_problem_type() {
        let r = ApiError::Unavailable("nats down".into()).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
    }
}
