//! The catalog routes and the operational ones: tickets, probes, metrics, OpenAPI.

mod common;

use common::{TestApi, problem};
use serde_json::{Value, json};
use tps_testkit::{Scrape, token};

#[tokio::test]
async fn tickets_are_created_read_paged_and_searched() {
    let api = TestApi::start().await;
    let created = api.create_ticket("Rust Conf Berlin", 50, 4).await;
    assert_eq!(created["available"], 50);
    assert_eq!(created["soldOut"], false);
    assert_eq!(created["maxPerOrder"], 4);
    assert_eq!(created["priceCents"], 1500);
    let id = created["id"].as_str().unwrap();
    let one: Value = api.get(&format!("/v1/tickets/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(one, created);
    problem(api.get(&format!("/v1/tickets/{}", uuid::Uuid::new_v4())).send().await.unwrap(), 404).await;
    problem(api.get("/v1/tickets/not-a-uuid").send().await.unwrap(), 400).await;

    for name in ["Jazz Night Paris", "Rust Meetup Paris", "Opera Vienna", "Jazz Brunch Berlin"] {
        api.create_ticket(name, 10, 5).await;
    }
    let sold_out = api.create_ticket("Sold Out Show", 0, 5).await;
    assert_eq!(sold_out["soldOut"], true);

    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = api.get("/v1/tickets").query(&[("limit", "2")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        pages += 1;
        names
            .extend(page["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected = [
        "Rust Conf Berlin",
        "Jazz Night Paris",
        "Rust Meetup Paris",
        "Opera Vienna",
        "Jazz Brunch Berlin",
        "Sold Out Show",
    ];
    let newest_first: Vec<&str> = expected.iter().rev().copied().collect();
    assert_eq!(names, newest_first, "newest first (the default without q), each once");

    let search = |q: &str| {
        let req = api.get("/v1/tickets").query(&[("q", q)]);
        async move {
            let page: Value = req.send().await.unwrap().json().await.unwrap();
            let mut found: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(search("jazz").await, ["Jazz Brunch Berlin", "Jazz Night Paris"]);
    // Both words rank first; a name with one of them is close enough to be listed after.
    let both: Value =
        api.get("/v1/tickets").query(&[("q", "paris rust")]).send().await.unwrap().json().await.unwrap();
    assert_eq!(both["items"][0]["name"], "Rust Meetup Paris");
    assert_eq!(search("berlin -jazz").await, ["Rust Conf Berlin"]);
    assert!(search("nothing-like-this").await.is_empty());
    problem(api.get("/v1/tickets?limit=500").send().await.unwrap(), 400).await;
    problem(api.get("/v1/tickets?cursor=zz").send().await.unwrap(), 400).await;
    problem(api.get("/v1/tickets?bogus=1").send().await.unwrap(), 400).await;
}

#[tokio::test]
async fn ticket_bodies_are_validated() {
    let api = TestApi::start().await;
    let admin = token("admin", true);
    let post = |body: Value| api.post("/v1/tickets").bearer_auth(&admin).json(&body).send();
    problem(post(json!({"name": "", "totalQuantity": 1, "priceCents": 1})).await.unwrap(), 400).await;
    problem(post(json!({"name": "x", "totalQuantity": -1, "priceCents": 1})).await.unwrap(), 400).await;
    problem(post(json!({"name": "x", "totalQuantity": 1, "priceCents": -5})).await.unwrap(), 400).await;
    problem(
        post(json!({"name": "x", "totalQuantity": 1, "priceCents": 1, "maxPerOrder": 0})).await.unwrap(),
        400,
    )
    .await;
    problem(
        post(json!({"name": "x", "totalQuantity": 1, "priceCents": 1, "color": "red"})).await.unwrap(),
        400,
    )
    .await;
    problem(post(json!({"name": "x", "totalQuantity": 1})).await.unwrap(), 400).await;
    for name in ["nul\u{0}", "two\nlines", "bell\u{7}"] {
        let p = problem(post(json!({"name": name, "totalQuantity": 1, "priceCents": 1})).await.unwrap(), 400)
            .await;
        assert!(p["detail"].as_str().unwrap().starts_with("name"), "{name:?}: {p}");
    }
    let created = post(json!({"name": "x", "totalQuantity": 1, "priceCents": 1})).await.unwrap();
    assert_eq!(created.status(), 201);
    assert!(created.headers()["location"].to_str().unwrap().starts_with("/v1/tickets/"));
    assert_eq!(created.json::<Value>().await.unwrap()["maxPerOrder"], 5, "maxPerOrder defaults to 5");
}

#[tokio::test]
async fn probes_metrics_openapi_and_unknown_routes() {
    let api = TestApi::start().await;
    assert_eq!(api.get("/healthz").send().await.unwrap().status(), 200);
    let ready = api.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let checks: Value = ready.json().await.unwrap();
    assert_eq!(checks, json!({"status": "ready", "nats": true, "postgres": true, "redis": true}));

    let ticket = api.ticket(0, 1).await;
    api.order("ivy", "k", json!({"ticketId": ticket, "quantity": 1})).await;
    let stocked = api.ticket(5, 1).await;
    assert_eq!(api.order("ivy", "k2", json!({"ticketId": stocked, "quantity": 1})).await.status(), 202);

    let doc: Value = api.get("/openapi.json").send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/tickets",
        "/v1/tickets/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    for url in [format!("{}/metrics", api.url), api.metrics_url.clone()] {
        let resp = api.http.get(&url).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4", "{url}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("http_requests_total"), "{text}");
        assert!(text.contains(r#"route="/v1/orders""#), "route templates as labels");
        assert!(text.contains("api_sold_out_rejections_total"));
        assert!(!text.contains(&ticket.to_string()), "no ids in labels");
        prometheus_text_of_the_catalogue(&Scrape::parse(&text));
    }

    problem(api.get("/nope").send().await.unwrap(), 404).await;
    problem(api.http.delete(format!("{}/v1/orders", api.url)).send().await.unwrap(), 405).await;
}

/// `/metrics` after an accepted and a sold-out order: the `prometheus` crate's text exposition of the api's
/// catalogue, with the names, types, help texts and buckets that dashboards and alerts use.
fn prometheus_text_of_the_catalogue(page: &Scrape) {
    for (name, kind) in [
        ("tps_http_requests_total", "counter"),
        ("tps_http_request_duration_seconds", "histogram"),
        ("tps_api_publish_duration_seconds", "histogram"),
        ("tps_api_publish_failures_total", "counter"),
        ("tps_api_orders_accepted_total", "counter"),
        ("tps_api_sold_out_rejections_total", "counter"),
        ("tps_api_recall_batch_size", "histogram"),
        ("tps_api_order_event_delay_seconds", "histogram"),
        ("tps_api_push_delay_seconds", "histogram"),
        ("tps_api_open_connections", "gauge"),
        ("tps_ws_clients", "gauge"),
        ("tps_tickets_available", "gauge"),
        ("tps_shards_configured", "gauge"),
    ] {
        assert_eq!(page.types.get(name).map(String::as_str), Some(kind), "{name}");
        assert!(page.help.contains_key(name), "{name} has no help text");
    }
    assert_eq!(
        page.help["tps_http_requests_total"],
        "HTTP requests by matched route template, method and status class."
    );
    let latency = [
        "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "+Inf",
    ];
    let orders = [("route", "/v1/orders"), ("method", "POST"), ("status", "2xx")];
    assert_eq!(page.buckets("tps_http_request_duration_seconds", &orders), latency);
    assert_eq!(page.buckets("tps_api_publish_duration_seconds", &[("stream", "orders")]), latency);
    assert_eq!(
        page.buckets("tps_api_recall_batch_size", &[]),
        ["1", "2", "5", "10", "25", "50", "100", "250", "512", "+Inf"]
    );
    assert!(page.sum("tps_http_requests_total", &orders) >= Some(1.0));
    assert!(page.sum("tps_api_orders_accepted_total", &[]) >= Some(1.0));
    assert!(page.sum("tps_api_sold_out_rejections_total", &[]) >= Some(1.0));
    // Registered at zero, before any failure.
    assert_eq!(page.sum("tps_api_publish_failures_total", &[("stream", "users")]), Some(0.0));
    assert_eq!(page.sum("tps_api_signups_accepted_total", &[]), Some(0.0));
}

#[tokio::test]
async fn catalog_reads_carry_an_etag_answer_304_and_are_gzipped() {
    let api = TestApi::start().await;
    for i in 0..30 {
        api.create_ticket(&format!("Compressible concert number {i}"), 100, 5).await;
    }
    let id = api.ticket(10, 5).await;
    for path in
        ["/v1/tickets?limit=50".to_owned(), format!("/v1/tickets/{id}"), "/v1/tickets?q=concert".to_owned()]
    {
        let first = api.get(&path).send().await.unwrap();
        assert_eq!(first.status(), 200, "{path}");
        let tag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with("W/\""), "{path}: {tag}");
        assert_eq!(first.headers()["cache-control"], "no-cache");
        let body = first.bytes().await.unwrap();

        let again = api.get(&path).header("if-none-match", &tag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);
        assert!(again.bytes().await.unwrap().is_empty());
        let other = api.get(&path).header("if-none-match", "W/\"0000000000000000\"").send().await.unwrap();
        assert_eq!(other.status(), 200, "{path}");

        let gzipped = api.get(&path).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(gzipped.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(gzipped.headers()["etag"].to_str().unwrap(), tag, "one weak tag for every encoding");
        let compressed = gzipped.bytes().await.unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut plain).unwrap();
        assert_eq!(plain, body, "{path}");
        if body.len() > 1000 {
            assert!(
                compressed.len() * 3 < body.len(),
                "{path}: {} -> {} bytes",
                body.len(),
                compressed.len()
            );
        }
    }

    // The order hot path has no compression layer.
    let resp = api
        .post("/v1/orders")
        .bearer_auth(token("gus", false))
        .header("Idempotency-Key", "k")
        .header("accept-encoding", "gzip")
        .json(&json!({"ticketId": id, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("content-encoding").is_none());

    // The live page is served, compressed too.
    let page = api.get("/").header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let script = api.get("/app.js").send().await.unwrap();
    assert!(script.text().await.unwrap().contains("/v1/events"));
}

#[tokio::test]
async fn the_cached_catalog_follows_postgres_within_a_second_without_any_event() {
    let api = TestApi::start().await;
    let id = api.ticket(100, 5).await;
    let tag = api.get(&format!("/v1/tickets/{id}")).send().await.unwrap().headers()["etag"].clone();

    // A change no worker announced (as if its event were lost): only the poll can see it.
    let db = sqlx::PgPool::connect(&api.stack.database_url).await.unwrap();
    sqlx::query("UPDATE tickets SET available = 58, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let fresh = loop {
        let one: Value = api.get(&format!("/v1/tickets/{id}")).send().await.unwrap().json().await.unwrap();
        let page: Value = api.get("/v1/tickets").send().await.unwrap().json().await.unwrap();
        if one["available"] == 58 && page["items"][0]["available"] == 58 {
            break changed.elapsed();
        }
        assert!(changed.elapsed() < std::time::Duration::from_secs(1), "still stale after 1 s: {one}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(fresh < std::time::Duration::from_secs(1));
    let resp = api.get(&format!("/v1/tickets/{id}")).header("if-none-match", tag).send().await.unwrap();
    assert_eq!(resp.status(), 200, "a new stock is a new tag");

    // A ticket created behind this pod's back is listed and found by search within a second too.
    let searched = api.get("/v1/tickets?q=backdoor").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(searched["items"].as_array().unwrap().len(), 0);
    sqlx::query(
        "INSERT INTO tickets (id, name, price_cents, total_quantity, available, max_per_order) \
         VALUES ($1, 'Backdoor gig', 100, 5, 5, 5)",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&db)
    .await
    .unwrap();
    let inserted = std::time::Instant::now();
    loop {
        let page: Value = api.get("/v1/tickets").send().await.unwrap().json().await.unwrap();
        let searched: Value = api.get("/v1/tickets?q=backdoor").send().await.unwrap().json().await.unwrap();
        if page["items"].as_array().unwrap().len() == 2 && searched["items"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(inserted.elapsed() < std::time::Duration::from_secs(1), "not listed after 1 s: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
