//! `autoscaling/v2` HorizontalPodAutoscalers on CPU.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::labels::{Component, child_meta, component_labels, component_name};
use crate::validate::Validated;

/// The HPA of one workload, scaling its Deployment on average CPU.
pub fn desired_hpa(v: &Validated, component: Component) -> HorizontalPodAutoscaler {
    let (min, max, target) = match component {
        Component::Api => {
            let api = &v.spec.api;
            (api.min_replicas, api.max_replicas, api.target_cpu_utilization_percentage)
        }
        Component::Worker => {
            let worker = &v.spec.worker;
            (worker.min_replicas, worker.max_replicas, worker.target_cpu_utilization_percentage)
        }
    };
    let name = component_name(v, component);
    HorizontalPodAutoscaler {
        metadata: child_meta(v, name.clone(), component_labels(v, component)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(target),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        },
        status: None,
    }
}
