//! Issue 12, the upstream and the gRPC port under attack (items 2 and 4): a WeChat (or a
//! central token service) that answers a gigabyte, a megabyte `errmsg`, or an
//! `expires_in` of 0 or of centuries; more images than the image cache may hold; a gRPC
//! client sending megabyte requests; an operator whose credentials are half-set or whose
//! simulator would face the network. Each test performs the attack against a fake
//! upstream on loopback — a raw `TcpListener` answering canned HTTP, so nothing in between
//! can soften the attack — shows it refused or clamped, and shows real calls still
//! succeeding afterwards.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{TestService, binary, config};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use wechat_qr::{
    config::{ServeConfig, TokenSourceKind},
    pb::{self, create_ticket_request::Scene},
    secret::Secret,
};

/// What the attacker sends: a gigabyte, far more than any limit.
const GIGABYTE: u64 = 1 << 30;
/// A tonic client's default receive limit; the largest response must fit under it.
const DEFAULT_CLIENT_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

/// One canned answer of the fake upstream.
#[derive(Debug, Clone)]
enum Reply {
    /// 200 with this JSON.
    Json(String),
    /// 200 `image/jpeg` with these bytes.
    Image(Vec<u8>),
    /// 200 whose body never ends (up to a gigabyte): with a `Content-Length` announcing
    /// it, or chunked with no length at all.
    Endless {
        content_type: &'static str,
        announced: bool,
    },
}

/// A fake WeChat (or token service) on loopback: answers each path with the reply set for
/// it, counts requests per path and the bytes it managed to push into endless answers.
#[derive(Clone)]
struct FakeUpstream {
    addr: SocketAddr,
    replies: Arc<Mutex<HashMap<&'static str, Reply>>>,
    requests: Arc<Mutex<HashMap<String, u64>>>,
    endless_bytes_sent: Arc<AtomicU64>,
}

impl FakeUpstream {
    /// Serves until the test's runtime ends (each test has its own runtime).
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            replies: Arc::default(),
            requests: Arc::default(),
            endless_bytes_sent: Arc::default(),
        };
        let served = upstream.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(served.clone().answer(socket));
            }
        });
        upstream
    }

    fn url(&self) -> url::Url {
        format!("http://{}", self.addr).parse().unwrap()
    }

    fn set(&self, path: &'static str, reply: Reply) {
        self.replies.lock().unwrap().insert(path, reply);
    }

    fn requests(&self, path: &str) -> u64 {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Answers one request, then closes the connection.
    async fn answer(self, mut socket: TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 || socket.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if socket.read_exact(&mut body).await.is_err() {
            return;
        }
        *self
            .requests
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default() += 1;
        let reply = self.replies.lock().unwrap().get(path.as_str()).cloned();
        let (content_type, body) = match reply {
            Some(Reply::Json(json)) => ("application/json", json.into_bytes()),
            Some(Reply::Image(bytes)) => ("image/jpeg", bytes),
            Some(Reply::Endless {
                content_type,
                announced,
            }) => return self.endless(socket, content_type, announced).await,
            None => {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                return;
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&body).await;
    }

    /// Streams a gigabyte of `"aaaa…` until the reader gives up; counts what got out.
    async fn endless(&self, mut socket: TcpStream, content_type: &str, announced: bool) {
        let framing = if announced {
            format!("content-length: {GIGABYTE}")
        } else {
            "transfer-encoding: chunked".to_owned()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{framing}\r\nconnection: close\r\n\r\n"
        );
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut piece = vec![b'a'; 64 * 1024];
        piece[0] = b'"';
        let mut sent = 0u64;
        while sent < GIGABYTE {
            let written = if announced {
                socket.write_all(&piece).await
            } else {
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(&piece);
                chunk.extend_from_slice(b"\r\n");
                socket.write_all(&chunk).await
            };
            if written.is_err() {
                break;
            }
            sent += piece.len() as u64;
            self.endless_bytes_sent
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
            piece[0] = b'a';
        }
    }
}

const TOKEN_PATH: &str = "/cgi-bin/stable_token";
const CREATE_PATH: &str = "/cgi-bin/qrcode/create";
const IMAGE_PATH: &str = "/cgi-bin/showqrcode";

fn token_json(expires_in: &str) -> String {
    format!(r#"{{"access_token":"fake-access-token","expires_in":{expires_in}}}"#)
}

fn ticket_json(ticket: &str) -> String {
    format!(
        r#"{{"ticket":"{ticket}","expire_seconds":600,"url":"http://weixin.qq.com/q/{ticket}"}}"#
    )
}

/// A fake upstream that answers like WeChat on a good day.
async fn good_upstream() -> FakeUpstream {
    let upstream = FakeUpstream::start().await;
    upstream.set(TOKEN_PATH, Reply::Json(token_json("7200")));
    upstream.set(CREATE_PATH, Reply::Json(ticket_json("good-ticket")));
    upstream.set(IMAGE_PATH, Reply::Image(jpeg(2048)));
    upstream
}

fn jpeg(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x42; len];
    bytes[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    bytes
}

/// The service with real-looking credentials, talking to `upstream` as to WeChat.
async fn service_on(upstream: &FakeUpstream, adjust: impl FnOnce(&mut ServeConfig)) -> Service {
    let scratch = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.app_id = Some("wx-hardening-test".into());
    cfg.app_secret = Some(Secret::new("hardening-secret"));
    cfg.token = Some(Secret::new("hardening-token"));
    cfg.api_base = Some(upstream.url());
    cfg.mp_base = Some(upstream.url());
    cfg.permanent_store = Some(scratch.path().join("no-legacy-file.jsonl"));
    adjust(&mut cfg);
    Service {
        service: TestService::start_with(cfg).await,
        _scratch: scratch,
    }
}

struct Service {
    service: TestService,
    _scratch: tempfile::TempDir,
}

fn temporary(scene_id: u32) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(Scene::SceneId(scene_id)),
        expire_seconds: 600,
        ..Default::default()
    }
}

fn image(ticket: &str) -> pb::GetImageRequest {
    pb::GetImageRequest {
        ticket: ticket.into(),
        ..Default::default()
    }
}

fn error_info(status: &Status) -> (String, HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("{status:?} carries an ErrorInfo"));
    (info.reason, info.metadata)
}

/// Bytes the fake upstream got out before the service hung up: socket buffers' worth,
/// not the gigabyte.
fn assert_read_stopped_early(upstream: &FakeUpstream) {
    let sent = upstream.endless_bytes_sent.load(Ordering::Relaxed);
    assert!(
        sent < 32 * 1024 * 1024,
        "the service kept reading: {sent} bytes went out"
    );
}

/// Waits (bounded) until the fake upstream's writers notice the closed connections.
async fn settle(upstream: &FakeUpstream) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = upstream.endless_bytes_sent.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_gigabyte_json_answer_is_refused_at_64_kib_and_the_next_call_succeeds() {
    let upstream = good_upstream().await;
    let service = service_on(&upstream, |_| {}).await;
    let mut client = service.service.client().await;
    client.create_ticket(temporary(1)).await.expect("warm-up");

    for announced in [true, false] {
        upstream.set(
            CREATE_PATH,
            Reply::Endless {
                content_type: "application/json",
                announced,
            },
        );
        let started = Instant::now();
        let status = client.create_ticket(temporary(2)).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        let (reason, metadata) = error_info(&status);
        assert_eq!(reason, "WECHAT_ANSWER_TOO_LARGE");
        assert_eq!(metadata["endpoint"], "qrcode/create");
        assert_eq!(metadata["limit"], "65536");
        assert!(status.message().contains("65536-byte limit"), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused promptly"
        );
        settle(&upstream).await;
        assert_read_stopped_early(&upstream);
    }

    // The same (token-bearing) service keeps serving once WeChat behaves.
    upstream.set(CREATE_PATH, Reply::Json(ticket_json("after-the-flood")));
    let ticket = client
        .create_ticket(temporary(3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ticket.ticket, "after-the-flood");
    assert_eq!(upstream.requests(TOKEN_PATH), 1, "the token survived");
}

#[tokio::test]
async fn a_gigabyte_image_is_refused_past_the_image_limit_and_the_largest_allowed_image_is_served()
{
    const LIMIT: usize = 2 * 1024 * 1024;
    let upstream = good_upstream().await;
    let service = service_on(&upstream, |cfg| assert_eq!(cfg.max_image_bytes, LIMIT)).await;
    let mut client = service.service.client().await;

    for (announced, ticket) in [(true, "huge-announced"), (false, "huge-chunked")] {
        upstream.set(
            IMAGE_PATH,
            Reply::Endless {
                content_type: "image/jpeg",
                announced,
            },
        );
        let status = client.get_image(image(ticket)).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        let (reason, metadata) = error_info(&status);
        assert_eq!(reason, "WECHAT_ANSWER_TOO_LARGE");
        assert_eq!(metadata["endpoint"], "showqrcode");
        assert_eq!(metadata["limit"], LIMIT.to_string());
        settle(&upstream).await;
        assert_read_stopped_early(&upstream);
    }

    // One byte over is refused; exactly the limit is served whole over gRPC — the
    // response limit fits the largest image, and stays under a default client's 4 MiB.
    upstream.set(IMAGE_PATH, Reply::Image(jpeg(LIMIT + 1)));
    let status = client.get_image(image("one-over")).await.unwrap_err();
    assert_eq!(error_info(&status).0, "WECHAT_ANSWER_TOO_LARGE");
    upstream.set(IMAGE_PATH, Reply::Image(jpeg(LIMIT)));
    let served = client
        .get_image(image("at-the-limit"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.image.len(), LIMIT);
    assert_eq!(served.content_type, "image/jpeg");
    let messages = config().resolve().unwrap().messages;
    assert!(messages.max_response_bytes > LIMIT);
    assert!(messages.max_response_bytes < DEFAULT_CLIENT_RECEIVE_LIMIT);
    client
        .create_ticket(temporary(1))
        .await
        .expect("and tickets are still minted");
}

/// Images kept in memory stay under `WECHAT_QR_IMAGE_CACHE_BYTES`: 40 images of 100 KiB
/// (4 MB downloaded) through a cache of 1 MiB leave at most 1 MiB cached, and what is
/// cached is served without a download.
#[tokio::test]
async fn images_kept_in_memory_stay_under_the_cache_bytes() {
    const CACHE: u64 = 1024 * 1024;
    const IMAGE: usize = 100 * 1024;
    let upstream = good_upstream().await;
    upstream.set(IMAGE_PATH, Reply::Image(jpeg(IMAGE)));
    let service = service_on(&upstream, |cfg| cfg.image_cache_bytes = CACHE).await;
    let mut client = service.service.client().await;
    let cached = || async {
        let metrics = service.service.metrics().await;
        assert!(
            metrics.contains("wechat_qr_image_cache_bytes{"),
            "the image cache gauge"
        );
        binary::metric_total(&metrics, "wechat_qr_image_cache_bytes") as u64
    };
    client.get_image(image("first")).await.unwrap();
    client.get_image(image("first")).await.unwrap();
    assert_eq!(
        upstream.requests(IMAGE_PATH),
        1,
        "a cached image is not fetched again"
    );
    for n in 0..40 {
        let served = client
            .get_image(image(&format!("ticket-{n}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(served.image.len(), IMAGE);
        let held = cached().await;
        assert!(held <= CACHE, "{held} bytes cached after image {n}");
    }
    assert_eq!(upstream.requests(IMAGE_PATH), 41);
    assert!(cached().await > 0, "the cache still holds images");
}

#[tokio::test]
async fn a_long_errmsg_is_cut_on_a_char_boundary_and_the_real_error_reaches_the_caller() {
    let upstream = good_upstream().await;
    let service = service_on(&upstream, |_| {}).await;
    let mut client = service.service.client().await;

    // 60 KB of three-byte characters (180 KB once percent-encoded into grpc-message):
    // uncut, tonic replaces the status with "metadata size exceeds".
    let errmsg = format!("quota reached rid: 6650-1 {}", "配".repeat(20_000));
    upstream.set(
        CREATE_PATH,
        Reply::Json(serde_json::json!({ "errcode": 45009, "errmsg": errmsg }).to_string()),
    );
    let status = client.create_ticket(temporary(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("errcode 45009"), "{status:?}");
    assert!(status.message().len() < 512, "{}", status.message().len());
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "WECHAT_QUOTA_EXCEEDED");
    assert_eq!(metadata["errcode"], "45009");
    let kept = &metadata["errmsg"];
    assert!(kept.starts_with("quota reached rid: 6650-1 配"), "{kept}");
    assert!(kept.ends_with('…'), "marked as cut: {kept}");
    assert!(
        kept.len() <= wechat_qr::wechat::MAX_ERRMSG_BYTES + '…'.len_utf8(),
        "{}",
        kept.len()
    );

    // A megabyte errmsg cannot even be read: the answer is refused as too large.
    let errmsg = "x".repeat(1 << 20);
    upstream.set(
        CREATE_PATH,
        Reply::Json(serde_json::json!({ "errcode": 45009, "errmsg": errmsg }).to_string()),
    );
    let status = client.create_ticket(temporary(2)).await.unwrap_err();
    assert_eq!(
        error_info(&status).0,
        "WECHAT_ANSWER_TOO_LARGE",
        "{status:?}"
    );

    upstream.set(CREATE_PATH, Reply::Json(ticket_json("fine-again")));
    assert_eq!(
        client
            .create_ticket(temporary(3))
            .await
            .unwrap()
            .into_inner()
            .ticket,
        "fine-again"
    );
}

/// A central token service (`WECHAT_TOKEN_SOURCE=url`) answering `expires_in`.
async fn token_service_answering(expires_in: &str) -> FakeUpstream {
    let upstream = good_upstream().await;
    upstream.set("/token", Reply::Json(token_json(expires_in)));
    upstream
}

#[tokio::test]
async fn an_expires_in_of_zero_does_not_make_every_call_a_token_fetch() {
    let upstream = token_service_answering("0").await;
    let token_url = format!("{}token", upstream.url());
    let service = service_on(&upstream, |cfg| {
        cfg.token_source = TokenSourceKind::Url;
        cfg.token_url = Some(token_url.parse().unwrap());
    })
    .await;
    let mut client = service.service.client().await;
    for scene in 1..=20 {
        client.create_ticket(temporary(scene)).await.unwrap();
    }
    assert_eq!(upstream.requests(CREATE_PATH), 20);
    assert_eq!(
        upstream.requests("/token"),
        1,
        "the token is kept for the minimum lifetime, not refetched per call"
    );
}

#[tokio::test]
async fn an_absurd_expires_in_is_clamped_to_wechats_two_hours_so_the_token_is_refreshed() {
    // u64::MAX seconds. With a refresh share of 0.0002, a token clamped to 7,200 s is due
    // for refresh after 1.44 s; unclamped it would be in 117 million years.
    let upstream = token_service_answering("18446744073709551615").await;
    let token_url = format!("{}token", upstream.url());
    let service = service_on(&upstream, |cfg| {
        cfg.token_source = TokenSourceKind::Url;
        cfg.token_url = Some(token_url.parse().unwrap());
        cfg.token_refresh_at = 0.0002;
    })
    .await;
    let mut client = service.service.client().await;
    client.create_ticket(temporary(1)).await.unwrap();
    assert_eq!(upstream.requests("/token"), 1);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    client.create_ticket(temporary(2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.requests("/token") < 2 {
        assert!(
            Instant::now() < deadline,
            "the token was never refreshed: cached forever"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.create_ticket(temporary(3)).await.unwrap();
    assert_eq!(
        upstream.requests("/token"),
        2,
        "one refresh, not one per call"
    );
}

fn assert_too_large_request(status: &Status, limit: usize) {
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .contains(&format!("limit is: {limit} bytes")),
        "names the limit: {status:?}"
    );
}

#[tokio::test]
async fn megabyte_requests_are_refused_on_the_generated_and_the_hand_written_path() {
    const LIMIT: usize = 256 * 1024;
    let service = TestService::start().await;
    let mut client = service.client().await;
    let scene = 1 << 20;

    // CreateTicket: the generated QrServiceServer.
    let huge = pb::CreateTicketRequest {
        scene: Some(Scene::SceneStr("s".repeat(scene))),
        expire_seconds: 60,
        ..Default::default()
    };
    let status = client.create_ticket(huge).await.unwrap_err();
    assert_too_large_request(&status, LIMIT);

    // StreamEvents: the hand-written wire route.
    let huge = pb::StreamEventsRequest {
        tickets: (0..1000).map(|i| format!("{i:01000}")).collect(),
        ..Default::default()
    };
    let status = client.stream_events(huge).await.unwrap_err();
    assert_too_large_request(&status, LIMIT);
    assert_eq!(
        service.running().subscribers.count(),
        0,
        "nothing subscribed"
    );

    // Real calls on the same connection still work, and the largest filter the caps allow
    // with real-size values (1,000 tickets of ~100 bytes, 1,000 scenes of 64) fits.
    let ticket = client
        .create_ticket(temporary(1))
        .await
        .unwrap()
        .into_inner();
    // The shape of a WeChat ticket: 96 characters, here 100 with a counter.
    let real_size = "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==";
    assert_eq!(real_size.len(), 96);
    let tickets: Vec<String> = (0..999)
        .map(|i| format!("{real_size}{i:04}"))
        .chain([ticket.ticket.clone()])
        .collect();
    // And a thousand scenes of the longest kind (64 characters).
    let scenes: Vec<String> = (0..999)
        .map(|i| format!("{i:064}"))
        .chain(["1".to_owned()])
        .collect();
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            tickets,
            scenes,
            ..Default::default()
        })
        .await
        .expect("a real-size filter is accepted")
        .into_inner();
    let scan = common::scan_xml("SCAN", "oHardening", "1", &ticket.ticket, common::now());
    common::push(&service, &scan).await;
    let event = common::next(&mut stream).await.expect("the scan arrives");
    assert_eq!(event.event.unwrap().ticket, ticket.ticket);
}

/// Runs the real binary with only `env` (and port-0 loopback listeners unless
/// overridden) until it exits or logs its gRPC address.
fn binary(env: &[(&str, &str)], cwd: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    for (key, _) in std::env::vars() {
        if key.starts_with("WECHAT_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_EVENT_LOG", "memory")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The binary is expected to refuse to start: its exit status and stderr.
async fn refused(env: &[(&str, &str)]) -> String {
    let cwd = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), binary(env, cwd.path()).output())
        .await
        .expect("exits promptly")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(
        std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "left nothing behind (no data directory): {stderr}"
    );
    stderr
}

#[tokio::test]
async fn half_set_credentials_are_a_configuration_error_naming_the_missing_one() {
    let stderr = refused(&[("WECHAT_APP_ID", "wx-half-configured")]).await;
    assert!(
        stderr.contains("WECHAT_APP_ID is set but WECHAT_APP_SECRET is not"),
        "{stderr}"
    );
    let stderr = refused(&[("WECHAT_APP_SECRET", "half-configured-secret")]).await;
    assert!(
        stderr.contains("WECHAT_APP_SECRET is set but WECHAT_APP_ID is not"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("half-configured-secret"),
        "no secret: {stderr}"
    );
}

#[tokio::test]
async fn the_simulator_and_its_public_token_refuse_non_loopback_addresses() {
    // Nothing binds: the refusal comes before any listener (tests stay on loopback).
    let stderr = refused(&[("WECHAT_QR_SIMULATOR_ADDR", "0.0.0.0:0")]).await;
    assert!(stderr.contains("WECHAT_QR_SIMULATOR_ADDR"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--allow-simulator-on-network"), "{stderr}");
    let stderr = refused(&[("WECHAT_QR_HTTP_ADDR", "[::]:0")]).await;
    assert!(
        stderr.contains("public development token (WECHAT_QR_HTTP_ADDR)"),
        "{stderr}"
    );

    // What the flag and an own token allow, resolved without binding anything.
    let mut cfg = config();
    cfg.simulator_addr = "0.0.0.0:0".parse().unwrap();
    assert!(cfg.resolve().is_err());
    cfg.allow_simulator_on_network = true;
    assert!(cfg.resolve().unwrap().simulator.is_some());
    let mut cfg = config();
    cfg.http_addr = "0.0.0.0:0".parse().unwrap();
    cfg.token = Some(Secret::new("an-operators-own-token"));
    assert!(
        cfg.resolve().is_ok(),
        "a webhook with a chosen token may face the network"
    );
    // With real credentials the simulator address is not used, so not checked.
    let mut cfg = config();
    cfg.simulator_addr = "0.0.0.0:0".parse().unwrap();
    cfg.app_id = Some("wx-real".into());
    cfg.app_secret = Some(Secret::new("real-secret"));
    cfg.token = Some(Secret::new("real-token"));
    assert!(cfg.resolve().unwrap().simulator.is_none());
}

/// Reads log lines until one contains `needle`; returns it and the lines before.
async fn line_with(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} not logged:\n{seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("binary exited:\n{seen}"));
        if line.contains(needle) {
            return (line, seen);
        }
        seen.push_str(&line);
        seen.push('\n');
    }
}

#[tokio::test]
async fn the_start_up_log_states_the_mode_in_one_line_at_warn_for_the_simulator() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = binary(&[], cwd.path()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (line, before) = line_with(&mut lines, "mode=").await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("simulator"), "{line}");
    assert!(line.contains("NOT WeChat"), "{line}");
    assert!(!before.contains("mode="), "one line: {before}");
    child.kill().await.unwrap();

    // With credentials: one INFO line naming WeChat, no simulator warning.
    let upstream = good_upstream().await;
    let api = upstream.url().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = binary(
        &[
            ("WECHAT_APP_ID", "wx-real-mode"),
            ("WECHAT_APP_SECRET", "real-mode-secret"),
            ("WECHAT_TOKEN", "real-mode-token"),
            ("WECHAT_API_BASE", &api),
            ("WECHAT_MP_BASE", &api),
        ],
        cwd.path(),
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (line, before) = line_with(&mut lines, "mode=").await;
    assert!(line.contains("INFO") && line.contains("wechat"), "{line}");
    assert!(line.contains("wx-real-mode"), "{line}");
    assert!(
        !line.contains("simulator") && !before.contains("WARN"),
        "{before}{line}"
    );
    child.kill().await.unwrap();
}
