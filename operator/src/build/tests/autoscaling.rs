//! HPAs and the KEDA ScaledObject: exactly one autoscaler per workload.

use super::build;

#[test]
fn default_autoscaling_is_an_hpa_for_each_workload() {
    let d = build("{}");
    let api = d.api.hpa.as_ref().unwrap().spec.clone();
    assert_eq!((api.min_replicas, api.max_replicas), (Some(2), 10));
    assert_eq!(api.scale_target_ref.name, "shop-api");
    assert_eq!(api.scale_target_ref.kind, "Deployment");
    let cpu = api.metrics.unwrap()[0].resource.clone().unwrap();
    assert_eq!((cpu.name.as_str(), cpu.target.average_utilization), ("cpu", Some(70)));
    let worker = d.worker.hpa.as_ref().unwrap().spec.clone();
    assert_eq!((worker.min_replicas, worker.max_replicas), (Some(1), 16));
    assert_eq!(worker.scale_target_ref.name, "shop-worker");
    assert!(d.scaled_object.is_none());
}

#[test]
fn hpa_fields_come_from_the_spec() {
    let d = build(
        r#"
        api: {minReplicas: 3, maxReplicas: 30, targetCPUUtilizationPercentage: 55}
        worker: {minReplicas: 2, maxReplicas: 8, targetCPUUtilizationPercentage: 80}
        "#,
    );
    let api = d.api.hpa.unwrap().spec;
    assert_eq!((api.min_replicas, api.max_replicas), (Some(3), 30));
    assert_eq!(api.metrics.unwrap()[0].resource.as_ref().unwrap().target.average_utilization, Some(55));
    let worker = d.worker.hpa.unwrap().spec;
    assert_eq!((worker.min_replicas, worker.max_replicas), (Some(2), 8));
    assert_eq!(worker.metrics.unwrap()[0].resource.as_ref().unwrap().target.average_utilization, Some(80));
}

#[test]
fn keda_replaces_the_worker_hpa_and_never_both() {
    let d = build(
        r#"
        worker: {autoscaling: keda, minReplicas: 2, maxReplicas: 4, shards: 4, lagThreshold: 500}
        nats: {monitoringEndpoint: 'nats.sales:8222'}
        "#,
    );
    assert!(d.worker.hpa.is_none(), "no worker HPA next to a ScaledObject");
    assert!(d.api.hpa.is_some(), "the api keeps its HPA");
    let so = d.scaled_object.unwrap();
    assert_eq!(so.types.as_ref().unwrap().api_version, "keda.sh/v1alpha1");
    assert_eq!(so.types.as_ref().unwrap().kind, "ScaledObject");
    assert_eq!(so.metadata.name.as_deref(), Some("shop-worker"));
    let spec = &so.data["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], "shop-worker");
    assert_eq!((spec["minReplicaCount"].as_i64(), spec["maxReplicaCount"].as_i64()), (Some(2), Some(4)));
    let triggers = spec["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 8, "one per shard consumer of ORDERS and USERS");
    let first = &triggers[0]["metadata"];
    assert_eq!(triggers[0]["type"], "nats-jetstream");
    assert_eq!(first["natsServerMonitoringEndpoint"], "nats.sales:8222");
    assert_eq!(
        (first["stream"].as_str(), first["consumer"].as_str()),
        (Some("sales_shop_ORDERS"), Some("sales_shop_orders-0"))
    );
    assert_eq!(first["lagThreshold"], "500");
    assert_eq!((first["account"].as_str(), first["useHttps"].as_str()), (Some("$G"), Some("false")));
    assert_eq!(triggers[7]["metadata"]["consumer"], "sales_shop_users-3");
}

#[test]
fn keda_reads_lag_in_the_streams_account_over_https_when_set() {
    let d = build(
        r#"
        worker: {autoscaling: keda, minReplicas: 1, maxReplicas: 2, shards: 2}
        nats: {monitoringEndpoint: 'nats.sales:8222', account: ACCT_SHOP, monitoringHttps: true}
        "#,
    );
    let spec = &d.scaled_object.unwrap().data["spec"];
    let triggers = spec["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 4);
    for trigger in triggers {
        assert_eq!(trigger["metadata"]["account"], "ACCT_SHOP");
        assert_eq!(trigger["metadata"]["useHttps"], "true");
    }
}
