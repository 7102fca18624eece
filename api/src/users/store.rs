//! Settled users as Postgres holds them: one row each, its projects and log as
//! JSON arrays in the order sent.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tps_contract::command::{LogEntry, Project, Signup, Team};
use tps_contract::{UserReason, UserStatus};
use uuid::Uuid;

/// A settled sign-up.
#[derive(Debug, Clone)]
pub struct SettledUser {
    /// CREATED or REJECTED.
    pub status: UserStatus,
    /// Why rejected.
    pub reason: Option<UserReason>,
    /// The stored user (for a rejected one, the body that was refused).
    pub user: Signup,
    /// When the api accepted it.
    pub created_at: DateTime<Utc>,
    /// When the worker committed it.
    pub processed_at: DateTime<Utc>,
}

/// The settled sign-up `id`, if any.
pub async fn get(db: &PgPool, id: &Uuid) -> Result<Option<SettledUser>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.status, u.reason, u.name, u.email, u.age, u.score, u.active, u.country, u.team_name, u.team_leader,
                u.created_at, u.processed_at, u.projects, u.logs
         FROM users u WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let Json(projects): Json<Vec<Project>> = r.try_get("projects")?;
    let Json(logs): Json<Vec<LogEntry>> = r.try_get("logs")?;
    let age: i32 = r.try_get("age")?;
    let user = Signup {
        id: *id,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        age: age.max(0) as u32,
        score: r.try_get("score")?,
        active: r.try_get("active")?,
        country: r.try_get("country")?,
        team: Team { name: r.try_get("team_name")?, leader: r.try_get("team_leader")?, projects },
        logs,
    };
    Ok(Some(SettledUser {
        status: UserStatus::parse(r.try_get("status")?).unwrap_or(UserStatus::Rejected),
        reason: r.try_get::<Option<&str>, _>("reason")?.and_then(UserReason::parse),
        user,
        created_at: r.try_get("created_at")?,
        processed_at: r.try_get("processed_at")?,
    }))
}
