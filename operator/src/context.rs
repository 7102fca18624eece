//! What every reconcile shares: the client, the one Recorder, the stream
//! provisioner, the clock and the per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::streams::StreamProvisioner;

/// The field manager of every server-side apply, children and status alike.
pub const FIELD_MANAGER: &str = "tps-operator";

/// State shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The one event Recorder of the process.
    pub recorder: Recorder,
    /// JetStream provisioning (a fake in tests).
    pub streams: Arc<dyn StreamProvisioner>,
    /// Source of `lastTransitionTime`s (fixed in tests).
    pub clock: fn() -> Time,
    /// Consecutive failures per object, for exponential backoff.
    pub backoff: Backoff,
}

impl Context {
    /// A context on a client, publishing events as `reporter`.
    pub fn new(client: Client, reporter: Reporter, streams: Arc<dyn StreamProvisioner>) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            streams,
            clock: || Time(k8s_openapi::jiff::Timestamp::now()),
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff per object: 5 s, 10 s, 20 s… up to 5 minutes.
#[derive(Debug, Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// First delay.
    pub const BASE: Duration = Duration::from_secs(5);
    /// Longest delay.
    pub const MAX: Duration = Duration::from_secs(300);

    /// The delay before the next retry of `key`, counting this failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.0.lock().expect("backoff lock");
        let n = failures.entry(key.to_owned()).or_insert(0);
        let delay = Self::BASE.saturating_mul(2u32.saturating_pow(*n)).min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.0.lock().expect("backoff lock").remove(key);
    }
}
