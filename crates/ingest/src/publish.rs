//! Where ingest's output goes. [`KafkaPublisher`] writes Avro records to the raw topic and the
//! DLQ and resolves only on the broker's acknowledgement (acks=all, idempotent); the
//! [`Publisher`] trait exists so the session logic can be unit tested without a broker (the
//! integration tests in `tests/` use the real one).

use bus::dlq::{DeadLetter, HeaderEntry};
use bus::{AvroSerde, BusProducer, MessageHeaders, Registry, TraceParent};
use canonical::raw::RawMessage;
use std::future::Future;

/// Media type of a `RawMessage` value.
pub const RAW_CONTENT_TYPE: &str = "application/vnd.arteria.raw-message.v1+avro";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("could not encode for {topic}: {detail}")]
    Encode { topic: String, detail: String },
    #[error("Kafka did not acknowledge the write to {topic}: {detail}")]
    NotAcknowledged { topic: String, detail: String },
}

/// Durable destinations of the ingest stage.
pub trait Publisher: Send + Sync + 'static {
    /// Writes an accepted message; resolves once it is durably stored.
    fn publish_raw(
        &self,
        key: &[u8],
        record: &RawMessage,
        trace: &TraceParent,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
    /// Writes a rejected message's dead letter; resolves once it is durably stored.
    fn publish_dead_letter(
        &self,
        key: &[u8],
        letter: &DeadLetter,
        trace: &TraceParent,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// The Kafka-backed publisher.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: BusProducer,
    raw: AvroSerde<RawMessage>,
    dlq: AvroSerde<DeadLetter>,
}

impl KafkaPublisher {
    pub fn new(producer: BusProducer, registry: &Registry, raw_topic: &str, dlq_topic: &str) -> Self {
        Self { producer, raw: registry.value_serde(raw_topic), dlq: registry.value_serde(dlq_topic) }
    }

    /// Registers both value schemas: an incompatible schema stops start-up, not the first message.
    pub async fn register_schemas(&self) -> Result<(), PublishError> {
        for (topic, r) in [(self.raw.topic(), self.raw.register().await), (self.dlq.topic(), self.dlq.register().await)]
        {
            r.map_err(|e| PublishError::Encode { topic: topic.to_string(), detail: e.to_string() })?;
        }
        Ok(())
    }

    pub fn producer(&self) -> &BusProducer {
        &self.producer
    }

    async fn send(&self, topic: &str, key: &[u8], value: &[u8], headers: &MessageHeaders) -> Result<(), PublishError> {
        self.producer
            .send(topic, Some(key), value, headers)
            .await
            .map(|_| ())
            .map_err(|e| PublishError::NotAcknowledged { topic: topic.to_string(), detail: e.to_string() })
    }
}

impl Publisher for KafkaPublisher {
    async fn publish_raw(&self, key: &[u8], record: &RawMessage, trace: &TraceParent) -> Result<(), PublishError> {
        let value = self
            .raw
            .encode(record)
            .await
            .map_err(|e| PublishError::Encode { topic: self.raw.topic().to_string(), detail: e.to_string() })?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&record.id).set_traceparent(trace).set_content_type(RAW_CONTENT_TYPE);
        // Carried to the last stage, which observes accept → queryable where it happens.
        headers.set_received_at_micros(record.received_at);
        self.send(self.raw.topic(), key, &value, &headers).await
    }

    async fn publish_dead_letter(
        &self,
        key: &[u8],
        letter: &DeadLetter,
        trace: &TraceParent,
    ) -> Result<(), PublishError> {
        let value = self
            .dlq
            .encode(letter)
            .await
            .map_err(|e| PublishError::Encode { topic: self.dlq.topic().to_string(), detail: e.to_string() })?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&letter.id).set_traceparent(trace).set_content_type(bus::dlq::CONTENT_TYPE);
        self.send(self.dlq.topic(), key, &value, &headers).await
    }
}

/// The dead letter of a message ingest refused. Ingest has no source topic: the source is the
/// channel (`mllp` / `http`), partition and offset are -1, and the original bytes are the
/// value exactly as received (for an oversized MLLP frame: only its first bytes, as `detail`
/// says).
pub fn dead_letter(
    channel: &str,
    peer: Option<std::net::SocketAddr>,
    original: &[u8],
    class: &str,
    detail: &str,
    received_ms: i64,
) -> DeadLetter {
    DeadLetter {
        id: uuid::Uuid::now_v7().to_string(),
        stage: "ingest".into(),
        error_class: class.into(),
        detail: detail.into(),
        attempts: 1,
        failed_at: crate::intake::now_micros(),
        source_topic: channel.into(),
        source_partition: -1,
        source_offset: -1,
        source_timestamp_ms: Some(received_ms),
        original_key: None,
        original_value: Some(original.to_vec()),
        original_headers: peer
            .map(|p| vec![HeaderEntry { name: "peer".into(), value: Some(p.to_string().into_bytes()) }])
            .unwrap_or_default(),
    }
}
