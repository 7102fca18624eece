//! The live page in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test` installs): a signed-in buyer clicks Buy and sees the
//! order go from PENDING to CONFIRMED, and the stock fall, without a reload.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use tps_e2e::create_ticket;
use tps_testkit::{AppProcess, Stack, free_port, token};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed with the test.
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = free_port();
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
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

    let (_driver, driver_url) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities(profile.path()))
        .connect(&driver_url)
        .await
        .expect("a Chromium session");

    browser.goto(&format!("{}/#token={}", api.url(), token("alice", false))).await.unwrap();
    until(
        &browser,
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
        &browser,
        &format!("{status} === 'CONFIRMED' && {status}"),
        "CONFIRMED",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(confirmed, "CONFIRMED");
    until(&browser, &format!("{row} === '9'"), "the stock falling to 9", Duration::from_secs(5)).await;
    let same = browser.execute("return window.stillTheSamePage === true;", vec![]).await.unwrap();
    assert_eq!(same, true, "the page was not reloaded");

    if let Ok(dir) = std::env::var("TPS_SCREENSHOT_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("live-page.png"), png).unwrap();
    }
    browser.close().await.unwrap();
}
