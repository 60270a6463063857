//! The real binary on a data directory of the test's choosing: started, pushed to, and
//! read back whole — what the durability and log-store tests share.

use std::{path::Path, time::Duration};

use wechat_qr::pb;

use super::binary::Binary;

/// The real binary, started on loopback port 0 with its own data directory.
pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Binary {
    Binary::spawn(command(data_dir, env)).await
}

/// The binary with a clean environment, every listener on port 0, and `data_dir`.
pub fn command(data_dir: &Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut command = Binary::command();
    command
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", data_dir)
        .envs(env.iter().copied());
    command
}

/// POSTs a push to the webhook: its status and body, `None` when the connection failed.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    body: &str,
) -> Option<(u16, String)> {
    let response = http
        .post(format!("{url}?{query}"))
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The log's epoch (the first 8 characters of a cursor), learnt by subscribing and then
/// sending the push `query` + `body`: the cursor the subscriber receives carries it.
pub async fn epoch_by_push(binary: &Binary, query: &str, body: &str) -> String {
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    post(&http, &binary.webhook_url, query, body).await;
    stream.message().await.unwrap().unwrap().cursor[..8].to_owned()
}

/// Every event the log holds, oldest first, read over StreamEvents from before the
/// first event, with the cursor of each.
pub async fn whole_log(binary: &Binary, epoch: &str) -> Vec<(String, String)> {
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: format!("{epoch}{:016x}", 0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Ok(Ok(Some(response))) =
        tokio::time::timeout(Duration::from_millis(700), stream.message()).await
    {
        events.push((response.event.unwrap().openid, response.cursor));
    }
    events
}

/// Bytes of the event store in `dir`: the log's segments (as allocated) and the store
/// file beside them. The channel statistics grow with the number of distinct users, by
/// design, and have their own retention.
pub fn event_store_bytes(dir: &Path) -> u64 {
    let segments: u64 = std::fs::read_dir(dir.join(wechat_qr::events::LOG_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    std::fs::metadata(dir.join(wechat_qr::events::STORE_FILE))
        .unwrap()
        .len()
        + segments
}
