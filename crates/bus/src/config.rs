//! Typed bus configuration, deserialisable from a service's TOML sections.
//!
//! Services should not assemble librdkafka property maps by hand: this module owns the
//! mapping from documented, typed settings (with defaults that are safe for PHI: idempotent,
//! acks=all, read_committed) to `ClientConfig`, and passes security settings and any extra
//! librdkafka property through unchanged so operators are never blocked by a missing knob.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// A secret string: deserialised like a string, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// SASL settings (`sasl.*`). PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER need no extra build
/// features; Kerberos (GSSAPI) does and is not enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `sasl.mechanism`, e.g. `SCRAM-SHA-512`.
    pub mechanism: String,
    /// `sasl.username`.
    #[serde(default)]
    pub username: Option<String>,
    /// `sasl.password`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// `sasl.oauthbearer.config`, for OAUTHBEARER.
    #[serde(default)]
    pub oauthbearer_config: Option<Secret>,
}

/// TLS settings (`ssl.*`), all optional; unset means librdkafka's default (system CA store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `ssl.ca.location`: CA bundle (PEM) to verify the brokers.
    pub ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate (PEM) for mTLS.
    pub certificate_location: Option<String>,
    /// `ssl.key.location`: client private key (PEM) for mTLS.
    pub key_location: Option<String>,
    /// `ssl.key.password`.
    pub key_password: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm`: `https` (default, verify host name) or `none`.
    pub endpoint_identification: Option<String>,
}

/// Connection to the Kafka cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`. Default `127.0.0.1:9092` (the local stack).
    pub bootstrap_servers: String,
    /// `client.id`. Default `arteria`.
    pub client_id: String,
    /// Default `plaintext`.
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslConfig>,
    pub tls: TlsConfig,
    /// Any other librdkafka property, passed through as is (applied last, so it wins).
    /// Numbers and booleans are taken as librdkafka reads them (`"fetch.min.bytes" = 65536`,
    /// or `ARTERIA__BUS__KAFKA__EXTRA__fetch.min.bytes=65536`), not refused for not being text.
    #[serde(deserialize_with = "librdkafka_values")]
    pub extra: BTreeMap<String, String>,
}

/// librdkafka's properties are all text; a TOML file or an environment override naturally
/// writes a size or a flag as a number or a boolean.
fn librdkafka_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Float(f64),
        Flag(bool),
    }
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(s) => s,
                Value::Integer(n) => n.to_string(),
                Value::Float(x) => x.to_string(),
                Value::Flag(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            client_id: "arteria".into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: TlsConfig::default(),
            extra: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The librdkafka configuration shared by every client: connection, security and extras.
    pub fn to_client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", &self.client_id);
        c.set("security.protocol", self.security_protocol.as_str());
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", &sasl.mechanism);
            if let Some(u) = &sasl.username {
                c.set("sasl.username", u);
            }
            if let Some(p) = &sasl.password {
                c.set("sasl.password", &p.0);
            }
            if let Some(o) = &sasl.oauthbearer_config {
                c.set("sasl.oauthbearer.config", &o.0);
            }
        }
        let tls = &self.tls;
        let pairs = [
            ("ssl.ca.location", tls.ca_location.as_deref()),
            ("ssl.certificate.location", tls.certificate_location.as_deref()),
            ("ssl.key.location", tls.key_location.as_deref()),
            ("ssl.key.password", tls.key_password.as_ref().map(|s| s.0.as_str())),
            ("ssl.endpoint.identification.algorithm", tls.endpoint_identification.as_deref()),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// How to authenticate to the schema registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryAuth {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
    },
}

/// Confluent-compatible schema registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API. Default
    /// `http://127.0.0.1:8081/apis/ccompat/v7` (Apicurio in the local stack).
    pub url: String,
    pub auth: RegistryAuth,
    /// Per-request timeout. Default 10 000 ms.
    pub timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { url: "http://127.0.0.1:8081/apis/ccompat/v7".into(), auth: RegistryAuth::None, timeout_ms: 10_000 }
    }
}

/// Producer tuning. Idempotence and acks=all are not settings: they are always on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// `linger.ms`: how long to wait to fill a batch. Default 5 — a few ms of latency buys
    /// large batches, which is what acks=all throughput depends on.
    pub linger_ms: u64,
    /// `batch.size` in bytes. Default 1 MiB.
    pub batch_size: u64,
    /// `compression.type`: none, gzip, snappy, lz4, zstd. Default `lz4` (cheap on CPU; the
    /// 2-core target machine makes zstd's better ratio cost more than it saves).
    pub compression: String,
    /// `delivery.timeout.ms`: how long a send may take, retries included, before it fails.
    /// Default 120 000 (librdkafka's default is 300 000; two minutes is enough to ride out a
    /// broker restart while still surfacing an outage to the caller).
    pub delivery_timeout_ms: u64,
    /// `queue.buffering.max.messages`: local queue depth before sends wait. Default 100 000.
    pub queue_max_messages: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            batch_size: 1_048_576,
            compression: "lz4".into(),
            delivery_timeout_ms: 120_000,
            queue_max_messages: 100_000,
        }
    }
}

impl ProducerConfig {
    /// Adds the producer properties (idempotent, acks=all, tuning) to `c`.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        c.set("linger.ms", self.linger_ms.to_string());
        c.set("batch.size", self.batch_size.to_string());
        c.set("compression.type", &self.compression);
        c.set("delivery.timeout.ms", self.delivery_timeout_ms.to_string());
        c.set("queue.buffering.max.messages", self.queue_max_messages.to_string());
    }
}

/// Exponential backoff, used for start-up and for transient processing errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay. Default 200 ms.
    pub initial_ms: u64,
    /// Longest delay. Default 10 000 ms.
    pub max_ms: u64,
    /// Give up after this long in total; `None` retries until shutdown. Default 120 000 ms.
    pub give_up_after_ms: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { initial_ms: 200, max_ms: 10_000, give_up_after_ms: Some(120_000) }
    }
}

impl RetryConfig {
    /// Delay before retry number `attempt` (1-based): doubles from `initial_ms`, capped at `max_ms`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        let ms = self.initial_ms.saturating_mul(1u64 << shift).min(self.max_ms);
        Duration::from_millis(ms)
    }

    /// The total budget, if any.
    pub fn give_up_after(&self) -> Option<Duration> {
        self.give_up_after_ms.map(Duration::from_millis)
    }
}

/// Shape of topics created at start-up when they do not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    /// Partitions of the topics that carry the flow (raw, normalized, enriched, DLQs, routes).
    /// Default 6: enough parallelism for a few replicas per stage.
    pub partitions: i32,
    /// Partitions of the current-state topics (compacted, `fhir.<type>.v1`). Default 1.
    ///
    /// A fan-out transaction writes to many of them (about twelve of twenty-two in the load
    /// mix) and pays per partition it touches (adding it to the transaction, a commit marker in it) while each reader fetches
    /// every partition: on the local two-core broker at 1,000 messages/s, one partition
    /// instead of six took ~10 % off the broker's CPU and ~100 ms off the end-to-end median
    /// (docs/benchmarks.md, run 12). Every query replica reads all of them anyway; raise it
    /// for other consumers that share a topic's reading among replicas. Only topics created
    /// from now on take it: an existing topic keeps its partitions, and start-up refuses a
    /// mismatch (set this to what the topics have).
    pub current_state_partitions: i32,
    /// Default 1 (the local single-node stack); production sets 3.
    pub replication_factor: i32,
    /// Extra topic configs for every created topic, e.g. `min.insync.replicas`.
    pub configs: BTreeMap<String, String>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self { partitions: 6, current_state_partitions: 1, replication_factor: 1, configs: BTreeMap::new() }
    }
}

/// Everything the bus needs; one `[bus]` section of a service's TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub producer: ProducerConfig,
    pub topics: TopicDefaults,
    /// Start-up retry against an unreachable broker or registry.
    pub startup_retry: RetryConfig,
    /// How the transactional stages (normalize, enrich, fan-out) batch their transactions
    /// (`[bus.transactions]`).
    pub transactions: crate::txloop::TxTuning,
}

impl BusConfig {
    /// Says so in the log when `[bus.transactions]` differs from its defaults in a service that
    /// writes no transactions (ingest, query): the section is shared by every service's `[bus]`,
    /// so one ConfigMap can serve them all, but an operator tuning it there should learn that it
    /// does nothing. Returns whether it warned.
    pub fn warn_if_transactions_unused(&self, service: &str) -> bool {
        let tuned = self.transactions != crate::txloop::TxTuning::default();
        if tuned {
            tracing::warn!(
                service,
                "[bus.transactions] is set but has no effect on this service: it tunes the transactional stages (normalize, enrich, fanout)"
            );
        }
        tuned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_settings_pass_through() {
        let cfg: KafkaConfig = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": "b1:9093,b2:9093",
            "security_protocol": "sasl_ssl",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "svc", "password": "pw"},
            "tls": {"ca_location": "/etc/ca.pem", "endpoint_identification": "https"},
            "extra": {"socket.keepalive.enable": "true", "client.id": "override"}
        }))
        .unwrap();
        let c = cfg.to_client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("b1:9093,b2:9093"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("svc"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("https"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        // Extras are applied last and win.
        assert_eq!(c.get("client.id"), Some("override"));
        assert_eq!(c.get("ssl.key.location"), None);
    }

    #[test]
    fn extra_properties_may_be_numbers_or_flags() {
        let cfg: KafkaConfig = serde_json::from_value(serde_json::json!({
            "extra": {"fetch.min.bytes": 65536, "socket.keepalive.enable": true, "client.id": "x", "x.ratio": 0.5}
        }))
        .unwrap();
        let c = cfg.to_client_config();
        assert_eq!(c.get("fetch.min.bytes"), Some("65536"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("client.id"), Some("x"));
        assert_eq!(c.get("x.ratio"), Some("0.5"));
        let err = serde_json::from_value::<KafkaConfig>(serde_json::json!({"extra": {"a": [1]}})).unwrap_err();
        assert!(err.to_string().contains("did not match any variant"), "{err}");
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let cfg = SaslConfig {
            mechanism: "PLAIN".into(),
            username: Some("u".into()),
            password: Some(Secret("hunter2".into())),
            oauthbearer_config: None,
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let reg = RegistryAuth::Bearer { token: Secret("tok123".into()) };
        assert!(!format!("{reg:?}").contains("tok123"));
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let cfg: BusConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, BusConfig::default());
        assert_eq!(cfg.kafka.bootstrap_servers, "127.0.0.1:9092");
        let err = serde_json::from_str::<BusConfig>(r#"{"kafka":{"bootstrap":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `bootstrap`"), "{err}");
    }

    #[test]
    fn transactions_are_tuned_in_their_own_section() {
        let cfg: BusConfig = serde_json::from_str(r#"{"transactions":{"max_txn_ms":20}}"#).unwrap();
        assert_eq!(cfg.transactions.max_txn_ms, 20);
        let default = crate::txloop::TxTuning::default();
        assert_eq!(cfg.transactions.max_records_per_txn, default.max_records_per_txn);
        assert_eq!(cfg.transactions.linger_ms, default.linger_ms);
        let err = serde_json::from_str::<BusConfig>(r#"{"transactions":{"max_txn":20}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `max_txn`"), "{err}");
        // Services without transactions say when the section was tuned for nothing.
        assert!(cfg.warn_if_transactions_unused("ingest"));
        assert!(!BusConfig::default().warn_if_transactions_unused("ingest"));
    }

    #[test]
    fn producer_is_always_idempotent_with_acks_all() {
        let mut c = ClientConfig::new();
        ProducerConfig::default().apply(&mut c);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryConfig { initial_ms: 100, max_ms: 1000, give_up_after_ms: None };
        let d: Vec<u64> = (1..=6).map(|a| r.delay(a).as_millis() as u64).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.delay(u32::MAX).as_millis(), 1000);
    }
}
