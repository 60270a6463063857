//! Several Official Accounts from one process, through the real binary and a
//! configuration file: one account in safe mode (pushes encrypted by wechatpy), one in
//! plaintext, each at its own webhook path with its own token and key; tickets minted
//! under each through a fake upstream (the simulator playing WeChat for both) with a
//! token fetch of its own; a caller allowed one account never receiving the other's
//! events; every account-selection error; a SIGHUP rotation of a token and a key with a
//! stream open across it; a SIGHUP rotation of an AppSecret (from its secret file) and of
//! the base URLs, with a stream and a call open across it; and the simulator serving two
//! accounts itself.

mod common;

use std::path::Path;

use common::{TestService, binary::Binary, config, exactly, now, scan_xml, signed_query, wechatpy};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Streaming};
use wechat_qr::{
    config::{AccountConfig, EncryptMode},
    pb::{self, create_ticket_request::Scene},
    secret::Secret,
};

const PLAIN_APP: &str = "wxplain000000000a1";
const PLAIN_SECRET: &str = "plain-app-secret";
const PLAIN_TOKEN: &str = "plain-webhook-token";
const SAFE_APP: &str = "wxsafe0000000000b2";
const SAFE_SECRET: &str = "safe-app-secret";
const SAFE_TOKEN: &str = "safe-webhook-token";
const SAFE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const NEW_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const NEW_TOKEN: &str = "rotated-webhook-token";
const OPS: &str = "ops-caller-token";
const LOGIN: &str = "login-caller-token";

fn account(app_id: &str, secret: &str, token: &str, key: Option<&str>) -> AccountConfig {
    AccountConfig {
        token: Some(Secret::new(token)),
        encoding_aes_key: key.map(Secret::new),
        encrypt_mode: key.map(|_| EncryptMode::Safe),
        ..AccountConfig::new(app_id, secret)
    }
}

/// A fake WeChat for both accounts: the embedded simulator with their credentials.
async fn fake_upstream() -> TestService {
    let mut cfg = config();
    cfg.simulator = true;
    cfg.event_log = wechat_qr::config::EventLogKind::Memory;
    cfg.accounts = vec![
        account(PLAIN_APP, PLAIN_SECRET, PLAIN_TOKEN, None),
        account(SAFE_APP, SAFE_SECRET, SAFE_TOKEN, Some(SAFE_KEY)),
    ];
    TestService::start_with(cfg).await
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The file: both accounts against `upstream`, the safe one's token and keys as given,
/// and two callers: `ops` (everything) and `login` (the plaintext account only).
fn file(data: &Path, upstream: &str, safe_token: &str, safe_keys: &str, extra: &str) -> String {
    format!(
        r#"grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
data_dir = "{data}"

[[accounts]]
app_id = "{PLAIN_APP}"
app_secret = "{PLAIN_SECRET}"
token = "{PLAIN_TOKEN}"
api_base = "{upstream}"
mp_base = "{upstream}"

[[accounts]]
app_id = "{SAFE_APP}"
app_secret = "{SAFE_SECRET}"
token = "{safe_token}"
{safe_keys}
encrypt_mode = "safe"
api_base = "{upstream}"
mp_base = "{upstream}"
{extra}
[[clients]]
name = "ops"
token_sha256 = "{ops}"
permanent = true

[[clients]]
name = "login"
token_sha256 = "{login}"
accounts = ["{PLAIN_APP}"]
"#,
        data = data.display(),
        ops = sha256_hex(OPS),
        login = sha256_hex(LOGIN),
    )
}

fn as_caller<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn ticket_request(scene: &str, account: &str) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(Scene::SceneStr(scene.into())),
        expire_seconds: 600,
        account: account.into(),
        ..Default::default()
    }
}

async fn stream(
    binary: &Binary,
    token: &str,
    accounts: &[&str],
) -> Result<Streaming<pb::StreamEventsResponse>, tonic::Status> {
    binary
        .client()
        .await
        .stream_events(as_caller(
            pb::StreamEventsRequest {
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn post(url: &str, query: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{url}?{query}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A plaintext push signed with `token` to `url`.
async fn push_plain(url: &str, token: &str, xml: &str) -> (u16, String) {
    let nonce = format!("n{}", rand::random::<u64>());
    post(
        url,
        &signed_query(token, &now().to_string(), &nonce),
        xml.into(),
    )
    .await
}

/// A safe-mode push encrypted by wechatpy for the safe account.
async fn push_safe(url: &str, token: &str, key: &str, xml: &str) -> (u16, String) {
    let (query, body) = wechatpy::push(token, key, SAFE_APP, xml).await;
    post(url, &query, body).await
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn two_accounts_each_with_its_own_webhook_upstream_token_and_callers() {
    let upstream = fake_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("wechat-qr.toml");
    let safe_keys = format!("encoding_aes_key = \"{SAFE_KEY}\"");
    write(
        &config_path,
        &file(
            &dir.path().join("data"),
            &upstream.simulator_url(),
            SAFE_TOKEN,
            &safe_keys,
            "",
        ),
    );
    let binary = Binary::start(&config_path, &[]).await;
    let base = binary.http_base();
    let plain_url = format!("{base}/wechat/{PLAIN_APP}");
    let safe_url = format!("{base}/wechat/{SAFE_APP}");
    let mut client = binary.client().await;

    // Choosing the account: required with two, and an unknown one is NOT_FOUND.
    let status = client
        .create_ticket(as_caller(ticket_request("s", ""), OPS))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("account:")
            && status.message().contains(PLAIN_APP)
            && status.message().contains(SAFE_APP),
        "{status:?}"
    );
    let status = client
        .create_ticket(as_caller(ticket_request("s", "wxunknown"), OPS))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("wxunknown"), "{status:?}");
    assert_eq!(
        upstream.simulator().stats().token_fetches,
        0,
        "no call spent"
    );

    // A ticket under each account, each through its own token fetch.
    let plain_ticket = client
        .create_ticket(as_caller(ticket_request("poster-plain", PLAIN_APP), OPS))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    let safe_ticket = client
        .create_ticket(as_caller(ticket_request("poster-safe", SAFE_APP), OPS))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    client
        .create_ticket(as_caller(ticket_request("poster-safe-2", SAFE_APP), OPS))
        .await
        .unwrap();
    let sim = upstream.simulator();
    assert_eq!(sim.token_fetches_of(PLAIN_APP), 1);
    assert_eq!(sim.token_fetches_of(SAFE_APP), 1, "cached after the first");
    assert_eq!(sim.stats().qrcode_creates, 3);

    // The login caller may use only the plaintext account.
    let status = client
        .create_ticket(as_caller(ticket_request("s", SAFE_APP), LOGIN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&format!("account {SAFE_APP}")),
        "{status:?}"
    );
    let status = stream(&binary, LOGIN, &[SAFE_APP]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = stream(&binary, OPS, &["wxunknown"]).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let mut everything = stream(&binary, OPS, &[]).await.unwrap();
    let mut safe_only = stream(&binary, OPS, &[SAFE_APP]).await.unwrap();
    let mut login = stream(&binary, LOGIN, &[]).await.unwrap();

    let t = now();
    let plain_scan = scan_xml("SCAN", "o-plain", "poster-plain", &plain_ticket, t);
    let safe_scan = scan_xml(
        "subscribe",
        "o-safe",
        "qrscene_poster-safe",
        &safe_ticket,
        t,
    );
    // Each account's webhook checks its own token: the other's is refused.
    assert_eq!(push_plain(&safe_url, PLAIN_TOKEN, &plain_scan).await.0, 403);
    assert_eq!(push_plain(&plain_url, SAFE_TOKEN, &plain_scan).await.0, 403);
    // With several accounts `/wechat` names none of them.
    assert_eq!(
        push_plain(&format!("{base}/wechat"), PLAIN_TOKEN, &plain_scan)
            .await
            .0,
        404
    );
    assert_eq!(
        push_plain(&plain_url, PLAIN_TOKEN, &plain_scan).await,
        (200, "success".into())
    );
    // The safe account takes only encrypted pushes, encrypted by wechatpy with its key.
    assert_eq!(push_plain(&safe_url, SAFE_TOKEN, &safe_scan).await.0, 403);
    assert_eq!(
        push_safe(&safe_url, SAFE_TOKEN, SAFE_KEY, &safe_scan).await,
        (200, "success".into())
    );
    // The identical push at both webhooks is two accounts' events, not a duplicate.
    let same = scan_xml("SCAN", "o-both", "poster-x", "T-both", t);
    assert_eq!(push_plain(&plain_url, PLAIN_TOKEN, &same).await.0, 200);
    assert_eq!(
        push_safe(&safe_url, SAFE_TOKEN, SAFE_KEY, &same).await.0,
        200
    );
    // ... and WeChat's retry at one of them still is.
    assert_eq!(push_plain(&plain_url, PLAIN_TOKEN, &same).await.0, 200);

    let all = exactly(&mut everything, 4).await;
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.app_id.as_str(), e.openid.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (PLAIN_APP, "o-plain"),
            (SAFE_APP, "o-safe"),
            (PLAIN_APP, "o-both"),
            (SAFE_APP, "o-both"),
        ]
    );
    assert_eq!(all[1].ticket, safe_ticket);
    assert_eq!(all[1].scene, "poster-safe");
    let safe_events = exactly(&mut safe_only, 2).await;
    assert!(safe_events.iter().all(|e| e.app_id == SAFE_APP));
    // The caller allowed one account never sees the other's events.
    let theirs = exactly(&mut login, 2).await;
    assert!(theirs.iter().all(|e| e.app_id == PLAIN_APP), "{theirs:?}");

    // Statistics are per account too.
    let mut stats =
        wechat_qr::pb::channel_stats_service_client::ChannelStatsServiceClient::connect(format!(
            "http://{}",
            binary.grpc_addr
        ))
        .await
        .unwrap();
    let scenes = |page: pb::ListScenesResponse| -> Vec<String> {
        page.scenes.into_iter().map(|s| s.scene).collect()
    };
    let list = |account: &str| {
        as_caller(
            pb::ListScenesRequest {
                account: account.into(),
                ..Default::default()
            },
            OPS,
        )
    };
    assert_eq!(
        scenes(
            stats
                .list_scenes(list(SAFE_APP))
                .await
                .unwrap()
                .into_inner()
        ),
        ["poster-safe", "poster-x"]
    );
    assert_eq!(
        scenes(
            stats
                .list_scenes(list(PLAIN_APP))
                .await
                .unwrap()
                .into_inner()
        ),
        ["poster-plain", "poster-x"]
    );
    let status = stats.list_scenes(list("")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut login_list = list(SAFE_APP);
    login_list
        .metadata_mut()
        .insert("authorization", format!("Bearer {LOGIN}").parse().unwrap());
    let status = stats.list_scenes(login_list).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    binary.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn sighup_rotates_a_token_and_a_key_with_a_stream_open() {
    let upstream = fake_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("wechat-qr.toml");
    let sim = upstream.simulator_url();
    let old_keys = format!("encoding_aes_key = \"{SAFE_KEY}\"");
    write(&config_path, &file(&data, &sim, SAFE_TOKEN, &old_keys, ""));
    let binary = Binary::start(&config_path, &[]).await;
    let safe_url = format!("{}/wechat/{SAFE_APP}", binary.http_base());
    let mut events = stream(&binary, OPS, &[SAFE_APP]).await.unwrap();
    let scan = |openid: &str| scan_xml("SCAN", openid, "poster-safe", "T-safe", now());

    assert_eq!(
        push_safe(&safe_url, SAFE_TOKEN, SAFE_KEY, &scan("o-before"))
            .await
            .0,
        200
    );
    assert_eq!(
        push_safe(&safe_url, NEW_TOKEN, NEW_KEY, &scan("o-early"))
            .await
            .0,
        403
    );

    // Rotation, step one: the new token and key, the old ones still accepted.
    let rotating = format!(
        "encoding_aes_key = \"{NEW_KEY}\"\nprevious_encoding_aes_key = \"{SAFE_KEY}\"\nprevious_token = \"{SAFE_TOKEN}\""
    );
    write(&config_path, &file(&data, &sim, NEW_TOKEN, &rotating, ""));
    binary.signal("HUP");
    binary.logged("reloaded 2 account(s) and 2 client(s)").await;
    assert_eq!(
        push_safe(&safe_url, NEW_TOKEN, NEW_KEY, &scan("o-new"))
            .await
            .0,
        200
    );
    assert_eq!(
        push_safe(&safe_url, SAFE_TOKEN, SAFE_KEY, &scan("o-old"))
            .await
            .0,
        200,
        "pushes WeChat signed before it switched are still accepted"
    );

    // A reload that drops an account is refused as a whole: nothing changes.
    let without_plain =
        file(&data, &sim, "a-third-token", &rotating, "").replace(PLAIN_APP, "wxreplaced00000000");
    write(&config_path, &without_plain);
    binary.signal("HUP");
    binary
        .logged("adding or removing an account takes a restart")
        .await;
    assert_eq!(
        push_safe(&safe_url, NEW_TOKEN, NEW_KEY, &scan("o-kept"))
            .await
            .0,
        200
    );

    // Step two: the old token and key retired.
    let done = format!("encoding_aes_key = \"{NEW_KEY}\"");
    write(&config_path, &file(&data, &sim, NEW_TOKEN, &done, ""));
    binary.signal("HUP");
    binary
        .logged_times("reloaded 2 account(s) and 2 client(s)", 2)
        .await;
    assert_eq!(
        push_safe(&safe_url, SAFE_TOKEN, SAFE_KEY, &scan("o-retired"))
            .await
            .0,
        403
    );
    assert_eq!(
        push_safe(&safe_url, NEW_TOKEN, NEW_KEY, &scan("o-after"))
            .await
            .0,
        200
    );

    // The stream stayed open through all three reloads and missed nothing.
    let seen: Vec<String> = exactly(&mut events, 5)
        .await
        .into_iter()
        .map(|e| e.openid)
        .collect();
    assert_eq!(seen, ["o-before", "o-new", "o-old", "o-kept", "o-after"]);
    binary.stop().await;
    upstream.stop().await;
}

/// The value of `name{app_id="…"}` in the binary's `/metrics`.
async fn account_metric(binary: &Binary, name: &str, app_id: &str) -> f64 {
    let prefix = format!("{name}{{app_id=\"{app_id}\"}} ");
    let metrics = binary.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} not in /metrics:\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sighup_rotates_an_app_secret_and_base_urls_with_a_stream_and_a_call_open() {
    const NEW_SECRET: &str = "plain-app-secret-reset";
    const NEWEST_SECRET: &str = "plain-app-secret-moved";
    let upstream = fake_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("wechat-qr.toml");
    let secret_path = dir.path().join("plain-app-secret");
    write(&secret_path, PLAIN_SECRET);
    let sim_url = upstream.simulator_url();
    let keys = format!("encoding_aes_key = \"{SAFE_KEY}\"");
    // The plaintext account reads its AppSecret from a file, as from a Kubernetes secret.
    let with_secret_file = |upstream_url: &str| {
        file(&data, &sim_url, SAFE_TOKEN, &keys, "").replacen(
            &format!("app_secret = \"{PLAIN_SECRET}\"\ntoken = \"{PLAIN_TOKEN}\"\napi_base = \"{sim_url}\"\nmp_base = \"{sim_url}\""),
            &format!(
                "app_secret_file = \"{}\"\ntoken = \"{PLAIN_TOKEN}\"\napi_base = \"{upstream_url}\"\nmp_base = \"{upstream_url}\"",
                secret_path.display()
            ),
            1,
        )
    };
    let first = with_secret_file(&sim_url);
    assert!(first.contains("app_secret_file"), "{first}");
    write(&config_path, &first);
    let binary = Binary::start(&config_path, &[]).await;
    let plain_url = format!("{}/wechat/{PLAIN_APP}", binary.http_base());
    let mut events = stream(&binary, OPS, &[PLAIN_APP]).await.unwrap();
    let scan = |openid: &str| scan_xml("SCAN", openid, "poster-plain", "T-plain", now());
    let mut client = binary.client().await;
    let sim = upstream.simulator();

    assert_eq!(
        push_plain(&plain_url, PLAIN_TOKEN, &scan("o-before"))
            .await
            .0,
        200
    );
    let ticket = client
        .create_ticket(as_caller(ticket_request("before", PLAIN_APP), OPS))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    assert_eq!(sim.token_fetches_of(PLAIN_APP), 1);

    // An admin resets the AppSecret in WeChat's console; the token then dies. The old
    // secret is refused at once, and the log says which account needs the new one.
    assert!(sim.reset_secret(PLAIN_APP, NEW_SECRET));
    sim.invalidate_tokens();
    let refused = client
        .create_ticket(as_caller(ticket_request("refused", PLAIN_APP), OPS))
        .await
        .unwrap_err();
    assert!(refused.message().contains("40125"), "{refused:?}");
    binary
        .logged(&format!(
            "WeChat refused the AppSecret of account {PLAIN_APP}"
        ))
        .await;
    assert_eq!(
        account_metric(&binary, "wechat_qr_app_secret_rejected", PLAIN_APP).await,
        1.0
    );
    assert_eq!(
        account_metric(&binary, "wechat_qr_app_secret_rejected", SAFE_APP).await,
        0.0
    );
    assert!(
        !binary.log.lock().unwrap().contains(PLAIN_SECRET),
        "no secret in the log"
    );

    // A call in flight across the reload: an image download the simulator holds.
    sim.set_faults(wechat_qr::simulator::Faults {
        showqrcode_latency_ms: 1500,
        ..Default::default()
    });
    let images_before = sim.stats().image_requests;
    let in_flight = tokio::spawn({
        let mut client = client.clone();
        let request = pb::GetImageRequest {
            ticket: ticket.clone(),
            account: PLAIN_APP.into(),
            ..Default::default()
        };
        async move { client.get_image(as_caller(request, OPS)).await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim.stats().image_requests == images_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The new secret lands in the secret file; SIGHUP puts it in force.
    write(&secret_path, NEW_SECRET);
    binary.signal("HUP");
    binary
        .logged(&format!(
            "new upstream settings for {PLAIN_APP} (app_secret)"
        ))
        .await;
    let image = in_flight.await.unwrap().unwrap().into_inner();
    assert!(!image.image.is_empty(), "the call in flight finished");
    sim.set_faults(wechat_qr::simulator::Faults::default());

    // The next call fetches a token with the new secret.
    client
        .create_ticket(as_caller(ticket_request("after", PLAIN_APP), OPS))
        .await
        .unwrap();
    assert_eq!(sim.token_fetches_of(PLAIN_APP), 2);
    assert_eq!(
        account_metric(&binary, "wechat_qr_app_secret_rejected", PLAIN_APP).await,
        0.0
    );
    assert_eq!(
        push_plain(&plain_url, PLAIN_TOKEN, &scan("o-rotated"))
            .await
            .0,
        200
    );

    // The account moves to another WeChat endpoint with yet another secret: the base
    // URLs and the secret change together, and the next call goes there.
    let moved = {
        let mut cfg = common::config();
        cfg.simulator = true;
        cfg.event_log = wechat_qr::config::EventLogKind::Memory;
        cfg.accounts = vec![account(PLAIN_APP, NEWEST_SECRET, PLAIN_TOKEN, None)];
        common::TestService::start_with(cfg).await
    };
    write(&secret_path, NEWEST_SECRET);
    write(&config_path, &with_secret_file(&moved.simulator_url()));
    binary.signal("HUP");
    binary
        .logged(&format!(
            "new upstream settings for {PLAIN_APP} (app_secret, api_base, mp_base)"
        ))
        .await;
    client
        .create_ticket(as_caller(ticket_request("moved", PLAIN_APP), OPS))
        .await
        .unwrap();
    assert_eq!(moved.simulator().token_fetches_of(PLAIN_APP), 1);
    assert_eq!(moved.simulator().stats().qrcode_creates, 1);
    assert_eq!(
        sim.token_fetches_of(PLAIN_APP),
        2,
        "the old endpoint is not called"
    );

    // The stream stayed open through both reloads and missed nothing.
    assert_eq!(
        push_plain(&plain_url, PLAIN_TOKEN, &scan("o-moved"))
            .await
            .0,
        200
    );
    let seen: Vec<String> = exactly(&mut events, 3)
        .await
        .into_iter()
        .map(|e| e.openid)
        .collect();
    assert_eq!(seen, ["o-before", "o-rotated", "o-moved"]);
    binary.stop().await;
    moved.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn the_simulator_plays_wechat_for_several_accounts() {
    let service = fake_upstream().await;
    let mut client = service.client().await;
    let mut events = client
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut tickets = Vec::new();
    for app_id in [PLAIN_APP, SAFE_APP] {
        tickets.push(
            client
                .create_ticket(ticket_request(&format!("scene-{app_id}"), app_id))
                .await
                .unwrap()
                .into_inner()
                .ticket,
        );
    }
    let sim = service.simulator();
    assert_eq!(sim.token_fetches_of(PLAIN_APP), 1);
    assert_eq!(sim.token_fetches_of(SAFE_APP), 1);
    // Each scan goes to its account's webhook, signed (and for the safe account,
    // encrypted) with that account's keys.
    for ticket in &tickets {
        let reports = sim
            .scan(&wechat_qr::simulator::ScanRequest {
                ticket: ticket.clone(),
                openid: "o-sim".into(),
                new_follower: true,
                deliveries: None,
            })
            .await
            .unwrap();
        assert_eq!(reports.len(), 1);
    }
    let got = exactly(&mut events, 2).await;
    assert_eq!(
        got.iter()
            .map(|e| (e.app_id.as_str(), e.scene.clone()))
            .collect::<Vec<_>>(),
        [
            (PLAIN_APP, format!("scene-{PLAIN_APP}")),
            (SAFE_APP, format!("scene-{SAFE_APP}")),
        ]
    );
    service.stop().await;
}

#[tokio::test]
async fn a_data_directory_serves_any_set_of_accounts_that_includes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |accounts: Vec<AccountConfig>| {
        let mut cfg = config();
        cfg.simulator = true;
        cfg.data_dir = data.clone();
        cfg.accounts = accounts;
        cfg
    };
    let plain = || account(PLAIN_APP, PLAIN_SECRET, PLAIN_TOKEN, None);
    let safe = || account(SAFE_APP, SAFE_SECRET, SAFE_TOKEN, Some(SAFE_KEY));
    let first = TestService::start_with(start(vec![plain()])).await;
    first.stop().await;
    // The store belongs to the plaintext account; adding one (first or not) is fine.
    let both = TestService::start_with(start(vec![safe(), plain()])).await;
    both.stop().await;
    // A set without it is another deployment's directory.
    let settings = start(vec![safe()]).resolve().unwrap();
    let refused = wechat_qr::app::start(settings, tokio_util::sync::CancellationToken::new())
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(PLAIN_APP) && refused.contains("not among the configured accounts"),
        "{refused}"
    );
}

#[tokio::test]
async fn one_accounts_outage_leaves_the_other_serving() {
    let upstream = fake_upstream().await;
    let mut cfg = config();
    cfg.upstream_attempts = 1;
    cfg.upstream_timeout_ms = 2_000;
    let sim = upstream.simulator_url();
    let mut plain = account(PLAIN_APP, PLAIN_SECRET, PLAIN_TOKEN, None);
    plain.api_base = Some(sim.clone());
    plain.mp_base = Some(sim);
    // Nothing listens on the discard port: this account's WeChat is unreachable.
    let mut safe = account(SAFE_APP, SAFE_SECRET, SAFE_TOKEN, Some(SAFE_KEY));
    safe.api_base = Some("http://127.0.0.1:9".into());
    safe.mp_base = Some("http://127.0.0.1:9".into());
    cfg.accounts = vec![plain, safe];
    cfg.permanent_store = Some(tempfile::tempdir().unwrap().path().join("none.jsonl"));
    let service = TestService::start_with(cfg).await;
    let mut client = service.client().await;
    let down = client
        .create_ticket(ticket_request("s", SAFE_APP))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    for scene in ["a", "b"] {
        client
            .create_ticket(ticket_request(scene, PLAIN_APP))
            .await
            .expect("the other account keeps minting");
    }
    assert_eq!(upstream.simulator().token_fetches_of(PLAIN_APP), 1);
    service.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn the_replay_guard_keeps_each_accounts_nonces_apart() {
    let mut cfg = config();
    cfg.simulator = true;
    const OTHER_APP: &str = "wxother00000000c3";
    cfg.accounts = vec![
        account(PLAIN_APP, PLAIN_SECRET, PLAIN_TOKEN, None),
        account(OTHER_APP, "other-secret", PLAIN_TOKEN, None),
    ];
    let service = TestService::start_with(cfg).await;
    let base = service.webhook_url.clone();
    let ts = now().to_string();
    let query = signed_query(PLAIN_TOKEN, &ts, "shared-nonce");
    let t = now();
    let first = scan_xml("SCAN", "o-1", "p", "T1", t);
    let second = scan_xml("SCAN", "o-2", "p", "T2", t);
    // The same (timestamp, nonce) at two accounts' webhooks: two pushes, both taken.
    assert_eq!(
        post(&format!("{base}/{PLAIN_APP}"), &query, first.clone().into()).await,
        (200, "success".into())
    );
    assert_eq!(
        post(
            &format!("{base}/{OTHER_APP}"),
            &query,
            second.clone().into()
        )
        .await,
        (200, "success".into())
    );
    // Within one account it is still a captured query carrying another body.
    assert_eq!(
        post(&format!("{base}/{PLAIN_APP}"), &query, second.into())
            .await
            .0,
        403
    );
    // And WeChat's retry of the first is still taken (and de-duplicated).
    assert_eq!(
        post(&format!("{base}/{PLAIN_APP}"), &query, first.into()).await,
        (200, "success".into())
    );
    service.stop().await;
}

#[tokio::test]
async fn a_file_with_simulator_true_runs_its_accounts_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("wechat-qr.toml");
    write(
        &config_path,
        &format!(
            r#"grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
simulator_addr = "127.0.0.1:0"
data_dir = "{}"
simulator = true

[[accounts]]
app_id = "{PLAIN_APP}"
app_secret = "{PLAIN_SECRET}"
token = "{PLAIN_TOKEN}"

[[accounts]]
app_id = "{SAFE_APP}"
app_secret = "{SAFE_SECRET}"
token = "{SAFE_TOKEN}"
encoding_aes_key = "{SAFE_KEY}"
"#,
            dir.path().join("data").display()
        ),
    );
    let binary = Binary::start(&config_path, &[]).await;
    binary.logged("simulator_url=").await;
    let simulator = common::binary::logged_field(
        binary
            .log_lines()
            .iter()
            .find(|l| l.contains("simulator_url="))
            .unwrap(),
        "simulator_url",
    )
    .unwrap();
    let mut client = binary.client().await;
    let mut events = client
        .stream_events(pb::StreamEventsRequest {
            accounts: vec![SAFE_APP.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ticket = client
        .create_ticket(ticket_request("from-the-cli", SAFE_APP))
        .await
        .unwrap()
        .into_inner()
        .ticket;
    // The README's command: the simulator pushes the scan to the safe account's own
    // webhook, encrypted with its key.
    let scan = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .args([
            "simulate-scan",
            "--simulator",
            &simulator,
            "--ticket",
            &ticket,
            "--openid",
            "o-cli",
            "--new-follower",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let got = exactly(&mut events, 1).await;
    assert_eq!(
        (
            got[0].app_id.as_str(),
            got[0].scene.as_str(),
            got[0].openid.as_str()
        ),
        (SAFE_APP, "from-the-cli", "o-cli")
    );
    binary.stop().await;
}
