//! `arteria dlq list|replay`: what is in a stage's dead letter queue, and sending chosen dead
//! letters through again once their cause is fixed. The logic (snapshot, selection, replay)
//! lives in `bus::dlq_replay`; this module parses arguments and prints.
//!
//! `list` prints one tab-separated line per dead letter, oldest first: id, failed_at (UTC),
//! stage, error class, `source_topic[partition]@offset`, `attempts=N`, detail. The original
//! key, value and headers are PHI and are printed only with `--show-original`.
//!
//! `replay` re-produces each selected original to its source topic (or `--to`), with an
//! `arteria-replayed-from: <dead letter id>` header, and prints `<id> -> <topic> …` per record
//! and `replayed N of M selected`. Exit code 1 when any delivery failed.

use anyhow::{Context, Result};
use bus::dlq_replay::{self, DlqEntry, DlqSnapshot, Selection};
use bus::{BusConfig, BusProducer, Registry};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A service's configuration file (any of them): its [bus] section gives Kafka, security
    /// included, and the registry, authentication included. --bootstrap, --registry and
    /// --kafka-property still win.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers [default: $ARTERIA_KAFKA_BOOTSTRAP, the --config file's, or
    /// 127.0.0.1:9092].
    #[arg(long, global = true)]
    bootstrap: Option<String>,
    /// Schema registry base URL, Confluent-compatible API [default: $ARTERIA_REGISTRY_URL, the
    /// --config file's, or http://127.0.0.1:8081/apis/ccompat/v7].
    #[arg(long, global = true)]
    registry: Option<String>,
    /// Extra librdkafka property, e.g. `security.protocol=sasl_ssl`; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", global = true)]
    kafka_properties: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the dead letters the DLQ holds now (read from the beginning to its current end).
    List(ListArgs),
    /// Re-produce selected dead letters' originals to their source topic (or --to).
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The DLQ topic, e.g. normalize.dlq.v1.
    #[arg(long)]
    topic: String,
    /// Only this error class (e.g. parse, mapping, retries-exhausted); repeatable.
    #[arg(long = "class", value_name = "CLASS")]
    classes: Vec<String>,
    /// At most this many (oldest first).
    #[arg(long)]
    limit: Option<usize>,
    /// Also print the original key, value and headers (escaped). They contain PHI.
    #[arg(long)]
    show_original: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["classes", "ids", "all"])))]
struct ReplayArgs {
    /// The DLQ topic, e.g. normalize.dlq.v1.
    #[arg(long)]
    topic: String,
    /// Only dead letters of this error class; repeatable.
    #[arg(long = "class", value_name = "CLASS")]
    classes: Vec<String>,
    /// Only these dead letter ids; repeatable. An id not in the DLQ fails the whole replay.
    #[arg(long = "id", value_name = "ID", num_args = 1..)]
    ids: Vec<String>,
    /// Every dead letter in the DLQ (required when neither --class nor --id is given).
    #[arg(long)]
    all: bool,
    /// At most this many (oldest first).
    #[arg(long)]
    limit: Option<usize>,
    /// Produce to this topic instead of each dead letter's source topic.
    #[arg(long)]
    to: Option<String>,
    /// Print what would be replayed; produce nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What the CLI reads of a service's configuration file: the bus; the other services'
/// sections are left out by `settings`, telemetry is ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServiceFile {
    bus: BusConfig,
    telemetry: serde::de::IgnoredAny,
}

fn bus_config(args: &Args) -> Result<BusConfig> {
    bus_config_in(args, std::env::vars())
}

/// The bus as the services would read it from `--config` and the environment `vars`
/// (`ARTERIA_KAFKA_BOOTSTRAP`, `ARTERIA_REGISTRY_URL`, `ARTERIA__BUS__…`), then the flags.
fn bus_config_in(args: &Args, vars: impl IntoIterator<Item = (String, String)>) -> Result<BusConfig> {
    let file: ServiceFile = settings::load_with("", args.config.as_deref(), vars)?;
    let mut cfg = file.bus;
    if let Some(b) = &args.bootstrap {
        cfg.kafka.bootstrap_servers = b.clone();
    }
    cfg.kafka.client_id = "arteria-cli".into();
    if let Some(r) = &args.registry {
        cfg.registry.url = r.clone();
    }
    for kv in &args.kafka_properties {
        let (k, v) = kv.split_once('=').with_context(|| format!("--kafka-property {kv:?} is not KEY=VALUE"))?;
        cfg.kafka.extra.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(cfg)
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let cfg = bus_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let registry = Registry::new(&cfg.registry).context("schema registry settings")?;
        match &args.command {
            Command::List(a) => list(&cfg, &registry, a).await,
            Command::Replay(a) => replay(&cfg, &registry, a).await,
        }
    })
}

async fn snapshot(cfg: &BusConfig, registry: &Registry, topic: &str) -> Result<DlqSnapshot> {
    let snap = dlq_replay::read_snapshot(cfg, registry, topic)
        .await
        .with_context(|| format!("reading {topic} from Kafka at {}", cfg.kafka.bootstrap_servers))?;
    for u in &snap.undecodable {
        eprintln!("arteria: warning: {topic}[{}]@{} is not a readable dead letter: {}", u.partition, u.offset, u.error);
    }
    Ok(snap)
}

/// `failed_at` (µs since the epoch) as RFC 3339 UTC.
fn timestamp(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_else(|_| format!("{micros}us"))
}

/// Text with control characters escaped, so one dead letter stays one line.
fn one_line(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

fn bytes(b: Option<&[u8]>) -> String {
    b.map_or_else(|| "-".to_string(), |b| b.escape_ascii().to_string())
}

fn list_line(e: &DlqEntry, show_original: bool) -> String {
    let d = &e.dead_letter;
    let mut line = format!(
        "{}\t{}\t{}\t{}\t{}[{}]@{}\tattempts={}\t{}",
        d.id,
        timestamp(d.failed_at),
        one_line(&d.stage),
        one_line(&d.error_class),
        one_line(&d.source_topic),
        d.source_partition,
        d.source_offset,
        d.attempts,
        one_line(&d.detail)
    );
    if show_original {
        let headers: Vec<String> =
            d.original_headers.iter().map(|h| format!("{}={}", one_line(&h.name), bytes(h.value.as_deref()))).collect();
        line.push_str(&format!(
            "\tkey={}\tvalue={}\theaders={}",
            bytes(d.original_key.as_deref()),
            bytes(d.original_value.as_deref()),
            headers.join(",")
        ));
    }
    line
}

async fn list(cfg: &BusConfig, registry: &Registry, a: &ListArgs) -> Result<ExitCode> {
    let snap = snapshot(cfg, registry, &a.topic).await?;
    let sel = Selection { classes: a.classes.clone(), ids: Vec::new(), limit: a.limit };
    let chosen = sel.select(&snap)?;
    let mut out = std::io::stdout().lock();
    for e in &chosen {
        writeln!(out, "{}", list_line(e, a.show_original))?;
    }
    let classes: Vec<String> = dlq_replay::count_by_class(&snap.entries.iter().collect::<Vec<_>>())
        .into_iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    eprintln!(
        "{} of {} dead letters in {} shown ({})",
        chosen.len(),
        snap.entries.len(),
        a.topic,
        if classes.is_empty() { "empty".to_string() } else { classes.join(", ") }
    );
    Ok(if snap.undecodable.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn replay(cfg: &BusConfig, registry: &Registry, a: &ReplayArgs) -> Result<ExitCode> {
    let snap = snapshot(cfg, registry, &a.topic).await?;
    let sel = Selection { classes: a.classes.clone(), ids: a.ids.clone(), limit: a.limit };
    let chosen = sel.select(&snap)?;
    let plan = dlq_replay::plan(&chosen, a.to.as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.dry_run {
        for r in &plan {
            writeln!(out, "{} -> {} (dry run)", r.dead_letter_id, r.topic)?;
        }
        writeln!(out, "dry run: would replay {} of {} selected; nothing produced", plan.len(), plan.len())?;
        return Ok(ExitCode::SUCCESS);
    }
    if plan.is_empty() {
        writeln!(out, "replayed 0 of 0 selected")?;
        return Ok(ExitCode::SUCCESS);
    }
    dlq_replay::check_targets(cfg, &plan).await?;
    let producer = BusProducer::new(cfg, "dlq-replay")?;
    let outcomes = dlq_replay::replay(&producer, &plan).await;
    let mut ok = 0;
    for o in &outcomes {
        match &o.result {
            Ok(d) => {
                ok += 1;
                writeln!(out, "{} -> {} [partition {}, offset {}]", o.dead_letter_id, o.topic, d.partition, d.offset)?;
            }
            Err(e) => writeln!(out, "{} -> {} FAILED: {e}", o.dead_letter_id, o.topic)?,
        }
    }
    writeln!(out, "replayed {ok} of {} selected", outcomes.len())?;
    Ok(if ok == outcomes.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::dlq::HeaderEntry;

    fn entry() -> DlqEntry {
        DlqEntry {
            partition: 1,
            offset: 7,
            dead_letter: bus::DeadLetter {
                id: "dl-1".into(),
                stage: "normalize".into(),
                error_class: "parse".into(),
                detail: "line 1\nline 2".into(),
                attempts: 3,
                failed_at: 1_700_000_000_123_456,
                source_topic: "hl7v2.raw.v1".into(),
                source_partition: 2,
                source_offset: 41,
                source_timestamp_ms: None,
                original_key: Some(b"PATIENT-KEY".to_vec()),
                original_value: Some(b"MSH|SECRET-NAME\r\x00".to_vec()),
                original_headers: vec![HeaderEntry { name: "h".into(), value: Some(b"SECRET-H".to_vec()) }],
            },
        }
    }

    #[test]
    fn a_list_line_has_the_fields_and_no_original_bytes_unless_asked() {
        let line = list_line(&entry(), false);
        assert_eq!(
            line,
            "dl-1\t2023-11-14T22:13:20.123456Z\tnormalize\tparse\thl7v2.raw.v1[2]@41\tattempts=3\tline 1\\nline 2"
        );
        assert!(!line.contains("SECRET") && !line.contains("PATIENT-KEY"));
        let full = list_line(&entry(), true);
        assert!(full.starts_with(&line));
        assert!(full.ends_with("\tkey=PATIENT-KEY\tvalue=MSH|SECRET-NAME\\r\\x00\theaders=h=SECRET-H"), "{full}");
    }

    #[test]
    fn kafka_properties_must_be_key_value() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct T {
            #[command(flatten)]
            a: Args,
        }
        let t = T::try_parse_from(["t", "--kafka-property", "security.protocol=ssl", "list", "--topic", "x"]).unwrap();
        let none = Vec::<(String, String)>::new;
        assert_eq!(
            bus_config_in(&t.a, none()).unwrap().kafka.extra.get("security.protocol").map(String::as_str),
            Some("ssl")
        );
        let bad = T::try_parse_from(["t", "--kafka-property", "nonsense", "list", "--topic", "x"]).unwrap();
        assert!(bus_config_in(&bad.a, none()).is_err());
        // A service's file gives the bus, security and registry authentication included; the
        // flags still win.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fanout.toml");
        std::fs::write(
            &file,
            "[fanout]\ngroup_id = \"x\"\n[telemetry]\nlog_level = \"debug\"\n[bus.kafka]\nbootstrap_servers = \"kafka:9093\"\n\
             security_protocol = \"sasl_ssl\"\n[bus.registry]\nurl = \"https://registry.example.org\"\n\
             [bus.registry.auth]\nkind = \"basic\"\nusername = \"ops\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let t = T::try_parse_from(["t", "--config", path, "list", "--topic", "x"]).unwrap();
        let cfg = bus_config_in(&t.a, none()).unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "kafka:9093");
        assert_eq!(cfg.registry.url, "https://registry.example.org");
        assert!(matches!(&cfg.registry.auth, bus::config::RegistryAuth::Basic { username, .. } if username == "ops"));
        assert_eq!(cfg.kafka.security_protocol, bus::config::SecurityProtocol::SaslSsl);
        // The environment wins over the file, as for the services; a flag over both.
        let env = || vec![("ARTERIA_KAFKA_BOOTSTRAP".to_string(), "env:1".to_string())];
        assert_eq!(bus_config_in(&t.a, env()).unwrap().kafka.bootstrap_servers, "env:1");
        let t = T::try_parse_from(["t", "--config", path, "--bootstrap", "b:1", "list", "--topic", "x"]).unwrap();
        assert_eq!(bus_config_in(&t.a, env()).unwrap().kafka.bootstrap_servers, "b:1");
        let plain = T::try_parse_from(["t", "list", "--topic", "x"]).unwrap();
        assert_eq!(bus_config_in(&plain.a, none()).unwrap().kafka.bootstrap_servers, "127.0.0.1:9092");
        std::fs::write(&file, "[bus.kafka]\nbootstrap_server = \"typo:1\"\n").unwrap();
        let e = bus_config_in(&T::try_parse_from(["t", "--config", path, "list", "--topic", "x"]).unwrap().a, none());
        assert!(e.unwrap_err().to_string().contains("bootstrap_server"), "a misspelt key is refused");
        // A replay must say what to replay.
        assert!(T::try_parse_from(["t", "replay", "--topic", "x"]).is_err());
        assert!(T::try_parse_from(["t", "replay", "--topic", "x", "--all"]).is_ok());
        let ids = T::try_parse_from(["t", "replay", "--topic", "x", "--id", "a", "b", "--id", "c"]).unwrap();
        match ids.a.command {
            Command::Replay(r) => assert_eq!(r.ids, ["a", "b", "c"]),
            other => panic!("{other:?}"),
        }
    }
}
