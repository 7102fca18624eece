//! The controller loop: watches ThroughputServices and the Deployments they own,
//! and refuses to start when the CRD is not installed.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};

use crate::build::labels::MANAGED_BY;
use crate::context::Context;
use crate::dereference::references;
use crate::reconcile::{error_policy, reconcile};
use crate::resource::ThroughputService;

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The CRD is not installed, so there is nothing to watch.
    #[error(
        "the CRD {0} is not installed; install it with `kubectl apply -f crds/throughputservices.throughput.dev.yaml` \
         (or `cargo run -p tps-operator --bin crdgen | kubectl apply -f -`)"
    )]
    CrdMissing(String),
    /// The API server could not be asked.
    #[error("cannot list ThroughputServices: {0}")]
    Kube(#[from] kube::Error),
}

/// The ThroughputService API of one namespace, or of all of them.
pub fn scoped_api(client: Client, namespace: Option<&str>) -> Api<ThroughputService> {
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Fails with a clear message when the CRD is missing.
pub async fn ensure_crd_installed(api: &Api<ThroughputService>) -> Result<(), StartError> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            Err(StartError::CrdMissing(ThroughputService::crd_name().into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let api = scoped_api(client.clone(), namespace.as_deref());
    let (reader, writer) = reflector::store();
    // Only spec changes (generation) and finalizer changes start a reconcile of
    // the resource itself: our own status writes never do, so no loop.
    let resources = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default());
    let owned = || watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let ns = namespace.as_deref();
    // Every owned kind is watched: a child edited or deleted by hand is put back at once,
    // and Deployment readiness changes flow into the status. (The ScaledObject is not
    // watched: its CRD exists only where KEDA is installed.)
    // Secrets are watched by metadata only (no values cached): a change to one that a
    // resource references re-reconciles it, and the new hash on the pod templates rolls them.
    let secrets = watcher(children::<PartialObjectMeta<Secret>>(&client, ns), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let store = reader.clone();
    Controller::for_stream(resources, reader)
        .watches_stream(secrets, move |secret| referencing(&store, &secret))
        .owns(children::<Deployment>(&client, ns), owned())
        .owns(children::<ConfigMap>(&client, ns), owned())
        .owns(children::<Service>(&client, ns), owned())
        .owns(children::<ServiceAccount>(&client, ns), owned())
        .owns(children::<HorizontalPodAutoscaler>(&client, ns), owned())
        .owns(children::<PodDisruptionBudget>(&client, ns), owned())
        .owns(children::<NetworkPolicy>(&client, ns), owned())
        .owns(children::<Ingress>(&client, ns), owned())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile attempt failed");
            }
        })
        .await;
}

/// The resources that reference a Secret (in its namespace).
fn referencing(
    store: &Store<ThroughputService>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ThroughputService>> {
    let (name, namespace) = (secret.name_any(), secret.namespace());
    store
        .state()
        .iter()
        .filter(|tps| tps.namespace() == namespace && references(&tps.spec, &name))
        .map(|tps| ObjectRef::from_obj(tps.as_ref()))
        .collect()
}

/// The API of one owned kind, in one namespace or in all of them.
fn children<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    #[test]
    fn a_secret_change_reconciles_only_the_resources_that_reference_it() {
        let (store, mut writer) = reflector::store::<ThroughputService>();
        let mut other =
            ThroughputService::with_spec("{redis: {url: null, urlSecretRef: {name: shop-redis, key: url}}}");
        other.metadata.name = Some("other".into());
        let mut elsewhere = ThroughputService::test();
        elsewhere.metadata.namespace = Some("billing".into());
        for tps in [ThroughputService::test(), other, elsewhere] {
            writer.apply_watcher_event(&watcher::Event::Apply(tps));
        }
        let secret = |namespace: &str, name: &str| {
            let mut meta = PartialObjectMeta::<Secret>::default();
            meta.metadata.namespace = Some(namespace.into());
            meta.metadata.name = Some(name.into());
            meta
        };
        let names = |s| {
            referencing(&store, &s).into_iter().map(|r| r.name).collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(names(secret("sales", "shop-jwt")), ["other", "shop"].map(String::from).into());
        assert_eq!(names(secret("sales", "shop-redis")), ["other".to_owned()].into());
        assert!(names(secret("sales", "unrelated")).is_empty());
        assert_eq!(names(secret("billing", "shop-redis")), Default::default());
    }

    #[tokio::test]
    async fn a_missing_crd_is_refused_with_the_command_to_install_it() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = scoped_api(Client::new(service, "default"), None);
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("listed");
            assert_eq!(
                request.uri().to_string(),
                "/apis/throughput.dev/v1alpha1/throughputservices?&limit=1"
            );
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"404 page not found"}"#;
            send.send_response(
                Response::builder().status(404).body(Body::from(body.as_bytes().to_vec())).unwrap(),
            );
        });
        let err = ensure_crd_installed(&api).await.expect_err("missing CRD");
        assert!(matches!(err, StartError::CrdMissing(_)));
        let message = err.to_string();
        assert!(message.contains("throughputservices.throughput.dev is not installed"), "{message}");
        assert!(message.contains("kubectl apply -f crds/"), "{message}");
        tokio::time::timeout(std::time::Duration::from_secs(1), server).await.unwrap().unwrap();
    }
}
