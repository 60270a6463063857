//! Issue 27, findings 1, 4, 5 and 6, against the real binary on loopback: streams are
//! charged against a memory budget in bytes and refused past it (RSS stays below budget
//! plus baseline) while thousands of one-ticket waiters still fit; every scene
//! CreateTicket mints can be scanned; a caller's value is quoted bounded and failed calls
//! do not flood the log; a CreateTime no client could read is refused.

mod common;

use std::time::{Duration, Instant};

use common::{
    binary::{Binary, logged_field},
    signed_query,
};
use tonic::{Code, transport::Channel};
use wechat_qr::pb::{self, qr_service_client::QrServiceClient};

/// The real binary on loopback port 0, in a temporary working and data directory of its
/// own (kept alive as long as the binary runs), plus `env`.
async fn start(env: &[(&str, &str)]) -> (Binary, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Binary::command();
    command
        .current_dir(dir.path())
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", dir.path().join("data"))
        .envs(env.iter().copied());
    (Binary::spawn(command).await, dir)
}

/// A client on a connection of its own.
async fn connection(binary: &Binary) -> QrServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", binary.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    QrServiceClient::new(channel)
}

/// The simulator's base URL, from the binary's log.
fn simulator_url(binary: &Binary) -> String {
    binary
        .log_lines()
        .iter()
        .find_map(|l| logged_field(l, "simulator_url"))
        .expect("the simulator's URL is logged")
}

/// The `reason` of a status's ErrorInfo.
fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// A StreamEvents filter at the caps: 1,000 tickets of 240 bytes (a 243 KB request).
fn big_filter(stream: usize) -> pb::StreamEventsRequest {
    pb::StreamEventsRequest {
        tickets: (0..1_000)
            .map(|i| format!("{stream:08}-{i:04}-{}", "t".repeat(226)))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn big_filter_streams_are_refused_past_the_memory_budget_before_rss_grows_past_it() {
    const BUDGET: u64 = 32 * 1024 * 1024;
    let budget = BUDGET.to_string();
    let (binary, _dir) = start(&[("WECHAT_QR_MAX_SUBSCRIPTION_BYTES", &budget)]).await;
    assert_eq!(
        binary.metric("wechat_qr_subscription_bytes_limit").await,
        BUDGET as f64
    );
    let baseline_kib = binary.rss_kib();
    let mut held = Vec::new();
    let mut refusals = Vec::new();
    // Connections opened until the service as a whole refuses; each takes streams until
    // its own share is spent. The count caps (20,000 / 200,000) would allow them all.
    // The clients stay alive beside their streams: a stream dropped after its client
    // is cancelled only if the connection's task is still there to send RST_STREAM,
    // and hyper may end that task once its last handle is gone (1 run in 5 then kept
    // the bytes charged past the deadline below).
    let mut clients = Vec::new();
    'connections: for _ in 0..40 {
        let mut client = connection(&binary).await;
        clients.push(client.clone());
        for _ in 0..400 {
            match client.stream_events(big_filter(held.len())).await {
                Ok(stream) => held.push(stream.into_inner()),
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert_eq!(reason(&status), "SUBSCRIPTION_MEMORY_BUDGET");
                    assert!(
                        status
                            .message()
                            .contains("WECHAT_QR_MAX_SUBSCRIPTION_BYTES"),
                        "{}",
                        status.message()
                    );
                    let service = status.message().contains("open streams already hold");
                    refusals.push(status);
                    if service {
                        break 'connections;
                    }
                    continue 'connections;
                }
            }
        }
        panic!("400 big-filter streams on one connection, none refused");
    }
    let service_refusal = refusals.last().expect("the service refused a stream");
    assert!(
        service_refusal
            .message()
            .contains("open streams already hold"),
        "{refusals:?}"
    );
    assert!(
        refusals[0].message().contains("this connection's streams"),
        "the first refusal is the connection's share: {refusals:?}"
    );
    // Each stream is charged at least its tickets' bytes, so the budget holds at most
    // budget / 240 KB of them.
    assert!(held.len() >= 10, "{} streams admitted", held.len());
    assert!(
        held.len() as u64 <= BUDGET / 240_000,
        "{} streams",
        held.len()
    );
    let charged = binary.metric("wechat_qr_subscription_bytes").await;
    assert!(charged > 0.0 && charged <= BUDGET as f64, "{charged}");
    let grown_kib = binary.rss_kib().saturating_sub(baseline_kib);
    assert!(
        grown_kib * 1024 < BUDGET,
        "RSS grew {grown_kib} KiB with {} big-filter streams, over the {BUDGET}-byte budget",
        held.len()
    );
    // The service still serves, and closing streams gives their bytes back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while binary.metric("wechat_qr_subscription_bytes").await > 0.0 {
        assert!(Instant::now() < deadline, "bytes not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connection(&binary)
        .await
        .stream_events(big_filter(0))
        .await
        .expect("a stream fits again");
}

#[tokio::test]
async fn thousands_of_one_ticket_waiters_fit_in_256_mib_on_one_connection() {
    let (binary, _dir) = start(&[("WECHAT_QR_MAX_SUBSCRIPTION_BYTES", "268435456")]).await;
    let mut client = connection(&binary).await;
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr("login".into())),
            expire_seconds: 600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    let mut waiters = Vec::new();
    for i in 0..3_000 {
        let wanted = if i == 0 {
            ticket.clone()
        } else {
            format!("gQ{i:0>96}")
        };
        let stream = client
            .stream_events(pb::StreamEventsRequest {
                tickets: vec![wanted],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("waiter {i} refused: {status:?}"));
        waiters.push(stream.into_inner());
    }
    let scan = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/sim/scan", {
            binary.logged("simulator_url=").await;
            simulator_url(&binary)
        }))
        .json(&serde_json::json!({ "ticket": ticket, "openid": "o-waiter" }))
        .send()
        .await
        .unwrap();
    assert_eq!(scan.status(), 200);
    let event = tokio::time::timeout(Duration::from_secs(10), waiters[0].message())
        .await
        .expect("the waiter hears its scan")
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert_eq!((event.scene.as_str(), event.ticket), ("login", ticket));
}

/// Mints `scene`, scans it as a new follower and as a follower, and returns the scenes
/// the stream saw, in order.
async fn mint_and_scan(
    client: &mut QrServiceClient<Channel>,
    http: &reqwest::Client,
    simulator: &str,
    scene: &str,
) -> Result<Vec<String>, String> {
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr(scene.into())),
            expire_seconds: 600,
            ..Default::default()
        })
        .await
        .map_err(|s| format!("CreateTicket refused {scene:?}: {s:?}"))?
        .into_inner()
        .ticket;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            tickets: vec![ticket.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for new_follower in [true, false] {
        let answer: serde_json::Value = http
            .post(format!("{simulator}/sim/scan"))
            .json(&serde_json::json!({
                "ticket": ticket, "openid": "o-prop", "new_follower": new_follower,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let delivery = &answer["deliveries"][0];
        if delivery["status"] != 200 {
            return Err(format!(
                "scan of {scene:?} (new follower: {new_follower}) refused: {delivery}"
            ));
        }
        let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .map_err(|_| format!("no event for {scene:?}"))?
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        assert_eq!(event.new_follower, new_follower);
        seen.push(event.scene);
    }
    Ok(seen)
}

/// Any non-control Unicode scalar value, each at most 4 bytes in UTF-8.
fn scene_char() -> impl proptest::strategy::Strategy<Value = char> {
    use proptest::prelude::*;
    any::<char>().prop_filter("CreateTicket refuses control characters", |c| {
        !c.is_control()
    })
}

#[test]
fn every_scene_create_ticket_accepts_is_scanned_with_the_same_scene() {
    use proptest::{
        prelude::*,
        test_runner::{Config, TestCaseError, TestRunner},
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (binary, _dir) = runtime.block_on(start(&[]));
    runtime.block_on(binary.logged("simulator_url="));
    let simulator = simulator_url(&binary);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut client = runtime.block_on(connection(&binary));
    // The extremes first: the longest scene in bytes, CDATA's terminator, spaces.
    for scene in [
        "\u{1F600}".repeat(64),
        "\u{10FFFF}".repeat(64),
        "]]>".repeat(21),
        " ".into(),
        " a ".into(),
        "\u{3000}\u{FEFF}\u{200B}".into(),
    ] {
        let seen = runtime
            .block_on(mint_and_scan(&mut client, &http, &simulator, &scene))
            .unwrap();
        assert_eq!(seen, [scene.clone(), scene]);
    }
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let scenes = proptest::collection::vec(scene_char(), 1..=64)
        .prop_map(|chars| chars.into_iter().collect::<String>());
    runner
        .run(&scenes, |scene| {
            // A client per case: the runner's closure is `Fn`; clones share the connection.
            let mut client = client.clone();
            let seen = runtime
                .block_on(mint_and_scan(&mut client, &http, &simulator, &scene))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(seen, vec![scene.clone(), scene]);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn create_ticket_refuses_a_scene_with_a_control_character_naming_its_position() {
    let (binary, _dir) = start(&[]).await;
    let mut client = binary.client().await;
    for (scene, position, code) in [
        ("ab\u{1b}[2J", 2, "U+001B"),
        ("line\nbreak", 4, "U+000A"),
        ("\u{0}", 0, "U+0000"),
        ("é\u{85}", 1, "U+0085"),
    ] {
        let status = client
            .create_ticket(pb::CreateTicketRequest {
                scene: Some(pb::create_ticket_request::Scene::SceneStr(scene.into())),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{scene:?}");
        let message = status.message();
        assert!(
            message.starts_with("scene_str: ")
                && message.contains(&format!("character {position} "))
                && message.contains(code),
            "{message}"
        );
    }
}

#[tokio::test]
async fn errors_quote_at_most_128_bytes_of_a_callers_value_and_failures_do_not_flood_the_log() {
    let (binary, _dir) = start(&[]).await;
    let mut client = binary.client().await;
    let huge = "A".repeat(200_000);
    let bounded = |status: tonic::Status, call: &str| {
        assert_eq!(status.code(), Code::NotFound, "{call}: {status:?}");
        let message = status.message();
        assert!(message.len() < 512, "{call}: {} bytes", message.len());
        assert!(
            message.contains(&format!("\"{}\"…(200000 bytes)", "A".repeat(128))),
            "{call}: {message}"
        );
        // Trailers (message, ErrorInfo) stay small: grpc clients cap metadata at 8-16 KiB.
        let details = status.details().len();
        assert!(details < 1024, "{call}: {details} bytes of details");
    };
    let create = client
        .create_ticket(pb::CreateTicketRequest {
            account: huge.clone(),
            scene: Some(pb::create_ticket_request::Scene::SceneId(1)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    bounded(create, "CreateTicket");
    let image = client
        .get_image(pb::GetImageRequest {
            account: huge.clone(),
            ticket: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    bounded(image, "GetImage");
    let stream = client
        .stream_events(pb::StreamEventsRequest {
            accounts: vec![huge.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    bounded(stream, "StreamEvents");
    let stats = wechat_qr::pb::channel_stats_service_client::ChannelStatsServiceClient::connect(
        format!("http://{}", binary.grpc_addr),
    )
    .await
    .unwrap()
    .list_scenes(pb::ListScenesRequest {
        account: huge.clone(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    bounded(stats, "ListScenes");
    let longest_line = binary.log_lines().iter().map(String::len).max().unwrap();
    assert!(longest_line < 4096, "a {longest_line}-byte log line");

    // A flood of failing calls: every one counted, only a few a second logged.
    let before = binary.count("call failed");
    let started = Instant::now();
    for i in 0..400 {
        let status = client
            .get_image(pb::GetImageRequest {
                account: format!("wx-unknown-{i}"),
                ticket: "t".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    let seconds = started.elapsed().as_secs() + 1;
    binary
        .logged("log lines suppressed by the rate limit")
        .await;
    let logged = binary.count("call failed") - before;
    assert!(
        logged as u64 <= 5 * (seconds + 1),
        "{logged} lines for 400 failed calls in {seconds} s"
    );
    let metrics = binary.metrics().await;
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("wechat_qr_grpc_requests_total{")
                && l.contains("method=\"GetImage\"")
                && l.contains("code=\"NOT_FOUND\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("GetImage NOT_FOUND counted");
    assert_eq!(counted, 401.0);
}

#[tokio::test]
async fn a_ticket_wechat_does_not_know_is_remembered_apart_from_the_images() {
    let (binary, _dir) = start(&[]).await;
    let mut client = binary.client().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    binary.logged("simulator_url=").await;
    let simulator = simulator_url(&binary);
    let image_requests = || async {
        let stats: serde_json::Value = http
            .get(format!("{simulator}/sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["image_requests"].as_u64().unwrap()
    };
    let before = image_requests().await;
    for _ in 0..50 {
        let status = client
            .get_image(pb::GetImageRequest {
                ticket: "made-up-ticket".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_eq!(image_requests().await - before, 1, "one call to WeChat");
    assert_eq!(
        binary
            .metric_total("wechat_qr_image_unknown_ticket_hits_total")
            .await,
        49.0
    );
    // Misses take nothing from the image cache.
    assert_eq!(
        binary.metric_total("wechat_qr_image_cache_bytes").await,
        0.0
    );
}

#[tokio::test]
async fn a_create_time_no_client_can_read_or_far_ahead_is_refused_naming_the_field() {
    let (binary, _dir) = start(&[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let now = common::now();
    let push = |create_time: String| {
        let xml = format!(
            "<xml><ToUserName>gh_a</ToUserName><FromUserName>o-time</FromUserName>\
             <CreateTime>{create_time}</CreateTime><MsgType>event</MsgType><Event>SCAN</Event>\
             <EventKey>7</EventKey><Ticket>T</Ticket></xml>"
        );
        let nonce = format!("n{}", rand::random::<u64>());
        let url = format!(
            "{}?{}",
            binary.webhook_url,
            signed_query(common::TOKEN, &now.to_string(), &nonce)
        );
        let http = http.clone();
        async move {
            let response = http.post(url).body(xml).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for bad in [
        u64::MAX.to_string(),
        "253402300800".into(),
        (now + 2 * 24 * 3600).to_string(),
    ] {
        let (status, body) = push(bad.clone()).await;
        assert_eq!(status, 400, "CreateTime {bad}: {body}");
        assert!(body.contains("CreateTime"), "{body}");
    }
    let (status, body) = push((now + 3600).to_string()).await;
    assert_eq!((status, body.as_str()), (200, "success"));
}
