//! End to end with the real service processes (ingest, normalize, enrich, fan-out) over the
//! real broker and registry: a sender delivers patients' ADT and ORU messages over MLLP
//! (resending until AA, as interface engines do) while every service in turn is killed with
//! SIGKILL and restarted. Afterwards every message the sender was told AA is on
//! `clinical.enriched.v1` exactly once, and every Observation's current state is on its
//! `fhir.*` topic exactly once — nothing lost, nothing duplicated, whatever crashed.

use std::collections::HashMap;
use std::time::Duration;

use arteria_tests::mllp::Sender;
use arteria_tests::services::{Service, free_port};
use arteria_tests::{read_committed, require_stack, unique};
use bus::Registry;
use canonical::{ClinicalEvent, FhirResource};

const PATIENTS: usize = 200;

/// Three messages per patient: admit, a lab result with two observations, an update.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for p in 0..PATIENTS {
        let pid = format!("PID|1||E2E-{p:04}^^^NORTH^MR||TESTPATIENT^NUMBER{p}||19700101|U");
        let adt = format!("E2E-ADT-{p:04}");
        out.push((adt.clone(), format!("MSH|^~\\&|REG|NORTH|HUB|HUB|20250101080000+0000||ADT^A01^ADT_A01|{adt}|P|2.5.1\r{pid}\rPV1|1|I|W1^1^A\r").into_bytes()));
        let oru = format!("E2E-ORU-{p:04}");
        out.push((oru.clone(), format!(
            "MSH|^~\\&|LAB|NORTH|HUB|HUB|20250101090000+0000||ORU^R01^ORU_R01|{oru}|P|2.5.1\r{pid}\rOBR|1|ORD-{p}||24323-8^^LN|||20250101085000+0000\rOBX|1|NM|2345-7^^LN||{}|mg/dl|70-99|N|||F\rOBX|2|NM|2823-3^^LN||4.{}|mmol/L|3.5-5.2|N|||F\r",
            80 + p, p % 10
        ).into_bytes()));
        let upd = format!("E2E-A08-{p:04}");
        out.push((upd.clone(), format!("MSH|^~\\&|REG|NORTH|HUB|HUB|20250101100000+0000||ADT^A08^ADT_A01|{upd}|P|2.5.1\r{pid}\rPV1|1|I|W1^2^B\r").into_bytes()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_arrives_exactly_once_while_each_service_is_killed_and_restarted() {
    let cfg = require_stack();
    let started = std::time::Instant::now();
    let run = unique("e2e");
    let t = |n: &str| format!("{run}.{n}");
    let (raw, norm, enr) = (t("raw"), t("normalized"), t("enriched"));
    let prefix = format!("{run}.");
    let mllp_port = free_port();
    let common = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![("ARTERIA__BUS__TOPICS__PARTITIONS", "3".to_string())];
        v.extend(extra);
        v
    };
    let mut ingest = Service::start(
        "ingest",
        &common(vec![
            ("ARTERIA__INGEST__RAW_TOPIC", raw.clone()),
            ("ARTERIA__INGEST__DLQ_TOPIC", t("ingest.dlq")),
            ("ARTERIA__INGEST__MLLP__ADDR", format!("127.0.0.1:{mllp_port}")),
            ("ARTERIA__INGEST__HTTP__ENABLED", "false".into()),
        ]),
    );
    let mut normalize = Service::start(
        "normalize",
        &common(vec![
            ("ARTERIA__NORMALIZE__INPUT_TOPIC", raw.clone()),
            ("ARTERIA__NORMALIZE__OUTPUT_TOPIC", norm.clone()),
            ("ARTERIA__NORMALIZE__DLQ_TOPIC", t("normalize.dlq")),
            ("ARTERIA__NORMALIZE__GROUP_ID", t("normalize")),
            ("ARTERIA__NORMALIZE__TRANSACTIONAL_ID", t("normalize-0")),
        ]),
    );
    let mut enrich = Service::start(
        "enrich",
        &common(vec![
            ("ARTERIA__ENRICH__INPUT_TOPIC", norm.clone()),
            ("ARTERIA__ENRICH__OUTPUT_TOPIC", enr.clone()),
            ("ARTERIA__ENRICH__DLQ_TOPIC", t("enrich.dlq")),
            ("ARTERIA__ENRICH__GROUP_ID", t("enrich")),
            ("ARTERIA__ENRICH__TRANSACTIONAL_ID", t("enrich-0")),
        ]),
    );
    let mut fanout = Service::start(
        "fanout",
        &common(vec![
            ("ARTERIA__FANOUT__INPUT_TOPIC", enr.clone()),
            ("ARTERIA__FANOUT__DLQ_TOPIC", t("fanout.dlq")),
            ("ARTERIA__FANOUT__GROUP_ID", t("fanout")),
            ("ARTERIA__FANOUT__TRANSACTIONAL_ID", t("fanout-0")),
            ("ARTERIA__FANOUT__TOPIC_PREFIX", prefix.clone()),
            (
                "ARTERIA__FANOUT__RESOURCE_TYPES",
                r#"["Patient", "Encounter", "Observation", "DiagnosticReport", "ServiceRequest"]"#.into(),
            ),
        ]),
    );
    for s in [&mut ingest, &mut normalize, &mut enrich, &mut fanout] {
        s.wait_ready(Duration::from_secs(120)).await;
    }

    eprintln!("e2e: services ready after {:?}", started.elapsed());
    let msgs = messages();
    let mut sender = Sender::new(&format!("127.0.0.1:{mllp_port}"));
    let mut resent = 0;
    let n = msgs.len();
    for (i, (id, bytes)) in msgs.iter().enumerate() {
        // Crash each service in turn while traffic flows: downstream ones mid-stream, ingest
        // between a send and its ACK as far as the sender can tell.
        let crash = match i {
            _ if i == n / 6 => Some(&mut normalize),
            _ if i == 2 * n / 6 => Some(&mut enrich),
            _ if i == 3 * n / 6 => Some(&mut fanout),
            _ if i == 4 * n / 6 => Some(&mut ingest),
            _ => None,
        };
        if let Some(s) = crash {
            s.kill9();
            s.restart();
            if s.name != "ingest" {
                // Downstream restarts catch up on their own; the sender keeps going meanwhile.
            } else {
                s.wait_ready(Duration::from_secs(120)).await;
            }
        }
        let tries = sender.deliver(bytes, 40).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        resent += tries - 1;
    }
    eprintln!("e2e: {n} messages answered AA ({resent} resends after errors) after {:?}", started.elapsed());

    // Every message once on the enriched topic (duplicates from resends are dropped by normalize).
    let registry = Registry::new(&cfg.registry).unwrap();
    // Wait (bounded) for all of them, then read again asking for one more than expected with a
    // short idle bound: a duplicate would show up as that extra record.
    let _ = read_committed(&cfg, &enr, n, Duration::from_secs(120)).await;
    let events = read_committed(&cfg, &enr, n + 1, Duration::from_secs(10)).await;
    let serde = registry.value_serde::<ClinicalEvent>(&enr);
    let mut per_control: HashMap<String, usize> = HashMap::new();
    for r in &events {
        let e = serde.decode(r.value.as_deref().unwrap()).await.unwrap();
        *per_control.entry(e.provenance.source_control_id.unwrap_or_default()).or_default() += 1;
    }
    let missing: Vec<&String> = msgs.iter().map(|(id, _)| id).filter(|id| !per_control.contains_key(*id)).collect();
    let doubled: Vec<(&String, &usize)> = per_control.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "AA'd but never enriched: {missing:?}");
    assert!(doubled.is_empty(), "enriched more than once: {doubled:?}");
    assert_eq!(events.len(), n);
    eprintln!("e2e: enriched topic checked after {:?}", started.elapsed());

    // Every Observation's current state once (two per lab result, distinct ids).
    let obs_topic = format!("{prefix}fhir.observation.v1");
    let _ = read_committed(&cfg, &obs_topic, 2 * PATIENTS, Duration::from_secs(120)).await;
    let obs = read_committed(&cfg, &obs_topic, 2 * PATIENTS + 1, Duration::from_secs(10)).await;
    let rs = registry.value_serde::<FhirResource>(&obs_topic);
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &obs {
        let res = rs.decode(r.value.as_deref().unwrap()).await.unwrap();
        *per_id.entry(res.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 2 * PATIENTS, "one current-state record per Observation");
    assert!(per_id.values().all(|c| *c == 1), "an Observation was published twice: {per_id:?}");

    for s in [&mut ingest, &mut normalize, &mut enrich, &mut fanout] {
        s.stop();
    }
}
