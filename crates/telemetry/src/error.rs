//! Typed errors of the telemetry set-up.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {reason}")]
    LogFilter { filter: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialised,
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
    #[error("cannot bind the health/metrics endpoint on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
