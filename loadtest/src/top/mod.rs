//! `loadtest top`: a one-screen live status from the `/metrics` endpoints of
//! the api and workers, refreshed every second, for people without Grafana.

pub mod status;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::http::{Call, Conn, Target};
use status::{Snapshot, Status};
use tps_testkit::metrics::{Sample, parse};

/// Options of `loadtest top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The `/metrics` URLs of every api and worker (comma-separated or repeated).
    #[arg(long = "url", value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// Time between screens (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub every: Duration,
    /// Stop after this many screens (0: until ctrl-c).
    #[arg(long, default_value_t = 0)]
    pub iterations: u64,
}

/// Scrapes every endpoint each interval and redraws the screen.
pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let endpoints: Vec<Endpoint> =
        args.urls.iter().map(|u| Endpoint::parse(u)).collect::<anyhow::Result<_>>()?;
    let (mut prev, _) = scrape_all(&endpoints).await;
    let mut taken = Instant::now();
    let mut screens = 0;
    loop {
        tokio::time::sleep(args.every).await;
        let (now, unreachable) = scrape_all(&endpoints).await;
        let mut status = Status::between(&prev, &now, taken.elapsed().as_secs_f64());
        status.unreachable = unreachable;
        taken = Instant::now();
        prev = now;
        // Clear the screen and go home, unless piped: then frames just follow each other.
        let clear = if std::io::IsTerminal::is_terminal(&std::io::stdout()) { "\x1b[2J\x1b[H" } else { "" };
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "{clear}tps top — {} endpoint(s), every {:?}\n\n{}",
            endpoints.len(),
            args.every,
            status.render()
        )?;
        out.flush()?;
        screens += 1;
        if args.iterations > 0 && screens >= args.iterations {
            return Ok(());
        }
    }
}

/// One `/metrics` URL, split into where to connect and what to GET.
struct Endpoint {
    label: String,
    target: Arc<Target>,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("{url}: only http:// is supported"))?;
        let (host, path) =
            rest.split_once('/').map_or((rest, "/metrics".to_owned()), |(h, p)| (h, format!("/{p}")));
        let target = Arc::new(Target::parse(&format!("http://{host}"))?);
        Ok(Self { label: host.to_owned(), target, path })
    }

    async fn scrape(&self) -> anyhow::Result<Vec<Sample>> {
        let fetch = async {
            let mut conn = Conn::open(&self.target, None).await?;
            conn.send(&Call::get(self.path.clone())).await
        };
        let answer = tokio::time::timeout(Duration::from_secs(2), fetch).await??;
        anyhow::ensure!(answer.status == 200, "{} answered {}", self.label, answer.status);
        Ok(parse(&String::from_utf8_lossy(&answer.body)))
    }
}

/// Every endpoint at once; those that fail are listed and contribute nothing.
async fn scrape_all(endpoints: &[Endpoint]) -> (Snapshot, Vec<String>) {
    let pages = futures::future::join_all(endpoints.iter().map(Endpoint::scrape)).await;
    let (mut snapshot, mut unreachable) = (Vec::new(), Vec::new());
    for (endpoint, page) in endpoints.iter().zip(pages) {
        match page {
            Ok(samples) => snapshot.extend(samples.into_iter().map(|s| (endpoint.label.clone(), s))),
            Err(e) => unreachable.push(format!("{} ({e:#})", endpoint.label)),
        }
    }
    (snapshot, unreachable)
}
