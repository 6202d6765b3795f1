//! One call that installs the global `tracing` subscriber: a JSON (or text) log layer filtered
//! by level, and — when a collector is configured — an OpenTelemetry layer exporting spans over
//! OTLP/gRPC. The W3C trace-context propagator is installed either way, so trace ids flow
//! through Kafka headers even when nothing is exported.

use crate::{LogFormat, TelemetryConfig, TelemetryError};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the trace exporter alive; dropping it flushes and shuts the exporter down.
#[must_use = "dropping the guard shuts trace export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// True when spans are exported to a collector.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Best effort: the process is exiting and the collector may be gone.
            let _ = provider.shutdown();
        }
    }
}

/// Resolves the log filter: `RUST_LOG` when set, else the configured level.
pub fn filter(cfg: &TelemetryConfig) -> Result<EnvFilter, TelemetryError> {
    let directive =
        std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| cfg.log_level.clone());
    EnvFilter::try_new(&directive).map_err(|e| TelemetryError::LogFilter { filter: directive, reason: e.to_string() })
}

fn otlp_endpoint(cfg: &TelemetryConfig) -> Option<String> {
    cfg.otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|s| !s.trim().is_empty())
}

fn tracer_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp { endpoint: endpoint.to_string(), reason: e.to_string() })?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build();
    Ok(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

/// Installs logging and tracing for `service` (its name appears in every log line and span).
/// Call once, inside the Tokio runtime (the OTLP exporter needs it).
pub fn init(service: &'static str, cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let fmt_layer = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    };

    let provider = match otlp_endpoint(cfg) {
        Some(endpoint) => Some(tracer_provider(service, &endpoint)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer(service))
    });

    tracing_subscriber::registry()
        .with(filter(cfg)?)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    tracing::info!(service, exporting_traces = provider.is_some(), "telemetry initialised");
    Ok(TelemetryGuard { provider })
}
