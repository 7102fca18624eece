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
    /// The type of each metric family (`counter`, `gauge`, `histogram`, …) from its `# TYPE` line.
    pub types: BTreeMap<String, String>,
    /// The help text of each metric family that has a `# HELP` line, as written (escapes kept).
    pub help: BTreeMap<String, String>,
}

impl Scrape {
    /// GETs `url` and parses the page.
    #[cfg(feature = "servers")]
    pub async fn fetch(url: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        Ok(Self::parse(&text))
    }

    /// Parses a page (see [`parse`]), and its `# TYPE` and `# HELP` lines.
    pub fn parse(text: &str) -> Self {
        let (mut types, mut help) = (BTreeMap::new(), BTreeMap::new());
        for line in text.lines().map(str::trim) {
            let comment = |tag| line.strip_prefix(tag)?.split_once(' ');
            if let Some((name, kind)) = comment("# TYPE ") {
                types.insert(name.to_owned(), kind.trim().to_owned());
            } else if let Some((name, text)) = comment("# HELP ") {
                help.insert(name.to_owned(), text.to_owned());
            }
        }
        Self { samples: parse(text), types, help }
    }

    /// The `le` bounds of the histogram `name`'s buckets in the first series whose labels
    /// include every pair of `labels`, in page order (`+Inf` last).
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let bucket = format!("{name}_bucket");
        let mut first: Option<BTreeMap<String, String>> = None;
        self.find(&bucket, labels)
            .filter(|s| {
                let mut series = s.labels.clone();
                series.remove("le");
                first.get_or_insert_with(|| series.clone()) == &series
            })
            .map(|s| s.label("le").to_owned())
            .collect()
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

/// The metrics documented in the tables of a Markdown page (docs/observability.md)
/// under the `## ` headings named in `sections`: name to type, from rows that start
/// `` | `tps_name` | type | ``.
pub fn documented(markdown: &str, sections: &[&str]) -> BTreeMap<String, String> {
    let mut documented = BTreeMap::new();
    let mut inside = false;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            inside = sections.contains(&heading.trim());
        } else if inside
            && let Some(row) = line.strip_prefix("| `")
            && let Some((name, rest)) = row.split_once("` | ")
            && let Some((kind, _)) = rest.split_once(" |")
        {
            documented.insert(name.to_owned(), kind.trim().to_owned());
        }
    }
    documented
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
        assert_eq!(s.types.get("a").map(String::as_str), Some("counter"));
        assert_eq!(s.help.get("x").map(String::as_str), Some("y"));
    }

    #[test]
    fn reads_the_documented_metrics_of_some_sections() {
        let doc = "# T\n\n## api\n\n| name | type |\n|---|---|\n| `a_total` | counter | — | A. |\n\
                   | `b` | gauge | `x` | B. |\n\n## worker\n\n| `c` | histogram | — | C. |\n## other\n| `d` | gauge |\n";
        let api = documented(doc, &["api"]);
        assert_eq!(api.len(), 2);
        assert_eq!(api["a_total"], "counter");
        assert_eq!(api["b"], "gauge");
        assert_eq!(documented(doc, &["worker", "other"]).keys().collect::<Vec<_>>(), ["c", "d"]);
    }

    #[test]
    fn reads_the_buckets_of_one_series_of_a_histogram() {
        let page = "# TYPE d histogram\n\
                    d_bucket{s=\"a\",le=\"0.5\"} 1\nd_bucket{s=\"a\",le=\"1\"} 2\nd_bucket{s=\"a\",le=\"+Inf\"} 2\n\
                    d_bucket{s=\"b\",le=\"0.5\"} 0\nd_bucket{s=\"b\",le=\"+Inf\"} 0\nd_sum{s=\"a\"} 1.2\n";
        let s = Scrape::parse(page);
        assert_eq!(s.types.get("d").map(String::as_str), Some("histogram"));
        assert_eq!(s.buckets("d", &[]), ["0.5", "1", "+Inf"]);
        assert_eq!(s.buckets("d", &[("s", "b")]), ["0.5", "+Inf"]);
        assert!(s.buckets("missing", &[]).is_empty());
    }
}
