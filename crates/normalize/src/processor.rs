//! The normalize transform for one input record: decode the `RawMessage`, drop sender retries
//! (marked in metrics and logs, not re-emitted), parse, map to the canonical model, and emit
//! one `ClinicalEvent` keyed by patient. A message that cannot be parsed or mapped is a
//! permanent error: the loop dead-letters it with its original bytes and goes on.

use crate::config::NormalizeConfig;
use crate::dedup::{DedupIndex, Verdict};
use crate::history;
use bus::txloop::{Output, ProcessError, Processor};
use bus::{AvroSerde, BusConfig, InputRecord, MessageHeaders, Registry};
use canonical::ClinicalEvent;
use canonical::raw::RawMessage;
use mapping::Profiles;
use telemetry::{Metrics, Outcome};
use tokio::sync::Mutex;

const STAGE: &str = "normalize";

pub struct Normalizer {
    cfg: NormalizeConfig,
    bus: BusConfig,
    profiles: Profiles,
    raw: AvroSerde<RawMessage>,
    events: AvroSerde<ClinicalEvent>,
    dedup: Mutex<DedupIndex>,
    metrics: Metrics,
}

impl Normalizer {
    pub fn new(
        cfg: NormalizeConfig,
        bus: BusConfig,
        profiles: Profiles,
        registry: &Registry,
        metrics: Metrics,
    ) -> Self {
        Self {
            raw: registry.value_serde(&cfg.input_topic),
            events: registry.value_serde(&cfg.output_topic),
            dedup: Mutex::new(DedupIndex::new(cfg.duplicate_window_secs)),
            cfg,
            bus,
            profiles,
            metrics,
        }
    }

    /// Registers the output schema (an incompatible schema stops start-up).
    pub async fn register(&self) -> Result<u32, bus::AvroError> {
        self.events.register().await
    }

    async fn is_duplicate(&self, rec: &InputRecord, raw: &RawMessage) -> Result<bool, ProcessError> {
        let Some(key) = history::dedup_key(raw) else { return Ok(false) };
        let mut d = self.dedup.lock().await;
        if d.needs_history(&rec.topic, rec.partition, rec.offset) {
            let h = history::read_window(&self.bus, &self.raw, &rec.topic, rec.partition, rec.offset, d.window_ms())
                .await
                .map_err(|e| ProcessError::transient(e.to_string()))?;
            tracing::info!(topic = %rec.topic, partition = rec.partition, up_to = rec.offset, records = h.len(),
                "duplicate window rebuilt from the input partition");
            d.rebuild(&rec.topic, rec.partition, rec.offset, h);
        }
        match d.check(&rec.topic, rec.partition, rec.offset, raw.received_at / 1000, key) {
            Verdict::New => Ok(false),
            // An operator's replay of a dead letter, not a sender's retry: the key was recorded
            // when the message first came (before it failed), but no event was ever emitted for
            // it, so judging it a duplicate would drop it silently.
            Verdict::Duplicate { first_offset } if let Some(dl) = bus::dlq_replay::replayed_from(&rec.headers) => {
                tracing::info!(raw_id = %raw.id, dead_letter_id = dl, partition = rec.partition, offset = rec.offset,
                    first_offset, "replayed dead letter: processed although its sender key was seen before");
                Ok(false)
            }
            Verdict::Duplicate { first_offset } => {
                // Control ids and offsets are not PHI.
                tracing::info!(raw_id = %raw.id, control_id = raw.control_id.as_deref().unwrap_or(""),
                    partition = rec.partition, offset = rec.offset, first_offset, "sender retry: marked duplicate, not re-emitted");
                Ok(true)
            }
        }
    }
}

impl Processor for Normalizer {
    async fn process(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        lifecycle::traced(STAGE, rec, self.transform(rec)).await
    }
}

impl Normalizer {
    async fn transform(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        self.metrics.count(STAGE, Outcome::received);
        let started = std::time::Instant::now();
        let value = rec.value.as_deref().ok_or_else(|| ProcessError::permanent("empty", "record has no value"))?;
        let raw = self.raw.decode(value).await?;
        if self.is_duplicate(rec, &raw).await? {
            self.metrics.count(STAGE, Outcome::duplicate);
            return Ok(Vec::new());
        }
        // The mapping's own parse options: an empty MSH-11/12 that ingest was configured to
        // let through is reported in the event's issues, not refused again here.
        let conv = mapping::convert_bytes(&raw.payload, &self.profiles, &raw.tenant).map_err(|e| {
            self.metrics.count(STAGE, Outcome::dead_lettered);
            match e {
                mapping::MapError::Parse(p) => ProcessError::permanent("parse", p.to_string()),
            }
        })?;
        let occurred_at = conv.timestamp_micros().unwrap_or(raw.received_at);
        let event = conv.to_event(&raw.tenant, &raw.id, occurred_at);
        let value = self.events.encode_with(&event, ClinicalEvent::write_avro).await?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&event.id).set_content_type(canonical::event::CONTENT_TYPE);
        let key = event.patient_key.clone().map(String::into_bytes).or_else(|| rec.key.clone());
        self.metrics.count(STAGE, Outcome::acknowledged);
        self.metrics.observe_latency(STAGE, started.elapsed());
        Ok(vec![Output { topic: self.cfg.output_topic.clone(), key, value, headers }])
    }
}
