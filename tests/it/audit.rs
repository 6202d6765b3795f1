//! The query API's audit trail against the real broker and registry: every PHI read writes an
//! `AuditEvent` per resource returned (an empty search writes one without a resource) to the
//! audit topic before the answer leaves, naming the resource by type and id, with the caller's
//! address, declared purpose of use and trace id — and never the resource's content.

use std::sync::Arc;
use std::time::Duration;

use arteria_tests::{read_committed, require_stack, unique};
use bus::{Registry, Shutdown};
use canonical::current::FhirResource;
use canonical::{AuditAction, AuditEvent, AuditOutcome};
use query::audit::{AuditConfig, Auditor, PURPOSE_HEADER};
use query::proto::query_client::QueryClient;
use query::proto::{GetPatientRequest, SearchPatientsRequest, get_patient_request};
use query::tonic::Request;
use query::{QueryService, Store};
use telemetry::Metrics;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_is_on_the_audit_topic_before_it_is_answered() {
    let bus = require_stack();
    let topic = unique("audit");
    let registry = Registry::new(&bus.registry).unwrap();
    let metrics = Metrics::new();
    let cfg = AuditConfig { topic: topic.clone(), ..AuditConfig::default() };
    let auditor = Auditor::connect(&cfg, &bus, &registry, &metrics).await.unwrap();

    let dir = std::env::temp_dir().join(unique("audit.store"));
    let store = Arc::new(Store::open(&dir, 16).unwrap());
    let patient = serde_json::json!({
        "resourceType": "Patient", "id": "pat-a1",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "AUD-0001"}],
        "name": [{"family": "AUDITTEST", "given": ["PRIVATE"]}], "birthDate": "1961-02-03"
    });
    store
        .upsert(&FhirResource {
            id: "pat-a1".into(),
            resource_type: "Patient".into(),
            tenant: "north".into(),
            patient_id: Some("pat-a1".into()),
            source_event_id: "ev-1".into(),
            event_type: "hl7v2.adt.a01".into(),
            occurred_at: 1,
            fhir_json: patient.to_string(),
        })
        .unwrap();

    let shutdown = Shutdown::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let stop = shutdown.clone();
    let service = QueryService::new(store, shutdown.clone()).with_auditor(auditor);
    let server = tokio::spawn(query::server::serve(listener, service, async move { stop.wait().await }));
    let mut client = QueryClient::connect(addr).await.unwrap();

    let mut get = Request::new(GetPatientRequest { by: Some(get_patient_request::By::Id("pat-a1".into())) });
    get.metadata_mut().insert(PURPOSE_HEADER, "TREAT".parse().unwrap());
    get.metadata_mut().insert("traceparent", TRACE.parse().unwrap());
    let got = client.get_patient(get).await.unwrap().into_inner();
    assert_eq!(got.id, "pat-a1");
    let found = client
        .search_patients(SearchPatientsRequest { name: "NOBODY-BY-THIS-NAME".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(found.resources.is_empty());

    // Both reads were answered, so both events are already acknowledged by Kafka.
    let records = read_committed(&bus, &topic, 3, Duration::from_secs(10)).await;
    let serde = registry.value_serde::<AuditEvent>(&topic);
    let mut events = Vec::new();
    for r in &records {
        assert_eq!(r.key.as_deref(), Some(b"anonymous".as_slice()), "keyed by actor");
        let text = String::from_utf8_lossy(r.value.as_deref().unwrap());
        assert!(!text.contains("AUDITTEST") && !text.contains("AUD-0001"), "PHI in an audit record");
        events.push(serde.decode(r.value.as_deref().unwrap()).await.unwrap());
    }
    assert_eq!(events.len(), 2, "one event per read: {events:?}");
    let read = &events[0];
    assert_eq!(read.action, AuditAction::Read);
    assert_eq!((read.resource_type.as_str(), read.resource_id.as_deref()), ("Patient", Some("pat-a1")));
    assert_eq!((read.tenant.as_str(), read.patient_key.as_deref()), ("north", Some("pat-a1")));
    assert_eq!(read.purpose.as_deref(), Some("TREAT"));
    assert_eq!(read.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(read.outcome, AuditOutcome::Success);
    assert!(read.actor.address.as_deref().is_some_and(|a| a.starts_with("127.0.0.1:")), "{:?}", read.actor);
    let search = &events[1];
    assert_eq!(
        (search.action, search.resource_type.as_str(), search.resource_id.as_ref()),
        (AuditAction::Search, "Patient", None)
    );
    assert_eq!(metrics.counted("audit", telemetry::Outcome::acknowledged), 2);

    shutdown.trigger();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
