//! The normalize stage's logic: each `RawMessage` from `hl7v2.raw.v1` becomes one
//! `ClinicalEvent` on `clinical.normalized.v1`, inside the bus's transactional loop.
//!
//! - [`dedup`]: recognising sender retries (same sender and MSH-10 within a window) so they are
//!   marked and not re-emitted, in a way that stays correct when transactions abort and
//!   partitions move between replicas.
//! - [`history`]: reading back an input partition's recent past to rebuild that state.
//! - [`processor`]: the per-record transform plugged into `bus::TxLoop`.
//! - [`config`]: the `[normalize]` settings.

pub mod config;
pub mod dedup;
pub mod history;
pub mod processor;

pub use config::NormalizeConfig;
pub use processor::Normalizer;
