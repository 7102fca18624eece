//! The [`StreamProvisioner`] that talks to NATS with async-nats.

use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use futures::future::BoxFuture;

use super::{OWNER_NAME_KEY, OWNER_UID_KEY, StreamOwner, StreamPlan, StreamProvisioner, StreamsError};

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

    fn delete<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>> {
        Box::pin(delete(plan))
    }
}

async fn connect(plan: &StreamPlan) -> Result<jetstream::Context, StreamsError> {
    let url = plan.nats_url.as_str();
    let failed = |message: String| StreamsError::Connect { url: url.to_owned(), message };
    let mut options = async_nats::ConnectOptions::new();
    if let Some(creds) = &plan.credentials {
        options =
            options.credentials(&creds.0).map_err(|e| failed(format!("nats.credentialsSecretRef: {e}")))?;
    }
    let client = options
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(CONNECT_TIMEOUT))
        .connect(url)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(jetstream::new(client))
}

/// Streams first (consumers need them), then one durable consumer per shard.
/// Both calls create or update, so limits changed in the spec reach the server;
/// a stream another resource owns is refused before anything is written.
async fn ensure(plan: &StreamPlan) -> Result<(), StreamsError> {
    let js = connect(plan).await?;
    for config in plan.streams() {
        let object = config.name.clone();
        ownership(&js, &object, &plan.owner).await?;
        // JetStream refuses to change a stream's retention in place: a command stream made
        // by an older release (Limits) is migrated first, with its unsettled commands kept.
        if config.retention == async_nats::jetstream::stream::RetentionPolicy::WorkQueue {
            tps_contract::stream_migration::ensure_work_queue(&js, &config)
                .await
                .map_err(|e| StreamsError::Refused { object: object.clone(), message: e.to_string() })?;
        }
        js.create_or_update_stream(config)
            .await
            .map_err(|e| StreamsError::Refused { object, message: e.to_string() })?;
    }
    for (stream, config) in plan.consumers() {
        let object = format!("{stream}/{}", config.durable_name.clone().unwrap_or_default());
        js.create_consumer_on_stream(config, stream.as_str())
            .await
            .map_err(|e| StreamsError::Refused { object, message: e.to_string() })?;
    }
    Ok(())
}

async fn delete(plan: &StreamPlan) -> Result<(), StreamsError> {
    let js = connect(plan).await?;
    for name in plan.stream_names() {
        let name = name.as_str();
        match ownership(&js, name, &plan.owner).await {
            Ok(Ownership::Absent) => continue,
            Ok(Ownership::Ours) => {}
            Err(e @ StreamsError::OwnedByAnother { .. }) => {
                tracing::warn!(owner = %plan.owner.name, error = %e, "not deleting a stream we do not own");
                continue;
            }
            Err(e) => return Err(e),
        }
        js.delete_stream(name)
            .await
            .map_err(|e| StreamsError::Refused { object: name.to_owned(), message: e.to_string() })?;
    }
    Ok(())
}

/// Whether a stream exists, and if so that it is ours.
#[derive(Debug, PartialEq, Eq)]
enum Ownership {
    /// No such stream.
    Absent,
    /// Marked with our UID or our namespace/name (a re-created resource), or not
    /// marked at all (made by an operator before ownership marks, or by the
    /// binaries locally): ours to update or delete.
    Ours,
}

async fn ownership(
    js: &jetstream::Context,
    name: &str,
    owner: &StreamOwner,
) -> Result<Ownership, StreamsError> {
    let stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(e) if is_not_found(&e.kind()) => return Ok(Ownership::Absent),
        Err(e) => return Err(StreamsError::Refused { object: name.to_owned(), message: e.to_string() }),
    };
    let metadata = &stream.cached_info().config.metadata;
    // The same namespace/name with another UID is a re-created resource (two cannot live at
    // once): it takes over what its predecessor retained.
    let same_name = metadata.get(OWNER_NAME_KEY) == Some(&owner.name);
    match metadata.get(OWNER_UID_KEY) {
        Some(uid) if *uid != owner.uid && !same_name => Err(StreamsError::OwnedByAnother {
            stream: name.to_owned(),
            owner: format!("{} (uid {uid})", metadata.get(OWNER_NAME_KEY).map_or("?", String::as_str)),
        }),
        _ => Ok(Ownership::Ours),
    }
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
