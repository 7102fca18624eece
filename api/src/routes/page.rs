//! The live page at `/`: static HTML and JavaScript compiled into the binary.
//!
//! It lists the catalog with stock pushed over `/v1/events`, with a search box
//! and the filters and sorts of `GET /v1/tickets`, buys with the
//! pasted token (or `/#token=…`), and shows each order settle. No build step:
//! the two files in `api/static/` are served as they are.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;

use crate::conditional;
use crate::protect::{Policy, Protection, guarded};
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");

/// `/` and `/app.js`, compressed, with ETags.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    let page = Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .layer(super::tickets::compression());
    guarded(page, protection, Policy::ANONYMOUS)
}

async fn index(headers: HeaderMap) -> Response {
    conditional::respond(&headers, "text/html; charset=utf-8", Bytes::from_static(INDEX_HTML.as_bytes()))
}

async fn app_js(headers: HeaderMap) -> Response {
    conditional::respond(&headers, "text/javascript; charset=utf-8", Bytes::from_static(APP_JS.as_bytes()))
}
