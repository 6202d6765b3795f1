//! bus-bench: throughput of the bus against the local broker (run in release; see
//! `tests/bench/bus.sh`, which also runs Kafka's ProducerPerformance as the peer).
//!
//! Phase 1 produces N Avro `RawMessage` records of exactly `--record-bytes` bytes on the wire
//! (Confluent framing included) through `BusProducer` (idempotent, acks=all), each one encoded
//! through the registry-backed serde, and times first send to last acknowledgement.
//! Phase 2 runs the transactional loop over those records (decode, re-encode, produce, commit
//! offsets in the same transaction) and times first commit to last.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bus::topics::{TopicSpec, ensure_topics};
use bus::txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig};
use bus::{AvroSerde, BusProducer, InputRecord, MessageHeaders, Registry, Shutdown};
use canonical::{Channel, RawMessage, SenderId};
use clap::Parser;
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Size of each value on the wire (Confluent header + Avro body).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 20_000)]
    window: usize,
    #[arg(long, default_value_t = 1000)]
    max_records_per_txn: usize,
    /// Keep the bench topics afterwards (default: delete them).
    #[arg(long)]
    keep_topics: bool,
}

/// Random uppercase letters, like ProducerPerformance's payload (so compression gains are alike).
fn letters(n: usize, seed: &mut u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            b'A' + (*seed % 26) as u8
        })
        .collect()
}

fn record(i: u64, payload: Vec<u8>) -> RawMessage {
    RawMessage {
        id: format!("{:032}", i),
        tenant: "bench".into(),
        received_at: 1_700_000_000_000_000 + i as i64,
        channel: Channel::Mllp,
        peer: Some("127.0.0.1:40000".into()),
        sender: SenderId { application: "LAB".into(), facility: "H1".into() },
        receiver: None,
        message_type: Some("ORU^R01".into()),
        control_id: Some(format!("C{i:012}")),
        version: Some("2.5.1".into()),
        charset: None,
        content_type: "application/hl7-v2".into(),
        payload,
    }
}

struct Reencode {
    input: AvroSerde<RawMessage>,
    output: AvroSerde<RawMessage>,
}

impl Processor for Reencode {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        let v = r.value.as_deref().ok_or_else(|| ProcessError::permanent("empty", "no value"))?;
        let mut m = self.input.decode(v).await?;
        m.tenant.make_ascii_uppercase();
        let value = self.output.encode(&m).await?;
        let mut headers = MessageHeaders::new();
        headers.set_message_id(&m.id);
        Ok(vec![Output { topic: self.output.topic().to_string(), key: r.key.clone(), value, headers }])
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let cfg = arteria_tests::require_stack();
    let (input, output, dlq) =
        (arteria_tests::unique("bench.in"), arteria_tests::unique("bench.out"), arteria_tests::unique("bench.dlq"));
    let specs: Vec<TopicSpec> = [&input, &output, &dlq]
        .iter()
        .map(|t| TopicSpec {
            name: t.to_string(),
            partitions: args.partitions,
            replication_factor: 1,
            compacted: false,
            configs: Default::default(),
        })
        .collect();
    ensure_topics(&cfg, &specs).await?;
    let registry = Registry::new(&cfg.registry)?;
    let serde = registry.value_serde::<RawMessage>(&input);
    serde.register().await?;

    // Size the payload so that every framed value is exactly record_bytes.
    let probe = serde.encode(&record(0, vec![])).await?.len();
    let mut payload_len = args.record_bytes.saturating_sub(probe);
    loop {
        let n = serde.encode(&record(0, vec![b'A'; payload_len])).await?.len();
        if n == args.record_bytes {
            break;
        }
        if n > args.record_bytes {
            payload_len -= 1;
        } else {
            bail!("cannot size a record to {} bytes (got {n})", args.record_bytes);
        }
    }
    let p = &cfg.producer;
    println!(
        "bus-bench: {} records of {} bytes (Avro RawMessage, Confluent framing), {} partitions; producer acks=all idempotent linger.ms={} batch.size={} compression={}",
        args.records, args.record_bytes, args.partitions, p.linger_ms, p.batch_size, p.compression
    );

    // Phase 1: produce.
    let producer = BusProducer::new(&cfg, "bench")?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let payloads: Vec<Vec<u8>> = (0..64).map(|_| letters(payload_len, &mut seed)).collect();
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut results = futures::stream::iter(0..args.records)
        .map(|i| {
            let (producer, serde, input) = (producer.clone(), &serde, &input);
            let msg = record(i, payloads[(i % 64) as usize].clone());
            async move {
                let value = serde.encode(&msg).await?;
                let len = value.len() as u64;
                let key = format!("patient-{}", i % 1000);
                producer.send(input, Some(key.as_bytes()), &value, &MessageHeaders::new()).await?;
                anyhow::Ok(len)
            }
        })
        .buffer_unordered(args.window);
    while let Some(r) = results.next().await {
        bytes += r.context("produce")?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produce: {} records in {:.2} s = {:.0} records/s, {:.1} MiB/s (encode + send + broker ack)",
        args.records,
        secs,
        args.records as f64 / secs,
        bytes as f64 / secs / 1_048_576.0
    );

    // Phase 2: the transactional loop over the same records.
    let shutdown = Shutdown::new();
    let mut lc = TxLoopConfig::new(
        "bench",
        &arteria_tests::unique("bench.group"),
        &[&input],
        &arteria_tests::unique("bench.txn"),
    );
    lc.dlq_topic = Some(dlq.clone());
    lc.tuning.max_records_per_txn = args.max_records_per_txn;
    let t0 = Instant::now();
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await?;
    let counters = txl.counters();
    let proc_ = Reencode { input: serde.clone(), output: registry.value_serde(&output) };
    proc_.output.register().await?;
    let s2 = shutdown.clone();
    let handle = tokio::spawn(async move { txl.run(&proc_, &s2).await });
    let mut first_commit: Option<(Instant, u64)> = None;
    loop {
        let s = counters.snapshot();
        if first_commit.is_none() && s.records_in > 0 {
            first_commit = Some((Instant::now(), s.records_in));
        }
        if s.records_in >= args.records {
            break;
        }
        if handle.is_finished() || t0.elapsed() > Duration::from_secs(600) {
            bail!("transactional loop stopped early or stalled: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = Instant::now();
    shutdown.trigger();
    let stats = handle.await??;
    let (fc, fc_n) = first_commit.expect("at least one commit");
    let steady = (end - fc).as_secs_f64();
    println!(
        "txloop: {} records, {} transactions, {} aborts; {:.0} records/s from first to last commit ({:.2} s); {:.2} s including start-up and group join",
        stats.records_in,
        stats.transactions,
        stats.aborts,
        (args.records - fc_n) as f64 / steady,
        steady,
        (end - t0).as_secs_f64()
    );

    if !args.keep_topics {
        let admin: AdminClient<DefaultClientContext> = cfg.kafka.to_client_config().create()?;
        let names: Vec<&str> = [&input, &output, &dlq].iter().map(|s| s.as_str()).collect();
        admin.delete_topics(&names, &AdminOptions::new()).await?;
    }
    Ok(())
}
