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
    /// Started with `--config FILE` and a clean environment plus `env`.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let config = config.to_str().unwrap();
        Self::start_with(&["--config", config], env).await
    }

    /// Started with `args` and a clean environment plus `env`.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
        for (key, _) in std::env::vars() {
            if key.starts_with("WECHAT_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let (mut grpc, mut webhook, mut admin) = (None, None, None);
        while grpc.is_none() || webhook.is_none() || admin.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no addresses:\n{}", log.lock().unwrap()))
                .unwrap()
                .unwrap_or_else(|| panic!("exited:\n{}", log.lock().unwrap()));
            let value = |key: &str| {
                line.split(&format!("{key}="))
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            };
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

    pub async fn stop(mut self) {
        self.signal("TERM");
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s")
            .unwrap();
        assert!(exit.success(), "{exit:?}\n{}", self.log.lock().unwrap());
    }
}
