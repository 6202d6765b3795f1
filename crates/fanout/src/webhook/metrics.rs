//! Webhook metrics: deliveries by webhook and outcome, and the time of each HTTP attempt. The
//! `webhook` label is the configured name (operator-chosen, validated to `[a-z0-9_-]`), never
//! anything from a message, so no PHI can become a label.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::time::Duration;
use telemetry::Metrics;

/// What happened to a delivery (or, for `retried`, to one of its attempts).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    delivered,
    /// An attempt failed and another one follows.
    retried,
    /// Written to the DLQ (refused, or attempts exhausted).
    dead_lettered,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    webhook: String,
    outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

fn request_histogram() -> Histogram {
    // 1 ms .. ~65 s in doublings: a local receiver to a timed-out one.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The webhook families, registered once per service and shared by every worker.
#[derive(Clone)]
pub struct WebhookMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    request_seconds: Family<WebhookLabels, Histogram, fn() -> Histogram>,
}

impl WebhookMetrics {
    /// Registers `arteria_webhook_deliveries_total` and `arteria_webhook_request_seconds`.
    pub fn new(metrics: &Metrics) -> Self {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let request_seconds =
            Family::<WebhookLabels, Histogram, fn() -> Histogram>::new_with_constructor(request_histogram);
        metrics.register("webhook_deliveries", "Webhook deliveries by webhook and outcome", deliveries.clone());
        metrics.register(
            "webhook_request_seconds",
            "Time of one webhook HTTP attempt, from sending to the response status",
            request_seconds.clone(),
        );
        Self { deliveries, request_seconds }
    }

    pub fn count(&self, webhook: &str, outcome: DeliveryOutcome) {
        self.deliveries.get_or_create(&DeliveryLabels { webhook: webhook.to_string(), outcome }).inc();
    }

    /// The current count, for tests.
    pub fn counted(&self, webhook: &str, outcome: DeliveryOutcome) -> u64 {
        self.deliveries.get_or_create(&DeliveryLabels { webhook: webhook.to_string(), outcome }).get()
    }

    pub fn observe_request(&self, webhook: &str, elapsed: Duration) {
        self.request_seconds
            .get_or_create(&WebhookLabels { webhook: webhook.to_string() })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_per_webhook_and_outcome() {
        let m = Metrics::new();
        let w = WebhookMetrics::new(&m);
        w.count("lab-portal", DeliveryOutcome::retried);
        w.count("lab-portal", DeliveryOutcome::retried);
        w.count("lab-portal", DeliveryOutcome::delivered);
        w.observe_request("lab-portal", Duration::from_millis(3));
        let text = m.encode();
        assert!(
            text.contains(r#"arteria_webhook_deliveries_total{webhook="lab-portal",outcome="retried"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"arteria_webhook_deliveries_total{webhook="lab-portal",outcome="delivered"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"arteria_webhook_request_seconds_count{webhook="lab-portal"} 1"#), "{text}");
        assert_eq!(w.counted("lab-portal", DeliveryOutcome::dead_lettered), 0);
    }
}
