//! Builder unit tests: minimal YAML through the real validate step, no mocks.

mod autoscaling;
mod exposure;
mod workloads;

use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::{Desired, desired};
use crate::fixtures::validated;

/// Desired objects of the minimal resource with `patch` merged into its spec.
fn build(patch: &str) -> Desired {
    desired(&validated(patch))
}

fn container(d: &k8s_openapi::api::apps::v1::Deployment) -> &Container {
    &d.spec.template.spec.as_ref().unwrap().containers[0]
}

fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} missing"))
}

fn config(d: &Desired, key: &str) -> String {
    d.config_map.data.as_ref().unwrap()[key].clone()
}
