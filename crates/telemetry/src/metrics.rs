//! The Prometheus metrics every pipeline stage exposes, with labels drawn only from closed sets
//! (stage names fixed by the code, [`Outcome`], partition numbers) so that no message content
//! can ever become a label value.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happened to a message at a stage.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Taken in (read from a socket or a topic).
    received,
    /// Written downstream and acknowledged (to the sender: AA/CA).
    acknowledged,
    /// Refused as malformed or not allowed (to the sender: AR/CR).
    rejected,
    /// Written to the stage's dead-letter topic.
    dead_lettered,
    /// Recognised as a sender retry and not re-emitted.
    duplicate,
    /// Could not be handled now (to the sender: AE/CE); may be retried.
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    stage: &'static str,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    stage: &'static str,
    /// Topic names come from configuration, never from message content.
    topic: String,
    partition: i32,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s in doublings: covers an ACK (ms) and an end-to-end path (100s of ms).
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// A service's metrics registry and the standard pipeline families.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    messages: Family<MessageLabels, Counter>,
    latency: Family<StageLabels, Histogram, fn() -> Histogram>,
    lag: Family<LagLabels, Gauge>,
    /// The lag series currently exposed per stage, so a new report can drop the stale ones.
    lag_shown: Arc<Mutex<HashMap<&'static str, Vec<LagLabels>>>>,
}

impl Metrics {
    /// Creates the registry with the families every stage shares, prefixed `arteria_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arteria");
        let messages = Family::<MessageLabels, Counter>::default();
        let latency = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let lag = Family::<LagLabels, Gauge>::default();
        registry.register("messages", "Messages by stage and outcome", messages.clone());
        registry.register(
            "stage_latency_seconds",
            "Time a stage spent on one message, from intake to acknowledgement or commit",
            latency.clone(),
        );
        registry.register("consumer_lag", "Records behind the end of the input partition", lag.clone());
        Self { registry: Arc::new(Mutex::new(registry)), messages, latency, lag, lag_shown: Arc::default() }
    }

    /// Counts one message at `stage` with `outcome`.
    pub fn count(&self, stage: &'static str, outcome: Outcome) {
        self.messages.get_or_create(&MessageLabels { stage, outcome }).inc();
    }

    /// The current count, for tests and the load harness.
    pub fn counted(&self, stage: &'static str, outcome: Outcome) -> u64 {
        self.messages.get_or_create(&MessageLabels { stage, outcome }).get()
    }

    /// Records how long `stage` took for one message.
    pub fn observe_latency(&self, stage: &'static str, elapsed: Duration) {
        self.latency.get_or_create(&StageLabels { stage }).observe(elapsed.as_secs_f64());
    }

    /// Replaces the consumer lag of `stage` with `partitions` (topic, partition, lag), so
    /// partitions the consumer no longer owns disappear.
    pub fn set_lag<'a>(&self, stage: &'static str, partitions: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        let now: Vec<(LagLabels, i64)> = partitions
            .into_iter()
            .map(|(topic, partition, lag)| (LagLabels { stage, topic: topic.to_string(), partition }, lag))
            .collect();
        let mut shown = self.lag_shown.lock().expect("lag series poisoned");
        // Only this stage's series are replaced: one process may run several consumers.
        let before = shown.remove(stage).unwrap_or_default();
        for gone in before.iter().filter(|l| !now.iter().any(|(n, _)| n == *l)) {
            self.lag.remove(gone);
        }
        for (labels, lag) in &now {
            self.lag.get_or_create(labels).set(*lag);
        }
        shown.insert(stage, now.into_iter().map(|(l, _)| l).collect());
    }

    /// Lets a service register a metric of its own (names are prefixed `arteria_`).
    pub fn register<M: prometheus_client::registry::Metric>(&self, name: &str, help: &str, metric: M) {
        self.registry.lock().expect("metrics registry poisoned").register(name, help, metric);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_exposes_by_stage_and_outcome() {
        let m = Metrics::new();
        m.count("ingest", Outcome::received);
        m.count("ingest", Outcome::received);
        m.count("ingest", Outcome::rejected);
        assert_eq!(m.counted("ingest", Outcome::received), 2);
        let text = m.encode();
        assert!(text.contains(r#"arteria_messages_total{stage="ingest",outcome="received"} 2"#), "{text}");
        assert!(text.contains(r#"arteria_messages_total{stage="ingest",outcome="rejected"} 1"#), "{text}");
    }

    #[test]
    fn latency_lands_in_a_bucket() {
        let m = Metrics::new();
        m.observe_latency("normalize", Duration::from_millis(3));
        let text = m.encode();
        assert!(text.contains(r#"arteria_stage_latency_seconds_count{stage="normalize"} 1"#), "{text}");
        // 3 ms is above the 1.6 ms bound and below the 3.2 ms one.
        assert!(
            text.contains(r#"arteria_stage_latency_seconds_bucket{le="0.0016",stage="normalize"} 0"#)
                || text.contains(r#"arteria_stage_latency_seconds_bucket{stage="normalize",le="0.0016"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn lag_is_a_gauge_per_partition() {
        let m = Metrics::new();
        m.set_lag("enrich", [("clinical.normalized.v1", 2, 17), ("clinical.normalized.v1", 3, 1)]);
        m.set_lag("enrich", [("clinical.normalized.v1", 2, 5)]);
        let text = m.encode();
        assert!(
            text.contains(r#"arteria_consumer_lag{stage="enrich",topic="clinical.normalized.v1",partition="2"} 5"#),
            "{text}"
        );
        assert!(!text.contains(r#"partition="3""#), "a partition no longer reported must disappear: {text}");
    }
}
