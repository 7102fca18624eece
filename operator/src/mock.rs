//! A mocked API server and a fake stream provisioner for reconcile tests (tests only).
//!
//! Like kube-rs/controller-rs: the client talks to a `tower-test` mock, and each
//! handler asserts the exact method, URI and body of the next request, then
//! answers as the API server would.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::context::Context;
use crate::resource::ThroughputService;
use crate::streams::{StreamPlan, StreamProvisioner, StreamsError};

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers the requests of one scenario, in order.
pub struct ApiServerVerifier(ApiServerHandle);

/// The instant the test clock always shows.
pub const NOW: &str = "2026-01-01T00:00:00Z";

/// The fixed clock of the test context.
pub fn test_clock() -> Time {
    Time(NOW.parse().unwrap())
}

/// Records stream calls and answers with a preset result.
#[derive(Default)]
pub struct FakeStreams {
    /// `ensure <url> <shards>` or `delete <url>`, in call order.
    pub calls: Mutex<Vec<String>>,
    /// The error every call returns, if any.
    pub failure: Option<StreamsError>,
}

impl StreamProvisioner for FakeStreams {
    fn ensure<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>> {
        self.calls.lock().unwrap().push(format!("ensure {} {}", plan.nats_url, plan.shards));
        Box::pin(futures::future::ready(self.failure.clone().map_or(Ok(()), Err)))
    }

    fn delete<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>> {
        self.calls.lock().unwrap().push(format!("delete {}", plan.nats_url));
        Box::pin(futures::future::ready(self.failure.clone().map_or(Ok(()), Err)))
    }
}

impl Context {
    /// A context on the mock API server, with fake streams and the fixed clock.
    pub fn test(streams: FakeStreams) -> (Arc<Self>, ApiServerVerifier, Arc<FakeStreams>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let streams = Arc::new(streams);
        let mut ctx = Context::new(client, "tps-operator-test".into(), streams.clone());
        ctx.clock = test_clock;
        (Arc::new(ctx), ApiServerVerifier(handle), streams)
    }
}

/// Waits for a scenario to finish, failing on a missing request.
pub async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded")
}

/// The SSA query string of the operator's field manager.
pub const APPLY_QUERY: &str = "?&force=true&fieldManager=tps-operator";

impl ApiServerVerifier {
    /// Takes the next request, asserting its method and URI; returns its JSON body.
    pub async fn expect(
        &mut self,
        method: Method,
        uri: &str,
    ) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, send) = self.0.next_request().await.expect("service not called");
        assert_eq!((request.method(), request.uri().to_string().as_str()), (&method, uri));
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json body") };
        (body, send)
    }

    /// A server-side apply of exactly `expected` at `path`, answered with `expected` merged with
    /// `extra`, after a read that finds nothing there (nothing to refuse to adopt).
    pub async fn apply(&mut self, path: &str, expected: &Value, extra: Value) {
        self.absent(path).await;
        let (body, send) = self.expect(Method::PATCH, &format!("{path}{APPLY_QUERY}")).await;
        assert_eq!(&body, expected, "apply body of {path}");
        let mut answer = body;
        merge(&mut answer, extra);
        send.send_response(json_response(200, &answer));
    }

    /// A read of `path`, answered 404.
    pub async fn absent(&mut self, path: &str) {
        let (_, send) = self.expect(Method::GET, path).await;
        let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found", "reason": "NotFound", "code": 404 });
        send.send_response(json_response(404, &status));
    }

    /// A list at `uri`, answered with `items`.
    pub async fn list(&mut self, uri: &str, items: Vec<Value>) {
        let (_, send) = self.expect(Method::GET, uri).await;
        send.send_response(json_response(
            200,
            &json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": items }),
        ));
    }

    /// A delete at `uri`.
    pub async fn delete(&mut self, uri: &str) {
        let (_, send) = self.expect(Method::DELETE, uri).await;
        send.send_response(json_response(
            200,
            &json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }),
        ));
    }

    /// An event of `reason` and type about the fixture resource.
    pub async fn event(&mut self, type_: &str, reason: &str) {
        let (body, send) = self.expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/sales/events?").await;
        assert_eq!((body["type"].as_str(), body["reason"].as_str()), (Some(type_), Some(reason)), "{body}");
        assert_eq!(body["regarding"]["name"], "shop");
        assert_eq!(body["reportingController"], "tps-operator-test");
        send.send_response(json_response(201, &body));
    }

    /// A status apply whose status is exactly `expected`.
    pub async fn status(&mut self, tps: &ThroughputService, expected: Value) {
        let path = format!(
            "/apis/throughput.dev/v1alpha1/namespaces/sales/throughputservices/{}/status",
            tps.name_any()
        );
        let (body, send) = self.expect(Method::PATCH, &format!("{path}{APPLY_QUERY}")).await;
        assert_eq!(body["apiVersion"], "throughput.dev/v1alpha1");
        assert_eq!(body["kind"], "ThroughputService");
        assert_eq!(body["status"], expected, "status");
        let mut answer = serde_json::to_value(tps).unwrap();
        answer["status"] = body["status"].clone();
        send.send_response(json_response(200, &answer));
    }

    /// A JSON patch on the resource's finalizers, answered with `answer`.
    pub async fn finalizer_patch(&mut self, expected: Value, answer: &ThroughputService) {
        let uri = "/apis/throughput.dev/v1alpha1/namespaces/sales/throughputservices/shop?";
        let (body, send) = self.expect(Method::PATCH, uri).await;
        assert_eq!(body, expected, "finalizer patch");
        send.send_response(json_response(200, &serde_json::to_value(answer).unwrap()));
    }

    /// A request answered with an API error.
    pub async fn fail(&mut self, method: Method, uri: &str, code: u16) {
        let (_, send) = self.expect(method, uri).await;
        let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "boom", "reason": "InternalError", "code": code });
        send.send_response(json_response(code, &status));
    }
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

/// Deep-merges `patch` into `target`.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (_, Value::Null) => {}
        (target, patch) => *target = patch,
    }
}
