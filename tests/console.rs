//! The web console on the admin listener: its embedded page with the right content types
//! and guards, gRPC-Web (unary and server-streaming) spoken by a plain HTTP client, the
//! simulate-scan endpoint only on the simulator, and the whole page in real headless
//! Chromium (`tests/console/console.test.mjs`, on `playwright-core`). A missing Node,
//! `node_modules/` or Chromium is a failure, never a skip: `./scripts/test` installs them.

mod common;

use std::{path::Path, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{
    TestService,
    browser::{chromium, node_with_playwright, repo},
};
use prost::Message;
use wechat_qr::{
    pb::{self, create_ticket_request::Scene},
    secret::Secret,
};

/// How long the browser test may take in all: Chromium starts, the page loads, the views
/// are exercised; well within this on a loaded 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One gRPC-Web frame: flag byte, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + payload.len());
    buf.put_u8(flag);
    buf.put_u32(u32::try_from(payload.len()).unwrap());
    buf.put_slice(payload);
    buf.freeze()
}

/// Splits complete frames off the front of `buf`: (flag, payload) each.
fn take_frames(buf: &mut BytesMut) -> Vec<(u8, Bytes)> {
    let mut frames = Vec::new();
    while buf.len() >= 5 {
        let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        if buf.len() < 5 + len {
            break;
        }
        let flag = buf[0];
        buf.advance(5);
        frames.push((flag, buf.split_to(len).freeze()));
    }
    frames
}

/// A gRPC-Web call with a plain HTTP/1.1 client, as a browser makes it.
fn grpc_web(
    service: &TestService,
    method: &str,
    request: &impl Message,
) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}/wechat.qr.v1.{method}", service.admin_url))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(0, &request.encode_to_vec()))
}

async fn mint(service: &TestService, scene: &str) -> pb::CreateTicketResponse {
    let response = grpc_web(
        service,
        "QrService/CreateTicket",
        &pb::CreateTicketRequest {
            scene: Some(Scene::SceneStr(scene.into())),
            expire_seconds: 600,
            ..Default::default()
        },
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let mut body = BytesMut::from(&response.bytes().await.unwrap()[..]);
    let frames = take_frames(&mut body);
    assert_eq!(frames.len(), 2, "a message and the trailers: {frames:?}");
    assert_eq!(frames[0].0, 0);
    assert_eq!(frames[1].0, 0x80, "trailers frame");
    let trailers = String::from_utf8_lossy(&frames[1].1).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    pb::CreateTicketResponse::decode(frames[0].1.clone()).unwrap()
}

async fn simulate_scan(service: &TestService, ticket: &str) -> reqwest::Response {
    http()
        .post(format!("{}/console/simulate-scan", service.admin_url))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"ticket": "{ticket}", "openid": "oWeb", "new_follower": true}}"#
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_page_is_served_from_the_binary_with_its_content_types() {
    let service = TestService::start().await;
    let base = &service.admin_url;
    let client = http();
    for (path, file, content_type) in [
        ("/console/", "index.html", "text/html; charset=utf-8"),
        (
            "/console/index.html",
            "index.html",
            "text/html; charset=utf-8",
        ),
        (
            "/console/app.js",
            "app.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/app.css", "app.css", "text/css; charset=utf-8"),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.bytes().await.unwrap();
        let built = std::fs::read(repo().join("console/dist").join(file)).unwrap();
        assert_eq!(body, built, "{path} is the embedded console/dist/{file}");
    }
    let page = client.get(format!("{base}/console/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="app.js">"#));

    let no_redirect = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = no_redirect
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");

    let info = client
        .get(format!("{base}/console/info.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(info.headers()["content-type"], "application/json");
    assert_eq!(
        info.text().await.unwrap(),
        r#"{"simulator":true,"auth_required":false,"accounts":["wx0000000000devsim"]}"#
    );

    let missing = client
        .get(format!("{base}/console/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The admin endpoints are still there beside it.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    service.stop().await;
}

#[tokio::test]
async fn other_sites_cannot_use_the_console() {
    let service = TestService::start().await;
    let base = &service.admin_url;
    let client = http();
    // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host.
    let rebound = client
        .get(format!("{base}/console/"))
        .header("host", "evil.example:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    // A cross-origin write.
    let ticket = mint(&service, "guarded").await.ticket;
    let cross = client
        .post(format!("{base}/console/simulate-scan"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(format!(r#"{{"ticket": "{ticket}", "openid": "o"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // A form post (no preflight in a browser) is not JSON, and is refused.
    let form = client
        .post(format!("{base}/console/simulate-scan"))
        .header("content-type", "text/plain")
        .body(format!(r#"{{"ticket": "{ticket}", "openid": "o"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    assert_eq!(service.retained().await, 0, "no scan was pushed");
    service.stop().await;
}

#[tokio::test]
async fn grpc_web_create_ticket_and_stream_events_with_a_plain_http_client() {
    let service = TestService::start().await;
    let code = mint(&service, "web-1").await;
    assert!(!code.ticket.is_empty());
    assert!(code.url.starts_with("http"), "{}", code.url);

    // GetImage through the same door: the simulator's JPEG.
    let image = grpc_web(
        &service,
        "QrService/GetImage",
        &pb::GetImageRequest {
            ticket: code.ticket.clone(),
            url_only: false,
            ..Default::default()
        },
    )
    .send()
    .await
    .unwrap();
    let mut body = BytesMut::from(&image.bytes().await.unwrap()[..]);
    let frames = take_frames(&mut body);
    let image = pb::GetImageResponse::decode(frames[0].1.clone()).unwrap();
    assert_eq!(&image.image[..3], b"\xFF\xD8\xFF", "a JPEG");

    // StreamEvents over gRPC-Web: the response streams frame by frame.
    let mut stream = grpc_web(
        &service,
        "QrService/StreamEvents",
        &pb::StreamEventsRequest {
            tickets: vec![code.ticket.clone()],
            ..Default::default()
        },
    )
    .send()
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    let pushed = simulate_scan(&service, &code.ticket).await;
    assert_eq!(pushed.status(), 200);
    let answer: serde_json::Value = pushed.json().await.unwrap();
    assert_eq!(answer["deliveries"][0]["body"], "success", "{answer}");
    let mut buf = BytesMut::new();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            buf.extend_from_slice(&chunk);
            if let Some((flag, payload)) = take_frames(&mut buf).into_iter().next() {
                assert_eq!(flag, 0, "a message, not trailers");
                break pb::StreamEventsResponse::decode(payload).unwrap();
            }
        }
    })
    .await
    .expect("the event arrives over gRPC-Web within 10 s");
    let event = event.event.unwrap();
    assert_eq!(event.ticket, code.ticket);
    assert_eq!(event.openid, "oWeb");
    assert_eq!(event.r#type(), pb::EventType::Subscribe);
    drop(stream);

    // ChannelStatsService is reachable the same way.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stats = grpc_web(
        &service,
        "ChannelStatsService/GetSceneStats",
        &pb::GetSceneStatsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: now - 3600,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: now + 3600,
                nanos: 0,
            }),
            bucket: pb::Bucket::Hour.into(),
            time_zone: "Asia/Shanghai".into(),
            scenes: vec!["web-1".into()],
            ..Default::default()
        },
    )
    .send()
    .await
    .unwrap();
    let mut body = BytesMut::from(&stats.bytes().await.unwrap()[..]);
    let frames = take_frames(&mut body);
    assert_eq!(frames[0].0, 0, "a message: {frames:?}");
    let stats = pb::GetSceneStatsResponse::decode(frames[0].1.clone()).unwrap();
    assert_eq!(stats.scenes[0].scene, "web-1");
    assert_eq!(stats.scenes[0].totals.unwrap().new_followers, 1);
    service.stop().await;
}

/// A simulate-scan body is read up to 4 KiB: a scan padded to exactly 4,096 bytes is
/// pushed, one byte more is refused unread and pushes nothing.
#[tokio::test]
async fn a_simulate_scan_body_over_4_kib_is_refused_and_pushes_nothing() {
    const LIMIT: usize = 4 * 1024;
    let service = TestService::start().await;
    let ticket = mint(&service, "padded").await.ticket;
    let padded = |len: usize| {
        let scan = format!(r#"{{"ticket": "{ticket}", "openid": "oPadded"}}"#);
        format!("{scan}{}", " ".repeat(len - scan.len()))
    };
    let post = |body: String| {
        http()
            .post(format!("{}/console/simulate-scan", service.admin_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let over = post(padded(LIMIT + 1)).await.unwrap();
    assert_eq!(over.status(), 400);
    assert!(
        over.text().await.unwrap().contains("too large"),
        "refused for its size"
    );
    assert_eq!(service.simulator().stats().pushes, 0, "nothing was pushed");
    let at = post(padded(LIMIT)).await.unwrap();
    assert_eq!(at.status(), 200, "{:?}", at.text().await);
    assert_eq!(service.simulator().stats().pushes, 1);
    assert_eq!(service.retained().await, 1);
    service.stop().await;
}

#[tokio::test]
async fn without_the_simulator_there_is_no_simulate_scan() {
    let mut cfg = common::config();
    cfg.app_id = Some("wx-console-test".into());
    cfg.app_secret = Some(Secret::new("console-secret"));
    cfg.token = Some(Secret::new("console-token"));
    // Never called: nothing here talks to WeChat.
    let nowhere: url::Url = "http://127.0.0.1:9/".parse().unwrap();
    cfg.api_base = Some(nowhere.clone());
    cfg.mp_base = Some(nowhere);
    let scratch = tempfile::tempdir().unwrap();
    cfg.permanent_store = Some(scratch.path().join("none.jsonl"));
    let service = TestService::start_with(cfg).await;
    assert!(service.running().simulator.is_none());
    let client = http();
    let info = client
        .get(format!("{}/console/info.json", service.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.text().await.unwrap(),
        r#"{"simulator":false,"auth_required":false,"accounts":["wx-console-test"]}"#
    );
    let scan = simulate_scan(&service, "any").await;
    assert_eq!(scan.status(), 404);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium_mints_scans_and_counts_live() {
    let service = TestService::start().await;
    in_chromium(&service, None).await;
    service.stop().await;
}

#[tokio::test]
async fn the_console_names_the_account_picked_in_its_header() {
    let account = |app_id: &str, token: &str, key: Option<&str>| wechat_qr::config::AccountConfig {
        token: Some(wechat_qr::secret::Secret::new(token)),
        encoding_aes_key: key.map(wechat_qr::secret::Secret::new),
        ..wechat_qr::config::AccountConfig::new(app_id, "console-secret")
    };
    let mut cfg = common::config();
    cfg.simulator = true;
    cfg.accounts = vec![
        account("wxconsole0000000a1", "first-token", None),
        account(
            "wxconsole0000000b2",
            "second-token",
            Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
        ),
    ];
    let service = TestService::start_with(cfg).await;
    // The second, safe-mode account: its code, its scan pushed to its own webhook, its
    // statistics.
    in_chromium(&service, Some("wxconsole0000000b2")).await;
    let sim = service.simulator();
    assert_eq!(sim.token_fetches_of("wxconsole0000000b2"), 1);
    assert_eq!(sim.token_fetches_of("wxconsole0000000a1"), 0);
    service.stop().await;
}

/// Runs tests/console/console.test.mjs in headless Chromium against `service`, picking
/// `account` in the header when given.
async fn in_chromium(service: &TestService, account: Option<&str>) {
    let chromium = chromium();
    let node = node_with_playwright();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "console-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    ));
    std::fs::create_dir_all(&out).unwrap();
    let console_url = format!("{}/console/", service.admin_url);
    let run = tokio::process::Command::new(node)
        .arg(repo().join("tests/console/console.test.mjs"))
        .current_dir(repo())
        .env("CONSOLE_URL", &console_url)
        .env("OUT_DIR", &out)
        .env("CHROMIUM", &chromium)
        .envs(account.map(|a| ("ACCOUNT", a)))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .expect("the browser test finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "console test failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        output.status,
        out.display()
    );
    for view in ["codes", "channels", "live"] {
        let shot = out.join(format!("{view}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is a screenshot",
            shot.display()
        );
    }
}
