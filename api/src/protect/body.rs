//! The body deadline: a request's body is read in full, within `API_BODY_TIMEOUT_MS`,
//! before the request may take an in-flight slot.
//!
//! Reading it later, in the handler, would let a client that sends its body a byte at
//! a time hold a slot until the request deadline; a few thousand such sign-ups would
//! keep every order waiting. Bodies are capped at 64 KiB (413 beyond), so holding a
//! whole one in memory costs what the handler's `Json` extractor would anyway.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use http_body_util::{BodyExt, Limited};

use crate::error::ApiError;

/// Largest accepted request body (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
use crate::telemetry::metrics;

/// `request` with its body read into memory; 408 when it does not arrive within
/// `deadline`, 413 when it is over the limit, 400 when the client breaks it off.
pub async fn read(request: Request, deadline: Duration) -> Result<Request, ApiError> {
    if !has_body(&request) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Ok(Err(_)) => Err(ApiError::BadRequest("the request body could not be read".into())),
        Err(_) => {
            metrics().shed.get("body_deadline").inc();
            Err(ApiError::RequestTimeout(deadline.as_millis() as u64))
        }
    }
}

/// Whether there is a body to wait for (a WebSocket upgrade or a plain GET has none).
fn has_body(request: &Request) -> bool {
    request.body().size_hint().exact() != Some(0)
}
