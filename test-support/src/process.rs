//! A child process the tests or the bench harness started: registered so Ctrl-C on the
//! harness can stop every one ([`kill_all`]), stopped when its handle is dropped (SIGTERM,
//! then SIGKILL after a grace period, or SIGKILL at once), its stdout read on a thread for
//! the `key=value` values it announces, its CPU, memory and disk writes read from `/proc`.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::Result;

/// How long a process may take to announce its addresses.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dropped process may take to exit after SIGTERM, by default.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Processes still running, for [`kill_all`]: the argument `kill` takes for each (a pid,
/// or `-PGID` for a process group).
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A started process; stopped when dropped.
pub struct Process {
    /// What it is, for messages.
    name: String,
    /// The OS handle.
    child: std::process::Child,
    /// What signals go to: the pid, or `-PGID` for a process that leads a group (gunicorn,
    /// whose workers must stop with it).
    target: String,
    /// How long a drop waits after SIGTERM; zero: SIGKILL at once.
    stop_grace: Duration,
}

impl Process {
    /// Starts `command`; with `own_group`, as the leader of a new process group that is
    /// signalled as a whole.
    pub fn spawn(name: &str, command: &mut Command, own_group: bool) -> Result<Self> {
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
            stop_grace: STOP_GRACE,
        })
    }

    /// How long a drop waits after SIGTERM before SIGKILL; zero kills at once (a test's
    /// server, whose data directory is thrown away anyway).
    pub fn set_stop_grace(&mut self, grace: Duration) {
        self.stop_grace = grace;
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout, if piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Its resident set size, from `/proc/PID/status`.
    pub fn rss_bytes(&self) -> Result<u64> {
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
    pub fn written_bytes(&self) -> Result<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))?;
        Ok(io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no write_bytes in /proc/PID/io")?)
    }

    /// CPU time it has used, user and system, all threads: `utime + stime` from
    /// `/proc/PID/stat`, in clock ticks of USER_HZ (100 per second on Linux).
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The command name may hold spaces; the fields after it do not. utime and stime
        // are fields 14 and 15, the 12th and 13th after the name.
        let rest = stat.rsplit_once(')').ok_or("malformed /proc/PID/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks =
            |i: usize| -> Result<u64> { Ok(fields.get(i).ok_or("short /proc/PID/stat")?.parse()?) };
        Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
    }

    /// `kill -9`: the process dies at once, with no chance to flush or close anything
    /// (a crash, an OOM kill); returns once it is gone.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …) with kill(1); whether it was delivered.
    pub fn signal(&self, name: &str) -> bool {
        signal(&format!("-{name}"), &self.target)
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited early: {status}", self.name).into()),
            None => Ok(()),
        }
    }

    /// Its exit status once it has exited, polling until `timeout` runs out (`None`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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
            let asked = !self.stop_grace.is_zero() && signal("-TERM", &self.target);
            let deadline = Instant::now()
                + if asked {
                    self.stop_grace
                } else {
                    Duration::ZERO
                };
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                if asked {
                    eprintln!("{} did not stop on SIGTERM; killing it", self.name);
                }
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
pub fn kill_all() {
    let targets: Vec<String> = LIVE.lock().expect("process list").drain(..).collect();
    for target in &targets {
        signal("-TERM", target);
    }
    std::thread::sleep(Duration::from_secs(1));
    for target in &targets {
        signal("-KILL", target);
    }
}

/// What becomes of the lines a child writes to stdout besides the announcements.
#[derive(Clone)]
pub enum Output {
    /// Kept, every line, for assertions.
    Keep(Arc<Mutex<String>>),
    /// Dropped, except that warnings and errors are echoed to stderr under this name.
    EchoProblems(String),
}

/// Reads a child's stdout on a thread until EOF: `key=value` (or JSON `fields.key`) for
/// the wanted keys goes to the returned channel, every line to `output`; the flag turns
/// true at EOF. The pipe keeps draining, or the child would block on a full pipe.
pub fn watch_stdout(
    stdout: std::process::ChildStdout,
    keys: Vec<String>,
    output: Output,
) -> (mpsc::UnboundedReceiver<(String, String)>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            for key in &keys {
                if let Some(value) = logged_field(&line, key) {
                    let _ = tx.send((key.clone(), value));
                }
            }
            match &output {
                Output::Keep(log) => {
                    let mut log = log.lock().expect("log");
                    log.push_str(&line);
                    log.push('\n');
                }
                Output::EchoProblems(name) => {
                    if line.contains(" WARN ") || line.contains(" ERROR ") {
                        eprintln!("[{name}] {line}");
                    }
                }
            }
        }
        finished.store(true, Ordering::Release);
    });
    (rx, done)
}

/// Waits until the child has announced every key in `keys` (the first value of each
/// counts), within [`START_TIMEOUT`].
pub async fn announced(
    process: &mut Process,
    lines: &mut mpsc::UnboundedReceiver<(String, String)>,
    keys: &[&str],
) -> Result<HashMap<String, String>> {
    let mut found = HashMap::new();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while keys.iter().any(|k| !found.contains_key(*k)) {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some((key, value))) => {
                found.entry(key).or_insert(value);
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

/// `key`'s value in a text log line (`key=value`) or a JSON one (`fields.key`).
pub fn logged_field(line: &str, key: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"][key].as_str().map(str::to_owned);
    }
    let needle = format!("{key}=");
    let at = line.find(&needle)?;
    line[at + needle.len()..]
        .split_whitespace()
        .next()
        .map(str::to_owned)
}
