//! Accepting a command: the one exactly-once path that orders and sign-ups share.
//!
//! 1. **Claim** the key in Redis ([`crate::claim`], one script, one round trip). The same
//!    body again is a replay, another body a conflict; a kind may refuse a new key (an
//!    order for a ticket known to be sold out).
//! 2. **Publish** the command to JetStream and wait for the PubAck: the 202 is only ever
//!    given for a stored command. A replay publishes the identical command again (same
//!    `Nats-Msg-Id`, same `acceptedAt`), which JetStream or the worker drops.
//! 3. When no claim said whether the key was used (a brand-new claim, Redis lost it, or
//!    Redis is unreachable), **ask Postgres beside the publish** ([`crate::recall`]), and
//!    when the PubAck says `duplicate`, read the stored command: the key's first body
//!    decides (its 202 again, or a conflict), and the claim is written back.
//! 4. A publish without a PubAck **marks the claim failed**, so the retry counts as new,
//!    and answers 503.
//!
//! A kind ([`Acceptable`]) says only what differs: its key and body, its command and
//! stream, its lookups and its answers.

use std::time::Duration;

use async_nats::jetstream::publish::PublishAck;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tps_contract::subject::{MSG_ID_HEADER, StreamNames};
use uuid::Uuid;

use crate::claim::{self, Body, Outcome, Record};
use crate::error::ApiError;
use crate::jetstream::PublishError;
use crate::recall::{self, Batcher, RecallError};
use crate::state::AppState;
use crate::telemetry::metrics;

/// Marks a command published under a Redis claim (a claim's first request, or a replay of
/// it). A claimless copy of the same key sent in the same millisecond publishes an identical
/// command without it, so a claim's first request can tell, when its PubAck says duplicate,
/// whether a replay of its own claim stored the command first or a claimless copy did.
pub const CLAIMED_HEADER: &str = "Tps-Claimed";

/// A request that carries one command of a kind through [`accept`].
pub trait Acceptable: Sync {
    /// The command as published (and as read back from the stream).
    type Command: Serialize + DeserializeOwned + Send + Sync;

    /// The kind, as the recall metric labels it (`order`, `signup`).
    const KIND: &'static str;
    /// The kind in error messages (`order`, `sign-up`).
    const NOUN: &'static str;
    /// The stream (without the prefix) its commands are stored in.
    const STREAM: &'static str;
    /// The stream's label on the publish metrics (`orders`, `users`).
    const STREAM_LABEL: &'static str;
    /// Why a new key is refused, for the 503 while that cannot be final yet.
    const REFUSED: &'static str = "new keys are refused";

    /// The command's id: `Nats-Msg-Id`, and the primary key of its settled row.
    fn id(&self) -> Uuid;
    /// The Redis key of its claim.
    fn claim_key(&self) -> String;
    /// The body this request claims its key with: its fingerprint and further fields.
    fn body(&self) -> Body;
    /// The owner's index of claims (a sorted set key and this claim's member), if the kind keeps one.
    fn index(&self) -> Option<(String, String)> {
        None
    }
    /// Whether a new key is refused (nothing written, nothing published): see [`Acceptable::refusal`].
    fn refuse_new(&self) -> bool {
        false
    }
    /// The command to publish, first accepted at `created_ms`.
    fn command(&self, created_ms: i64) -> Self::Command;
    /// The id of a command read back from the stream.
    fn command_id(command: &Self::Command) -> Uuid;
    /// The claim a command read back from the stream stands for.
    fn command_record(command: Self::Command) -> Record;
    /// The subject `command` is published on (its shard's).
    fn subject(command: &Self::Command, names: &StreamNames, shards: u32) -> String;
    /// Headers beside `Nats-Msg-Id` (an order carries its `traceparent`).
    fn headers(&self, _headers: &mut async_nats::HeaderMap) {}
    /// Settled commands of this kind by id, looked up in micro-batches.
    fn settled(state: &AppState) -> &Batcher<Record>;
    /// The answer for a key used before with another body.
    fn conflict() -> ApiError;
    /// The 202, first or replayed.
    fn accepted(&self, replayed: bool) -> Response;
    /// The final refusal of a new key, when [`Acceptable::refuse_new`] holds. A kind that never
    /// refuses keeps this default (a 503, never reached).
    fn refusal(&self) -> Response {
        ApiError::Unavailable(format!("this {} cannot be taken now; retry shortly", Self::NOUN))
            .into_response()
    }
    /// Counts an accepted (or replayed) command.
    fn count(replayed: bool);
}

/// How a request was answered.
pub struct Answer {
    /// The response.
    pub response: Response,
    /// `Some` when this request stored its command now (new or replayed); `None` when an
    /// earlier use of the key answered (a replay known from Postgres, a conflict, a refusal).
    pub stored: Option<Stored>,
}

/// A command this request stored.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// The same key and body came before.
    pub replayed: bool,
    /// Redis was unreachable, so no claim was made.
    pub degraded: bool,
}

impl Answer {
    fn earlier(response: Response) -> Self {
        Self { response, stored: None }
    }
}

/// What the Redis claim said of the key.
#[derive(Debug, Clone, Copy)]
enum Basis {
    /// No claim existed: a brand-new key, or one whose claim Redis lost or let expire.
    /// `claimed` when a claim was written now (false: Redis was unreachable).
    Fresh { claimed: bool },
    /// The claim holds this body: a replay.
    Replay,
}

/// Takes the request's command: claim, publish (beside a recall when no claim answered), answer.
pub async fn accept<K: Acceptable>(state: &AppState, request: &K) -> Result<Answer, ApiError> {
    let settings = &state.settings;
    let now_ms = Utc::now().timestamp_millis();
    let key = request.claim_key();
    let body = request.body();
    let index = request.index();
    let claim = claim::Claim {
        key: key.clone(),
        fingerprint: &body.fingerprint,
        now_ms,
        ttl_secs: settings.pending_ttl_secs,
        refuse_new: request.refuse_new(),
        fields: &body.fields,
        index,
    };
    let (created_ms, basis) = match claim::claim(&state.redis, &claim).await {
        Ok(Outcome::New { created_ms }) => (created_ms, Basis::Fresh { claimed: true }),
        Ok(Outcome::Replay { created_ms }) => (created_ms, Basis::Replay),
        Ok(Outcome::Conflict) => return Err(K::conflict()),
        Ok(Outcome::Refused) => return refused_unless_known(state, request, &key).await.map(Answer::earlier),
        Err(e) => {
            // Degraded: the derived id, JetStream de-duplication and the Postgres primary
            // key still make the command exactly-once without Redis.
            metrics().redis_degraded.inc();
            state.claims.note_degraded();
            tracing::debug!(error = %e, kind = K::KIND, "accepting without redis");
            if claim.refuse_new {
                return refused_unless_known(state, request, &key).await.map(Answer::earlier);
            }
            (now_ms, Basis::Fresh { claimed: false })
        }
    };
    // The original time on a replay, so a re-published command is identical.
    let command = request.command(created_ms);
    let claimed = !matches!(basis, Basis::Fresh { claimed: false });
    let publish = publish(state, request, &command, claimed);
    let stored = match basis {
        Basis::Replay => {
            publish.await.map_err(|e| not_stored::<K>(&e))?;
            Stored { replayed: true, degraded: false }
        }
        Basis::Fresh { claimed } => {
            // No claim said whether this key was used: ask Postgres while JetStream stores
            // the command. A second publish of a known key is harmless: JetStream drops the
            // same Nats-Msg-Id within its window, and after it the worker skips an id that
            // is already settled (and Postgres, which we asked, had it settled).
            let recall = K::settled(state).get(request.id(), settings.publish_timeout);
            let (published, recalled) = tokio::join!(publish, recall);
            let fresh = Fresh { key: &key, body: &body, claimed, created_ms };
            if let Some(response) = known_answer(state, request, &fresh, recalled, published).await? {
                return Ok(Answer::earlier(response));
            }
            Stored { replayed: false, degraded: !claimed }
        }
    };
    K::count(stored.replayed);
    Ok(Answer { response: request.accepted(stored.replayed), stored: Some(stored) })
}

/// Stores `command` in JetStream with `Nats-Msg-Id` = its id (JetStream drops a second one
/// within its window), and waits for the PubAck.
async fn publish<K: Acceptable>(
    state: &AppState,
    request: &K,
    command: &K::Command,
    claimed: bool,
) -> Result<PublishAck, PublishError> {
    let settings = &state.settings;
    let subject = K::subject(command, &settings.names, settings.shards);
    let payload = serde_json::to_vec(command).map_err(|e| PublishError::Refused(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, K::command_id(command).to_string().as_str());
    if claimed {
        headers.insert(CLAIMED_HEADER, "1");
    }
    request.headers(&mut headers);
    let timeout = settings.publish_timeout;
    crate::jetstream::store(&state.jetstream, subject, headers, payload, timeout, K::STREAM_LABEL).await
}

/// A request whose key had no claim.
struct Fresh<'a> {
    /// The claim's Redis key.
    key: &'a str,
    /// This request's body.
    body: &'a Body,
    /// Whether a claim was written now (false: Redis was unreachable).
    claimed: bool,
    /// The `acceptedAt` (ms) this request published.
    created_ms: i64,
}

impl Fresh<'_> {
    /// Whether `known` is this request's own command: the same body and this request's
    /// `acceptedAt` (a fast worker settled it already, or a concurrent request with the same
    /// key found this claim and published the same command first). Without a claim, only if
    /// this request's own publish was the first (`stored_first`, its PubAck not duplicate):
    /// a claimless copy sent in the same millisecond publishes an identical command, so only
    /// JetStream can tell which came first.
    fn own(&self, known: &Record, stored_first: bool) -> bool {
        (self.claimed || stored_first) && *self.body == known.body && known.created_ms == self.created_ms
    }
}

/// The answer for a key whose claim was missing, from what Postgres and the PubAck say:
/// `Some` when the key was used before (a replay, a conflict) or nothing was stored (503),
/// `None` when it is new and its command was just stored.
async fn known_answer<K: Acceptable>(
    state: &AppState,
    request: &K,
    fresh: &Fresh<'_>,
    recalled: Result<Option<Record>, RecallError>,
    published: Result<PublishAck, PublishError>,
) -> Result<Option<Response>, ApiError> {
    let id = request.id();
    let settled = recalled.unwrap_or_else(|e| {
        // Postgres cannot say: answer from JetStream alone, as without it.
        recall::count(K::KIND, "unknown");
        tracing::debug!(error = %e, %id, kind = K::KIND, "settled commands not consulted");
        None
    });
    let stored_first = matches!(&published, Ok(ack) if !ack.duplicate);
    if let Some(settled) = settled.filter(|s| !fresh.own(s, stored_first)) {
        // Settled: the stored body decides, whatever the publish did.
        return answer_from(state, request, fresh, &settled).await.map(Some);
    }
    let ack = match published {
        Ok(ack) => ack,
        Err(e) => {
            if fresh.claimed {
                claim::mark_failed(&state.redis, fresh.key.to_owned()).await;
            }
            return Err(not_stored::<K>(&e));
        }
    };
    if !ack.duplicate {
        recall::count(K::KIND, "none");
        return Ok(None);
    }
    // JetStream already holds this id: the key was used, and its command is not settled yet
    // (or was settled since we asked). The stored command tells its body.
    let bound = state.settings.publish_timeout;
    let stored: Option<(K::Command, async_nats::HeaderMap)> = crate::jetstream::stored_command(
        &state.jetstream,
        &state.settings.names.stream(K::STREAM),
        ack.sequence,
        bound,
    )
    .await;
    let (earlier, under_claim) = match stored.filter(|(c, _)| K::command_id(c) == id) {
        // Stored under a claim (this request's, when it matches), or by a claimless copy.
        Some((command, headers)) => (Some(K::command_record(command)), headers.get(CLAIMED_HEADER).is_some()),
        // Gone from the stream: settled meanwhile (or expired); ask Postgres once more.
        None => (K::settled(state).get(id, bound).await.ok().flatten(), true),
    };
    if under_claim && earlier.as_ref().is_some_and(|e| fresh.own(e, false)) {
        recall::count(K::KIND, "none");
        return Ok(None);
    }
    match earlier {
        Some(earlier) => answer_from(state, request, fresh, &earlier).await.map(Some),
        None => {
            // Known to JetStream, body unknown to both: the only answer left is the replay.
            recall::count(K::KIND, "unverified");
            K::count(true);
            Ok(Some(request.accepted(true)))
        }
    }
}

/// The answer for a key whose first use is known (settled, or stored in the stream): the
/// same body gets its 202 again, another body the conflict. The claim is written back so
/// that Redis answers the next request with this key.
async fn answer_from<K: Acceptable>(
    state: &AppState,
    request: &K,
    fresh: &Fresh<'_>,
    known: &Record,
) -> Result<Response, ApiError> {
    let same = *fresh.body == known.body;
    recall::count(K::KIND, if same { "same" } else { "other" });
    if !(fresh.claimed && same && known.created_ms == fresh.created_ms) {
        // A claim was just written with another body or time, or none is there: write the known
        // one, so that a replay re-publishes the first command exactly (its `acceptedAt` too).
        claim::remember(&state.redis, fresh.key.to_owned(), known, state.settings.pending_ttl_secs).await;
    }
    if !same {
        return Err(K::conflict());
    }
    K::count(true);
    Ok(request.accepted(true))
}

/// How long a refusal waits for Postgres to say whether the key was used.
const REFUSAL_LOOKUP_BOUND: Duration = Duration::from_secs(3);

/// A claimless key that the kind refuses (an order for a ticket known to be sold out): the
/// refusal only when no command can have this key. A settled one is in Postgres (its 202
/// again, or the conflict). An unsettled one can exist only while the claims are in doubt
/// (Redis lost its data or was unreachable, and the commands from before are not all
/// settled: `claims_watch.rs`); then the api cannot tell yet and answers 503 +
/// `Retry-After`, not a final answer, and the retry gets the right one once the backlog is
/// settled. It does not publish instead: a new key would then get a 202 where an earlier
/// attempt got the refusal, and every refused request would become a command to reject.
async fn refused_unless_known<K: Acceptable>(
    state: &AppState,
    request: &K,
    key: &str,
) -> Result<Response, ApiError> {
    // Nothing runs beside this lookup, and without its answer the request gets 503: wait for it
    // as long as for a pool connection (a fresh pool on a loaded host may need a second to connect).
    let bound = state.settings.publish_timeout.max(REFUSAL_LOOKUP_BOUND);
    match K::settled(state).get(request.id(), bound).await {
        Ok(Some(settled)) => {
            let body = request.body();
            let fresh = Fresh { key, body: &body, claimed: false, created_ms: 0 };
            answer_from(state, request, &fresh, &settled).await
        }
        Ok(None) if !state.claims.in_doubt() => {
            recall::count(K::KIND, "none");
            Ok(request.refusal())
        }
        Ok(None) => {
            recall::count(K::KIND, "in_doubt");
            Err(ApiError::Unavailable(format!(
                "{}, and whether this key has an earlier {} still in the stream cannot be told until \
                 the commands accepted before Redis lost its data are settled",
                K::REFUSED,
                K::NOUN
            )))
        }
        // Without Postgres, a key whose claim expired cannot be told from a new one.
        Err(e) => {
            recall::count(K::KIND, "unknown");
            Err(ApiError::Unavailable(format!(
                "{}, and whether this key has an earlier {} cannot be told now: {e}",
                K::REFUSED,
                K::NOUN
            )))
        }
    }
}

/// The 503 of a command JetStream did not store.
fn not_stored<K: Acceptable>(e: &PublishError) -> ApiError {
    ApiError::Unavailable(format!("the {} could not be stored: {e}", K::NOUN))
}
