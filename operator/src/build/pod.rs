//! The pod template shared by both workloads: hardened, probed, configured from
//! the ConfigMap and the two Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config_map::{API_PORT, METRICS_PORT, config_data, config_hash};
use super::labels::{Component, config_map_name, selector_labels};
use crate::resource::{ImagePullPolicy, SecretKeyRef};
use crate::validate::Validated;

/// Annotation carrying the config hash, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "throughput.dev/config-hash";
/// Annotation carrying a hash of the referenced Secrets' values, so that rotating a
/// Secret rolls the pods (env vars from a Secret are read only at start).
pub const SECRETS_HASH_ANNOTATION: &str = "throughput.dev/secrets-hash";
/// Where the NATS credentials file is mounted (`NATS_CREDS`).
pub const NATS_CREDS_DIR: &str = "/var/run/secrets/throughput.dev/nats";
/// The file name of the NATS credentials inside [`NATS_CREDS_DIR`].
pub const NATS_CREDS_FILE: &str = "nats.creds";
/// UID the containers run as (any non-root UID works; the image needs no user).
pub const RUN_AS_USER: i64 = 65532;
/// Seconds a terminating pod keeps serving before SIGTERM, so that endpoints and load
/// balancers stop sending it traffic first (the image has no shell: a `sleep` action).
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Failed readiness probes before a pod leaves the endpoints: one blip does not
/// empty every endpoint at once.
pub const READINESS_FAILURES: i32 = 3;

/// The pod template of one workload.
pub fn pod_template(v: &Validated, component: Component) -> PodTemplateSpec {
    let mut annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(&config_data(v)))]);
    if let Some(digest) = &v.secrets_digest {
        annotations.insert(SECRETS_HASH_ANNOTATION.to_owned(), digest.clone());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(selector_labels(v, component)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(v.name.clone()),
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            // The root filesystem is read-only; /tmp is the one writable place.
            volumes: Some(volumes(v)),
            // Let in-flight requests and batches finish after SIGTERM.
            termination_grace_period_seconds: Some(30),
            containers: vec![container(v, component)],
            ..PodSpec::default()
        }),
    }
}

fn container(v: &Validated, component: Component) -> Container {
    let resources = match component {
        Component::Api => v.spec.api.resources.clone(),
        Component::Worker => v.spec.worker.resources.clone(),
    };
    let resources = with_default_requests(resources, component);
    Container {
        name: component.as_str().into(),
        image: Some(v.spec.image.clone()),
        image_pull_policy: Some(pull_policy(v.spec.image_pull_policy).into()),
        command: Some(vec![component.as_str().into()]),
        ports: Some(ports(component)),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: config_map_name(v), optional: Some(false) }),
            ..EnvFromSource::default()
        }]),
        env: Some(env(v)),
        resources: Some(resources),
        liveness_probe: Some(probe("/healthz", health_port(component), 3)),
        readiness_probe: Some(probe("/readyz", health_port(component), READINESS_FAILURES)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: PRE_STOP_SLEEP_SECONDS }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts(v)),
        ..Container::default()
    }
}

/// The secrets of the contract as env vars, and `NATS_CREDS` when NATS wants credentials.
fn env(v: &Validated) -> Vec<EnvVar> {
    let spec = &v.spec;
    let mut env = vec![
        secret_env("DATABASE_URL", &spec.postgres.url_secret_ref),
        secret_env("AUTH_JWT_SECRET", &spec.auth.jwt_secret_ref),
    ];
    if let Some(redis) = &spec.redis.url_secret_ref {
        env.push(secret_env("REDIS_URL", redis));
    }
    if spec.nats.credentials_secret_ref.is_some() {
        env.push(EnvVar {
            name: "NATS_CREDS".into(),
            value: Some(format!("{NATS_CREDS_DIR}/{NATS_CREDS_FILE}")),
            ..EnvVar::default()
        });
    }
    env
}

/// `/tmp` (the root filesystem is read-only), and the NATS credentials when referenced.
fn volumes(v: &Validated) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if let Some(creds) = &v.spec.nats.credentials_secret_ref {
        volumes.push(Volume {
            name: "nats-creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(creds.name.clone()),
                items: Some(vec![KeyToPath {
                    key: creds.key.clone(),
                    path: NATS_CREDS_FILE.into(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o440),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn volume_mounts(v: &Validated) -> Vec<VolumeMount> {
    let mut mounts =
        vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() }];
    if v.spec.nats.credentials_secret_ref.is_some() {
        mounts.push(VolumeMount {
            name: "nats-creds".into(),
            mount_path: NATS_CREDS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    mounts
}

/// CPU and memory requests when the spec names neither a request nor a limit for
/// them: a CPU HPA computes utilisation against the request, and without one it
/// never scales.
pub fn with_default_requests(
    resources: Option<ResourceRequirements>,
    component: Component,
) -> ResourceRequirements {
    let mut resources = resources.unwrap_or_default();
    let memory = match component {
        Component::Api => "128Mi",
        Component::Worker => "256Mi",
    };
    let limits = resources.limits.clone().unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, default) in [("cpu", "250m"), ("memory", memory)] {
        if !requests.contains_key(name) && !limits.contains_key(name) {
            requests.insert(name.to_owned(), Quantity(default.to_owned()));
        }
    }
    resources
}

/// The api serves its probes on the api port; the worker on its metrics port.
pub fn health_port(component: Component) -> &'static str {
    match component {
        Component::Api => "http",
        Component::Worker => "metrics",
    }
}

fn ports(component: Component) -> Vec<ContainerPort> {
    let metrics = ContainerPort {
        name: Some("metrics".into()),
        container_port: METRICS_PORT,
        ..ContainerPort::default()
    };
    match component {
        Component::Api => {
            vec![
                ContainerPort {
                    name: Some("http".into()),
                    container_port: API_PORT,
                    ..ContainerPort::default()
                },
                metrics,
            ]
        }
        Component::Worker => vec![metrics],
    }
}

fn probe(path: &str, port: &str, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn pull_policy(policy: ImagePullPolicy) -> &'static str {
    match policy {
        ImagePullPolicy::IfNotPresent => "IfNotPresent",
        ImagePullPolicy::Always => "Always",
        ImagePullPolicy::Never => "Never",
    }
}
