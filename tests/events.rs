//! Webhook → StreamEvents through real sockets: filtered fan-out, the handshake, WeChat's
//! retries de-duplicated, resumable cursors, every bad-input case, and shutdown.

mod common;

use std::time::Duration;

use common::{
    TOKEN, TestService, exactly, next, now, push, scan_xml, signed_query, subscribe,
    wechat_signature,
};
use tonic::Code;
use wechat_qr::pb::{self, EventType};

#[tokio::test]
async fn subscribers_get_exactly_what_their_filters_ask_for() {
    let service = TestService::start().await;
    let mut by_ticket = subscribe(
        &service,
        pb::StreamEventsRequest {
            tickets: vec!["TICKET_A".into()],
            ..Default::default()
        },
    )
    .await;
    let mut scans_of_scene_7 = subscribe(
        &service,
        pb::StreamEventsRequest {
            scenes: vec!["7".into()],
            types: vec![EventType::Scan.into()],
            ..Default::default()
        },
    )
    .await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;

    let t = now();
    push(
        &service,
        &scan_xml("subscribe", "o1", "qrscene_7", "TICKET_A", t),
    )
    .await;
    push(&service, &scan_xml("SCAN", "o2", "7", "TICKET_B", t)).await;
    push(&service, &scan_xml("SCAN", "o3", "8", "TICKET_A", t)).await;
    push(&service, &scan_xml("SCAN", "o4", "9", "TICKET_C", t)).await;

    let a = exactly(&mut by_ticket, 2).await;
    assert_eq!(
        a.iter().map(|e| e.openid.as_str()).collect::<Vec<_>>(),
        ["o1", "o3"]
    );
    let first = &a[0];
    assert_eq!(first.r#type(), EventType::Subscribe);
    assert_eq!(first.scene, "7", "qrscene_ prefix stripped");
    assert_eq!(first.ticket, "TICKET_A");
    assert_eq!(first.account, "gh_test");
    assert!(first.new_follower);
    assert_eq!(first.create_time.unwrap().seconds as u64, t);
    let received = first.received_time.unwrap().seconds as u64;
    assert!(received.abs_diff(now()) <= 5);
    assert!(!a[1].new_follower, "SCAN is not a new follower");

    let s = exactly(&mut scans_of_scene_7, 1).await;
    assert_eq!(
        (s[0].openid.as_str(), s[0].r#type()),
        ("o2", EventType::Scan)
    );

    let all = exactly(&mut everything, 4).await;
    assert_eq!(
        all.iter().map(|e| e.openid.as_str()).collect::<Vec<_>>(),
        ["o1", "o2", "o3", "o4"],
        "in the order the webhook accepted them"
    );
}

#[tokio::test]
async fn handshake_echoes_only_for_a_good_signature() {
    let service = TestService::start().await;
    let ts = now().to_string();
    let good = format!(
        "{}?signature={}&timestamp={ts}&nonce=n1&echostr=hello-123",
        service.webhook_url,
        wechat_signature(&[TOKEN, &ts, "n1"])
    );
    let response = service.http.get(&good).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello-123");

    let bad = format!(
        "{}?signature={}&timestamp={ts}&nonce=n1&echostr=hello-123",
        service.webhook_url,
        wechat_signature(&["other-token", &ts, "n1"])
    );
    let response = service.http.get(&bad).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_ne!(response.text().await.unwrap(), "hello-123");
}

#[tokio::test]
async fn bad_input_is_refused_without_events_and_the_server_keeps_serving() {
    let service = TestService::start().await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let t = now();
    let ts = t.to_string();
    let good_query = signed_query(TOKEN, &ts, "n");
    let xml = scan_xml("SCAN", "o-bad", "1", "T", t);

    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("wrong token", signed_query("not-the-token", &ts, "n"), xml.clone().into(), 403),
        ("tampered signature", good_query.replace("signature=", "signature=00"), xml.clone().into(), 403),
        ("no signature", format!("timestamp={ts}&nonce=n"), xml.clone().into(), 400),
        ("no timestamp", "signature=x&nonce=n".to_owned(), xml.clone().into(), 400),
        ("repeated nonce", format!("{good_query}&nonce=n"), xml.clone().into(), 400),
        ("stale timestamp", signed_query(TOKEN, &(t - 3600).to_string(), "n"), xml.clone().into(), 403),
        ("future timestamp", signed_query(TOKEN, &(t + 3600).to_string(), "n"), xml.clone().into(), 403),
        ("malformed XML", good_query.clone(), b"<xml><ToUserName>".to_vec(), 400),
        ("not XML", good_query.clone(), b"hello".to_vec(), 400),
        ("non-UTF-8", good_query.clone(), b"<xml>\xff\xfe</xml>".to_vec(), 400),
        (
            "DOCTYPE with entities",
            good_query.clone(),
            format!("<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>{}", xml.replace("o-bad", "&b;")).into(),
            400,
        ),
        ("deep nesting", good_query.clone(), format!("<xml>{}{}</xml>", "<a>".repeat(5000), "</a>".repeat(5000)).into(), 400),
        ("missing FromUserName", good_query.clone(), xml.replace("<FromUserName><![CDATA[o-bad]]></FromUserName>", "").into(), 400),
        ("oversized", good_query.clone(), format!("<xml><Pad>{}</Pad></xml>", "x".repeat(70 * 1024)).into(), 413),
    ];
    for (i, (name, query, body, expected)) in cases.into_iter().enumerate() {
        // Each bad body under a nonce of its own: a second body under one already-used
        // (timestamp, nonce) is refused as a replay before it is decoded.
        let query = if query == good_query {
            signed_query(TOKEN, &ts, &format!("bad{i}"))
        } else {
            query
        };
        let (status, _) = service.post(&query, body).await;
        assert_eq!(status, expected, "{name}");
    }
    // Oversized without a Content-Length: chunked transfer.
    let addr = service
        .webhook_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut request = format!(
        "POST /wechat?{good_query} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        request.extend_from_slice(&[b'x'; 16 * 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        raw_status(&addr, &request).await,
        413,
        "chunked oversized body"
    );

    // A text message is answered success but is not a scan event.
    let text_message = format!(
        "<xml><ToUserName>gh</ToUserName><FromUserName>o-text</FromUserName><CreateTime>{t}</CreateTime>\
         <MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>"
    );
    push(&service, &text_message).await;

    // Still serving: the good push arrives, and only it.
    push(&service, &xml).await;
    let events = exactly(&mut everything, 1).await;
    assert_eq!(events[0].openid, "o-bad");
    let pushes = &service.running().metrics.webhook_pushes;
    assert_eq!(
        pushes
            .with_label_values(&[wechat_qr::config::dev::APP_ID, "ignored"])
            .get(),
        1
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

/// Sends raw bytes over TCP and returns the HTTP status of the answer.
async fn raw_status(addr: &str, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything; that is fine.
    let _ = socket.write_all(request).await;
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {head:?}"))
}

#[tokio::test]
async fn a_push_sent_three_times_is_one_event() {
    let service = TestService::start().await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let t = now();
    let concurrent = scan_xml("SCAN", "o-retry", "5", "T5", t);
    let pushes = (0..3).map(|_| {
        let xml = concurrent.clone();
        let query = signed_query(TOKEN, &t.to_string(), "n");
        let http = service.http.clone();
        let url = format!("{}?{query}", service.webhook_url);
        tokio::spawn(async move {
            http.post(url)
                .body(xml)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    });
    for push in pushes.collect::<Vec<_>>() {
        assert_eq!(push.await.unwrap(), "success", "every try is acknowledged");
    }
    let sequential = scan_xml("subscribe", "o-retry-2", "qrscene_5", "T5", t);
    for _ in 0..3 {
        push(&service, &sequential).await;
    }
    let events = exactly(&mut everything, 2).await;
    assert_eq!(events[0].openid, "o-retry");
    assert_eq!(events[1].openid, "o-retry-2");
}

#[tokio::test]
async fn simulate_scan_through_the_simulator_reaches_the_subscriber() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr(
                "login-42".into(),
            )),
            expire_seconds: 120,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut mine = subscribe(
        &service,
        pb::StreamEventsRequest {
            tickets: vec![ticket.ticket.clone()],
            ..Default::default()
        },
    )
    .await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .args([
            "simulate-scan",
            "--simulator",
            &service.simulator_url(),
            "--ticket",
            &ticket.ticket,
            "--openid",
            "oLoginUser",
            "--new-follower",
        ])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("200 success"));
    let events = exactly(&mut mine, 1).await;
    assert_eq!(events[0].openid, "oLoginUser");
    assert_eq!(events[0].scene, "login-42");
    assert_eq!(events[0].r#type(), EventType::Subscribe);

    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .args(["simulate-scan", "--simulator", &service.simulator_url()])
        .args(["--ticket", "no-such-ticket", "--openid", "o"])
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success(), "an unknown ticket is an error");
}

#[tokio::test]
async fn resume_after_replays_then_continues_live_without_gap_or_duplicate() {
    let service = TestService::start().await;
    let mut first = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let t = now();
    for i in 0..5 {
        push(&service, &scan_xml("SCAN", &format!("o{i}"), "1", "T", t)).await;
    }
    let mut cursors = Vec::new();
    for _ in 0..5 {
        cursors.push(next(&mut first).await.unwrap().cursor);
    }
    // Reconnect after the second event: get 3 replayed, then live ones.
    let mut resumed = subscribe(
        &service,
        pb::StreamEventsRequest {
            resume_after: cursors[1].clone(),
            ..Default::default()
        },
    )
    .await;
    push(&service, &scan_xml("SCAN", "o5", "1", "T", t)).await;
    let events = exactly(&mut resumed, 4).await;
    assert_eq!(
        events.iter().map(|e| e.openid.as_str()).collect::<Vec<_>>(),
        ["o2", "o3", "o4", "o5"]
    );

    let mut client = service.client().await;
    let bad = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: "not-a-cursor".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("resume_after:"), "{bad:?}");
    let bad = client
        .stream_events(pb::StreamEventsRequest {
            types: vec![0],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("types:"), "{bad:?}");
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable_and_a_resume_cursor() {
    let service = TestService::start().await;
    let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;
    push(&service, &scan_xml("SCAN", "o-last", "1", "T", now())).await;
    let last = next(&mut stream).await.unwrap().cursor;
    service.stop().await;
    let status = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("stream ends promptly")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&format!("resume_after={last}")),
        "{status:?} should carry {last}"
    );
}
