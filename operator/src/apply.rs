//! Apply (client required): server-side apply of every desired object with one
//! field manager, returning what the API server answered.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::pod_monitor::pod_monitor_resource;
use crate::build::scaled_object::scaled_object_resource;
use crate::build::{Desired, Workload};
use crate::context::FIELD_MANAGER;
use crate::error::{Error, Result};

/// The objects as applied; status is computed from these, never from the
/// desired objects, so it reports what the cluster accepted.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The api Deployment as returned by the API server.
    pub api: Deployment,
    /// The worker Deployment as returned by the API server.
    pub worker: Deployment,
    /// The PodMonitor's fate when one is asked for: applied, or why not (its CRD missing).
    pub monitoring: Option<Result<(), String>>,
}

/// Applies every object, shared ones first, so pods never start without their
/// ConfigMap or ServiceAccount.
pub async fn apply_all(client: &Client, namespace: &str, desired: &Desired) -> Result<Applied> {
    apply(client, namespace, &desired.config_map).await?;
    crate::failpoint::after_config_map();
    apply(client, namespace, &desired.service_account).await?;
    let api = apply_workload(client, namespace, &desired.api).await?;
    let worker = apply_workload(client, namespace, &desired.worker).await?;
    if let Some(scaled_object) = &desired.scaled_object {
        apply_dynamic(client, namespace, &scaled_object_resource(), scaled_object).await?;
    }
    if let Some(ingress) = &desired.ingress {
        apply(client, namespace, ingress).await?;
    }
    let monitoring = match &desired.pod_monitor {
        None => None,
        Some(monitor) => {
            Some(match apply_dynamic(client, namespace, &pod_monitor_resource(), monitor).await {
                Ok(_) => Ok(()),
                // Monitoring is optional: a cluster without the prometheus-operator says so in
                // the status and nothing else fails.
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
                    Err("the PodMonitor CRD (monitoring.coreos.com/v1) is not installed".to_owned())
                }
                Err(e) => return Err(e),
            })
        }
    };
    Ok(Applied { api, worker, monitoring })
}

async fn apply_workload(client: &Client, namespace: &str, workload: &Workload) -> Result<Deployment> {
    let deployment = apply(client, namespace, &workload.deployment).await?;
    apply(client, namespace, &workload.service).await?;
    if let Some(hpa) = &workload.hpa {
        apply(client, namespace, hpa).await?;
    }
    apply(client, namespace, &workload.pdb).await?;
    apply(client, namespace, &workload.network_policy).await?;
    Ok(deployment)
}

/// Server-side apply of one typed object, forcing ownership of its fields; an object of
/// that name that this resource does not control is refused, never adopted.
pub async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    apply_with(&api, K::kind(&()).as_ref(), object).await
}

async fn apply_dynamic(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    object: &DynamicObject,
) -> Result<DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    apply_with(&api, &resource.kind, object).await
}

async fn apply_with<K>(api: &Api<K>, kind: &str, object: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.name_any();
    if let Some(existing) = api.get_opt(&name).await?
        && !controlled_alike(&existing, object)
    {
        return Err(Error::NotOwned { kind: kind.to_owned(), name });
    }
    Ok(api.patch(&name, &apply_params(), &Patch::Apply(object)).await?)
}

/// Whether `existing` has the controller owner of `desired` (our ThroughputService's UID).
pub fn controlled_alike<K: Resource>(existing: &K, desired: &K) -> bool {
    let controller =
        |o: &K| o.owner_references().iter().find(|r| r.controller == Some(true)).map(|r| r.uid.clone());
    controller(existing).is_some() && controller(existing) == controller(desired)
}

/// `force`: this operator is the only writer of what it applies.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
