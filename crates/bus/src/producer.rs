//! The idempotent producer every service uses for non-transactional writes (ingest, DLQ).
//!
//! "Nothing accepted is lost" means a sender may only be acknowledged after Kafka has the
//! record on all in-sync replicas, so `send` resolves on the broker's delivery report, not on
//! enqueueing; idempotence keeps librdkafka's internal retries from duplicating or reordering.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::BusConfig;
use crate::context::BusContext;
use crate::error::BusError;
use crate::headers::MessageHeaders;

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The librdkafka properties of an idempotent, acks=all producer from `cfg`.
pub fn producer_client_config(cfg: &BusConfig) -> ClientConfig {
    let mut c = cfg.kafka.to_client_config();
    cfg.producer.apply(&mut c);
    c
}

/// Idempotent, acks=all producer. Cheap to clone (shared librdkafka handle).
#[derive(Clone)]
pub struct BusProducer {
    inner: FutureProducer<BusContext>,
    queue_timeout: Duration,
}

impl BusProducer {
    /// Creates the producer. `name` labels its log lines (e.g. `ingest`).
    pub fn new(cfg: &BusConfig, name: &str) -> Result<Self, BusError> {
        let inner = producer_client_config(cfg)
            .create_with_context(BusContext::new(format!("{name}/producer")))
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Self { inner, queue_timeout: Duration::from_millis(cfg.producer.delivery_timeout_ms) })
    }

    /// Sends one record and resolves when the broker acknowledged it (acks=all), or with the
    /// error that made delivery fail after librdkafka's retries.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &MessageHeaders,
    ) -> Result<Delivered, BusError> {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(value).headers(headers.to_kafka());
        if let Some(k) = key {
            rec = rec.key(k);
        }
        match self.inner.send(rec, self.queue_timeout).await {
            Ok(d) => Ok(Delivered { partition: d.partition, offset: d.offset }),
            Err((error, _msg)) => {
                if let Some((code, reason)) = self.inner.client().fatal_error() {
                    return Err(BusError::Fatal { op: "send", detail: format!("{code:?}: {reason}") });
                }
                Err(BusError::Delivery { topic: topic.to_string(), error })
            }
        }
    }

    /// Waits until every queued record is delivered (or `timeout`). Runs librdkafka's blocking
    /// flush off the async executor.
    pub async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let p = self.inner.clone();
        tokio::task::spawn_blocking(move || p.flush(timeout))
            .await
            .map_err(|e| BusError::Join(e.to_string()))?
            .map_err(|e| BusError::kafka("flush", e))
    }

    /// The rdkafka producer, for what this wrapper does not cover.
    pub fn inner(&self) -> &FutureProducer<BusContext> {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    //! Fault paths against librdkafka's in-process mock cluster (the real broker is exercised
    //! by the integration tests in `tests/`).
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};

    fn cfg_for(mock: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>) -> BusConfig {
        let mut cfg = BusConfig::default();
        cfg.kafka.bootstrap_servers = mock.bootstrap_servers();
        cfg.producer.delivery_timeout_ms = 3_000;
        cfg
    }

    #[tokio::test]
    async fn send_rides_out_retriable_broker_errors_and_resolves_on_the_ack() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let p = BusProducer::new(&cfg_for(&mock), "unit").unwrap();
        p.send("t", Some(b"k"), b"first", &MessageHeaders::new()).await.unwrap();
        // The next three produce requests fail retriably; librdkafka retries, idempotence
        // keeps the record once, and `send` resolves only when the broker finally took it.
        mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3]);
        let d = p.send("t", Some(b"k"), b"second", &MessageHeaders::new()).await.unwrap();
        assert_eq!(d.offset, 1, "delivered once, right after the first record");
    }

    #[tokio::test]
    async fn send_reports_a_broker_outage_instead_of_pretending_success() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let p = BusProducer::new(&cfg_for(&mock), "unit").unwrap();
        p.send("t", None, b"warm-up", &MessageHeaders::new()).await.unwrap();
        mock.broker_down(1).unwrap();
        let err = p.send("t", None, b"lost?", &MessageHeaders::new()).await.unwrap_err();
        match err {
            BusError::Delivery { topic, error } => {
                assert_eq!(topic, "t");
                assert_eq!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageTimedOut));
            }
            other => panic!("expected a delivery error, got {other}"),
        }
    }
}
