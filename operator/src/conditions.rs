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
    /// `api.minReplicas` and `worker.minReplicas`: what "available" means.
    pub minimum: (i32, i32),
}

type Verdict = (ConditionStatus, &'static str, String);

/// The status after a successful apply. Ready means both fleets have their minimum of
/// ready pods and the streams are provisioned; a fleet scaling up or rolling out is
/// `Progressing`, not NotReady.
pub fn observed_status(
    old: Option<&ThroughputServiceStatus>,
    seen: &Observed,
    now: Time,
) -> ThroughputServiceStatus {
    let (api, worker) = (&seen.applied.api, &seen.applied.worker);
    let streams = match seen.streams {
        Ok(()) => (
            ConditionStatus::True,
            "StreamsProvisioned",
            "ORDERS, USERS and DEAD_LETTERS are provisioned".into(),
        ),
        Err(e) => (ConditionStatus::False, "ProvisioningFailed", e.to_string()),
    };
    let parts = [available(api, seen.minimum.0), available(worker, seen.minimum.1), streams];
    let ready = match parts.iter().find(|p| p.0 != ConditionStatus::True) {
        None => (ConditionStatus::True, "AllAvailable", String::new()),
        Some(failing) => (ConditionStatus::False, failing.1, failing.2.clone()),
    };
    let degraded = degraded(seen.streams, [api, worker]);
    let progressing = progressing([("api", api), ("worker", worker)]);
    let [api_available, worker_available, streams_ready] = parts;
    let wanted = [
        (ConditionType::Ready, ready),
        (ConditionType::ApiAvailable, api_available),
        (ConditionType::WorkerAvailable, worker_available),
        (ConditionType::StreamsReady, streams_ready),
        (ConditionType::Degraded, degraded),
        (ConditionType::Progressing, progressing),
    ];
    let monitoring = seen.applied.monitoring.as_ref().map(|outcome| match outcome {
        Ok(()) => (ConditionStatus::True, "PodMonitorApplied", "the PodMonitor is applied".to_owned()),
        Err(why) => (ConditionStatus::False, "PodMonitorCRDMissing", why.clone()),
    });
    let conditions = wanted
        .into_iter()
        .chain(monitoring.map(|m| (ConditionType::MonitoringReady, m)))
        .map(|(type_, (status, reason, message))| {
            condition(old, seen.generation, &now, type_, status, reason, message)
        })
        .collect();
    ThroughputServiceStatus {
        observed_generation: seen.generation,
        conditions,
        api: counts(api),
        worker: counts(worker),
        shards: Some(seen.shards),
    }
}

/// Available: at least `minimum` pods ready (and at least one).
fn available(deployment: &Deployment, minimum: i32) -> Verdict {
    let c = counts(deployment);
    let minimum = minimum.max(1);
    match c.ready_replicas {
        n if n >= minimum => (
            ConditionStatus::True,
            "MinimumAvailable",
            format!("{n} of {} pods ready (minimum {minimum})", c.replicas),
        ),
        0 => (ConditionStatus::False, "NoReadyPods", "no pod is ready yet".into()),
        n => (ConditionStatus::False, "BelowMinimum", format!("{n} of the minimum {minimum} pods ready")),
    }
}

/// Degraded: commands cannot be stored, or a rollout is stuck past its deadline.
fn degraded(streams: &Result<(), StreamsError>, deployments: [&Deployment; 2]) -> Verdict {
    if streams.is_err() {
        return (ConditionStatus::True, "StreamsNotReady", "commands cannot be stored".into());
    }
    let stuck = deployments.iter().any(|d| {
        let conditions = d.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions
            .into_iter()
            .flatten()
            .any(|c| c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False"))
    });
    match stuck {
        true => (ConditionStatus::True, "RolloutStuck", "a rollout exceeded its progress deadline".into()),
        false => (ConditionStatus::False, "AsExpected", String::new()),
    }
}

/// Progressing: a fleet is rolling out or scaling (pods not yet updated or ready).
fn progressing(deployments: [(&str, &Deployment); 2]) -> Verdict {
    let busy: Vec<String> = deployments
        .iter()
        .filter_map(|(fleet, d)| {
            let s = d.status.clone().unwrap_or_default();
            let (replicas, ready, updated) =
                (s.replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0));
            let stale = s.observed_generation < d.metadata.generation;
            (stale || ready < replicas || updated < replicas)
                .then(|| format!("{fleet}: {ready} ready, {updated} updated of {replicas}"))
        })
        .collect();
    match busy.is_empty() {
        true => (ConditionStatus::False, "Settled", "every pod is updated and ready".into()),
        false => (ConditionStatus::True, "RollingOut", busy.join("; ")),
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
    refused_status(old, generation, "InvalidSpec", invalid.0.clone(), now)
}

/// The status of a resource the operator would not apply (`reason` says why): not
/// Ready, Degraded, the rest as last observed.
pub fn refused_status(
    old: Option<&ThroughputServiceStatus>,
    generation: Option<i64>,
    reason: &str,
    message: String,
    now: Time,
) -> ThroughputServiceStatus {
    let mut status = old.cloned().unwrap_or_default();
    for type_ in [ConditionType::Ready, ConditionType::Degraded] {
        let value =
            if type_ == ConditionType::Ready { ConditionStatus::False } else { ConditionStatus::True };
        let c = condition(old, generation, &now, type_, value, reason, message.clone());
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    use super::*;
    use crate::mock::test_clock;

    fn deployment(replicas: i32, ready: i32, updated: i32) -> Deployment {
        let status = json!({ "replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated });
        serde_json::from_value(json!({ "status": status })).unwrap()
    }

    fn status_of(api: Deployment, worker: Deployment) -> ThroughputServiceStatus {
        let applied = Applied { api, worker, monitoring: None };
        let seen = Observed {
            generation: Some(1),
            applied: &applied,
            streams: &Ok(()),
            shards: 16,
            minimum: (2, 1),
        };
        observed_status(None, &seen, test_clock())
    }

    fn verdict(s: &ThroughputServiceStatus, type_: ConditionType) -> (ConditionStatus, &str) {
        let c = s.condition(type_).unwrap();
        (c.status, c.reason.as_str())
    }

    #[test]
    fn scaling_up_is_progressing_and_still_ready() {
        let s = status_of(deployment(6, 2, 6), deployment(1, 1, 1));
        assert_eq!(verdict(&s, ConditionType::Ready), (ConditionStatus::True, "AllAvailable"));
        assert_eq!(verdict(&s, ConditionType::Progressing), (ConditionStatus::True, "RollingOut"));
        assert_eq!(verdict(&s, ConditionType::Degraded), (ConditionStatus::False, "AsExpected"));
    }

    #[test]
    fn monitoring_has_a_condition_only_when_asked_and_never_gates_ready() {
        let ready = || deployment(2, 2, 2);
        assert!(status_of(ready(), ready()).condition(ConditionType::MonitoringReady).is_none());
        let missing = "the PodMonitor CRD (monitoring.coreos.com/v1) is not installed".to_owned();
        let applied = Applied { api: ready(), worker: ready(), monitoring: Some(Err(missing.clone())) };
        let seen = Observed {
            generation: Some(1),
            applied: &applied,
            streams: &Ok(()),
            shards: 16,
            minimum: (2, 1),
        };
        let s = observed_status(None, &seen, test_clock());
        assert_eq!(
            verdict(&s, ConditionType::MonitoringReady),
            (ConditionStatus::False, "PodMonitorCRDMissing")
        );
        assert_eq!(s.condition(ConditionType::MonitoringReady).unwrap().message, missing);
        assert_eq!(verdict(&s, ConditionType::Ready), (ConditionStatus::True, "AllAvailable"));
    }

    #[test]
    fn below_the_minimum_is_not_ready() {
        let s = status_of(deployment(2, 1, 2), deployment(1, 1, 1));
        assert_eq!(verdict(&s, ConditionType::ApiAvailable), (ConditionStatus::False, "BelowMinimum"));
        assert_eq!(verdict(&s, ConditionType::Ready), (ConditionStatus::False, "BelowMinimum"));
    }

    #[test]
    fn a_rollout_past_its_deadline_is_degraded() {
        let mut stuck = deployment(2, 2, 1);
        let condition =
            json!({ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded" });
        stuck.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(condition).unwrap()]);
        let s = status_of(stuck, deployment(1, 1, 1));
        assert_eq!(verdict(&s, ConditionType::Degraded), (ConditionStatus::True, "RolloutStuck"));
        assert_eq!(verdict(&s, ConditionType::Ready), (ConditionStatus::True, "AllAvailable"));
    }
}
