//! The command line: one subcommand per scenario, sharing the run options, and `top`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

/// Runs a scenario of the public contract against any base URL and checks that
/// nothing was lost, duplicated or oversold.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `loadtest` does: run a scenario, or watch a running system.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// A load scenario: a report and consistency verdicts (`loadtest flash-sale …`).
    #[command(flatten)]
    Run(Scenario),
    /// A live one-screen status from the `/metrics` of the api and workers; no load, no verdict.
    Top(crate::top::TopArgs),
}

impl Cli {
    /// The scenario of a command line, or `None` for `top`.
    pub fn scenario(self) -> Option<Scenario> {
        match self.command {
            Command::Run(scenario) => Some(scenario),
            Command::Top(_) => None,
        }
    }
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N order requests from U users for T tickets of stock; every 202 must settle, none oversold.
    FlashSale(FlashSaleArgs),
    /// N sign-ups over N simultaneous connections, each sending one, all at once.
    SignupBurst(SignupArgs),
    /// Sign-ups at the highest sustainable rate (closed model) or at `--rate`.
    SignupSustained(SignupArgs),
    /// Ticket listing and gets, with a small share of orders.
    ReadMix(ReadMixArgs),
}

impl Scenario {
    /// Where the report goes (`--report`), if anywhere.
    pub fn report_path(&self) -> Option<PathBuf> {
        match self {
            Scenario::FlashSale(a) => a.common.report.clone(),
            Scenario::SignupBurst(a) | Scenario::SignupSustained(a) => a.common.report.clone(),
            Scenario::ReadMix(a) => a.common.report.clone(),
        }
    }
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// The api's base URL (http only).
    #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// HS256 secret for minting bearer tokens.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: String,
    /// Connections (closed model: each sends as soon as its answer came; open model: the most in flight).
    #[arg(long, default_value_t = 1024)]
    pub connections: usize,
    /// Open model: constant arrival rate in requests/s, latency measured from the intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Postgres URL: also verify against the database.
    #[arg(long)]
    #[serde(skip)]
    pub database_url: Option<String>,
    /// How long to wait for everything accepted to become final (e.g. 120s, 2m).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub settle_timeout: Duration,
    /// Give up on one answer after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub request_timeout: Duration,
    /// Write the JSON report here; the chart goes next to it (`.svg`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Server pids to sample CPU and memory of (comma-separated or repeated).
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Server process names to sample (comm or argv[0] file name).
    #[arg(
        long = "process-name",
        value_delimiter = ',',
        default_value = "api,worker,tps-api,tps-worker,nats-server,postgres,redis-server"
    )]
    pub process_names: Vec<String>,
    /// Skip the no-op baseline phase (no ratio then).
    #[arg(long)]
    pub no_baseline: bool,
    /// Spread connections over 127.0.0.1..N (0: automatic, one address per 25,000 loopback connections).
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,
    /// Connections opened at once before a phase starts.
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// A tag for names, emails and keys (default: random), so runs never collide.
    #[arg(long)]
    pub run_id: Option<String>,
}

/// `flash-sale` options.
#[derive(Debug, Clone, Args, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlashSaleArgs {
    /// Shared options.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Order requests to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Distinct buyers (request i is sent by user i mod U).
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Total stock on sale.
    #[arg(long, default_value_t = 50_000)]
    pub tickets: u64,
    /// Ticket rows the stock is split over, evenly (request i buys row i mod R).
    #[arg(long, default_value_t = 1)]
    pub ticket_rows: u64,
    /// Quantity per order.
    #[arg(long, default_value_t = 1)]
    pub quantity: u32,
    /// Buyers holding a WebSocket to measure the commit-to-client delay.
    #[arg(long, default_value_t = 200)]
    pub ws_sample: u64,
}

/// `signup-burst` and `signup-sustained` options.
#[derive(Debug, Clone, Args, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupArgs {
    /// Shared options (`signup-burst` ignores `--connections` and `--rate`: one connection per sign-up).
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Sign-ups to send (default: 100,000 for the burst, 1,000,000 sustained).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Share of sign-ups that reuse an earlier email (in another case); each must be REJECTED, never CREATED twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_share: f64,
    /// `signup-burst`: the most connections one load process holds (0: as many as its
    /// open-file limit allows); more are spread over several processes.
    #[arg(long, default_value_t = 0)]
    pub connections_per_process: u64,
    /// Internal: run only this part of a burst spread over processes (`crate::parts`).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub part: Option<crate::parts::Part>,
}

/// `read-mix` options.
#[derive(Debug, Clone, Args, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMixArgs {
    /// Shared options.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Requests to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Share of requests that are orders.
    #[arg(long, default_value_t = 0.02)]
    pub order_share: f64,
    /// Share of requests that get one ticket.
    #[arg(long, default_value_t = 0.3)]
    pub get_share: f64,
    /// Share of requests that search with a misspelling (`q`), half of them also
    /// filtered (`available`, `maxPriceCents`) and sorted by price.
    #[arg(long, default_value_t = 0.2)]
    pub search_share: f64,
    /// Share of requests that list with filters (`available`, a price range) sorted by
    /// price either way; the rest are plain listings (newest first).
    #[arg(long, default_value_t = 0.15)]
    pub filter_share: f64,
    /// Tickets created for the mix.
    #[arg(long, default_value_t = 20)]
    pub ticket_rows: u64,
    /// Stock of each.
    #[arg(long, default_value_t = 1_000_000)]
    pub stock: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Page size of the listing.
    #[arg(long, default_value_t = 20)]
    pub page_size: u32,
    /// Make every search's text unique (a misspelling plus an exclusion of a word no name
    /// has: the same matches), so each one misses the api's search cache and runs in Postgres.
    #[arg(long)]
    pub unique_searches: bool,
}

/// Parses `90`, `90s`, `500ms` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) =
        s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn flash_sale_defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["loadtest", "flash-sale", "--jwt-secret", "k"]).unwrap();
        let Some(Scenario::FlashSale(a)) = cli.scenario() else { panic!("flash-sale") };
        assert_eq!((a.requests, a.users, a.tickets, a.ticket_rows), (1_000_000, 100_000, 50_000, 1));
        assert_eq!(a.common.connections, 1024);
        assert!(a.common.rate.is_none());
        let json = serde_json::to_value(&a).unwrap();
        assert!(json.get("jwtSecret").is_none(), "secrets stay out of the report");
    }

    #[test]
    fn top_is_a_command_beside_the_scenarios_not_one_of_them() {
        let top = Cli::try_parse_from(["loadtest", "top", "--url", "http://127.0.0.1:9090/metrics"]).unwrap();
        assert!(matches!(top.command, Command::Top(_)));
        assert!(top.scenario().is_none());
        let run = Cli::try_parse_from(["loadtest", "read-mix", "--jwt-secret", "k", "--report", "r/x.json"])
            .unwrap();
        let Some(scenario) = run.scenario() else { panic!("read-mix is a scenario") };
        assert_eq!(scenario.report_path(), Some(PathBuf::from("r/x.json")));
    }
}
