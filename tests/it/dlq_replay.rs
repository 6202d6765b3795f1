//! DLQ replay against the real broker and registry: `arteria dlq list` shows dead letters
//! without their original bytes, `arteria dlq replay` re-produces exactly the selected ones
//! (by class, by id, to another topic) byte for byte with an `arteria-replayed-from` header,
//! `--dry-run` produces nothing, bad selections replay nothing; and a replayed message that
//! normalize dead-lettered is processed again rather than swallowed as a sender retry.
//!
//! The CLI tests run the real `arteria` binary (`cargo build -p arteria-cli`; `make test`
//! builds it).

use std::process::Output;
use std::time::Duration;

use arteria_tests::services::bin_dir;
use arteria_tests::stage::run_normalize;
use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::dlq_replay::{self, REPLAYED_FROM, Selection};
use bus::{BusProducer, DeadLetter, DeadLetterWriter, InputRecord, MessageHeaders, Registry, TraceParent};
use ingest::{IngestConfig, KafkaPublisher, Publisher};
use normalize::NormalizeConfig;
use telemetry::Outcome;

/// Runs `arteria dlq <args>` against the local stack.
async fn arteria_dlq(args: &[&str]) -> Output {
    let bin = bin_dir().join("arteria");
    assert!(bin.is_file(), "{} is missing: `cargo build -p arteria-cli` first (make test does it)", bin.display());
    let args: Vec<String> = std::iter::once("dlq".to_string()).chain(args.iter().map(|s| s.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .env("ARTERIA_KAFKA_BOOTSTRAP", arteria_tests::kafka_bootstrap())
            .env("ARTERIA_REGISTRY_URL", arteria_tests::registry_url())
            .output()
            .expect("arteria runs")
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A source record as a stage would have consumed it: binary value and headers, a null
/// header, a trace context.
fn source_record(topic: &str, i: i64, key: Option<&[u8]>) -> InputRecord {
    let mut headers = MessageHeaders::new();
    headers
        .set_message_id(&format!("m-{i}"))
        .set_traceparent(&TraceParent::new_root())
        .push("x-null", None)
        .push("x-bin", Some(vec![0, 0xff, i as u8]));
    InputRecord {
        topic: topic.to_string(),
        partition: (i % 3) as i32,
        offset: 100 + i,
        key: key.map(<[u8]>::to_vec),
        value: Some(vec![0xde, 0xad, 0x00, b'V', b'0' + i as u8, 0xff]),
        headers,
        timestamp_ms: Some(1_700_000_000_000 + i),
    }
}

/// The records of `topic` replayed from each dead letter id, keyed by that id.
fn by_replayed_from(records: &[InputRecord]) -> std::collections::HashMap<String, &InputRecord> {
    records
        .iter()
        .map(|r| (dlq_replay::replayed_from(&r.headers).expect("replayed record names its dead letter").to_string(), r))
        .collect()
}

fn assert_is_replay_of(r: &InputRecord, dl: &DeadLetter) {
    assert_eq!(r.value, dl.original_value, "original value, byte for byte");
    assert_eq!(r.key, dl.original_key, "original key");
    let mut expected = dl.original_headers();
    expected.push(REPLAYED_FROM, Some(dl.id.clone().into_bytes()));
    assert_eq!(r.headers, expected, "original headers in order, nulls kept, then the replayed-from header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_replay_exactly_the_selection_byte_for_byte() {
    let cfg = require_stack();
    let (src, other, dlq) = (unique("dlqr.src"), unique("dlqr.other"), unique("dlqr.dlq"));
    create_topic(&cfg, &src, 3).await;
    create_topic(&cfg, &other, 1).await;
    create_topic(&cfg, &dlq, 2).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let writer = DeadLetterWriter::new(&registry, "normalize", Some(&dlq));
    let producer = BusProducer::new(&cfg, "it-dlq-replay").unwrap();

    let classes = ["parse", "mapping", "parse", "retries-exhausted"];
    for (i, class) in classes.iter().enumerate() {
        let key: Option<&[u8]> = if i == 2 { None } else { Some(b"PATIENT-KEY-1") };
        let rec = source_record(&src, i as i64, key);
        writer.write(&producer, &rec, class, &format!("problem {i} at PID-3"), 1 + i as u32).await.unwrap();
    }
    // A dead letter of ingest: no Kafka source to go back to.
    let from_mllp = InputRecord {
        topic: "mllp".into(),
        partition: -1,
        offset: -1,
        key: None,
        value: Some(b"MSH|broken".to_vec()),
        headers: MessageHeaders::new(),
        timestamp_ms: None,
    };
    writer.write(&producer, &from_mllp, "framing", "MSH-9 missing", 1).await.unwrap();

    // The snapshot: everything, oldest first, as written.
    let snap = dlq_replay::read_snapshot(&cfg, &registry, &dlq).await.unwrap();
    assert!(snap.undecodable.is_empty(), "{:?}", snap.undecodable);
    let got: Vec<(&str, &str, i64)> = snap
        .entries
        .iter()
        .map(|e| (e.dead_letter.error_class.as_str(), e.dead_letter.source_topic.as_str(), e.dead_letter.source_offset))
        .collect();
    assert_eq!(
        got,
        vec![
            ("parse", src.as_str(), 100),
            ("mapping", src.as_str(), 101),
            ("parse", src.as_str(), 102),
            ("retries-exhausted", src.as_str(), 103),
            ("framing", "mllp", -1)
        ]
    );
    let letters: Vec<DeadLetter> = snap.entries.iter().map(|e| e.dead_letter.clone()).collect();
    let id = |i: usize| letters[i].id.clone();

    // list: one line per dead letter, no original bytes.
    let o = arteria_dlq(&["list", "--topic", &dlq]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, dl) in lines.iter().zip(&letters) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], dl.id);
        assert_eq!(&cols[2..4], &["normalize", dl.error_class.as_str()]);
        assert_eq!(cols[4], format!("{}[{}]@{}", dl.source_topic, dl.source_partition, dl.source_offset));
        assert_eq!(cols[5], format!("attempts={}", dl.attempts));
        assert_eq!(cols[6], dl.detail);
    }
    assert!(!out.contains("PATIENT-KEY") && !out.contains("\\xde\\xad") && !out.contains("MSH|broken"), "{out}");
    // --class and --limit; --show-original prints the bytes, escaped.
    let o = arteria_dlq(&["list", "--topic", &dlq, "--class", "parse", "--limit", "1", "--show-original"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&id(0)), "{out}");
    assert!(out.contains("key=PATIENT-KEY-1\tvalue=\\xde\\xad\\x00V0\\xff"), "{out}");

    // Dry run: says what it would do, produces nothing (checked below: src only ever holds
    // the two real replays).
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--class", "parse", "--dry-run"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{} -> {src} (dry run)\n{} -> {src} (dry run)\ndry run: would replay 2 of 2 selected; nothing produced\n",
            id(0),
            id(2)
        )
    );

    // Replay by class.
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--class", "parse"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("{} -> {src} [partition ", id(0))), "{out}");
    assert!(out.contains(&format!("{} -> {src} [partition ", id(2))), "{out}");
    assert!(out.ends_with("replayed 2 of 2 selected\n"), "{out}");

    // Replay by id, to another topic.
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--id", &id(1), "--to", &other]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("replayed 1 of 1 selected\n"), "{}", stdout(&o));

    // Selections that cannot be replayed replay nothing and say why.
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--id", &id(3), "--id", "no-such-id"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("no dead letter with id no-such-id"), "{}", stderr(&o));
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--class", "framing"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("was not read from a Kafka topic (source mllp"), "{}", stderr(&o));
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--class", "parse", "--to", &unique("dlqr.missing")]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    // Ask for one more than expected: a dry-run record, an unselected or refused dead letter
    // replayed anyway would show up here.
    let on_src = read_committed(&cfg, &src, 3, Duration::from_secs(10)).await;
    assert_eq!(on_src.len(), 2, "exactly the two parse dead letters were replayed to the source");
    let m = by_replayed_from(&on_src);
    assert_is_replay_of(m[&id(0)], &letters[0]);
    assert_is_replay_of(m[&id(2)], &letters[2]);
    let on_other = read_committed(&cfg, &other, 2, Duration::from_secs(10)).await;
    assert_eq!(on_other.len(), 1);
    assert_is_replay_of(&on_other[0], &letters[1]);

    // The DLQ itself is left as it was: replay does not consume it.
    let again = dlq_replay::read_snapshot(&cfg, &registry, &dlq).await.unwrap();
    assert_eq!(again.entries.len(), 5);
    let sel = Selection { classes: vec!["parse".into()], ..Default::default() };
    assert_eq!(sel.select(&again).unwrap().len(), 2);
}

const ADT: &[u8] = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101500+0100||ADT^A01^ADT_A01|R-ADT-1|P|2.5.1\rEVN|A01|20240301101500+0100\rPID|1||R-P-1^^^NORTH^MR||TESTER^ALEX||19800101|U\rPV1|1|I|WARD^1^A\r";
const BAD: &[u8] = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101600+0100||ADT^A08^ADT_A01|R-BAD-1|P|2.5.1\rEVN|A08|20240301101600+0100\rPID|1||R-P-1^^^NORTH^MR||TESTER^ALEX\r";

/// normalize records a message's sender key (sender, MSH-10) when it first sees it, before
/// parsing, so a sender's resend of a bad message is not dead-lettered twice. A replay of the
/// dead letter has the same key: without the replayed-from header it would be judged a retry
/// and dropped without a trace, though nothing was ever emitted for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_is_processed_again_by_normalize_not_swallowed_as_a_retry() {
    let cfg = require_stack();
    let (raw, out, dlq, idlq) = (unique("dlqr.raw"), unique("dlqr.out"), unique("dlqr.ndlq"), unique("dlqr.idlq"));
    for t in [&raw, &out, &dlq, &idlq] {
        create_topic(&cfg, t, 3).await;
    }
    let registry = Registry::new(&cfg.registry).unwrap();
    let publisher = KafkaPublisher::new(BusProducer::new(&cfg, "it-dlqr-norm").unwrap(), &registry, &raw, &idlq);
    let icfg = IngestConfig { raw_topic: raw.clone(), dlq_topic: idlq.clone(), ..Default::default() };
    let accepted = |bytes: &[u8]| match ingest::intake::decide(&icfg, bytes, None, canonical::raw::Channel::Mllp, 1) {
        ingest::intake::Decision::Accept(a) => a,
        ingest::intake::Decision::Reject(_) => panic!("ingest accepts the test message"),
    };
    let good = accepted(ADT);
    publisher.publish_raw(&good.key, &good.record, &TraceParent::new_root()).await.unwrap();
    // A stored raw message whose payload normalize cannot parse, with its sender key intact.
    let mut bad = accepted(BAD);
    assert_eq!(bad.record.control_id.as_deref(), Some("R-BAD-1"));
    bad.record.payload = b"\x00\x01 not HL7 at all".to_vec();
    publisher.publish_raw(&bad.key, &bad.record, &TraceParent::new_root()).await.unwrap();

    let ncfg = NormalizeConfig {
        input_topic: raw.clone(),
        output_topic: out.clone(),
        dlq_topic: dlq.clone(),
        group_id: unique("dlqr.group"),
        transactional_id: unique("dlqr.txn"),
        ..Default::default()
    };
    run_normalize(&cfg, &ncfg, 2).await;
    assert_eq!(read_committed(&cfg, &out, 2, Duration::from_secs(10)).await.len(), 1, "the ADT became an event");
    let first = dlq_replay::read_snapshot(&cfg, &registry, &dlq).await.unwrap();
    assert_eq!(first.entries.len(), 1, "the bad message was dead-lettered");
    let dl0 = first.entries[0].dead_letter.clone();
    assert_eq!(
        (dl0.stage.as_str(), dl0.error_class.as_str(), dl0.source_topic.as_str()),
        ("normalize", "parse", raw.as_str())
    );

    // Replay it (the library path the CLI uses), then let a restarted replica take it: the
    // replica rebuilds its duplicate window from the raw partition, which holds the original.
    let sel = Selection { classes: vec!["parse".into()], ..Default::default() };
    let plan = dlq_replay::plan(&sel.select(&first).unwrap(), None).unwrap();
    dlq_replay::check_targets(&cfg, &plan).await.unwrap();
    let outcomes = dlq_replay::replay(&BusProducer::new(&cfg, "it-dlqr-replay").unwrap(), &plan).await;
    assert_eq!(outcomes.len(), 1);
    let d = outcomes[0].result.as_ref().expect("replay delivered");
    assert_eq!(d.partition, dl0.source_partition, "same key, same partition as the original");
    let metrics = run_normalize(&cfg, &ncfg, 1).await;
    assert_eq!(metrics.counted("normalize", Outcome::duplicate), 0, "the replay is not taken for a sender retry");

    // Still unparseable, so it ends in the DLQ again — visibly — naming the dead letter it was
    // replayed from.
    let recs = read_committed(&cfg, &dlq, 3, Duration::from_secs(15)).await;
    assert_eq!(recs.len(), 2, "the replay was processed (and dead-lettered again), not swallowed");
    let second = dlq_replay::read_snapshot(&cfg, &registry, &dlq).await.unwrap();
    let dl1 = &second.entries[1].dead_letter;
    assert_ne!(dl1.id, dl0.id);
    assert_eq!(dl1.error_class, "parse");
    assert_eq!(dl1.original_value, dl0.original_value, "the same bytes came back");
    assert_eq!(dlq_replay::replayed_from(&dl1.original_headers()), Some(dl0.id.as_str()));
    assert_eq!(dl1.source_offset, d.offset);
}

/// A record in a DLQ that is not a dead letter is reported with its place, not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_is_not_a_dead_letter_is_reported_not_skipped() {
    let cfg = require_stack();
    let (src, dlq) = (unique("dlqr.usrc"), unique("dlqr.udlq"));
    create_topic(&cfg, &src, 1).await;
    create_topic(&cfg, &dlq, 1).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let producer = BusProducer::new(&cfg, "it-dlqr-undecodable").unwrap();
    let garbage = producer.send(&dlq, None, b"not avro at all", &MessageHeaders::new()).await.unwrap();
    let writer = DeadLetterWriter::new(&registry, "enrich", Some(&dlq));
    writer.write(&producer, &source_record(&src, 0, Some(b"k")), "mapping", "OBX-5 unreadable", 1).await.unwrap();

    let snap = dlq_replay::read_snapshot(&cfg, &registry, &dlq).await.unwrap();
    assert_eq!(snap.entries.len(), 1);
    assert_eq!(snap.undecodable.len(), 1);
    assert_eq!((snap.undecodable[0].partition, snap.undecodable[0].offset), (0, garbage.offset));

    let o = arteria_dlq(&["list", "--topic", &dlq]).await;
    assert_eq!(o.status.code(), Some(1), "a list with an unreadable record does not exit 0");
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(
        stderr(&o).contains(&format!("{dlq}[0]@{} is not a readable dead letter", garbage.offset)),
        "{}",
        stderr(&o)
    );
    // The readable one still replays.
    let o = arteria_dlq(&["replay", "--topic", &dlq, "--all"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("replayed 1 of 1 selected\n"), "{}", stdout(&o));
    let on_src = read_committed(&cfg, &src, 2, Duration::from_secs(10)).await;
    assert_eq!(on_src.len(), 1);
    assert_is_replay_of(&on_src[0], &snap.entries[0].dead_letter);
}
