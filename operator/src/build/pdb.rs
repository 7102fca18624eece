//! PodDisruptionBudgets: drains take at most one pod of a workload at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{Component, child_meta, component_labels, component_name, selector_labels};
use crate::validate::Validated;

/// The PDB of one workload. `maxUnavailable: 1` rather than a `minAvailable`
/// tied to the replica count, which the autoscaler changes under it, and which
/// would block node drains entirely at one replica.
pub fn desired_pdb(v: &Validated, component: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(v, component_name(v, component), component_labels(v, component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
