//! The query service: configuration, wiring and lifecycle only (the logic is in `crates/query`).
//!
//! Start-up opens (or, with `--rebuild`, recreates) the SQLite store, waits for Kafka and the
//! registry, starts the materialiser and the gRPC server, and reports ready once the store has
//! caught up with what the topics held at start (`[query] ready_after_catch_up`). On SIGTERM it
//! stops consuming (offsets of stored records are committed), checkpoints and closes the
//! store, and stops the gRPC server after in-flight calls.

use anyhow::Context;
use bus::topics::wait_for_kafka;
use bus::{BusConfig, Registry};
use clap::Parser;
use query::audit::{AuditConfig, Auditor};
use query::auth::{AuthConfig, Authenticator};
use query::{Materializer, QueryConfig, QueryService};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use telemetry::{Metrics, TelemetryConfig};

/// Arteria query: materialises the fhir.<type>.v1 topics and serves the gRPC query API.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (every key has a default; ARTERIA__SECTION__KEY env vars override).
    #[arg(long, env = "ARTERIA_CONFIG")]
    config: Option<PathBuf>,
    /// Delete the store and rebuild it from the topics (same as query.rebuild_on_start = true).
    #[arg(long)]
    rebuild: bool,
}

/// The documented defaults (`query.toml`), under the file and the environment.
const DEFAULTS: &str = include_str!("../query.toml");

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    query: QueryConfig,
    audit: AuditConfig,
    auth: AuthConfig,
    bus: BusConfig,
    telemetry: TelemetryConfig,
}

/// mimalloc: see the workspace Cargo.toml (allocation dominates conversion).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg: Config = settings::load_over(DEFAULTS, args.config.as_deref())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cfg, args.rebuild))
}

async fn run(cfg: Config, rebuild: bool) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("query", &cfg.telemetry)?;
    cfg.bus.warn_if_transactions_unused("query");
    let metrics = Metrics::new();
    // Certificates first: a wrong path or a bad PEM stops start-up at once, naming the file.
    let grpc_tls = cfg.query.tls.server_config().context("[query.tls] cannot be used")?;
    let lifecycle::Started { shutdown, health, health_task } = lifecycle::start(
        "query",
        &cfg.telemetry,
        &["store", "kafka", "registry", "grpc", "caught-up"],
        metrics.clone(),
    )
    .await?;

    let rebuild = rebuild || cfg.query.rebuild_on_start;
    let qc = cfg.query.clone();
    let store = tokio::task::spawn_blocking(move || query::open_store(&qc, rebuild))
        .await?
        .with_context(|| format!("cannot open the query store in {}", cfg.query.data_dir.display()))?;
    let store = Arc::new(store);
    let count = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.count()).await??
    };
    tracing::info!(path = %store.path().display(), resources = count, rebuild, "store open");
    health.set("store", true);

    wait_for_kafka(&cfg.bus, &cfg.bus.startup_retry, &shutdown).await.context("Kafka is not reachable")?;
    health.set("kafka", true);
    let registry = Registry::new(&cfg.bus.registry)?;
    registry.wait_ready(&cfg.bus, &shutdown).await.context("the schema registry is not reachable")?;
    health.set("registry", true);
    let auditor = Auditor::connect(&cfg.audit, &cfg.bus, &registry, &metrics).await.context("the audit trail")?;

    // The store keeps fhir_json; the typed copy beside it is not read.
    let materializer = Materializer::new(
        &cfg.bus,
        registry.skipping_on_decode(canonical::DERIVED_FIELDS),
        store.clone(),
        &cfg.query.subscription(),
        &cfg.query.group_prefix,
    )
    .context("cannot start the consumer")?
    .with_max_batch(cfg.query.max_batch)
    .with_sync_interval(std::time::Duration::from_millis(cfg.query.sync_interval_ms))
    .with_metrics(metrics.clone());
    let lag_task = tokio::spawn(lifecycle::report_lag("query", materializer.lag(), metrics.clone(), shutdown.clone()));
    let catch_up_task = {
        let (bus, q, lag, health, shutdown) =
            (cfg.bus.clone(), cfg.query.clone(), materializer.lag(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if !q.ready_after_catch_up || query::catch_up::wait(&bus, &q.subscription(), lag, &shutdown).await {
                health.set("caught-up", true);
            }
        })
    };
    let mut consumer_task = tokio::spawn(materializer.run(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(cfg.query.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", cfg.query.grpc_addr))?;
    tracing::info!(addr = %listener.local_addr()?, tls = grpc_tls.is_some(), "gRPC listener up");
    let auth = Authenticator::from_config(&cfg.auth).await.context("authentication")?;
    let service = QueryService::new(store.clone(), shutdown.clone()).with_auditor(auditor).with_authenticator(auth);
    let stop = shutdown.clone();
    let grpc_task = tokio::spawn(query::server::serve_with(
        listener,
        grpc_tls.map(|t| (t, query::server::Handshakes::registered(&metrics))),
        service.clone(),
        async move { stop.wait().await },
    ));
    health.set("grpc", true);
    let rest_task = if cfg.query.fhir_rest_enabled {
        let listener = tokio::net::TcpListener::bind(cfg.query.fhir_rest_addr)
            .await
            .with_context(|| format!("cannot listen for FHIR REST on {}", cfg.query.fhir_rest_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "FHIR REST facade up");
        let stop = shutdown.clone();
        Some(tokio::spawn(query::rest::serve(listener, service, async move { stop.wait().await })))
    } else {
        None
    };
    tracing::info!("query ready");

    // A consumer failure (the store cannot be written) stops the service: continuing would
    // serve an ever staler view while looking healthy.
    let early = tokio::select! {
        r = &mut consumer_task => Some(r),
        _ = shutdown.wait() => None,
    };
    shutdown.trigger();
    // The loop sees the trigger, leaves the group and checkpoints the store.
    let consumed = match early {
        Some(r) => r,
        None => consumer_task.await,
    };
    health.set("grpc", false);
    let served = grpc_task.await;
    if let Some(t) = rest_task {
        t.await?.context("the FHIR REST facade failed")?;
    }
    let _ = health_task.await;
    lag_task.abort();
    catch_up_task.abort();
    consumed?.context("materialising the topics failed")?;
    served?.context("the gRPC server failed")?;
    tracing::info!("query stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/kubernetes/config/query.toml is a configuration of this service: listening in the
    /// pod, the store on its volume, and no anonymous reads.
    #[test]
    fn the_kubernetes_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/config/query.toml");
        let cfg: Config = settings::load_with(DEFAULTS, Some(&path), Vec::<(String, String)>::new()).unwrap();
        assert_eq!(cfg.query.grpc_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(cfg.query.data_dir, std::path::Path::new("/var/lib/arteria/query"));
        assert_eq!(cfg.auth.mode, query::auth::AuthMode::Jwt);
        assert!(cfg.telemetry.http_addr.ip().is_unspecified());
    }
}
