//! Reading a topic's keys from its start to its end, for a stage that rebuilds state from a
//! compacted topic it writes itself (fan-out's ledger of published resources).
//!
//! "The end" is everything written before the scan began, as read_committed readers see it:
//! first the scan waits until each partition's last stable offset has passed the partition's
//! high watermark as it was at the start, so every transaction that was open then has
//! committed or aborted; then it reads to the end (librdkafka reports a partition's end at its
//! last stable offset), skipping aborted records. Without the wait, a transaction a
//! predecessor committed a moment after the scan looked would be missing from what it read
//! (its commit markers can land after the new owner's committed offsets became stable, e.g.
//! on another broker). The reader is assigned, never subscribed: it joins no group and
//! commits nothing.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::BusConfig;
use crate::consumer::consumer_client_config;
use crate::error::BusError;

/// What [`scan_keys`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    pub partitions: usize,
    pub records: u64,
}

/// Calls `f(key, has_value)` for every keyed record of `topic` in offset order per partition
/// (`has_value` false for a tombstone), until each partition's end (see the module's doc). A
/// topic that does not exist yet is empty. Blocking: run it on a blocking thread. Gives up
/// with [`BusError::Kafka`] (op `scan`) when `stall` passes without a record or a partition's
/// end, or (op `scan stable`) without the transactions open at the start resolving (a dead
/// producer's are aborted after its `transaction.timeout.ms`): a large topic takes as long as
/// it takes, a stuck read does not hang the caller.
pub fn scan_keys(
    cfg: &BusConfig,
    topic: &str,
    stall: Duration,
    mut f: impl FnMut(&[u8], bool),
) -> Result<ScanStats, BusError> {
    let mut deadline = Instant::now() + stall;
    let mut c = consumer_client_config(cfg, &format!("{}.scan", cfg.kafka.client_id));
    c.set("enable.partition.eof", "true");
    c.set("statistics.interval.ms", "0");
    let consumer: BaseConsumer = c.create().map_err(|e| BusError::Config(e.to_string()))?;
    let md =
        consumer.fetch_metadata(Some(topic), remaining(deadline)).map_err(|e| BusError::kafka("scan metadata", e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(ScanStats::default());
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(ScanStats::default()),
        Some(code) => {
            return Err(BusError::TopicUnreadable { topic: topic.into(), detail: format!("{code:?}") });
        }
    }
    // The high watermarks include records of open transactions, which the read_committed
    // consumer's own watermarks (last stable offsets) do not: they come from a client that
    // reads uncommitted, used for nothing else.
    let mut u = consumer_client_config(cfg, &format!("{}.scan-hw", cfg.kafka.client_id));
    u.set("isolation.level", "read_uncommitted");
    u.set("statistics.interval.ms", "0");
    let uncommitted: BaseConsumer = u.create().map_err(|e| BusError::Config(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    let mut open = 0usize;
    for p in t.partitions() {
        let (low, high) = uncommitted
            .fetch_watermarks(topic, p.id(), remaining(deadline))
            .map_err(|e| BusError::kafka("scan watermarks", e))?;
        if high > low {
            wait_stable(&consumer, topic, p.id(), high, stall)?;
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(|e| BusError::kafka("scan assign", e))?;
            open += 1;
        }
    }
    drop(uncommitted);
    deadline = Instant::now() + stall;
    let stats = ScanStats { partitions: t.partitions().len(), records: 0 };
    if open == 0 {
        return Ok(stats);
    }
    consumer.assign(&tpl).map_err(|e| BusError::kafka("scan assign", e))?;
    let mut records = 0u64;
    while open > 0 {
        if Instant::now() >= deadline {
            return Err(BusError::kafka("scan", KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut)));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                if let Some(k) = m.key() {
                    f(k, m.payload().is_some());
                }
                records += 1;
                deadline = Instant::now() + stall;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                open -= 1;
                deadline = Instant::now() + stall;
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, "scan: consumer error (librdkafka retries)"),
        }
    }
    Ok(ScanStats { records, ..stats })
}

/// The partitions of the topics `subscription` names that hold records now, each with its end
/// (its last stable offset: what read_committed readers see): what a reader of the
/// subscription must reach to have caught up with what was there when it started. Entries
/// starting with `^` are regular expressions over topic names, as librdkafka reads a
/// subscription; others are names. A named topic that does not exist holds nothing.
pub fn partitions_with_records(
    cfg: &BusConfig,
    subscription: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64)>, BusError> {
    let deadline = Instant::now() + timeout;
    let patterns = subscription
        .iter()
        .filter(|s| s.starts_with('^'))
        .map(|s| regex_lite::Regex::new(s).map_err(|e| BusError::Config(format!("topic pattern {s}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let wanted = |topic: &str| subscription.iter().any(|s| s == topic) || patterns.iter().any(|p| p.is_match(topic));
    let mut c = consumer_client_config(cfg, &format!("{}.backlog", cfg.kafka.client_id));
    c.set("statistics.interval.ms", "0");
    let consumer: BaseConsumer = c.create().map_err(|e| BusError::Config(e.to_string()))?;
    let md = consumer.fetch_metadata(None, remaining(deadline)).map_err(|e| BusError::kafka("backlog metadata", e))?;
    let mut out = Vec::new();
    for t in md.topics().iter().filter(|t| t.error().is_none() && wanted(t.name())) {
        for p in t.partitions() {
            let (low, stable) = consumer
                .fetch_watermarks(t.name(), p.id(), remaining(deadline))
                .map_err(|e| BusError::kafka("backlog watermarks", e))?;
            if stable > low {
                out.push((t.name().to_string(), p.id(), stable));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Waits until the partition's last stable offset (the read_committed `consumer`'s high
/// watermark) reaches `high`: every transaction with records below it has ended.
fn wait_stable(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    high: i64,
    stall: Duration,
) -> Result<(), BusError> {
    let deadline = Instant::now() + stall;
    loop {
        let (_, stable) = consumer
            .fetch_watermarks(topic, partition, remaining(deadline))
            .map_err(|e| BusError::kafka("scan watermarks", e))?;
        if stable >= high {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BusError::kafka(
                "scan stable",
                KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}
