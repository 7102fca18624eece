//! The SQL of settling sign-ups: each statement is one round trip over arrays (`UNNEST`).
//! A sign-up is one row: its team's projects and its log are JSON arrays in it
//! (`runtime/migrations/0006_user_documents.sql`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use tps_contract::command::Signup;
use tps_contract::{SignupCommand, UserReason, UserStatus};
use uuid::Uuid;

/// A user row as settled, with the sign-up it came from.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// The sign-up as accepted.
    pub user: Signup,
    /// CREATED or REJECTED.
    pub status: UserStatus,
    /// Why rejected.
    pub reason: Option<UserReason>,
    /// Digest of the body.
    pub fingerprint: String,
    /// The email under the one normalisation ([`tps_contract::command::email_key`]):
    /// the column with the unique index, and what twins in a batch are compared by.
    pub email_key: Option<String>,
    /// Arrival order on the shard.
    pub stream_seq: i64,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When the worker committed it.
    pub processed_at: DateTime<Utc>,
}

impl UserRow {
    /// A CREATED row for `command`.
    pub fn from_command(command: &SignupCommand, seq: u64, processed_at: DateTime<Utc>) -> Self {
        Self {
            fingerprint: command.user.fingerprint(),
            email_key: command.user.email_key(),
            user: command.user.clone(),
            status: UserStatus::Created,
            reason: None,
            stream_seq: seq as i64,
            created_at: command.accepted_at,
            processed_at,
        }
    }

    /// The same row, refused because its email is taken.
    pub fn rejected(self) -> Self {
        Self { status: UserStatus::Rejected, reason: Some(UserReason::DuplicateEmail), ..self }
    }

    /// The metric label of the outcome.
    pub fn outcome(&self) -> &'static str {
        self.reason.map_or(self.status.as_str(), UserReason::as_str)
    }
}

/// Fingerprints of the users of `ids` already settled.
pub async fn fingerprints(tx: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, fingerprint FROM users WHERE id = ANY($1)").bind(ids).fetch_all(tx).await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("fingerprint")?))).collect()
}

/// The latest moment before the commit: every row of the batch carries it as `processed_at`.
pub async fn commit_clock(tx: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(tx).await
}

const INSERT: &str = "INSERT INTO users (id, status, reason, name, email, age, score, active, country, team_name, team_leader, fingerprint, stream_seq, created_at, processed_at, email_key, projects, logs)
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[], $8::bool[], $9::text[], $10::text[], $11::bool[], $12::text[], $13::bigint[], $14::timestamptz[], $15::timestamptz[], $16::text[], $17::jsonb[], $18::jsonb[])";

/// The JSON array of `items` (an empty one for a rejected row: only created users keep them).
fn document<T: serde::Serialize>(row: &UserRow, items: &[T]) -> serde_json::Value {
    if row.status != UserStatus::Created {
        return serde_json::Value::Array(Vec::new());
    }
    serde_json::to_value(items).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
}

fn bind_rows<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &[UserRow],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let text = |f: fn(&UserRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    query
        .bind(rows.iter().map(|r| r.user.id).collect::<Vec<_>>())
        .bind(text(|r| r.status.as_str().to_owned()))
        .bind(rows.iter().map(|r| r.reason.map(|x| x.as_str().to_owned())).collect::<Vec<Option<String>>>())
        .bind(text(|r| r.user.name.clone()))
        .bind(rows.iter().map(|r| r.user.email.clone()).collect::<Vec<Option<String>>>())
        .bind(rows.iter().map(|r| r.user.age as i32).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.user.score).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.user.active).collect::<Vec<_>>())
        .bind(text(|r| r.user.country.clone()))
        .bind(text(|r| r.user.team.name.clone()))
        .bind(rows.iter().map(|r| r.user.team.leader).collect::<Vec<_>>())
        .bind(text(|r| r.fingerprint.clone()))
        .bind(rows.iter().map(|r| r.stream_seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.processed_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.email_key.clone()).collect::<Vec<Option<String>>>())
        .bind(rows.iter().map(|r| document(r, &r.user.team.projects)).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| document(r, &r.user.logs)).collect::<Vec<_>>())
}

/// Inserts `rows` as CREATED in one statement, skipping any whose email a created
/// user already holds (committed, or committed meanwhile by another shard's
/// worker: the insert waits for that transaction). Returns the ids inserted.
pub async fn insert_created(tx: &mut PgConnection, rows: &[UserRow]) -> Result<HashSet<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!("{INSERT} ON CONFLICT DO NOTHING RETURNING id");
    let ids: Vec<Uuid> = bind_rows(sqlx::query(&sql), rows)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    Ok(ids.into_iter().collect())
}

/// Inserts refused sign-ups (they hold no email slot, so nothing can conflict but the id).
pub async fn insert_rejected(tx: &mut PgConnection, rows: &[UserRow]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!("{INSERT} ON CONFLICT (id) DO NOTHING");
    bind_rows(sqlx::query(&sql), rows).execute(tx).await?;
    Ok(())
}
