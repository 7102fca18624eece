//! What to provision (no client required): the stream and consumer configurations.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use tps_contract::streams::{StreamLimits, named_shard_consumer, named_streams};
use tps_contract::subject::{DEAD_LETTER_STREAM, ORDERS_STREAM, StreamNames, USERS_STREAM};

use kube::ResourceExt;

use crate::resource::{ThroughputService, ThroughputServiceSpec};

/// Stream metadata key holding the UID of the `ThroughputService` that owns the stream.
pub const OWNER_UID_KEY: &str = "throughput.dev/owner-uid";
/// Stream metadata key holding `<namespace>/<name>` of the owner, for people.
pub const OWNER_NAME_KEY: &str = "throughput.dev/owner";

/// The `ThroughputService` a stream belongs to. Its UID is written into the stream's
/// metadata and compared before any update or delete, so that two resources pointed
/// at one NATS never change or delete each other's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOwner {
    /// `metadata.uid` of the resource.
    pub uid: String,
    /// `<namespace>/<name>` of the resource.
    pub name: String,
}

/// The names of the streams, subjects and consumers of a resource (see [`stream_prefix`]).
/// The CRD's pattern admits only prefixes that are one subject token; one that is not (an
/// object admitted by an older CRD) falls back to the contract names, where the owner mark
/// still keeps two resources apart.
pub fn stream_names(spec: &ThroughputServiceSpec, namespace: &str, name: &str) -> StreamNames {
    StreamNames::with_prefix(&stream_prefix(spec, namespace, name)).unwrap_or_default()
}

/// The prefix of the stream, subject and consumer names of a resource: `nats.streams.prefix`
/// when set (empty: the contract names), else `<namespace>_<name>` (`_` cannot occur in
/// either, so no two resources share a prefix).
pub fn stream_prefix(spec: &ThroughputServiceSpec, namespace: &str, name: &str) -> String {
    match &spec.nats.streams.prefix {
        Some(prefix) => prefix.clone(),
        None => format!("{namespace}_{name}"),
    }
}

impl StreamOwner {
    /// The owner mark of a resource.
    pub fn of(tps: &ThroughputService) -> Self {
        Self {
            uid: tps.uid().unwrap_or_default(),
            name: format!("{}/{}", tps.namespace().unwrap_or_default(), tps.name_any()),
        }
    }
}

/// The streams and shard consumers of one `ThroughputService`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    /// Where NATS is.
    pub nats_url: String,
    /// Replicas and limits of every stream.
    pub limits: StreamLimits,
    /// Shards, each with a durable consumer on ORDERS and on USERS.
    pub shards: u32,
    /// Whose streams these are.
    pub owner: StreamOwner,
    /// The names of the streams, subjects and consumers.
    pub names: StreamNames,
    /// The NATS credentials file (`nats.credentialsSecretRef`), if any.
    pub credentials: Option<Credentials>,
}

/// A NATS credentials file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(pub String);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

impl StreamPlan {
    /// The plan of a resource: its spec, its owner mark.
    pub fn of(tps: &ThroughputService) -> Self {
        Self::from_spec(&tps.spec, StreamOwner::of(tps))
    }

    /// The plan of a spec, for the resource `owner`.
    pub fn from_spec(spec: &ThroughputServiceSpec, owner: StreamOwner) -> Self {
        let streams = &spec.nats.streams;
        let (namespace, name) = owner.name.split_once('/').unwrap_or(("", &owner.name));
        let names = stream_names(spec, namespace, name);
        Self {
            names,
            credentials: None,
            owner,
            nats_url: spec.nats.url.clone(),
            limits: StreamLimits {
                replicas: streams.replicas.max(1) as usize,
                max_bytes: streams.max_bytes,
                max_age: Duration::from_secs(streams.max_age_seconds.max(1) as u64),
            },
            shards: spec.worker.shards.max(1) as u32,
        }
    }

    /// The stream names: ORDERS, USERS and DEAD_LETTERS under this plan's prefix.
    pub fn stream_names(&self) -> [String; 3] {
        [ORDERS_STREAM, USERS_STREAM, DEAD_LETTER_STREAM].map(|s| self.names.stream(s))
    }

    /// ORDERS, USERS and DEAD_LETTERS, in that order, each marked with the owner.
    pub fn streams(&self) -> Vec<stream::Config> {
        let metadata = HashMap::from([
            (OWNER_UID_KEY.to_owned(), self.owner.uid.clone()),
            (OWNER_NAME_KEY.to_owned(), self.owner.name.clone()),
        ]);
        named_streams(&self.names, &self.limits)
            .into_iter()
            .map(|config| stream::Config { metadata: metadata.clone(), ..config })
            .collect()
    }

    /// `(stream, consumer)` for every shard of ORDERS, then of USERS.
    pub fn consumers(&self) -> Vec<(String, consumer::pull::Config)> {
        [ORDERS_STREAM, USERS_STREAM]
            .into_iter()
            .flat_map(|stream| {
                (0..self.shards).map(move |shard| {
                    (self.names.stream(stream), named_shard_consumer(&self.names, stream, shard))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::consumer::AckPolicy;
    use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
    use tps_contract::subject::DUPLICATE_WINDOW_SECS;

    use super::*;

    fn owner() -> StreamOwner {
        StreamOwner { uid: "uid-1".into(), name: "sales/shop".into() }
    }

    #[test]
    fn minimal_spec_plans_the_contract_streams_with_defaults() {
        let plan = StreamPlan::from_spec(
            &ThroughputService::with_spec("{nats: {streams: {prefix: ''}}}").spec,
            owner(),
        );
        assert_eq!(plan.nats_url, "nats://nats.sales:4222");
        assert_eq!(plan.limits, StreamLimits::default());
        let streams = plan.streams();
        let names: Vec<_> = streams.iter().map(|s| (s.name.as_str(), s.subjects[0].as_str())).collect();
        assert_eq!(names, [("ORDERS", "orders.*"), ("USERS", "users.*"), ("DEAD_LETTERS", "deadletter.>")]);
        for s in &streams {
            assert_eq!(s.storage, StorageType::File);
            // Command streams hold unsettled work only; dead letters are kept for the admin.
            let retention =
                if s.name == "DEAD_LETTERS" { RetentionPolicy::Limits } else { RetentionPolicy::WorkQueue };
            assert_eq!(s.retention, retention);
            assert_eq!(s.duplicate_window, Duration::from_secs(DUPLICATE_WINDOW_SECS));
            assert_eq!(s.metadata[OWNER_UID_KEY], "uid-1");
            assert_eq!(s.metadata[OWNER_NAME_KEY], "sales/shop");
        }
    }

    #[test]
    fn stream_fields_come_from_the_spec() {
        let tps = ThroughputService::with_spec(
            "{nats: {streams: {replicas: 3, maxBytes: 1048576, maxAgeSeconds: 3600, prefix: ''}}, worker: {shards: 4, maxReplicas: 4}}",
        );
        let plan = StreamPlan::from_spec(&tps.spec, owner());
        for s in plan.streams() {
            assert_eq!((s.num_replicas, s.max_bytes, s.max_age), (3, 1_048_576, Duration::from_secs(3600)));
        }
        let consumers = plan.consumers();
        assert_eq!(consumers.len(), 8);
        let (stream, c) = &consumers[5];
        assert_eq!(*stream, "USERS");
        assert_eq!((c.durable_name.as_deref(), c.filter_subject.as_str()), (Some("users-1"), "users.1"));
        assert!(consumers.iter().all(|(_, c)| c.ack_policy == AckPolicy::Explicit));
    }

    #[test]
    fn by_default_every_name_is_private_to_the_resource() {
        let plan = StreamPlan::from_spec(&ThroughputService::test().spec, owner());
        assert_eq!(plan.stream_names(), ["sales_shop_ORDERS", "sales_shop_USERS", "sales_shop_DEAD_LETTERS"]);
        let subjects: Vec<_> = plan.streams().iter().map(|s| s.subjects[0].clone()).collect();
        assert_eq!(subjects, ["sales_shop.orders.*", "sales_shop.users.*", "sales_shop.deadletter.>"]);
        let (stream, c) = &plan.consumers()[16];
        assert_eq!(stream, "sales_shop_USERS");
        assert_eq!(
            (c.durable_name.as_deref(), c.filter_subject.as_str()),
            (Some("sales_shop_users-0"), "sales_shop.users.0")
        );
    }
}
