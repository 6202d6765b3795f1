//! Topics into the store: the at-least-once consumer loop.
//!
//! Each record is decoded (Avro `FhirResource`, writer schema from the registry), upserted,
//! and only then its offset committed; a crash replays from the last commit and the idempotent
//! upsert absorbs the replay. The consumer group belongs to the store file (kept in its `meta`
//! table): a new or deleted store gets a new group and so reads the topics from the start,
//! which is how the store is rebuilt — Kafka is the source of truth.
//!
//! Records that can never be stored (not Avro, JSON that is not an object) are logged by
//! position and skipped so one bad record cannot stop the view; they stay in the topic.
//! A registry outage is waited out (nothing committed meanwhile); a store failure stops the
//! loop with an error, since continuing would commit offsets of records not stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bus::{AvroSerde, BusConfig, BusConsumer, BusError, InputRecord, Registry, Shutdown};
use canonical::current::FhirResource;
use telemetry::{Metrics, Outcome};

use crate::store::{Store, StoreError, Upsert};

const STAGE: &str = "query";
const GROUP_KEY: &str = "consumer_group";

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Join(String),
}

/// Counts of what the loop did, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records read from Kafka.
    pub received: AtomicU64,
    /// Inserted or replaced a stored version.
    pub applied: AtomicU64,
    /// An equal or newer version was already stored.
    pub ignored: AtomicU64,
    /// Tombstones applied.
    pub deleted: AtomicU64,
    /// Could not be stored (logged by position) and skipped.
    pub skipped: AtomicU64,
}

impl Progress {
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The consumer group of `store`: the one recorded in it, else a new `<prefix>.<uuid>`.
pub fn consumer_group(store: &Store, prefix: &str) -> Result<String, StoreError> {
    if let Some(g) = store.meta(GROUP_KEY)? {
        return Ok(g);
    }
    let g = format!("{prefix}.{}", uuid::Uuid::now_v7());
    store.set_meta(GROUP_KEY, &g)?;
    Ok(g)
}

/// The resource type named by a topic `...<type>.v<N>` (lower case), for tombstones.
fn type_of_topic(topic: &str) -> Option<&str> {
    let (rest, version) = topic.rsplit_once('.')?;
    if !version.starts_with('v') {
        return None;
    }
    Some(rest.rsplit_once('.').map_or(rest, |(_, t)| t))
}

/// An Avro failure as it may be logged: a decode error's detail can quote field values of the
/// record (PHI), so only its schema id and type are kept.
fn loggable(e: &bus::AvroError) -> String {
    match e {
        bus::AvroError::Decode {
            schema_id,
            type_name,
            ..
        } => {
            format!(
                "cannot decode Avro value (writer schema id {schema_id}) as {type_name} (detail withheld: may quote record content)"
            )
        }
        other => other.to_string(),
    }
}

/// The loop.
pub struct Materializer {
    store: Arc<Store>,
    consumer: BusConsumer,
    registry: Registry,
    serdes: HashMap<String, AvroSerde<FhirResource>>,
    metrics: Option<Metrics>,
    progress: Arc<Progress>,
    group: String,
}

impl Materializer {
    /// Subscribes (topic names, or patterns starting with `^`) in the store's consumer group.
    pub fn new(
        bus: &BusConfig,
        registry: Registry,
        store: Arc<Store>,
        subscription: &[String],
        group_prefix: &str,
    ) -> Result<Self, MaterializeError> {
        let group = consumer_group(&store, group_prefix)?;
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        let consumer = BusConsumer::new(bus, &group, &topics, "query")?;
        Ok(Self {
            store,
            consumer,
            registry,
            serdes: HashMap::new(),
            metrics: None,
            progress: Arc::default(),
            group,
        })
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    fn count(&self, outcome: Outcome) {
        if let Some(m) = &self.metrics {
            m.count(STAGE, outcome);
        }
    }

    /// Runs until `shutdown`; then leaves the group (pending commits complete) and checkpoints.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), MaterializeError> {
        tracing::info!(group = %self.group, "materialising FHIR topics");
        let result = loop {
            let rec = tokio::select! {
                r = self.consumer.recv() => r,
                _ = shutdown.wait() => break Ok(()),
            };
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.progress.received.fetch_add(1, Ordering::Relaxed);
            self.count(Outcome::received);
            match self.handle(&rec, &shutdown).await {
                Ok(true) => {}
                // Shut down while waiting for the registry: not handled, not committed.
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            if let Err(e) = self.consumer.commit(&rec) {
                tracing::warn!(error = %e, topic = %rec.topic, partition = rec.partition, offset = rec.offset, "commit failed; the record may be replayed");
            }
        };
        let store = self.store.clone();
        self.consumer.close().await?;
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| MaterializeError::Join(e.to_string()))??;
        tracing::info!("materialiser stopped");
        result
    }

    /// Stores one record. Ok(false): shutdown came first.
    async fn handle(
        &mut self,
        rec: &InputRecord,
        shutdown: &Shutdown,
    ) -> Result<bool, MaterializeError> {
        let Some(value) = &rec.value else {
            return self.tombstone(rec).await.map(|_| true);
        };
        let serde = self
            .serdes
            .entry(rec.topic.clone())
            .or_insert_with(|| self.registry.value_serde::<FhirResource>(&rec.topic))
            .clone();
        let mut attempt = 0u32;
        let resource = loop {
            match serde.decode(value).await {
                Ok(r) => break r,
                Err(e) if e.is_transient() => {
                    attempt += 1;
                    let wait = Duration::from_millis((200u64 << attempt.min(6)).min(10_000));
                    tracing::warn!(error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => return Ok(false),
                    }
                }
                Err(e) => {
                    self.skip(rec, &loggable(&e));
                    return Ok(true);
                }
            }
        };
        let store = self.store.clone();
        let outcome =
            tokio::task::spawn_blocking(move || store.upsert(&resource).map(|u| (u, resource)))
                .await
                .map_err(|e| MaterializeError::Join(e.to_string()))?;
        match outcome {
            Ok((Upsert::Inserted | Upsert::Updated, r)) => {
                tracing::debug!(resource_type = %r.resource_type, id = %r.id, "stored");
                self.progress.applied.fetch_add(1, Ordering::Relaxed);
                self.count(Outcome::acknowledged);
            }
            Ok((Upsert::Ignored, _)) => {
                self.progress.ignored.fetch_add(1, Ordering::Relaxed);
                self.count(Outcome::duplicate);
            }
            Err(e @ StoreError::BadJson { .. }) => self.skip(rec, &e.to_string()),
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }

    async fn tombstone(&self, rec: &InputRecord) -> Result<(), MaterializeError> {
        let (Some(t), Some(id)) = (
            type_of_topic(&rec.topic),
            rec.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()),
        ) else {
            self.skip(
                rec,
                "tombstone without a UTF-8 key or on a topic not named <type>.v<N>",
            );
            return Ok(());
        };
        let (t, id, store) = (t.to_string(), id.to_string(), self.store.clone());
        let existed = tokio::task::spawn_blocking(move || store.delete(&t, &id))
            .await
            .map_err(|e| MaterializeError::Join(e.to_string()))??;
        if existed {
            self.progress.deleted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn skip(&self, rec: &InputRecord, why: &str) {
        // Position and error only: the error texts name types, ids and schema ids, not content.
        tracing::error!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %why, "record cannot be stored; skipped (it stays in the topic)");
        self.progress.skipped.fetch_add(1, Ordering::Relaxed);
        self.count(Outcome::rejected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_logged_without_their_detail() {
        let e = bus::AvroError::Decode {
            schema_id: 7,
            type_name: "FhirResource",
            detail: "String(\"Jane Doe\")".into(),
        };
        let l = loggable(&e);
        assert!(l.contains("schema id 7") && !l.contains("Jane"), "{l}");
        let w = bus::AvroError::Wire(bus::avro::wire::WireError::BadMagic(b'n'));
        assert_eq!(loggable(&w), w.to_string());
    }

    #[test]
    fn topic_types() {
        assert_eq!(type_of_topic("fhir.patient.v1"), Some("patient"));
        assert_eq!(
            type_of_topic("it.q.1.2.fhir.diagnosticreport.v1"),
            Some("diagnosticreport")
        );
        assert_eq!(type_of_topic("patient.v2"), Some("patient"));
        assert_eq!(type_of_topic("nodots"), None);
        assert_eq!(type_of_topic("fhir.patient.x"), None);
    }

    #[test]
    fn group_is_kept_with_the_store_and_new_for_a_new_store() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), 4).unwrap();
        let g1 = consumer_group(&s, "arteria-query").unwrap();
        assert!(g1.starts_with("arteria-query."));
        assert_eq!(consumer_group(&s, "arteria-query").unwrap(), g1);
        drop(s);
        Store::remove(d.path()).unwrap();
        let s = Store::open(d.path(), 4).unwrap();
        assert_ne!(consumer_group(&s, "arteria-query").unwrap(), g1);
    }
}
