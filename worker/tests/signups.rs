//! Sign-ups settled by the worker: one user per id whatever the redeliveries,
//! one CREATED user per email (case-insensitive) even when the sign-ups of one
//! email sit on different shards and are settled at once, the first arrival
//! wins on a shard, and a user's projects and log commit with it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use common::{Harness, InProcess};
use sqlx::Row;
use tps_contract::SignupCommand;
use tps_contract::command::{LogAction, LogEntry, Project, Signup, Team};
use tps_contract::subject::{DEAD_LETTER_STREAM, user_subject};
use uuid::Uuid;

fn signup(id: Uuid, email: Option<String>) -> SignupCommand {
    SignupCommand {
        user: Signup {
            id,
            name: format!("user {}", id.simple()),
            email,
            age: 30,
            score: 1.5,
            active: true,
            country: "NL".into(),
            team: Team {
                name: "core".into(),
                leader: false,
                projects: vec![
                    Project { name: "a".into(), completed: true },
                    Project { name: "b".into(), completed: false },
                ],
            },
            logs: vec![LogEntry { date: "2025-03-01".into(), action: LogAction::Login }],
        },
        accepted_at: Utc::now(),
    }
}

/// A fresh id whose sign-up lands on `shard`.
fn id_on(shard: u32, shards: u32) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if tps_contract::shard_for(&id, shards) == shard {
            return id;
        }
    }
}

async fn publish(h: &Harness, c: &SignupCommand, msg_id: &str) {
    let subject = user_subject(tps_contract::shard_for(&c.user.id, h.shards));
    h.publish_raw(&subject, serde_json::to_vec(c).unwrap(), msg_id).await.await.unwrap();
}

async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&h.pool).await.unwrap()
}

async fn wait_users(h: &Harness, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = count(h, "SELECT count(*) FROM users").await;
        if got == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got} of {n} sign-ups settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_created_user_per_email_across_shards_and_the_first_arrival_wins_on_a_shard() {
    const SHARDS: u32 = 4;
    let h = Harness::start(SHARDS).await;
    let mut commands = Vec::new();
    // 120 emails, each signed up on every shard in a different letter case: the
    // four shards' batches race on the unique index.
    for e in 0..120 {
        for shard in 0..SHARDS {
            let email = if shard % 2 == 0 {
                format!("racer-{e}@example.test")
            } else {
                format!("Racer-{e}@EXAMPLE.test")
            };
            commands.push(signup(id_on(shard, SHARDS), Some(email)));
        }
    }
    // On one shard, the earlier of two sign-ups of one email is the one created.
    let (first, second) = (id_on(2, SHARDS), id_on(2, SHARDS));
    commands.push(signup(first, Some("first@example.test".into())));
    commands.push(signup(second, Some("FIRST@example.test".into())));
    // Without an email nothing can clash.
    commands.extend((0..40).map(|i| signup(id_on(i % SHARDS, SHARDS), None)));
    for c in &commands {
        publish(&h, c, &c.user.id.to_string()).await;
    }

    let worker = InProcess::start(h.config(&["--batch-size=16"]));
    wait_users(&h, commands.len() as i64).await;
    worker.stop().await;

    let created_per_email: HashMap<String, i64> =
        sqlx::query("SELECT lower(email) AS e, count(*) FILTER (WHERE status = 'CREATED') AS n FROM users WHERE email IS NOT NULL GROUP BY 1")
            .fetch_all(&h.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("e"), r.get("n")))
            .collect();
    assert_eq!(created_per_email.len(), 121);
    assert!(created_per_email.values().all(|n| *n == 1), "{created_per_email:?}");
    assert_eq!(
        count(&h, "SELECT count(*) FROM users WHERE status = 'REJECTED' AND reason = 'DUPLICATE_EMAIL'")
            .await,
        120 * 3 + 1
    );
    assert_eq!(count(&h, "SELECT count(*) FROM users WHERE status = 'REJECTED' AND reason IS DISTINCT FROM 'DUPLICATE_EMAIL'").await, 0);
    assert_eq!(count(&h, "SELECT count(*) FROM users WHERE email IS NULL AND status = 'CREATED'").await, 40);
    let status = |id: Uuid| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!((status(first).await.as_str(), status(second).await.as_str()), ("CREATED", "REJECTED"));
    // Projects and logs belong to created users only, all of them, once.
    let created = count(&h, "SELECT count(*) FROM users WHERE status = 'CREATED'").await;
    assert_eq!(
        count(&h, "SELECT COALESCE(sum(jsonb_array_length(projects)), 0)::bigint FROM users").await,
        2 * created
    );
    assert_eq!(
        count(&h, "SELECT COALESCE(sum(jsonb_array_length(logs)), 0)::bigint FROM users").await,
        created
    );
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM users WHERE status <> 'CREATED' AND (projects <> '[]' OR logs <> '[]')"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_make_one_user_and_poison_is_dead_lettered() {
    let h = Harness::start(2).await;
    let once = signup(id_on(1, 2), Some("once@example.test".into()));
    // The same Nats-Msg-Id (JetStream drops it), then new ones for the same id (as after
    // the duplicate window), and one with another body: the primary key keeps the first.
    publish(&h, &once, &once.user.id.to_string()).await;
    publish(&h, &once, &once.user.id.to_string()).await;
    publish(&h, &once, "after-the-window-1").await;
    let mut altered = once.clone();
    altered.user.name = "someone else".into();
    publish(&h, &altered, "after-the-window-2").await;
    // Fails validation: it can never be stored, so it is dead-lettered at once.
    let mut poison = signup(id_on(0, 2), None);
    poison.user.age = 400;
    publish(&h, &poison, &poison.user.id.to_string()).await;

    let worker = InProcess::start(h.config(&[]));
    wait_users(&h, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = h.js.get_stream(DEAD_LETTER_STREAM).await.unwrap().info().await.unwrap().state.messages;
        if stored == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stored} dead letters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once more, long after it settled.
    publish(&h, &once, "after-the-window-3").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.stop().await;

    assert_eq!(count(&h, "SELECT count(*) FROM users").await, 1);
    let name: String = sqlx::query_scalar("SELECT name FROM users").fetch_one(&h.pool).await.unwrap();
    assert_eq!(name, once.user.name, "the first body stands");
    assert_eq!(
        count(&h, "SELECT COALESCE(sum(jsonb_array_length(projects)), 0)::bigint FROM users").await,
        2
    );
    assert_eq!(count(&h, "SELECT COALESCE(sum(jsonb_array_length(logs)), 0)::bigint FROM users").await, 1);
}

async fn status_and_reason(h: &Harness, id: Uuid) -> (String, Option<String>) {
    let row = sqlx::query("SELECT status, reason FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    (row.get("status"), row.get("reason"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_twins_are_one_email_across_batches_shards_and_within_a_batch() {
    const SHARDS: u32 = 4;
    let h = Harness::start(SHARDS).await;
    let worker = InProcess::start(h.config(&[]));
    // Across batches and shards: each twin is published only once the one before it settled,
    // so they are settled by different transactions of different shards. Postgres' lower()
    // under the C locale leaves É alone; the decomposed é (e + U+0301) and the full-width
    // capitals are the same email under NFKC.
    let twins = [
        "JOSÉ@example.com",
        "josé@example.com",
        "jose\u{301}@EXAMPLE.com",
        "ＪＯＳＥ\u{301}@example.com",
        "ΣΊΣΥΦΟΣ@example.gr",
        "σίσυφος@example.gr",
    ];
    let mut ids = Vec::new();
    for (i, email) in twins.iter().enumerate() {
        let c = signup(id_on(i as u32 % SHARDS, SHARDS), Some((*email).to_owned()));
        publish(&h, &c, &c.user.id.to_string()).await;
        ids.push(c.user.id);
        wait_users(&h, ids.len() as i64).await;
    }
    let outcomes = outcomes_of(&h, &ids).await;
    assert_eq!(outcomes[0], ("CREATED".into(), None), "{outcomes:?}");
    for o in &outcomes[1..4] {
        assert_eq!(*o, ("REJECTED".into(), Some("DUPLICATE_EMAIL".into())), "{outcomes:?}");
    }
    assert_eq!(outcomes[4], ("CREATED".into(), None), "{outcomes:?}");
    assert_eq!(outcomes[5], ("REJECTED".into(), Some("DUPLICATE_EMAIL".into())), "{outcomes:?}");
    worker.stop().await;

    // Within one batch, on one shard: the first to arrive is created, its twins rejected.
    let batch = [
        signup(id_on(1, SHARDS), Some("ÅSA@example.se".into())),
        signup(id_on(1, SHARDS), Some("åsa@example.se".into())),
        signup(id_on(1, SHARDS), Some("A\u{30a}sa@example.se".into())),
    ];
    for c in &batch {
        publish(&h, c, &c.user.id.to_string()).await;
    }
    let worker = InProcess::start(h.config(&["--batch-size=16"]));
    wait_users(&h, (ids.len() + batch.len()) as i64).await;
    worker.stop().await;
    let outcomes = outcomes_of(&h, &batch.iter().map(|c| c.user.id).collect::<Vec<_>>()).await;
    assert_eq!(
        outcomes,
        vec![
            ("CREATED".into(), None),
            ("REJECTED".into(), Some("DUPLICATE_EMAIL".into())),
            ("REJECTED".into(), Some("DUPLICATE_EMAIL".into()))
        ]
    );
    // The stored key is the contract's function of the stored email, for every row.
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT email, email_key FROM users WHERE email IS NOT NULL")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    for (email, key) in rows {
        assert_eq!(key.as_deref(), Some(tps_contract::command::email_key(&email).as_str()), "{email}");
    }
}

async fn outcomes_of(h: &Harness, ids: &[Uuid]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for id in ids {
        out.push(status_and_reason(h, *id).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0003_keys_existing_rows_keeps_created_twins_and_the_rust_key_wins() {
    use std::borrow::Cow;

    use sqlx::migrate::Migrator;
    use tps_contract::command::email_key;
    use tps_runtime::db::MIGRATOR;

    let stack = tps_testkit::Stack::start().await.unwrap();
    let pool = tps_runtime::db::connect(&stack.database_url, 3).await.unwrap();
    // The schema before 0003, with rows the old index let through.
    let before = Migrator {
        migrations: Cow::Owned(MIGRATOR.migrations.iter().filter(|m| m.version < 3).cloned().collect()),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let rows = [
        ("JOSÉ@example.com", "CREATED", 1),
        ("josé@example.com", "CREATED", 2),
        ("Jos\u{e9}@EXAMPLE.com", "REJECTED", 3),
        ("Ann@example.com", "CREATED", 4),
    ];
    let mut ids = Vec::new();
    for (email, status, seq) in rows {
        let id = Uuid::new_v4();
        let reason = (status == "REJECTED").then_some("DUPLICATE_EMAIL");
        sqlx::query(
            "INSERT INTO users (id, status, reason, name, email, age, score, active, country, team_name, team_leader, fingerprint, stream_seq, created_at, processed_at)
             VALUES ($1, $2, $3, 'n', $4, 1, 0, true, 'NL', 't', false, 'fp', $5, now(), now() + $5 * interval '1 second')",
        )
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(email)
        .bind(seq as i64)
        .execute(&pool)
        .await
        .unwrap();
        ids.push(id);
    }
    MIGRATOR.run(&pool).await.unwrap();
    let key_of = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>("SELECT status, email_key FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // SQL (normalize + ICU lower) gave the same keys as the Rust function.
    assert_eq!(key_of(ids[0]).await, ("CREATED".into(), Some(email_key("JOSÉ@example.com"))));
    // The later twin stays CREATED (a final answer does not change) but holds no key.
    assert_eq!(key_of(ids[1]).await, ("CREATED".into(), None));
    assert_eq!(key_of(ids[2]).await, ("REJECTED".into(), Some(email_key("josé@example.com"))));
    assert_eq!(key_of(ids[3]).await, ("CREATED".into(), Some("ann@example.com".into())));

    // A key the SQL got wrong is replaced by the Rust one at worker start.
    sqlx::query("UPDATE users SET email_key = 'not the rust key' WHERE id = $1")
        .bind(ids[3])
        .execute(&pool)
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email_key_pending")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 3, "every row keyed by SQL waits for the Rust function");
    assert_eq!(tps_worker::users::rekey_pending(&pool).await.unwrap(), 1);
    assert_eq!(key_of(ids[3]).await.1.as_deref(), Some("ann@example.com"));
    assert_eq!(tps_worker::users::rekey_pending(&pool).await.unwrap(), 0, "done once");

    // The index holds: another twin can no longer be created.
    let twin = sqlx::query(
        "INSERT INTO users (id, status, name, email, email_key, age, score, active, country, team_name, team_leader, fingerprint, stream_seq, created_at)
         VALUES ($1, 'CREATED', 'n', 'JOSÉ@EXAMPLE.COM', $2, 1, 0, true, 'NL', 't', false, 'fp', 9, now())",
    )
    .bind(Uuid::new_v4())
    .bind(email_key("JOSÉ@EXAMPLE.COM"))
    .execute(&pool)
    .await;
    assert!(twin.is_err(), "the unique index on email_key refuses a second CREATED twin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0006_moves_projects_and_logs_into_the_user_row_in_order() {
    use std::borrow::Cow;

    use sqlx::migrate::Migrator;
    use tps_runtime::db::MIGRATOR;

    let stack = tps_testkit::Stack::start().await.unwrap();
    let pool = tps_runtime::db::connect(&stack.database_url, 3).await.unwrap();
    let before = Migrator {
        migrations: Cow::Owned(MIGRATOR.migrations.iter().filter(|m| m.version < 6).cloned().collect()),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let (created, bare, rejected) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, status, seq) in [(created, "CREATED", 1i64), (bare, "CREATED", 2), (rejected, "REJECTED", 3)] {
        let reason = (status == "REJECTED").then_some("DUPLICATE_EMAIL");
        sqlx::query(
            "INSERT INTO users (id, status, reason, name, email, age, score, active, country, team_name, team_leader, fingerprint, stream_seq, created_at, processed_at)
             VALUES ($1, $2, $3, 'n', NULL, 1, 0, true, 'NL', 't', false, 'fp', $4, now(), now())",
        )
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Positions inserted out of order: the arrays must follow `position`.
    for (pos, name, done) in [(1, "second", false), (0, "first", true)] {
        sqlx::query("INSERT INTO user_projects (user_id, position, name, completed) VALUES ($1, $2, $3, $4)")
            .bind(created)
            .bind(pos)
            .bind(name)
            .bind(done)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (pos, date, action) in [(0, "2026-01-01", "login"), (1, "2026-01-02T10:00:00Z", "logout")] {
        sqlx::query("INSERT INTO user_logs (user_id, position, date, action) VALUES ($1, $2, $3, $4)")
            .bind(created)
            .bind(pos)
            .bind(date)
            .bind(action)
            .execute(&pool)
            .await
            .unwrap();
    }
    MIGRATOR.run(&pool).await.unwrap();

    let documents = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (serde_json::Value, serde_json::Value)>(
                "SELECT projects, logs FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (projects, logs) = documents(created).await;
    assert_eq!(
        projects,
        serde_json::json!([{"name": "first", "completed": true}, {"name": "second", "completed": false}])
    );
    assert_eq!(
        logs,
        serde_json::json!([{"date": "2026-01-01", "action": "login"}, {"date": "2026-01-02T10:00:00Z", "action": "logout"}])
    );
    // They read back as the contract's types.
    let read: Vec<tps_contract::command::LogEntry> = serde_json::from_value(logs).unwrap();
    assert_eq!(read[1].action, tps_contract::command::LogAction::Logout);
    let read: Vec<tps_contract::command::Project> = serde_json::from_value(projects).unwrap();
    assert_eq!(read[0].name, "first");
    for id in [bare, rejected] {
        assert_eq!(documents(id).await, (serde_json::json!([]), serde_json::json!([])));
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('user_projects', 'user_logs')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "the child tables are gone");
}
