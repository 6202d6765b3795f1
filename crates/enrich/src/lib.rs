//! The terminology-enrich stage: every `ClinicalEvent` from `clinical.normalized.v1` leaves on
//! `clinical.enriched.v1` with each coding's standard coding added beside it (never replacing
//! it), missing displays filled in, quantities given their UCUM system and code, and an issue
//! for everything that could not be mapped. Nothing is dropped or overwritten.
//!
//! - [`event`]: enrichment of one event (pure; unit tested).
//! - [`processor`]: the per-record transform plugged into `bus::TxLoop`.
//! - [`config`]: the `[enrich]` settings.

pub mod config;
pub mod event;
pub mod processor;

pub use config::EnrichConfig;
pub use event::enrich_event;
pub use processor::EnrichProcessor;
