//! `POST /v1/users` (a sign-up) and `GET /v1/users/{id}`: public routes.
//!
//! The same path as orders: validate, claim the id in Redis, publish to
//! `users.<shard>` and answer 202 only after the PubAck. The worker settles the
//! sign-up as CREATED, or REJECTED with `DUPLICATE_EMAIL`.

use async_nats::jetstream::publish::PublishAck;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tps_contract::command::Signup;
use tps_contract::subject::USERS_STREAM;
use tps_contract::{SignupCommand, UserReason, UserStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::jetstream::PublishError;
use crate::recall::{self, RecallError, SettledSignup};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::users::claim::{self, Claim};
use crate::users::{publish, store};

/// The sign-up routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/users", post(create_user)).route("/v1/users/{id}", get(get_user))
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
    let id = body.id;
    let settings = &state.settings;
    let now_ms = Utc::now().timestamp_millis();
    let fingerprint = body.fingerprint();
    let (created_ms, replayed, claimed) =
        match claim::claim(&state.redis, &id, &fingerprint, now_ms, settings.pending_ttl_secs).await {
            Ok(Claim::New { created_ms }) => (created_ms, false, true),
            Ok(Claim::Replay { created_ms }) => (created_ms, true, true),
            Ok(Claim::Conflict) => return Err(ApiError::SignupConflict),
            Err(e) => {
                // Degraded: JetStream de-duplication on the id and the worker's primary key
                // still make the sign-up exactly-once without Redis.
                metrics().redis_degraded.inc();
                state.claims.note_degraded();
                tracing::debug!(error = %e, "accepting a sign-up without redis");
                (now_ms, false, false)
            }
        };
    // The original time on a replay, so a re-published command is identical.
    let accepted_at = DateTime::from_timestamp_millis(created_ms).unwrap_or_else(Utc::now);
    let command = SignupCommand { user: body, accepted_at };
    let publish = publish::publish(
        &state.jetstream,
        &command,
        &settings.names,
        settings.shards,
        settings.publish_timeout,
    );
    if replayed {
        if let Err(e) = publish.await {
            return Err(ApiError::Unavailable(format!("the sign-up could not be stored: {e}")));
        }
    } else {
        // No claim said whether this id was used: ask Postgres while JetStream stores the
        // command (a second publish of a known id is harmless: JetStream drops the same
        // Nats-Msg-Id within its window, and the worker skips an id already settled).
        let recall = state.settled_signups.get(id, settings.publish_timeout);
        let (published, recalled) = tokio::join!(publish, recall);
        let recalled = recalled.map(|settled| {
            // The lookup runs beside the publish: a fast worker may already have settled the
            // very sign-up this request published (same body, same acceptedAt): that is ours.
            settled.filter(|s| !(s.fingerprint == fingerprint && s.created_ms == created_ms))
        });
        if let Some(answer) =
            known_answer(&state, id, &fingerprint, created_ms, claimed, recalled, published).await?
        {
            return Ok(answer);
        }
    }
    if replayed {
        metrics().signup_replays.inc();
    } else {
        metrics().signups_accepted.inc();
    }
    Ok(super::accepted(SignupAccepted { id, status: "PENDING" }, format!("/v1/users/{id}"), replayed))
}

/// The answer for an id whose claim was missing, from what Postgres and the PubAck say:
/// `Some` when the id was used before (a replay, a 409) or nothing was stored (503),
/// `None` when it is new and its sign-up was just stored.
async fn known_answer(
    state: &AppState,
    id: Uuid,
    fingerprint: &str,
    created_ms: i64,
    claimed: bool,
    recalled: Result<Option<SettledSignup>, RecallError>,
    published: Result<PublishAck, PublishError>,
) -> Result<Option<Response>, ApiError> {
    let settled = recalled.unwrap_or_else(|e| {
        recall::count("signup", "unknown");
        tracing::debug!(error = %e, %id, "settled sign-ups not consulted");
        None
    });
    if let Some(stored) = settled {
        return answer_from(state, id, fingerprint, &stored.fingerprint, claimed).await.map(Some);
    }
    let ack = match published {
        Ok(ack) => ack,
        Err(e) => {
            if claimed {
                claim::mark_failed(&state.redis, &id).await;
            }
            return Err(ApiError::Unavailable(format!("the sign-up could not be stored: {e}")));
        }
    };
    if !ack.duplicate {
        recall::count("signup", "none");
        return Ok(None);
    }
    // JetStream already holds this id, not settled yet (or settled since we asked).
    let bound = state.settings.publish_timeout;
    let stored: Option<SignupCommand> = crate::jetstream::stored_command(
        &state.jetstream,
        &state.settings.names.stream(USERS_STREAM),
        ack.sequence,
        bound,
    )
    .await;
    let earlier = match stored.filter(|c| c.user.id == id) {
        Some(c) => Some((c.user.fingerprint(), c.accepted_at.timestamp_millis())),
        None => {
            state.settled_signups.get(id, bound).await.ok().flatten().map(|s| (s.fingerprint, s.created_ms))
        }
    };
    // The same body with this request's own `acceptedAt` is this request's claim: a concurrent
    // request with the same id found the claim and published the same command first (or a fast
    // worker settled it). The sign-up is new, and this is its first answer.
    if earlier.as_ref().is_some_and(|(fp, at)| fp == fingerprint && *at == created_ms) {
        recall::count("signup", "none");
        return Ok(None);
    }
    let earlier = earlier.map(|(fp, _)| fp);
    match earlier {
        Some(earlier) => answer_from(state, id, fingerprint, &earlier, claimed).await.map(Some),
        None => {
            recall::count("signup", "unverified");
            metrics().signup_replays.inc();
            Ok(Some(super::accepted(
                SignupAccepted { id, status: "PENDING" },
                format!("/v1/users/{id}"),
                true,
            )))
        }
    }
}

/// The answer for an id whose body is known (settled, or stored in the stream): the same
/// body is a replay, another one 409. The claim is written back for the next request.
async fn answer_from(
    state: &AppState,
    id: Uuid,
    fingerprint: &str,
    known: &str,
    claimed: bool,
) -> Result<Response, ApiError> {
    let same = fingerprint == known;
    recall::count("signup", if same { "same" } else { "other" });
    if !(claimed && same) {
        let now_ms = Utc::now().timestamp_millis();
        claim::remember(&state.redis, &id, known, now_ms, state.settings.pending_ttl_secs).await;
    }
    if !same {
        return Err(ApiError::SignupConflict);
    }
    metrics().signup_replays.inc();
    Ok(super::accepted(SignupAccepted { id, status: "PENDING" }, format!("/v1/users/{id}"), true))
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
