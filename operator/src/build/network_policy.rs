//! NetworkPolicies: only the ports each workload serves are reachable.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config_map::{API_PORT, METRICS_PORT};
use super::labels::{Component, child_meta, component_labels, component_name, selector_labels};
use crate::validate::Validated;

/// The ingress policy of one workload: the api takes traffic and scrapes, the
/// worker only scrapes. Egress stays open: NATS, Postgres and Redis may live anywhere.
pub fn desired_network_policy(v: &Validated, component: Component) -> NetworkPolicy {
    let ports = match component {
        Component::Api => vec![tcp(API_PORT), tcp(METRICS_PORT)],
        Component::Worker => vec![tcp(METRICS_PORT)],
    };
    NetworkPolicy {
        metadata: child_meta(v, component_name(v, component), component_labels(v, component)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v, component)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { ports: Some(ports), from: None }]),
            egress: None,
        }),
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(port)), protocol: Some("TCP".into()), end_port: None }
}
