//! Dead letters: where a record that cannot be processed goes, whole, with the reason.
//!
//! "Every input ends somewhere visible" and DLQs must be replayable, so a dead letter keeps the
//! original key, value and headers byte for byte plus where it came from (topic, partition,
//! offset), which stage failed, how (error class, detail) and after how many attempts. The
//! detail must not contain PHI: callers describe the problem (segment, field, rule), not data.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::avro::{AvroSerde, Registry};
use crate::consumer::InputRecord;
use crate::error::BusError;
use crate::headers::MessageHeaders;
use crate::producer::{BusProducer, Delivered};

/// Media type of a dead letter's value.
pub const CONTENT_TYPE: &str = "application/vnd.arteria.dead-letter.v1+avro";

/// The DLQ topic of a stage: `<stage>.dlq.v1`.
pub fn dlq_topic(stage: &str) -> String {
    format!("{stage}.dlq.v1")
}

fn timestamp_micros(
    _: &mut std::collections::HashSet<apache_avro::schema::Name>,
    _: apache_avro::schema::NamespaceRef,
) -> apache_avro::Schema {
    apache_avro::Schema::TimestampMicros
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One original header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct HeaderEntry {
    pub name: String,
    #[avro(with, default = "null")]
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
}

/// A record that a stage gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct DeadLetter {
    /// Id of this dead letter (UUID v7).
    pub id: String,
    /// Stage that failed, e.g. normalize.
    pub stage: String,
    /// Stable machine-readable class, e.g. parse, mapping, schema, retries-exhausted.
    pub error_class: String,
    /// What went wrong, precisely and without PHI.
    pub detail: String,
    /// How many times processing was tried.
    pub attempts: i32,
    /// When the stage gave up, microseconds since the epoch (UTC).
    #[avro(with = timestamp_micros)]
    pub failed_at: i64,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Timestamp of the original record (ms since the epoch), when it had one.
    pub source_timestamp_ms: Option<i64>,
    /// The original key, byte for byte.
    #[avro(with, default = "null")]
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    /// The original value, byte for byte.
    #[avro(with, default = "null")]
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    /// The original headers, in order.
    pub original_headers: Vec<HeaderEntry>,
}

impl DeadLetter {
    /// A dead letter for `rec`.
    pub fn for_record(rec: &InputRecord, stage: &str, error_class: &str, detail: &str, attempts: u32) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            stage: stage.to_string(),
            error_class: error_class.to_string(),
            detail: detail.to_string(),
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            failed_at: now_micros(),
            source_topic: rec.topic.clone(),
            source_partition: rec.partition,
            source_offset: rec.offset,
            source_timestamp_ms: rec.timestamp_ms,
            original_key: rec.key.clone(),
            original_value: rec.value.clone(),
            original_headers: rec
                .headers
                .entries()
                .iter()
                .map(|(k, v)| HeaderEntry { name: k.clone(), value: v.clone() })
                .collect(),
        }
    }

    /// The original headers as they were on the source record (for replay).
    pub fn original_headers(&self) -> MessageHeaders {
        let mut h = MessageHeaders::new();
        for e in &self.original_headers {
            h.push(&e.name, e.value.clone());
        }
        h
    }
}

/// A dead letter ready to produce: key = original key (same partitioning as the input),
/// headers = new message id, child trace context, content type.
#[derive(Debug, Clone)]
pub struct EncodedDeadLetter {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: MessageHeaders,
}

/// Encodes and writes dead letters of one stage.
#[derive(Clone)]
pub struct DeadLetterWriter {
    stage: String,
    serde: AvroSerde<DeadLetter>,
}

impl DeadLetterWriter {
    /// Writer for `<stage>.dlq.v1`, or `topic` when given.
    pub fn new(registry: &Registry, stage: &str, topic: Option<&str>) -> Self {
        let topic = topic.map(str::to_string).unwrap_or_else(|| dlq_topic(stage));
        Self { stage: stage.to_string(), serde: registry.value_serde(&topic) }
    }

    pub fn topic(&self) -> &str {
        self.serde.topic()
    }

    /// Registers the DeadLetter schema for the topic (surfaces registry problems at start-up).
    pub async fn register(&self) -> Result<u32, BusError> {
        Ok(self.serde.register().await?)
    }

    /// Builds and encodes the dead letter of `rec`, for producing (e.g. inside a transaction).
    pub async fn encode(
        &self,
        rec: &InputRecord,
        error_class: &str,
        detail: &str,
        attempts: u32,
    ) -> Result<EncodedDeadLetter, BusError> {
        let dl = DeadLetter::for_record(rec, &self.stage, error_class, detail, attempts);
        let value = self.serde.encode(&dl).await?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&dl.id).set_content_type(CONTENT_TYPE);
        rec.headers.propagate_trace_to(&mut headers);
        Ok(EncodedDeadLetter { topic: self.serde.topic().to_string(), key: rec.key.clone(), value, headers })
    }

    /// Writes the dead letter of `rec` with a plain (non-transactional) producer and resolves
    /// once Kafka acknowledged it.
    pub async fn write(
        &self,
        producer: &BusProducer,
        rec: &InputRecord,
        error_class: &str,
        detail: &str,
        attempts: u32,
    ) -> Result<Delivered, BusError> {
        let e = self.encode(rec, error_class, detail, attempts).await?;
        producer.send(&e.topic, e.key.as_deref(), &e.value, &e.headers).await
    }

    /// Decodes a dead letter read from the DLQ topic.
    pub async fn decode(&self, bytes: &[u8]) -> Result<DeadLetter, BusError> {
        Ok(self.serde.decode(bytes).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_committed_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/DeadLetter.avsc");
        let text = std::fs::read_to_string(&path).expect("schemas/DeadLetter.avsc is readable");
        let committed = apache_avro::Schema::parse_str(&text).expect("DeadLetter.avsc parses");
        let derived = DeadLetter::get_schema();
        assert_eq!(derived.canonical_form(), committed.canonical_form());
        assert_eq!(
            serde_json::to_value(&derived).unwrap(),
            serde_json::to_value(&committed).unwrap(),
            "DeadLetter differs from schemas/DeadLetter.avsc; derived:\n{}",
            serde_json::to_string_pretty(&derived).unwrap()
        );
    }

    #[test]
    fn keeps_original_bytes_and_headers() {
        let mut headers = MessageHeaders::new();
        headers.push("a", Some(vec![0xff, 0])).push("b", None);
        let rec = InputRecord {
            topic: "t".into(),
            partition: 2,
            offset: 41,
            key: Some(b"k".to_vec()),
            value: Some(vec![0, 1, 2, 0xfe]),
            headers: headers.clone(),
            timestamp_ms: Some(5),
        };
        let dl = DeadLetter::for_record(&rec, "normalize", "parse", "MSH-9 missing", 1);
        assert_eq!(dl.original_value.as_deref(), Some(&[0u8, 1, 2, 0xfe][..]));
        assert_eq!(dl.original_key.as_deref(), Some(&b"k"[..]));
        assert_eq!(dl.original_headers(), headers);
        assert_eq!((dl.source_partition, dl.source_offset), (2, 41));
        // The Avro binary round trip (the same writer/reader AvroSerde uses) keeps the bytes.
        let schema = DeadLetter::get_schema();
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_ser_to_vec(&dl)
            .unwrap();
        let back: DeadLetter = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_deser(&mut &body[..])
            .unwrap();
        assert_eq!(back, dl);
    }
}
