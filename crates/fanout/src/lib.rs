//! The fan-out stage: every enriched `ClinicalEvent` is split into the current state of each
//! resource, published to the compacted `fhir.<type>.v1` topics keyed by resource id (what
//! the query service and analytics read), and routed to subscriber topics by declarative rules.
//!
//! - [`resources`]: event → standalone resources (bundle-local references made absolute).
//! - [`routes`]: the route rules and their matching.
//! - [`ledger`]: the patients and visits already published, so a lab result creates them but
//!   never replaces them.
//! - [`webhook`]: routes to HTTP endpoints, through a delivery topic and a retrying worker.
//! - [`processor`]: the per-record transform plugged into `bus::TxLoop`.
//! - [`config`]: the `[fanout]` settings.

pub mod config;
pub mod ledger;
pub mod processor;
pub mod resources;
pub mod routes;
pub mod webhook;

pub use config::FanoutConfig;
pub use processor::FanoutProcessor;
