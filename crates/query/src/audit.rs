//! The audit trail of PHI reads: one `AuditEvent` on `audit.v1` for every resource the query
//! API hands out (and one per search, even an empty one).
//!
//! Fail closed: the events are written, and acknowledged by Kafka (acks=all), before the answer
//! leaves; when they cannot be, the caller gets UNAVAILABLE and no data. A read that left no
//! audit record is the one thing an audit trail must never allow. Events name resources by type
//! and id only (never their content), so the trail is not itself a copy of the PHI.
//!
//! It is also the authorisation gate: every resource passes here before it leaves, so the
//! caller's SMART scopes ([`crate::auth`]) are checked here, once for every RPC. A refused
//! read is audited too (outcome DENIED). Without authentication (`auth.mode = "none"`) the
//! actor is `anonymous` with the caller's network address.

use std::sync::Arc;
use std::time::Duration;

use bus::topics::{TopicSpec, ensure_topics};
use bus::{AvroSerde, BusConfig, BusError, BusProducer, MessageHeaders, Registry};
use canonical::{Actor, AuditAction, AuditEvent, AuditOutcome};
use serde::Deserialize;
use telemetry::{Metrics, Outcome};
use tonic::{Request, Status};

use crate::auth::Principal;
use crate::store::StoredResource;

/// Request metadata a caller may use to declare the purpose of use (e.g. `TREAT`).
pub const PURPOSE_HEADER: &str = "x-purpose-of-use";
/// The metrics stage name of the audit writer.
const STAGE: &str = "audit";
/// The service named in every event.
const SERVICE: &str = "query";

/// The `[audit]` settings of the query service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Write `AuditEvent`s to `topic` (when false, reads leave only an `audit` log line).
    pub enabled: bool,
    pub topic: String,
    /// How long a read may wait for its audit events to be acknowledged before it is refused.
    pub timeout_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { enabled: true, topic: "audit.v1".into(), timeout_ms: 5000 }
    }
}

/// Why the audit trail could not be set up (the service must not start without it).
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error("the audit topic is missing or has the wrong shape: {0}")]
    Topic(#[source] BusError),
    #[error("cannot register the AuditEvent schema: {0}")]
    Schema(#[from] bus::AvroError),
    #[error("cannot create the audit producer: {0}")]
    Producer(#[source] BusError),
}

/// Who is asking, read from the request before its body is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub address: Option<String>,
    pub purpose: Option<String>,
    pub trace_id: Option<String>,
    /// Who the bearer token says is calling (None without authentication).
    pub principal: Option<Principal>,
}

impl Caller {
    pub fn of<T>(request: &Request<T>) -> Caller {
        let meta = request.metadata();
        let text = |k: &str| meta.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        Caller {
            address: request.remote_addr().map(|a| a.to_string()),
            // Declared purposes are short codes; anything longer is not one and is not kept.
            purpose: text(PURPOSE_HEADER).filter(|p| !p.is_empty() && p.len() <= 64),
            trace_id: text("traceparent")
                .and_then(|tp| tp.parse::<bus::TraceParent>().ok())
                .map(|tp| tp.trace_id_hex()),
            principal: None,
        }
    }
}

/// Where audit events go.
#[derive(Clone)]
pub struct Auditor {
    sink: Option<Arc<KafkaSink>>,
    metrics: Option<Metrics>,
}

struct KafkaSink {
    producer: BusProducer,
    serde: AvroSerde<AuditEvent>,
    timeout: Duration,
}

impl Auditor {
    /// Only the `audit` log line (tests, or `audit.enabled = false`).
    pub fn log_only() -> Auditor {
        Auditor { sink: None, metrics: None }
    }

    /// The auditor `cfg` asks for. With `enabled`, the topic is created when missing (kept
    /// forever: archiving is an operator's policy) and the schema registered now, so a broken
    /// trail stops start-up instead of refusing every read later.
    pub async fn connect(
        cfg: &AuditConfig,
        bus: &BusConfig,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Auditor, AuditSetupError> {
        if !cfg.enabled {
            tracing::warn!("audit.enabled = false: PHI reads leave only a log line, no audit event");
            return Ok(Auditor::log_only());
        }
        let mut spec = TopicSpec::with_defaults(&cfg.topic, &bus.topics);
        spec.configs.insert("retention.ms".into(), "-1".into());
        ensure_topics(bus, &[spec]).await.map_err(AuditSetupError::Topic)?;
        let serde = registry.value_serde::<AuditEvent>(&cfg.topic);
        serde.register().await?;
        let producer = BusProducer::new(bus, "query-audit").map_err(AuditSetupError::Producer)?;
        Ok(Auditor::kafka(producer, serde, Duration::from_millis(cfg.timeout_ms)).with_metrics(metrics.clone()))
    }

    /// Events to `serde`'s topic through `producer`, each read waiting at most `timeout`.
    pub fn kafka(producer: BusProducer, serde: AvroSerde<AuditEvent>, timeout: Duration) -> Auditor {
        Auditor { sink: Some(Arc::new(KafkaSink { producer, serde, timeout })), metrics: None }
    }

    /// Counts written events as `acknowledged` and refused reads as `failed` (stage `audit`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Auditor {
        self.metrics = Some(metrics);
        self
    }

    /// Records that `caller` read `resources` through `rpc`; `Err` means the read must be
    /// refused. `resource_type` names what was searched when nothing was found.
    pub async fn record(
        &self,
        caller: &Caller,
        rpc: &str,
        action: AuditAction,
        resource_type: &str,
        resources: &[&StoredResource],
    ) -> Result<(), Status> {
        let ids: Vec<&str> = resources.iter().map(|r| r.id.as_str()).collect();
        let denied = caller.principal.as_ref().and_then(|p| refusal(p, resource_type, resources));
        let outcome = if denied.is_some() { AuditOutcome::Denied } else { AuditOutcome::Success };
        tracing::info!(target: "audit", rpc, resource_type, count = ids.len(), ids = ?ids, outcome = ?outcome, "audit");
        let written = match &self.sink {
            Some(sink) => self.write(sink, caller, rpc, action, resource_type, resources, outcome).await,
            None => Ok(()),
        };
        written?;
        match denied {
            Some(why) => Err(Status::permission_denied(why)),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        sink: &KafkaSink,
        caller: &Caller,
        rpc: &str,
        action: AuditAction,
        resource_type: &str,
        resources: &[&StoredResource],
        outcome: AuditOutcome,
    ) -> Result<(), Status> {
        let events = events(caller, action, resource_type, resources, outcome, jiff::Timestamp::now().as_microsecond());
        let written = tokio::time::timeout(sink.timeout, sink.write(&events)).await;
        match written {
            Ok(Ok(())) => {
                if let Some(m) = &self.metrics {
                    for _ in &events {
                        m.count(STAGE, Outcome::acknowledged);
                    }
                }
                Ok(())
            }
            Ok(Err(detail)) => Err(self.refused(rpc, &detail)),
            Err(_) => Err(self.refused(rpc, &format!("not acknowledged within {} ms", sink.timeout.as_millis()))),
        }
    }

    fn refused(&self, rpc: &str, detail: &str) -> Status {
        if let Some(m) = &self.metrics {
            m.count(STAGE, Outcome::failed);
        }
        tracing::error!(rpc, error = detail, "audit event not written; the read was refused");
        Status::unavailable("the audit trail cannot be written right now, so no data was returned; retry later")
    }
}

impl KafkaSink {
    /// Encodes and sends every event, then waits for all acknowledgements (sent together, so
    /// a page of results costs about one round trip).
    async fn write(&self, events: &[AuditEvent]) -> Result<(), String> {
        let mut sends = Vec::with_capacity(events.len());
        for e in events {
            let bytes = self.serde.encode(e).await.map_err(|e| format!("encoding: {e}"))?;
            let mut headers = MessageHeaders::default();
            headers.set_message_id(&e.id);
            let producer = self.producer.clone();
            let topic = self.serde.topic().to_string();
            let key = e.actor.id.clone();
            sends.push(async move { producer.send(&topic, Some(key.as_bytes()), &bytes, &headers).await });
        }
        for r in futures::future::join_all(sends).await {
            r.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The patient a stored resource is about (a Patient is about itself).
fn patient_of(r: &StoredResource) -> Option<&str> {
    r.patient_id.as_deref().or((r.resource_type == "Patient").then_some(r.id.as_str()))
}

/// Why `p` may not have `resources` (or search `resource_type`), if it may not.
pub fn refusal(p: &Principal, resource_type: &str, resources: &[&StoredResource]) -> Option<String> {
    if resources.is_empty() {
        return (!p.may_search(resource_type))
            .then(|| format!("the token's scopes do not allow reading {resource_type} resources"));
    }
    let r = resources.iter().find(|r| !p.may_read(&r.resource_type, patient_of(r)))?;
    Some(if p.may_search(&r.resource_type) {
        format!("the token's scopes allow reading {} only for its own patient", r.resource_type)
    } else {
        format!("the token's scopes do not allow reading {} resources", r.resource_type)
    })
}

/// The events of one access: one per resource returned, or one without a resource id when a
/// search found nothing.
pub fn events(
    caller: &Caller,
    action: AuditAction,
    resource_type: &str,
    resources: &[&StoredResource],
    outcome: AuditOutcome,
    at: i64,
) -> Vec<AuditEvent> {
    let actor = match &caller.principal {
        Some(p) => Actor {
            id: p.subject.clone(),
            kind: if p.is_service() { "service" } else { "user" }.into(),
            client_id: p.client_id.clone(),
            address: caller.address.clone(),
        },
        None => Actor { id: "anonymous".into(), kind: "user".into(), client_id: None, address: caller.address.clone() },
    };
    let event = |tenant: &str, rt: &str, id: Option<&str>, patient: Option<&str>| AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_string(),
        at,
        actor: actor.clone(),
        action,
        resource_type: rt.to_string(),
        resource_id: id.map(str::to_string),
        patient_key: patient.map(str::to_string),
        purpose: caller.purpose.clone(),
        outcome,
        service: SERVICE.into(),
        trace_id: caller.trace_id.clone(),
    };
    if resources.is_empty() {
        return vec![event("", resource_type, None, None)];
    }
    resources
        .iter()
        .map(|r| {
            event(
                &r.tenant,
                &r.resource_type,
                Some(&r.id),
                r.patient_id.as_deref().or(Some(&r.id).filter(|_| r.resource_type == "Patient").map(String::as_str)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(rt: &str, id: &str, patient: Option<&str>) -> StoredResource {
        StoredResource {
            resource_type: rt.into(),
            id: id.into(),
            tenant: "north".into(),
            patient_id: patient.map(str::to_string),
            occurred_at: 0,
            json: r#"{"name":[{"family":"SECRET"}]}"#.into(),
            last_updated: String::new(),
        }
    }

    #[test]
    fn one_event_per_resource_naming_ids_only() {
        let caller = Caller {
            address: Some("127.0.0.1:5000".into()),
            purpose: Some("TREAT".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            principal: None,
        };
        let (a, b) = (stored("Observation", "obs-1", Some("pat-1")), stored("Patient", "pat-1", None));
        let ev = events(&caller, AuditAction::Read, "Observation", &[&a, &b], AuditOutcome::Success, 42);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].resource_id.as_deref(), Some("obs-1"));
        assert_eq!(ev[0].patient_key.as_deref(), Some("pat-1"));
        // A Patient's own id is its patient key.
        assert_eq!((ev[1].resource_type.as_str(), ev[1].patient_key.as_deref()), ("Patient", Some("pat-1")));
        assert!(ev.iter().all(|e| e.tenant == "north" && e.at == 42 && e.outcome == AuditOutcome::Success));
        assert_eq!(ev[0].actor.address.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(ev[0].purpose.as_deref(), Some("TREAT"));
        assert_ne!(ev[0].id, ev[1].id);
        let text = format!("{ev:?}");
        assert!(!text.contains("SECRET"), "an audit event must not carry resource content");
    }

    #[test]
    fn an_empty_search_is_still_audited() {
        let ev = events(&Caller::default(), AuditAction::Search, "Patient", &[], AuditOutcome::Success, 1);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].action, ev[0].resource_type.as_str(), ev[0].resource_id.as_ref()),
            (AuditAction::Search, "Patient", None)
        );
    }

    #[test]
    fn caller_reads_purpose_and_trace_from_metadata() {
        let mut req = Request::new(());
        req.metadata_mut().insert(PURPOSE_HEADER, "TREAT".parse().unwrap());
        req.metadata_mut()
            .insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        let c = Caller::of(&req);
        assert_eq!(c.purpose.as_deref(), Some("TREAT"));
        assert_eq!(c.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(Caller::of(&Request::new(())), Caller::default());
    }

    #[tokio::test]
    async fn scopes_are_enforced_where_resources_leave_and_refusals_name_the_actor() {
        let p = |scopes: &[&str], patient: Option<&str>| Principal {
            subject: "dr-who".into(),
            client_id: Some("ward-app".into()),
            scopes: scopes.iter().filter_map(|s| crate::auth::Scope::parse(s)).collect(),
            patient: patient.map(str::to_string),
        };
        let (obs1, obs2, pat1) = (
            stored("Observation", "o1", Some("p1")),
            stored("Observation", "o2", Some("p2")),
            stored("Patient", "p1", None),
        );
        let patient_app = p(&["patient/*.read"], Some("p1"));
        assert_eq!(refusal(&patient_app, "Observation", &[&obs1, &pat1]), None);
        let why = refusal(&patient_app, "Observation", &[&obs1, &obs2]).unwrap();
        assert!(why.contains("only for its own patient"), "{why}");
        let labs_only = p(&["user/Observation.rs"], None);
        assert_eq!(refusal(&labs_only, "Observation", &[&obs1, &obs2]), None);
        assert!(refusal(&labs_only, "Patient", &[&pat1]).unwrap().contains("do not allow reading Patient"));
        assert!(refusal(&labs_only, "Patient", &[]).is_some(), "an empty search is still a search");

        let caller = Caller { principal: Some(labs_only), ..Caller::default() };
        let err = Auditor::log_only()
            .record(&caller, "GetPatient", AuditAction::Read, "Patient", &[&pat1])
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let ev = events(&caller, AuditAction::Read, "Patient", &[&pat1], AuditOutcome::Denied, 1);
        assert_eq!(
            (ev[0].actor.id.as_str(), ev[0].actor.kind.as_str(), ev[0].actor.client_id.as_deref()),
            ("dr-who", "user", Some("ward-app"))
        );
        assert_eq!(ev[0].outcome, AuditOutcome::Denied);
    }

    #[tokio::test]
    async fn an_unwritable_trail_refuses_the_read() {
        // A broker nobody listens on: the send cannot be acknowledged within the timeout.
        let mut cfg = bus::BusConfig::default();
        cfg.kafka.bootstrap_servers = "127.0.0.1:9".into();
        cfg.registry.url = "http://127.0.0.1:9".into();
        let producer = BusProducer::new(&cfg, "audit-test").unwrap();
        let serde = bus::Registry::new(&cfg.registry).unwrap().value_serde::<AuditEvent>("audit.v1");
        let metrics = Metrics::new();
        let auditor = Auditor::kafka(producer, serde, Duration::from_millis(300)).with_metrics(metrics.clone());
        let r = stored("Patient", "pat-1", None);
        let err =
            auditor.record(&Caller::default(), "GetPatient", AuditAction::Read, "Patient", &[&r]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(metrics.counted(STAGE, Outcome::failed), 1);
        // Without a sink the read goes through (log line only).
        Auditor::log_only()
            .record(&Caller::default(), "GetPatient", AuditAction::Read, "Patient", &[&r])
            .await
            .unwrap();
    }
}
