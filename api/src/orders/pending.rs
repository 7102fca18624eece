//! PENDING orders as Redis holds them between the 202 and the worker's commit.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;
use tps_contract::OrderStatus;
use tps_contract::event::OrderView;
use uuid::Uuid;

use crate::redis_link::{RedisLink, RedisUnavailable};

/// A PENDING record, owner included.
#[derive(Debug, Clone)]
pub struct PendingOrder {
    /// The buyer.
    pub user: String,
    /// The order as clients see it.
    pub view: OrderView,
}

/// Reads one record; `None` when absent, malformed, or its publish failed.
pub async fn get(redis: &RedisLink, id: &Uuid) -> Result<Option<PendingOrder>, RedisUnavailable> {
    let key = super::order_key(id);
    let fields: HashMap<String, String> = redis
        .run(|mut conn| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await })
        .await?;
    Ok(parse(*id, &fields))
}

// KEYS[1] the user's index. ARGV: max score (ms), count, order key prefix.
// Returns [id, user, ticket, qty, created, failed, …] newest first.
const RECENT_LUA: &str = r#"
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local r = redis.call('HMGET', ARGV[3] .. id, 'user', 'ticket', 'qty', 'created', 'failed')
  table.insert(out, id)
  for i = 1, 5 do table.insert(out, r[i] or '') end
end
return out
"#;

static RECENT: LazyLock<Script> = LazyLock::new(|| Script::new(RECENT_LUA));

/// The user's records with `createdAt <= max_ms` (all when `None`), newest first,
/// at most `count`, in one round trip.
pub async fn recent(
    redis: &RedisLink,
    user: &str,
    max_ms: Option<i64>,
    count: usize,
) -> Result<Vec<PendingOrder>, RedisUnavailable> {
    let max = max_ms.map_or_else(|| "+inf".to_owned(), |ms| ms.to_string());
    let mut invocation = RECENT.prepare_invoke();
    invocation.key(super::user_orders_key(user)).arg(max).arg(count).arg("tps:order:");
    let flat: Vec<String> =
        redis.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
    Ok(flat
        .chunks_exact(6)
        .filter_map(|c| {
            let id: Uuid = c[0].parse().ok()?;
            let fields = HashMap::from([
                ("user".to_owned(), c[1].clone()),
                ("ticket".to_owned(), c[2].clone()),
                ("qty".to_owned(), c[3].clone()),
                ("created".to_owned(), c[4].clone()),
                ("failed".to_owned(), c[5].clone()),
            ]);
            parse(id, &fields)
        })
        .filter(|p| p.user == user)
        .collect())
}

fn parse(id: Uuid, fields: &HashMap<String, String>) -> Option<PendingOrder> {
    if fields.get("failed").is_some_and(|f| !f.is_empty()) {
        return None;
    }
    let created_ms: i64 = fields.get("created")?.parse().ok()?;
    Some(PendingOrder {
        user: fields.get("user")?.clone(),
        view: OrderView {
            id,
            status: OrderStatus::Pending,
            reason: None,
            ticket_id: fields.get("ticket")?.parse().ok()?,
            quantity: fields.get("qty")?.parse().ok()?,
            created_at: DateTime::<Utc>::from_timestamp_millis(created_ms)?,
            processed_at: None,
        },
    })
}
