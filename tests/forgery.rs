//! Forged pushes on captured query strings: a plaintext push's `signature` covers the
//! token, timestamp and nonce but not the body, so whoever sees one query string (a proxy
//! log, the handshake, a push in transit) could attach any body to it. Each test performs
//! the attack and shows it refused — 403, no event — while real pushes are still
//! delivered, and WeChat's genuine retries still acknowledged once.

mod common;

use common::{
    TOKEN, TestService, binary::Binary, config, exactly, now, scan_xml, signed_query, subscribe,
};
use wechat_qr::{config::EncryptMode, pb, secret::Secret};

fn fresh_query() -> String {
    signed_query(
        TOKEN,
        &now().to_string(),
        &format!("n{}", rand::random::<u64>()),
    )
}

#[tokio::test]
async fn one_captured_query_carries_no_forged_body_and_real_pushes_keep_flowing() {
    let service = TestService::start().await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let captured = fresh_query();
    let genuine = scan_xml("SCAN", "o-genuine", "1", "T-genuine", now());
    assert_eq!(
        service.post(&captured, genuine.clone().into()).await,
        (200, "success".to_owned())
    );

    // The attack: 1,000 different bodies on the captured query, among them the scan of
    // someone else's login code; real pushes with their own queries in between.
    let mut real = Vec::new();
    for i in 0..1_000 {
        let forged = scan_xml(
            "SCAN",
            &format!("o-attacker-{i}"),
            "login-victim",
            "T-victims-login-code",
            now(),
        );
        let (status, body) = service.post(&captured, forged.into()).await;
        assert_eq!(status, 403, "forged body {i} refused: {body}");
        if i % 100 == 0 {
            let openid = format!("o-real-{i}");
            let (status, _) = service
                .post(
                    &fresh_query(),
                    scan_xml("SCAN", &openid, "2", "T-real", now()).into(),
                )
                .await;
            assert_eq!(status, 200);
            real.push(openid);
        }
    }
    // WeChat's retry of the genuine push: the same query, the same body.
    assert_eq!(
        service.post(&captured, genuine.into()).await,
        (200, "success".to_owned())
    );

    let events = exactly(&mut everything, 1 + real.len()).await;
    let openids: Vec<&str> = events.iter().map(|e| e.openid.as_str()).collect();
    assert_eq!(openids[0], "o-genuine");
    assert_eq!(
        &openids[1..],
        real.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let refused = service
        .running()
        .metrics
        .webhook_pushes
        .with_label_values(&[wechat_qr::config::dev::APP_ID, "replayed"])
        .get();
    assert_eq!(refused, 1_000);
}

#[tokio::test]
async fn a_handshake_query_never_carries_a_push() {
    let service = TestService::start().await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let handshake = format!("{}&echostr=hello-echo", fresh_query());
    let answer = service
        .http
        .get(format!("{}?{handshake}", service.webhook_url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "hello-echo");

    let forged = scan_xml("SCAN", "o-attacker", "1", "T-victim", now());
    // The handshake's query as it is, and without its echostr.
    let (status, _) = service.post(&handshake, forged.clone().into()).await;
    assert_eq!(status, 403);
    let without_echo = handshake.replace("&echostr=hello-echo", "");
    let (status, _) = service.post(&without_echo, forged.into()).await;
    assert_eq!(status, 403);

    common::push(&service, &scan_xml("SCAN", "o-real", "1", "T", now())).await;
    let events = exactly(&mut everything, 1).await;
    assert_eq!(events[0].openid, "o-real");
}

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// wechatpy's encryption of `xml` under `timestamp` and `nonce`: (msg_signature, body).
async fn wechatpy_encrypt(xml: &str, timestamp: &str, nonce: &str) -> (String, String) {
    let app_id = wechat_qr::config::dev::APP_ID;
    let output =
        common::wechatpy::run(&["encrypt", TOKEN, KEY, app_id, nonce, timestamp], xml).await;
    let sealed: serde_json::Value = serde_json::from_str(&output).unwrap();
    (
        sealed["msg_signature"].as_str().unwrap().to_owned(),
        format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
            sealed["encrypt"].as_str().unwrap()
        ),
    )
}

#[tokio::test]
async fn in_compatible_mode_an_encrypted_pushs_signature_carries_no_plaintext_forgery() {
    let mut cfg = config();
    cfg.encoding_aes_key = Some(Secret::new(KEY));
    cfg.encrypt_mode = Some(EncryptMode::Compatible);
    let service = TestService::start_with(cfg).await;
    let mut everything = subscribe(&service, pb::StreamEventsRequest::default()).await;
    let (timestamp, nonce) = (now().to_string(), format!("{}", rand::random::<u32>()));
    let xml = scan_xml("SCAN", "o-encrypted", "1", "T", now());
    let (msg_signature, body) = wechatpy_encrypt(&xml, &timestamp, &nonce).await;
    let plain = signed_query(TOKEN, &timestamp, &nonce);
    let encrypted = format!("{plain}&encrypt_type=aes&msg_signature={msg_signature}");
    assert_eq!(
        service.post(&encrypted, body.into()).await,
        (200, "success".to_owned())
    );

    // The attack: the encrypted push's `signature`, a plaintext body of one's choosing.
    let forged = scan_xml("SCAN", "o-attacker", "1", "T-victim", now());
    let (status, _) = service.post(&plain, forged.into()).await;
    assert_eq!(status, 403);

    // WeChat re-encrypting its retry under the same timestamp and nonce is no forgery:
    // msg_signature authenticates the new ciphertext. Acknowledged, logged once.
    let (msg_signature, body) = wechatpy_encrypt(&xml, &timestamp, &nonce).await;
    let retry = format!("{plain}&encrypt_type=aes&msg_signature={msg_signature}");
    assert_eq!(
        service.post(&retry, body.into()).await,
        (200, "success".to_owned())
    );
    common::push(&service, &scan_xml("SCAN", "o-real", "1", "T", now())).await;
    let events = exactly(&mut everything, 2).await;
    assert_eq!(events[0].openid, "o-encrypted");
    assert_eq!(events[1].openid, "o-real");
}

#[tokio::test]
async fn the_memory_of_used_queries_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.data_dir = data.path().to_owned();
    let captured = fresh_query();
    let genuine = scan_xml("SCAN", "o-before-restart", "1", "T", now());
    let before = TestService::start_with(cfg.clone()).await;
    assert_eq!(
        before.post(&captured, genuine.clone().into()).await,
        (200, "success".to_owned())
    );
    before.stop().await;

    let after = TestService::start_with(cfg).await;
    let mut everything = subscribe(&after, pb::StreamEventsRequest::default()).await;
    let forged = scan_xml("SCAN", "o-attacker", "1", "T-victim", now());
    let (status, _) = after.post(&captured, forged.into()).await;
    assert_eq!(status, 403, "the query was used before the restart");
    assert_eq!(
        after.post(&captured, genuine.into()).await,
        (200, "success".to_owned()),
        "WeChat's retry after the restart"
    );
    common::push(&after, &scan_xml("SCAN", "o-real", "1", "T", now())).await;
    let events = exactly(&mut everything, 1).await;
    assert_eq!(events[0].openid, "o-real", "the retry added nothing");
}

/// The real binary with a replay-guard memory of `seals` pairs and its own data directory.
async fn binary_with_seals(data_dir: &std::path::Path, seals: &str) -> Binary {
    let mut command = Binary::command();
    command
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", data_dir)
        .env("WECHAT_QR_REPLAY_GUARD_SEALS", seals);
    Binary::spawn(command).await
}

async fn post_to(binary: &Binary, query: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}?{query}", binary.webhook_url))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn outcome(metrics: &str, outcome: &str) -> u64 {
    // Labelled by account too: the sum over accounts.
    let label = format!("outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .filter(|l| l.starts_with("wechat_qr_webhook_pushes_total{"))
        .filter_map(|l| l.split_once(&label).map(|(_, v)| v))
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn a_full_memory_shortens_the_window_fresh_pushes_pass_and_a_forgotten_query_stays_refused() {
    let data = tempfile::tempdir().unwrap();
    let binary = binary_with_seals(data.path(), "50").await;
    let base = now();
    let captured = signed_query(TOKEN, &(base - 100).to_string(), "captured");
    let genuine = scan_xml("SCAN", "o-genuine", "1", "T", base - 100);
    assert_eq!(
        post_to(&binary, &captured, &genuine).await,
        (200, "success".to_owned())
    );

    // Sixty genuine pushes, one a second of the last minute: more than the memory holds,
    // so it forgets the captured query and the ten oldest, never answering 503.
    for i in 0..60 {
        let query = signed_query(TOKEN, &(base - 60 + i).to_string(), &format!("n{i}"));
        let body = scan_xml("SCAN", &format!("o-{i}"), "2", "T", base);
        let (status, answer) = post_to(&binary, &query, &body).await;
        assert_eq!((status, answer.as_str()), (200, "success"), "push {i}");
    }

    // The forgotten query, with a forged body or with its own: refused as stale (403).
    let forged = scan_xml("SCAN", "o-attacker", "login-victim", "T-victim", base);
    for body in [&forged, &genuine] {
        let (status, _) = post_to(&binary, &captured, body).await;
        assert_eq!(status, 403, "a forgotten query is not accepted again");
    }
    // So is any new pair from the seconds it forgot; a fresh push passes.
    let forgotten_second = signed_query(TOKEN, &(base - 55).to_string(), "late");
    assert_eq!(post_to(&binary, &forgotten_second, &forged).await.0, 403);
    let fresh = signed_query(TOKEN, &now().to_string(), "fresh");
    let real = scan_xml("SCAN", "o-fresh", "3", "T", now());
    assert_eq!(
        post_to(&binary, &fresh, &real).await,
        (200, "success".to_owned())
    );
    let metrics = binary.metrics().await;
    assert_eq!(outcome(&metrics, "stale_timestamp"), 3, "{metrics}");
    assert_eq!(outcome(&metrics, "accepted"), 62, "{metrics}");
    binary.stop().await;

    // After a restart the memory is rebuilt from the data directory, full again: the
    // captured query is still refused, a fresh push still accepted.
    let binary = binary_with_seals(data.path(), "50").await;
    assert_eq!(post_to(&binary, &captured, &forged).await.0, 403);
    let fresh = signed_query(TOKEN, &now().to_string(), "fresh-after-restart");
    let real = scan_xml("SCAN", "o-fresh-2", "3", "T", now());
    assert_eq!(
        post_to(&binary, &fresh, &real).await,
        (200, "success".to_owned())
    );
    binary.stop().await;
}
