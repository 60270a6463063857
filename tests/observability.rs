//! What ops people see: `/metrics` scraped after real traffic moves exactly as it should,
//! and the real binary's logs (JSON) carry request ids and never a secret.

mod common;

use std::{collections::HashMap, process::Stdio, time::Duration};

use common::{TOKEN, TestService, now, scan_xml, signed_query, subscribe};
use tokio::io::{AsyncBufReadExt, BufReader};
use wechat_qr::{
    config::{EncryptMode, dev},
    pb::{self, create_ticket_request::Scene},
    protocol::push::Signer,
    secret::Secret,
};

/// Scrapes `/metrics` into `name{labels} -> value`.
async fn scrape(service: &TestService) -> HashMap<String, f64> {
    let url = format!("{}/metrics", service.admin_url);
    let response = service.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response
        .text()
        .await
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn get(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_exactly_with_traffic() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let before = scrape(&service).await;
    assert_eq!(get(&before, "wechat_qr_subscribers"), 0.0);

    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneId(5)),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneStr("s".into())),
            permanent: true,
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .create_ticket(pb::CreateTicketRequest::default())
        .await
        .unwrap_err();
    for _ in 0..2 {
        client
            .get_image(pb::GetImageRequest {
                ticket: ticket.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;

    let t = now();
    let xml = scan_xml("SCAN", "o-metrics", "5", &ticket, t);
    let text = format!(
        "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>{t}</CreateTime><MsgType>text</MsgType></xml>"
    );
    let good = signed_query(TOKEN, &t.to_string(), "n");
    // Each other body under a nonce of its own, as WeChat sends them.
    let good_with = |nonce: &str| signed_query(TOKEN, &t.to_string(), nonce);
    let pushes: Vec<(String, Vec<u8>)> = vec![
        (good.clone(), xml.clone().into()),
        (good.clone(), xml.clone().into()),
        (
            signed_query("wrong-token", &t.to_string(), "n"),
            xml.clone().into(),
        ),
        (good_with("n2"), b"<xml><oops".to_vec()),
        (good_with("n3"), vec![b'x'; 70_000]),
        (good_with("n4"), text.into()),
    ];
    for (query, body) in pushes {
        service.post(&query, body).await;
    }
    stream.message().await.unwrap().unwrap();

    let after = scrape(&service).await;
    let expectations = [
        (
            r#"wechat_qr_grpc_requests_total{code="OK",method="CreateTicket"}"#,
            2.0,
        ),
        (
            r#"wechat_qr_grpc_requests_total{code="INVALID_ARGUMENT",method="CreateTicket"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_grpc_requests_total{code="OK",method="GetImage"}"#,
            2.0,
        ),
        (
            r#"wechat_qr_grpc_requests_total{code="OK",method="StreamEvents"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_grpc_request_duration_seconds_count{code="OK",method="CreateTicket"}"#,
            2.0,
        ),
        (
            r#"wechat_qr_grpc_request_duration_seconds_count{code="INVALID_ARGUMENT",method="CreateTicket"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="duplicate"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="bad_signature"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="malformed"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="too_large"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="ignored"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_events_emitted_total{app_id="wx0000000000devsim"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_events_delivered_total{app_id="wx0000000000devsim"}"#,
            1.0,
        ),
        ("wechat_qr_subscribers", 1.0),
        (
            r#"wechat_qr_token_fetches_total{app_id="wx0000000000devsim"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_token_fetch_failures_total{app_id="wx0000000000devsim"}"#,
            0.0,
        ),
        (
            r#"wechat_qr_upstream_calls_total{app_id="wx0000000000devsim",endpoint="stable_token",result="0"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_upstream_calls_total{app_id="wx0000000000devsim",endpoint="qrcode/create",result="0"}"#,
            2.0,
        ),
        (
            r#"wechat_qr_upstream_calls_total{app_id="wx0000000000devsim",endpoint="showqrcode",result="0"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_image_cache_hits_total{app_id="wx0000000000devsim"}"#,
            1.0,
        ),
        (
            r#"wechat_qr_image_cache_misses_total{app_id="wx0000000000devsim"}"#,
            1.0,
        ),
    ];
    for (key, expected) in expectations {
        assert_eq!(get(&after, key), expected, "{key}");
    }
    assert!(
        get(
            &after,
            r#"wechat_qr_image_cache_bytes{app_id="wx0000000000devsim"}"#
        ) > 1000.0
    );

    // An upstream error is counted under its errcode.
    service
        .simulator()
        .set_faults(wechat_qr::simulator::Faults {
            quota: 1,
            ..Default::default()
        });
    client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneId(6)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = scrape(&service).await;
    assert_eq!(
        get(
            &last,
            r#"wechat_qr_upstream_calls_total{app_id="wx0000000000devsim",endpoint="qrcode/create",result="45009"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &last,
            r#"wechat_qr_grpc_requests_total{code="RESOURCE_EXHAUSTED",method="CreateTicket"}"#
        ),
        1.0
    );
    assert_eq!(
        get(&last, "wechat_qr_subscribers"),
        0.0,
        "a gone client is no subscriber"
    );
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_a_secret() {
    // The upstream: another service's simulator, reached with "real" credentials.
    let upstream = TestService::start().await;
    let sim = upstream.simulator_url();
    let webhook_token = "log-test-webhook-token";
    let aes_key = "LogTestKeyLogTestKeyLogTestKeyLogTestKey123";
    let store = common::scratch_file("permanent.jsonl");
    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .env("WECHAT_QR_DATA_DIR", data.path())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_APP_ID", dev::APP_ID)
        .env("WECHAT_APP_SECRET", dev::APP_SECRET)
        .env("WECHAT_TOKEN", webhook_token)
        .env("WECHAT_ENCODING_AES_KEY", aes_key)
        .env("WECHAT_ENCRYPT_MODE", "compatible")
        .env("WECHAT_API_BASE", &sim)
        .env("WECHAT_MP_BASE", &sim)
        .env("WECHAT_QR_PERMANENT_STORE", &store)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let (mut grpc_addr, mut webhook_url) = (None, None);
    while grpc_addr.is_none() || webhook_url.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the binary logs its addresses")
            .unwrap()
            .expect("the binary keeps running");
        let json: serde_json::Value = serde_json::from_str(&line).expect("every line is JSON");
        if let Some(addr) = json["fields"]["grpc_addr"].as_str() {
            grpc_addr = Some(addr.to_owned());
        }
        if let Some(url) = json["fields"]["webhook_url"].as_str() {
            webhook_url = Some(url.to_owned());
        }
        log.push(line);
    }
    let (grpc_addr, webhook_url) = (grpc_addr.unwrap(), webhook_url.unwrap());

    // The token the service will hold: stable_token answers every holder the same one.
    let first_token = common::simulator_token(&upstream.http, &sim).await;
    let mut client = pb::qr_service_client::QrServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::CreateTicketRequest {
        scene: Some(Scene::SceneId(1)),
        expire_seconds: 60,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-from-caller-42".parse().unwrap());
    client.create_ticket(request).await.unwrap();
    // A rejected token: the refetch and its warning must not show either token.
    upstream.simulator().invalidate_tokens();
    client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneId(2)),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap();
    let second_token = common::simulator_token(&upstream.http, &sim).await;
    assert_ne!(first_token, second_token);

    // Pushes: an encrypted good one, a plaintext one with the wrong signature.
    let signer = Signer {
        token: Secret::new(webhook_token),
        mode: EncryptMode::Safe,
        aes_key: Some(aes_key.parse().unwrap()),
        app_id: dev::APP_ID.into(),
        account: "gh_log".into(),
    };
    let signed = signer.sign(&scan_xml("SCAN", "o-log", "1", "T", now()), "o-log");
    let answer = upstream
        .http
        .post(format!("{webhook_url}?{}", signed.query))
        .body(signed.body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "success");
    let bad = upstream
        .http
        .post(format!(
            "{webhook_url}?{}",
            signed_query("nope-token", &now().to_string(), "n")
        ))
        .body(scan_xml("SCAN", "o", "1", "T", now()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await
    {
        log.push(line);
    }
    assert!(child.wait().await.unwrap().success());

    let all = log.join("\n");
    for line in &log {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
    }
    for (name, secret) in [
        ("AppSecret", dev::APP_SECRET),
        ("webhook token", webhook_token),
        ("EncodingAESKey", aes_key),
        ("first access_token", first_token.as_str()),
        ("second access_token", second_token.as_str()),
    ] {
        assert!(!all.contains(secret), "the {name} appears in the logs");
    }
    assert!(
        all.contains("req-from-caller-42"),
        "the caller's request id is in the RPC span"
    );
    assert!(
        all.contains("access_token rejected"),
        "the rejection was logged"
    );
    assert!(
        all.contains("signature mismatch"),
        "the refused push was logged"
    );
    assert!(
        log.len() > 10,
        "debug logging produced lines: {}",
        log.len()
    );
}
