//! The fan-out service: configuration and wiring only. The logic is in `crates/fanout`;
//! start-up, health and shutdown in `crates/lifecycle`.

use bus::txloop::TxLoopConfig;
use bus::{BusConfig, Shutdown};
use clap::Parser;
use fanout::webhook::{WebhookMetrics, spawn_all};
use fanout::{FanoutConfig, FanoutProcessor};
use lifecycle::{StageSpec, run_stage};
use serde::Deserialize;
use std::path::PathBuf;
use telemetry::{Metrics, TelemetryConfig};

/// Arteria fan-out: current-state FHIR topics, subscriber routes and webhooks.
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

/// mimalloc: see the workspace Cargo.toml (allocation dominates conversion).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = settings::load_over(DEFAULTS, args.config.as_deref())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("fanout", &cfg.telemetry)?;
    let f = cfg.fanout.clone();
    // Before anything connects: a route naming a missing webhook, a bad URL or an unset
    // secret variable stops the service here.
    let hooks = f.resolve_webhooks(|var| std::env::var(var).ok())?;
    tracing::info!(
        routes = f.routes.len(),
        webhooks = hooks.len(),
        resource_types = f.resource_types.len(),
        "fan-out configured"
    );
    let current: Vec<String> = f.resource_types.iter().map(|t| f.topic_for(t)).collect();
    let mut topics = vec![f.input_topic.clone(), f.dlq_topic.clone()];
    topics.extend(current.iter().cloned());
    topics.extend(f.route_topics());
    topics.extend(f.webhook_topics());
    topics.sort();
    topics.dedup();
    let mut loop_cfg = TxLoopConfig::new("fanout", &f.group_id, &[&f.input_topic], &f.transactional_id);
    loop_cfg.tuning = cfg.bus.transactions.clone();
    loop_cfg.dlq_topic = Some(f.dlq_topic.clone());
    let spec =
        StageSpec { name: "fanout", bus: &cfg.bus, telemetry: &cfg.telemetry, topics, compacted: current, loop_cfg };
    let metrics = Metrics::new();
    let m = metrics.clone();
    let webhook_metrics = WebhookMetrics::new(&metrics);
    // The webhook workers run beside the transactional loop and stop with it (or on SIGTERM,
    // between two attempts).
    let stop_workers = Shutdown::on_signals()?;
    let workers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (bus, stop, handles) = (cfg.bus.clone(), stop_workers.clone(), workers.clone());
    let result = run_stage(spec, metrics, |registry| async move {
        // Fan-out reads fhir_json; the typed records are derived again for each resource it writes.
        let p =
            FanoutProcessor::new(f.clone(), &bus, &registry.clone().skipping_on_decode(canonical::DERIVED_FIELDS), m);
        p.register().await.map_err(|e| format!("registering the fan-out schemas: {e}"))?;
        let started = spawn_all(&bus, &registry, hooks, &f.dlq_topic, &webhook_metrics, &stop)
            .map_err(|e| format!("starting the webhook workers: {e}"))?;
        handles.lock().unwrap_or_else(|p| p.into_inner()).extend(started);
        Ok(p)
    })
    .await;
    stop_workers.trigger();
    let started: Vec<_> = std::mem::take(&mut *workers.lock().unwrap_or_else(|p| p.into_inner()));
    for w in started {
        if let Err(e) = w.await {
            tracing::error!(error = %e, "a webhook worker panicked");
        }
    }
    result?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let cfg: Config = settings::load_with(DEFAULTS, None, Vec::<(String, String)>::new()).unwrap();
        assert!(cfg.fanout.webhooks.is_empty() && cfg.fanout.routes.is_empty());
        assert_eq!(cfg.fanout.create_only, fanout::config::CreateOnly::default(), "fanout.toml documents the defaults");
        assert_eq!(cfg.bus.transactions, bus::txloop::TxTuning::default(), "fanout.toml documents the defaults");
        let env = [("ARTERIA__BUS__TRANSACTIONS__MAX_TXN_MS".to_string(), "20".to_string())];
        let tuned: Config = settings::load_with(DEFAULTS, None, env).unwrap();
        assert_eq!(tuned.bus.transactions.max_txn_ms, 20);
        assert_eq!(tuned.bus.transactions.max_records_per_txn, 250);
    }

    /// deploy/kubernetes/config/fanout.toml is a configuration of this service; the
    /// StatefulSet's pod name becomes the transactional id.
    #[test]
    fn the_kubernetes_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/config/fanout.toml");
        let env = [("ARTERIA__FANOUT__TRANSACTIONAL_ID".to_string(), "arteria-fanout-1".to_string())];
        let cfg: Config = settings::load_with(DEFAULTS, Some(&path), env).unwrap();
        assert_eq!(cfg.fanout.transactional_id, "arteria-fanout-1");
        assert!(cfg.telemetry.http_addr.ip().is_unspecified());
    }

    /// The commented webhook example in fanout.toml, uncommented, is a working configuration.
    #[test]
    fn the_documented_webhook_example_is_valid() {
        let start = DEFAULTS.find("# [[fanout.routes]]\n# name = \"glucose-to-lab-portal\"").expect("example present");
        let end = start + DEFAULTS[start..].find("\n\n").expect("example ends with a blank line");
        let example: String = DEFAULTS[start..end]
            .lines()
            .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("{DEFAULTS}\n{example}\n");
        let cfg: Config = settings::load_with(&text, None, Vec::<(String, String)>::new()).unwrap();
        let hooks = cfg.fanout.resolve_webhooks(|v| (v == "LAB_PORTAL_AUTH").then(|| "Bearer x".into())).unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].topic, "fanout.webhook.lab-portal.v1");
        assert_eq!(cfg.fanout.webhook_topics(), vec!["fanout.webhook.lab-portal.v1"]);
    }
}
