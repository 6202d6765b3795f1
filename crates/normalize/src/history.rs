//! Reading back the recent past of one input partition, to rebuild the duplicate window when a
//! replica takes over a partition (see [`crate::dedup`]). The input topic is the source of
//! truth: every record before the committed offset was processed, and its `RawMessage`
//! carries the sender and control id.

use crate::dedup::{DedupKey, Fingerprint};
use bus::{AvroSerde, BusConfig, InputRecord};
use canonical::raw::RawMessage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read back {topic}[{partition}]: {detail}")]
    Kafka { topic: String, partition: i32, detail: String },
}

/// The dedup key of a raw message, when it has a control id to dedup on.
pub fn dedup_key(raw: &RawMessage) -> Option<DedupKey> {
    let control_id = raw.control_id.clone().filter(|c| !c.trim().is_empty())?;
    Some(DedupKey {
        tenant: raw.tenant.clone(),
        application: raw.sender.application.clone(),
        facility: raw.sender.facility.clone(),
        control_id,
    })
}

/// (offset, received at ms, key's fingerprint) of the records of `topic[partition]` received in
/// the last `window_ms` before offset `up_to` (exclusive), in offset order. Fingerprints, not
/// keys: a window of a busy partition is ~100 k records, and four strings each would make the
/// read-back cost several times the window it rebuilds.
pub async fn read_window(
    bus: &BusConfig,
    serde: &AvroSerde<RawMessage>,
    topic: &str,
    partition: i32,
    up_to: i64,
    window_ms: i64,
) -> Result<Vec<(i64, i64, Fingerprint)>, HistoryError> {
    let err = |detail: String| HistoryError::Kafka { topic: topic.to_string(), partition, detail };
    if up_to <= 0 {
        return Ok(Vec::new());
    }
    let mut cfg = bus::consumer::consumer_client_config(bus, "arteria-normalize-history");
    // An assign-only reader: it never joins the group and never commits.
    cfg.set("enable.auto.commit", "false");
    let consumer: StreamConsumer = cfg.create().map_err(|e| err(e.to_string()))?;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let since = now_ms.saturating_sub(window_ms);
    let start = {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(since)).map_err(|e| err(e.to_string()))?;
        let c = consumer_for_lookup(bus).map_err(&err)?;
        // Blocking metadata call: off the executor.
        let found = tokio::task::spawn_blocking(move || c.offsets_for_times(tpl, Duration::from_secs(30)))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        match found.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // No record at or after `since`: nothing in the window.
            _ => return Ok(Vec::new()),
        }
    };
    if start >= up_to {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(|e| err(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| {
                err(format!("no record at offset {} within 30 s", out.last().map_or(start, |(o, _, _)| o + 1)))
            })?
            .map_err(|e| err(e.to_string()))?;
        let rec = InputRecord::from_message(&m);
        if rec.offset >= up_to {
            break;
        }
        // A record that does not decode was dead-lettered when it was processed; skip it.
        if let Some(v) = rec.value.as_deref()
            && let Ok(raw) = serde.decode(v).await
            && let Some(key) = dedup_key(&raw)
        {
            out.push((rec.offset, raw.received_at / 1000, key.fingerprint()));
        }
        if rec.offset + 1 >= up_to {
            break;
        }
    }
    Ok(out)
}

fn consumer_for_lookup(bus: &BusConfig) -> Result<rdkafka::consumer::BaseConsumer, String> {
    bus::consumer::consumer_client_config(bus, "arteria-normalize-history").create().map_err(|e| e.to_string())
}
