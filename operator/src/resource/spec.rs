//! The `ThroughputService` custom resource: the spec a platform team writes.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ThroughputServiceStatus;

/// A spike-proof write API: an autoscaled api fleet accepting commands into
/// JetStream, and an autoscaled worker fleet settling them shard by shard.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "throughput.dev",
    version = "v1alpha1",
    kind = "ThroughputService",
    plural = "throughputservices",
    shortname = "tps",
    namespaced,
    status = "ThroughputServiceStatus",
    doc = "A spike-proof write API: an autoscaled api and worker fleet on JetStream.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "API",
        type_ = "integer",
        json_path = ".status.api.readyReplicas",
        description = "ready api pods"
    ),
    printcolumn(
        name = "Workers",
        type_ = "integer",
        json_path = ".status.worker.readyReplicas",
        description = "ready worker pods"
    ),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.worker.shards"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.worker.autoscaling != 'keda' || has(self.nats.monitoringEndpoint)").message("worker.autoscaling keda needs nats.monitoringEndpoint"))]
#[serde(rename_all = "camelCase")]
pub struct ThroughputServiceSpec {
    /// Container image holding the `api` and `worker` binaries.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of both workloads.
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,
    /// `RUST_LOG` filter of both workloads.
    #[serde(default = "default_log")]
    pub log: String,
    /// What happens to the JetStream streams when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The HTTP api fleet.
    #[serde(default)]
    pub api: ApiSpec,
    /// The command-processing worker fleet.
    #[serde(default)]
    pub worker: WorkerSpec,
    /// NATS JetStream, where commands are stored.
    pub nats: NatsSpec,
    /// Postgres, the system of record.
    pub postgres: PostgresSpec,
    /// Redis, the read cache.
    pub redis: RedisSpec,
    /// Token verification.
    pub auth: AuthSpec,
    /// Prometheus scraping of both fleets through the prometheus-operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// Scraping by a prometheus-operator Prometheus.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A `monitoring.coreos.com/v1` PodMonitor `<name>` for the api and worker pods' `metrics`
    /// port. Needs the prometheus-operator CRDs; without them the `MonitoringReady` condition
    /// says so and nothing else fails.
    #[serde(default)]
    pub pod_monitor: bool,
    /// Labels on the PodMonitor, for a Prometheus that selects by them
    /// (e.g. `release: kube-prometheus-stack`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Scrape interval (e.g. `30s`); Prometheus's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// The api Deployment, its HorizontalPodAutoscaler and optional Ingress.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("api.minReplicas must not exceed api.maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.resources) || (has(self.resources.requests) && 'cpu' in self.resources.requests) || (has(self.resources.limits) && 'cpu' in self.resources.limits)").message("api.resources needs a cpu request (or limit): the HPA scales on CPU utilisation of the request"))]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Fewest api pods the autoscaler keeps.
    #[serde(default = "default_api_min")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most api pods the autoscaler may run.
    #[serde(default = "default_api_max")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilisation the autoscaler aims for.
    #[serde(default = "default_cpu_target", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// Requests and limits of the api container. CPU and memory requests default to
    /// 250m and 128Mi when neither a request nor a limit names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Exposes the api outside the cluster when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// CIDRs (or addresses) of the proxies whose `X-Forwarded-For` the api believes
    /// (`API_TRUSTED_PROXIES`), e.g. the ingress controller's pod network. Empty: nobody's,
    /// and the per-IP limits of anonymous routes count the TCP peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
}

/// How the api is exposed through an Ingress.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name the Ingress answers for.
    #[schemars(length(min = 1))]
    pub host: String,
    /// IngressClass to use; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Secret holding the TLS certificate for `host`; plain HTTP when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// The worker Deployment and its autoscaler (an HPA or a KEDA ScaledObject, never both).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("worker.minReplicas must not exceed worker.maxReplicas"))]
#[x_kube(validation = Rule::new("self.maxReplicas <= self.shards").message("worker.maxReplicas must not exceed worker.shards: a worker owns at least one shard"))]
#[x_kube(validation = Rule::new("self.autoscaling != 'hpa' || !has(self.resources) || (has(self.resources.requests) && 'cpu' in self.resources.requests) || (has(self.resources.limits) && 'cpu' in self.resources.limits)").message("worker.resources needs a cpu request (or limit) with autoscaling hpa: the HPA scales on CPU utilisation of the request"))]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Fewest worker pods the autoscaler keeps.
    #[serde(default = "default_worker_min")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most worker pods the autoscaler may run.
    #[serde(default = "default_worker_max")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Number of shards (`SHARDS`). Immutable: it decides which shard, and so which
    /// ordered consumer, holds every pending command of a ticket.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("worker.shards is immutable"))]
    pub shards: i32,
    /// Commands a worker settles per database transaction (`BATCH_SIZE`).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: i32,
    /// Requests and limits of the worker container. CPU and memory requests default
    /// to 250m and 256Mi when neither a request nor a limit names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Which autoscaler drives the worker Deployment.
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Average CPU utilisation the HPA aims for (`autoscaling: hpa`).
    #[serde(default = "default_cpu_target", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// Pending messages per shard consumer that KEDA treats as one worker's load (`autoscaling: keda`).
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 1))]
    pub lag_threshold: i64,
}

/// The autoscaler of the worker Deployment.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Autoscaling {
    /// An `autoscaling/v2` HorizontalPodAutoscaler on CPU.
    #[default]
    Hpa,
    /// A KEDA ScaledObject on JetStream consumer lag.
    Keda,
}

/// What deleting the resource does to its JetStream streams.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the streams and the commands in them.
    #[default]
    Retain,
    /// Delete the streams ORDERS, USERS and DEAD_LETTERS.
    Delete,
}

/// Image pull policy of the pods.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImagePullPolicy {
    /// Pull when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Pull on every start.
    Always,
    /// Never pull.
    Never,
}

/// NATS and the JetStream streams the operator provisions.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NatsSpec {
    /// `NATS_URL`, also used by the operator to provision streams.
    #[schemars(length(min = 1))]
    pub url: String,
    /// NATS monitoring endpoint `host:port` (8222), read by KEDA for consumer lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_endpoint: Option<String>,
    /// The NATS account holding the streams, as KEDA's JetStream scaler names it when it
    /// reads consumer lag from the monitoring endpoint: `$G` on a NATS without accounts.
    #[serde(default = "default_nats_account")]
    #[schemars(length(min = 1, max = 256), pattern(r"^\S+$"))]
    pub account: String,
    /// The monitoring endpoint speaks HTTPS (KEDA's `useHttps`).
    #[serde(default)]
    pub monitoring_https: bool,
    /// Replicas and limits of the streams.
    #[serde(default)]
    pub streams: StreamsSpec,
    /// Secret key holding a NATS credentials file (`.creds`: a user JWT and NKey seed). It
    /// is mounted into the pods (`NATS_CREDS`) and used by the operator to provision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

/// Replicas and limits of the ORDERS, USERS and DEAD_LETTERS streams.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamsSpec {
    /// JetStream replicas of each stream (1 to 5).
    #[serde(default = "default_stream_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Bytes a stream may hold; a full command stream refuses new commands (503).
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes: i64,
    /// Seconds a command is kept.
    #[serde(default = "default_max_age")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: i64,
    /// Prefix of the stream, subject and consumer names (`NATS_STREAM_PREFIX`): unset,
    /// `<namespace>_<name>`, so that resources sharing a NATS never share a stream
    /// (`shop_flash-sale_ORDERS` on `shop_flash-sale.orders.*`). Empty: the contract names
    /// ORDERS, USERS and DEAD_LETTERS, as a release before per-resource names made them
    /// (keep it empty to upgrade with unsettled commands in those streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z0-9_-]{0,100}$"))]
    pub prefix: Option<String>,
}

/// Postgres connection.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding `DATABASE_URL`.
    pub url_secret_ref: SecretKeyRef,
}

/// Redis connection: a plain `url`, or a `urlSecretRef` when the URL carries a password.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("redis needs exactly one of url and urlSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `REDIS_URL`, when it holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub url: Option<String>,
    /// Secret key holding `REDIS_URL` (e.g. `rediss://:password@host:6380`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// Token verification.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding `AUTH_JWT_SECRET`.
    pub jwt_secret_ref: SecretKeyRef,
    /// When set, every token's `aud` must contain it (`AUTH_JWT_AUDIENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub audience: Option<String>,
    /// When set, every token's `iss` must equal it (`AUTH_JWT_ISSUER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub issuer: Option<String>,
}

/// A key of a Secret in the resource's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_api_min(),
            max_replicas: default_api_max(),
            target_cpu_utilization_percentage: default_cpu_target(),
            resources: None,
            ingress: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for WorkerSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_worker_min(),
            max_replicas: default_worker_max(),
            shards: default_shards(),
            batch_size: default_batch_size(),
            resources: None,
            autoscaling: Autoscaling::default(),
            target_cpu_utilization_percentage: default_cpu_target(),
            lag_threshold: default_lag_threshold(),
        }
    }
}

impl Default for StreamsSpec {
    fn default() -> Self {
        Self {
            replicas: default_stream_replicas(),
            max_bytes: default_max_bytes(),
            max_age_seconds: default_max_age(),
            prefix: None,
        }
    }
}

fn default_log() -> String {
    "info".into()
}
fn default_api_min() -> i32 {
    2
}
fn default_api_max() -> i32 {
    10
}
fn default_cpu_target() -> i32 {
    70
}
fn default_worker_min() -> i32 {
    1
}
fn default_worker_max() -> i32 {
    16
}
fn default_shards() -> i32 {
    16
}
fn default_batch_size() -> i32 {
    256
}
fn default_lag_threshold() -> i64 {
    1000
}
fn default_stream_replicas() -> i32 {
    1
}
fn default_nats_account() -> String {
    "$G".to_owned()
}
fn default_max_bytes() -> i64 {
    8 * 1024 * 1024 * 1024
}
fn default_max_age() -> i64 {
    7 * 24 * 3600
}
