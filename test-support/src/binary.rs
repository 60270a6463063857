//! The real `wechat-qr` binary as a child process: started with a clean `WECHAT_*`
//! environment, its listening addresses read from its own log lines, the rest of its log
//! kept for assertions (or only its warnings echoed, for the bench harness), signals sent
//! with `kill`, stopped when dropped.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::transport::Channel;
use wechat_qr::pb::qr_service_client::QrServiceClient;

pub use crate::process::logged_field;
use crate::{
    Result,
    process::{self, Output, Process},
};

/// The addresses every start announces.
const ADDRESSES: [&str; 3] = ["grpc_addr", "webhook_url", "admin_url"];

/// A running binary.
pub struct Binary {
    /// The process; SIGKILLed when dropped unless its stop grace is set.
    pub process: Process,
    pub grpc_addr: String,
    /// The first webhook URL it logged (with several accounts, the first account's).
    pub webhook_url: String,
    pub admin_url: String,
    /// The other values asked for at start (`simulator_url`), by key.
    pub announced: HashMap<String, String>,
    /// Every line it logged, unless started with [`Output::EchoProblems`].
    pub log: Arc<Mutex<String>>,
    /// True once its stdout reached EOF: every line is in `log`.
    drained: Arc<AtomicBool>,
}

/// The `wechat-qr` binary of this build: beside the running executable (the bench
/// harness, `target/<profile>/`), or one directory up from an integration test's
/// (`target/<profile>/deps/`). Cargo builds it before a package's integration tests, and
/// `./scripts/bench` builds it with the harness.
pub fn service_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().ok_or("the executable has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().ok_or("deps has no parent")?
    } else {
        dir
    };
    let binary = dir.join("wechat-qr");
    if !binary.exists() {
        return Err(format!(
            "{} not found: build it (`./scripts/bench` or `cargo build --release --workspace --bins`)",
            binary.display()
        )
        .into());
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&binary), modified(&me)) {
        (Some(service), Some(harness)) => service + Duration::from_secs(600) < harness,
        _ => false,
    };
    if stale {
        eprintln!(
            "warning: {} is much older than {}; if the library changed, rebuild both (`cargo build --release --workspace --bins`)",
            binary.display(),
            me.display()
        );
    }
    Ok(binary)
}

impl Binary {
    /// The binary's command with a clean environment (no `WECHAT_*`), stdin closed.
    pub fn command() -> Command {
        let mut command = Command::new(service_binary().unwrap_or_else(|e| panic!("{e}")));
        for (key, _) in std::env::vars() {
            if key.starts_with("WECHAT_") {
                command.env_remove(key);
            }
        }
        command.stdin(Stdio::null());
        command
    }

    /// Started with `--config FILE` and a clean environment plus `env`.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let config = config.to_str().unwrap();
        Self::start_with(&["--config", config], env).await
    }

    /// Started with `args` and a clean environment plus `env`.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Self::command();
        command.args(args).envs(env.iter().copied());
        Self::spawn(command).await
    }

    /// Runs `command` (built on [`Binary::command`]) and waits until it has logged its
    /// gRPC, webhook and admin addresses, keeping its whole log; killed at once when
    /// dropped. Panics if it does not start.
    pub async fn spawn(command: Command) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        match Self::launch(command, &[], Output::Keep(log.clone())).await {
            Ok(mut binary) => {
                binary.process.set_stop_grace(Duration::ZERO);
                binary
            }
            Err(e) => panic!("{e}:\n{}", log.lock().unwrap()),
        }
    }

    /// Runs `command` and waits until it has announced its three addresses and each of
    /// `extra`; its stdout goes to `output`. Stopped with SIGTERM, then SIGKILL after
    /// [`process::STOP_GRACE`], when dropped.
    pub async fn launch(mut command: Command, extra: &[&str], output: Output) -> Result<Self> {
        command.stdout(Stdio::piped());
        let mut process = Process::spawn("wechat-qr", &mut command, false)?;
        let stdout = process.take_stdout().expect("stdout is piped");
        let keys: Vec<&str> = ADDRESSES.iter().chain(extra).copied().collect();
        let log = match &output {
            Output::Keep(log) => log.clone(),
            Output::EchoProblems(_) => Arc::default(),
        };
        let (mut lines, drained) = process::watch_stdout(
            stdout,
            keys.iter().map(|k| (*k).to_owned()).collect(),
            output,
        );
        let mut found = process::announced(&mut process, &mut lines, &keys).await?;
        Ok(Self {
            process,
            grpc_addr: found.remove("grpc_addr").unwrap_or_default(),
            webhook_url: found.remove("webhook_url").unwrap_or_default(),
            admin_url: found.remove("admin_url").unwrap_or_default(),
            announced: found,
            log,
            drained,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `kill -9`, and waits for the process to be gone.
    pub async fn kill9(mut self) {
        self.process.kill9().unwrap();
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.process.rss_bytes().unwrap() / 1024
    }

    /// gRPC health of `wechat.qr.v1.QrService`, as its enum number.
    pub async fn health(&self) -> i32 {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "wechat.qr.v1.QrService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    }

    /// The value of an unlabelled metric.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
            .parse()
            .unwrap()
    }

    /// The sum of every series of metric `name`, whatever its labels (for one account's
    /// series: the per-account metrics carry `app_id`).
    pub async fn metric_total(&self, name: &str) -> f64 {
        metric_total(&self.metrics().await, name)
    }

    /// The webhook listener's base URL (`http://host:port`).
    pub fn http_base(&self) -> String {
        let rest = self.webhook_url.strip_prefix("http://").unwrap();
        format!("http://{}", rest.split('/').next().unwrap())
    }

    pub async fn client(&self) -> QrServiceClient<Channel> {
        QrServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .unwrap()
    }

    pub fn signal(&self, name: &str) {
        assert!(self.process.signal(name), "kill -{name} {}", self.pid());
    }

    /// Open file descriptors of the process.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many times the log contains `text`.
    pub fn count(&self, text: &str) -> usize {
        self.log.lock().unwrap().matches(text).count()
    }

    /// Waits until the log contains `text` at least `times` times.
    pub async fn logged_times(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(text) < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged {times} times:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log contains `text`.
    pub async fn logged(&self, text: &str) {
        self.logged_times(text, 1).await;
    }

    pub async fn metrics(&self) -> String {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Its exit status, waiting up to `timeout` (a failure past it), and then until its
    /// last line is in the log.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exit = self
            .process
            .wait_exit(timeout)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("exits within {timeout:?}:\n{}", self.log.lock().unwrap()));
        // The reader thread sees EOF right after the exit, unless a grandchild kept the
        // pipe open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.drained.load(Ordering::Acquire) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        exit
    }

    /// SIGTERM; the process must exit cleanly within 15 s.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let exit = self.wait_exit(Duration::from_secs(15)).await;
        assert!(exit.success(), "{exit:?}\n{}", self.log.lock().unwrap());
    }
}

/// The sum of every series of metric `name` in a `/metrics` answer, whatever its labels.
pub fn metric_total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
