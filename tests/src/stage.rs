//! Running a transactional stage in-process for a test: start a `TxLoop` with a processor,
//! let it commit a given number of input records (bounded by a deadline so a broken run ends),
//! then shut it down the way SIGTERM would.

use std::time::Duration;

use bus::txloop::{Processor, TxLoop, TxLoopConfig, TxLoopStats};
use bus::{BusConfig, Registry, Shutdown};

/// Runs `processor` over `loop_cfg`'s input until `until` input records are committed (counted
/// from this start) or `deadline` passes; returns the loop's stats.
pub async fn run_until<P: Processor + 'static>(
    cfg: &BusConfig,
    loop_cfg: TxLoopConfig,
    processor: P,
    until: u64,
    deadline: Duration,
) -> TxLoopStats {
    let registry = Registry::new(&cfg.registry).expect("registry client");
    let shutdown = Shutdown::new();
    let txl = TxLoop::start(cfg, loop_cfg, &registry, &shutdown).await.expect("loop starts");
    let counters = txl.counters();
    let s2 = shutdown.clone();
    let handle = tokio::spawn(async move { txl.run(&processor, &s2).await });
    let end = tokio::time::Instant::now() + deadline;
    while counters.snapshot().records_in < until && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.trigger();
    handle.await.expect("loop task").expect("loop ends cleanly")
}

/// Runs a fresh normalize replica (no sender profiles) until it has committed `until` input
/// records (counted from this start), at most 90 s; returns its processor's metrics.
pub async fn run_normalize(cfg: &BusConfig, ncfg: &normalize::NormalizeConfig, until: u64) -> telemetry::Metrics {
    let registry = Registry::new(&cfg.registry).expect("registry client");
    let metrics = telemetry::Metrics::new();
    let p =
        normalize::Normalizer::new(ncfg.clone(), cfg.clone(), mapping::Profiles::default(), &registry, metrics.clone());
    let mut lc = TxLoopConfig::new("normalize", &ncfg.group_id, &[&ncfg.input_topic], &ncfg.transactional_id);
    lc.dlq_topic = Some(ncfg.dlq_topic.clone());
    run_until(cfg, lc, p, until, Duration::from_secs(90)).await;
    metrics
}
