//! What every Arteria service needs to be operated: structured JSON logs, OpenTelemetry traces
//! that join across services through the W3C `traceparent` carried in Kafka headers, Prometheus
//! metrics, and the `/healthz`, `/readyz` and `/metrics` endpoints.
//!
//! Services call [`init`] once at start-up, keep the returned [`TelemetryGuard`] alive until
//! exit, register their readiness checks on a [`Health`], and serve it with
//! [`health::serve`]. Nothing here ever records message content: metric labels come from
//! closed enums and fixed stage names, never from the data (PHI stays out of telemetry).

pub mod config;
pub mod error;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod propagation;

pub use config::{LogFormat, TelemetryConfig};
pub use error::TelemetryError;
pub use health::Health;
pub use logging::{TelemetryGuard, init};
pub use metrics::{Metrics, Outcome};
