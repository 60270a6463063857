//! A real `redis-server` (the Debian package `./scripts/test` and `./scripts/bench`
//! install) on a loopback port with a temporary directory, append-only file on and synced
//! per write (`appendfsync always`, the durability the embedded store gives); killed when
//! dropped. Missing, it fails the test or the bench run: nothing here skips.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Result, process::Process};

/// A running (or killed, restartable) Redis.
pub struct RedisServer {
    process: Option<Process>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    /// TLS only, with this password: the CA file clients must trust (its directory holds
    /// the server's certificate and key too).
    tls: Option<(PathBuf, String)>,
}

impl RedisServer {
    /// Starts one on a free port: Redis has no `--port 0`, so a port the kernel just
    /// handed out is tried, and another one if that was taken meanwhile.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`start`](Self::start), failing with an error rather than a panic.
    pub fn try_start() -> Result<Self> {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut server = Self {
                process: None,
                port,
                dir: tempfile::tempdir()?,
                tls: None,
            };
            if server.spawn()? {
                return Ok(server);
            }
        }
        Err("redis-server did not start on any of 10 free ports".into())
    }

    /// One that speaks only TLS (a certificate for 127.0.0.1 from a test CA, made with
    /// openssl) and wants `password`.
    pub fn start_tls(password: &str) -> Self {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            crate::tls::certificates(dir.path(), "redis-client", "redis-client");
            let mut server = Self {
                process: None,
                port,
                tls: Some((dir.path().join("ca.pem"), password.to_owned())),
                dir,
            };
            if server.spawn().unwrap_or_else(|e| panic!("{e}")) {
                return server;
            }
        }
        panic!("redis-server (TLS) did not start on any of 10 free ports");
    }

    /// The CA of a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").0.clone()
    }

    /// A connection for the test to look at what the service stored (plain servers).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://:<password>@127.0.0.1:<port>` for TLS.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some((_, password)) => format!("rediss://:{password}@127.0.0.1:{}", self.port),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// CPU time the server has used, all threads.
    pub fn cpu_time(&self) -> Result<Duration> {
        self.process
            .as_ref()
            .ok_or("redis-server was killed")?
            .cpu_time()
    }

    /// Starts redis-server on `self.port`; false if it exited (the port was taken).
    fn spawn(&mut self) -> Result<bool> {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--bind", "127.0.0.1", "--port"]),
            Some((ca, password)) => command
                .args(["--bind", "127.0.0.1", "--port", "0"])
                .args(["--tls-auth-clients", "no", "--tls-cert-file"])
                .arg(ca.with_file_name("server.pem"))
                .arg("--tls-key-file")
                .arg(ca.with_file_name("server.key"))
                .args(["--requirepass", password])
                .arg("--tls-port"),
        };
        command
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.data_dir())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Process::spawn("redis-server", &mut command, false).map_err(|e| {
            format!("{e}: redis-server must be installed (./scripts/test and ./scripts/bench install it)")
        })?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.process.as_mut().is_some_and(Process::is_running) {
                self.process = None;
                return Ok(false);
            }
            if self.ping() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Ok(false)
    }

    /// Whether it answers PING (and has loaded its data); for TLS, whether it listens.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill9();
        }
    }

    /// Starts it again on the same port and directory (its append-only file reloaded).
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "kill it first");
        assert!(
            self.spawn().unwrap(),
            "redis-server restarts on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
