//! The api Service (traffic and metrics) and the worker Service (metrics only).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config_map::METRICS_PORT;
use super::labels::{Component, child_meta, component_labels, component_name, selector_labels};
use crate::validate::Validated;

/// Port of the api Service.
pub const SERVICE_HTTP_PORT: i32 = 80;

/// The ClusterIP Service of one workload.
pub fn desired_service(v: &Validated, component: Component) -> Service {
    let metrics = port("metrics", METRICS_PORT, "metrics");
    let ports = match component {
        Component::Api => vec![port("http", SERVICE_HTTP_PORT, "http"), metrics],
        Component::Worker => vec![metrics],
    };
    Service {
        metadata: child_meta(v, component_name(v, component), component_labels(v, component)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(v, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}
