//! A ticket as clients see it, and the body that creates one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A ticket with its live stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// Ticket id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Stock at creation.
    pub total_quantity: i32,
    /// Stock left; may lag the truth by up to 1 s.
    pub available: i32,
    /// `available == 0`.
    pub sold_out: bool,
    /// Most one order may ask for.
    pub max_per_order: i32,
    /// Creation time: the keyset order of the catalog.
    #[serde(skip)]
    pub created_at: DateTime<Utc>,
    /// Last stock change: the watermark of the cache refresh.
    #[serde(skip)]
    pub updated_at: DateTime<Utc>,
}

/// The body of `POST /v1/tickets`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTicket {
    /// Display name, 1–200 characters, no control characters.
    pub name: String,
    /// Stock; 0 makes a ticket that is sold out from the start.
    pub total_quantity: i32,
    /// Price in cents, ≥ 0.
    pub price_cents: i64,
    /// Most one order may ask for (default 5).
    #[serde(default = "default_max_per_order")]
    pub max_per_order: i32,
}

fn default_max_per_order() -> i32 {
    5
}

impl NewTicket {
    /// Checks what the table's CHECKs would refuse, to answer 400 rather than 500.
    pub fn validate(&self) -> Result<(), String> {
        let chars = self.name.trim().chars().count();
        if !(1..=200).contains(&chars) {
            return Err("name must be 1-200 characters".into());
        }
        // Postgres text cannot hold NUL; a name is one line of printable text.
        if self.name.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        if self.total_quantity < 0 {
            return Err("totalQuantity must be >= 0".into());
        }
        if self.price_cents < 0 {
            return Err("priceCents must be >= 0".into());
        }
        if self.max_per_order < 1 {
            return Err("maxPerOrder must be >= 1".into());
        }
        Ok(())
    }
}
