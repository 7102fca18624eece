//! `read-mix`: the catalog as shoppers read it (plain listings, searches with
//! typos, filters and sorts) and single gets, with a small share of orders,
//! against tickets with plenty of stock.
//!
//! Request `i` is an order, a get, a search, a filtered listing or a plain
//! listing by a fixed hash of `i`, so every run with the same flags sends the
//! same mix. Each shape's latency is reported on its own; the ratio compares the
//! whole mix with the no-op route (run with `--order-share 0 --get-share 0
//! --search-share 0 --filter-share 0` to measure the cached listing alone).
//! `--unique-searches` makes every search text new, so that each one reaches
//! Postgres instead of the api's search cache.

use std::sync::Arc;

use crate::cli::ReadMixArgs;
use crate::error::{Error, Result};
use crate::http::{Answer, Call, Conn};
use crate::load::Workload;
use crate::report::Report;
use crate::scenario::context::Context;
use crate::scenario::orders::{self, Accepted, OrderMaker};
use crate::scenario::{noop, setup};

/// Route tags, in the order of [`ROUTES`].
const LIST: u8 = 0;
const GET: u8 = 1;
const ORDER: u8 = 2;
/// `q` with a misspelling, ranked by relevance.
const SEARCH: u8 = 3;
/// `q` with a misspelling, `available=true` and a price ceiling, sorted by price.
const SEARCH_FILTERED: u8 = 4;
/// No `q`: `available=true` and a price range, sorted by price (either way).
const FILTERED: u8 = 5;
const ROUTES: [&str; 6] = ["list", "get", "order", "search", "search+filter", "filter+sort"];

/// The catalog of the mix: store-like names (each made unique by the run id) and prices.
const NAMES: [(&str, i64); 10] = [
    ("Rock Concert Berlin", 4500),
    ("North Stand Season Pass", 30000),
    ("Opera Vienna Gala", 12000),
    ("Jazz Night Paris", 3000),
    ("South Stand Family Ticket", 8000),
    ("Champions League Final", 50000),
    ("Symphony Orchestra Evening", 6000),
    ("Comedy Club Friday", 2000),
    ("Rust Conf Berlin", 3000),
    ("Indie Festival Lisbon", 9500),
];

/// Searches as shoppers type them: (query, the name meant).
/// Each one is checked once before the run, so no shape measures empty answers.
const TYPOS: [(&str, &str); 8] = [
    ("concrt berlin", "Rock Concert Berlin"),
    ("north stnd", "North Stand Season Pass"),
    ("opra vienna", "Opera Vienna Gala"),
    ("champions leage", "Champions League Final"),
    ("symphny orchestra", "Symphony Orchestra Evening"),
    ("comedy clb", "Comedy Club Friday"),
    ("paris jaz", "Jazz Night Paris"),
    ("indie festval", "Indie Festival Lisbon"),
];

/// The shares of each kind of request (the rest are plain listings).
struct Shares {
    order: f64,
    get: f64,
    search: f64,
    filter: f64,
}

struct ReadMix {
    maker: OrderMaker,
    users: u64,
    shares: Shares,
    page_size: u32,
    unique_searches: bool,
}

impl ReadMix {
    fn route(&self, i: u64) -> u8 {
        let x = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 10_000) as f64 / 10_000.0;
        let Shares { order, get, search, filter } = self.shares;
        // Searches split evenly into plain and filtered by another bit of the hash.
        let odd = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) & 1 == 1;
        if x < order {
            ORDER
        } else if x < order + get {
            GET
        } else if x < order + get + search {
            if odd { SEARCH_FILTERED } else { SEARCH }
        } else if x < order + get + search + filter {
            FILTERED
        } else {
            LIST
        }
    }

    /// The path of listing shape `route` for request `i`.
    fn listing(&self, route: u8, i: u64) -> String {
        let limit = self.page_size;
        let mut q = encode(TYPOS[(i % TYPOS.len() as u64) as usize].0);
        if self.unique_searches {
            // Excluding a word no name has keeps the matches and makes the text new,
            // so the api's search cache misses and Postgres runs the search.
            q.push_str(&format!("%20-zq{i}"));
        }
        match route {
            SEARCH => format!("/v1/tickets?limit={limit}&q={q}"),
            SEARCH_FILTERED => {
                format!("/v1/tickets?limit={limit}&q={q}&available=true&maxPriceCents=40000&sort=price")
            }
            FILTERED => {
                let sort = if i.is_multiple_of(2) { "price" } else { "-price" };
                format!(
                    "/v1/tickets?limit={limit}&available=true&minPriceCents=2500&maxPriceCents=20000&sort={sort}"
                )
            }
            _ => format!("/v1/tickets?limit={limit}"),
        }
    }

    fn who(&self, i: u64) -> (u32, u32) {
        ((i % self.users) as u32, (i % self.maker.tickets.len() as u64) as u32)
    }
}

impl Workload for ReadMix {
    type Note = Accepted;

    fn call(&self, i: u64) -> Call {
        let (user, row) = self.who(i);
        let auth = self.maker.users[user as usize].auth.clone();
        match self.route(i) {
            ORDER => self.maker.call(i, user, row).with_route(ORDER),
            GET => Call::get(format!("/v1/tickets/{}", self.maker.tickets[row as usize]))
                .with_auth(auth)
                .with_route(GET),
            listing => Call::get(self.listing(listing, i)).with_auth(auth).with_route(listing),
        }
    }

    fn note(&self, i: u64, answer: &Answer) -> Option<Accepted> {
        let (user, row) = self.who(i);
        (self.route(i) == ORDER).then(|| self.maker.accepted(answer, user, row)).flatten()
    }
}

/// Runs the mix and verifies its orders.
pub async fn run(args: ReadMixArgs) -> Result<Report> {
    let ctx = Context::new(args.common.clone())?;
    crate::nofile::raise_nofile(args.common.connections as u64 + 1024)?;
    let users = Arc::new(setup::users(&ctx.common.jwt_secret, &ctx.run_id, args.users.max(1)));
    let admin = setup::admin(&ctx.common.jwt_secret, &ctx.run_id);
    let rows = args.ticket_rows.max(1);
    let mut tickets = Vec::new();
    for r in 0..rows {
        let (name, price) = NAMES[r as usize % NAMES.len()];
        let name = format!("{name} {} {r}", ctx.run_id);
        tickets.push(setup::create_priced_ticket(&ctx.target, &admin, &name, price, args.stock, 5).await?);
    }
    check_searches(&ctx, &admin).await?;
    let stock = vec![args.stock; rows as usize];
    let plan = ctx.plan(args.requests, ctx.common.connections, 1);
    let baseline = noop::baseline(&ctx, plan.clone()).await;
    let workload = Arc::new(ReadMix {
        maker: OrderMaker::new(tickets, users, 1, ctx.run_id.clone()),
        users: args.users.max(1),
        shares: Shares {
            order: args.order_share.clamp(0.0, 1.0),
            get: args.get_share.clamp(0.0, 1.0),
            search: args.search_share.clamp(0.0, 1.0),
            filter: args.filter_share.clamp(0.0, 1.0),
        },
        page_size: args.page_size,
        unique_searches: args.unique_searches,
    });
    let (run, main) = ctx.measure("read-mix", plan, workload.clone(), &ROUTES).await;
    let outcome = orders::verify(&ctx, &workload.maker, &run, &run.notes, &stock).await;
    let phases = baseline.into_iter().chain([main]).collect();
    Ok(ctx.report("read-mix", serde_json::to_value(&args)?, phases, outcome))
}

/// Fails the run when a misspelling does not find the ticket it means: a search
/// shape that found nothing would measure the cheapest answer there is.
async fn check_searches(ctx: &Context, auth: &http::HeaderValue) -> Result<()> {
    let mut conn = Conn::open(&ctx.target, None).await?;
    for (q, meant) in TYPOS {
        let call = Call::get(format!("/v1/tickets?limit=100&q={}", encode(q))).with_auth(auth.clone());
        let page: serde_json::Value = conn.json("search check", &call, 200).await?;
        let names = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !names.iter().any(|t| t["name"].as_str().is_some_and(|n| n.starts_with(meant))) {
            return Err(Error::Setup(format!("q={q:?} did not find {meant:?}: {page}")));
        }
    }
    Ok(())
}

/// Percent-encodes a query value (letters and digits stay, the rest is `%XX`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(search: f64, filter: f64) -> ReadMix {
        ReadMix {
            maker: OrderMaker::new(vec![uuid::Uuid::nil()], Arc::new(Vec::new()), 1, "r".into()),
            users: 1,
            shares: Shares { order: 0.02, get: 0.3, search, filter },
            page_size: 20,
            unique_searches: false,
        }
    }

    #[test]
    fn every_shape_gets_about_its_share() {
        let m = mix(0.2, 0.15);
        let mut counts = [0u32; ROUTES.len()];
        for i in 0..100_000 {
            counts[m.route(i) as usize] += 1;
        }
        let share = |r: u8| f64::from(counts[r as usize]) / 100_000.0;
        assert!((share(SEARCH) + share(SEARCH_FILTERED) - 0.2).abs() < 0.01, "{counts:?}");
        assert!((share(SEARCH) - share(SEARCH_FILTERED)).abs() < 0.01, "{counts:?}");
        assert!((share(FILTERED) - 0.15).abs() < 0.01, "{counts:?}");
        assert!((share(LIST) - 0.33).abs() < 0.01, "{counts:?}");
        let none = mix(0.0, 0.0);
        assert!((0..10_000).all(|i| ![SEARCH, SEARCH_FILTERED, FILTERED].contains(&none.route(i))));
    }

    #[test]
    fn listing_paths_carry_each_shape() {
        let m = mix(0.2, 0.15);
        assert_eq!(m.listing(LIST, 0), "/v1/tickets?limit=20");
        assert_eq!(m.listing(SEARCH, 0), "/v1/tickets?limit=20&q=concrt%20berlin");
        assert!(m.listing(SEARCH_FILTERED, 1).contains("q=north%20stnd&available=true&maxPriceCents="));
        assert!(m.listing(FILTERED, 0).ends_with("sort=price"));
        assert!(m.listing(FILTERED, 1).ends_with("sort=-price"));
        let unique = ReadMix { unique_searches: true, ..mix(0.2, 0.15) };
        assert_eq!(unique.listing(SEARCH, 8), "/v1/tickets?limit=20&q=concrt%20berlin%20-zq8");
        assert_eq!(unique.listing(LIST, 8), "/v1/tickets?limit=20");
    }
}
