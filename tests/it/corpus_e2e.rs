//! End to end over real data: every HL7 v2 message of the project's `examples/` and of the
//! shared sample corpus (`$ARTERIA_SHARED/corpus`) is sent over MLLP to the five real service
//! processes, must be answered AA, and every resource it yields must then be served by the
//! gRPC query API exactly as `arteria convert --enrich` gives it — after what fan-out
//! legitimately changes: bundle-local `urn:uuid:` references become `Type/id` (fan-out's own
//! `resources::current_state` is applied to the expected side), and a resource that several
//! messages carry (the same patient in an admit and an update) is served in its latest version
//! (greatest event time; on a tie whichever arrived first, so every tied version is accepted).
//!
//! "Answered AA" is read as HL7 defines it (Table 0155, MSH-15): AA in original mode, CA in
//! enhanced mode when the sender asks for an accept acknowledgment (AL, SU), and no answer when
//! it asks for none on success (NE, ER) — 20 corpus messages do. That silence is checked
//! without any timing: a probe message of our own follows on the same connection, and the next
//! answer must be the probe's (an error answer for the silent message would come first).
//!
//! Two settings differ from the defaults, both documented relaxations:
//! - ingest lets MSH-11/MSH-12 be empty (`allow_missing_msh = [11, 12]`): four corpus messages
//!   leave MSH-11 empty, and the mapping accepts exactly that relaxation.
//! - normalize's duplicate window is one second, and messages that share a sender and control
//!   id (the sample sets reuse `MSG00001` for 45 different messages) are sent in rounds more
//!   than a second apart. Otherwise normalize would rightly take them for sender retries and
//!   not re-emit them; that behaviour is what the reliability test checks.
//!
//! The corpus is read in place (never copied). When it is missing the test fails under
//! `CI=true`, and otherwise says so loudly and runs with the examples only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use arteria_tests::services::{Pipeline, PipelineOptions};
use arteria_tests::{read_committed, require_stack, workspace_root};
use bus::Registry;
use canonical::FhirResource;
use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use query::client::{self, Client};
use query::proto::{GetResourceRequest, ListByPatientRequest, list_by_patient_request};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The tenant ingest stamps on every message by default, and `arteria convert`'s default.
const TENANT: &str = "default";
/// How long the query API may show no further progress before the test gives up (a bound so a
/// broken run ends, not a timing assertion).
const IDLE: Duration = Duration::from_secs(180);

/// One message to send: where it comes from (`file#n`) and its bytes, cut out of the file as
/// `arteria send` and `arteria convert` do (`hl7v2::batch`).
struct Input {
    origin: String,
    bytes: Vec<u8>,
}

fn inputs() -> Vec<Input> {
    let root = workspace_root();
    let paths = arteria_tests::hl7v2_sample_files("corpus_e2e");
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let split = hl7v2::batch::split(&bytes).unwrap_or_else(|e| panic!("{}: cannot split: {e}", p.display()));
        let name = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
        for (i, chunk) in split.messages().enumerate() {
            out.push(Input { origin: format!("{name}#{}", i + 1), bytes: chunk.bytes.to_vec() });
        }
    }
    out
}

/// Rounds of sending: the n-th message of each (sender, control id) goes in round n, so no
/// two messages that normalize would take for one another's retries fall in one round.
fn rounds(inputs: &[Input]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, m) in inputs.iter().enumerate() {
        let r = match hl7v2::header::Header::sniff(&m.bytes).filter(|h| !h.control_id.trim().is_empty()) {
            Some(h) => {
                let n = seen.entry((h.sending_application, h.sending_facility, h.control_id)).or_default();
                *n += 1;
                *n - 1
            }
            None => 0,
        };
        if rounds.len() <= r {
            rounds.resize(r + 1, Vec::new());
        }
        rounds[r].push(i);
    }
    rounds
}

/// The positive answer HL7 prescribes for an accepted message (Table 0155): `AA` in original
/// mode (MSH-15 and MSH-16 empty, or a version before 2.2); in enhanced mode `CA` when MSH-15
/// asks for an accept acknowledgment, none when it is `NE` or `ER`.
fn expected_answer(h: &hl7v2::header::Header) -> Option<&'static str> {
    let (accept, application) = (h.accept_ack_type.trim(), h.application_ack_type.trim());
    let mut v = h.version_id().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (accept.is_empty() && application.is_empty()) || version < (2, 2) {
        return Some("AA");
    }
    match accept {
        "NE" | "ER" => None,
        _ => Some("CA"),
    }
}

/// One MLLP connection to ingest, reading answers in order.
struct Connection(Framed<TcpStream, MllpCodec>);

impl Connection {
    async fn open(addr: &str) -> Connection {
        let s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to ingest at {addr}: {e}"));
        Connection(Framed::new(s, MllpCodec::new(64 << 20)))
    }

    async fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        self.0.send(msg).await.map_err(|e| format!("send: {e}"))
    }

    /// The next answer's MSA-1 and MSA-2 (the control id it answers).
    async fn answer(&mut self) -> Result<(String, String), String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.0.next()).await {
                Err(_) => return Err("no answer within 60 s".into()),
                Ok(None) => return Err("connection closed".into()),
                Ok(Some(Err(e))) => return Err(format!("receive: {e}")),
                Ok(Some(Ok(MllpItem::Frame(ack)))) => {
                    let m = hl7v2::Message::parse(&ack).map_err(|e| format!("answer does not parse: {e}"))?;
                    let f = |p: &str| m.get(p).map(|v| v.as_str().to_string()).unwrap_or_default();
                    return Ok((f("MSA-1"), f("MSA-2")));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// A message of our own, answered AA (original mode), that proves the silence before it.
fn probe(n: usize) -> Input {
    let id = format!("CORPUS-E2E-PROBE-{n}");
    let bytes = format!(
        "MSH|^~\\&|CORPUS-E2E|PROBE|HUB|HUB|20250101000000+0000||ADT^A08^ADT_A01|{id}|P|2.5.1\rEVN|A08|20250101000000+0000\r"
    );
    Input { origin: format!("probe {id}"), bytes: bytes.into_bytes() }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// One version of a resource the pipeline should serve, from one message.
#[derive(Clone)]
struct Version {
    origin: String,
    /// Send order.
    seq: usize,
    /// The Kafka keys of its message at ingest and after normalize: the same pair means the
    /// same partition at every stage, so arrival in send order.
    lane: (Vec<u8>, Vec<u8>),
    /// The event time: MSH-7, or (for a message without one) when ingest received it, which
    /// lies between the send and the ACK.
    occurred: (i64, i64),
    resource: FhirResource,
    json: Value,
    /// From a message that only creates resources of this type (a lab result's Patient and
    /// Encounter, by default).
    create_only: bool,
}

/// What `arteria convert --enrich` gives for `bytes` (the same library calls as the CLI, with
/// the same default profiles and shipped terminology the services run with), as fan-out
/// publishes it: one `FhirResource` per resource of the published types, references resolved.
fn expected_versions(
    seq: usize,
    origin: &str,
    bytes: &[u8],
    sent: (i64, i64),
    term: &terminology::Terminology,
    fanout: &fanout::FanoutConfig,
) -> Vec<Version> {
    let types = &fanout.resource_types;
    let conv = mapping::convert_bytes(bytes, &mapping::Profiles::default(), TENANT)
        .unwrap_or_else(|e| panic!("{origin}: `arteria convert` would fail: {e}"));
    let sender = terminology::enrich::sender_key(&conv.sender_application, &conv.sender_facility);
    let enricher =
        terminology::Enricher::new(term, terminology::EnrichOptions { sender: Some(sender), ..Default::default() });
    let mut bundle: Value = serde_json::from_str(&conv.to_bundle_json(false)).expect("bundle JSON");
    terminology::enrich::enrich_fhir_json(&enricher, &mut bundle);
    let occurred = conv.timestamp_micros().map_or(sent, |t| (t, t));
    let msg = hl7v2::Message::parse_with(
        bytes,
        &hl7v2::ParseOptions { allow_missing_msh: vec![11, 12], ..Default::default() },
    )
    .unwrap_or_else(|e| panic!("{origin}: ingest would refuse it: {e}"));
    let ingest_key = ingest::intake::partition_key(TENANT, Some(&msg), &hl7v2::header::Header::from_message(&msg));
    let event_key = conv.patient_id.clone().map(String::into_bytes).unwrap_or_else(|| ingest_key.clone());
    // Fan-out works on the event; give it the enriched bundle's resources.
    let mut event = conv.to_event(TENANT, "expected", occurred.0);
    let entries = bundle["entry"].as_array().expect("bundle entries");
    assert_eq!(entries.len(), event.resources.len(), "{origin}: bundle and event hold different resources");
    for (r, e) in event.resources.iter_mut().zip(entries) {
        assert_eq!(e["resource"]["id"].as_str(), Some(r.id.as_str()), "{origin}: bundle and event order differ");
        r.fhir_json = e["resource"].to_string();
    }
    let current = fanout::resources::current_state(&event, types)
        .unwrap_or_else(|e| panic!("{origin}: fan-out would dead-letter it: {e}"));

    current
        .into_iter()
        .map(|resource| Version {
            origin: origin.to_string(),
            seq,
            lane: (ingest_key.clone(), event_key.clone()),
            occurred,
            json: serde_json::from_str(&resource.fhir_json).expect("fan-out writes JSON"),
            create_only: fanout.create_only.applies(&event, &resource.resource_type),
            resource,
        })
        .collect()
}

/// The versions the store may hold at the end: the newest (its upsert keeps a strictly newer
/// event time; on a tie the first to arrive stays). Tied versions that travelled one lane
/// arrive in send order, so the first sent is the one; across lanes arrival order is not
/// fixed, and every tied version is acceptable.
fn acceptable(versions: &[Version]) -> Vec<&Version> {
    let newest_lo = versions.iter().map(|v| v.occurred.0).max().expect("at least one version");
    let tied: Vec<&Version> = versions.iter().filter(|v| v.occurred.1 >= newest_lo).collect();
    let one_lane_one_time =
        tied.iter().all(|v| v.occurred.0 == v.occurred.1 && v.occurred == tied[0].occurred && v.lane == tied[0].lane);
    if one_lane_one_time {
        return tied.into_iter().min_by_key(|v| v.seq).into_iter().collect();
    }
    tied
}

/// Every difference between two JSON values, one line each with its JSON pointer.
fn json_diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => json_diff(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: missing (expected {x})")),
                    (None, Some(y)) => out.push(format!("{p}: unexpected {y}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let p = format!("{path}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => json_diff(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: missing (expected {x})")),
                    (None, Some(y)) => out.push(format!("{p}: unexpected {y}")),
                    (None, None) => {}
                }
            }
        }
        _ if want != got => {
            out.push(format!("{}: expected {want}, got {got}", if path.is_empty() { "/" } else { path }))
        }
        _ => {}
    }
}

/// Ids a patient's list must hold, and ids it may hold.
type RequiredAllowed = (BTreeSet<String>, BTreeSet<String>);

/// Why what the API served is not an acceptable version (empty when it is).
fn mismatch(key: &(String, String), served: &str, versions: &[Version]) -> Option<String> {
    let ok = acceptable(versions);
    let got: Value = match serde_json::from_str(served) {
        Ok(v) => v,
        Err(e) => return Some(format!("{}/{}: served JSON does not parse: {e}", key.0, key.1)),
    };
    if ok.iter().any(|v| v.json == got) {
        return None;
    }
    // Report against the version with the fewest differences.
    let (best, diffs) = ok
        .iter()
        .map(|v| {
            let mut d = Vec::new();
            json_diff("", &v.json, &got, &mut d);
            (v, d)
        })
        .min_by_key(|(_, d)| d.len())
        .expect("at least one version");
    Some(format!(
        "{}/{}: served resource differs from `arteria convert --enrich` of {} ({} acceptable version(s)):\n    {}",
        key.0,
        key.1,
        best.origin,
        ok.len(),
        diffs.join("\n    ")
    ))
}

async fn get(c: &mut Client, key: &(String, String)) -> Result<String, query::tonic::Status> {
    c.get_resource(GetResourceRequest { resource_type: key.0.clone(), id: key.1.clone() })
        .await
        .map(|r| r.into_inner().json)
}

/// Dead letters of the run's stages, for the failure report (their details carry no PHI).
async fn dead_letters(cfg: &bus::BusConfig, registry: &Registry, p: &Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    for stage in ["ingest", "normalize", "enrich", "fanout"] {
        let topic = p.topic(&format!("{stage}.dlq"));
        let serde = registry.value_serde::<bus::dlq::DeadLetter>(&topic);
        for r in read_committed(cfg, &topic, usize::MAX, Duration::from_secs(5)).await {
            match serde.decode(r.value.as_deref().unwrap_or_default()).await {
                Ok(d) => out.push(format!("{stage}: {} ({}) at offset {}", d.error_class, d.detail, d.source_offset)),
                Err(e) => out.push(format!("{stage}: a record that does not decode as DeadLetter: {e}")),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_and_corpus_message_is_acked_and_served_as_convert_enrich_gives_it() {
    let cfg = require_stack();
    let started = Instant::now();
    let inputs = inputs();
    let rounds = rounds(&inputs);
    eprintln!("corpus_e2e: {} messages in {} rounds", inputs.len(), rounds.len());

    let mut p = Pipeline::start(
        "corpus",
        PipelineOptions {
            extra: vec![
                ("ingest", "ARTERIA__INGEST__ALLOW_MISSING_MSH", "[11, 12]".into()),
                ("normalize", "ARTERIA__NORMALIZE__DUPLICATE_WINDOW_SECS", "1".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    eprintln!("corpus_e2e: services ready after {:?}", started.elapsed());

    // Send: every message must get the positive answer it asks for, at the first try (nothing
    // is disturbed here), and a silent one a probe's answer next.
    let mut conn = Connection::open(&p.mllp_addr).await;
    let mut sent: Vec<(usize, (i64, i64))> = Vec::new();
    let mut probes: Vec<(Input, (i64, i64))> = Vec::new();
    let mut refused = Vec::new();
    let (mut original, mut enhanced, mut silent) = (0, 0, 0);
    for (n, round) in rounds.iter().enumerate() {
        if n > 0 {
            // Past normalize's one-second duplicate window (see the module comment).
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
        for &i in round {
            let m = &inputs[i];
            let h = hl7v2::header::Header::sniff(&m.bytes).unwrap_or_else(|| panic!("{}: no MSH", m.origin));
            let before = now_micros();
            conn.send(&m.bytes).await.unwrap_or_else(|e| panic!("{}: {e}", m.origin));
            match expected_answer(&h) {
                Some(code) => {
                    if code == "AA" {
                        original += 1;
                    } else {
                        enhanced += 1;
                    }
                    match conn.answer().await {
                        Ok((got, to)) if got == code && to == h.control_id => {}
                        Ok((got, to)) => {
                            refused.push(format!("{}: answered {got} to {to:?}, expected {code}", m.origin))
                        }
                        Err(e) => refused.push(format!("{}: {e}", m.origin)),
                    }
                    sent.push((i, (before, now_micros())));
                }
                None => {
                    silent += 1;
                    let pr = probe(probes.len());
                    let pid = hl7v2::header::Header::sniff(&pr.bytes).expect("probe MSH").control_id;
                    conn.send(&pr.bytes).await.unwrap_or_else(|e| panic!("{}: {e}", pr.origin));
                    match conn.answer().await {
                        Ok((got, to)) if got == "AA" && to == pid => {}
                        Ok((got, to)) => refused.push(format!(
                            "{} (MSH-15 {:?}, no answer expected): the next answer is {got} to {to:?}, not the probe's AA",
                            m.origin, h.accept_ack_type
                        )),
                        Err(e) => refused.push(format!("{} then {}: {e}", m.origin, pr.origin)),
                    }
                    let at = (before, now_micros());
                    sent.push((i, at));
                    probes.push((pr, at));
                }
            }
        }
    }
    let sending = started.elapsed();
    assert!(
        refused.is_empty(),
        "{} message(s) not acknowledged as HL7 prescribes:\n{}",
        refused.len(),
        refused.join("\n")
    );
    eprintln!(
        "corpus_e2e: {} messages accepted after {sending:?}: {original} answered AA, {enhanced} CA (enhanced mode), \
         {silent} silent as MSH-15 asks (each followed by a probe answered AA)",
        inputs.len()
    );

    // What the API must serve, per (type, id).
    let term = terminology::Terminology::builtin();
    let fanout_cfg = p.fanout_config();
    let mut expected: BTreeMap<(String, String), Vec<Version>> = BTreeMap::new();
    let all = sent.iter().map(|(i, at)| (&inputs[*i], *at)).chain(probes.iter().map(|(pr, at)| (pr, *at)));
    let mut all: Vec<(&Input, (i64, i64))> = all.collect();
    all.sort_by_key(|(_, at)| *at);
    for (seq, (m, at)) in all.into_iter().enumerate() {
        for v in expected_versions(seq, &m.origin, &m.bytes, at, &term, &fanout_cfg) {
            expected.entry((v.resource.resource_type.clone(), v.resource.id.clone())).or_default().push(v);
        }
    }
    // A lab result's Patient and Encounter go on their topics only when no version came
    // before. Along one lane fan-out sees a patient's messages in send order, so every later
    // lab result's version is left out; across lanes the order is not fixed, and each version
    // stays acceptable.
    let mut kept = 0;
    for vs in expected.values_mut().filter(|vs| vs.len() > 1 && vs.iter().all(|v| v.lane == vs[0].lane)) {
        let before = vs.len();
        let first = vs.iter().map(|v| v.seq).min().expect("at least one version");
        vs.retain(|v| v.seq == first || !v.create_only);
        kept += before - vs.len();
    }
    eprintln!("corpus_e2e: {kept} lab results' Patients and Encounters not expected (a version came before)");
    // Resources whose final version is not fixed (differing versions, same event time, lanes
    // whose order is not fixed): any of those versions is accepted.
    let tied = expected
        .values()
        .filter(|vs| {
            let ok = acceptable(vs);
            ok.iter().any(|v| v.json != ok[0].json)
        })
        .count();
    let shared = expected.values().filter(|vs| vs.len() > 1).count();
    eprintln!(
        "corpus_e2e: {} resources expected ({} carried by several messages; {tied} with differing versions tied on event time)",
        expected.len(),
        shared
    );

    // Wait (bounded by lack of progress) until the API serves an acceptable version of each.
    let mut c = client::connect(&p.grpc_addr).await.expect("connect to the query service");
    let mut pending: Vec<(String, String)> = expected.keys().cloned().collect();
    let mut last_progress = Instant::now();
    while !pending.is_empty() && last_progress.elapsed() < IDLE {
        let before = pending.len();
        let mut still = Vec::new();
        for key in pending {
            match get(&mut c, &key).await {
                Ok(json) if mismatch(&key, &json, &expected[&key]).is_none() => {}
                _ => still.push(key),
            }
        }
        pending = still;
        if pending.len() < before {
            last_progress = Instant::now();
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    if !pending.is_empty() {
        let mut problems = Vec::new();
        for key in &pending {
            match get(&mut c, key).await {
                Ok(json) => problems.extend(mismatch(key, &json, &expected[key])),
                Err(s) => problems.push(format!(
                    "{}/{}: not served ({}: {}); expected from {}",
                    key.0,
                    key.1,
                    s.code(),
                    s.message(),
                    expected[key].iter().map(|v| v.origin.as_str()).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        let registry = Registry::new(&cfg.registry).expect("registry");
        let dlq = dead_letters(&cfg, &registry, &p).await;
        let restarted = p.restart_exited();
        p.stop();
        panic!(
            "{} of {} resources not served as expected:\n{}\n\ndead letters: {dlq:#?}\nservices that had exited: {restarted:?}",
            pending.len(),
            expected.len(),
            problems.join("\n")
        );
    }
    eprintln!("corpus_e2e: every resource served as expected after {:?}", started.elapsed());

    // The patient-centred reads: GetPatient, and per patient the lists hold exactly the
    // resources expected for that patient (none missing, none extra), each as expected.
    let mut problems = Vec::new();
    let mut by_patient: BTreeMap<String, BTreeMap<&str, RequiredAllowed>> = BTreeMap::new();
    for (key, versions) in &expected {
        let ok = acceptable(versions);
        if key.0 == "Patient" {
            match client::patient(&mut c, &client::PatientRef::Id(key.1.clone())).await {
                Ok(r) => problems.extend(mismatch(key, &r.json, versions)),
                Err(e) => problems.push(format!("GetPatient {}: {e}", key.1)),
            }
        }
        if matches!(key.0.as_str(), "Observation" | "Encounter" | "DiagnosticReport") {
            // Required under a patient when every acceptable version names it; allowed when one does.
            let patients: BTreeSet<&String> = ok.iter().filter_map(|v| v.resource.patient_id.as_ref()).collect();
            for pid in &patients {
                let (required, allowed) =
                    by_patient.entry((*pid).clone()).or_default().entry(key.0.as_str()).or_default();
                allowed.insert(key.1.clone());
                if ok.iter().all(|v| v.resource.patient_id.as_ref() == Some(*pid)) {
                    required.insert(key.1.clone());
                }
            }
        }
    }
    let mut lists = 0;
    for (pid, per_type) in &by_patient {
        for (rt, (required, allowed)) in per_type {
            let served: Vec<query::proto::Resource> = match *rt {
                "Observation" => client::observations(&mut c, &client::PatientRef::Id(pid.clone()), &[], None, None)
                    .await
                    .unwrap_or_else(|e| panic!("ListObservations {pid}: {e}")),
                _ => {
                    let req = ListByPatientRequest {
                        patient: Some(list_by_patient_request::Patient::PatientId(pid.clone())),
                        page: Some(query::proto::Page { size: 1000, token: String::new() }),
                    };
                    let page = if *rt == "Encounter" {
                        c.list_encounters(req).await
                    } else {
                        c.list_diagnostic_reports(req).await
                    };
                    let page = page.unwrap_or_else(|e| panic!("List {rt} of {pid}: {e}")).into_inner();
                    assert!(page.next_page_token.is_empty(), "more than 1000 {rt} for one patient");
                    page.resources
                }
            };
            lists += 1;
            let ids: BTreeSet<String> = served.iter().map(|r| r.id.clone()).collect();
            for missing in required.difference(&ids) {
                problems.push(format!("List {rt} of Patient/{pid}: {missing} missing"));
            }
            for extra in ids.difference(allowed) {
                problems.push(format!("List {rt} of Patient/{pid}: {extra} not expected for this patient"));
            }
            for r in &served {
                let key = (rt.to_string(), r.id.clone());
                if let Some(vs) = expected.get(&key) {
                    problems.extend(mismatch(&key, &r.json, vs));
                }
            }
        }
    }
    let patients = expected.keys().filter(|k| k.0 == "Patient").count();
    p.stop();
    assert!(problems.is_empty(), "{} problem(s) in the patient reads:\n{}", problems.len(), problems.join("\n"));
    eprintln!(
        "corpus_e2e: {patients} patients read with GetPatient, {lists} patient lists checked; done in {:?}",
        started.elapsed()
    );
}
