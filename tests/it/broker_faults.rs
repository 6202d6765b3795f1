//! Broker faults: Kafka down when the stage starts, and Kafka killed and restarted mid-run.
//!
//! These tests stop and start the shared local broker, so they are `#[ignore]`d in a plain
//! `cargo test` and must run alone, after every other test against the stack:
//!
//! ```sh
//! cargo test -p arteria-tests --test broker_faults -- --ignored --test-threads=1
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use arteria_tests::{
    create_topic, exactly_once_in_order, numbered, produce_numbered_range, read_committed, require_stack, stack_sh,
    unique,
};

fn stack(args: &[&str]) {
    let st = stack_sh(args).status().expect("run deploy/local/stack.sh");
    assert!(st.success(), "stack.sh {} failed", args.join(" "));
}

/// Brings Kafka back whatever happens in the test, so later tests find it running.
struct KafkaGuard;
impl Drop for KafkaGuard {
    fn drop(&mut self) {
        let _ = stack_sh(&["start", "kafka"]).status();
    }
}

fn spawn_relay(input: &str, output: &str, group: &str, txn: &str, delay_us: u64) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tx-relay"))
        .args(["--input", input, "--output", output, "--group", group, "--txn-id", txn])
        .args(["--delay-us", &delay_us.to_string(), "--max-records", "100", "--give-up-ms", "300000"])
        .env("RUST_LOG", "warn,librdkafka=error")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tx-relay");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line matching `pred` (bounded so a broken run ends); returns the lines seen.
fn wait_for_line(rx: &Receiver<String>, limit: Duration, mut pred: impl FnMut(&str) -> bool) -> (bool, Vec<String>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < limit {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                let hit = pred(&l);
                seen.push(l);
                if hit {
                    return (true, seen);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    (false, seen)
}

fn stop_relay(mut child: Child, rx: &Receiver<String>) -> Vec<String> {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "relay must stop cleanly on SIGTERM; last lines: {:?}",
        lines.iter().rev().take(8).collect::<Vec<_>>()
    );
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the shared Kafka: run alone with --ignored --test-threads=1"]
async fn broker_down_at_start_up_is_retried_with_backoff_then_the_loop_runs() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("bf.start.in"), unique("bf.start.out"), unique("bf.start.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 3).await;
    }
    let expected = produce_numbered_range(&cfg, &input, 10, 0..100).await;

    let _guard = KafkaGuard;
    stack(&["stop", "kafka"]);
    let (child, rx) = spawn_relay(&input, &output, &unique("bf.start.g"), &unique("bf.start.t"), 0);
    // Two logged retries prove it is waiting, not dead.
    let mut retries = 0;
    let (ok, seen) = wait_for_line(&rx, Duration::from_secs(60), |l| {
        if l.contains("Kafka not reachable yet") {
            retries += 1;
        }
        retries >= 2
    });
    assert!(ok, "relay did not report retrying; lines: {seen:?}");
    assert!(!seen.iter().any(|l| l.contains("panicked") || l.starts_with("relay error")), "{seen:?}");
    stack(&["start", "kafka"]);
    let (ready, seen) = wait_for_line(&rx, Duration::from_secs(120), |l| l == "relay ready");
    assert!(ready, "relay did not start once Kafka was back; lines: {seen:?}");

    let got = read_committed(&cfg, &output, 1_000, Duration::from_secs(60)).await;
    stop_relay(child, &rx);
    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills the shared Kafka: run alone with --ignored --test-threads=1"]
async fn broker_killed_and_restarted_mid_run_loses_nothing() {
    let cfg = require_stack();
    let (input, output, dlq) = (unique("bf.mid.in"), unique("bf.mid.out"), unique("bf.mid.dlq"));
    for t in [&input, &output, &dlq] {
        create_topic(&cfg, t, 3).await;
    }
    // First half before the crash; the relay works through it slowly (1 ms per record).
    produce_numbered_range(&cfg, &input, 20, 0..100).await;
    let (child, rx) = spawn_relay(&input, &output, &unique("bf.mid.g"), &unique("bf.mid.t"), 1_000);
    let (started, seen) = wait_for_line(&rx, Duration::from_secs(60), |l| {
        l.strip_prefix("relay progress in=")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 300)
    });
    assert!(started, "relay made no progress: {seen:?}");

    let _guard = KafkaGuard;
    stack(&["kill", "kafka"]);
    // Second half produced while the broker is down: acks=all sends wait, then complete.
    let producing = {
        let cfg = cfg.clone();
        let input = input.clone();
        tokio::spawn(async move { produce_numbered_range(&cfg, &input, 20, 100..200).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack(&["start", "kafka"]);
    let expected = producing.await.expect("every send of the second half was acknowledged");

    let got = read_committed(&cfg, &output, 4_000, Duration::from_secs(120)).await;
    let lines = stop_relay(child, &rx);
    eprintln!("relay after the broker crash: {:?}", lines.iter().rev().find(|l| l.starts_with("relay stopped")));
    let problems = exactly_once_in_order(&got, numbered, &expected);
    assert!(
        problems.is_empty(),
        "{} records read; problems:\n{}\nrelay tail: {:?}",
        got.len(),
        problems.join("\n"),
        lines.iter().rev().take(8).collect::<Vec<_>>()
    );
}
