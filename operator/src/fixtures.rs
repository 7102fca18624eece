//! Test fixtures (tests only): resources from minimal YAML, as a user would write them.

use kube::Resource;
use serde_json::Value;

use crate::resource::{ThroughputService, ThroughputServiceStatus};
use crate::validate::{Validated, validate};

/// The smallest spec a user can apply; everything else defaults.
pub const MINIMAL: &str = r#"
apiVersion: throughput.dev/v1alpha1
kind: ThroughputService
metadata:
  name: shop
  namespace: sales
  uid: 7a1e2c9e-0000-4000-8000-000000000001
  generation: 1
spec:
  image: ghcr.io/acme/tps:1.0.0
  nats:
    url: nats://nats.sales:4222
  postgres:
    urlSecretRef: {name: shop-db, key: url}
  redis:
    url: redis://redis.sales:6379
  auth:
    jwtSecretRef: {name: shop-jwt, key: secret}
"#;

/// The finalizer every reconciled resource carries.
pub use crate::reconcile::FINALIZER;

impl ThroughputService {
    /// The minimal resource.
    pub fn test() -> Self {
        serde_yaml::from_str(MINIMAL).expect("minimal fixture parses")
    }

    /// The minimal resource with `patch` (YAML) merged into its spec.
    pub fn with_spec(patch: &str) -> Self {
        let mut value: Value = serde_yaml::from_str(MINIMAL).unwrap();
        let patch: Value = serde_yaml::from_str(patch).expect("patch parses");
        merge(&mut value["spec"], patch);
        serde_json::from_value(value).expect("patched fixture parses")
    }

    /// With the finalizer already in place.
    pub fn finalized(mut self) -> Self {
        self.meta_mut().finalizers = Some(vec![FINALIZER.to_owned()]);
        self
    }

    /// Marked for deletion.
    pub fn deleted(mut self) -> Self {
        let at: k8s_openapi::jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        self.meta_mut().deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
        self
    }

    /// At another generation, as after a spec change.
    pub fn at_generation(mut self, generation: i64) -> Self {
        self.meta_mut().generation = Some(generation);
        self
    }

    /// With a status.
    pub fn with_status(mut self, status: ThroughputServiceStatus) -> Self {
        self.status = Some(status);
        self
    }
}

/// The minimal resource with `patch` merged, validated.
pub fn validated(patch: &str) -> Validated {
    validate(&ThroughputService::with_spec(patch)).expect("fixture is valid")
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}
