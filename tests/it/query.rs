//! The query service against the real broker and registry: `FhirResource` records (Avro via
//! the registry) on per-type topics are materialised into the SQLite store and answered over
//! gRPC by an in-process server on 127.0.0.1:0. Covers lookups, searches, code and date
//! filters with paging, updates (newer wins, an older replay does not), a watch that sees a
//! later change, reads while records are being written, a poison record skipped, a restart on
//! the same store (answers from disk) and a rebuild from the topics into a new store.
//! Waits are bounded (so a broken run ends); nothing asserts on timing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arteria_tests::{create_topic, require_stack, unique};
use bus::{BusConfig, BusProducer, MessageHeaders, Registry, Shutdown};
use canonical::current::FhirResource;
use futures::StreamExt;
use query::client::{self, Client, PatientRef};
use query::proto::{
    GetPatientRequest, GetResourceRequest, Identifier, ListByPatientRequest, ListObservationsRequest, Page,
    SearchPatientsRequest, WatchPatientRequest, get_patient_request, list_by_patient_request,
    list_observations_request, watch_patient_request,
};
use query::tonic::Code;
use query::{Materializer, Progress, QueryConfig, QueryService, Store};
use serde_json::json;

const MRN_SYSTEM: &str = "urn:oid:2.16.840.1.113883.19.5";
const GLUCOSE: &str = "2345-7";
const LOINC: &str = "http://loinc.org";
const WAIT: Duration = Duration::from_secs(90);

/// The per-type topics of one test run.
struct Topics {
    patient: String,
    observation: String,
    encounter: String,
}

impl Topics {
    /// Creates `<base>.fhir.<type>.v1` for the three types, each with `partitions`.
    async fn create(bus: &BusConfig, base: &str, partitions: i32) -> Self {
        let topics = Topics {
            patient: format!("{base}.fhir.patient.v1"),
            observation: format!("{base}.fhir.observation.v1"),
            encounter: format!("{base}.fhir.encounter.v1"),
        };
        for t in topics.all() {
            create_topic(bus, &t, partitions).await;
        }
        topics
    }

    fn all(&self) -> Vec<String> {
        vec![self.patient.clone(), self.observation.clone(), self.encounter.clone()]
    }
}

/// A running consumer + store + gRPC server.
struct Running {
    shutdown: Shutdown,
    progress: Arc<Progress>,
    consumer: tokio::task::JoinHandle<Result<(), query::materialize::MaterializeError>>,
    server: tokio::task::JoinHandle<Result<(), query::server::ServerError>>,
    addr: String,
    /// The store's consumer group.
    group: String,
}

impl Running {
    async fn start(bus: &BusConfig, topics: &Topics, data_dir: PathBuf) -> Self {
        let cfg = QueryConfig {
            data_dir,
            topics: topics.all(),
            group_prefix: unique("query.group"),
            ..QueryConfig::default()
        };
        let store = Arc::new(query::open_store(&cfg, false).expect("open store"));
        let shutdown = Shutdown::new();
        let registry = Registry::new(&bus.registry).expect("registry");
        let m = Materializer::new(bus, registry, store.clone(), &cfg.subscription(), &cfg.group_prefix)
            .expect("materializer");
        let progress = m.progress();
        let group = m.group().to_string();
        let consumer = tokio::spawn(m.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = shutdown.clone();
        let server =
            tokio::spawn(query::server::serve(listener, QueryService::new(store, shutdown.clone()), async move {
                stop.wait().await
            }));
        Self { shutdown, progress, consumer, server, addr, group }
    }

    async fn client(&self) -> Client {
        client::connect(&self.addr).await.expect("connect to the in-process server")
    }

    /// Waits (bounded) until the consumer has handled and committed `n` records in total.
    async fn wait_processed(&self, n: u64) {
        let start = Instant::now();
        while self.progress.processed() < n {
            assert!(
                start.elapsed() < WAIT,
                "consumer handled {} of {n} records within the bound",
                self.progress.processed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.consumer.await.expect("consumer task").expect("consumer stopped cleanly");
        self.server.await.expect("server task").expect("server stopped cleanly");
    }
}

fn patient(id: &str, mrn: &str, family: &str, at: i64) -> FhirResource {
    let j = json!({
        "resourceType": "Patient", "id": id,
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "name": [{"family": family, "given": ["Quinn"]}],
        "birthDate": "1975-06-15"
    });
    rec("Patient", id, id, at, j.to_string())
}

fn observation(id: &str, patient: &str, code: &str, when: &str, value: f64, at: i64) -> FhirResource {
    let j = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": format!("Patient/{patient}")},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmol/L"}
    });
    rec("Observation", id, patient, at, j.to_string())
}

fn encounter(id: &str, patient: &str, start: &str, at: i64) -> FhirResource {
    let j = json!({"resourceType": "Encounter", "id": id, "status": "finished",
                   "subject": {"reference": format!("Patient/{patient}")}, "period": {"start": start}});
    rec("Encounter", id, patient, at, j.to_string())
}

fn rec(rt: &str, id: &str, patient: &str, at: i64, fhir_json: String) -> FhirResource {
    FhirResource {
        id: id.into(),
        resource_type: rt.into(),
        tenant: "it".into(),
        patient_id: Some(patient.into()),
        source_event_id: format!("ev-{id}-{at}"),
        event_type: "test".into(),
        occurred_at: at,
        fhir_json,
    }
}

struct Writer {
    producer: BusProducer,
    registry: Registry,
    sent: u64,
}

impl Writer {
    async fn send(&mut self, topic: &str, r: &FhirResource) {
        let bytes = self.registry.value_serde::<FhirResource>(topic).encode(r).await.expect("encode FhirResource");
        self.producer.send(topic, Some(r.id.as_bytes()), &bytes, &MessageHeaders::new()).await.expect("produce");
        self.sent += 1;
    }

    async fn send_raw(&mut self, topic: &str, key: &str, value: &[u8]) {
        self.producer.send(topic, Some(key.as_bytes()), value, &MessageHeaders::new()).await.expect("produce");
        self.sent += 1;
    }
}

fn ident(value: &str) -> Identifier {
    Identifier { system: MRN_SYSTEM.into(), value: value.into() }
}

/// Every Observation id of the patient for `codes` in `from..to`, following tokens with
/// `page_size` per page; returns the ids in order and the number of pages.
async fn observation_ids(
    c: &mut Client,
    mrn: &str,
    codes: &[&str],
    from: &str,
    to: &str,
    page_size: u32,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_observations(ListObservationsRequest {
                patient: Some(list_observations_request::Patient::PatientIdentifier(ident(mrn))),
                codes: codes.iter().map(|s| s.to_string()).collect(),
                from: from.into(),
                to: to.into(),
                page: Some(Page { size: page_size, token }),
            })
            .await
            .expect("ListObservations")
            .into_inner();
        pages += 1;
        assert!(page.resources.len() <= page_size as usize);
        ids.extend(page.resources.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            return (ids, pages);
        }
        token = page.next_page_token;
    }
}

/// What the API answers about the patient, for comparing two stores.
async fn answers(c: &mut Client, mrn: &str, pid: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let p = client::patient(c, &PatientRef::Identifier { system: MRN_SYSTEM.into(), value: mrn.into() })
        .await
        .expect("patient");
    out.insert(format!("Patient/{}", p.id), p.json);
    for o in client::observations(c, &PatientRef::Id(pid.into()), &[], None, None).await.expect("observations") {
        out.insert(format!("Observation/{}", o.id), o.json);
    }
    let enc = c
        .list_encounters(ListByPatientRequest {
            patient: Some(list_by_patient_request::Patient::PatientId(pid.into())),
            page: None,
        })
        .await
        .expect("encounters")
        .into_inner();
    for e in enc.resources {
        out.insert(format!("Encounter/{}", e.id), e.json);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn materialises_serves_updates_watches_and_rebuilds() {
    let bus = require_stack();
    let base = unique("query");
    let topics = Topics::create(&bus, &base, 3).await;
    let registry = Registry::new(&bus.registry).expect("registry");
    let mut w =
        Writer { producer: BusProducer::new(&bus, "it-query").expect("producer"), registry: registry.clone(), sent: 0 };

    let run = std::process::id();
    let pid = format!("pat-{run}-{}", base.len());
    let mrn = format!("MRN-{run}");
    let other_pid = format!("other-{run}");
    w.send(&topics.patient, &patient(&pid, &mrn, "Testerson", 1_000)).await;
    w.send(&topics.patient, &patient(&other_pid, &format!("OTHER-{run}"), "Tester", 1_000)).await;
    // Five glucose values Jan..May 2024 and two other codes; one glucose of another patient.
    let mut glucose: Vec<(String, String)> = Vec::new();
    for m in 1..=5 {
        let id = format!("obs-g{m}-{run}");
        let when = format!("2024-0{m}-10T08:00:00+01:00");
        w.send(&topics.observation, &observation(&id, &pid, GLUCOSE, &when, 5.0 + m as f64 / 10.0, 1_000)).await;
        glucose.push((id, when));
    }
    w.send(
        &topics.observation,
        &observation(&format!("obs-hb-{run}"), &pid, "718-7", "2024-03-01T00:00:00Z", 13.5, 1_000),
    )
    .await;
    w.send(
        &topics.observation,
        &observation(&format!("obs-k-{run}"), &pid, "2823-3", "2024-04-01T00:00:00Z", 4.1, 1_000),
    )
    .await;
    w.send(
        &topics.observation,
        &observation(&format!("obs-x-{run}"), &other_pid, GLUCOSE, "2024-03-01T00:00:00Z", 7.0, 1_000),
    )
    .await;
    w.send(&topics.encounter, &encounter(&format!("enc-1-{run}"), &pid, "2024-01-10", 1_000)).await;
    w.send(&topics.encounter, &encounter(&format!("enc-2-{run}"), &pid, "2024-05-10", 1_000)).await;
    // A value that is not Confluent-framed Avro: logged and skipped, the loop goes on.
    w.send_raw(&topics.observation, "poison", b"not avro").await;

    let dir_a = std::env::temp_dir().join(unique("query.store.a"));
    let node = Running::start(&bus, &topics, dir_a.clone()).await;
    node.wait_processed(w.sent).await;
    assert_eq!(node.progress.skipped(), 1, "the poison record is skipped, nothing else");
    let mut c = node.client().await;

    // GetPatient by identifier: the JSON exactly as produced.
    let got = c
        .get_patient(GetPatientRequest { by: Some(get_patient_request::By::Identifier(ident(&mrn))) })
        .await
        .expect("GetPatient")
        .into_inner();
    assert_eq!(got.id, pid);
    assert_eq!(got.json, patient(&pid, &mrn, "Testerson", 1_000).fhir_json);
    assert!(!got.last_updated.is_empty());
    let e = c
        .get_patient(GetPatientRequest { by: Some(get_patient_request::By::Identifier(ident("NO-SUCH-MRN"))) })
        .await
        .expect_err("unknown identifier");
    assert_eq!(e.code(), Code::NotFound);

    // SearchPatients by name prefix: both "Test..." patients, one per page.
    let first = c
        .search_patients(SearchPatientsRequest {
            name: "TEST".into(),
            page: Some(Page { size: 1, token: String::new() }),
            ..Default::default()
        })
        .await
        .expect("SearchPatients")
        .into_inner();
    assert_eq!(first.resources.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = c
        .search_patients(SearchPatientsRequest {
            name: "TEST".into(),
            page: Some(Page { size: 1, token: first.next_page_token }),
            ..Default::default()
        })
        .await
        .expect("SearchPatients page 2")
        .into_inner();
    let mut found: Vec<String> = first.resources.iter().chain(second.resources.iter()).map(|r| r.id.clone()).collect();
    found.sort();
    let mut want = vec![pid.clone(), other_pid.clone()];
    want.sort();
    assert_eq!(found, want);
    assert!(second.next_page_token.is_empty());
    let testerson = c
        .search_patients(SearchPatientsRequest {
            name: "testers".into(),
            birth_date: "1975-06".into(),
            ..Default::default()
        })
        .await
        .expect("SearchPatients")
        .into_inner();
    assert_eq!(testerson.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [pid.as_str()]);

    // ListObservations by code and date range (Feb..Apr), two per page, newest first.
    let (ids, pages) = observation_ids(&mut c, &mrn, &[&format!("{LOINC}|{GLUCOSE}")], "2024-02", "2024-04", 2).await;
    let want: Vec<String> = glucose[1..4].iter().rev().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, want);
    assert_eq!(pages, 2);
    let (all_glucose, _) = observation_ids(&mut c, &mrn, &[GLUCOSE], "", "", 2).await;
    assert_eq!(all_glucose, glucose.iter().rev().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    let (all, _) = observation_ids(&mut c, &mrn, &[], "", "", 1000).await;
    assert_eq!(all.len(), 7, "5 glucose + 2 others, not the other patient's");

    // GetResource and ListEncounters.
    let enc = c
        .get_resource(GetResourceRequest { resource_type: "Encounter".into(), id: format!("enc-2-{run}") })
        .await
        .expect("GetResource")
        .into_inner();
    assert_eq!(enc.json, encounter(&format!("enc-2-{run}"), &pid, "2024-05-10", 1_000).fhir_json);
    let encs = c
        .list_encounters(ListByPatientRequest {
            patient: Some(list_by_patient_request::Patient::PatientIdentifier(ident(&mrn))),
            page: None,
        })
        .await
        .expect("ListEncounters")
        .into_inner();
    assert_eq!(
        encs.resources.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [format!("enc-2-{run}"), format!("enc-1-{run}")]
    );

    // WatchPatient, then a newer version of an Observation: the watch sees it, reads see it.
    let mut watch = c
        .watch_patient(WatchPatientRequest {
            patient: Some(watch_patient_request::Patient::PatientIdentifier(ident(&mrn))),
        })
        .await
        .expect("WatchPatient")
        .into_inner();
    let (g1, g1_when) = glucose[0].clone();
    let newer = observation(&g1, &pid, GLUCOSE, &g1_when, 9.9, 2_000);
    w.send(&topics.observation, &newer).await;
    let seen = tokio::time::timeout(WAIT, watch.next()).await.expect("the watch got the change within the bound");
    let seen = seen.expect("stream open").expect("a resource");
    assert_eq!((seen.id.as_str(), seen.json.as_str()), (g1.as_str(), newer.fhir_json.as_str()));
    node.wait_processed(w.sent).await;
    let got = c
        .get_resource(GetResourceRequest { resource_type: "Observation".into(), id: g1.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.json, newer.fhir_json, "a newer occurred_at replaces");

    // A replay of the older version does not overwrite.
    let ignored_before = node.progress.ignored();
    w.send(&topics.observation, &observation(&g1, &pid, GLUCOSE, &g1_when, 5.1, 1_000)).await;
    node.wait_processed(w.sent).await;
    assert_eq!(node.progress.ignored(), ignored_before + 1);
    let got = c
        .get_resource(GetResourceRequest { resource_type: "Observation".into(), id: g1.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.json, newer.fhir_json, "an older replay is ignored");

    // Reads keep answering while records are being written.
    let bulk = 200u64;
    let writer = {
        let topic = topics.observation.clone();
        let pid = pid.clone();
        let mut w2 = Writer { producer: w.producer.clone(), registry: registry.clone(), sent: 0 };
        tokio::spawn(async move {
            for i in 0..bulk {
                let when = format!("2023-{:02}-01T00:00:00Z", i % 12 + 1);
                w2.send(&topic, &observation(&format!("obs-bulk-{i}-{run}"), &pid, "BULK", &when, i as f64, 1_000))
                    .await;
            }
        })
    };
    let mut reads = 0u32;
    let mut last = 0usize;
    let start = Instant::now();
    loop {
        let (ids, _) = observation_ids(&mut c, &mrn, &["BULK"], "", "", 1000).await;
        assert!(ids.len() >= last, "a read saw {} after {last}", ids.len());
        last = ids.len();
        reads += 1;
        if last as u64 == bulk {
            break;
        }
        assert!(start.elapsed() < WAIT, "bulk records materialised: {last} of {bulk}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.expect("bulk writer");
    w.sent += bulk;
    assert!(reads >= 1);
    node.wait_processed(w.sent).await;
    let before = answers(&mut c, &mrn, &pid).await;
    assert_eq!(before.len(), 1 + 7 + bulk as usize + 2);
    drop(watch);
    node.stop().await;

    // Restart on the same store: the answers come from disk before any record is read again.
    let node = Running::start(&bus, &topics, dir_a.clone()).await;
    let mut c = node.client().await;
    assert_eq!(answers(&mut c, &mrn, &pid).await, before, "same store after a restart");
    node.stop().await;

    // Rebuild: a new, empty store (so a new consumer group) refills from the topics.
    let dir_b = std::env::temp_dir().join(unique("query.store.b"));
    let node = Running::start(&bus, &topics, dir_b.clone()).await;
    node.wait_processed(w.sent).await;
    let mut c = node.client().await;
    assert_eq!(answers(&mut c, &mrn, &pid).await, before, "rebuilt store answers the same");
    assert_eq!(node.progress.skipped(), 1);
    node.stop().await;

    let _ = Store::remove(&dir_a);
    let _ = Store::remove(&dir_b);
    let _ = std::fs::remove_dir(&dir_a);
    let _ = std::fs::remove_dir(&dir_b);
}

/// The group's committed next offsets summed over `topic`'s `partitions`.
fn committed_total(bus: &BusConfig, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = bus::consumer::consumer_client_config(bus, group).create().expect("offset reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    got.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum()
}

/// Stored records become durable every sync interval and only then are their offsets
/// committed: with no further records arriving, the commit must still come (the idle sync),
/// and a restart on the same store resumes after them (nothing stored twice, nothing missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_are_committed_after_the_idle_sync_and_a_restart_resumes_there() {
    let bus = require_stack();
    let base = unique("querysync");
    let topics = Topics::create(&bus, &base, 2).await;
    let registry = Registry::new(&bus.registry).expect("registry");
    let mut w =
        Writer { producer: BusProducer::new(&bus, "it-query").expect("producer"), registry: registry.clone(), sent: 0 };
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Running::start(&bus, &topics, dir.path().to_path_buf()).await;
    for i in 0..3 {
        w.send(&topics.patient, &patient(&format!("sync-p{i}"), &format!("SYNC-{i}"), "Syncer", 1_000)).await;
    }
    run.wait_processed(3).await;
    let start = Instant::now();
    loop {
        let total = committed_total(&bus, &run.group, &topics.patient, 2);
        if total == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "committed {total} of 3 within 30 s of storing them");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.stop().await;

    // The same store again: the group resumes after the three; only the new record arrives.
    let run = Running::start(&bus, &topics, dir.path().to_path_buf()).await;
    w.send(&topics.patient, &patient("sync-p3", "SYNC-3", "Syncer", 1_000)).await;
    run.wait_processed(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run.progress.received(), 1, "a restart re-read records whose offsets were committed");
    let mut c = run.client().await;
    for i in 0..4 {
        let p = client::patient(&mut c, &PatientRef::Id(format!("sync-p{i}"))).await.expect("patient stored");
        assert_eq!(p.id, format!("sync-p{i}"));
    }
    run.stop().await;
}

/// A starting replica reports ready only once it holds what the topics held when it started
/// (`query::catch_up`, behind the service's `/readyz`): topics holding nothing need no wait;
/// records on them keep the wait open while nothing reads them, and it ends once the
/// materialiser has read them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_waits_until_the_topics_are_read() {
    let bus = require_stack();
    let base = unique("queryready");
    let topics = Topics::create(&bus, &base, 2).await;
    // The pattern form, as the service subscribes by default.
    let subscription = vec![format!("^{}\\.fhir\\..*\\.v1$", base.replace('.', "\\."))];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueryConfig { data_dir: dir.path().to_path_buf(), ..QueryConfig::default() };
    let store = Arc::new(query::open_store(&cfg, false).expect("open store"));
    let registry = Registry::new(&bus.registry).expect("registry");
    let m =
        Materializer::new(&bus, registry.clone(), store, &subscription, &unique("query.group")).expect("materializer");
    let (lag, progress) = (m.lag(), m.progress());
    let shutdown = Shutdown::new();
    let ready = || query::catch_up::wait(&bus, &subscription, lag.clone(), &shutdown);
    assert!(ready().await, "empty topics: ready at once");

    let mut w = Writer { producer: BusProducer::new(&bus, "it-query").expect("producer"), registry, sent: 0 };
    for i in 0..3 {
        w.send(&topics.patient, &patient(&format!("ready-p{i}"), &format!("READY-{i}"), "Ready", 1_000)).await;
    }
    // The Observations in a transaction, as fan-out writes: their partitions end in a commit
    // marker, which the position must pass.
    let mut values = Vec::new();
    for i in 0..5 {
        let o = observation(&format!("ready-o{i}"), "ready-p0", GLUCOSE, "2026-11-01T08:00:00Z", 5.0, 1_000);
        let bytes = w.registry.value_serde::<FhirResource>(&topics.observation).encode(&o).await.expect("encode");
        values.push((o.id, bytes));
    }
    let mut pc = bus::producer::producer_client_config(&bus);
    pc.set("transactional.id", unique("query.ready.txn"));
    pc.set("delivery.timeout.ms", "30000");
    let tp: rdkafka::producer::BaseProducer = pc.create().expect("transactional producer");
    let topic = topics.observation.clone();
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        tp.init_transactions(Duration::from_secs(30)).expect("init");
        tp.begin_transaction().expect("begin");
        for (id, v) in &values {
            tp.send(rdkafka::producer::BaseRecord::to(&topic).key(id.as_str()).payload(v)).expect("queued");
        }
        tp.commit_transaction(Duration::from_secs(30)).expect("commit");
    })
    .await
    .unwrap();
    // Nothing reads the topics, so no lag report can show them reached, however long it waits.
    let waited = tokio::time::timeout(Duration::from_secs(8), ready()).await;
    assert!(waited.is_err(), "ready before anything was read");

    let consumer = tokio::spawn(m.run(shutdown.clone()));
    let caught_up = tokio::time::timeout(WAIT, ready()).await.expect("caught up within the bound");
    assert!(caught_up);
    assert_eq!(progress.received(), 8, "every record was read when it reported caught up");
    shutdown.trigger();
    consumer.await.expect("consumer task").expect("consumer stopped cleanly");
}
