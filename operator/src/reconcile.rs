//! The reconcile driver: the finalizer dispatches to [`apply`] (validate →
//! streams → build → prune → apply → status) or to [`cleanup`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::apply::{Applied, apply_all, apply_params};
use crate::build::{Desired, desired};
use crate::conditions::{Observed, invalid_status, observed_status, refused_status};
use crate::context::Context;
use crate::dereference::{Referenced, dereference};
use crate::error::{Error, Result};
use crate::events::{ADOPTION_REFUSED, publish, transitions};
use crate::metrics::metrics;
use crate::prune::prune;
use crate::resource::{DeletionPolicy, ThroughputService, ThroughputServiceSpec, ThroughputServiceStatus};
use crate::streams::{Credentials, StreamPlan, StreamsError};
use crate::validate::{InvalidSpec, Validated, validate};

/// The finalizer that keeps a resource until its streams are dealt with.
pub const FINALIZER: &str = "throughput.dev/streams";
/// When all is well, look again this often anyway (catches missed events).
pub const RESYNC: Duration = Duration::from_secs(300);
/// When NATS refused the streams, try again this soon.
pub const STREAMS_RETRY: Duration = Duration::from_secs(30);

/// Reconciles one resource; counted and timed in the metrics.
pub async fn reconcile(tps: Arc<ThroughputService>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    metrics().reconciles.inc();
    let api: Api<ThroughputService> =
        Api::namespaced(ctx.client.clone(), &tps.namespace().unwrap_or_default());
    let key = backoff_key(&tps);
    let result = finalizer(&api, FINALIZER, tps, |event| async {
        match event {
            Finalizer::Apply(tps) => apply(&tps, &ctx).await,
            Finalizer::Cleanup(tps) => cleanup(&tps, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    metrics().reconcile_duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// An invalid spec waits for a change; anything else retries with backoff.
pub fn error_policy(tps: Arc<ThroughputService>, error: &Error, ctx: Arc<Context>) -> Action {
    metrics().reconcile_errors.with_label_values(&[error.metric_label()]).inc();
    if !error.is_transient() {
        tracing::info!(name = %tps.name_any(), %error, "waiting for a change");
        return Action::await_change();
    }
    let delay = ctx.backoff.next(&backoff_key(&tps));
    tracing::warn!(name = %tps.name_any(), %error, ?delay, "reconcile failed, retrying");
    Action::requeue(delay)
}

async fn apply(tps: &ThroughputService, ctx: &Context) -> Result<Action> {
    let mut validated = match validate(tps) {
        Ok(v) => v,
        Err(invalid) => return refuse(tps, ctx, invalid).await,
    };
    let referenced = dereference(&ctx.client, &validated.namespace, &validated.spec).await?;
    validated.secrets_digest = Some(referenced.digest.clone());
    // Streams before workloads: the pods only use them (NATS_STREAMS_CREATE=false). A NATS
    // failure does not stop the rollout; it shows in the status and is retried soon.
    let plan = stream_plan(tps, referenced);
    let streams = match missing_credentials(&validated.spec, &plan) {
        Some(missing) => Err(missing),
        None => ctx.streams.ensure(&plan).await,
    };
    let desired = desired(&validated);
    // Prune first: KEDA's webhook refuses a ScaledObject on a Deployment that an
    // HPA still targets, so a switch of autoscaler must remove the old one first.
    prune(&ctx.client, &validated, &desired).await?;
    let applied = apply_children(tps, ctx, &validated, &desired).await?;
    let seen = Observed {
        generation: tps.meta().generation,
        applied: &applied,
        streams: &streams,
        shards: validated.spec.worker.shards,
        minimum: (validated.spec.api.min_replicas, validated.spec.worker.min_replicas),
    };
    let status = observed_status(tps.status.as_ref(), &seen, (ctx.clock)());
    update_status(tps, ctx, status).await?;
    // A missing PodMonitor CRD is not watched: look again soon, as for NATS.
    let retry_soon = streams.is_err() || matches!(applied.monitoring, Some(Err(_)));
    Ok(Action::requeue(if retry_soon { STREAMS_RETRY } else { RESYNC }))
}

/// The streams of a resource, provisioned with the NATS credentials it references.
fn stream_plan(tps: &ThroughputService, referenced: Referenced) -> StreamPlan {
    let mut plan = StreamPlan::of(tps);
    plan.credentials = referenced.nats_credentials.map(Credentials);
    plan
}

/// A referenced NATS credentials Secret (or key) that does not exist: said as such, rather
/// than as the authorization error NATS would answer without credentials.
fn missing_credentials(spec: &ThroughputServiceSpec, plan: &StreamPlan) -> Option<StreamsError> {
    let r = spec.nats.credentials_secret_ref.as_ref().filter(|_| plan.credentials.is_none())?;
    Some(StreamsError::Connect {
        url: plan.nats_url.clone(),
        message: format!("nats.credentialsSecretRef: Secret {} has no key {}", r.name, r.key),
    })
}

/// Applies every child; a name taken by an object this resource does not control is
/// reported in the status (`AdoptionRefused`) before the error goes to the backoff.
async fn apply_children(
    tps: &ThroughputService,
    ctx: &Context,
    validated: &Validated,
    desired: &Desired,
) -> Result<Applied> {
    let e = match apply_all(&ctx.client, &validated.namespace, desired).await {
        Err(e @ Error::NotOwned { .. }) => e,
        other => return other,
    };
    let (old, generation) = (tps.status.as_ref(), tps.meta().generation);
    let status = refused_status(old, generation, ADOPTION_REFUSED, e.to_string(), (ctx.clock)());
    update_status(tps, ctx, status).await?;
    Err(e)
}

async fn refuse(tps: &ThroughputService, ctx: &Context, invalid: InvalidSpec) -> Result<Action> {
    let status = invalid_status(tps.status.as_ref(), tps.meta().generation, &invalid, (ctx.clock)());
    update_status(tps, ctx, status).await?;
    Err(invalid.into())
}

/// Publishes the transition events, then writes the status if it changed; an
/// unchanged status is not written, so a reconcile never triggers itself.
async fn update_status(
    tps: &ThroughputService,
    ctx: &Context,
    status: ThroughputServiceStatus,
) -> Result<()> {
    for (type_, reason, note) in transitions(tps.status.as_ref(), &status) {
        publish(ctx, tps, type_, reason, note).await?;
    }
    if tps.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<ThroughputService> =
        Api::namespaced(ctx.client.clone(), &tps.namespace().unwrap_or_default());
    let patch =
        json!({ "apiVersion": "throughput.dev/v1alpha1", "kind": "ThroughputService", "status": status });
    api.patch_status(&tps.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Deletes or keeps the streams per `deletionPolicy`; the children go with
/// their owner through garbage collection.
async fn cleanup(tps: &ThroughputService, ctx: &Context) -> Result<Action> {
    let (reason, note) = match tps.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let namespace = tps.namespace().unwrap_or_default();
            let referenced = dereference(&ctx.client, &namespace, &tps.spec).await?;
            ctx.streams.delete(&stream_plan(tps, referenced)).await?;
            (
                "StreamsDeleted",
                "deletionPolicy Delete: ORDERS, USERS and DEAD_LETTERS were deleted (those another resource owns were kept)",
            )
        }
        DeletionPolicy::Retain => {
            ("StreamsRetained", "deletionPolicy Retain: the streams and their commands are kept")
        }
    };
    publish(ctx, tps, EventType::Normal, reason, note.into()).await?;
    Ok(Action::await_change())
}

fn backoff_key(tps: &ThroughputService) -> String {
    format!("{}/{}", tps.namespace().unwrap_or_default(), tps.name_any())
}
