//! The upstream under stress, through the simulator's fault knobs: retries of what is safe
//! to retry, deadlines, quotas with ErrorInfo, the access_token lifecycle (single flight,
//! refresh ahead, rejection, force_refresh, other sources), the permanent ticket store and
//! the image cache. Each test asserts what callers see *and* how many upstream calls
//! were made.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{TestService, config, scratch_file};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use wechat_qr::{
    config::TokenSourceKind,
    pb::{self, create_ticket_request::Scene},
};

fn temporary(scene_id: u32) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(Scene::SceneId(scene_id)),
        expire_seconds: 600,
        ..Default::default()
    }
}

fn permanent(scene: Scene) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(scene),
        permanent: true,
        ..Default::default()
    }
}

fn error_info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("{status:?} carries an ErrorInfo"));
    assert_eq!(info.domain, "wechat-qr");
    (info.reason, info.metadata)
}

async fn set_faults(service: &TestService, faults: serde_json::Value) {
    // Through the documented admin endpoint, as an operator would.
    let response = service
        .http
        .post(format!("{}/sim/faults", service.simulator_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

#[tokio::test]
async fn busy_twice_then_success_is_three_calls_and_a_success() {
    let service = TestService::start().await;
    set_faults(&service, serde_json::json!({ "busy": 2 })).await;
    let reply = service.client().await.create_ticket(temporary(1)).await;
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(service.simulator().stats().qrcode_creates, 3);
}

#[tokio::test]
async fn busy_beyond_the_attempts_is_unavailable_with_the_errcode() {
    let service = TestService::start().await;
    set_faults(&service, serde_json::json!({ "busy": 5 })).await;
    let status = service
        .client()
        .await
        .create_ticket(temporary(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "WECHAT_BUSY");
    assert_eq!(metadata["errcode"], "-1");
    assert_eq!(
        service.simulator().stats().qrcode_creates,
        3,
        "bounded by the attempts"
    );
}

#[tokio::test]
async fn quota_is_resource_exhausted_with_errcode_in_error_info_and_no_retry() {
    let service = TestService::start().await;
    set_faults(&service, serde_json::json!({ "quota": 1 })).await;
    let status = service
        .client()
        .await
        .create_ticket(temporary(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "WECHAT_QUOTA_EXCEEDED");
    assert_eq!(metadata["errcode"], "45009");
    assert!(metadata["errmsg"].contains("rid:"), "{metadata:?}");
    assert!(status.message().contains("45009"));
    assert_eq!(service.simulator().stats().qrcode_creates, 1);
}

#[tokio::test]
async fn invalid_arguments_carry_error_info_and_bad_request() {
    let service = TestService::start().await;
    let status = service
        .client()
        .await
        .create_ticket(permanent(Scene::SceneId(0)))
        .await
        .unwrap_err();
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "INVALID_ARGUMENT");
    assert_eq!(metadata["field"], "scene_id");
    let details = status.get_error_details();
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "scene_id");
}

#[tokio::test]
async fn http_500_and_resets_are_retried_only_where_safe() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    // Warm the token so only qrcode/create sees the faults.
    let ticket = client
        .create_ticket(temporary(1))
        .await
        .unwrap()
        .into_inner();

    set_faults(&service, serde_json::json!({ "http_500": 1 })).await;
    client
        .create_ticket(temporary(2))
        .await
        .expect("a 500 is retried");
    assert_eq!(service.simulator().stats().qrcode_creates, 3);

    // A reset after the request was sent may have minted a code: not retried.
    set_faults(&service, serde_json::json!({ "reset": 1 })).await;
    let status = client.create_ticket(temporary(3)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_info(&status).0, "WECHAT_UNREACHABLE");

    // showqrcode is idempotent: a reset is retried.
    set_faults(&service, serde_json::json!({ "reset": 1 })).await;
    let image = client
        .get_image(pb::GetImageRequest {
            ticket: ticket.ticket,
            ..Default::default()
        })
        .await;
    assert!(image.is_ok(), "{image:?}");
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_call() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    client.create_ticket(temporary(1)).await.unwrap();
    set_faults(&service, serde_json::json!({ "latency_ms": 3000 })).await;
    let mut request = Request::new(temporary(2));
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let status = client.create_ticket(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_info(&status).0, "DEADLINE_EXCEEDED");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_invalidated_token_under_100_concurrent_calls_is_refetched_once_with_force() {
    let service = TestService::start().await;
    let client = service.client().await;
    client.clone().create_ticket(temporary(1)).await.unwrap();
    service.simulator().invalidate_tokens();
    let calls: Vec<_> = (0..100u32)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.create_ticket(temporary(i + 10)).await })
        })
        .collect();
    for call in calls {
        call.await
            .unwrap()
            .expect("every call succeeds after one refetch");
    }
    let stats = service.simulator().stats();
    assert_eq!(stats.token_fetches, 2, "exactly one refetch");
    assert_eq!(
        stats.force_refreshes, 1,
        "the refetch asked for force_refresh"
    );
    assert_eq!(service.running().client.token_fetches(), 2);

    // A second rejection within 30 s: refetched again, but force_refresh is rate-limited.
    service.simulator().invalidate_tokens();
    client.clone().create_ticket(temporary(500)).await.unwrap();
    let stats = service.simulator().stats();
    assert_eq!(stats.token_fetches, 3);
    assert_eq!(stats.force_refreshes, 1, "not more than once every 30 s");
}

#[tokio::test]
async fn a_failed_token_fetch_is_shared_not_cached_and_retried_by_the_next_call() {
    let service = TestService::start().await;
    set_faults(&service, serde_json::json!({ "token_failures": 1 })).await;
    let client = service.client().await;
    let calls: Vec<_> = (0..50u32)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.create_ticket(temporary(i + 1)).await })
        })
        .collect();
    for call in calls {
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("40164"), "{status:?}");
    }
    assert_eq!(service.simulator().stats().token_requests, 1, "no stampede");
    client
        .clone()
        .create_ticket(temporary(99))
        .await
        .expect("the next call fetches again and succeeds");
    assert_eq!(service.simulator().stats().token_requests, 2);
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_in_the_background() {
    let mut cfg = config();
    // Tokens live 60 s (the shortest lifetime the client accepts); refresh after 1.5% of
    // it, 0.9 s.
    cfg.simulator_faults = Some(r#"{"token_ttl_seconds": 60}"#.into());
    cfg.token_refresh_at = 0.015;
    let service = TestService::start_with(cfg).await;
    let mut client = service.client().await;
    client.create_ticket(temporary(1)).await.unwrap();
    assert_eq!(service.simulator().stats().token_fetches, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the refresh mark: this call uses the still-valid token and starts a refresh.
    set_faults(
        &service,
        serde_json::json!({ "latency_ms": 300, "token_ttl_seconds": 60 }),
    )
    .await;
    let started = Instant::now();
    client.create_ticket(temporary(2)).await.unwrap();
    let took = started.elapsed();
    // One qrcode/create at 300 ms; a token fetch on the path would have added 300 ms more.
    assert!(
        took < Duration::from_millis(550),
        "the caller did not wait: {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        service.simulator().stats().token_fetches,
        2,
        "refreshed in the background"
    );
    assert_eq!(service.running().client.token_fetches(), 2);
}

#[tokio::test]
async fn cgi_bin_token_and_a_central_token_service_are_sources_too() {
    // cgi-bin/token.
    let mut cfg = config();
    cfg.token_source = TokenSourceKind::Token;
    let service = TestService::start_with(cfg).await;
    service
        .client()
        .await
        .create_ticket(temporary(1))
        .await
        .unwrap();
    assert_eq!(service.simulator().stats().token_fetches, 1);

    // A central token service: here a tiny HTTP server that hands out a token it got
    // from the simulator, standing in for the company's token service.
    let a = TestService::start().await;
    let token = common::simulator_token(&a.http, &a.simulator_url()).await;
    let body = serde_json::json!({ "access_token": token, "expires_in": 7200 }).to_string();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    {
        let served = served.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0; 4096];
                let _ = socket.read(&mut request).await;
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
    }
    let sim: url::Url = a.simulator_url().parse().unwrap();
    let mut cfg = config();
    cfg.app_id = Some(wechat_qr::config::dev::APP_ID.into());
    cfg.app_secret = Some(wechat_qr::secret::Secret::new(
        "not-needed-with-a-token-service",
    ));
    cfg.token = Some(wechat_qr::secret::Secret::new("b-webhook-token"));
    cfg.api_base = Some(sim.clone());
    cfg.mp_base = Some(sim);
    cfg.token_source = TokenSourceKind::Url;
    cfg.token_url = Some(token_url.parse().unwrap());
    // No older version's file to import: a path in a directory of the test's.
    let legacy = scratch_file("permanent.jsonl");
    cfg.permanent_store = Some(legacy.to_path_buf());
    let b = TestService::start_with(cfg).await;
    b.client().await.create_ticket(temporary(5)).await.unwrap();
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        a.simulator().stats().token_fetches,
        1,
        "only the token service's own fetch"
    );
}

#[tokio::test]
async fn a_permanent_scene_is_never_spent_twice_even_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.data_dir = data.path().to_owned();
    let first = TestService::start_with(cfg.clone()).await;
    let client = first.client().await;
    let concurrent: Vec<_> = (0..10)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .create_ticket(permanent(Scene::SceneStr("poster-metro".into())))
                    .await
                    .unwrap()
                    .into_inner()
                    .ticket
            })
        })
        .collect();
    let mut tickets = Vec::new();
    for call in concurrent {
        tickets.push(call.await.unwrap());
    }
    tickets.dedup();
    assert_eq!(tickets.len(), 1, "one ticket for the scene");
    assert_eq!(
        first.simulator().stats().qrcode_creates,
        1,
        "one upstream call"
    );
    let by_id = client
        .clone()
        .create_ticket(permanent(Scene::SceneId(7)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.simulator().stats().qrcode_creates, 2);
    first.stop().await;

    let second = TestService::start_with(cfg.clone()).await;
    let mut client = second.client().await;
    let again = client
        .create_ticket(permanent(Scene::SceneStr("poster-metro".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.ticket, tickets[0]);
    assert!(again.expire_time.is_none());
    let again_by_id = client
        .create_ticket(permanent(Scene::SceneId(7)))
        .await
        .unwrap();
    assert_eq!(again_by_id.into_inner().url, by_id.url);
    assert_eq!(
        second.simulator().stats().qrcode_creates,
        0,
        "answered from the store"
    );
    client
        .create_ticket(permanent(Scene::SceneId(8)))
        .await
        .unwrap();
    assert_eq!(
        second.simulator().stats().qrcode_creates,
        1,
        "a new scene is minted"
    );
    // The restored ticket is still a real code: its image is served.
    let image = client
        .get_image(pb::GetImageRequest {
            ticket: again.ticket.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(common::decode_qr(&image.image), again.url);
    second.stop().await;

    // A second restart in a row: still nothing minted for a known scene.
    let third = TestService::start_with(cfg).await;
    let mut client = third.client().await;
    for scene in [
        Scene::SceneStr("poster-metro".into()),
        Scene::SceneId(7),
        Scene::SceneId(8),
    ] {
        client.create_ticket(permanent(scene)).await.unwrap();
    }
    assert_eq!(third.simulator().stats().qrcode_creates, 0);
}

#[tokio::test]
async fn an_older_versions_permanent_file_is_imported_once_torn_lines_and_all() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("wechat-qr-permanent.jsonl");
    let app = wechat_qr::config::dev::APP_ID;
    // Written by the older version: a record, a torn record with the next one appended
    // right after it on the same line (a crash between the two), and a line cut inside a
    // multi-byte character.
    let mut bytes = format!(
        "{{\"app_id\":\"{app}\",\"scene_id\":6,\"ticket\":\"t6\",\"url\":\"http://weixin.qq.com/q/6\"}}\n\
         {{\"app_id\":\"{app}\",\"scene_id\":7,\"tic\
         {{\"app_id\":\"{app}\",\"scene_id\":8,\"ticket\":\"t8\",\"url\":\"http://weixin.qq.com/q/8\"}}\n"
    )
    .into_bytes();
    bytes.extend_from_slice(format!("{{\"app_id\":\"{app}\",\"scene_str\":\"caf").as_bytes());
    bytes.extend_from_slice(&"é".as_bytes()[..1]);
    std::fs::write(&legacy, &bytes).unwrap();
    let mut cfg = config();
    cfg.data_dir = dir.path().join("data");
    cfg.permanent_store = Some(legacy.clone());
    let service = TestService::start_with(cfg.clone()).await;
    let mut client = service.client().await;
    let six = client
        .create_ticket(permanent(Scene::SceneId(6)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(six.ticket, "t6");
    let eight = client
        .create_ticket(permanent(Scene::SceneId(8)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eight.ticket, "t8", "the record after the torn one survives");
    assert_eq!(service.simulator().stats().qrcode_creates, 0);
    // Scene 7 was torn: it was never acknowledged as stored, so it is minted now — once.
    let seven = client
        .create_ticket(permanent(Scene::SceneId(7)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(service.simulator().stats().qrcode_creates, 1);
    service.stop().await;

    // Imported once: a changed file is not read again; the store is the one place of state.
    std::fs::write(
        &legacy,
        format!("{{\"app_id\":\"{app}\",\"scene_id\":9,\"ticket\":\"t9\",\"url\":\"u9\"}}\n"),
    )
    .unwrap();
    let again = TestService::start_with(cfg).await;
    let mut client = again.client().await;
    for (scene, ticket) in [(6, "t6"), (8, "t8"), (7, seven.ticket.as_str())] {
        let answer = client
            .create_ticket(permanent(Scene::SceneId(scene)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.ticket, ticket);
    }
    assert_eq!(again.simulator().stats().qrcode_creates, 0);
    let nine = client
        .create_ticket(permanent(Scene::SceneId(9)))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(nine.ticket, "t9", "the file was not read a second time");
    assert_eq!(again.simulator().stats().qrcode_creates, 1);
}

#[tokio::test]
async fn a_thousand_concurrent_image_requests_for_a_cold_ticket_download_once() {
    let service = TestService::start().await;
    let client = service.client().await;
    let ticket = client
        .clone()
        .create_ticket(temporary(1))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    set_faults(
        &service,
        serde_json::json!({ "showqrcode_latency_ms": 200 }),
    )
    .await;
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let mut client = client.clone();
            let ticket = ticket.clone();
            tokio::spawn(async move {
                client
                    .get_image(pb::GetImageRequest {
                        ticket,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().image.len())
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap() > 1000);
    }
    assert_eq!(service.simulator().stats().image_requests, 1);

    // url_only downloads nothing.
    let url = client
        .clone()
        .get_image(pb::GetImageRequest {
            ticket: "some-ticket+/=".into(),
            url_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(url.image.is_empty());
    assert!(
        url.image_url
            .ends_with("showqrcode?ticket=some-ticket%2B%2F%3D"),
        "{}",
        url.image_url
    );
    assert_eq!(service.simulator().stats().image_requests, 1);
}

#[tokio::test]
async fn unknown_tickets_are_remembered_briefly() {
    let service = TestService::start().await;
    let mut client = service.client().await;
    for _ in 0..5 {
        let status = client
            .get_image(pb::GetImageRequest {
                ticket: "no-such-ticket".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(error_info(&status).0, "TICKET_NOT_FOUND");
    }
    assert_eq!(service.simulator().stats().image_requests, 1);
}
