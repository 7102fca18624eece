//! `POST /v1/users` (a sign-up) and `GET /v1/users/{id}`: public routes.
//!
//! The same path as orders: validate, claim the id in Redis, publish to
//! `users.<shard>` and answer 202 only after the PubAck. The worker settles the
//! sign-up as CREATED, or REJECTED with `DUPLICATE_EMAIL`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tps_contract::command::Signup;
use tps_contract::subject::{StreamNames, USERS_STREAM};
use tps_contract::{SignupCommand, UserReason, UserStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accept::{self, Acceptable};
use crate::claim::{Body, Record};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::protect::{Policy, Protection, Stream, guarded};
use crate::recall::Batcher;
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::users::{claim, signup_key, store};

/// The sign-up routes: anonymous; reads need Postgres, new sign-ups never do but are shed
/// while the sign-up consumers lag.
pub fn router(protection: &Arc<Protection>) -> Router<AppState> {
    let sign_up = Router::new().route("/v1/users", post(create_user));
    let read = Router::new().route("/v1/users/{id}", get(get_user));
    guarded(sign_up, protection, Policy::ANONYMOUS.sheds_on_backlog(Stream::Users)).merge(guarded(
        read,
        protection,
        Policy::ANONYMOUS.needs_postgres(),
    ))
}

/// The 202 answer: the sign-up is durable and will be settled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupAccepted {
    /// The sign-up's id, as sent.
    pub id: Uuid,
    /// Always `PENDING`.
    #[schema(example = "PENDING")]
    pub status: &'static str,
}

/// Where a sign-up stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserState {
    /// The id.
    pub id: Uuid,
    /// `PENDING`, `CREATED` or `REJECTED`.
    #[schema(value_type = String, example = "CREATED")]
    pub status: UserStatus,
    /// `DUPLICATE_EMAIL`, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "DUPLICATE_EMAIL")]
    pub reason: Option<UserReason>,
    /// The full user, once CREATED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<CreatedUser>,
}

/// A created user: the sign-up as stored, and when.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    /// Every field of the sign-up.
    #[serde(flatten)]
    pub signup: Signup,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When it was stored.
    pub processed_at: DateTime<Utc>,
}

/// Sign up. Answers 202 only once JetStream has stored the command; idempotent on `id`.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", request_body = Signup,
    responses(
        (status = 202, body = SignupAccepted, description = "Durable; will be settled. `Idempotent-Replayed: true` on a replay."),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "A field is missing, unknown or invalid"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "This id was signed up with another body"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "Not stored; retry the same body after Retry-After"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    Json(body): Json<Signup>,
) -> Result<Response, ApiError> {
    body.validate().map_err(ApiError::BadRequest)?;
    let request = SignupRequest { fingerprint: body.fingerprint(), signup: body };
    Ok(accept::accept(&state, &request).await?.response)
}

/// A sign-up on its way through [`accept::accept`]: claimed on its id with its body's
/// fingerprint, never refused (there is no stock to run out of).
struct SignupRequest {
    signup: Signup,
    /// `Signup::fingerprint`, computed once.
    fingerprint: String,
}

impl Acceptable for SignupRequest {
    type Command = SignupCommand;

    const KIND: &'static str = "signup";
    const NOUN: &'static str = "sign-up";
    const STREAM: &'static str = USERS_STREAM;
    const STREAM_LABEL: &'static str = "users";

    fn id(&self) -> Uuid {
        self.signup.id
    }

    fn claim_key(&self) -> String {
        signup_key(&self.signup.id)
    }

    fn body(&self) -> Body {
        claim::body(self.fingerprint.clone())
    }

    fn command(&self, created_ms: i64) -> SignupCommand {
        let accepted_at = DateTime::from_timestamp_millis(created_ms).unwrap_or_else(Utc::now);
        SignupCommand { user: self.signup.clone(), accepted_at }
    }

    fn command_id(command: &SignupCommand) -> Uuid {
        command.user.id
    }

    fn command_record(command: SignupCommand) -> Record {
        claim::record(command.user.fingerprint(), command.accepted_at.timestamp_millis())
    }

    fn subject(command: &SignupCommand, names: &StreamNames, shards: u32) -> String {
        names.user_subject(tps_contract::shard_for(&command.user.id, shards))
    }

    fn settled(state: &AppState) -> &Batcher<Record> {
        &state.settled_signups
    }

    fn conflict() -> ApiError {
        ApiError::SignupConflict
    }

    fn accepted(&self, replayed: bool) -> Response {
        let id = self.signup.id;
        super::accepted(SignupAccepted { id, status: "PENDING" }, format!("/v1/users/{id}"), replayed)
    }

    fn count(replayed: bool) {
        if replayed {
            metrics().signup_replays.inc();
        } else {
            metrics().signups_accepted.inc();
        }
    }
}

/// A sign-up's state: settled from Postgres, else PENDING while its claim lives in Redis.
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "The sign-up's id")),
    responses(
        (status = 200, body = UserState),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "Never accepted"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "Not settled, and Redis is unreachable"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<UserState>, ApiError> {
    if let Some(settled) = store::get(&state.db, &id).await? {
        let user = (settled.status == UserStatus::Created).then_some(CreatedUser {
            signup: settled.user,
            created_at: settled.created_at,
            processed_at: settled.processed_at,
        });
        return Ok(axum::Json(UserState { id, status: settled.status, reason: settled.reason, user }));
    }
    match claim::pending_since(&state.redis, &id).await {
        Ok(Some(_)) => {
            Ok(axum::Json(UserState { id, status: UserStatus::Pending, reason: None, user: None }))
        }
        Ok(None) => Err(ApiError::NotFound("user")),
        Err(e) => Err(ApiError::Unavailable(format!(
            "the sign-up is not settled and pending sign-ups are unreadable: {e}"
        ))),
    }
}
