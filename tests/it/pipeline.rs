//! ingest → normalize → terminology-enrich → fan-out in-process, over the real broker and
//! registry: a lab result sent with a LOINC code and a free-text unit leaves the enrich stage
//! with the original coding kept, the LOINC display added and the quantity in UCUM; a local
//! code that nothing maps is reported as an issue, not dropped; fan-out publishes each
//! resource's current state keyed by id with references resolved, and a route rule sends the
//! event as a FHIR JSON Bundle to its subscriber topic.

use std::sync::Arc;
use std::time::Duration;

use arteria_tests::stage::run_until;
use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::txloop::TxLoopConfig;
use bus::{BusProducer, Registry};
use canonical::ClinicalEvent;
use canonical::FhirResource;
use enrich::{EnrichConfig, EnrichProcessor};
use fanout::routes::{Route, RouteFormat, RouteMatch};
use fanout::{FanoutConfig, FanoutProcessor};
use ingest::{IngestConfig, KafkaPublisher, Session};
use normalize::{NormalizeConfig, Normalizer};
use telemetry::{Metrics, Outcome};
use terminology::Terminology;

const ORU: &[u8] = b"MSH|^~\\&|LAB|NORTH|ARTERIA|HUB|20240301120000+0100||ORU^R01^ORU_R01|PL-ORU-1|P|2.5.1\rPID|1||PL-P-1^^^NORTH^MR||TESTER^ALEX\rOBR|1|ORD-1||2345-7^^LN|||20240301113000+0100\rOBX|1|NM|2345-7^^LN||95|mg/dl|70-99|N|||F\rOBX|2|NM|ZZ-LOCAL-9^Local assay^L||3|blargs|||||F\r";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_result_flows_through_ingest_normalize_enrich_and_fanout() {
    let cfg = require_stack();
    let (raw, idlq, normalized, ndlq, enriched, edlq) = (
        unique("pl.raw"),
        unique("pl.idlq"),
        unique("pl.norm"),
        unique("pl.ndlq"),
        unique("pl.enr"),
        unique("pl.edlq"),
    );
    for t in [&raw, &idlq, &normalized, &ndlq, &enriched, &edlq] {
        create_topic(&cfg, t, 3).await;
    }
    let registry = Registry::new(&cfg.registry).unwrap();

    let publisher = KafkaPublisher::new(BusProducer::new(&cfg, "it-pl").unwrap(), &registry, &raw, &idlq);
    let icfg = IngestConfig { raw_topic: raw.clone(), dlq_topic: idlq.clone(), ..Default::default() };
    let session = Session::new(Arc::new(icfg), publisher, Metrics::new());
    let a = session.handle(ORU, None, canonical::raw::Channel::Mllp).await;
    assert_eq!(a.outcome, Outcome::acknowledged);

    let ncfg = NormalizeConfig {
        input_topic: raw.clone(),
        output_topic: normalized.clone(),
        dlq_topic: ndlq.clone(),
        group_id: unique("pl.ng"),
        transactional_id: unique("pl.nt"),
        ..Default::default()
    };
    let mut lc = TxLoopConfig::new("normalize", &ncfg.group_id, &[&raw], &ncfg.transactional_id);
    lc.dlq_topic = Some(ndlq.clone());
    let n = Normalizer::new(ncfg, cfg.clone(), mapping::Profiles::default(), &registry, Metrics::new());
    let stats = run_until(&cfg, lc, n, 1, Duration::from_secs(60)).await;
    assert_eq!((stats.records_out, stats.dead_lettered), (1, 0), "{stats:?}");

    let ecfg = EnrichConfig {
        input_topic: normalized.clone(),
        output_topic: enriched.clone(),
        dlq_topic: edlq.clone(),
        group_id: unique("pl.eg"),
        transactional_id: unique("pl.et"),
        ..Default::default()
    };
    let mut lc = TxLoopConfig::new("enrich", &ecfg.group_id, &[&normalized], &ecfg.transactional_id);
    lc.dlq_topic = Some(edlq.clone());
    let e = EnrichProcessor::new(ecfg, Arc::new(Terminology::builtin()), &registry, Metrics::new());
    let stats = run_until(&cfg, lc, e, 1, Duration::from_secs(60)).await;
    assert_eq!((stats.records_out, stats.dead_lettered), (1, 0), "{stats:?}");

    let out = read_committed(&cfg, &enriched, 1, Duration::from_secs(20)).await;
    assert_eq!(out.len(), 1);
    let event: ClinicalEvent = registry.value_serde(&enriched).decode(out[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(event.provenance.stage, "enrich");
    let observations: Vec<serde_json::Value> = event
        .resources
        .iter()
        .filter(|r| r.resource_type == "Observation")
        .map(|r| serde_json::from_str(&r.fhir_json).unwrap())
        .collect();
    assert_eq!(observations.len(), 2, "both OBX kept");
    let glucose = observations.iter().find(|o| o["code"]["coding"][0]["code"] == "2345-7").expect("glucose");
    assert!(glucose["code"]["coding"][0]["display"].as_str().is_some_and(|d| d.contains("Glucose")), "{glucose}");
    assert_eq!(glucose["valueQuantity"]["unit"], "mg/dl", "sender's unit text kept");
    assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
    assert_eq!(glucose["valueQuantity"]["system"], "http://unitsofmeasure.org");
    let local = observations.iter().find(|o| o["code"]["coding"][0]["code"] == "ZZ-LOCAL-9").expect("local OBX kept");
    assert_eq!(local["valueQuantity"]["value"], 3);
    assert!(
        event.issues.iter().any(|i| i.stage == "enrich" && i.location.contains(local["id"].as_str().unwrap())),
        "the unmapped local code is reported: {:?}",
        event.issues
    );

    // Fan-out: current state per resource, and a route for glucose results.
    let prefix = format!("{}.", unique("pl"));
    let route_topic = unique("pl.route");
    let fcfg = FanoutConfig {
        input_topic: enriched.clone(),
        dlq_topic: unique("pl.fdlq"),
        group_id: unique("pl.fg"),
        transactional_id: unique("pl.ft"),
        topic_prefix: prefix.clone(),
        routes: vec![Route {
            name: "glucose".into(),
            to: route_topic.clone(),
            format: RouteFormat::FhirJson,
            when: RouteMatch { codes: vec!["http://loinc.org|2345-7".into()], ..Default::default() },
        }],
        ..Default::default()
    };
    let obs_topic = fcfg.topic_for("Observation");
    let patient_topic = fcfg.topic_for("Patient");
    // What the fan-out service creates at start-up: every current-state topic, the DLQ, routes.
    let mut topics: Vec<String> = fcfg.resource_types.iter().map(|t| fcfg.topic_for(t)).collect();
    topics.extend([fcfg.dlq_topic.clone(), route_topic.clone()]);
    for t in &topics {
        create_topic(&cfg, t, 1).await;
    }
    let mut lc = TxLoopConfig::new("fanout", &fcfg.group_id, &[&enriched], &fcfg.transactional_id);
    lc.dlq_topic = Some(fcfg.dlq_topic.clone());
    let f = FanoutProcessor::new(fcfg, &cfg, &registry, Metrics::new());
    let stats = run_until(&cfg, lc, f, 1, Duration::from_secs(60)).await;
    assert_eq!((stats.records_in, stats.dead_lettered), (1, 0), "{stats:?}");

    let obs = read_committed(&cfg, &obs_topic, 2, Duration::from_secs(20)).await;
    assert_eq!(obs.len(), 2, "one current-state record per Observation");
    let serde = registry.value_serde::<FhirResource>(&obs_topic);
    let patient_id = event.patient_key.clone().expect("event names its patient");
    for r in &obs {
        // A registry call can fail transiently on a loaded machine: retried, as the services do.
        let mut tries = 0;
        let res = loop {
            match serde.decode(r.value.as_deref().unwrap()).await {
                Err(e) if e.is_transient() && tries < 5 => tries += 1,
                done => break done.unwrap(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(r.key.as_deref(), Some(res.id.as_bytes()), "keyed by resource id");
        assert_eq!(res.patient_id.as_deref(), Some(patient_id.as_str()));
        let json: serde_json::Value = serde_json::from_str(&res.fhir_json).unwrap();
        assert_eq!(json["subject"]["reference"], format!("Patient/{patient_id}"), "bundle reference resolved");
    }
    let patients = read_committed(&cfg, &patient_topic, 1, Duration::from_secs(20)).await;
    assert_eq!(patients.len(), 1);
    let routed = read_committed(&cfg, &route_topic, 1, Duration::from_secs(20)).await;
    assert_eq!(routed.len(), 1, "the glucose route fired once");
    let bundle: serde_json::Value = serde_json::from_slice(routed[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    assert_eq!(routed[0].headers.content_type(), Some("application/fhir+json"));
}

/// PV1 with the given fields set (1-based), the rest empty.
fn pv1(fields: &[(usize, &str)]) -> String {
    let n = fields.iter().map(|f| f.0).max().unwrap_or(1);
    let mut v = vec![""; n + 1];
    v[0] = "PV1";
    for (i, val) in fields {
        v[*i] = val;
    }
    v.join("|")
}

/// Our own messages, one patient and one visit per MRN: an admission with the full
/// demographics and visit, lab results with the thin PID and PV1 labs send, an update.
fn adt(trigger: &str, control: &str, mrn: &str) -> Vec<u8> {
    let visit = format!("V{mrn}^^^NORTH^VN");
    let pv1 = pv1(&[
        (1, "1"),
        (2, "I"),
        (3, "WARD1^101^A"),
        (7, "1234^OKAFOR^CHIDI"),
        (19, &visit),
        (44, "20240301083000+0100"),
    ]);
    format!(
        "MSH|^~\\&|ADMISSIONS|NORTH|ARTERIA|HUB|20240301090000+0100||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{trigger}|20240301090000+0100\r\
         PID|1||{mrn}^^^NORTH^MR||TESTER^ALEX^J||19800102|F|||1 HIGH STREET^^NORTHTOWN^^N1 1AA^GBR||^PRN^PH^^^^^^^^^+44 20 7946 0000\r\
         {pv1}\r"
    )
    .into_bytes()
}

fn oru(control: &str, mrn: &str, sent: &str) -> Vec<u8> {
    let visit = format!("V{mrn}^^^NORTH^VN");
    let pv1 = pv1(&[(1, "1"), (2, "I"), (19, &visit)]);
    format!(
        "MSH|^~\\&|LAB|NORTH|ARTERIA|HUB|{sent}||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^NORTH^MR||TESTER^ALEX||19800102|F\r\
         {pv1}\r\
         OBR|1|ORD-{control}||2345-7^^LN|||{sent}\r\
         OBX|1|NM|2345-7^^LN||95|mg/dL|70-99|N|||F\r"
    )
    .into_bytes()
}

/// Converts and writes each message as enrich would, keyed by its patient; returns the events.
async fn write_events(cfg: &bus::BusConfig, registry: &Registry, topic: &str, msgs: &[Vec<u8>]) -> Vec<ClinicalEvent> {
    let producer = BusProducer::new(cfg, "it-demo").unwrap();
    let mut out = Vec::new();
    for m in msgs {
        let conv = mapping::convert_bytes(m, &mapping::Profiles::default(), "default").unwrap();
        let ev = conv.to_event("default", "raw", conv.timestamp_micros().unwrap());
        let value = registry.value_serde::<ClinicalEvent>(topic).encode(&ev).await.unwrap();
        let key = ev.patient_key.clone().unwrap();
        producer.send(topic, Some(key.as_bytes()), &value, &bus::MessageHeaders::new()).await.unwrap();
        out.push(ev);
    }
    out
}

/// The resources on a topic as (id, has `field`), in order; waits for `n`, then briefly for
/// any more.
async fn versions_on(
    cfg: &bus::BusConfig,
    registry: &Registry,
    topic: &str,
    n: usize,
    field: &str,
) -> Vec<(String, bool)> {
    let mut recs = read_committed(cfg, topic, n, Duration::from_secs(20)).await;
    recs.extend(read_committed(cfg, topic, n + 1, Duration::from_secs(3)).await.into_iter().skip(recs.len()));
    let serde = registry.value_serde::<FhirResource>(topic);
    let mut out = Vec::new();
    for r in recs {
        // A registry call can fail transiently on a loaded machine: retried, as the services do.
        let mut tries = 0;
        let res = loop {
            match serde.decode(r.value.as_deref().unwrap()).await {
                Err(e) if e.is_transient() && tries < 5 => tries += 1,
                done => break done.unwrap(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let json: serde_json::Value = serde_json::from_str(&res.fhir_json).unwrap();
        out.push((res.id, json.get(field).is_some()));
    }
    out
}

/// The id of the `resource_type` in `event`.
fn id_of(event: &ClinicalEvent, resource_type: &str) -> String {
    event.resources.iter().find(|r| r.resource_type == resource_type).expect(resource_type).id.clone()
}

/// A lab result names the patient and the visit but does not replace the admission's Patient
/// and Encounter: fan-out publishes a lab's only when none was published (conditional create),
/// and a fresh replica knows what its predecessor published, from the topics themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_result_creates_a_patient_and_visit_but_never_replaces_the_admissions() {
    let cfg = require_stack();
    let registry = Registry::new(&cfg.registry).unwrap();
    let input = unique("dm.enr");
    let fcfg = FanoutConfig {
        input_topic: input.clone(),
        dlq_topic: unique("dm.fdlq"),
        group_id: unique("dm.fg"),
        transactional_id: unique("dm.ft"),
        topic_prefix: format!("{}.", unique("dm")),
        resource_types: vec!["Patient".into(), "Encounter".into(), "Observation".into()],
        ..Default::default()
    };
    let (patients, encounters) = (fcfg.topic_for("Patient"), fcfg.topic_for("Encounter"));
    // One partition for the Patient and Encounter topics (as deployed), so their records read
    // back in order.
    for t in [&patients, &encounters] {
        create_topic(&cfg, t, 1).await;
    }
    for t in [&input, &fcfg.dlq_topic, &fcfg.topic_for("Observation")] {
        create_topic(&cfg, t, 3).await;
    }
    let run = |fcfg: FanoutConfig, until: u64| {
        let cfg = cfg.clone();
        let registry = registry.clone();
        async move {
            let mut lc = TxLoopConfig::new("fanout", &fcfg.group_id, &[&fcfg.input_topic], &fcfg.transactional_id);
            lc.dlq_topic = Some(fcfg.dlq_topic.clone());
            let metrics = Metrics::new();
            let p = FanoutProcessor::new(fcfg, &cfg, &registry, metrics.clone());
            let stats = run_until(&cfg, lc, p, until, Duration::from_secs(60)).await;
            assert_eq!((stats.records_in, stats.dead_lettered), (until, 0), "{stats:?}");
            let text = metrics.encode();
            let kept = |t: &str| {
                let label = format!("resource_type=\"{t}\"");
                arteria_tests::services::metric_sum(&text, "arteria_fanout_create_only_kept_total", &[label.as_str()])
            };
            (kept("Patient"), kept("Encounter"))
        }
    };

    // The admission, then a lab result for the same patient and visit, and one for a patient
    // nobody admitted.
    let first = write_events(
        &cfg,
        &registry,
        &input,
        &[
            adt("A01", "DM-1", "DM-MRN-1"),
            oru("DM-2", "DM-MRN-1", "20240301100000+0100"),
            oru("DM-3", "DM-MRN-2", "20240301100100+0100"),
        ],
    )
    .await;
    let (p1, p2) = (id_of(&first[0], "Patient"), id_of(&first[2], "Patient"));
    let (e1, e2) = (id_of(&first[0], "Encounter"), id_of(&first[2], "Encounter"));
    assert_eq!((id_of(&first[1], "Patient"), id_of(&first[1], "Encounter")), (p1.clone(), e1.clone()));
    assert_eq!(run(fcfg.clone(), 3).await, (1.0, 1.0), "the admitted patient's lab Patient and Encounter kept off");
    assert_eq!(
        versions_on(&cfg, &registry, &patients, 2, "address").await,
        vec![(p1.clone(), true), (p2.clone(), false)],
        "the admission's Patient (with its address) and the unknown patient's, created by the lab"
    );
    assert_eq!(
        versions_on(&cfg, &registry, &encounters, 2, "participant").await,
        vec![(e1.clone(), true), (e2.clone(), false)],
        "the admission's Encounter (with its attending doctor) and the lab's for the unknown visit"
    );

    // A fresh replica (a restart) rebuilds its ledger from the topics: another lab result for
    // either patient publishes neither; an update from admissions replaces the lab's.
    write_events(
        &cfg,
        &registry,
        &input,
        &[
            oru("DM-4", "DM-MRN-1", "20240301110000+0100"),
            oru("DM-5", "DM-MRN-2", "20240301110100+0100"),
            adt("A08", "DM-6", "DM-MRN-2"),
        ],
    )
    .await;
    assert_eq!(run(fcfg.clone(), 3).await, (2.0, 2.0));
    assert_eq!(
        versions_on(&cfg, &registry, &patients, 3, "address").await,
        vec![(p1.clone(), true), (p2.clone(), false), (p2.clone(), true)]
    );
    assert_eq!(
        versions_on(&cfg, &registry, &encounters, 3, "participant").await,
        vec![(e1.clone(), true), (e2.clone(), false), (e2.clone(), true)]
    );

    // With no create-only messages configured, every message replaces what it names (as before).
    let every = FanoutConfig {
        group_id: unique("dm.fg2"),
        transactional_id: unique("dm.ft2"),
        create_only: fanout::config::CreateOnly { event_types: vec![], ..Default::default() },
        ..fcfg
    };
    assert_eq!(run(every, 6).await, (0.0, 0.0));
    assert_eq!(versions_on(&cfg, &registry, &patients, 9, "id").await.len(), 9, "3 before, and one per event");
    assert_eq!(versions_on(&cfg, &registry, &encounters, 9, "id").await.len(), 9);
}
