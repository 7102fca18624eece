//! One test per scenario, each under a timeout.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{ApplyScenario, Scenario, condition, owned_child};
use crate::Context;
use crate::build::desired;
use crate::dereference::referenced;
use crate::error::Error;
use crate::fixtures::validated;
use crate::mock::{FakeStreams, timeout_after_1s};
use crate::reconcile::{RESYNC, error_policy, reconcile};
use crate::resource::{ThroughputService, ThroughputServiceStatus};
use crate::validate::Validated;

/// The status of a reconcile where nothing is ready yet but the streams are.
fn starting_status(shards: i64) -> Value {
    json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Ready", "False", "NoReadyPods", "no pod is ready yet"),
            condition("ApiAvailable", "False", "NoReadyPods", "no pod is ready yet"),
            condition("WorkerAvailable", "False", "NoReadyPods", "no pod is ready yet"),
            condition("StreamsReady", "True", "StreamsProvisioned", "ORDERS, USERS and DEAD_LETTERS are provisioned"),
            condition("Degraded", "False", "AsExpected", ""),
            condition("Progressing", "False", "Settled", "every pod is updated and ready"),
        ],
        "api": { "replicas": 0, "readyReplicas": 0 },
        "worker": { "replicas": 0, "readyReplicas": 0 },
        "shards": shards,
    })
}

/// As the reconcile sees it: the digest of the referenced Secrets (none exists here).
fn with_absent_secrets(mut v: Validated) -> Validated {
    v.secrets_digest = Some(referenced(&v.spec, |_| None).digest);
    v
}

fn apply_scenario(tps: &ThroughputService, patch: &str) -> ApplyScenario {
    ApplyScenario {
        tps: tps.clone(),
        desired: desired(&with_absent_secrets(validated(patch))),
        deployments: [json!({}), json!({})],
        existing: [vec![], vec![], vec![]],
        deletes: vec![],
        events: vec![("Normal", "StreamsProvisioned")],
        status: Some(starting_status(16)),
    }
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let tps = ThroughputService::test();
    let mocksrv = server.run(Scenario::FinalizerCreation(tps.clone()));
    let action = reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    assert_eq!(action, Action::await_change());
    assert!(streams.calls.lock().unwrap().is_empty(), "nothing provisioned before the finalizer is in place");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn first_apply_provisions_streams_and_applies_every_child() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let tps = ThroughputService::with_spec("{api: {ingress: {host: shop.example.com}}}").finalized();
    let scenario = apply_scenario(&tps, "{api: {ingress: {host: shop.example.com}}}");
    let mocksrv = server.run(Scenario::Apply(Box::new(scenario)));
    let action = reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    assert_eq!(action, Action::requeue(RESYNC));
    assert_eq!(*streams.calls.lock().unwrap(), ["ensure nats://nats.sales:4222 16"]);
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn spec_change_to_keda_applies_a_scaled_object_and_prunes_the_worker_hpa() {
    let (ctx, server, _) = Context::test(FakeStreams::default());
    let patch = "{worker: {autoscaling: keda}, nats: {monitoringEndpoint: 'nats.sales:8222'}}";
    let old = serde_json::from_value::<ThroughputServiceStatus>(starting_status(16)).unwrap();
    let tps = ThroughputService::with_spec(patch).finalized().at_generation(2).with_status(old);
    let mut scenario = apply_scenario(&tps, patch);
    let hpa = |name| owned_child("HorizontalPodAutoscaler", "autoscaling/v2", name);
    scenario.existing[0] = vec![hpa("shop-api"), hpa("shop-worker")];
    scenario.existing[2] = vec![owned_child("ScaledObject", "keda.sh/v1alpha1", "shop-worker")];
    scenario.deletes =
        vec!["/apis/autoscaling/v2/namespaces/sales/horizontalpodautoscalers/shop-worker?".into()];
    scenario.events = vec![];
    let mut status = starting_status(16);
    status["observedGeneration"] = json!(2);
    for c in status["conditions"].as_array_mut().unwrap() {
        c["observedGeneration"] = json!(2);
    }
    scenario.status = Some(status);
    let mocksrv = server.run(Scenario::Apply(Box::new(scenario)));
    reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn an_hpa_owned_replica_count_is_never_written() {
    let (ctx, server, _) = Context::test(FakeStreams::default());
    let tps = ThroughputService::test().finalized();
    let mut scenario = apply_scenario(&tps, "{}");
    // The HPA scaled both Deployments to 7; the apply bodies (asserted exactly,
    // from the builders) carry no replicas, so the HPA's value stands.
    for (i, name) in ["shop-api", "shop-worker"].into_iter().enumerate() {
        scenario.existing[0].push(owned_child("HorizontalPodAutoscaler", "autoscaling/v2", name));
        scenario.deployments[i] =
            json!({ "spec": { "replicas": 7 }, "status": { "replicas": 7, "readyReplicas": 0 } });
        assert!(scenario.desired.api.deployment.spec.replicas.is_none());
        assert!(
            serde_json::to_value(&scenario.desired.worker.deployment).unwrap()["spec"]
                .get("replicas")
                .is_none()
        );
    }
    let mut status = starting_status(16);
    status["api"]["replicas"] = json!(7);
    status["worker"]["replicas"] = json!(7);
    // Pods still starting are a rollout in progress, not a degradation.
    let rolling = "api: 0 ready, 0 updated of 7; worker: 0 ready, 0 updated of 7";
    status["conditions"][5] = condition("Progressing", "True", "RollingOut", rolling);
    scenario.status = Some(status);
    let mocksrv = server.run(Scenario::Apply(Box::new(scenario)));
    reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn status_update_moves_only_the_conditions_that_changed() {
    let (ctx, server, _) = Context::test(FakeStreams::default());
    // The old status: streams ready since an earlier time, pods not ready yet.
    let mut old = starting_status(16);
    old["conditions"][3]["lastTransitionTime"] = json!("2025-12-31T00:00:00Z");
    old["conditions"][4]["lastTransitionTime"] = json!("2025-12-31T00:00:00Z");
    old["conditions"][5]["lastTransitionTime"] = json!("2025-12-31T00:00:00Z");
    for c in old["conditions"].as_array_mut().unwrap().iter_mut().take(3) {
        c["lastTransitionTime"] = json!("2025-12-31T00:00:00Z");
    }
    let tps = ThroughputService::test().finalized().with_status(serde_json::from_value(old.clone()).unwrap());
    let mut scenario = apply_scenario(&tps, "{}");
    let ready = json!({ "status": { "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2 } });
    scenario.deployments = [ready.clone(), ready];
    scenario.events = vec![("Normal", "Ready")];
    let mut status = old;
    status["api"] = json!({ "replicas": 2, "readyReplicas": 2 });
    status["worker"] = json!({ "replicas": 2, "readyReplicas": 2 });
    status["conditions"][0] = condition("Ready", "True", "AllAvailable", "");
    status["conditions"][1] =
        condition("ApiAvailable", "True", "MinimumAvailable", "2 of 2 pods ready (minimum 2)");
    status["conditions"][2] =
        condition("WorkerAvailable", "True", "MinimumAvailable", "2 of 2 pods ready (minimum 1)");
    scenario.status = Some(status.clone());
    let mocksrv = server.run(Scenario::Apply(Box::new(scenario)));
    reconcile(Arc::new(tps.clone()), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;

    // The same observation again: no event, no status write (no reconcile loop).
    let (ctx, server, _) = Context::test(FakeStreams::default());
    let tps = tps.with_status(serde_json::from_value(status).unwrap());
    let mut again = apply_scenario(&tps, "{}");
    let ready = json!({ "status": { "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2 } });
    again.deployments = [ready.clone(), ready];
    again.events = vec![];
    again.status = None;
    let mocksrv = server.run(Scenario::Apply(Box::new(again)));
    reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn invalid_spec_reports_and_waits_for_a_change() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let tps = ThroughputService::with_spec("{api: {minReplicas: 5, maxReplicas: 2}}").finalized();
    let message = "api.minReplicas must be at least 1 and not exceed api.maxReplicas";
    let status = json!({
        "observedGeneration": 1,
        "conditions": [condition("Ready", "False", "InvalidSpec", message), condition("Degraded", "True", "InvalidSpec", message)],
        "api": { "replicas": 0, "readyReplicas": 0 },
        "worker": { "replicas": 0, "readyReplicas": 0 },
    });
    let mocksrv = server.run(Scenario::InvalidSpec { tps: tps.clone(), status });
    let tps = Arc::new(tps);
    let err = reconcile(tps.clone(), ctx.clone()).await.expect_err("invalid spec");
    assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    assert_eq!(error_policy(tps, &err, ctx), Action::await_change());
    assert!(streams.calls.lock().unwrap().is_empty());
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn a_child_name_taken_by_a_foreign_object_is_refused_not_adopted() {
    let (ctx, server, _) = Context::test(FakeStreams::default());
    let tps = Arc::new(ThroughputService::test().finalized());
    let message = "ConfigMap shop-config exists and is not controlled by this ThroughputService; it was left untouched (delete or rename it)";
    let status = json!({
        "observedGeneration": 1,
        "conditions": [condition("Ready", "False", "AdoptionRefused", message), condition("Degraded", "True", "AdoptionRefused", message)],
        "api": { "replicas": 0, "readyReplicas": 0 },
        "worker": { "replicas": 0, "readyReplicas": 0 },
    });
    // The read of the ConfigMap finds a stranger: no apply follows (the mock would fail on one).
    let mocksrv = server.run(Scenario::ForeignConfigMap { tps: (*tps).clone(), status });
    let err = reconcile(tps.clone(), ctx.clone()).await.expect_err("refused");
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(err.is_transient(), "retried with backoff, until the stranger is gone");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn a_missing_nats_credentials_secret_is_named_and_nats_is_not_dialled() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let patch = "{nats: {credentialsSecretRef: {name: shop-nats, key: creds}}}";
    let tps = ThroughputService::with_spec(patch).finalized();
    let mut scenario = apply_scenario(&tps, patch);
    let message = "cannot reach NATS at nats://nats.sales:4222: nats.credentialsSecretRef: Secret shop-nats has no key creds";
    let mut status = starting_status(16);
    status["conditions"][3] = condition("StreamsReady", "False", "ProvisioningFailed", message);
    status["conditions"][4] = condition("Degraded", "True", "StreamsNotReady", "commands cannot be stored");
    scenario.status = Some(status);
    scenario.events = vec![("Warning", "StreamsFailed")];
    let mocksrv = server.run(Scenario::Apply(Box::new(scenario)));
    let action = reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    assert_eq!(action, Action::requeue(crate::reconcile::STREAMS_RETRY));
    assert!(streams.calls.lock().unwrap().is_empty(), "no provisioning without the credentials");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_streams() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let tps = ThroughputService::test().finalized().deleted();
    let mocksrv = server.run(Scenario::Cleanup { tps: tps.clone(), reason: "StreamsRetained" });
    reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    assert!(streams.calls.lock().unwrap().is_empty(), "Retain never touches NATS");
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn deletion_with_delete_removes_the_streams() {
    let (ctx, server, streams) = Context::test(FakeStreams::default());
    let tps = ThroughputService::with_spec("{deletionPolicy: Delete}").finalized().deleted();
    let mocksrv = server.run(Scenario::Cleanup { tps: tps.clone(), reason: "StreamsDeleted" });
    reconcile(Arc::new(tps), ctx).await.expect("reconciler");
    assert_eq!(*streams.calls.lock().unwrap(), ["delete nats://nats.sales:4222"]);
    timeout_after_1s(mocksrv).await;
}

#[tokio::test]
async fn api_error_requeues_with_growing_backoff() {
    let (ctx, server, _) = Context::test(FakeStreams::default());
    let tps = Arc::new(ThroughputService::test().finalized());
    let mocksrv = server.run(Scenario::ApiError);
    let err = reconcile(tps.clone(), ctx.clone()).await.expect_err("api error");
    assert!(matches!(err, Error::Kube(_)), "{err}");
    assert_eq!(error_policy(tps.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(5)));
    assert_eq!(error_policy(tps, &err, ctx), Action::requeue(Duration::from_secs(10)));
    timeout_after_1s(mocksrv).await;
}
