//! The transactional consume-transform-produce loop against the real broker: exactly once and
//! in per-key order across a `kill -9` of the processing process, retries of transient
//! failures, graceful shutdown on SIGTERM.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arteria_tests::{
    create_topic, exactly_once_in_order, numbered, produce_numbered, read_committed, require_stack, unique,
};
use bus::txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig};
use bus::{InputRecord, Registry, Shutdown};

fn spawn_relay(input: &str, output: &str, group: &str, txn: &str, delay_us: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tx-relay"))
        .args(["--input", input, "--output", output, "--group", group, "--txn-id", txn])
        .args(["--delay-us", &delay_us.to_string(), "--max-records", "100"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tx-relay")
}

/// Follows the relay's stderr on a thread; sends each line to a channel.
fn follow(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn progress_in(line: &str) -> Option<u64> {
    line.strip_prefix("relay progress in=")?.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_gives_every_input_exactly_once_in_key_order() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("tx.in"), unique("tx.out"), unique("tx.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 3).await;
    }
    // 10,000 records: 50 keys x 200, interleaved.
    let expected = produce_numbered(&cfg, &input, 50, 200).await;
    let (group, txn) = (unique("tx.group"), unique("tx.txn"));

    // ~150 µs of work per record makes the run last long enough to be cut in the middle.
    let mut first = spawn_relay(&input, &output, &group, &txn, 150);
    let lines = follow(&mut first);
    let mut seen_in = 0;
    for line in lines.iter() {
        if let Some(n) = progress_in(&line) {
            seen_in = n;
            if n >= 2_000 {
                break;
            }
        }
        assert!(!line.starts_with("relay error"), "{line}");
    }
    assert!(seen_in >= 2_000, "relay made no progress before exiting (last in={seen_in})");
    first.kill().expect("SIGKILL the relay"); // std's kill() is SIGKILL on Unix
    let status = first.wait().unwrap();
    assert!(!status.success(), "the relay was killed, not stopped");
    assert!(seen_in < 10_000, "the kill must land mid-run; the relay had already committed everything");

    let mut second = spawn_relay(&input, &output, &group, &txn, 0);
    let lines2 = follow(&mut second);
    let got = read_committed(&cfg, &output, 10_000, Duration::from_secs(90)).await;

    // SIGTERM: graceful stop, exit 0.
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    let status = second.wait().unwrap();
    let tail: Vec<String> = lines2.try_iter().collect();
    assert!(
        status.success(),
        "relay exits 0 on SIGTERM; stderr tail: {:?}",
        tail.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(tail.iter().any(|l| l.starts_with("relay stopped")), "relay reported its graceful stop");

    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(problems.is_empty(), "{} records read; problems:\n{}", got.len(), problems.join("\n"));
    assert_eq!(got.len(), 10_000);
    // Per key, output sits in one partition (same key, same partitioner).
    let mut partitions: HashMap<Vec<u8>, i32> = HashMap::new();
    for r in &got {
        let p = *partitions.entry(r.key.clone().unwrap()).or_insert(r.partition);
        assert_eq!(p, r.partition, "a key's records share a partition");
    }
    // For the record: how much the killed transaction had written (visible only uncommitted).
    let mut uc = cfg.clone();
    uc.kafka.extra.insert("isolation.level".into(), "read_uncommitted".into());
    let raw = read_committed(&uc, &output, 20_000, Duration::from_secs(5)).await;
    eprintln!(
        "kill -9 at in={seen_in}; read_uncommitted sees {} records (aborted ones included), read_committed {}",
        raw.len(),
        got.len()
    );
}

/// Fails transiently the first `fail_times` times it sees the record with value `k0:1`.
struct Flaky {
    output: String,
    fail_times: u32,
    failures: Arc<AtomicU32>,
    hooks: Arc<Hooks>,
}

/// How often the loop called the processor's hooks: prepare, settled(true), settled(false).
#[derive(Default, Debug)]
struct Hooks {
    prepared: AtomicU32,
    committed: AtomicU32,
    aborted: AtomicU32,
}

impl Processor for Flaky {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        if r.value.as_deref() == Some(b"k0:1") && self.failures.load(Ordering::SeqCst) < self.fail_times {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(ProcessError::transient("lookup service unavailable"));
        }
        Ok(vec![Output {
            topic: self.output.clone(),
            key: r.key.clone(),
            value: r.value.clone().unwrap_or_default(),
            headers: Default::default(),
        }])
    }

    async fn prepare(&self, _generation: u64) -> Result<(), ProcessError> {
        self.hooks.prepared.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn settled(&self, committed: bool) {
        let n = if committed { &self.hooks.committed } else { &self.hooks.aborted };
        n.fetch_add(1, Ordering::SeqCst);
    }
}

type FlakyRun = (Vec<InputRecord>, Vec<InputRecord>, bus::TxLoopStats, u32, Arc<Hooks>);

async fn run_flaky(fail_times: u32, max_attempts: u32) -> FlakyRun {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("flaky.in"), unique("flaky.out"), unique("flaky.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 1).await;
    }
    produce_numbered(&cfg, &input, 2, 3).await; // k0:0 k1:0 k0:1 k1:1 k0:2 k1:2
    let registry = Registry::new(&cfg.registry).unwrap();
    let mut lc = TxLoopConfig::new("flaky", &unique("flaky.group"), &[&input], &unique("flaky.txn"));
    lc.dlq_topic = Some(dlq.clone());
    lc.tuning.max_attempts = max_attempts;
    lc.tuning.retry.initial_ms = 50;
    let shutdown = Shutdown::new();
    let txl = TxLoop::start(&cfg, lc, &registry, &shutdown).await.unwrap();
    let failures = Arc::new(AtomicU32::new(0));
    let hooks = Arc::new(Hooks::default());
    let p = Flaky { output: output.clone(), fail_times, failures: failures.clone(), hooks: hooks.clone() };
    let s2 = shutdown.clone();
    let handle = tokio::spawn(async move { txl.run(&p, &s2).await });
    let expect_out = if fail_times >= max_attempts { 5 } else { 6 };
    let out = read_committed(&cfg, &output, expect_out, Duration::from_secs(60)).await;
    let dead =
        read_committed(&cfg, &dlq, 6 - expect_out, Duration::from_secs(if expect_out == 6 { 2 } else { 60 })).await;
    shutdown.trigger();
    let stats = handle.await.unwrap().expect("loop ends cleanly on shutdown");
    (out, dead, stats, failures.load(Ordering::SeqCst), hooks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_without_loss_duplication_or_reordering() {
    let (out, dead, stats, failures, hooks) = run_flaky(2, 5).await;
    assert_eq!(failures, 2);
    // The batch that met the first failure committed what came before it; the retry that
    // failed again at its first record aborted; then the rest committed. Every batch was
    // prepared and settled once.
    let (prepared, committed, aborted) = (
        hooks.prepared.load(Ordering::SeqCst),
        hooks.committed.load(Ordering::SeqCst),
        hooks.aborted.load(Ordering::SeqCst),
    );
    assert!(aborted >= 1, "{hooks:?}");
    assert_eq!(committed as u64, stats.transactions, "{hooks:?} {stats:?}");
    assert_eq!(prepared, committed + aborted, "{hooks:?}");
    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"k0:0"[..], b"k1:0", b"k0:1", b"k1:1", b"k0:2", b"k1:2"]);
    assert!(dead.is_empty());
    assert_eq!(stats.records_in, 6);
    assert_eq!(stats.transient_failures, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_past_max_attempts_goes_to_the_dlq_and_the_loop_goes_on() {
    let (out, dead, stats, failures, _) = run_flaky(100, 3).await;
    assert_eq!(failures, 3);
    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"k0:0"[..], b"k1:0", b"k1:1", b"k0:2", b"k1:2"]);
    assert_eq!(dead.len(), 1);
    let registry = Registry::new(&require_stack().registry).unwrap();
    let w = bus::DeadLetterWriter::new(&registry, "flaky", Some(&dead[0].topic));
    let dl = w.decode(dead[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(dl.error_class, "retries-exhausted");
    assert_eq!(dl.attempts, 3);
    assert_eq!(dl.original_value.as_deref(), Some(&b"k0:1"[..]));
    assert_eq!(stats.dead_lettered, 1);
}

/// Copies records slowly, so that a second instance can take over mid-run.
struct Slow {
    output: String,
}

impl Processor for Slow {
    async fn process(&self, r: &InputRecord) -> Result<Vec<Output>, ProcessError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(vec![Output {
            topic: self.output.clone(),
            key: r.key.clone(),
            value: r.value.clone().unwrap_or_default(),
            headers: Default::default(),
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_instance_stops_with_a_clear_fatal_error_and_its_successor_finishes_exactly_once() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("fence.in"), unique("fence.out"), unique("fence.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 2).await;
    }
    let expected = produce_numbered(&cfg, &input, 10, 200).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let mut lc = TxLoopConfig::new("fence", &unique("fence.group"), &[&input], &unique("fence.txn"));
    lc.dlq_topic = Some(dlq.clone());
    lc.tuning.max_records_per_txn = 50;

    let s1 = Shutdown::new();
    let first = TxLoop::start(&cfg, lc.clone(), &registry, &s1).await.unwrap();
    let c1 = first.counters();
    let out1 = output.clone();
    let s1b = s1.clone();
    let h1 = tokio::spawn(async move { first.run(&Slow { output: out1 }, &s1b).await });
    while c1.snapshot().records_in < 200 {
        assert!(!h1.is_finished(), "first instance ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Same transactional id: the newcomer fences the first instance.
    let s2 = Shutdown::new();
    let second = TxLoop::start(&cfg, lc, &registry, &s2).await.unwrap();
    let out2 = output.clone();
    let s2b = s2.clone();
    let h2 = tokio::spawn(async move { second.run(&Slow { output: out2 }, &s2b).await });

    let err = tokio::time::timeout(Duration::from_secs(120), h1).await.expect("fenced instance stops").unwrap();
    let msg = match err {
        Err(e @ bus::BusError::Fatal { .. }) => e.to_string(),
        other => panic!("expected a fatal error, got {other:?}"),
    };
    eprintln!("fenced instance stopped with: {msg}");
    assert!(msg.contains("fatal") && msg.contains("transactional_id"), "{msg}");

    let got = read_committed(&cfg, &output, 2_000, Duration::from_secs(90)).await;
    s2.trigger();
    h2.await.unwrap().expect("successor ends cleanly");
    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(problems.is_empty(), "{} records; fenced with: {msg}\n{}", got.len(), problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_commits_the_batch_in_hand_and_a_restart_continues_exactly_once() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("term.in"), unique("term.out"), unique("term.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 3).await;
    }
    let expected = produce_numbered(&cfg, &input, 20, 100).await; // 2,000 records
    let (group, txn) = (unique("term.group"), unique("term.txn"));
    let mut relay = spawn_relay(&input, &output, &group, &txn, 1_000);
    let lines = follow(&mut relay);
    for line in lines.iter() {
        if progress_in(&line).is_some_and(|n| n >= 300) {
            break;
        }
    }
    Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    let status = relay.wait().unwrap();
    assert!(status.success(), "exit 0 on SIGTERM");
    let stopped = lines.iter().find(|l| l.starts_with("relay stopped")).expect("relay reports its stop");
    let committed_in: usize =
        stopped.strip_prefix("relay stopped in=").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(committed_in < 2_000, "SIGTERM must land mid-run (in={committed_in})");

    // What the stopped relay reports as committed is exactly what read_committed readers see:
    // the batch in hand at SIGTERM was finished and committed, nothing was left half-done.
    let after_stop = read_committed(&cfg, &output, 2_000, Duration::from_secs(5)).await;
    assert_eq!(after_stop.len(), committed_in, "output after a graceful stop = committed input");

    let mut again = spawn_relay(&input, &output, &group, &txn, 0);
    let lines2 = follow(&mut again);
    let got = read_committed(&cfg, &output, 2_000, Duration::from_secs(60)).await;
    Command::new("kill").args(["-TERM", &again.id().to_string()]).status().unwrap();
    assert!(again.wait().unwrap().success());
    drop(lines2);
    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_joining_mid_run_rebalances_without_loss_or_duplication() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("reb.in"), unique("reb.out"), unique("reb.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 4).await;
    }
    let expected = produce_numbered(&cfg, &input, 40, 100).await; // 4,000 records
    let registry = Registry::new(&cfg.registry).unwrap();
    let group = unique("reb.group");
    let config = |txn: &str| {
        let mut lc = TxLoopConfig::new("reb", &group, &[&input], txn);
        lc.dlq_topic = Some(dlq.clone());
        lc.tuning.max_records_per_txn = 100;
        lc
    };
    let shutdown = Shutdown::new();
    let a = TxLoop::start(&cfg, config(&unique("reb.a")), &registry, &shutdown).await.unwrap();
    let ca = a.counters();
    let (oa, sa) = (output.clone(), shutdown.clone());
    let ha = tokio::spawn(async move { a.run(&Slow { output: oa }, &sa).await });
    while ca.snapshot().records_in < 500 {
        assert!(!ha.is_finished(), "replica A ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = TxLoop::start(&cfg, config(&unique("reb.b")), &registry, &shutdown).await.unwrap();
    let cb = b.counters();
    let (ob, sb) = (output.clone(), shutdown.clone());
    let hb = tokio::spawn(async move { b.run(&Slow { output: ob }, &sb).await });

    let got = read_committed(&cfg, &output, 4_000, Duration::from_secs(120)).await;
    shutdown.trigger();
    let (sa, sb) = (ha.await.unwrap().unwrap(), hb.await.unwrap().unwrap());
    eprintln!("replica A: {sa:?}\nreplica B: {sb:?}");
    assert!(cb.snapshot().records_in > 0, "replica B took over some partitions");
    assert_eq!(sa.records_in + sb.records_in, 4_000, "committed inputs add up");
    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(problems.is_empty(), "{} records\n{}", got.len(), problems.join("\n"));
}
