//! The ServiceAccount both workloads run as; it mounts no API token.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::labels::{child_meta, instance_labels};
use crate::validate::Validated;

/// `<name>`: the pods never talk to the Kubernetes API, so no token is mounted.
pub fn desired_service_account(v: &Validated) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(v, v.name.clone(), instance_labels(v)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
