//! Reading a Prometheus `/metrics` page (the text exposition format) into samples:
//! the one parser behind the e2e tests' metric checks and `loadtest top`.

use std::collections::BTreeMap;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (`_bucket`, `_count`, `_sum` included).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf` and `-Inf` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, or "".
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// Parses the text format; comments and lines it does not understand are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// A parsed `/metrics` page that tests can query.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample, in page order.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// GETs `url` and parses the page.
    pub async fn fetch(url: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        Ok(Self::parse(&text))
    }

    /// Parses a page (see [`parse`]).
    pub fn parse(text: &str) -> Self {
        Self { samples: parse(text) }
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
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (head, BTreeMap::new()),
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `a="x",b="y"`: our label values hold no quotes or commas, so no unescaping.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values_and_skips_comments() {
        let page = "# HELP x y\n# TYPE a counter\na{route=\"/v1/orders\",status=\"2xx\"} 3\n\nb 1.5\n\
                    c_bucket{le=\"+Inf\"} 2\nd +Inf\nbroken line\n";
        let samples = parse(page);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].label("status"), "2xx");
        assert_eq!(samples[0].label("missing"), "");
        assert_eq!(samples[2].label("le"), "+Inf");
        assert_eq!(samples[3].value, f64::INFINITY);
        let s = Scrape::parse(page);
        assert_eq!(s.sum("a", &[("status", "2xx")]), Some(3.0));
        assert_eq!(s.sum("a", &[("status", "5xx")]), None);
        assert_eq!(s.sum("b", &[]), Some(1.5));
        assert_eq!(s.sum("c_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(s.sum("missing", &[]), None);
    }
}
