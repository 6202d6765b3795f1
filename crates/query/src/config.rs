//! The query service's settings (section `[query]`), every key with its default; the service's
//! `query.toml` documents them for operators.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// Serve the FHIR R4 read and search facade (`/fhir/...`) on `fhir_rest_addr`.
    pub fhir_rest_enabled: bool,
    pub fhir_rest_addr: SocketAddr,
    /// Directory of the SQLite store (`query.sqlite` inside it).
    pub data_dir: PathBuf,
    /// Topics to materialise; empty means every topic matching `topic_pattern`.
    pub topics: Vec<String>,
    /// Regular expression (librdkafka syntax, must start with `^`) used when `topics` is empty.
    pub topic_pattern: String,
    /// Consumer groups are `<group_prefix>.<uuid>`, one per store file, so a new (or deleted)
    /// store always rebuilds from the beginning of the topics.
    pub group_prefix: String,
    /// Delete the store on start and rebuild it from the topics (also `query --rebuild`).
    pub rebuild_on_start: bool,
    /// At most this many records stored per SQLite transaction (records already waiting in
    /// the consumer are batched).
    pub max_batch: usize,
    /// How often (ms) stored records are synced to disk and their offsets committed to Kafka:
    /// the most a crash or power cut makes the store read again.
    pub sync_interval_ms: u64,
    /// Report ready (`/readyz`) only once the store has caught up with what the topics held
    /// when the service started, so a new or rebuilding replica takes no traffic while it
    /// fills. Default true.
    pub ready_after_catch_up: bool,
    /// Changes a WatchPatient stream may fall behind before it is ended with RESOURCE_EXHAUSTED.
    pub watch_buffer: usize,
    /// `[query.tls]`: certificate files for the gRPC API (`cert`, `key`, optional `client_ca`
    /// for mutual TLS). Nothing set (the default): plaintext gRPC.
    pub tls: tls_server::TlsFiles,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            fhir_rest_enabled: true,
            fhir_rest_addr: SocketAddr::from(([127, 0, 0, 1], 8088)),
            data_dir: PathBuf::from("./.state/query"),
            topics: Vec::new(),
            topic_pattern: r"^fhir\..*\.v1$".into(),
            group_prefix: "arteria-query".into(),
            rebuild_on_start: false,
            max_batch: 500,
            sync_interval_ms: 1000,
            ready_after_catch_up: true,
            watch_buffer: 1024,
            tls: tls_server::TlsFiles::default(),
        }
    }
}

impl QueryConfig {
    /// What to subscribe to: the explicit list, else the pattern.
    pub fn subscription(&self) -> Vec<String> {
        if self.topics.is_empty() { vec![self.topic_pattern.clone()] } else { self.topics.clone() }
    }
}
