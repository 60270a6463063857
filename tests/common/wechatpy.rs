//! WeChat's safe-mode crypto done by wechatpy (tests/wechatpy_crypto.py), an
//! implementation we did not write, with the Python the README's test command installs.
//! Missing wechatpy is a failure, never a skip.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{now, wechat_signature};

/// Runs tests/wechatpy_crypto.py with `args`, `stdin` as its input; its output.
pub async fn run(args: &[&str], stdin: &str) -> String {
    run_script("wechatpy_crypto.py", args, stdin).await
}

/// Runs the wechatpy helper `script` in tests/ with `args`, `stdin` as its input; its
/// output.
pub async fn run_script(script: &str, args: &[&str], stdin: &str) -> String {
    let python = std::env::var("WECHAT_QR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} not runnable: {e}; run ./scripts/test"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    // Closed, so the script sees the end of its input.
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "wechatpy failed (run ./scripts/test to install it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Encrypts `xml` with wechatpy and returns the query string and body WeChat would send.
pub async fn push(token: &str, key: &str, app_id: &str, xml: &str) -> (String, Vec<u8>) {
    let ts = now().to_string();
    let nonce = &rand::random::<u32>().to_string();
    let sealed: serde_json::Value =
        serde_json::from_str(&run(&["encrypt", token, key, app_id, nonce, &ts], xml).await)
            .unwrap();
    let encrypt = sealed["encrypt"].as_str().unwrap();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid=o&encrypt_type=aes&msg_signature={}",
        wechat_signature(&[token, &ts, nonce]),
        sealed["msg_signature"].as_str().unwrap()
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    (query, body.into_bytes())
}
