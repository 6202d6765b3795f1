//! The life of a transactional stage service (normalize, enrich, fan-out), written once:
//! health endpoint first (so probes answer during start-up), wait for Kafka, create or verify
//! the topics, wait for the registry, let the stage register its schemas, start the
//! transactional loop, run it until SIGTERM, and report readiness at each step. The service
//! binaries keep only their configuration and the construction of their processor.

use bus::topics::{TopicSpec, ensure_topics, wait_for_kafka};
use bus::txloop::{Processor, TxLoop, TxLoopConfig, TxLoopStats};
use bus::{BusConfig, BusError, Registry, Shutdown};
use std::future::Future;
use telemetry::{Health, Metrics, TelemetryConfig};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("health endpoint: {0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("cannot watch for SIGTERM: {0}")]
    Signals(#[from] std::io::Error),
    #[error("{what}: {source}")]
    Bus {
        what: &'static str,
        #[source]
        source: BusError,
    },
    #[error("registry: {0}")]
    Registry(#[from] bus::AvroError),
    #[error("{0}")]
    Setup(String),
}

fn bus_err(what: &'static str) -> impl FnOnce(BusError) -> StageError {
    move |source| StageError::Bus { what, source }
}

/// What every service holds from its first moment: the shutdown signal (SIGTERM/SIGINT), its
/// readiness checks (all registered not ready) and the running health/metrics endpoint, so
/// probes answer while the service waits for its dependencies.
pub struct Started {
    pub shutdown: Shutdown,
    pub health: Health,
    /// The endpoint's task; it ends after `shutdown` triggers.
    pub health_task: tokio::task::JoinHandle<()>,
}

/// librdkafka (and SQLite) allocate with the C library's malloc, not our allocator. glibc raises
/// its mmap threshold after a large block is freed, so librdkafka's fetch buffers (megabytes)
/// soon come from the heap and stay in it: tens of MB of a consumer's RSS. A fixed threshold
/// keeps blocks over 128 kB mmapped, so they go back to the system when freed.
fn return_large_c_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the Kafka clients start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// How often the C heap's free memory is handed back to the system (see [`trim_c_heap`]).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc keeps memory freed inside its heaps (SQLite's page buffers, librdkafka's small
/// allocations) and returns only what is free at a heap's very top, so a service's RSS stays at
/// its high-water mark: in the query service, half of its 107 MB after a load was free memory
/// (malloc_trim(0) took it to 54 MB). Trimming every few seconds returns it; what is reused
/// after a trim costs a page fault, which at this interval is noise.
async fn trim_c_heap(shutdown: Shutdown) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        // SAFETY: malloc_trim only releases free memory; it takes the heaps' own locks.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    shutdown.wait().await;
}

/// Starts the pieces of [`Started`] for service `name` with readiness `checks`.
pub async fn start(
    name: &'static str,
    telemetry: &TelemetryConfig,
    checks: &[&'static str],
    metrics: Metrics,
) -> Result<Started, StageError> {
    return_large_c_buffers();
    let shutdown = Shutdown::on_signals()?;
    tokio::spawn(trim_c_heap(shutdown.clone()));
    let health = Health::new();
    for check in checks {
        health.set(check, false);
    }
    let stop = shutdown.clone();
    let (addr, health_task) =
        telemetry::health::serve(telemetry.http_addr, health.clone(), metrics, async move { stop.wait().await })
            .await?;
    tracing::info!(service = name, %addr, "health and metrics endpoint up");
    Ok(Started { shutdown, health, health_task })
}

/// What a stage needs besides its processor.
pub struct StageSpec<'a> {
    pub name: &'static str,
    pub bus: &'a BusConfig,
    pub telemetry: &'a TelemetryConfig,
    /// Every topic the stage reads or writes (created with the default shape when missing).
    pub topics: Vec<String>,
    /// Topics among them that hold current state (cleanup.policy=compact), whatever their name.
    pub compacted: Vec<String>,
    pub loop_cfg: TxLoopConfig,
}

/// Runs a stage to completion. `make` builds the processor once the registry answers (it may
/// register schemas, returning an error to stop start-up); the returned stats are the loop's.
pub async fn run_stage<P, F, Fut>(spec: StageSpec<'_>, metrics: Metrics, make: F) -> Result<TxLoopStats, StageError>
where
    P: Processor,
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = Result<P, String>>,
{
    let Started { shutdown, health, health_task } =
        start(spec.name, spec.telemetry, &["kafka", "topics", "registry", "loop"], metrics.clone()).await?;

    let result = async {
        wait_for_kafka(spec.bus, &spec.bus.startup_retry, &shutdown)
            .await
            .map_err(bus_err("Kafka is not reachable"))?;
        health.set("kafka", true);
        let specs: Vec<TopicSpec> = spec
            .topics
            .iter()
            .map(|t| {
                TopicSpec::shaped(t, &spec.bus.topics, TopicSpec::is_current_state(t) || spec.compacted.contains(t))
            })
            .collect();
        ensure_topics(spec.bus, &specs).await.map_err(bus_err("topics are missing or have the wrong shape"))?;
        health.set("topics", true);
        let registry = Registry::new(&spec.bus.registry)?;
        registry.wait_ready(spec.bus, &shutdown).await.map_err(bus_err("the schema registry is not reachable"))?;
        let processor = make(registry.clone()).await.map_err(StageError::Setup)?;
        health.set("registry", true);
        let txloop = TxLoop::start(spec.bus, spec.loop_cfg, &registry, &shutdown)
            .await
            .map_err(bus_err("starting the transactional loop"))?;
        health.set("loop", true);
        tracing::info!(stage = spec.name, "ready");
        let lag_task = tokio::spawn(report_lag(spec.name, txloop.lag(), metrics.clone(), shutdown.clone()));
        let ran = txloop.run(&processor, &shutdown).await.map_err(bus_err("the transactional loop stopped"));
        lag_task.abort();
        ran
    }
    .await;
    health.set("loop", false);
    shutdown.trigger();
    let _ = health_task.await;
    if let Ok(s) = &result {
        tracing::info!(
            stage = spec.name,
            records_in = s.records_in,
            records_out = s.records_out,
            dead_lettered = s.dead_lettered,
            "stopped"
        );
    }
    result
}

/// Copies a consumer's lag report into the `consumer_lag` gauge until `shutdown`. The report
/// refreshes with librdkafka's statistics (every 5 s), so polling faster would add nothing.
pub async fn report_lag(stage: &'static str, lag: bus::context::LagReport, metrics: Metrics, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let now = lag.snapshot();
        metrics.set_lag(stage, now.iter().map(|p| (p.topic.as_str(), p.partition, p.lag)));
    }
}

/// Runs one record's processing inside a span that continues the record's trace, and gives
/// the outputs that span's `traceparent`, so exported traces join across services. Without an
/// OpenTelemetry exporter the span is not recorded and the loop's own child `traceparent`
/// applies instead.
pub async fn traced<F>(
    stage: &'static str,
    rec: &bus::InputRecord,
    work: F,
) -> Result<Vec<bus::txloop::Output>, bus::txloop::ProcessError>
where
    F: Future<Output = Result<Vec<bus::txloop::Output>, bus::txloop::ProcessError>>,
{
    use tracing::Instrument;
    let span = telemetry::propagation::record_span(stage, rec.headers.get_str(bus::headers::TRACEPARENT));
    let mut outputs = work.instrument(span.clone()).await?;
    if let Some(tp) = telemetry::propagation::traceparent(&span) {
        for o in &mut outputs {
            o.headers.set(bus::headers::TRACEPARENT, tp.clone().into_bytes());
        }
    }
    Ok(outputs)
}
