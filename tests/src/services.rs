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

/// A free loopback port (bound then released: good enough for a test on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
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
    /// health endpoint on a free port; output appended to `<target>/e2e-logs/<name>.log`.
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
        let mut s = Service { name: name.into(), health_port, env, child: None, log: dir.join(format!("{name}.log")) };
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
                panic!("{} exited during start-up ({status}); see {}", self.name, self.log.display());
            }
            assert!(started.elapsed() < within, "{} not ready after {within:?}; see {}", self.name, self.log.display());
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
