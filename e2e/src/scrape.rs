//! Reading a Prometheus `/metrics` page into samples that tests can query.

use std::collections::BTreeMap;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, with `_bucket`/`_count`/`_sum` suffixes as exposed.
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample, in page order.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// GETs `url` and parses the text exposition format.
    pub async fn fetch(url: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        Ok(Self::parse(&text))
    }

    /// Parses the text exposition format; comments and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        Self { samples: text.lines().filter(|l| !l.starts_with('#')).filter_map(parse_line).collect() }
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The sum of the matching samples, or `None` when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.find(name, labels).peekable();
        found.peek()?;
        Some(found.map(|s| s.value).sum())
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (head, BTreeMap::new()),
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `a="x",b="y"`; our label values never hold quotes or commas, so no escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_skips_comments() {
        let page = "# HELP x y\n# TYPE a counter\na{route=\"/v1/orders\",status=\"2xx\"} 3\nb 1.5\nc_bucket{le=\"+Inf\"} 2\n";
        let s = Scrape::parse(page);
        assert_eq!(s.sum("a", &[("status", "2xx")]), Some(3.0));
        assert_eq!(s.sum("b", &[]), Some(1.5));
        assert_eq!(s.sum("c_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(s.sum("missing", &[]), None);
    }
}
