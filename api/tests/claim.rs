//! The one claim script behind orders and sign-ups, against a real Redis.

use std::time::Duration;

use tps_api::claim::{self, Claim, Outcome};
use tps_api::redis_link::RedisLink;
use tps_testkit::Redis;

async fn link(redis: &Redis) -> RedisLink {
    let (link, _task) = RedisLink::start(&redis.url(), None, Duration::from_secs(2)).unwrap();
    assert!(link.wait_connected(Duration::from_secs(10)).await, "connected to redis");
    link
}

async fn hash(link: &RedisLink, key: &str) -> Vec<(String, String)> {
    let key = key.to_owned();
    let mut all: Vec<(String, String)> = link
        .run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
        .await
        .unwrap();
    all.sort();
    all
}

/// How many times Redis ran a script (EVALSHA or EVAL).
async fn script_calls(link: &RedisLink) -> u64 {
    let info: String = link
        .run(|mut c| async move { redis::cmd("INFO").arg("commandstats").query_async(&mut c).await })
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split(['=', ',']).nth(1)?.parse::<u64>().ok())
        .sum()
}

fn order<'a>(
    key: &str,
    fp: &'a str,
    now_ms: i64,
    refuse_new: bool,
    fields: &'a [(&'static str, String)],
) -> Claim<'a> {
    Claim {
        key: key.to_owned(),
        fingerprint: fp,
        now_ms,
        ttl_secs: 60,
        refuse_new,
        fields,
        index: Some(("idx:alice".to_owned(), key.to_owned())),
    }
}

#[tokio::test]
async fn one_script_claims_replays_conflicts_and_indexes_and_a_read_refuses() {
    let redis = Redis::start().await.unwrap();
    let link = link(&redis).await;
    let fields = [("user", "alice".to_owned()), ("qty", "2".to_owned())];

    // A new key: ours, with the fingerprint, the accepted time and the kind's fields, indexed.
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 1_000, false, &fields)).await.unwrap(),
        Outcome::New { created_ms: 1_000 }
    );
    let written = hash(&link, "k1").await;
    let expected = [("created", "1000"), ("fp", "fp-a"), ("qty", "2"), ("user", "alice")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(written, expected);
    // The same body again, later: a replay with the first accepted time; another body: a conflict.
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 5_000, false, &fields)).await.unwrap(),
        Outcome::Replay { created_ms: 1_000 }
    );
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-b", 5_000, false, &fields)).await.unwrap(),
        Outcome::Conflict
    );
    // Refusing new keys (sold out) still answers a known key, and writes nothing for a new one.
    let scripts = script_calls(&link).await;
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 6_000, true, &fields)).await.unwrap(),
        Outcome::Replay { created_ms: 1_000 }
    );
    assert_eq!(
        claim::claim(&link, &order("k2", "fp-a", 6_000, true, &fields)).await.unwrap(),
        Outcome::Refused
    );
    assert!(hash(&link, "k2").await.is_empty(), "a refused key leaves no claim");
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-b", 6_000, true, &fields)).await.unwrap(),
        Outcome::Conflict
    );
    // ...and answers those three with a plain read, not the script.
    assert_eq!(script_calls(&link).await, scripts, "a refusing claim of a known or new key runs no script");

    // A claim whose publish failed is taken again as new, keeping its accepted time, once,
    // even while new keys are refused (by the script: the read leaves a failed claim to it).
    claim::mark_failed(&link, "k1".to_owned()).await;
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 6_500, true, &fields)).await.unwrap(),
        Outcome::New { created_ms: 1_000 }
    );
    assert!(script_calls(&link).await > scripts, "a failed claim is left to the script");
    claim::mark_failed(&link, "k1".to_owned()).await;
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 7_000, false, &fields)).await.unwrap(),
        Outcome::New { created_ms: 1_000 }
    );
    assert_eq!(
        claim::claim(&link, &order("k1", "fp-a", 7_000, false, &fields)).await.unwrap(),
        Outcome::Replay { created_ms: 1_000 }
    );

    // The owner's index holds each new key by its accepted time, pruned past the claim's lifetime.
    claim::claim(&link, &order("k3", "fp-c", 100_000, false, &fields)).await.unwrap();
    let index: Vec<(String, i64)> = link
        .run(|mut c| async move {
            redis::cmd("ZRANGE").arg("idx:alice").arg(0).arg(-1).arg("WITHSCORES").query_async(&mut c).await
        })
        .await
        .unwrap();
    assert_eq!(index, [("k3".to_owned(), 100_000)], "k1 (accepted 99 s earlier, ttl 60 s) pruned");

    // Without fields or an index (a sign-up): the claim holds the fingerprint and time only.
    let signup = Claim {
        key: "s1".to_owned(),
        fingerprint: "fp-s",
        now_ms: 9,
        ttl_secs: 60,
        refuse_new: false,
        fields: &[],
        index: None,
    };
    assert_eq!(claim::claim(&link, &signup).await.unwrap(), Outcome::New { created_ms: 9 });
    assert_eq!(
        hash(&link, "s1").await,
        [("created".to_owned(), "9".to_owned()), ("fp".to_owned(), "fp-s".to_owned())]
    );

    // Written back after Redis lost it: the next claim is a replay of the remembered body.
    let record = claim::Record {
        body: claim::Body { fingerprint: "fp-r".to_owned(), fields: fields.to_vec() },
        created_ms: 42,
    };
    claim::remember(&link, "k9".to_owned(), &record, 60).await;
    assert_eq!(
        claim::claim(&link, &order("k9", "fp-r", 50, false, &fields)).await.unwrap(),
        Outcome::Replay { created_ms: 42 }
    );
}
