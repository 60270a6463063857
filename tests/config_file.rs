//! The configuration file, through the real binary: `check-config` prints the effective
//! configuration with every secret redacted and says where each setting came from; an
//! invalid file stops the start with the key path and the reason; the environment
//! overrides the file; secrets come inline, from a file or from a named variable; a
//! service configured only by a file serves its account.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use common::{TestService, scan_xml, signed_query};
use tokio::io::{AsyncBufReadExt, BufReader};
use wechat_qr::pb;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// The binary with a clean environment plus `env`.
fn binary(env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    for (key, _) in std::env::vars() {
        if key.starts_with("WECHAT_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), binary(env).args(args).output())
        .await
        .expect("exits promptly")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn check_config_prints_the_effective_configuration_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = write(dir.path(), "aes.key", &format!("{KEY}\n"));
    let config = write(
        dir.path(),
        "wechat-qr.toml",
        &format!(
            r#"
grpc_addr = "127.0.0.1:50999"
retain_events = 5000
replay_window_seconds = 120
redis_url = "rediss://:the-redis-password@redis.internal:6380/0"

[[accounts]]
app_id = "wxfile0000000001"
app_secret_env = "TEST_APP_SECRET"
token = "inline-token-x"
encoding_aes_key_file = "{secret_file}"
encrypt_mode = "safe"
original_id = "gh_file"
"#
        ),
    );
    let (ok, out, err) = run(
        &["check-config", &config],
        &[
            ("TEST_APP_SECRET", "the-app-secret-value"),
            ("WECHAT_QR_RETAIN_EVENTS", "777"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(r#"grpc_addr = "127.0.0.1:50999"  # file"#),
        "{out}"
    );
    assert!(
        out.contains(r#"retain_events = "777"  # environment"#),
        "the environment overrides the file:\n{out}"
    );
    assert!(
        out.contains(r#"replay_window_seconds = "120"  # file"#),
        "{out}"
    );
    assert!(
        out.contains(r#"http_addr = "127.0.0.1:8080"  # default"#),
        "{out}"
    );
    assert!(out.contains(r#"app_id = "wxfile0000000001""#), "{out}");
    assert!(out.contains(r#"encrypt_mode = "safe""#), "{out}");
    assert!(
        out.contains(r#"redis_url = "rediss://:***@redis.internal:6380/0"  # file"#),
        "which Redis, without its password:\n{out}"
    );
    for secret in [
        "the-app-secret-value",
        "inline-token-x",
        KEY,
        "the-redis-password",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed:\n{out}"
        );
    }
    assert!(out.contains(r#"app_secret = "<redacted>""#), "{out}");

    // The same file through --config / WECHAT_QR_CONFIG.
    let (ok, out, _) = run(
        &["check-config"],
        &[
            ("WECHAT_QR_CONFIG", config.as_str()),
            ("TEST_APP_SECRET", "s"),
        ],
    )
    .await;
    assert!(ok && out.contains("is valid"), "{out}");
}

#[tokio::test]
async fn an_invalid_file_names_the_key_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a short EncodingAESKey in the second account",
            r#"
[[accounts]]
app_id = "wxa"
app_secret = "a"
[[accounts]]
app_id = "wxb"
app_secret = "b"
encoding_aes_key = "too-short"
"#
            .to_owned(),
            "accounts[1].encoding_aes_key: must be 43 characters",
        ),
        (
            "an unknown setting",
            "grpc_adr = \"127.0.0.1:1\"\n".to_owned(),
            "grpc_adr: unknown setting",
        ),
        (
            "an account setting at the top",
            "app_secret = \"x\"\n".to_owned(),
            "app_secret: an account setting: put it in an [[accounts]] table",
        ),
        (
            "a value the flag refuses",
            "retain_events = \"many\"\n".to_owned(),
            "invalid value 'many'",
        ),
        (
            "a secret from a missing variable",
            "[[accounts]]\napp_id = \"wxa\"\napp_secret_env = \"NO_SUCH_VARIABLE_HERE\"\n"
                .to_owned(),
            "accounts[0].app_secret: the environment variable NO_SUCH_VARIABLE_HERE is not set",
        ),
        (
            "a secret given twice",
            "[[accounts]]\napp_id = \"wxa\"\napp_secret = \"a\"\napp_secret_env = \"HOME\"\n"
                .to_owned(),
            "accounts[0].app_secret: give the value, `_file` or `_env`, not several",
        ),
        (
            "a client with a token instead of its hash",
            "[[clients]]\nname = \"login\"\ntoken_sha256 = \"plain-token\"\n".to_owned(),
            "clients[0].token_sha256: must be the SHA-256 of the token in hex",
        ),
        (
            "a client with neither a token nor a certificate subject",
            "[[clients]]\nname = \"login\"\n".to_owned(),
            "clients[0]: needs token_sha256 (a bearer token) or subject",
        ),
        (
            "a permanent budget at the top",
            "permanent_budget = 5\n".to_owned(),
            "permanent_budget: an account setting",
        ),
        ("not TOML", "grpc_addr = \n".to_owned(), "line 1"),
    ];
    for (name, text, expected) in cases {
        let config = write(dir.path(), "bad.toml", &text);
        let (ok, _, err) = run(&["--config", &config], &[]).await;
        assert!(!ok, "{name}: the start must fail");
        assert!(
            err.contains(expected) && err.contains(&config),
            "{name}: expected {expected:?} naming the file, got {err}"
        );
        let (ok, _, check) = run(&["check-config", &config], &[]).await;
        assert!(
            !ok && check.contains(expected),
            "{name}: check-config: {check}"
        );
    }
}

#[tokio::test]
async fn a_service_configured_by_a_file_serves_its_account() {
    // The "real WeChat" is another service's simulator.
    let upstream = TestService::start().await;
    let sim = upstream.simulator_url();
    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "token", "file-webhook-token\n");
    let data = dir.path().join("data");
    let config = write(
        dir.path(),
        "wechat-qr.toml",
        &format!(
            r#"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
data_dir = "{}"

[[accounts]]
app_id = "{}"
app_secret = "{}"
token_file = "{token_file}"
api_base = "{sim}"
mp_base = "{sim}"
"#,
            data.display(),
            wechat_qr::config::dev::APP_ID,
            wechat_qr::config::dev::APP_SECRET,
        ),
    );
    let mut child = binary(&[])
        .args(["--config", &config])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut grpc, mut webhook, mut log) = (None, None, String::new());
    while grpc.is_none() || webhook.is_none() || !log.contains("mode=") {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no addresses:\n{log}"))
            .unwrap()
            .unwrap_or_else(|| panic!("exited:\n{log}"));
        let value = |key: &str| {
            line.split(&format!("{key}="))
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        };
        grpc = grpc.or_else(|| value("grpc_addr"));
        webhook = webhook.or_else(|| value("webhook_url"));
        log.push_str(&line);
        log.push('\n');
    }
    assert!(
        log.contains(r#"mode="wechat""#),
        "real credentials, not the simulator:\n{log}"
    );
    assert!(
        data.join(wechat_qr::events::STORE_FILE).exists(),
        "data_dir from the file"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut client =
        pb::qr_service_client::QrServiceClient::connect(format!("http://{}", grpc.unwrap()))
            .await
            .unwrap();
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr(
                "from-file".into(),
            )),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        upstream.simulator().stats().qrcode_creates,
        1,
        "minted upstream"
    );
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            tickets: vec![ticket.ticket.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Signed with the token from token_file (its trailing newline is not part of it).
    let query = signed_query("file-webhook-token", &common::now().to_string(), "nf1");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = http
        .post(format!("{}?{query}", webhook.unwrap()))
        .body(scan_xml(
            "SCAN",
            "o-file",
            "from-file",
            &ticket.ticket,
            common::now(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event.unwrap().openid, "o-file");
}

#[tokio::test]
async fn accounts_in_the_file_and_the_environment_at_once_are_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "[[accounts]]\napp_id = \"wxa\"\napp_secret = \"a\"\n[[accounts]]\napp_id = \"wxb\"\napp_secret = \"b\"\n".to_owned(),
            "also by --app-id",
        ),
        (
            "[[accounts]]\napp_id = \"wxa\"\napp_secret = \"a\"\ntoken = \"tok\"\n".to_owned(),
            "also by --app-id",
        ),
    ] {
        let config = write(dir.path(), "c.toml", &text);
        let (ok, _, err) = run(&["--config", &config], &[("WECHAT_APP_ID", "wxenv")]).await;
        assert!(!ok && err.contains(expected), "{expected}: {err}");
    }
}
