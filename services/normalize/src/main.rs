//! The normalize service: configuration and wiring only. The logic is in `crates/normalize`;
//! start-up, health and shutdown in `crates/lifecycle`.

use anyhow::Context;
use bus::BusConfig;
use bus::txloop::TxLoopConfig;
use clap::Parser;
use lifecycle::{StageSpec, run_stage};
use normalize::{NormalizeConfig, Normalizer};
use serde::Deserialize;
use std::path::PathBuf;
use telemetry::{Metrics, TelemetryConfig};

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

/// mimalloc: see the workspace Cargo.toml (allocation dominates conversion).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = settings::load_over(DEFAULTS, args.config.as_deref())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("normalize", &cfg.telemetry)?;
    let n = cfg.normalize.clone();
    let mut profiles = match &n.profiles_dir {
        Some(dir) => mapping::Profiles::load_dir(dir)
            .with_context(|| format!("loading sender profiles from {}", dir.display()))?,
        None => mapping::Profiles::default(),
    };
    if let Some(zone) = &n.default_time_zone {
        profiles = profiles.with_fallback_zone(zone).with_context(|| format!("default_time_zone {zone:?}"))?;
    }
    tracing::info!(profiles = profiles.len(), "sender profiles loaded");
    let mut loop_cfg = TxLoopConfig::new("normalize", &n.group_id, &[&n.input_topic], &n.transactional_id);
    loop_cfg.tuning = cfg.bus.transactions.clone();
    loop_cfg.dlq_topic = Some(n.dlq_topic.clone());
    let spec = StageSpec {
        name: "normalize",
        bus: &cfg.bus,
        telemetry: &cfg.telemetry,
        topics: vec![n.input_topic.clone(), n.output_topic.clone(), n.dlq_topic.clone()],
        compacted: Vec::new(),
        loop_cfg,
    };
    let metrics = Metrics::new();
    let m = metrics.clone();
    let bus = cfg.bus.clone();
    run_stage(spec, metrics, |registry| async move {
        let p = Normalizer::new(n, bus, profiles, &registry, m);
        p.register().await.map_err(|e| format!("registering the ClinicalEvent schema: {e}"))?;
        Ok(p)
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/kubernetes/config/normalize.toml is a configuration of this service; the
    /// StatefulSet's pod name becomes the transactional id.
    #[test]
    fn the_kubernetes_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/config/normalize.toml");
        let env = [("ARTERIA__NORMALIZE__TRANSACTIONAL_ID".to_string(), "arteria-normalize-1".to_string())];
        let cfg: Config = settings::load_with(DEFAULTS, Some(&path), env).unwrap();
        assert_eq!(cfg.normalize.transactional_id, "arteria-normalize-1");
        assert_eq!(cfg.normalize.profiles_dir.as_deref(), Some(std::path::Path::new("/etc/arteria/profiles")));
        assert!(cfg.telemetry.http_addr.ip().is_unspecified());
    }
}
