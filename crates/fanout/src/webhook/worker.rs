//! The worker of one webhook: a durable, queued destination on Kafka. It reads the webhook's
//! delivery topic in its own consumer group, sends each record, retries with backoff, and
//! commits the record's offset only once it was delivered or written to the DLQ — so a crash
//! or a shutdown at any point leaves the delivery to be sent again (at least once; receivers
//! deduplicate by `Idempotency-Key`). Each partition's records are sent one at a time in offset
//! order, which keeps each resource's versions in order (they share a partition); with
//! `concurrency` above 1 the partitions are spread over that many lanes that send at once, as a
//! Mirth/Rhapsody queue with several threads. The price of the order is head-of-line: a
//! delivery being retried holds back those behind it in its lane (and, once the read-ahead the
//! lanes share is full, the reading of the other lanes' records too).

use crate::webhook::config::ResolvedWebhook;
use crate::webhook::delivery::Delivery;
use crate::webhook::http::{Attempt, ClientError, Request, Sender};
use crate::webhook::metrics::{DeliveryOutcome, WebhookMetrics};
use crate::webhook::retry::jitter_unit;
use bus::topics::{TopicSpec, ensure_topics, wait_for_kafka};
use bus::{
    BusConfig, BusConsumer, BusError, BusProducer, DeadLetterWriter, InputRecord, Registry, Shutdown, TraceParent,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The dead letters' `stage`.
pub const STAGE: &str = "fanout.webhook";

/// Dead-letter classes.
pub const CLASS_REJECTED: &str = "webhook-rejected";
pub const CLASS_EXHAUSTED: &str = "webhook-retries-exhausted";
pub const CLASS_INVALID: &str = "webhook-invalid-delivery";

/// Counters of a running worker, readable while it runs.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub attempts: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Records whose offset was committed (delivered or dead-lettered).
    pub committed: AtomicU64,
}

/// A snapshot of [`WorkerCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub attempts: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub committed: u64,
}

impl WorkerCounters {
    pub fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
        }
    }
}

/// How one record ended.
enum Done {
    /// Delivered or dead-lettered: commit.
    Settled,
    /// Shutdown came first: do not commit; the next start sends it again.
    Stopped,
}

/// One webhook's worker.
pub struct WebhookWorker {
    sender: Sender,
    bus: BusConfig,
    /// `bus` with the consumer's `max.poll.interval.ms` (a consumer-only property).
    consumer_bus: BusConfig,
    registry: Registry,
    dlq: DeadLetterWriter,
    producer: BusProducer,
    metrics: WebhookMetrics,
    counters: Arc<WorkerCounters>,
}

/// Records read ahead per lane, counted over all lanes together. The reader waits only for a
/// record to be settled, i.e. at most one delivery's retries, which `max.poll.interval.ms`
/// allows for.
const LANE_QUEUE: usize = 128;

/// A record on its way to a lane, with its share of the read-ahead.
type Queued<'r> = (InputRecord, tokio::sync::SemaphorePermit<'r>);

/// librdkafka's upper bound for `max.poll.interval.ms`.
const MAX_POLL_INTERVAL_LIMIT_MS: u64 = 86_400_000;

impl WebhookWorker {
    /// A worker for `hook` that dead-letters to `dlq_topic`. Creates its clients; connects
    /// nothing until [`WebhookWorker::run`].
    pub fn new(
        bus: &BusConfig,
        registry: &Registry,
        hook: ResolvedWebhook,
        dlq_topic: &str,
        metrics: WebhookMetrics,
    ) -> Result<Self, WorkerError> {
        let mut consumer_bus = bus.clone();
        // The consumer is not polled while a delivery is retried; librdkafka would take that
        // for a hung member and leave the group. Allow the longest possible retry sequence.
        let budget = u64::from(hook.max_attempts)
            .saturating_mul(hook.timeout.as_millis() as u64 + hook.backoff.max_ms)
            .saturating_add(60_000)
            .min(MAX_POLL_INTERVAL_LIMIT_MS);
        consumer_bus
            .kafka
            .extra
            .entry("max.poll.interval.ms".into())
            .or_insert_with(|| budget.max(300_000).to_string());
        // Small fetches per partition, so the partitions' records come interleaved and every
        // lane has work soon (a larger record still comes whole).
        consumer_bus.kafka.extra.entry("max.partition.fetch.bytes".into()).or_insert_with(|| (64 * 1024).to_string());
        let producer = BusProducer::new(bus, &format!("webhook.{}", hook.name))?;
        Ok(Self {
            dlq: DeadLetterWriter::new(registry, STAGE, Some(dlq_topic)),
            sender: Sender::new(hook)?,
            registry: registry.clone(),
            bus: bus.clone(),
            consumer_bus,
            producer,
            metrics,
            counters: Arc::default(),
        })
    }

    pub fn counters(&self) -> Arc<WorkerCounters> {
        self.counters.clone()
    }

    fn hook(&self) -> &ResolvedWebhook {
        self.sender.webhook()
    }

    /// Runs until `shutdown`: starts (retrying while Kafka or the registry are not there),
    /// then delivers. Never gives up on its own, so one unreachable receiver or a broker
    /// outage cannot stop the fan-out service.
    pub async fn run(self, shutdown: Shutdown) -> WorkerStats {
        let name = self.hook().name.clone();
        let mut failures = 0u32;
        let consumer = loop {
            match self.start(&shutdown).await {
                Ok(c) => break c,
                Err(_) if shutdown.is_triggered() => return self.counters.snapshot(),
                Err(e) => {
                    failures += 1;
                    let wait = self.bus.startup_retry.delay(failures);
                    tracing::error!(webhook = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "webhook worker cannot start");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => return self.counters.snapshot(),
                    }
                }
            }
        };
        tracing::info!(webhook = %name, topic = %self.hook().topic, "webhook worker ready");
        self.consume(&consumer, &shutdown).await;
        if let Err(e) = consumer.close().await {
            tracing::warn!(webhook = %name, error = %e, "closing the webhook consumer");
        }
        let _ = self.producer.flush(Duration::from_secs(10)).await;
        let stats = self.counters.snapshot();
        tracing::info!(webhook = %name, delivered = stats.delivered, dead_lettered = stats.dead_lettered, "webhook worker stopped");
        stats
    }

    async fn start(&self, shutdown: &Shutdown) -> Result<BusConsumer, WorkerError> {
        wait_for_kafka(&self.bus, &self.bus.startup_retry, shutdown).await?;
        let specs: Vec<TopicSpec> = [&self.hook().topic, self.dlq.topic()]
            .iter()
            .map(|t| TopicSpec::with_defaults(t, &self.bus.topics))
            .collect();
        ensure_topics(&self.bus, &specs).await?;
        self.registry.wait_ready(&self.bus, shutdown).await?;
        self.dlq.register().await?;
        let name = format!("webhook.{}", self.hook().name);
        Ok(BusConsumer::new(&self.consumer_bus, &self.hook().group_id, &[&self.hook().topic], &name)?)
    }

    /// Reads the delivery topic and sends each record through the lane of its partition; the
    /// lanes run together in this task and each commits what it settled.
    async fn consume(&self, consumer: &BusConsumer, shutdown: &Shutdown) {
        let n = self.hook().concurrency.max(1) as usize;
        // Records read and not yet settled, over all lanes: the reader waits for room, not for
        // one lane, so a lane's run of records never keeps the others idle.
        let room = tokio::sync::Semaphore::new(LANE_QUEUE * n);
        let (lanes, queues): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
        let lanes_done = futures::future::join_all(queues.into_iter().map(|q| self.lane(q, consumer, shutdown)));
        tokio::join!(self.read(consumer, &room, lanes, shutdown), lanes_done);
    }

    /// Hands each record to the lane of its partition until shutdown (or a lane stopped).
    async fn read<'r>(
        &self,
        consumer: &BusConsumer,
        room: &'r tokio::sync::Semaphore,
        lanes: Vec<tokio::sync::mpsc::UnboundedSender<Queued<'r>>>,
        shutdown: &Shutdown,
    ) {
        let name = &self.hook().name;
        loop {
            let rec = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                r = consumer.recv() => r,
            };
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    // librdkafka reconnects by itself; a pause keeps a persistent error from spinning.
                    tracing::warn!(webhook = %name, error = %e, "webhook consumer error");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
            };
            let lane = &lanes[rec.partition.unsigned_abs() as usize % lanes.len()];
            let permit = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                p = room.acquire() => match p { Ok(p) => p, Err(_) => return },
            };
            if lane.send((rec, permit)).is_err() {
                return;
            }
        }
    }

    /// Sends its records in the order they came, committing each once settled; stops at
    /// shutdown without taking another (what was queued is sent again after a restart).
    async fn lane(
        &self,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<Queued<'_>>,
        consumer: &BusConsumer,
        shutdown: &Shutdown,
    ) {
        let name = &self.hook().name;
        // The record's room is given back once it is settled (the permit drops at the end).
        while let Some((rec, _room)) = queue.recv().await {
            if shutdown.is_triggered() {
                return;
            }
            match self.deliver(&rec, shutdown).await {
                Done::Settled => match consumer.commit(&rec) {
                    Ok(()) => {
                        self.counters.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    // A lost commit means this delivery is sent again after a restart: at least once.
                    Err(e) => tracing::warn!(webhook = %name, error = %e, "committing a webhook delivery"),
                },
                Done::Stopped => return,
            }
        }
    }

    /// Sends `rec` until it is delivered, refused, out of attempts, or shutdown comes
    /// between two attempts (an attempt under way is finished, bounded by the timeout).
    async fn deliver(&self, rec: &InputRecord, shutdown: &Shutdown) -> Done {
        let hook = self.hook();
        let d = match Delivery::from_record(rec) {
            Ok(d) => d,
            Err(e) => return self.dead_letter(rec, CLASS_INVALID, &e.to_string(), 0, shutdown).await,
        };
        let tp = rec.headers.traceparent().map(|t| t.child()).unwrap_or_else(TraceParent::new_root);
        let req = Request {
            body: d.body,
            event_id: d.event_id,
            resource_id: d.resource_id,
            idempotency_key: d.idempotency_key,
            traceparent: tp.to_string(),
            tracestate: rec.headers.tracestate(),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let outcome = self.sender.attempt(&req).await;
            self.metrics.observe_request(&hook.name, started.elapsed());
            let (failure, retry_after) = match outcome {
                Attempt::Delivered { .. } => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    self.metrics.count(&hook.name, DeliveryOutcome::delivered);
                    return Done::Settled;
                }
                Attempt::Failed { failure, retry_after } => (failure, retry_after),
            };
            if !failure.is_retriable() {
                let detail =
                    format!("{} after attempt {attempt}; not retried (the receiver refused it)", failure.describe());
                return self.dead_letter(rec, CLASS_REJECTED, &detail, attempt, shutdown).await;
            }
            if attempt >= hook.max_attempts {
                let detail = format!("{attempt} attempts, the last one: {}", failure.describe());
                return self.dead_letter(rec, CLASS_EXHAUSTED, &detail, attempt, shutdown).await;
            }
            let wait = hook.backoff.wait(attempt, jitter_unit(), retry_after);
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            self.metrics.count(&hook.name, DeliveryOutcome::retried);
            tracing::warn!(
                webhook = %hook.name,
                attempt,
                failure = %failure.describe(),
                retry_in_ms = wait.as_millis() as u64,
                partition = rec.partition,
                offset = rec.offset,
                "webhook delivery failed; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return Done::Stopped,
            }
        }
    }

    /// Writes the dead letter (original record kept byte for byte), retrying the write until
    /// Kafka takes it or shutdown comes: a delivery is never committed without its dead letter.
    async fn dead_letter(
        &self,
        rec: &InputRecord,
        class: &str,
        detail: &str,
        attempts: u32,
        shutdown: &Shutdown,
    ) -> Done {
        let name = &self.hook().name;
        let mut tries = 0u32;
        loop {
            match self.dlq.write(&self.producer, rec, class, detail, attempts).await {
                Ok(_) => {
                    self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    self.metrics.count(name, DeliveryOutcome::dead_lettered);
                    tracing::error!(
                        webhook = %name,
                        error_class = class,
                        detail,
                        attempts,
                        partition = rec.partition,
                        offset = rec.offset,
                        dlq = self.dlq.topic(),
                        "webhook delivery dead-lettered"
                    );
                    return Done::Settled;
                }
                Err(e) => {
                    tries += 1;
                    let wait = self.bus.startup_retry.delay(tries);
                    tracing::error!(webhook = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "writing a webhook dead letter");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => return Done::Stopped,
                    }
                }
            }
        }
    }
}

/// Why a worker could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Registry(#[from] bus::AvroError),
}

/// Starts a worker per webhook on the current runtime; each runs until `shutdown`.
pub fn spawn_all(
    bus: &BusConfig,
    registry: &Registry,
    hooks: Vec<ResolvedWebhook>,
    dlq_topic: &str,
    metrics: &WebhookMetrics,
    shutdown: &Shutdown,
) -> Result<Vec<tokio::task::JoinHandle<WorkerStats>>, WorkerError> {
    hooks
        .into_iter()
        .map(|h| {
            let w = WebhookWorker::new(bus, registry, h, dlq_topic, metrics.clone())?;
            Ok(tokio::spawn(w.run(shutdown.clone())))
        })
        .collect()
}
