//! `/healthz` (the process is alive), `/readyz` (every readiness check passes: e.g. Kafka
//! reachable, topics verified, store open) and `/metrics`, served on loopback by every service.
//! Kubernetes probes and Prometheus scrape these.

use crate::{Metrics, TelemetryError};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// Named readiness checks; the service is ready when every registered check is ready.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<&'static str, bool>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or updates) a check. A service registers its checks as not ready at start-up
    /// and flips them when the dependency is there.
    pub fn set(&self, check: &'static str, ready: bool) {
        self.checks.write().expect("health poisoned").insert(check, ready);
    }

    /// Ready when at least one check is registered and all pass.
    pub fn is_ready(&self) -> bool {
        let checks = self.checks.read().expect("health poisoned");
        !checks.is_empty() && checks.values().all(|r| *r)
    }

    /// The checks that are not ready, for the `/readyz` body and logs.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let checks = self.checks.read().expect("health poisoned");
        checks.iter().filter(|(_, r)| !**r).map(|(n, _)| *n).collect()
    }
}

#[derive(Clone)]
struct Endpoints {
    health: Health,
    metrics: Metrics,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Endpoints>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let missing = s.health.not_ready();
        let body = if missing.is_empty() {
            "not ready: no checks registered yet\n".to_string()
        } else {
            format!("not ready: {}\n", missing.join(", "))
        };
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(s): State<Endpoints>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

/// The router, for services that add routes of their own to the same port.
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .with_state(Endpoints { health, metrics })
}

/// Binds `addr` and serves the endpoints until `shutdown` resolves. Returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), TelemetryError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
    let app = router(health, metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    #[test]
    fn ready_only_when_every_check_passes() {
        let h = Health::new();
        assert!(!h.is_ready(), "no checks registered must not count as ready");
        h.set("kafka", false);
        h.set("topics", true);
        assert!(!h.is_ready());
        assert_eq!(h.not_ready(), vec!["kafka"]);
        h.set("kafka", true);
        assert!(h.is_ready());
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics_over_http() {
        let health = Health::new();
        let metrics = Metrics::new();
        health.set("kafka", false);
        metrics.count("ingest", Outcome::acknowledged);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve(SocketAddr::from(([127, 0, 0, 1], 0)), health.clone(), metrics, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();

        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("kafka"));
        health.set("kafka", true);
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(body.contains(r#"arteria_messages_total{stage="ingest",outcome="acknowledged"} 1"#), "{body}");

        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }
}
