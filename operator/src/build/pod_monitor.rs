//! The prometheus-operator PodMonitor that scrapes both fleets, when asked for
//! (`monitoring.podMonitor: true`).

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::labels::{child_meta, instance_labels};
use crate::validate::Validated;

/// The `monitoring.coreos.com/v1` PodMonitor resource.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"),
        "podmonitors",
    )
}

/// `<name>`: one PodMonitor for the api and worker pods, on their `metrics` port.
pub fn desired_pod_monitor(v: &Validated) -> Option<DynamicObject> {
    let monitoring = v.spec.monitoring.as_ref().filter(|m| m.pod_monitor)?;
    let mut labels = instance_labels(v);
    labels.extend(monitoring.labels.clone());
    let mut object = DynamicObject::new(&v.name, &pod_monitor_resource());
    object.metadata = child_meta(v, v.name.clone(), labels);
    let selector = BTreeMap::from([
        ("app.kubernetes.io/name", "throughputservice".to_owned()),
        ("app.kubernetes.io/instance", v.name.clone()),
    ]);
    let mut endpoint = json!({ "port": "metrics", "path": "/metrics" });
    if let Some(interval) = &monitoring.interval {
        endpoint["interval"] = json!(interval);
    }
    object.data = json!({
        "spec": {
            "selector": { "matchLabels": selector },
            "podMetricsEndpoints": [endpoint],
        }
    });
    Some(object)
}
