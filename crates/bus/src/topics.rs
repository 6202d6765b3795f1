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
        Self {
            name: name.to_string(),
            partitions: d.partitions,
            replication_factor: d.replication_factor,
            compacted: name.starts_with("fhir."),
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
        p.push(format!("{} partitions, expected {}", shape.partitions, spec.partitions));
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
    let c = client.clone();
    let t = topic.to_string();
    let md = tokio::task::spawn_blocking(move || c.inner().fetch_metadata(Some(&t), Duration::from_secs(10)))
        .await
        .map_err(|e| BusError::Join(e.to_string()))?
        .map_err(|e| BusError::kafka("fetch topic metadata", e))?;
    let Some(mt) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match mt.error() {
        None => {}
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Ok(None);
        }
        Some(e) => {
            return Err(BusError::TopicMismatch {
                topic: topic.to_string(),
                problem: format!("metadata error {:?}", RDKafkaErrorCode::from(e)),
            });
        }
    }
    let partitions = mt.partitions().len() as i32;
    let replication_factor = mt.partitions().first().map(|p| p.replicas().len() as i32).unwrap_or(0);
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = client
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| BusError::kafka("describe topic configs", e))?;
    let cleanup_policy = match res.into_iter().next() {
        Some(Ok(r)) => r
            .entries
            .iter()
            .find(|e| e.name == "cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "delete".into()),
        Some(Err(code)) => {
            return Err(BusError::TopicMismatch {
                topic: topic.to_string(),
                problem: format!("cannot read its configs: {code:?}"),
            });
        }
        None => "delete".into(),
    };
    Ok(Some(TopicShape { partitions, replication_factor, cleanup_policy }))
}

/// Creates missing topics and verifies existing ones against `specs`. Fails on the first topic
/// whose shape differs, naming every difference.
pub async fn ensure_topics(cfg: &BusConfig, specs: &[TopicSpec]) -> Result<(), BusError> {
    let client = admin(cfg, "topics")?;
    for spec in specs {
        if let Some(shape) = describe_with(&client, &spec.name).await? {
            verify(spec, &shape)?;
            continue;
        }
        let policy = if spec.compacted { "compact" } else { "delete" };
        let mut nt = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(spec.replication_factor))
            .set("cleanup.policy", policy);
        for (k, v) in &spec.configs {
            nt = nt.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let res = client.create_topics([&nt], &opts).await.map_err(|e| BusError::kafka("create topic", e))?;
        match res.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(topic = %spec.name, partitions = spec.partitions, policy, "topic created")
            }
            // Another instance created it first: verify what it made.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
            Some(Err((_, code))) => {
                return Err(BusError::TopicCreate { topic: spec.name.clone(), detail: format!("{code:?}") });
            }
            None => {
                return Err(BusError::TopicCreate { topic: spec.name.clone(), detail: "no result".into() });
            }
        }
        // Metadata can lag creation by a moment; poll until it shows the topic.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(shape) = describe_with(&client, &spec.name).await?
                && shape.partitions > 0
            {
                verify(spec, &shape)?;
                break;
            }
            if Instant::now() > deadline {
                return Err(BusError::TopicCreate {
                    topic: spec.name.clone(),
                    detail: "created but not visible in metadata after 30 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    fn shape_problems_name_each_difference() {
        let spec = TopicSpec::with_defaults("fhir.patient.v1", &TopicDefaults::default());
        let ok = TopicShape { partitions: 6, replication_factor: 1, cleanup_policy: "compact".into() };
        assert!(shape_problems(&spec, &ok).is_empty());
        let also_ok = TopicShape { cleanup_policy: "compact,delete".into(), ..ok.clone() };
        assert!(shape_problems(&spec, &also_ok).is_empty());
        let bad = TopicShape { partitions: 3, replication_factor: 2, cleanup_policy: "delete".into() };
        assert_eq!(
            shape_problems(&spec, &bad),
            vec![
                "3 partitions, expected 6".to_string(),
                "replication factor 2, expected 1".to_string(),
                "cleanup.policy=delete, expected compact".to_string()
            ]
        );
    }
}
