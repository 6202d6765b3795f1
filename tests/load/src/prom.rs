//! Reading Prometheus text expositions: the services' own histograms and counters are where
//! the end-to-end latency is measured, so the harness reads them rather than timing from
//! outside. Quantiles are interpolated within a bucket the way PromQL's `histogram_quantile`
//! does, over the difference of two scrapes so only the run's observations count.

/// Why an exposition could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PromError {
    #[error("no series {0} in the exposition")]
    Missing(String),
    #[error("line {line}: {why}")]
    Malformed { line: usize, why: &'static str },
}

/// One sample: metric name, labels in order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn matches(&self, wanted: &[(&str, &str)]) -> bool {
        wanted.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key, value));
        rest = after[end + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Every sample of the exposition (comments and blank lines skipped).
pub fn parse(text: &str) -> Result<Vec<Sample>, PromError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why| PromError::Malformed { line: n + 1, why };
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or(bad("unclosed label set"))?;
                let labels = parse_labels(&line[open + 1..close]).ok_or(bad("bad label set"))?;
                (&line[..open], labels, &line[close + 1..])
            }
            None => {
                let sp = line.find(' ').ok_or(bad("no value"))?;
                (&line[..sp], Vec::new(), &line[sp..])
            }
        };
        let value = rest.split_whitespace().next().ok_or(bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("value is not a number"))?,
        };
        out.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

/// The value of the series `name` with (at least) `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Result<f64, PromError> {
    samples
        .iter()
        .find(|s| s.name == name && s.matches(labels))
        .map(|s| s.value)
        .ok_or_else(|| PromError::Missing(format!("{name}{labels:?}")))
}

/// A cumulative histogram: (upper bound, observations ≤ bound), ascending, ending at +Inf.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
}

impl Histogram {
    /// The histogram `name` (without `_bucket`) whose series carry `labels`.
    pub fn from_samples(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Result<Self, PromError> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket && s.matches(labels))
            .filter_map(|s| {
                let le = match s.label("le")? {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le, s.value))
            })
            .collect();
        if buckets.is_empty() {
            return Err(PromError::Missing(bucket));
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sum = value(samples, &format!("{name}_sum"), labels).unwrap_or(0.0);
        Ok(Self { buckets, sum })
    }

    /// Observations in all.
    pub fn count(&self) -> f64 {
        self.buckets.last().map(|b| b.1).unwrap_or(0.0)
    }

    /// What was observed since `earlier` (a scrape of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let before = earlier.buckets.iter().find(|(l, _)| l == le).map(|b| b.1).unwrap_or(0.0);
                (*le, (c - before).max(0.0))
            })
            .collect();
        Histogram { buckets, sum: self.sum - earlier.sum }
    }

    /// The `q` quantile (0..=1), linearly interpolated within its bucket (lower bound of the
    /// first bucket: 0). A quantile in the +Inf bucket answers the highest finite bound, as
    /// `histogram_quantile` does. `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0); // (bound, cumulative count) of the previous bucket
        for &(le, c) in &self.buckets {
            if c >= rank && c > lower.1 {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1) / (c - lower.1));
            }
            lower = (le, c);
        }
        Some(lower.0)
    }

    /// Mean of the observations.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0.0).then(|| self.sum / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP arteria_e2e_latency_seconds From accept to stored.\n\
# TYPE arteria_e2e_latency_seconds histogram\n\
arteria_e2e_latency_seconds_sum 3.5\n\
arteria_e2e_latency_seconds_count 100\n\
arteria_e2e_latency_seconds_bucket{le=\"0.01\"} 10\n\
arteria_e2e_latency_seconds_bucket{le=\"0.02\"} 60\n\
arteria_e2e_latency_seconds_bucket{le=\"0.04\"} 90\n\
arteria_e2e_latency_seconds_bucket{le=\"0.08\"} 100\n\
arteria_e2e_latency_seconds_bucket{le=\"+Inf\"} 100\n\
arteria_messages_total{stage=\"ingest\",outcome=\"acknowledged\"} 42\n\
arteria_messages_total{stage=\"query\",outcome=\"acknowledged\"} 7\n\
arteria_consumer_lag{stage=\"x\",partition=\"0\"} -1\n\
# EOF\n";

    fn hist() -> Histogram {
        Histogram::from_samples(&parse(TEXT).unwrap(), "arteria_e2e_latency_seconds", &[]).unwrap()
    }

    #[test]
    fn reads_counters_by_labels() {
        let s = parse(TEXT).unwrap();
        assert_eq!(value(&s, "arteria_messages_total", &[("stage", "ingest"), ("outcome", "acknowledged")]), Ok(42.0));
        assert_eq!(value(&s, "arteria_messages_total", &[("stage", "query")]), Ok(7.0));
        assert_eq!(value(&s, "arteria_consumer_lag", &[("partition", "0")]), Ok(-1.0));
        assert!(matches!(value(&s, "arteria_messages_total", &[("stage", "fanout")]), Err(PromError::Missing(_))));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_histogram_quantile() {
        let h = hist();
        assert_eq!(h.count(), 100.0);
        // rank 50 lies in (0.01, 0.02] holding ranks 10..60: 40/50 of the way up.
        assert!((h.quantile(0.5).unwrap() - 0.018).abs() < 1e-12);
        // rank 5 lies in the first bucket, whose lower bound is 0.
        assert!((h.quantile(0.05).unwrap() - 0.005).abs() < 1e-12);
        // rank 99 in (0.04, 0.08] holding 90..100: 9/10 of the way.
        assert!((h.quantile(0.99).unwrap() - 0.076).abs() < 1e-12);
        assert_eq!(h.quantile(1.0), Some(0.08));
        assert!((h.mean().unwrap() - 0.035).abs() < 1e-12);
        assert_eq!(h.quantile(1.5), None);
    }

    #[test]
    fn a_quantile_beyond_the_last_bound_answers_that_bound() {
        let mut h = hist();
        h.buckets.last_mut().unwrap().1 = 200.0;
        assert_eq!(h.quantile(0.99), Some(0.08));
    }

    #[test]
    fn differences_of_scrapes_keep_only_the_new_observations() {
        let before = hist();
        let mut after = hist();
        // 10 more observations, all in (0.02, 0.04].
        for b in after.buckets.iter_mut().skip(2) {
            b.1 += 10.0;
        }
        after.sum += 0.3;
        let d = after.since(&before);
        assert_eq!(d.count(), 10.0);
        assert!((d.quantile(0.5).unwrap() - 0.03).abs() < 1e-12);
        assert!((d.mean().unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(Histogram { buckets: vec![(f64::INFINITY, 0.0)], sum: 0.0 }.quantile(0.5), None);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        assert_eq!(parse("a 1\nb{x=\"1\" 2\n"), Err(PromError::Malformed { line: 2, why: "unclosed label set" }));
        assert_eq!(parse("a one\n"), Err(PromError::Malformed { line: 1, why: "value is not a number" }));
        let s = parse("m{a=\"x\\\"y\",b=\"2\"} 3\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y"));
        assert_eq!(s[0].label("b"), Some("2"));
    }
}
