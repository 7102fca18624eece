//! Names, labels and metadata shared by every child object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::validate::Validated;

/// The `app.kubernetes.io/managed-by` value on every child; pruning only ever
/// touches objects carrying it.
pub const MANAGED_BY: &str = "tps-operator";

/// One of the two workloads of a `ThroughputService`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The HTTP api.
    Api,
    /// The command-processing worker.
    Worker,
}

impl Component {
    /// `api` or `worker`: the label value, the name suffix and the binary name.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Api => "api",
            Component::Worker => "worker",
        }
    }
}

/// Name of a workload's Deployment, Service, HPA, PDB and NetworkPolicy.
pub fn component_name(v: &Validated, component: Component) -> String {
    format!("{}-{}", v.name, component.as_str())
}

/// Name of the shared ConfigMap.
pub fn config_map_name(v: &Validated) -> String {
    format!("{}-config", v.name)
}

/// Labels selecting the pods of one workload (stable: Deployment selectors are immutable).
pub fn selector_labels(v: &Validated, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "throughputservice".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), v.name.clone()),
        ("app.kubernetes.io/component".to_owned(), component.as_str().to_owned()),
    ])
}

/// Labels of an object shared by both workloads.
pub fn instance_labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "throughputservice".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), v.name.clone()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// Labels of one workload's objects: the selector labels plus `managed-by`.
pub fn component_labels(v: &Validated, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(v, component);
    labels.insert("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned());
    labels
}

/// The label selector that finds every child of a resource, for pruning.
pub fn children_selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={MANAGED_BY}")
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
pub fn child_meta(v: &Validated, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![v.owner.clone()]),
        ..ObjectMeta::default()
    }
}
