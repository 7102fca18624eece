//! The live page in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test` installs): a signed-in buyer clicks Buy and sees the
//! order go from PENDING to CONFIRMED, and the stock fall, without a reload; a
//! shopper types a misspelling and finds the ticket meant, then narrows the list
//! with the filters and reorders it with the sort.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use tps_e2e::create_ticket;
use tps_testkit::{AppProcess, Stack, free_port, token};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session, with the chromedriver (killed with the test) and profile it lives on.
struct Browser {
    client: fantoccini::Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// chromedriver leads its own process group, Chromium's processes included: ending the
    /// group ends them all, also when a failed assertion skipped `close` (killing chromedriver
    /// alone would leave Chromium running on the shared cores).
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

async fn browser() -> Browser {
    let (driver, driver_url) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities(profile.path()))
        .connect(&driver_url)
        .await
        .expect("a Chromium session");
    Browser { client, driver, _profile: profile }
}

/// chromedriver on a free port, killed with the test.
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = free_port();
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{CHROMEDRIVER}: {e} (install chromium and chromium-driver; scripts/test does)")
        });
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{url}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {url}");
}

/// Chromium for a closed network: no sandbox (root in CI), no GPU, nothing fetched in the background.
fn capabilities(profile: &std::path::Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    caps.as_object().unwrap().clone()
}

/// Polls `script` (an expression) in the page until it is truthy; panics with `what` after `limit`.
async fn until(browser: &fantoccini::Client, script: &str, what: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = browser.execute(&format!("return {script};"), vec![]).await.unwrap();
        if !value.is_null() && value != json!(false) && value != json!("") {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let body = browser.execute("return document.body.innerText;", vec![]).await.unwrap();
            panic!("{what} not seen within {limit:?}; the page says:\n{}", body.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_sees_the_order_confirmed_live_without_a_reload() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
    let ticket = create_ticket(api.url(), 10, 5).await.unwrap();

    let session = browser().await;
    let browser = &session.client;

    browser.goto(&format!("{}/#token={}", api.url(), token("alice", false))).await.unwrap();
    until(
        browser,
        "document.getElementById('live').textContent === 'live'",
        "the WebSocket",
        Duration::from_secs(10),
    )
    .await;
    let buy = browser
        .wait()
        .for_element(Locator::Css(&format!("tr[data-ticket='{ticket}'] button.buy")))
        .await
        .unwrap();
    let row = format!("document.querySelector(\"tr[data-ticket='{ticket}'] .available\").textContent");
    assert_eq!(browser.execute(&format!("return {row};"), vec![]).await.unwrap(), "10");
    assert!(
        !browser.current_url().await.unwrap().as_str().contains("token="),
        "the token leaves the address bar"
    );

    // A reload would lose this mark.
    browser.execute("window.stillTheSamePage = true;", vec![]).await.unwrap();
    buy.click().await.unwrap();
    let status = "document.querySelector('tr[data-order] .status')?.textContent";
    let confirmed = until(
        browser,
        &format!("{status} === 'CONFIRMED' && {status}"),
        "CONFIRMED",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(confirmed, "CONFIRMED");
    until(browser, &format!("{row} === '9'"), "the stock falling to 9", Duration::from_secs(5)).await;
    let same = browser.execute("return window.stillTheSamePage === true;", vec![]).await.unwrap();
    assert_eq!(same, true, "the page was not reloaded");

    if let Ok(dir) = std::env::var("TPS_SCREENSHOT_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("live-page.png"), png).unwrap();
    }
    browser.clone().close().await.unwrap();
}

/// The names in the ticket table, top to bottom, joined by `|`.
const LISTED: &str = "Array.from(document.querySelectorAll('#tickets tr[data-ticket] td.name'), td => td.textContent).join('|')";

/// Waits until the ticket table lists exactly `names`, in this order.
async fn until_listed(browser: &fantoccini::Client, names: &[&str], after: &str) {
    let want = names.join("|");
    let what = format!("the list {want:?} after {after}");
    until(browser, &format!("{LISTED} === {want:?}"), &what, Duration::from_secs(10)).await;
}

/// Replaces the text of the input `id` with `text`, as typed.
async fn type_into(browser: &fantoccini::Client, id: &str, text: &str) {
    let input = browser.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    if !text.is_empty() {
        input.send_keys(text).await.unwrap();
    }
}

async fn create_named_ticket(base: &str, name: &str, price_cents: i64, total: i64) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/tickets"))
        .bearer_auth(token("e2e-admin", true))
        .json(&json!({"name": name, "totalQuantity": total, "priceCents": price_cents}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "create {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_finds_a_misspelled_ticket_and_narrows_the_list_with_filters() {
    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    // Created in this order, so the default listing (newest first) is the reverse.
    for (name, price, stock) in [
        ("Rock Concert Berlin", 4500, 10),
        ("Jazz Night Paris", 3000, 0),
        ("North Stand Season Pass", 30000, 10),
    ] {
        create_named_ticket(api.url(), name, price, stock).await;
    }
    let session = browser().await;
    let browser = &session.client;
    browser.goto(api.url()).await.unwrap();
    until_listed(browser, &["North Stand Season Pass", "Jazz Night Paris", "Rock Concert Berlin"], "loading")
        .await;

    // One letter missing still finds the concert, and only it.
    type_into(browser, "q", "concrt").await;
    until_listed(browser, &["Rock Concert Berlin"], "typing 'concrt'").await;
    let summary = browser.find(Locator::Id("summary")).await.unwrap().text().await.unwrap();
    assert!(summary.contains("1 ticket matching"), "{summary}");
    type_into(browser, "q", "paris jaz").await;
    until_listed(browser, &["Jazz Night Paris"], "typing 'paris jaz'").await;

    // Jazz Night Paris is sold out: "available only" empties this search.
    browser.find(Locator::Id("available")).await.unwrap().click().await.unwrap();
    until(
        browser,
        "document.querySelector('#tickets tr.empty')?.textContent === 'no tickets match'",
        "no match once sold-out tickets are hidden",
        Duration::from_secs(10),
    )
    .await;
    type_into(browser, "q", "").await;
    until_listed(browser, &["North Stand Season Pass", "Rock Concert Berlin"], "clearing the search").await;

    // A price ceiling of 50.00 leaves the concert (45.00); then the sorts reorder.
    type_into(browser, "maxPrice", "50").await;
    until_listed(browser, &["Rock Concert Berlin"], "a price ceiling of 50").await;
    type_into(browser, "maxPrice", "").await;
    browser.find(Locator::Id("available")).await.unwrap().click().await.unwrap();
    let sort = browser.find(Locator::Id("sort")).await.unwrap();
    sort.select_by_value("price").await.unwrap();
    until_listed(
        browser,
        &["Jazz Night Paris", "Rock Concert Berlin", "North Stand Season Pass"],
        "sort=price",
    )
    .await;
    sort.select_by_value("-price").await.unwrap();
    until_listed(
        browser,
        &["North Stand Season Pass", "Rock Concert Berlin", "Jazz Night Paris"],
        "sort=-price",
    )
    .await;
    // A bad bound shows the api's problem, naming the field.
    type_into(browser, "minPrice", "-1").await;
    until(
        browser,
        "document.getElementById('error').textContent.includes('minPriceCents')",
        "the 400 naming minPriceCents",
        Duration::from_secs(10),
    )
    .await;

    if let Ok(dir) = std::env::var("TPS_SCREENSHOT_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("live-page-search.png"), png).unwrap();
    }
    browser.clone().close().await.unwrap();
}

/// The number of points of the line `series` in the chart `chart`, or 0 when it is not drawn.
fn points_of(chart: &str, series: &str) -> String {
    format!(
        "(document.querySelector('#{chart} polyline[data-series=\"{series}\"]')?.getAttribute('points') || '')\
         .trim().split(' ').filter(p => p).length"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_report_page_draws_every_chart_and_marks_the_sell_out_and_the_settling() {
    use clap::Parser;
    use tps_loadtest::cli::{Cli, Scenario};

    let stack = Stack::start().await.unwrap();
    let api = AppProcess::api(&stack, 4, &[]).await.unwrap();
    let _worker = AppProcess::worker(&stack, 4, &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "loadtest",
        "flash-sale",
        "--base-url",
        api.url(),
        "--jwt-secret",
        tps_testkit::TEST_JWT_SECRET,
        "--requests",
        "600",
        "--users",
        "150",
        "--tickets",
        "200",
        "--connections",
        "16",
        "--ws-sample",
        "0",
        "--no-baseline",
        "--settle-timeout",
        "60s",
        "--database-url",
        &stack.database_url,
    ];
    let Some(Scenario::FlashSale(a)) = Cli::try_parse_from(args).unwrap().scenario() else { unreachable!() };
    let report = tps_loadtest::scenario::flash_sale::run(a).await.unwrap();
    assert!(report.passed, "{}", tps_loadtest::report::table::render(&report));
    let flow = report.flow.as_ref().expect("a flash sale reports its flow");
    assert!(flow.sold_out_at_s.is_some() && flow.settled_at_s.is_some(), "{flow:?}");
    let page = dir.path().join("flash-sale.html");
    std::fs::write(&page, tps_loadtest::report::page::render(&report)).unwrap();

    let session = browser().await;
    let browser = &session.client;
    browser.goto(&format!("file://{}", page.display())).await.unwrap();
    until(browser, "document.body.dataset.drawn === 'true'", "the charts drawn", Duration::from_secs(10))
        .await;
    let eval =
        |script: String| async move { browser.execute(&format!("return {script};"), vec![]).await.unwrap() };

    assert_eq!(
        eval("document.querySelector('#title .verdict').textContent".into()).await,
        "every check passed"
    );
    // Answers by status: the 202s and the sold-out 409s, each a line over the seconds of the run.
    let seconds = report.phases.last().unwrap().answers.len() as u64;
    for status in ["202", "409"] {
        assert_eq!(eval(points_of("answers", status)).await, seconds, "the {status} line");
    }
    for series in ["p50", "p99", "max"] {
        assert!(eval(points_of("latency", series)).await.as_u64().unwrap() >= 1, "latency {series}");
    }
    let flow_seconds = flow.seconds.len() as u64;
    for series in ["accepted", "settled", "sold"] {
        assert_eq!(eval(points_of("flow", series)).await, flow_seconds, "the {series} line");
    }
    assert_eq!(eval(points_of("backlog", "backlog")).await, flow_seconds);
    assert!(eval(points_of("lag", "p99")).await.as_u64().unwrap() >= 1, "the settle lag");
    assert!(eval(points_of("cpu", "loadtest")).await.as_u64().unwrap() >= 1, "the runner's own CPU");
    assert_eq!(eval("document.querySelectorAll('#flow line.mark.stock').length".into()).await, 1);
    // The two moments, on every chart that has a time axis.
    for mark in ["sold-out", "settled"] {
        let count = eval(format!("document.querySelectorAll('section.chart line.mark.{mark}').length")).await;
        assert_eq!(count, 6, "the {mark} mark on all six charts");
    }
    let sold_out =
        eval("document.querySelector('[data-figure=\"sold out at s\"] b').textContent".into()).await;
    assert_ne!(sold_out, "—", "the sell-out moment is a figure too");
    let checks = eval("document.querySelectorAll('#verdicts tr[data-check]').length".into()).await;
    assert_eq!(checks, report.verdicts.len() as u64);
    assert_eq!(eval("document.querySelectorAll('#verdicts td.fail').length".into()).await, 0);

    if let Ok(dir) = std::env::var("TPS_SCREENSHOT_DIR") {
        std::fs::write(
            std::path::Path::new(&dir).join("report-page.png"),
            browser.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    browser.clone().close().await.unwrap();
}
