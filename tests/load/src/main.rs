//! arteria-load: drives a running pipeline over MLLP and reports what it did.
//!
//! Open loop at a target rate: message i is due at start + i/rate, whichever connection is
//! free takes it, and its ACK latency is measured from when it was due, so a stalled server
//! cannot hide its stall by slowing the sender (coordinated omission). `--rate 0` sends back to
//! back on every connection instead (the maximum). End-to-end latency (ingest's accept →
//! committed in the query store) is read from the query service's own
//! `arteria_e2e_latency_seconds` histogram, as the difference of scrapes before and after the
//! run; CPU time and memory of each service come from /proc, by the pid files deploy/local
//! writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arteria_load::latency::{Summary, summarise};
use arteria_load::messages::{Generator, Kind};
use arteria_load::procs::{self, Reading};
use arteria_load::prom::{self, Histogram};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const E2E: &str = "arteria_e2e_latency_seconds";

#[derive(Parser, Debug)]
#[command(about = "Load the running pipeline over MLLP; ACK and end-to-end latency, CPU and memory per service")]
struct Args {
    /// MLLP listener.
    #[arg(long, default_value = "127.0.0.1:2575")]
    mllp: String,
    /// Messages per second; 0 = as fast as the connections are answered.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// MLLP connections (each carries one message at a time, as MLLP senders do).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Share of ORU^R01 (10 OBX); the rest are ADT^A01.
    #[arg(long, default_value_t = 0.5)]
    oru_share: f64,
    /// Distinct patients the messages are spread over.
    #[arg(long, default_value_t = 20_000)]
    patients: u64,
    /// Stamp every message with this MSH-7 (an HL7 DTM) instead of the time it is sent: all
    /// event ids of the run then share one lead, as if ids had no time in them (the A/B of the
    /// ids' time lead).
    #[arg(long, env = "ARTERIA_LOAD_SENT_AT")]
    sent_at: Option<String>,
    /// The query service's metrics; empty = no end-to-end measurement (e.g. a peer listener).
    #[arg(long, default_value = "http://127.0.0.1:9105/metrics")]
    query_metrics: String,
    /// Give up waiting for the pipeline to store everything after this many seconds.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// Directory of pid files (`<name>.pid`), as deploy/local/{stack,pipeline}.sh write them.
    #[arg(long, default_value = ".state/run")]
    pid_dir: PathBuf,
    /// Processes to account for (pid file names); missing ones are reported as such.
    #[arg(long, value_delimiter = ',', default_value = "ingest,normalize,enrich,fanout,query,kafka,registry")]
    processes: Vec<String>,
    /// A pid to account for besides the pid files, as name=pid (e.g. the HAPI peer).
    #[arg(long)]
    process: Vec<String>,
    /// Label of this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Each stage's metrics (name=url): messages it handled while sending show where a backlog
    /// builds. Empty = none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest=http://127.0.0.1:9101/metrics,normalize=http://127.0.0.1:9102/metrics,enrich=http://127.0.0.1:9103/metrics,fanout=http://127.0.0.1:9104/metrics,query=http://127.0.0.1:9105/metrics"
    )]
    stage_metrics: Vec<String>,
    /// Print the mean size in bytes of the first 10,000 messages of the mix, and exit.
    #[arg(long)]
    print_mean_size: bool,
}

/// What one connection saw.
#[derive(Default)]
struct ConnResult {
    /// From when the message was due (open loop) to its ACK, µs.
    due_to_ack: Vec<u32>,
    /// From writing the message to its ACK, µs.
    write_to_ack: Vec<u32>,
    codes: BTreeMap<String, u64>,
    accepted: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    sent: u64,
    bytes: u64,
    last_ack: Option<Instant>,
}

type Conn = Framed<TcpStream, MllpCodec>;

async fn connect(addr: &str) -> anyhow::Result<Conn> {
    let s = TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    s.set_nodelay(true)?;
    Ok(Framed::new(s, MllpCodec::new(1 << 20)))
}

/// Sends one message and returns its MSA-1, checking MSA-2 names it.
async fn round_trip(conn: &mut Conn, msg: &[u8], control_id: &str) -> Result<String, String> {
    conn.send(msg).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.next()).await {
            Err(_) => return Err("no ACK within 30 s".into()),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("receive: {e}")),
            Ok(Some(Ok(MllpItem::Frame(ack)))) => {
                let m = hl7v2::Message::parse(&ack).map_err(|_| "ACK does not parse".to_string())?;
                if m.get("MSA-2").map(|v| v.as_str() == control_id) != Some(true) {
                    return Err("ACK for another message".into());
                }
                return m.get("MSA-1").map(|v| v.as_str().to_string()).ok_or_else(|| "ACK without MSA-1".into());
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

struct Plan {
    generator: Arc<Generator>,
    next: AtomicU64,
    /// Messages to send (rate mode) or u64::MAX (max mode, bounded by `stop`).
    total: u64,
    interval: Option<Duration>,
    start: Instant,
    stop: Instant,
}

async fn connection(addr: String, plan: Arc<Plan>) -> ConnResult {
    let mut r = ConnResult::default();
    let mut conn: Option<Conn> = None;
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.total {
            break;
        }
        let due = match plan.interval {
            Some(iv) => {
                let due = plan.start + iv.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= plan.stop {
                    break;
                }
                now
            }
        };
        if conn.is_none() {
            match connect(&addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *r.errors.entry(format!("{e:#}")).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let kind = plan.generator.kind(i);
        let msg = plan.generator.message(i);
        let cid = plan.generator.control_id(i);
        let written = Instant::now();
        r.sent += 1;
        r.bytes += msg.len() as u64;
        match round_trip(conn.as_mut().expect("connected"), &msg, &cid).await {
            Ok(code) => {
                let now = Instant::now();
                r.due_to_ack.push(now.duration_since(due).as_micros().min(u32::MAX as u128) as u32);
                r.write_to_ack.push(now.duration_since(written).as_micros().min(u32::MAX as u128) as u32);
                r.last_ack = Some(now);
                if code == "AA" || code == "CA" {
                    *r.accepted.entry(kind.name()).or_default() += 1;
                }
                *r.codes.entry(code).or_default() += 1;
            }
            Err(e) => {
                *r.errors.entry(e).or_default() += 1;
                conn = None;
            }
        }
    }
    r
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<prom::Sample>> {
    let text = client.get(url).send().await?.error_for_status()?.text().await?;
    Ok(prom::parse(&text)?)
}

async fn e2e_histogram(client: &reqwest::Client, url: &str) -> anyhow::Result<Histogram> {
    let samples = scrape(client, url).await.with_context(|| format!("scrape {url}"))?;
    Histogram::from_samples(&samples, E2E, &[])
        .with_context(|| format!("{url} has no {E2E}: is the query service of this build running?"))
}

/// Records each stage has handled: `arteria_messages_total` with outcome acknowledged (and, for
/// the query store, duplicate: an upsert that found the same version stored).
async fn stage_counts(client: &reqwest::Client, stages: &[(String, String)]) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(stages.len());
    for (name, url) in stages {
        let n = match scrape(client, url).await {
            Ok(s) => ["acknowledged", "duplicate"]
                .iter()
                .map(|o| prom::value(&s, "arteria_messages_total", &[("stage", name), ("outcome", o)]).unwrap_or(0.0))
                .sum::<f64>()
                .into(),
            Err(_) => None,
        };
        out.push(n);
    }
    out
}

/// Waits until the e2e count has grown by at least `want` over `base` (Some(time it did)), or
/// until `timeout` or no growth for `stall`.
async fn wait_for_count(
    client: &reqwest::Client,
    url: &str,
    base: f64,
    want: f64,
    timeout: Duration,
    stall: Duration,
) -> anyhow::Result<(Option<Instant>, f64)> {
    let deadline = Instant::now() + timeout;
    let mut last = (f64::NAN, Instant::now());
    loop {
        let n = e2e_histogram(client, url).await?.count() - base;
        if n >= want {
            return Ok((Some(Instant::now()), n));
        }
        if n != last.0 {
            last = (n, Instant::now());
        }
        if Instant::now() >= deadline || last.1.elapsed() >= stall {
            return Ok((None, n));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the store's count until it has not grown for `quiet`; returns when it last grew and
/// the count then.
async fn wait_for_quiet(
    client: &reqwest::Client,
    url: &str,
    base: f64,
    quiet: Duration,
) -> anyhow::Result<(Instant, f64)> {
    let mut last = (e2e_histogram(client, url).await?.count() - base, Instant::now());
    while last.1.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = e2e_histogram(client, url).await?.count() - base;
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    Ok((last.1, last.0))
}

/// Resources stored per message of each kind: one message of each, counted at the store. Both
/// name the same patient and visit, admission first, so the lab result's count is without its
/// Patient and Encounter (fan-out publishes a lab's only when no version was published before):
/// the lower bound of a lab result's count, since in a run its visit is its own and some name a
/// patient for the first time.
async fn calibrate(client: &reqwest::Client, url: &str, addr: &str, g: &Generator) -> anyhow::Result<(f64, f64)> {
    // A backlog still being stored would be counted as this message's resources.
    let quiet_since = Instant::now();
    let limit = Duration::from_secs(900);
    wait_for_count(client, url, 0.0, f64::INFINITY, limit, Duration::from_secs(3)).await?;
    if quiet_since.elapsed() >= limit {
        bail!("the query store was still storing a backlog after 15 minutes; measure on an idle pipeline");
    }
    let mut conn = connect(addr).await?;
    let mut per = [0.0; 2];
    for (n, kind) in [Kind::Adt, Kind::Oru].into_iter().enumerate() {
        // Outside the run's indices; one index, so one patient (the two kinds have their own
        // sending applications, so the shared MSH-10 is no duplicate).
        let i = u64::MAX / 2;
        let base = e2e_histogram(client, url).await?.count();
        let code = round_trip(&mut conn, &g.message_of(i, kind), &g.control_id(i))
            .await
            .map_err(|e| anyhow::anyhow!("calibration {}: {e}", kind.name()))?;
        if code != "AA" && code != "CA" {
            bail!("calibration {} answered {code}", kind.name());
        }
        // Everything of one message is stored within a second or two; 3 s without growth ends it.
        let (_, got) =
            wait_for_count(client, url, base, f64::INFINITY, Duration::from_secs(60), Duration::from_secs(3)).await?;
        if got < 1.0 {
            bail!("calibration {}: nothing reached the store's e2e histogram (header not propagated?)", kind.name());
        }
        per[n] = got;
    }
    Ok((per[0], per[1]))
}

#[derive(serde::Serialize)]
struct ProcessReport {
    name: String,
    pid: Option<u32>,
    /// CPU time while sending, as a share of one core.
    cpu_cores_sending: Option<f64>,
    /// CPU time from the start to everything stored, seconds.
    cpu_seconds_total: Option<f64>,
    /// CPU µs per message accepted (start to everything stored).
    cpu_us_per_message: Option<f64>,
    rss_mib_mean: Option<f64>,
    rss_mib_max: Option<f64>,
}

#[derive(serde::Serialize)]
struct Report {
    label: String,
    mllp: String,
    mode: String,
    connections: usize,
    duration_s: f64,
    sent: u64,
    mean_message_bytes: f64,
    accepted: BTreeMap<&'static str, u64>,
    ack_codes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Accepted messages per second, first due time to last ACK.
    ack_throughput: f64,
    ack_latency_from_due: Option<Summary>,
    ack_latency_from_write: Option<Summary>,
    e2e: Option<E2eReport>,
    stages: Vec<StageReport>,
    processes: Vec<ProcessReport>,
    load_average: String,
}

/// Records a stage handled while the harness was sending (messages; resources for query).
#[derive(serde::Serialize)]
struct StageReport {
    name: String,
    handled_while_sending: Option<f64>,
    per_second_while_sending: Option<f64>,
}

#[derive(serde::Serialize)]
struct E2eReport {
    resources_per_adt: f64,
    /// Without the lab result's Patient and Encounter (see `calibrate`).
    resources_per_oru: f64,
    /// At least this many: a lab result stores its own visit's Encounter, and its Patient when
    /// it names a patient for the first time.
    expected_resources: f64,
    stored_resources: f64,
    complete: bool,
    /// Accepted messages per second from the first due time until all were stored.
    throughput: Option<f64>,
    /// Seconds after the last send until everything was stored.
    drain_s: Option<f64>,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
}

fn ms(v: Option<f64>) -> Option<f64> {
    v.map(|s| s * 1000.0)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "—".into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let g = Generator::for_now(args.patients, args.oru_share);
    let g = Arc::new(match &args.sent_at {
        Some(t) => g.stamped(t),
        None => g,
    });
    if args.print_mean_size {
        println!("{}", (0..10_000).map(|i| g.message(i).len()).sum::<usize>() / 10_000);
        return Ok(());
    }
    let e2e_url = (!args.query_metrics.is_empty()).then_some(args.query_metrics.as_str());

    let mut pids: Vec<(String, Option<u32>)> = args
        .processes
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| (n.clone(), procs::pid_from_file(&args.pid_dir.join(format!("{n}.pid")))))
        .collect();
    for p in &args.process {
        let (n, pid) = p.split_once('=').context("--process name=pid")?;
        pids.push((n.to_string(), Some(pid.parse().context("--process name=pid")?)));
    }
    pids.push(("arteria-load".into(), Some(std::process::id())));

    let per = match e2e_url {
        Some(url) => {
            let (adt, oru) = calibrate(&client, url, &args.mllp, &g).await?;
            eprintln!("[load] calibration: {adt} stored resources per ADT^A01, {oru} per ORU^R01");
            Some((adt, oru))
        }
        None => None,
    };
    let before = match e2e_url {
        Some(url) => Some(e2e_histogram(&client, url).await?),
        None => None,
    };

    let stages: Vec<(String, String)> = args
        .stage_metrics
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.split_once('=').map(|(n, u)| (n.to_string(), u.to_string())).context("--stage-metrics name=url"))
        .collect::<anyhow::Result<_>>()?;
    let stages_before = stage_counts(&client, &stages).await;
    let read_all = |pids: &[(String, Option<u32>)]| -> Vec<Option<Reading>> {
        pids.iter().map(|(_, p)| p.and_then(|p| procs::read_pid(p).ok())).collect()
    };
    let start_readings = read_all(&pids);
    // RSS every second while sending.
    let rss: Arc<std::sync::Mutex<Vec<Vec<u64>>>> = Arc::new(std::sync::Mutex::new(vec![Vec::new(); pids.len()]));
    let sampler = {
        let rss = rss.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let mut v = rss.lock().expect("rss samples");
                for (n, (_, p)) in pids.iter().enumerate() {
                    if let Some(r) = p.and_then(|p| procs::read_pid(p).ok()) {
                        v[n].push(r.rss_kib);
                    }
                }
            }
        })
    };

    let duration = Duration::from_secs(args.duration);
    let start = Instant::now() + Duration::from_millis(200);
    let plan = Arc::new(Plan {
        generator: g.clone(),
        next: AtomicU64::new(0),
        total: if args.rate == 0 { u64::MAX } else { args.rate * args.duration },
        interval: (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64)),
        start,
        stop: start + duration,
    });
    eprintln!(
        "[load] {}: {} for {} s over {} connections (run {})",
        args.label,
        if args.rate == 0 { "max rate".to_string() } else { format!("{}/s", args.rate) },
        args.duration,
        args.connections,
        g.run()
    );
    let tasks: Vec<_> =
        (0..args.connections).map(|_| tokio::spawn(connection(args.mllp.clone(), plan.clone()))).collect();
    let mut all = ConnResult::default();
    for t in tasks {
        let r = t.await?;
        all.due_to_ack.extend(r.due_to_ack);
        all.write_to_ack.extend(r.write_to_ack);
        for (k, v) in r.codes {
            *all.codes.entry(k).or_default() += v;
        }
        for (k, v) in r.accepted {
            *all.accepted.entry(k).or_default() += v;
        }
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        all.sent += r.sent;
        all.bytes += r.bytes;
        all.last_ack = all.last_ack.max(r.last_ack);
    }
    let sent_end = Instant::now();
    let sending_readings = read_all(&pids);
    let stages_after = stage_counts(&client, &stages).await;
    sampler.abort();
    let accepted_total: u64 = all.accepted.values().sum();
    let elapsed = all.last_ack.unwrap_or(sent_end).saturating_duration_since(start).as_secs_f64();
    eprintln!("[load] sent {} ({} accepted) in {elapsed:.1} s; waiting for the store", all.sent, accepted_total);

    let e2e = match (e2e_url, before, per) {
        (Some(url), Some(before), Some((adt, oru))) => {
            let expected = *all.accepted.get(Kind::Adt.name()).unwrap_or(&0) as f64 * adt
                + *all.accepted.get(Kind::Oru.name()).unwrap_or(&0) as f64 * oru;
            // `expected` is a lower bound (see `calibrate`): once it is reached, the store is
            // done when it has stored nothing more for two seconds; done at its last growth.
            let (mut done, mut stored) = wait_for_count(
                &client,
                url,
                before.count(),
                expected,
                Duration::from_secs(args.drain_timeout),
                Duration::from_secs(60),
            )
            .await?;
            if done.is_some() {
                let (last, n) = wait_for_quiet(&client, url, before.count(), Duration::from_secs(2)).await?;
                (done, stored) = (Some(last), n);
            }
            let d = e2e_histogram(&client, url).await?.since(&before);
            Some(E2eReport {
                resources_per_adt: adt,
                resources_per_oru: oru,
                expected_resources: expected,
                stored_resources: stored,
                complete: done.is_some(),
                // Incomplete: the share stored, over the time waited (the slowest stage's pace).
                throughput: Some(match done {
                    Some(t) => accepted_total as f64 / t.duration_since(start).as_secs_f64(),
                    None => accepted_total as f64 * (stored / expected.max(1.0)) / start.elapsed().as_secs_f64(),
                }),
                drain_s: done.map(|t| t.saturating_duration_since(sent_end).as_secs_f64()),
                p50_ms: ms(d.quantile(0.5)),
                p90_ms: ms(d.quantile(0.9)),
                p99_ms: ms(d.quantile(0.99)),
                mean_ms: ms(d.mean()),
            })
        }
        _ => None,
    };
    let end_readings = read_all(&pids);
    let total_wall = start.elapsed().as_secs_f64();
    let sending_wall = sent_end.duration_since(start).as_secs_f64();
    let tps = procs::ticks_per_second() as f64;
    let rss = rss.lock().expect("rss samples").clone();
    let processes = pids
        .iter()
        .enumerate()
        .map(|(n, (name, pid))| {
            let cpu = |a: &[Option<Reading>], b: &[Option<Reading>]| match (a[n], b[n]) {
                (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / tps),
                _ => None,
            };
            let total = cpu(&start_readings, &end_readings);
            let samples = &rss[n];
            ProcessReport {
                name: name.clone(),
                pid: *pid,
                cpu_cores_sending: cpu(&start_readings, &sending_readings).map(|s| s / sending_wall),
                cpu_seconds_total: total,
                cpu_us_per_message: total.filter(|_| accepted_total > 0).map(|s| s * 1e6 / accepted_total as f64),
                rss_mib_mean: (!samples.is_empty())
                    .then(|| samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1024.0),
                rss_mib_max: samples.iter().max().map(|&k| k as f64 / 1024.0),
            }
        })
        .collect();
    let _ = total_wall;
    let stage_reports = stages
        .iter()
        .enumerate()
        .map(|(n, (name, _))| StageReport {
            name: name.clone(),
            handled_while_sending: match (stages_before[n], stages_after[n]) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            per_second_while_sending: match (stages_before[n], stages_after[n]) {
                (Some(a), Some(b)) => Some((b - a) / sending_wall),
                _ => None,
            },
        })
        .collect();

    let report = Report {
        label: args.label.clone(),
        mllp: args.mllp.clone(),
        mode: if args.rate == 0 { "max".into() } else { format!("{}/s", args.rate) },
        connections: args.connections,
        duration_s: elapsed,
        sent: all.sent,
        mean_message_bytes: all.bytes as f64 / all.sent.max(1) as f64,
        accepted: all.accepted,
        ack_codes: all.codes,
        errors: all.errors,
        ack_throughput: accepted_total as f64 / elapsed.max(1e-9),
        ack_latency_from_due: summarise(&mut all.due_to_ack),
        ack_latency_from_write: summarise(&mut all.write_to_ack),
        e2e,
        stages: stage_reports,
        processes,
        load_average: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
    };
    print_table(&report);
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.json {
        std::fs::write(p, &json).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!("== {} ({}, {} connections, MLLP {}) ==", r.label, r.mode, r.connections, r.mllp);
    println!(
        "sent {} messages (mean {:.0} bytes) in {:.1} s; ACK codes {:?}; errors {:?}",
        r.sent, r.mean_message_bytes, r.duration_s, r.ack_codes, r.errors
    );
    println!("accepted (AA/CA): {:?}, {:.0} messages/s", r.accepted, r.ack_throughput);
    for (what, s) in
        [("ACK latency from due time", &r.ack_latency_from_due), ("ACK latency from write", &r.ack_latency_from_write)]
    {
        if let Some(s) = s {
            println!(
                "{what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
            );
        }
    }
    if let Some(e) = &r.e2e {
        println!(
            "end to end (accept → committed in the query store), per stored resource: p50 {} ms, p90 {} ms, p99 {} ms, mean {} ms",
            fmt(e.p50_ms, 1),
            fmt(e.p90_ms, 1),
            fmt(e.p99_ms, 1),
            fmt(e.mean_ms, 1)
        );
        println!(
            "stored {} of at least {} resources ({} per ADT, {} per ORU + its new Patient or Encounter){}; end-to-end throughput {} messages/s; drained {} s after the last send",
            e.stored_resources,
            e.expected_resources,
            e.resources_per_adt,
            e.resources_per_oru,
            if e.complete { "" } else { " — INCOMPLETE" },
            fmt(e.throughput, 0),
            fmt(e.drain_s, 1)
        );
    }
    if !r.stages.is_empty() {
        let line: Vec<String> = r
            .stages
            .iter()
            .map(|s| {
                format!("{} {} ({}/s)", s.name, fmt(s.handled_while_sending, 0), fmt(s.per_second_while_sending, 0))
            })
            .collect();
        println!("handled while sending (messages; query: resources): {}", line.join(", "));
    }
    println!("| process | CPU while sending (cores) | CPU µs / message | RSS mean MiB | RSS max MiB |");
    println!("|---|---:|---:|---:|---:|");
    for p in &r.processes {
        println!(
            "| {} | {} | {} | {} | {} |",
            p.name,
            fmt(p.cpu_cores_sending, 2),
            fmt(p.cpu_us_per_message, 0),
            fmt(p.rss_mib_mean, 1),
            fmt(p.rss_mib_max, 1)
        );
    }
    println!("load average after: {}", r.load_average);
}
