//! The ingest stage against the real broker and registry: an accepted message is on
//! `hl7v2.raw.v1` byte for byte before the sender sees AA; a malformed one is answered AR with
//! an ERR naming segment and field and its original bytes are in the DLQ; with Kafka
//! unreachable the answer is AE, never AA; MLLP framing edge cases over a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::{BusConfig, BusProducer, Registry, Shutdown};
use canonical::raw::RawMessage;
use ingest::{IngestConfig, KafkaPublisher, Session};
use telemetry::{Metrics, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADT: &[u8] = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101500+0100||ADT^A01^ADT_A01|IT-ADT-1|P|2.5.1\rEVN|A01|20240301101500\rPID|1||IT-P-1^^^NORTH^MR||TESTER^ALEX||19800101|U\r";
const MISSING_VERSION: &[u8] =
    b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01|IT-BAD-1|P|\rPID|1||IT-P-2^^^NORTH^MR\r";

struct Running {
    addr: SocketAddr,
    session: Arc<Session<KafkaPublisher>>,
    shutdown: Shutdown,
    raw: String,
    dlq: String,
    producer: BusProducer,
}

async fn start(cfg: &BusConfig, ingest: IngestConfig) -> Running {
    let registry = Registry::new(&cfg.registry).unwrap();
    let producer = BusProducer::new(cfg, "it-ingest").unwrap();
    let publisher = KafkaPublisher::new(producer.clone(), &registry, &ingest.raw_topic, &ingest.dlq_topic);
    publisher.register_schemas().await.unwrap();
    let (raw, dlq) = (ingest.raw_topic.clone(), ingest.dlq_topic.clone());
    let session = Arc::new(Session::new(Arc::new(ingest), publisher, Metrics::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(ingest::mllp_server::serve(listener, session.clone(), shutdown.clone(), Duration::from_secs(5)));
    Running { addr, session, shutdown, raw, dlq, producer }
}

async fn topics(cfg: &BusConfig, name: &str) -> IngestConfig {
    let ingest = IngestConfig {
        raw_topic: unique(&format!("{name}.raw")),
        dlq_topic: unique(&format!("{name}.dlq")),
        ..Default::default()
    };
    create_topic(cfg, &ingest.raw_topic, 3).await;
    create_topic(cfg, &ingest.dlq_topic, 3).await;
    ingest
}

/// Reads one MLLP-framed answer.
async fn read_frame(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(&[0x1c, 0x0d]) {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await.expect("an answer").unwrap();
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf[0], 0x0b, "answer is MLLP framed");
    String::from_utf8(buf[1..buf.len() - 2].to_vec()).unwrap()
}

fn framed(m: &[u8]) -> Vec<u8> {
    hl7v2::mllp::frame(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_message_is_in_kafka_byte_for_byte_and_answered_aa() {
    let cfg = require_stack();
    let run = start(&cfg, topics(&cfg, "ingest.ok").await).await;
    let mut s = TcpStream::connect(run.addr).await.unwrap();
    s.write_all(&framed(ADT)).await.unwrap();
    let ack = read_frame(&mut s).await;
    assert!(ack.contains("\rMSA|AA|IT-ADT-1"), "{ack}");
    assert!(ack.starts_with("MSH|^~\\&|ARTERIA|HUB|REG|NORTH|"), "sender/receiver swapped: {ack}");

    let recs = read_committed(&cfg, &run.raw, 1, Duration::from_secs(30)).await;
    assert_eq!(recs.len(), 1, "the AA'd message is on the raw topic");
    let serde = Registry::new(&cfg.registry).unwrap().value_serde::<RawMessage>(&run.raw);
    let raw = serde.decode(recs[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(raw.payload, ADT, "payload byte for byte");
    assert_eq!(raw.control_id.as_deref(), Some("IT-ADT-1"));
    assert_eq!(raw.message_type.as_deref(), Some("ADT^A01^ADT_A01"));
    assert_eq!(recs[0].headers.message_id(), Some(raw.id.as_str()), "message-id header is the record id");
    assert!(recs[0].headers.traceparent().is_some(), "trace context starts at ingest");
    let key = String::from_utf8(recs[0].key.clone().unwrap()).unwrap();
    assert!(key.starts_with("patient:") && !key.contains("IT-P-1"), "hashed patient key: {key}");
    assert_eq!(run.session.metrics().counted("ingest", Outcome::acknowledged), 1);
    run.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_gets_ar_with_err_and_its_bytes_in_the_dlq() {
    let cfg = require_stack();
    let run = start(&cfg, topics(&cfg, "ingest.bad").await).await;
    let mut s = TcpStream::connect(run.addr).await.unwrap();
    s.write_all(&framed(MISSING_VERSION)).await.unwrap();
    let nak = read_frame(&mut s).await;
    assert!(nak.contains("\rMSA|AR|IT-BAD-1"), "{nak}");
    assert!(nak.contains("\rERR|"), "{nak}");
    // ERR-2 names segment MSH, occurrence 1, field 12; ERR-3 is Table 0357 code 101.
    assert!(nak.contains("\rERR||MSH^1^12|101^Required field missing^HL70357|E"), "{nak}");

    let dead = read_committed(&cfg, &run.dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1);
    let w = bus::DeadLetterWriter::new(&Registry::new(&cfg.registry).unwrap(), "ingest", Some(&run.dlq));
    let letter = w.decode(dead[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(letter.original_value.as_deref(), Some(MISSING_VERSION), "original bytes kept");
    assert_eq!(letter.error_class, "parse");
    assert_eq!(letter.stage, "ingest");
    assert!(letter.detail.contains("MSH-12"), "{}", letter.detail);

    // Nothing reached the raw topic; a good message afterwards on the same connection is fine.
    s.write_all(&framed(ADT)).await.unwrap();
    assert!(read_frame(&mut s).await.contains("MSA|AA|IT-ADT-1"));
    let raw = read_committed(&cfg, &run.raw, 2, Duration::from_secs(10)).await;
    assert_eq!(raw.len(), 1, "only the good message is on the raw topic");
    run.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_frames_in_one_write_split_reads_and_garbage_are_all_answered_in_order() {
    let cfg = require_stack();
    let run = start(&cfg, topics(&cfg, "ingest.frames").await).await;
    let msg = |n: u32| {
        format!(
            "MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A08^ADT_A01|IT-F-{n}|P|2.5.1\rPID|1||IT-P-{n}^^^NORTH^MR\r"
        )
        .into_bytes()
    };
    let mut bytes = Vec::new();
    bytes.extend(framed(&msg(1)));
    bytes.extend(b"\x00\x01noise between frames");
    bytes.extend(framed(&msg(2)));
    bytes.extend(framed(&msg(3)));
    let mut s = TcpStream::connect(run.addr).await.unwrap();
    // Split mid-frame into small writes.
    for chunk in bytes.chunks(7) {
        s.write_all(chunk).await.unwrap();
    }
    for n in 1..=3 {
        let ack = read_frame(&mut s).await;
        assert!(ack.contains(&format!("MSA|AA|IT-F-{n}")), "answer {n} in order: {ack}");
    }
    let raw = read_committed(&cfg, &run.raw, 3, Duration::from_secs(30)).await;
    assert_eq!(raw.len(), 3);
    run.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_from_its_head_and_recorded() {
    let cfg = require_stack();
    let mut ingest = topics(&cfg, "ingest.big").await;
    ingest.limits.max_message_bytes = 1024;
    let run = start(&cfg, ingest).await;
    let mut big =
        b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ORU^R01^ORU_R01|IT-BIG-1|P|2.5.1\rOBX|1|ED|PDF^Report||".to_vec();
    big.extend(std::iter::repeat_n(b'A', 10_000));
    big.extend(b"\r");
    let mut s = TcpStream::connect(run.addr).await.unwrap();
    s.write_all(&framed(&big)).await.unwrap();
    let nak = read_frame(&mut s).await;
    assert!(nak.contains("\rMSA|AR|IT-BIG-1"), "{nak}");
    let dead = read_committed(&cfg, &run.dlq, 1, Duration::from_secs(30)).await;
    let w = bus::DeadLetterWriter::new(&Registry::new(&cfg.registry).unwrap(), "ingest", Some(&run.dlq));
    let letter = w.decode(dead[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(letter.error_class, "oversized");
    assert!(big.starts_with(letter.original_value.as_deref().unwrap()), "the kept head is the message's start");
    run.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_unreachable_means_ae_never_aa() {
    let mut cfg = require_stack();
    // A real librdkafka producer aimed at a closed port: the write cannot be acknowledged.
    cfg.kafka.bootstrap_servers = "127.0.0.1:9".into();
    cfg.producer.delivery_timeout_ms = 1_500;
    let ingest = IngestConfig {
        raw_topic: unique("ingest.down.raw"),
        dlq_topic: unique("ingest.down.dlq"),
        ack_timeout_ms: 3_000,
        ..Default::default()
    };
    let registry = Registry::new(&require_stack().registry).unwrap();
    let publisher = KafkaPublisher::new(
        BusProducer::new(&cfg, "it-ingest-down").unwrap(),
        &registry,
        &ingest.raw_topic,
        &ingest.dlq_topic,
    );
    let session = Session::new(Arc::new(ingest), publisher, Metrics::new());
    let answer = session.handle(ADT, None, canonical::raw::Channel::Mllp).await;
    let text = String::from_utf8(answer.ack.unwrap()).unwrap();
    assert!(text.contains("\rMSA|AE|IT-ADT-1"), "{text}");
    assert!(!text.contains("MSA|AA"));
    assert_eq!(answer.outcome, Outcome::failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoint_answers_with_the_ack_and_a_matching_status() {
    let cfg = require_stack();
    let run = start(&cfg, topics(&cfg, "ingest.http").await).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = run.shutdown.clone();
    tokio::spawn(ingest::http::serve(listener, run.session.clone(), async move { stop.wait().await }));
    let client = reqwest::Client::new();
    let ok = client.post(format!("http://{addr}/hl7v2")).body(ADT.to_vec()).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("MSA|AA|IT-ADT-1"));
    let bad = client.post(format!("http://{addr}/hl7v2")).body(MISSING_VERSION.to_vec()).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("MSA|AR|IT-BAD-1"));
    assert_eq!(read_committed(&cfg, &run.raw, 1, Duration::from_secs(30)).await.len(), 1);
    run.producer.flush(Duration::from_secs(5)).await.unwrap();
    run.shutdown.trigger();
}
