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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Whether it is done.
    pub completed: bool,
}

/// One entry of a sign-up's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogEntry {
    /// When (ISO 8601 date or date-time, as sent).
    pub date: String,
    /// What happened.
    pub action: LogAction,
}

/// What a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogAction {
    /// A login.
    Login,
    /// A logout.
    Logout,
}

/// Longest name, team name, project name or country, in characters.
pub const MAX_TEXT: usize = 200;
/// Most projects in a team, and most entries in a log.
pub const MAX_ITEMS: usize = 100;
/// Longest email (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;

impl Signup {
    /// Checks every field against the contract; the error names the field and says why.
    /// The api answers 400 with it; the worker dead-letters a command that fails it.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_nil() {
            return Err("id must not be the nil uuid".into());
        }
        text("name", &self.name)?;
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        if self.age > 150 {
            return Err(format!("age must be within 0..=150, not {}", self.age));
        }
        if !self.score.is_finite() {
            return Err("score must be a finite number".into());
        }
        text("country", &self.country)?;
        text("team.name", &self.team.name)?;
        if self.team.projects.len() > MAX_ITEMS {
            return Err(format!("team.projects holds at most {MAX_ITEMS} projects"));
        }
        for (i, p) in self.team.projects.iter().enumerate() {
            text(&format!("team.projects[{i}].name"), &p.name)?;
        }
        if self.logs.len() > MAX_ITEMS {
            return Err(format!("logs holds at most {MAX_ITEMS} entries"));
        }
        for (i, log) in self.logs.iter().enumerate() {
            let date = log.date.as_str();
            let is_date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok();
            if !is_date && DateTime::parse_from_rfc3339(date).is_err() {
                return Err(format!(
                    "logs[{i}].date must be an ISO 8601 date (2025-01-31) or RFC 3339 date-time"
                ));
            }
        }
        Ok(())
    }

    /// The email as uniqueness sees it ([`email_key`]). `None` without an email.
    pub fn email_key(&self) -> Option<String> {
        self.email.as_deref().map(email_key)
    }

    /// A digest of the whole body (32 hex digits): the same id with the same
    /// fingerprint is a replay, with another one a conflict. The JSON encoding is
    /// canonical (field order is the struct's, numbers print one way), so equal
    /// bodies give equal fingerprints whatever order the client sent the keys in.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        // Two FNV-1a passes with different offsets: 128 bits, no extra dependency.
        let (mut a, mut b) = (0xcbf2_9ce4_8422_2325_u64, 0x6c62_272e_07bb_0142_u64);
        for byte in bytes {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
        format!("{a:016x}{b:016x}")
    }
}

/// The one normalisation under which emails are unique: Unicode NFKC, then the
/// Unicode lower case mapping (`str::to_lowercase`: the full mapping, final sigma
/// included, as ICU's root `lower` does), then NFKC again
/// (lower-casing can undo composition, e.g. `İ` becomes `i` + U+0307; the second
/// pass makes the key a fixed point: `email_key(email_key(e)) == email_key(e)`).
///
/// Computed here only: the worker stores it in `users.email_key`, which carries
/// the unique index, and uses the same value to find twins within a batch, so
/// `JOSÉ@example.com`, `josé@example.com` and `JOSE\u{301}@example.com` are one email
/// within a batch and across batches and shards alike.
pub fn email_key(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let composed: String = email.nfkc().collect();
    composed.to_lowercase().nfkc().collect()
}

fn text(field: &str, value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > MAX_TEXT {
        return Err(format!("{field} must be 1-{MAX_TEXT} characters and not blank"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), String> {
    let bad = || Err(format!("email must look like name@example.com (at most {MAX_EMAIL} characters)"));
    if email.len() > MAX_EMAIL || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let Some((local, domain)) = email.rsplit_once('@') else { return bad() };
    let labels_ok = domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain.contains('.') || !labels_ok {
        return bad();
    }
    Ok(())
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

    fn signup() -> Signup {
        serde_json::from_value(serde_json::json!({
            "id": "6f1c2a7e-8d1b-4c43-9a55-0b6c7d1e2f30", "name": "Ada", "email": "Ada@Example.com",
            "age": 36, "score": 9.5, "active": true, "country": "UK",
            "team": {"name": "engines", "leader": true, "projects": [{"name": "analytical", "completed": false}]},
            "logs": [{"date": "2025-01-01", "action": "login"}, {"date": "2025-01-01T17:00:00Z", "action": "logout"}]
        }))
        .unwrap()
    }

    #[test]
    fn a_good_signup_validates_and_keys_its_email_in_lower_case() {
        let s = signup();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.email_key().as_deref(), Some("ada@example.com"));
        assert_eq!(Signup { email: None, ..s }.validate(), Ok(()));
    }

    #[test]
    fn emails_are_keyed_by_nfkc_and_unicode_lower_case() {
        // Non-ASCII capitals, which Postgres' lower() under the C locale leaves alone.
        assert_eq!(email_key("JOSÉ@example.com"), email_key("josé@example.com"));
        // A decomposed é (e + U+0301) and the precomposed one are one email.
        assert_eq!(email_key("jose\u{301}@example.com"), "jos\u{e9}@example.com");
        // Compatibility forms: full-width letters, the ﬁ ligature.
        assert_eq!(email_key("ＡＢＣ@example.com"), "abc@example.com");
        assert_eq!(email_key("\u{fb01}n@example.com"), "fin@example.com");
        // Greek capitals: a final sigma lower-cases to ς, as people write it.
        assert_eq!(email_key("ΣΊΣΥΦΟΣ@example.gr"), email_key("σίσυφος@example.gr"));
        assert_ne!(email_key("jose@example.com"), email_key("josé@example.com"));
        for e in ["İstanbul@example.com", "ǅ@x.io", "ΣΑΣ@x.gr", "Straße@x.de", "ＡＢＣ@x.io"] {
            assert_eq!(email_key(&email_key(e)), email_key(e), "{e}: the key is a fixed point");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = Box<dyn Fn(&mut Signup)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("id", Box::new(|s| s.id = Uuid::nil())),
            ("name", Box::new(|s| s.name = "  ".into())),
            ("name", Box::new(|s| s.name = "x".repeat(201))),
            ("name", Box::new(|s| s.name = "a\u{0}b".into())),
            ("email", Box::new(|s| s.email = Some("no-at-sign".into()))),
            ("email", Box::new(|s| s.email = Some("a@nodot".into()))),
            ("email", Box::new(|s| s.email = Some("a b@x.io".into()))),
            ("email", Box::new(|s| s.email = Some(format!("{}@x.io", "a".repeat(65))))),
            ("age", Box::new(|s| s.age = 151)),
            ("score", Box::new(|s| s.score = f64::NAN)),
            ("country", Box::new(|s| s.country = String::new())),
            ("team.name", Box::new(|s| s.team.name = String::new())),
            ("team.projects[0].name", Box::new(|s| s.team.projects[0].name = String::new())),
            ("team.projects", Box::new(|s| s.team.projects = vec![s.team.projects[0].clone(); 101])),
            ("logs[1].date", Box::new(|s| s.logs[1].date = "yesterday".into())),
            ("logs", Box::new(|s| s.logs = vec![s.logs[0].clone(); 101])),
        ];
        for (field, spoil) in cases {
            let mut s = signup();
            spoil(&mut s);
            let error = s.validate().expect_err(field);
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn the_fingerprint_covers_every_field_and_ignores_key_order() {
        let s = signup();
        assert_eq!(s.fingerprint(), signup().fingerprint());
        assert_eq!(s.fingerprint().len(), 32);
        let reordered: Signup = serde_json::from_str(&format!(
            r#"{{"logs":{},"team":{},"country":"UK","active":true,"score":9.5,"age":36,"email":"Ada@Example.com","name":"Ada","id":"{}"}}"#,
            serde_json::to_string(&s.logs).unwrap(),
            serde_json::to_string(&s.team).unwrap(),
            s.id
        ))
        .unwrap();
        assert_eq!(reordered.fingerprint(), s.fingerprint());
        let mut other = signup();
        other.team.projects[0].completed = true;
        assert_ne!(other.fingerprint(), s.fingerprint());
        assert_ne!(
            Signup { email: Some("ada@example.com".into()), ..signup() }.fingerprint(),
            s.fingerprint()
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let mut v = serde_json::to_value(signup()).unwrap();
        v["team"]["projects"][0]["owner"] = "x".into();
        assert!(serde_json::from_value::<Signup>(v).is_err());
        let mut v = serde_json::to_value(signup()).unwrap();
        v["logs"][0]["action"] = "signup".into();
        assert!(serde_json::from_value::<Signup>(v).is_err());
    }
}
