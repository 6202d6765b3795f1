//! Topics into the store: the at-least-once consumer loop.
//!
//! Each record is decoded (Avro `FhirResource`, writer schema from the registry) and upserted;
//! its offset is committed to Kafka only once the store has made it durable (`Store::sync`,
//! every `sync_interval`, not per batch: the store commits without waiting on the disk). A
//! crash replays from the last commit and the idempotent upsert absorbs the replay. The consumer group belongs to the store file (kept in its `meta`
//! table): a new or deleted store gets a new group and so reads the topics from the start,
//! which is how the store is rebuilt — Kafka is the source of truth.
//!
//! Records that can never be stored (not Avro, JSON that is not an object) are logged by
//! position and skipped so one bad record cannot stop the view; they stay in the topic.
//! A registry outage is waited out (nothing committed meanwhile); a store failure stops the
//! loop with an error, since continuing would commit offsets of records not stored.
//!
//! Storing is where a message becomes queryable, so the end of the pipeline's latency is
//! observed here: ingest's accept time travels in the `arteria-received-at` header, and each
//! stored record adds `now - received_at` to `arteria_e2e_latency_seconds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use bus::{AvroSerde, BusConfig, BusConsumer, BusError, InputRecord, Registry, Shutdown};
use canonical::current::FhirResource;
use telemetry::{Metrics, Outcome};

use crate::store::{Applied, Store, StoreError, Upsert, Write};

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
    /// Records fully handled (stored, ignored, deleted or skipped): queryable, though their
    /// offsets may wait for the next durable sync to be committed.
    pub processed: AtomicU64,
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
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Acquire)
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
        bus::AvroError::Decode { schema_id, type_name, .. } => {
            format!(
                "cannot decode Avro value (writer schema id {schema_id}) as {type_name} (detail withheld: may quote record content)"
            )
        }
        other => other.to_string(),
    }
}

/// 1 ms .. ~2 min in steps of 20 %: fine enough that a quantile read between bucket bounds is
/// within a few percent, and long enough to measure a backlog draining.
fn e2e_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 1.2, 65))
}

/// Seconds from `received_micros` to `now_micros`; a clock step backwards gives 0, not a panic.
fn e2e_seconds(received_micros: i64, now_micros: i64) -> f64 {
    (now_micros - received_micros).max(0) as f64 / 1e6
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// What to write for one record.
enum Item {
    Upsert(FhirResource),
    Delete(String, String),
}

/// A batch back from the store: what was written and how each write went.
struct Written {
    batch: Vec<InputRecord>,
    items: Vec<(usize, Item)>,
    applied: Result<Vec<Applied>, StoreError>,
}
type StoreTask = tokio::task::JoinHandle<Written>;

/// A sync's outcome and the positions it made durable.
type SyncDone = (Result<(), StoreError>, HashMap<(String, i32), i64>);
type SyncTask = tokio::task::JoinHandle<SyncDone>;

/// Awaits the task in `slot`; an empty slot never completes (its `select!` branch is off anyway).
async fn join<T>(slot: &mut Option<tokio::task::JoinHandle<T>>) -> Result<T, MaterializeError> {
    match slot.as_mut() {
        Some(task) => task.await.map_err(|e| MaterializeError::Join(e.to_string())),
        None => std::future::pending().await,
    }
}

/// The loop.
pub struct Materializer {
    store: Arc<Store>,
    consumer: BusConsumer,
    registry: Registry,
    serdes: HashMap<String, AvroSerde<FhirResource>>,
    metrics: Option<Metrics>,
    e2e: Option<Histogram>,
    progress: Arc<Progress>,
    group: String,
    max_batch: usize,
    sync_interval: Duration,
    /// Next offset per partition of what is stored but not yet known durable: committed to
    /// Kafka after the next sync.
    pending: HashMap<(String, i32), i64>,
    last_sync: Instant,
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
            e2e: None,
            progress: Arc::default(),
            group,
            max_batch: 500,
            sync_interval: Duration::from_millis(1000),
            pending: HashMap::new(),
            last_sync: Instant::now(),
        })
    }

    /// At most this many records per store transaction (default 500).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// How often stored records are made durable and their offsets committed (default 1 s):
    /// the most a crash replays, and what a power cut may take back (replayed as well).
    pub fn with_sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d;
        self
    }

    /// Counts into `metrics` and registers `arteria_e2e_latency_seconds` there.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        let e2e = e2e_histogram();
        metrics.register(
            "e2e_latency_seconds",
            "From ingest accepting a message to a resource of it committed in the query store",
            e2e.clone(),
        );
        self.e2e = Some(e2e);
        self.metrics = Some(metrics);
        self
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The consumer's lag per assigned partition (for the consumer_lag metric).
    pub fn lag(&self) -> bus::context::LagReport {
        self.consumer.lag()
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    fn count(&self, outcome: Outcome) {
        if let Some(m) = &self.metrics {
            m.count(STAGE, outcome);
        }
    }

    /// Runs until `shutdown`; then checkpoints, commits what is stored and leaves the group.
    ///
    /// Records already waiting in the consumer are taken together (up to `max_batch`) and
    /// stored in one transaction, so a rebuild runs at batch speed while a trickle of live
    /// records is still stored one by one as it arrives.
    ///
    /// Three things overlap, each at most once in flight: the store writing one batch (on a
    /// blocking thread), the loop reading and decoding the next, and a sync making earlier
    /// batches durable. Batches are written in order, and a position enters `pending` only
    /// once its batch is written, so a sync only ever commits offsets of stored records.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), MaterializeError> {
        tracing::info!(group = %self.group, max_batch = self.max_batch, sync_ms = self.sync_interval.as_millis() as u64, "materialising FHIR topics");
        let mut storing: Option<StoreTask> = None;
        let mut syncing: Option<SyncTask> = None;
        let result = loop {
            let next_sync = tokio::time::Instant::from_std(self.last_sync + self.sync_interval);
            let first = tokio::select! {
                r = self.consumer.recv() => r,
                done = join(&mut storing), if storing.is_some() => {
                    storing = None;
                    match self.stored(done) {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    }
                }
                done = join(&mut syncing), if syncing.is_some() => {
                    syncing = None;
                    match self.synced(done) {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    }
                }
                // Idle with stored records not yet durable: sync now rather than at the next record.
                _ = tokio::time::sleep_until(next_sync), if syncing.is_none() && !self.pending.is_empty() => {
                    syncing = Some(self.start_sync());
                    continue;
                }
                _ = shutdown.wait() => break Ok(()),
            };
            let first = match first {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                // Only what is already there: a pending recv is dropped, which takes nothing.
                match futures::FutureExt::now_or_never(self.consumer.recv()) {
                    Some(Ok(r)) => batch.push(r),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    None => break,
                }
            }
            self.progress.received.fetch_add(batch.len() as u64, Ordering::Relaxed);
            for _ in &batch {
                self.count(Outcome::received);
            }
            let items = match self.decode_batch(&batch, &shutdown).await {
                Ok(Some(items)) => items,
                // Shut down while waiting for the registry: this batch is neither stored nor committed.
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            // The batch before this one is written first (batches are applied in order).
            if storing.is_some() {
                let done = join(&mut storing).await;
                storing = None;
                if let Err(e) = self.stored(done) {
                    break Err(e);
                }
            }
            storing = Some(self.start_store(batch, items));
            if syncing.is_none() && !self.pending.is_empty() && self.last_sync.elapsed() >= self.sync_interval {
                syncing = Some(self.start_sync());
            }
        };
        // What is in flight finishes (a batch being written is kept, a sync's offsets are
        // committed if it succeeded); after a failure, only what already succeeded counts.
        let mut result = result;
        if storing.is_some() {
            let done = join(&mut storing).await;
            if let Err(e) = self.stored(done) {
                result = result.and(Err(e));
            }
        }
        if syncing.is_some() {
            let done = join(&mut syncing).await;
            if let Err(e) = self.synced(done) {
                result = result.and(Err(e));
            }
        }
        // Checkpoint so the file alone is complete, then sync explicitly (a checkpoint held up
        // by a reader may skip its WAL sync), and only then commit what was stored.
        let store = self.store.clone();
        let checkpointed = tokio::task::spawn_blocking(move || store.checkpoint().and_then(|()| store.sync()))
            .await
            .map_err(|e| MaterializeError::Join(e.to_string()))?;
        if checkpointed.is_ok() {
            let positions = std::mem::take(&mut self.pending);
            self.commit(&positions);
        }
        self.consumer.close().await?;
        checkpointed?;
        tracing::info!("materialiser stopped");
        result
    }

    /// Starts making what is stored durable in the background, with the positions it covers,
    /// then checkpoints the WAL into the file, also beside the writer (the checkpoint only
    /// delays the offsets' commit; a failed one is retried at the next sync, and the writer's
    /// own checkpoint is the backstop).
    fn start_sync(&mut self) -> SyncTask {
        let positions = std::mem::take(&mut self.pending);
        self.last_sync = Instant::now();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let synced = store.sync();
            if synced.is_ok()
                && let Err(e) = store.checkpoint_behind()
            {
                tracing::warn!(error = %e, "checkpoint failed; retried at the next sync");
            }
            (synced, positions)
        })
    }

    /// A finished sync: its positions are committed. A failed sync stops the loop: committing
    /// without it could lose records for good on a power cut.
    fn synced(&mut self, done: Result<SyncDone, MaterializeError>) -> Result<(), MaterializeError> {
        let (synced, positions) = done?;
        synced?;
        self.commit(&positions);
        Ok(())
    }

    /// Commits positions in one request.
    fn commit(&self, positions: &HashMap<(String, i32), i64>) {
        let list = positions.iter().map(|((t, p), next)| (t.as_str(), *p, *next));
        if let Err(e) = self.consumer.commit_positions(list) {
            tracing::warn!(error = %e, partitions = positions.len(), "commit failed; records may be replayed");
        }
    }

    /// Decodes a batch for the store. Ok(None): shutdown came first (nothing decoded).
    async fn decode_batch(
        &mut self,
        batch: &[InputRecord],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<(usize, Item)>>, MaterializeError> {
        // (index into batch, what to write)
        let mut items: Vec<(usize, Item)> = Vec::with_capacity(batch.len());
        for (i, rec) in batch.iter().enumerate() {
            let Some(value) = &rec.value else {
                match (type_of_topic(&rec.topic), rec.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())) {
                    (Some(t), Some(id)) => items.push((i, Item::Delete(t.to_string(), id.to_string()))),
                    _ => self.skip(rec, "tombstone without a UTF-8 key or on a topic not named <type>.v<N>"),
                }
                continue;
            };
            // Looked up by &str first: entry() would allocate the topic name for every record.
            if !self.serdes.contains_key(&rec.topic) {
                self.serdes.insert(rec.topic.clone(), self.registry.value_serde::<FhirResource>(&rec.topic));
            }
            let serde = self.serdes[&rec.topic].clone();
            let mut attempt = 0u32;
            loop {
                match serde.decode_with(value, crate::resource_reader::read_fhir_resource).await {
                    Ok(r) => {
                        items.push((i, Item::Upsert(r)));
                        break;
                    }
                    Err(e) if e.is_transient() => {
                        attempt += 1;
                        let wait = Duration::from_millis((200u64 << attempt.min(6)).min(10_000));
                        tracing::warn!(error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; waiting");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.wait() => return Ok(None),
                        }
                    }
                    Err(e) => {
                        self.skip(rec, &loggable(&e));
                        break;
                    }
                }
            }
        }
        Ok(Some(items))
    }

    /// Writes a decoded batch on a blocking thread (one store transaction).
    fn start_store(&self, batch: Vec<InputRecord>, items: Vec<(usize, Item)>) -> StoreTask {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let applied = if items.is_empty() {
                Ok(Vec::new())
            } else {
                store.apply(items.iter().map(|(_, it)| match it {
                    Item::Upsert(r) => Write::Upsert(r),
                    Item::Delete(t, id) => Write::Delete { resource_type: t, id },
                }))
            };
            Written { batch, items, applied }
        })
    }

    /// A written batch: counted, observed, and its positions made pending (committed after
    /// the next sync). A store failure stops the loop.
    fn stored(&mut self, done: Result<Written, MaterializeError>) -> Result<(), MaterializeError> {
        let Written { batch, items, applied } = done?;
        let applied = applied?;
        // Committed in the store: queryable from now on.
        if let Some(h) = &self.e2e {
            let now = now_micros();
            for ((i, _), a) in items.iter().zip(&applied) {
                if let (Applied::Upsert(_), Some(t)) = (a, batch[*i].headers.received_at_micros()) {
                    h.observe(e2e_seconds(t, now));
                }
            }
        }
        for ((i, item), a) in items.iter().zip(applied) {
            match a {
                Applied::Upsert(Upsert::Inserted | Upsert::Updated | Upsert::Repeated) => {
                    if let Item::Upsert(r) = item {
                        tracing::debug!(resource_type = %r.resource_type, id = %r.id, "stored");
                    }
                    self.progress.applied.fetch_add(1, Ordering::Relaxed);
                    self.count(Outcome::acknowledged);
                }
                Applied::Upsert(Upsert::Ignored) => {
                    self.progress.ignored.fetch_add(1, Ordering::Relaxed);
                    self.count(Outcome::duplicate);
                }
                Applied::Deleted(existed) => {
                    if existed {
                        self.progress.deleted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Applied::Refused(e) => self.skip(&batch[*i], &e.to_string()),
            }
        }
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for r in &batch {
            next.insert((r.topic.as_str(), r.partition), r.offset + 1);
        }
        for ((topic, partition), offset) in next {
            self.pending.insert((topic.to_string(), partition), offset);
        }
        self.progress.processed.fetch_add(batch.len() as u64, Ordering::Release);
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
        let e =
            bus::AvroError::Decode { schema_id: 7, type_name: "FhirResource", detail: "String(\"Jane Doe\")".into() };
        let l = loggable(&e);
        assert!(l.contains("schema id 7") && !l.contains("Jane"), "{l}");
        let w = bus::AvroError::Wire(bus::avro::wire::WireError::BadMagic(b'n'));
        assert_eq!(loggable(&w), w.to_string());
    }

    #[test]
    fn e2e_latency_is_never_negative_and_lands_in_fine_buckets() {
        assert_eq!(e2e_seconds(2_000_000, 1_000_000), 0.0);
        assert_eq!(e2e_seconds(1_000_000, 1_250_000), 0.25);
        let h = e2e_histogram();
        h.observe(0.25);
        let m = Metrics::new();
        m.register("e2e_latency_seconds", "test", h);
        let text = m.encode();
        assert!(text.contains("arteria_e2e_latency_seconds_count 1"), "{text}");
        // The bucket just above 0.25 s is at most 20 % wider.
        let bounds: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("arteria_e2e_latency_seconds_bucket{le=\""))
            .filter_map(|l| l.split('"').next()?.parse().ok())
            .filter(|b: &f64| b.is_finite())
            .collect();
        assert!(bounds.len() >= 50, "{bounds:?}");
        assert!(bounds[0] <= 0.001 && *bounds.last().unwrap() >= 100.0, "{bounds:?}");
        let above = bounds.iter().find(|b| **b >= 0.25).unwrap();
        let below = bounds.iter().rev().find(|b| **b < 0.25).unwrap();
        assert!(above / below <= 1.2001, "{below} .. {above}");
    }

    #[test]
    fn topic_types() {
        assert_eq!(type_of_topic("fhir.patient.v1"), Some("patient"));
        assert_eq!(type_of_topic("it.q.1.2.fhir.diagnosticreport.v1"), Some("diagnosticreport"));
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
