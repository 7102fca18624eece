//! Stream provisioning against a real nats-server with JetStream (tps-testkit).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, stream::StorageType};
use tps_contract::subject::DUPLICATE_WINDOW_SECS;
use tps_operator::ThroughputService;
use tps_operator::streams::{
    JetStreamProvisioner, OWNER_UID_KEY, StreamOwner, StreamPlan, StreamProvisioner, StreamsError,
};
use tps_testkit::Nats;

fn plan(url: &str, extra: &str) -> StreamPlan {
    owned_plan(url, extra, "uid-shop")
}

fn owned_plan(url: &str, extra: &str, uid: &str) -> StreamPlan {
    let yaml = format!(
        "{{image: img, nats: {{url: '{url}', streams: {{prefix: '', {extra}}}}}, worker: {{shards: 4, maxReplicas: 4}},
          postgres: {{urlSecretRef: {{name: db, key: url}}}}, redis: {{url: 'redis://r'}},
          auth: {{jwtSecretRef: {{name: jwt, key: k}}}}}}"
    );
    let spec = serde_yaml::from_str(&yaml).expect("spec");
    let owner = StreamOwner { uid: uid.into(), name: format!("sales/{uid}") };
    StreamPlan::from_spec(&ThroughputService::new("shop", spec).spec, owner)
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect"))
}

#[tokio::test]
async fn ensure_creates_the_contract_streams_and_shard_consumers() {
    let nats = Nats::start().await.expect("nats-server");
    let plan = plan(&nats.url(), "maxBytes: 1048576, maxAgeSeconds: 3600");
    JetStreamProvisioner.ensure(&plan).await.expect("provisioned");
    // Twice: provisioning is idempotent.
    JetStreamProvisioner.ensure(&plan).await.expect("provisioned again");

    let js = js(&nats.url()).await;
    for (name, subject) in [("ORDERS", "orders.*"), ("USERS", "users.*"), ("DEAD_LETTERS", "deadletter.>")] {
        let info = js.get_stream(name).await.expect(name).get_info().await.unwrap();
        let c = info.config;
        assert_eq!(c.subjects, [subject]);
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.duplicate_window, Duration::from_secs(DUPLICATE_WINDOW_SECS));
        assert_eq!((c.max_bytes, c.max_age, c.num_replicas), (1_048_576, Duration::from_secs(3600), 1));
        assert_eq!(c.metadata[OWNER_UID_KEY], "uid-shop");
    }
    for (stream, prefix) in [("ORDERS", "orders"), ("USERS", "users")] {
        let s = js.get_stream(stream).await.unwrap();
        for shard in 0..4 {
            let name = format!("{prefix}-{shard}");
            let info = s.consumer_info(&name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(info.config.filter_subject, format!("{prefix}.{shard}"));
            assert_eq!(info.config.ack_policy, AckPolicy::Explicit);
            assert_eq!(info.config.durable_name.as_deref(), Some(name.as_str()));
        }
    }
}

#[tokio::test]
async fn changed_limits_reach_existing_streams() {
    let nats = Nats::start().await.expect("nats-server");
    JetStreamProvisioner.ensure(&plan(&nats.url(), "maxBytes: 1048576")).await.unwrap();
    JetStreamProvisioner.ensure(&plan(&nats.url(), "maxBytes: 2097152")).await.unwrap();
    let info = js(&nats.url()).await.get_stream("ORDERS").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.max_bytes, 2_097_152);
}

#[tokio::test]
async fn delete_removes_the_streams_and_tolerates_absent_ones() {
    let nats = Nats::start().await.expect("nats-server");
    JetStreamProvisioner.ensure(&plan(&nats.url(), "")).await.unwrap();
    JetStreamProvisioner.delete(&plan(&nats.url(), "")).await.expect("deleted");
    let js = js(&nats.url()).await;
    for name in ["ORDERS", "USERS", "DEAD_LETTERS"] {
        assert!(js.get_stream(name).await.is_err(), "{name} still exists");
    }
    JetStreamProvisioner.delete(&plan(&nats.url(), "")).await.expect("deleting nothing is fine");
}

#[tokio::test]
async fn streams_of_another_resource_are_neither_updated_nor_deleted() {
    let nats = Nats::start().await.expect("nats-server");
    let first = owned_plan(&nats.url(), "maxBytes: 1048576", "uid-first");
    let second = owned_plan(&nats.url(), "maxBytes: 2097152", "uid-second");
    JetStreamProvisioner.ensure(&first).await.expect("first provisions");

    let err = JetStreamProvisioner.ensure(&second).await.expect_err("second is refused");
    assert!(
        matches!(&err, StreamsError::OwnedByAnother { stream, owner } if stream == "ORDERS" && owner.contains("uid-first")),
        "{err}"
    );
    JetStreamProvisioner.delete(&second).await.expect("a foreign stream is skipped, not an error");

    let js = js(&nats.url()).await;
    for name in ["ORDERS", "USERS", "DEAD_LETTERS"] {
        let info = js.get_stream(name).await.expect(name).get_info().await.unwrap();
        assert_eq!(info.config.metadata[OWNER_UID_KEY], "uid-first", "{name}");
        assert_eq!(info.config.max_bytes, 1_048_576, "{name} was updated by the second resource");
    }
    JetStreamProvisioner.delete(&first).await.expect("the owner deletes");
    assert!(js.get_stream("ORDERS").await.is_err(), "the owner's delete left ORDERS");
}

#[tokio::test]
async fn a_recreated_resource_takes_over_what_its_predecessor_retained() {
    let nats = Nats::start().await.expect("nats-server");
    let spec = "maxBytes: 1048576";
    let mut old = owned_plan(&nats.url(), spec, "uid-old");
    old.owner.name = "sales/shop".into();
    JetStreamProvisioner.ensure(&old).await.unwrap();
    let mut new = owned_plan(&nats.url(), spec, "uid-new");
    new.owner.name = "sales/shop".into();
    JetStreamProvisioner.ensure(&new).await.expect("same namespace/name: adopted");
    let info = js(&nats.url()).await.get_stream("USERS").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.metadata[OWNER_UID_KEY], "uid-new");
}

#[tokio::test]
async fn two_resources_on_one_nats_get_their_own_streams_and_delete_only_theirs() {
    let nats = Nats::start().await.expect("nats-server");
    let resource = |name: &str| {
        let yaml = format!(
            "{{image: img, nats: {{url: '{}'}}, worker: {{shards: 2, maxReplicas: 2}},
              postgres: {{urlSecretRef: {{name: db, key: url}}}}, redis: {{url: 'redis://r'}},
              auth: {{jwtSecretRef: {{name: jwt, key: k}}}}}}",
            nats.url()
        );
        let owner = StreamOwner { uid: format!("uid-{name}"), name: format!("sales/{name}") };
        StreamPlan::from_spec(&ThroughputService::new(name, serde_yaml::from_str(&yaml).unwrap()).spec, owner)
    };
    let (a, b) = (resource("a"), resource("b"));
    JetStreamProvisioner.ensure(&a).await.expect("a provisions");
    JetStreamProvisioner.ensure(&b).await.expect("b provisions beside a");
    let js = js(&nats.url()).await;
    let consumer =
        js.get_stream("sales_b_ORDERS").await.unwrap().consumer_info("sales_b_orders-1").await.unwrap();
    assert_eq!(consumer.config.filter_subject, "sales_b.orders.1");
    JetStreamProvisioner.delete(&a).await.expect("a deletes its own");
    for name in ["sales_a_ORDERS", "sales_a_USERS", "sales_a_DEAD_LETTERS"] {
        assert!(js.get_stream(name).await.is_err(), "{name} survived its owner's delete");
    }
    for name in ["sales_b_ORDERS", "sales_b_USERS", "sales_b_DEAD_LETTERS"] {
        let info = js.get_stream(name).await.expect(name).get_info().await.unwrap();
        assert_eq!(info.config.metadata[OWNER_UID_KEY], "uid-b", "{name}");
    }
}

#[tokio::test]
async fn unmarked_streams_are_adopted() {
    let nats = Nats::start().await.expect("nats-server");
    let js = js(&nats.url()).await;
    // As the binaries create them locally: the contract's configuration, no owner mark.
    tps_contract::streams::ensure_streams(&js, &Default::default()).await.expect("local streams");
    JetStreamProvisioner.ensure(&plan(&nats.url(), "")).await.expect("adopted");
    let info = js.get_stream("ORDERS").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.metadata[OWNER_UID_KEY], "uid-shop");
}

#[tokio::test]
async fn unreachable_nats_is_a_connect_error() {
    let port = tps_testkit::free_port();
    let err = JetStreamProvisioner.ensure(&plan(&format!("nats://127.0.0.1:{port}"), "")).await.unwrap_err();
    assert!(matches!(err, StreamsError::Connect { .. }), "{err}");
}
