//! Prune (client required): deletes children that are no longer desired.
//!
//! Only the optional kinds can become undesired (the worker HPA when KEDA takes
//! over, the ScaledObject when the HPA comes back, the Ingress and the PodMonitor
//! when removed);
//! every other child always exists under a fixed name, and garbage collection
//! removes it with its owner.

use std::collections::BTreeSet;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, Resource, ResourceExt};

use crate::build::Desired;
use crate::build::labels::children_selector;
use crate::build::pod_monitor::pod_monitor_resource;
use crate::build::scaled_object::scaled_object_resource;
use crate::error::Result;
use crate::validate::Validated;

/// Deletes the optional children this resource owns but no longer wants.
pub async fn prune(client: &Client, v: &Validated, desired: &Desired) -> Result<()> {
    let ns = &v.namespace;
    let hpas: BTreeSet<String> =
        [&desired.api.hpa, &desired.worker.hpa].into_iter().flatten().map(|h| h.name_any()).collect();
    prune_kind(Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns), v, &hpas).await?;
    let ingresses: BTreeSet<String> = desired.ingress.iter().map(|i| i.name_any()).collect();
    prune_kind(Api::<Ingress>::namespaced(client.clone(), ns), v, &ingresses).await?;
    let scaled: BTreeSet<String> = desired.scaled_object.iter().map(|s| s.name_any()).collect();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &scaled_object_resource());
    prune_kind(api, v, &scaled).await?;
    let monitors: BTreeSet<String> = desired.pod_monitor.iter().map(|m| m.name_any()).collect();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pod_monitor_resource());
    prune_kind(api, v, &monitors).await
}

async fn prune_kind<K>(api: Api<K>, v: &Validated, keep: &BTreeSet<String>) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().labels(&children_selector(&v.name));
    let existing = match api.list(&params).await {
        Ok(list) => list.items,
        // The kind is not served (KEDA not installed): nothing of it to prune.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for object in existing {
        let owned = object.owner_references().iter().any(|o| o.uid == v.owner.uid);
        if owned && !keep.contains(&object.name_any()) {
            match api.delete(&object.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
