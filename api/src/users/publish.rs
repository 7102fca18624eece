//! Publishing a sign-up on `users.<shard of its id>`.

use std::time::Duration;

use async_nats::jetstream::{self, publish::PublishAck};
use tps_contract::SignupCommand;
use tps_contract::subject::{MSG_ID_HEADER, StreamNames};

use crate::jetstream::PublishError;

/// Publishes `cmd` with `Nats-Msg-Id` = user id, and awaits the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    cmd: &SignupCommand,
    names: &StreamNames,
    shards: u32,
    timeout: Duration,
) -> Result<PublishAck, PublishError> {
    let subject = names.user_subject(tps_contract::shard_for(&cmd.user.id, shards));
    let payload = serde_json::to_vec(cmd).map_err(|e| PublishError::Refused(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, cmd.user.id.to_string().as_str());
    crate::jetstream::store(js, subject, headers, payload, timeout, "users").await
}
