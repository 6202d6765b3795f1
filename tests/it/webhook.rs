//! Webhook routes, against the real broker and registry and a real HTTP receiver on
//! 127.0.0.1: the fan-out stage (in-process) writes each routed resource to the webhook's
//! delivery topic inside its transaction; the webhook workers then send it. A receiver that
//! fails twice with 503 gets the resource once it accepts, with the right headers and body;
//! one that always answers 500 ends in the DLQ after max_attempts with the original bytes;
//! a 400 goes to the DLQ after one attempt; a worker stopped in the middle of retrying
//! commits nothing, so the delivery is sent again after a restart; and a webhook with
//! `concurrency` sends its partitions at once, each resource's versions still in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arteria_tests::stage::run_until;
use arteria_tests::{create_topic, read_committed, require_stack, unique};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bus::consumer::consumer_client_config;
use bus::txloop::TxLoopConfig;
use bus::{BusConfig, BusProducer, DeadLetterWriter, InputRecord, MessageHeaders, Registry, Shutdown, TraceParent};
use canonical::{ClinicalEvent, Provenance, Resource, SenderId};
use fanout::routes::{Route, RouteFormat, RouteMatch, WEBHOOK_PREFIX};
use fanout::webhook::delivery::{EVENT_ID, RESOURCE_ID};
use fanout::webhook::metrics::DeliveryOutcome;
use fanout::webhook::worker::{CLASS_EXHAUSTED, CLASS_REJECTED, STAGE, WorkerCounters};
use fanout::webhook::{Backoff, ResolvedWebhook, WebhookConfig, WebhookMetrics, WebhookWorker, WorkerStats};
use fanout::{FanoutConfig, FanoutProcessor};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use telemetry::Metrics;

/// A response body a careless error report would copy: it must never reach a dead letter.
const BODY_WITH_PHI: &str = "patient TESTER^ALEX (MRN 4711) rejected";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    status: u16,
}

/// The HTTP receiver: `/flaky` answers 503 twice then 201, `/broken` always 500,
/// `/refusing` 400, `/restart` 503 until `accept_restart` is set, then 200, `/slow` 200 after
/// holding each request until another one is in flight (or two seconds passed), until two
/// have been in flight at once.
#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<Seen>>,
    accept_restart: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Receiver {
    fn at(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    if path == "/slow" {
        let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        r.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // A bound, not a measurement: a sender that never overlaps waits it out each time.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while r.max_in_flight.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let mut seen = r.seen.lock().unwrap();
    let earlier = seen.iter().filter(|s| s.path == path).count();
    let status = match path.as_str() {
        "/flaky" if earlier < 2 => StatusCode::SERVICE_UNAVAILABLE,
        "/flaky" => StatusCode::CREATED,
        "/broken" => StatusCode::INTERNAL_SERVER_ERROR,
        "/refusing" => StatusCode::BAD_REQUEST,
        "/restart" if r.accept_restart.load(Ordering::SeqCst) => StatusCode::OK,
        "/restart" => StatusCode::SERVICE_UNAVAILABLE,
        "/slow" => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    };
    seen.push(Seen { path, headers, body: body.to_vec(), status: status.as_u16() });
    // Retry-After: 0 on the 503s exercises the header path without slowing the test.
    (status, [("retry-after", "0")], BODY_WITH_PHI).into_response()
}

async fn serve(receiver: Arc<Receiver>) -> String {
    let app = axum::Router::new().fallback(receive).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn event(id: &str) -> ClinicalEvent {
    let r = |t: &str, rid: &str, j: serde_json::Value| Resource {
        resource_type: t.into(),
        id: rid.into(),
        fhir_json: j.to_string(),
    };
    ClinicalEvent {
        id: id.into(),
        source_raw_id: format!("raw-{id}"),
        tenant: "t".into(),
        event_type: "hl7v2.oru.r01".into(),
        occurred_at: 1_700_000_000_000_000,
        sender: SenderId { application: "LAB".into(), facility: "NORTH".into() },
        patient_key: Some("wh-p1".into()),
        provenance: Provenance {
            source_format: "hl7v2".into(),
            source_message_type: Some("ORU^R01".into()),
            source_control_id: Some("WH-1".into()),
            stage: "enrich".into(),
            logic_version: "test".into(),
            profile: None,
        },
        resources: vec![
            r("Patient", "wh-p1", serde_json::json!({"resourceType": "Patient", "id": "wh-p1"})),
            r(
                "Observation",
                "wh-o1",
                serde_json::json!({"resourceType": "Observation", "id": "wh-o1", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": "urn:uuid:wh-p1"}, "valueQuantity": {"value": 95}}),
            ),
        ],
        issues: vec![],
    }
}

fn hook(base: &str, path: &str, max_attempts: u32, backoff: Backoff, topic: &str) -> WebhookConfig {
    WebhookConfig {
        url: format!("{base}{path}"),
        timeout_ms: 5_000,
        max_attempts,
        backoff,
        headers: BTreeMap::from([("X-Feed".to_string(), "it".to_string())]),
        secret_headers: BTreeMap::from([("Authorization".to_string(), "IT_WEBHOOK_AUTH".to_string())]),
        topic: Some(topic.to_string()),
        ..Default::default()
    }
}

fn fast() -> Backoff {
    Backoff { initial_ms: 20, max_ms: 100, multiplier: 2.0, jitter: 0.2 }
}

/// Runs a worker until it committed `until` records or `deadline` passed (a bound so a broken
/// run ends, not a timing assertion), then stops it as SIGTERM would.
async fn run_worker(
    cfg: &BusConfig,
    registry: &Registry,
    hook: ResolvedWebhook,
    dlq: &str,
    metrics: &WebhookMetrics,
    until: impl Fn(&WorkerCounters) -> bool,
) -> WorkerStats {
    let w = WebhookWorker::new(cfg, registry, hook, dlq, metrics.clone()).unwrap();
    let counters = w.counters();
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(w.run(shutdown.clone()));
    let end = tokio::time::Instant::now() + Duration::from_secs(90);
    while !until(&counters) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    handle.await.expect("worker task")
}

fn committed(n: u64) -> impl Fn(&WorkerCounters) -> bool {
    move |c| c.committed.load(Ordering::Relaxed) >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_retry_dead_letter_and_survive_a_restart() {
    let cfg = require_stack();
    let registry = Registry::new(&cfg.registry).unwrap();
    let receiver = Arc::new(Receiver::default());
    let base = serve(receiver.clone()).await;

    // Fan-out with four webhook routes for Observations (and a Patient left out by the filter).
    let input = unique("wh.in");
    let dlq = unique("wh.dlq");
    let names = ["flaky", "broken", "refusing", "restart"];
    let topics: BTreeMap<&str, String> = names.iter().map(|n| (*n, unique(&format!("wh.{n}")))).collect();
    let restart_backoff = Backoff { initial_ms: 200, max_ms: 400, multiplier: 2.0, jitter: 0.0 };
    let fcfg = FanoutConfig {
        input_topic: input.clone(),
        dlq_topic: dlq.clone(),
        group_id: unique("wh.fg"),
        transactional_id: unique("wh.ft"),
        topic_prefix: format!("{}.", unique("wh")),
        resource_types: vec!["Patient".into(), "Observation".into()],
        create_only: Default::default(),
        routes: names
            .iter()
            .map(|n| Route {
                name: format!("to-{n}"),
                to: format!("{WEBHOOK_PREFIX}{n}"),
                format: RouteFormat::FhirJson,
                when: RouteMatch {
                    resource_types: vec!["Observation".into()],
                    codes: vec!["http://loinc.org|2345-7".into()],
                    ..Default::default()
                },
            })
            .collect(),
        webhooks: BTreeMap::from([
            ("flaky".to_string(), hook(&base, "/flaky", 5, fast(), &topics["flaky"])),
            ("broken".to_string(), hook(&base, "/broken", 3, fast(), &topics["broken"])),
            ("refusing".to_string(), hook(&base, "/refusing", 5, fast(), &topics["refusing"])),
            ("restart".to_string(), hook(&base, "/restart", 1_000, restart_backoff, &topics["restart"])),
        ]),
    };
    fcfg.validate().unwrap();
    let hooks: BTreeMap<String, ResolvedWebhook> = fcfg
        .resolve_webhooks(|var| (var == "IT_WEBHOOK_AUTH").then(|| "Bearer it-token".to_string()))
        .unwrap()
        .into_iter()
        .map(|h| (h.name.clone(), h))
        .collect();
    let mut all = vec![input.clone(), dlq.clone(), fcfg.topic_for("Patient"), fcfg.topic_for("Observation")];
    all.extend(topics.values().cloned());
    for t in &all {
        create_topic(&cfg, t, 3).await;
    }

    let ev = event(&unique("wh-ev"));
    let value = registry.value_serde::<ClinicalEvent>(&input).encode(&ev).await.unwrap();
    let mut h = MessageHeaders::new();
    h.set_message_id(&ev.id).set_traceparent(&TraceParent::new_root());
    BusProducer::new(&cfg, "it-wh").unwrap().send(&input, Some(b"wh-p1"), &value, &h).await.unwrap();

    let mut lc = TxLoopConfig::new("fanout", &fcfg.group_id, &[&input], &fcfg.transactional_id);
    lc.dlq_topic = Some(dlq.clone());
    let stats = run_until(
        &cfg,
        lc,
        FanoutProcessor::new(fcfg.clone(), &cfg, &registry, Metrics::new()),
        1,
        Duration::from_secs(60),
    )
    .await;
    if stats.dead_lettered > 0 {
        let writer = DeadLetterWriter::new(&registry, "fanout", Some(&dlq));
        for d in read_committed(&cfg, &dlq, 1, Duration::from_secs(5)).await {
            let dl = writer.decode(d.value.as_deref().unwrap()).await.unwrap();
            eprintln!("fan-out dead letter: {}: {}", dl.error_class, dl.detail);
        }
    }
    assert_eq!((stats.records_in, stats.dead_lettered), (1, 0), "{stats:?}");

    // Each webhook's delivery topic holds the Observation once, committed with the event.
    let mut deliveries: BTreeMap<&str, InputRecord> = BTreeMap::new();
    for n in names {
        let recs = read_committed(&cfg, &topics[n], 2, Duration::from_secs(5)).await;
        assert_eq!(recs.len(), 1, "{n}: one delivery record (the Observation; the Patient is filtered out)");
        assert_eq!(recs[0].key.as_deref(), Some(&b"Observation/wh-o1"[..]));
        deliveries.insert(n, recs.into_iter().next().unwrap());
    }
    let idempotency_key = format!("Observation/wh-o1@{}", ev.id);
    let expected_body: serde_json::Value =
        serde_json::from_slice(deliveries["flaky"].value.as_deref().unwrap()).unwrap();
    assert_eq!(expected_body["subject"]["reference"], "Patient/wh-p1", "the resolved current state is sent");

    let wm = WebhookMetrics::new(&Metrics::new());

    // 503, 503, then accepted: delivered once accepted, same idempotency key on every attempt.
    let s = run_worker(&cfg, &registry, hooks["flaky"].clone(), &dlq, &wm, committed(1)).await;
    assert_eq!((s.attempts, s.retried, s.delivered, s.dead_lettered, s.committed), (3, 2, 1, 0, 1), "{s:?}");
    let seen = receiver.at("/flaky");
    assert_eq!(seen.iter().map(|s| s.status).collect::<Vec<_>>(), vec![503, 503, 201]);
    let accepted = &seen[2];
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&accepted.body).unwrap(), expected_body);
    assert_eq!(accepted.body, deliveries["flaky"].value.clone().unwrap(), "sent byte for byte");
    assert_eq!(accepted.headers["content-type"], "application/fhir+json");
    assert_eq!(accepted.headers["x-arteria-event-id"], ev.id.as_str());
    assert_eq!(accepted.headers["x-arteria-resource-id"], "Observation/wh-o1");
    assert_eq!(accepted.headers["authorization"], "Bearer it-token");
    assert_eq!(accepted.headers["x-feed"], "it");
    for s in &seen {
        assert_eq!(s.headers["idempotency-key"], idempotency_key.as_str());
    }
    let tp: TraceParent = accepted.headers["traceparent"].to_str().unwrap().parse().unwrap();
    let record_tp = deliveries["flaky"].headers.traceparent().expect("delivery record carries trace context");
    assert_eq!(tp.trace_id, record_tp.trace_id, "the request continues the resource's trace");
    assert_eq!(
        (wm.counted("flaky", DeliveryOutcome::delivered), wm.counted("flaky", DeliveryOutcome::retried)),
        (1, 2)
    );

    // Always 500: max_attempts (3) attempts, then the DLQ; 400: one attempt, then the DLQ.
    let s = run_worker(&cfg, &registry, hooks["broken"].clone(), &dlq, &wm, committed(1)).await;
    assert_eq!((s.attempts, s.delivered, s.dead_lettered, s.committed), (3, 0, 1, 1), "{s:?}");
    assert_eq!(receiver.at("/broken").len(), 3);
    let s = run_worker(&cfg, &registry, hooks["refusing"].clone(), &dlq, &wm, committed(1)).await;
    assert_eq!((s.attempts, s.retried, s.dead_lettered, s.committed), (1, 0, 1, 1), "{s:?}");
    assert_eq!(receiver.at("/refusing").len(), 1, "a 400 is not retried");
    assert_eq!(wm.counted("broken", DeliveryOutcome::dead_lettered), 1);
    assert_eq!(wm.counted("refusing", DeliveryOutcome::dead_lettered), 1);

    let writer = DeadLetterWriter::new(&registry, STAGE, Some(&dlq));
    let dead = read_committed(&cfg, &dlq, 3, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 2, "one dead letter each for broken and refusing, nothing else");
    let mut letters = BTreeMap::new();
    for d in &dead {
        let dl = writer.decode(d.value.as_deref().unwrap()).await.unwrap();
        letters.insert(dl.source_topic.clone(), dl);
    }
    for (name, class, attempts, status) in
        [("broken", CLASS_EXHAUSTED, 3, "HTTP 500"), ("refusing", CLASS_REJECTED, 1, "HTTP 400")]
    {
        let dl = &letters[&topics[name]];
        let orig = &deliveries[name];
        assert_eq!(
            (dl.stage.as_str(), dl.error_class.as_str(), dl.attempts),
            (STAGE, class, attempts),
            "{name}: {dl:?}"
        );
        assert_eq!(dl.original_value, orig.value, "{name}: original bytes kept");
        assert_eq!(dl.original_key, orig.key);
        assert_eq!(dl.original_headers(), orig.headers, "{name}: original headers kept (replayable)");
        assert_eq!((dl.source_partition, dl.source_offset), (orig.partition, orig.offset));
        assert!(dl.detail.contains(status), "{name}: {}", dl.detail);
        assert!(!dl.detail.contains("TESTER") && !dl.detail.contains("4711"), "no response body in the detail");
    }

    // Stopped while retrying: nothing committed; after a restart the same delivery is sent
    // again and accepted.
    let s =
        run_worker(&cfg, &registry, hooks["restart"].clone(), &dlq, &wm, |c| c.retried.load(Ordering::Relaxed) >= 2)
            .await;
    assert_eq!((s.delivered, s.dead_lettered, s.committed), (0, 0, 0), "{s:?}");
    let before = receiver.at("/restart").len();
    assert!(before >= 2, "the worker was retrying when stopped ({before} attempts)");
    receiver.accept_restart.store(true, Ordering::SeqCst);
    let s = run_worker(&cfg, &registry, hooks["restart"].clone(), &dlq, &wm, committed(1)).await;
    assert_eq!((s.attempts, s.delivered, s.committed), (1, 1, 1), "{s:?}");
    let seen = receiver.at("/restart");
    assert_eq!(seen.len(), before + 1);
    assert_eq!(seen.last().unwrap().status, 200);
    assert_eq!(seen.last().unwrap().body, deliveries["restart"].value.clone().unwrap());
    assert!(
        seen.iter().all(|s| s.headers["idempotency-key"] == idempotency_key.as_str()),
        "one key across the restart"
    );

    // Every settled delivery's offset is committed in its webhook's group: a restart would
    // not send it again.
    for n in names {
        let d = &deliveries[n];
        let c: StreamConsumer = consumer_client_config(&cfg, &hooks[n].group_id).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&d.topic, d.partition);
        let got = tokio::task::spawn_blocking(move || c.committed_offsets(tpl, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        let offset = got.find_partition(&d.topic, d.partition).unwrap().offset();
        assert_eq!(offset, Offset::Offset(d.offset + 1), "{n}: committed past its delivery");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_concurrency_sends_its_partitions_at_once_and_each_resources_versions_in_order() {
    let cfg = require_stack();
    let registry = Registry::new(&cfg.registry).unwrap();
    let receiver = Arc::new(Receiver::default());
    let base = serve(receiver.clone()).await;
    let topic = unique("wh.lanes");
    let dlq = unique("wh.lanes.dlq");
    create_topic(&cfg, &topic, 3).await;
    create_topic(&cfg, &dlq, 3).await;

    // Three versions of six resources, as fan-out writes delivery records (key <Type>/<id>).
    let producer = BusProducer::new(&cfg, "it-wh-lanes").unwrap();
    let mut partitions = BTreeSet::new();
    for version in 1..=3 {
        for r in 0..6 {
            let (resource_id, event_id) = (format!("Observation/lane-{r}"), format!("ev-{version}"));
            let mut h = MessageHeaders::new();
            h.set_message_id(&format!("{resource_id}@{event_id}"))
                .set_content_type("application/fhir+json")
                .set(EVENT_ID, event_id.as_str())
                .set(RESOURCE_ID, resource_id.as_str());
            let body = format!(r#"{{"resourceType":"Observation","id":"lane-{r}","status":"final"}}"#);
            let d = producer.send(&topic, Some(resource_id.as_bytes()), body.as_bytes(), &h).await.unwrap();
            partitions.insert(d.partition);
        }
    }
    assert!(partitions.len() >= 2, "the resources spread over the partitions: {partitions:?}");

    let mut config = hook(&base, "/slow", 3, fast(), &topic);
    config.concurrency = 3;
    let resolved = config.resolve("lanes", &unique("wh.lanes.g"), |_| Some("Bearer it-token".to_string())).unwrap();
    let wm = WebhookMetrics::new(&Metrics::new());
    let s = run_worker(&cfg, &registry, resolved, &dlq, &wm, committed(18)).await;
    assert_eq!((s.delivered, s.committed, s.retried, s.dead_lettered), (18, 18, 0, 0), "{s:?}");
    assert!(receiver.max_in_flight.load(Ordering::SeqCst) >= 2, "deliveries of different partitions overlapped");
    let seen = receiver.at("/slow");
    for r in 0..6 {
        let resource_id = format!("Observation/lane-{r}");
        let versions: Vec<&str> = seen
            .iter()
            .filter(|s| s.headers["x-arteria-resource-id"] == resource_id.as_str())
            .map(|s| s.headers["x-arteria-event-id"].to_str().unwrap())
            .collect();
        assert_eq!(versions, ["ev-1", "ev-2", "ev-3"], "{resource_id}: its versions in order, each once");
    }
}
