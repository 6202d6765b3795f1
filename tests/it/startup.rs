//! Start-up checks: an unreachable broker gives a clear error after retries with backoff (no
//! panic), and topics are created with the configured shape or refused when they differ.

use std::collections::BTreeMap;

use arteria_tests::{bus_config, require_stack, unique};
use bus::config::RetryConfig;
use bus::topics::{TopicSpec, describe_topic, ensure_topics, wait_for_kafka};
use bus::txloop::{TxLoop, TxLoopConfig};
use bus::{BusError, Registry, Shutdown};

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_gives_a_clear_error_after_backoff() {
    let mut cfg = bus_config();
    cfg.kafka.bootstrap_servers = format!("127.0.0.1:{}", dead_port());
    let retry = RetryConfig { initial_ms: 100, max_ms: 400, give_up_after_ms: Some(2_500) };
    let err = wait_for_kafka(&cfg, &retry, &Shutdown::new()).await.unwrap_err();
    let msg = err.to_string();
    match &err {
        BusError::BrokerUnavailable { bootstrap, attempts, .. } => {
            assert_eq!(bootstrap, &cfg.kafka.bootstrap_servers);
            assert!(*attempts >= 2, "retried: {msg}");
        }
        other => panic!("expected BrokerUnavailable, got {other:?}"),
    }
    assert!(msg.contains("unreachable") && msg.contains(&cfg.kafka.bootstrap_servers), "{msg}");

    // The loop's start-up reports the same way.
    cfg.startup_retry = retry;
    let registry = Registry::new(&cfg.registry).unwrap();
    let lc = TxLoopConfig::new("startup", "g", &["in"], "t");
    match TxLoop::start(&cfg, lc, &registry, &Shutdown::new()).await {
        Err(BusError::BrokerUnavailable { .. }) => {}
        Err(e) => panic!("expected BrokerUnavailable, got {e}"),
        Ok(_) => panic!("started against a dead broker"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_waiting_for_the_broker() {
    let mut cfg = bus_config();
    cfg.kafka.bootstrap_servers = format!("127.0.0.1:{}", dead_port());
    let retry = RetryConfig { initial_ms: 100, max_ms: 200, give_up_after_ms: None };
    let s = Shutdown::new();
    let s2 = s.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        s2.trigger();
    });
    assert!(matches!(wait_for_kafka(&cfg, &retry, &s).await, Err(BusError::ShutDown(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_their_shape_and_mismatches_refused() {
    let mut cfg = require_stack();
    cfg.topics.current_state_partitions = 2;
    let fhir = format!("fhir.{}", unique("patient"));
    let plain = unique("topics.plain");
    let specs = [TopicSpec::with_defaults(&fhir, &cfg.topics), TopicSpec::with_defaults(&plain, &cfg.topics)];
    ensure_topics(&cfg, &specs).await.expect("created");
    let f = describe_topic(&cfg, &fhir).await.unwrap().expect("exists");
    assert_eq!((f.partitions, f.replication_factor, f.cleanup_policy.as_str()), (2, 1, "compact"));
    let p = describe_topic(&cfg, &plain).await.unwrap().expect("exists");
    assert_eq!((p.partitions, p.cleanup_policy.as_str()), (3, "delete"));
    // Idempotent: a second start verifies and passes.
    ensure_topics(&cfg, &specs).await.expect("verified");

    let wrong = TopicSpec {
        name: plain.clone(),
        partitions: 6,
        replication_factor: 1,
        compacted: true,
        configs: BTreeMap::new(),
    };
    let err = ensure_topics(&cfg, &[wrong]).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BusError::TopicMismatch { .. }), "{msg}");
    assert!(
        msg.contains("3 partitions, expected 6 (set [bus.topics] current_state_partitions = 3")
            && msg.contains("cleanup.policy=delete, expected compact"),
        "{msg}"
    );
    assert!(describe_topic(&cfg, &unique("absent")).await.unwrap().is_none());
}
