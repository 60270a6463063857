//! CreateTicket and GetImage through a real tonic client against the real service on the
//! real simulator: the four kinds, every validation error, images that decode, upstream
//! errors and the access_token cache.

mod common;

use std::time::{Duration, SystemTime};

use common::{TestService, config, decode_qr};
use tonic::Code;
use wechat_qr::pb::{self, create_ticket_request::Scene};

fn request(scene: Scene, permanent: bool, expire_seconds: u32) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(scene),
        permanent,
        expire_seconds,
        account: String::new(),
    }
}

fn ticket_param(image_url: &str) -> (String, String) {
    let raw = image_url
        .split_once("?ticket=")
        .expect("image_url has a ticket parameter")
        .1
        .to_owned();
    let decoded = url::form_urlencoded::parse(format!("t={raw}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    (raw, decoded)
}

#[tokio::test]
async fn creates_each_of_the_four_kinds() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let cases = [
        (Scene::SceneId(123), false, 3600, "QR_SCENE"),
        (
            Scene::SceneStr("login-nonce-1".into()),
            false,
            600,
            "QR_STR_SCENE",
        ),
        (Scene::SceneId(100_000), true, 0, "QR_LIMIT_SCENE"),
        (
            Scene::SceneStr("poster-metro".into()),
            true,
            0,
            "QR_LIMIT_STR_SCENE",
        ),
    ];
    let mut tickets = Vec::new();
    for (scene, permanent, expire, kind) in cases {
        let before = SystemTime::now();
        let reply = client
            .create_ticket(request(scene, permanent, expire))
            .await
            .unwrap_or_else(|s| panic!("{kind}: {s}"))
            .into_inner();
        assert!(!reply.ticket.is_empty(), "{kind}");
        assert!(
            reply.url.starts_with("http://weixin.qq.com/q/"),
            "{kind}: {}",
            reply.url
        );
        match reply.expire_time {
            Some(at) if !permanent => {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.seconds as u64);
                let lifetime = at.duration_since(before).unwrap().as_secs();
                assert!(
                    (u64::from(expire) - 2..=u64::from(expire) + 2).contains(&lifetime),
                    "{kind}: expires in {lifetime}s, asked {expire}s"
                );
            }
            None if permanent => {}
            other => panic!("{kind}: expire_time {other:?} for permanent={permanent}"),
        }
        let (raw, decoded) = ticket_param(&reply.image_url);
        assert!(
            reply.image_url.contains("/cgi-bin/showqrcode?ticket="),
            "{kind}"
        );
        assert_eq!(
            decoded, reply.ticket,
            "{kind}: image_url carries the ticket"
        );
        assert!(
            !raw.contains(['+', '/', '=']),
            "{kind}: ticket must be URL-encoded in {raw}"
        );
        tickets.push(reply.ticket);
    }
    tickets.sort();
    tickets.dedup();
    assert_eq!(tickets.len(), 4, "every ticket is distinct");
    assert_eq!(service.simulator().stats().qrcode_creates, 4);
}

#[tokio::test]
async fn zero_expire_seconds_means_wechats_sixty() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let before = SystemTime::now();
    let reply = client
        .create_ticket(request(Scene::SceneId(7), false, 0))
        .await
        .unwrap()
        .into_inner();
    let at =
        SystemTime::UNIX_EPOCH + Duration::from_secs(reply.expire_time.unwrap().seconds as u64);
    let lifetime = at.duration_since(before).unwrap().as_secs();
    assert!((58..=62).contains(&lifetime), "lifetime {lifetime}");
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_never_reach_wechat() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let long = "x".repeat(65);
    let cases: Vec<(pb::CreateTicketRequest, &str)> = vec![
        (
            pb::CreateTicketRequest {
                scene: None,
                ..Default::default()
            },
            "scene:",
        ),
        (request(Scene::SceneId(0), false, 60), "scene_id:"),
        (request(Scene::SceneId(0), true, 0), "scene_id:"),
        (request(Scene::SceneId(100_001), true, 0), "scene_id:"),
        (
            request(Scene::SceneStr(String::new()), false, 60),
            "scene_str:",
        ),
        (
            request(Scene::SceneStr(long.clone()), true, 0),
            "scene_str:",
        ),
        (
            request(Scene::SceneId(1), false, 2_592_001),
            "expire_seconds:",
        ),
        (request(Scene::SceneId(1), true, 60), "expire_seconds:"),
        (
            pb::CreateTicketRequest {
                account: "wx_someone_else".into(),
                ..request(Scene::SceneId(1), false, 60)
            },
            "account:",
        ),
    ];
    for (req, field) in cases {
        let status = client
            .create_ticket(req.clone())
            .await
            .expect_err(&format!("{req:?} must fail"));
        // An AppID not served is not a malformed request: NOT_FOUND, naming the field.
        let code = if field == "account:" {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), code, "{req:?}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{req:?}: message {:?} should name {field}",
            status.message()
        );
    }
    // 64 characters (multi-byte ones count as one) and the 30-day maximum are fine.
    let ok = client
        .create_ticket(request(Scene::SceneStr("場".repeat(64)), false, 2_592_000))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(
        service.simulator().stats().qrcode_creates,
        1,
        "only the valid request reached WeChat"
    );

    let status = client
        .get_image(pb::GetImageRequest {
            ticket: "  ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("ticket:"), "{status:?}");
}

/// A GetImage ticket is at most 1,024 bytes: one byte more is INVALID_ARGUMENT without
/// a call to WeChat (nor for a token); a ticket of exactly 1,024 bytes is asked for.
#[tokio::test]
async fn a_ticket_over_1024_bytes_is_refused_without_calling_wechat() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let image = |len: usize| pb::GetImageRequest {
        ticket: "t".repeat(len),
        ..Default::default()
    };
    let refused = client.get_image(image(1_025)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("ticket:") && refused.message().contains("1024"),
        "{refused:?}"
    );
    let stats = service.simulator().stats();
    assert_eq!(
        (stats.image_requests, stats.token_requests),
        (0, 0),
        "WeChat was not called"
    );
    let asked = client.get_image(image(1_024)).await;
    assert_ne!(
        asked.as_ref().err().map(tonic::Status::code),
        Some(Code::InvalidArgument),
        "{asked:?}"
    );
    assert_eq!(service.simulator().stats().image_requests, 1);
}

#[tokio::test]
async fn images_are_real_qr_codes_of_the_ticket_url() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    for scene in [Scene::SceneId(42), Scene::SceneStr("channel-a".into())] {
        let ticket = client
            .create_ticket(request(scene, false, 300))
            .await
            .unwrap()
            .into_inner();
        let image = client
            .get_image(pb::GetImageRequest {
                ticket: ticket.ticket.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(image.content_type, "image/jpeg");
        assert!(image.image.starts_with(&[0xff, 0xd8]), "JPEG magic");
        assert_eq!(decode_qr(&image.image), ticket.url);

        // The image_url works for anyone over plain HTTP too.
        let fetched = service.http.get(&ticket.image_url).send().await.unwrap();
        assert_eq!(fetched.status(), 200);
        assert_eq!(fetched.bytes().await.unwrap(), image.image);
    }
}

#[tokio::test]
async fn unknown_ticket_is_not_found() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    let status = client
        .get_image(pb::GetImageRequest {
            ticket: "gQ+no/such==".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn concurrent_calls_on_a_cold_cache_fetch_one_token() {
    let service = TestService::start().await;
    let client = service.client().await;
    let calls = (0..200u32).map(|i| {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .create_ticket(request(Scene::SceneId(i + 1), false, 60))
                .await
        })
    });
    for call in futures_join(calls).await {
        call.unwrap().expect("every call succeeds");
    }
    assert_eq!(service.simulator().stats().token_fetches, 1);
    assert_eq!(service.running().client.token_fetches(), 1);
    assert_eq!(service.simulator().stats().qrcode_creates, 200);
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await);
    }
    results
}

#[tokio::test]
async fn an_invalidated_token_is_refetched_and_the_call_succeeds() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    client
        .create_ticket(request(Scene::SceneId(1), false, 60))
        .await
        .unwrap();
    assert_eq!(service.simulator().stats().token_fetches, 1);

    // The admin endpoint, as an operator or another test would use it.
    let answer = service
        .http
        .post(format!("{}/sim/invalidate-token", service.simulator_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    client
        .create_ticket(request(Scene::SceneId(2), false, 60))
        .await
        .expect("the call is retried with a fresh token");
    let stats = service.simulator().stats();
    assert_eq!(stats.token_fetches, 2, "exactly one refetch");
    assert_eq!(
        stats.qrcode_creates, 3,
        "one rejected call, one retry, one before"
    );
}

#[tokio::test]
async fn upstream_errors_keep_the_errcode_and_hide_secrets() {
    // Service A runs the simulator; service B has real-looking credentials that the
    // simulator rejects, and talks to A's simulator as it would to WeChat.
    let a = TestService::start().await;
    let sim_url: url::Url = a.simulator_url().parse().unwrap();
    let secret = "a-very-secret-appsecret";
    let legacy = common::scratch_file("permanent.jsonl");
    let wrong_secret = || {
        let mut cfg = config();
        cfg.app_id = Some(wechat_qr::config::dev::APP_ID.into());
        cfg.app_secret = Some(wechat_qr::secret::Secret::new(secret));
        cfg.token = Some(wechat_qr::secret::Secret::new("b-webhook-token"));
        cfg.api_base = Some(sim_url.clone());
        cfg.mp_base = Some(sim_url.clone());
        cfg.permanent_store = Some(legacy.to_path_buf());
        cfg
    };
    let b = TestService::start_with(wrong_secret()).await;
    assert!(
        b.running().simulator.is_none(),
        "credentials switch the simulator off"
    );
    let status = b
        .client()
        .await
        .create_ticket(request(Scene::SceneId(1), false, 60))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("40125"), "{status:?}");
    assert!(
        status.message().contains("rid:"),
        "WeChat's request id is kept: {status:?}"
    );
    assert!(!status.message().contains(secret), "{status:?}");

    // Nothing listening upstream: UNAVAILABLE.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead: url::Url = format!("http://{}", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);
    let mut cfg = wrong_secret();
    cfg.api_base = Some(dead.clone());
    cfg.mp_base = Some(dead);
    let c = TestService::start_with(cfg).await;
    let status = c
        .client()
        .await
        .create_ticket(request(Scene::SceneId(1), false, 60))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().contains(secret), "{status:?}");
}
