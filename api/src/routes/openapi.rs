//! `GET /openapi.json`: the OpenAPI 3 document of every route, body and problem.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::protect::{Policy, Protection, guarded};
use crate::state::AppState;

/// The document, assembled from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "throughput API", description = "Spike-proof ticket orders and sign-ups: 202 once durable, settled exactly once."),
    paths(
        super::orders::create_order, super::orders::get_order, super::orders::list_orders,
        super::users::create_user, super::users::get_user,
        super::tickets::create_ticket, super::tickets::list_tickets, super::tickets::get_ticket,
        super::admin::list_dead_letters, super::admin::replay_dead_letter,
        super::events::events,
        super::health::healthz, super::health::readyz, super::health::metrics, openapi_json,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
    tags((name = "orders"), (name = "users"), (name = "tickets"), (name = "events"), (name = "admin"), (name = "ops"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI route.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    guarded(Router::new().route("/openapi.json", get(openapi_json)), protection, Policy::ANONYMOUS)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
