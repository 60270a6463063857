//! The Java example (`examples/java/ScanToLogin.java`), run as a user runs it: built by
//! `examples/java/build` against Debian's jars, then `java -jar` on its generated client
//! (`clients/java`), against the real service, with scans pushed by the real `wechat-qr
//! simulate-scan` once the example printed its ticket. One run drops the example's stream
//! mid-way (a TCP proxy between it and the service cuts the connection) and checks that the
//! resumed stream delivers the scan made during the gap exactly once. One more runs it
//! with `--token` and `--ca` against the real binary started with a configuration file that
//! requires a client token and serves gRPC over TLS (a CA and certificate made by `openssl`
//! at test time), its account's WeChat being another test service's simulator, so the scan
//! is a push signed here with the account's webhook token; without the token the example
//! exits with UNAUTHENTICATED. A missing JDK or Debian jar is a failure, never a skip:
//! `./scripts/test` installs them.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{TestService, binary::Binary, scan_xml, signed_query};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdout, Command},
    sync::watch,
    task::JoinHandle,
};
use wechat_qr::pb::{self, create_ticket_request::Scene};

/// How long the example may take to print its next line: a JVM starts, connects and mints
/// a code well within this even on a loaded 2-core machine.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The JDK's java, javac and jar.
fn assert_jdk_installed() {
    for (tool, flag) in [
        ("java", "-version"),
        ("javac", "-version"),
        ("jar", "--version"),
    ] {
        let works = std::process::Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            works,
            "{tool} not found: run ./scripts/test, whose ./scripts/setup-clients step installs \
             Debian's default-jdk-headless and the Java gRPC and protobuf jars"
        );
    }
}

/// The example's jar, built once per test binary by `examples/java/build`, before any
/// service starts (the build blocks its thread).
fn example_jar() -> &'static Path {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        assert_jdk_installed();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("java_example");
        std::fs::create_dir_all(&dir).unwrap();
        // Built under a name of its own, then renamed: another test process may be using
        // the jar at the shared path.
        let fresh = dir.join(format!("scan_to_login-{}.jar", std::process::id()));
        let built = std::process::Command::new(repo().join("examples/java/build"))
            .arg(&fresh)
            .current_dir(repo())
            .output()
            .expect("examples/java/build runs");
        assert!(
            built.status.success(),
            "examples/java/build failed: run ./scripts/test, whose ./scripts/setup-clients \
             step installs what it needs\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let jar = dir.join("scan_to_login.jar");
        std::fs::rename(&fresh, &jar).unwrap();
        jar
    })
}

/// `java -jar scan_to_login.jar --addr <addr> --image <image> --deadline <seconds> [extra]`,
/// with no `$WECHAT_QR_TOKEN` from the test's environment: a token is passed in `extra`.
fn scan_to_login(addr: SocketAddr, image: &Path, deadline: &str, extra: &[&str]) -> Example {
    let mut command = Command::new("java");
    command
        .env_remove("WECHAT_QR_TOKEN")
        .arg("-jar")
        .arg(example_jar())
        .args(["--addr", &addr.to_string()])
        .arg("--image")
        .arg(image)
        .args(["--deadline", deadline])
        .args(extra);
    Example::spawn("ScanToLogin (Java)", command)
}

/// A running example: its stdout read line by line, its stderr kept for failure messages.
struct Example {
    name: &'static str,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    printed: String,
    stderr: Arc<Mutex<String>>,
}

impl Example {
    fn spawn(name: &'static str, mut command: Command) -> Self {
        let mut child = command
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            name,
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            printed: String::new(),
            stderr,
        }
    }

    fn transcript(&self) -> String {
        format!(
            "{} stdout:\n{}\nstderr:\n{}",
            self.name,
            self.printed,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line; a failure if the example exits or stalls first.
    async fn line(&mut self) -> String {
        let line = match tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("exited early\n{}", self.transcript()),
            Ok(Err(e)) => panic!("stdout unreadable: {e}\n{}", self.transcript()),
            Err(_) => panic!("no line within {LINE_TIMEOUT:?}\n{}", self.transcript()),
        };
        self.printed.push_str(&line);
        self.printed.push('\n');
        line
    }

    /// The value of the next line, which must read `<key>=<value>`.
    async fn value(&mut self, key: &str) -> String {
        let line = self.line().await;
        match line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
        {
            Some(value) => value.to_owned(),
            None => panic!("expected `{key}=...`, got {line:?}\n{}", self.transcript()),
        }
    }

    /// Waits for the exit; returns the status, everything printed after the last line read,
    /// and the whole transcript.
    async fn exit(mut self) -> (ExitStatus, String, String) {
        let status = tokio::time::timeout(LINE_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit\n{}", self.transcript()))
            .unwrap();
        let mut rest = String::new();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        self.printed.push_str(&rest);
        // The stderr reader may still be draining the pipe.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let transcript = self.transcript();
        (status, rest, transcript)
    }
}

/// Makes the simulator push a scan of `ticket`, with the real binary.
async fn simulate_scan(service: &TestService, ticket: &str, openid: &str, new_follower: bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    command.args(["simulate-scan", "--simulator", &service.simulator_url()]);
    command.args(["--ticket", ticket, "--openid", openid]);
    if new_follower {
        command.arg("--new-follower");
    }
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "simulate-scan {ticket} {openid}: {output:?}"
    );
}

/// A code nobody waits for: scans of it must not reach the example.
async fn decoy_ticket(service: &TestService, scene: &str) -> String {
    service
        .client()
        .await
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneStr(scene.into())),
            expire_seconds: 300,
            ..Default::default()
        })
        .await
        .expect("decoy ticket")
        .into_inner()
        .ticket
}

/// The saved image is a real QR code of a WeChat ticket URL.
fn assert_qr_jpeg(path: &Path) {
    let jpeg = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let url = common::decode_qr(&jpeg);
    assert!(url.starts_with("http://weixin.qq.com/q/"), "{url}");
}

/// A TCP proxy in front of the service that can cut every connection through it and hold
/// new ones until released: a network blip, as the example sees it.
struct Proxy {
    addr: SocketAddr,
    /// Whether new connections are forwarded (else held, unanswered).
    open: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, _) = watch::channel(true);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let accept_loop = tokio::spawn({
            let open = open.subscribe();
            let connections = connections.clone();
            let accepted = accepted.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let mut open = open.clone();
                    let connection = tokio::spawn(async move {
                        if open.wait_for(|open| *open).await.is_err() {
                            return;
                        }
                        let Ok(mut upstream) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                    connections.lock().unwrap().push(connection);
                }
            }
        });
        Self {
            addr,
            open,
            connections,
            accepted,
            accept_loop,
        }
    }

    /// Closes every connection through the proxy (both ends) and holds new ones.
    async fn cut(&self) {
        self.open.send_replace(false);
        let cut: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        for connection in cut {
            connection.abort();
            let _ = connection.await;
        }
    }

    /// Forwards held and new connections again.
    fn release(&self) {
        self.open.send_replace(true);
    }

    /// Waits until `n` connections were accepted in all.
    async fn accepted(&self, n: usize) {
        tokio::time::timeout(LINE_TIMEOUT, async {
            while self.accepted.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no connection {n} through the proxy within {LINE_TIMEOUT:?}"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// It prints its ticket only once its stream listens; a scan of another code must not
/// answer it; the scan of its own code prints the scanner's openid, and it exits 0 with the
/// image saved.
#[tokio::test]
async fn java_scan_to_login_prints_the_openid_of_the_scan() {
    example_jar();
    let service = TestService::start().await;
    let image = common::scratch_file("login.jpg");
    let mut example = scan_to_login(service.grpc_addr, &image, "60", &[]);

    let ticket = example.value("ticket").await;
    assert!(!ticket.is_empty());
    assert_qr_jpeg(&image);
    let decoy = decoy_ticket(&service, "login-someone-else").await;
    simulate_scan(&service, &decoy, "oSomeoneElse", true).await;
    // A new follower: the SUBSCRIBE carries the login.
    simulate_scan(&service, &ticket, "oAlice", true).await;

    let openid = example.value("openid").await;
    assert_eq!(openid, "oAlice", "{}", example.transcript());
    let (status, rest, transcript) = example.exit().await;
    assert!(status.success(), "{status}\n{transcript}");
    assert_eq!(rest, "", "nothing after the openid\n{transcript}");
}

#[tokio::test]
async fn java_scan_to_login_gives_up_at_its_deadline() {
    example_jar();
    let service = TestService::start().await;
    let image = common::scratch_file("login.jpg");
    let mut example = scan_to_login(service.grpc_addr, &image, "1", &[]);
    let ticket = example.value("ticket").await;
    // A scan of some other code does not count.
    let decoy = decoy_ticket(&service, "login-someone-else").await;
    simulate_scan(&service, &decoy, "oSomeoneElse", true).await;
    let (status, rest, transcript) = example.exit().await;
    assert_eq!(status.code(), Some(2), "{transcript}");
    assert!(!rest.contains("openid="), "{transcript}");
    assert!(
        transcript.contains("nobody scanned within 1 s"),
        "{ticket}: {transcript}"
    );
}

/// The stream drops after the first of three scans; the second scan happens while the
/// example is cut off; its stream, resumed after the cursor of the first, delivers the
/// second once, then the third live: exactly oAlice, oBob, oCarol.
#[tokio::test]
async fn java_scan_to_login_resumes_a_dropped_stream_and_gets_the_missed_scan_once() {
    example_jar();
    let service = TestService::start().await;
    let proxy = Proxy::start(service.grpc_addr).await;
    let image = common::scratch_file("login.jpg");
    let mut example = scan_to_login(proxy.addr, &image, "60", &["--scans", "3"]);

    let ticket = example.value("ticket").await;
    simulate_scan(&service, &ticket, "oAlice", true).await;
    assert_eq!(example.value("openid").await, "oAlice");

    // Cut the connection; the scan of oBob is logged while the example is away (its new
    // connection is held at the proxy), so only a resume can bring it.
    proxy.cut().await;
    let decoy = decoy_ticket(&service, "login-someone-else").await;
    simulate_scan(&service, &decoy, "oSomeoneElse", true).await;
    simulate_scan(&service, &ticket, "oBob", false).await;
    proxy.accepted(2).await;
    proxy.release();

    assert_eq!(
        example.value("openid").await,
        "oBob",
        "the missed scan, after the resume\n{}",
        example.transcript()
    );
    simulate_scan(&service, &ticket, "oCarol", false).await;
    assert_eq!(
        example.value("openid").await,
        "oCarol",
        "the live scan after the missed one, which came once\n{}",
        example.transcript()
    );
    let (status, rest, transcript) = example.exit().await;
    assert!(status.success(), "{status}\n{transcript}");
    assert_eq!(rest, "", "nothing after the third openid\n{transcript}");
    assert!(
        transcript.contains("stream dropped (UNAVAILABLE")
            && transcript.contains("; resuming after "),
        "the example noticed the drop and resumed\n{transcript}"
    );
}

/// The webhook token of the account the TLS service serves; it signs the pushes.
const WEBHOOK_TOKEN: &str = "java-example-webhook-token";
/// The example's client token; the service's file holds only its SHA-256.
const CLIENT_TOKEN: &str = "java-login-page-token";

/// The real binary, started with `--config FILE` (common::binary), its gRPC address as
/// the examples take it.
struct Service {
    binary: Binary,
    grpc_addr: SocketAddr,
}

impl Service {
    async fn start(config: &Path) -> Self {
        let binary = Binary::start(config, &[]).await;
        Self {
            grpc_addr: binary.grpc_addr.parse().unwrap(),
            binary,
        }
    }

    /// Pushes a scan of `ticket` to the webhook, signed with the account's token, as
    /// WeChat would.
    async fn push_scan(&self, ticket: &str, openid: &str) {
        let nonce = format!("n{}", rand::random::<u64>());
        let query = signed_query(WEBHOOK_TOKEN, &common::now().to_string(), &nonce);
        let answer = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{}?{query}", self.binary.webhook_url))
            .body(scan_xml("SCAN", openid, "s", ticket, common::now()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", self.binary.log.lock().unwrap());
    }
}

/// The configuration file: gRPC over TLS, one client known by its token's SHA-256 and
/// allowed what the example calls, and the account served by `upstream`'s simulator as
/// "WeChat".
fn tls_config(dir: &Path, upstream: &TestService) -> PathBuf {
    let sim = upstream.simulator_url();
    let text = format!(
        r#"grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
data_dir = "{data}"
tls_cert = "{cert}"
tls_key = "{key}"

[[accounts]]
app_id = "{app_id}"
app_secret = "{app_secret}"
token = "{WEBHOOK_TOKEN}"
api_base = "{sim}"
mp_base = "{sim}"

[[clients]]
name = "login-page"
token_sha256 = "{token_sha256}"
methods = ["CreateTicket", "GetImage", "StreamEvents"]
"#,
        data = dir.join("data").display(),
        cert = dir.join("server.pem").display(),
        key = dir.join("server.key").display(),
        app_id = wechat_qr::config::dev::APP_ID,
        app_secret = wechat_qr::config::dev::APP_SECRET,
        token_sha256 = hex::encode(Sha256::digest(CLIENT_TOKEN.as_bytes())),
    );
    let config = dir.join("wechat-qr.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Against a service that requires a client token and serves TLS: without `--token` the
/// example exits 1 naming UNAUTHENTICATED; with `--token` and `--ca` (the test CA) it mints
/// its code, and the signed push of a scan of it prints the scanner's openid. The token is
/// never printed.
#[tokio::test]
async fn java_scan_to_login_sends_its_token_over_tls_trusting_the_given_ca() {
    example_jar();
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Only the CA and the server certificate are used: the example sends a token.
    common::certificates(dir.path(), "client", "unused");
    let service = Service::start(&tls_config(dir.path(), &upstream)).await;
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let image = common::scratch_file("login.jpg");

    let refused = scan_to_login(service.grpc_addr, &image, "60", &["--ca", ca]);
    let (status, rest, transcript) = refused.exit().await;
    assert_eq!(status.code(), Some(1), "{transcript}");
    assert!(!rest.contains("ticket="), "{transcript}");
    assert!(
        transcript.contains("gRPC error: UNAUTHENTICATED: ")
            && transcript.contains("missing credentials: send `authorization: Bearer <token>`"),
        "{transcript}"
    );

    let mut example = scan_to_login(
        service.grpc_addr,
        &image,
        "60",
        &["--ca", ca, "--token", CLIENT_TOKEN],
    );
    let ticket = example.value("ticket").await;
    assert_qr_jpeg(&image);
    service.push_scan(&ticket, "oAlice").await;
    assert_eq!(
        example.value("openid").await,
        "oAlice",
        "{}",
        example.transcript()
    );
    let (status, rest, transcript) = example.exit().await;
    assert!(status.success(), "{status}\n{transcript}");
    assert_eq!(rest, "", "nothing after the openid\n{transcript}");
    assert!(!transcript.contains(CLIENT_TOKEN), "{transcript}");
}
