//! Confirming the email keys that migration 0003 computed in SQL.
//!
//! The migration keyed existing rows with Postgres' `normalize` and ICU `lower`
//! so that the unique index could be built at once, and marked them
//! `email_key_pending`. Here every such row is re-keyed with the one Rust
//! function (`tps_contract::command::email_key`), so that no key in the table
//! depends on a second implementation. Run by each worker at start, before it
//! settles anything; after the first run it is one query on an empty partial
//! index. Several workers starting at once share the rows (`SKIP LOCKED`).

use sqlx::{Acquire, PgPool};
use tps_contract::command::email_key;
use uuid::Uuid;

/// Rows re-keyed per transaction.
const PAGE: i64 = 1_000;

/// Re-keys every pending row; returns how many keys the Rust function changed.
pub async fn rekey_pending(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows: Vec<(Uuid, String, Option<String>, String)> = sqlx::query_as(
            "SELECT id, email, email_key, status FROM users WHERE email_key_pending \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(changed);
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        for (id, email, stored, status) in rows {
            let key = email_key(&email);
            if stored.as_deref() == Some(key.as_str()) {
                continue;
            }
            // A savepoint: a CREATED twin already holding the Rust key must not abort the page.
            let mut one = tx.begin().await?;
            let updated = sqlx::query("UPDATE users SET email_key = $2 WHERE id = $1")
                .bind(id)
                .bind(&key)
                .execute(&mut *one)
                .await;
            match updated {
                Ok(_) => {
                    one.commit().await?;
                    changed += 1;
                    tracing::info!(%id, "email key re-keyed by the Rust normalisation");
                }
                Err(e) if is_unique_violation(&e) => {
                    one.rollback().await?;
                    // As the migration does for twins: the user keeps its answer, the earlier one the key.
                    sqlx::query("UPDATE users SET email_key = NULL WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tracing::warn!(%id, status, "a created user's email is a twin of another's; it keeps its status, the other keeps the key");
                }
                Err(e) => return Err(e),
            }
        }
        sqlx::query("UPDATE users SET email_key_pending = false WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("23505"))
}
