//! The processes a run starts, each on 127.0.0.1 with a port the OS picks: the real
//! `wechat-qr` binary on its embedded simulator, this binary again as a baseline server
//! (`--serve-baseline`), and gunicorn serving the wechatpy webhook. Each is stopped —
//! SIGTERM, then SIGKILL after a grace period — when its handle is dropped, and Ctrl-C
//! on the harness stops them all ([`kill_all`]).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::Result;

/// How long a process may take to announce its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Processes still running, for [`kill_all`]: the argument `kill` takes for each (a pid,
/// or `-PGID` for a process group).
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A started process; terminated when dropped.
pub(crate) struct Process {
    /// What it is, for messages.
    name: String,
    /// The OS handle. Its stdin stays open: baselines exit when it closes.
    child: std::process::Child,
    /// What signals go to: the pid, or `-PGID` for a process that leads a group (gunicorn,
    /// whose workers must stop with it).
    target: String,
}

impl Process {
    /// Starts `command`; with `own_group`, as the leader of a new process group that is
    /// signalled as a whole.
    fn spawn(name: &str, command: &mut Command, own_group: bool) -> Result<Self> {
        if own_group {
            std::os::unix::process::CommandExt::process_group(command, 0);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        let target = if own_group {
            format!("-{}", child.id())
        } else {
            child.id().to_string()
        };
        LIVE.lock().expect("process list").push(target.clone());
        Ok(Self {
            name: name.to_owned(),
            child,
            target,
        })
    }

    /// Its resident set size, from `/proc/PID/status`.
    pub(crate) fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// Bytes it has caused to be written to storage (`write_bytes` of `/proc/PID/io`):
    /// what its fsyncs had to push to the disk.
    pub(crate) fn written_bytes(&self) -> Result<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))?;
        Ok(io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no write_bytes in /proc/PID/io")?)
    }

    /// `kill -9`: the process dies at once, with no chance to flush or close anything
    /// (a crash, an OOM kill); returns once it is gone.
    pub(crate) fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// CPU time it has used, user and system, all threads: `utime + stime` from
    /// `/proc/PID/stat`, in clock ticks of USER_HZ (100 per second on Linux).
    pub(crate) fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The command name may hold spaces; the fields after it do not. utime and stime
        // are fields 14 and 15, the 12th and 13th after the name.
        let rest = stat.rsplit_once(')').ok_or("malformed /proc/PID/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks =
            |i: usize| -> Result<u64> { Ok(fields.get(i).ok_or("short /proc/PID/stat")?.parse()?) };
        Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
    }

    /// Fails if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited early: {status}", self.name).into()),
            None => Ok(()),
        }
    }
}

/// Sends `signal` to `target` with kill(1); whether it was delivered.
fn signal(signal: &str, target: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let asked = signal("-TERM", &self.target);
            let deadline = Instant::now() + if asked { STOP_GRACE } else { Duration::ZERO };
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                eprintln!("{} did not stop on SIGTERM; killing it", self.name);
                signal("-KILL", &self.target);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        LIVE.lock()
            .expect("process list")
            .retain(|t| *t != self.target);
    }
}

/// Stops every process still running (on Ctrl-C): SIGTERM, a moment, then SIGKILL.
pub(crate) fn kill_all() {
    let targets: Vec<String> = LIVE.lock().expect("process list").drain(..).collect();
    for target in &targets {
        signal("-TERM", target);
    }
    std::thread::sleep(Duration::from_secs(1));
    for target in &targets {
        signal("-KILL", target);
    }
}

/// Reads a child's stdout on a thread: lines with `key=value` for the wanted keys go to
/// the returned channel; warnings and errors are echoed, the rest dropped (the pipe must
/// keep draining, or the child would block on a full pipe).
fn watch_stdout(
    name: &str,
    stdout: std::process::ChildStdout,
    keys: &'static [&'static str],
) -> mpsc::UnboundedReceiver<(&'static str, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            for key in keys {
                let needle = format!("{key}=");
                if let Some(at) = line.find(&needle) {
                    let value = line[at + needle.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default();
                    let _ = tx.send((*key, value.to_owned()));
                }
            }
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("[{name}] {line}");
            }
        }
    });
    rx
}

/// Waits until the child has announced every key.
async fn announced(
    process: &mut Process,
    mut lines: mpsc::UnboundedReceiver<(&'static str, String)>,
    keys: &[&str],
) -> Result<HashMap<&'static str, String>> {
    let mut found = HashMap::new();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while keys.iter().any(|k| !found.contains_key(k)) {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some((key, value))) => {
                found.insert(key, value);
            }
            Ok(None) => {
                process.check_alive()?;
                return Err(format!(
                    "{} closed its stdout before announcing {keys:?}",
                    process.name
                )
                .into());
            }
            Err(_) => {
                return Err(format!("{} did not announce {keys:?} in time", process.name).into());
            }
        }
    }
    Ok(found)
}

fn addr_of_url(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    Ok(rest.split('/').next().unwrap_or_default().parse()?)
}

/// The `wechat-qr` binary built with this harness (same directory, same profile).
pub(crate) fn service_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let binary = me.with_file_name("wechat-qr");
    if !binary.exists() {
        return Err(format!(
            "{} not found: build it with the harness (`./scripts/bench` or `cargo build --release --bins`)",
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
            "warning: {} is much older than this harness; if the library changed, rebuild both (`cargo build --release --bins`)",
            binary.display()
        );
    }
    Ok(binary)
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
        let mut command = Command::new(service_binary()?);
        for (key, _) in std::env::vars() {
            if key.starts_with("WECHAT_") {
                command.env_remove(key);
            }
        }
        command
            .env("WECHAT_QR_DATA_DIR", dir)
            .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
            // Two services run side by side in some scenarios (ingest, recovery).
            .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
            // The default level, as deployed.
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut process = Process::spawn("wechat-qr", &mut command, false)?;
        let stdout = process.child.stdout.take().expect("stdout is piped");
        const KEYS: &[&str] = &["grpc_addr", "webhook_url", "simulator_url"];
        let keys = if simulated { KEYS } else { &KEYS[..2] };
        let lines = watch_stdout("wechat-qr", stdout, KEYS);
        let found = announced(&mut process, lines, keys).await?;
        Ok(Self {
            grpc_addr: found["grpc_addr"].parse()?,
            webhook_addr: addr_of_url(&found["webhook_url"])?,
            simulator_url: found.get("simulator_url").cloned().unwrap_or_default(),
            process,
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
        let stdout = process.child.stdout.take().expect("stdout is piped");
        let lines = watch_stdout(&name, stdout, &["addr"]);
        let found = announced(&mut process, lines, &["addr"]).await?;
        Ok(Self {
            addr: found["addr"].parse()?,
            _process: process,
        })
    }
}

/// The Python the wechatpy webhook runs on: `WECHAT_QR_BENCH_PYTHON`, else the repo's
/// `.venv` (which `./scripts/bench` fills from `bench/python/requirements.txt`).
pub(crate) fn python() -> PathBuf {
    std::env::var_os("WECHAT_QR_BENCH_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    )
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
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python"))
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

/// A `redis-server` on a free loopback port with its own directory, append-only file on
/// and synced per write (`appendfsync always`, the durability the embedded store gives):
/// the shared state of the replicas scenario.
pub(crate) struct Redis {
    /// Held: dropping it stops the server.
    pub(crate) process: Process,
    /// `redis://127.0.0.1:PORT`.
    pub(crate) url: String,
    _data: DataDir,
}

impl Redis {
    pub(crate) async fn start() -> Result<Self> {
        let data = DataDir::new()?;
        // redis-server has no port 0: take one the kernel hands out, and another if it
        // was taken meanwhile.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .arg("--dir")
                .arg(&data.0)
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let mut process = Process::spawn("redis-server", &mut command, false)
                .map_err(|e| format!("{e}; install it with apt-get install redis-server"))?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if process.check_alive().is_err() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(Self {
                        process,
                        url: format!("redis://127.0.0.1:{port}"),
                        _data: data,
                    });
                }
                if Instant::now() > deadline {
                    return Err("redis-server did not listen in time".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Err("redis-server did not start on any of 10 free ports".into())
    }
}
