//! Setup calls: tokens and tickets.

use std::sync::Arc;

use http::HeaderValue;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::Result;
use crate::http::{Call, Conn, Target, bearer};

/// Token lifetime: long enough for a slow settle.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

/// A user of the run: id, raw token, and the `Authorization` value.
#[derive(Debug, Clone)]
pub struct User {
    /// The `sub` claim.
    pub id: String,
    /// The JWT.
    pub token: String,
    /// `Bearer <JWT>`.
    pub auth: HeaderValue,
}

/// Mints `n` users named `lt-{run}-u{i}`.
pub fn users(secret: &str, run_id: &str, n: u64) -> Vec<User> {
    (0..n)
        .map(|i| {
            let id = format!("lt-{run_id}-u{i}");
            let token = tps_runtime::auth::mint(secret.as_bytes(), &id, false, TOKEN_TTL_SECS);
            User { auth: bearer(&token), id, token }
        })
        .collect()
}

/// An admin's `Authorization` value.
pub fn admin(secret: &str, run_id: &str) -> HeaderValue {
    bearer(&tps_runtime::auth::mint(secret.as_bytes(), &format!("lt-{run_id}-admin"), true, TOKEN_TTL_SECS))
}

#[derive(Deserialize)]
struct Created {
    id: Uuid,
}

/// Creates a ticket with `stock` at 10.00 and returns its id.
pub async fn create_ticket(
    target: &Arc<Target>,
    admin: &HeaderValue,
    name: &str,
    stock: u64,
    max_per_order: u32,
) -> Result<Uuid> {
    create_priced_ticket(target, admin, name, 1000, stock, max_per_order).await
}

/// Creates a ticket at `price_cents` with `stock` and returns its id.
pub async fn create_priced_ticket(
    target: &Arc<Target>,
    admin: &HeaderValue,
    name: &str,
    price_cents: i64,
    stock: u64,
    max_per_order: u32,
) -> Result<Uuid> {
    let mut conn = Conn::open(target, None).await?;
    let body = serde_json::json!({ "name": name, "totalQuantity": stock, "priceCents": price_cents, "maxPerOrder": max_per_order });
    let call = Call::post("/v1/tickets", serde_json::to_vec(&body)?.into()).with_auth(admin.clone());
    let created: Created = conn.json("create ticket", &call, 201).await?;
    Ok(created.id)
}

/// Splits `total` into `rows` near-equal parts (the first ones take the remainder).
pub fn split_stock(total: u64, rows: u64) -> Vec<u64> {
    let rows = rows.max(1);
    (0..rows).map(|i| total / rows + u64::from(i < total % rows)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_splits_evenly_and_sums_to_the_total() {
        assert_eq!(split_stock(50_000, 1), [50_000]);
        assert_eq!(split_stock(10, 3), [4, 3, 3]);
        assert_eq!(split_stock(50_000, 7).iter().sum::<u64>(), 50_000);
    }

    #[test]
    fn minted_users_verify() {
        let u = &users("k", "r", 2)[1];
        assert_eq!(u.id, "lt-r-u1");
        assert_eq!(tps_runtime::auth::verify(b"k", &u.token).unwrap().sub, "lt-r-u1");
        assert!(u.auth.to_str().unwrap().starts_with("Bearer "));
    }
}
