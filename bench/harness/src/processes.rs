//! The processes a run starts, each on 127.0.0.1 with a port the OS picks: the real
//! `wechat-qr` binary on its embedded simulator, this binary again as a baseline server
//! (`--serve-baseline`), gunicorn serving the wechatpy webhook, and redis-server. Each is
//! stopped — SIGTERM, then SIGKILL after a grace period — when its handle is dropped, and
//! Ctrl-C on the harness stops them all ([`kill_all`]). Starting the binary and Redis is
//! shared with the integration tests (`test-support/`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use wechat_qr_test_support::{
    binary::Binary,
    process::{self, Output, START_TIMEOUT},
};
pub(crate) use wechat_qr_test_support::{
    process::{Process, kill_all},
    redis_server::RedisServer,
};

use crate::Result;

fn addr_of_url(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    Ok(rest.split('/').next().unwrap_or_default().parse()?)
}

/// A running `wechat-qr` on its embedded simulator.
pub(crate) struct Service {
    /// The process.
    pub(crate) process: Process,
    /// Its gRPC listener.
    pub(crate) grpc_addr: SocketAddr,
    /// Its webhook listener.
    pub(crate) webhook_addr: SocketAddr,
    /// Its simulator's base URL.
    pub(crate) simulator_url: String,
    /// Its data directory (the log's segments are in `log/`).
    pub(crate) data_dir: std::path::PathBuf,
    /// Its data directory, removed when the service is; `None` for a directory the
    /// caller owns ([`Service::start_in`]).
    _data: Option<DataDir>,
}

/// A fresh data directory under the system's temporary directory, removed on drop (after
/// the process, which is dropped first as the field declared before it).
pub(crate) struct DataDir(pub(crate) std::path::PathBuf);

impl DataDir {
    pub(crate) fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "wechat-qr-bench-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Service {
    /// Starts the real binary with every listener on port 0 and `env` on top of the
    /// defaults; any `WECHAT_*` variable of the harness's own environment is removed, so
    /// the run does not depend on the shell it was started from.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Result<Self> {
        let data = DataDir::new()?;
        let dir = data.0.clone();
        Self::spawn_in(&dir, env, Some(data)).await
    }

    /// [`start`](Self::start) on the data directory `dir`, which the caller owns and which
    /// outlives this service: to restart on the same data.
    pub(crate) async fn start_in(dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        Self::spawn_in(dir, env, None).await
    }

    /// [`start`](Self::start) with the configuration file `config`, whose account has
    /// credentials: no simulator runs (its URL is empty).
    pub(crate) async fn start_configured(config: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let data = DataDir::new()?;
        let dir = data.0.clone();
        let config = config.to_str().ok_or("a UTF-8 configuration path")?;
        let env: Vec<(&str, &str)> = [("WECHAT_QR_CONFIG", config)]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        Self::spawn_in(&dir, &env, Some(data)).await
    }

    async fn spawn_in(dir: &Path, env: &[(&str, &str)], data: Option<DataDir>) -> Result<Self> {
        let simulated = !env.iter().any(|(key, _)| *key == "WECHAT_QR_CONFIG");
        let mut command = Binary::command();
        command
            .env("WECHAT_QR_DATA_DIR", dir)
            .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
            // Two services run side by side in some scenarios (ingest, recovery).
            .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
            // The default level, as deployed.
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let extra: &[&str] = if simulated { &["simulator_url"] } else { &[] };
        let output = Output::EchoProblems("wechat-qr".into());
        let mut binary = Binary::launch(command, extra, output).await?;
        Ok(Self {
            grpc_addr: binary.grpc_addr.parse()?,
            webhook_addr: addr_of_url(&binary.webhook_url)?,
            simulator_url: binary.announced.remove("simulator_url").unwrap_or_default(),
            process: binary.process,
            data_dir: dir.to_owned(),
            _data: data,
        })
    }
}

/// A baseline server: this binary with `--serve-baseline`.
pub(crate) struct Baseline {
    /// Held: dropping it stops the server.
    _process: Process,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Baseline {
    /// Starts `--serve-baseline KIND` plus `args`.
    pub(crate) async fn start(kind: &str, args: &[String]) -> Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--serve-baseline", kind])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let name = format!("baseline {kind}");
        let mut process = Process::spawn(&name, &mut command, false)?;
        let stdout = process.take_stdout().expect("stdout is piped");
        let (mut lines, _) =
            process::watch_stdout(stdout, vec!["addr".into()], Output::EchoProblems(name));
        let found = process::announced(&mut process, &mut lines, &["addr"]).await?;
        Ok(Self {
            addr: found["addr"].parse()?,
            _process: process,
        })
    }
}

/// The Python the wechatpy webhook runs on: `WECHAT_QR_BENCH_PYTHON`, else the repo's
/// `.venv` (which `./scripts/bench` fills from `bench/python/requirements.txt`).
pub(crate) fn python() -> PathBuf {
    std::env::var_os("WECHAT_QR_BENCH_PYTHON")
        .map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from)
}

/// The repository's root: this crate is `bench/harness/` in it.
fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// gunicorn workers: one per core, as gunicorn's docs start from for CPU-bound apps.
pub(crate) fn python_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// gunicorn serving `bench/python/webhook.py`.
pub(crate) struct PythonWebhook {
    /// The gunicorn master, held: dropping it stops the master, which stops its workers.
    _process: Process,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl PythonWebhook {
    /// Workers: one per core, gunicorn's synchronous worker, as a Flask-style wechatpy
    /// webhook is deployed.
    pub(crate) async fn start(aes_key: Option<&str>) -> Result<Self> {
        let python = python();
        if !python.exists() {
            return Err(format!(
                "{} not found: run ./scripts/bench (it installs bench/python/requirements.txt into .venv) or set WECHAT_QR_BENCH_PYTHON",
                python.display()
            )
            .into());
        }
        // gunicorn takes an address, not a listener: pick a free port and hand it over.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let workers = python_workers();
        let mut command = Command::new(&python);
        command
            .args(["-m", "gunicorn", "--workers", &workers.to_string()])
            .args(["--bind", &addr.to_string(), "--log-level", "warning"])
            .arg("--chdir")
            .arg(repo().join("bench/python"))
            .arg("webhook:application")
            .env("WECHAT_TOKEN", wechat_qr::config::dev::TOKEN)
            .env("WECHAT_APP_ID", wechat_qr::config::dev::APP_ID)
            .env_remove("WECHAT_ENCODING_AES_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(key) = aes_key {
            command.env("WECHAT_ENCODING_AES_KEY", key);
        }
        let mut process = Process::spawn("gunicorn (wechatpy)", &mut command, true)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            process.check_alive().map_err(|e| {
                format!("{e}; is gunicorn installed? run ./scripts/bench to install bench/python/requirements.txt")
            })?;
            if Instant::now() > deadline {
                return Err("gunicorn did not listen in time".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            _process: process,
            addr,
        })
    }
}
