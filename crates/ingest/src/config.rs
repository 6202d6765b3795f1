//! `[ingest]` settings, with their defaults. Every key is optional in the TOML file.

use crate::allow::AllowRule;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of the ingest stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Tenant this endpoint belongs to; salts patient keys. Default `default`.
    pub tenant: String,
    /// Topic accepted messages are written to. Default `hl7v2.raw.v1`.
    pub raw_topic: String,
    /// Topic rejected messages are written to, original bytes kept. Default `ingest.dlq.v1`.
    pub dlq_topic: String,
    pub mllp: MllpConfig,
    pub http: HttpConfig,
    /// TLS (and mutual TLS) on the listeners. Off unless `cert` and `key` are set.
    pub tls: TlsConfig,
    /// Senders allowed to send. Empty (the default) allows every sender; otherwise a message
    /// must match at least one rule or it is rejected (AR) and dead-lettered.
    pub allow: Vec<AllowRule>,
    /// MSH-11 processing ids accepted (e.g. `["P"]` on a production endpoint). Empty (the
    /// default) accepts any.
    pub processing_ids: Vec<String>,
    /// Required MSH fields (among 9, 10, 11, 12) this endpoint lets senders leave empty, e.g.
    /// `[11]` for a sender that never fills the processing id. Empty (the default): a message
    /// without them is answered AR, never guessed.
    pub allow_missing_msh: Vec<usize>,
    /// Message limits, enforced with a clear NAK.
    pub limits: LimitsConfig,
    /// How long a sender waits for Kafka's acknowledgement before getting AE/CE. Default 10 000.
    pub ack_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            tenant: "default".into(),
            raw_topic: "hl7v2.raw.v1".into(),
            dlq_topic: "ingest.dlq.v1".into(),
            mllp: MllpConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            allow: Vec::new(),
            processing_ids: Vec::new(),
            allow_missing_msh: Vec::new(),
            limits: LimitsConfig::default(),
            ack_timeout_ms: 10_000,
        }
    }
}

/// `[ingest.mllp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MllpConfig {
    /// Listen address. Default `127.0.0.1:2575`.
    pub addr: SocketAddr,
    /// Most concurrent connections; further connections wait in the accept queue. Default 256.
    pub max_connections: usize,
    /// A connection with no complete frame for this long is closed. Default 300 000 (5 min).
    pub idle_timeout_ms: u64,
}

impl Default for MllpConfig {
    fn default() -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], 2575)), max_connections: 256, idle_timeout_ms: 300_000 }
    }
}

/// `[ingest.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; `POST /hl7v2` takes one message (or an MLLP-free batch is refused).
    /// Default `127.0.0.1:8080`.
    pub addr: SocketAddr,
    /// Set false to run without the HTTP endpoint. Default true.
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], 8080)), enabled: true }
    }
}

/// `[ingest.tls]`. Setting `cert` and `key` turns TLS on for the listeners selected by `mllp`
/// and `http`: those then speak only TLS (a plaintext client is dropped after a failed
/// handshake). Setting `client_ca` as well makes it mutual: every client must present a
/// certificate that chains to one of those CAs, or the handshake fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server's certificate chain, leaf first. Default: none (TLS off).
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1). Default: none.
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificates client certificates must chain to. Set: client
    /// certificates are required and verified (mTLS). Default: none (no client certificates).
    pub client_ca: Option<PathBuf>,
    /// TLS on the MLLP listener when `cert`/`key` are set. Default true.
    pub mllp: bool,
    /// TLS on the HTTP endpoint when `cert`/`key` are set. Default true.
    pub http: bool,
    /// A client that has not finished its handshake within this long is dropped. Default 10 000.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert: None, key: None, client_ca: None, mllp: true, http: true, handshake_timeout_ms: 10_000 }
    }
}

impl TlsConfig {
    /// The certificate files, for `tls-server` to load.
    pub fn files(&self) -> tls_server::TlsFiles {
        tls_server::TlsFiles { cert: self.cert.clone(), key: self.key.clone(), client_ca: self.client_ca.clone() }
    }
}

/// `[ingest.limits]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message, bytes. Larger MLLP frames are discarded as they stream in. Default 16 MiB.
    pub max_message_bytes: usize,
    /// Most segments in a message. Default 10 000.
    pub max_segments: usize,
    /// Longest field, bytes. Default 16 MiB.
    pub max_field_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_message_bytes: 16 << 20, max_segments: 10_000, max_field_bytes: 16 << 20 }
    }
}

impl LimitsConfig {
    pub fn to_hl7(self) -> hl7v2::Limits {
        hl7v2::Limits {
            max_message_bytes: self.max_message_bytes,
            max_segments: self.max_segments,
            max_field_bytes: self.max_field_bytes,
        }
    }
}
