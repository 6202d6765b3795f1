//! Telemetry settings, shared by every service's TOML file under `[telemetry]`.

use serde::Deserialize;
use std::net::SocketAddr;

/// How logs are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default: what log shippers expect).
    #[default]
    Json,
    /// Human-readable lines, for a developer's terminal.
    Text,
}

/// `[telemetry]` section of a service's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directive, e.g. `info` or `info,bus=debug`. Default `info`.
    /// `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// `json` (default) or `text`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`. Default: none (no trace
    /// export; trace context is still propagated). `OTEL_EXPORTER_OTLP_ENDPOINT` also enables it.
    pub otlp_endpoint: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served. Default `127.0.0.1:9464`; each
    /// service's default configuration picks its own port.
    pub http_addr: SocketAddr,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}
