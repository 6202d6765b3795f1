//! The enrich transform for one input record: decode the `ClinicalEvent`, enrich it, encode
//! it for `clinical.enriched.v1` under the same key. An event that cannot be read is a
//! permanent error (DLQ); registry trouble is transient (retried).

use crate::config::EnrichConfig;
use crate::event::enrich_event;
use bus::txloop::{Output, ProcessError, Processor};
use bus::{AvroSerde, InputRecord, MessageHeaders, Registry};
use canonical::ClinicalEvent;
use std::sync::Arc;
use telemetry::{Metrics, Outcome};
use terminology::Terminology;

const STAGE: &str = "enrich";

pub struct EnrichProcessor {
    cfg: EnrichConfig,
    term: Arc<Terminology>,
    input: AvroSerde<ClinicalEvent>,
    output: AvroSerde<ClinicalEvent>,
    metrics: Metrics,
}

impl EnrichProcessor {
    pub fn new(cfg: EnrichConfig, term: Arc<Terminology>, registry: &Registry, metrics: Metrics) -> Self {
        Self {
            input: registry.value_serde(&cfg.input_topic),
            output: registry.value_serde(&cfg.output_topic),
            cfg,
            term,
            metrics,
        }
    }

    pub async fn register(&self) -> Result<u32, bus::AvroError> {
        self.output.register().await
    }
}

impl Processor for EnrichProcessor {
    async fn process(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        lifecycle::traced(STAGE, rec, self.transform(rec)).await
    }
}

impl EnrichProcessor {
    async fn transform(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        self.metrics.count(STAGE, Outcome::received);
        let started = std::time::Instant::now();
        let value = rec.value.as_deref().ok_or_else(|| ProcessError::permanent("empty", "record has no value"))?;
        let mut event = self.input.decode(value).await?;
        enrich_event(&self.term, &mut event).map_err(|e| {
            self.metrics.count(STAGE, Outcome::dead_lettered);
            ProcessError::permanent("enrich", e.to_string())
        })?;
        let value = self.output.encode_with(&event, ClinicalEvent::write_avro).await?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&event.id).set_content_type(canonical::event::CONTENT_TYPE);
        self.metrics.count(STAGE, Outcome::acknowledged);
        self.metrics.observe_latency(STAGE, started.elapsed());
        Ok(vec![Output { topic: self.cfg.output_topic.clone(), key: rec.key.clone(), value, headers }])
    }
}
