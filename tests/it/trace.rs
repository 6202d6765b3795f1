//! W3C trace context survives produce → consume, and the transactional loop continues the
//! trace (same trace id, new span id) on what it produces.

use std::time::Duration;

use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::headers::TRACESTATE;
use bus::txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig};
use bus::{BusProducer, InputRecord, MessageHeaders, Registry, Shutdown, TraceParent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_and_message_id_survive_produce_and_consume() {
    let cfg = require_stack();
    let topic = unique("trace.plain");
    create_topic(&cfg, &topic, 1).await;
    let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
    let mut h = MessageHeaders::new();
    h.set_traceparent(&tp).set_message_id("m-42").set(TRACESTATE, "arteria=1");
    BusProducer::new(&cfg, "it-trace").unwrap().send(&topic, None, b"v", &h).await.unwrap();
    let got = read_committed(&cfg, &topic, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers.traceparent(), Some(tp));
    assert_eq!(got[0].headers.get_str("traceparent"), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_eq!(got[0].headers.message_id(), Some("m-42"));
    assert_eq!(got[0].headers.tracestate(), Some("arteria=1"));
}

struct Echo {
    output: String,
}

impl Processor for Echo {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        let mut headers = MessageHeaders::new();
        headers.set_message_id("derived");
        Ok(vec![Output {
            topic: self.output.clone(),
            key: r.key.clone(),
            value: r.value.clone().unwrap_or_default(),
            headers,
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_continues_the_trace_on_its_outputs() {
    let cfg = require_stack();
    let (input, output) = (unique("trace.in"), unique("trace.out"));
    for t in [&input, &output] {
        create_topic(&cfg, t, 1).await;
    }
    let tp = TraceParent::new_root();
    let mut h = MessageHeaders::new();
    h.set_traceparent(&tp).set(TRACESTATE, "v=1");
    let producer = BusProducer::new(&cfg, "it-trace-loop").unwrap();
    producer.send(&input, Some(b"k"), b"with-trace", &h).await.unwrap();
    producer.send(&input, Some(b"k"), b"without-trace", &MessageHeaders::new()).await.unwrap();

    let registry = Registry::new(&cfg.registry).unwrap();
    let mut lc = TxLoopConfig::new("trace", &unique("trace.group"), &[&input], &unique("trace.txn"));
    lc.dlq_topic = Some(unique("trace.dlq"));
    create_topic(&cfg, lc.dlq_topic.as_ref().unwrap(), 1).await;
    let shutdown = Shutdown::new();
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await.unwrap();
    let p = Echo { output: output.clone() };
    let s2 = shutdown.clone();
    let handle = tokio::spawn(async move { txl.run(&p, &s2).await });
    let out = read_committed(&cfg, &output, 2, Duration::from_secs(60)).await;
    shutdown.trigger();
    handle.await.unwrap().unwrap();

    assert_eq!(out.len(), 2);
    let child = out[0].headers.traceparent().expect("output carries a traceparent");
    assert_eq!(child.trace_id, tp.trace_id, "same trace");
    assert_ne!(child.parent_id, tp.parent_id, "new span");
    assert_eq!(out[0].headers.tracestate(), Some("v=1"));
    assert_eq!(out[0].headers.message_id(), Some("derived"));
    let root = out[1].headers.traceparent().expect("an input without trace context starts a new trace");
    assert_ne!(root.trace_id, tp.trace_id);
}
