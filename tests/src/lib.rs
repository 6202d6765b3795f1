//! Test harness: where the local stack and `../shared` are, and small helpers the integration
//! tests share (unique topic names, a read_committed reader, the schema compatibility check).
//!
//! Integration tests run against the real Kafka and registry that `deploy/local/stack.sh up`
//! starts; nothing here stands in for them. When the stack is not reachable the tests fail
//! with the command that starts it, rather than skipping silently.

pub mod mllp;
pub mod schema_check;
pub mod services;
pub mod stage;

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bus::config::{BusConfig, RetryConfig};
use bus::consumer::{InputRecord, consumer_client_config};
use rdkafka::consumer::{Consumer, StreamConsumer};

/// Kafka bootstrap servers (`ARTERIA_KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`).
pub fn kafka_bootstrap() -> String {
    std::env::var("ARTERIA_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Registry base URL (`ARTERIA_REGISTRY_URL`, default Apicurio's Confluent API on 8081).
pub fn registry_url() -> String {
    std::env::var("ARTERIA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// The workspace root (this package lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `../shared` (or `ARTERIA_SHARED`), when it exists. Tests that need it must say so loudly
/// when it is missing (and fail when `CI=true`).
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("ARTERIA_SHARED").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared"));
    p.is_dir().then_some(p)
}

/// `deploy/local/stack.sh <args>`.
pub fn stack_sh(args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(workspace_root().join("deploy/local/stack.sh")).args(args);
    c
}

/// Bus settings pointing at the local stack, with a short start-up retry budget so a missing
/// stack fails fast in tests.
pub fn bus_config() -> BusConfig {
    let mut cfg = BusConfig::default();
    cfg.kafka.bootstrap_servers = kafka_bootstrap();
    cfg.kafka.client_id = "arteria-tests".into();
    cfg.registry.url = registry_url();
    cfg.topics.partitions = 3;
    cfg.topics.replication_factor = 1;
    cfg.startup_retry = RetryConfig { initial_ms: 200, max_ms: 2_000, give_up_after_ms: Some(30_000) };
    // Extra librdkafka properties for experiments, e.g. ARTERIA_RDKAFKA_EXTRA="debug=eos,linger.ms=1".
    if let Ok(extra) = std::env::var("ARTERIA_RDKAFKA_EXTRA") {
        for kv in extra.split(',').filter(|s| !s.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                cfg.kafka.extra.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    cfg
}

fn tcp_reachable(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Checks Kafka and the registry answer; panics with how to start them if not.
pub fn require_stack() -> BusConfig {
    let bootstrap = kafka_bootstrap();
    let first = bootstrap.split(',').next().unwrap_or_default().to_string();
    let url = registry_url();
    let host_port = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut missing = Vec::new();
    if !tcp_reachable(&first) {
        missing.push(format!("Kafka at {bootstrap}"));
    }
    if !tcp_reachable(&host_port) {
        missing.push(format!("schema registry at {url}"));
    }
    assert!(
        missing.is_empty(),
        "{} not reachable: run `make up-stack` (deploy/local/stack.sh up), or set ARTERIA_KAFKA_BOOTSTRAP / ARTERIA_REGISTRY_URL",
        missing.join(" and ")
    );
    bus_config()
}

/// A topic (or subject, group) name unique to this test run, so tests never see each other's
/// data: `it.<name>.<pid>.<millis>.<n>`. The counter matters: two tests of one binary run in
/// parallel, and asking for the same name in the same millisecond once gave both the same
/// topic, group and transactional id (each then saw the other's records).
pub fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("it.{name}.{}.{ms}.{n}", std::process::id())
}

/// Creates `topic` with `partitions` partitions (replication 1).
pub async fn create_topic(cfg: &BusConfig, topic: &str, partitions: i32) {
    let spec = bus::topics::TopicSpec {
        name: topic.to_string(),
        partitions,
        replication_factor: 1,
        compacted: false,
        configs: Default::default(),
    };
    bus::topics::ensure_topics(cfg, &[spec]).await.unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

/// Reads `topic` from the beginning with read_committed until `expected` records arrived or
/// nothing new came for `idle` (a bound so a broken run ends; not a timing assertion).
pub async fn read_committed(cfg: &BusConfig, topic: &str, expected: usize, idle: Duration) -> Vec<InputRecord> {
    let c: StreamConsumer = consumer_client_config(cfg, &unique("reader")).create().expect("reader consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < expected && last.elapsed() < idle {
        match tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            Ok(Ok(m)) => {
                out.push(InputRecord::from_message(&m));
                last = Instant::now();
            }
            Ok(Err(e)) => eprintln!("reader: consumer error {e}"),
            Err(_) => {}
        }
    }
    out
}

/// Checks that `records` hold each of `expected_keys_in_order` (per key, the values in order)
/// exactly once, using `id` to name a record. Returns a list of problems, empty when fine.
pub fn exactly_once_in_order(
    records: &[InputRecord],
    id: impl Fn(&InputRecord) -> (String, u64),
    expected: &HashMap<String, u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for r in records {
        let (k, seq) = id(r);
        seen.entry(k).or_default().push(seq);
    }
    for (k, n) in expected {
        let got = seen.remove(k).unwrap_or_default();
        let want: Vec<u64> = (0..*n).collect();
        if got != want {
            let dups = got.len() as i64 - got.iter().collect::<std::collections::HashSet<_>>().len() as i64;
            problems.push(format!(
                "key {k}: {} records, want {n}; duplicates {dups}; in order: {}; first wrong at {:?}",
                got.len(),
                got.windows(2).all(|w| w[0] < w[1]),
                got.iter().zip(want.iter()).position(|(a, b)| a != b)
            ));
        }
    }
    for (k, v) in seen {
        problems.push(format!("unexpected key {k} with {} records", v.len()));
    }
    problems
}

/// Produces `per_key` records for each of `keys` keys (`k0`..), interleaved, value
/// `k<i>:<seq>`, with a message id header; returns the expected count per key. Records are
/// enqueued in order, so each key's records land in order (idempotent producer).
pub async fn produce_numbered(cfg: &BusConfig, topic: &str, keys: usize, per_key: u64) -> HashMap<String, u64> {
    produce_numbered_range(cfg, topic, keys, 0..per_key).await
}

/// Like [`produce_numbered`] for sequence numbers `seqs` only (to produce a run in parts).
pub async fn produce_numbered_range(
    cfg: &BusConfig,
    topic: &str,
    keys: usize,
    seqs: std::ops::Range<u64>,
) -> HashMap<String, u64> {
    use futures::StreamExt;
    let producer = bus::BusProducer::new(cfg, "it-input").expect("producer");
    let per_key = seqs.end;
    let items: Vec<(String, u64)> = seqs.flat_map(|s| (0..keys).map(move |k| (format!("k{k}"), s))).collect();
    let topic = topic.to_string();
    let results: Vec<_> = futures::stream::iter(items)
        .map(|(k, s)| {
            let p = producer.clone();
            let topic = topic.clone();
            async move {
                let mut h = bus::MessageHeaders::new();
                h.set_message_id(&format!("{k}:{s}"));
                p.send(&topic, Some(k.as_bytes()), format!("{k}:{s}").as_bytes(), &h).await
            }
        })
        .buffered(2_000)
        .collect()
        .await;
    for r in results {
        r.expect("input record acknowledged");
    }
    (0..keys).map(|k| (format!("k{k}"), per_key)).collect()
}

/// Key and sequence number of a record written by [`produce_numbered`] (and possibly relayed).
pub fn numbered(r: &InputRecord) -> (String, u64) {
    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
    let v = v.trim_end_matches("|relayed");
    let (k, s) = v.split_once(':').unwrap_or((v, "x"));
    (k.to_string(), s.parse().unwrap_or(u64::MAX))
}

/// Registers `schema` under `subject` through the registry's Confluent REST API (the raw
/// response, so a test can assert on refusals too).
pub async fn register_schema(client: &reqwest::Client, subject: &str, schema: &str) -> reqwest::Response {
    client
        .post(format!("{}/subjects/{subject}/versions", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .expect("registry answers")
}

/// Sets the compatibility level of `subject` (e.g. `BACKWARD`), panicking if refused.
pub async fn set_compatibility(client: &reqwest::Client, subject: &str, level: &str) {
    let r = client
        .put(format!("{}/config/{subject}", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "compatibility": level }))
        .send()
        .await
        .expect("registry answers");
    assert!(r.status().is_success(), "set {level} on {subject}: {}", r.status());
}

/// The corpus folders holding HL7 v2 (the C-CDA folders hold XML documents).
const CORPUS_V2_FOLDERS: &[&str] = &[
    "microsoft-fhir-converter-hl7v2",
    "hl7-v2-to-fhir",
    "linuxforhealth-hl7v2-fhir-converter",
    "google-healthcare-data-harmonization",
];

fn files_under(dir: &std::path::Path, exts: &[&str], recurse: bool, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recurse {
                files_under(&p, exts, recurse, out);
            }
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e)) {
            out.push(p);
        }
    }
}

/// Every HL7 v2 sample file: the repository's `examples/*.hl7` (not the malformed ones), then
/// the shared corpus's v2 files. Without the corpus: a panic under `CI=true`, else a loud note
/// from `test` and the examples only.
pub fn hl7v2_sample_files(test: &str) -> Vec<PathBuf> {
    let root = workspace_root();
    let mut paths = Vec::new();
    files_under(&root.join("examples"), &["hl7"], false, &mut paths);
    let examples = paths.len();
    assert!(examples >= 3, "expected the example messages in {}", root.join("examples").display());
    match shared_dir().map(|d| d.join("corpus")).filter(|d| d.is_dir()) {
        Some(corpus) => {
            for f in CORPUS_V2_FOLDERS {
                files_under(&corpus.join(f), &["hl7", "txt"], true, &mut paths);
            }
            assert!(paths.len() - examples >= 190, "expected ~201 corpus files, found {}", paths.len() - examples);
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the shared corpus is missing (set ARTERIA_SHARED; CI=true needs it)")
        }
        None => eprintln!("\n*** {test}: shared corpus not found (set ARTERIA_SHARED); examples/ only ***\n"),
    }
    paths
}
