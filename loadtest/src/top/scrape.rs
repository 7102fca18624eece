//! One `/metrics` page in the Prometheus text format, parsed into samples.

use std::collections::BTreeMap;

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (`_bucket`, `_count`, `_sum` included).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
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
    fn parses_names_labels_and_values() {
        let samples = parse(
            "# TYPE a counter\na{route=\"/v1/orders\",status=\"2xx\"} 3\n\nb 1.5\nc_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].label("status"), "2xx");
        assert_eq!(samples[1].value, 1.5);
        assert_eq!(samples[2].label("le"), "+Inf");
    }
}
