//! The fan-out transform for one enriched event: one `FhirResource` per resource on its
//! `fhir.<type>.v1` topic keyed by resource id, the event to each matching topic route, and
//! the selected resources to each matching webhook's delivery topic — all in the loop's
//! transaction, so a restart never publishes half an event.

use crate::config::FanoutConfig;
use crate::ledger::Ledger;
use crate::resources;
use crate::routes::{Route, RouteFormat, Target};
use crate::webhook;
use bus::txloop::{Output, ProcessError, Processor};
use bus::{AvroSerde, BusConfig, InputRecord, MessageHeaders, Registry};
use canonical::{ClinicalEvent, FhirResource};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::sync::Mutex;
use telemetry::{Metrics, Outcome};

const STAGE: &str = "fanout";

/// Media types of fan-out's values.
pub const RESOURCE_CONTENT_TYPE: &str = "application/vnd.arteria.fhir-resource.v1+avro";
pub const FHIR_JSON_CONTENT_TYPE: &str = "application/fhir+json";

pub struct FanoutProcessor {
    cfg: FanoutConfig,
    /// Present when some messages only create patients and visits (`[fanout.create_only]`).
    ledger: Option<Ledger>,
    /// Resources of create-only messages left off their topic because a version was published
    /// (counted when their batch commits).
    kept: Family<KeptLabels, Counter>,
    registry: Registry,
    input: AvroSerde<ClinicalEvent>,
    resource_serdes: Mutex<HashMap<String, AvroSerde<FhirResource>>>,
    event_serdes: Mutex<HashMap<String, AvroSerde<ClinicalEvent>>>,
    metrics: Metrics,
}

impl FanoutProcessor {
    /// `bus` is what the ledger of published resources reads their topics with.
    pub fn new(cfg: FanoutConfig, bus: &BusConfig, registry: &Registry, metrics: Metrics) -> Self {
        let tracked: Vec<(String, String)> = cfg
            .create_only
            .resource_types
            .iter()
            .filter(|t| cfg.resource_types.contains(t))
            .map(|t| (t.clone(), cfg.topic_for(t)))
            .collect();
        let ledger = (cfg.create_only.any() && !tracked.is_empty()).then(|| Ledger::new(tracked, bus));
        let kept = Family::<KeptLabels, Counter>::default();
        metrics.register(
            "fanout_create_only_kept",
            "Resources of create-only messages (lab results' Patient and Encounter) not published because a version was",
            kept.clone(),
        );
        Self {
            ledger,
            kept,
            input: registry.value_serde(&cfg.input_topic),
            registry: registry.clone(),
            resource_serdes: Mutex::new(HashMap::new()),
            event_serdes: Mutex::new(HashMap::new()),
            cfg,
            metrics,
        }
    }

    /// Every topic this stage writes: the current-state topics, the route topics and the
    /// webhooks' delivery topics.
    pub fn output_topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.cfg.resource_types.iter().map(|r| self.cfg.topic_for(r)).collect();
        t.extend(self.cfg.route_topics());
        t.extend(self.cfg.webhook_topics());
        t.sort();
        t.dedup();
        t
    }

    /// Registers the value schemas of every output topic (surfaces incompatibilities at start-up).
    pub async fn register(&self) -> Result<(), bus::AvroError> {
        for t in self.cfg.resource_types.iter().map(|r| self.cfg.topic_for(r)) {
            self.resource_serde(&t).register().await?;
        }
        for t in self.cfg.routes.iter().filter(|r| r.format == RouteFormat::Avro).filter_map(Route::topic) {
            self.event_serde(t).register().await?;
        }
        Ok(())
    }

    fn resource_serde(&self, topic: &str) -> AvroSerde<FhirResource> {
        let mut m = self.resource_serdes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(topic.to_string()).or_insert_with(|| self.registry.value_serde(topic)).clone()
    }

    fn event_serde(&self, topic: &str) -> AvroSerde<ClinicalEvent> {
        let mut m = self.event_serdes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(topic.to_string()).or_insert_with(|| self.registry.value_serde(topic)).clone()
    }
}

/// The label of `arteria_fanout_create_only_kept_total`: a resource type from the
/// configuration, never from a message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeptLabels {
    resource_type: String,
}

fn headers(id: &str, content_type: &str) -> MessageHeaders {
    let mut h = MessageHeaders::new();
    h.set_message_id(id).set_content_type(content_type);
    h
}

impl Processor for FanoutProcessor {
    async fn process(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        lifecycle::traced(STAGE, rec, self.transform(rec)).await
    }

    async fn prepare(&self, generation: u64) -> Result<(), ProcessError> {
        match &self.ledger {
            Some(l) => l.prepare(generation).await.map_err(|e| ProcessError::transient(e.to_string())),
            None => Ok(()),
        }
    }

    fn settled(&self, committed: bool) {
        if let Some(l) = &self.ledger {
            for (resource_type, n) in l.settled(committed) {
                self.kept.get_or_create(&KeptLabels { resource_type: resource_type.to_string() }).inc_by(n);
            }
        }
    }
}

impl FanoutProcessor {
    async fn transform(&self, rec: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        self.metrics.count(STAGE, Outcome::received);
        let started = std::time::Instant::now();
        let value = rec.value.as_deref().ok_or_else(|| ProcessError::permanent("empty", "record has no value"))?;
        let event = self.input.decode(value).await?;
        let permanent = |e: resources::ResourceError| {
            self.metrics.count(STAGE, Outcome::dead_lettered);
            ProcessError::permanent("resource", e.to_string())
        };
        let mut current = resources::current_state(&event, &self.cfg.resource_types).map_err(permanent)?;
        if let Some(ledger) = &self.ledger {
            let create_only = self.cfg.create_only.matches(&event);
            current.retain(|r| ledger.admit(&r.resource_type, &r.id, create_only));
        }
        let mut out = Vec::with_capacity(current.len() + self.cfg.routes.len());
        for r in &current {
            let topic = self.cfg.topic_for(&r.resource_type);
            let value = self.resource_serde(&topic).encode_with(r, FhirResource::write_avro).await?;
            // The message id names this version: the resource in this event.
            let id = format!("{}/{}@{}", r.resource_type, r.id, event.id);
            out.push(Output {
                topic,
                key: Some(r.id.clone().into_bytes()),
                value,
                headers: headers(&id, RESOURCE_CONTENT_TYPE),
            });
        }
        if !self.cfg.routes.is_empty() {
            let parsed: Vec<serde_json::Value> =
                event.resources.iter().filter_map(|r| serde_json::from_str(&r.fhir_json).ok()).collect();
            let matched: Vec<&Route> = self.cfg.routes.iter().filter(|r| r.when.matches(&event, &parsed)).collect();
            for route in &matched {
                let Target::Topic(to) = route.target() else { continue };
                let (value, ct) = match route.format {
                    RouteFormat::Avro => (
                        self.event_serde(to).encode_with(&event, ClinicalEvent::write_avro).await?,
                        canonical::event::CONTENT_TYPE,
                    ),
                    RouteFormat::FhirJson => {
                        (resources::collection_bundle_json(&event).map_err(permanent)?, FHIR_JSON_CONTENT_TYPE)
                    }
                };
                tracing::debug!(route = %route.name, event_id = %event.id, "routed");
                out.push(Output {
                    topic: to.to_string(),
                    key: rec.key.clone(),
                    value,
                    headers: headers(&event.id, ct),
                });
            }
            out.extend(webhook::delivery::outputs(&self.cfg, &matched, &current, &event.id));
        }
        self.metrics.count(STAGE, Outcome::acknowledged);
        self.metrics.observe_latency(STAGE, started.elapsed());
        Ok(out)
    }
}
