//! The runner end to end against a small in-process fake of the api: an honest
//! fake must pass every check, and one that oversells must be caught.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};
use tps_loadtest::cli::{Cli, Scenario};
use uuid::Uuid;

#[derive(Default)]
struct Fake {
    oversell: bool,
    tickets: Mutex<HashMap<Uuid, (i64, i64)>>,
    orders: Mutex<HashMap<Uuid, &'static str>>,
}

async fn create_ticket(State(f): State<Arc<Fake>>, Json(b): Json<Value>) -> (StatusCode, Json<Value>) {
    let id = Uuid::new_v4();
    let total = b["totalQuantity"].as_i64().unwrap();
    f.tickets.lock().unwrap().insert(id, (total, total));
    (StatusCode::CREATED, Json(json!({ "id": id, "totalQuantity": total, "available": total })))
}

async fn get_ticket(State(f): State<Arc<Fake>>, Path(id): Path<Uuid>) -> Json<Value> {
    let (total, available) = f.tickets.lock().unwrap()[&id];
    Json(
        json!({ "id": id, "totalQuantity": total, "available": available.max(0), "soldOut": available <= 0 }),
    )
}

async fn place(State(f): State<Arc<Fake>>, Json(b): Json<Value>) -> (StatusCode, Json<Value>) {
    let ticket: Uuid = b["ticketId"].as_str().unwrap().parse().unwrap();
    let mut tickets = f.tickets.lock().unwrap();
    let (_, available) = tickets.get_mut(&ticket).unwrap();
    // The honest fake answers 409 once sold out; the broken one keeps confirming.
    if *available <= 0 && !f.oversell {
        return (StatusCode::CONFLICT, Json(json!({ "status": "REJECTED", "reason": "SOLD_OUT" })));
    }
    *available -= 1;
    let id = Uuid::new_v4();
    f.orders.lock().unwrap().insert(id, "CONFIRMED");
    (StatusCode::ACCEPTED, Json(json!({ "id": id, "status": "PENDING", "ticketId": ticket, "quantity": 1 })))
}

async fn get_order(State(f): State<Arc<Fake>>, Path(id): Path<Uuid>) -> Result<Json<Value>, StatusCode> {
    let status = *f.orders.lock().unwrap().get(&id).ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(json!({ "id": id, "status": status, "processedAt": chrono::Utc::now() })))
}

async fn serve(oversell: bool) -> String {
    let fake = Arc::new(Fake { oversell, ..Fake::default() });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/tickets", post(create_ticket))
        .route("/v1/tickets/{id}", get(get_ticket))
        .route("/v1/orders", post(place))
        .route("/v1/orders/{id}", get(get_order))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn flash_sale(url: &str, extra: &[&str]) -> tps_loadtest::report::Report {
    let mut args = vec![
        "loadtest",
        "flash-sale",
        "--base-url",
        url,
        "--jwt-secret",
        "k",
        "--requests",
        "3000",
        "--users",
        "50",
    ];
    args.extend(["--tickets", "500", "--connections", "16", "--ws-sample", "0", "--settle-timeout", "5s"]);
    args.extend(extra);
    let Some(Scenario::FlashSale(a)) = Cli::try_parse_from(args).unwrap().scenario() else { unreachable!() };
    tps_loadtest::scenario::flash_sale::run(a).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_sale_passes_and_reports_everything() {
    let report = flash_sale(&serve(false).await, &["--ticket-rows", "3"]).await;
    println!("{}", tps_loadtest::report::table::render(&report));
    let main = report.main_phase().unwrap();
    assert!(report.passed, "{}", tps_loadtest::report::table::render(&report));
    assert_eq!(main.requests, 3000);
    assert_eq!(main.count(202), 500, "exactly the stock is accepted");
    assert_eq!(main.count(409), 2500);
    assert_eq!(report.facts["sold"], 500);
    assert!(report.ratio.unwrap().throughput > 0.0);
    assert_eq!(report.phases[0].name, "noop");
    assert!(report.settle.as_ref().unwrap().after_last_request_s.is_some());
    assert!(!main.timeline.is_empty());
    let dir = std::env::temp_dir().join(format!("lt-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    tps_loadtest::report::chart::draw(&report, &dir.join("r.svg")).unwrap();
    assert!(std::fs::read_to_string(dir.join("r.svg")).unwrap().contains("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overselling_api_is_caught() {
    let report = flash_sale(&serve(true).await, &["--no-baseline", "--rate", "5000"]).await;
    assert!(!report.passed);
    let failed: Vec<_> = report.verdicts.iter().filter(|v| !v.ok).map(|v| v.check).collect();
    assert!(failed.contains(&"oversold"), "{failed:?}");
    assert!(report.ratio.is_none(), "no baseline, no ratio");
}
