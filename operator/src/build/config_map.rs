//! The ConfigMap holding the non-secret environment of both workloads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::labels::{child_meta, config_map_name, instance_labels};
use crate::streams::stream_prefix;
use crate::validate::Validated;

/// Port of `API_LISTEN`.
pub const API_PORT: i32 = 8080;
/// Port of `METRICS_LISTEN` (also the worker's health endpoints).
pub const METRICS_PORT: i32 = 9090;

/// The environment from `CONTRACT.md` that is not a secret, and the settings that tie
/// the binaries to what the operator provisioned: the stream names, and that the streams
/// are the operator's (`NATS_STREAMS_CREATE=false`: the binaries never make them with
/// other limits). `REDIS_URL` is here only when given as a plain `redis.url`; from
/// `redis.urlSecretRef` it is a secret env var of the pods.
pub fn config_data(v: &Validated) -> BTreeMap<String, String> {
    let spec = &v.spec;
    let mut data = BTreeMap::from([
        ("NATS_URL".to_owned(), spec.nats.url.clone()),
        ("NATS_REPLICAS".to_owned(), spec.nats.streams.replicas.to_string()),
        ("NATS_STREAM_PREFIX".to_owned(), stream_prefix(spec, &v.namespace, &v.name)),
        ("NATS_STREAMS_CREATE".to_owned(), "false".to_owned()),
        ("API_LISTEN".to_owned(), format!("0.0.0.0:{API_PORT}")),
        ("API_TRUSTED_PROXIES".to_owned(), spec.api.trusted_proxies.join(",")),
        ("METRICS_LISTEN".to_owned(), format!("0.0.0.0:{METRICS_PORT}")),
        ("SHARDS".to_owned(), spec.worker.shards.to_string()),
        ("RUST_LOG".to_owned(), spec.log.clone()),
        ("BATCH_SIZE".to_owned(), spec.worker.batch_size.to_string()),
    ]);
    // Only when set: an empty value would be enforced as the empty string.
    let optional = [
        ("REDIS_URL", &spec.redis.url),
        ("AUTH_JWT_AUDIENCE", &spec.auth.audience),
        ("AUTH_JWT_ISSUER", &spec.auth.issuer),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            data.insert(key.to_owned(), value.clone());
        }
    }
    data
}

/// `<name>-config`, read by both Deployments through `envFrom`.
pub fn desired_config_map(v: &Validated) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(v, config_map_name(v), instance_labels(v)),
        data: Some(config_data(v)),
        ..ConfigMap::default()
    }
}

/// A stable FNV-1a hash of the config, put on pod templates so that a config
/// change rolls the pods (`envFrom` alone would not).
pub fn config_hash(data: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in data {
        for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
