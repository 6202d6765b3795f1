//! A poison record lands in the DLQ with its original key, value and headers byte for byte,
//! inside the loop's transaction, and the records after it are still processed.

use std::time::Duration;

use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig};
use bus::{BusProducer, DeadLetterWriter, InputRecord, MessageHeaders, Registry, Shutdown, TraceParent};

struct Strict {
    output: String,
}

impl Processor for Strict {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        let v = r.value.as_deref().unwrap_or_default();
        let text = std::str::from_utf8(v)
            .map_err(|e| ProcessError::permanent("encoding", format!("value is not UTF-8: {e}")))?;
        Ok(vec![Output {
            topic: self.output.clone(),
            key: r.key.clone(),
            value: text.to_uppercase().into_bytes(),
            headers: MessageHeaders::new(),
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_record_goes_to_the_dlq_with_its_original_bytes_and_the_loop_goes_on() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("dlq.in"), unique("dlq.out"), unique("dlq.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 1).await;
    }
    let producer = BusProducer::new(&cfg, "it-dlq").unwrap();
    let poison: Vec<u8> = vec![0xff, 0xfe, 0x00, b'M', b'S', b'H', 0x80];
    let tp = TraceParent::new_root();
    let mut poison_headers = MessageHeaders::new();
    poison_headers
        .set_message_id("m-poison")
        .set_traceparent(&tp)
        .push("x-null", None)
        .push("x-bin", Some(vec![0, 1, 255]));
    let mut offsets = Vec::new();
    for (i, v) in [b"a".to_vec(), b"b".to_vec(), poison.clone(), b"c".to_vec(), b"d".to_vec()].iter().enumerate() {
        let h = if i == 2 { poison_headers.clone() } else { MessageHeaders::new() };
        offsets.push(producer.send(&input, Some(b"key-1"), v, &h).await.unwrap().offset);
    }

    let registry = Registry::new(&cfg.registry).unwrap();
    let mut lc = TxLoopConfig::new("dlqtest", &unique("dlq.group"), &[&input], &unique("dlq.txn"));
    lc.dlq_topic = Some(dlq.clone());
    let shutdown = Shutdown::new();
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await.unwrap();
    let p = Strict { output: output.clone() };
    let s2 = shutdown.clone();
    let handle = tokio::spawn(async move { txl.run(&p, &s2).await });

    let out = read_committed(&cfg, &output, 4, Duration::from_secs(60)).await;
    let dead = read_committed(&cfg, &dlq, 1, Duration::from_secs(60)).await;
    shutdown.trigger();
    let stats = handle.await.unwrap().unwrap();

    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"A"[..], b"B", b"C", b"D"], "records after the poison one were processed");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.key.as_deref(), Some(&b"key-1"[..]), "dead letter keeps the input's key");
    assert_eq!(d.headers.traceparent().map(|t| t.trace_id), Some(tp.trace_id), "dead letter continues the trace");
    assert_eq!(d.headers.content_type(), Some(bus::dlq::CONTENT_TYPE));
    let dl = DeadLetterWriter::new(&registry, "dlqtest", Some(&dlq)).decode(d.value.as_deref().unwrap()).await.unwrap();
    assert_eq!(dl.original_value.as_deref(), Some(&poison[..]), "original bytes, byte for byte");
    assert_eq!(dl.original_key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(dl.original_headers(), poison_headers, "original headers in order, nulls kept");
    assert_eq!((dl.source_topic.as_str(), dl.source_partition, dl.source_offset), (input.as_str(), 0, offsets[2]));
    assert_eq!((dl.stage.as_str(), dl.error_class.as_str(), dl.attempts), ("dlqtest", "encoding", 1));
    assert!(dl.detail.contains("not UTF-8"), "{}", dl.detail);
    assert_eq!((stats.records_in, stats.records_out, stats.dead_lettered), (5, 4, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_writer_works_without_a_transaction() {
    let cfg = require_stack();
    let dlq = unique("dlq.plain");
    create_topic(&cfg, &dlq, 1).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let w = DeadLetterWriter::new(&registry, "ingest", Some(&dlq));
    let producer = BusProducer::new(&cfg, "it-dlq-plain").unwrap();
    let rec = InputRecord {
        topic: "mllp".into(),
        partition: -1,
        offset: -1,
        key: None,
        value: Some(b"\x0bMSH|bad\x1c\r".to_vec()),
        headers: MessageHeaders::new(),
        timestamp_ms: None,
    };
    w.write(&producer, &rec, "framing", "MSH segment missing", 1).await.unwrap();
    let got = read_committed(&cfg, &dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    let dl = w.decode(got[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(dl.original_value, rec.value);
    assert_eq!(dl.original_key, None);
}

/// Outputs the input, except that `BIG` becomes 2 MB (over the client's message.max.bytes) and
/// `MED` becomes 50 KB of incompressible bytes (over the output topic's max.message.bytes).
struct Inflating {
    output: String,
}

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Processor for Inflating {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        let v = r.value.clone().unwrap_or_default();
        let value = match v.as_slice() {
            b"BIG" => noise(2_000_000),
            b"MED" => noise(50_000),
            _ => v,
        };
        Ok(vec![Output { topic: self.output.clone(), key: r.key.clone(), value, headers: MessageHeaders::new() }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_kafka_refuses_sends_its_input_to_the_dlq_and_the_loop_goes_on() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("rej.in"), unique("rej.out"), unique("rej.dlq"));
    create_topic(&cfg, &input, 1).await;
    create_topic(&cfg, &dlq, 1).await;
    let mut small = bus::topics::TopicSpec::with_defaults(&output, &cfg.topics);
    small.partitions = 1;
    small.configs.insert("max.message.bytes".into(), "20000".into());
    bus::topics::ensure_topics(&cfg, &[small]).await.unwrap();

    let producer = BusProducer::new(&cfg, "it-rej").unwrap();
    for v in ["a", "BIG", "b", "MED", "c"] {
        producer.send(&input, Some(b"k"), v.as_bytes(), &MessageHeaders::new()).await.unwrap();
    }
    let registry = Registry::new(&cfg.registry).unwrap();
    let mut lc = TxLoopConfig::new("rej", &unique("rej.group"), &[&input], &unique("rej.txn"));
    lc.dlq_topic = Some(dlq.clone());
    lc.tuning.retry.initial_ms = 50;
    let shutdown = Shutdown::new();
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await.unwrap();
    let s2 = shutdown.clone();
    let p = Inflating { output: output.clone() };
    let handle = tokio::spawn(async move { txl.run(&p, &s2).await });
    let out = read_committed(&cfg, &output, 3, Duration::from_secs(60)).await;
    // Ask for one more than expected: a wrongly dead-lettered neighbour would show up here.
    let dead = read_committed(&cfg, &dlq, 3, Duration::from_secs(10)).await;
    shutdown.trigger();
    let stats = handle.await.unwrap().unwrap();

    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"a"[..], b"b", b"c"], "nothing lost, nothing duplicated, in order");
    assert_eq!(dead.len(), 2, "only the two refused records are dead letters");
    let w = DeadLetterWriter::new(&registry, "rej", Some(&dlq));
    let mut originals = Vec::new();
    for d in &dead {
        let dl = w.decode(d.value.as_deref().unwrap()).await.unwrap();
        assert_eq!(dl.error_class, "output-rejected");
        assert!(dl.detail.contains("MessageSizeTooLarge"), "{}", dl.detail);
        originals.push(dl.original_value.unwrap());
    }
    assert_eq!(originals, vec![b"BIG".to_vec(), b"MED".to_vec()]);
    assert!(stats.aborts >= 2, "each refusal aborted its transaction first: {stats:?}");
    assert_eq!((stats.records_in, stats.records_out, stats.dead_lettered), (5, 3, 2));
}
