//! Conditional GET: a weak ETag over the body, and 304 when the client has it.
//!
//! The tag is a hash of the bytes, so every pod gives the same tag to the same
//! content and a client bounced between pods still gets its 304s. It is weak
//! because the compression layer may send the same content in another encoding.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Clients may keep a copy but must revalidate it before each use: the stock moves.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("no-cache");

/// `W/"<16 hex digits of sha256(body)>"`.
pub fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    HeaderValue::try_from(format!("W/\"{}\"", hex::encode(&digest[..8])))
        .expect("hex is a valid header value")
}

/// 304 when `If-None-Match` names the body's tag, else 200 with the body; both carry the tag.
pub fn respond(request: &HeaderMap, content_type: &'static str, body: Bytes) -> Response {
    let tag = etag(&body);
    let mut response = if matches(request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, tag);
    headers.insert(header::CACHE_CONTROL, CACHE_CONTROL);
    response
}

/// A JSON body, conditionally.
pub fn json<T: serde::Serialize>(request: &HeaderMap, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => respond(request, "application/json", Bytes::from(body)),
        Err(e) => crate::ApiError::Internal(e.to_string()).into_response(),
    }
}

/// Weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag equal to ours with or without `W/`.
fn matches(request: &HeaderMap, tag: &HeaderValue) -> bool {
    let ours = opaque(tag.to_str().unwrap_or_default());
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|theirs| theirs == "*" || opaque(theirs) == ours)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_if_none_match(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn same_body_same_tag_and_304_only_on_a_match() {
        let body = Bytes::from_static(b"{\"a\":1}");
        let tag = etag(&body);
        assert_eq!(tag, etag(b"{\"a\":1}"));
        assert_ne!(tag, etag(b"{\"a\":2}"));
        assert!(tag.to_str().unwrap().starts_with("W/\""));

        let fresh = respond(&HeaderMap::new(), "application/json", body.clone());
        assert_eq!(fresh.status(), 200);
        assert_eq!(fresh.headers()[header::ETAG], tag);

        let strong = tag.to_str().unwrap().trim_start_matches("W/").to_owned();
        for header in [
            tag.to_str().unwrap().to_owned(),
            strong,
            format!("\"other\", {}", tag.to_str().unwrap()),
            "*".into(),
        ] {
            let r = respond(&with_if_none_match(&header), "application/json", body.clone());
            assert_eq!(r.status(), 304, "{header}");
            assert_eq!(r.headers()[header::ETAG], tag);
        }
        let stale = respond(&with_if_none_match("W/\"0000000000000000\""), "application/json", body);
        assert_eq!(stale.status(), 200);
    }
}
