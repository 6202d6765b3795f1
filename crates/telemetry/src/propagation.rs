//! Bridges the W3C `traceparent` string that travels in Kafka headers and the current
//! `tracing` span, so a message's trace continues in the next service.
//!
//! `bus` carries the header as plain text and knows nothing of OpenTelemetry; services use
//! these two functions at the edges: [`set_parent`] when a record is consumed,
//! [`traceparent`] when one is produced.

use opentelemetry::propagation::{Extractor, Injector};
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

struct One<'a>(&'a str);
impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Collect(HashMap<String, String>);
impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// Makes `span` a child of the remote span named by `traceparent` (an invalid header is
/// ignored: the span then starts a new trace).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&One(traceparent)));
    // Only fails when the span has no OpenTelemetry layer (export disabled): nothing to join.
    let _ = span.set_parent(cx);
}

/// A span for one record at `stage`, continuing the trace of the record's `traceparent` header
/// when it has one (a new trace otherwise).
pub fn record_span(stage: &'static str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("record", stage);
    if let Some(tp) = traceparent {
        set_parent(&span, tp);
    }
    span
}

/// The `traceparent` of `span`, to put on the records it produces; `None` when the span is not
/// recorded by OpenTelemetry (no exporter configured).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let mut out = Collect(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out.0.remove(TRACEPARENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_consumed_traceparent_continues_in_the_produced_one() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        // No exporter: spans are recorded in-process only, which is all propagation needs.
        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("normalize");
            set_parent(&span, incoming);
            let out = traceparent(&span).expect("a recorded span has a traceparent");
            let parts: Vec<&str> = out.split('-').collect();
            assert_eq!(parts.len(), 4, "{out}");
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
            assert_ne!(parts[2], "00f067aa0ba902b7", "a new span id for the child");
            assert_eq!(parts[3], "01", "sampled flag kept");
        });
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("normalize");
            set_parent(&span, "not-a-traceparent");
            let out = traceparent(&span).expect("still recorded");
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert_eq!(out.len(), 55, "{out}");
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_nothing_to_propagate() {
        let span = tracing::info_span!("plain");
        set_parent(&span, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(traceparent(&span), None);
    }
}
