//! The real `wechat-qr` binary as a child process: started with a clean `WECHAT_*`
//! environment, its listening addresses read from its own log lines, the rest of its log
//! kept for assertions, signals sent with `kill`, killed when dropped.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;
use wechat_qr::pb::qr_service_client::QrServiceClient;

/// A running binary.
pub struct Binary {
    pub child: tokio::process::Child,
    pub grpc_addr: String,
    /// The first webhook URL it logged (with several accounts, the first account's).
    pub webhook_url: String,
    pub admin_url: String,
    pub log: Arc<Mutex<String>>,
}

impl Binary {
    /// The binary's command with a clean environment (no `WECHAT_*`), stdin closed.
    pub fn command() -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
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
    /// gRPC, webhook and admin addresses; the rest of its log is drained in the
    /// background, so it never blocks on a full pipe.
    pub async fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let (mut grpc, mut webhook, mut admin) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while grpc.is_none() || webhook.is_none() || admin.is_none() {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no addresses:\n{}", log.lock().unwrap()))
                .unwrap()
                .unwrap_or_else(|| panic!("exited:\n{}", log.lock().unwrap()));
            let value = |key: &str| logged_field(&line, key);
            grpc = grpc.or_else(|| value("grpc_addr"));
            webhook = webhook.or_else(|| value("webhook_url"));
            admin = admin.or_else(|| value("admin_url"));
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
        {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self {
            child,
            grpc_addr: grpc.unwrap(),
            webhook_url: webhook.unwrap(),
            admin_url: admin.unwrap(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// `kill -9`, and waits for the process to be gone.
    pub async fn kill9(mut self) {
        self.signal("KILL");
        self.child.wait().await.unwrap();
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
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
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
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

    /// SIGTERM; the process must exit cleanly within 15 s.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits within 15 s")
            .unwrap();
        assert!(exit.success(), "{exit:?}\n{}", self.log.lock().unwrap());
    }
}

/// `key`'s value in a text log line (`key=value`) or a JSON one (`fields.key`).
pub fn logged_field(line: &str, key: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"][key].as_str().map(str::to_owned);
    }
    line.split(&format!("{key}="))
        .nth(1)
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
}
