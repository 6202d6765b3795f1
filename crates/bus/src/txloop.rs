//! The transactional consume-transform-produce loop behind normalize, enrich and fan-out.
//!
//! Exactly-once between topics needs the outputs of a batch and the input offsets that caused
//! them committed in one Kafka transaction, read_committed everywhere, and a precise answer to
//! every failure: a bad record goes to the DLQ inside the same transaction (the loop goes on);
//! a transient failure aborts what is not committed, rewinds the consumer to the first
//! unprocessed record and retries with backoff; a fatal producer error (fenced, idempotence
//! broken) ends the loop with [`BusError::Fatal`]. librdkafka's transaction calls block, so
//! they run on Tokio's blocking pool, never on the async executor. Records are processed one
//! at a time in consumption order, so per-key (per-partition) order is kept.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::avro::{AvroError, Registry};
use crate::config::{BusConfig, RetryConfig};
use crate::consumer::{InputRecord, consumer_client_config};
use crate::context::{BusConsumerContext, BusContext};
use crate::dlq::DeadLetterWriter;
use crate::error::BusError;
use crate::headers::MessageHeaders;
use crate::producer::producer_client_config;
use crate::shutdown::Shutdown;
use crate::topics::wait_for_kafka;

/// What the loop reads, where it writes and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxLoopConfig {
    /// Stage name (normalize, enrich, fanout): labels logs and names the DLQ.
    pub stage: String,
    /// Consumer group shared by all replicas of the stage.
    pub group_id: String,
    pub input_topics: Vec<String>,
    /// Stable per replica (e.g. `normalize-0`): a restarted replica with the same id fences
    /// its dead predecessor and aborts its open transaction at once, so read_committed
    /// readers are not held up until the transaction times out. Two live replicas must never
    /// share it (the older one is fenced and stops with a fatal error).
    pub transactional_id: String,
    /// DLQ topic; default `<stage>.dlq.v1`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    #[serde(default)]
    pub tuning: TxTuning,
}

/// Knobs of the loop, all with defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TxTuning {
    /// Most records per transaction. Default 250: commits cost a few round trips each, so
    /// throughput needs batches (250 amortises them well); but a batch holds its input records
    /// and their outputs until the commit, and at 1000 records of ~30 kB events that was
    /// ~100 MB in fan-out. Per-record latency stays bounded by `max_txn_ms`.
    pub max_records_per_txn: usize,
    /// Longest time to gather a batch after its first record. Default 50 ms.
    pub max_txn_ms: u64,
    /// `transaction.timeout.ms`. Default 60 000.
    pub transaction_timeout_ms: u64,
    /// Timeout of each blocking transaction call. Default 30 000 ms.
    pub blocking_call_timeout_ms: u64,
    /// Use the transactional id as `group.instance.id` (static membership): a restarted
    /// replica takes its partitions back without waiting a session timeout. Default true.
    pub static_membership: bool,
    /// Tries per record before a transient failure is treated as permanent (DLQ with class
    /// `retries-exhausted`). Default 5.
    pub max_attempts: u32,
    /// Backoff between retries after a transient failure or an aborted transaction.
    pub retry: RetryConfig,
    /// The transactional producer's `retry.backoff.ms` (first step of librdkafka's
    /// exponential request backoff). Default 5.
    pub retry_backoff_ms: u64,
    /// The transactional producer's `linger.ms`. Default 100. A transaction's records are
    /// invisible to read_committed readers until its commit, and the commit flushes at once
    /// (see [`TxLoop::commit`]), so lingering costs no latency; it packs each partition's
    /// records of a transaction into about one produce request instead of one every 5 ms
    /// (with 1 s, the broker's produce requests at 500 msg/s fell from 1,670/s to 980/s; with
    /// 100 ms they were 960/s at 1,000 msg/s, and less output waits in memory). Capped at half
    /// the transaction timeout.
    pub linger_ms: u64,
}

impl Default for TxTuning {
    fn default() -> Self {
        Self {
            max_records_per_txn: 250,
            max_txn_ms: 50,
            transaction_timeout_ms: 60_000,
            blocking_call_timeout_ms: 30_000,
            static_membership: true,
            max_attempts: 5,
            retry: RetryConfig { initial_ms: 100, max_ms: 5_000, give_up_after_ms: None },
            retry_backoff_ms: 5,
            linger_ms: 100,
        }
    }
}

impl TxLoopConfig {
    pub fn new(stage: &str, group_id: &str, input_topics: &[&str], transactional_id: &str) -> Self {
        Self {
            stage: stage.into(),
            group_id: group_id.into(),
            input_topics: input_topics.iter().map(|s| s.to_string()).collect(),
            transactional_id: transactional_id.into(),
            dlq_topic: None,
            tuning: TxTuning::default(),
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Headers; when they carry no `traceparent` the loop adds a child of the input's, and it
    /// copies the input's `arteria-received-at` unless the output sets its own.
    pub headers: MessageHeaders,
}

/// Why a record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The record itself is bad: it goes to the DLQ and the loop continues.
    #[error("{class}: {detail}")]
    Permanent { class: String, detail: String },
    /// Something outside the record failed (registry, a lookup service): retry later.
    #[error("transient: {detail}")]
    Transient { detail: String },
}

impl ProcessError {
    pub fn permanent(class: &str, detail: impl Into<String>) -> Self {
        ProcessError::Permanent { class: class.into(), detail: detail.into() }
    }

    pub fn transient(detail: impl Into<String>) -> Self {
        ProcessError::Transient { detail: detail.into() }
    }
}

impl From<AvroError> for ProcessError {
    fn from(e: AvroError) -> Self {
        if e.is_transient() {
            ProcessError::transient(e.to_string())
        } else {
            ProcessError::permanent("schema", e.to_string())
        }
    }
}

/// The transform of a stage. Called once per input record, in order; may be called again for
/// the same record after a transient failure or an aborted transaction, so it must be
/// deterministic (same input, same outputs, same ids).
///
/// A processor that keeps state across records (fan-out's ledger of published resources) keeps
/// it in step with the transactions through the two hooks: what a batch changed counts once
/// its transaction commits and is dropped when it aborts (its records come again).
pub trait Processor: Send + Sync {
    fn process(&self, record: &InputRecord) -> impl Future<Output = Result<Vec<Output>, ProcessError>> + Send;

    /// Called before each batch's transaction begins, with the rebalance generation the batch
    /// was read under (it changes whenever partitions are assigned or revoked). An error puts
    /// the batch back and retries it after a backoff.
    fn prepare(&self, generation: u64) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let _ = generation;
        async { Ok(()) }
    }

    /// The batch's transaction ended: committed, or aborted (its records will be processed
    /// again).
    fn settled(&self, committed: bool) {
        let _ = committed;
    }
}

/// Counters of a running loop (shared, readable while it runs).
#[derive(Debug, Default)]
pub struct TxLoopCounters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub transactions: AtomicU64,
    pub aborts: AtomicU64,
    pub transient_failures: AtomicU64,
}

/// A snapshot of [`TxLoopCounters`]; `records_in` counts committed input records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxLoopStats {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub transactions: u64,
    pub aborts: u64,
    pub transient_failures: u64,
}

impl TxLoopCounters {
    pub fn snapshot(&self) -> TxLoopStats {
        TxLoopStats {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            aborts: self.aborts.load(Ordering::Relaxed),
            transient_failures: self.transient_failures.load(Ordering::Relaxed),
        }
    }
}

/// How a transaction call failed.
#[derive(Debug)]
enum TxnFailure {
    /// Abort the transaction, rewind, retry.
    Abortable(String),
    /// Kafka refuses an output of this input record for good (e.g. too large): abort,
    /// rewind, and dead-letter the record on the next pass instead of looping on it.
    Rejected(RecordId, String),
    /// Kafka refused a produce batch holding outputs of several input records: abort, rewind,
    /// and redo those records one per transaction to find the culprit.
    Isolate(String),
    /// The producer is unusable: stop.
    Fatal(String),
}

/// (topic, partition, offset) of an input record.
type RecordId = (String, i32, i64);

/// What the loop remembers about records it has to process again.
#[derive(Default)]
struct Recovery {
    /// Transient failures so far, per record.
    attempts: HashMap<RecordId, u32>,
    /// Records whose output Kafka refused for good: dead-lettered on the next pass.
    rejected: HashMap<RecordId, String>,
    /// Records still to process one per transaction, so that a refusal the broker reports for
    /// a whole batch can be pinned on the one record that caused it.
    isolate: usize,
}

/// Produce errors that retrying the same record can never fix.
fn rejects_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessage
    )
}

enum Class {
    Retriable,
    Abortable,
    Fatal,
}

fn classify(e: &KafkaError) -> Class {
    match e {
        KafkaError::Transaction(r) if r.is_fatal() => Class::Fatal,
        KafkaError::Transaction(r) if r.txn_requires_abort() => Class::Abortable,
        KafkaError::Transaction(r) if r.is_retriable() => Class::Retriable,
        // Anything else from a transaction call means the producer's state is not what the
        // loop believes: restarting from committed offsets is the safe answer.
        _ => Class::Fatal,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BusError::Join(e.to_string()))
}

/// A started loop: clients created, transactions initialised, subscribed.
pub struct TxLoop {
    cfg: TxLoopConfig,
    producer: FutureProducer<BusContext>,
    consumer: Arc<StreamConsumer<BusConsumerContext>>,
    ctx: BusConsumerContext,
    dlq: DeadLetterWriter,
    counters: Arc<TxLoopCounters>,
    call_timeout: Duration,
}

/// Offsets per (topic, partition).
type Positions = BTreeMap<(String, i32), i64>;

impl TxLoop {
    /// Waits for Kafka and the registry (with backoff, see `bus.startup_retry`), creates the
    /// transactional producer and calls `init_transactions` (which fences a previous instance
    /// with the same transactional id and aborts its open transaction), then subscribes.
    pub async fn start(
        bus: &BusConfig,
        cfg: TxLoopConfig,
        registry: &Registry,
        shutdown: &Shutdown,
    ) -> Result<Self, BusError> {
        wait_for_kafka(bus, &bus.startup_retry, shutdown).await?;
        registry.wait_ready(bus, shutdown).await?;
        let t = &cfg.tuning;
        let call_timeout = Duration::from_millis(t.blocking_call_timeout_ms);

        let mut pc = producer_client_config(bus);
        pc.set("transactional.id", &cfg.transactional_id);
        pc.set("transaction.timeout.ms", t.transaction_timeout_ms.to_string());
        // After a commit the coordinator answers the next transaction's first request with
        // CONCURRENT_TRANSACTIONS until the markers are written (a few ms); librdkafka retries
        // after retry.backoff.ms, whose 100 ms default would cap the loop at ~10 commits/s.
        pc.set("retry.backoff.ms", t.retry_backoff_ms.to_string());
        // librdkafka requires a record's delivery timeout to fit in its transaction.
        pc.set("delivery.timeout.ms", bus.producer.delivery_timeout_ms.min(t.transaction_timeout_ms).to_string());
        pc.set("linger.ms", t.linger_ms.min(t.transaction_timeout_ms / 2).to_string());
        let producer: FutureProducer<BusContext> = pc
            .create_with_context(BusContext::new(format!("{}/txn-producer", cfg.stage)))
            .map_err(|e| BusError::Config(e.to_string()))?;

        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let p = producer.clone();
            match blocking(move || p.init_transactions(call_timeout)).await? {
                Ok(()) => break,
                Err(e) => match classify(&e) {
                    Class::Fatal => {
                        return Err(BusError::Fatal { op: "init_transactions", detail: e.to_string() });
                    }
                    _ => {
                        let waited = started.elapsed();
                        if bus.startup_retry.give_up_after().is_some_and(|l| waited >= l) {
                            return Err(BusError::BrokerUnavailable {
                                bootstrap: bus.kafka.bootstrap_servers.clone(),
                                attempts: attempt,
                                waited_ms: waited.as_millis() as u64,
                                last_error: e.to_string(),
                            });
                        }
                        let d = bus.startup_retry.delay(attempt);
                        tracing::warn!(stage = %cfg.stage, attempt, retry_in_ms = d.as_millis() as u64, error = %e, "init_transactions failed, retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = shutdown.wait() => return Err(BusError::ShutDown("init_transactions")),
                        }
                    }
                },
            }
        }

        let dlq = DeadLetterWriter::new(registry, &cfg.stage, cfg.dlq_topic.as_deref());
        dlq.register().await?;

        let mut cc = consumer_client_config(bus, &cfg.group_id);
        if t.static_membership {
            cc.set("group.instance.id", &cfg.transactional_id);
        }
        let ctx = BusConsumerContext::new(format!("{}/consumer", cfg.stage));
        let consumer: StreamConsumer<BusConsumerContext> =
            cc.create_with_context(ctx.clone()).map_err(|e| BusError::Config(e.to_string()))?;
        let topics: Vec<&str> = cfg.input_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| BusError::kafka("subscribe", e))?;
        tracing::info!(stage = %cfg.stage, group = %cfg.group_id, "transactional loop started");
        Ok(Self { cfg, producer, consumer: Arc::new(consumer), ctx, dlq, counters: Arc::default(), call_timeout })
    }

    /// The input consumer's lag per assigned partition (for the consumer_lag metric).
    pub fn lag(&self) -> crate::context::LagReport {
        self.ctx.lag()
    }

    /// Live counters, e.g. for metrics or a benchmark.
    pub fn counters(&self) -> Arc<TxLoopCounters> {
        self.counters.clone()
    }

    /// Runs until `shutdown` (then finishes and commits the batch in hand, flushes and leaves
    /// the group) or a fatal error.
    pub async fn run<P: Processor>(self, processor: &P, shutdown: &Shutdown) -> Result<TxLoopStats, BusError> {
        let result = self.run_inner(processor, shutdown).await;
        // Flushing, leaving the group and destroying the clients all block: off the executor.
        let t = self.call_timeout;
        let _ = blocking(move || {
            let _ = self.producer.flush(t);
            self.consumer.unsubscribe();
            drop(self);
        })
        .await;
        result
    }

    async fn run_inner<P: Processor>(&self, processor: &P, shutdown: &Shutdown) -> Result<TxLoopStats, BusError> {
        let t = &self.cfg.tuning;
        let mut recovery = Recovery::default();
        let mut consecutive_aborts = 0u32;
        loop {
            if shutdown.is_triggered() {
                break;
            }
            // Gather a batch: wait for the first record, then take what comes within max_txn_ms.
            let first = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => InputRecord::from_message(&m),
                Err(e) => {
                    self.consumer_error(e)?;
                    continue;
                }
            };
            let generation = self.ctx.rebalance_generation();
            let gather_started = Instant::now();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + Duration::from_millis(t.max_txn_ms);
            let max_records = if recovery.isolate > 0 { 1 } else { t.max_records_per_txn };
            while batch.len() < max_records {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                    m = self.consumer.recv() => m,
                };
                match next {
                    Ok(m) => batch.push(InputRecord::from_message(&m)),
                    Err(e) => self.consumer_error(e)?,
                }
            }

            tracing::trace!(stage = %self.cfg.stage, records = batch.len(), gather_us = gather_started.elapsed().as_micros() as u64, "batch gathered");
            match self.process_batch(processor, &batch, generation, &mut recovery).await? {
                BatchOutcome::Committed => consecutive_aborts = 0,
                BatchOutcome::RetryAfter { attempt } => {
                    let d = t.retry.delay(attempt);
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = shutdown.wait() => {}
                    }
                }
                BatchOutcome::Aborted => {
                    consecutive_aborts += 1;
                    let d = t.retry.delay(consecutive_aborts);
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
        tracing::info!(stage = %self.cfg.stage, "transactional loop stopped");
        Ok(self.counters.snapshot())
    }

    fn consumer_error(&self, e: KafkaError) -> Result<(), BusError> {
        if let KafkaError::MessageConsumptionFatal(code) = e {
            return Err(BusError::Fatal { op: "consume", detail: format!("{code:?}") });
        }
        // librdkafka reconnects and refetches by itself; these are informational.
        tracing::warn!(stage = %self.cfg.stage, error = %e, "consumer error");
        Ok(())
    }

    async fn process_batch<P: Processor>(
        &self,
        processor: &P,
        batch: &[InputRecord],
        generation: u64,
        recovery: &mut Recovery,
    ) -> Result<BatchOutcome, BusError> {
        let t = &self.cfg.tuning;
        let mut batch_start: Positions = BTreeMap::new();
        for r in batch {
            batch_start.entry((r.topic.clone(), r.partition)).or_insert(r.offset);
        }
        if let Err(e) = processor.prepare(generation).await {
            tracing::warn!(stage = %self.cfg.stage, error = %e, "could not prepare the batch; retrying it");
            self.rewind(&batch_start).await?;
            return Ok(BatchOutcome::Aborted);
        }
        self.producer
            .begin_transaction()
            .map_err(|e| BusError::Fatal { op: "begin_transaction", detail: e.to_string() })?;

        let process_started = Instant::now();
        let mut next_offsets: Positions = BTreeMap::new();
        let mut deliveries: Vec<(RecordId, DeliveryFuture)> = Vec::with_capacity(batch.len());
        let mut produced = 0u64;
        let mut dead = 0u64;
        let mut retry_attempt = None;
        for rec in batch {
            let id = (rec.topic.clone(), rec.partition, rec.offset);
            if let Some(refusal) = recovery.rejected.get(&id) {
                let n = recovery.attempts.get(&id).copied().unwrap_or(0) + 1;
                let detail = format!("Kafka refused an output of this record: {refusal}");
                match self.dead_letter(rec, "output-rejected", &detail, n).await {
                    Ok(d) => {
                        deliveries.push((id, d));
                        dead += 1;
                        next_offsets.insert((rec.topic.clone(), rec.partition), rec.offset + 1);
                        continue;
                    }
                    Err(f) => {
                        return self.abort_and_rewind(processor, &batch_start, f, recovery, batch.len()).await;
                    }
                }
            }
            let outcome = processor.process(rec).await;
            let sent = match outcome {
                Ok(outputs) => {
                    let mut r = Ok(());
                    for mut o in outputs {
                        if o.headers.traceparent().is_none() {
                            rec.headers.propagate_trace_to(&mut o.headers);
                        }
                        rec.headers.propagate_received_at_to(&mut o.headers);
                        match self.produce(&o.topic, o.key.as_deref(), &o.value, &o.headers).await {
                            Ok(d) => deliveries.push((id.clone(), d)),
                            Err(TxnFailure::Rejected(_, why)) => {
                                r = Err(TxnFailure::Rejected(id.clone(), why));
                                break;
                            }
                            Err(e) => {
                                r = Err(e);
                                break;
                            }
                        }
                        produced += 1;
                    }
                    r
                }
                Err(ProcessError::Permanent { class, detail }) => {
                    let n = recovery.attempts.get(&id).copied().unwrap_or(0) + 1;
                    self.dead_letter(rec, &class, &detail, n).await.map(|d| {
                        deliveries.push((id.clone(), d));
                        dead += 1;
                    })
                }
                Err(ProcessError::Transient { detail }) => {
                    self.counters.transient_failures.fetch_add(1, Ordering::Relaxed);
                    let n = recovery.attempts.entry(id.clone()).or_insert(0);
                    *n += 1;
                    let n = *n;
                    if n >= t.max_attempts {
                        let detail = format!("gave up after {n} attempts; last error: {detail}");
                        self.dead_letter(rec, "retries-exhausted", &detail, n).await.map(|d| {
                            deliveries.push((id.clone(), d));
                            dead += 1;
                        })
                    } else {
                        tracing::warn!(stage = %self.cfg.stage, topic = %rec.topic, partition = rec.partition,
                            offset = rec.offset, attempt = n, error = %detail, "transient failure, will retry");
                        retry_attempt = Some(n);
                        break;
                    }
                }
            };
            if let Err(f) = sent {
                return self.abort_and_rewind(processor, &batch_start, f, recovery, batch.len()).await;
            }
            next_offsets.insert((rec.topic.clone(), rec.partition), rec.offset + 1);
        }

        tracing::trace!(stage = %self.cfg.stage, process_us = process_started.elapsed().as_micros() as u64, "batch processed");
        // A revocation while gathering means some records may belong to another member now:
        // committing their offsets would duplicate work. Abort; the new assignment restarts
        // from committed offsets.
        if self.ctx.rebalance_generation() != generation {
            return self
                .abort_and_rewind(
                    processor,
                    &batch_start,
                    TxnFailure::Abortable("partitions were revoked during the batch".into()),
                    recovery,
                    batch.len(),
                )
                .await;
        }

        if next_offsets.is_empty() {
            // Nothing processed (transient failure on the first record): nothing to commit.
            self.abort_only().await?;
            processor.settled(false);
        } else if let Err(f) = self.commit(&next_offsets, deliveries).await {
            return self.abort_and_rewind(processor, &batch_start, f, recovery, batch.len()).await;
        } else {
            processor.settled(true);
            let n_in: u64 = batch
                .iter()
                .filter(|r| next_offsets.get(&(r.topic.clone(), r.partition)).is_some_and(|&o| r.offset < o))
                .count() as u64;
            self.counters.records_in.fetch_add(n_in, Ordering::Relaxed);
            recovery.isolate = recovery.isolate.saturating_sub(n_in as usize);
            self.counters.records_out.fetch_add(produced, Ordering::Relaxed);
            self.counters.dead_lettered.fetch_add(dead, Ordering::Relaxed);
            self.counters.transactions.fetch_add(1, Ordering::Relaxed);
            for r in batch {
                if next_offsets.get(&(r.topic.clone(), r.partition)).is_some_and(|&o| r.offset < o) {
                    let id = (r.topic.clone(), r.partition, r.offset);
                    recovery.attempts.remove(&id);
                    recovery.rejected.remove(&id);
                }
            }
        }

        match retry_attempt {
            None => Ok(BatchOutcome::Committed),
            Some(attempt) => {
                // Resume every partition of the batch at its first unprocessed record.
                let mut resume = batch_start;
                for (k, v) in &next_offsets {
                    resume.insert(k.clone(), *v);
                }
                self.rewind(&resume).await?;
                Ok(BatchOutcome::RetryAfter { attempt })
            }
        }
    }

    /// Enqueues one record in the open transaction, waiting while librdkafka's queue is full.
    async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &MessageHeaders,
    ) -> Result<DeliveryFuture, TxnFailure> {
        loop {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).payload(value).headers(headers.to_kafka());
            if let Some(k) = key {
                rec = rec.key(k);
            }
            match self.producer.send_result(rec) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    if let Some((code, reason)) = self.producer.client().fatal_error() {
                        return Err(TxnFailure::Fatal(format!("{code:?}: {reason}")));
                    }
                    if let KafkaError::MessageProduction(code) = e
                        && rejects_record(code)
                    {
                        // The caller knows which input record this output belongs to.
                        return Err(TxnFailure::Rejected(
                            (String::new(), -1, -1),
                            format!("{code:?} ({} bytes to {topic})", value.len()),
                        ));
                    }
                    return Err(TxnFailure::Abortable(format!("produce to {topic}: {e}")));
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        rec: &InputRecord,
        class: &str,
        detail: &str,
        attempts: u32,
    ) -> Result<DeliveryFuture, TxnFailure> {
        tracing::warn!(stage = %self.cfg.stage, topic = %rec.topic, partition = rec.partition, offset = rec.offset,
            error_class = class, "record sent to the dead-letter topic");
        let e = self
            .dlq
            .encode(rec, class, detail, attempts)
            .await
            .map_err(|e| TxnFailure::Abortable(format!("encode dead letter: {e}")))?;
        self.produce(&e.topic, e.key.as_deref(), &e.value, &e.headers).await
    }

    /// Sends the transaction's lingering records at once ([`TxLoop::flush_now`]), reads every
    /// delivery report (so a record the broker refused can be named), then sends the offsets
    /// and commits, retrying retriable errors.
    async fn commit(
        &self,
        next_offsets: &Positions,
        deliveries: Vec<(RecordId, DeliveryFuture)>,
    ) -> Result<(), TxnFailure> {
        let (ids, futs): (Vec<RecordId>, Vec<DeliveryFuture>) = deliveries.into_iter().unzip();
        let single_input = ids.windows(2).all(|w| w[0] == w[1]);
        let waited = Instant::now();
        self.flush_now().await?;
        let delivered = futures::future::join_all(futs).await;
        let delivery_us = waited.elapsed().as_micros() as u64;
        for (id, d) in ids.into_iter().zip(delivered) {
            match d {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if let Some((code, reason)) = self.producer.client().fatal_error() {
                        return Err(TxnFailure::Fatal(format!("{code:?}: {reason}")));
                    }
                    if let KafkaError::MessageProduction(code) = e
                        && rejects_record(code)
                    {
                        // The broker refuses whole produce batches, which may mix the outputs
                        // of several inputs: only a single-input transaction names the culprit.
                        return Err(if single_input {
                            TxnFailure::Rejected(id, format!("{code:?} from the broker"))
                        } else {
                            TxnFailure::Isolate(format!("the broker refused a batch: {code:?}"))
                        });
                    }
                    return Err(TxnFailure::Abortable(format!("delivery failed: {e}")));
                }
                Err(_canceled) => {
                    return Err(TxnFailure::Abortable("delivery report lost (producer closing)".into()));
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), off) in next_offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*off))
                .map_err(|e| TxnFailure::Fatal(format!("offset list: {e}")))?;
        }
        let cgm = self
            .consumer
            .group_metadata()
            .ok_or_else(|| TxnFailure::Abortable("consumer has no group metadata yet".into()))?;
        let tpl = Arc::new(tpl);
        let cgm = Arc::new(cgm);
        let timeout = self.call_timeout;
        let t0 = Instant::now();
        self.retrying("send_offsets_to_transaction", || {
            let (p, tpl, cgm) = (self.producer.clone(), tpl.clone(), cgm.clone());
            move || p.send_offsets_to_transaction(&tpl, &cgm, timeout)
        })
        .await?;
        let t1 = Instant::now();
        self.retrying("commit_transaction", || {
            let p = self.producer.clone();
            move || p.commit_transaction(timeout)
        })
        .await?;
        tracing::trace!(stage = %self.cfg.stage, delivery_us, send_offsets_us = (t1 - t0).as_micros() as u64,
            commit_us = t1.elapsed().as_micros() as u64, "transaction committed");
        Ok(())
    }

    /// Sends every queued record now, ignoring `linger.ms`, and waits until all are
    /// acknowledged or failed. rdkafka's `flush` cannot do this for an event-mode producer: it
    /// calls librdkafka's flush with no wait, which raises the "flushing" flag only for an
    /// instant, then sleeps in 100 ms poll steps, so batches would sit out their linger.
    /// librdkafka's own flush with a timeout holds the flag while it waits (the producer's
    /// poll thread keeps serving the delivery reports meanwhile).
    async fn flush_now(&self) -> Result<(), TxnFailure> {
        let p = self.producer.clone();
        let ms = i32::try_from(self.call_timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the pointer is the live handle of `p`, which the closure owns for the call;
        // rd_kafka_flush is thread-safe.
        let err = blocking(move || unsafe { rdkafka::bindings::rd_kafka_flush(p.client().native_ptr(), ms) })
            .await
            .map_err(|e| TxnFailure::Abortable(format!("flush: {e}")))?;
        match err {
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            e => Err(TxnFailure::Abortable(format!(
                "flush before commit: {:?}",
                rdkafka::error::RDKafkaErrorCode::from(e)
            ))),
        }
    }

    /// Runs a blocking transaction call, retrying while librdkafka says it is retriable.
    async fn retrying<F, G>(&self, op: &'static str, make: G) -> Result<(), TxnFailure>
    where
        G: Fn() -> F,
        F: FnOnce() -> Result<(), KafkaError> + Send + 'static,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = blocking(make()).await.map_err(|e| TxnFailure::Fatal(e.to_string()))?;
            match r {
                Ok(()) => return Ok(()),
                Err(e) => match classify(&e) {
                    Class::Retriable => {
                        let d = self.cfg.tuning.retry.delay(attempt);
                        tracing::warn!(stage = %self.cfg.stage, op, attempt, error = %e, "retriable transaction error, retrying");
                        tokio::time::sleep(d).await;
                    }
                    Class::Abortable => return Err(TxnFailure::Abortable(format!("{op}: {e}"))),
                    Class::Fatal => return Err(TxnFailure::Fatal(format!("{op}: {e}"))),
                },
            }
        }
    }

    /// Aborts the open transaction (nothing in it becomes visible to read_committed readers).
    async fn abort_only(&self) -> Result<(), BusError> {
        let timeout = self.call_timeout;
        match self
            .retrying("abort_transaction", || {
                let p = self.producer.clone();
                move || p.abort_transaction(timeout)
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(TxnFailure::Fatal(d))
            | Err(TxnFailure::Abortable(d))
            | Err(TxnFailure::Rejected(_, d))
            | Err(TxnFailure::Isolate(d)) => Err(BusError::Fatal { op: "abort_transaction", detail: d }),
        }
    }

    async fn abort_and_rewind<P: Processor>(
        &self,
        processor: &P,
        batch_start: &Positions,
        failure: TxnFailure,
        recovery: &mut Recovery,
        batch_len: usize,
    ) -> Result<BatchOutcome, BusError> {
        let reason = match failure {
            TxnFailure::Fatal(d) => {
                return Err(BusError::Fatal { op: "transaction", detail: d });
            }
            TxnFailure::Abortable(r) => r,
            TxnFailure::Rejected(id, why) => {
                let reason = format!(
                    "Kafka refused an output of {}/{}@{}: {why}; it goes to the DLQ on retry",
                    id.0, id.1, id.2
                );
                recovery.rejected.insert(id, why);
                reason
            }
            TxnFailure::Isolate(why) => {
                recovery.isolate = recovery.isolate.max(batch_len);
                format!("{why}; redoing the {batch_len} records one per transaction")
            }
        };
        tracing::warn!(stage = %self.cfg.stage, reason = %reason, "aborting transaction and rewinding");
        self.abort_only().await?;
        processor.settled(false);
        self.counters.aborts.fetch_add(1, Ordering::Relaxed);
        self.rewind(batch_start).await?;
        Ok(BatchOutcome::Aborted)
    }

    /// Seeks each partition back so its uncommitted records are read again. A partition that
    /// is no longer assigned is skipped (its new owner starts from the committed offset); a
    /// failed seek on an owned partition is fatal, because going on would skip records.
    async fn rewind(&self, to: &Positions) -> Result<(), BusError> {
        let c = self.consumer.clone();
        let to = to.clone();
        let timeout = self.call_timeout;
        blocking(move || {
            let assigned = c.assignment().map_err(|e| BusError::kafka("assignment", e))?;
            for ((topic, partition), off) in &to {
                if assigned.find_partition(topic, *partition).is_none() {
                    continue;
                }
                c.seek(topic, *partition, Offset::Offset(*off), timeout).map_err(|e| BusError::Fatal {
                    op: "seek",
                    detail: format!("cannot rewind {topic}/{partition} to {off}: {e}"),
                })?;
            }
            Ok(())
        })
        .await?
    }
}

enum BatchOutcome {
    Committed,
    RetryAfter { attempt: u32 },
    Aborted,
}
