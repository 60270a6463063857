//! The web console when gRPC callers must authenticate: the real binary, started with a
//! configuration file that has two `[[clients]]` (one allowed every method, one only
//! `GetImage`), and the page in real headless Chromium (`tests/console/console_auth.test.mjs`,
//! on `playwright-core`): it asks for a token, a wrong one keeps it asking, the full
//! client's token mints a code and shows its live event after a scan this test pushes to
//! the webhook, and the limited client's token shows PERMISSION_DENIED naming the
//! permission. With real credentials configured the binary runs no simulator: the account's
//! `api_base`/`mp_base` point at another service's simulator, as in `tests/access.rs`.
//! A missing Node, `node_modules/` or Chromium is a failure, never a skip.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use common::{
    TestService,
    binary::Binary,
    browser::{chromium, node_with_playwright, repo},
    scan_xml, signed_query,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The whole browser run: Chromium starts, the page is driven through every step.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
const WEBHOOK_TOKEN: &str = "console-auth-webhook-token";
const FULL_TOKEN: &str = "console-full-token";
const LIMITED_TOKEN: &str = "console-limited-token";

fn client_table(name: &str, token: &str, extra: &str) -> String {
    format!(
        "\n[[clients]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n{extra}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

/// A signed `SCAN` push of `ticket`, as WeChat sends it.
async fn push_scan(webhook_url: &str, ticket: &str, scene: &str, openid: &str) {
    let nonce = format!("n{}", rand::random::<u64>());
    let query = signed_query(WEBHOOK_TOKEN, &common::now().to_string(), &nonce);
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{webhook_url}?{query}"))
        .body(scan_xml("SCAN", openid, scene, ticket, common::now()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_a_token_and_shows_only_what_it_allows() {
    let chromium = chromium();
    let node = node_with_playwright();
    let upstream = TestService::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = upstream.simulator_url();
    let mut text = format!(
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
"#,
        dir.path().join("data").display(),
        wechat_qr::config::dev::APP_ID,
        wechat_qr::config::dev::APP_SECRET,
    );
    text.push_str(&client_table("console-full", FULL_TOKEN, ""));
    text.push_str(&client_table(
        "console-limited",
        LIMITED_TOKEN,
        "methods = [\"GetImage\"]\n",
    ));
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(&config, &text).unwrap();
    let binary = Binary::start(&config, &[]).await;
    let (webhook_url, admin_url) = (binary.webhook_url.clone(), binary.admin_url.clone());

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "console-auth-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    ));
    std::fs::create_dir_all(&out).unwrap();
    let mut node = tokio::process::Command::new(node)
        .arg(repo().join("tests/console/console_auth.test.mjs"))
        .current_dir(repo())
        .env("CONSOLE_URL", format!("{admin_url}/console/"))
        .env("OUT_DIR", &out)
        .env("CHROMIUM", &chromium)
        .env("FULL_TOKEN", FULL_TOKEN)
        .env("LIMITED_TOKEN", LIMITED_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().unwrap();
    let mut stdout_lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stderr = node.stderr.take().unwrap();
    let run = async {
        let mut stdout = String::new();
        let mut pushed = false;
        while let Some(line) = stdout_lines.next_line().await.unwrap() {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("ticket=") {
                let (ticket, scene) = rest.split_once(" scene=").expect("ticket= scene=");
                push_scan(&webhook_url, ticket, scene, "oConsoleAuth").await;
                stdin.write_all(b"pushed\n").await.unwrap();
                pushed = true;
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        (node.wait().await.unwrap(), stdout, err, pushed)
    };
    let (status, stdout, stderr, pushed) = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .expect("the browser test finishes in time");
    assert!(
        status.success(),
        "console auth test failed ({status}); screenshots in {}\n{stdout}\n{stderr}",
        out.display()
    );
    assert!(pushed, "the page never showed a code to scan");
    for shot in ["token-prompt", "codes-with-token", "permission-denied"] {
        let shot = out.join(format!("{shot}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is a screenshot",
            shot.display()
        );
    }
    binary.kill9().await;
    upstream.stop().await;
}
