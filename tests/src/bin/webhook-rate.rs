//! webhook-rate: how many deliveries a second one webhook worker makes against a receiver that
//! answers after a fixed delay, for each `concurrency` given — through Kafka as in the service
//! (delivery records read from a six-partition topic, each committed once delivered). The
//! receiver is local and does nothing else, so the figure is the worker's, bounded by
//! `concurrency × 1000 / delay` deliveries a second.
//!
//! Needs the local stack: `eval "$(deploy/local/stack.sh env)"`, then
//! `cargo run --release -p arteria-tests --bin webhook-rate -- [DELAY_MS] [CONCURRENCIES] [DELIVERIES]`
//! (defaults 20, `1,6`, 600).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arteria_tests::{create_topic, require_stack, unique};
use bus::{BusProducer, MessageHeaders, Registry, Shutdown};
use fanout::webhook::delivery::{EVENT_ID, RESOURCE_ID};
use fanout::webhook::{WebhookConfig, WebhookMetrics, WebhookWorker};

/// What the receiver saw: requests, and the first and last of them (µs since `epoch`).
struct Seen {
    epoch: Instant,
    requests: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let delay_ms: u64 = args.next().map_or(20, |a| a.parse().expect("DELAY_MS"));
    let concurrencies: Vec<u32> =
        args.next().unwrap_or_else(|| "1,6".into()).split(',').map(|c| c.parse().expect("CONCURRENCIES")).collect();
    let n: u64 = args.next().map_or(600, |a| a.parse().expect("DELIVERIES"));

    let mut cfg = require_stack();
    // Six partitions, as the services' delivery topics have (the tests' default is three).
    cfg.topics.partitions = 6;
    let registry = Registry::new(&cfg.registry).expect("registry");
    let producer = BusProducer::new(&cfg, "webhook-rate").expect("producer");
    for concurrency in concurrencies {
        let seen = Arc::new(Seen {
            epoch: Instant::now(),
            requests: AtomicU64::new(0),
            first_us: AtomicU64::new(u64::MAX),
            last_us: AtomicU64::new(0),
        });
        let s = seen.clone();
        let app = axum::Router::new().fallback(move || {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let now = s.epoch.elapsed().as_micros() as u64;
                s.first_us.fetch_min(now, Ordering::SeqCst);
                s.last_us.fetch_max(now, Ordering::SeqCst);
                s.requests.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });

        // Delivery records as fan-out writes them, one resource each, over six partitions.
        let (topic, dlq) = (unique("webhook-rate"), unique("webhook-rate.dlq"));
        for t in [&topic, &dlq] {
            create_topic(&cfg, t, cfg.topics.partitions).await;
        }
        for i in 0..n {
            let resource_id = format!("Observation/rate-{i}");
            let mut h = MessageHeaders::new();
            h.set_message_id(&format!("{resource_id}@ev"))
                .set_content_type("application/fhir+json")
                .set(EVENT_ID, "ev")
                .set(RESOURCE_ID, resource_id.as_str());
            let body = format!(r#"{{"resourceType":"Observation","id":"rate-{i}","status":"final"}}"#);
            producer.send(&topic, Some(resource_id.as_bytes()), body.as_bytes(), &h).await.expect("produce");
        }

        let config = WebhookConfig {
            url: format!("http://{addr}/inbox"),
            concurrency,
            topic: Some(topic.clone()),
            ..Default::default()
        };
        let hook = config.resolve("rate", &unique("webhook-rate.g"), |_| None).expect("webhook settings");
        let metrics = WebhookMetrics::new(&telemetry::Metrics::new());
        let worker = WebhookWorker::new(&cfg, &registry, hook, &dlq, metrics).expect("worker");
        let counters = worker.counters();
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(worker.run(shutdown.clone()));
        let bound = Instant::now() + Duration::from_secs(600);
        while counters.committed.load(Ordering::Relaxed) < n && Instant::now() < bound {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.trigger();
        let stats = handle.await.expect("worker task");
        let (first, last) = (seen.first_us.load(Ordering::SeqCst), seen.last_us.load(Ordering::SeqCst));
        let secs = last.saturating_sub(first) as f64 / 1e6;
        let rate = if secs > 0.0 { (seen.requests.load(Ordering::SeqCst) - 1) as f64 / secs } else { 0.0 };
        println!(
            "concurrency {concurrency}: {} of {n} delivered and committed, {} requests in {secs:.2} s from the first to the last: \
             {rate:.0} deliveries/s (receiver delay {delay_ms} ms; bound {:.0}/s)",
            stats.committed,
            seen.requests.load(Ordering::SeqCst),
            f64::from(concurrency) * 1000.0 / delay_ms as f64,
        );
    }
}
