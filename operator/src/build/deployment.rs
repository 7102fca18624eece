//! The api and worker Deployments.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{Component, child_meta, component_labels, component_name, selector_labels};
use super::pod::pod_template;
use crate::validate::Validated;

/// The Deployment of one workload.
///
/// `spec.replicas` is never set: an HPA or a KEDA ScaledObject always owns the
/// replica count, and writing it here would fight the autoscaler on every pass.
pub fn desired_deployment(v: &Validated, component: Component) -> Deployment {
    Deployment {
        metadata: child_meta(v, component_name(v, component), component_labels(v, component)),
        spec: DeploymentSpec {
            replicas: None,
            selector: LabelSelector {
                match_labels: Some(selector_labels(v, component)),
                ..LabelSelector::default()
            },
            template: pod_template(v, component),
            // Surge rather than drop capacity during a rollout in a spike.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}
