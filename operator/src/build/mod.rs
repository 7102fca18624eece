//! Builders (no client required): pure functions from a [`Validated`] resource
//! to the objects that should exist, one file per kind.

pub mod config_map;
pub mod deployment;
pub mod hpa;
pub mod ingress;
pub mod labels;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod pod_monitor;
pub mod scaled_object;
pub mod service;
pub mod service_account;

#[cfg(test)]
mod tests;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

pub use labels::Component;

use crate::resource::Autoscaling;
use crate::validate::Validated;

/// Every object a `ThroughputService` should own, before it is applied.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The shared non-secret environment.
    pub config_map: ConfigMap,
    /// The pods' identity.
    pub service_account: ServiceAccount,
    /// The api workload.
    pub api: Workload,
    /// The worker workload.
    pub worker: Workload,
    /// The worker's KEDA ScaledObject (`autoscaling: keda`), instead of its HPA.
    pub scaled_object: Option<DynamicObject>,
    /// The api Ingress, when asked for.
    pub ingress: Option<Ingress>,
    /// The PodMonitor of both fleets, when asked for.
    pub pod_monitor: Option<DynamicObject>,
}

/// The objects of one workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The Deployment, without replicas.
    pub deployment: Deployment,
    /// Its Service.
    pub service: Service,
    /// Its HPA; `None` when KEDA scales it.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Its PodDisruptionBudget.
    pub pdb: PodDisruptionBudget,
    /// Its NetworkPolicy.
    pub network_policy: NetworkPolicy,
}

/// Builds every desired object of a validated resource.
pub fn desired(v: &Validated) -> Desired {
    let keda = v.spec.worker.autoscaling == Autoscaling::Keda;
    let mut worker = workload(v, Component::Worker);
    if keda {
        // Never two autoscalers on one Deployment.
        worker.hpa = None;
    }
    Desired {
        config_map: config_map::desired_config_map(v),
        service_account: service_account::desired_service_account(v),
        api: workload(v, Component::Api),
        worker,
        scaled_object: if keda { scaled_object::desired_scaled_object(v) } else { None },
        ingress: ingress::desired_ingress(v),
        pod_monitor: pod_monitor::desired_pod_monitor(v),
    }
}

fn workload(v: &Validated, component: Component) -> Workload {
    Workload {
        deployment: deployment::desired_deployment(v, component),
        service: service::desired_service(v, component),
        hpa: Some(hpa::desired_hpa(v, component)),
        pdb: pdb::desired_pdb(v, component),
        network_policy: network_policy::desired_network_policy(v, component),
    }
}
