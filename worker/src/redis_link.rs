//! One Redis connection shared by leases and membership, that tolerates Redis
//! being away: it connects lazily, reconnects by itself, and bounds every call.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// Bound on every Redis round trip; a lease decision must never wait longer than this.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// A lazily connected, self-healing Redis connection.
pub struct RedisLink {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
}

/// Redis could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(pub String);

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> Self {
        RedisError(e.to_string())
    }
}

impl RedisLink {
    /// Parses the URL (and reads the CA file of a `rediss://` one); no connection is made yet.
    pub fn new(url: &str, ca_cert: Option<&std::path::Path>) -> Result<Self, RedisError> {
        Ok(Self { client: tps_runtime::redis_tls::client(url, ca_cert)?, conn: Mutex::new(None) })
    }

    /// A connection, made on first use (Redis may be down when the worker starts).
    pub async fn conn(&self) -> Result<ConnectionManager, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(500);
        let c = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RedisError("connect timed out".into()))??;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs a script under the call timeout.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisError("call timed out".into()))?
            .map_err(Into::into)
    }

    /// Runs a command under the call timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| RedisError("call timed out".into()))?
            .map_err(Into::into)
    }
}
