//! The fan-out service: configuration and wiring only. The logic is in `crates/fanout`;
//! start-up, health and shutdown in `crates/lifecycle`.

use bus::BusConfig;
use bus::txloop::TxLoopConfig;
use clap::Parser;
use fanout::{FanoutConfig, FanoutProcessor};
use lifecycle::{StageSpec, run_stage};
use serde::Deserialize;
use std::path::PathBuf;
use telemetry::{Metrics, TelemetryConfig};

/// Arteria fan-out: current-state FHIR topics and subscriber routes.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (every key has a default; ARTERIA__SECTION__KEY env vars override).
    #[arg(long, env = "ARTERIA_CONFIG")]
    config: Option<PathBuf>,
}

const DEFAULTS: &str = include_str!("../fanout.toml");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    fanout: FanoutConfig,
    bus: BusConfig,
    telemetry: TelemetryConfig,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = settings::load_over(DEFAULTS, args.config.as_deref())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("fanout", &cfg.telemetry)?;
    let f = cfg.fanout.clone();
    tracing::info!(routes = f.routes.len(), resource_types = f.resource_types.len(), "fan-out configured");
    let current: Vec<String> = f.resource_types.iter().map(|t| f.topic_for(t)).collect();
    let mut topics = vec![f.input_topic.clone(), f.dlq_topic.clone()];
    topics.extend(current.iter().cloned());
    topics.extend(f.routes.iter().map(|r| r.to.clone()));
    topics.sort();
    topics.dedup();
    let mut loop_cfg = TxLoopConfig::new("fanout", &f.group_id, &[&f.input_topic], &f.transactional_id);
    loop_cfg.dlq_topic = Some(f.dlq_topic.clone());
    let spec =
        StageSpec { name: "fanout", bus: &cfg.bus, telemetry: &cfg.telemetry, topics, compacted: current, loop_cfg };
    let metrics = Metrics::new();
    let m = metrics.clone();
    run_stage(spec, metrics, |registry| async move {
        let p = FanoutProcessor::new(f, &registry, m);
        p.register().await.map_err(|e| format!("registering the fan-out schemas: {e}"))?;
        Ok(p)
    })
    .await?;
    Ok(())
}
