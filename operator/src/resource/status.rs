//! The status the operator writes: what it applied and observed, never a clock tick.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a `ThroughputService`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ApiAvailable, WorkerAvailable, StreamsReady, Degraded and Progressing.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Replica counts of the api Deployment.
    #[serde(default)]
    pub api: ReplicaCounts,
    /// Replica counts of the worker Deployment.
    #[serde(default)]
    pub worker: ReplicaCounts,
    /// Shards the workers serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<i32>,
}

/// Replica counts copied from a Deployment's status.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    /// Pods the Deployment runs.
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
}

/// One condition, keyed by `type` in a list-map.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, ApiAvailable, WorkerAvailable, StreamsReady, Degraded or Progressing.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase reason for the status.
    pub reason: String,
    /// A human readable explanation.
    #[serde(default)]
    pub message: String,
    /// The generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (never moved when only the reason changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// The condition types of a `ThroughputService`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// ApiAvailable, WorkerAvailable and StreamsReady hold.
    Ready,
    /// At least `api.minReplicas` api pods are ready.
    ApiAvailable,
    /// At least `worker.minReplicas` worker pods are ready.
    WorkerAvailable,
    /// The streams and shard consumers exist with the desired configuration.
    StreamsReady,
    /// Commands cannot be stored, or a rollout is stuck.
    Degraded,
    /// A fleet is rolling out or scaling: not every pod is updated and ready yet.
    Progressing,
    /// The PodMonitor asked for (`monitoring.podMonitor`) is applied; present only when asked.
    MonitoringReady,
}

/// The status of a condition.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl ThroughputServiceStatus {
    /// The condition of a type, if present.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.condition(ConditionType::Ready).is_some_and(|c| c.status == ConditionStatus::True)
    }
}
