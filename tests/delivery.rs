//! Event delivery that loses nothing: safe (AES) mode cross-checked against wechatpy,
//! key and token rotation, retention and OUT_OF_RANGE, the replay/live seam under load,
//! stalled and disconnected subscribers, and slow or oversized bodies.

mod common;

use std::time::{Duration, Instant};

use common::{
    TOKEN, TestService, config, exactly, next, now, push, scan_xml, signed_query,
    small_window_stream, subscribe, wechat_signature,
};
use tokio::io::AsyncWriteExt;
use tonic::Code;
use wechat_qr::{
    config::{EncryptMode, dev},
    pb,
    protocol::push::Signer,
    secret::Secret,
};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OLD_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const OLD_TOKEN: &str = "previous-webhook-token";

async fn wechatpy(args: &[&str], stdin: &str) -> String {
    common::wechatpy::run(args, stdin).await
}

async fn wechatpy_push(token: &str, key: &str, app_id: &str, xml: &str) -> (String, Vec<u8>) {
    common::wechatpy::push(token, key, app_id, xml).await
}

fn safe_config(mode: Option<EncryptMode>) -> wechat_qr::config::ServeConfig {
    let mut cfg = config();
    cfg.encoding_aes_key = Some(Secret::new(KEY));
    cfg.encrypt_mode = mode;
    cfg
}

#[tokio::test]
async fn safe_mode_accepts_wechatpy_pushes_and_refuses_every_broken_one() {
    let service = TestService::start_with(safe_config(None)).await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let t = now();
    let good_xml = scan_xml("SCAN", "o-safe", "31", "T31", t);

    let (query, body) = wechatpy_push(TOKEN, KEY, dev::APP_ID, &good_xml).await;
    assert_eq!(
        service.post(&query, body.clone()).await,
        (200, "success".into())
    );

    // Every broken variant: refused with a 4xx, no event.
    let (_, other_key_body) = wechatpy_push(TOKEN, OLD_KEY, dev::APP_ID, &good_xml).await;
    let (other_app_query, other_app_body) =
        wechatpy_push(TOKEN, KEY, "wxsomeoneelse00000", &good_xml).await;
    let body_text = String::from_utf8(body.clone()).unwrap();
    let encrypt = body_text
        .split("<![CDATA[")
        .nth(2)
        .unwrap()
        .split("]]>")
        .next()
        .unwrap()
        .to_owned();
    // Flip a byte in the last block: decryption yields garbage padding.
    let mut raw = base64_decode(&encrypt);
    let last = raw.len() - 1;
    raw[last] ^= 0x5a;
    let bad_padding = base64_encode(&raw);
    let truncated = encrypt[..encrypt.len() - 7].to_owned();
    let ts_nonce = |q: &str| {
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect();
        (pairs["timestamp"].clone(), pairs["nonce"].clone())
    };
    let (ts, nonce) = ts_nonce(&query);
    let resign = |encrypt: &str| {
        // A correct msg_signature over a broken ciphertext: only decryption can catch it.
        let msg_signature = wechat_signature(&[TOKEN, &ts, &nonce, encrypt]);
        (
            format!(
                "signature={}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_signature}",
                wechat_signature(&[TOKEN, &ts, &nonce])
            ),
            format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").into_bytes(),
        )
    };
    let (pad_query, pad_body) = resign(&bad_padding);
    let (trunc_query, trunc_body) = resign(&truncated);
    let wrong_signature = query.replace("msg_signature=", "msg_signature=0");
    let plaintext = signed_query(TOKEN, &ts, &nonce);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("wrong key", query.clone(), other_key_body),
        ("wrong AppID", other_app_query, other_app_body),
        ("bad padding", pad_query, pad_body),
        ("truncated base64", trunc_query, trunc_body),
        ("wrong msg_signature", wrong_signature, body.clone()),
        (
            "plaintext in safe mode",
            plaintext,
            good_xml.clone().into_bytes(),
        ),
        (
            "no Encrypt field",
            query.clone(),
            b"<xml><ToUserName>x</ToUserName></xml>".to_vec(),
        ),
    ];
    for (name, query, body) in cases {
        let (status, text) = service.post(&query, body).await;
        assert!((400..500).contains(&status), "{name}: {status} {text}");
    }

    // The same push again is a duplicate; a new one still gets through.
    assert_eq!(service.post(&query, body).await.0, 200);
    let (query, body) = wechatpy_push(
        TOKEN,
        KEY,
        dev::APP_ID,
        &scan_xml("SCAN", "o-safe-2", "31", "T31", t),
    )
    .await;
    assert_eq!(service.post(&query, body).await.0, 200);
    let events = exactly(&mut everything, 2).await;
    assert_eq!(
        events.iter().map(|e| e.openid.as_str()).collect::<Vec<_>>(),
        ["o-safe", "o-safe-2"]
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn what_the_simulator_encrypts_wechatpy_decrypts() {
    let signer = Signer {
        token: Secret::new(TOKEN),
        mode: EncryptMode::Safe,
        aes_key: Some(KEY.parse().unwrap()),
        app_id: dev::APP_ID.into(),
        account: dev::ACCOUNT.into(),
    };
    let xml = scan_xml("subscribe", "o-中文", "qrscene_x", "T", now());
    let signed = signer.sign(&xml, "o-中文");
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(signed.query.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["encrypt_type"], "aes");
    let decrypted = wechatpy(
        &[
            "decrypt",
            TOKEN,
            KEY,
            dev::APP_ID,
            &query["msg_signature"],
            &query["timestamp"],
            &query["nonce"],
        ],
        &signed.body,
    )
    .await;
    assert_eq!(decrypted, xml);
}

#[tokio::test]
async fn simulate_scan_works_in_safe_mode_end_to_end() {
    let service = TestService::start_with(safe_config(None)).await;
    let mut client = service.client().await;
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneId(9)),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let reports = service
        .simulator()
        .scan(&wechat_qr::simulator::ScanRequest {
            ticket: ticket.ticket.clone(),
            openid: "o-sim-safe".into(),
            new_follower: true,
            deliveries: Some(3),
        })
        .await
        .unwrap();
    assert_eq!(reports.len(), 3);
    assert!(
        reports
            .iter()
            .all(|r| r.status == 200 && r.body == "success"),
        "{reports:?}"
    );
    let events = exactly(&mut stream, 1).await;
    assert_eq!(
        (events[0].openid.as_str(), events[0].scene.as_str()),
        ("o-sim-safe", "9")
    );
}

#[tokio::test]
async fn modes_decide_what_is_accepted() {
    let xml = |who: &str| scan_xml("SCAN", who, "1", "T", now());
    // Compatible: both forms.
    let service = TestService::start_with(safe_config(Some(EncryptMode::Compatible))).await;
    assert_eq!(service.push_signed(TOKEN, &xml("o-plain")).await.0, 200);
    let (query, body) = wechatpy_push(TOKEN, KEY, dev::APP_ID, &xml("o-aes")).await;
    assert_eq!(service.post(&query, body).await.0, 200);
    assert_eq!(service.retained().await, 2);

    // Plaintext (no key): encrypted pushes are refused.
    let plain = TestService::start().await;
    let (query, body) = wechatpy_push(TOKEN, KEY, dev::APP_ID, &xml("o-aes")).await;
    assert_eq!(plain.post(&query, body).await.0, 400);
    assert_eq!(plain.retained().await, 0);

    // A mode that needs a key without one is a configuration error.
    let mut cfg = config();
    cfg.encrypt_mode = Some(EncryptMode::Safe);
    assert!(cfg.resolve().is_err());
}

#[tokio::test]
async fn rotation_accepts_the_previous_token_and_key_beside_the_new_ones() {
    let mut cfg = safe_config(Some(EncryptMode::Compatible));
    cfg.token = Some(Secret::new("new-webhook-token"));
    cfg.previous_token = Some(Secret::new(OLD_TOKEN));
    cfg.previous_encoding_aes_key = Some(Secret::new(OLD_KEY));
    let service = TestService::start_with(cfg).await;
    let xml = |who: &str| scan_xml("SCAN", who, "1", "T", now());
    let combos = [
        ("new-webhook-token", KEY, "o1"),
        (OLD_TOKEN, KEY, "o2"),
        ("new-webhook-token", OLD_KEY, "o3"),
        (OLD_TOKEN, OLD_KEY, "o4"),
    ];
    for (token, key, who) in combos {
        let (query, body) = wechatpy_push(token, key, dev::APP_ID, &xml(who)).await;
        assert_eq!(
            service.post(&query, body).await.0,
            200,
            "{token} / key {key}"
        );
    }
    assert_eq!(service.push_signed(OLD_TOKEN, &xml("o5")).await.0, 200);
    assert_eq!(
        service.push_signed("never-configured", &xml("o6")).await.0,
        403
    );
    assert_eq!(service.retained().await, 5);
}

#[tokio::test]
async fn cursors_outside_retention_are_out_of_range_with_the_oldest_cursor() {
    let mut cfg = config();
    cfg.retain_events = 3;
    let service = TestService::start_with(cfg).await;
    let mut watcher = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let t = now();
    let mut cursors = Vec::new();
    for i in 0..5 {
        push(&service, &scan_xml("SCAN", &format!("o{i}"), "1", "T", t)).await;
        cursors.push(next(&mut watcher).await.unwrap().cursor);
    }
    let status = service
        .client()
        .await
        .stream_events(pb::StreamEventsRequest {
            resume_after: cursors[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("oldest retained event: {}", cursors[2])),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .contains(&format!("resume_after={}", cursors[1])),
        "the message says how to replay everything retained: {status:?}"
    );
    // Following that advice replays exactly what is retained.
    let mut replay = subscribe(
        &service,
        pb::StreamEventsRequest {
            resume_after: cursors[1].clone(),
            ..Default::default()
        },
    )
    .await;
    let events = exactly(&mut replay, 3).await;
    assert_eq!(events[0].openid, "o2");

    // Age: with a 1-second retention, a cursor before an expired event is out of range.
    let mut cfg = config();
    cfg.retain_seconds = 1;
    let aging = TestService::start_with(cfg).await;
    let mut watcher = subscribe(&aging, pb::StreamEventsRequest::default()).await;
    push(&aging, &scan_xml("SCAN", "old-1", "1", "T", t)).await;
    push(&aging, &scan_xml("SCAN", "old-2", "1", "T", t)).await;
    let first = next(&mut watcher).await.unwrap().cursor;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        aging.retained().await == 0,
        "aged events are dropped without new pushes"
    );
    let status = aging
        .client()
        .await
        .stream_events(pb::StreamEventsRequest {
            resume_after: first,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
}

/// Pushes `count` distinct events with `concurrency` requests in flight.
async fn burst(
    service: &TestService,
    prefix: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
) {
    let t = now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = range.collect::<Vec<_>>().into_iter();
    loop {
        while tasks.len() < concurrency {
            let Some(i) = pending.next() else { break };
            let http = service.http.clone();
            let url = format!(
                "{}?{}",
                service.webhook_url,
                signed_query(TOKEN, &t.to_string(), &format!("n{prefix}{i}"))
            );
            let body = scan_xml("SCAN", &format!("{prefix}{i:06}"), "1", "T", t);
            tasks.spawn(async move {
                let response = http.post(url).body(body).send().await.unwrap();
                assert_eq!(response.status(), 200);
            });
        }
        match tasks.join_next().await {
            Some(done) => done.unwrap(),
            None => break,
        }
    }
}

#[tokio::test]
async fn resuming_while_pushes_arrive_has_no_gap_and_no_duplicate() {
    let service = TestService::start().await;
    let mut first = subscribe(&service, pb::StreamEventsRequest::default()).await;
    // Sequential, so the log order is known.
    let t = now();
    for i in 0..300 {
        push(
            &service,
            &scan_xml("SCAN", &format!("s{i:06}"), "1", "T", t),
        )
        .await;
    }
    let mut cursor_of_10 = String::new();
    for i in 0..300 {
        let response = next(&mut first).await.unwrap();
        if i == 10 {
            cursor_of_10 = response.cursor;
        }
    }
    let mut resumed = subscribe(
        &service,
        pb::StreamEventsRequest {
            resume_after: cursor_of_10,
            ..Default::default()
        },
    )
    .await;
    // Live pushes race the replay.
    let concurrent = burst(&service, "live", 0..700, 8);
    let reader = async {
        let mut seen = Vec::new();
        let mut last_cursor = String::new();
        while seen.len() < 289 + 700 {
            let response = next(&mut resumed).await.expect("no stall");
            assert!(response.cursor > last_cursor, "cursors increase");
            last_cursor = response.cursor;
            seen.push(response.event.unwrap().openid);
        }
        seen
    };
    let ((), seen) = tokio::join!(concurrent, reader);
    let replayed: Vec<String> = (11..300).map(|i| format!("s{i:06}")).collect();
    assert_eq!(
        seen[..289],
        replayed[..],
        "the replay is the retained tail in order"
    );
    let mut live = seen[289..].to_vec();
    live.sort();
    live.dedup();
    assert_eq!(live.len(), 700, "every live push exactly once");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), resumed.message())
            .await
            .is_err(),
        "nothing more"
    );
}

#[tokio::test]
async fn a_stalled_subscriber_hurts_nobody_and_ends_with_its_cursor() {
    let mut cfg = config();
    cfg.retain_events = 500;
    let service = TestService::start_with(cfg).await;
    let mut stalled = small_window_stream(&service).await;
    let mut healthy = Vec::new();
    for _ in 0..4 {
        healthy.push(subscribe(&service, pb::StreamEventsRequest::default()).await);
    }
    let total = 3000;
    let started = Instant::now();
    let readers = healthy.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut expected = 0;
            while expected < total {
                let response = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("healthy subscribers are never stalled")
                    .unwrap()
                    .unwrap();
                let _ = response;
                expected += 1;
            }
        })
    });
    let readers: Vec<_> = readers.collect();
    burst(&service, "b", 0..total, 8).await;
    for reader in readers {
        reader.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "burst took {elapsed:?}");
    assert!(service.retained().await <= 500, "the log stays bounded");

    // The stalled subscriber now reads: what was buffered, then OUT_OF_RANGE carrying the
    // cursor it got to.
    let mut received = 0;
    let mut last_cursor = String::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(5), stalled.message())
            .await
            .unwrap_or_else(|_| {
                panic!("the stalled stream answers (got {received}, last {last_cursor})")
            }) {
            Ok(Some(response)) => {
                received += 1;
                last_cursor = response.cursor;
            }
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert!(received < total, "it fell behind ({received} of {total})");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains(&last_cursor),
        "{status:?} names {last_cursor}"
    );
}

#[tokio::test]
async fn disconnected_subscribers_are_freed_promptly() {
    let service = TestService::start().await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(subscribe(&service, pb::StreamEventsRequest::default()).await);
    }
    assert_eq!(service.running().subscribers.count(), 20);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(2);
    while service.running().subscribers.count() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still live",
            service.running().subscribers.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_bodies_time_out_and_huge_fields_are_refused() {
    let mut cfg = config();
    cfg.push_read_timeout_ms = 300;
    let service = TestService::start_with(cfg).await;
    let addr = service.running().http_addr;
    let query = signed_query(TOKEN, &now().to_string(), "n");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /wechat?{query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 400\r\n\r\n<xml>"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut socket, &mut answer),
    )
    .await
    .expect("answered before the client finished")
    .unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(2));

    let huge = scan_xml("SCAN", &"o".repeat(60_000), "1", "T", now());
    assert_eq!(service.push_signed(TOKEN, &huge).await.0, 400);
    assert_eq!(service.retained().await, 0);
    assert_eq!(
        service
            .push_signed(TOKEN, &scan_xml("SCAN", "o-ok", "1", "T", now()))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn shutdown_answers_the_push_in_flight_and_streams_it_before_ending() {
    use tokio::io::AsyncReadExt;
    let mut cfg = config();
    cfg.push_read_timeout_ms = 5_000;
    let service = TestService::start_with(cfg).await;
    let mut stream = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let addr = service.running().http_addr;
    let xml = scan_xml("SCAN", "o-in-flight", "1", "T", now());
    let (first, rest) = xml.split_at(xml.len() / 2);
    let query = signed_query(TOKEN, &now().to_string(), "n");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /wechat?{query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{first}",
        xml.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    service.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new pushes are accepted once shutdown starts"
    );
    socket.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_string(&mut answer))
        .await
        .expect("the in-flight push is answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("success"), "{answer}");

    let event = next(&mut stream)
        .await
        .expect("the accepted push is delivered first");
    assert_eq!(event.event.unwrap().openid, "o-in-flight");
    let status = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .contains(&format!("resume_after={}", event.cursor)),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_client_that_stopped_reading_does_not_hold_shutdown_hostage() {
    let service = TestService::start().await;
    let _stalled = small_window_stream(&service).await;
    burst(&service, "s", 0..500, 8).await;
    let started = Instant::now();
    service.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
