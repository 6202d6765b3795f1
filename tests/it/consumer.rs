//! The at-least-once `BusConsumer` (for stages that do not write to Kafka): reads only
//! committed data, and a new instance of the group resumes after the last committed record.
//! Also the key scan that rebuilds state from a topic (`bus::snapshot`).

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_subscription_reads_a_topic_created_after_it() {
    let cfg = require_stack();
    let prefix = unique("cons.pattern");
    let pattern = format!("^{}\\..*", prefix.replace('.', "\\."));
    let c = BusConsumer::new(&cfg, &unique("cons.group"), &[&pattern], "it-cons").unwrap();
    // Let the subscription settle on no matching topic before the topic exists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let topic = format!("{prefix}.late");
    create_topic(&cfg, &topic, 1).await;
    let p = BusProducer::new(&cfg, "it-cons").unwrap();
    p.send(&topic, None, b"late", &MessageHeaders::new()).await.unwrap();
    // librdkafka's default metadata refresh (5 minutes) would miss this bound. Errors while
    // the new topic's metadata settles (unknown partition) are transient: read on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        match tokio::time::timeout_at(deadline, c.recv()).await.expect("the new topic's record within 60 s") {
            Ok(r) => break r,
            Err(_transient) => continue,
        }
    };
    assert_eq!((r.topic.as_str(), r.value.as_deref()), (topic.as_str(), Some(&b"late"[..])));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_committed_together_are_where_the_group_resumes() {
    let cfg = require_stack();
    let (t1, t2) = (unique("cons.pos1"), unique("cons.pos2"));
    create_topic(&cfg, &t1, 2).await;
    create_topic(&cfg, &t2, 1).await;
    let p = BusProducer::new(&cfg, "it-cons").unwrap();
    for (t, key, v) in [(&t1, "k1", "1a"), (&t1, "k1", "1b"), (&t2, "k2", "2a"), (&t2, "k2", "2b")] {
        p.send(t, Some(key.as_bytes()), v.as_bytes(), &MessageHeaders::new()).await.unwrap();
    }
    let group = unique("cons.group");
    let c = BusConsumer::new(&cfg, &group, &[&t1, &t2], "it-cons").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(recv(&c).await);
    }
    // Commit the first record of each topic only, in one request.
    let firsts: Vec<&InputRecord> =
        [&t1, &t2].iter().map(|t| seen.iter().filter(|r| &&r.topic == t).min_by_key(|r| r.offset).unwrap()).collect();
    c.commit_positions(firsts.iter().map(|r| (r.topic.as_str(), r.partition, r.offset + 1))).unwrap();
    c.close().await.unwrap();

    let c2 = BusConsumer::new(&cfg, &group, &[&t1, &t2], "it-cons").unwrap();
    let mut again = vec![recv(&c2).await, recv(&c2).await];
    again.sort_by(|a, b| a.topic.cmp(&b.topic));
    let mut want = vec![(t1.clone(), Some(b"1b".to_vec())), (t2.clone(), Some(b"2b".to_vec()))];
    want.sort();
    assert_eq!(again.into_iter().map(|r| (r.topic, r.value)).collect::<Vec<_>>(), want);
    c2.close().await.unwrap();
}

/// A producer with a transaction open on `topic`, holding one record with `key`.
async fn open_transaction(cfg: &bus::BusConfig, topic: &str, key: &'static str) -> rdkafka::producer::FutureProducer {
    let mut pc = bus::producer::producer_client_config(cfg);
    pc.set("transactional.id", unique("cons.scan.txnid"));
    pc.set("delivery.timeout.ms", "30000");
    let tp: rdkafka::producer::FutureProducer = pc.create().unwrap();
    let (tp2, t) = (tp.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        tp2.init_transactions(Duration::from_secs(30)).unwrap();
        tp2.begin_transaction().unwrap();
        let _ = tp2.send_result(rdkafka::producer::FutureRecord::to(&t).key(key).payload("v"));
        // On the broker (past the high watermark) before the scan starts.
        tp2.flush(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    tp
}

/// Fan-out rebuilds its ledger of published resources with a key scan when it takes over
/// partitions; a predecessor's last transaction may still be open then. The scan waits for
/// every transaction open when it began and reads what committed, instead of stopping at the
/// last stable offset without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_scan_waits_for_the_transactions_open_when_it_began() {
    let cfg = require_stack();
    let topic = unique("cons.scan");
    create_topic(&cfg, &topic, 1).await;
    BusProducer::new(&cfg, "it-cons")
        .unwrap()
        .send(&topic, Some(b"before"), b"v", &MessageHeaders::new())
        .await
        .unwrap();
    let committed_later = open_transaction(&cfg, &topic, "committed-later").await;
    let aborted_later = open_transaction(&cfg, &topic, "aborted-later").await;
    // Ends both transactions well after the scan has started (it needs well under a second
    // to reach the stable end otherwise).
    let ender = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(5));
        committed_later.commit_transaction(Duration::from_secs(30)).unwrap();
        aborted_later.abort_transaction(Duration::from_secs(30)).unwrap();
    });
    let (c, t) = (cfg.clone(), topic.clone());
    let (keys, stats) = tokio::task::spawn_blocking(move || {
        let mut keys = Vec::new();
        let stats = bus::snapshot::scan_keys(&c, &t, Duration::from_secs(60), |k, present| {
            keys.push((String::from_utf8_lossy(k).into_owned(), present))
        })
        .unwrap();
        (keys, stats)
    })
    .await
    .unwrap();
    ender.await.unwrap();
    assert_eq!(
        keys,
        vec![("before".to_string(), true), ("committed-later".to_string(), true)],
        "the committed transaction is read, the aborted one skipped"
    );
    assert_eq!(stats.records, 2);
}
