//! The [`StreamProvisioner`] that talks to NATS with async-nats.

use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode, context::DeleteStreamErrorKind};
use futures::future::BoxFuture;
use tps_contract::subject::{DEAD_LETTER_STREAM, ORDERS_STREAM, USERS_STREAM};

use super::{StreamPlan, StreamProvisioner, StreamsError};

/// How long to wait for NATS before reporting it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Provisions streams on a real NATS server; connects anew on each call, so a
/// changed `nats.url` or a restarted server needs no bookkeeping.
#[derive(Debug, Default, Clone)]
pub struct JetStreamProvisioner;

impl StreamProvisioner for JetStreamProvisioner {
    fn ensure<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>> {
        Box::pin(ensure(plan))
    }

    fn delete<'a>(&'a self, nats_url: &'a str) -> BoxFuture<'a, Result<(), StreamsError>> {
        Box::pin(delete(nats_url))
    }
}

async fn connect(url: &str) -> Result<jetstream::Context, StreamsError> {
    let failed = |message: String| StreamsError::Connect { url: url.to_owned(), message };
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(CONNECT_TIMEOUT))
        .connect(url)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(jetstream::new(client))
}

/// Streams first (consumers need them), then one durable consumer per shard.
/// Both calls create or update, so limits changed in the spec reach the server.
async fn ensure(plan: &StreamPlan) -> Result<(), StreamsError> {
    let js = connect(&plan.nats_url).await?;
    for config in plan.streams() {
        let object = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| StreamsError::Refused { object, message: e.to_string() })?;
    }
    for (stream, config) in plan.consumers() {
        let object = format!("{stream}/{}", config.durable_name.clone().unwrap_or_default());
        js.create_consumer_on_stream(config, stream)
            .await
            .map_err(|e| StreamsError::Refused { object, message: e.to_string() })?;
    }
    Ok(())
}

async fn delete(nats_url: &str) -> Result<(), StreamsError> {
    let js = connect(nats_url).await?;
    for name in [ORDERS_STREAM, USERS_STREAM, DEAD_LETTER_STREAM] {
        match js.delete_stream(name).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e.kind()) => {}
            Err(e) => return Err(StreamsError::Refused { object: name.to_owned(), message: e.to_string() }),
        }
    }
    Ok(())
}

fn is_not_found(kind: &DeleteStreamErrorKind) -> bool {
    matches!(kind, DeleteStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
