//! Ticket rows in Postgres. Runtime queries only: there is no database at compile time.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::query::Search;
use super::{NewTicket, Ticket};

const COLUMNS: &str = "id, name, price_cents, total_quantity, available, available = 0 AS sold_out, \
                       max_per_order, created_at, updated_at";

/// Inserts a ticket with all its stock available.
pub async fn insert(db: &PgPool, new: &NewTicket) -> Result<Ticket, sqlx::Error> {
    let sql = format!(
        "INSERT INTO tickets (id, name, price_cents, total_quantity, available, max_per_order) \
         VALUES ($1, $2, $3, $4, $4, $5) RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(new.name.trim())
        .bind(new.price_cents)
        .bind(new.total_quantity)
        .bind(new.max_per_order)
        .fetch_one(db)
        .await
}

/// One ticket.
pub async fn get(db: &PgPool, id: &Uuid) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// Every ticket changed after `since` (all of them when `None`).
pub async fn changed_since(db: &PgPool, since: Option<DateTime<Utc>>) -> Result<Vec<Ticket>, sqlx::Error> {
    match since {
        Some(at) => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets WHERE updated_at > $1"))
                .bind(at)
                .fetch_all(db)
                .await
        }
        None => sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets")).fetch_all(db).await,
    }
}

/// pg_trgm's word similarity a name needs to the words sought to match without
/// a full-text hit (`q <% name`). 0.5 lets one typo in a short word through
/// ("concrt" is 0.57 to "Concert") while two unrelated words stay apart.
pub const WORD_SIMILARITY_THRESHOLD: f32 = 0.5;

/// Weight of the full-text rank in the relevance: `ts_rank` of a one-word hit in a
/// short name is about 0.06, so an exact word outweighs any typo (word similarity ≤ 1).
pub const TEXT_RANK_WEIGHT: f32 = 10.0;

/// The search statement: `$1` the query as typed, `$2` the words sought, `$3` the
/// excluded words (or NULL), `$4` the most matches returned. A name matches when its
/// words match (`name_tsv`, GIN) or when it is close to the words sought (`name`
/// trigrams, GIN); both arms are index scans joined by a BitmapOr.
///
/// relevance = word_similarity(words sought, name) + 10 · ts_rank(name_tsv, query),
/// as a `real` so that a cursor can carry it exactly.
pub const SEARCH_SQL: &str = "SELECT id, relevance FROM ( \
       SELECT id, (word_similarity($2, name) + 10 * ts_rank(name_tsv, websearch_to_tsquery('simple', $1)))::real \
              AS relevance \
       FROM tickets \
       WHERE name_tsv @@ websearch_to_tsquery('simple', $1) \
          OR ($2 <% name AND ($3::text IS NULL OR NOT name_tsv @@ websearch_to_tsquery('simple', $3))) \
     ) m ORDER BY relevance DESC, id LIMIT $4";

/// The ids of the `cap` tickets most relevant to `search`, best first, with their relevance.
pub async fn search(db: &PgPool, search: &Search, cap: i64) -> Result<Vec<(Uuid, f32)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Local to this transaction: the pool's connections keep the server's default.
    sqlx::query("SELECT set_config('pg_trgm.word_similarity_threshold', $1, true)")
        .bind(WORD_SIMILARITY_THRESHOLD.to_string())
        .execute(&mut *tx)
        .await?;
    let found = sqlx::query_as(SEARCH_SQL)
        .bind(&search.text)
        .bind(&search.fuzzy)
        .bind(search.excluded.as_deref())
        .bind(cap)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(found)
}
