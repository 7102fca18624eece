//! Validation (no client required): turns a `ThroughputService` into a
//! [`Validated`] one that the builders can trust.
//!
//! The CRD's CEL rules catch most mistakes at admission; these checks repeat them
//! so that an object admitted by an older CRD, or by a cluster without CEL,
//! still never reaches the builders.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::resource::{Autoscaling, ThroughputService, ThroughputServiceSpec};

/// Longest resource name: children are named `<name>-worker`, and Service names
/// must fit a 63-character DNS label.
pub const MAX_NAME_LEN: usize = 56;

/// A `ThroughputService` whose spec was checked, with what every child needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The resource's name; children are named after it.
    pub name: String,
    /// The namespace of the resource and of all its children.
    pub namespace: String,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
    /// The checked spec.
    pub spec: ThroughputServiceSpec,
    /// A hash of the referenced Secrets' values, once read (client required; `None` in
    /// the pure steps): it goes on the pod templates, so a rotated Secret rolls the pods.
    pub secrets_digest: Option<String>,
}

/// Why a spec was refused; the object waits for a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {0}")]
pub struct InvalidSpec(pub String);

/// Checks a resource and prepares it for the builders.
pub fn validate(tps: &ThroughputService) -> Result<Validated, InvalidSpec> {
    let name = tps.name_any();
    let namespace = tps.namespace().ok_or_else(|| InvalidSpec("the resource has no namespace".into()))?;
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidSpec(format!("metadata.name is longer than {MAX_NAME_LEN} characters")));
    }
    // A child Service's name must be a DNS label, and the stream names are `<namespace>_<name>`
    // (one NATS subject token): no dots.
    if name.contains('.') {
        return Err(InvalidSpec(
            "metadata.name must not contain '.' (a DNS label, as Service names need)".into(),
        ));
    }
    let owner =
        tps.controller_owner_ref(&()).ok_or_else(|| InvalidSpec("the resource has no uid yet".into()))?;
    check_spec(&tps.spec)?;
    Ok(Validated { name, namespace, owner, spec: tps.spec.clone(), secrets_digest: None })
}

fn check_spec(spec: &ThroughputServiceSpec) -> Result<(), InvalidSpec> {
    let fail = |msg: &str| Err(InvalidSpec(msg.to_owned()));
    if spec.image.trim().is_empty() {
        return fail("image is empty");
    }
    if spec.api.min_replicas < 1 || spec.api.min_replicas > spec.api.max_replicas {
        return fail("api.minReplicas must be at least 1 and not exceed api.maxReplicas");
    }
    let worker = &spec.worker;
    if worker.min_replicas < 1 || worker.min_replicas > worker.max_replicas {
        return fail("worker.minReplicas must be at least 1 and not exceed worker.maxReplicas");
    }
    if worker.shards < 1 || worker.max_replicas > worker.shards {
        return fail("worker.maxReplicas must not exceed worker.shards");
    }
    if worker.autoscaling == Autoscaling::Keda && spec.nats.monitoring_endpoint.is_none() {
        return fail("worker.autoscaling keda needs nats.monitoringEndpoint");
    }
    if spec.nats.url.is_empty() {
        return fail("nats.url must be set");
    }
    let redis = &spec.redis;
    if redis.url.as_deref().is_some_and(str::is_empty)
        || redis.url.is_some() == redis.url_secret_ref.is_some()
    {
        return fail("redis needs exactly one of url and urlSecretRef");
    }
    if !names_cpu(spec.api.resources.as_ref()) {
        return fail("api.resources needs a cpu request (or limit)");
    }
    if worker.autoscaling == Autoscaling::Hpa && !names_cpu(worker.resources.as_ref()) {
        return fail("worker.resources needs a cpu request (or limit) with autoscaling hpa");
    }
    Ok(())
}

/// No resources (the operator's defaults apply), or resources that name a CPU
/// request or limit: what a CPU HPA needs.
fn names_cpu(resources: Option<&ResourceRequirements>) -> bool {
    let Some(r) = resources else { return true };
    let has = |map: &Option<std::collections::BTreeMap<String, _>>| {
        map.as_ref().is_some_and(|m| m.contains_key("cpu"))
    };
    has(&r.requests) || has(&r.limits)
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    fn refused(tps: &ThroughputService) -> String {
        validate(tps).expect_err("refused").0
    }

    #[test]
    fn minimal_spec_is_valid_and_keeps_name_namespace_and_owner() {
        let v = validate(&ThroughputService::test()).unwrap();
        assert_eq!((v.name.as_str(), v.namespace.as_str()), ("shop", "sales"));
        assert_eq!(v.owner.uid, "7a1e2c9e-0000-4000-8000-000000000001");
        assert_eq!(v.spec.deletion_policy, crate::resource::DeletionPolicy::Retain);
    }

    #[test]
    fn what_cel_refuses_is_refused_here_too() {
        let cases = [
            ("{api: {minReplicas: 3, maxReplicas: 2}}", "api.minReplicas"),
            ("{worker: {minReplicas: 4, maxReplicas: 3}}", "worker.minReplicas"),
            ("{worker: {shards: 4, maxReplicas: 8}}", "worker.shards"),
            ("{worker: {autoscaling: keda}}", "nats.monitoringEndpoint"),
            ("{image: ' '}", "image"),
            ("{redis: {urlSecretRef: {name: r, key: url}}}", "exactly one of url and urlSecretRef"),
            ("{api: {resources: {requests: {memory: 1Gi}}}}", "api.resources"),
            ("{worker: {resources: {limits: {memory: 1Gi}}}}", "worker.resources"),
        ];
        for (patch, needle) in cases {
            let message = refused(&ThroughputService::with_spec(patch));
            assert!(message.contains(needle), "{patch}: {message}");
        }
    }

    #[test]
    fn names_too_long_for_child_services_and_unnamespaced_objects_are_refused() {
        let mut long = ThroughputService::test();
        long.meta_mut().name = Some("x".repeat(MAX_NAME_LEN + 1));
        assert!(refused(&long).contains("metadata.name"));
        let mut cluster = ThroughputService::test();
        cluster.meta_mut().namespace = None;
        assert!(refused(&cluster).contains("namespace"));
    }
}
