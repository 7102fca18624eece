//! The optional Ingress in front of the api Service.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::labels::{Component, child_meta, component_labels, component_name};
use super::service::SERVICE_HTTP_PORT;
use crate::validate::Validated;

/// The api Ingress, when `api.ingress` is set.
pub fn desired_ingress(v: &Validated) -> Option<Ingress> {
    let spec = v.spec.api.ingress.as_ref()?;
    let name = component_name(v, Component::Api);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(SERVICE_HTTP_PORT),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let tls = spec.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS { hosts: Some(vec![spec.host.clone()]), secret_name: Some(secret.clone()) }]
    });
    Some(Ingress {
        metadata: child_meta(v, name, component_labels(v, Component::Api)),
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend,
                    }],
                }),
            }]),
            tls,
            ..IngressSpec::default()
        }),
        status: None,
    })
}
