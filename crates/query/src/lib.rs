//! The query side of Arteria: materialises the compacted `fhir.<type>.v1` topics into an
//! embedded SQLite store and serves the `arteria.query.v1` gRPC API over it.
//!
//! Kafka is the source of truth; the store is a rebuildable view (delete it, or start with
//! `rebuild`, and it is refilled from the topics by a fresh consumer group).
//!
//! - [`store`]: the SQLite view, idempotent upserts, searches, change announcements.
//! - [`index`]: the search fields read out of FHIR JSON.
//! - [`time`]: FHIR dates and dateTimes as instants.
//! - [`paging`]: page sizes and opaque page tokens.
//! - [`materialize`]: the at-least-once consumer loop (topics → store).
//! - [`catch_up`]: whether a starting replica has caught up with the topics (readiness).
//! - [`service`], [`server`]: the gRPC service, with health and reflection.
//! - [`rest`]: the FHIR R4 read and search facade over the same service.
//! - [`auth`]: OAuth2 bearer JWTs (JWKS) and SMART scopes.
//! - [`audit`]: the `audit.v1` trail every PHI read writes before it is answered.
//! - [`client`]: helpers for programs that call the API (the CLI).
//! - [`config`]: the `[query]` settings.

pub mod audit;
pub mod auth;
pub mod catch_up;
pub mod client;
pub mod config;
pub mod index;
pub mod materialize;
pub mod paging;
pub mod resource_reader;
pub mod rest;
pub mod server;
pub mod service;
pub mod store;
pub mod time;

/// The generated gRPC types, client (`query_client::QueryClient`) and server.
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("arteria.query.v1");

    /// Encoded descriptors of the API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/query_descriptor.bin"));
}

/// The tonic version the generated client and server use (callers need no own dependency).
pub use tonic;

pub use config::QueryConfig;
pub use materialize::{Materializer, Progress};
pub use service::QueryService;
pub use store::Store;

/// Opens the store in `data_dir`, first deleting it when `rebuild` (the new store gets a new
/// consumer group, so it is refilled from the start of the topics).
pub fn open_store(cfg: &QueryConfig, rebuild: bool) -> Result<store::Store, store::StoreError> {
    if rebuild {
        store::Store::remove(&cfg.data_dir)?;
    }
    store::Store::open(&cfg.data_dir, cfg.watch_buffer)
}
