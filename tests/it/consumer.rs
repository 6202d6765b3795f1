//! The at-least-once `BusConsumer` (for stages that do not write to Kafka): reads only
//! committed data, and a new instance of the group resumes after the last committed record.

use std::time::Duration;

use arteria_tests::{create_topic, require_stack, unique};
use bus::{BusConsumer, BusProducer, InputRecord, MessageHeaders};
use rdkafka::producer::Producer;

async fn recv(c: &BusConsumer) -> InputRecord {
    tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("a record within 30 s")
        .expect("no consumer error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_the_last_committed_record() {
    let cfg = require_stack();
    let topic = unique("cons.topic");
    create_topic(&cfg, &topic, 1).await;
    let p = BusProducer::new(&cfg, "it-cons").unwrap();
    for v in ["a", "b", "c", "d"] {
        p.send(&topic, None, v.as_bytes(), &MessageHeaders::new()).await.unwrap();
    }
    let group = unique("cons.group");
    let c = BusConsumer::new(&cfg, &group, &[&topic], "it-cons").unwrap();
    let a = recv(&c).await;
    let b = recv(&c).await;
    assert_eq!((a.value.as_deref(), b.value.as_deref()), (Some(&b"a"[..]), Some(&b"b"[..])));
    c.commit(&b).unwrap();
    let _c_unprocessed = recv(&c).await; // read but never committed: must be read again
    c.close().await.unwrap();

    let c2 = BusConsumer::new(&cfg, &group, &[&topic], "it-cons").unwrap();
    let next = recv(&c2).await;
    assert_eq!(next.value.as_deref(), Some(&b"c"[..]), "resumes after the last commit, replaying the uncommitted one");
    c2.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_see_aborted_transactional_records() {
    let cfg = require_stack();
    let topic = unique("cons.txn");
    create_topic(&cfg, &topic, 1).await;
    // An aborted transaction, then a plain record.
    let mut pc = bus::producer::producer_client_config(&cfg);
    pc.set("transactional.id", unique("cons.txnid"));
    pc.set("delivery.timeout.ms", "30000");
    let tp: rdkafka::producer::FutureProducer = pc.create().unwrap();
    let tp2 = tp.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        tp2.init_transactions(Duration::from_secs(30)).unwrap();
        tp2.begin_transaction().unwrap();
        let _ = tp2.send_result(rdkafka::producer::FutureRecord::<(), _>::to(&t).payload("aborted"));
        tp2.flush(Duration::from_secs(30)).unwrap();
        tp2.abort_transaction(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    BusProducer::new(&cfg, "it-cons").unwrap().send(&topic, None, b"visible", &MessageHeaders::new()).await.unwrap();
    let c = BusConsumer::new(&cfg, &unique("cons.g2"), &[&topic], "it-cons").unwrap();
    let r = recv(&c).await;
    assert_eq!(r.value.as_deref(), Some(&b"visible"[..]), "read_committed skips the aborted record");
    c.close().await.unwrap();
}
