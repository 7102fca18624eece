//! What `GET /v1/tickets` was asked: the search, the filters, the sort, and the
//! keyset cursor that continues exactly that query.
//!
//! Every parameter is parsed here, so a bad one is a 400 whose detail starts
//! with the parameter's name. A cursor carries a hash of the query's *shape*
//! (`q`, `available`, the price bounds and the sort; not `limit`), so a cursor
//! handed to another query is refused instead of silently starting a wrong page.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Ticket;
use crate::error::ApiError;

/// Longest `q`, in characters.
pub const MAX_Q_CHARS: usize = 200;

/// The order of a catalog page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sort {
    /// Best match first (then id); needs `q`.
    Relevance,
    /// Cheapest first (then id).
    Price,
    /// Dearest first (then id, descending).
    PriceDesc,
    /// Most recently created first (then id, descending).
    Newest,
}

impl Sort {
    fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "relevance" => Ok(Self::Relevance),
            "price" => Ok(Self::Price),
            "-price" => Ok(Self::PriceDesc),
            "newest" => Ok(Self::Newest),
            _ => Err(bad("sort", "must be one of relevance, price, -price, newest")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Relevance => "relevance",
            Self::Price => "price",
            Self::PriceDesc => "-price",
            Self::Newest => "newest",
        }
    }
}

/// The filters: all of them must hold for a ticket to be listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Hide sold-out tickets.
    pub available_only: bool,
    /// Inclusive lower price bound, in cents.
    pub min_price: Option<i64>,
    /// Inclusive upper price bound, in cents.
    pub max_price: Option<i64>,
}

impl Filter {
    /// Whether `ticket` passes, with its stock as last known (≤ 1 s stale).
    pub fn admits(&self, ticket: &Ticket) -> bool {
        (!self.available_only || !ticket.sold_out)
            && self.min_price.is_none_or(|min| ticket.price_cents >= min)
            && self.max_price.is_none_or(|max| ticket.price_cents <= max)
    }
}

/// A search, split for the two matchers: the full-text one takes the query as
/// typed (web-search syntax), the trigram one only the words sought, and the
/// excluded words (`-word`) are kept out of trigram matches too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Search {
    /// `q` as typed (trimmed): for `websearch_to_tsquery`.
    pub text: String,
    /// The words sought, without quotes and exclusions: for pg_trgm.
    pub fuzzy: String,
    /// The excluded words joined by ` or `, if any.
    pub excluded: Option<String>,
}

impl Search {
    /// Parses `q`; `None` when it is absent or blank.
    pub fn parse(q: Option<&str>) -> Result<Option<Self>, ApiError> {
        let Some(text) = q.map(str::trim).filter(|q| !q.is_empty()) else { return Ok(None) };
        if text.chars().count() > MAX_Q_CHARS {
            return Err(bad("q", &format!("must be at most {MAX_Q_CHARS} characters")));
        }
        // Postgres text cannot hold NUL, and no name holds a control character.
        if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(bad("q", "must not contain control characters"));
        }
        let (mut sought, mut excluded) = (Vec::new(), Vec::new());
        for word in text.split_whitespace() {
            let (list, word) = match word.strip_prefix('-') {
                Some(rest) => (&mut excluded, rest),
                None => (&mut sought, word),
            };
            let word = word.trim_matches('"');
            if !word.is_empty() && !word.eq_ignore_ascii_case("or") {
                list.push(word.to_owned());
            }
        }
        if !sought.iter().any(|w| w.chars().any(char::is_alphanumeric)) {
            return Err(bad("q", "must contain a word to look for (letters or digits, not only exclusions)"));
        }
        let excluded = (!excluded.is_empty()).then(|| excluded.join(" or "));
        Ok(Some(Self { text: text.to_owned(), fuzzy: sought.join(" "), excluded }))
    }
}

/// Where a page ends, in the terms of its sort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// `sort=newest`: the last `(createdAt, id)`.
    Newest(DateTime<Utc>, Uuid),
    /// `sort=price` or `-price`: the last `(priceCents, id)`.
    Price(i64, Uuid),
    /// `sort=relevance`: the last `(relevance, id)`.
    Relevance(f32, Uuid),
}

impl Position {
    /// The position of `ticket` in `sort` (its relevance given for `Relevance`).
    pub fn of(sort: Sort, ticket: &Ticket, relevance: f32) -> Self {
        match sort {
            Sort::Newest => Self::Newest(ticket.created_at, ticket.id),
            Sort::Price | Sort::PriceDesc => Self::Price(ticket.price_cents, ticket.id),
            Sort::Relevance => Self::Relevance(relevance, ticket.id),
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Newest(at, id) => format!("n:{}:{id}", at.timestamp_micros()),
            Self::Price(cents, id) => format!("p:{cents}:{id}"),
            Self::Relevance(score, id) => format!("r:{:08x}:{id}", score.to_bits()),
        }
    }

    fn decode(text: &str, sort: Sort) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let (kind, key, id) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
        match (kind, sort) {
            ("n", Sort::Newest) => {
                Some(Self::Newest(DateTime::from_timestamp_micros(key.parse().ok()?)?, id))
            }
            ("p", Sort::Price | Sort::PriceDesc) => Some(Self::Price(key.parse().ok()?, id)),
            ("r", Sort::Relevance) => {
                Some(Self::Relevance(f32::from_bits(u32::from_str_radix(key, 16).ok()?), id))
            }
            _ => None,
        }
    }
}

/// A parsed `GET /v1/tickets` request.
#[derive(Debug, Clone)]
pub struct CatalogQuery {
    /// Page size, 1..=100.
    pub limit: usize,
    /// The search, if any.
    pub search: Option<Search>,
    /// The filters.
    pub filter: Filter,
    /// The order.
    pub sort: Sort,
    /// Where the previous page ended.
    pub after: Option<Position>,
    shape: String,
}

/// The raw parameters, as strings so that every bad value is reported by name.
#[derive(Debug, Default)]
pub struct RawParams<'a> {
    /// `limit`
    pub limit: Option<&'a str>,
    /// `cursor`
    pub cursor: Option<&'a str>,
    /// `q`
    pub q: Option<&'a str>,
    /// `available`
    pub available: Option<&'a str>,
    /// `minPriceCents`
    pub min_price_cents: Option<&'a str>,
    /// `maxPriceCents`
    pub max_price_cents: Option<&'a str>,
    /// `sort`
    pub sort: Option<&'a str>,
}

impl CatalogQuery {
    /// Validates every parameter; a bad one is a 400 naming it.
    pub fn parse(raw: &RawParams<'_>) -> Result<Self, ApiError> {
        let limit = match raw.limit {
            None => 20,
            Some(text) => match text.parse::<usize>() {
                Ok(n @ 1..=100) => n,
                _ => return Err(bad("limit", "must be a whole number within 1..=100")),
            },
        };
        let search = Search::parse(raw.q)?;
        let available_only = match raw.available {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(bad("available", "must be true or false")),
        };
        let price = |field: &str, text: Option<&str>| {
            text.map(|t| {
                t.parse::<i64>()
                    .ok()
                    .filter(|c| *c >= 0)
                    .ok_or_else(|| bad(field, "must be a whole number of cents, 0 or more"))
            })
            .transpose()
        };
        let min_price = price("minPriceCents", raw.min_price_cents)?;
        let max_price = price("maxPriceCents", raw.max_price_cents)?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(bad("minPriceCents", "must not exceed maxPriceCents"));
        }
        let sort = match raw.sort {
            Some(text) => Sort::parse(text)?,
            None if search.is_some() => Sort::Relevance,
            None => Sort::Newest,
        };
        if sort == Sort::Relevance && search.is_none() {
            return Err(bad("sort", "relevance needs q"));
        }
        let filter = Filter { available_only, min_price, max_price };
        let shape = shape_hash(search.as_ref(), &filter, sort);
        let after = raw.cursor.map(|c| decode_cursor(c, &shape, sort)).transpose()?;
        Ok(Self { limit, search, filter, sort, after, shape })
    }

    /// The cursor that continues this query after `position`.
    pub fn cursor_after(&self, position: &Position) -> String {
        hex::encode(format!("c2:{}:{}", self.shape, position.encode()))
    }
}

/// 16 hex digits of SHA-256 over the query shape: stable across pods and releases.
fn shape_hash(search: Option<&Search>, filter: &Filter, sort: Sort) -> String {
    let text = format!(
        "q={}\0available={}\0min={:?}\0max={:?}\0sort={}",
        search.map_or("", |s| s.text.as_str()),
        filter.available_only,
        filter.min_price,
        filter.max_price,
        sort.name()
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn decode_cursor(text: &str, shape: &str, sort: Sort) -> Result<Position, ApiError> {
    let invalid = || bad("cursor", "is not a cursor this api made");
    let text = String::from_utf8(hex::decode(text).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let rest = text.strip_prefix("c2:").ok_or_else(invalid)?;
    let (made_by, position) = rest.split_once(':').ok_or_else(invalid)?;
    if made_by != shape {
        return Err(bad(
            "cursor",
            "was made by another query: q, available, minPriceCents, maxPriceCents and sort must stay the same",
        ));
    }
    Position::decode(position, sort).ok_or_else(invalid)
}

fn bad(field: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<CatalogQuery, ApiError> {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        CatalogQuery::parse(&RawParams {
            limit: get("limit"),
            cursor: get("cursor"),
            q: get("q"),
            available: get("available"),
            min_price_cents: get("minPriceCents"),
            max_price_cents: get("maxPriceCents"),
            sort: get("sort"),
        })
    }

    #[test]
    fn cursors_round_trip_within_their_query_only() {
        let q = parse(&[("q", "rock"), ("sort", "price")]).unwrap();
        let pos = Position::Price(1500, Uuid::new_v4());
        let cursor = q.cursor_after(&pos);
        let again = parse(&[("q", "rock"), ("sort", "price"), ("cursor", &cursor), ("limit", "5")]).unwrap();
        assert_eq!(again.after, Some(pos), "limit may change between pages");
        let other = parse(&[("q", "rock"), ("sort", "-price"), ("cursor", &cursor)]).unwrap_err();
        assert!(other.to_string().starts_with("cursor:"), "{other}");
        let other = parse(&[("q", "rock"), ("sort", "price"), ("available", "true"), ("cursor", &cursor)]);
        assert!(other.is_err());
        let rel = parse(&[("q", "rock")]).unwrap();
        let pos = Position::Relevance(1.234_567, Uuid::new_v4());
        assert_eq!(parse(&[("q", "rock"), ("cursor", &rel.cursor_after(&pos))]).unwrap().after, Some(pos));
    }

    #[test]
    fn searches_split_sought_and_excluded_words() {
        let s = Search::parse(Some(r#" "north stand" -south or vip "#)).unwrap().unwrap();
        assert_eq!(s.fuzzy, "north stand vip");
        assert_eq!(s.excluded.as_deref(), Some("south"));
        assert!(Search::parse(Some("-jazz")).is_err());
        assert!(Search::parse(Some("jazz\0")).is_err());
        assert_eq!(Search::parse(Some("north\tstand")).unwrap().unwrap().fuzzy, "north stand");
        assert!(Search::parse(Some("  ")).unwrap().is_none());
    }
}
