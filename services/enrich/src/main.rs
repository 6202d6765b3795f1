//! The terminology-enrich service: configuration and wiring only. The logic is in
//! `crates/enrich` and `crates/terminology`; start-up, health and shutdown in `crates/lifecycle`.

use anyhow::Context;
use bus::BusConfig;
use bus::txloop::TxLoopConfig;
use clap::Parser;
use enrich::{EnrichConfig, EnrichProcessor};
use lifecycle::{StageSpec, run_stage};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use telemetry::{Metrics, TelemetryConfig};
use terminology::Terminology;

/// Arteria terminology-enrich: standard codes, displays and UCUM units on every event.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (every key has a default; ARTERIA__SECTION__KEY env vars override).
    #[arg(long, env = "ARTERIA_CONFIG")]
    config: Option<PathBuf>,
}

const DEFAULTS: &str = include_str!("../enrich.toml");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    enrich: EnrichConfig,
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
    let _telemetry = telemetry::init("enrich", &cfg.telemetry)?;
    let e = cfg.enrich.clone();
    let term = if e.stores.is_empty() {
        Terminology::builtin()
    } else {
        Terminology::open(&e.stores).with_context(|| format!("opening terminology stores {:?}", e.stores))?
    };
    let systems = term.systems();
    tracing::info!(code_systems = systems.len(), "terminology open");
    let mut loop_cfg = TxLoopConfig::new("enrich", &e.group_id, &[&e.input_topic], &e.transactional_id);
    loop_cfg.tuning = cfg.bus.transactions.clone();
    loop_cfg.dlq_topic = Some(e.dlq_topic.clone());
    let spec = StageSpec {
        name: "enrich",
        bus: &cfg.bus,
        telemetry: &cfg.telemetry,
        topics: vec![e.input_topic.clone(), e.output_topic.clone(), e.dlq_topic.clone()],
        compacted: Vec::new(),
        loop_cfg,
    };
    let metrics = Metrics::new();
    let m = metrics.clone();
    let term = Arc::new(term);
    run_stage(spec, metrics, |registry| async move {
        // Enrichment reads and rewrites fhir_json; the typed records are derived again on encode.
        let registry = registry.skipping_on_decode(canonical::DERIVED_FIELDS);
        let p = EnrichProcessor::new(e, term, &registry, m);
        p.register().await.map_err(|e| format!("registering the ClinicalEvent schema: {e}"))?;
        Ok(p)
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/kubernetes/config/enrich.toml is a configuration of this service; the
    /// StatefulSet's pod name becomes the transactional id.
    #[test]
    fn the_kubernetes_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/config/enrich.toml");
        let env = [("ARTERIA__ENRICH__TRANSACTIONAL_ID".to_string(), "arteria-enrich-1".to_string())];
        let cfg: Config = settings::load_with(DEFAULTS, Some(&path), env).unwrap();
        assert_eq!(cfg.enrich.transactional_id, "arteria-enrich-1");
        assert!(cfg.telemetry.http_addr.ip().is_unspecified());
    }
}
