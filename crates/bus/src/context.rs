//! librdkafka callbacks surfaced through `tracing`.
//!
//! librdkafka reports broker disconnects, leaving the group after a stalled poll, fatal
//! idempotence errors and rebalances only through its log and error callbacks; without this
//! they vanish. Only librdkafka's own text is logged: it names brokers, topics and partitions,
//! never message payloads, so no PHI reaches the logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

/// Context for producers and admin clients.
#[derive(Clone, Debug)]
pub struct BusContext {
    /// Which client this is, e.g. `normalize/producer`; appears in every log line.
    pub name: Arc<str>,
}

impl BusContext {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }
}

fn log_rdkafka(name: &str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
    }
}

fn error_rdkafka(name: &str, error: &KafkaError, reason: &str) {
    // Transport failures are routine while a broker restarts; librdkafka retries them itself.
    let routine = matches!(
        error.rdkafka_error_code(),
        Some(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
        )
    );
    if routine {
        tracing::warn!(target: "librdkafka", client = name, error = %error, "{reason}");
    } else {
        tracing::error!(target: "librdkafka", client = name, error = %error, "{reason}");
    }
}

impl ClientContext for BusContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(&self.name, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_rdkafka(&self.name, &error, reason);
    }
}

/// Context for consumers: logs rebalances and counts them so the transactional loop can tell
/// that its partitions changed under an open transaction.
#[derive(Clone, Debug)]
pub struct BusConsumerContext {
    pub name: Arc<str>,
    rebalances: Arc<AtomicU64>,
}

impl BusConsumerContext {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), rebalances: Arc::new(AtomicU64::new(0)) }
    }

    /// Number of revocations seen so far.
    pub fn rebalance_generation(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }
}

impl ClientContext for BusConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(&self.name, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_rdkafka(&self.name, &error, reason);
    }
}

impl ConsumerContext for BusConsumerContext {
    // Kept short on purpose: it runs inside the consumer's poll.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.rebalances.fetch_add(1, Ordering::SeqCst);
                tracing::info!(client = &*self.name, partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(client = &*self.name, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::error!(client = &*self.name, error = %e, "rebalance error");
            }
        }
    }
}
