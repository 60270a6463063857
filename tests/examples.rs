//! The examples under `examples/`, run as a user runs them: each a subprocess on its
//! generated client (`clients/`), against the real service, with scans pushed by the real
//! `wechat-qr simulate-scan` once the example printed its ticket(s). A missing Python,
//! Node or Go is a failure, never a skip: `./scripts/test` installs them.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestService;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};
use wechat_qr::pb::{self, create_ticket_request::Scene};

/// How long an example may take to print its next line: interpreters start, connect and
/// mint codes well within this even on a loaded 2-core machine.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with grpcio: `$WECHAT_QR_PYTHON`, else the repo's `.venv/bin/python`.
fn python() -> PathBuf {
    let python = std::env::var_os("WECHAT_QR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let works = std::process::Command::new(&python)
        .args(["-c", "import grpc, google.protobuf"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        works,
        "{} with grpcio and protobuf not found: run ./scripts/test, which installs \
         scripts/requirements.txt into .venv/ (or set WECHAT_QR_PYTHON)",
        python.display()
    );
    python
}

/// `node_modules/.bin/<tool>` on the machine's Node.
fn node_tool(tool: &str) -> PathBuf {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "node not found: install Node.js 20, then run ./scripts/test"
    );
    let path = repo().join("node_modules/.bin").join(tool);
    assert!(
        path.exists(),
        "{} not found: run ./scripts/test, which runs npm ci",
        path.display()
    );
    path
}

/// Go and Debian's gRPC sources, which `examples/go/build` compiles against offline.
fn assert_go_installed() {
    let go = std::process::Command::new("go").arg("version").output();
    assert!(
        go.is_ok_and(|output| output.status.success()),
        "go not found: run ./scripts/test, whose ./scripts/setup-clients step installs \
         Debian's golang-go and Go gRPC sources"
    );
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wechat-qr-examples-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

    /// Waits for the exit; returns the status and everything printed after the last line read.
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

/// A code nobody waits for: scans of it must not reach the examples.
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
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
    let mut decoder = jpeg_decoder::Decoder::new(&jpeg[..]);
    let pixels = decoder.decode().expect("a valid JPEG");
    let info = decoder.info().unwrap();
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the saved image");
    let (_, url) = grids[0].decode().expect("the QR code decodes");
    assert!(url.starts_with("http://weixin.qq.com/q/"), "{url}");
}

/// Runs a scan-to-login example (Python or Go): it prints its ticket only once its stream
/// listens; a scan of another code must not answer it; the scan of its own code prints
/// the scanner's openid, and it exits 0 with the image saved.
async fn scan_to_login(
    service: &TestService,
    mut example: Example,
    image: &Path,
    new_follower: bool,
) {
    let ticket = example.value("ticket").await;
    assert!(!ticket.is_empty());
    assert_qr_jpeg(image);

    let decoy = decoy_ticket(service, "login-someone-else").await;
    simulate_scan(service, &decoy, "oSomeoneElse", true).await;
    simulate_scan(service, &ticket, "oAlice", new_follower).await;

    let openid = example.value("openid").await;
    assert_eq!(openid, "oAlice", "{}", example.transcript());
    let (status, rest, transcript) = example.exit().await;
    assert!(status.success(), "{status}\n{transcript}");
    assert_eq!(rest, "", "nothing after the openid\n{transcript}");
}

#[tokio::test]
async fn python_scan_to_login_prints_the_openid_of_the_scan() {
    let service = TestService::start().await;
    let scratch = Scratch::new();
    let image = scratch.0.join("login.jpg");
    let mut command = Command::new(python());
    command
        .arg("examples/python/scan_to_login.py")
        .args(["--addr", &service.grpc_addr.to_string()])
        .arg("--image")
        .arg(&image)
        .args(["--deadline", "60"]);
    let example = Example::spawn("scan_to_login.py", command);
    // A new follower: the SUBSCRIBE carries the login.
    scan_to_login(&service, example, &image, true).await;
}

#[tokio::test]
async fn python_scan_to_login_gives_up_at_its_deadline() {
    let service = TestService::start().await;
    let scratch = Scratch::new();
    let mut command = Command::new(python());
    command
        .arg("examples/python/scan_to_login.py")
        .args(["--addr", &service.grpc_addr.to_string()])
        .arg("--image")
        .arg(scratch.0.join("login.jpg"))
        .args(["--deadline", "1"]);
    let mut example = Example::spawn("scan_to_login.py", command);
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

#[tokio::test]
async fn go_scan_to_login_prints_the_openid_of_the_scan() {
    assert_go_installed();
    let service = TestService::start().await;
    let scratch = Scratch::new();
    let binary = scratch.0.join("scan_to_login");
    common::go::build_example("scan_to_login", &binary).await;
    let image = scratch.0.join("login.jpg");
    let mut command = Command::new(&binary);
    command
        .args(["-addr", &service.grpc_addr.to_string()])
        .arg("-image")
        .arg(&image)
        .args(["-deadline", "60s"]);
    let example = Example::spawn("scan_to_login (Go)", command);
    // A user who already follows: the SCAN carries the login.
    scan_to_login(&service, example, &image, false).await;
}

#[tokio::test]
async fn typescript_channel_attribution_counts_new_followers_per_channel() {
    let tsx = node_tool("tsx");
    let service = TestService::start().await;
    let mut command = Command::new(tsx);
    command
        .arg("examples/typescript/channel_attribution.ts")
        .args(["--addr", &service.grpc_addr.to_string()])
        .args(["--events", "5", "--deadline", "60"]);
    let mut example = Example::spawn("channel_attribution.ts", command);

    let channels = ["poster-metro", "poster-mall", "poster-web"];
    let mut tickets = Vec::new();
    for channel in channels {
        let line = example.line().await;
        let ticket = line
            .strip_prefix(&format!("ticket {channel}="))
            .unwrap_or_else(|| panic!("expected the {channel} ticket, got {line:?}"));
        tickets.push(ticket.to_owned());
    }
    let [metro, mall, web] = &tickets[..] else {
        unreachable!()
    };

    // A scan of a code outside the three channels is no event of the example's.
    let elsewhere = decoy_ticket(&service, "poster-elsewhere").await;
    simulate_scan(&service, &elsewhere, "oElsewhere", true).await;
    // (ticket, openid, new follower) and the tally the example prints after it: a SCAN
    // (someone who already followed) is an event but no follow.
    let scans = [
        (
            metro,
            "oA",
            true,
            "poster-metro=1 poster-mall=0 poster-web=0",
        ),
        (web, "oB", true, "poster-metro=1 poster-mall=0 poster-web=1"),
        (
            metro,
            "oC",
            false,
            "poster-metro=1 poster-mall=0 poster-web=1",
        ),
        (
            mall,
            "oD",
            true,
            "poster-metro=1 poster-mall=1 poster-web=1",
        ),
        (
            metro,
            "oE",
            true,
            "poster-metro=2 poster-mall=1 poster-web=1",
        ),
    ];
    for (ticket, openid, new_follower, _) in &scans {
        simulate_scan(&service, ticket, openid, *new_follower).await;
    }
    for (_, openid, _, tally) in &scans {
        let line = example.line().await;
        assert_eq!(
            line,
            format!("follows {tally}"),
            "after {openid}\n{}",
            example.transcript()
        );
    }
    let (status, rest, transcript) = example.exit().await;
    assert!(status.success(), "{status}\n{transcript}");
    assert_eq!(rest, "", "exits after --events 5\n{transcript}");
}

#[tokio::test]
async fn typescript_example_typechecks_against_the_generated_client() {
    let tsc = node_tool("tsc");
    let output = Command::new(tsc)
        .args(["-p", "examples/typescript"])
        .current_dir(repo())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "tsc -p examples/typescript:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
