//! The KEDA ScaledObject that scales the workers on JetStream consumer lag.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use tps_contract::subject::{ORDERS_STREAM, USERS_STREAM};

use super::labels::{Component, child_meta, component_labels, component_name};
use crate::streams::stream_names;
use crate::validate::Validated;

/// The `keda.sh/v1alpha1` ScaledObject resource.
pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// The ScaledObject of the worker Deployment, or `None` without a monitoring endpoint.
///
/// One trigger per shard consumer of ORDERS and USERS: KEDA's JetStream scaler
/// reads one consumer's lag, and the HPA it drives scales to the busiest one.
pub fn desired_scaled_object(v: &Validated) -> Option<DynamicObject> {
    let nats = &v.spec.nats;
    let endpoint = nats.monitoring_endpoint.clone()?;
    let worker = &v.spec.worker;
    let names = stream_names(&v.spec, &v.namespace, &v.name);
    let names = &names;
    let triggers: Vec<Value> = [ORDERS_STREAM, USERS_STREAM]
        .into_iter()
        .flat_map(|stream| (0..worker.shards.max(0) as u32).map(move |shard| (stream, shard)))
        .map(|(stream, shard)| {
            json!({
                "type": "nats-jetstream",
                "metadata": {
                    "natsServerMonitoringEndpoint": endpoint,
                    "account": nats.account,
                    "useHttps": nats.monitoring_https.to_string(),
                    "stream": names.stream(stream),
                    "consumer": names.consumer(stream, shard),
                    "lagThreshold": worker.lag_threshold.to_string(),
                },
            })
        })
        .collect();
    let name = component_name(v, Component::Worker);
    let mut object = DynamicObject::new(&name, &scaled_object_resource());
    object.metadata = child_meta(v, name.clone(), component_labels(v, Component::Worker));
    object.data = json!({
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicaCount": worker.min_replicas,
            "maxReplicaCount": worker.max_replicas,
            "triggers": triggers,
        }
    });
    Some(object)
}
