//! Dereference (client required): reads the Secrets a resource references, for the
//! pod-template hash (a rotated Secret rolls the pods) and the NATS credentials the
//! operator provisions with. Values never leave this process: only their hash goes on
//! the pods, and the credentials only to NATS.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::build::config_map::config_hash;
use crate::error::Result;
use crate::resource::{SecretKeyRef, ThroughputServiceSpec};

/// What the referenced Secrets hold, as far as the operator needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    /// A hash over every referenced key's value (an absent Secret or key hashes as absent,
    /// so its creation also rolls the pods).
    pub digest: String,
    /// The NATS credentials file, when `nats.credentialsSecretRef` is set and readable.
    pub nats_credentials: Option<String>,
}

/// The Secret references of a spec, each with a stable label.
pub fn secret_refs(spec: &ThroughputServiceSpec) -> Vec<(&'static str, &SecretKeyRef)> {
    let mut refs = vec![
        ("postgres.urlSecretRef", &spec.postgres.url_secret_ref),
        ("auth.jwtSecretRef", &spec.auth.jwt_secret_ref),
    ];
    if let Some(r) = &spec.redis.url_secret_ref {
        refs.push(("redis.urlSecretRef", r));
    }
    if let Some(r) = &spec.nats.credentials_secret_ref {
        refs.push(("nats.credentialsSecretRef", r));
    }
    refs
}

/// Reads every referenced key in `namespace`.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    spec: &ThroughputServiceSpec,
) -> Result<Referenced> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for (_, r) in secret_refs(spec) {
        if !secrets.contains_key(&r.name) {
            secrets.insert(r.name.clone(), api.get_opt(&r.name).await?);
        }
    }
    Ok(referenced(spec, |r| {
        let data = secrets.get(&r.name)?.as_ref()?.data.as_ref()?;
        data.get(&r.key).map(|v| String::from_utf8_lossy(&v.0).into_owned())
    }))
}

/// What `value_of` (a referenced key's value, `None` when absent) makes of a spec's references.
pub fn referenced(
    spec: &ThroughputServiceSpec,
    value_of: impl Fn(&SecretKeyRef) -> Option<String>,
) -> Referenced {
    let mut values = BTreeMap::new();
    for (label, r) in secret_refs(spec) {
        let value = value_of(r).unwrap_or_else(|| "\u{0}absent".into());
        values.insert(format!("{label} {}/{}", r.name, r.key), value);
    }
    let nats_credentials = spec.nats.credentials_secret_ref.as_ref().and_then(&value_of);
    Referenced { digest: config_hash(&values), nats_credentials }
}

/// Whether `spec` references the Secret `name` (in its own namespace).
pub fn references(spec: &ThroughputServiceSpec, name: &str) -> bool {
    secret_refs(spec).iter().any(|(_, r)| r.name == name)
}
