//! Reconcile scenarios against the mocked API server (tests only): each one
//! lists the exact requests a reconcile must make, in order.

mod tests;

use serde_json::{Value, json};

use crate::build::Desired;
use crate::fixtures::FINALIZER;
use crate::mock::{ApiServerVerifier, NOW};
use crate::resource::ThroughputService;

/// What the mocked API server expects and answers.
pub enum Scenario {
    /// A resource without the finalizer only gets the finalizer.
    FinalizerCreation(ThroughputService),
    /// A valid resource: optional kinds listed and pruned, every child applied,
    /// then events and the status.
    Apply(Box<ApplyScenario>),
    /// A refused spec: an event and the status, nothing applied.
    InvalidSpec { tps: ThroughputService, status: Value },
    /// A deleted resource: one event, then the finalizer goes.
    Cleanup { tps: ThroughputService, reason: &'static str },
    /// The first request (the read of a referenced Secret) fails with a 500.
    ApiError,
    /// The ConfigMap's name is taken by an object this resource does not control:
    /// nothing is applied over it; the status and an event say why.
    ForeignConfigMap { tps: ThroughputService, status: Value },
}

/// The requests of a valid reconcile.
pub struct ApplyScenario {
    /// The resource being reconciled.
    pub tps: ThroughputService,
    /// What must be applied, in this shape exactly.
    pub desired: Desired,
    /// Merged into the api and worker Deployment answers (status, replicas set by the HPA).
    pub deployments: [Value; 2],
    /// HPAs, Ingresses and ScaledObjects the lists return.
    pub existing: [Vec<Value>; 3],
    /// URIs that must be deleted as no longer desired.
    pub deletes: Vec<String>,
    /// `(type, reason)` of the expected events.
    pub events: Vec<(&'static str, &'static str)>,
    /// The expected status, or `None` when it must not be written.
    pub status: Option<Value>,
}

const NS: &str = "/namespaces/sales";
const SELECTOR: &str =
    "?&labelSelector=app.kubernetes.io%2Finstance%3Dshop%2Capp.kubernetes.io%2Fmanaged-by%3Dtps-operator";

impl ApiServerVerifier {
    /// Runs one scenario on a task; await it with `timeout_after_1s`.
    pub fn run(mut self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            match scenario {
                Scenario::FinalizerCreation(tps) => {
                    let patch = json!([
                        { "op": "test", "path": "/metadata/finalizers", "value": null },
                        { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
                    ]);
                    self.finalizer_patch(patch, &tps.finalized()).await;
                }
                Scenario::Apply(s) => self.handle_apply(*s).await,
                Scenario::InvalidSpec { tps, status } => {
                    self.event("Warning", "InvalidSpec").await;
                    self.status(&tps, status).await;
                }
                Scenario::Cleanup { tps, reason } => {
                    if reason == "StreamsDeleted" {
                        self.secrets_absent().await;
                    }
                    self.event("Normal", reason).await;
                    let patch = json!([
                        { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
                        { "op": "remove", "path": "/metadata/finalizers/0" }
                    ]);
                    self.finalizer_patch(patch, &tps).await;
                }
                Scenario::ApiError => {
                    self.fail(http::Method::GET, &format!("/api/v1{NS}/secrets/shop-db"), 500).await;
                }
                Scenario::ForeignConfigMap { tps, status } => {
                    self.secrets_absent().await;
                    for base in [
                        "/apis/autoscaling/v2{NS}/horizontalpodautoscalers",
                        "/apis/networking.k8s.io/v1{NS}/ingresses",
                        "/apis/keda.sh/v1alpha1{NS}/scaledobjects",
                        "/apis/monitoring.coreos.com/v1{NS}/podmonitors",
                    ] {
                        self.list(&format!("{}{SELECTOR}", base.replace("{NS}", NS)), vec![]).await;
                    }
                    let (_, send) =
                        self.expect(http::Method::GET, &format!("/api/v1{NS}/configmaps/shop-config")).await;
                    let foreign = json!({ "apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": { "name": "shop-config", "namespace": "sales" }, "data": { "mine": "yes" } });
                    send.send_response(
                        http::Response::builder()
                            .status(200)
                            .body(kube::client::Body::from(foreign.to_string().into_bytes()))
                            .unwrap(),
                    );
                    self.event("Warning", "AdoptionRefused").await;
                    self.status(&tps, status).await;
                }
            }
        })
    }

    /// The reads of the fixture's two referenced Secrets, neither of which exists.
    async fn secrets_absent(&mut self) {
        self.secrets_of_absent(&ThroughputService::test()).await;
    }

    /// The reads of every Secret `tps` references, none of which exists.
    async fn secrets_of_absent(&mut self, tps: &ThroughputService) {
        let mut read = std::collections::BTreeSet::new();
        for (_, r) in crate::dereference::secret_refs(&tps.spec) {
            if read.insert(r.name.clone()) {
                self.absent(&format!("/api/v1{NS}/secrets/{}", r.name)).await;
            }
        }
    }

    async fn handle_apply(&mut self, s: ApplyScenario) {
        self.secrets_of_absent(&s.tps).await;
        let d = &s.desired;
        let [hpas, ingresses, scaled] = s.existing;
        let lists = [
            (format!("/apis/autoscaling/v2{NS}/horizontalpodautoscalers"), hpas),
            (format!("/apis/networking.k8s.io/v1{NS}/ingresses"), ingresses),
            (format!("/apis/keda.sh/v1alpha1{NS}/scaledobjects"), scaled),
            (format!("/apis/monitoring.coreos.com/v1{NS}/podmonitors"), vec![]),
        ];
        let mut deletes = s.deletes.into_iter().peekable();
        for (base, items) in lists {
            self.list(&format!("{base}{SELECTOR}"), items).await;
            while let Some(uri) = deletes.next_if(|uri| uri.starts_with(&base)) {
                self.delete(&uri).await;
            }
        }
        assert!(deletes.next().is_none(), "every expected delete happened in list order");
        let [api_extra, worker_extra] = s.deployments;
        self.apply(&format!("/api/v1{NS}/configmaps/shop-config"), &to_json(&d.config_map), json!({})).await;
        self.apply(&format!("/api/v1{NS}/serviceaccounts/shop"), &to_json(&d.service_account), json!({}))
            .await;
        for (workload, name, extra) in
            [(&d.api, "shop-api", api_extra), (&d.worker, "shop-worker", worker_extra)]
        {
            self.apply(
                &format!("/apis/apps/v1{NS}/deployments/{name}"),
                &to_json(&workload.deployment),
                extra,
            )
            .await;
            self.apply(&format!("/api/v1{NS}/services/{name}"), &to_json(&workload.service), json!({})).await;
            if let Some(hpa) = &workload.hpa {
                self.apply(
                    &format!("/apis/autoscaling/v2{NS}/horizontalpodautoscalers/{name}"),
                    &to_json(hpa),
                    json!({}),
                )
                .await;
            }
            self.apply(
                &format!("/apis/policy/v1{NS}/poddisruptionbudgets/{name}"),
                &to_json(&workload.pdb),
                json!({}),
            )
            .await;
            let np = to_json(&workload.network_policy);
            self.apply(&format!("/apis/networking.k8s.io/v1{NS}/networkpolicies/{name}"), &np, json!({}))
                .await;
        }
        if let Some(so) = &d.scaled_object {
            self.apply(
                &format!("/apis/keda.sh/v1alpha1{NS}/scaledobjects/shop-worker"),
                &to_json(so),
                json!({}),
            )
            .await;
        }
        if let Some(ingress) = &d.ingress {
            self.apply(
                &format!("/apis/networking.k8s.io/v1{NS}/ingresses/shop-api"),
                &to_json(ingress),
                json!({}),
            )
            .await;
        }
        if let Some(monitor) = &d.pod_monitor {
            let path = format!("/apis/monitoring.coreos.com/v1{NS}/podmonitors/shop");
            self.apply(&path, &to_json(monitor), json!({})).await;
        }
        for (type_, reason) in s.events {
            self.event(type_, reason).await;
        }
        if let Some(status) = s.status {
            self.status(&s.tps, status).await;
        }
    }
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

/// A status condition as the operator writes it, changed at the test clock.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({ "type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": NOW })
}

/// A child object of the fixture resource, as a list would return it.
pub fn owned_child(kind: &str, api_version: &str, name: &str) -> Value {
    let tps = ThroughputService::test();
    json!({ "apiVersion": api_version, "kind": kind,
            "metadata": { "name": name, "namespace": "sales",
                          "ownerReferences": [{ "apiVersion": "throughput.dev/v1alpha1", "kind": "ThroughputService",
                                                "name": "shop", "uid": tps.metadata.uid, "controller": true }] } })
}
