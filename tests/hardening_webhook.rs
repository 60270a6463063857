//! Attacks on the webhook, performed against the real binary where they are about
//! processes, file descriptors or logs: a flood of maximum-length 4-byte characters, a
//! flood of held connections under a small `ulimit -n`, a flood of bad signatures, a
//! forged request id, control characters in ids. Each shows the attack refused or
//! absorbed, and real pushes still delivered meanwhile. Also: metrics and health live on
//! the admin listener, and the webhook listener serves only `/wechat`.

mod common;

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{TOKEN, TestService, binary::Binary, now, scan_xml, signed_query};
use tonic::transport::Channel;
use wechat_qr::pb::{self, qr_service_client::QrServiceClient};

/// Unique nonces across this file: the webhook refuses a reused (timestamp, nonce).
static NONCE: AtomicU64 = AtomicU64::new(0);

fn good_query() -> String {
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    signed_query(TOKEN, &now().to_string(), &format!("hw{n}"))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The real binary on loopback port 0, optionally under `ulimit -n`, with a data
/// directory of its own.
struct Started {
    binary: Binary,
    data: tempfile::TempDir,
}

impl std::ops::Deref for Started {
    type Target = Binary;

    fn deref(&self) -> &Binary {
        &self.binary
    }
}

impl Started {
    async fn start(env: &[(&str, &str)], open_files: Option<u32>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let binary = env!("CARGO_BIN_EXE_wechat-qr");
        let mut command = match open_files {
            // The shell lowers the limit, then becomes the service (same pid).
            Some(limit) => {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &format!("ulimit -n {limit} && exec \"$0\""), binary]);
                c
            }
            None => std::process::Command::new(binary),
        };
        for (key, _) in std::env::vars() {
            if key.starts_with("WECHAT_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_DATA_DIR", data.path().join("data"))
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        Self {
            binary: Binary::spawn(command).await,
            data,
        }
    }

    /// SIGTERM, then every line it logged until it exited.
    async fn stop(mut self) -> Vec<String> {
        self.binary.signal("TERM");
        // Waits for the exit and for the log reader to reach EOF: every last line.
        let status = self.binary.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "{status:?}");
        self.binary.log_lines()
    }
}

async fn post(http: &reqwest::Client, url: &str, query: &str, body: String) -> (u16, String) {
    let response = http
        .post(format!("{url}?{query}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A stream of the events of `ticket`.
async fn watch(
    client: &mut QrServiceClient<Channel>,
    ticket: &str,
) -> tonic::Streaming<pb::StreamEventsResponse> {
    client
        .stream_events(pb::StreamEventsRequest {
            tickets: vec![ticket.to_owned()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Pushes a real scan of `ticket` by `openid` and checks that `stream` delivers it.
async fn real_push_delivered(
    http: &reqwest::Client,
    webhook_url: &str,
    stream: &mut tonic::Streaming<pb::StreamEventsResponse>,
    ticket: &str,
    openid: &str,
) {
    let body = scan_xml("SCAN", openid, "real", ticket, now());
    let answer = post(http, webhook_url, &good_query(), body).await;
    assert_eq!(answer, (200, "success".to_owned()), "real push {openid}");
    let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap_or_else(|_| panic!("real push {openid} not delivered"))
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert_eq!(event.openid, openid);
}

#[tokio::test]
async fn metrics_and_health_live_on_the_admin_listener_only() {
    let service = TestService::start().await;
    let http = &service.http;
    let base = service.webhook_url.trim_end_matches("/wechat").to_owned();

    let metrics = http
        .get(format!("{}/metrics", service.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("wechat_qr_"));
    let health = http
        .get(format!("{}/healthz", service.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (health.status().as_u16(), health.text().await.unwrap()),
        (200, "ok".to_owned())
    );
    for path in ["/metrics", "/healthz", "/", "/wechat/x"] {
        let answer = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 404, "webhook listener serves {path}");
    }
    let answer = http
        .get(format!("{}/wechat", service.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404, "the admin listener takes no pushes");

    // Handshakes are counted apart from pushes.
    let ts = now().to_string();
    let signature = common::wechat_signature(&[TOKEN, &ts, "hs1"]);
    let echo = http
        .get(format!(
            "{}?signature={signature}&timestamp={ts}&nonce=hs1&echostr=e1",
            service.webhook_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(echo.text().await.unwrap(), "e1");
    let metrics = &service.running().metrics;
    assert_eq!(
        metrics
            .webhook_handshakes
            .with_label_values(&[wechat_qr::config::dev::APP_ID, "accepted"])
            .get(),
        1
    );
    assert_eq!(
        metrics
            .webhook_pushes
            .with_label_values(&[wechat_qr::config::dev::APP_ID, "accepted"])
            .get()
            + metrics
                .webhook_pushes
                .with_label_values(&[wechat_qr::config::dev::APP_ID, "handshake"])
                .get(),
        0,
        "a handshake is no push"
    );
    service.stop().await;
}

/// 4-byte characters (`𝟎`..`𝟗`, `𝕏`): four bytes each, one character.
fn wide(n: usize) -> String {
    "\u{1D54F}".repeat(n)
}

fn wide_number(mut n: u64, digits: usize) -> String {
    let mut out = Vec::new();
    for _ in 0..digits {
        out.push(char::from_u32(0x1D7CE + (n % 10) as u32).unwrap());
        n /= 10;
    }
    out.into_iter().rev().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_four_byte_characters_is_bounded_by_bytes() {
    let binary = Started::start(
        &[
            ("WECHAT_QR_RETAIN_BYTES", "1048576"),
            ("WECHAT_QR_RETAIN_EVENTS", "1000000"),
        ],
        None,
    )
    .await;
    let http = http();
    let mut client = binary.client().await;
    let mut real = watch(&mut client, "real-ticket").await;

    // What a limit in characters let through: FromUserName's 128 characters, each 4
    // bytes. Refused now, naming the limit in bytes, and nothing is stored.
    let old_maximum = scan_xml("SCAN", &wide(128), "1", "T", now());
    let answer = post(&http, &binary.webhook_url, &good_query(), old_maximum).await;
    assert_eq!(
        answer,
        (
            400,
            "bad push: field FromUserName longer than 128 bytes".to_owned()
        )
    );
    let answer = post(
        &http,
        &binary.webhook_url,
        &good_query(),
        scan_xml("SCAN", "o", "1", &wide(1024), now()),
    )
    .await;
    assert_eq!(answer.0, 400, "{answer:?}");

    // The flood: the most each field now allows, all in 4-byte characters (128 bytes of
    // openid, 256 of scene, 1024 of ticket), 6 phases of 2,000: ~17 MB of fields
    // through a 1 MiB retention. Memory and disk must level off.
    let data_dir = binary.data.path().join("data");
    let mut sizes = Vec::new();
    let started = Instant::now();
    for phase in 0..6u64 {
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let (http, url) = (http.clone(), binary.webhook_url.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..250u64 {
                    let n = phase * 10_000 + worker * 1_000 + i;
                    let openid = format!("{}{}", wide(27), wide_number(n, 5));
                    let body = scan_xml("SCAN", &openid, &wide(64), &wide(256), now());
                    let answer = post(&http, &url, &good_query(), body).await;
                    assert_eq!(answer, (200, "success".to_owned()), "push {n}");
                }
            }));
        }
        // Real pushes keep being delivered during the flood.
        let openid = format!("o-real-{phase}");
        real_push_delivered(
            &http,
            &binary.webhook_url,
            &mut real,
            "real-ticket",
            &openid,
        )
        .await;
        for task in tasks {
            task.await.unwrap();
        }
        sizes.push((
            phase,
            common::data_dir::event_store_bytes(&data_dir),
            binary.rss_kib(),
        ));
    }
    eprintln!(
        "4-byte flood: 12,000 pushes in {:?}; (phase, disk bytes, RSS KiB) {sizes:?}",
        started.elapsed()
    );
    let (_, _, rss_1) = sizes[1];
    let (_, disk_last, rss_last) = sizes[5];
    assert!(
        rss_last <= rss_1 + rss_1 / 4,
        "memory keeps growing: {sizes:?}"
    );
    assert!(rss_last < 128 * 1024, "RSS {rss_last} KiB: {sizes:?}");
    assert!(
        disk_last < 8 * 1024 * 1024,
        "disk beyond the retention's reach: {sizes:?}"
    );
    binary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_webhook_connections_make_room_and_grpc_keeps_serving_under_a_small_ulimit() {
    const OPEN_FILES: u32 = 2048;
    const HELD: usize = 3_000;
    // A cap of 1,024 connections must fit a descriptor limit of 2,048; the per-address
    // limit is lifted so the one-address flood reaches the cap (tests/abuse_connections.rs
    // shows the per-address limit).
    let binary = Started::start(
        &[
            ("WECHAT_QR_MAX_WEBHOOK_CONNECTIONS", "1024"),
            ("WECHAT_QR_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        ],
        Some(OPEN_FILES),
    )
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", binary.pid())).unwrap();
    let open_files_limit = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    assert_eq!(open_files_limit, OPEN_FILES.to_string(), "{limits}");
    let http = http();
    let mut client = binary.client().await;
    let mut real = watch(&mut client, "held-ticket").await;

    // The flood: 3,000 connections that send one line and then nothing, held by the test.
    let webhook_addr = binary
        .webhook_url
        .trim_start_matches("http://")
        .trim_end_matches("/wechat")
        .to_owned();
    // Past the cap and the listen backlog, the rest keep retrying their SYN: the whole
    // flood stays on until the test releases it.
    let release = tokio_util::sync::CancellationToken::new();
    let established = Arc::new(AtomicU64::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..HELD {
        let (addr, release, established) =
            (webhook_addr.clone(), release.clone(), established.clone());
        flood.spawn(async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::select! {
                Ok(stream) = connect => stream,
                () = release.cancelled() => return,
                else => return,
            };
            // A first line and nothing more (slow-loris): a connection the kernel
            // completed with a SYN cookie while the backlog was full exists for the server
            // only once a segment arrives, so an idle one would never reach the cap.
            let mut stream = stream;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"POST /wechat HTTP/1.1\r\n")
                .await;
            established.fetch_add(1, Ordering::Relaxed);
            release.cancelled().await;
            drop(stream);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while established.load(Ordering::Relaxed) < 1_500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The kernel completes handshakes into the listen backlog faster than the accept loop
    // takes them: wait (bounded) for the server to reach its cap before judging it.
    let mut server_files = binary.open_files();
    while server_files < 1_000 && Instant::now() < deadline + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        server_files = binary.open_files();
    }
    let held = established.load(Ordering::Relaxed);
    eprintln!("{held} of {HELD} connections established; the server has {server_files} files open");
    assert!(held >= 1_500, "the flood is real: {held}");
    assert!(
        (1_000..1_200).contains(&server_files),
        "the server holds its cap of connections, no more: {server_files} files"
    );

    // gRPC keeps accepting and serving: new connections, unary and streaming calls.
    for scene in 1..=5 {
        let mut fresh = binary.client().await;
        fresh
            .create_ticket(pb::CreateTicketRequest {
                scene: Some(pb::create_ticket_request::Scene::SceneId(scene)),
                expire_seconds: 60,
                ..Default::default()
            })
            .await
            .expect("gRPC serves while the webhook is flooded");
    }
    let mut also = watch(&mut binary.client().await, "held-ticket").await;
    // So does the admin listener.
    let health = http
        .get(format!("{}/healthz", binary.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // A real push does not wait: at the cap the oldest connection still reading its
    // head is closed to make room, while the flood is still held.
    let waited = Instant::now();
    let push = tokio::time::timeout(
        Duration::from_secs(60),
        real_push_delivered(
            &http,
            &binary.webhook_url,
            &mut real,
            "held-ticket",
            "o-held",
        ),
    );
    push.await.expect("the push got a slot within 60 s");
    eprintln!("a real push took {:?}", waited.elapsed());
    let event = also.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!(event.openid, "o-held");
    release.cancel();
    while flood.join_next().await.is_some() {}

    let log = binary.stop().await.join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("connection cap reached"), "the cap was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_bad_signatures_is_logged_at_a_bounded_pace_and_counted() {
    const BAD: u64 = 20_000;
    let binary = Started::start(&[("WECHAT_QR_LOG_FORMAT", "json")], None).await;
    let http = http();
    let mut client = binary.client().await;
    let mut real = watch(&mut client, "flood-ticket").await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let (http, url) = (http.clone(), binary.webhook_url.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..BAD / 16 {
                let query = signed_query(
                    "not-the-token",
                    &now().to_string(),
                    &format!("b{worker}-{i}"),
                );
                let body = scan_xml("SCAN", "o-forged", "1", "flood-ticket", now());
                let (status, _) = post(&http, &url, &query, body).await;
                assert_eq!(status, 403);
            }
        }));
    }
    // Real pushes keep being delivered during the flood.
    for i in 0..5 {
        real_push_delivered(
            &http,
            &binary.webhook_url,
            &mut real,
            "flood-ticket",
            &format!("o-real-{i}"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed();
    // The last summary is written at the end of the second the flood ended in.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let metrics = binary.metrics().await;
    assert!(
        metrics.contains(&format!(
            "wechat_qr_webhook_pushes_total{{app_id=\"wx0000000000devsim\",outcome=\"bad_signature\"}} {BAD}"
        )),
        "every refusal is counted"
    );

    let log = binary.stop().await;
    let json: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let refused = json
        .iter()
        .filter(|j| j["fields"]["message"] == "webhook request refused")
        .count() as u64;
    let summaries: Vec<u64> = json
        .iter()
        .filter(|j| j["fields"]["message"] == "log lines suppressed by the rate limit")
        .map(|j| j["fields"]["suppressed"].as_u64().unwrap())
        .collect();
    let suppressed: u64 = summaries.iter().sum();
    eprintln!(
        "{BAD} bad signatures in {took:?}: {} lines in all, {refused} refusal lines, \
         {} summaries of {suppressed} suppressed",
        log.len(),
        summaries.len()
    );
    assert_eq!(refused + suppressed, BAD, "every refusal logged or counted");
    let seconds = took.as_secs() + 2;
    assert!(
        refused <= 5 * seconds,
        "{refused} refusal lines in {took:?}"
    );
    assert!(summaries.len() as u64 <= seconds, "{summaries:?}");
    assert!(log.len() < 200, "{} lines in all", log.len());
}

/// A scan push whose values are XML text (references like `&#x1b;` decode), not CDATA.
fn scan_xml_without_cdata(openid: &str, scene: &str, ticket: &str) -> String {
    format!(
        "<xml><ToUserName>gh_test</ToUserName><FromUserName>{openid}</FromUserName>\
         <CreateTime>{}</CreateTime><MsgType>event</MsgType><Event>SCAN</Event>\
         <EventKey>{scene}</EventKey><Ticket>{ticket}</Ticket></xml>",
        now()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_request_ids_and_control_characters_do_not_reach_the_log() {
    // Text logs, where a forged id would read as extra fields.
    let binary = Started::start(&[("RUST_LOG", "info")], None).await;
    let http = http();
    let mut client = binary.client().await;
    let mut real = watch(&mut client, "ctl-ticket").await;
    let forged = r#"abc outcome="handshake" fake=1"#;

    // A refused push and a refused RPC, each with the forged id.
    let answer = http
        .post(format!(
            "{}?{}",
            binary.webhook_url,
            signed_query("not-the-token", &now().to_string(), "forged-1")
        ))
        .header("x-request-id", forged)
        .body(scan_xml("SCAN", "o", "1", "T", now()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let mut request = tonic::Request::new(pb::CreateTicketRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", forged.parse().unwrap());
    client.create_ticket(request).await.unwrap_err();
    // A plain id is kept.
    let answer = http
        .post(format!(
            "{}?{}",
            binary.webhook_url,
            signed_query("not-the-token", &now().to_string(), "forged-2")
        ))
        .header("x-request-id", "plain-id_7.x")
        .body(scan_xml("SCAN", "o", "1", "T", now()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);

    // Control characters, raw XML character references included, in openid, scene and
    // ticket: 400, nothing stored.
    // A fresh second of the refusal log budget (5 lines), so these refusals are written.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let escape = "&#x1b;[2J&#10;INFO forged line";
    for bad in [escape, "o&#x7;", "o&#x85;", "o&#0;"] {
        for (openid, scene, ticket) in [
            (bad, "1", "ctl-ticket"),
            ("o", bad, "ctl-ticket"),
            ("o", "1", bad),
        ] {
            let body = scan_xml_without_cdata(openid, scene, ticket);
            let (status, text) = post(&http, &binary.webhook_url, &good_query(), body).await;
            assert_eq!(status, 400, "{openid:?} {scene:?} {ticket:?}: {text}");
        }
    }
    // Real pushes still arrive, and only they.
    real_push_delivered(
        &http,
        &binary.webhook_url,
        &mut real,
        "ctl-ticket",
        "o-real",
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), real.message())
            .await
            .is_err(),
        "nothing else was emitted"
    );

    let log = binary.stop().await;
    let all = log.join("\n");
    assert!(
        !all.contains("fake=1"),
        "the forged id reached the log:\n{all}"
    );
    assert!(
        all.contains("request_id=plain-id_7.x"),
        "a plain id is kept:\n{all}"
    );
    assert!(!all.contains('\u{1b}'), "a raw escape reached the log");
    assert!(
        !log.iter().any(|l| l.starts_with("INFO forged line")),
        "a forged line reached the log"
    );
    assert!(
        all.contains("contains a control character"),
        "the refusal says why:\n{all}"
    );
}
