//! Consumers: read_committed group consumers and the owned record type handed to code.
//!
//! Downstream of a transactional stage only committed data may be read, so every consumer here
//! is `isolation.level=read_committed` with offsets committed by us, never by a timer on
//! unprocessed records. Records are copied out of librdkafka (`InputRecord`) so they can cross
//! tasks and outlive the consumer's buffers.

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;

use crate::config::BusConfig;
use crate::context::BusConsumerContext;
use crate::error::BusError;
use crate::headers::MessageHeaders;

/// A consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: MessageHeaders,
    /// Record timestamp (ms since the epoch), when the broker or producer set one.
    pub timestamp_ms: Option<i64>,
}

impl InputRecord {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: MessageHeaders::from_kafka(m.headers()),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// librdkafka's prefetch bound per consumer, in KiB (see [`consumer_client_config`]).
pub const PREFETCH_KBYTES: u32 = 4 * 1024;

/// The librdkafka properties of a read_committed consumer in `group_id` that never commits by
/// itself. `auto.offset.reset=earliest`: a new group must not skip records already written.
pub fn consumer_client_config(cfg: &BusConfig, group_id: &str) -> ClientConfig {
    let mut c = cfg.kafka.to_client_config();
    c.set("group.id", group_id);
    c.set("isolation.level", "read_committed");
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("auto.offset.reset", "earliest");
    c.set("enable.partition.eof", "false");
    // Lag for the consumer_lag metric arrives with librdkafka's statistics (see context.rs).
    c.set("statistics.interval.ms", "5000");
    // A consumer that is behind prefetches up to queued.max.messages.kbytes (librdkafka's
    // default: 64 MiB, in fetches of up to 50 MiB): that was most of a lagging stage's memory.
    // 4 MiB still holds over a hundred events (a 10-OBX ORU event is ~30 kB) or about two
    // thousand resources ahead of the stage, in fetches of 2 MiB. (With librdkafka's 1 s
    // backoff below, bounds this small starved the stages; with 10 ms they do not.)
    c.set("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string());
    c.set("fetch.max.bytes", (2 << 20).to_string());
    // Once that bound is reached librdkafka postpones the partition's next fetch by
    // fetch.queue.backoff.ms, 1 s by default: a stage that drained its queue in 50 ms then
    // sat idle for the rest of the second (enrich and fan-out ran at ~800 of 1,000 msg/s,
    // waiting, not working). 10 ms re-checks soon after the stage has taken a batch.
    c.set("fetch.queue.backoff.ms", "10");
    // extras win again, so an operator can still tune what the lines above set.
    for (k, v) in &cfg.kafka.extra {
        c.set(k, v);
    }
    c
}

/// An at-least-once group consumer for stages that do not produce to Kafka (e.g. the query
/// store): process, then [`BusConsumer::commit`] the record; a crash replays from the last
/// commit, so the processing must be idempotent (by message id).
pub struct BusConsumer {
    inner: Arc<StreamConsumer<BusConsumerContext>>,
}

/// librdkafka's metadata refresh interval, which is also how often a pattern subscription
/// looks for new matching topics.
const PATTERN_REFRESH: &str = "topic.metadata.refresh.interval.ms";

impl BusConsumer {
    /// Creates the consumer and subscribes to `topics`.
    /// `topics` are names, or regular expressions starting with `^`.
    pub fn new(cfg: &BusConfig, group_id: &str, topics: &[&str], name: &str) -> Result<Self, BusError> {
        let mut client = consumer_client_config(cfg, group_id);
        // A pattern subscription sees topics created after it only on a metadata refresh,
        // every 5 minutes by default: a fresh cluster whose topics appear while the pipeline
        // starts would leave them unread that long. 10 s costs one metadata request.
        if topics.iter().any(|t| t.starts_with('^')) && !cfg.kafka.extra.contains_key(PATTERN_REFRESH) {
            client.set(PATTERN_REFRESH, "10000");
        }
        let inner: StreamConsumer<BusConsumerContext> = client
            .create_with_context(BusConsumerContext::new(format!("{name}/consumer")))
            .map_err(|e| BusError::Config(e.to_string()))?;
        inner.subscribe(topics).map_err(|e| BusError::kafka("subscribe", e))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The consumer's lag per assigned partition, refreshed every statistics interval.
    pub fn lag(&self) -> crate::context::LagReport {
        self.inner.context().lag()
    }

    /// Next record. Transient consumer errors are returned to the caller, which may simply
    /// call again (librdkafka reconnects by itself).
    pub async fn recv(&self) -> Result<InputRecord, BusError> {
        match self.inner.recv().await {
            Ok(m) => Ok(InputRecord::from_message(&m)),
            Err(e) => Err(BusError::kafka("consume", e)),
        }
    }

    /// Commits positions `(topic, partition, next offset to read)` in one asynchronous request.
    pub fn commit_positions<'a>(
        &self,
        positions: impl IntoIterator<Item = (&'a str, i32, i64)>,
    ) -> Result<(), BusError> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (topic, partition, next) in positions {
            tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(next))
                .map_err(|e| BusError::kafka("commit", e))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.inner.commit(&tpl, rdkafka::consumer::CommitMode::Async).map_err(|e| BusError::kafka("commit", e))
    }

    /// Commits `record` as processed (the next read starts after it). Asynchronous commit:
    /// a lost commit only means a replay, which idempotent processing absorbs.
    pub fn commit(&self, record: &InputRecord) -> Result<(), BusError> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&record.topic, record.partition, rdkafka::Offset::Offset(record.offset + 1))
            .map_err(|e| BusError::kafka("commit", e))?;
        self.inner.commit(&tpl, rdkafka::consumer::CommitMode::Async).map_err(|e| BusError::kafka("commit", e))
    }

    /// Leaves the group (pending asynchronous commits are completed by librdkafka's close).
    /// Runs the blocking close off the executor.
    pub async fn close(self) -> Result<(), BusError> {
        let c = self.inner;
        tokio::task::spawn_blocking(move || {
            c.unsubscribe();
            drop(c);
        })
        .await
        .map_err(|e| BusError::Join(e.to_string()))
    }

    /// The rdkafka consumer, for what this wrapper does not cover.
    pub fn inner(&self) -> &StreamConsumer<BusConsumerContext> {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_is_bounded_and_extras_still_override() {
        let mut cfg = BusConfig::default();
        let c = consumer_client_config(&cfg, "g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(c.get("fetch.max.bytes"), Some("2097152"));
        // Reaching the bound must not idle the stage for librdkafka's default second.
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        cfg.kafka.extra.insert("queued.max.messages.kbytes".into(), "65536".into());
        assert_eq!(consumer_client_config(&cfg, "g").get("queued.max.messages.kbytes"), Some("65536"));
    }
}
