//! The normalize stage against the real broker and registry: raw messages become one
//! `ClinicalEvent` each; a sender's resend (same sender and MSH-10) is marked and not
//! re-emitted — also after a restart, when the duplicate window is rebuilt from the input
//! partition; a payload that is not HL7 v2 lands in the DLQ with its bytes and the loop goes on.

use std::sync::Arc;
use std::time::Duration;

use arteria_tests::stage::run_normalize;
use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::{BusConfig, BusProducer, Registry, TraceParent};
use canonical::ClinicalEvent;
use ingest::{IngestConfig, KafkaPublisher, Publisher, Session};
use normalize::NormalizeConfig;
use telemetry::{Metrics, Outcome};

const ADT: &[u8] = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101500+0100||ADT^A01^ADT_A01|N-ADT-1|P|2.5.1\rEVN|A01|20240301101500+0100\rPID|1||N-P-1^^^NORTH^MR||TESTER^ALEX||19800101|U\rPV1|1|I|WARD^1^A\r";
const ORU: &[u8] = b"MSH|^~\\&|LAB|NORTH|ARTERIA|HUB|20240301120000+0100||ORU^R01^ORU_R01|N-ORU-1|P|2.5.1\rPID|1||N-P-1^^^NORTH^MR||TESTER^ALEX\rOBR|1|ORD-1||2345-7^Glucose^LN|||20240301113000+0100\rOBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-5.5|N|||F\r";

struct Topics {
    raw: String,
    out: String,
    dlq: String,
    ingest_dlq: String,
}

async fn topics(cfg: &BusConfig) -> Topics {
    let t = Topics {
        raw: unique("norm.raw"),
        out: unique("norm.out"),
        dlq: unique("norm.dlq"),
        ingest_dlq: unique("norm.idlq"),
    };
    for name in [&t.raw, &t.out, &t.dlq, &t.ingest_dlq] {
        create_topic(cfg, name, 3).await;
    }
    t
}

fn normalize_cfg(t: &Topics) -> NormalizeConfig {
    NormalizeConfig {
        input_topic: t.raw.clone(),
        output_topic: t.out.clone(),
        dlq_topic: t.dlq.clone(),
        group_id: unique("norm.group"),
        transactional_id: unique("norm.txn"),
        ..Default::default()
    }
}

async fn accept(session: &Session<KafkaPublisher>, bytes: &[u8]) {
    let a = session.handle(bytes, None, canonical::raw::Channel::Mllp).await;
    assert_eq!(a.outcome, Outcome::acknowledged, "ingest accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_message_duplicates_marked_even_after_a_restart_and_garbage_dead_lettered() {
    let cfg = require_stack();
    let t = topics(&cfg).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let publisher = KafkaPublisher::new(BusProducer::new(&cfg, "it-norm").unwrap(), &registry, &t.raw, &t.ingest_dlq);
    let icfg = IngestConfig { raw_topic: t.raw.clone(), dlq_topic: t.ingest_dlq.clone(), ..Default::default() };
    let session = Session::new(Arc::new(icfg.clone()), publisher.clone(), Metrics::new());

    // ADT, ORU, the ADT resent (a sender retry), and a record whose payload is not HL7 v2.
    accept(&session, ADT).await;
    accept(&session, ORU).await;
    accept(&session, ADT).await;
    let canonical::raw::RawMessage { .. } = {
        let Ok(ingest::intake::Decision::Accept(mut a)) =
            Ok::<_, ()>(ingest::intake::decide(&icfg, ADT, None, canonical::raw::Channel::Mllp, 1))
        else {
            panic!()
        };
        a.record.payload = b"\x00\x01 not HL7 at all".to_vec();
        a.record.control_id = None;
        publisher.publish_raw(&a.key, &a.record, &TraceParent::new_root()).await.unwrap();
        a.record
    };

    let ncfg = normalize_cfg(&t);
    let metrics = run_normalize(&cfg, &ncfg, 4).await;
    assert_eq!(metrics.counted("normalize", Outcome::duplicate), 1, "the resend is marked");

    let out = read_committed(&cfg, &t.out, 3, Duration::from_secs(20)).await;
    assert_eq!(out.len(), 2, "ADT and ORU once each; the resend is not re-emitted");
    let serde = registry.value_serde::<ClinicalEvent>(&t.out);
    let mut types = Vec::new();
    for r in &out {
        let e = serde.decode(r.value.as_deref().unwrap()).await.unwrap();
        assert_eq!(r.headers.message_id(), Some(e.id.as_str()));
        assert!(r.headers.traceparent().is_some(), "trace continues from ingest");
        assert!(e.resources.iter().any(|x| x.resource_type == "Patient"));
        types.push(e.event_type.clone());
    }
    types.sort();
    assert_eq!(types, vec!["hl7v2.adt.a01", "hl7v2.oru.r01"]);
    // Each event continues the trace its raw message started at ingest.
    let raw = read_committed(&cfg, &t.raw, 4, Duration::from_secs(20)).await;
    let raw_traces: Vec<_> = raw.iter().filter_map(|r| r.headers.traceparent()).map(|t| t.trace_id).collect();
    for r in &out {
        let t = r.headers.traceparent().unwrap().trace_id;
        assert!(raw_traces.contains(&t), "output trace {t:?} is one of the inputs' traces");
    }
    // Same patient → same key → same partition, in order.
    assert_eq!(out[0].key, out[1].key);

    let dead = read_committed(&cfg, &t.dlq, 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1);
    let w = bus::DeadLetterWriter::new(&registry, "normalize", Some(&t.dlq));
    let letter = w.decode(dead[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(letter.error_class, "parse");
    assert_eq!(letter.source_topic, t.raw);

    // A new replica (fresh memory, same group) meets another resend: the window is rebuilt
    // from the input partition, so it is still recognised.
    accept(&session, ADT).await;
    let metrics = run_normalize(&cfg, &ncfg, 1).await;
    assert_eq!(metrics.counted("normalize", Outcome::duplicate), 1, "recognised after the restart");
    let out = read_committed(&cfg, &t.out, 3, Duration::from_secs(10)).await;
    assert_eq!(out.len(), 2, "still exactly two events");
}
