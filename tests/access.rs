//! Authenticated, encrypted gRPC through the real binary and a configuration file:
//! `[[clients]]` with bearer tokens (missing or unknown → UNAUTHENTICATED; a method, the
//! account or a permanent code not allowed → PERMISSION_DENIED naming it), the permanent
//! budget refusing before any upstream call and holding across a restart, SIGHUP adding a
//! client while a stream stays open (and refusing an invalid file), and the real grpcurl
//! over TLS and mTLS with a CA and certificates made by `openssl` at test time — a client
//! without a certificate refused, one with a certificate identified by its subject.

mod common;

use std::{path::Path, time::Duration};

use common::{TestService, binary::Binary, scan_xml, signed_query};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, transport::Channel};
use wechat_qr::pb::{self, create_ticket_request::Scene};

const WEBHOOK_TOKEN: &str = "access-webhook-token";

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A request carrying `authorization: Bearer <token>` (none for `None`).
fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn temporary(scene: &str) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(Scene::SceneStr(scene.into())),
        expire_seconds: 60,
        ..Default::default()
    }
}

fn permanent(id: u32) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(Scene::SceneId(id)),
        permanent: true,
        ..Default::default()
    }
}

/// The settings every test's file starts with: port 0 everywhere, a data directory, and
/// the account served by `upstream`'s simulator as "WeChat".
fn server_settings(data: &Path, upstream: &TestService, budget: Option<u64>) -> String {
    let sim = upstream.simulator_url();
    let budget = budget.map_or_else(String::new, |b| format!("permanent_budget = {b}\n"));
    format!(
        r#"grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
data_dir = "{}"

[[accounts]]
app_id = "{}"
app_secret = "{}"
token = "{WEBHOOK_TOKEN}"
api_base = "{sim}"
mp_base = "{sim}"
{budget}"#,
        data.display(),
        wechat_qr::config::dev::APP_ID,
        wechat_qr::config::dev::APP_SECRET,
    )
}

fn client_table(name: &str, token: &str, extra: &str) -> String {
    format!(
        "\n[[clients]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n{extra}",
        sha256_hex(token)
    )
}

#[tokio::test]
async fn every_refusal_and_the_permanent_budget() {
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = server_settings(&dir.path().join("data"), &upstream, Some(1));
    text.push_str(&client_table("ops", "ops-token", "permanent = true\n"));
    text.push_str(&client_table(
        "login",
        "login-token",
        "methods = [\"CreateTicket\", \"StreamEvents\"]\n",
    ));
    text.push_str(&client_table("nobody", "nobody-token", "accounts = []\n"));
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(&config, &text).unwrap();
    let binary = Binary::start(&config, &[]).await;
    let mut client = binary.client().await;
    let code_and_message =
        |result: Result<tonic::Response<pb::CreateTicketResponse>, tonic::Status>| {
            let status = result.unwrap_err();
            (status.code(), status.message().to_owned())
        };

    // Missing and unknown tokens, on a unary call and on the pre-encoded stream route.
    let (code, message) =
        code_and_message(client.create_ticket(with_token(temporary("a"), None)).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("authorization: Bearer"), "{message}");
    let (code, message) = code_and_message(
        client
            .create_ticket(with_token(temporary("a"), Some("guessed")))
            .await,
    );
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("unknown token"), "{message}");
    let refused = client
        .stream_events(with_token(pb::StreamEventsRequest::default(), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // A method, the account, a permanent code not allowed: each named.
    let denied = client
        .get_image(with_token(
            pb::GetImageRequest {
                ticket: "t".into(),
                url_only: true,
                ..Default::default()
            },
            Some("login-token"),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("method GetImage"), "{denied:?}");
    let (code, message) = code_and_message(
        client
            .create_ticket(with_token(permanent(1), Some("login-token")))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("permanent"), "{message}");
    let (code, message) = code_and_message(
        client
            .create_ticket(with_token(temporary("a"), Some("nobody-token")))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(
        message.contains(&format!("account {}", wechat_qr::config::dev::APP_ID)),
        "{message}"
    );
    let refused = client
        .stream_events(with_token(
            pb::StreamEventsRequest::default(),
            Some("nobody-token"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        upstream.simulator().stats().qrcode_creates,
        0,
        "no refused call reached WeChat"
    );

    // Allowed: a temporary code for login; its stream sees the account's events.
    let ticket = client
        .create_ticket(with_token(temporary("allowed"), Some("login-token")))
        .await
        .unwrap()
        .into_inner();
    let mut stream = client
        .stream_events(with_token(
            pb::StreamEventsRequest::default(),
            Some("login-token"),
        ))
        .await
        .unwrap()
        .into_inner();
    push_scan(&binary, &ticket.ticket, "o-allowed").await;
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event.unwrap().openid, "o-allowed");

    // The budget of one: the first scene mints, asking again spends nothing, a second
    // scene is refused before WeChat is called.
    let first = client
        .create_ticket(with_token(permanent(1), Some("ops-token")))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_ticket(with_token(permanent(1), Some("ops-token")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.ticket, again.ticket);
    let creates = upstream.simulator().stats().qrcode_creates;
    let (code, message) = code_and_message(
        client
            .create_ticket(with_token(permanent(2), Some("ops-token")))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("permanent budget"), "{message}");
    assert_eq!(
        upstream.simulator().stats().qrcode_creates,
        creates,
        "refused before any upstream call"
    );

    // Health and reflection stay open; the client names reach /metrics and the log.
    let metrics = binary.metrics().await;
    for line in [
        r#"wechat_qr_grpc_client_requests_total{client="login",code="PERMISSION_DENIED",method="GetImage"} 1"#,
        r#"wechat_qr_grpc_client_requests_total{client="",code="UNAUTHENTICATED",method="CreateTicket"} 2"#,
        r#"wechat_qr_grpc_client_requests_total{client="ops",code="RESOURCE_EXHAUSTED",method="CreateTicket"} 1"#,
        "wechat_qr_permanent_codes_minted_total{app_id=\"wx0000000000devsim\"} 1",
        "wechat_qr_permanent_budget_remaining{app_id=\"wx0000000000devsim\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    binary.logged(r#"grpc{client="login"}:create_ticket"#).await;
    let health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{}", binary.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .check(tonic_health::pb::HealthCheckRequest::default())
    .await;
    assert!(health.is_ok(), "{health:?}");
    binary.stop().await;

    // The budget holds across a restart: the minted code is counted from the store.
    let binary = Binary::start(&config, &[]).await;
    let mut client = binary.client().await;
    let (code, _) = code_and_message(
        client
            .create_ticket(with_token(permanent(3), Some("ops-token")))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted);
    let again = client
        .create_ticket(with_token(permanent(1), Some("ops-token")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.ticket, first.ticket, "a minted scene still answers");
    binary.stop().await;
}

async fn push_scan(binary: &Binary, ticket: &str, openid: &str) {
    let nonce = format!("n{}", rand::random::<u64>());
    let query = signed_query(WEBHOOK_TOKEN, &common::now().to_string(), &nonce);
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}?{query}", binary.webhook_url))
        .body(scan_xml("SCAN", openid, "s", ticket, common::now()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn sighup_adds_a_client_while_a_stream_stays_open_and_refuses_an_invalid_file() {
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = server_settings(&dir.path().join("data"), &upstream, None);
    let config = dir.path().join("wechat-qr.toml");
    let first = format!("{base}{}", client_table("ops", "ops-token", ""));
    std::fs::write(&config, &first).unwrap();
    let binary = Binary::start(&config, &[]).await;
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(with_token(
            pb::StreamEventsRequest::default(),
            Some("ops-token"),
        ))
        .await
        .unwrap()
        .into_inner();
    let late = client
        .create_ticket(with_token(temporary("late"), Some("late-token")))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::Unauthenticated);

    // A new client, and the old one's token changed.
    std::fs::write(
        &config,
        format!(
            "{base}{}{}",
            client_table("ops", "ops-token-2", ""),
            client_table("late", "late-token", "")
        ),
    )
    .unwrap();
    binary.signal("HUP");
    binary.logged("SIGHUP: reloaded").await;
    let ticket = client
        .create_ticket(with_token(temporary("late"), Some("late-token")))
        .await
        .unwrap()
        .into_inner();
    let old = client
        .create_ticket(with_token(temporary("old"), Some("ops-token")))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "the old token is gone");

    // The stream opened before the reload still delivers.
    push_scan(&binary, &ticket.ticket, "o-across-reload").await;
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event.unwrap().openid, "o-across-reload");

    // An invalid file is refused and logged; the clients loaded before keep serving.
    std::fs::write(
        &config,
        format!("{base}\n[[clients]]\nname = \"broken\"\ntoken_sha256 = \"not-hex\"\n"),
    )
    .unwrap();
    binary.signal("HUP");
    binary.logged("SIGHUP: reload refused").await;
    binary.logged("clients[0].token_sha256").await;
    client
        .create_ticket(with_token(temporary("still"), Some("late-token")))
        .await
        .expect("the previous clients keep serving");
    binary.stop().await;
}

async fn grpcurl(dir: &Path, args: &[&str]) -> (bool, String) {
    // The repo's .venv/bin first, where ./scripts/test installs grpcurl.
    let mut path = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin")];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let output = tokio::process::Command::new("grpcurl")
        .args(args)
        .env("PATH", std::env::join_paths(path).unwrap())
        .current_dir(dir)
        .output()
        .await
        .expect("grpcurl on the PATH (.venv/bin; ./scripts/test installs it)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn grpcurl_over_tls_and_mtls_with_certificates_made_at_test_time() {
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    common::certificates(dir.path(), "client", "robot");
    let certs = dir.path().to_owned();
    let base = server_settings(&dir.path().join("data"), &upstream, None);
    let tls = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    );
    let config = dir.path().join("tls.toml");
    std::fs::write(
        &config,
        format!("{tls}{base}{}", client_table("ops", "ops-token", "")),
    )
    .unwrap();
    let binary = Binary::start(&config, &[]).await;
    let addr = binary.grpc_addr.clone();
    let call = r#"{"scene_str": "tls", "expire_seconds": 60}"#;
    let (ok, out) = grpcurl(
        dir.path(),
        &[
            "-cacert",
            "ca.pem",
            "-H",
            "authorization: Bearer ops-token",
            "-d",
            call,
            &addr,
            "wechat.qr.v1.QrService/CreateTicket",
        ],
    )
    .await;
    assert!(ok && out.contains("\"ticket\""), "{out}");
    let (ok, out) = grpcurl(
        dir.path(),
        &[
            "-cacert",
            "ca.pem",
            "-d",
            call,
            &addr,
            "wechat.qr.v1.QrService/CreateTicket",
        ],
    )
    .await;
    assert!(!ok && out.contains("Unauthenticated"), "{out}");
    let (ok, out) = grpcurl(dir.path(), &["-plaintext", &addr, "list"]).await;
    assert!(!ok, "plaintext refused on a TLS port: {out}");
    binary.stop().await;

    // mTLS: a connection without a certificate fails its handshake; the robot's
    // certificate names its client by subject, with no token.
    let config = dir.path().join("mtls.toml");
    std::fs::write(
        &config,
        format!(
            "{tls}client_ca = \"{}\"\n{base}\n[[clients]]\nname = \"robot\"\nsubject = \"robot\"\n",
            certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let binary = Binary::start(&config, &[]).await;
    let addr = binary.grpc_addr.clone();
    let (ok, out) = grpcurl(dir.path(), &["-cacert", "ca.pem", &addr, "list"]).await;
    assert!(!ok, "no client certificate, no connection: {out}");
    let (ok, out) = grpcurl(
        dir.path(),
        &[
            "-cacert",
            "ca.pem",
            "-cert",
            "client.pem",
            "-key",
            "client.key",
            "-d",
            call,
            &addr,
            "wechat.qr.v1.QrService/CreateTicket",
        ],
    )
    .await;
    assert!(ok && out.contains("\"ticket\""), "{out}");
    let metrics = binary.metrics().await;
    assert!(
        metrics.contains(
            r#"wechat_qr_grpc_client_requests_total{client="robot",code="OK",method="CreateTicket"} 1"#
        ),
        "{metrics}"
    );
    binary.stop().await;
}

#[tokio::test]
async fn a_client_for_an_account_not_served_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(
        &config,
        format!(
            "grpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
             simulator_addr = \"127.0.0.1:0\"\nevent_log = \"memory\"\n{}",
            client_table("elsewhere", "t", "accounts = [\"wxsomebodyelse\"]\n")
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .arg("--config")
        .arg(&config)
        .env_remove("WECHAT_APP_ID")
        .env_remove("WECHAT_APP_SECRET")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("clients[0].accounts: wxsomebodyelse is not a served account"),
        "{err}"
    );
}

/// A unary gRPC-Web call to the console's endpoint on the admin listener, as the page
/// makes it: the grpc-status of its answer (from the headers, or the trailers frame).
async fn console_create_ticket(binary: &Binary, token: Option<&str>) -> String {
    use prost::Message;
    let payload = temporary("console").encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&payload);
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!(
            "{}/wechat.qr.v1.QrService/CreateTicket",
            binary.admin_url
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let bytes = response.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    text.split("grpc-status:")
        .nth(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_web_console_is_no_way_around_the_caller_check() {
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = server_settings(&dir.path().join("data"), &upstream, None);
    text.push_str(&client_table("ops", "ops-token", ""));
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(&config, &text).unwrap();
    let binary = Binary::start(&config, &[]).await;
    assert_eq!(
        console_create_ticket(&binary, None).await,
        "16",
        "UNAUTHENTICATED without a token"
    );
    assert_eq!(console_create_ticket(&binary, Some("guessed")).await, "16");
    assert_eq!(
        console_create_ticket(&binary, Some("ops-token")).await,
        "0",
        "a known client's token passes through gRPC-Web too"
    );
}
