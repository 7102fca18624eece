//! `GET /v1/tickets` as a store uses it, over real HTTP: typo-tolerant search
//! ranked by relevance, filters, sorts, cursors bound to their query, and a 400
//! naming the parameter for every bad value.

mod common;

use std::time::{Duration, Instant};

use common::{TestApi, problem};
use serde_json::{Value, json};
use tps_testkit::token;

async fn create(api: &TestApi, name: &str, price_cents: i64, total: i64) -> Value {
    let resp = api
        .post("/v1/tickets")
        .bearer_auth(token("admin", true))
        .json(&json!({"name": name, "totalQuantity": total, "priceCents": price_cents}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "create {name}");
    resp.json().await.unwrap()
}

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn page(api: &TestApi, query: &[(&str, &str)]) -> Value {
    let resp = api.get("/v1/tickets").query(query).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{query:?}");
    resp.json().await.unwrap()
}

/// Every page of a query, following `nextCursor` with `limit=2`.
async fn all_pages(api: &TestApi, query: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "2"));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let p = page(api, &q).await;
        found.extend(names(&p));
        match p["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return found,
        }
    }
}

/// The fixed catalog of the misspelling test: (name, price in cents, stock).
const NAMES: [(&str, i64, i64); 9] = [
    ("Rock Concert Berlin", 4500, 10),
    ("North Stand Season Pass", 30000, 10),
    ("Opera Vienna Gala", 12000, 10),
    ("Jazz Night Paris", 3000, 0),
    ("South Stand Family Ticket", 8000, 10),
    ("Champions League Final", 50000, 10),
    ("Symphony Orchestra Evening", 6000, 10),
    ("Comedy Club Friday", 2000, 10),
    ("Rust Conf Berlin", 3000, 10),
];

#[tokio::test]
async fn misspellings_find_what_the_shopper_meant() {
    let api = TestApi::start().await;
    for (name, price, stock) in NAMES {
        create(&api, name, price, stock).await;
    }
    // (misspelled query, the ticket the shopper meant: the first result)
    for (q, meant) in [
        ("concrt", "Rock Concert Berlin"),
        ("north stnd", "North Stand Season Pass"),
        ("opra vienna", "Opera Vienna Gala"),
        ("champions leage", "Champions League Final"),
        ("symphny orchestra", "Symphony Orchestra Evening"),
        ("comedy clb", "Comedy Club Friday"),
        ("rok concert", "Rock Concert Berlin"),
        ("paris jaz", "Jazz Night Paris"),
        // Exact words still work, and rank first.
        ("concert", "Rock Concert Berlin"),
        ("stand north", "North Stand Season Pass"),
    ] {
        let found = names(&page(&api, &[("q", q)]).await);
        assert_eq!(found.first().map(String::as_str), Some(meant), "q={q}: {found:?}");
    }
    // "north stnd" is not close enough to South Stand: one typo, not another place.
    assert_eq!(names(&page(&api, &[("q", "north stnd")]).await), ["North Stand Season Pass"]);
    let mut berlin = names(&page(&api, &[("q", "berln")]).await);
    berlin.sort();
    assert_eq!(berlin, ["Rock Concert Berlin", "Rust Conf Berlin"]);
    let mut stands = names(&page(&api, &[("q", "stand")]).await);
    stands.sort();
    assert_eq!(stands, ["North Stand Season Pass", "South Stand Family Ticket"]);
    // Exclusions hold for typo matches too.
    assert_eq!(names(&page(&api, &[("q", "berln -rock")]).await), ["Rust Conf Berlin"]);
    for nothing in ["zzzz", "xylophone quartet"] {
        assert!(names(&page(&api, &[("q", nothing)]).await).is_empty(), "q={nothing}");
    }
}

#[tokio::test]
async fn filters_sorts_and_cursors_page_every_shape_once() {
    let api = TestApi::start().await;
    for (name, price, stock) in NAMES {
        create(&api, name, price, stock).await;
    }
    let by = |f: fn(&(&str, i64, i64)) -> bool| NAMES.iter().filter(|t| f(t)).copied().collect::<Vec<_>>();

    // newest (the default without q): the reverse of creation order.
    let newest: Vec<String> = NAMES.iter().rev().map(|t| t.0.to_owned()).collect();
    assert_eq!(all_pages(&api, &[]).await, newest);
    assert_eq!(all_pages(&api, &[("sort", "newest")]).await, newest);

    // price, then id: ties (3000) come in id order, which is creation order here (UUIDv7).
    let mut cheap_first = NAMES.to_vec();
    cheap_first.sort_by_key(|t| t.1);
    let cheap_first: Vec<String> = cheap_first.iter().map(|t| t.0.to_owned()).collect();
    assert_eq!(all_pages(&api, &[("sort", "price")]).await, cheap_first);
    let dear_first: Vec<String> = cheap_first.iter().rev().cloned().collect();
    assert_eq!(all_pages(&api, &[("sort", "-price")]).await, dear_first);

    // available=true hides the sold-out Jazz Night; the bounds are inclusive.
    let available = all_pages(&api, &[("available", "true"), ("sort", "price")]).await;
    assert_eq!(available.len(), by(|t| t.2 > 0).len());
    assert!(!available.contains(&"Jazz Night Paris".to_owned()));
    assert_eq!(all_pages(&api, &[("available", "false")]).await.len(), NAMES.len());
    let mid =
        all_pages(&api, &[("minPriceCents", "3000"), ("maxPriceCents", "8000"), ("sort", "price")]).await;
    assert_eq!(
        mid,
        [
            "Jazz Night Paris",
            "Rust Conf Berlin",
            "Rock Concert Berlin",
            "Symphony Orchestra Evening",
            "South Stand Family Ticket"
        ]
    );
    let mid_desc =
        all_pages(&api, &[("minPriceCents", "3000"), ("maxPriceCents", "8000"), ("sort", "-price")]).await;
    assert_eq!(mid_desc, mid.iter().rev().cloned().collect::<Vec<_>>());
    let only = all_pages(&api, &[("minPriceCents", "50000")]).await;
    assert_eq!(only, ["Champions League Final"]);
    assert!(all_pages(&api, &[("minPriceCents", "50001")]).await.is_empty());
    let cheap = all_pages(&api, &[("maxPriceCents", "3000"), ("available", "true")]).await;
    assert_eq!(cheap, ["Rust Conf Berlin", "Comedy Club Friday"]);

    // With q: relevance by default, and every other sort and filter over the matches.
    let berlin = all_pages(&api, &[("q", "berlin")]).await;
    assert_eq!(berlin.len(), 2);
    assert_eq!(
        all_pages(&api, &[("q", "berlin"), ("sort", "price")]).await,
        ["Rust Conf Berlin", "Rock Concert Berlin"]
    );
    assert_eq!(
        all_pages(&api, &[("q", "berlin"), ("sort", "-price")]).await,
        ["Rock Concert Berlin", "Rust Conf Berlin"]
    );
    assert_eq!(
        all_pages(&api, &[("q", "berlin"), ("sort", "newest")]).await,
        ["Rust Conf Berlin", "Rock Concert Berlin"]
    );
    assert_eq!(all_pages(&api, &[("q", "berlin"), ("maxPriceCents", "4000")]).await, ["Rust Conf Berlin"]);
    let stands = all_pages(&api, &[("q", "stand"), ("sort", "price")]).await;
    assert_eq!(stands, ["South Stand Family Ticket", "North Stand Season Pass"]);
    let relevance = all_pages(&api, &[("q", "stand OR berlin OR concert OR paris")]).await;
    assert_eq!(relevance.len(), 5, "{relevance:?}");
    assert_eq!(relevance[0], "Rock Concert Berlin", "two words matched rank first: {relevance:?}");

    // A cursor continues only the query that made it.
    let first = page(&api, &[("sort", "price"), ("limit", "2")]).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let next = page(&api, &[("sort", "price"), ("limit", "3"), ("cursor", cursor)]).await;
    assert_eq!(names(&next), cheap_first[2..5], "the page size may change between pages");
    for other in [
        vec![("sort", "-price")],
        vec![("sort", "newest")],
        vec![],
        vec![("sort", "price"), ("available", "true")],
        vec![("sort", "price"), ("minPriceCents", "0")],
        vec![("sort", "price"), ("maxPriceCents", "99999")],
        vec![("sort", "price"), ("q", "berlin")],
    ] {
        let mut q = other.clone();
        q.push(("cursor", cursor));
        let p = problem(api.get("/v1/tickets").query(&q).send().await.unwrap(), 400).await;
        assert!(p["detail"].as_str().unwrap().starts_with("cursor:"), "{other:?}: {p}");
    }
    let searched = page(&api, &[("q", "berlin"), ("limit", "1")]).await;
    let cursor = searched["nextCursor"].as_str().unwrap();
    let p = problem(
        api.get("/v1/tickets").query(&[("q", "paris"), ("cursor", cursor)]).send().await.unwrap(),
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().starts_with("cursor:"), "{p}");
    let rest = page(&api, &[("q", "berlin"), ("limit", "1"), ("cursor", cursor)]).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(names(&rest), names(&searched));
}

#[tokio::test]
async fn every_bad_value_is_a_400_naming_its_parameter() {
    let api = TestApi::start().await;
    create(&api, "Rock Concert Berlin", 4500, 10).await;
    let long = "a".repeat(201);
    let long_wide = "é".repeat(201);
    // Each value is checked by the api, whose detail starts with the parameter's name.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "101")], "limit"),
        (vec![("limit", "ten")], "limit"),
        (vec![("limit", "-1")], "limit"),
        (vec![("limit", "")], "limit"),
        (vec![("limit", "2.0")], "limit"),
        (vec![("limit", "18446744073709551616")], "limit"),
        (vec![("cursor", "zz")], "cursor"),
        (vec![("cursor", "")], "cursor"),
        (vec![("cursor", "6e6f742d612d637572736f72")], "cursor"),
        (vec![("q", &long)], "q"),
        (vec![("q", &long_wide)], "q"),
        (vec![("q", "-rock")], "q"),
        (vec![("q", "!!! ???")], "q"),
        (vec![("q", "\"\"")], "q"),
        (vec![("q", "rock\u{0}")], "q"),
        (vec![("q", "rock\u{7}concert")], "q"),
        (vec![("available", "yes")], "available"),
        (vec![("available", "1")], "available"),
        (vec![("available", "")], "available"),
        (vec![("available", "TRUE")], "available"),
        (vec![("minPriceCents", "-1")], "minPriceCents"),
        (vec![("minPriceCents", "1.5")], "minPriceCents"),
        (vec![("minPriceCents", "cheap")], "minPriceCents"),
        (vec![("minPriceCents", "")], "minPriceCents"),
        (vec![("minPriceCents", "99999999999999999999")], "minPriceCents"),
        (vec![("maxPriceCents", "-100")], "maxPriceCents"),
        (vec![("maxPriceCents", "99999999999999999999")], "maxPriceCents"),
        (vec![("maxPriceCents", "")], "maxPriceCents"),
        (vec![("maxPriceCents", "1e3")], "maxPriceCents"),
        (vec![("minPriceCents", "5000"), ("maxPriceCents", "4000")], "minPriceCents"),
        (vec![("sort", "cheapest")], "sort"),
        (vec![("sort", "")], "sort"),
        (vec![("sort", "relevance")], "sort"),
        (vec![("sort", "PRICE")], "sort"),
        (vec![("sort", " price")], "sort"),
        (vec![("sort", "+price")], "sort"),
        (vec![("q", "   "), ("sort", "relevance")], "sort"),
    ];
    for (query, field) in cases {
        let resp = api.get("/v1/tickets").query(&query).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query:?}");
        let p = problem(resp, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{field}:")), "{query:?}: {detail}");
    }
    // Unknown and repeated parameters are refused by the query parser, which names them too.
    for (query, field) in [
        (vec![("color", "red")], "color"),
        (vec![("limit", "1"), ("limit", "2")], "limit"),
        (vec![("sort", "price"), ("sort", "-price")], "sort"),
    ] {
        let resp = api.get("/v1/tickets").query(&query).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query:?}");
        let p = problem(resp, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{field}`")), "{query:?}: {detail}");
    }
    // The longest q is fine (in characters, not bytes), and so are the edges of every range.
    let max_q = "b".repeat(200);
    let max_q_wide = "é".repeat(200);
    for ok in [
        vec![("q", max_q.as_str())],
        vec![("q", max_q_wide.as_str())],
        vec![("q", "")],
        vec![("limit", "1")],
        vec![("limit", "100")],
        vec![("available", "false")],
        vec![("minPriceCents", "0"), ("maxPriceCents", "0")],
        vec![("minPriceCents", "4500"), ("maxPriceCents", "4500")],
        vec![("maxPriceCents", "9223372036854775807")],
        vec![("available", "true"), ("sort", "-price")],
        vec![("sort", "price")],
        vec![("sort", "newest")],
        vec![("q", "rock"), ("sort", "relevance")],
        vec![("q", "rock"), ("sort", "newest")],
    ] {
        page(&api, &ok).await;
    }
    // The OpenAPI document names every parameter.
    let doc: Value = api.get("/openapi.json").send().await.unwrap().json().await.unwrap();
    let params: Vec<&str> = doc["paths"]["/v1/tickets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["limit", "cursor", "q", "available", "minPriceCents", "maxPriceCents", "sort"] {
        assert!(params.contains(&name), "{name} missing from {params:?}");
    }
    // ... with the types and bounds checked above, and the 400 problem.
    let get = &doc["paths"]["/v1/tickets"]["get"];
    let schema = |name: &str| {
        let p = get["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["in"], "query", "{p}");
        assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{name} is described: {p}");
        p["schema"].clone()
    };
    let limit = schema("limit");
    assert_eq!((limit["minimum"].as_i64(), limit["maximum"].as_i64()), (Some(1), Some(100)), "{limit}");
    assert!(schema("available").to_string().contains("boolean"));
    for bound in ["minPriceCents", "maxPriceCents"] {
        let s = schema(bound);
        assert!(s.to_string().contains("integer") && s["minimum"] == 0, "{bound}: {s}");
    }
    let sort = schema("sort").to_string();
    for value in ["relevance", "-price", "newest"] {
        assert!(sort.contains(value), "sort documents {value}: {sort}");
    }
    let bad = &get["responses"]["400"]["content"]["application/problem+json"];
    assert!(bad.is_object(), "GET /v1/tickets documents its 400: {get}");
    let exact = page(&api, &[("minPriceCents", "4500"), ("maxPriceCents", "4500")]).await;
    assert_eq!(names(&exact), ["Rock Concert Berlin"]);
}

#[tokio::test]
async fn available_follows_the_stock_within_a_second_and_etags_hold() {
    let api = TestApi::start().await;
    let ticket = create(&api, "Rock Concert Berlin", 4500, 10).await;
    create(&api, "Rust Conf Berlin", 3000, 10).await;
    let id: uuid::Uuid = ticket["id"].as_str().unwrap().parse().unwrap();
    for query in [vec![("available", "true")], vec![("available", "true"), ("q", "berln")]] {
        assert_eq!(page(&api, &query).await["items"].as_array().unwrap().len(), 2, "{query:?}");
    }
    let first = api.get("/v1/tickets").query(&[("available", "true"), ("q", "berln")]).send().await.unwrap();
    let tag = first.headers()["etag"].clone();
    let again = api
        .get("/v1/tickets")
        .query(&[("available", "true"), ("q", "berln")])
        .header("if-none-match", tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Sold out behind the api's back (no event): the poll alone must hide it within 1 s.
    let db = sqlx::PgPool::connect(&api.stack.database_url).await.unwrap();
    sqlx::query("UPDATE tickets SET available = 0, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        let plain = page(&api, &[("available", "true")]).await;
        let searched = page(&api, &[("available", "true"), ("q", "berln")]).await;
        if names(&plain) == ["Rust Conf Berlin"] && names(&searched) == ["Rust Conf Berlin"] {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "still listed after 1 s: {plain} {searched}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = api
        .get("/v1/tickets")
        .query(&[("available", "true"), ("q", "berln")])
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "another answer, another tag");
}
