//! Deployments, the ConfigMap, the ServiceAccount and the environment.

use super::{build, config, container, env};
use crate::build::Component;
use crate::build::labels::MANAGED_BY;
use crate::build::pod::{CONFIG_HASH_ANNOTATION, SECRETS_HASH_ANNOTATION};

#[test]
fn minimal_spec_builds_both_workloads_with_defaults() {
    let d = build("{}");
    assert_eq!(d.api.deployment.metadata.name.as_deref(), Some("shop-api"));
    assert_eq!(d.worker.deployment.metadata.name.as_deref(), Some("shop-worker"));
    assert_eq!(d.config_map.metadata.name.as_deref(), Some("shop-config"));
    assert_eq!(config(&d, "SHARDS"), "16");
    assert_eq!(config(&d, "RUST_LOG"), "info");
    assert_eq!(config(&d, "BATCH_SIZE"), "256");
    assert_eq!(config(&d, "API_LISTEN"), "0.0.0.0:8080");
    assert_eq!(config(&d, "METRICS_LISTEN"), "0.0.0.0:9090");
    let c = container(&d.api.deployment);
    assert_eq!(c.image.as_deref(), Some("ghcr.io/acme/tps:1.0.0"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.command, Some(vec!["api".to_string()]));
    assert_eq!(container(&d.worker.deployment).command, Some(vec!["worker".to_string()]));
    // Default requests, so that a CPU HPA has something to measure against.
    let requests = c.resources.as_ref().unwrap().requests.clone().unwrap();
    assert_eq!((requests["cpu"].0.as_str(), requests["memory"].0.as_str()), ("250m", "128Mi"));
    let worker = container(&d.worker.deployment).resources.clone().unwrap().requests.unwrap();
    assert_eq!((worker["cpu"].0.as_str(), worker["memory"].0.as_str()), ("250m", "256Mi"));
    assert_eq!(c.readiness_probe.as_ref().unwrap().failure_threshold, Some(3));
    let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
}

#[test]
fn deployments_never_set_replicas_because_an_autoscaler_owns_them() {
    for patch in ["{}", "{worker: {autoscaling: keda}, nats: {monitoringEndpoint: 'nats:8222'}}"] {
        let d = build(patch);
        assert_eq!(d.api.deployment.spec.replicas, None);
        assert_eq!(d.worker.deployment.spec.replicas, None);
    }
}

#[test]
fn every_child_is_owned_and_labelled() {
    let d = build("{api: {ingress: {host: shop.example.com}}}");
    let metas = [
        &d.config_map.metadata,
        &d.service_account.metadata,
        &d.api.deployment.metadata,
        &d.api.service.metadata,
        &d.api.hpa.as_ref().unwrap().metadata,
        &d.api.pdb.metadata,
        &d.api.network_policy.metadata,
        &d.worker.deployment.metadata,
        &d.worker.service.metadata,
        &d.worker.hpa.as_ref().unwrap().metadata,
        &d.worker.pdb.metadata,
        &d.worker.network_policy.metadata,
        &d.ingress.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ThroughputService", "shop", Some(true))
        );
        assert_eq!(meta.namespace.as_deref(), Some("sales"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "shop");
        assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGED_BY);
    }
}

#[test]
fn pods_run_hardened_and_probed() {
    let d = build("{}");
    for (deployment, port) in [(&d.api.deployment, "http"), (&d.worker.deployment, "metrics")] {
        let pod = deployment.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("shop"));
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]));
        let live = c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(
            ready.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(port.into())
        );
    }
    assert!(d.service_account.automount_service_account_token == Some(false));
}

#[test]
fn environment_comes_from_the_spec_and_the_secrets() {
    let d = build("{}");
    assert_eq!(config(&d, "NATS_URL"), "nats://nats.sales:4222");
    assert_eq!(config(&d, "REDIS_URL"), "redis://redis.sales:6379");
    for deployment in [&d.api.deployment, &d.worker.deployment] {
        let c = container(deployment);
        let db = env(c, "DATABASE_URL").value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((db.name.as_str(), db.key.as_str()), ("shop-db", "url"));
        let jwt = env(c, "AUTH_JWT_SECRET").value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((jwt.name.as_str(), jwt.key.as_str()), ("shop-jwt", "secret"));
        let from = c.env_from.as_ref().unwrap()[0].config_map_ref.as_ref().unwrap();
        assert_eq!(from.name, "shop-config");
    }
}

#[test]
fn the_config_map_hands_the_binaries_the_operators_streams_and_the_proxies() {
    let d = build("{nats: {streams: {replicas: 3}}, api: {trustedProxies: [10.0.0.0/8, 192.168.1.1]}}");
    assert_eq!(config(&d, "NATS_STREAM_PREFIX"), "sales_shop");
    assert_eq!(config(&d, "NATS_STREAMS_CREATE"), "false", "the pods never create streams with other limits");
    assert_eq!(config(&d, "NATS_REPLICAS"), "3");
    assert_eq!(config(&d, "API_TRUSTED_PROXIES"), "10.0.0.0/8,192.168.1.1");
    assert_eq!(config(&build("{}"), "API_TRUSTED_PROXIES"), "", "nobody's X-Forwarded-For by default");
    assert_eq!(config(&build("{nats: {streams: {prefix: ''}}}"), "NATS_STREAM_PREFIX"), "");
    let auth = build("{auth: {audience: tickets, issuer: 'https://id.example'}}");
    assert_eq!(
        (config(&auth, "AUTH_JWT_AUDIENCE"), config(&auth, "AUTH_JWT_ISSUER")),
        ("tickets".into(), "https://id.example".into())
    );
    let data = build("{}").config_map.data.unwrap();
    assert!(
        !data.contains_key("AUTH_JWT_AUDIENCE") && !data.contains_key("AUTH_JWT_ISSUER"),
        "unset, not empty"
    );
}

#[test]
fn redis_and_nats_secrets_reach_the_pods_without_the_config_map() {
    let d = build(
        "{redis: {url: null, urlSecretRef: {name: shop-redis, key: url}}, nats: {credentialsSecretRef: {name: shop-nats, key: creds}}}",
    );
    assert!(!d.config_map.data.as_ref().unwrap().contains_key("REDIS_URL"), "a secret URL is not copied");
    for deployment in [&d.api.deployment, &d.worker.deployment] {
        let c = container(deployment);
        let redis = env(c, "REDIS_URL").value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((redis.name.as_str(), redis.key.as_str()), ("shop-redis", "url"));
        assert_eq!(
            env(c, "NATS_CREDS").value.as_deref(),
            Some("/var/run/secrets/throughput.dev/nats/nats.creds")
        );
        let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "nats-creds").unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/var/run/secrets/throughput.dev/nats", Some(true))
        );
        let volumes = deployment.spec.template.spec.as_ref().unwrap().volumes.clone().unwrap();
        let secret = volumes.iter().find(|v| v.name == "nats-creds").unwrap().secret.clone().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("shop-nats"));
        assert_eq!(secret.items.unwrap()[0].key, "creds");
    }
}

#[test]
fn a_rotated_secret_rolls_the_pods_through_the_secrets_hash() {
    let spec = crate::fixtures::validated("{}").spec;
    let hash_with = |jwt: &'static str| {
        let mut v = crate::fixtures::validated("{}");
        v.secrets_digest = Some(
            crate::dereference::referenced(&spec, move |r| (r.name == "shop-jwt").then(|| jwt.to_owned()))
                .digest,
        );
        let meta = super::desired(&v).api.deployment.spec.template.metadata.unwrap();
        meta.annotations.unwrap()[SECRETS_HASH_ANNOTATION].clone()
    };
    assert_eq!(hash_with("one"), hash_with("one"));
    assert_ne!(hash_with("one"), hash_with("two"), "a new value, a new hash");
    let absent = crate::dereference::referenced(&spec, |_| None).digest;
    assert_ne!(
        absent,
        crate::dereference::referenced(&spec, |_| Some(String::new())).digest,
        "absent is not empty"
    );
}

#[test]
fn every_plain_field_reaches_the_pods() {
    let d = build(
        r#"
        image: registry.local/tps:2
        imagePullPolicy: Always
        log: debug,async_nats=warn
        worker: {shards: 32, batchSize: 64}
        api: {resources: {requests: {cpu: 250m, memory: 128Mi}}}
        "#,
    );
    assert_eq!(config(&d, "SHARDS"), "32");
    assert_eq!(config(&d, "BATCH_SIZE"), "64");
    assert_eq!(config(&d, "RUST_LOG"), "debug,async_nats=warn");
    let api = container(&d.api.deployment);
    assert_eq!(api.image.as_deref(), Some("registry.local/tps:2"));
    assert_eq!(api.image_pull_policy.as_deref(), Some("Always"));
    let requests = api.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "250m");
    let worker = build("{worker: {resources: {limits: {cpu: '2', memory: 1Gi}}}}");
    let resources = container(&worker.worker.deployment).resources.clone().unwrap();
    assert_eq!(resources.limits.unwrap()["memory"].0, "1Gi");
    // A limit without a request: Kubernetes takes the limit as the request; no default is added.
    assert!(resources.requests.unwrap().is_empty());
}

#[test]
fn a_config_change_rolls_the_pods_through_the_template_hash() {
    let hash = |patch| {
        let d = build(patch);
        let meta = d.worker.deployment.spec.template.metadata.unwrap();
        meta.annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
    };
    assert_eq!(hash("{}"), hash("{}"), "deterministic");
    assert_ne!(hash("{}"), hash("{log: debug}"));
    assert_ne!(hash("{}"), hash("{redis: {url: 'redis://other:6379'}}"));
}

#[test]
fn selectors_separate_the_two_workloads() {
    let d = build("{}");
    let api = d.api.deployment.spec.selector.match_labels.clone().unwrap();
    let worker = d.worker.deployment.spec.selector.match_labels.clone().unwrap();
    assert_eq!(api["app.kubernetes.io/component"], Component::Api.as_str());
    assert_eq!(worker["app.kubernetes.io/component"], "worker");
    assert_eq!(d.api.service.spec.as_ref().unwrap().selector.as_ref(), Some(&api));
    assert_eq!(
        d.worker.pdb.spec.as_ref().unwrap().selector.as_ref().unwrap().match_labels.as_ref(),
        Some(&worker)
    );
}
