//! Running the real service binaries as child processes for end-to-end tests: start with
//! environment overrides, wait for `/readyz`, `kill -9`, restart, stop with SIGTERM.
//!
//! The binaries come from `ARTERIA_BIN_DIR` (default `<workspace>/target/debug`); `make test`
//! builds them before the integration tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the service binaries are.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("ARTERIA_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/debug"))
}

/// A free loopback port for a service to listen on, never the same twice in one test process.
///
/// Chosen below Linux's ephemeral range (32768–60999), so the outgoing connections services
/// open to Kafka and the registry between this call and their `bind` cannot take it; probed
/// with a bind so a port some other process listens on is skipped.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    static SEQ: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Processes running tests at once start at different places (pid), then walk the span.
    let start = std::process::id().wrapping_mul(7_919);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..SPAN {
        let port = (LOW + start.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// One service process.
pub struct Service {
    pub name: String,
    pub health_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `name` (a binary in [`bin_dir`]) with `env` added to the test's environment; its
    /// health endpoint on a free port; output appended to `<target>/e2e-logs/<name>-<pid>-<n>.log`.
    pub fn start(name: &str, env: &[(&str, String)]) -> Service {
        let bin = bin_dir().join(name);
        assert!(
            bin.is_file(),
            "{} is missing: build the services first (`cargo build -p arteria-{name}`; `make test` does it)",
            bin.display()
        );
        let health_port = free_port();
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        env.push(("ARTERIA__TELEMETRY__HTTP_ADDR".into(), format!("127.0.0.1:{health_port}")));
        env.push(("ARTERIA_KAFKA_BOOTSTRAP".into(), crate::kafka_bootstrap()));
        env.push(("ARTERIA_REGISTRY_URL".into(), crate::registry_url()));
        let dir = crate::workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        // One file per service instance (its restarts append), so a failure can show its own lines.
        static INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("{name}-{}-{n}.log", std::process::id()));
        let mut s = Service { name: name.into(), health_port, env, child: None, log };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("service log");
        let child = Command::new(bin_dir().join(&self.name))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("ARTERIA_E2E_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// Waits until `/readyz` answers 200 (bounded, so a broken start ends the test).
    pub async fn wait_ready(&mut self, within: Duration) {
        let url = format!("http://127.0.0.1:{}/readyz", self.health_port);
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "{} exited during start-up ({status}); the end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            assert!(
                started.elapsed() < within,
                "{} not ready after {within:?}; the end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same service again (after [`Service::kill9`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 or stop");
        self.spawn();
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: `kill` the command, not a libc call.
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Service {
    /// Whether the process ended on its own (not through [`Service::kill9`] or
    /// [`Service::stop`]); then its exit status. A supervisor (Kubernetes, systemd) would
    /// restart it; tests say so loudly and do the same with [`Service::restart`].
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())?;
        self.child = None;
        Some(status)
    }

    /// This service's log file (its restarts append to it).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }
}

/// The last `lines` lines of a service log, for a failure message (service logs hold no PHI).
fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// Settings of one [`Pipeline`] run beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// Partitions of every topic the services create (default 3).
    pub partitions: Option<u32>,
    /// Extra environment for one service: (service name, variable, value), e.g.
    /// `("ingest", "ARTERIA__INGEST__ALLOW_MISSING_MSH", "[11, 12]")`.
    pub extra: Vec<(&'static str, &'static str, String)>,
}

/// The five services of an end-to-end run (ingest, normalize, enrich, fan-out, query) as
/// real processes, on topics of their own (`<run>.raw`, … and fan-out's
/// `<run>.fhir.<type>.v1`), their own consumer groups and transactional ids, and free
/// loopback ports, so runs never see each other's data or ports.
pub struct Pipeline {
    /// The run's name, the prefix of its topics and groups.
    pub run: String,
    pub ingest: Service,
    pub normalize: Service,
    pub enrich: Service,
    pub fanout: Service,
    pub query: Service,
    /// Where ingest listens for MLLP.
    pub mllp_addr: String,
    /// Where query serves gRPC.
    pub grpc_addr: String,
    /// The query service's store directory (removed by [`Pipeline::stop`]).
    pub data_dir: PathBuf,
}

impl Pipeline {
    /// A stage topic of this run: `raw`, `normalized`, `enriched`, `ingest.dlq`,
    /// `normalize.dlq`, `enrich.dlq`, `fanout.dlq`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.run)
    }

    /// The fan-out configuration this run uses (prefix and resource types).
    pub fn fanout_config(&self) -> fanout::FanoutConfig {
        fanout::FanoutConfig { topic_prefix: format!("{}.", self.run), ..fanout::FanoutConfig::default() }
    }

    /// Every current-state topic of this run (fan-out's default resource types).
    pub fn fhir_topics(&self) -> Vec<String> {
        let f = self.fanout_config();
        f.resource_types.iter().map(|t| f.topic_for(t)).collect()
    }

    /// Starts the five services for run `name` (made unique with [`crate::unique`]) and waits
    /// until each reports ready; query starts once fan-out has created its topics.
    pub async fn start(name: &str, opts: PipelineOptions) -> Pipeline {
        let run = crate::unique(name);
        let t = |n: &str| format!("{run}.{n}");
        let partitions = opts.partitions.unwrap_or(3).to_string();
        let with = |service: &str, mut v: Vec<(&'static str, String)>| {
            v.push(("ARTERIA__BUS__TOPICS__PARTITIONS", partitions.clone()));
            v.extend(opts.extra.iter().filter(|(s, _, _)| *s == service).map(|(_, k, val)| (*k, val.clone())));
            v
        };
        let mllp_addr = format!("127.0.0.1:{}", free_port());
        let grpc_addr = format!("127.0.0.1:{}", free_port());
        let data_dir = std::env::temp_dir().join(t("query-store"));
        let fanout_cfg = fanout::FanoutConfig { topic_prefix: format!("{run}."), ..fanout::FanoutConfig::default() };
        let fhir_topics: Vec<String> = fanout_cfg.resource_types.iter().map(|r| fanout_cfg.topic_for(r)).collect();
        let toml_list =
            |items: &[String]| format!("[{}]", items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));

        let mut ingest = Service::start(
            "ingest",
            &with(
                "ingest",
                vec![
                    ("ARTERIA__INGEST__RAW_TOPIC", t("raw")),
                    ("ARTERIA__INGEST__DLQ_TOPIC", t("ingest.dlq")),
                    ("ARTERIA__INGEST__MLLP__ADDR", mllp_addr.clone()),
                    ("ARTERIA__INGEST__HTTP__ENABLED", "false".into()),
                ],
            ),
        );
        let mut normalize = Service::start(
            "normalize",
            &with(
                "normalize",
                vec![
                    ("ARTERIA__NORMALIZE__INPUT_TOPIC", t("raw")),
                    ("ARTERIA__NORMALIZE__OUTPUT_TOPIC", t("normalized")),
                    ("ARTERIA__NORMALIZE__DLQ_TOPIC", t("normalize.dlq")),
                    ("ARTERIA__NORMALIZE__GROUP_ID", t("normalize")),
                    ("ARTERIA__NORMALIZE__TRANSACTIONAL_ID", t("normalize-0")),
                ],
            ),
        );
        let mut enrich = Service::start(
            "enrich",
            &with(
                "enrich",
                vec![
                    ("ARTERIA__ENRICH__INPUT_TOPIC", t("normalized")),
                    ("ARTERIA__ENRICH__OUTPUT_TOPIC", t("enriched")),
                    ("ARTERIA__ENRICH__DLQ_TOPIC", t("enrich.dlq")),
                    ("ARTERIA__ENRICH__GROUP_ID", t("enrich")),
                    ("ARTERIA__ENRICH__TRANSACTIONAL_ID", t("enrich-0")),
                ],
            ),
        );
        let mut fanout = Service::start(
            "fanout",
            &with(
                "fanout",
                vec![
                    ("ARTERIA__FANOUT__INPUT_TOPIC", t("enriched")),
                    ("ARTERIA__FANOUT__DLQ_TOPIC", t("fanout.dlq")),
                    ("ARTERIA__FANOUT__GROUP_ID", t("fanout")),
                    ("ARTERIA__FANOUT__TRANSACTIONAL_ID", t("fanout-0")),
                    ("ARTERIA__FANOUT__TOPIC_PREFIX", format!("{run}.")),
                ],
            ),
        );
        for s in [&mut ingest, &mut normalize, &mut enrich, &mut fanout] {
            s.wait_ready(Duration::from_secs(180)).await;
        }
        let mut query = Service::start(
            "query",
            &with(
                "query",
                vec![
                    ("ARTERIA__QUERY__GRPC_ADDR", grpc_addr.clone()),
                    ("ARTERIA__QUERY__FHIR_REST_ADDR", format!("127.0.0.1:{}", free_port())),
                    ("ARTERIA__AUDIT__TOPIC", t("audit")),
                    ("ARTERIA__QUERY__DATA_DIR", data_dir.display().to_string()),
                    ("ARTERIA__QUERY__TOPICS", toml_list(&fhir_topics)),
                    ("ARTERIA__QUERY__GROUP_PREFIX", t("query")),
                ],
            ),
        );
        query.wait_ready(Duration::from_secs(180)).await;
        Pipeline { run, ingest, normalize, enrich, fanout, query, mllp_addr, grpc_addr, data_dir }
    }

    /// The services in pipeline order.
    pub fn services(&mut self) -> [&mut Service; 5] {
        [&mut self.ingest, &mut self.normalize, &mut self.enrich, &mut self.fanout, &mut self.query]
    }

    /// Restarts every service that ended on its own; returns their names (a supervisor's
    /// job, made visible: callers report or assert on it).
    pub fn restart_exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.services() {
            if let Some(status) = s.exited() {
                eprintln!(
                    "*** {} exited on its own ({status}); restarting it. See {} ***",
                    s.name,
                    s.log_path().display()
                );
                out.push(format!("{} ({status})", s.name));
                s.restart();
            }
        }
        out
    }

    /// SIGTERM to every service, in pipeline order, and removes the query store.
    pub fn stop(&mut self) {
        for s in self.services() {
            s.stop();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Service {
    /// The service's Prometheus text (`/metrics`), when it answers.
    pub async fn metrics(&self) -> Option<String> {
        let r = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.health_port)).await.ok()?;
        r.text().await.ok()
    }
}

/// Sums the samples of `metric` in Prometheus text whose labels contain every one of `labels`
/// (e.g. `outcome="acknowledged"`).
pub fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
