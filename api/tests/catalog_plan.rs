//! The search statement's plan on a catalog of 100,000 tickets: every shape of
//! query the api sends to Postgres for `GET /v1/tickets?q=` is served by the GIN
//! indexes (full text and trigrams), never by a sequential scan of `tickets`.
//! (Filters, sorts and pages without `q` never reach Postgres: the in-process
//! cache's ordered indexes serve them; with `q` they are applied to the matches.)

use sqlx::{Connection, PgConnection};
use tps_api::tickets::query::Search;
use tps_api::tickets::store::{SEARCH_SQL, WORD_SIMILARITY_THRESHOLD};
use tps_testkit::Postgres;

#[tokio::test]
async fn every_search_shape_uses_the_indexes_on_100k_tickets() {
    let pg = Postgres::start().await.unwrap();
    let url = pg.create_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    tps_runtime::db::migrate(&pool).await.unwrap();
    // One statement seeds the catalog; the names are varied (a hash and a city),
    // and a handful of real names are what the searches look for.
    sqlx::query(
        "INSERT INTO tickets (id, name, price_cents, total_quantity, available, created_at) \
         SELECT gen_random_uuid(), \
                'Event ' || substr(md5(i::text), 1, 8) || ' ' || \
                (ARRAY['Oslo','Lima','Quito','Hanoi','Accra','Doha','Perth','Cork','Turku','Bergen'])[1 + i % 10], \
                100 + (i * 37) % 50000, 100, (i * 7) % 101, now() - make_interval(secs => i) \
         FROM generate_series(1, 100000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    for name in ["Rock Concert Berlin", "North Stand Season Pass", "Opera Vienna Gala", "Jazz Night Paris"] {
        sqlx::query(
            "INSERT INTO tickets (id, name, price_cents, total_quantity, available) VALUES ($1, $2, 1000, 5, 5)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE tickets").execute(&pool).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 100_004);

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let seqscan: String = sqlx::query_scalar("SHOW enable_seqscan").fetch_one(&mut conn).await.unwrap();
    assert_eq!(seqscan, "on", "the planner is free to choose a sequential scan");
    sqlx::raw_sql(&format!(
        "SET pg_trgm.word_similarity_threshold = {WORD_SIMILARITY_THRESHOLD}; \
         PREPARE search(text, text, text, bigint) AS {SEARCH_SQL}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    for q in ["concrt", "north stnd", "rock concert", "\"opera vienna\"", "concert -berlin", "jazz or opera"]
    {
        let search = Search::parse(Some(q)).unwrap().unwrap();
        let args = format!(
            "{}, {}, {}, 1000",
            quote(&search.text),
            quote(&search.fuzzy),
            search.excluded.as_deref().map_or("NULL".to_owned(), quote)
        );
        // The first executions of a prepared statement get a plan for their values,
        // later ones may get the generic plan: both must use the indexes.
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}")).execute(&mut conn).await.unwrap();
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE search({args})"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan"), "q={q} ({mode}) scans tickets:\n{plan}");
            assert!(plan.contains("tickets_name_trgm"), "q={q} ({mode}) skips the trigram index:\n{plan}");
            assert!(plan.contains("tickets_name_tsv"), "q={q} ({mode}) skips the full-text index:\n{plan}");
        }
    }
}
