//! Reliability under crashes: 50 000 messages (ADT and ORU from our own templates, a unique
//! MSH-10 each) go over several MLLP connections into the five real service processes while
//! each service in turn is killed with SIGKILL and restarted, and the broker is killed and
//! restarted once. The senders behave like interface engines: a message counts as delivered
//! only when answered AA; an AE, a dropped connection or no answer means send it again. Every
//! 500th message is also sent a second time after its AA, as a sender whose ACK got lost would.
//!
//! Afterwards:
//! - every message is on `clinical.enriched.v1` exactly once (read_committed, by source control
//!   id), although resends put some of them on the raw topic twice: those must have been
//!   recognised as duplicates, not emitted again;
//! - every resource version fan-out owes (one per resource per event) is on its
//!   `fhir.<type>.v1` topic exactly once;
//! - the query API serves each resource's latest version (greatest event time; each message has
//!   its own MSH-7, so the latest is unique), and per patient exactly the expected lists;
//! - no dead letters.
//!
//! It restarts the broker, so it is `#[ignore]`d in a plain `cargo test` and runs alone in the
//! disruptive phase (`make test-disruptive`). The number of messages can be lowered with
//! `ARTERIA_RELIABILITY_MESSAGES` for a quick run. Throughput and durations are printed, never
//! asserted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arteria_tests::mllp::Sender;
use arteria_tests::services::{Pipeline, PipelineOptions, metric_sum};
use arteria_tests::{kafka_bootstrap, read_committed, require_stack, stack_sh, unique};
use bus::consumer::{InputRecord, consumer_client_config};
use bus::{BusConfig, Registry};
use canonical::{ClinicalEvent, RawMessage};
use futures::StreamExt;
use query::client::{self, Client, PatientRef};
use query::proto::{GetResourceRequest, ListByPatientRequest, Page, list_by_patient_request};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::Mutex;

const DEFAULT_MESSAGES: usize = 50_000;
/// Messages per patient: admit, six lab results, two updates, a discharge.
const PER_PATIENT: usize = 10;
const CONNECTIONS: usize = 8;
/// Every this many messages, one is sent again after its AA (a lost ACK).
const LOST_ACK_EVERY: usize = 500;
/// How long the run may show no progress before the test gives up (a bound so a broken run
/// ends; nothing asserts on timing).
const IDLE: Duration = Duration::from_secs(300);
/// Resource types the query API lists per patient; the others are read one by one.
const LISTED: &[&str] = &["Patient", "Observation", "Encounter", "DiagnosticReport"];

fn message_count() -> usize {
    let n = std::env::var("ARTERIA_RELIABILITY_MESSAGES")
        .ok()
        .map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("ARTERIA_RELIABILITY_MESSAGES={v:?} is not a number")))
        .unwrap_or(DEFAULT_MESSAGES);
    assert!(
        n >= PER_PATIENT * 10 && n.is_multiple_of(PER_PATIENT),
        "messages must be a multiple of {PER_PATIENT}, ≥ 100"
    );
    n
}

/// MSH-7 of message `s`: 2025-01-01T00:00:00Z plus `s` seconds, so every message has its own
/// event time and a patient's later messages are newer.
fn msh7(s: usize) -> String {
    assert!(s < 28 * 86_400, "MSH-7 stays within January");
    let (day, rest) = (1 + s / 86_400, s % 86_400);
    format!("202501{day:02}{:02}{:02}{:02}+0000", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn pv1(set: &[(usize, String)]) -> String {
    let mut f = vec![String::new(); 46];
    f[0] = "PV1".into();
    for (i, v) in set {
        f[*i] = v.clone();
    }
    while f.last().is_some_and(|x| x.is_empty()) {
        f.pop();
    }
    f.join("|")
}

/// Message `s` of `n`: patient `s % patients`, step `s / patients` of the patient's ten.
fn message(s: usize, n: usize) -> (String, Vec<u8>) {
    let patients = n / PER_PATIENT;
    let (p, step) = (s % patients, s / patients);
    let ts = msh7(s);
    let id = format!("REL-{s:06}");
    let given = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL", "INDIA", "JULIET"][step];
    let pid = format!(
        "PID|1||REL{p:05}^^^RELHOSP^MR||RELTEST^PAT{p}^{given}||19{:02}0{}1{}|{}|||{step} TEST STREET^^TESTTOWN^^{:05}",
        50 + p % 50,
        1 + p % 9,
        p % 10,
        if p % 2 == 0 { "F" } else { "M" },
        10_000 + p
    );
    let admitted = msh7(p);
    let adt = |event: &str, extra: Vec<(usize, String)>| {
        let mut fields = vec![
            (1, "1".to_string()),
            (2, "I".to_string()),
            (3, format!("W{}^{}^{}^RELHOSP", p % 7, p % 20, step)),
            (19, format!("V{p:05}")),
            (44, admitted.clone()),
        ];
        fields.extend(extra);
        format!(
            "MSH|^~\\&|REG|RELHOSP|HUB|HUB|{ts}||ADT^{event}^ADT_A01|{id}|P|2.5.1\rEVN|{event}|{ts}\r{pid}\r{}\r",
            pv1(&fields)
        )
    };
    let text = match step {
        0 => adt("A01", vec![]),
        3 | 6 => adt("A08", vec![]),
        9 => adt("A03", vec![(45, ts.clone())]),
        _ => format!(
            "MSH|^~\\&|LAB|RELHOSP|HUB|HUB|{ts}||ORU^R01^ORU_R01|{id}|P|2.5.1\r{pid}\r\
             OBR|1|ORD{s}|FIL{s}|24323-8^Comprehensive metabolic panel^LN|||{ts}\r\
             OBX|1|NM|2345-7^Glucose^LN||{}|mg/dL|70-99|{}|||F|||{ts}\r\
             OBX|2|NM|2823-3^Potassium^LN||{}.{}|mmol/L|3.5-5.1|N|||F|||{ts}\r",
            60 + s % 60,
            if 60 + s % 60 > 99 { "H" } else { "N" },
            3 + s % 2,
            s % 10
        ),
    };
    (id, text.into_bytes())
}

/// What the senders share.
struct Progress {
    queue: Mutex<VecDeque<usize>>,
    acked: Vec<AtomicBool>,
    acked_count: AtomicUsize,
    resends: AtomicUsize,
    lost_acks: AtomicUsize,
    refused: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// One connection's sender: takes the next message, sends it until answered; anything but AA
/// (AE, no answer, a dropped connection) puts it back in the queue to be sent again later.
async fn send_loop(addr: String, msgs: Arc<Vec<(String, Vec<u8>)>>, pr: Arc<Progress>) {
    let mut sender = Sender::new(&addr);
    let n = msgs.len();
    while !pr.stop.load(Ordering::Relaxed) {
        let next = pr.queue.lock().await.pop_front();
        let Some(s) = next else {
            if pr.acked_count.load(Ordering::Relaxed) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match sender.send_once(&msgs[s].1).await {
            Ok(code) if code == "AA" => {
                if !pr.acked[s].swap(true, Ordering::SeqCst) {
                    pr.acked_count.fetch_add(1, Ordering::SeqCst);
                }
                if s % LOST_ACK_EVERY == 0 {
                    // The ACK "got lost": the sender sends it again, until answered.
                    match sender.deliver(&msgs[s].1, 200).await {
                        Ok(tries) => {
                            pr.lost_acks.fetch_add(1, Ordering::Relaxed);
                            pr.resends.fetch_add(tries as usize - 1, Ordering::Relaxed);
                        }
                        Err(e) => pr.refused.lock().await.push(format!("{} (lost-ACK resend): {e}", msgs[s].0)),
                    }
                }
            }
            Ok(code) if code == "AE" || code == "CE" => {
                pr.resends.fetch_add(1, Ordering::Relaxed);
                pr.queue.lock().await.push_back(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(code) => pr.refused.lock().await.push(format!("{}: answered {code}", msgs[s].0)),
            Err(_) => {
                pr.resends.fetch_add(1, Ordering::Relaxed);
                pr.queue.lock().await.push_back(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn stack(args: &[&str]) {
    let st = stack_sh(args).status().expect("run deploy/local/stack.sh");
    assert!(st.success(), "stack.sh {} failed", args.join(" "));
}

/// Brings Kafka back whatever happens in the test, so later tests find it running.
struct KafkaGuard;
impl Drop for KafkaGuard {
    fn drop(&mut self) {
        let _ = stack_sh(&["start", "kafka"]).status();
    }
}

/// Refuses to restart a broker that `stack.sh` (with this environment's `ARTERIA_STATE_DIR`
/// and ports) did not start, or that is not the one the test talks to.
fn check_stack_owns_the_broker() {
    let out = stack_sh(&["env"]).output().expect("stack.sh env");
    let env = String::from_utf8_lossy(&out.stdout);
    let want = format!("export ARTERIA_KAFKA_BOOTSTRAP={}", kafka_bootstrap());
    assert!(
        env.lines().any(|l| l.trim() == want),
        "stack.sh controls another broker than the test's {} (set ARTERIA_STATE_DIR / ARTERIA_KAFKA_PORT … as for \
         `stack.sh up`, then `eval $(stack.sh env)`): {env}",
        kafka_bootstrap()
    );
    let st = stack_sh(&["status"]).output().expect("stack.sh status");
    assert!(
        st.status.success(),
        "stack.sh does not see its broker running (state dir?): {}",
        String::from_utf8_lossy(&st.stdout)
    );
}

/// Every record of `topic` up to its end (read_committed), reading each partition from the
/// beginning without joining a group.
async fn read_to_end(cfg: &BusConfig, topic: &str) -> Vec<InputRecord> {
    let mut cc = consumer_client_config(cfg, &unique("rel.reader"));
    cc.set("enable.partition.eof", "true");
    let c: StreamConsumer = cc.create().expect("reader consumer");
    let partitions = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("topic metadata")
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    assert!(partitions > 0, "{topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut eof = BTreeSet::new();
    let started = Instant::now();
    while eof.len() < partitions {
        assert!(started.elapsed() < IDLE, "{topic}: end not reached in {IDLE:?} ({} records)", out.len());
        match tokio::time::timeout(Duration::from_secs(5), c.recv()).await {
            Ok(Ok(m)) => out.push(InputRecord::from_message(&m)),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Ok(Err(e)) => eprintln!("reader {topic}: {e}"),
            Err(_) => {}
        }
    }
    out
}

/// One line of progress from the services' own metrics (counters restart with a service):
/// messages each stage acknowledged, and how far each consumer lags.
async fn progress_line(p: &mut Pipeline) -> String {
    let mut out = Vec::new();
    for s in p.services() {
        match s.metrics().await {
            Some(t) => out.push(format!(
                "{} {:.0} (lag {:.0})",
                s.name,
                metric_sum(&t, "arteria_messages_total", &["outcome=\"acknowledged\""]),
                metric_sum(&t, "arteria_consumer_lag", &[])
            )),
            None => out.push(format!("{} -", s.name)),
        }
    }
    out.join(", ")
}

/// The latest version of one resource the pipeline owes.
struct Latest {
    occurred_at: i64,
    patient: Option<String>,
    json: String,
}

/// What is wrong with what the API served for one patient, or with one resource (empty: all
/// as expected).
async fn check_patient(
    mut c: Client,
    pid: String,
    want: &BTreeMap<&str, BTreeMap<String, String>>,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let same = |a: &str, b: &str| serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok();
    for rt in LISTED {
        let expected = want.get(rt).cloned().unwrap_or_default();
        let served: Vec<query::proto::Resource> = match *rt {
            "Patient" => match client::patient(&mut c, &PatientRef::Id(pid.clone())).await {
                Ok(r) => vec![r],
                Err(e) => {
                    problems.push(format!("GetPatient {pid}: {e}"));
                    continue;
                }
            },
            "Observation" => match client::observations(&mut c, &PatientRef::Id(pid.clone()), &[], None, None).await {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("ListObservations {pid}: {e}"));
                    continue;
                }
            },
            _ => {
                let req = ListByPatientRequest {
                    patient: Some(list_by_patient_request::Patient::PatientId(pid.clone())),
                    page: Some(Page { size: 1000, token: String::new() }),
                };
                let r = if *rt == "Encounter" {
                    c.list_encounters(req).await
                } else {
                    c.list_diagnostic_reports(req).await
                };
                match r {
                    Ok(page) => page.into_inner().resources,
                    Err(e) => {
                        problems.push(format!("List {rt} {pid}: {e}"));
                        continue;
                    }
                }
            }
        };
        let ids: BTreeSet<&String> = served.iter().map(|r| &r.id).collect();
        if ids.len() != served.len() {
            problems.push(format!("{rt} of Patient/{pid}: an id listed twice"));
        }
        for id in expected.keys().filter(|id| !ids.contains(id)) {
            problems.push(format!("{rt}/{id} of Patient/{pid}: not served"));
        }
        for r in &served {
            match expected.get(&r.id) {
                None => problems.push(format!("{rt}/{} served for Patient/{pid}, not expected", r.id)),
                Some(json) if !same(json, &r.json) => {
                    problems.push(format!("{rt}/{} of Patient/{pid}: not the latest version", r.id))
                }
                Some(_) => {}
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "kills and restarts the broker: run alone with --ignored --test-threads=1 (make test-disruptive)"]
async fn every_acked_message_is_delivered_exactly_once_through_service_crashes_and_a_broker_restart() {
    let cfg = require_stack();
    check_stack_owns_the_broker();
    let n = message_count();
    let started = Instant::now();
    let msgs: Arc<Vec<(String, Vec<u8>)>> = Arc::new((0..n).map(|s| message(s, n)).collect());
    let mut p = Pipeline::start("rel", PipelineOptions::default()).await;
    eprintln!("reliability: {n} messages, services ready after {:?}", started.elapsed());

    // Senders.
    let pr = Arc::new(Progress {
        queue: Mutex::new((0..n).collect()),
        acked: (0..n).map(|_| AtomicBool::new(false)).collect(),
        acked_count: AtomicUsize::new(0),
        resends: AtomicUsize::new(0),
        lost_acks: AtomicUsize::new(0),
        refused: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let send_start = Instant::now();
    let senders: Vec<_> =
        (0..CONNECTIONS).map(|_| tokio::spawn(send_loop(p.mllp_addr.clone(), msgs.clone(), pr.clone()))).collect();

    // Disruptions, in turn, while the senders run: each service killed and restarted, then the
    // broker killed and restarted.
    let _guard = KafkaGuard;
    let plan = ["normalize", "enrich", "fanout", "query", "ingest", "broker"];
    let mut done = 0;
    let mut exits: Vec<String> = Vec::new();
    let mut last = (0, Instant::now());
    let mut report = Instant::now();
    loop {
        let acked = pr.acked_count.load(Ordering::SeqCst);
        if acked != last.0 {
            last = (acked, Instant::now());
        }
        if acked == n && done == plan.len() {
            break;
        }
        if last.1.elapsed() > IDLE || !pr.refused.lock().await.is_empty() {
            pr.stop.store(true, Ordering::SeqCst);
            break;
        }
        exits.extend(p.restart_exited());
        if report.elapsed() > Duration::from_secs(15) {
            eprintln!("reliability: {:?} {acked} AA'd; {}", started.elapsed(), progress_line(&mut p).await);
            report = Instant::now();
        }
        if done < plan.len() && acked >= n * (done + 1) / (plan.len() + 2) {
            let what = plan[done];
            let t = Instant::now();
            if what == "broker" {
                tokio::task::spawn_blocking(|| {
                    stack(&["kill", "kafka"]);
                    std::thread::sleep(Duration::from_secs(3));
                    stack(&["start", "kafka"]);
                })
                .await
                .expect("broker restart");
            } else {
                let s = p.services().into_iter().find(|s| s.name == what).expect("service");
                s.kill9();
                s.restart();
                s.wait_ready(Duration::from_secs(180)).await;
            }
            eprintln!("reliability: {what} killed and back after {:?}, at {acked} AA'd of {n}", t.elapsed());
            done += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in senders {
        s.await.expect("sender task");
    }
    let sending = send_start.elapsed();
    let refused = pr.refused.lock().await.clone();
    assert!(refused.is_empty(), "messages refused: {refused:?}");
    let acked = pr.acked_count.load(Ordering::SeqCst);
    assert_eq!(acked, n, "only {acked} of {n} messages answered AA; no progress for {IDLE:?}");
    assert_eq!(done, plan.len(), "every disruption happened");
    let (resends, lost) = (pr.resends.load(Ordering::Relaxed), pr.lost_acks.load(Ordering::Relaxed));
    eprintln!(
        "reliability: {n} messages AA'd over {CONNECTIONS} connections in {sending:?} ({:.0} msg/s), \
         {resends} resends after errors, {lost} sent again after a lost ACK",
        n as f64 / sending.as_secs_f64()
    );

    // 1. The enriched topic: every message once, by control id.
    let registry = Registry::new(&cfg.registry).expect("registry");
    let enr = p.topic("enriched");
    let waiting = {
        let enr = enr.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move { read_committed(&cfg, &enr, n, IDLE).await.len() })
    };
    while !waiting.is_finished() {
        tokio::time::sleep(Duration::from_secs(15)).await;
        eprintln!(
            "reliability: {:?} waiting for the enriched topic; {}",
            started.elapsed(),
            progress_line(&mut p).await
        );
    }
    let _ = waiting.await;
    exits.extend(p.restart_exited());
    let records = read_to_end(&cfg, &enr).await;
    let serde = registry.value_serde::<ClinicalEvent>(&enr);
    let mut per_control: HashMap<String, usize> = HashMap::new();
    let mut events = Vec::with_capacity(records.len());
    for r in &records {
        let e = serde.decode(r.value.as_deref().expect("a value")).await.expect("an enriched event decodes");
        *per_control.entry(e.provenance.source_control_id.clone().unwrap_or_default()).or_default() += 1;
        events.push(e);
    }
    let missing: Vec<&String> = msgs.iter().map(|(id, _)| id).filter(|id| !per_control.contains_key(*id)).collect();
    let doubled: Vec<(&String, &usize)> = per_control.iter().filter(|(_, c)| **c > 1).collect();
    let unknown = per_control.len() - (n - missing.len());
    assert!(
        missing.is_empty(),
        "{} AA'd but never enriched, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        doubled.is_empty(),
        "{} enriched more than once, e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(20)]
    );
    assert_eq!(unknown, 0, "events for control ids never sent");
    assert_eq!(records.len(), n);
    eprintln!("reliability: enriched topic holds each of the {n} messages once, after {:?}", started.elapsed());

    // What fan-out owes: one version per resource per event, and each resource's latest;
    // but a lab result's Patient and Encounter only when no version came before (a patient's
    // events share a partition, so `events` holds them in fan-out's order).
    let fcfg = p.fanout_config();
    let types = fcfg.resource_types.clone();
    let mut owed: BTreeSet<String> = BTreeSet::new();
    let mut latest: BTreeMap<(String, String), Latest> = BTreeMap::new();
    let mut published: HashSet<(String, String)> = HashSet::new();
    let mut kept = 0usize;
    for e in &events {
        for r in fanout::resources::current_state(e, &types).expect("fan-out can split the event") {
            if fcfg.create_only.resource_types.contains(&r.resource_type) {
                let seen = !published.insert((r.resource_type.clone(), r.id.clone()));
                if seen && fcfg.create_only.applies(e, &r.resource_type) {
                    kept += 1;
                    continue;
                }
            }
            owed.insert(format!("{}/{}@{}", r.resource_type, r.id, e.id));
            let l = latest.entry((r.resource_type.clone(), r.id.clone())).or_insert(Latest {
                occurred_at: i64::MIN,
                patient: None,
                json: String::new(),
            });
            assert_ne!(l.occurred_at, r.occurred_at, "{}/{}: two versions with one event time", r.resource_type, r.id);
            if r.occurred_at > l.occurred_at {
                *l = Latest { occurred_at: r.occurred_at, patient: r.patient_id.clone(), json: r.fhir_json };
            }
        }
    }
    drop(events);

    // 2. The query API serves each latest version, and per patient exactly the expected lists.
    let mut per_patient: BTreeMap<String, BTreeMap<&str, BTreeMap<String, String>>> = BTreeMap::new();
    let mut singles: Vec<(&(String, String), &Latest)> = Vec::new();
    for (key, l) in &latest {
        let rt = LISTED.iter().find(|t| **t == key.0);
        match (rt, &l.patient) {
            (Some(rt), Some(pid)) => {
                per_patient
                    .entry(pid.clone())
                    .or_default()
                    .entry(rt)
                    .or_default()
                    .insert(key.1.clone(), l.json.clone());
            }
            _ => singles.push((key, l)),
        }
    }
    // Let the query service catch up before reading through it (sweeps would only slow it
    // down): until its consumer reports no lag and has handled nothing new, twice in a row
    // (bounded by lack of progress). Only a shortcut: the sweeps below wait for the answers.
    let mut quiet = 0;
    let mut handled = f64::NAN;
    let mut last_change = Instant::now();
    while quiet < 2 && last_change.elapsed() < IDLE {
        tokio::time::sleep(Duration::from_secs(5)).await;
        exits.extend(p.restart_exited());
        let Some(t) = p.query.metrics().await else { continue };
        if !t.contains("arteria_consumer_lag{") {
            continue;
        }
        let lag = metric_sum(&t, "arteria_consumer_lag", &[]);
        let now = metric_sum(&t, "arteria_messages_total", &[]);
        if now != handled {
            handled = now;
            last_change = Instant::now();
            quiet = 0;
        } else if lag == 0.0 {
            quiet += 1;
        }
        if report.elapsed() > Duration::from_secs(15) {
            eprintln!("reliability: {:?} query catching up; {}", started.elapsed(), progress_line(&mut p).await);
            report = Instant::now();
        }
    }
    let c = client::connect(&p.grpc_addr).await.expect("connect to the query service");
    let mut pending_patients: Vec<String> = per_patient.keys().cloned().collect();
    let mut pending_singles = singles.clone();
    let mut problems: Vec<String>;
    let mut last = (usize::MAX, Instant::now());
    loop {
        let results: Vec<(String, Result<(), Vec<String>>)> = futures::stream::iter(pending_patients.clone())
            .map(|pid| {
                let c = c.clone();
                let want = &per_patient[&pid];
                async move { (pid.clone(), check_patient(c, pid, want).await) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        problems = Vec::new();
        pending_patients = Vec::new();
        for (pid, r) in results {
            if let Err(ps) = r {
                pending_patients.push(pid);
                problems.extend(ps);
            }
        }
        let checked: Vec<Option<String>> = futures::stream::iter(pending_singles.clone())
            .map(|(key, l)| {
                let mut c = c.clone();
                async move {
                    let req = GetResourceRequest { resource_type: key.0.clone(), id: key.1.clone() };
                    match c.get_resource(req).await {
                        Ok(r)
                            if serde_json::from_str::<Value>(&r.get_ref().json).ok()
                                == serde_json::from_str::<Value>(&l.json).ok() =>
                        {
                            None
                        }
                        Ok(_) => Some(format!("{}/{}: not the latest version", key.0, key.1)),
                        Err(s) => Some(format!("{}/{}: {}", key.0, key.1, s.message())),
                    }
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        pending_singles =
            pending_singles.into_iter().zip(&checked).filter(|(_, c)| c.is_some()).map(|(s, _)| s).collect();
        problems.extend(checked.into_iter().flatten());
        let left = pending_patients.len() + pending_singles.len();
        if left == 0 {
            break;
        }
        if left < last.0 {
            last = (left, Instant::now());
        }
        exits.extend(p.restart_exited());
        if last.1.elapsed() > IDLE {
            break;
        }
        eprintln!(
            "reliability: {:?} query API: {} patients and {} other resources not yet as expected; {}",
            started.elapsed(),
            pending_patients.len(),
            pending_singles.len(),
            progress_line(&mut p).await
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    problems.sort();
    assert!(
        problems.is_empty(),
        "{} problem(s) in the query API after {IDLE:?} without progress, e.g.:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
    eprintln!(
        "reliability: query API serves the latest of {} resources ({} patients) after {:?}",
        latest.len(),
        per_patient.len(),
        started.elapsed()
    );

    // 3. The current-state topics: every owed version exactly once, nothing else.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in p.fhir_topics() {
        for r in read_to_end(&cfg, &t).await {
            let id = r.headers.message_id().unwrap_or("<no message id>").to_string();
            *seen.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    let absent: Vec<&String> = owed.iter().filter(|id| !seen.contains_key(*id)).collect();
    let extra: Vec<&String> = seen.keys().filter(|id| !owed.contains(*id)).collect();
    assert!(
        twice.is_empty(),
        "{} resource versions published more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(20)]
    );
    assert!(
        absent.is_empty(),
        "{} resource versions never published, e.g. {:?}",
        absent.len(),
        &absent[..absent.len().min(20)]
    );
    assert!(
        extra.is_empty(),
        "{} records on the fhir topics from no enriched event, e.g. {:?}",
        extra.len(),
        &extra[..extra.len().min(20)]
    );
    eprintln!(
        "reliability: {} resource versions on the fhir topics, each once ({kept} lab results' Patients and Encounters rightly not among them)",
        owed.len()
    );
    assert!(kept > 0, "the run's lab results name patients admitted before them");

    // 4. The raw topic: resends were stored (AA means stored) and recognised as duplicates
    // (step 1 found each message once downstream); no dead letters anywhere.
    let raw = p.topic("raw");
    let raw_serde = registry.value_serde::<RawMessage>(&raw);
    let mut stored: HashMap<String, usize> = HashMap::new();
    let raw_records = read_to_end(&cfg, &raw).await;
    for r in &raw_records {
        let m = raw_serde.decode(r.value.as_deref().expect("a value")).await.expect("a raw message decodes");
        *stored.entry(m.control_id.unwrap_or_default()).or_default() += 1;
    }
    let never: Vec<&String> = msgs.iter().map(|(id, _)| id).filter(|id| !stored.contains_key(*id)).collect();
    assert!(never.is_empty(), "AA'd but not on the raw topic: {:?}", &never[..never.len().min(20)]);
    let lost_ack_ids: Vec<&String> = msgs.iter().step_by(LOST_ACK_EVERY).map(|(id, _)| id).collect();
    let not_twice: Vec<&&String> = lost_ack_ids.iter().filter(|id| stored[**id] < 2).collect();
    assert!(not_twice.is_empty(), "sent again after AA (so stored again) but on the raw topic once: {not_twice:?}");
    let retried = stored.values().filter(|c| **c > 1).count();
    let mut dead = Vec::new();
    for stage in ["ingest", "normalize", "enrich", "fanout"] {
        let records = read_to_end(&cfg, &p.topic(&format!("{stage}.dlq"))).await;
        if !records.is_empty() {
            dead.push(format!("{stage}: {} dead letters", records.len()));
        }
    }
    assert!(dead.is_empty(), "dead letters: {dead:?}");

    p.stop();
    eprintln!(
        "reliability: PASSED in {:?}: {n} messages ({:.0} msg/s sent while crashing), {} raw records, \
         {retried} messages stored more than once and emitted once, {} resources served; services that \
         exited on their own and were restarted: {exits:?}",
        started.elapsed(),
        n as f64 / sending.as_secs_f64(),
        raw_records.len(),
        latest.len()
    );
}
