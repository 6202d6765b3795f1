//! tx-relay: a minimal stage on the bus's transactional loop, used by the crash and fault tests.
//!
//! The kill -9 and broker-restart tests need the processing to run in a separate process they
//! can kill. It copies every record of `--input` to `--output` with a deterministic transform
//! (value `v` becomes `v|relayed`, key and order kept), sends values starting with
//! `--poison-prefix` to the DLQ, and prints progress lines on stderr for the test to follow.

use std::time::Duration;

use anyhow::Context;
use bus::txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig};
use bus::{InputRecord, MessageHeaders, Registry, Shutdown};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    txn_id: String,
    /// DLQ topic (default `<stage>.dlq.v1` with stage `relay`).
    #[arg(long)]
    dlq: Option<String>,
    /// Artificial work per record, to make a run long enough to be interrupted.
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    #[arg(long, default_value = "POISON")]
    poison_prefix: String,
    /// Records per transaction.
    #[arg(long, default_value_t = 200)]
    max_records: usize,
    /// Start-up retry budget in ms.
    #[arg(long, default_value_t = 120_000)]
    give_up_ms: u64,
}

struct Relay {
    output: String,
    delay: Duration,
    poison: Vec<u8>,
}

impl Processor for Relay {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let value = r.value.as_deref().ok_or_else(|| ProcessError::permanent("empty", "record has no value"))?;
        if value.starts_with(&self.poison) {
            return Err(ProcessError::permanent("poison", "value starts with the poison prefix"));
        }
        let mut v = value.to_vec();
        v.extend_from_slice(b"|relayed");
        let mut headers = MessageHeaders::new();
        if let Some(id) = r.headers.message_id() {
            headers.set_message_id(&format!("{id}/relayed"));
        }
        Ok(vec![Output { topic: self.output.clone(), key: r.key.clone(), value: v, headers }])
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("relay error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = arteria_tests::bus_config();
    cfg.startup_retry.give_up_after_ms = Some(args.give_up_ms);
    let shutdown = Shutdown::on_signals().context("install signal handlers")?;
    let registry = Registry::new(&cfg.registry)?;
    let mut lc = TxLoopConfig::new("relay", &args.group, &[&args.input], &args.txn_id);
    lc.dlq_topic = args.dlq.clone();
    lc.tuning.max_records_per_txn = args.max_records;
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await?;
    eprintln!("relay ready");
    let counters = txl.counters();
    let progress = tokio::spawn(async move {
        loop {
            let s = counters.snapshot();
            eprintln!(
                "relay progress in={} out={} dlq={} txns={} aborts={}",
                s.records_in, s.records_out, s.dead_lettered, s.transactions, s.aborts
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let relay = Relay {
        output: args.output,
        delay: Duration::from_micros(args.delay_us),
        poison: args.poison_prefix.into_bytes(),
    };
    let stats = txl.run(&relay, &shutdown).await;
    progress.abort();
    let stats = stats?;
    eprintln!(
        "relay stopped in={} out={} dlq={} txns={} aborts={}",
        stats.records_in, stats.records_out, stats.dead_lettered, stats.transactions, stats.aborts
    );
    Ok(())
}
