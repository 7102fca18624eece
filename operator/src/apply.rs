//! Apply (client required): server-side apply of every desired object with one
//! field manager, returning what the API server answered.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::scaled_object::scaled_object_resource;
use crate::build::{Desired, Workload};
use crate::context::FIELD_MANAGER;
use crate::error::Result;

/// The objects as applied; status is computed from these, never from the
/// desired objects, so it reports what the cluster accepted.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The api Deployment as returned by the API server.
    pub api: Deployment,
    /// The worker Deployment as returned by the API server.
    pub worker: Deployment,
}

/// Applies every object, shared ones first, so pods never start without their
/// ConfigMap or ServiceAccount.
pub async fn apply_all(client: &Client, namespace: &str, desired: &Desired) -> Result<Applied> {
    apply(client, namespace, &desired.config_map).await?;
    apply(client, namespace, &desired.service_account).await?;
    let api = apply_workload(client, namespace, &desired.api).await?;
    let worker = apply_workload(client, namespace, &desired.worker).await?;
    if let Some(scaled_object) = &desired.scaled_object {
        apply_dynamic(client, namespace, scaled_object).await?;
    }
    if let Some(ingress) = &desired.ingress {
        apply(client, namespace, ingress).await?;
    }
    Ok(Applied { api, worker })
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

/// Server-side apply of one typed object, forcing ownership of its fields.
pub async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.patch(&object.name_any(), &apply_params(), &Patch::Apply(object)).await?)
}

async fn apply_dynamic(client: &Client, namespace: &str, object: &DynamicObject) -> Result<DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &scaled_object_resource());
    Ok(api.patch(&object.name_any(), &apply_params(), &Patch::Apply(object)).await?)
}

/// `force`: this operator is the only writer of what it applies.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
