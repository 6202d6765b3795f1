//! Webhooks: routes that deliver resources to an HTTP endpoint, durably.
//!
//! The transactional fan-out step never calls HTTP (a side effect cannot be part of a Kafka
//! transaction, and a retrying receiver would stall the partition). A matched resource is
//! written, in the same transaction, to the webhook's delivery topic ([`delivery`]); the
//! webhook's worker ([`worker`]) consumes it, sends it ([`http`]), retries what a retry can fix
//! ([`retry`]), dead-letters the rest, and commits only then. Delivery is at least once:
//! every request carries `Idempotency-Key: <Type>/<id>@<event id>`, the same on every attempt
//! and after any restart, by which receivers deduplicate.
//!
//! - [`config`]: the `[fanout.webhooks.<name>]` settings and their checks.
//! - [`metrics`]: deliveries and request time per webhook.

pub mod config;
pub mod delivery;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod worker;

pub use config::{Backoff, Method, ResolvedWebhook, WebhookConfig, WebhookConfigError};
pub use metrics::WebhookMetrics;
pub use worker::{WebhookWorker, WorkerStats, spawn_all};
