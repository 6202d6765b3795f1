//! Topic creation and verification at start-up, and waiting for the cluster to be reachable.
//!
//! A service that writes into a topic with the wrong shape (too few partitions breaks per-key
//! order assumptions after a resize; a non-compacted `fhir.*` topic grows without bound) must
//! refuse to start with a precise message instead of running. Missing topics are created with
//! the configured shape so a fresh environment needs no manual step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{BusConfig, RetryConfig, TopicDefaults};
use crate::context::BusContext;
use crate::error::BusError;
use crate::shutdown::Shutdown;

/// The wanted shape of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `cleanup.policy=compact` (current-state topics) instead of `delete`.
    pub compacted: bool,
    /// Extra topic configs applied at creation (not verified afterwards).
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// `name` with the default shape; `fhir.*` topics (current state per resource id) are
    /// compacted, every other topic keeps history.
    pub fn with_defaults(name: &str, d: &TopicDefaults) -> Self {
        Self::shaped(name, d, Self::is_current_state(name))
    }

    /// Whether `name` is a current-state topic by its name (`fhir.*`).
    pub fn is_current_state(name: &str) -> bool {
        name.starts_with("fhir.")
    }

    /// `name` with the default shape of a current-state (compacted) topic or of a flow topic.
    pub fn shaped(name: &str, d: &TopicDefaults, compacted: bool) -> Self {
        Self {
            name: name.to_string(),
            partitions: if compacted { d.current_state_partitions } else { d.partitions },
            replication_factor: d.replication_factor,
            compacted,
            configs: d.configs.clone(),
        }
    }
}

/// What an existing topic looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicShape {
    pub partitions: i32,
    pub replication_factor: i32,
    pub cleanup_policy: String,
}

/// Differences between `spec` and an existing `shape`, in words; empty when it fits.
pub fn shape_problems(spec: &TopicSpec, shape: &TopicShape) -> Vec<String> {
    let mut p = Vec::new();
    if shape.partitions != spec.partitions {
        // Partitions cannot be taken away and adding some moves keys: the setting follows the topic.
        let setting = if spec.compacted { "current_state_partitions" } else { "partitions" };
        p.push(format!(
            "{} partitions, expected {} (set [bus.topics] {setting} = {} to keep it)",
            shape.partitions, spec.partitions, shape.partitions
        ));
    }
    if shape.replication_factor != spec.replication_factor {
        p.push(format!("replication factor {}, expected {}", shape.replication_factor, spec.replication_factor));
    }
    let compacted = shape.cleanup_policy.split(',').any(|s| s.trim() == "compact");
    if compacted != spec.compacted {
        p.push(format!(
            "cleanup.policy={}, expected {}",
            shape.cleanup_policy,
            if spec.compacted { "compact" } else { "delete" }
        ));
    }
    p
}

fn admin(cfg: &BusConfig, name: &str) -> Result<Arc<AdminClient<BusContext>>, BusError> {
    cfg.kafka
        .to_client_config()
        .create_with_context(BusContext::new(format!("{name}/admin")))
        .map(Arc::new)
        .map_err(|e| BusError::Config(e.to_string()))
}

/// Waits until the cluster answers a metadata request, retrying with exponential backoff and
/// a log line per attempt. Gives up after `retry.give_up_after_ms` with
/// [`BusError::BrokerUnavailable`], or with [`BusError::ShutDown`] on shutdown. Never panics.
pub async fn wait_for_kafka(cfg: &BusConfig, retry: &RetryConfig, shutdown: &Shutdown) -> Result<(), BusError> {
    let client = admin(cfg, "startup")?;
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // Each attempt waits longer (1 s, 2 s, … 5 s) but never past the overall budget, so a
        // slow cluster still answers and a dead one is reported on time.
        let mut per_attempt = Duration::from_secs(u64::from(attempt.min(5)));
        if let Some(limit) = retry.give_up_after() {
            per_attempt = per_attempt.min(limit.saturating_sub(started.elapsed()).max(Duration::from_millis(200)));
        }
        let c = client.clone();
        let res = tokio::task::spawn_blocking(move || c.inner().fetch_metadata(None, per_attempt))
            .await
            .map_err(|e| BusError::Join(e.to_string()))?;
        let last_error = match res {
            Ok(md) if !md.brokers().is_empty() => {
                if attempt > 1 {
                    tracing::info!(attempt, "Kafka reachable again");
                }
                return Ok(());
            }
            Ok(_) => "metadata lists no brokers".to_string(),
            Err(e) => e.to_string(),
        };
        let waited = started.elapsed();
        if retry.give_up_after().is_some_and(|limit| waited >= limit) {
            return Err(BusError::BrokerUnavailable {
                bootstrap: cfg.kafka.bootstrap_servers.clone(),
                attempts: attempt,
                waited_ms: waited.as_millis() as u64,
                last_error,
            });
        }
        let delay = retry.delay(attempt);
        tracing::warn!(
            bootstrap = %cfg.kafka.bootstrap_servers,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            error = %last_error,
            "Kafka not reachable yet"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return Err(BusError::ShutDown("waiting for Kafka")),
        }
    }
}

/// Reads the shape of `topic`, or `None` if it does not exist.
pub async fn describe_topic(cfg: &BusConfig, topic: &str) -> Result<Option<TopicShape>, BusError> {
    let client = admin(cfg, "topics")?;
    describe_with(&client, topic).await
}

async fn describe_with(client: &Arc<AdminClient<BusContext>>, topic: &str) -> Result<Option<TopicShape>, BusError> {
    let unreadable = |detail: String| BusError::TopicUnreadable { topic: topic.to_string(), detail };
    let c = client.clone();
    let t = topic.to_string();
    let md = tokio::task::spawn_blocking(move || c.inner().fetch_metadata(Some(&t), Duration::from_secs(10)))
        .await
        .map_err(|e| BusError::Join(e.to_string()))?
        .map_err(|e| unreadable(format!("fetching its metadata: {e}")))?;
    let Some(mt) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match mt.error() {
        None => {}
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Ok(None);
        }
        Some(e) => return Err(unreadable(format!("metadata error {:?}", RDKafkaErrorCode::from(e)))),
    }
    let partitions = mt.partitions().len() as i32;
    let replication_factor = mt.partitions().first().map(|p| p.replicas().len() as i32).unwrap_or(0);
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = client
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| unreadable(format!("describing its configs: {e}")))?;
    let cleanup_policy = match res.into_iter().next() {
        Some(Ok(r)) => r
            .entries
            .iter()
            .find(|e| e.name == "cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into()),
        Some(Err(code)) => return Err(unreadable(format!("cannot read its configs: {code:?}"))),
        None => "delete".into(),
    };
    Ok(Some(TopicShape { partitions, replication_factor, cleanup_policy }))
}

/// Runs `op` until it succeeds or fails with an error [`settles`] does not forgive, asking
/// again with the start-up backoff (`[bus.startup_retry]`) while the broker cannot yet describe
/// or create a topic: just restarted, still electing leaders, or a topic made a moment ago and
/// not yet in metadata. Past the backoff's budget, the last error.
async fn until_settled<T, F, Fut>(retry: &RetryConfig, mut op: F) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BusError>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if settles(&e) && retry.give_up_after().is_none_or(|limit| started.elapsed() < limit) => {
                let delay = retry.delay(attempt);
                tracing::info!(attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "topic not settled yet; asking again");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors that pass on their own while a broker starts or a topic is being made; a wrong shape,
/// a refused creation or a bad configuration does not.
fn settles(e: &BusError) -> bool {
    matches!(e, BusError::TopicUnreadable { .. } | BusError::Kafka { .. })
}

/// Asks the cluster to create `spec`; `Ok(false)` when another client made it first.
async fn create(client: &Arc<AdminClient<BusContext>>, spec: &TopicSpec) -> Result<bool, BusError> {
    let policy = if spec.compacted { "compact" } else { "delete" };
    let mut nt = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(spec.replication_factor))
        .set("cleanup.policy", policy);
    for (k, v) in &spec.configs {
        nt = nt.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = client.create_topics([&nt], &opts).await.map_err(|e| BusError::kafka("create topic", e))?;
    match res.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        // The controller is moving or busy: the same request succeeds a moment later.
        Some(Err((
            _,
            code @ (RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NetworkException),
        ))) => Err(BusError::TopicUnreadable { topic: spec.name.clone(), detail: format!("creating it: {code:?}") }),
        Some(Err((_, code))) => Err(BusError::TopicCreate { topic: spec.name.clone(), detail: format!("{code:?}") }),
        None => Err(BusError::TopicCreate { topic: spec.name.clone(), detail: "no result".into() }),
    }
}

/// Creates missing topics and verifies existing ones against `specs`. Fails on the first topic
/// whose shape differs, naming every difference. A broker that cannot answer yet (restarting,
/// electing leaders) is asked again within `[bus.startup_retry]`, per topic.
pub async fn ensure_topics(cfg: &BusConfig, specs: &[TopicSpec]) -> Result<(), BusError> {
    let client = admin(cfg, "topics")?;
    for spec in specs {
        let retry = &cfg.startup_retry;
        if let Some(shape) = until_settled(retry, || describe_with(&client, &spec.name)).await? {
            verify(spec, &shape)?;
            continue;
        }
        if until_settled(retry, || create(&client, spec)).await? {
            tracing::info!(topic = %spec.name, partitions = spec.partitions, compacted = spec.compacted, "topic created");
        }
        // Metadata can lag creation by a moment: ask until it shows the topic.
        let shape = until_settled(retry, || async {
            match describe_with(&client, &spec.name).await? {
                Some(shape) if shape.partitions > 0 => Ok(shape),
                _ => Err(BusError::TopicUnreadable {
                    topic: spec.name.clone(),
                    detail: "created but not in metadata yet".into(),
                }),
            }
        })
        .await?;
        verify(spec, &shape)?;
    }
    Ok(())
}

fn verify(spec: &TopicSpec, shape: &TopicShape) -> Result<(), BusError> {
    let problems = shape_problems(spec, shape);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BusError::TopicMismatch { topic: spec.name.clone(), problem: problems.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_topics_are_compacted_by_default() {
        let d = TopicDefaults::default();
        assert!(TopicSpec::with_defaults("fhir.patient.v1", &d).compacted);
        assert!(!TopicSpec::with_defaults("clinical.normalized.v1", &d).compacted);
    }

    #[test]
    fn current_state_topics_take_their_own_partition_count() {
        let d = TopicDefaults { partitions: 6, current_state_partitions: 2, ..TopicDefaults::default() };
        assert_eq!(TopicSpec::with_defaults("fhir.patient.v1", &d).partitions, 2);
        assert_eq!(TopicSpec::with_defaults("clinical.normalized.v1", &d).partitions, 6);
        // A compacted topic by configuration, whatever its name, is current state too.
        assert_eq!(TopicSpec::shaped("routes.latest.v1", &d, true).partitions, 2);
        assert_eq!(TopicSpec::shaped("routes.events.v1", &d, false).partitions, 6);
    }

    #[test]
    fn shape_problems_name_each_difference() {
        let d = TopicDefaults { current_state_partitions: 6, ..TopicDefaults::default() };
        let spec = TopicSpec::with_defaults("fhir.patient.v1", &d);
        let ok = TopicShape { partitions: 6, replication_factor: 1, cleanup_policy: "compact".into() };
        assert!(shape_problems(&spec, &ok).is_empty());
        let also_ok = TopicShape { cleanup_policy: "compact,delete".into(), ..ok.clone() };
        assert!(shape_problems(&spec, &also_ok).is_empty());
        let bad = TopicShape { partitions: 3, replication_factor: 2, cleanup_policy: "delete".into() };
        assert_eq!(
            shape_problems(&spec, &bad),
            vec![
                "3 partitions, expected 6 (set [bus.topics] current_state_partitions = 3 to keep it)".to_string(),
                "replication factor 2, expected 1".to_string(),
                "cleanup.policy=delete, expected compact".to_string()
            ]
        );
    }

    /// Quick retries, given up after `budget_ms`.
    fn quick(budget_ms: u64) -> RetryConfig {
        RetryConfig { initial_ms: 10, max_ms: 50, give_up_after_ms: Some(budget_ms) }
    }

    fn unreadable(n: u32) -> BusError {
        BusError::TopicUnreadable { topic: "t".into(), detail: format!("no leader ({n})") }
    }

    #[tokio::test]
    async fn a_topic_not_settled_yet_is_asked_again_until_it_is() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let got = until_settled(&quick(30_000), || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n < 3 { Err(unreadable(n)) } else { Ok(n) }
        })
        .await;
        assert_eq!(got.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_wrong_shape_or_refused_creation_is_not_asked_again() {
        for e in [
            BusError::TopicMismatch { topic: "t".into(), problem: "3 partitions, expected 6".into() },
            BusError::TopicCreate { topic: "t".into(), detail: "InvalidReplicationFactor".into() },
        ] {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let mut once = Some(e);
            let got: Result<(), BusError> = until_settled(&quick(30_000), || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let e = once.take().expect("asked only once");
                async move { Err(e) }
            })
            .await;
            assert!(got.is_err());
            assert_eq!(calls.into_inner(), 1);
        }
    }

    #[tokio::test]
    async fn a_topic_that_never_settles_ends_with_its_last_error_when_the_budget_is_spent() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let got: Result<(), BusError> = until_settled(&quick(500), || async {
            Err(unreadable(calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1))
        })
        .await;
        let n = calls.into_inner();
        assert!(n >= 2, "asked {n} times");
        assert_eq!(got.unwrap_err().to_string(), format!("cannot read the shape of topic t: no leader ({n})"));
    }
}
