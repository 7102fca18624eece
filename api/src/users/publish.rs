//! Publishing a sign-up to `users.<shard>` and waiting for the PubAck.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, publish::PublishAck};
use tps_contract::SignupCommand;
use tps_contract::subject::{MSG_ID_HEADER, user_subject};

use crate::orders::publish::PublishError;

/// Publishes `cmd` on `users.<shard of its id>` with `Nats-Msg-Id` = user id, and awaits the PubAck.
pub async fn publish(js: &jetstream::Context, cmd: &SignupCommand, shards: u32, timeout: Duration) -> Result<PublishAck, PublishError> {
    let started = Instant::now();
    let subject = user_subject(tps_contract::shard_for(&cmd.user.id, shards));
    let payload = serde_json::to_vec(cmd).map_err(|e| PublishError::Refused(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, cmd.user.id.to_string().as_str());
    let send_and_ack = async {
        let ack = js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| PublishError::Refused(e.to_string()))?;
        ack.await.map_err(|e| PublishError::Refused(e.to_string()))
    };
    let result = match tokio::time::timeout(timeout, send_and_ack).await {
        Ok(result) => result,
        Err(_) => Err(PublishError::Timeout(timeout)),
    };
    metrics::histogram!("tps_api_publish_duration_seconds", "stream" => "users").record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("tps_api_publish_failures_total", "stream" => "users").increment(1);
    }
    result
}
