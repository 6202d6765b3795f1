//! The normalize service: configuration, wiring and lifecycle (logic in `crates/normalize`).
//!
//! Start-up waits for Kafka and the registry, verifies its topics, loads sender profiles and
//! registers the output schema, then runs the transactional loop until SIGTERM, when the loop
//! finishes its transaction and stops.

use anyhow::Context;
use bus::topics::{TopicSpec, ensure_topics, wait_for_kafka};
use bus::txloop::{TxLoop, TxLoopConfig};
use bus::{BusConfig, Registry, Shutdown};
use clap::Parser;
use normalize::{NormalizeConfig, Normalizer};
use serde::Deserialize;
use std::path::PathBuf;
use telemetry::{Health, Metrics, TelemetryConfig};

/// Arteria normalize: HL7 v2 raw messages → canonical clinical events.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (every key has a default; ARTERIA__SECTION__KEY env vars override).
    #[arg(long, env = "ARTERIA_CONFIG")]
    config: Option<PathBuf>,
}

const DEFAULTS: &str = include_str!("../normalize.toml");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    normalize: NormalizeConfig,
    bus: BusConfig,
    telemetry: TelemetryConfig,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = settings::load_over(DEFAULTS, args.config.as_deref())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("normalize", &cfg.telemetry)?;
    let shutdown = Shutdown::on_signals()?;
    let health = Health::new();
    for check in ["kafka", "topics", "registry", "loop"] {
        health.set(check, false);
    }
    let metrics = Metrics::new();
    let stop = shutdown.clone();
    let (_, health_task) =
        telemetry::health::serve(cfg.telemetry.http_addr, health.clone(), metrics.clone(), async move { stop.wait().await })
            .await?;

    let n = &cfg.normalize;
    let mut profiles = match &n.profiles_dir {
        Some(dir) => mapping::Profiles::load_dir(dir).with_context(|| format!("loading sender profiles from {}", dir.display()))?,
        None => mapping::Profiles::default(),
    };
    if let Some(zone) = &n.default_time_zone {
        profiles = profiles.with_fallback_zone(zone).with_context(|| format!("default_time_zone {zone:?}"))?;
    }
    tracing::info!(profiles = profiles.len(), "sender profiles loaded");

    wait_for_kafka(&cfg.bus, &cfg.bus.startup_retry, &shutdown).await.context("Kafka is not reachable")?;
    health.set("kafka", true);
    let specs: Vec<TopicSpec> = [&n.input_topic, &n.output_topic, &n.dlq_topic]
        .into_iter()
        .map(|t| TopicSpec::with_defaults(t, &cfg.bus.topics))
        .collect();
    ensure_topics(&cfg.bus, &specs).await.context("topics are missing or have the wrong shape")?;
    health.set("topics", true);

    let registry = Registry::new(&cfg.bus.registry)?;
    registry.wait_ready(&cfg.bus, &shutdown).await.context("the schema registry is not reachable")?;
    let processor = Normalizer::new(n.clone(), cfg.bus.clone(), profiles, &registry, metrics);
    processor.register().await.context("registering the ClinicalEvent schema")?;
    health.set("registry", true);

    let mut loop_cfg = TxLoopConfig::new("normalize", &n.group_id, &[&n.input_topic], &n.transactional_id);
    loop_cfg.dlq_topic = Some(n.dlq_topic.clone());
    let txloop = TxLoop::start(&cfg.bus, loop_cfg, &registry, &shutdown).await.context("starting the transactional loop")?;
    health.set("loop", true);
    tracing::info!("normalize ready");
    let result = txloop.run(&processor, &shutdown).await;
    health.set("loop", false);
    shutdown.trigger();
    let _ = health_task.await;
    let stats = result.context("the transactional loop stopped")?;
    tracing::info!(records_in = stats.records_in, records_out = stats.records_out, dead_lettered = stats.dead_lettered, "normalize stopped");
    Ok(())
}
