//! A real stage process exposes its consumer lag on `/metrics`: the `consumer_lag` gauge is
//! fed from librdkafka's statistics through the lifecycle's reporter, per input topic and
//! partition. The values themselves are checked by the unit tests in `bus` and `telemetry`;
//! this proves the wiring in a running service against the real broker.

use std::time::{Duration, Instant};

use arteria_tests::services::Service;
use arteria_tests::{create_topic, require_stack, unique};
use bus::{BusProducer, MessageHeaders};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_reports_its_consumer_lag_per_input_partition() {
    let cfg = require_stack();
    let run = unique("lag");
    let t = |n: &str| format!("{run}.{n}");
    let raw = t("raw");
    create_topic(&cfg, &raw, 1).await;
    // Records the stage cannot decode: they go to its DLQ, and the consumer's position moves
    // past them, so librdkafka knows the lag (it reports none before a first position).
    let producer = BusProducer::new(&cfg, "lag-test").unwrap();
    for i in 0..3u8 {
        producer.send(&raw, Some(b"k"), &[0xFF, i], &MessageHeaders::default()).await.unwrap();
    }
    let mut normalize = Service::start(
        "normalize",
        &[
            ("ARTERIA__BUS__TOPICS__PARTITIONS", "1".to_string()),
            ("ARTERIA__NORMALIZE__INPUT_TOPIC", raw.clone()),
            ("ARTERIA__NORMALIZE__OUTPUT_TOPIC", t("normalized")),
            ("ARTERIA__NORMALIZE__DLQ_TOPIC", t("normalize.dlq")),
            ("ARTERIA__NORMALIZE__GROUP_ID", t("normalize")),
            ("ARTERIA__NORMALIZE__TRANSACTIONAL_ID", t("normalize-0")),
        ],
    );
    normalize.wait_ready(Duration::from_secs(120)).await;

    let url = format!("http://127.0.0.1:{}/metrics", normalize.health_port);
    let want = format!(r#"arteria_consumer_lag{{stage="normalize",topic="{raw}",partition="0"}} 0"#);
    let started = Instant::now();
    let mut last = String::new();
    // Bounded wait: the statistics interval and the reporter both tick every 5 s.
    while started.elapsed() < Duration::from_secs(60) {
        last = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if last.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    normalize.stop();
    assert!(last.contains(&want), "no caught-up lag series for the input partition; /metrics was:\n{last}");
}
