//! The bus's error type.
//!
//! Callers need to tell apart "retry later" (broker or registry unreachable), "this record is
//! bad" and "this process must stop" (fenced producer, misconfigured topic). Each variant says
//! which, in words an operator can act on.

use rdkafka::error::KafkaError;

use crate::avro::AvroError;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Kafka client configuration: {0}")]
    Config(String),

    #[error(
        "Kafka at {bootstrap} is unreachable after {attempts} attempts over {waited_ms} ms \
         (last error: {last_error}); check that the brokers are up and bootstrap_servers/security settings are right"
    )]
    BrokerUnavailable { bootstrap: String, attempts: u32, waited_ms: u64, last_error: String },

    #[error(
        "schema registry at {url} is unreachable after {attempts} attempts over {waited_ms} ms (last error: {last_error})"
    )]
    RegistryUnavailable { url: String, attempts: u32, waited_ms: u64, last_error: String },

    #[error("topic {topic} has the wrong shape: {problem}")]
    TopicMismatch { topic: String, problem: String },

    #[error("could not create topic {topic}: {detail}")]
    TopicCreate { topic: String, detail: String },

    /// The broker could not say what the topic is (yet): no leader, a timeout, configs not
    /// readable. Start-up asks again for a while before giving up with this.
    #[error("cannot read the shape of topic {topic}: {detail}")]
    TopicUnreadable { topic: String, detail: String },

    #[error("Kafka delivery failed for topic {topic}: {error}")]
    Delivery { topic: String, error: KafkaError },

    #[error("Kafka error during {op}: {error}")]
    Kafka { op: &'static str, error: KafkaError },

    /// The producer or consumer can no longer be used (e.g. fenced by a newer instance with the
    /// same transactional id, a static member fenced after a broker restart, or an idempotence
    /// sequence error). The service must stop and restart.
    #[error(
        "fatal Kafka error during {op}: {detail}; stopping — restart the service (a fenced producer means another instance uses the same transactional_id; a fenced static consumer right after a broker restart rejoins on restart)"
    )]
    Fatal { op: &'static str, detail: String },

    #[error(transparent)]
    Avro(#[from] AvroError),

    #[error("shut down before {0} completed")]
    ShutDown(&'static str),

    #[error("background task failed: {0}")]
    Join(String),
}

impl BusError {
    pub(crate) fn kafka(op: &'static str, error: KafkaError) -> Self {
        BusError::Kafka { op, error }
    }
}
