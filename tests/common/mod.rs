//! The one start-the-service helper every test uses: the real service on loopback port 0,
//! on the real embedded simulator, reached through real gRPC and HTTP clients. Also a
//! test-side implementation of WeChat's signing rule, written independently of the
//! crate's own, so a bug in one does not hide in the other.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod data_dir;
pub mod go;
pub mod wechatpy;

// Each test file uses some of these; the rest would warn.
#[allow(unused_imports)]
pub use wechat_qr_test_support::{binary, redis_server, tls::certificates};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};
use tokio_util::sync::CancellationToken;
use tonic::{Streaming, transport::Channel};
use wechat_qr::{
    app::{self, Running},
    config::ServeConfig,
    pb::{self, qr_service_client::QrServiceClient},
    simulator::Simulator,
};

/// The dev token the simulator and webhook share by default.
pub const TOKEN: &str = wechat_qr::config::dev::TOKEN;

/// A configuration that ignores the environment: every listener on port 0, simulator on.
pub fn config() -> ServeConfig {
    ServeConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        max_webhook_connections: None,
        max_grpc_connections: None,
        max_connections_per_address: 256,
        trusted_proxies: Vec::new(),
        header_read_timeout_ms: 5_000,
        grpc_handshake_timeout_ms: 10_000,
        grpc_idle_timeout_seconds: 600,
        simulator_addr: "127.0.0.1:0".parse().unwrap(),
        allow_simulator_on_network: false,
        app_id: None,
        app_secret: None,
        token: None,
        previous_token: None,
        encoding_aes_key: None,
        previous_encoding_aes_key: None,
        encrypt_mode: None,
        account_id: None,
        api_base: None,
        mp_base: None,
        replay_window_seconds: 300,
        replay_guard_seals: wechat_qr::events::DEFAULT_MAX_SEALS,
        max_push_bytes: 64 * 1024,
        push_read_timeout_ms: 2_000,
        retain_events: 100_000,
        retain_seconds: 24 * 3600,
        retain_bytes: 256 * 1024 * 1024,
        event_log: wechat_qr::config::EventLogKind::Durable,
        // Empty: TestService gives each server a temporary data directory of its own.
        data_dir: std::path::PathBuf::new(),
        redis_url: None,
        redis_prefix: "wechat-qr:".into(),
        stats_retain_days: 400,
        max_subscriptions: 200_000,
        max_subscription_bytes: None,
        max_streams_per_connection: 20_000,
        max_groups_per_account: wechat_qr::config::DEFAULT_MAX_GROUPS_PER_ACCOUNT,
        max_filter_entries: 1_000,
        max_filter_entry_bytes: 512,
        token_source: wechat_qr::config::TokenSourceKind::Stable,
        token_url: None,
        token_refresh_at: 0.8,
        upstream_timeout_ms: 10_000,
        upstream_attempts: 3,
        max_image_bytes: 2 * 1024 * 1024,
        max_request_bytes: 256 * 1024,
        image_cache_bytes: 64 * 1024 * 1024,
        image_ttl_seconds: 7 * 24 * 3600,
        permanent_store: None,
        simulator_faults: None,
        permanent_budget: None,
        tls_cert: None,
        tls_key: None,
        client_ca: None,
        simulator: false,
        accounts: Vec::new(),
        clients: Vec::new(),
        forward_url: None,
        forward_scans: false,
        forward_failure: wechat_qr::config::ForwardFailure::Retry,
        forward_timeout_ms: 4_000,
        replies: Vec::new(),
    }
}

/// A running service; stops when dropped.
pub struct TestService {
    pub running: Option<Running>,
    pub grpc_addr: std::net::SocketAddr,
    pub webhook_url: String,
    /// The admin listener's base URL (`/metrics`, `/healthz`).
    pub admin_url: String,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    /// The server's own data directory, removed when the test ends (unless the test
    /// chose its own directory).
    pub data_dir: Option<tempfile::TempDir>,
}

impl TestService {
    pub async fn start() -> Self {
        Self::start_with(config()).await
    }

    pub async fn start_with(mut config: ServeConfig) -> Self {
        let data_dir = if config.data_dir.as_os_str().is_empty() {
            let dir = tempfile::tempdir().expect("temporary data directory");
            config.data_dir = dir.path().join("data");
            Some(dir)
        } else {
            None
        };
        let settings = config.resolve().expect("test configuration is valid");
        let shutdown = CancellationToken::new();
        let running = app::start(settings, shutdown.clone())
            .await
            .expect("service starts");
        Self {
            grpc_addr: running.grpc_addr,
            webhook_url: running.webhook_url(),
            admin_url: running.admin_url(),
            running: Some(running),
            shutdown,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            data_dir,
        }
    }

    /// How many events the log retains now.
    pub async fn retained(&self) -> usize {
        retained(&self.running().log).await
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("still running")
    }

    /// The admin listener's `/metrics` answer.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of every series of metric `name`, whatever its labels.
    pub async fn metric_total(&self, name: &str) -> f64 {
        binary::metric_total(&self.metrics().await, name)
    }

    pub fn simulator(&self) -> &Simulator {
        &self
            .running()
            .simulator
            .as_ref()
            .expect("simulator runs")
            .simulator
    }

    pub fn simulator_url(&self) -> String {
        format!("http://{}", self.running().simulator.as_ref().unwrap().addr)
    }

    pub async fn client(&self) -> QrServiceClient<Channel> {
        QrServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("gRPC client connects")
    }

    /// Cancels and waits for every listener to stop.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(10), running.wait())
                .await
                .expect("service stops within 10 s");
        }
    }

    /// POSTs a plaintext push signed with `token`.
    pub async fn push_signed(&self, token: &str, xml: &str) -> (u16, String) {
        // A fresh nonce per push, as WeChat sends: the webhook refuses a (timestamp,
        // nonce) it accepted before with another body.
        let nonce = format!("n{}", rand::random::<u64>());
        let query = signed_query(token, &now().to_string(), &nonce);
        self.post(&query, xml.as_bytes().to_vec()).await
    }

    /// POSTs `body` with a raw query string.
    pub async fn post(&self, query: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}?{query}", self.webhook_url))
            .body(body)
            .send()
            .await
            .expect("webhook answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How many events `log` retains: everything after the cursor its OUT_OF_RANGE answer
/// names as the start.
pub async fn retained(log: &std::sync::Arc<dyn wechat_qr::events::EventLog>) -> usize {
    let head = log.head().await.unwrap();
    let before_all = wechat_qr::events::Cursor {
        epoch: head.epoch,
        seq: 0,
    };
    let start = match log.read_after(before_all, 0).await {
        Ok(_) => before_all,
        Err(wechat_qr::events::LogError::OutOfRange { resume_from, .. }) => resume_from,
        Err(e) => panic!("log unavailable: {e}"),
    };
    log.read_after(start, usize::MAX).await.unwrap().len()
}

/// A file path in a fresh temporary directory, removed with the directory when dropped:
/// keep it alive as long as the test uses the path.
pub struct ScratchFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ScratchFile {
    /// The path, owned.
    pub fn to_path_buf(&self) -> std::path::PathBuf {
        self.path.clone()
    }
}

impl std::ops::Deref for ScratchFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for ScratchFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for ScratchFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// A path named `name` in a fresh temporary directory of its own.
pub fn scratch_file(name: &str) -> ScratchFile {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(name);
    ScratchFile { _dir: dir, path }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// WeChat's rule, written out here: sort, concatenate, SHA-1, lowercase hex.
pub fn wechat_signature(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort();
    let digest = Sha1::digest(sorted.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn signed_query(token: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "signature={}&timestamp={timestamp}&nonce={nonce}&openid=o",
        wechat_signature(&[token, timestamp, nonce])
    )
}

/// A scan event push as WeChat sends it.
pub fn scan_xml(
    event: &str,
    openid: &str,
    event_key: &str,
    ticket: &str,
    create_time: u64,
) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{event_key}]]></EventKey><Ticket><![CDATA[{ticket}]]></Ticket></xml>"
    )
}

pub async fn subscribe(
    service: &TestService,
    request: pb::StreamEventsRequest,
) -> Streaming<pb::StreamEventsResponse> {
    service
        .client()
        .await
        .stream_events(request)
        .await
        .expect("stream opens")
        .into_inner()
}

/// The next event within a second, or `None` if the stream stays quiet.
pub async fn next(
    stream: &mut Streaming<pb::StreamEventsResponse>,
) -> Option<pb::StreamEventsResponse> {
    match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
        Ok(Ok(Some(response))) => Some(response),
        Ok(Ok(None)) => panic!("stream ended"),
        Ok(Err(status)) => panic!("stream failed: {status:?}"),
        Err(_) => None,
    }
}

/// Exactly `n` events, then a quiet stream.
pub async fn exactly(stream: &mut Streaming<pb::StreamEventsResponse>, n: usize) -> Vec<pb::Event> {
    let mut events = Vec::new();
    for i in 0..n {
        let response = next(stream)
            .await
            .unwrap_or_else(|| panic!("event {i} of {n} missing"));
        assert!(!response.cursor.is_empty());
        events.push(response.event.unwrap());
    }
    if let Some(extra) = tokio::time::timeout(Duration::from_millis(300), stream.message())
        .await
        .ok()
        .and_then(|r| r.ok().flatten())
    {
        panic!("unexpected extra event {extra:?}");
    }
    events
}

pub async fn push(service: &TestService, xml: &str) {
    let (status, body) = service.push_signed(TOKEN, xml).await;
    assert_eq!((status, body.as_str()), (200, "success"), "push of {xml}");
}

/// Decodes the one QR code in a JPEG and returns its text.
pub fn decode_qr(jpeg: &[u8]) -> String {
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder.decode().expect("a valid JPEG");
    let info = decoder.info().unwrap();
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::L8);
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    grids[0].decode().expect("the QR code decodes").1
}

/// The access_token the simulator at `simulator_url` hands out in normal mode — the same
/// one every holder of the dev credentials gets.
pub async fn simulator_token(http: &reqwest::Client, simulator_url: &str) -> String {
    let reply: serde_json::Value = http
        .post(format!("{simulator_url}/cgi-bin/stable_token"))
        .json(&serde_json::json!({
            "grant_type": "client_credential",
            "appid": wechat_qr::config::dev::APP_ID,
            "secret": wechat_qr::config::dev::APP_SECRET,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

/// A StreamEvents stream on a connection with a 16 KiB HTTP/2 window, which a test can
/// leave unread: the client's own buffer then cannot absorb a burst (hyper's default
/// window is megabytes), so the server really has to hold back.
pub async fn small_window_stream(service: &TestService) -> Streaming<pb::StreamEventsResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", service.grpc_addr))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    QrServiceClient::new(channel)
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
}
