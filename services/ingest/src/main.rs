//! The ingest service: configuration, wiring and lifecycle only (the logic is in `crates/ingest`).
//!
//! Start-up loads `[ingest.tls]` when set (a bad file stops it at once), waits for Kafka and the
//! registry (retrying with backoff), creates or verifies its topics, registers its schemas, then
//! opens the MLLP and HTTP listeners (TLS-only when configured) and reports ready. On SIGTERM
//! it stops accepting, lets connections finish the message in hand, flushes and exits.

use anyhow::Context;
use bus::topics::{TopicSpec, ensure_topics, wait_for_kafka};
use bus::{BusConfig, BusProducer, Registry};
use clap::Parser;
use ingest::{IngestConfig, KafkaPublisher, Session, TlsServer};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use telemetry::{Metrics, TelemetryConfig};

/// Arteria ingest: receives HL7 v2 over MLLP and HTTP and writes it to Kafka.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (every key has a default; ARTERIA__SECTION__KEY env vars override).
    #[arg(long, env = "ARTERIA_CONFIG")]
    config: Option<PathBuf>,
}

/// The documented defaults (`ingest.toml`), under the file and the environment.
const DEFAULTS: &str = include_str!("../ingest.toml");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    ingest: IngestConfig,
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
    let _telemetry = telemetry::init("ingest", &cfg.telemetry)?;
    cfg.bus.warn_if_transactions_unused("ingest");
    let metrics = Metrics::new();
    // Certificates first: a wrong path or a bad PEM stops start-up at once, naming the file.
    let tls = TlsServer::load(&cfg.ingest, &metrics).context("[ingest.tls] cannot be used")?;
    let (mllp_tls, http_tls) =
        (tls.clone().filter(|_| cfg.ingest.tls.mllp), tls.clone().filter(|_| cfg.ingest.tls.http));
    let lifecycle::Started { shutdown, health, health_task } =
        lifecycle::start("ingest", &cfg.telemetry, &["kafka", "topics", "registry", "listeners"], metrics.clone())
            .await?;

    wait_for_kafka(&cfg.bus, &cfg.bus.startup_retry, &shutdown).await.context("Kafka is not reachable")?;
    health.set("kafka", true);
    let specs: Vec<TopicSpec> = [&cfg.ingest.raw_topic, &cfg.ingest.dlq_topic]
        .into_iter()
        .map(|t| TopicSpec::with_defaults(t, &cfg.bus.topics))
        .collect();
    ensure_topics(&cfg.bus, &specs).await.context("topics are missing or have the wrong shape")?;
    health.set("topics", true);

    let registry = Registry::new(&cfg.bus.registry)?;
    registry.wait_ready(&cfg.bus, &shutdown).await.context("the schema registry is not reachable")?;
    let producer = BusProducer::new(&cfg.bus, "ingest")?;
    let publisher = KafkaPublisher::new(producer.clone(), &registry, &cfg.ingest.raw_topic, &cfg.ingest.dlq_topic);
    publisher.register_schemas().await.context("registering the ingest schemas")?;
    health.set("registry", true);

    let session = Arc::new(Session::new(Arc::new(cfg.ingest.clone()), publisher, metrics));
    let mllp = tokio::net::TcpListener::bind(cfg.ingest.mllp.addr)
        .await
        .with_context(|| format!("cannot listen for MLLP on {}", cfg.ingest.mllp.addr))?;
    tracing::info!(addr = %mllp.local_addr()?, tls = mllp_tls.is_some(), "MLLP listener up");
    let mllp_task = tokio::spawn(ingest::mllp_server::serve_with(
        mllp,
        mllp_tls,
        session.clone(),
        shutdown.clone(),
        Duration::from_secs(30),
    ));
    let http_task = if cfg.ingest.http.enabled {
        let http = tokio::net::TcpListener::bind(cfg.ingest.http.addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", cfg.ingest.http.addr))?;
        tracing::info!(addr = %http.local_addr()?, tls = http_tls.is_some(), "HTTP endpoint up");
        let stop = shutdown.clone();
        Some(tokio::spawn(ingest::http::serve_with(http, http_tls, session.clone(), async move { stop.wait().await })))
    } else {
        None
    };
    health.set("listeners", true);
    tracing::info!("ingest ready");

    shutdown.wait().await;
    health.set("listeners", false);
    let _ = mllp_task.await;
    if let Some(t) = http_task {
        let _ = t.await;
    }
    producer.flush(Duration::from_secs(30)).await.context("flushing the producer")?;
    let _ = health_task.await;
    tracing::info!("ingest stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/kubernetes/config/ingest.toml is a configuration of this service, reachable in a pod.
    #[test]
    fn the_kubernetes_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/config/ingest.toml");
        let cfg: Config = settings::load_with(DEFAULTS, Some(&path), Vec::<(String, String)>::new()).unwrap();
        assert_eq!(cfg.ingest.mllp.addr.to_string(), "0.0.0.0:2575");
        assert!(cfg.ingest.http.addr.ip().is_unspecified() && cfg.telemetry.http_addr.ip().is_unspecified());
        assert_eq!(cfg.ingest.processing_ids, vec!["P".to_string()]);
    }
}
