//! Reading a DLQ and replaying chosen dead letters to where they came from.
//!
//! A DLQ is only useful if an operator can see what is in it and, once the cause is fixed,
//! send its records through again ("reprocess errored messages"). This module is the logic
//! behind `arteria dlq list|replay`: a read_committed snapshot of the DLQ up to the end offsets
//! it had when reading started, a selection (class, ids, limit), and a replay that re-produces
//! each original key, value and headers byte for byte to the source topic (or another one)
//! with one added header, [`REPLAYED_FROM`], naming the dead letter. Stages use that header to
//! tell an operator's replay from a sender's retry (normalize's duplicate check must not
//! swallow a replay of a message that was never emitted).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::avro::{AvroSerde, Registry};
use crate::config::BusConfig;
use crate::consumer::consumer_client_config;
use crate::dlq::DeadLetter;
use crate::error::BusError;
use crate::headers::MessageHeaders;
use crate::producer::{BusProducer, Delivered};

/// Header added to a replayed record: the id of the dead letter it was replayed from. Appended
/// after the original headers, so a record replayed more than once carries its whole history
/// (the last one is the newest).
pub const REPLAYED_FROM: &str = "arteria-replayed-from";

/// The dead letter id a record was replayed from, when it was.
pub fn replayed_from(headers: &MessageHeaders) -> Option<&str> {
    headers.get_str(REPLAYED_FROM)
}

/// How long a snapshot read may go without any progress before it gives up (a bound so a
/// broken cluster ends the command; a healthy read delivers within milliseconds).
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Metadata and watermark requests.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Consumer group named in the reader's configuration; the reader only assigns, never joins
/// the group nor commits.
const READER_GROUP: &str = "arteria-dlq-reader";

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("topic {0} does not exist")]
    MissingTopic(String),

    #[error("no dead letter with id {} in {topic} (nothing was replayed)", ids.join(", "))]
    UnknownIds { topic: String, ids: Vec<String> },

    #[error(
        "dead letter {id} was not read from a Kafka topic (source {source_name}, partition {partition}): \
         give a target with --to, or resend the original to ingest (nothing was replayed)"
    )]
    NotFromKafka { id: String, source_name: String, partition: i32 },

    #[error(
        "reading {topic} made no progress for {} s; partitions still unread: {partitions:?}",
        STALL_LIMIT.as_secs()
    )]
    Stalled { topic: String, partitions: Vec<i32> },

    #[error("Kafka error during {op} on {topic}: {error}")]
    Kafka { op: &'static str, topic: String, error: KafkaError },

    #[error("background task failed: {0}")]
    Join(String),

    #[error(transparent)]
    Bus(#[from] BusError),
}

/// One dead letter and where it sits in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    pub partition: i32,
    pub offset: i64,
    pub dead_letter: DeadLetter,
}

/// A DLQ record that is not a readable `DeadLetter` (reported, never skipped silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
}

/// What a DLQ held when the snapshot started, in the order the stages gave up
/// (`failed_at`, then DLQ partition and offset).
#[derive(Debug, Clone, Default)]
pub struct DlqSnapshot {
    pub topic: String,
    pub entries: Vec<DlqEntry>,
    pub undecodable: Vec<Undecodable>,
}

/// (partition, low watermark, high watermark).
type PartitionRange = (i32, i64, i64);

fn kafka<'a>(op: &'static str, topic: &'a str) -> impl Fn(KafkaError) -> ReplayError + 'a {
    move |error| ReplayError::Kafka { op, topic: topic.to_string(), error }
}

/// Reads `topic` from the beginning up to the end offsets it had when this call started
/// (read_committed: dead letters of aborted transactions are not there), decoding each record
/// as a `DeadLetter` through the registry. Records written after the start are not read.
pub async fn read_snapshot(cfg: &BusConfig, registry: &Registry, topic: &str) -> Result<DlqSnapshot, ReplayError> {
    let mut client = consumer_client_config(cfg, READER_GROUP);
    // The end of a partition is how a read_committed reader learns that what is left is an
    // open transaction or a commit marker, which it will never be handed as a record.
    client.set("enable.partition.eof", "true");
    let consumer: Arc<StreamConsumer> = Arc::new(client.create().map_err(|e| BusError::Config(e.to_string()))?);

    // Metadata and watermark requests block: off the executor.
    let (c, t) = (consumer.clone(), topic.to_string());
    let ranges = tokio::task::spawn_blocking(move || -> Result<Option<Vec<PartitionRange>>, KafkaError> {
        let md = c.fetch_metadata(Some(&t), METADATA_TIMEOUT)?;
        let Some(mt) = md.topics().iter().find(|m| m.name() == t) else { return Ok(None) };
        if mt.error().is_some_and(|e| RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition)
            || mt.partitions().is_empty()
        {
            return Ok(None);
        }
        let mut out = Vec::new();
        for p in mt.partitions() {
            let (low, high) = c.fetch_watermarks(&t, p.id(), METADATA_TIMEOUT)?;
            out.push((p.id(), low, high));
        }
        Ok(Some(out))
    })
    .await
    .map_err(|e| ReplayError::Join(e.to_string()))?
    .map_err(kafka("reading metadata", topic))?
    .ok_or_else(|| ReplayError::MissingTopic(topic.to_string()))?;

    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, low, high) in ranges {
        if high > low {
            pending.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(kafka("assign", topic))?;
        }
    }
    let serde: AvroSerde<DeadLetter> = registry.value_serde(topic);
    let mut snap = DlqSnapshot { topic: topic.to_string(), ..DlqSnapshot::default() };
    if pending.is_empty() {
        return Ok(snap);
    }
    consumer.assign(&tpl).map_err(kafka("assign", topic))?;
    while !pending.is_empty() {
        let m = match tokio::time::timeout(STALL_LIMIT, consumer.recv()).await {
            Err(_) => {
                return Err(ReplayError::Stalled {
                    topic: topic.to_string(),
                    partitions: pending.into_keys().collect(),
                });
            }
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
                continue;
            }
            Ok(Err(e)) => return Err(kafka("read", topic)(e)),
            Ok(Ok(m)) => m,
        };
        let (p, o) = (m.partition(), m.offset());
        let Some(&end) = pending.get(&p) else { continue };
        if o < end {
            match m.payload() {
                None => {
                    snap.undecodable.push(Undecodable { partition: p, offset: o, error: "record has no value".into() })
                }
                Some(v) => match serde.decode(v).await {
                    Ok(dead_letter) => snap.entries.push(DlqEntry { partition: p, offset: o, dead_letter }),
                    Err(e) => snap.undecodable.push(Undecodable { partition: p, offset: o, error: e.to_string() }),
                },
            }
        }
        if o + 1 >= end {
            pending.remove(&p);
        }
    }
    // Dropping an assign-only consumer blocks briefly while it closes: off the executor.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    snap.entries.sort_by_key(|e| (e.dead_letter.failed_at, e.partition, e.offset));
    Ok(snap)
}

/// Which dead letters to act on. Criteria combine with AND; empty `classes` or `ids` means
/// any. `limit` keeps the first N matches (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub classes: Vec<String>,
    pub ids: Vec<String>,
    pub limit: Option<usize>,
}

impl Selection {
    /// Everything (no criteria).
    pub fn is_everything(&self) -> bool {
        self.classes.is_empty() && self.ids.is_empty()
    }

    pub fn matches(&self, dl: &DeadLetter) -> bool {
        (self.classes.is_empty() || self.classes.contains(&dl.error_class))
            && (self.ids.is_empty() || self.ids.contains(&dl.id))
    }

    /// The matching entries of `snap`, oldest first. Fails, selecting nothing, when an id asked
    /// for is not in the snapshot at all (a typo must not silently replay less than intended).
    pub fn select<'a>(&self, snap: &'a DlqSnapshot) -> Result<Vec<&'a DlqEntry>, ReplayError> {
        let present: HashSet<&str> = snap.entries.iter().map(|e| e.dead_letter.id.as_str()).collect();
        let mut seen = HashSet::new();
        let unknown: Vec<String> =
            self.ids.iter().filter(|i| !present.contains(i.as_str()) && seen.insert(i.as_str())).cloned().collect();
        if !unknown.is_empty() {
            return Err(ReplayError::UnknownIds { topic: snap.topic.clone(), ids: unknown });
        }
        let it = snap.entries.iter().filter(|e| self.matches(&e.dead_letter));
        Ok(match self.limit {
            Some(n) => it.take(n).collect(),
            None => it.collect(),
        })
    }
}

/// One record to re-produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    pub dead_letter_id: String,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The original headers, in order, then [`REPLAYED_FROM`].
    pub headers: MessageHeaders,
}

impl ReplayRecord {
    /// The record that replays `dl` to its source topic, or to `to`. A dead letter whose
    /// original was not read from Kafka (ingest's: source `mllp`/`http`, partition -1) has no
    /// topic to go back to, so it needs `to`.
    pub fn from_dead_letter(dl: &DeadLetter, to: Option<&str>) -> Result<Self, ReplayError> {
        let topic = match to {
            Some(t) => t.to_string(),
            None if dl.source_partition < 0 || dl.source_topic.is_empty() => {
                return Err(ReplayError::NotFromKafka {
                    id: dl.id.clone(),
                    source_name: dl.source_topic.clone(),
                    partition: dl.source_partition,
                });
            }
            None => dl.source_topic.clone(),
        };
        let mut headers = dl.original_headers();
        headers.push(REPLAYED_FROM, Some(dl.id.clone().into_bytes()));
        Ok(Self {
            dead_letter_id: dl.id.clone(),
            topic,
            key: dl.original_key.clone(),
            value: dl.original_value.clone(),
            headers,
        })
    }
}

/// The records replaying `selected`, all or none: one that cannot be replayed fails the plan.
pub fn plan(selected: &[&DlqEntry], to: Option<&str>) -> Result<Vec<ReplayRecord>, ReplayError> {
    selected.iter().map(|e| ReplayRecord::from_dead_letter(&e.dead_letter, to)).collect()
}

/// Checks that every target topic of `records` exists, so nothing is produced when one does
/// not (rather than half a replay and a wait for auto-creation that may never come).
pub async fn check_targets(cfg: &BusConfig, records: &[ReplayRecord]) -> Result<(), ReplayError> {
    let topics: HashSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    for t in topics {
        if crate::topics::describe_topic(cfg, t).await?.is_none() {
            return Err(ReplayError::MissingTopic(t.to_string()));
        }
    }
    Ok(())
}

/// How one replayed record fared.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub dead_letter_id: String,
    pub topic: String,
    pub result: Result<Delivered, BusError>,
}

/// Re-produces `records` in order with `producer` (idempotent, acks=all) and waits for every
/// delivery report. Records of one key keep their order (same partition, one producer).
pub async fn replay(producer: &BusProducer, records: &[ReplayRecord]) -> Vec<ReplayOutcome> {
    let p = producer.inner();
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let headers = r.headers.to_kafka();
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        // Enqueue in order; a full local queue drains as deliveries complete.
        let queued = loop {
            match p.send_result(rec) {
                Ok(f) => break Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((e, _)) => break Err(e),
            }
        };
        pending.push(queued);
    }
    let mut out = Vec::with_capacity(records.len());
    for (r, q) in records.iter().zip(pending) {
        let result = match q {
            Err(error) => Err(BusError::Delivery { topic: r.topic.clone(), error }),
            Ok(f) => match f.await {
                Ok(Ok(d)) => Ok(Delivered { partition: d.partition, offset: d.offset }),
                Ok(Err((error, _))) => Err(match p.client().fatal_error() {
                    Some((code, reason)) => BusError::Fatal { op: "replay", detail: format!("{code:?}: {reason}") },
                    None => BusError::Delivery { topic: r.topic.clone(), error },
                }),
                Err(_) => Err(BusError::ShutDown("replay delivery")),
            },
        };
        out.push(ReplayOutcome { dead_letter_id: r.dead_letter_id.clone(), topic: r.topic.clone(), result });
    }
    out
}

/// Counts of dead letters per error class (for a list's summary).
pub fn count_by_class(entries: &[&DlqEntry]) -> BTreeMap<String, usize> {
    let mut m: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        *m.entry(e.dead_letter.error_class.as_str()).or_default() += 1;
    }
    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(id: &str, class: &str, failed_at: i64) -> DeadLetter {
        let mut h = MessageHeaders::new();
        h.set_message_id("m-1").push("bin", Some(vec![0, 255])).push("null", None);
        DeadLetter {
            id: id.into(),
            stage: "normalize".into(),
            error_class: class.into(),
            detail: "MSH-9 missing".into(),
            attempts: 1,
            failed_at,
            source_topic: "hl7v2.raw.v1".into(),
            source_partition: 2,
            source_offset: 40,
            source_timestamp_ms: None,
            original_key: Some(b"k".to_vec()),
            original_value: Some(vec![0, 1, 0xfe]),
            original_headers: h
                .entries()
                .iter()
                .map(|(n, v)| crate::dlq::HeaderEntry { name: n.clone(), value: v.clone() })
                .collect(),
        }
    }

    fn snap(letters: &[DeadLetter]) -> DlqSnapshot {
        DlqSnapshot {
            topic: "normalize.dlq.v1".into(),
            entries: letters
                .iter()
                .enumerate()
                .map(|(i, d)| DlqEntry { partition: 0, offset: i as i64, dead_letter: d.clone() })
                .collect(),
            undecodable: Vec::new(),
        }
    }

    fn ids(v: &[&DlqEntry]) -> Vec<String> {
        v.iter().map(|e| e.dead_letter.id.clone()).collect()
    }

    #[test]
    fn selection_by_class_id_and_limit_combines_with_and() {
        let s = snap(&[dl("a", "parse", 1), dl("b", "mapping", 2), dl("c", "parse", 3)]);
        let by_class = Selection { classes: vec!["parse".into()], ..Default::default() };
        assert_eq!(ids(&by_class.select(&s).unwrap()), ["a", "c"]);
        let by_id = Selection { ids: vec!["b".into(), "c".into()], ..Default::default() };
        assert_eq!(ids(&by_id.select(&s).unwrap()), ["b", "c"]);
        let both = Selection { classes: vec!["parse".into()], ids: vec!["b".into(), "c".into()], limit: None };
        assert_eq!(ids(&both.select(&s).unwrap()), ["c"]);
        let limited = Selection { limit: Some(2), ..Default::default() };
        assert_eq!(ids(&limited.select(&s).unwrap()), ["a", "b"]);
        assert!(Selection::default().is_everything());
        assert!(!by_class.is_everything());
    }

    #[test]
    fn an_unknown_id_selects_nothing_and_names_the_id() {
        let s = snap(&[dl("a", "parse", 1)]);
        let sel = Selection { ids: vec!["a".into(), "zz".into(), "zz".into()], ..Default::default() };
        match sel.select(&s) {
            Err(ReplayError::UnknownIds { ids, topic }) => {
                assert_eq!(ids, ["zz"]);
                assert_eq!(topic, "normalize.dlq.v1");
            }
            other => panic!("expected UnknownIds, got {other:?}"),
        }
    }

    #[test]
    fn replay_record_keeps_the_original_and_appends_replayed_from() {
        let d = dl("dl-1", "parse", 1);
        let r = ReplayRecord::from_dead_letter(&d, None).unwrap();
        assert_eq!(r.topic, "hl7v2.raw.v1");
        assert_eq!(r.key, d.original_key);
        assert_eq!(r.value, d.original_value);
        let e = r.headers.entries();
        assert_eq!(&e[..e.len() - 1], d.original_headers().entries(), "original headers first, in order");
        assert_eq!(replayed_from(&r.headers), Some("dl-1"));
        assert_eq!(ReplayRecord::from_dead_letter(&d, Some("other")).unwrap().topic, "other");
    }

    #[test]
    fn a_replay_of_a_replay_keeps_both_ids_and_names_the_newest() {
        let mut d = dl("dl-2", "parse", 1);
        d.original_headers.push(crate::dlq::HeaderEntry { name: REPLAYED_FROM.into(), value: Some(b"dl-1".to_vec()) });
        let r = ReplayRecord::from_dead_letter(&d, None).unwrap();
        let all: Vec<_> = r.headers.entries().iter().filter(|(k, _)| k == REPLAYED_FROM).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(replayed_from(&r.headers), Some("dl-2"));
    }

    #[test]
    fn ingest_dead_letters_need_an_explicit_target_and_fail_the_whole_plan() {
        let mut ingest = dl("dl-i", "framing", 1);
        ingest.source_topic = "mllp".into();
        ingest.source_partition = -1;
        let s = snap(&[dl("a", "parse", 1), ingest]);
        let all: Vec<&DlqEntry> = s.entries.iter().collect();
        match plan(&all, None) {
            Err(ReplayError::NotFromKafka { id, source_name, partition }) => {
                assert_eq!((id.as_str(), source_name.as_str(), partition), ("dl-i", "mllp", -1));
            }
            other => panic!("expected NotFromKafka, got {other:?}"),
        }
        let p = plan(&all, Some("hl7v2.raw.v1")).unwrap();
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn counts_by_class() {
        let s = snap(&[dl("a", "parse", 1), dl("b", "mapping", 2), dl("c", "parse", 3)]);
        let all: Vec<&DlqEntry> = s.entries.iter().collect();
        let c = count_by_class(&all);
        assert_eq!(c.get("parse"), Some(&2));
        assert_eq!(c.get("mapping"), Some(&1));
    }
}
