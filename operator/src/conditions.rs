//! Status computation (no client required): the new status from what was
//! applied and observed. Deterministic: the same inputs give the same status,
//! and `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::apply::Applied;
use crate::resource::{Condition, ConditionStatus, ConditionType, ReplicaCounts, ThroughputServiceStatus};
use crate::streams::StreamsError;
use crate::validate::InvalidSpec;

/// What a reconcile saw, from which the status follows.
pub struct Observed<'a> {
    /// The resource's generation.
    pub generation: Option<i64>,
    /// The Deployments as applied.
    pub applied: &'a Applied,
    /// The outcome of stream provisioning.
    pub streams: &'a Result<(), StreamsError>,
    /// Shards served.
    pub shards: i32,
}

/// The status after a successful apply.
pub fn observed_status(
    old: Option<&ThroughputServiceStatus>,
    seen: &Observed,
    now: Time,
) -> ThroughputServiceStatus {
    let api = counts(&seen.applied.api);
    let worker = counts(&seen.applied.worker);
    let available = |c: ReplicaCounts| match c.ready_replicas {
        0 => (ConditionStatus::False, "NoReadyPods", String::from("no pod is ready yet")),
        n => (ConditionStatus::True, "PodsReady", format!("{n} of {} pods ready", c.replicas)),
    };
    let streams = match seen.streams {
        Ok(()) => (
            ConditionStatus::True,
            "StreamsProvisioned",
            "ORDERS, USERS and DEAD_LETTERS are provisioned".into(),
        ),
        Err(e) => (ConditionStatus::False, "ProvisioningFailed", e.to_string()),
    };
    let short = api.ready_replicas < api.replicas || worker.ready_replicas < worker.replicas;
    let degraded = match (&seen.streams, short) {
        (Err(_), _) => (ConditionStatus::True, "StreamsNotReady", "commands cannot be stored".into()),
        (Ok(()), true) => (ConditionStatus::True, "PodsNotReady", "some pods are not ready".into()),
        (Ok(()), false) => (ConditionStatus::False, "AsExpected", String::new()),
    };
    let parts = [available(api), available(worker), streams];
    let ready = match parts.iter().find(|p| p.0 != ConditionStatus::True) {
        None if degraded.0 == ConditionStatus::False => {
            (ConditionStatus::True, "AllAvailable", String::new())
        }
        None => (ConditionStatus::False, degraded.1, degraded.2.clone()),
        Some(failing) => (ConditionStatus::False, failing.1, failing.2.clone()),
    };
    let [api_available, worker_available, streams_ready] = parts;
    let wanted = [
        (ConditionType::Ready, ready),
        (ConditionType::ApiAvailable, api_available),
        (ConditionType::WorkerAvailable, worker_available),
        (ConditionType::StreamsReady, streams_ready),
        (ConditionType::Degraded, degraded),
    ];
    let conditions = wanted
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            condition(old, seen.generation, &now, type_, status, reason, message)
        })
        .collect();
    ThroughputServiceStatus {
        observed_generation: seen.generation,
        conditions,
        api,
        worker,
        shards: Some(seen.shards),
    }
}

/// The status of a resource whose spec was refused: not Ready, Degraded, the
/// rest as last observed.
pub fn invalid_status(
    old: Option<&ThroughputServiceStatus>,
    generation: Option<i64>,
    invalid: &InvalidSpec,
    now: Time,
) -> ThroughputServiceStatus {
    let mut status = old.cloned().unwrap_or_default();
    for type_ in [ConditionType::Ready, ConditionType::Degraded] {
        let value =
            if type_ == ConditionType::Ready { ConditionStatus::False } else { ConditionStatus::True };
        let c = condition(old, generation, &now, type_, value, "InvalidSpec", invalid.0.clone());
        match status.conditions.iter_mut().find(|x| x.type_ == type_) {
            Some(existing) => *existing = c,
            None => status.conditions.push(c),
        }
    }
    status.observed_generation = generation;
    status
}

fn condition(
    old: Option<&ThroughputServiceStatus>,
    generation: Option<i64>,
    now: &Time,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: String,
) -> Condition {
    let previous = old.and_then(|s| s.condition(type_));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    Condition {
        type_,
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn counts(deployment: &Deployment) -> ReplicaCounts {
    let status = deployment.status.clone().unwrap_or_default();
    ReplicaCounts {
        replicas: status.replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
    }
}
