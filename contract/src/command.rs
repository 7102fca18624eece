//! Commands: what the api publishes to JetStream and the worker applies.
//!
//! A command is JSON. Its id doubles as the `Nats-Msg-Id`, so a second publish of
//! the same command inside the stream's duplicate window is dropped by JetStream,
//! and the same id is the primary key in Postgres, so a redelivery changes nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A request to buy `quantity` of one ticket, accepted by the api.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCommand {
    /// The order id; also the `Nats-Msg-Id` and the primary key of the order row.
    pub order_id: Uuid,
    /// The buyer, the `sub` claim of the token.
    pub user_id: String,
    /// The ticket asked for; it decides the shard.
    pub ticket_id: Uuid,
    /// How many, within `1..=maxPerOrder`.
    pub quantity: u32,
    /// The client's `Idempotency-Key`, kept for audits.
    pub idempotency_key: String,
    /// When the api accepted it; reported as the order's `createdAt`.
    pub accepted_at: DateTime<Utc>,
}

impl OrderCommand {
    /// The deterministic order id for one user's idempotency key.
    ///
    /// Deriving the id (rather than drawing a random one) keeps exactly-once even
    /// when Redis has forgotten the key: the same key maps to the same `Nats-Msg-Id`
    /// and the same primary key.
    pub fn id_for(user_id: &str, idempotency_key: &str) -> Uuid {
        let name = format!("{}\u{0}{}", user_id, idempotency_key);
        Uuid::new_v5(&ORDER_ID_NAMESPACE, name.as_bytes())
    }
}

/// Namespace of the v5 order ids.
pub const ORDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5e7c_10f2_8a4e_4f43_9d7b_3c1d_7a22_0b01);

/// A sign-up accepted by the api: the validated body, plus when it was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupCommand {
    /// The sign-up as the client sent it (validated).
    pub user: Signup,
    /// When the api accepted it.
    pub accepted_at: DateTime<Utc>,
}

/// The body of `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signup {
    /// Client-chosen id; sign-ups are idempotent on it.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Optional email, unique case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Age in years.
    pub age: u32,
    /// A score.
    pub score: f64,
    /// Whether the account is active.
    pub active: bool,
    /// Country name or code.
    pub country: String,
    /// The user's team.
    pub team: Team,
    /// Login history.
    pub logs: Vec<LogEntry>,
}

/// A team in a sign-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Team {
    /// Team name.
    pub name: String,
    /// Whether the user leads the team.
    pub leader: bool,
    /// The team's projects.
    pub projects: Vec<Project>,
}

/// A project of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Whether it is done.
    pub completed: bool,
}

/// One entry of a sign-up's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogEntry {
    /// When (ISO 8601 date or date-time, as sent).
    pub date: String,
    /// What happened.
    pub action: LogAction,
}

/// What a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogAction {
    /// A login.
    Login,
    /// A logout.
    Logout,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_is_deterministic_per_user_and_key() {
        let a = OrderCommand::id_for("alice", "k1");
        assert_eq!(a, OrderCommand::id_for("alice", "k1"));
        assert_ne!(a, OrderCommand::id_for("bob", "k1"));
        assert_ne!(a, OrderCommand::id_for("alice", "k2"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(OrderCommand::id_for("ab", "c"), OrderCommand::id_for("a", "bc"));
    }

    #[test]
    fn order_command_is_camel_case_and_strict() {
        let cmd = OrderCommand {
            order_id: Uuid::nil(),
            user_id: "u".into(),
            ticket_id: Uuid::nil(),
            quantity: 2,
            idempotency_key: "k".into(),
            accepted_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&cmd).unwrap();
        assert!(json.get("orderId").is_some() && json.get("ticketId").is_some());
        let back: OrderCommand = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, cmd);
        let mut extra = json;
        extra["surprise"] = 1.into();
        assert!(serde_json::from_value::<OrderCommand>(extra).is_err());
    }
}
